//! The PromQL subset's lexer and parser: text in, a typed `Expr` out, or a `ParseError`
//! that carries the column (and line) where the text went wrong.

use std::fmt;

use crate::labels::{MatchOp, Matcher, METRIC_NAME};

/// A parse error, located: `column` (and `line`, both from 1, in characters) of `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The whole expression that was parsed.
    pub text: String,
}

impl fmt::Display for ParseError {
    /// `column 37: …` for a one-line expression, `line 2, column 5: …` otherwise; a caller
    /// puts where the expression came from in front (`alerts.rules.web-errors.expr: `).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.contains('\n') {
            write!(
                f,
                "line {}, column {}: {}",
                self.line, self.column, self.message
            )
        } else {
            write!(f, "column {}: {}", self.column, self.message)
        }
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    fn at(text: &str, offset: usize, message: impl Into<String>) -> Self {
        let offset = offset.min(text.len());
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        ParseError {
            line,
            column,
            message: message.into(),
            text: text.to_string(),
        }
    }

    /// The offending line with a caret under the column, for a terminal.
    pub fn caret(&self) -> String {
        let line = self.text.lines().nth(self.line - 1).unwrap_or("");
        format!("{line}\n{}^", " ".repeat(self.column.saturating_sub(1)))
    }
}

/// A parsed expression.
#[derive(Debug, Clone)]
pub enum Expr {
    Number(f64),
    /// An instant vector selector: each matching series' latest value within the lookback.
    Selector(Selector),
    /// A range vector selector (`x[5m]`), only as the argument of a range function.
    Range {
        selector: Selector,
        range_ms: i64,
    },
    Call {
        func: Function,
        arg: Box<Expr>,
    },
    Aggregate {
        op: AggOp,
        grouping: Grouping,
        expr: Box<Expr>,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        matching: Option<Matching>,
        /// `bool`: comparisons return 0 or 1 instead of filtering.
        return_bool: bool,
    },
    Neg(Box<Expr>),
    /// `histogram_quantile(φ, buckets)`: the φ-quantile of each histogram in `buckets`
    /// (series that differ only by `le`), interpolated as Prometheus does.
    Quantile {
        q: Box<Expr>,
        buckets: Box<Expr>,
    },
}

#[derive(Debug, Clone)]
pub struct Selector {
    pub matchers: Vec<Matcher>,
}

/// The range functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Rate,
    Increase,
    AvgOverTime,
    MaxOverTime,
    MinOverTime,
    SumOverTime,
    CountOverTime,
}

impl Function {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "rate" => Function::Rate,
            "increase" => Function::Increase,
            "avg_over_time" => Function::AvgOverTime,
            "max_over_time" => Function::MaxOverTime,
            "min_over_time" => Function::MinOverTime,
            "sum_over_time" => Function::SumOverTime,
            "count_over_time" => Function::CountOverTime,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Avg,
    Max,
    Min,
    Count,
}

impl AggOp {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "sum" => AggOp::Sum,
            "avg" => AggOp::Avg,
            "max" => AggOp::Max,
            "min" => AggOp::Min,
            "count" => AggOp::Count,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouping {
    /// Everything into one group.
    All,
    By(Vec<String>),
    Without(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
}

impl BinOp {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le
        )
    }

    fn precedence(self) -> u8 {
        match self {
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le => 1,
            BinOp::Add | BinOp::Sub => 2,
            BinOp::Mul | BinOp::Div | BinOp::Mod => 3,
            BinOp::Pow => 4,
        }
    }
}

/// `on(…)` or `ignoring(…)` of a binary operation between vectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matching {
    pub on: bool,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Number(f64),
    Str(String),
    Duration(i64),
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Assign,
    Op(BinOp),
    NotEq,
    ReMatch,
    ReNotMatch,
    Eof,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Number(n) => format!("number {n}"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Duration(_) => "a duration".into(),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::LBrace => "`{`".into(),
        Tok::RBrace => "`}`".into(),
        Tok::LBracket => "`[`".into(),
        Tok::RBracket => "`]`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Assign => "`=`".into(),
        Tok::NotEq => "`!=`".into(),
        Tok::ReMatch => "`=~`".into(),
        Tok::ReNotMatch => "`!~`".into(),
        Tok::Op(op) => format!("operator {op:?}"),
        Tok::Eof => "the end".into(),
    }
}

