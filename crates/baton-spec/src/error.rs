//! The reader's error type: what went wrong, in which file, at which line and column,
//! under which Compose key path, and a hint when one can be guessed.

use std::fmt;
use std::path::PathBuf;

use crate::yaml::Mark;

/// What kind of problem a [`SpecError`] reports, so a caller can pick an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The file is not valid YAML (or has duplicate keys).
    Syntax,
    /// A value has the wrong type (a string where an integer is expected, …).
    Type,
    /// A key the Compose Specification does not define.
    UnknownKey,
    /// A dependency, `extends` or `include` cycle.
    Cycle,
    /// A reference to something not defined (network, volume, service, …).
    Undefined,
    /// A `${VAR:?message}` whose variable is unset or empty, or a malformed `${…}`.
    Interpolation,
    /// A file could not be read.
    Io,
    /// Two definitions of the same thing that cannot both hold.
    Conflict,
    /// A value of the right type that is still not acceptable.
    Invalid,
    /// A bound of the reader's was crossed: file size, nodes or text built, nesting
    /// (the bounds are in `limits.rs`).
    Limit,
}

/// A located error from reading a project.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", Rendered(self))]
pub struct SpecError {
    pub kind: ErrorKind,
    /// The file, as shown to the user (relative to the working directory when under it).
    pub file: Option<PathBuf>,
    /// 1-based line, when known.
    pub line: Option<u32>,
    /// 1-based column, when known.
    pub column: Option<u32>,
    /// Compose's dotted key path (`services.web.ports[1]`); empty when not meaningful.
    pub path: String,
    pub message: String,
    /// A suggestion, e.g. `did you mean "environment"?`.
    pub hint: Option<String>,
}

impl SpecError {
    pub fn new(kind: ErrorKind, path: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError {
            kind,
            file: None,
            line: None,
            column: None,
            path: path.into(),
            message: message.into(),
            hint: None,
        }
    }

    /// An error located at `mark`.
    pub fn at(
        kind: ErrorKind,
        mark: &Mark,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        SpecError::new(kind, path, message).with_mark(mark)
    }

    pub fn with_mark(mut self, mark: &Mark) -> Self {
        self.file = Some(mark.source.display.clone());
        if mark.line > 0 {
            self.line = Some(u32::try_from(mark.line).unwrap_or(u32::MAX));
            self.column = Some(u32::try_from(mark.column).unwrap_or(u32::MAX));
        }
        self
    }

    pub fn with_file(mut self, file: PathBuf) -> Self {
        self.file = Some(file);
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

struct Rendered<'a>(&'a SpecError);

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        if let Some(file) = &e.file {
            write!(f, "{}", file.display())?;
            if let (Some(line), Some(column)) = (e.line, e.column) {
                write!(f, ":{line}:{column}")?;
            }
            write!(f, ": ")?;
        }
        if !e.path.is_empty() {
            write!(f, "{}: ", e.path)?;
        }
        write!(f, "{}", e.message)?;
        if let Some(hint) = &e.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// `did you mean "x"?` for the closest candidate, if one is close enough.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean \"{c}\"?"))
}

/// The candidate closest to `word`, if one is close enough to be what was meant: a
/// shared prefix counts (Jaro-Winkler ≥ 0.8), and so do a few typos in a short word,
/// transpositions included (Damerau-Levenshtein within 40 % of the length: `wbe` is
/// `web`). Every did-you-mean in baton goes through here. Words and candidates longer
/// than a name get none (the comparison costs the product of their lengths).
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    const MAX_NAME: usize = 64;
    if word.len() > MAX_NAME {
        return None;
    }
    candidates
        .into_iter()
        .filter(|c| *c != word && c.len() <= MAX_NAME)
        .map(|c| {
            let jw = strsim::jaro_winkler(word, c);
            let dl = strsim::normalized_damerau_levenshtein(word, c);
            (jw.max(dl), jw >= 0.8 || dl >= 0.6, c)
        })
        .filter(|(_, close, _)| *close)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, _, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_every_part() {
        let mut e = SpecError::new(
            ErrorKind::Invalid,
            "services.web.ports[1]",
            "invalid port \"80:abc\"",
        );
        e.file = Some(PathBuf::from("docker-compose.yml"));
        e.line = Some(12);
        e.column = Some(7);
        let e = e.with_hint("did you mean \"80:80\"?");
        assert_eq!(
            e.to_string(),
            "docker-compose.yml:12:7: services.web.ports[1]: invalid port \"80:abc\" (did you mean \"80:80\"?)"
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("enviroment", ["environment", "image"]).as_deref(),
            Some("did you mean \"environment\"?")
        );
        assert_eq!(suggest("zzz", ["environment", "image"]), None);
        assert_eq!(closest("wbe", ["web", "db"]), Some("web"));
        assert_eq!(closest("dbb", ["web", "db"]), Some("db"));
        assert_eq!(closest("cache", ["web", "db"]), None);
    }
}
