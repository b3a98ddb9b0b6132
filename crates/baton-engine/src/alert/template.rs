//! Alert templates: the subset of Prometheus's Go templates that annotations and rule labels
//! use, parsed once (so the file is checked when read) and expanded with an alert's data.
//!
//! Our own small implementation rather than minijinja: Prometheus's syntax is Go's
//! (`$labels.x`, `humanize $value`, `$value | humanize`), which a Jinja engine does not
//! read, and files written for Prometheus should work as they are. Supported:
//! - text, with `{{- ` / ` -}}` trimming the whitespace before / after, and `{{/* … */}}`;
//! - `$value` / `.Value` (the sample's value), `$labels` / `.Labels` and `$labels.NAME` /
//!   `.Labels.NAME` (a missing label is empty, as Prometheus's `missingkey=zero`);
//! - string literals (`"…"` with Go escapes, `` `…` ``) and numbers;
//! - calls `f arg…`, pipes `x | f arg` (the value goes last), parentheses;
//! - functions `humanize`, `humanize1024`, `humanizePercentage`, `humanizeDuration`,
//!   `printf` (verbs `%v %s %d %f %e %g %q %%`, with width, precision and `-`/`+`/`0`),
//!   `toUpper`, `toLower`, `title`.
//!
//! Not supported (an error when the file is read): `if`/`range`/`with`/`define`,
//! variables other than `$value` and `$labels`, `query` (the metrics crate would run it)
//! and the time functions.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::Labels;

/// A parsed template; it keeps its source (what serialises).
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

/// Why a template does not parse or expand; `at` is a byte offset in the source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template: at byte {at}: {message}")]
    Parse { at: usize, message: String },
    #[error("template: {0}")]
    Expand(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Action(Pipeline),
}

#[derive(Debug, Clone, PartialEq)]
struct Pipeline {
    commands: Vec<Command>,
}

#[derive(Debug, Clone, PartialEq)]
enum Command {
    Operand(Operand),
    Call(Func, Vec<Operand>),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Value,
    Labels,
    Label(String),
    Str(String),
    Num(f64),
    Group(Box<Pipeline>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Humanize,
    Humanize1024,
    HumanizePercentage,
    HumanizeDuration,
    Printf,
    ToUpper,
    ToLower,
    Title,
}

const FUNCS: &[(&str, Func)] = &[
    ("humanize", Func::Humanize),
    ("humanize1024", Func::Humanize1024),
    ("humanizePercentage", Func::HumanizePercentage),
    ("humanizeDuration", Func::HumanizeDuration),
    ("printf", Func::Printf),
    ("toUpper", Func::ToUpper),
    ("toLower", Func::ToLower),
    ("title", Func::Title),
];

impl Template {
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        Ok(Template {
            source: source.to_string(),
            parts: parse(source)?,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Expands the template for one alert: its labels (as the expression returned them)
    /// and its value.
    pub fn render(&self, labels: &Labels, value: f64) -> Result<String, TemplateError> {
        let data = Data { labels, value };
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Action(p) => out.push_str(&data.pipeline(p)?.text()),
            }
        }
        Ok(out)
    }

