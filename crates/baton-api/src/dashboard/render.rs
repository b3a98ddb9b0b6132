//! The dashboard's templates: minijinja with HTML autoescaping, every template compiled
//! into the binary, and the few filters the pages use (times, durations, sizes).
//!
//! Why minijinja: already in the workspace (the fleet's file templates), Jinja's blocks
//! give each page's live fragments for free (`render_block`), and escaping is on for
//! every `.html` template, so nothing from the store reaches a page unescaped.

use std::sync::OnceLock;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use minijinja::{AutoEscape, Environment, State, UndefinedBehavior, Value};

use crate::ApiError;

/// Every template, by name: `include_str!`, so the binary needs no file at run time.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("macros.html", include_str!("../../templates/macros.html")),
    ("login.html", include_str!("../../templates/login.html")),
    (
        "overview.html",
        include_str!("../../templates/overview.html"),
    ),
    ("service.html", include_str!("../../templates/service.html")),
    (
        "pipelines.html",
        include_str!("../../templates/pipelines.html"),
    ),
    ("run.html", include_str!("../../templates/run.html")),
    ("vms.html", include_str!("../../templates/vms.html")),
    ("vm.html", include_str!("../../templates/vm.html")),
    ("fleet.html", include_str!("../../templates/fleet.html")),
    ("routes.html", include_str!("../../templates/routes.html")),
    ("alerts.html", include_str!("../../templates/alerts.html")),
    ("events.html", include_str!("../../templates/events.html")),
    ("audit.html", include_str!("../../templates/audit.html")),
    ("error.html", include_str!("../../templates/error.html")),
    ("flash.html", include_str!("../../templates/flash.html")),
    ("event.html", include_str!("../../templates/event.html")),
    ("badge.html", include_str!("../../templates/badge.html")),
];

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Every template is HTML: escape everything, whatever the name.
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        // A misspelt variable is an error in tests, not an empty cell in production.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_filter("ago", ago);
        env.add_filter("when", when);
        env.add_filter("duration", duration);
        env.add_filter("bytes", bytes);
        env.add_filter("short", short);
        env.add_filter("pct", pct);
        for (name, source) in TEMPLATES {
            // The templates are ours and tested: one that does not compile is a bug the
            // first test shows; the page then answers 500 with the reason.
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "a dashboard template does not compile");
            }
        }
        env
    })
}

/// Renders `template` (the whole page, or only `block` for a live fragment).
pub fn render(
    template: &str,
    block: Option<&str>,
    ctx: &impl serde::Serialize,
) -> Result<String, ApiError> {
    let t = environment()
        .get_template(template)
        .map_err(|e| ApiError::internal(format!("template {template}: {e:#}")))?;
    let out = match block {
        None => t.render(ctx),
        Some(b) => t
            .render_captured(ctx)
            .and_then(|mut c| c.with_state_mut(|s| s.render_block(b))),
    };
    out.map_err(|e| ApiError::internal(format!("template {template}: {e:#}")))
}

/// An HTML answer.
pub fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn now_of(state: &State) -> i64 {
    state
        .lookup("now")
        .and_then(|v| i64::try_from(v).ok())
        .unwrap_or(0)
}

/// `{{ at | ago }}`: how long before the page's `now` (Unix ms) it was.
fn ago(state: &State, at: Value) -> String {
    let Ok(at) = i64::try_from(at) else {
        return "—".into();
    };
    let diff = now_of(state) - at;
    let secs = diff.abs() / 1000;
    let amount = match secs {
        0..=4 => return "just now".into(),
        5..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        3600..=86_399 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    };
    // A time to come (a silence's end): `in 59 min`.
    if diff < 0 {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// `{{ at | when }}`: a Unix-ms time in UTC, to the second.
fn when(at: Value) -> String {
    i64::try_from(at)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "—".into())
}

/// `{{ ms | duration }}`: `850 ms`, `12.3 s`, `4 min 5 s`, `2 h 3 min`.
fn duration(ms: Value) -> String {
    let Ok(ms) = i64::try_from(ms) else {
        return "—".into();
    };
    let ms = ms.max(0);
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => match (ms / 1000) % 60 {
            0 => format!("{} min", ms / 60_000),
            s => format!("{} min {s} s", ms / 60_000),
        },
        _ => match (ms / 60_000) % 60 {
            0 => format!("{} h", ms / 3_600_000),
            m => format!("{} h {m} min", ms / 3_600_000),
        },
    }
}

