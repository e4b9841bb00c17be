//! The examples' command-line options: `--name value`, `--name=value` and
//! `--flag`, nothing more (the examples keep to std and shmproc).

use std::fmt;
use std::str::FromStr;

/// Parsed `--name value` options.
#[derive(Debug, Default, Clone)]
pub struct Options {
    pairs: Vec<(String, Option<String>)>,
}

/// An option that is unknown, or whose value does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError(String);

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OptionError {}

impl Options {
    /// The process's arguments (after the program name), checked against
    /// `known` (names without the dashes; `help` is always known).
    ///
    /// # Errors
    /// An argument that is not `--name`, or a name not in `known`.
    pub fn from_env(known: &[&str]) -> Result<Self, OptionError> {
        Self::parse(std::env::args().skip(1), known)
    }

    /// As [`from_env`](Self::from_env), from `args`. A `--name` followed
    /// by an argument that does not start with `--` takes it as its value.
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    pub fn parse(
        args: impl IntoIterator<Item = impl Into<String>>,
        known: &[&str],
    ) -> Result<Self, OptionError> {
        let mut pairs = Vec::new();
        let mut args = args.into_iter().map(Into::into).peekable();
        while let Some(arg) = args.next() {
            let Some(name) = arg.strip_prefix("--") else {
                return Err(OptionError(format!("unexpected argument {arg:?}")));
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => {
                    let value = args.next_if(|next| !next.starts_with("--"));
                    (name.to_owned(), value)
                }
            };
            if name != "help" && !known.contains(&name.as_str()) {
                return Err(OptionError(format!("unknown option --{name}")));
            }
            pairs.push((name, value));
        }
        Ok(Self { pairs })
    }

    /// Whether `--name` was given (with or without a value).
    pub fn flag(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, _)| n == name)
    }

    /// The value of the last `--name`, if given.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The value of `--name` parsed as `T`, or `default` when absent.
    ///
    /// # Errors
    /// A value that does not parse, or `--name` without a value.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> Result<T, OptionError> {
        if !self.flag(name) {
            return Ok(default);
        }
        let Some(v) = self.value(name) else {
            return Err(OptionError(format!("--{name} needs a value")));
        };
        // Numbers may be written `1_000_000`, as in Rust source.
        v.parse()
            .or_else(|_| v.replace('_', "").parse())
            .map_err(|_| OptionError(format!("--{name}: cannot parse {v:?}")))
    }
}
