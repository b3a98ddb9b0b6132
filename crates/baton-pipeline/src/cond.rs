//! `if:` conditions: a small expression language over the run's variables, parsed when the
//! spec is read and evaluated by the planner.
//!
//! Grammar: `expr := and ("||" and)*`, `and := unary ("&&" unary)*`,
//! `unary := "!" unary | "(" expr ")" | operand (("==" | "!=") operand)?`, where an operand
//! is `$VAR`, a quoted string or a bare word. A lone operand is true when non-empty.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    source: String,
    expr: Expr,
}

impl Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Operand {
    Var(String),
    Lit(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Eq(Operand, Operand),
    Ne(Operand, Operand),
    Truthy(Operand),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Var(String),
    Lit(String),
    EqEq,
    NotEq,
    And,
    Or,
    Not,
    Open,
    Close,
}

impl Condition {
    pub fn parse(src: &str) -> Result<Condition, String> {
        let toks = lex(src)?;
        let mut p = Parser { toks, pos: 0 };
        let expr = p.or()?;
        if p.pos != p.toks.len() {
            return Err(format!(
                "unexpected {:?} after the expression",
                p.toks[p.pos]
            ));
        }
        Ok(Condition {
            source: src.to_string(),
            expr,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the condition holds; an unset variable reads as empty.
    pub fn eval(&self, vars: &BTreeMap<String, String>) -> bool {
        eval(&self.expr, vars)
    }
}

fn value<'a>(o: &'a Operand, vars: &'a BTreeMap<String, String>) -> &'a str {
    match o {
        Operand::Var(v) => vars.get(v).map(String::as_str).unwrap_or(""),
        Operand::Lit(l) => l,
    }
}

fn eval(e: &Expr, vars: &BTreeMap<String, String>) -> bool {
    match e {
        Expr::Or(a, b) => eval(a, vars) || eval(b, vars),
        Expr::And(a, b) => eval(a, vars) && eval(b, vars),
        Expr::Not(a) => !eval(a, vars),
        Expr::Eq(a, b) => value(a, vars) == value(b, vars),
        Expr::Ne(a, b) => value(a, vars) != value(b, vars),
        Expr::Truthy(a) => !value(a, vars).is_empty(),
    }
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':');
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            ' ' | '\t' | '\n' => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1
            }
            ')' => {
                out.push(Tok::Close);
                i += 1
            }
            '=' if next == Some('=') => {
                out.push(Tok::EqEq);
                i += 2
            }
            '!' if next == Some('=') => {
                out.push(Tok::NotEq);
                i += 2
            }
            '!' => {
                out.push(Tok::Not);
                i += 1
            }
            '&' if next == Some('&') => {
                out.push(Tok::And);
                i += 2
            }
            '|' if next == Some('|') => {
                out.push(Tok::Or);
                i += 2
            }
            '$' => {
                let braced = next == Some('{');
                let mut j = i + if braced { 2 } else { 1 };
                let start = j;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                if j == start {
                    return Err("`$` must be followed by a variable name".into());
                }
                let name: String = chars[start..j].iter().collect();
                if braced {
                    if chars.get(j) != Some(&'}') {
                        return Err(format!("missing `}}` after ${{{name}"));
                    }
                    j += 1;
                }
                out.push(Tok::Var(name));
                i = j;
            }
            '\'' | '"' => {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != c {
                    j += 1;
                }
                if j >= chars.len() {
                    return Err("unterminated string".into());
                }
                out.push(Tok::Lit(chars[i + 1..j].iter().collect()));
                i = j + 1;
            }
            c if word(c) => {
                let mut j = i;
                while j < chars.len() && word(chars[j]) {
                    j += 1;
                }
                out.push(Tok::Lit(chars[i..j].iter().collect()));
                i = j;
            }
            other => return Err(format!("unexpected character {other:?}")),
        }
    }
    if out.is_empty() {
        return Err("empty condition".into());
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.unary()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn operand(&mut self) -> Result<Operand, String> {
        let t = self.peek().cloned();
        self.pos += 1;
        match t {
            Some(Tok::Var(v)) => Ok(Operand::Var(v)),
            Some(Tok::Lit(l)) => Ok(Operand::Lit(l)),
            Some(t) => Err(format!("expected a variable or a value, found {t:?}")),
            None => Err("the condition ends too early".into()),
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        match self.peek() {
            Some(Tok::Not) => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Some(Tok::Open) => {
                self.pos += 1;
                let e = self.or()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err("missing `)`".into());
                }
                self.pos += 1;
                Ok(e)
            }
            _ => {
                let a = self.operand()?;
                match self.peek() {
                    Some(Tok::EqEq) => {
                        self.pos += 1;
                        Ok(Expr::Eq(a, self.operand()?))
                    }
                    Some(Tok::NotEq) => {
                        self.pos += 1;
                        Ok(Expr::Ne(a, self.operand()?))
                    }
                    _ => Ok(Expr::Truthy(a)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn conditions_compare_variables_and_combine() {
        let v = vars(&[("BATON_BRANCH", "main"), ("BATON_TRIGGER", "webhook")]);
        let t = |s: &str| Condition::parse(s).unwrap().eval(&v);
        assert!(t("$BATON_BRANCH == main"));
        assert!(t("$BATON_BRANCH == 'main' && $BATON_TRIGGER != manual"));
        assert!(!t("$BATON_BRANCH == \"dev\""));
        assert!(t("$BATON_BRANCH == dev || ${BATON_TRIGGER} == webhook"));
        assert!(t("!$UNSET"));
        assert!(!t("$UNSET && $BATON_BRANCH"));
        assert!(t("!($BATON_BRANCH == dev)"));
    }

    #[test]
    fn bad_conditions_are_refused() {
        for bad in ["", "$", "$A ==", "'open", "($A", "$A == b c", "$A ~ b"] {
            assert!(Condition::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
