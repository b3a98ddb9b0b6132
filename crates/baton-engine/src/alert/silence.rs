//! Silences as Alertmanager has them: label matchers (`=`, `!=`, `=~`, `!~`), a start and an
//! end, a comment and who made it; an active silence mutes the notifications of the alerts it matches.
//!
//! Regular expressions are anchored at both ends, as Alertmanager's are (`=~"web.*"`
//! matches `web-1`, not `my-web`), and a missing label matches as the empty string.

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{label_name_syntax, Labels};

/// How a matcher compares a label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchOp {
    #[serde(rename = "=")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
    #[serde(rename = "=~")]
    Regex,
    #[serde(rename = "!~")]
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// `name op "value"`. Serialises as `{name, op, value}`; reading one back compiles its regex.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RawMatcher", into = "RawMatcher")]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

#[derive(Serialize, Deserialize)]
struct RawMatcher {
    name: String,
    op: MatchOp,
    value: String,
}

impl TryFrom<RawMatcher> for Matcher {
    type Error = SilenceError;
    fn try_from(r: RawMatcher) -> Result<Matcher, SilenceError> {
        Matcher::new(&r.name, r.op, &r.value)
    }
}

impl From<Matcher> for RawMatcher {
    fn from(m: Matcher) -> RawMatcher {
        RawMatcher {
            name: m.name,
            op: m.op,
            value: m.value,
        }
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        (&self.name, self.op, &self.value) == (&other.name, other.op, &other.value)
    }
}

/// A silence, as made through the API or the CLI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    /// All must match for the silence to apply.
    pub matchers: Vec<Matcher>,
    pub starts_at_ms: u64,
    pub ends_at_ms: u64,
    pub comment: String,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    #[error(
        "invalid label name \"{0}\" in a matcher: letters, digits and _, not starting with a digit"
    )]
    LabelName(String),
    #[error("invalid regular expression for {name}: {message}")]
    Regex { name: String, message: String },
    #[error("\"{0}\" is not a matcher: expected name=\"value\", name!=\"value\", name=~\"regex\" or name!~\"regex\"")]
    Syntax(String),
    #[error("a silence needs at least one matcher")]
    NoMatchers,
    #[error("a silence needs a matcher that does not match the empty label (it would silence every alert)")]
    MatchesEverything,
    #[error("a silence must end after it starts")]
    EndsBeforeStart,
    #[error("a silence needs a comment saying why")]
    NoComment,
    #[error("a silence needs the name of who made it")]
    NoCreator,
}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, SilenceError> {
        if !label_name_syntax(name) {
            return Err(SilenceError::LabelName(name.to_string()));
        }
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => {
                Some(Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                    SilenceError::Regex {
                        name: name.to_string(),
                        message: e
                            .to_string()
                            .lines()
                            .last()
                            .unwrap_or("")
                            .trim()
                            .to_string(),
                    }
                })?)
            }
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// `service="web"`, `instance!~"10\\..*"`, `severity=~page|critical`: the value may be
    /// quoted (Go escapes) or bare.
    pub fn parse(text: &str) -> Result<Matcher, SilenceError> {
        let bad = || SilenceError::Syntax(text.to_string());
        let t = text.trim();
        let at = t.find(['=', '!']).ok_or_else(bad)?;
        let name = t[..at].trim();
        let rest = &t[at..];
        let (op, value) = [
            ("=~", MatchOp::Regex),
            ("!~", MatchOp::NotRegex),
            ("!=", MatchOp::NotEqual),
            ("=", MatchOp::Equal),
        ]
        .into_iter()
        .find_map(|(sym, op)| rest.strip_prefix(sym).map(|v| (op, v.trim())))
        .ok_or_else(bad)?;
        let value = match value.strip_prefix('"') {
            Some(inner) => unquote(inner.strip_suffix('"').ok_or_else(bad)?).ok_or_else(bad)?,
            None => value.to_string(),
        };
        Matcher::new(name, op, &value)
    }

    /// Whether `labels` satisfy this matcher (a missing label is the empty string).
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(v),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(v),
            // `new` always compiles a regex for these two.
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

