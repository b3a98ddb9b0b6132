//! The stack against real sockets: each limit holds (headers, body time, body size,
//! connections), bearer tokens, and TLS with a CA and certificate made by openssl.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use baton_http::{
    require_bearer, serve, Answer, Client, ClientTls, Endpoint, Limits, ServeOptions, ServerTls,
    Token,
};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "test-token-0123456789abcdef";

/// Small limits, so each test sees them within a second.
fn tight() -> Limits {
    Limits {
        header_timeout: Duration::from_millis(400),
        body_timeout: Duration::from_millis(400),
        max_body_bytes: 1024,
        max_connections: 2,
    }
}

#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

fn app(gauge: Arc<Gauge>) -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/echo", post(|b: Bytes| async move { b.len().to_string() }))
        .route(
            "/slow",
            get(move || {
                let g = gauge.clone();
                async move {
                    let n = g.now.fetch_add(1, Ordering::SeqCst) + 1;
                    g.max.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    g.now.fetch_sub(1, Ordering::SeqCst);
                    "slow"
                }
            }),
        )
}

/// Serves `router` on a free loopback port; returns `127.0.0.1:PORT`.
async fn start(router: Router, options: ServeOptions) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(serve(l, router, options));
    addr
}

fn plain(limits: Limits) -> ServeOptions {
    ServeOptions { limits, tls: None }
}

async fn call(c: &Client, addr: &str, path: &str) -> Answer {
    c.send(&Endpoint::parse(addr).unwrap(), Method::GET, path, None)
        .await
        .unwrap()
}