    /// `render`, or the error written in place as Prometheus does
    /// (`<error expanding template: …>`), so a bad value never loses the alert.
    pub fn render_or_error(&self, labels: &Labels, value: f64) -> String {
        self.render(labels, value)
            .unwrap_or_else(|e| format!("<error expanding template: {e}>"))
    }
}

impl Serialize for Template {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Template, D::Error> {
        let source = String::deserialize(d)?;
        Template::parse(&source).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------- parsing

fn parse(src: &str) -> Result<Vec<Part>, TemplateError> {
    let mut parts = Vec::new();
    let mut rest = 0usize;
    let mut trim_next = false;
    while let Some(open) = src[rest..].find("{{").map(|i| rest + i) {
        let mut text = &src[rest..open];
        if trim_next {
            text = text.trim_start();
        }
        let body_start = open + 2;
        let trim_left = src[body_start..].starts_with("- ")
            || src[body_start..].starts_with("-\t")
            || src[body_start..].starts_with("-\n");
        if trim_left {
            text = text.trim_end();
        }
        if !text.is_empty() {
            parts.push(Part::Text(text.to_string()));
        }
        let close = find_close(src, body_start)?;
        let mut body_end = close;
        let body_from = if trim_left {
            body_start + 1
        } else {
            body_start
        };
        trim_next = false;
        let raw = &src[body_from..close];
        if raw.ends_with(" -") || raw.ends_with("\t-") || raw.ends_with("\n-") {
            trim_next = true;
            body_end -= 1;
        }
        let body = &src[body_from..body_end];
        let trimmed = body.trim();
        if !(trimmed.starts_with("/*") && trimmed.ends_with("*/")) {
            let tokens = lex(body, body_from)?;
            let mut p = Parser {
                tokens: &tokens,
                pos: 0,
                end: body_end,
            };
            let pipeline = p.pipeline()?;
            if let Some(t) = p.tokens.get(p.pos) {
                return Err(parse_error(
                    t.at,
                    format!("unexpected {} after the expression", t.kind.describe()),
                ));
            }
            parts.push(Part::Action(pipeline));
        }
        rest = close + 2;
    }
    let mut text = &src[rest..];
    if trim_next {
        text = text.trim_start();
    }
    if !text.is_empty() {
        parts.push(Part::Text(text.to_string()));
    }
    Ok(parts)
}

fn parse_error(at: usize, message: impl Into<String>) -> TemplateError {
    TemplateError::Parse {
        at,
        message: message.into(),
    }
}

/// The `}}` closing the action that starts at `from`, skipping quoted strings.
fn find_close(src: &str, from: usize) -> Result<usize, TemplateError> {
    let bytes = src.as_bytes();
    let mut i = from;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == b'\\' && q == b'"' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
            }
            None => {
                if b == b'"' || b == b'`' {
                    quote = Some(b);
                } else if b == b'}' && bytes.get(i + 1) == Some(&b'}') {
                    return Ok(i);
                }
            }
        }
        i += 1;
    }
    Err(parse_error(from - 2, "unclosed action: no \"}}\""))
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    at: usize,
    kind: Tok,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// `$name` or `$name.a.b`: the name and the fields.
    Var(String, Vec<String>),
    /// `.A.b`: the fields (`.` alone: none).
    Field(Vec<String>),
    Ident(String),
    Str(String),
    Num(f64),
    Pipe,
    Open,
    Close,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Var(n, _) => format!("${n}"),
            Tok::Field(f) => format!(".{}", f.join(".")),
            Tok::Ident(i) => format!("\"{i}\""),
            Tok::Str(_) => "a string".into(),
            Tok::Num(_) => "a number".into(),
            Tok::Pipe => "\"|\"".into(),
            Tok::Open => "\"(\"".into(),
            Tok::Close => "\")\"".into(),
        }
    }
}

