//! The edge through `baton serve`, for real: certificates issued by a real ACME server
//! (Debian's pebble, validating HTTP-01 and TLS-ALPN-01 against the edge), two projects on
//! one port by host name, a canary that keeps its weights behind a route, certificate
//! rotation and 20 updates under HTTPS load from wrk without a failed request, renewal
//! failures and expiry as events, and bad input refused in place while the edge serves on.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use baton_tests::api::{request, token};
use baton_tests::edge::{edge_tools_available, https_bodies, https_get, self_signed, Pebble, Wrk};
use baton_tests::pipeline::Serve;
use baton_tests::{docker_available, free_port, stderr, Daemon, Scratch, IMAGE};

/// The `web` service: `replicas` replicas answering `LABEL vVERSION` on port 80 (only
/// exposed: the edge routes to it), with baton's own quick health check. `x_baton` is
/// more of its `x-baton:` block, indented by six spaces.
fn web(label: &str, replicas: u32, x_baton: &str) -> String {
    format!(
        r#"services:
  web:
    image: {IMAGE}
    init: true
    stop_grace_period: 1s
    restart: always
    command: [sh, -c, 'mkdir -p /www && echo "{label} v$$VERSION" > /www/index.html; exec httpd -f -p 80 -h /www']
    environment:
      VERSION: ${{VERSION:-1}}
    expose: ["80"]
    deploy:
      replicas: {replicas}
    x-baton:
      healthcheck: {{http: /, interval: 300ms, timeout: 1s, retries: 2}}
{x_baton}"#
    )
}

/// The top of a file: the edge's listeners on 127.0.0.1, and `more` of `x-baton.edge`.
fn edge(http: u16, https: u16, more: &str) -> String {
    format!(
        "x-baton:\n  edge:\n    listen: {{http: {http}, https: {https}, address: 127.0.0.1}}\n{more}"
    )
}

/// `baton ARGS` for project `s` against the state directory `state` (several projects
/// share one daemon through it).
fn baton(s: &Scratch, state: &Path, args: &[&str]) -> Output {
    s.cmd()
        .env("BATON_STATE_DIR", state)
        .args(args)
        .output()
        .expect("baton")
}

