//! `.env` files: `KEY=VAL` lines with quotes, `export ` prefixes and comments, where a
//! value may reference the environment and the keys defined above it.

use crate::interpolate::interpolate;

/// Parse `.env` text. `outer` answers variables not defined in the file itself
/// (the process environment). Errors carry the 1-based line.
/// Variables in file order; `None` for a name written without `=`.
pub type Entries = Vec<(String, Option<String>)>;

pub fn parse(
    text: &str,
    outer: &dyn Fn(&str) -> Option<String>,
) -> Result<Entries, (usize, String)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((idx, raw)) = lines.next() {
        let line_no = idx + 1;
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
            return Err((line_no, format!("invalid variable name \"{key}\"")));
        }
        let Some(value) = value else {
            out.push((key.to_string(), None));
            continue;
        };
        let value = value.trim_start();
        let parsed = if let Some(rest) = value.strip_prefix('\'') {
            // Single quotes: literal, may span lines.
            let mut buf = rest.to_string();
            loop {
                if let Some(end) = buf.find('\'') {
                    buf.truncate(end);
                    break;
                }
                match lines.next() {
                    Some((_, l)) => {
                        buf.push('\n');
                        buf.push_str(l);
                    }
                    None => return Err((line_no, format!("unterminated quoted value for {key}"))),
                }
            }
            buf
        } else if let Some(rest) = value.strip_prefix('"') {
            let mut buf = rest.to_string();
            let body = loop {
                if let Some(end) = closing_double_quote(&buf) {
                    buf.truncate(end);
                    break buf;
                }
                match lines.next() {
                    Some((_, l)) => {
                        buf.push('\n');
                        buf.push_str(l);
                    }
                    None => return Err((line_no, format!("unterminated quoted value for {key}"))),
                }
            };
            let unescaped = unescape(&body);
            expand(&unescaped, &out, outer).map_err(|e| (line_no, e))?
        } else {
            let v = match value.find(" #") {
                Some(i) => &value[..i],
                None => value,
            };
            expand(v.trim_end(), &out, outer).map_err(|e| (line_no, e))?
        };
        out.retain(|(k, _)| k != key);
        out.push((key.to_string(), Some(parsed)));
    }
    Ok(out)
}

fn closing_double_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(i),
            _ => escaped = false,
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

fn expand(
    v: &str,
    earlier: &[(String, Option<String>)],
    outer: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let lookup = |name: &str| {
        outer(name).or_else(|| {
            earlier
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.clone())
        })
    };
    interpolate(v, &lookup, &mut |_| {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let text = "# c\nA=1\nexport B = two \nC='lit $A'\nD=\"q $A\\n\"\nE=${A}x # note\nF\nG=\"multi\nline\"\n";
        let got = parse(text, &|k| (k == "OS").then(|| "os".to_string())).unwrap();
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
        let got = parse("A=file\nB=$A", &|k| (k == "A").then(|| "env".to_string())).unwrap();
        assert_eq!(got[1], ("B".into(), Some("env".into())));
    }

    #[test]
    fn bad_lines() {
        assert_eq!(
            parse("A B=1", &|_| None).unwrap_err(),
            (1, "invalid variable name \"A B\"".into())
        );
        assert_eq!(
            parse("\nA='x", &|_| None).unwrap_err(),
            (2, "unterminated quoted value for A".into())
        );
    }
}
