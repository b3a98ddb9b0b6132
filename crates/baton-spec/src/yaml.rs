//! YAML with positions: a small node tree where every node knows its file, line and
//! column, built from yaml-rust2's marked events (anchors, aliases, `<<`, `!reset`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value as Json;
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::error::{ErrorKind, SpecError};
use crate::limits::{Budget, MAX_DEPTH, MAX_KEY_BYTES};

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

    /// Nodes and scalar bytes (keys included) in this subtree: what a copy of it costs.
    pub fn size(&self) -> (usize, usize) {
        let add = |(n, t): (usize, usize), (a, b): (usize, usize)| {
            (n.saturating_add(a), t.saturating_add(b))
        };
        match &self.kind {
            Kind::Null => (1, 0),
            Kind::Scalar { text, .. } => (1, text.len()),
            Kind::Seq(items) => items.iter().map(Node::size).fold((1, 0), add),
            Kind::Map(entries) => entries
                .iter()
                .map(|e| add(e.value.size(), (1, e.key.len())))
                .fold((1, 0), add),
        }
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

/// Parse one YAML document. An empty file gives a null node. A second document, a tab
/// indenting the first line, nesting deeper than [`MAX_DEPTH`] and more nodes or text
/// than `budget` allows (aliases copy their anchor's nodes) are errors.
pub fn parse(text: &str, source: &Arc<Source>, budget: &Budget) -> Result<Node, SpecError> {
    first_line_tab(text, source)?;
    let mut builder = Builder {
        source: source.clone(),
        budget,
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        documents: 0,
    };
    // Events are pulled one by one rather than through `Parser::load`, which recurses
    // once per nesting level and reads only as many documents as it is told.
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, marker) = parser.next_token().map_err(|e| {
            SpecError::at(
                ErrorKind::Syntax,
                &builder.mark(e.marker()),
                "",
                format!("invalid yaml: {}", e.info()),
            )
        })?;
        if event == Event::StreamEnd {
            break;
        }
        builder.on_event(event, &marker)?;
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

/// YAML indents with spaces only. yaml-rust2 takes a tab before the first key as
/// separation, reads a one-key mapping and stops at the next line ("did not find
/// expected <document start>"); say what is wrong instead.
fn first_line_tab(text: &str, source: &Arc<Source>) -> Result<(), SpecError> {
    for (i, line) in text.lines().enumerate() {
        let content = line.trim_start_matches([' ', '\t']);
        if content.is_empty()
            || content.starts_with('#')
            || line.starts_with('%')
            || line.trim_end() == "---"
        {
            continue;
        }
        let indent = &line[..line.len() - content.len()];
        if let Some(tab) = indent.find('\t') {
            if !content.starts_with(['{', '[', '"', '\'']) {
                let mark = Mark {
                    source: source.clone(),
                    line: i + 1,
                    column: tab + 1,
                };
                return Err(SpecError::at(
                    ErrorKind::Syntax,
                    &mark,
                    "",
                    "invalid yaml: a tab indents the first line (yaml indents with spaces only)",
                ));
            }
        }
        return Ok(());
    }
    Ok(())
}

/// Nodes and scalar bytes in a subtree: what a copy of it costs.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: usize,
    text: usize,
}

impl Size {
    fn add(&mut self, other: Size) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.text = self.text.saturating_add(other.text);
    }
}

/// What an anchor left for the aliases to come.
enum Anchor {
    /// A copy of the anchored node.
    Copy(Node, Size),
    /// No copy: it would have crossed the budget (the message says which bound). An
    /// alias to it is the error.
    TooLarge(String),
}

/// A mapping key read and waiting for its value.
struct Key {
    text: String,
    mark: Mark,
    /// A plain `<<`: the value is merged, not stored under a key.
    merge: bool,
}