/// Reads until the server closes (or 3 s pass); what it sent and when it closed.
async fn read_to_close(r: &mut (impl AsyncReadExt + Unpin)) -> (String, Option<Instant>) {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, r.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (String::from_utf8_lossy(&all).into(), Some(Instant::now()))
            }
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&all).into(), None),
        }
    }
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off_after_the_header_timeout() {
    let addr = start(app(Default::default()), plain(tight())).await;
    let s = TcpStream::connect(&addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let t0 = Instant::now();
    w.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // One header line every 100 ms for 3 s: always busy, never done.
    let trickle = tokio::spawn(async move {
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if w.write_all(b"X-Slow: y\r\n").await.is_err() {
                break;
            }
        }
    });
    let (got, closed) = read_to_close(&mut r).await;
    trickle.abort();
    let closed = closed.expect("the server kept the trickling connection open for 3 s");
    let took = closed - t0;
    assert!(
        took >= Duration::from_millis(350),
        "cut too early: {took:?}"
    );
    assert!(took < Duration::from_millis(1500), "cut too late: {took:?}");
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let addr = start(app(Default::default()), plain(tight())).await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let t0 = Instant::now();
    let (_, closed) = read_to_close(&mut s).await;
    let took = closed.expect("an idle connection stayed open for 3 s") - t0;
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let addr = start(app(Default::default()), plain(tight())).await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let t0 = Instant::now();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let (got, closed) = read_to_close(&mut s).await;
    assert!(
        closed.is_some(),
        "the server waited 3 s for the body: {got}"
    );
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(
        got.contains(r#"{"error":"request body not received within 400 ms"}"#),
        "{got}"
    );
    assert!(t0.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_declared_or_chunked() {
    let addr = start(app(Default::default()), plain(tight())).await;
    // Declared too large: refused before a byte of the body is read.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
        .await
        .unwrap();
    let (got, _) = read_to_close(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    assert!(got.contains("over the limit of 1024 bytes"), "{got}");
    // Chunked, so only reading finds out.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let chunk = "a".repeat(700);
    let req = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2bc\r\n{chunk}\r\n2bc\r\n{chunk}\r\n0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let (got, _) = read_to_close(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    // At the limit: served.
    let c = Client::default();
    let a = c
        .send(
            &Endpoint::parse(&addr).unwrap(),
            Method::POST,
            "/echo",
            Some(vec![b'x'; 1024]),
        )
        .await
        .unwrap();
    assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"1024"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let gauge = Arc::new(Gauge::default());
    let addr = start(app(gauge.clone()), plain(tight())).await;
    let c = Client::default();
    let t0 = Instant::now();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let (c, addr) = (c.clone(), addr.clone());
            tokio::spawn(async move { call(&c, &addr, "/slow").await })
        })
        .collect();
    for h in calls {
        assert_eq!(h.await.unwrap().status, StatusCode::OK);
    }
    assert_eq!(gauge.max.load(Ordering::SeqCst), 2, "two at a time");
    // Six requests of 300 ms, two at a time: at least three rounds.
    assert!(
        t0.elapsed() >= Duration::from_millis(850),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn every_route_needs_the_bearer_token() {
    let token = Token::new(TOKEN).unwrap();
    let addr = start(
        require_bearer(app(Default::default()), token.clone()),
        plain(Limits::default()),
    )
    .await;
    let none = Client::default();
    let wrong = Client {
        token: Some(Token::new("wrong-token-0123456789abcdef").unwrap()),
        ..Client::default()
    };
    let right = Client {
        token: Some(token),
        ..Client::default()
    };
    for (c, path) in [(&none, "/ok"), (&none, "/nothing-here"), (&wrong, "/ok")] {
        let a = call(c, &addr, path).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path}");
        let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("bearer token"), "{v}");
        assert!(!String::from_utf8_lossy(&a.body).contains("wrong-token"));
    }
    let a = call(&right, &addr, "/ok").await;
    assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"ok"[..]));
    assert_eq!(
        call(&right, &addr, "/nothing-here").await.status,
        StatusCode::NOT_FOUND
    );
    // A body is not read before the token is checked.
    let a = none
        .send(
            &Endpoint::parse(&addr).unwrap(),
            Method::POST,
            "/echo",
            Some(b"{}".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

/// A verifier with two tokens, naming who presented them.
#[derive(Clone)]
struct Names;

impl baton_http::Verify for Names {
    type Principal = String;
    async fn verify(&self, presented: &[u8]) -> Option<String> {
        [
            ("ann", "ann-token-0123456789abcdef"),
            ("bob", "bob-token-0123456789abcdef"),
        ]
        .into_iter()
        .find(|(_, t)| Token::new(t).is_ok_and(|t| t.matches(presented)))
        .map(|(n, _)| n.to_string())
    }
}

#[tokio::test]
async fn many_tokens_name_their_holder_and_wrong_guesses_slow_down() {
    use baton_http::{require_principal, Throttle, ThrottleConfig};
    let who = Router::new().route(
        "/who",
        get(|axum::Extension(name): axum::Extension<String>| async move { name }),
    );
    let throttle = Arc::new(Throttle::new(ThrottleConfig {
        free_failures: 1,
        base: Duration::from_millis(200),
        max: Duration::from_millis(400),
        ..Default::default()
    }));
    let addr = start(
        require_principal(who, Names, throttle.clone()),
        plain(Limits::default()),
    )
    .await;
    let with = |t: &str| Client {
        token: Some(Token::new(t).unwrap()),
        ..Client::default()
    };
    let a = call(&with("bob-token-0123456789abcdef"), &addr, "/who").await;
    assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"bob"[..]));
    let none = call(&Client::default(), &addr, "/who").await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert!(throttle.is_empty(), "a missing token is not a guess");
    let wrong = with("eve-token-0123456789abcdef");
    let mut took = Vec::new();
    for _ in 0..4 {
        let t0 = Instant::now();
        assert_eq!(
            call(&wrong, &addr, "/who").await.status,
            StatusCode::UNAUTHORIZED
        );
        took.push(t0.elapsed());
    }
    assert!(took[0] < Duration::from_millis(150), "{took:?}");
    assert!(took[2] >= Duration::from_millis(200), "{took:?}");
    assert!(took[3] >= Duration::from_millis(400), "{took:?}");
    // The right token still gets in (after the wait), and the slate is clean again.
    let a = call(&with("ann-token-0123456789abcdef"), &addr, "/who").await;
    assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"ann"[..]));
    assert!(throttle.is_empty());
}

