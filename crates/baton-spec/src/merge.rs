//! Merging Compose files and `extends` bases: mappings merge recursively and later wins,
//! with Compose's per-key rules (maps, appended lists, volumes by target, `!reset`).

use std::collections::{HashMap, HashSet};

use crate::normalize::volume_target;
use crate::yaml::{Entry, Kind, Node, Tag};

/// How a key's values combine when two files both set it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rule {
    /// Later value wins, nested mappings merge.
    Deep,
    /// Later value replaces the earlier one entirely.
    Replace,
    /// List or mapping forms, normalised to a mapping, then merged.
    AsMap(ListForm),
    /// Lists appended, dropping exact duplicates.
    Append,
    /// Lists merged by the key each item has (volume target, secret target).
    ByKey(ItemKey),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ListForm {
    /// `KEY=VAL` items (`KEY` alone: null value).
    Assign,
    /// `host:ip` or `host=ip` items.
    Hosts,
    /// Plain names: `name` becomes `name: null`.
    Names,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ItemKey {
    VolumeTarget,
    FileRefTarget,
}

fn service_rule(key: &str) -> Rule {
    match key {
        "command" | "entrypoint" => Rule::Replace,
        "environment" | "labels" | "annotations" | "sysctls" | "storage_opt" => {
            Rule::AsMap(ListForm::Assign)
        }
        "extra_hosts" => Rule::AsMap(ListForm::Hosts),
        "networks" | "depends_on" => Rule::AsMap(ListForm::Names),
        "ulimits" => Rule::Deep,
        "ports"
        | "expose"
        | "dns"
        | "dns_search"
        | "dns_opt"
        | "cap_add"
        | "cap_drop"
        | "security_opt"
        | "devices"
        | "tmpfs"
        | "env_file"
        | "label_file"
        | "external_links"
        | "links"
        | "group_add"
        | "volumes_from"
        | "device_cgroup_rules"
        | "profiles" => Rule::Append,
        "volumes" => Rule::ByKey(ItemKey::VolumeTarget),
        "secrets" | "configs" => Rule::ByKey(ItemKey::FileRefTarget),
        _ => Rule::Deep,
    }
}

fn nested_rule(parent: &str, key: &str) -> Rule {
    match (parent, key) {
        ("healthcheck", "test") => Rule::Replace,
        ("build", "args") | ("build", "labels") | ("deploy", "labels") => {
            Rule::AsMap(ListForm::Assign)
        }
        ("build", "extra_hosts") => Rule::AsMap(ListForm::Hosts),
        ("build", "cache_from")
        | ("build", "cache_to")
        | ("build", "tags")
        | ("build", "platforms") => Rule::Append,
        _ => Rule::Deep,
    }
}

/// Merge two whole files (top-level mappings); `over` wins.
pub fn merge_files(base: Node, over: Node) -> Node {
    if over.is_null() {
        return base;
    }
    if base.is_null() {
        return over;
    }
    let mark = base.mark.clone();
    let (Kind::Map(entries), Kind::Map(over_entries)) = (base.kind, over.kind) else {
        return Node::new(Kind::Null, mark);
    };
    let entries = merge_entries(entries, over_entries, false, |key, b, o| {
        if key == "services" && o.tag != Some(Tag::Override) {
            merge_map_with(b, o, |_, b, o| merge_service(b, o))
        } else {
            merge_deep(b, o)
        }
    });
    Node {
        kind: Kind::Map(entries),
        mark,
        tag: None,
    }
}

/// Merge one service definition over another (also used by `extends`).
pub fn merge_service(base: Node, over: Node) -> Node {
    if over.is_null() && over.tag.is_none() {
        return base;
    }
    if !matches!(base.kind, Kind::Map(_)) || !matches!(over.kind, Kind::Map(_)) {
        return over;
    }
    let base = normalize_build(base);
    let over = normalize_build(over);
    merge_map_with(base, over, |key, b, o| apply(service_rule(key), key, b, o))
}

/// `build: ./dir` is `build: {context: ./dir}` before merging.
fn normalize_build(mut service: Node) -> Node {
    if let Some(entries) = service.as_map_mut() {
        for e in entries.iter_mut() {
            if e.key == "build" {
                if let Kind::Scalar { .. } = e.value.kind {
                    let mark = e.value.mark.clone();
                    let value =
                        std::mem::replace(&mut e.value, Node::new(Kind::Null, mark.clone()));
                    e.value = Node::new(
                        Kind::Map(vec![Entry {
                            key: "context".into(),
                            key_mark: mark.clone(),
                            value,
                        }]),
                        mark,
                    );
                }
            }
        }
    }
    service
}

fn merge_map_with(
    base: Node,
    over: Node,
    merge_value: impl FnMut(&str, Node, Node) -> Node,
) -> Node {
    let mark = base.mark.clone();
    let (Kind::Map(entries), Kind::Map(over_entries)) = (base.kind, over.kind) else {
        return Node::new(Kind::Null, mark);
    };
    Node {
        kind: Kind::Map(merge_entries(entries, over_entries, true, merge_value)),
        mark,
        tag: None,
    }
}

/// `over`'s entries onto `entries`: `!reset` removes, `!override` replaces (when
/// `override_tag`), a new key is appended, a key both have is merged by `merge_value`.
/// Keys are found through an index, so large mappings merge in linear time.
fn merge_entries(
    entries: Vec<Entry>,
    over: Vec<Entry>,
    override_tag: bool,
    mut merge_value: impl FnMut(&str, Node, Node) -> Node,
) -> Vec<Entry> {
    let mut slots: Vec<Option<Entry>> = entries.into_iter().map(Some).collect();
    let mut index: HashMap<String, usize> = slots
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.as_ref().map(|e| (e.key.clone(), i)))
        .collect();
    for e in over {
        if e.value.tag == Some(Tag::Reset) {
            if let Some(slot) = index.remove(&e.key).and_then(|i| slots.get_mut(i)) {
                *slot = None;
            }
            continue;
        }
        let existing = index
            .get(&e.key)
            .and_then(|i| slots.get_mut(*i))
            .and_then(Option::as_mut);
        match existing {
            None => {
                index.insert(e.key.clone(), slots.len());
                slots.push(Some(e));
            }
            // The key is located where it was last written: an error in the merged
            // value points at the file that changed it.
            Some(existing) if override_tag && e.value.tag == Some(Tag::Override) => {
                existing.key_mark = e.key_mark;
                existing.value = e.value;
                existing.value.tag = None;
            }
            Some(existing) => {
                existing.key_mark = e.key_mark.clone();
                let base_value = std::mem::replace(
                    &mut existing.value,
                    Node::new(Kind::Null, e.value.mark.clone()),
                );
                existing.value = merge_value(&e.key, base_value, e.value);
            }
        }
    }
    slots.into_iter().flatten().collect()
}