fn lex(body: &str, offset: usize) -> Result<Vec<Token>, TemplateError> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = body.char_indices().collect();
    let mut i = 0;
    let word = |i: &mut usize| -> String {
        let mut s = String::new();
        while let Some(&(_, c)) = chars.get(*i) {
            if c.is_alphanumeric() || c == '_' {
                s.push(c);
                *i += 1;
            } else {
                break;
            }
        }
        s
    };
    let fields = |i: &mut usize| -> Result<Vec<String>, TemplateError> {
        let mut out = Vec::new();
        while let Some(&(at, '.')) = chars.get(*i) {
            *i += 1;
            let w = word(i);
            if w.is_empty() {
                return Err(parse_error(offset + at, "expected a name after \".\""));
            }
            out.push(w);
        }
        Ok(out)
    };
    while let Some(&(at, c)) = chars.get(i) {
        let at_abs = offset + at;
        match c {
            c if c.is_whitespace() => i += 1,
            '|' => {
                out.push(Token {
                    at: at_abs,
                    kind: Tok::Pipe,
                });
                i += 1;
            }
            '(' | ')' => {
                out.push(Token {
                    at: at_abs,
                    kind: if c == '(' { Tok::Open } else { Tok::Close },
                });
                i += 1;
            }
            '$' => {
                i += 1;
                let name = word(&mut i);
                let f = fields(&mut i)?;
                out.push(Token {
                    at: at_abs,
                    kind: Tok::Var(name, f),
                });
            }
            '.' if chars.get(i + 1).is_none_or(|&(_, n)| !n.is_ascii_digit()) => {
                let f = fields(&mut i)?;
                out.push(Token {
                    at: at_abs,
                    kind: Tok::Field(f),
                });
            }
            '"' => {
                i += 1;
                let mut s = String::new();
                loop {
                    let Some(&(_, c)) = chars.get(i) else {
                        return Err(parse_error(at_abs, "unterminated string"));
                    };
                    i += 1;
                    match c {
                        '"' => break,
                        '\\' => {
                            let Some(&(_, e)) = chars.get(i) else {
                                return Err(parse_error(at_abs, "unterminated string"));
                            };
                            i += 1;
                            s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                '\\' => '\\',
                                '"' => '"',
                                other => {
                                    return Err(parse_error(
                                        at_abs,
                                        format!("unknown escape \"\\{other}\" in a string"),
                                    ))
                                }
                            });
                        }
                        c => s.push(c),
                    }
                }
                out.push(Token {
                    at: at_abs,
                    kind: Tok::Str(s),
                });
            }
            '`' => {
                i += 1;
                let mut s = String::new();
                loop {
                    let Some(&(_, c)) = chars.get(i) else {
                        return Err(parse_error(at_abs, "unterminated raw string"));
                    };
                    i += 1;
                    if c == '`' {
                        break;
                    }
                    s.push(c);
                }
                out.push(Token {
                    at: at_abs,
                    kind: Tok::Str(s),
                });
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                let start = i;
                i += 1;
                while let Some(&(_, c)) = chars.get(i) {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                        i += 1;
                    } else {
                        break;
                    }
                }
                let text: String = chars[start..i].iter().map(|&(_, c)| c).collect();
                let n = text
                    .replace('_', "")
                    .parse::<f64>()
                    .map_err(|_| parse_error(at_abs, format!("bad number \"{text}\"")))?;
                out.push(Token {
                    at: at_abs,
                    kind: Tok::Num(n),
                });
            }
            c if c.is_alphabetic() || c == '_' => {
                let w = word(&mut i);
                out.push(Token {
                    at: at_abs,
                    kind: Tok::Ident(w),
                });
            }
            other => {
                return Err(parse_error(
                    at_abs,
                    format!("unexpected \"{other}\" in an action"),
                ))
            }
        }
    }
    Ok(out)
}

