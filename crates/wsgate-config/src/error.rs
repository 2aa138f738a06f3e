//! Config errors: each names the key path and, where known, the line.

use std::fmt;

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path such as `route[0].limits.max_frame`; empty for the file as a whole.
    pub path: String,
    /// 1-based line in the file, where the error has a place.
    pub line: Option<usize>,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.path.is_empty(), self.line) {
            (true, Some(line)) => write!(f, "line {line}: {}", self.message),
            (true, None) => f.write_str(&self.message),
            (false, Some(line)) => write!(f, "{} (line {line}): {}", self.path, self.message),
            (false, None) => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Every error found in one config, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        writeln!(
            f,
            "{count} error{} in config:",
            if count == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// Collects errors while a config is read, turning byte spans into lines.
pub(crate) struct Collector<'s> {
    src: &'s str,
    errors: Vec<(usize, ConfigError)>,
}

impl<'s> Collector<'s> {
    pub(crate) fn new(src: &'s str) -> Self {
        Collector {
            src,
            errors: Vec::new(),
        }
    }

    /// Records an error at `path`, placed at byte offset `at` when known.
    pub(crate) fn push(&mut self, path: &str, at: Option<usize>, message: impl Into<String>) {
        let line = at.map(|offset| {
            let end = offset.min(self.src.len());
            self.src.as_bytes()[..end]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1
        });
        self.errors.push((
            at.unwrap_or(usize::MAX),
            ConfigError {
                path: path.to_owned(),
                line,
                message: message.into(),
            },
        ));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Whether an error was recorded at `path` or at a key inside it. A
    /// check that depends on a value which was written but refused asks
    /// this first, so that the operator reads the refusal once, not a
    /// second error that assumes the key was never written.
    pub(crate) fn any_under(&self, path: &str) -> bool {
        self.errors.iter().any(|(_, e)| {
            e.path
                .strip_prefix(path)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
    }

    pub(crate) fn finish(mut self) -> ConfigErrors {
        // Stable sort: file order, errors without a place last in the order found.
        self.errors.sort_by_key(|(at, _)| *at);
        ConfigErrors(self.errors.into_iter().map(|(_, e)| e).collect())
    }
}
