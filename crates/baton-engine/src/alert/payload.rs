//! What a notification looks like to each kind of receiver, pure: Alertmanager's webhook
//! JSON (version 4), a Slack-compatible incoming-webhook message, and an email's subject
//! and text. The daemon sends them.

use serde_json::{json, Map, Value};

use super::notify::{AlertView, Notification, Status};
use super::Labels;

/// Alertmanager's zero time, its `endsAt` of an alert still firing.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Unix milliseconds as RFC 3339 in UTC with milliseconds (`2026-12-03T12:00:00.000Z`).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

fn object(labels: &Labels) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Firing => "firing",
        Status::Resolved => "resolved",
    }
}

fn alerts(n: &Notification) -> impl Iterator<Item = &AlertView> {
    n.firing.iter().chain(&n.resolved)
}

/// The annotations every alert of the notification has, with the same value.
fn common_annotations(n: &Notification) -> Labels {
    let mut all = alerts(n);
    let Some(first) = all.next() else {
        return Labels::new();
    };
    let rest: Vec<&AlertView> = all.collect();
    first
        .annotations
        .iter()
        .filter(|(k, v)| rest.iter().all(|a| a.annotations.get(*k) == Some(*v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Alertmanager's webhook payload, version 4, as its `webhook_config` receivers get it.
pub fn alertmanager(n: &Notification, external_url: &str) -> Value {
    json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": status_word(n.status),
        "receiver": n.receiver,
        "groupLabels": object(&n.group_labels),
        "commonLabels": object(&n.common_labels),
        "commonAnnotations": object(&common_annotations(n)),
        "externalURL": external_url,
        "alerts": alerts(n).map(|a| json!({
            "status": status_word(a.status),
            "labels": object(&a.labels),
            "annotations": object(&a.annotations.clone().into_iter().collect()),
            "startsAt": rfc3339(a.starts_at_ms),
            "endsAt": a.ends_at_ms.map_or(ZERO_TIME.to_string(), rfc3339),
            "generatorURL": "",
            "fingerprint": a.fingerprint,
        })).collect::<Vec<_>>(),
    })
}

/// The first line of every message: `[FIRING:2] web-errors (service="web")`.
pub fn title(n: &Notification) -> String {
    let name = n
        .common_labels
        .get(super::ALERTNAME)
        .cloned()
        .unwrap_or_else(|| "alerts".into());
    let others: Vec<String> = n
        .group_labels
        .iter()
        .filter(|(k, _)| k.as_str() != super::ALERTNAME)
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    let count = match n.status {
        Status::Firing => n.firing.len(),
        Status::Resolved => n.resolved.len(),
    };
    let mut t = format!("[{}:{count}] {name}", status_word(n.status).to_uppercase());
    if !others.is_empty() {
        t.push_str(&format!(" ({})", others.join(", ")));
    }
    t
}

/// One line per alert: status, labels, summary (or description).
fn lines(n: &Notification) -> Vec<String> {
    alerts(n)
        .map(|a| {
            let text = a
                .annotations
                .get("summary")
                .or_else(|| a.annotations.get("description"))
                .cloned()
                .unwrap_or_default();
            let labels = super::labels_text(&a.labels);
            format!("{} {labels} {text}", status_word(a.status))
                .trim_end()
                .to_string()
        })
        .collect()
}

/// A Slack-compatible incoming-webhook message (also read by Mattermost and others).
pub fn slack(n: &Notification) -> Value {
    json!({
        "text": title(n),
        "attachments": [{
            "color": if n.status == Status::Firing { "danger" } else { "good" },
            "title": title(n),
            "text": lines(n).join("\n"),
        }],
    })
}

/// An email's subject and plain-text body.
pub fn email(n: &Notification) -> (String, String) {
    let mut body = String::new();
    for a in alerts(n) {
        body.push_str(&format!(
            "{}: {}\n",
            status_word(a.status),
            super::labels_text(&a.labels)
        ));
        for (k, v) in &a.annotations {
            body.push_str(&format!("  {k}: {v}\n"));
        }
        body.push_str(&format!("  since: {}\n", rfc3339(a.starts_at_ms)));
        if let Some(end) = a.ends_at_ms {
            body.push_str(&format!("  resolved: {}\n", rfc3339(end)));
        }
        body.push('\n');
    }
    (title(n), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(status: Status) -> Notification {
        let labels: Labels = [("alertname", "web-errors"), ("service", "web")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let view = AlertView {
            fingerprint: "0123456789abcdef".into(),
            status,
            labels: labels.clone(),
            annotations: [("summary".to_string(), "5% errors".to_string())].into(),
            starts_at_ms: 1_796_300_000_123,
            ends_at_ms: (status == Status::Resolved).then_some(1_796_300_060_000),
            value: 0.05,
        };
        Notification {
            at_ms: 1_796_300_061_000,
            receiver: "ops".into(),
            group_key: "ops:{}".into(),
            group_labels: labels.clone(),
            status,
            common_labels: labels,
            firing: if status == Status::Firing {
                vec![view.clone()]
            } else {
                vec![]
            },
            resolved: if status == Status::Resolved {
                vec![view]
            } else {
                vec![]
            },
        }
    }

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_300_000_123), "2026-12-03T12:13:20.123Z");
    }

    #[test]
    fn alertmanager_v4_has_its_fields() {
        let p = alertmanager(&note(Status::Firing), "http://baton");
        assert_eq!(p["version"], "4");
        assert_eq!(p["status"], "firing");
        assert_eq!(p["receiver"], "ops");
        assert_eq!(p["commonAnnotations"]["summary"], "5% errors");
        assert_eq!(p["alerts"][0]["endsAt"], ZERO_TIME);
        assert_eq!(p["alerts"][0]["labels"]["service"], "web");
        assert_eq!(p["alerts"][0]["startsAt"], "2026-12-03T12:13:20.123Z");
        let r = alertmanager(&note(Status::Resolved), "");
        assert_eq!(r["status"], "resolved");
        assert_eq!(r["alerts"][0]["status"], "resolved");
        assert_eq!(r["alerts"][0]["endsAt"], "2026-12-03T12:14:20.000Z");
    }

    #[test]
    fn slack_and_email_say_what_fires() {
        let n = note(Status::Firing);
        assert_eq!(title(&n), "[FIRING:1] web-errors (service=\"web\")");
        assert_eq!(slack(&n)["attachments"][0]["color"], "danger");
        let (subject, body) = email(&n);
        assert_eq!(subject, title(&n));
        assert!(body.contains("summary: 5% errors"), "{body}");
    }
}