struct Parser<'t> {
    tokens: &'t [Token],
    pos: usize,
    /// Where the action ends, for errors at its end.
    end: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn pipeline(&mut self) -> Result<Pipeline, TemplateError> {
        let mut commands = vec![self.command()?];
        while let Some(Token {
            kind: Tok::Pipe, ..
        }) = self.peek()
        {
            self.pos += 1;
            let at = self.peek().map_or(self.end, |t| t.at);
            let c = self.command()?;
            if matches!(c, Command::Operand(_)) {
                return Err(parse_error(
                    at,
                    "after \"|\" comes a function, like humanize",
                ));
            }
            commands.push(c);
        }
        Ok(Pipeline { commands })
    }

    fn command(&mut self) -> Result<Command, TemplateError> {
        let Some(first) = self.peek().cloned() else {
            return Err(parse_error(
                self.end,
                "empty action: expected an expression",
            ));
        };
        if let Tok::Ident(name) = &first.kind {
            self.pos += 1;
            let func = match FUNCS.iter().find(|(n, _)| n == name) {
                Some((_, f)) => *f,
                None => {
                    let known: Vec<&str> = FUNCS.iter().map(|(n, _)| *n).collect();
                    let message = match name.as_str() {
                        "if" | "else" | "end" | "range" | "with" | "define" | "template"
                        | "block" => format!(
                            "\"{name}\" is not supported: only expressions like {{{{ $value | humanize }}}}"
                        ),
                        _ => format!(
                            "unknown function \"{name}\"{} (known: {})",
                            baton_spec::suggest(name, known.iter().copied())
                                .map(|h| format!(" ({h})"))
                                .unwrap_or_default(),
                            known.join(", ")
                        ),
                    };
                    return Err(parse_error(first.at, message));
                }
            };
            let mut args = Vec::new();
            while let Some(t) = self.peek() {
                if matches!(t.kind, Tok::Pipe | Tok::Close) {
                    break;
                }
                args.push(self.operand()?);
            }
            return Ok(Command::Call(func, args));
        }
        let operand = self.operand()?;
        if let Some(t) = self.peek() {
            if !matches!(t.kind, Tok::Pipe | Tok::Close) {
                return Err(parse_error(
                    t.at,
                    format!(
                        "{} follows a value that is not a function",
                        t.kind.describe()
                    ),
                ));
            }
        }
        Ok(Command::Operand(operand))
    }

    fn operand(&mut self) -> Result<Operand, TemplateError> {
        let Some(t) = self.peek().cloned() else {
            return Err(parse_error(self.end, "expected a value"));
        };
        self.pos += 1;
        match t.kind {
            Tok::Var(name, fields) => variable(t.at, &name, &fields),
            Tok::Field(fields) => {
                // The lexer never makes a field token without a name.
                let (name, rest) = match fields.split_first() {
                    Some((first, rest)) => (first.as_str(), rest),
                    None => ("", &[][..]),
                };
                match name {
                    "Value" => variable(t.at, "value", rest),
                    "Labels" => variable(t.at, "labels", rest),
                    other => Err(parse_error(
                        t.at,
                        format!("unknown field \".{other}\" (known: .Value, .Labels)"),
                    )),
                }
            }
            Tok::Str(s) => Ok(Operand::Str(s)),
            Tok::Num(n) => Ok(Operand::Num(n)),
            Tok::Open => {
                let p = self.pipeline()?;
                match self.peek() {
                    Some(Token {
                        kind: Tok::Close, ..
                    }) => {
                        self.pos += 1;
                        Ok(Operand::Group(Box::new(p)))
                    }
                    _ => Err(parse_error(t.at, "unclosed \"(\"")),
                }
            }
            Tok::Ident(name) => Err(parse_error(
                t.at,
                format!(
                    "\"{name}\" as an argument: put a call in parentheses, like (humanize $value)"
                ),
            )),
            Tok::Pipe | Tok::Close => Err(parse_error(
                t.at,
                format!("expected a value, found {}", t.kind.describe()),
            )),
        }
    }
}

fn variable(at: usize, name: &str, fields: &[String]) -> Result<Operand, TemplateError> {
    match (name, fields) {
        ("value", []) => Ok(Operand::Value),
        ("labels", []) => Ok(Operand::Labels),
        ("labels", [label]) => Ok(Operand::Label(label.clone())),
        ("value" | "labels", _) => Err(parse_error(
            at,
            format!("${name}.{} has no such field", fields.join(".")),
        )),
        _ => Err(parse_error(
            at,
            format!("unknown variable \"${name}\" (known: $value, $labels)"),
        )),
    }
}

// ---------------------------------------------------------------- expanding

struct Data<'a> {
    labels: &'a Labels,
    value: f64,
}

#[derive(Debug, Clone)]
enum V {
    Str(String),
    Num(f64),
    Map(Labels),
}

impl V {
    fn text(&self) -> String {
        match self {
            V::Str(s) => s.clone(),
            V::Num(n) => go_v(*n),
            V::Map(m) => {
                let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("map[{}]", inner.join(" "))
            }
        }
    }