/// Expressions come from rule files and query strings: nesting is bounded so that a
/// deep one is an error, not a stack overflow.
const MAX_DEPTH: usize = 128;

/// Parses a PromQL-subset expression.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let tokens = lex(text)?;
    let mut p = Parser {
        text,
        tokens,
        pos: 0,
        depth: 0,
    };
    let e = p.expr(0)?;
    let (tok, at) = p.peek_at();
    if *tok != Tok::Eof {
        return Err(ParseError::at(
            text,
            at,
            format!("unexpected {} after the expression", describe(tok)),
        ));
    }
    check_top(text, &e)?;
    Ok(e)
}

fn check_top(text: &str, e: &Expr) -> Result<(), ParseError> {
    if let Expr::Range { .. } = e {
        return Err(ParseError::at(
            text,
            0,
            "a range vector (`x[5m]`) is only allowed inside a function such as rate(…)",
        ));
    }
    Ok(())
}

fn lex(text: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_brackets = false;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let two = text.get(i..i + 2).unwrap_or("");
        let (tok, len) = match two {
            "==" => (Tok::Op(BinOp::Eq), 2),
            "!=" => (Tok::NotEq, 2),
            "=~" => (Tok::ReMatch, 2),
            "!~" => (Tok::ReNotMatch, 2),
            ">=" => (Tok::Op(BinOp::Ge), 2),
            "<=" => (Tok::Op(BinOp::Le), 2),
            _ => match c {
                b'(' => (Tok::LParen, 1),
                b')' => (Tok::RParen, 1),
                b'{' => (Tok::LBrace, 1),
                b'}' => (Tok::RBrace, 1),
                b'[' => (Tok::LBracket, 1),
                b']' => (Tok::RBracket, 1),
                b',' => (Tok::Comma, 1),
                b'=' => (Tok::Assign, 1),
                b'+' => (Tok::Op(BinOp::Add), 1),
                b'-' => (Tok::Op(BinOp::Sub), 1),
                b'*' => (Tok::Op(BinOp::Mul), 1),
                b'/' => (Tok::Op(BinOp::Div), 1),
                b'%' => (Tok::Op(BinOp::Mod), 1),
                b'^' => (Tok::Op(BinOp::Pow), 1),
                b'>' => (Tok::Op(BinOp::Gt), 1),
                b'<' => (Tok::Op(BinOp::Lt), 1),
                _ => (Tok::Eof, 0),
            },
        };
        if len > 0 {
            match tok {
                Tok::LBracket => in_brackets = true,
                Tok::RBracket => in_brackets = false,
                _ => {}
            }
            out.push((tok, start));
            i += len;
            continue;
        }
        if in_brackets && c.is_ascii_digit() {
            let end = i + bytes[i..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric())
                .count();
            let ms = parse_duration(&text[i..end]).ok_or_else(|| {
                ParseError::at(
                    text,
                    i,
                    format!(
                        "bad duration {:?}: write it as 30s, 5m, 1h30m",
                        &text[i..end]
                    ),
                )
            })?;
            out.push((Tok::Duration(ms), start));
            i = end;
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let end = number_end(bytes, i);
            let s = &text[i..end];
            let n = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                u64::from_str_radix(hex, 16).ok().map(|n| n as f64)
            } else {
                s.parse::<f64>().ok()
            };
            let n = n.ok_or_else(|| ParseError::at(text, i, format!("bad number {s:?}")))?;
            out.push((Tok::Number(n), start));
            i = end;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let end = i + bytes[i..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_' || **b == b':')
                .count();
            out.push((Tok::Ident(text[i..end].to_string()), start));
            i = end;
            continue;
        }
        if c == b'"' || c == b'\'' || c == b'`' {
            let (s, end) = string(text, i)?;
            out.push((Tok::Str(s), start));
            i = end;
            continue;
        }
        let ch = text[i..].chars().next().unwrap_or('?');
        return Err(ParseError::at(
            text,
            i,
            format!("unexpected character {ch:?}"),
        ));
    }
    out.push((Tok::Eof, text.len()));
    Ok(out)
}

