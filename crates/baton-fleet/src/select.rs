//! Target selectors: `all`, a host id, a group, `role:web`, `tag:frontend`, `group:g`,
//! unions with `,`, intersections with `&` (or Ansible's `:&`) and exclusions with `!`
//! (or `:!`): `role:web:&tag:eu,db1` or `all:!canary`.

use std::collections::BTreeSet;

use crate::inventory::Inventory;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SelectError {
    #[error("selector `{selector}`: no host, group, role or tag is called `{word}`{hint}")]
    Unknown {
        selector: String,
        word: String,
        hint: String,
    },
    #[error("selector `{0}` is empty")]
    Empty(String),
}

/// Host ids matched by `selector`, in inventory order. An unknown word is an error (a
/// typo must not silently select nothing); a known word matching nobody is not.
pub fn select(inv: &Inventory, selector: &str) -> Result<Vec<String>, SelectError> {
    let mut chosen = BTreeSet::new();
    if selector.trim().is_empty() {
        return Err(SelectError::Empty(selector.to_string()));
    }
    for term in selector.split(',') {
        let term = term.trim();
        if term.is_empty() {
            return Err(SelectError::Empty(selector.to_string()));
        }
        // Split into (operator, atom) pieces on `&` and `!`.
        let mut pieces: Vec<(char, String)> = Vec::new();
        let mut op = '+';
        let mut cur = String::new();
        for c in term.chars() {
            if c == '&' || c == '!' {
                push_piece(&mut pieces, op, &cur);
                cur.clear();
                op = c;
            } else {
                cur.push(c);
            }
        }
        push_piece(&mut pieces, op, &cur);
        let mut set: Option<BTreeSet<String>> = None;
        let mut minus = BTreeSet::new();
        for (op, atom) in &pieces {
            let hosts = atom_hosts(inv, atom, selector)?;
            match op {
                '!' => minus.extend(hosts),
                _ => {
                    set = Some(match set {
                        None => hosts,
                        Some(s) => s.intersection(&hosts).cloned().collect(),
                    })
                }
            }
        }
        let base = set.unwrap_or_else(|| inv.hosts.keys().cloned().collect());
        chosen.extend(base.difference(&minus).cloned());
    }
    Ok(inv
        .hosts
        .keys()
        .filter(|k| chosen.contains(*k))
        .cloned()
        .collect())
}

fn push_piece(pieces: &mut Vec<(char, String)>, op: char, raw: &str) {
    let atom = raw.trim().trim_end_matches(':').trim();
    if !atom.is_empty() {
        pieces.push((op, atom.to_string()));
    }
}

fn atom_hosts(
    inv: &Inventory,
    atom: &str,
    selector: &str,
) -> Result<BTreeSet<String>, SelectError> {
    let all = || inv.hosts.keys().cloned().collect::<BTreeSet<_>>();
    if atom == "all" || atom == "*" {
        return Ok(all());
    }
    let groups = inv.groups();
    let (kind, name) = atom.split_once(':').unwrap_or(("", atom));
    let known = match kind {
        "role" => inv.hosts.values().any(|h| h.role.as_deref() == Some(name)),
        "tag" => inv.hosts.values().any(|h| h.tags.contains(name)),
        "group" => groups.contains_key(name),
        "host" => inv.hosts.contains_key(name),
        _ => inv.hosts.contains_key(name) || groups.contains_key(name),
    };
    if !known {
        let mut words: Vec<String> = inv.hosts.keys().cloned().collect();
        words.extend(groups.keys().cloned());
        for h in inv.hosts.values() {
            words.extend(h.role.iter().map(|r| format!("role:{r}")));
            words.extend(h.tags.iter().map(|t| format!("tag:{t}")));
        }
        let hint = baton_spec::closest(atom, words.iter().map(String::as_str))
            .map(|w| format!(" (did you mean `{w}`?)"))
            .unwrap_or_default();
        return Err(SelectError::Unknown {
            selector: selector.to_string(),
            word: atom.to_string(),
            hint,
        });
    }
    Ok(inv
        .hosts
        .values()
        .filter(|h| match kind {
            "role" => h.role.as_deref() == Some(name),
            "tag" => h.tags.contains(name),
            "group" => h.groups.contains(name),
            "host" => h.id == name,
            _ => h.id == name || h.groups.contains(name),
        })
        .map(|h| h.id.clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::from_ansible_ini;

    fn inv() -> Inventory {
        let mut inv = from_ansible_ini(
            "[web]\nw1 role=web\nw2 role=web\n[db]\nd1 role=db\n[eu]\nw1\nd1\n",
            "i",
            std::path::Path::new("/"),
        )
        .unwrap();
        inv.hosts
            .get_mut("w2")
            .unwrap()
            .tags
            .insert("canary".into());
        inv
    }

    fn sel(s: &str) -> Vec<String> {
        select(&inv(), s).unwrap()
    }

    #[test]
    fn selectors_pick_hosts() {
        assert_eq!(sel("all"), ["d1", "w1", "w2"]);
        assert_eq!(sel("w1"), ["w1"]);
        assert_eq!(sel("web"), ["w1", "w2"]);
        assert_eq!(sel("role:db"), ["d1"]);
        assert_eq!(sel("tag:canary"), ["w2"]);
        assert_eq!(sel("web,db"), ["d1", "w1", "w2"]);
        assert_eq!(sel("web:&eu"), ["w1"]);
        assert_eq!(sel("role:web&group:eu"), ["w1"]);
        assert_eq!(sel("web:!tag:canary"), ["w1"]);
        assert_eq!(sel("!eu"), ["w2"]);
        assert_eq!(sel("role:web:&tag:canary,d1"), ["d1", "w2"]);
    }

    #[test]
    fn unknown_words_are_errors_with_a_hint() {
        let e = select(&inv(), "wbe").unwrap_err();
        assert!(e.to_string().contains("did you mean `web`"), "{e}");
        assert!(select(&inv(), "role:cache").is_err());
        assert!(select(&inv(), "").is_err());
        assert!(select(&inv(), "web,,db").is_err());
    }
}
