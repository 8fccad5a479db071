//! Configuration problems: where each one is (env var, file key and line, route) and what is wrong with it.
//!
//! Loading collects every problem it can find instead of stopping at the first, so one `postern --check` run shows
//! the whole list. Nothing here ever holds a secret's value: callers describe secrets by shape ("12 bytes").

use std::fmt;
use std::path::PathBuf;

/// Where a setting came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setting {
    /// An environment variable, e.g. `COOKIE_SECRET`.
    Env(String),
    /// A key in the YAML file given with `--config`.
    File {
        key: String,
        path: PathBuf,
        line: Option<usize>,
    },
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Setting::Env(name) => write!(f, "{name}"),
            Setting::File {
                key,
                path,
                line: Some(line),
            } => write!(f, "{key} in {} line {line}", path.display()),
            Setting::File {
                key,
                path,
                line: None,
            } => write!(f, "{key} in {}", path.display()),
        }
    }
}

/// A YAML document that holds routes or settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Doc {
    /// The `--config` file.
    File(PathBuf),
    /// The `POLICY` environment variable (base64 of YAML).
    EnvPolicy,
    /// A file named by `POLICY_FILE` / `policy_file`.
    PolicyFile(PathBuf),
}

impl Doc {
    /// "FILE line N" / "POLICY (base64 YAML) line N".
    pub fn at(&self, line: Option<usize>) -> String {
        match line {
            Some(line) => format!("{self} line {line}"),
            None => self.to_string(),
        }
    }
}

impl fmt::Display for Doc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Doc::File(path) | Doc::PolicyFile(path) => write!(f, "{}", path.display()),
            Doc::EnvPolicy => write!(f, "POLICY (base64 YAML)"),
        }
    }
}

/// One problem found while loading the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A required setting is absent. `what` names the env var and, when a file is in use, its key there.
    Missing { what: String, help: String },
    /// A setting has a value that is not what it must be.
    Invalid {
        setting: Setting,
        expected: String,
        found: String,
    },
    /// A YAML document could not be read: syntax, unknown key, wrong shape.
    Yaml {
        doc: Doc,
        line: Option<usize>,
        message: String,
    },
    /// One key of one route is wrong (boxed: it is the largest variant).
    Route(Box<RouteProblem>),
    /// Settings that cannot hold together (both named in the message).
    Conflict { message: String },
    /// A file named by a setting could not be read.
    Io {
        setting: Setting,
        path: PathBuf,
        message: String,
    },
}

/// What is wrong with one key of one route, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteProblem {
    pub doc: Doc,
    pub line: Option<usize>,
    /// 1-based position in the policy list.
    pub index: usize,
    pub from: Option<String>,
    pub key: &'static str,
    pub expected: String,
    pub found: String,
    pub hint: Option<String>,
}

impl ConfigError {
    pub(crate) fn invalid(
        setting: &Setting,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            setting: setting.clone(),
            expected: expected.into(),
            found: found.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Missing { what, help } => write!(f, "{what} is not set: {help}"),
            ConfigError::Invalid {
                setting,
                expected,
                found,
            } => {
                write!(f, "{setting}: expected {expected}, found {found}")
            }
            ConfigError::Yaml { doc, line, message } => write!(f, "{}: {message}", doc.at(*line)),
            ConfigError::Route(p) => {
                let RouteProblem {
                    doc,
                    line,
                    index,
                    from,
                    key,
                    expected,
                    found,
                    hint,
                } = p.as_ref();
                write!(f, "{}: route {index}", doc.at(*line))?;
                if let Some(from) = from {
                    write!(f, " ({from})")?;
                }
                write!(f, ": `{key}` must be {expected}, found {found}")?;
                if let Some(hint) = hint {
                    write!(f, "; {hint}")?;
                }
                Ok(())
            }
            ConfigError::Conflict { message } => write!(f, "{message}"),
            ConfigError::Io {
                setting,
                path,
                message,
            } => {
                write!(f, "{setting}: cannot read {}: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found, in the order found. `Display` prints one per line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Quote a value found in the configuration for an error message: short, one line, visibly delimited.
pub(crate) fn shown(value: &str) -> String {
    const MAX: usize = 120;
    let mut s: String = value.chars().take(MAX).collect();
    if value.chars().count() > MAX {
        s.push('…');
    }
    format!("{s:?}")
}
