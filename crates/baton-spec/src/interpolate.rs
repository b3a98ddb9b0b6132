//! Variable interpolation in scalar values: `${VAR}`, `$VAR`, the `:-`, `-`, `:?`, `?`,
//! `:+`, `+` operators with nested defaults, and `$$` for a literal dollar.

use crate::error::ErrorKind;
use crate::limits::MAX_INTERPOLATION_DEPTH;

/// Why a value could not be interpolated: [`ErrorKind::Interpolation`] for a malformed
/// `${…}` or a required variable, [`ErrorKind::Limit`] for too deep or too long.
pub type Failure = (ErrorKind, String);

/// Substitute variables in `input`. `lookup` answers a variable's value; `missing` is
/// told the name of each variable used with no value and no default (Compose warns).
/// The result may be at most `max_len` bytes long.
pub fn interpolate(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    missing: &mut dyn FnMut(&str),
    max_len: usize,
) -> Result<String, Failure> {
    let mut run = Run {
        lookup,
        missing,
        max_len,
    };
    run.value(input, 0)
}

struct Run<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    missing: &'a mut dyn FnMut(&str),
    max_len: usize,
}

impl Run<'_> {
    /// `input` interpolated; `depth` counts the `${…}` it is nested in.
    fn value(&mut self, input: &str, depth: usize) -> Result<String, Failure> {
        if !input.contains('$') {
            return self.fits(input.to_string());
        }
        if depth >= MAX_INTERPOLATION_DEPTH {
            return Err((
                ErrorKind::Limit,
                format!(
                    "invalid interpolation format in \"{}\": \"${{\" nested deeper than {MAX_INTERPOLATION_DEPTH} levels",
                    shown(input)
                ),
            ));
        }
        // `$`, `{` and `}` are ASCII, so byte positions found here are character
        // boundaries; text between them is copied a slice at a time.
        let bytes = input.as_bytes();
        let mut out = String::with_capacity(input.len().min(self.max_len));
        let mut i = 0;
        while i < bytes.len() {
            let Some(off) = input.get(i..).and_then(|rest| rest.find('$')) else {
                out.push_str(input.get(i..).unwrap_or_default());
                break;
            };
            out.push_str(input.get(i..i + off).unwrap_or_default());
            i += off;
            match bytes.get(i + 1) {
                Some(b'$') => {
                    out.push('$');
                    i += 2;
                }
                Some(b'{') => {
                    let end = matching_brace(bytes, i + 2).ok_or_else(|| {
                        (
                            ErrorKind::Interpolation,
                            format!(
                                "invalid interpolation format in \"{}\": unclosed \"${{\"",
                                shown(input)
                            ),
                        )
                    })?;
                    let inner = input.get(i + 2..end).unwrap_or_default();
                    let v = self.braced(inner, input, depth)?;
                    out.push_str(&v);
                    i = end + 1;
                }
                Some(&n) if n == b'_' || n.is_ascii_alphabetic() => {
                    let mut j = i + 1;
                    while j < bytes.len() && (bytes[j] == b'_' || bytes[j].is_ascii_alphanumeric())
                    {
                        j += 1;
                    }
                    let name = input.get(i + 1..j).unwrap_or_default();
                    match (self.lookup)(name) {
                        Some(v) => out.push_str(&v),
                        None => (self.missing)(name),
                    }
                    i = j;
                }
                _ => {
                    // A lone `$` is kept as written.
                    out.push('$');
                    i += 1;
                }
            }
            if out.len() > self.max_len {
                return Err(self.too_long());
            }
        }
        self.fits(out)
    }

    fn fits(&self, s: String) -> Result<String, Failure> {
        if s.len() > self.max_len {
            return Err(self.too_long());
        }
        Ok(s)
    }

    fn too_long(&self) -> Failure {
        (
            ErrorKind::Limit,
            format!(
                "interpolation makes the value longer than {} bytes, what is left of the text limit",
                self.max_len
            ),
        )
    }

    fn braced(&mut self, inner: &str, whole: &str, depth: usize) -> Result<String, Failure> {
        let name_len = inner
            .char_indices()
            .find(|(_, c)| !(*c == '_' || c.is_ascii_alphanumeric()))
            .map(|(i, _)| i)
            .unwrap_or(inner.len());
        let (name, rest) = inner.split_at(name_len);
        let malformed = || {
            (
                ErrorKind::Interpolation,
                format!(
                    "invalid interpolation format for \"{}\": \"${{{}}}\"",
                    shown(whole),
                    shown(inner)
                ),
            )
        };
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(malformed());
        }
        let value = (self.lookup)(name);
        let set = value.is_some();
        let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
        let (op, word) = [":-", ":?", ":+", "-", "?", "+"]
            .iter()
            .find_map(|op| rest.strip_prefix(op).map(|w| (*op, w)))
            .unwrap_or(("", rest));
        if op.is_empty() && !rest.is_empty() {
            return Err(malformed());
        }
        Ok(match op {
            "" => match value {
                Some(v) => v,
                None => {
                    (self.missing)(name);
                    String::new()
                }
            },
            ":-" if non_empty => value.unwrap_or_default(),
            ":-" => self.value(word, depth + 1)?,
            "-" if set => value.unwrap_or_default(),
            "-" => self.value(word, depth + 1)?,
            ":?" if non_empty => value.unwrap_or_default(),
            "?" if set => value.unwrap_or_default(),
            ":?" | "?" => {
                let msg = self.value(word, depth + 1)?;
                return Err((
                    ErrorKind::Interpolation,
                    if msg.is_empty() {
                        format!("required variable {name} is missing a value")
                    } else {
                        format!(
                            "required variable {name} is missing a value: {}",
                            shown(&msg)
                        )
                    },
                ));
            }
            ":+" if non_empty => self.value(word, depth + 1)?,
            "+" if set => self.value(word, depth + 1)?,
            _ => String::new(),
        })
    }
}