    fn number(&self, func: &str) -> Result<f64, TemplateError> {
        match self {
            V::Num(n) => Ok(*n),
            V::Str(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| TemplateError::Expand(format!("{func}: \"{s}\" is not a number"))),
            V::Map(_) => Err(TemplateError::Expand(format!(
                "{func}: expected a number, found the labels"
            ))),
        }
    }
}

impl Data<'_> {
    fn pipeline(&self, p: &Pipeline) -> Result<V, TemplateError> {
        let mut last: Option<V> = None;
        for c in &p.commands {
            last = Some(match c {
                Command::Operand(o) => self.operand(o)?,
                Command::Call(f, args) => {
                    let mut values = args
                        .iter()
                        .map(|a| self.operand(a))
                        .collect::<Result<Vec<_>, _>>()?;
                    values.extend(last.take());
                    call(*f, &values)?
                }
            });
        }
        last.ok_or_else(|| TemplateError::Expand("empty pipeline".into()))
    }

    fn operand(&self, o: &Operand) -> Result<V, TemplateError> {
        Ok(match o {
            Operand::Value => V::Num(self.value),
            Operand::Labels => V::Map(self.labels.clone()),
            Operand::Label(l) => V::Str(self.labels.get(l).cloned().unwrap_or_default()),
            Operand::Str(s) => V::Str(s.clone()),
            Operand::Num(n) => V::Num(*n),
            Operand::Group(p) => self.pipeline(p)?,
        })
    }
}

fn call(f: Func, args: &[V]) -> Result<V, TemplateError> {
    let name = FUNCS
        .iter()
        .find(|(_, g)| *g == f)
        .map_or("function", |(n, _)| *n);
    let one = || -> Result<&V, TemplateError> {
        match args {
            [v] => Ok(v),
            _ => Err(TemplateError::Expand(format!(
                "{name} takes one argument, got {}",
                args.len()
            ))),
        }
    };
    Ok(match f {
        Func::Humanize => V::Str(humanize(one()?.number(name)?)),
        Func::Humanize1024 => V::Str(humanize_1024(one()?.number(name)?)),
        Func::HumanizePercentage => V::Str(humanize_percentage(one()?.number(name)?)),
        Func::HumanizeDuration => V::Str(humanize_duration(one()?.number(name)?)),
        Func::ToUpper => V::Str(one()?.text().to_uppercase()),
        Func::ToLower => V::Str(one()?.text().to_lowercase()),
        Func::Title => V::Str(title(&one()?.text())),
        Func::Printf => match args.split_first() {
            Some((V::Str(format), rest)) => V::Str(printf(format, rest)?),
            _ => {
                return Err(TemplateError::Expand(
                    "printf takes a format string first".into(),
                ))
            }
        },
    })
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    out
}

/// Go's `fmt.Sprintf` for the verbs alert templates use.
fn printf(format: &str, args: &[V]) -> Result<String, TemplateError> {
    let mut out = String::new();
    let mut next = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut zero) = (false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut precision: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            precision = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = next.next() else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        let number = |v: &V| v.number("printf");
        let mut text = match verb {
            'v' | 's' => match (arg, precision) {
                (V::Num(n), Some(p)) if verb == 'v' => go_g(*n, p),
                (v, Some(p)) => v.text().chars().take(p).collect(),
                (v, None) => v.text(),
            },
            'q' => format!("{:?}", arg.text()),
            'd' => {
                let n = number(arg)?;
                if n.is_finite() {
                    format!("{}", n.trunc() as i64)
                } else {
                    go_v(n)
                }
            }
            'f' | 'F' => {
                let n = number(arg)?;
                if n.is_finite() {
                    format!("{n:.*}", precision.unwrap_or(6))
                } else {
                    go_v(n)
                }
            }
            'e' => go_e(number(arg)?, precision.unwrap_or(6)),
            'g' => match precision {
                Some(p) => go_g(number(arg)?, p),
                None => go_v(number(arg)?),
            },
            other => {
                return Err(TemplateError::Expand(format!(
                    "printf: verb %{other} is not supported (use %v %s %d %f %e %g %q)"
                )))
            }
        };
        if plus && matches!(verb, 'd' | 'f' | 'F' | 'e' | 'g') && !text.starts_with('-') {
            text.insert(0, '+');
        }
        let width: usize = width.parse().unwrap_or(0);
        let len = text.chars().count();
        if len < width {
            let pad = width - len;
            if minus {
                text.push_str(&" ".repeat(pad));
            } else if zero && matches!(verb, 'd' | 'f' | 'F' | 'e' | 'g') {
                let sign = if text.starts_with(['-', '+']) { 1 } else { 0 };
                text.insert_str(sign, &"0".repeat(pad));
            } else {
                text.insert_str(0, &" ".repeat(pad));
            }
        }
        out.push_str(&text);
    }
    Ok(out)
}

