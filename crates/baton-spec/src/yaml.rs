//! YAML with positions: a small node tree where every node knows its file, line and
//! column, built from yaml-rust2's marked events (anchors, aliases, `<<`, `!reset`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value as Json;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::error::{ErrorKind, SpecError};

/// The file a node was read from.
#[derive(Debug, PartialEq, Eq)]
pub struct Source {
    /// Absolute path, for reading and for resolving relative paths.
    pub path: PathBuf,
    /// The path shown in messages.
    pub display: PathBuf,
    /// Directory that relative paths written in this file resolve against.
    pub base_dir: PathBuf,
}

impl Source {
    pub fn new(path: PathBuf, display: PathBuf, base_dir: PathBuf) -> Arc<Source> {
        Arc::new(Source {
            path,
            display,
            base_dir,
        })
    }
}

/// A position: file plus 1-based line and column (0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub source: Arc<Source>,
    pub line: usize,
    pub column: usize,
}

/// `!reset` and `!override`, the two tags Compose gives a meaning to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Reset,
    Override,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub mark: Mark,
    pub tag: Option<Tag>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    /// `plain` is false for quoted and block scalars: they are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_mark: Mark,
    pub value: Node,
}

impl Node {
    pub fn new(kind: Kind, mark: Mark) -> Node {
        Node {
            kind,
            mark,
            tag: None,
        }
    }

    pub fn string(text: impl Into<String>, mark: Mark) -> Node {
        Node::new(
            Kind::Scalar {
                text: text.into(),
                plain: false,
            },
            mark,
        )
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Null)
    }

    pub fn as_map(&self) -> Option<&Vec<Entry>> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_map_mut(&mut self) -> Option<&mut Vec<Entry>> {
        match &mut self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The entry for `key` in a map node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.as_map()?.iter().find(|e| e.key == key)
    }

    /// A short description of the node's type for messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Null => "null",
            Kind::Scalar { .. } => "a scalar",
            Kind::Seq(_) => "a sequence",
            Kind::Map(_) => "a mapping",
        }
    }

    /// The node as JSON, with plain scalars resolved the YAML 1.2 core way.
    pub fn to_json(&self) -> Json {
        match &self.kind {
            Kind::Null => Json::Null,
            Kind::Scalar { text, plain } => {
                if *plain {
                    resolve_plain(text)
                } else {
                    Json::String(text.clone())
                }
            }
            Kind::Seq(items) => Json::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Json::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }
}

/// What a plain scalar means: bool, integer, float or string.
pub fn resolve_plain(text: &str) -> Json {
    match text {
        "true" | "True" | "TRUE" => return Json::Bool(true),
        "false" | "False" | "FALSE" => return Json::Bool(false),
        "null" | "Null" | "NULL" | "~" | "" => return Json::Null,
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Json::from(i);
    }
    let numeric = text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
        && text.chars().any(|c| c.is_ascii_digit());
    if numeric {
        if let Ok(f) = text.parse::<f64>() {
            if let Some(n) = serde_json::Number::from_f64(f) {
                return Json::Number(n);
            }
        }
    }
    Json::String(text.to_string())
}

/// Parse one YAML document. An empty file gives a null node.
pub fn parse(text: &str, source: &Arc<Source>) -> Result<Node, SpecError> {
    let mut builder = Builder {
        source: source.clone(),
        stack: Vec::new(),
        anchors: BTreeMap::new(),
        root: None,
        error: None,
        documents: 0,
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, false) {
        let m = e.marker();
        let mark = builder.mark(m);
        return Err(SpecError::at(
            ErrorKind::Syntax,
            &mark,
            "",
            format!("invalid yaml: {}", e.info()),
        ));
    }
    if let Some(e) = builder.error {
        return Err(e);
    }
    Ok(builder.root.unwrap_or_else(|| {
        Node::new(
            Kind::Null,
            Mark {
                source: source.clone(),
                line: 1,
                column: 1,
            },
        )
    }))
}

enum Frame {
    Seq {
        items: Vec<Node>,
        mark: Mark,
        anchor: usize,
        tag: Option<Tag>,
    },
    Map {
        entries: Vec<Entry>,
        merges: Vec<Node>,
        key: Option<(String, Mark)>,
        mark: Mark,
        anchor: usize,
        tag: Option<Tag>,
    },
}

struct Builder {
    source: Arc<Source>,
    stack: Vec<Frame>,
    anchors: BTreeMap<usize, Node>,
    root: Option<Node>,
    error: Option<SpecError>,
    documents: usize,
}

fn compose_tag(tag: &Option<yaml_rust2::parser::Tag>) -> Option<Tag> {
    let t = tag.as_ref()?;
    if t.handle != "!" {
        return None;
    }
    match t.suffix.as_str() {
        "reset" => Some(Tag::Reset),
        "override" => Some(Tag::Override),
        _ => None,
    }
}

impl Builder {
    fn mark(&self, m: &Marker) -> Mark {
        Mark {
            source: self.source.clone(),
            line: m.line(),
            column: m.col() + 1,
        }
    }

