//! Alerts end to end with real receivers the test starts: a real daemon samples every
//! second, a rule fires while traffic flows through its proxy and resolves when it
//! stops; a local HTTP sink gets Alertmanager-v4 payloads (firing, then resolved) and
//! nothing while a silence holds; a local SMTP server (PyPI's aiosmtpd) gets the email;
//! a receiver that is down is retried until it comes up, while the daemon keeps serving.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_tests::api::{request, token, Dashboard};
use baton_tests::pipeline::Serve;
use baton_tests::{
    docker_available, free_port, http_get, stdout, wait_for, web_service, within, Scratch,
};
use serde_json::Value;

/// An HTTP sink on 127.0.0.1:port: every POST body (JSON) it got, answered 200.
struct Sink {
    got: Arc<Mutex<Vec<Value>>>,
}

impl Sink {
    fn start(port: u16) -> Sink {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("sink binds");
        let got = Arc::new(Mutex::new(Vec::new()));
        let mine = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                if let Ok(v) = serde_json::from_slice(&body) {
                    mine.lock().unwrap().push(v);
                }
            }
        });
        Sink { got }
    }

    fn payloads(&self) -> Vec<Value> {
        self.got.lock().unwrap().clone()
    }

    /// Alertmanager payloads of `status` about rule `busy`.
    fn count(&self, status: &str) -> usize {
        self.payloads()
            .iter()
            .filter(|p| p["version"] == "4" && p["status"] == status)
            .filter(|p| p["commonLabels"]["alertname"] == "busy")
            .count()
    }
}

/// Requests to the service's published port on a thread until dropped.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u32>>,
}

impl Traffic {
    fn start(port: u16) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut failed = 0;
            while !flag.load(Ordering::Relaxed) {
                if http_get(port, 10).is_none_or(|b| !b.contains("v1")) {
                    failed += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            failed
        });
        Traffic {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops; how many requests failed.
    fn finish(mut self) -> u32 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map_or(0, |t| t.join().unwrap_or(u32::MAX))
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Smtp(Child, std::path::PathBuf);

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn smtp_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("BATON_REQUIRE_SMTP").is_none(),
            "BATON_REQUIRE_SMTP is set but python3 cannot import aiosmtpd: run scripts/ensure-alerts.sh"
        );
        eprintln!("skipped: no python3 aiosmtpd (scripts/ensure-alerts.sh)");
    }
    ok
}

/// The project: the rolling web service of the other tests, and an alert rule that
/// fires while it takes requests; the route goes to `receiver`.
fn file(web_port: u16, receiver: &str, hook: u16, smtp: u16, late: u16) -> String {
    let mut f = web_service(
        web_port,
        ("3s", 4),
        "      rollout:\n        strategy: rolling",
    );
    f.push_str(&format!(
        r#"alerts:
  receivers:
    ops: {{webhook: "http://127.0.0.1:{hook}/hook"}}
    mail: {{email: {{to: [ops@example.com], from: baton@example.com, smtp: "127.0.0.1:{smtp}"}}}}
    late: {{webhook: "http://127.0.0.1:{late}/late"}}
  route: {{receiver: {receiver}, group_by: [alertname, service], group_wait: 1s, group_interval: 1s, repeat_interval: 1h}}
  rules:
    busy:
      expr: sum by (service) (rate(baton_proxy_requests_total{{service="web"}}[3s])) > 0
      labels: {{severity: page}}
      annotations: {{summary: "web takes {{{{ $$value }}}} requests a second"}}
"#
    ));
    f
}