fn apply(rule: Rule, key: &str, base: Node, over: Node) -> Node {
    match rule {
        Rule::Replace => over,
        Rule::Deep => match (&base.kind, &over.kind) {
            (Kind::Map(_), Kind::Map(_)) => {
                merge_map_with(base, over, |k, b, o| apply(nested_rule(key, k), k, b, o))
            }
            _ => over,
        },
        Rule::AsMap(form) => {
            let base = as_map(base, form);
            let over = as_map(over, form);
            match (&base.kind, &over.kind) {
                (Kind::Map(_), Kind::Map(_)) => {
                    merge_map_with(base, over, |_, b, o| match (&b.kind, &o.kind) {
                        (Kind::Map(_), Kind::Map(_)) => merge_deep(b, o),
                        _ => o,
                    })
                }
                _ => over,
            }
        }
        Rule::Append => match (base.kind, over.kind) {
            (Kind::Seq(mut items), Kind::Seq(more)) => {
                // Items compared by their JSON text, through a set: linear time.
                let mut seen: HashSet<String> =
                    items.iter().map(|x| x.to_json().to_string()).collect();
                for item in more {
                    if seen.insert(item.to_json().to_string()) {
                        items.push(item);
                    }
                }
                Node::new(Kind::Seq(items), base.mark)
            }
            (_, kind) => Node {
                kind,
                mark: over.mark,
                tag: None,
            },
        },
        Rule::ByKey(item_key) => match (base.kind, over.kind) {
            (Kind::Seq(mut items), Kind::Seq(more)) => {
                // The first item with each key, through an index: linear time.
                let mut index: HashMap<String, usize> = HashMap::new();
                for (i, x) in items.iter().enumerate() {
                    if let Some(k) = key_of(x, item_key) {
                        index.entry(k).or_insert(i);
                    }
                }
                for item in more {
                    let slot = key_of(&item, item_key).and_then(|k| match index.get(&k) {
                        Some(i) => Some(*i),
                        None => {
                            index.insert(k, items.len());
                            None
                        }
                    });
                    match slot.and_then(|i| items.get_mut(i)) {
                        Some(slot) => *slot = item,
                        None => items.push(item),
                    }
                }
                Node::new(Kind::Seq(items), base.mark)
            }
            (_, kind) => Node {
                kind,
                mark: over.mark,
                tag: None,
            },
        },
    }
}

fn merge_deep(base: Node, over: Node) -> Node {
    match (&base.kind, &over.kind) {
        (Kind::Map(_), Kind::Map(_)) => merge_map_with(base, over, |_, b, o| merge_deep(b, o)),
        _ => over,
    }
}

fn key_of(item: &Node, key: ItemKey) -> Option<String> {
    match key {
        ItemKey::VolumeTarget => match &item.kind {
            Kind::Scalar { text, .. } => volume_target(text),
            Kind::Map(_) => item
                .get("target")
                .and_then(Node::scalar)
                .map(str::to_string),
            _ => None,
        },
        ItemKey::FileRefTarget => match &item.kind {
            Kind::Scalar { text, .. } => Some(text.clone()),
            Kind::Map(_) => item
                .get("target")
                .or_else(|| item.get("source"))
                .and_then(Node::scalar)
                .map(str::to_string),
            _ => None,
        },
    }
}