/// Index of the `}` closing a `${` whose content starts at `start`.
fn matching_brace(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 1usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 2;
                continue;
            }
            b'$' if bytes.get(i + 1) == Some(&b'$') => {
                i += 2;
                continue;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// A value as messages quote it: whole when short, else its start.
fn shown(s: &str) -> String {
    const SHOWN_CHARS: usize = 80;
    match s.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn run(input: &str) -> Result<String, String> {
        let env: BTreeMap<&str, &str> = [("A", "a"), ("EMPTY", ""), ("B", "b")].into();
        let lookup = |k: &str| env.get(k).map(|v| v.to_string());
        interpolate(input, &lookup, &mut |_| {}, usize::MAX).map_err(|e| e.1)
    }

    #[test]
    fn plain_forms() {
        assert_eq!(run("x${A}y $A-$B.").unwrap(), "xay a-b.");
        assert_eq!(run("$$A $${A}").unwrap(), "$A ${A}");
        assert_eq!(run("${UNSET}|$UNSET|").unwrap(), "||");
        assert_eq!(run("cost: 5$").unwrap(), "cost: 5$");
    }

    #[test]
    fn defaults_and_alternatives() {
        assert_eq!(run("${UNSET:-d}").unwrap(), "d");
        assert_eq!(run("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(run("${EMPTY-d}").unwrap(), "");
        assert_eq!(run("${UNSET-d}").unwrap(), "d");
        assert_eq!(run("${A:+alt}").unwrap(), "alt");
        assert_eq!(run("${EMPTY:+alt}").unwrap(), "");
        assert_eq!(run("${EMPTY+alt}").unwrap(), "alt");
        assert_eq!(run("${UNSET+alt}").unwrap(), "");
        assert_eq!(run("${UNSET:-${B}}").unwrap(), "b");
        assert_eq!(run("${UNSET:-${NOPE:-deep}}/x").unwrap(), "deep/x");
        assert_eq!(run("${UNSET:-a b:c}").unwrap(), "a b:c");
    }

    #[test]
    fn required() {
        assert_eq!(run("${A:?no}").unwrap(), "a");
        assert_eq!(run("${EMPTY?no}").unwrap(), "");
        assert_eq!(
            run("${EMPTY:?set it}").unwrap_err(),
            "required variable EMPTY is missing a value: set it"
        );
        assert_eq!(
            run("${UNSET?}").unwrap_err(),
            "required variable UNSET is missing a value"
        );
    }

    #[test]
    fn malformed() {
        assert_eq!(
            run("${A").unwrap_err(),
            "invalid interpolation format in \"${A\": unclosed \"${\""
        );
        assert_eq!(
            run("${A B}").unwrap_err(),
            "invalid interpolation format for \"${A B}\": \"${A B}\""
        );
    }

    #[test]
    fn missing_is_reported() {
        let mut seen = Vec::new();
        let out = interpolate(
            "${X} $Y ${Z:-z}",
            &|_| None,
            &mut |n| seen.push(n.to_string()),
            usize::MAX,
        )
        .unwrap();
        assert_eq!(out, "  z");
        assert_eq!(seen, ["X", "Y"]);
    }

    #[test]
    fn nesting_and_length_are_bounded() {
        let nested = |n: usize| format!("{}x{}", "${U:-".repeat(n), "}".repeat(n));
        assert_eq!(run(&nested(MAX_INTERPOLATION_DEPTH)).unwrap(), "x");
        assert!(run(&nested(MAX_INTERPOLATION_DEPTH + 1)).is_err());
        let deep = nested(10_000);
        let none = |_: &str| None;
        let e = interpolate(&deep, &none, &mut |_| {}, usize::MAX).unwrap_err();
        assert_eq!(e.0, ErrorKind::Limit);
        assert!(e.1.ends_with("nested deeper than 16 levels"), "{}", e.1);
        assert!(e.1.len() < 200, "the value is shortened in the message");
        let long = |_: &str| Some("y".repeat(1000));
        let e = interpolate("$A$A$A", &long, &mut |_| {}, 2500).unwrap_err();
        assert_eq!(e.0, ErrorKind::Limit);
        assert_eq!(
            interpolate("$A$A", &long, &mut |_| {}, 2500).unwrap().len(),
            2000
        );
    }
}