/// `{{ n | bytes }}`: `512 B`, `1.5 KiB`, `3.2 MiB`, `1.1 GiB`.
fn bytes(n: Value) -> String {
    let Ok(n) = u64::try_from(n) else {
        return "—".into();
    };
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `{{ hash | short }}`: the first 12 characters (digests, container ids).
fn short(s: String) -> String {
    s.chars().take(12).collect()
}

/// `{{ fraction | pct }}`: `0.0123` → `1.23 %`.
fn pct(v: Value) -> String {
    match f64::try_from(v) {
        Ok(f) => format!("{:.2} %", f * 100.0),
        Err(_) => "—".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    #[test]
    fn every_template_compiles_and_escapes() {
        for (name, _) in TEMPLATES {
            assert!(
                environment().get_template(name).is_ok(),
                "{name} does not compile: {:?}",
                environment().get_template(name).err()
            );
        }
        let env = environment();
        let out = env
            .render_str("{{ x }}", context! { x => "<script>\"&'" })
            .unwrap();
        assert_eq!(out, "&lt;script&gt;&quot;&amp;&#x27;");
    }

    #[test]
    fn live_pieces_render_on_their_own() {
        let e = baton_state::Event {
            id: 3,
            project: "shop".into(),
            at: 99_000,
            kind: "container".into(),
            subject: "shop-web-1".into(),
            message: "running -> exited (exit code 137) <b>".into(),
        };
        let li = render("event.html", None, &context! { e => e, now => 100_000i64 }).unwrap();
        assert!(li.starts_with("<li class=\"event\">"), "{li}");
        assert!(
            li.contains("shop-web-1") && li.contains("&lt;b&gt;"),
            "{li}"
        );
        let badge = render("badge.html", None, &context! { word => "exited" }).unwrap();
        assert_eq!(badge, "<span class=\"badge bad\">exited</span>");
    }

    /// The VM page's buttons: an operator has them (URLs with names encoded), a viewer
    /// has none inside `<main>`.
    #[test]
    fn vm_buttons_are_for_operators_only() {
        let page = |can_act: bool, state: &str| {
            let ctx = context! {
                me => context! { name => "t", role => "operator", can_act => can_act, admin => false },
                csrf => "c", v => "v", now => 100_000i64, nav => "vms", title => "VM", live => "/ui/live",
                vm => context! {
                    name => "web", state => state, pid => 7, accel => "kvm", cpus => 2,
                    memory_mib => 512, environment => "prod", disks => vec![("root", "/d/root.qcow2")],
                    snapshots => 1, started_at => 1_000i64, updated_at => 2_000i64, policy => (),
                },
                snapshots => vec![context! { name => "before upgrade", kind => "manual", note => (), created_at => 1_500i64 }],
                charts => super::super::charts::vm("web"),
            };
            let html = render("vm.html", None, &ctx).unwrap();
            // Attributes are escaped (`/` as `&#x2f;`); a browser reads them back.
            let html = html.replace("&#x2f;", "/");
            let main = html
                .split("<main")
                .nth(1)
                .unwrap()
                .split("</main>")
                .next()
                .unwrap()
                .to_string();
            main
        };
        let op = page(true, "running");
        assert!(op.contains(r#"hx-post="/ui/vms/web/stop""#), "{op}");
        assert!(op.contains(r#"hx-post="/ui/vms/web/restart""#), "{op}");
        assert!(!op.contains(r#"hx-post="/ui/vms/web/start""#), "{op}");
        assert!(
            op.contains(r#"hx-post="/ui/vms/web/snapshots/before%20upgrade/restore""#),
            "{op}"
        );
        assert!(op.contains(r#"hx-post="/ui/vms/web/snapshot""#), "{op}");
        assert!(op.contains("hx-confirm="), "every button asks first: {op}");
        assert!(page(true, "stopped").contains(r#"hx-post="/ui/vms/web/start""#));
        let viewer = page(false, "running");
        // The charts' range buttons change only the view.
        let ranges = viewer
            .matches("<button type=\"button\" data-range=")
            .count();
        assert_eq!(ranges, 6, "{viewer}");
        assert!(
            viewer.matches("<button").count() == ranges && !viewer.contains("hx-post"),
            "{viewer}"
        );
    }

    /// A chart's queries reach the page as one escaped attribute, whatever the name:
    /// read back as a browser does, they are the JSON `charts.rs` made.
    #[test]
    fn chart_queries_are_escaped_attributes() {
        let odd = "a\"b'<c>&d";
        let charts = super::super::charts::vm(odd);
        let ctx = context! { c => charts[0].clone() };
        let html = environment()
            .render_str("{% import 'macros.html' as m %}{{ m.chart(c) }}", ctx)
            .unwrap();
        assert!(!html.contains("<c>") && !html.contains("'<"), "{html}");
        let attr = html
            .split("data-series=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("a data-series attribute");
        let decoded = attr
            .replace("&quot;", "\"")
            .replace("&#x27;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#x2f;", "/")
            .replace("&amp;", "&");
        assert_eq!(decoded, charts[0].series, "{html}");
        let lines: serde_json::Value = serde_json::from_str(&decoded).unwrap();
        let q = lines[0]["q"].as_str().unwrap();
        assert_eq!(
            q,
            format!("baton_vm_state{{vm={}}}", super::super::charts::quote(odd))
        );
    }

    #[test]
    fn filters_say_times_and_sizes_plainly() {
        let env = environment();
        let r = |src: &str| {
            env.render_str(src, context! { now => 100_000_000i64 })
                .unwrap()
        };
        assert_eq!(r("{{ 99999000 | ago }}"), "just now");
        assert_eq!(r("{{ 99940000 | ago }}"), "1 min ago");
        assert_eq!(r("{{ 103600000 | ago }}"), "in 1 h");
        assert_eq!(r("{{ 0 | when }}"), "1970-01-01 00:00:00 UTC");
        assert_eq!(r("{{ 850 | duration }}"), "850 ms");
        assert_eq!(r("{{ 12345 | duration }}"), "12.3 s");
        assert_eq!(r("{{ 245000 | duration }}"), "4 min 5 s");
        assert_eq!(r("{{ 600000 | duration }}"), "10 min");
        assert_eq!(r("{{ 7200000 | duration }}"), "2 h");
        assert_eq!(r("{{ 1536 | bytes }}"), "1.5 KiB");
        assert_eq!(r("{{ 12 | bytes }}"), "12 B");
        assert_eq!(r("{{ 0.0123 | pct }}"), "1.23 %");
        assert_eq!(r("{{ 'abcdef0123456789' | short }}"), "abcdef012345");
        assert_eq!(r("{{ none | ago }}"), "—");
    }
}