// ---------------------------------------------------------------- numbers as Go prints them

fn non_finite(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "+Inf" } else { "-Inf" }.into())
    } else {
        None
    }
}

/// `e+06`, `e-07`: Go's exponent, signed and at least two digits.
fn go_exponent(exp: i32) -> String {
    format!("e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

/// The mantissa and decimal exponent of `v` in scientific form with `digits` significant
/// digits (`None`: the shortest that reads back).
fn scientific(v: f64, digits: Option<usize>) -> (String, i32) {
    let s = match digits {
        Some(d) => format!("{:.*e}", d.saturating_sub(1), v),
        None => format!("{v:e}"),
    };
    match s.split_once('e') {
        Some((m, e)) => (m.to_string(), e.parse().unwrap_or(0)),
        None => (s, 0),
    }
}

fn strip_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// Go's `%v` for a float64: the shortest digits that read back, in exponent form when the
/// exponent is below -4 or 6 and above (`1e+06`).
fn go_v(v: f64) -> String {
    if let Some(s) = non_finite(v) {
        return s;
    }
    if v == 0.0 {
        return "0".into();
    }
    let (mantissa, exp) = scientific(v, None);
    if !(-4..6).contains(&exp) {
        format!("{mantissa}{}", go_exponent(exp))
    } else {
        format!("{v}")
    }
}

/// Go's `%.{precision}g`: `precision` significant digits, trailing zeros dropped, exponent
/// form when the exponent is below -4 or at least the precision.
fn go_g(v: f64, precision: usize) -> String {
    if let Some(s) = non_finite(v) {
        return s;
    }
    if v == 0.0 {
        return "0".into();
    }
    let p = precision.max(1);
    let (mantissa, exp) = scientific(v, Some(p));
    if exp < -4 || exp >= p as i32 {
        format!("{}{}", strip_zeros(&mantissa), go_exponent(exp))
    } else {
        let decimals = usize::try_from(p as i32 - 1 - exp).unwrap_or(0);
        strip_zeros(&format!("{v:.decimals$}"))
    }
}

/// Go's `%.{precision}e`.
fn go_e(v: f64, precision: usize) -> String {
    if let Some(s) = non_finite(v) {
        return s;
    }
    let (mantissa, exp) = scientific(v, Some(precision + 1));
    format!("{mantissa}{}", go_exponent(exp))
}

/// Prometheus's `humanize`: SI prefixes with 4 significant digits (`1.235M`, `12.5m`).
pub fn humanize(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_g(v, 4);
    }
    let mut v = v;
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_g(v, 4))
}

/// Prometheus's `humanize1024`: binary prefixes (`1.5Ki`, `2Gi`); below 1 as a number.
pub fn humanize_1024(v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return go_g(v, 4);
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_g(v, 4))
}

/// Prometheus's `humanizePercentage`: a ratio as a percentage (`0.1234` → `12.34%`).
pub fn humanize_percentage(v: f64) -> String {
    format!("{}%", go_g(v * 100.0, 4))
}