fn ok(s: &Scratch, state: &Path, args: &[&str]) -> String {
    let out = baton(s, state, args);
    assert!(
        out.status.success(),
        "baton {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// What `baton routes --json` says.
fn routes(s: &Scratch, state: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(s, state, &["routes", "--json"])).unwrap_or_default()
}

fn certificate_state(s: &Scratch, state: &Path, host: &str) -> String {
    routes(s, state)["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["host"] == host)
        .and_then(|c| c["state"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn events(s: &Scratch, state: &Path) -> String {
    ok(s, state, &["events"])
}

/// A dashboard page as `token`'s session sees it.
fn dashboard_page(s: &Scratch, port: u16, token: &str, path: &str) -> String {
    baton_tests::api::Dashboard::login(s, port, token).get(path)
}

/// Writes `text` into `file` beside the project, making `file` absolute.
fn put(s: &Scratch, file: &str, text: &str) -> PathBuf {
    s.write(file, text);
    s.path().join(file)
}

#[test]
fn pebble_issues_certificates_over_http_01_and_tls_alpn_01_and_https_serves_the_service() {
    if !docker_available() || !edge_tools_available() {
        return;
    }
    let (http, https) = (free_port(), free_port());
    let pebble = Pebble::start(http, https);
    let shop = Scratch::new("acme");
    let root = put(&shop, "root.pem", &pebble.root());
    let acme = |challenge: &str| {
        format!(
            "    acme: {{directory: \"{}\", email: ops@shop.test, ca: \"{}\", challenge: {challenge}}}\n",
            pebble.directory(),
            pebble.listener_cert.display()
        )
    };
    let state = shop.state.path().to_path_buf();
    shop.write(
        "compose.yaml",
        &format!(
            "{}{}",
            edge(http, https, &acme("http-01")),
            web(
                "shop",
                2,
                "      routes: [{host: shop.test, hsts: true}]\n      tls: acme\n"
            )
        ),
    );
    let _daemon = Daemon::start(&shop);
    ok(&shop, &state, &["up", "-d"]);
    assert!(
        until(90, || certificate_state(&shop, &state, "shop.test")
            == "valid"),
        "pebble issued shop.test: {}\n{}\n{}",
        routes(&shop, &state),
        events(&shop, &state),
        pebble.logs()
    );
    assert!(
        until(30, || https_get("shop.test", https, &root, "/").1.trim()
            == "shop v1"),
        "a client that trusts pebble's root reaches https://shop.test: {:?}",
        https_get("shop.test", https, &root, "/")
    );
    let issued = events(&shop, &state);
    assert!(
        issued.contains("certificate shop.test: issued by https://127.0.0.1:"),
        "{issued}"
    );
    // Plain HTTP is sent to HTTPS; HSTS was asked for.
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-D", "-"])
        .args(["--resolve", &format!("shop.test:{http}:127.0.0.1")])
        .arg(format!("http://shop.test:{http}/a?b=1"))
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.starts_with("http/1.1 308"), "{head}");
    assert!(
        head.contains(&format!("location: https://shop.test:{https}/a?b=1")),
        "{head}"
    );
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-D", "-", "--cacert"])
        .arg(&root)
        .args(["--resolve", &format!("shop.test:{https}:127.0.0.1")])
        .arg(format!("https://shop.test:{https}/"))
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        head.contains("strict-transport-security: max-age=31536000"),
        "{head}"
    );
    // The key is kept private in the state directory.
    let key = state.join("edge/acme/shop.test/key.pem");
    assert!(key.exists(), "{} is kept", key.display());
    baton_tests::assert_private(&state.join("edge"));

    // A second project on the same edge, validated over TLS-ALPN-01 on the HTTPS port.
    let alpn = Scratch::new("alpn");
    alpn.write(
        "compose.yaml",
        &format!(
            "{}{}",
            edge(http, https, &acme("tls-alpn-01")),
            web(
                "alpn",
                1,
                "      routes: [{host: alpn.test}]\n      tls: acme\n"
            )
        ),
    );
    ok(&alpn, &state, &["up", "-d"]);
    assert!(
        until(90, || certificate_state(&alpn, &state, "alpn.test")
            == "valid"),
        "pebble issued alpn.test over tls-alpn-01: {}\n{}",
        routes(&alpn, &state),
        pebble.logs()
    );
    assert!(
        until(30, || https_get("alpn.test", https, &root, "/").1.trim()
            == "alpn v1"),
        "{:?}",
        https_get("alpn.test", https, &root, "/")
    );
    // Both hosts on one port, each with its own service.
    assert_eq!(
        https_get("shop.test", https, &root, "/").1.trim(),
        "shop v1"
    );
    let table = ok(&shop, &state, &["routes"]);
    assert!(
        table.contains("shop.test") && table.contains("alpn.test"),
        "{table}"
    );
    ok(&alpn, &state, &["down"]);
    ok(&shop, &state, &["down"]);
}

/// A certificate valid from `from` to `to` (days from now, negative in the past) for
/// `host`, made with rcgen: (certificate PEM, key PEM).
fn dated(host: &str, from: i64, to: i64) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec![host.to_string()]).expect("params");
    let day = |d: i64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let (y, m, d) = civil(now / 86_400 + d);
        rcgen::date_time_ymd(y, m, d)
    };
    params.not_before = day(from);
    params.not_after = day(to);
    let cert = params.self_signed(&key).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

#[test]
fn an_expired_certificate_and_a_failed_renewal_raise_events() {
    if !docker_available() || !edge_tools_available() {
        return;
    }
    let (http, https) = (free_port(), free_port());
    let s = Scratch::new("expiry");
    let state = s.state.path().to_path_buf();
    // An ACME certificate kept from before, expired, whose CA no longer answers.
    let dead = format!("https://127.0.0.1:{}/dir", free_port());
    let kept = state.join("edge/acme/shop.test");
    std::fs::create_dir_all(&kept).unwrap();
    let (cert, key) = dated("shop.test", -90, -1);
    std::fs::write(kept.join("cert.pem"), cert).unwrap();
    std::fs::write(kept.join("key.pem"), key).unwrap();
    std::fs::write(kept.join("directory"), &dead).unwrap();
    // And files that expired.
    let (cert, key) = dated("old.test", -30, -2);
    put(&s, "tls/old.pem", &cert);
    put(&s, "tls/old.key", &key);
    let old = web(
        "old",
        1,
        "      routes: [{host: old.test}]\n      tls: {cert: tls/old.pem, key: tls/old.key}\n",
    )
    .replace("services:\n  web:", "  old:");
    s.write(
        "compose.yaml",
        &format!(
            "{}{}{old}",
            edge(
                http,
                https,
                &format!("    acme: {{directory: \"{dead}\", email: ops@shop.test}}\n")
            ),
            web(
                "shop",
                1,
                "      routes: [{host: shop.test}]\n      tls: acme\n"
            ),
        ),
    );
    let _daemon = Daemon::start(&s);
    ok(&s, &state, &["up", "-d"]);
    let wanted = [
        "certificate shop.test: expired at ",
        "certificate shop.test: renewal failed: ",
        "certificate old.test: ",
    ];
    assert!(
        until(60, || {
            let e = events(&s, &state);
            wanted.iter().all(|w| e.contains(w)) && e.contains("expired at")
        }),
        "events: {}",
        events(&s, &state)
    );
    let e = events(&s, &state);
    assert!(e.contains("; renewing"), "{e}");
    assert!(e.contains("next try in 1m"), "{e}");
    assert!(
        e.contains("tls/old.pem expired at ") && e.contains("clients refuse it"),
        "{e}"
    );
    assert_eq!(certificate_state(&s, &state, "shop.test"), "expired");
    // The built-in rule fires for each failing host, from the daemon's own series
    // (sampled every 10 s by default, the rule evaluated after each sample).
    let failing = || -> Vec<String> {
        let ls: serde_json::Value =
            serde_json::from_str(&ok(&s, &state, &["--json", "alerts", "ls"])).unwrap_or_default();
        let mut hosts: Vec<String> = ls["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["rule"] == "CertificateFailing" && a["phase"] == "firing")
            .filter_map(|a| a["labels"]["host"].as_str().map(str::to_string))
            .collect();
        hosts.sort();
        hosts
    };
    assert!(
        until(60, || failing() == ["old.test", "shop.test"]),
        "CertificateFailing firing for both hosts: {:?}\n{}",
        failing(),
        ok(&s, &state, &["alerts", "ls"])
    );
    ok(&s, &state, &["down"]);
}

#[test]
fn two_projects_share_the_edge_a_canary_keeps_its_weights_and_bad_input_is_refused_in_place() {
    if !docker_available() || !edge_tools_available() {
        return;
    }
    let (http, https) = (free_port(), free_port());
    let shop = Scratch::new("eshop");
    let blog = Scratch::new("eblog");
    let state = shop.state.path().to_path_buf();
    let (shop_ca, _) = self_signed(shop.path(), "shop", &["shop.test"]);
    let (blog_ca, _) = self_signed(blog.path(), "blog", &["blog.test"]);
    self_signed(shop.path(), "other", &["other.test"]);
    let shop_file = |route: &str, key: &str| {
        format!(
            "{}{}",
            edge(http, https, ""),
            web(
                "shop",
                2,
                &format!(
                    "      rollout: {{strategy: canary, steps: [{{weight: 25, pause: 10m}}], health_timeout: 30s}}\n      routes: [{route}]\n      tls: {{cert: shop.pem, key: {key}}}\n"
                )
            )
        )
    };
    shop.write("compose.yaml", &shop_file("{host: shop.test}", "shop.key"));
    blog.write(
        "compose.yaml",
        &format!(
            "{}{}",
            edge(http, https, ""),
            web(
                "blog",
                1,
                "      routes: [{host: blog.test}]\n      tls: {cert: blog.pem, key: blog.key}\n"
            )
        ),
    );
    // This daemon also serves the API and the dashboard, to show the edge there.
    let viewer = token(&shop, "viewer", "viewer");
    let api_port = free_port();
    let api_addr = format!("127.0.0.1:{api_port}");
    let _daemon = Serve::start(&shop, &["--listen", &api_addr], &[]);
    assert!(
        until(30, || request(
            api_port,
            "GET",
            "/api/v1/status",
            Some(&viewer),
            None
        )
        .status
            == 200),
        "the daemon's API answers"
    );
    ok(&shop, &state, &["up", "-d"]);
    ok(&blog, &state, &["up", "-d"]);
    let serves = |host: &str, ca: &Path, want: &str| {
        until(60, || https_get(host, https, ca, "/").1.trim() == want)
    };
    assert!(serves("shop.test", &shop_ca, "shop v1"), "shop.test");
    assert!(serves("blog.test", &blog_ca, "blog v1"), "blog.test");

    // The same routes over the API, through `baton --server … routes`, and on the
    // dashboard's routes page.
    let local = routes(&shop, &state);
    let hosts = |edge: &serde_json::Value| -> Vec<String> {
        let mut h: Vec<String> = edge["routes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| format!("{} {} {}", r["host"], r["project"], r["target"]))
            .collect();
        h.sort();
        h
    };
    assert_eq!(hosts(&local).len(), 2, "{local}");
    let api = request(api_port, "GET", "/api/v1/edge", Some(&viewer), None);
    assert_eq!(api.status, 200, "{:?}", api.body);
    assert_eq!(hosts(&api.body), hosts(&local), "{}", api.body);
    assert_eq!(
        request(api_port, "GET", "/api/v1/edge", None, None).status,
        401
    );
    let remote = shop
        .cmd()
        .env("BATON_TOKEN", &viewer)
        .args([
            "--server",
            &format!("http://{api_addr}"),
            "--json",
            "routes",
        ])
        .output()
        .unwrap();
    assert!(remote.status.success(), "{}", stderr(&remote));
    let remote: serde_json::Value = serde_json::from_slice(&remote.stdout).unwrap();
    assert_eq!(hosts(&remote), hosts(&local), "{remote}");
    let page = dashboard_page(&shop, api_port, &viewer, "/ui/routes");
    let shop_web = format!("{}/web", shop.name);
    let blog_web = format!("{}/web", blog.name);
    for want in [
        "shop.test",
        "blog.test",
        &shop_web,
        &blog_web,
        ">valid<",
        ">in ",
    ] {
        assert!(
            page.contains(want),
            "{want:?} missing from /ui/routes:\n{page}"
        );
    }
    // A host unknown to the edge: no certificate, no answer.
    assert_eq!(https_get("none.test", https, &shop_ca, "/").0, 0);

    // The canary stops at 25 %: a quarter of the requests through the edge get v2.
    let out = shop
        .cmd()
        .env("BATON_STATE_DIR", &state)
        .env("VERSION", "2")
        .args(["up", "-d", "--no-wait"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let at_step = || {
        let v: serde_json::Value =
            serde_json::from_str(&ok(&shop, &state, &["--json", "rollout", "status", "web"]))
                .unwrap_or_default();
        v["state"]["weight"] == 25
    };
    assert!(until(90, at_step), "the canary reaches 25 %");
    let bodies = https_bodies("shop.test", https, &shop_ca, 400);
    let v2 = bodies.iter().filter(|b| *b == "shop v2").count();
    let v1 = bodies.iter().filter(|b| *b == "shop v1").count();
    eprintln!("canary behind shop.test: {v1} v1, {v2} v2");
    assert_eq!(v1 + v2, 400, "every request answered by shop: {bodies:?}");
    assert!((80..=120).contains(&v2), "about 25 % v2: {v2} of 400");
    // The pool behind the route counts per revision, as the rollout's analysis reads
    // (the daemon publishes its counters once a tick).
    let counted = || -> u64 {
        let status: serde_json::Value =
            serde_json::from_str(&ok(&shop, &state, &["--json", "rollout", "status", "web"]))
                .unwrap_or_default();
        status["traffic"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| t["metrics"]["revisions"].as_object().into_iter().flatten())
            .map(|(_, m)| m["requests"].as_u64().unwrap_or(0))
            .sum()
    };
    assert!(
        until(10, || counted() >= 400),
        "live metrics behind the route: {}",
        counted()
    );
    // blog is not touched.
    assert_eq!(
        https_get("blog.test", https, &blog_ca, "/").1.trim(),
        "blog v1"
    );

    // Bad input: each refused with its place in the file, and the edge serves on.
    let refused = |s: &Scratch, file: &str, want: &str| {
        s.write("bad.yaml", file);
        let out = baton(s, &state, &["-f", "bad.yaml", "up", "-d"]);
        assert!(!out.status.success(), "refused: {want}");
        let text = stderr(&out);
        assert!(text.contains(want), "{want}\n  in: {text}");
        assert!(text.contains("bad.yaml:"), "located: {text}");
        assert!(
            serves("shop.test", &shop_ca, "shop v1") || serves("shop.test", &shop_ca, "shop v2"),
            "shop.test still serves"
        );
    };
    refused(
        &shop,
        &shop_file("{host: shop.test, port: 8080}", "shop.key"),
        "services.web.x-baton.routes[0].port: 8080 is not a port the service exposes (80)",
    );
    refused(
        &shop,
        &shop_file("{host: shop.test}", "other.key"),
        "services.web.x-baton.tls.key: ",
    );
    refused(
        &shop,
        &shop_file("{host: shop.test}", "other.key"),
        "the private key does not match the certificate in ",
    );
    std::fs::create_dir_all(shop.path().join("unreadable.key")).unwrap();
    refused(
        &shop,
        &shop_file("{host: shop.test}", "unreadable.key"),
        "services.web.x-baton.tls.key: cannot read ",
    );
    // A third project claims shop.test: located, naming both.
    let dup = Scratch::new("edup");
    self_signed(dup.path(), "dup", &["shop.test"]);
    refused(
        &dup,
        &format!(
            "{}{}",
            edge(http, https, ""),
            web(
                "dup",
                1,
                "      routes: [{host: shop.test}]\n      tls: {cert: dup.pem, key: dup.key}\n"
            )
        ),
        &format!(
            "services.web.x-baton.routes[0].host: shop.test/ is already routed by project {} (services.web.x-baton.routes[0]); project {} cannot claim it too",
            shop.name, dup.name
        ),
    );
    // The same certificate as before is served.
    assert_eq!(
        https_get("blog.test", https, &blog_ca, "/").1.trim(),
        "blog v1"
    );
    let listed = ok(&shop, &state, &["routes"]);
    assert!(
        listed.contains("shop.test") && listed.contains("blog.test") && !listed.contains("refused"),
        "{listed}"
    );

    ok(&shop, &state, &["rollout", "promote", "web"]);
    assert!(serves("shop.test", &shop_ca, "shop v2"), "v2 after promote");
    ok(&blog, &state, &["down"]);
    ok(&shop, &state, &["down"]);
}

#[test]
fn a_certificate_rotated_and_twenty_updates_under_https_load_fail_no_request() {
    if !docker_available() || !edge_tools_available() {
        return;
    }
    let (http, https) = (free_port(), free_port());
    let s = Scratch::new("eload");
    let state = s.state.path().to_path_buf();
    // wrk sends the URL's host as SNI: `localhost` resolves without --resolve.
    let (ca_one, _) = self_signed(s.path(), "one", &["localhost"]);
    let (ca_two, _) = self_signed(s.path(), "two", &["localhost"]);
    std::fs::copy(s.path().join("one.pem"), s.path().join("tls.pem")).unwrap();
    std::fs::copy(s.path().join("one.key"), s.path().join("tls.key")).unwrap();
    let app = web(
        "app",
        2,
        "      rollout: {strategy: rolling, health_timeout: 30s}\n      routes: [{host: localhost}]\n      tls: {cert: tls.pem, key: tls.key}\n",
    )
    // One replica at a time, watched for a second (Swarm's default is five).
    .replace(
        "      replicas: 2\n",
        "      replicas: 2\n      update_config: {parallelism: 1, monitor: 1s}\n",
    );
    s.write("compose.yaml", &format!("{}{app}", edge(http, https, "")));
    let _daemon = Daemon::start(&s);
    ok(&s, &state, &["up", "-d"]);
    assert!(
        until(60, || https_get("localhost", https, &ca_one, "/").1.trim()
            == "app v1"),
        "app v1 over HTTPS"
    );
    let url = format!("https://localhost:{https}/");

    // Rotation: the files rewritten twice under load, the new pair served, nothing lost.
    let wrk = Wrk::start(&url, 8, Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(2));
    for (cert, key) in [
        ("two.pem", "two.key"),
        ("one.pem", "one.key"),
        ("two.pem", "two.key"),
    ] {
        std::fs::copy(s.path().join(cert), s.path().join("tls.pem")).unwrap();
        std::fs::copy(s.path().join(key), s.path().join("tls.key")).unwrap();
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(
        until(20, || https_get("localhost", https, &ca_two, "/").1.trim()
            == "app v1"),
        "the rotated certificate is served"
    );
    let report = wrk.stop();
    eprintln!(
        "rotation: {} requests, {} non-2xx, {} socket errors",
        report.requests, report.non_2xx, report.socket_errors
    );
    assert!(report.requests > 100, "the load ran: {}", report.text);
    assert_eq!(
        (report.non_2xx, report.socket_errors),
        (0, 0),
        "no request dropped while the certificate rotated:\n{}",
        report.text
    );
    let e = events(&s, &state);
    assert_eq!(e.matches(": reloaded from ").count(), 3, "{e}");

    // 20 rolling updates under load through HTTPS.
    let wrk = Wrk::start(&url, 4, Duration::from_secs(600));
    let started = std::time::Instant::now();
    for version in 2..=21 {
        let out = s
            .cmd()
            .env("VERSION", version.to_string())
            .args(["up", "-d"])
            .output()
            .unwrap();
        assert!(out.status.success(), "update {version}: {}", stderr(&out));
    }
    std::thread::sleep(Duration::from_millis(500));
    let report = wrk.stop();
    eprintln!(
        "20 updates in {:.0?}: {} requests, {} non-2xx, {} socket errors",
        started.elapsed(),
        report.requests,
        report.non_2xx,
        report.socket_errors
    );
    assert!(report.requests > 1000, "the load ran: {}", report.text);
    assert_eq!(
        (report.non_2xx, report.socket_errors),
        (0, 0),
        "no request failed during 20 updates:\n{}",
        report.text
    );
    assert_eq!(
        https_get("localhost", https, &ca_two, "/").1.trim(),
        "app v21"
    );
    ok(&s, &state, &["down"]);
}
