//! Variable interpolation in scalar values: `${VAR}`, `$VAR`, the `:-`, `-`, `:?`, `?`,
//! `:+`, `+` operators with nested defaults, and `$$` for a literal dollar.

/// Substitute variables in `input`. `lookup` answers a variable's value; `missing` is
/// told the name of each variable used with no value and no default (Compose warns).
pub fn interpolate(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    missing: &mut dyn FnMut(&str),
) -> Result<String, String> {
    if !input.contains('$') {
        return Ok(input.to_string());
    }
    let chars: Vec<char> = input.chars().collect();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                let end = matching_brace(&chars, i + 2).ok_or_else(|| {
                    format!("invalid interpolation format in \"{input}\": unclosed \"${{\"")
                })?;
                let inner: String = chars[i + 2..end].iter().collect();
                out.push_str(&braced(&inner, input, lookup, missing)?);
                i = end + 1;
            }
            Some(&n) if n == '_' || n.is_ascii_alphabetic() => {
                let mut j = i + 1;
                while j < chars.len() && (chars[j] == '_' || chars[j].is_ascii_alphanumeric()) {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().collect();
                match lookup(&name) {
                    Some(v) => out.push_str(&v),
                    None => missing(&name),
                }
                i = j;
            }
            _ => {
                // A lone `$` is kept as written.
                out.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Index of the `}` closing a `${` whose content starts at `start`.
fn matching_brace(chars: &[char], start: usize) -> Option<usize> {
    let mut depth = 1usize;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '$' if chars.get(i + 1) == Some(&'{') => {
                depth += 1;
                i += 2;
                continue;
            }
            '$' if chars.get(i + 1) == Some(&'$') => {
                i += 2;
                continue;
            }
            '}' => {
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

fn braced(
    inner: &str,
    whole: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    missing: &mut dyn FnMut(&str),
) -> Result<String, String> {
    let name_len = inner
        .char_indices()
        .find(|(_, c)| !(*c == '_' || c.is_ascii_alphanumeric()))
        .map(|(i, _)| i)
        .unwrap_or(inner.len());
    let (name, rest) = inner.split_at(name_len);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "invalid interpolation format for \"{whole}\": \"${{{inner}}}\""
        ));
    }
    let value = lookup(name);
    let set = value.is_some();
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    let (op, word) = [":-", ":?", ":+", "-", "?", "+"]
        .iter()
        .find_map(|op| rest.strip_prefix(op).map(|w| (*op, w)))
        .unwrap_or(("", rest));
    if op.is_empty() && !rest.is_empty() {
        return Err(format!(
            "invalid interpolation format for \"{whole}\": \"${{{inner}}}\""
        ));
    }
    let mut word_value = || interpolate(word, lookup, missing);
    Ok(match op {
        "" => match value {
            Some(v) => v,
            None => {
                missing(name);
                String::new()
            }
        },
        ":-" if non_empty => value.unwrap_or_default(),
        ":-" => word_value()?,
        "-" if set => value.unwrap_or_default(),
        "-" => word_value()?,
        ":?" if non_empty => value.unwrap_or_default(),
        "?" if set => value.unwrap_or_default(),
        ":?" | "?" => {
            let msg = word_value()?;
            return Err(if msg.is_empty() {
                format!("required variable {name} is missing a value")
            } else {
                format!("required variable {name} is missing a value: {msg}")
            });
        }
        ":+" if non_empty => word_value()?,
        "+" if set => word_value()?,
        _ => String::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn run(input: &str) -> Result<String, String> {
        let env: BTreeMap<&str, &str> = [("A", "a"), ("EMPTY", ""), ("B", "b")].into();
        let lookup = |k: &str| env.get(k).map(|v| v.to_string());
        interpolate(input, &lookup, &mut |_| {})
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
        let out = interpolate("${X} $Y ${Z:-z}", &|_| None, &mut |n| {
            seen.push(n.to_string())
        })
        .unwrap();
        assert_eq!(out, "  z");
        assert_eq!(seen, ["X", "Y"]);
    }
}
