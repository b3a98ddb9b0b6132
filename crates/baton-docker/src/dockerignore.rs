//! `.dockerignore` with Docker's rules: patterns relative to the context root, `*` and
//! `?` within one path segment, `**` across segments, `!` exceptions, last match wins.

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, PartialEq)]
struct Pattern {
    exclusion: bool,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Char(char),
    /// `*`: any run of characters but `/`.
    Star,
    /// `?`: one character but `/`.
    Question,
    /// `**` at the end: anything at all.
    Rest,
    /// `**` (or `**/`) elsewhere: any number of whole leading segments, maybe none.
    Dirs,
    /// `[...]`: (negated, ranges).
    Class(bool, Vec<(char, char)>),
}

impl DockerIgnore {
    /// Parses the file's text. Blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> DockerIgnore {
        let patterns = text
            .lines()
            .filter_map(|line| {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    return None;
                }
                let (exclusion, rest) = match line.strip_prefix('!') {
                    Some(rest) => (true, rest.trim()),
                    None => (false, line),
                };
                let cleaned = clean(rest);
                Some(Pattern {
                    exclusion,
                    tokens: compile(&cleaned),
                })
            })
            .collect();
        DockerIgnore { patterns }
    }

    /// Whether there is any `!` exception (then excluded folders must still be walked).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether `path` (relative to the context, `/`-separated) is left out of the build
    /// context. A pattern that matches a parent folder matches everything under it.
    pub fn is_excluded(&self, path: &str) -> bool {
        let path = clean(path);
        let parents: Vec<&str> = path.split('/').collect();
        let mut matched = false;
        for pattern in &self.patterns {
            // An exception can only undo a match, and an exclusion only make one.
            if pattern.exclusion != matched {
                continue;
            }
            let mut hit = pattern.matches(&path);
            if !hit && parents.len() > 1 {
                hit = (1..parents.len()).any(|i| pattern.matches(&parents[..i].join("/")));
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        let chars: Vec<char> = path.chars().collect();
        match_tokens(&self.tokens, &chars)
    }
}

/// Lexical clean like Go's `filepath.Clean`, plus dropping a leading `/`.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !path.starts_with('/') {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

fn compile(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(if i >= chars.len() {
                    Token::Rest
                } else {
                    Token::Dirs
                });
                continue;
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::Question),
            '\\' => {
                i += 1;
                tokens.push(Token::Char(chars.get(i).copied().unwrap_or('\\')));
            }
            '[' => match class(&chars[i + 1..]) {
                Some((token, used)) => {
                    tokens.push(token);
                    i += used + 1;
                    continue;
                }
                None => tokens.push(Token::Char('[')),
            },
            c => tokens.push(Token::Char(c)),
        }
        i += 1;
    }
    tokens
}

/// Parses the inside of `[...]`; returns the token and how many chars it used, `]` included.
fn class(chars: &[char]) -> Option<(Token, usize)> {
    let mut i = 0;
    // Docker hands classes to a regular expression: only `^` negates.
    let negated = chars.first() == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let mut c = *chars.get(i)?;
        if c == ']' && !first {
            return Some((Token::Class(negated, ranges), i + 1));
        }
        first = false;
        if c == '\\' {
            i += 1;
            c = *chars.get(i)?;
        }
        i += 1;
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|n| *n != ']') {
            let mut hi = chars[i + 1];
            i += 2;
            if hi == '\\' {
                hi = *chars.get(i)?;
                i += 1;
            }
            ranges.push((c, hi));
        } else {
            ranges.push((c, c));
        }
    }
}

fn match_tokens(tokens: &[Token], path: &[char]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return path.is_empty();
    };
    match first {
        Token::Char(c) => path.first() == Some(c) && match_tokens(rest, &path[1..]),
        Token::Question => {
            path.first().is_some_and(|c| *c != '/') && match_tokens(rest, &path[1..])
        }
        Token::Class(negated, ranges) => {
            path.first().is_some_and(|c| {
                *c != '/' && ranges.iter().any(|(lo, hi)| lo <= c && c <= hi) != *negated
            }) && match_tokens(rest, &path[1..])
        }
        Token::Star => {
            let run = path.iter().take_while(|c| **c != '/').count();
            (0..=run).any(|n| match_tokens(rest, &path[n..]))
        }
        Token::Rest => true,
        // `(.*/)?`: nothing, or any prefix ending in `/`.
        Token::Dirs => {
            match_tokens(rest, path)
                || (0..path.len())
                    .filter(|i| path[*i] == '/')
                    .any(|i| match_tokens(rest, &path[i + 1..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ignore: &str, cases: &[(&str, bool)]) {
        let di = DockerIgnore::parse(ignore);
        for (path, excluded) in cases {
            assert_eq!(di.is_excluded(path), *excluded, "{path} with {ignore:?}");
        }
    }

    #[test]
    fn plain_names_and_parents() {
        check(
            "# comment\n\nsecret.txt\nnode_modules\n",
            &[
                ("secret.txt", true),
                ("sub/secret.txt", false),
                ("node_modules", true),
                ("node_modules/a/b.js", true),
                ("src/main.rs", false),
            ],
        );
    }

    #[test]
    fn leading_slash_and_dots_are_cleaned() {
        check(
            "/build/\n./tmp/../out",
            &[("build/x", true), ("out", true), ("tmp", false)],
        );
    }

    #[test]
    fn star_stays_in_one_segment() {
        check(
            "*.log\ndocs/*.md",
            &[
                ("a.log", true),
                ("sub/a.log", false),
                ("docs/a.md", true),
                ("docs/sub/a.md", false),
            ],
        );
    }

    #[test]
    fn double_star_crosses_segments() {
        check(
            "**/*.tmp\nvendor/**\na/**/z",
            &[
                ("x.tmp", true),
                ("deep/er/x.tmp", true),
                ("vendor/a/b", true),
                ("a/z", true),
                ("a/b/c/z", true),
                ("a/b/c/y", false),
            ],
        );
    }

    #[test]
    fn exceptions_last_match_wins() {
        check(
            "*.md\n!README.md\nREADME*.md\n!README-keep.md",
            &[
                ("CHANGES.md", true),
                ("README.md", true),
                ("README-keep.md", false),
                ("main.rs", false),
            ],
        );
        check(
            "logs\n!logs/keep.txt",
            &[("logs/a.txt", true), ("logs/keep.txt", false)],
        );
        assert!(DockerIgnore::parse("a\n!a/b").has_exceptions());
    }

    #[test]
    fn question_and_classes() {
        check(
            "file?.txt\n[ab]*.c\n[^x]y\n\\*lit",
            &[
                ("file1.txt", true),
                ("file12.txt", false),
                ("a.c", true),
                ("c.c", false),
                ("zy", true),
                ("xy", false),
                ("*lit", true),
                ("alit", false),
            ],
        );
    }
}
