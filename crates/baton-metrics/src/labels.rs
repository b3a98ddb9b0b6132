//! A series' identity: its metric name and labels, sorted by label name, and the label
//! matchers (`=`, `!=`, `=~`, `!~`) that select series by them.

use std::fmt;

use regex::Regex;

/// The label that carries a series' metric name, as in Prometheus.
pub const METRIC_NAME: &str = "__name__";

/// A series' labels, sorted by name, `__name__` among them. Two series are the same
/// series exactly when their `Labels` are equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// Labels from pairs in any order; a later pair with the same name wins, and a label
    /// with an empty value is no label (Prometheus's rule).
    pub fn new<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        let mut v: Vec<(String, String)> = Vec::new();
        for (k, val) in pairs {
            let (k, val) = (k.into(), val.into());
            match v.iter_mut().find(|(n, _)| *n == k) {
                Some(slot) => slot.1 = val,
                None => v.push((k, val)),
            }
        }
        v.retain(|(_, val)| !val.is_empty());
        v.sort();
        Labels(v)
    }

    /// The labels of metric `name` with `pairs`.
    pub fn metric<K: Into<String>, V: Into<String>>(
        name: &str,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let pairs = pairs.into_iter().map(|(k, v)| (k.into(), v.into()));
        Labels::new(std::iter::once((METRIC_NAME.to_string(), name.to_string())).chain(pairs))
    }

    /// Labels already sorted by name with unique names and no empty value (the history's
    /// files store them that way); `None` when they are not.
    pub(crate) fn from_sorted(pairs: Vec<(String, String)>) -> Option<Self> {
        let sorted = pairs.windows(2).all(|w| w[0].0 < w[1].0);
        (sorted && pairs.iter().all(|(_, v)| !v.is_empty())).then_some(Labels(pairs))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .and_then(|i| self.0.get(i))
            .map(|(_, v)| v.as_str())
    }

    /// The metric name (`__name__`), if any.
    pub fn name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// These labels without `__name__`.
    pub fn without_name(&self) -> Labels {
        self.filtered(|n| n != METRIC_NAME)
    }

    /// Only the labels whose names `keep` says yes to.
    pub fn filtered(&self, keep: impl Fn(&str) -> bool) -> Labels {
        Labels(self.0.iter().filter(|(n, _)| keep(n)).cloned().collect())
    }

    /// Whether every matcher accepts these labels (a missing label is the empty value).
    pub fn matches(&self, matchers: &[Matcher]) -> bool {
        matchers
            .iter()
            .all(|m| m.matches(self.get(&m.name).unwrap_or("")))
    }
}

impl fmt::Display for Labels {
    /// `name{a="1", b="2"}` as PromQL writes a series.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.name() {
            f.write_str(name)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for (k, v) in self.iter().filter(|(k, _)| *k != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{k}={v:?}")?;
        }
        f.write_str("}")
    }
}

/// How a matcher compares a label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    /// The whole value matches the regular expression (it is anchored).
    Regex,
    NotRegex,
}

/// One `name op "value"` of a selector.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// The anchored expression, for `=~` and `!~`.
    regex: Option<Regex>,
}

/// Regular expressions in selectors come from rule files and query strings: their
/// compiled size is capped so that one cannot take the daemon's memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl Matcher {
    /// A matcher; `=~` and `!~` compile `value` anchored at both ends, as PromQL does.
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Self, regex::Error> {
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()?,
            ),
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// `name="value"`.
    pub fn equal(name: &str, value: &str) -> Self {
        Matcher {
            name: name.to_string(),
            op: MatchOp::Equal,
            value: value.to_string(),
            regex: None,
        }
    }

    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(value),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(value),
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }

    /// Whether the matcher accepts the empty value (a series without the label).
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_deduplicated_and_drop_empty_values() {
        let l = Labels::metric("up", [("b", "2"), ("a", "1"), ("b", "3"), ("c", "")]);
        assert_eq!(l.to_string(), r#"up{a="1", b="3"}"#);
        assert_eq!(l.get("a"), Some("1"));
        assert_eq!(l.get("c"), None);
        assert_eq!(l.without_name().name(), None);
    }

    #[test]
    fn regex_matchers_are_anchored() {
        let m = Matcher::new("code", MatchOp::Regex, "5..").expect("regex");
        assert!(m.matches("503"));
        assert!(!m.matches("1503"));
        let m = Matcher::new("code", MatchOp::NotRegex, "2.*").expect("regex");
        assert!(m.matches("404"));
        assert!(!m.matches("200"));
        assert!(m.matches_empty());
        assert!(Matcher::new("x", MatchOp::Regex, "(").is_err());
    }
}
