//! `.env` files: `KEY=VAL` lines with quotes, `export ` prefixes and comments, where a
//! value may reference the environment and the keys defined above it.

use std::collections::HashMap;

use crate::error::ErrorKind;
use crate::interpolate::interpolate;
use crate::limits::Budget;

/// Variables in file order; `None` for a name written without `=`.
pub type Entries = Vec<(String, Option<String>)>;

/// A problem at a 1-based line.
pub type Failure = (usize, ErrorKind, String);

/// Parse `.env` text. `outer` answers variables not defined in the file itself
/// (the process environment). Each value's text is charged to `budget`.
pub fn parse(
    text: &str,
    outer: &dyn Fn(&str) -> Option<String>,
    budget: &Budget,
) -> Result<Entries, Failure> {
    // Every definition in order, and where each name was last defined: a name defined
    // again moves to the end, and references see its latest value, in linear time.
    let mut all: Vec<(String, Option<String>)> = Vec::new();
    let mut latest: HashMap<String, usize> = HashMap::new();
    let mut lines = text.lines().enumerate();
    while let Some((idx, raw)) = lines.next() {
        let line_no = idx + 1;
        let syntax = |msg: String| (line_no, ErrorKind::Syntax, msg);
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v)),
            None => (line.trim(), None),
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(syntax(format!("invalid variable name \"{key}\"")));
        }
        let parsed = match value {
            None => None,
            Some(value) => {
                let value = value.trim_start();
                let unterminated = || syntax(format!("unterminated quoted value for {key}"));
                let expand = |v: &str| {
                    let lookup = |name: &str| {
                        outer(name).or_else(|| {
                            latest
                                .get(name)
                                .and_then(|i| all.get(*i))
                                .and_then(|(_, v)| v.clone())
                        })
                    };
                    interpolate(v, &lookup, &mut |_| {}, budget.text_left())
                        .map_err(|(kind, msg)| (line_no, kind, msg))
                };
                let v = if let Some(rest) = value.strip_prefix('\'') {
                    // Single quotes: literal, may span lines.
                    let mut buf = String::new();
                    let mut part = rest;
                    loop {
                        if let Some(end) = part.find('\'') {
                            buf.push_str(&part[..end]);
                            break;
                        }
                        buf.push_str(part);
                        match lines.next() {
                            Some((_, l)) => {
                                buf.push('\n');
                                part = l;
                            }
                            None => return Err(unterminated()),
                        }
                    }
                    buf
                } else if let Some(rest) = value.strip_prefix('"') {
                    // Double quotes: escapes, may span lines; only the new line is scanned.
                    let mut buf = String::new();
                    let mut escaped = false;
                    let mut part = rest;
                    loop {
                        if let Some(end) = closing_double_quote(part, &mut escaped) {
                            buf.push_str(&part[..end]);
                            break;
                        }
                        buf.push_str(part);
                        match lines.next() {
                            Some((_, l)) => {
                                buf.push('\n');
                                escaped = false;
                                part = l;
                            }
                            None => return Err(unterminated()),
                        }
                    }
                    expand(&unescape(&buf))?
                } else {
                    let v = match value.find(" #") {
                        Some(i) => &value[..i],
                        None => value,
                    };
                    expand(v.trim_end())?
                };
                budget
                    .text(v.len())
                    .map_err(|m| (line_no, ErrorKind::Limit, m))?;
                Some(v)
            }
        };
        latest.insert(key.to_string(), all.len());
        all.push((key.to_string(), parsed));
    }
    Ok(all
        .into_iter()
        .enumerate()
        .filter(|(i, (k, _))| latest.get(k) == Some(i))
        .map(|(_, e)| e)
        .collect())
}

/// Where the closing `"` is in `s`, `escaped` carrying a backslash over from before.
fn closing_double_quote(s: &str, escaped: &mut bool) -> Option<usize> {
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !*escaped => *escaped = true,
            '"' if !*escaped => return Some(i),
            _ => *escaped = false,
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let b = Budget::default();
        let text = "# c\nA=1\nexport B = two \nC='lit $A'\nD=\"q $A\\n\"\nE=${A}x # note\nF\nG=\"multi\nline\"\n";
        let got = parse(text, &|k| (k == "OS").then(|| "os".to_string()), &b).unwrap();
        let want: Vec<(String, Option<String>)> = vec![
            ("A".into(), Some("1".into())),
            ("B".into(), Some("two".into())),
            ("C".into(), Some("lit $A".into())),
            ("D".into(), Some("q 1\n".into())),
            ("E".into(), Some("1x".into())),
            ("F".into(), None),
            ("G".into(), Some("multi\nline".into())),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn environment_wins_in_references() {
        let got = parse(
            "A=file\nB=$A",
            &|k| (k == "A").then(|| "env".to_string()),
            &Budget::default(),
        )
        .unwrap();
        assert_eq!(got[1], ("B".into(), Some("env".into())));
    }

    #[test]
    fn bad_lines() {
        assert_eq!(
            parse("A B=1", &|_| None, &Budget::default()).unwrap_err(),
            (1, ErrorKind::Syntax, "invalid variable name \"A B\"".into())
        );
        assert_eq!(
            parse("\nA='x", &|_| None, &Budget::default()).unwrap_err(),
            (
                2,
                ErrorKind::Syntax,
                "unterminated quoted value for A".into()
            )
        );
    }

    #[test]
    fn redefinitions_move_to_the_end_and_references_see_the_latest() {
        let got = parse("A=1\nB=2\nA=3\nC=$A\n", &|_| None, &Budget::default()).unwrap();
        let names: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["B", "A", "C"]);
        assert_eq!(got[2].1.as_deref(), Some("3"));
        let got = parse("A=\"x\\\"\ny\"\n", &|_| None, &Budget::default()).unwrap();
        assert_eq!(got[0].1.as_deref(), Some("x\"\ny"));
    }

    #[test]
    fn doubling_references_are_bounded() {
        let mut text = String::from("A0=0123456789abcdef\n");
        for i in 1..64 {
            text.push_str(&format!("A{i}=$A{p}$A{p}\n", p = i - 1));
        }
        let (line, kind, _) = parse(&text, &|_| None, &Budget::default()).unwrap_err();
        assert_eq!(kind, ErrorKind::Limit);
        assert!(line < 30, "stopped at line {line}");
    }
}
