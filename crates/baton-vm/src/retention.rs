//! Snapshot naming templates and retention: which snapshots a policy keeps. Pure: the
//! snapshots and the clock come in, the names to delete go out.

use chrono::{DateTime, Utc};

use crate::spec::SnapshotPolicy;

/// The kinds of snapshot; policies prune `automated` and `pre-deploy` ones, never
/// `manual` ones (those stay until removed by hand).
pub const KINDS: &[&str] = &["manual", "automated", "pre-deploy"];

const PLACEHOLDERS: &[&str] = &["vm", "date", "time", "type", "seq"];

/// Checks a naming template: known `{placeholders}` only, and characters QEMU accepts.
pub fn check_template(t: &str) -> Result<(), String> {
    let mut rest = t;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else {
            return Err(format!("unclosed {{ in naming template {t:?}"));
        };
        let key = &rest[start + 1..start + end];
        if !PLACEHOLDERS.contains(&key) {
            return Err(format!(
                "unknown placeholder {{{key}}} in naming template: use {{vm}}, {{date}}, {{time}}, {{type}} or {{seq}}"
            ));
        }
        rest = &rest[start + end + 1..];
    }
    if t.is_empty()
        || !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "{}_-.".contains(c))
    {
        return Err(format!(
            "naming template {t:?} may only hold letters, digits, '_', '-', '.' and placeholders"
        ));
    }
    Ok(())
}

/// The name of a new snapshot: the template filled in, made unique among `existing`
/// with a `_2`, `_3`, … suffix. `seq` is the VM's snapshot count plus one.
pub fn snapshot_name(
    template: &str,
    vm: &str,
    kind: &str,
    now_ms: i64,
    seq: usize,
    existing: &[String],
) -> String {
    let at: DateTime<Utc> = DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    let base = template
        .replace("{vm}", vm)
        .replace("{date}", &at.format("%Y%m%d").to_string())
        .replace("{time}", &at.format("%H%M%S").to_string())
        .replace("{type}", kind)
        .replace("{seq}", &seq.to_string());
    if !existing.contains(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}_{n}"))
        .find(|c| !existing.contains(c))
        .unwrap_or(base)
}

/// A snapshot as retention sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Aged {
    pub name: String,
    pub kind: String,
    pub created_at: i64,
}

/// The snapshots `policy` removes: prunable ones older than `retention_days`, then the
/// oldest prunable ones beyond `max_snapshots` (counting every prunable snapshot).
pub fn prune(snapshots: &[Aged], policy: &SnapshotPolicy, now_ms: i64) -> Vec<String> {
    let mut prunable: Vec<&Aged> = snapshots.iter().filter(|s| s.kind != "manual").collect();
    prunable.sort_by_key(|s| s.created_at);
    let mut out = Vec::new();
    if let Some(days) = policy.retention_days {
        let cutoff = now_ms - i64::from(days) * 86_400_000;
        prunable.retain(|s| {
            if s.created_at < cutoff {
                out.push(s.name.clone());
                false
            } else {
                true
            }
        });
    }
    if let Some(max) = policy.max_snapshots {
        let excess = prunable.len().saturating_sub(max as usize);
        out.extend(prunable.iter().take(excess).map(|s| s.name.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snaps(n: usize, kind: &str) -> Vec<Aged> {
        (0..n)
            .map(|i| Aged {
                name: format!("s{i}"),
                kind: kind.into(),
                created_at: i as i64 * 1000,
            })
            .collect()
    }

    #[test]
    fn max_snapshots_keeps_the_newest() {
        let p = SnapshotPolicy {
            max_snapshots: Some(5),
            ..Default::default()
        };
        let gone = prune(&snaps(12, "automated"), &p, 20_000);
        assert_eq!(gone, (0..7).map(|i| format!("s{i}")).collect::<Vec<_>>());
        assert!(prune(&snaps(12, "manual"), &p, 20_000).is_empty());
    }

    #[test]
    fn retention_days_drops_old_ones() {
        let p = SnapshotPolicy {
            retention_days: Some(1),
            ..Default::default()
        };
        let mut s = snaps(3, "automated");
        s[0].created_at = -2 * 86_400_000;
        assert_eq!(prune(&s, &p, 10_000), vec!["s0".to_string()]);
    }

    #[test]
    fn names_follow_the_template_and_stay_unique() {
        // 2026-11-24 00:00:00 UTC
        let t = 1_795_478_400_000;
        let n = snapshot_name("{vm}_{date}_{type}", "web", "automated", t, 1, &[]);
        assert_eq!(n, "web_20261124_automated");
        let n2 = snapshot_name(
            "{vm}_{date}_{type}",
            "web",
            "automated",
            t,
            2,
            std::slice::from_ref(&n),
        );
        assert_eq!(n2, "web_20261124_automated_2");
        assert!(check_template("{vm}_{nope}").is_err());
        assert!(check_template("a b").is_err());
        assert!(check_template("{vm}-{seq}").is_ok());
    }
}
