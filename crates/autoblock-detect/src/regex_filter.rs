//! User-defined filters: regular expressions from the configuration with a
//! named `host` group, plus ignore patterns.
//!
//! The `regex` crate guarantees matching in time linear in the line length, so
//! a configured pattern cannot be turned into a denial of service by crafted
//! log lines. Deliberately not offered: look-around and back-references
//! (which would lose that guarantee) and host names in the `host` group
//! (never resolved; such lines are counted as skipped).

use regex::bytes::{Regex, RegexSet};

/// Why a user filter was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// The pattern does not compile.
    #[error("filter pattern {index} `{pattern}` does not compile: {source}")]
    Syntax {
        /// Position in the list of patterns (0-based).
        index: usize,
        /// The offending pattern.
        pattern: String,
        /// The regex crate's explanation.
        #[source]
        source: Box<regex::Error>,
    },
    /// The pattern has no `(?P<host>...)` group.
    #[error("filter pattern {index} `{pattern}` has no named group `host`")]
    NoHostGroup {
        /// Position in the list of patterns (0-based).
        index: usize,
        /// The offending pattern.
        pattern: String,
    },
    /// The ignore pattern does not compile.
    #[error("ignore pattern {index} `{pattern}` does not compile: {source}")]
    IgnoreSyntax {
        /// Position in the list of ignore patterns (0-based).
        index: usize,
        /// The offending pattern.
        pattern: String,
        /// The regex crate's explanation.
        #[source]
        source: Box<regex::Error>,
    },
    /// No failure pattern given.
    #[error("a filter needs at least one pattern")]
    Empty,
}

/// A filter made of regular expressions, matched against the message part of
/// each line (after the envelope).
#[derive(Debug, Clone)]
pub struct RegexFilter {
    name: String,
    patterns: Vec<(Regex, usize, Option<usize>)>,
    ignore: Option<RegexSet>,
    programs: Vec<Vec<u8>>,
}

/// The result of matching one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegexMatch<'a> {
    /// No pattern matched.
    None,
    /// An ignore pattern matched.
    Ignored,
    /// A pattern matched: the host and optional user group texts.
    Hit {
        host: &'a [u8],
        user: Option<&'a [u8]>,
    },
}

impl RegexFilter {
    /// Compiles `patterns` (each must have a named group `host`, and may have
    /// `user`) and `ignore` patterns (a message matching any of them is
    /// skipped). Anchor patterns (`^...$`) so that user-controlled parts of a
    /// message cannot supply the host.
    pub fn new<P, I>(patterns: P, ignore: I) -> Result<RegexFilter, FilterError>
    where
        P: IntoIterator,
        P::Item: AsRef<str>,
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut compiled = Vec::new();
        for (index, p) in patterns.into_iter().enumerate() {
            let p = p.as_ref();
            let re = Regex::new(p).map_err(|e| FilterError::Syntax {
                index,
                pattern: p.to_owned(),
                source: Box::new(e),
            })?;
            let names: Vec<Option<&str>> = re.capture_names().collect();
            let find = |n: &str| names.iter().position(|x| *x == Some(n));
            let Some(host) = find("host") else {
                return Err(FilterError::NoHostGroup {
                    index,
                    pattern: p.to_owned(),
                });
            };
            let user = find("user");
            compiled.push((re, host, user));
        }
        if compiled.is_empty() {
            return Err(FilterError::Empty);
        }
        let ignore: Vec<String> = ignore.into_iter().map(|s| s.as_ref().to_owned()).collect();
        for (index, p) in ignore.iter().enumerate() {
            Regex::new(p).map_err(|e| FilterError::IgnoreSyntax {
                index,
                pattern: p.clone(),
                source: Box::new(e),
            })?;
        }
        let ignore = if ignore.is_empty() {
            None
        } else {
            Some(
                RegexSet::new(&ignore).map_err(|e| FilterError::IgnoreSyntax {
                    index: 0,
                    pattern: ignore.join(" | "),
                    source: Box::new(e),
                })?,
            )
        };
        Ok(RegexFilter {
            name: "custom".to_owned(),
            patterns: compiled,
            ignore,
            programs: Vec::new(),
        })
    }

    /// Names the filter (for output).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Restricts the filter to lines whose envelope names one of `programs`
    /// (lines without a program name are still judged).
    pub fn with_programs<S: AsRef<str>>(mut self, programs: impl IntoIterator<Item = S>) -> Self {
        self.programs = programs
            .into_iter()
            .map(|p| p.as_ref().as_bytes().to_vec())
            .collect();
        self
    }

    /// The filter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn accepts_program(&self, program: &[u8]) -> bool {
        self.programs.is_empty() || self.programs.iter().any(|p| p == program)
    }

    pub(crate) fn matches<'a>(&self, msg: &'a [u8]) -> RegexMatch<'a> {
        if let Some(ig) = &self.ignore {
            if ig.is_match(msg) {
                return RegexMatch::Ignored;
            }
        }
        for (re, host, user) in &self.patterns {
            if let Some(c) = re.captures(msg) {
                let Some(h) = c.get(*host) else { continue };
                let u = user.and_then(|i| c.get(i)).map(|m| m.as_bytes());
                return RegexMatch::Hit {
                    host: h.as_bytes(),
                    user: u,
                };
            }
        }
        RegexMatch::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_host_group() {
        let e = RegexFilter::new(["^login failed from (\\S+)$"], [""; 0]).unwrap_err();
        assert!(
            matches!(e, FilterError::NoHostGroup { index: 0, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("login failed"));
        let e = RegexFilter::new(["(?P<host>"], [""; 0]).unwrap_err();
        assert!(matches!(e, FilterError::Syntax { .. }));
        assert!(matches!(
            RegexFilter::new([""; 0], [""; 0]),
            Err(FilterError::Empty)
        ));
    }

    #[test]
    fn matches_and_ignores() {
        let f = RegexFilter::new(
            [r"^auth failed for (?P<user>.*) from (?P<host>\S+)$"],
            [r"from 192\.0\.2\.1$"],
        )
        .unwrap();
        assert_eq!(
            f.matches(b"auth failed for bob from 198.51.100.2"),
            RegexMatch::Hit {
                host: b"198.51.100.2",
                user: Some(b"bob")
            }
        );
        assert_eq!(
            f.matches(b"auth failed for bob from 192.0.2.1"),
            RegexMatch::Ignored
        );
        assert_eq!(f.matches(b"something else"), RegexMatch::None);
    }
}