enum Frame {
    Seq {
        items: Vec<Node>,
        mark: Mark,
        anchor: usize,
        tag: Option<Tag>,
        size: Size,
    },
    Map {
        entries: Vec<Entry>,
        /// The keys in `entries`, so duplicates and merges cost no scan.
        keys: HashSet<String>,
        merges: Vec<Node>,
        key: Option<Key>,
        mark: Mark,
        anchor: usize,
        tag: Option<Tag>,
        size: Size,
    },
}

struct Builder<'a> {
    source: Arc<Source>,
    budget: &'a Budget,
    stack: Vec<Frame>,
    /// Each anchor's node and its size, for the aliases that copy it.
    anchors: HashMap<usize, Anchor>,
    root: Option<Node>,
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

impl Builder<'_> {
    fn mark(&self, m: &Marker) -> Mark {
        Mark {
            source: self.source.clone(),
            line: m.line(),
            column: m.col() + 1,
        }
    }

    /// Charge `size` to the budget; an error is located at `mark`.
    fn charge(&self, size: Size, mark: &Mark) -> Result<(), SpecError> {
        self.budget
            .nodes(size.nodes)
            .and_then(|()| self.budget.text(size.text))
            .map_err(|m| SpecError::at(ErrorKind::Limit, mark, "", m))
    }

    fn complete(&mut self, node: Node, size: Size, anchor: usize) -> Result<(), SpecError> {
        if anchor > 0 {
            // The table keeps its own copy for the aliases to come. A copy past the
            // budget is not made, and the error waits for an alias that needs it, so it
            // points at the alias (and an anchor never used costs nothing).
            let entry = match self.charge(size, &node.mark) {
                Ok(()) => Anchor::Copy(node.clone(), size),
                Err(e) => Anchor::TooLarge(e.message),
            };
            self.anchors.insert(anchor, entry);
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq { items, size: s, .. }) => {
                s.add(size);
                items.push(node);
            }
            Some(Frame::Map {
                entries,
                keys,
                merges,
                key,
                size: s,
                ..
            }) => {
                s.add(size);
                match key.take() {
                    None => {
                        let (text, plain) = match node.kind {
                            Kind::Scalar { text, plain } => (text, plain),
                            Kind::Null => (String::new(), true),
                            _ => {
                                return Err(SpecError::at(
                                    ErrorKind::Syntax,
                                    &node.mark,
                                    "",
                                    "mapping keys must be scalars",
                                ))
                            }
                        };
                        if text.len() > MAX_KEY_BYTES {
                            return Err(SpecError::at(
                                ErrorKind::Limit,
                                &node.mark,
                                "",
                                format!("a key longer than {MAX_KEY_BYTES} bytes"),
                            ));
                        }
                        *key = Some(Key {
                            merge: plain && text == "<<",
                            text,
                            mark: node.mark,
                        });
                    }
                    Some(k) if k.merge => merges.push(node),
                    Some(k) => {
                        if !keys.insert(k.text.clone()) {
                            return Err(SpecError::at(
                                ErrorKind::Syntax,
                                &k.mark,
                                "",
                                format!("duplicate key \"{}\"", k.text),
                            ));
                        }
                        entries.push(Entry {
                            key: k.text,
                            key_mark: k.mark,
                            value: node,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn open(&mut self, frame: Frame, mark: &Mark) -> Result<(), SpecError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(SpecError::at(
                ErrorKind::Limit,
                mark,
                "",
                format!("yaml nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.charge(Size { nodes: 1, text: 0 }, mark)?;
        self.stack.push(frame);
        Ok(())
    }

    fn on_event(&mut self, ev: Event, marker: &Marker) -> Result<(), SpecError> {
        let mark = self.mark(marker);
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(SpecError::at(
                        ErrorKind::Syntax,
                        &mark,
                        "",
                        "a second yaml document starts here; a compose file holds one",
                    )
                    .with_hint("remove the \"---\" line or split the file"));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let plain =
                    style == TScalarStyle::Plain && !matches!(&tag, Some(t) if t.suffix == "str");
                let is_null = plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL");
                // A key position keeps its text even when it reads as null.
                let in_key_position =
                    matches!(self.stack.last(), Some(Frame::Map { key: None, .. }));
                let size = Size {
                    nodes: 1,
                    text: text.len(),
                };
                self.charge(size, &mark)?;
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
                self.complete(node, size, anchor)?;
            }
            Event::Alias(id) => {
                let (node, size) = match self.anchors.get(&id) {
                    Some(Anchor::Copy(node, size)) => (node, *size),
                    Some(Anchor::TooLarge(message)) => {
                        // The anchor's own copy did not fit; this one cannot either.
                        return Err(SpecError::at(ErrorKind::Limit, &mark, "", message.clone()));
                    }
                    None => {
                        return Err(SpecError::at(
                            ErrorKind::Syntax,
                            &mark,
                            "",
                            "alias to an unknown anchor",
                        ))
                    }
                };
                // Check before copying: a copy past the bound is the bomb itself.
                self.charge(size, &mark)?;
                let node = node.clone();
                self.complete(node, size, 0)?;
            }
            Event::SequenceStart(anchor, tag) => {
                let frame = Frame::Seq {
                    items: Vec::new(),
                    mark: mark.clone(),
                    anchor,
                    tag: compose_tag(&tag),
                    size: Size::default(),
                };
                self.open(frame, &mark)?;
            }
            Event::MappingStart(anchor, tag) => {
                let frame = Frame::Map {
                    entries: Vec::new(),
                    keys: HashSet::new(),
                    merges: Vec::new(),
                    key: None,
                    mark: mark.clone(),
                    anchor,
                    tag: compose_tag(&tag),
                    size: Size::default(),
                };
                self.open(frame, &mark)?;
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq {
                    items,
                    mark,
                    anchor,
                    tag,
                    mut size,
                }) = self.stack.pop()
                {
                    size.add(Size { nodes: 1, text: 0 });
                    let node = Node {
                        kind: Kind::Seq(items),
                        mark,
                        tag,
                    };
                    self.complete(node, size, anchor)?;
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    mut entries,
                    mut keys,
                    merges,
                    mark,
                    anchor,
                    tag,
                    mut size,
                    ..
                }) = self.stack.pop()
                {
                    for merge in merges {
                        merge_into(&mut entries, &mut keys, merge)?;
                    }
                    size.add(Size { nodes: 1, text: 0 });
                    let node = Node {
                        kind: Kind::Map(entries),
                        mark,
                        tag,
                    };
                    self.complete(node, size, anchor)?;
                }
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        Ok(())
    }
}

/// `<<: *a` or `<<: [*a, *b]`: the keys the mapping does not set itself, earlier
/// sources first.
fn merge_into(
    entries: &mut Vec<Entry>,
    keys: &mut HashSet<String>,
    merge: Node,
) -> Result<(), SpecError> {
    let bad = |mark: &Mark| {
        SpecError::at(
            ErrorKind::Syntax,
            mark,
            "",
            "the merge key \"<<\" takes a mapping or a list of mappings",
        )
    };
    let sources: Vec<Node> = match merge.kind {
        Kind::Map(_) => vec![merge],
        Kind::Seq(items) => items,
        _ => return Err(bad(&merge.mark)),
    };
    for source in sources {
        let Kind::Map(src_entries) = source.kind else {
            return Err(bad(&source.mark));
        };
        for e in src_entries {
            if keys.insert(e.key.clone()) {
                entries.push(e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> Arc<Source> {
        Source::new("c.yaml".into(), "c.yaml".into(), "/p".into())
    }

    #[test]
    fn positions_are_one_based() {
        let n = parse("a:\n  b: 1\n", &src(), &Budget::default()).unwrap();
        let b = n.get("a").unwrap().entry("b").unwrap();
        assert_eq!((b.key_mark.line, b.key_mark.column), (2, 3));
        assert_eq!((b.value.mark.line, b.value.mark.column), (2, 6));
    }

    #[test]
    fn anchors_merge_keys_and_tags() {
        let n = parse(
            "x: &base {a: 1, b: 2}\ny:\n  <<: *base\n  b: 3\n  c: !reset\n  d: !override [1]\n",
            &src(),
            &Budget::default(),
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
        let e = parse("a: 1\nb: 2\na: 3\n", &src(), &Budget::default()).unwrap_err();
        assert_eq!(e.to_string(), "c.yaml:3:1: duplicate key \"a\"");
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = parse("a: [1, 2\nb: 3\n", &src(), &Budget::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Syntax);
        assert!(e.line.is_some());
    }

    #[test]
    fn empty_is_null() {
        assert!(parse("# nothing\n", &src(), &Budget::default())
            .unwrap()
            .is_null());
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        let n = parse("a: '1'\nb: 1\nc: 1.5\nd: yes\n", &src(), &Budget::default()).unwrap();
        assert_eq!(
            n.to_json(),
            serde_json::json!({"a": "1", "b": 1, "c": 1.5, "d": "yes"})
        );
    }

    #[test]
    fn only_a_plain_merge_key_merges() {
        let n = parse(
            "x: &b {a: 1}\ny: {\"<<\": *b}\n",
            &src(),
            &Budget::default(),
        )
        .unwrap();
        assert_eq!(
            n.get("y").unwrap().to_json(),
            serde_json::json!({"<<": {"a": 1}})
        );
    }

    #[test]
    fn a_second_document_is_an_error() {
        let e = parse("a: 1\n---\nb: 2\n", &src(), &Budget::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.yaml:2:1: a second yaml document starts here; a compose file holds one (remove the \"---\" line or split the file)"
        );
        // A document end marker, a leading "---" and comments after the end are one document.
        assert!(parse("---\na: 1\n...\n# done\n", &src(), &Budget::default()).is_ok());
    }

    #[test]
    fn a_tab_indenting_the_first_line_is_named() {
        let e = parse("# c\n\tname: x\nservices: {}\n", &src(), &Budget::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.yaml:2:1: invalid yaml: a tab indents the first line (yaml indents with spaces only)"
        );
        // In a flow collection a tab is only separation.
        assert!(parse("\t{a: 1}\n", &src(), &Budget::default()).is_ok());
    }

    #[test]
    fn nesting_is_bounded() {
        let flow = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse(&flow(MAX_DEPTH), &src(), &Budget::default()).is_ok());
        let e = parse(&format!("a: {}", flow(200)), &src(), &Budget::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Limit);
        // The root mapping is the first level: the 63rd "[" is the 64th.
        assert_eq!(
            e.to_string(),
            format!(
                "c.yaml:1:{}: yaml nested deeper than 64 levels",
                3 + MAX_DEPTH
            )
        );
        // Block nesting goes through the same bound; yaml-rust2 stops very deep flow
        // nesting itself.
        let block = "- ".repeat(100_000);
        let e = parse(&block, &src(), &Budget::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Limit);
        let e = parse(
            &format!("a: {}", "[".repeat(100_000)),
            &src(),
            &Budget::default(),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Syntax);
    }

    #[test]
    fn aliases_are_charged_where_they_copy() {
        let budget = Budget::default();
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (i, prev) in ('b'..='h').zip('a'..) {
            let refs = vec![format!("*{prev}"); 10].join(", ");
            text.push_str(&format!("{i}: &{i} [{refs}]\n"));
        }
        let e = parse(&text, &src(), &budget).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Limit);
        // Line 6 holds "f", whose aliases copy 111111 nodes each: the seventh crosses.
        assert_eq!((e.line, e.column), (Some(6), Some(32)));
        assert!(e.message.contains("beyond 1000000 yaml nodes"), "{e}");
    }
}