/// Turn the list form of a map-like key into its mapping form; other nodes pass through.
fn as_map(node: Node, form: ListForm) -> Node {
    let Kind::Seq(items) = node.kind else {
        return node;
    };
    // Every item in order and where each key was last seen: a key written again moves
    // to the end, in linear time.
    let mut entries: Vec<Entry> = Vec::new();
    let mut latest: HashMap<String, usize> = HashMap::new();
    for item in items {
        let Some(text) = item.scalar() else {
            continue;
        };
        let (k, v) = match form {
            ListForm::Assign => match text.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (text.to_string(), None),
            },
            ListForm::Hosts => match text.split_once('=').or_else(|| text.split_once(':')) {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (text.to_string(), None),
            },
            ListForm::Names => (text.to_string(), None),
        };
        let value = match v {
            Some(v) => Node::string(v, item.mark.clone()),
            None => Node::new(Kind::Null, item.mark.clone()),
        };
        latest.insert(k.clone(), entries.len());
        entries.push(Entry {
            key: k,
            key_mark: item.mark.clone(),
            value,
        });
    }
    let entries = entries
        .into_iter()
        .enumerate()
        .filter(|(i, e)| latest.get(&e.key) == Some(i))
        .map(|(_, e)| e)
        .collect();
    Node::new(Kind::Map(entries), node.mark)
}

/// Drop entries still tagged `!reset` (nothing was under them to reset).
pub fn strip_resets(node: &mut Node) {
    match &mut node.kind {
        Kind::Map(entries) => {
            entries.retain(|e| e.value.tag != Some(Tag::Reset));
            for e in entries.iter_mut() {
                strip_resets(&mut e.value);
            }
        }
        Kind::Seq(items) => {
            items.retain(|e| e.tag != Some(Tag::Reset));
            for i in items.iter_mut() {
                strip_resets(i);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::yaml::{parse, Source};

    fn node(text: &str) -> Node {
        let src: Arc<Source> = Source::new("t.yaml".into(), "t.yaml".into(), "/p".into());
        parse(text, &src, &crate::limits::Budget::default()).unwrap()
    }

    fn merged(a: &str, b: &str) -> serde_json::Value {
        let mut n = merge_files(node(a), node(b));
        strip_resets(&mut n);
        n.get("services")
            .and_then(|s| s.get("web"))
            .map(Node::to_json)
            .unwrap_or_default()
    }

    #[test]
    fn scalars_and_commands_are_replaced() {
        let got = merged(
            "services: {web: {image: a, command: [x, y], healthcheck: {test: [CMD, a], interval: 1s}}}",
            "services: {web: {image: b, command: [z], healthcheck: {test: [CMD, b]}}}",
        );
        assert_eq!(
            got,
            json!({"image": "b", "command": ["z"], "healthcheck": {"test": ["CMD", "b"], "interval": "1s"}})
        );
    }

    #[test]
    fn map_like_keys_merge_across_forms() {
        let got = merged(
            "services: {web: {environment: [A=1, B=2], labels: {x: y}, depends_on: [db], extra_hosts: ['a:1.1.1.1']}}",
            "services: {web: {environment: {B: 3, C: null}, labels: [z=w], depends_on: {cache: {condition: service_healthy}}, extra_hosts: {b: 2.2.2.2}}}",
        );
        assert_eq!(
            got,
            json!({
                "environment": {"A": "1", "B": 3, "C": null},
                "labels": {"x": "y", "z": "w"},
                "depends_on": {"db": null, "cache": {"condition": "service_healthy"}},
                "extra_hosts": {"a": "1.1.1.1", "b": "2.2.2.2"}
            })
        );
    }

    #[test]
    fn lists_append_and_volumes_merge_by_target() {
        let got = merged(
            "services: {web: {ports: ['80:80'], dns: [a], volumes: ['va:/data', '/x:/other'], secrets: [s1]}}",
            "services: {web: {ports: ['80:80', '443:443'], dns: [b], volumes: ['vb:/data:ro'], secrets: [{source: s1, mode: 0400}]}}",
        );
        assert_eq!(
            got,
            json!({
                "ports": ["80:80", "443:443"],
                "dns": ["a", "b"],
                "volumes": ["vb:/data:ro", "/x:/other"],
                "secrets": [{"source": "s1", "mode": 400}]
            })
        );
    }

    #[test]
    fn reset_and_override() {
        let got = merged(
            "services: {web: {image: a, ports: ['80:80'], environment: {A: 1}, command: x}}",
            "services: {web: {ports: !override ['81:81'], environment: !reset {}, command: !reset null}}",
        );
        assert_eq!(got, json!({"image": "a", "ports": ["81:81"]}));
    }

    #[test]
    fn build_string_merges_with_map() {
        let got = merged(
            "services: {web: {build: ./a}}",
            "services: {web: {build: {dockerfile: D, args: [X=1]}}}",
        );
        assert_eq!(
            got,
            json!({"build": {"context": "./a", "dockerfile": "D", "args": ["X=1"]}})
        );
    }
}