fn history(s: &Scratch) -> Value {
    let out = s.baton(&["--json", "alerts", "history", "--limit", "200"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn transitions(s: &Scratch, to: &str) -> usize {
    history(s)["transitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["rule"] == "busy" && t["to_phase"] == to)
        .count()
}

#[test]
fn alerts_reach_real_receivers_silences_hold_and_a_down_receiver_is_retried() {
    if !docker_available() || !smtp_available() {
        return;
    }
    let s = Scratch::new("alerts");
    let (web_port, hook, smtp_port, late) = (free_port(), free_port(), free_port(), free_port());
    s.write(
        "compose.yaml",
        &file(web_port, "ops", hook, smtp_port, late),
    );
    let sink = Sink::start(hook);
    let viewer = token(&s, "scraper", "viewer");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _serve = Serve::start(&s, &["--listen", &addr, "--sample-interval", "1s"], &[]);
    let log = || std::fs::read_to_string(s.state.path().join("serve.log")).unwrap_or_default();
    s.ok(&["up", "-d"]);
    assert!(wait_for(web_port, "v1", 90), "v1 serves:\n{}", log());

    // `alerts test` reaches the receiver at once.
    let out = s.ok(&["alerts", "test", "ops"]);
    assert!(out.contains("delivered"), "{out}");
    assert!(
        within(Duration::from_secs(5), || sink
            .payloads()
            .iter()
            .any(|p| p["commonLabels"]["alertname"] == "BatonTest"))
        .is_some(),
        "{:?}",
        sink.payloads()
    );
    let unknown = s.baton(&["alerts", "test", "nobody"]);
    assert!(!unknown.status.success());

    // Silenced: the alert fires, nothing is sent.
    let id = s.ok(&["alerts", "silence", "service=web", "--comment", "deploying"]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 16, "{id}");
    let traffic = Traffic::start(web_port);
    assert!(
        within(Duration::from_secs(30), || transitions(&s, "firing") >= 1).is_some(),
        "never fired: {}\n{}",
        history(&s),
        log()
    );
    // A few group intervals pass with the alert firing and silenced.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sink.count("firing"), 0, "{:?}", sink.payloads());
    let ls = s.ok(&["alerts", "ls"]);
    assert!(ls.contains("firing") && ls.contains(&id), "{ls}");
    // The same over the API, for a viewer.
    let a = request(
        port,
        "GET",
        &format!("/api/v1/projects/{}/alerts", s.name),
        Some(&viewer),
        None,
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert!(
        a.body["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["rule"] == "busy" && x["state"] == "firing"),
        "{a:?}"
    );
    assert_eq!(a.body["silences"][0]["id"], id.as_str(), "{a:?}");
    assert_eq!(a.body["silences"][0]["active"], true, "{a:?}");
    let h = request(
        port,
        "GET",
        &format!("/api/v1/projects/{}/alerts/history?limit=10", s.name),
        Some(&viewer),
        None,
    );
    assert!(
        h.body["transitions"]
            .as_array()
            .is_some_and(|t| t.iter().any(|x| x["to_phase"] == "firing")),
        "{h:?}"
    );
    let metrics = request(port, "GET", "/metrics", Some(&viewer), None);
    assert!(
        metrics
            .body
            .as_str()
            .unwrap_or("")
            .contains("baton_alerts_firing{rule=\"busy\"} 1"),
        "{metrics:?}"
    );

    // Silences over the API: an operator makes and ends one, each change audited; a
    // viewer and bad input are refused and change nothing.
    let operator = token(&s, "oncall", "operator");
    let admin = token(&s, "boss", "admin");
    let alerts_path = format!("/api/v1/projects/{}/alerts", s.name);
    let silences_path = format!("/api/v1/projects/{}/silences", s.name);
    let listed = || {
        request(port, "GET", &alerts_path, Some(&viewer), None).body["silences"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let before = listed().len();
    for (who, body, want) in [
        (
            &viewer,
            r#"{"matchers": ["alertname=\"busy\""], "comment": "x"}"#,
            403,
        ),
        (
            &operator,
            r#"{"matchers": ["alertname"], "comment": "x"}"#,
            422,
        ),
        (
            &operator,
            r#"{"matchers": ["alertname=~\"(\""], "comment": "x"}"#,
            422,
        ),
        (
            &operator,
            r#"{"matchers": ["service=\"\""], "comment": "x"}"#,
            422,
        ),
        (&operator, r#"{"matchers": [], "comment": "x"}"#, 422),
        (
            &operator,
            r#"{"matchers": ["alertname=\"busy\""], "comment": " "}"#,
            422,
        ),
        (
            &operator,
            r#"{"matchers": ["alertname=\"busy\""], "comment": "x", "duration": "forever"}"#,
            422,
        ),
        (
            &operator,
            r#"{"matchers": ["alertname=\"busy\""], "comment": "x", "duration": "400d"}"#,
            422,
        ),
        (
            &operator,
            r#"{"matchers": ["alertname=\"busy\""], "comment": "x", "until": "1h"}"#,
            422,
        ),
    ] {
        let a = request(
            port,
            "POST",
            &silences_path,
            Some(who),
            Some(body.as_bytes()),
        );
        assert_eq!(a.status, want, "{body}: {a:?}");
    }
    assert_eq!(listed().len(), before, "nothing was made");
    let made = request(
        port,
        "POST",
        &silences_path,
        Some(&operator),
        Some(br#"{"matchers": ["alertname=\"busy\"", "service=~\"web|api\""], "duration": "10m", "comment": "from the API"}"#),
    );
    assert_eq!(made.status, 201, "{made:?}");
    let api_id = made.body["id"].as_str().unwrap_or("").to_string();
    assert_eq!(api_id.len(), 16, "{made:?}");
    let ends =
        made.body["ends_at"].as_i64().unwrap_or(0) - made.body["starts_at"].as_i64().unwrap_or(0);
    assert_eq!(ends, 600_000, "{made:?}");
    let mine = listed()
        .into_iter()
        .find(|x| x["id"] == api_id.as_str())
        .expect("listed");
    assert_eq!(mine["active"], true, "{mine}");
    assert_eq!(mine["created_by"], "oncall", "{mine}");
    assert_eq!(mine["matchers"][1], "service=~\"web|api\"", "{mine}");
    let end = format!("{silences_path}/{api_id}");
    assert_eq!(
        request(port, "DELETE", &end, Some(&viewer), None).status,
        403
    );
    let ended = request(port, "DELETE", &end, Some(&operator), None);
    assert_eq!(ended.status, 200, "{ended:?}");
    assert_eq!(ended.body["id"], api_id.as_str());
    assert_eq!(
        request(port, "DELETE", &end, Some(&operator), None).status,
        404
    );
    assert_eq!(
        request(
            port,
            "DELETE",
            &format!("{silences_path}/..%2f..%2fx"),
            Some(&operator),
            None
        )
        .status,
        404
    );
    let mine = listed()
        .into_iter()
        .find(|x| x["id"] == api_id.as_str())
        .expect("still listed");
    assert_eq!(mine["active"], false, "{mine}");
    let audit = request(
        port,
        "GET",
        &format!("/api/v1/audit?project={}", s.name),
        Some(&admin),
        None,
    );
    let actions: Vec<(String, String, String)> = audit.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or("").to_string(),
                e["action"].as_str().unwrap_or("").to_string(),
                e["outcome"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for want in ["alerts.silence", "alerts.unsilence"] {
        assert!(
            actions
                .iter()
                .any(|(who, what, how)| who == "oncall" && what == want && how == "ok"),
            "{want}: {audit:?}"
        );
    }
    assert!(
        actions
            .iter()
            .any(|(who, what, _)| who.starts_with("cli:") && what == "alerts.silence"),
        "the command's silence is audited too: {audit:?}"
    );

    // The dashboard's alerts page: a viewer sees the firing alert and the silences, no
    // form; an operator makes and ends a silence with its buttons.
    let page = Dashboard::login(&s, port, &viewer).get("/ui/alerts");
    assert!(
        page.contains(r#"data-alert="busy" data-state="firing""#),
        "{page}"
    );
    assert!(page.contains(&format!(r#"data-silence="{id}""#)), "{page}");
    assert!(page.contains("from the API"), "{page}");
    assert!(
        !page.contains("act-silence-"),
        "a viewer gets no form: {page}"
    );
    let dash = Dashboard::login(&s, port, &operator);
    let form = format!("/ui/projects/{}/silences", s.name);
    let (status, flash) = dash.post(
        "/ui/alerts",
        &form,
        &[
            ("matchers", r#"alertname="busy", severity="page""#),
            ("duration", "1h"),
            ("comment", ""),
        ],
    );
    assert_eq!(status, 422, "no comment: {flash}");
    let (status, flash) = dash.post(
        "/ui/alerts",
        &form,
        &[
            ("matchers", r#"alertname="busy", severity="page""#),
            ("duration", "1h"),
            ("comment", "from the page"),
        ],
    );
    assert_eq!(status, 200, "{flash}");
    let page_id = flash
        .split("silence ")
        .last()
        .map(|w| {
            w.chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect::<String>()
        })
        .unwrap_or_default();
    assert_eq!(page_id.len(), 16, "{flash}");
    let page = dash.get("/ui/alerts");
    assert!(page.contains(&format!("act-end-{page_id}")), "{page}");
    assert!(page.contains(r#"<code>severity="page"</code>"#), "{page}");
    let (status, flash) = dash.post(
        "/ui/alerts",
        &format!("/ui/projects/{}/silences/{page_id}/end", s.name),
        &[],
    );
    assert_eq!(status, 200, "{flash}");
    assert!(!dash
        .get("/ui/alerts")
        .contains(&format!("act-end-{page_id}")));

    // Unsilenced: the firing notification, an Alertmanager v4 payload.
    s.ok(&["alerts", "unsilence", &id]);
    assert!(
        within(Duration::from_secs(20), || sink.count("firing") >= 1).is_some(),
        "no firing notification: {:?}\n{}",
        sink.payloads(),
        log()
    );
    let p = sink
        .payloads()
        .into_iter()
        .find(|p| p["status"] == "firing" && p["commonLabels"]["alertname"] == "busy")
        .unwrap();
    assert_eq!(p["receiver"], "ops");
    assert_eq!(p["groupLabels"]["service"], "web", "{p}");
    assert_eq!(p["alerts"][0]["labels"]["severity"], "page", "{p}");
    assert_eq!(p["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z", "{p}");
    assert!(
        p["alerts"][0]["annotations"]["summary"]
            .as_str()
            .unwrap_or("")
            .starts_with("web takes "),
        "{p}"
    );
    // The traffic stops: resolved.
    assert_eq!(traffic.finish(), 0, "no request failed");
    assert!(
        within(Duration::from_secs(30), || sink.count("resolved") >= 1).is_some(),
        "no resolved notification: {:?}\n{}",
        sink.payloads(),
        log()
    );
    let r = sink
        .payloads()
        .into_iter()
        .find(|p| p["status"] == "resolved")
        .unwrap();
    assert_ne!(r["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z", "{r}");
    assert_eq!(sink.count("firing"), 1, "one firing notification");

    // Email: the route now goes to the SMTP server.
    let mail_out = s.state.path().join("smtp.out");
    let smtp = Smtp(
        Command::new("python3")
            .args([
                "-u",
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{smtp_port}"),
            ])
            .stdout(Stdio::from(std::fs::File::create(&mail_out).unwrap()))
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd"),
        mail_out.clone(),
    );
    s.write(
        "compose.yaml",
        &file(web_port, "mail", hook, smtp_port, late),
    );
    s.ok(&["up", "-d"]);
    let traffic = Traffic::start(web_port);
    let mail = || std::fs::read_to_string(&smtp.1).unwrap_or_default();
    assert!(
        within(Duration::from_secs(40), || mail()
            .contains("[FIRING:1] busy"))
        .is_some(),
        "no email: {}\n{}",
        mail(),
        log()
    );
    assert!(mail().contains("summary: web takes"), "{}", mail());
    assert_eq!(traffic.finish(), 0);
    drop(smtp);

    // A receiver that is down: tried again with backoff while the daemon serves traffic;
    // once it is up, it gets the notification.
    let resolved_before = transitions(&s, "resolved");
    assert!(
        within(Duration::from_secs(30), || transitions(&s, "resolved")
            > resolved_before
            || history(&s)["transitions"][0]["to_phase"] == "resolved")
        .is_some(),
        "the alert resolves first: {}",
        history(&s)
    );
    s.write(
        "compose.yaml",
        &file(web_port, "late", hook, smtp_port, late),
    );
    s.ok(&["up", "-d"]);
    let traffic = Traffic::start(web_port);
    let firings = transitions(&s, "firing");
    assert!(
        within(Duration::from_secs(30), || transitions(&s, "firing")
            > firings)
        .is_some(),
        "{}",
        history(&s)
    );
    // Let a few tries fail; the daemon answers meanwhile.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        request(port, "GET", "/metrics", Some(&viewer), None).status,
        200
    );
    let late_sink = Sink::start(late);
    assert!(
        within(Duration::from_secs(30), || late_sink.count("firing") >= 1).is_some(),
        "the late receiver never got it: {}\n{}",
        history(&s),
        log()
    );
    assert_eq!(traffic.finish(), 0, "traffic was served throughout");
    let deliveries = history(&s)["notifications"].clone();
    let late_one = deliveries
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["receiver"] == "late" && n["outcome"] == "delivered");
    assert!(
        late_one.is_some_and(|n| n["attempts"].as_i64().unwrap_or(0) > 1),
        "{deliveries}"
    );
    // The history in words.
    let text = stdout(&s.baton(&["alerts", "history"]));
    assert!(text.contains("pending -> firing"), "{text}");
}

/// A built-in rule, on by default: a crash-looping replica is notified with no rule
/// written, only a receiver.
#[test]
fn a_crash_looping_replica_fires_the_builtin_rule() {
    if !docker_available() {
        return;
    }
    let s = Scratch::new("alerts-builtin");
    let hook = free_port();
    s.write(
        "compose.yaml",
        &format!(
            r#"services:
  crash:
    image: {IMAGE}
    init: true
    restart: always
    command: [sh, -c, 'sleep 0.2; exit 3']
alerts:
  receivers:
    ops: {{webhook: "http://127.0.0.1:{hook}/hook"}}
  route: {{receiver: ops, group_wait: 1s, group_interval: 1s}}
"#,
            IMAGE = baton_tests::IMAGE
        ),
    );
    let sink = Sink::start(hook);
    let _serve = Serve::start(&s, &["--sample-interval", "1s"], &[]);
    let log = || std::fs::read_to_string(s.state.path().join("serve.log")).unwrap_or_default();
    s.ok(&["up", "-d"]);
    let fired = within(Duration::from_secs(90), || {
        sink.payloads().iter().any(|p| {
            p["status"] == "firing" && p["commonLabels"]["alertname"] == "ReplicaCrashLooping"
        })
    });
    assert!(fired.is_some(), "{:?}\n{}", sink.payloads(), log());
    let p = sink
        .payloads()
        .into_iter()
        .find(|p| p["commonLabels"]["alertname"] == "ReplicaCrashLooping")
        .unwrap();
    assert_eq!(p["alerts"][0]["labels"]["service"], "crash", "{p}");
    assert_eq!(p["alerts"][0]["labels"]["project"], s.name.as_str(), "{p}");
}