    fn fail(&mut self, e: SpecError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn complete(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                merges,
                key,
                ..
            }) => match key.take() {
                None => {
                    let text = match &node.kind {
                        Kind::Scalar { text, .. } => text.clone(),
                        Kind::Null => String::new(),
                        _ => {
                            let e = SpecError::at(
                                ErrorKind::Syntax,
                                &node.mark,
                                "",
                                "mapping keys must be scalars",
                            );
                            self.fail(e);
                            return;
                        }
                    };
                    *key = Some((text, node.mark));
                }
                Some((k, key_mark)) => {
                    if k == "<<" {
                        merges.push(node);
                    } else if entries.iter().any(|e| e.key == k) {
                        let e = SpecError::at(
                            ErrorKind::Syntax,
                            &key_mark,
                            "",
                            format!("duplicate key \"{k}\""),
                        );
                        self.fail(e);
                    } else {
                        entries.push(Entry {
                            key: k,
                            key_mark,
                            value: node,
                        });
                    }
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, marker: Marker) {
        if self.error.is_some() {
            return;
        }
        let mark = self.mark(&marker);
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail(SpecError::at(
                        ErrorKind::Syntax,
                        &mark,
                        "",
                        "a compose file holds a single yaml document",
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let plain =
                    style == TScalarStyle::Plain && !matches!(&tag, Some(t) if t.suffix == "str");
                let is_null = plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL");
                // A key position keeps its text even when it reads as null.
                let in_key_position =
                    matches!(self.stack.last(), Some(Frame::Map { key: None, .. }));
                let kind = if is_null && !in_key_position {
                    Kind::Null
                } else {
                    Kind::Scalar { text, plain }
                };
                let node = Node {
                    kind,
                    mark,
                    tag: compose_tag(&tag),
                };
                self.complete(node, anchor);
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(node) => {
                    let node = node.clone();
                    self.complete(node, 0);
                }
                None => self.fail(SpecError::at(
                    ErrorKind::Syntax,
                    &mark,
                    "",
                    "alias to an unknown anchor",
                )),
            },
            Event::SequenceStart(anchor, tag) => self.stack.push(Frame::Seq {
                items: Vec::new(),
                mark,
                anchor,
                tag: compose_tag(&tag),
            }),
            Event::MappingStart(anchor, tag) => self.stack.push(Frame::Map {
                entries: Vec::new(),
                merges: Vec::new(),
                key: None,
                mark,
                anchor,
                tag: compose_tag(&tag),
            }),
            Event::SequenceEnd => {
                if let Some(Frame::Seq {
                    items,
                    mark,
                    anchor,
                    tag,
                }) = self.stack.pop()
                {
                    let node = Node {
                        kind: Kind::Seq(items),
                        mark,
                        tag,
                    };
                    self.complete(node, anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    mut entries,
                    merges,
                    mark,
                    anchor,
                    tag,
                    ..
                }) = self.stack.pop()
                {
                    for merge in merges {
                        let sources: Vec<Node> = match merge.kind {
                            Kind::Map(_) => vec![merge],
                            Kind::Seq(items) => items,
                            _ => {
                                self.fail(SpecError::at(
                                    ErrorKind::Syntax,
                                    &merge.mark,
                                    "",
                                    "the merge key \"<<\" takes a mapping or a list of mappings",
                                ));
                                return;
                            }
                        };
                        for source in sources {
                            let Kind::Map(src_entries) = source.kind else {
                                self.fail(SpecError::at(
                                    ErrorKind::Syntax,
                                    &source.mark,
                                    "",
                                    "the merge key \"<<\" takes a mapping or a list of mappings",
                                ));
                                return;
                            };
                            for e in src_entries {
                                if !entries.iter().any(|x| x.key == e.key) {
                                    entries.push(e);
                                }
                            }
                        }
                    }
                    let node = Node {
                        kind: Kind::Map(entries),
                        mark,
                        tag,
                    };
                    self.complete(node, anchor);
                }
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> Arc<Source> {
        Source::new("c.yaml".into(), "c.yaml".into(), "/p".into())
    }

    #[test]
    fn positions_are_one_based() {
        let n = parse("a:\n  b: 1\n", &src()).unwrap();
        let b = n.get("a").unwrap().entry("b").unwrap();
        assert_eq!((b.key_mark.line, b.key_mark.column), (2, 3));
        assert_eq!((b.value.mark.line, b.value.mark.column), (2, 6));
    }

    #[test]
    fn anchors_merge_keys_and_tags() {
        let n = parse(
            "x: &base {a: 1, b: 2}\ny:\n  <<: *base\n  b: 3\n  c: !reset\n  d: !override [1]\n",
            &src(),
        )
        .unwrap();
        let y = n.get("y").unwrap();
        assert_eq!(
            y.to_json(),
            serde_json::json!({"b": 3, "c": null, "d": [1], "a": 1})
        );
        assert_eq!(y.get("c").unwrap().tag, Some(Tag::Reset));
        assert_eq!(y.get("d").unwrap().tag, Some(Tag::Override));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = parse("a: 1\nb: 2\na: 3\n", &src()).unwrap_err();
        assert_eq!(e.to_string(), "c.yaml:3:1: duplicate key \"a\"");
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = parse("a: [1, 2\nb: 3\n", &src()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Syntax);
        assert!(e.line.is_some());
    }

    #[test]
    fn empty_is_null() {
        assert!(parse("# nothing\n", &src()).unwrap().is_null());
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        let n = parse("a: '1'\nb: 1\nc: 1.5\nd: yes\n", &src()).unwrap();
        assert_eq!(
            n.to_json(),
            serde_json::json!({"a": "1", "b": 1, "c": 1.5, "d": "yes"})
        );
    }
}