fn number_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    if bytes.get(i) == Some(&b'0') && matches!(bytes.get(i + 1), Some(b'x' | b'X')) {
        i += 2;
        while bytes.get(i).is_some_and(u8::is_ascii_hexdigit) {
            i += 1;
        }
        return i;
    }
    while bytes
        .get(i)
        .is_some_and(|b| b.is_ascii_digit() || *b == b'.')
    {
        i += 1;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(bytes.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if bytes.get(j).is_some_and(u8::is_ascii_digit) {
            i = j;
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
    }
    i
}

/// `1h30m`, `5m`, `90s`, `500ms`, `2d`, `1w`, `1y` in milliseconds; `None` if malformed or 0.
pub fn parse_duration(s: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let ms = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(ms)?)?;
    }
    (total > 0).then_some(total)
}

fn string(text: &str, start: usize) -> Result<(String, usize), ParseError> {
    let quote = text[start..].chars().next().unwrap_or('"');
    let mut out = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        let at = start + 1 + i;
        if c == quote {
            return Ok((out, at + 1));
        }
        if c == '\n' && quote != '`' {
            return Err(ParseError::at(
                text,
                start,
                "string not closed before the end of the line",
            ));
        }
        if c == '\\' && quote != '`' {
            let Some((_, e)) = chars.next() else {
                break;
            };
            out.push(match e {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '\\' => '\\',
                '"' => '"',
                '\'' => '\'',
                other => {
                    return Err(ParseError::at(
                        text,
                        at,
                        format!("unknown escape \\{other} in a string"),
                    ));
                }
            });
            continue;
        }
        out.push(c);
    }
    Err(ParseError::at(text, start, "string not closed"))
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<(Tok, usize)>,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek_at(&self) -> (&Tok, usize) {
        self.tokens
            .get(self.pos)
            .map(|(t, at)| (t, *at))
            .unwrap_or((&Tok::Eof, self.text.len()))
    }

    fn peek(&self) -> &Tok {
        self.peek_at().0
    }

    fn peek2(&self) -> &Tok {
        self.tokens
            .get(self.pos + 1)
            .map(|(t, _)| t)
            .unwrap_or(&Tok::Eof)
    }

    fn next(&mut self) -> (Tok, usize) {
        let t = self
            .tokens
            .get(self.pos)
            .cloned()
            .unwrap_or((Tok::Eof, self.text.len()));
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn err<T>(&self, at: usize, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError::at(self.text, at, message))
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<usize, ParseError> {
        let (t, at) = self.next();
        if t == want {
            Ok(at)
        } else {
            self.err(at, format!("expected {what}, found {}", describe(&t)))
        }
    }

    fn expr(&mut self, min_prec: u8) -> Result<Expr, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let at = self.peek_at().1;
            return self.err(
                at,
                format!("expression nested deeper than {MAX_DEPTH} levels"),
            );
        }
        let mut lhs = self.unary()?;
        loop {
            let (tok, at) = self.peek_at();
            let op = match tok {
                Tok::Op(op) => *op,
                Tok::Ident(w) if matches!(w.as_str(), "and" | "or" | "unless") => {
                    return self.err(at, format!("`{w}` is not supported: baton's queries have arithmetic and comparisons, not set operators"));
                }
                _ => break,
            };
            let prec = op.precedence();
            if prec < min_prec {
                break;
            }
            self.next();
            let mut return_bool = false;
            if let Tok::Ident(w) = self.peek() {
                if w == "bool" {
                    if !op.is_comparison() {
                        return self.err(self.peek_at().1, "`bool` only goes with a comparison");
                    }
                    return_bool = true;
                    self.next();
                }
            }
            let matching = self.matching()?;
            // `^` is right-associative; the others left.
            let next_min = if op == BinOp::Pow { prec } else { prec + 1 };
            let rhs_at = self.peek_at().1;
            let rhs = self.expr(next_min)?;
            check_operand(self.text, &lhs, at)?;
            check_operand(self.text, &rhs, rhs_at)?;
            let scalar = |e: &Expr| is_scalar(e);
            if op.is_comparison() && scalar(&lhs) && scalar(&rhs) && !return_bool {
                return self.err(
                    at,
                    "a comparison between two numbers needs `bool` (`1 < bool 2`)",
                );
            }
            if matching.is_some() && (scalar(&lhs) || scalar(&rhs)) {
                return self.err(at, "on(…) and ignoring(…) only go between two vectors");
            }
            lhs = Expr::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
                matching,
                return_bool,
            };
        }
        self.depth -= 1;
        Ok(lhs)
    }

    fn matching(&mut self) -> Result<Option<Matching>, ParseError> {
        let (tok, at) = self.peek_at();
        let on = match tok {
            Tok::Ident(w) if w == "on" => true,
            Tok::Ident(w) if w == "ignoring" => false,
            _ => return Ok(None),
        };
        self.next();
        let labels = self.label_list()?;
        if let (Tok::Ident(w), at2) = self.peek_at() {
            if w == "group_left" || w == "group_right" {
                return self.err(
                    at2,
                    format!("`{w}` is not supported: baton matches vectors one to one"),
                );
            }
        }
        let _ = at;
        Ok(Some(Matching { on, labels }))
    }

    fn label_list(&mut self) -> Result<Vec<String>, ParseError> {
        self.expect(Tok::LParen, "`(` and label names")?;
        let mut labels = Vec::new();
        loop {
            let (t, at) = self.next();
            match t {
                Tok::RParen => break,
                Tok::Ident(name) if valid_label(&name) => {
                    labels.push(name);
                    let (t, at) = self.next();
                    match t {
                        Tok::Comma => continue,
                        Tok::RParen => break,
                        other => {
                            return self.err(
                                at,
                                format!("expected `,` or `)`, found {}", describe(&other)),
                            )
                        }
                    }
                }
                other => {
                    return self.err(
                        at,
                        format!("expected a label name, found {}", describe(&other)),
                    )
                }
            }
        }
        Ok(labels)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            Tok::Op(BinOp::Sub) => {
                let at = self.next().1;
                let e = self.expr(BinOp::Pow.precedence())?;
                check_operand(self.text, &e, at)?;
                Ok(match e {
                    Expr::Number(n) => Expr::Number(-n),
                    e => Expr::Neg(Box::new(e)),
                })
            }
            Tok::Op(BinOp::Add) => {
                let at = self.next().1;
                let e = self.expr(BinOp::Pow.precedence())?;
                check_operand(self.text, &e, at)?;
                Ok(e)
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let (tok, at) = self.next();
        match tok {
            Tok::Number(n) => Ok(Expr::Number(n)),
            Tok::LParen => {
                let e = self.expr(0)?;
                self.expect(Tok::RParen, "`)`")?;
                Ok(e)
            }
            Tok::LBrace => {
                self.pos -= 1;
                self.selector(None, at)
            }
            Tok::Ident(name) => {
                let lower = name.to_ascii_lowercase();
                if lower == "inf" || lower == "nan" {
                    return Ok(Expr::Number(if lower == "inf" {
                        f64::INFINITY
                    } else {
                        f64::NAN
                    }));
                }
                if let Some(op) = AggOp::from_name(&name) {
                    if matches!(self.peek(), Tok::LParen)
                        || matches!(self.peek(), Tok::Ident(w) if w == "by" || w == "without")
                    {
                        return self.aggregate(op, at);
                    }
                }
                if name == "histogram_quantile" && matches!(self.peek(), Tok::LParen) {
                    return self.quantile();
                }
                if matches!(self.peek(), Tok::LParen) {
                    return match Function::from_name(&name) {
                        Some(func) => self.call(func, &name),
                        None => self.err(
                            at,
                            format!(
                                "unknown function {name}(…): baton's queries have rate, increase, avg_over_time, max_over_time, min_over_time, sum_over_time, count_over_time, histogram_quantile and the aggregations sum, avg, max, min, count"
                            ),
                        ),
                    };
                }
                if matches!(
                    name.as_str(),
                    "by" | "without" | "on" | "ignoring" | "bool" | "offset"
                ) {
                    return self.err(at, format!("unexpected `{name}`"));
                }
                self.selector(Some(name), at)
            }
            Tok::Str(_) => self.err(at, "a string is only allowed as a label matcher's value"),
            Tok::Eof => self.err(at, "the expression ends too early"),
            other => self.err(at, format!("unexpected {}", describe(&other))),
        }
    }

    fn selector(&mut self, name: Option<String>, at: usize) -> Result<Expr, ParseError> {
        let mut matchers = Vec::new();
        if let Some(n) = &name {
            matchers.push(Matcher::equal(METRIC_NAME, n));
        }
        if matches!(self.peek(), Tok::LBrace) {
            self.next();
            loop {
                let (t, lat) = self.next();
                let label = match t {
                    Tok::RBrace => break,
                    Tok::Ident(l) if valid_label(&l) => l,
                    other => {
                        return self.err(
                            lat,
                            format!("expected a label name, found {}", describe(&other)),
                        )
                    }
                };
                let (t, oat) = self.next();
                let op = match t {
                    Tok::Assign => MatchOp::Equal,
                    Tok::NotEq => MatchOp::NotEqual,
                    Tok::ReMatch => MatchOp::Regex,
                    Tok::ReNotMatch => MatchOp::NotRegex,
                    other => {
                        return self.err(
                            oat,
                            format!(
                                "expected one of `=`, `!=`, `=~`, `!~` after {label}, found {}",
                                describe(&other)
                            ),
                        );
                    }
                };
                let (t, vat) = self.next();
                let Tok::Str(value) = t else {
                    return self.err(
                        vat,
                        format!(
                            "expected a quoted value for {label}, found {}",
                            describe(&t)
                        ),
                    );
                };
                if label == METRIC_NAME && name.is_some() {
                    return self.err(lat, "the metric name is given twice");
                }
                let m = Matcher::new(&label, op, &value).map_err(|e| {
                    ParseError::at(
                        self.text,
                        vat,
                        format!(
                            "bad regular expression for {label}: {}",
                            first_line(&e.to_string())
                        ),
                    )
                })?;
                matchers.push(m);
                let (t, cat) = self.next();
                match t {
                    Tok::Comma => continue,
                    Tok::RBrace => break,
                    other => {
                        return self.err(
                            cat,
                            format!("expected `,` or `}}`, found {}", describe(&other)),
                        )
                    }
                }
            }
        }
        if matchers.iter().all(|m| m.matches_empty()) {
            return self.err(
                at,
                "a selector needs a metric name or a matcher that does not match the empty value",
            );
        }
        let selector = Selector { matchers };
        if matches!(self.peek(), Tok::LBracket) {
            self.next();
            let (t, dat) = self.next();
            let Tok::Duration(range_ms) = t else {
                return self.err(
                    dat,
                    format!("expected a duration such as 5m, found {}", describe(&t)),
                );
            };
            self.expect(Tok::RBracket, "`]`")?;
            if let Tok::Ident(w) = self.peek() {
                if w == "offset" {
                    return self.err(self.peek_at().1, "`offset` is not supported");
                }
            }
            return Ok(Expr::Range { selector, range_ms });
        }
        if let Tok::Ident(w) = self.peek() {
            if w == "offset" {
                return self.err(self.peek_at().1, "`offset` is not supported");
            }
        }
        Ok(Expr::Selector(selector))
    }

    fn call(&mut self, func: Function, name: &str) -> Result<Expr, ParseError> {
        self.expect(Tok::LParen, "`(`")?;
        let at = self.peek_at().1;
        let arg = self.expr(0)?;
        if !matches!(arg, Expr::Range { .. }) {
            return self.err(at, format!("{name}(…) takes a range vector such as x[5m]"));
        }
        let (t, cat) = self.next();
        match t {
            Tok::RParen => Ok(Expr::Call {
                func,
                arg: Box::new(arg),
            }),
            Tok::Comma => self.err(cat, format!("{name}(…) takes one argument")),
            other => self.err(cat, format!("expected `)`, found {}", describe(&other))),
        }
    }

    /// `histogram_quantile(φ, buckets)`, after its name.
    fn quantile(&mut self) -> Result<Expr, ParseError> {
        self.expect(Tok::LParen, "`(`")?;
        let qat = self.peek_at().1;
        let q = self.expr(0)?;
        if !is_scalar(&q) {
            return self.err(
                qat,
                "histogram_quantile(φ, …) takes a number from 0 to 1 first",
            );
        }
        self.expect(Tok::Comma, "`,` and the buckets")?;
        let bat = self.peek_at().1;
        let buckets = self.expr(0)?;
        if matches!(buckets, Expr::Range { .. }) || is_scalar(&buckets) {
            return self.err(
                bat,
                "histogram_quantile(φ, …) takes an instant vector of buckets, such as sum by (le) (rate(x_bucket[5m]))",
            );
        }
        self.expect(Tok::RParen, "`)`")?;
        Ok(Expr::Quantile {
            q: Box::new(q),
            buckets: Box::new(buckets),
        })
    }

    fn aggregate(&mut self, op: AggOp, at: usize) -> Result<Expr, ParseError> {
        let mut grouping = self.grouping()?;
        self.expect(Tok::LParen, "`(`")?;
        let eat = self.peek_at().1;
        let expr = self.expr(0)?;
        if let Tok::Comma = self.peek() {
            return self.err(self.peek_at().1, "aggregations take one argument");
        }
        self.expect(Tok::RParen, "`)`")?;
        match &expr {
            Expr::Range { .. } => return self.err(eat, "aggregations take an instant vector, not a range (use a function such as rate(…) first)"),
            e if is_scalar(e) => return self.err(eat, "aggregations take a vector, not a number"),
            _ => {}
        }
        if let Some(g) = self.grouping_after()? {
            if grouping != Grouping::All {
                return self.err(at, "by/without is given twice");
            }
            grouping = g;
        }
        Ok(Expr::Aggregate {
            op,
            grouping,
            expr: Box::new(expr),
        })
    }

    fn grouping(&mut self) -> Result<Grouping, ParseError> {
        Ok(self.grouping_after()?.unwrap_or(Grouping::All))
    }

    fn grouping_after(&mut self) -> Result<Option<Grouping>, ParseError> {
        let by = match self.peek() {
            Tok::Ident(w) if w == "by" => true,
            Tok::Ident(w) if w == "without" => false,
            _ => return Ok(None),
        };
        // `by` followed by something other than `(` is a metric called `by`: not ours.
        if !matches!(self.peek2(), Tok::LParen) {
            return Ok(None);
        }
        self.next();
        let labels = self.label_list()?;
        Ok(Some(if by {
            Grouping::By(labels)
        } else {
            Grouping::Without(labels)
        }))
    }
}

fn first_line(s: &str) -> String {
    s.lines().last().unwrap_or(s).trim().to_string()
}

fn valid_label(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether an expression is a number (not a vector).
pub(crate) fn is_scalar(e: &Expr) -> bool {
    match e {
        Expr::Number(_) => true,
        Expr::Neg(e) => is_scalar(e),
        Expr::Binary { lhs, rhs, .. } => is_scalar(lhs) && is_scalar(rhs),
        _ => false,
    }
}

fn check_operand(text: &str, e: &Expr, at: usize) -> Result<(), ParseError> {
    if let Expr::Range { .. } = e {
        return Err(ParseError::at(
            text,
            at,
            "a range vector (`x[5m]`) is only allowed inside a function such as rate(…)",
        ));
    }
    Ok(())
}