/// Prometheus's `humanizeDuration`: seconds as `1d 2h 3m 4s`, `1m 30s`, `2.5s`, `150ms`.
pub fn humanize_duration(v: f64) -> String {
    if !v.is_finite() {
        return go_g(v, 4);
    }
    if v == 0.0 {
        return "0s".into();
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        let v = v.abs();
        let total = v.trunc() as u64;
        let (days, hours, minutes, seconds) = (
            total / 86_400,
            total / 3_600 % 24,
            total / 60 % 60,
            total % 60,
        );
        return if days != 0 {
            format!("{sign}{days}d {hours}h {minutes}m {seconds}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {minutes}m {seconds}s")
        } else if minutes != 0 {
            format!("{sign}{minutes}m {seconds}s")
        } else {
            format!("{sign}{}s", go_g(v, 4))
        };
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_g(v, 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Labels {
        [("service", "web"), ("alertname", "HighErrors")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn render(src: &str, value: f64) -> String {
        Template::parse(src)
            .expect("parses")
            .render(&labels(), value)
            .expect("renders")
    }

    fn parse_err(src: &str) -> String {
        Template::parse(src).unwrap_err().to_string()
    }

    #[test]
    fn humanize_as_prometheus() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (999.0, "999"),
            (1000.0, "1k"),
            (1234567.0, "1.235M"),
            (-1234567.0, "-1.235M"),
            (0.0125, "12.5m"),
            (0.000_001_5, "1.5u"),
            (12.3456, "12.35"),
            (1e30, "1e+06Y"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
        ];
        for (v, want) in cases {
            assert_eq!(humanize(v), want, "{v}");
        }
        assert_eq!(humanize_1024(1024.0), "1ki");
        assert_eq!(humanize_1024(1536.0 * 1024.0 * 1024.0), "1.5Gi");
        assert_eq!(humanize_1024(512.0), "512");
        assert_eq!(humanize_1024(0.5), "0.5");
        assert_eq!(humanize_percentage(0.1234), "12.34%");
        assert_eq!(humanize_percentage(0.5), "50%");
        assert_eq!(humanize_percentage(0.000_123_46), "0.01235%");
        assert_eq!(humanize_duration(0.0), "0s");
        assert_eq!(humanize_duration(1.0), "1s");
        assert_eq!(humanize_duration(2.5), "2.5s");
        assert_eq!(humanize_duration(90.0), "1m 30s");
        assert_eq!(humanize_duration(3_725.0), "1h 2m 5s");
        assert_eq!(humanize_duration(93_784.0), "1d 2h 3m 4s");
        assert_eq!(humanize_duration(-90.0), "-1m 30s");
        assert_eq!(humanize_duration(0.15), "150ms");
        assert_eq!(humanize_duration(0.000_25), "250us");
    }

    #[test]
    fn values_print_as_go_prints_a_float64() {
        assert_eq!(go_v(0.5), "0.5");
        assert_eq!(go_v(100.0), "100");
        assert_eq!(go_v(123456.0), "123456");
        assert_eq!(go_v(1e6), "1e+06");
        assert_eq!(go_v(1234567.0), "1.234567e+06");
        assert_eq!(go_v(0.0001), "0.0001");
        assert_eq!(go_v(0.00001), "1e-05");
        assert_eq!(go_v(-2.25), "-2.25");
        assert_eq!(go_g(9.9996, 4), "10");
        assert_eq!(go_g(0.000_012_345, 3), "1.23e-05");
        assert_eq!(go_e(1234.5, 2), "1.23e+03");
    }

    #[test]
    fn expressions_pipes_and_calls() {
        assert_eq!(render("{{ $value }}", 0.25), "0.25");
        assert_eq!(render("{{ .Value }}", 3.0), "3");
        assert_eq!(
            render(
                "{{ $labels.service }} errors at {{ $value | humanizePercentage }}",
                0.0512
            ),
            "web errors at 5.12%"
        );
        assert_eq!(render("{{ .Labels.service | toUpper }}", 0.0), "WEB");
        assert_eq!(render("{{ humanize $value }}", 2_500_000.0), "2.5M");
        assert_eq!(render("{{ $labels.missing }}|", 0.0), "|");
        assert_eq!(render("{{ printf \"%.2f\" $value }}", 1.0 / 3.0), "0.33");
        assert_eq!(render("{{ $value | printf \"%.1f%%\" }}", 12.345), "12.3%");
        assert_eq!(
            render(
                "{{ printf \"%s has %d (%5.1f)\" $labels.service 3 $value }}",
                2.0
            ),
            "web has 3 (  2.0)"
        );
        assert_eq!(
            render("{{ printf \"%-4s|%04d|%+.1e\" \"ab\" 7 1234.5 }}", 0.0),
            "ab  |0007|+1.2e+03"
        );
        assert_eq!(render("{{ printf \"%v %v\" 1 }}", 0.0), "1 %!v(MISSING)");
        assert_eq!(
            render("{{ (humanizeDuration $value) | toUpper }}", 90.0),
            "1M 30S"
        );
        assert_eq!(
            render("{{ title \"crash looping\" }}", 0.0),
            "Crash Looping"
        );
        assert_eq!(render("{{ `raw \"x\"` }}", 0.0), "raw \"x\"");
        assert_eq!(render("{{ \"}}\" }}", 0.0), "}}");
        assert_eq!(render("a  {{- $value -}}  b", 1.0), "a1b");
        assert_eq!(render("a {{/* note */}}b", 1.0), "a b");
        assert_eq!(render("{{ humanize \"1500\" }}", 0.0), "1.5k");
        assert_eq!(
            render("{{ $labels }}", 0.0),
            "map[alertname:HighErrors service:web]"
        );
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(
            parse_err("{{ $value | humanise }}"),
            "template: at byte 12: unknown function \"humanise\" (did you mean \"humanize\"?) (known: humanize, humanize1024, humanizePercentage, humanizeDuration, printf, toUpper, toLower, title)"
        );
        assert_eq!(
            parse_err("x {{ $valu }}"),
            "template: at byte 5: unknown variable \"$valu\" (known: $value, $labels)"
        );
        assert_eq!(
            parse_err("{{ if $value }}x{{ end }}"),
            "template: at byte 3: \"if\" is not supported: only expressions like {{ $value | humanize }}"
        );
        assert_eq!(
            parse_err("{{ $value "),
            "template: at byte 0: unclosed action: no \"}}\""
        );
        assert_eq!(
            parse_err("{{ $value $value }}"),
            "template: at byte 10: $value follows a value that is not a function"
        );
        assert_eq!(
            parse_err("{{ $value | $value }}"),
            "template: at byte 12: after \"|\" comes a function, like humanize"
        );
        assert_eq!(
            parse_err("{{ }}"),
            "template: at byte 3: empty action: expected an expression"
        );
        assert_eq!(
            parse_err("{{ .Foo }}"),
            "template: at byte 3: unknown field \".Foo\" (known: .Value, .Labels)"
        );
        assert_eq!(
            parse_err("{{ $labels.a.b }}"),
            "template: at byte 3: $labels.a.b has no such field"
        );
        let t = Template::parse("{{ humanize $labels.service }}").expect("parses");
        assert_eq!(
            t.render(&labels(), 1.0).unwrap_err().to_string(),
            "template: humanize: \"web\" is not a number"
        );
        assert_eq!(
            t.render_or_error(&labels(), 1.0),
            "<error expanding template: template: humanize: \"web\" is not a number>"
        );
    }

    #[test]
    fn a_template_serialises_as_its_source() {
        let t = Template::parse("{{ $value }}").expect("parses");
        let json = serde_json::to_string(&t).expect("serialises");
        assert_eq!(json, "\"{{ $value }}\"");
        let back: Template = serde_json::from_str(&json).expect("reads back");
        assert_eq!(back, t);
        assert!(serde_json::from_str::<Template>("\"{{ nope }}\"").is_err());
    }
}
