//! wsgate's configuration: a TOML file in, a validated [`Config`] out.
//!
//! This crate owns the config contract of DESIGN.md: key names, defaults,
//! and the value types that are parsed once at load (origins, hosts, sizes,
//! durations) so that no later stage parses operator strings again. Errors
//! are collected, not stopped at the first: [`load`] returns every problem
//! with its key path and line. No I/O beyond reading the file and checking
//! that referenced files exist; no async runtime.

pub mod auth;
mod error;
pub mod host;
mod load;
mod model;
pub mod origin;
mod reader;
pub mod units;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors};
pub use model::*;

/// Reads and validates the config file at `path`; relative paths inside it
/// are resolved against its directory.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let src = read_bounded(path, MAX_CONFIG_FILE).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            line: None,
            message: format!("cannot read {}: {e}", path.display()),
        }])
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&src, base)
}

/// The admin endpoint (`[metrics] bind`) the config file at `path` names,
/// and the name of the variable holding its token (`[metrics]
/// admin_token_env`), without validating anything else in it.
pub fn admin_endpoint(path: &Path) -> Result<(std::net::SocketAddr, Option<String>), String> {
    let src = read_bounded(path, MAX_CONFIG_FILE)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    load::admin_endpoint(&src).map_err(|e| format!("{}: {e}", path.display()))
}

/// Largest config file read.
const MAX_CONFIG_FILE: u64 = 16 << 20;

/// Reads a text file the config names, refusing one larger than `max`
/// bytes instead of reading it whole: a path to `/dev/zero` or to a
/// runaway file is an operator's mistake that must get an error, not
/// exhaust memory. Pipes (`--config <(...)`) still work.
pub(crate) fn read_bounded(path: &Path, max: u64) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB",
            max >> 20
        )));
    }
    Ok(text)
}

/// Validates a config given as text; `base` resolves relative file paths.
/// Environment variables it names are read from the process environment.
pub fn parse(src: &str, base: &Path) -> Result<Config, ConfigErrors> {
    load::parse(src, base, &|name| std::env::var(name).ok())
}

/// Like [`parse`], with environment variables looked up by `env`.
pub fn parse_with_env(src: &str, base: &Path, env: auth::Env<'_>) -> Result<Config, ConfigErrors> {
    load::parse(src, base, env)
}