fn unquote(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(match chars.next()? {
                'n' => '\n',
                't' => '\t',
                other => other,
            }),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

impl Silence {
    /// Alertmanager's rules for a new silence: matchers, one that would not match an
    /// alert lacking the label, an end after the start, a comment and a creator.
    pub fn check(&self) -> Result<(), SilenceError> {
        if self.matchers.is_empty() {
            return Err(SilenceError::NoMatchers);
        }
        if self.matchers.iter().all(|m| m.matches(&Labels::new())) {
            return Err(SilenceError::MatchesEverything);
        }
        if self.ends_at_ms <= self.starts_at_ms {
            return Err(SilenceError::EndsBeforeStart);
        }
        if self.comment.trim().is_empty() {
            return Err(SilenceError::NoComment);
        }
        if self.created_by.trim().is_empty() {
            return Err(SilenceError::NoCreator);
        }
        Ok(())
    }

    /// In force at `now_ms`: started and not yet ended.
    pub fn active(&self, now_ms: u64) -> bool {
        self.starts_at_ms <= now_ms && now_ms < self.ends_at_ms
    }

    /// Whether this silence mutes an alert with `labels` at `now_ms`.
    pub fn mutes(&self, labels: &Labels, now_ms: u64) -> bool {
        self.active(now_ms)
            && !self.matchers.is_empty()
            && self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// The ids of the silences muting `labels` at `now_ms` (empty: not silenced).
pub fn silenced_by<'s>(silences: &'s [Silence], labels: &Labels, now_ms: u64) -> Vec<&'s str> {
    silences
        .iter()
        .filter(|s| s.mutes(labels, now_ms))
        .map(|s| s.id.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn m(text: &str) -> Matcher {
        Matcher::parse(text).expect("a matcher")
    }

    fn silence(matchers: &[&str]) -> Silence {
        Silence {
            id: "s1".into(),
            matchers: matchers.iter().map(|t| m(t)).collect(),
            starts_at_ms: 1_000,
            ends_at_ms: 2_000,
            comment: "deploying".into(),
            created_by: "ana".into(),
        }
    }

    #[test]
    fn the_four_operators() {
        let web = labels(&[("service", "web-1"), ("severity", "page")]);
        assert!(m("service=\"web-1\"").matches(&web));
        assert!(!m("service=web").matches(&web));
        assert!(m("service!=web").matches(&web));
        assert!(m("service=~\"web-.*\"").matches(&web));
        // Anchored: a regex must match the whole value.
        assert!(!m("service=~web").matches(&web));
        assert!(!m("service=~\"eb-1\"").matches(&web));
        assert!(m("severity!~\"info|warning\"").matches(&web));
        assert!(!m("severity!~\"page|critical\"").matches(&web));
        // A missing label is empty.
        assert!(m("zone=\"\"").matches(&web));
        assert!(m("zone!=eu").matches(&web));
        assert!(m("zone=~\".*\"").matches(&web));
        assert_eq!(m(" service = \"a\\\"b\" ").value, "a\"b");
        assert_eq!(m("service!~\"x\"").to_string(), "service!~\"x\"");
    }

    #[test]
    fn bad_matchers_are_refused() {
        assert_eq!(
            Matcher::parse("service").unwrap_err().to_string(),
            "\"service\" is not a matcher: expected name=\"value\", name!=\"value\", name=~\"regex\" or name!~\"regex\""
        );
        assert_eq!(
            Matcher::parse("9x=a").unwrap_err(),
            SilenceError::LabelName("9x".into())
        );
        assert!(matches!(
            Matcher::parse("service=~\"(\""),
            Err(SilenceError::Regex { .. })
        ));
        assert!(Matcher::parse("service=\"open").is_err());
    }

    #[test]
    fn a_silence_mutes_matching_alerts_while_active() {
        let s = silence(&["service=~\"web.*\"", "severity=page"]);
        assert_eq!(s.check(), Ok(()));
        let web = labels(&[("service", "web-1"), ("severity", "page")]);
        let api = labels(&[("service", "api"), ("severity", "page")]);
        assert!(!s.mutes(&web, 999));
        assert!(s.mutes(&web, 1_000));
        assert!(s.mutes(&web, 1_999));
        assert!(!s.mutes(&web, 2_000));
        assert!(!s.mutes(&api, 1_500));
        assert_eq!(silenced_by(&[s], &web, 1_500), ["s1"]);
    }

    #[test]
    fn silences_are_checked_as_alertmanager_does() {
        assert_eq!(silence(&[]).check(), Err(SilenceError::NoMatchers));
        assert_eq!(
            silence(&["service=~\".*\""]).check(),
            Err(SilenceError::MatchesEverything)
        );
        let mut s = silence(&["service=web"]);
        s.ends_at_ms = s.starts_at_ms;
        assert_eq!(s.check(), Err(SilenceError::EndsBeforeStart));
        let mut s = silence(&["service=web"]);
        s.comment = " ".into();
        assert_eq!(s.check(), Err(SilenceError::NoComment));
        let mut s = silence(&["service=web"]);
        s.created_by.clear();
        assert_eq!(s.check(), Err(SilenceError::NoCreator));
    }

    #[test]
    fn a_silence_reads_back_with_its_regex() {
        let s = silence(&["service=~\"web.*\""]);
        let json = serde_json::to_value(&s).expect("serialises");
        assert_eq!(
            json["matchers"],
            serde_json::json!([{"name": "service", "op": "=~", "value": "web.*"}])
        );
        let back: Silence = serde_json::from_value(json).expect("reads back");
        assert!(back.mutes(&labels(&[("service", "web-2")]), 1_500));
        let bad = serde_json::json!({"name": "service", "op": "=~", "value": "("});
        assert!(serde_json::from_value::<Matcher>(bad).is_err());
    }
}
