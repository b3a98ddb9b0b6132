//! Reading baton's own sections (`pipelines:`, `alerts:`, …) from `Project::baton` into
//! types, with every error located at its setting: the primitives each typed reader uses.

use serde_json::{Map, Value};

use crate::error::suggest;
use crate::model::Project;
use crate::{ErrorKind, SpecError};

/// A reader over one project's baton sections; errors name the dotted path of the
/// setting and, where the file said, its file, line and column.
#[derive(Clone, Copy)]
pub struct Section<'a> {
    pub project: &'a Project,
}

impl<'a> Section<'a> {
    pub fn new(project: &'a Project) -> Section<'a> {
        Section { project }
    }

    /// An error of `kind` at `path`.
    pub fn err(&self, kind: ErrorKind, path: &str, msg: impl Into<String>) -> SpecError {
        self.project.error_at(kind, path, msg)
    }

    pub fn map<'v>(&self, v: &'v Value, path: &str) -> Result<&'v Map<String, Value>, SpecError> {
        v.as_object()
            .ok_or_else(|| self.err(ErrorKind::Type, path, "expected a mapping"))
    }

    /// Refuses a key outside `allowed`, with a did-you-mean.
    pub fn keys(
        &self,
        m: &Map<String, Value>,
        allowed: &[&str],
        path: &str,
    ) -> Result<(), SpecError> {
        match m.keys().find(|k| !allowed.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => {
                let mut e = self.err(
                    ErrorKind::UnknownKey,
                    &format!("{path}.{k}"),
                    format!("unknown key \"{k}\""),
                );
                e.hint = suggest(k, allowed.iter().copied());
                Err(e)
            }
        }
    }

    /// A string; numbers and booleans are taken as they were written.
    pub fn string(&self, v: &Value, path: &str) -> Result<String, SpecError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err(self.err(ErrorKind::Type, path, "expected a string")),
        }
    }

    /// A list of strings, or one string as a list of one.
    pub fn strings(&self, v: &Value, path: &str) -> Result<Vec<String>, SpecError> {
        match v {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, x)| self.string(x, &format!("{path}[{i}]")))
                .collect(),
            Value::String(s) => Ok(vec![s.clone()]),
            _ => Err(self.err(ErrorKind::Type, path, "expected a list of strings")),
        }
    }

    pub fn uint(&self, v: &Value, path: &str) -> Result<u32, SpecError> {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or_else(|| self.err(ErrorKind::Type, path, "expected a non-negative integer"))
    }

    pub fn bool(&self, v: &Value, path: &str) -> Result<bool, SpecError> {
        match v {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if s == "true" => Ok(true),
            Value::String(s) if s == "false" => Ok(false),
            _ => Err(self.err(ErrorKind::Type, path, "expected true or false")),
        }
    }

    /// A duration as Compose writes them (`500ms`, `30s`, `1m30s`; a bare number is
    /// seconds).
    pub fn duration(&self, v: &Value, path: &str) -> Result<std::time::Duration, SpecError> {
        let text = match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        text.and_then(|s| crate::parse_duration(&s).ok())
            .map(|d| d.as_std())
            .ok_or_else(|| {
                self.err(
                    ErrorKind::Invalid,
                    path,
                    format!(
                        "expected a duration like \"30s\", \"1m30s\" or \"500ms\", found {}",
                        serde_json::to_string(v).unwrap_or_else(|_| "a value".into())
                    ),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn primitives_name_the_setting() {
        let p = Project::default();
        let r = Section::new(&p);
        let m = json!({"a": 1, "tiemout": "1s"});
        let e = r
            .keys(m.as_object().unwrap(), &["a", "timeout"], "x")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.tiemout: unknown key \"tiemout\" (did you mean \"timeout\"?)"
        );
        assert_eq!(r.string(&json!(5), "p").unwrap(), "5");
        assert_eq!(r.strings(&json!("a"), "p").unwrap(), ["a"]);
        assert_eq!(r.uint(&json!("7"), "p").unwrap(), 7);
        assert!(r.bool(&json!("yes"), "p").is_err());
        assert_eq!(
            r.duration(&json!("1m30s"), "p").unwrap(),
            std::time::Duration::from_secs(90)
        );
        assert_eq!(
            r.duration(&json!(5), "t").unwrap(),
            std::time::Duration::from_secs(5)
        );
        assert_eq!(
            r.duration(&json!("soon"), "t").unwrap_err().to_string(),
            "t: expected a duration like \"30s\", \"1m30s\" or \"500ms\", found \"soon\""
        );
    }
}