/// A CA and a server certificate it signed for 127.0.0.1 and localhost, made with the
/// openssl command line. Returns (CA, certificate, key).
fn certificates(dir: &Path, tag: &str) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(format!("{tag}-{n}"));
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("the openssl command line is needed for the TLS tests");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let s = |x: &PathBuf| x.display().to_string();
    let (ca, ca_key, key, csr, cert, ext) = (
        p("ca.pem"),
        p("ca.key"),
        p("server.key"),
        p("server.csr"),
        p("server.pem"),
        p("ext.cnf"),
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut a = vec!["req", "-x509", "-days", "2", "-subj", "/CN=baton test CA"];
    a.extend(ec);
    let (ca_s, ca_key_s) = (s(&ca), s(&ca_key));
    a.extend(["-keyout", &ca_key_s, "-out", &ca_s]);
    run(&a);
    let (key_s, csr_s, cert_s, ext_s) = (s(&key), s(&csr), s(&cert), s(&ext));
    let mut a = vec!["req", "-subj", "/CN=localhost"];
    a.extend(ec);
    a.extend(["-keyout", &key_s, "-out", &csr_s]);
    run(&a);
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        &csr_s,
        "-CA",
        &ca_s,
        "-CAkey",
        &ca_key_s,
        "-CAcreateserial",
        "-extfile",
        &ext_s,
        "-out",
        &cert_s,
    ]);
    (ca, cert, key)
}

#[tokio::test]
async fn tls_with_a_certificate_its_client_trusts() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path(), "a");
    let (other_ca, _, _) = certificates(dir.path(), "b");
    let tls = ServerTls::from_pem_files(&cert, &key).unwrap();
    let addr = start(
        app(Default::default()),
        ServeOptions {
            limits: tight(),
            tls: Some(tls),
        },
    )
    .await;
    let trusting = Client {
        tls: Some(ClientTls::from_ca_file(&ca).unwrap()),
        ..Client::default()
    };
    for a in [format!("https://{addr}"), addr.clone()] {
        let ans = call(&trusting, &a, "/ok").await;
        assert_eq!(
            (ans.status, &ans.body[..]),
            (StatusCode::OK, &b"ok"[..]),
            "{a}"
        );
    }
    let port = addr.rsplit_once(':').unwrap().1;
    let by_name = call(&trusting, &format!("https://localhost:{port}"), "/ok").await;
    assert_eq!(by_name.status, StatusCode::OK);
    // Plain HTTP to a TLS listener, an unknown CA, no CA at all: no answer.
    let ep = |a: &str| Endpoint::parse(a).unwrap();
    let plain = trusting
        .send(&ep(&format!("http://{addr}")), Method::GET, "/ok", None)
        .await;
    assert!(plain.is_err(), "{plain:?}");
    let stranger = Client {
        tls: Some(ClientTls::from_ca_file(&other_ca).unwrap()),
        ..Client::default()
    };
    let e = stranger
        .send(&ep(&addr), Method::GET, "/ok", None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("TLS handshake failed"), "{e}");
    let e = Client::default()
        .send(&ep(&format!("https://{addr}")), Method::GET, "/ok", None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("needs the CA certificate"), "{e}");
    // A client that never starts the handshake is cut off like a silent one.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let t0 = Instant::now();
    let (_, closed) = read_to_close(&mut s).await;
    let took = closed.expect("a silent TLS client kept its connection 3 s") - t0;
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[test]
fn bad_certificate_files_say_which_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not pem\n").unwrap();
    let e = ServerTls::from_pem_files(&empty, &empty)
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty.pem: no certificate in it"), "{e}");
    let e = ClientTls::from_ca_file(&dir.path().join("missing.pem"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.pem: cannot read certificates"), "{e}");
    let (_, cert, _) = certificates(dir.path(), "c");
    let e = ServerTls::from_pem_files(&cert, &empty)
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty.pem: cannot read a private key"), "{e}");
}
