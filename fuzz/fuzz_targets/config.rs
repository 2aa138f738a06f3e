//! The config loader on any text, as `wsgate check` would read it.
//! Properties: no panic and no unbounded work, whatever the operator wrote;
//! a refused config names at least one error, and every error says
//! something.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // No file a relative path names exists here, and no variable is set
    // but the one the seeds' `hs256_secret_env` names.
    let base = Path::new("/nonexistent/wsgate-fuzz");
    let env = |name: &str| (name == "JWT_SECRET").then(|| "s".repeat(32));
    if let Err(errors) = wsgate_config::parse_with_env(text, base, &env) {
        assert!(!errors.0.is_empty(), "refused without an error");
        for e in &errors.0 {
            assert!(!e.message.is_empty(), "an error without a message: {e:?}");
        }
    }
});
