//! The proxy's backend side against a scripted HTTP/1.1 server that writes exact bytes:
//! chunked and close-delimited bodies, interim answers, HEAD and 204, connections closed by
//! the backend, broken answers, and what the proxy itself puts on the wire.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use baton_proxy::{Backend, Balance, Proxy};
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use support::{bounded, client, get, h2_client, http_proxy, send, until};

/// A backend answering each path with fixed bytes; counts the connections it accepted.
struct Scripted {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    async fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                conns.spawn(serve(stream));
            }
        });
        Scripted {
            addr,
            accepted,
            task,
        }
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Reads requests (head, then a content-length or chunked body) and answers by path.
async fn serve(mut stream: TcpStream) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = read_until(&mut stream, &mut buf, b"\r\n\r\n").await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let lower = head.to_ascii_lowercase();
        if let Some(hold) = early_answer(&head) {
            // Answers without reading the body, then closes or holds the connection unread.
            let close = if hold { "" } else { "Connection: close\r\n" };
            let reply = format!(
                "HTTP/1.1 413 Payload Too Large\r\n{close}Content-Length: 8\r\n\r\ntoo big\n"
            );
            if stream.write_all(reply.as_bytes()).await.is_err() || !hold {
                return;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            return;
        }
        if head.starts_with("GET /ws") {
            // Switches to an echo protocol when asked as HTTP/1.1 says, and also when not
            // asked on /ws-unasked (a broken backend).
            let asked = lower.contains("\r\nupgrade: echo\r\n")
                && lower.contains("\r\nconnection: upgrade\r\n");
            if !asked && !head.starts_with("GET /ws-unasked") {
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\n\r\nno upgrade\n",
                    )
                    .await;
                continue;
            }
            let switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhello-early|";
            if stream.write_all(switch).await.is_err() {
                return;
            }
            let mut chunk = [0u8; 4096];
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if stream.write_all(&chunk[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
        let mut body = Vec::new();
        if let Some(len) = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            while buf.len() < len {
                if !read_more(&mut stream, &mut buf).await {
                    return;
                }
            }
            body = buf.drain(..len).collect();
        } else if lower.contains("transfer-encoding: chunked") {
            let Some(end) = read_until(&mut stream, &mut buf, b"0\r\n\r\n").await else {
                return;
            };
            body = buf.drain(..end).collect();
        }
        if head.starts_with("GET /stall ") {
            // Never answers (a stuck replica).
            tokio::time::sleep(Duration::from_secs(10)).await;
            return;
        }
        let mut words = head.split_whitespace();
        let method = words.next().unwrap_or_default().to_owned();
        let target = words.next().unwrap_or_default();
        let path = target.split('?').next().unwrap_or_default().to_owned();
        let reply: Vec<u8> = match (method.as_str(), path.as_str()) {
            ("HEAD", _) => b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-Head: yes\r\n\r\n".to_vec(),
            (_, "/chunked") => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Id: c\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n".to_vec(),
            (_, "/close") => b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 6\r\n\r\nclosed".to_vec(),
            (_, "/eof") => b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end".to_vec(),
            (_, "/continue") => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nnew".to_vec(),
            (_, "/nocontent") => b"HTTP/1.1 204 No Content\r\nX-Id: n\r\n\r\n".to_vec(),
            (_, "/garbage") => b"SPDY/9 what\r\n\r\n".to_vec(),
            (_, "/truncated") => b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort".to_vec(),
            (_, "/hop") => b"HTTP/1.1 200 OK\r\nConnection: x-private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            (_, "/slow") => {
                // The head and body arrive in pieces.
                for piece in [&b"HTTP/1.1 200 OK\r\nCont"[..], b"ent-Length: 4\r\n", b"\r\nsl", b"ow"] {
                    if stream.write_all(piece).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                continue;
            }
            (_, "/raw") => {
                // What the proxy sent: the head, then the body bytes as framed on the wire.
                let mut text = head.into_bytes();
                text.extend_from_slice(b"|");
                text.extend_from_slice(&body);
                let mut reply =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", text.len()).into_bytes();
                reply.extend_from_slice(&text);
                reply
            }
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain".to_vec(),
        };
        if stream.write_all(&reply).await.is_err() {
            return;
        }
        if matches!(path.as_str(), "/close" | "/eof" | "/truncated" | "/garbage") {
            return;
        }
        if path == "/dropidle" {
            // Keep-alive by the headers, but closed once idle: the proxy must notice.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        }
    }
}

/// `Some(hold)` for the paths answered before the body is read: `/reject` closes,
/// `/reject-hold` keeps the connection open without reading.
fn early_answer(head: &str) -> Option<bool> {
    let target = head.split_whitespace().nth(1)?;
    match target {
        "/reject" => Some(false),
        "/reject-hold" => Some(true),
        _ => None,
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Reads until `marker` is in `buf`; returns the index just past it.
async fn read_until(stream: &mut TcpStream, buf: &mut Vec<u8>, marker: &[u8]) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(marker.len()).position(|w| w == marker) {
            return Some(i + marker.len());
        }
        if !read_more(stream, buf).await {
            return None;
        }
    }
}

/// What the proxy answers on a raw client connection, up to and including `marker`.
async fn answer_until(conn: &mut TcpStream, marker: &str) -> String {
    let mut text = Vec::new();
    while !String::from_utf8_lossy(&text).contains(marker) {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&text));
        text.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&text).into_owned()
}

async fn proxy_to(backend: &Scripted) -> Proxy {
    let proxy = http_proxy(Balance::RoundRobin).await;
    proxy.set_backends(vec![Backend::new("s", backend.addr, "v1")]);
    proxy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_framings_arrive_whole_and_keep_alive_is_honoured() {
    bounded(async {
        let backend = Scripted::start().await;
        let proxy = proxy_to(&backend).await;
        let addr = proxy.local_addr();
        for c in [client(), h2_client()] {
            let before = backend.accepted();
            assert_eq!(get(&c, addr, "/chunked").await, (200, "hello world".into()));
            assert_eq!(get(&c, addr, "/slow").await, (200, "slow".into()));
            assert_eq!(get(&c, addr, "/continue").await, (201, "new".into()));
            assert_eq!(get(&c, addr, "/nocontent").await, (204, String::new()));
            assert_eq!(get(&c, addr, "/").await, (200, "plain".into()));
            // All of the above on one backend connection (each worker keeps its own pool,
            // so allow one per worker).
            let used = backend.accepted() - before;
            assert!(used <= 2, "{used} connections for keep-alive answers");
            // Close-delimited and `Connection: close` answers cost their connection.
            assert_eq!(get(&c, addr, "/eof").await, (200, "until the end".into()));
            assert_eq!(get(&c, addr, "/close").await, (200, "closed".into()));
            let before = backend.accepted();
            assert_eq!(get(&c, addr, "/").await, (200, "plain".into()));
            assert_eq!(get(&c, addr, "/").await, (200, "plain".into()));
            assert!(backend.accepted() - before <= 2);
        }
        let m = proxy.metrics();
        assert_eq!(m.revisions["v1"].failures, 0);
        assert_eq!(
            m.revisions["v1"].active, 0,
            "every answer ended its request"
        );
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_answers_keep_their_length_and_hop_headers_go() {
    bounded(async {
        let backend = Scripted::start().await;
        let proxy = proxy_to(&backend).await;
        let mut conn = TcpStream::connect(proxy.local_addr())
            .await
            .expect("connect");
        conn.write_all(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /hop HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let text = answer_until(&mut conn, "\r\n\r\nok")
            .await
            .to_ascii_lowercase();
        let (head, hop) = text.split_once("x-head: yes").expect("HEAD answer first");
        assert!(head.contains("content-length: 10"), "{text}");
        assert!(
            !hop.contains("x-private") && !hop.contains("keep-alive:"),
            "{text}"
        );
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_answers_become_502_and_a_cut_body_fails() {
    bounded(async {
        let backend = Scripted::start().await;
        let proxy = proxy_to(&backend).await;
        let addr = proxy.local_addr();
        let c = client();
        assert_eq!(get(&c, addr, "/garbage").await.0, 502);
        // The answer broke after its head: the client sees the transfer fail (the head may
        // or may not have reached it).
        let req = hyper::Request::get(format!("http://{addr}/truncated"))
            .body(http_body_util::Full::new(Bytes::new()))
            .expect("request");
        match c.request(req).await {
            Ok(response) => assert!(response.into_body().collect().await.is_err()),
            Err(e) => assert!(
                e.is_connect() || format!("{e:?}").contains("Incomplete"),
                "{e:?}"
            ),
        }
        // The proxy is fine afterwards.
        assert_eq!(get(&c, addr, "/").await, (200, "plain".into()));
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_the_backend_closed_is_not_used() {
    bounded(async {
        let backend = Scripted::start().await;
        let proxy = proxy_to(&backend).await;
        let addr = proxy.local_addr();
        let c = client();
        for _ in 0..5 {
            assert_eq!(get(&c, addr, "/dropidle").await, (200, "plain".into()));
            tokio::time::sleep(Duration::from_millis(150)).await;
            // Not idempotent: it could not be retried had it gone to the closed connection.
            let (status, body) = send(&c, addr, "POST", "/", Bytes::from_static(b"x")).await;
            assert_eq!((status, &body[..]), (200, &b"plain"[..]));
        }
        assert_eq!(proxy.metrics().revisions["v1"].failures, 0);
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_go_out_with_one_framing() {
    bounded(async {
        let backend = Scripted::start().await;
        let proxy = proxy_to(&backend).await;
        let addr = proxy.local_addr();
        // A chunked upload from an HTTP/1.1 client is re-chunked, with no content-length.
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        conn.write_all(
            b"POST /raw?a=1 HTTP/1.1\r\nHost: front\r\nTransfer-Encoding: chunked\r\nX-Test: kept\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .await
        .expect("write");
        let text = answer_until(&mut conn, "0\r\n\r\n").await;
        let (_, seen) = text.split_once("\r\n\r\n").expect("answer head");
        let (head, body) = seen.split_once('|').expect("separator");
        assert!(head.starts_with("POST /raw?a=1 HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("host: front\r\n"), "{head}");
        assert!(head.contains("x-test: kept\r\n"), "{head}");
        assert!(head.contains("x-forwarded-for: 127.0.0.1\r\n"), "{head}");
        assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        let mut decoded = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size, 16).expect("chunk size");
            if n == 0 {
                break;
            }
            decoded.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        assert_eq!(decoded, "abcde");
        // A sized body keeps one content-length; a bodyless GET gets none.
        let c = client();
        let (status, seen) = send(&c, addr, "PUT", "/raw", Bytes::from_static(b"12345")).await;
        let seen = String::from_utf8_lossy(&seen).into_owned();
        assert_eq!(status, 200);
        assert_eq!(seen.matches("content-length: 5\r\n").count(), 1, "{seen}");
        assert!(seen.ends_with("|12345"), "{seen}");
        let (_, seen) = get(&c, addr, "/raw").await;
        assert!(!seen.contains("content-length") && !seen.contains("transfer-encoding"), "{seen}");
        let (status, seen) = send(&h2_client(), addr, "POST", "/raw", Bytes::from_static(b"h2")).await;
        assert_eq!(status, 200);
        assert!(String::from_utf8_lossy(&seen).ends_with("|h2"));
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_body_was_read_reaches_the_client() {
    bounded(async {
        let backend = Scripted::start().await;
        let proxy = proxy_to(&backend).await;
        let addr = proxy.local_addr();
        for path in ["/reject", "/reject-hold"] {
            // An HTTP/1.1 client that announces 16 MiB and sends the first 256 KiB, more
            // than the backend reads (nothing) and the sockets buffer: the answer must
            // come back anyway.
            let mut conn = TcpStream::connect(addr).await.expect("connect");
            let head = format!(
                "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                16 << 20
            );
            conn.write_all(head.as_bytes()).await.expect("head");
            let part = vec![b'x'; 256 << 10];
            let writer = tokio::spawn(async move {
                let _ = conn.write_all(&part).await;
                conn
            });
            let mut conn = writer.await.expect("writer");
            let text = answer_until(&mut conn, "too big\n").await;
            assert!(text.starts_with("HTTP/1.1 413"), "{path}: {text}");
            // An h2 client sending the whole body gets the answer too (the stream is
            // reset once answered, which h2 allows).
            let big = Bytes::from(vec![b'x'; 16 << 20]);
            let (status, body) = send(&h2_client(), addr, "PUT", path, big).await;
            assert_eq!((status, &body[..]), (413, &b"too big\n"[..]), "{path}");
        }
        // The backend is still usable for the next requests.
        assert_eq!(get(&client(), addr, "/").await, (200, "plain".into()));
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_upgrades_become_a_tunnel_that_counts_as_in_flight() {
    bounded(async {
        let backend = Scripted::start().await;
        let proxy = proxy_to(&backend).await;
        let addr = proxy.local_addr();
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        conn.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: echo\r\n\r\n")
            .await
            .expect("write");
        let text = answer_until(&mut conn, "hello-early|").await;
        let lower = text.to_ascii_lowercase();
        assert!(lower.starts_with("http/1.1 101"), "{text}");
        assert!(lower.contains("upgrade: echo"), "{text}");
        for word in ["ping", "pong"] {
            conn.write_all(word.as_bytes()).await.expect("write");
            let mut got = [0u8; 4];
            conn.read_exact(&mut got).await.expect("echo");
            assert_eq!(&got, word.as_bytes());
        }
        assert_eq!(proxy.metrics().revisions["v1"].active, 1, "the tunnel is in flight");
        drop(conn);
        until(|| proxy.metrics().revisions["v1"].active == 0).await;
        // A backend that switches protocols unasked is a broken answer.
        let c = client();
        assert_eq!(get(&c, addr, "/ws-unasked").await.0, 502);
        // Without `Connection: upgrade` nothing is switched (the backend says so).
        assert_eq!(get(&c, addr, "/ws").await, (400, "no upgrade\n".into()));
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_does_not_answer_in_time_gets_a_504() {
    bounded(async {
        let backend = Scripted::start().await;
        let mut cfg = support::config(
            baton_proxy::Protocol::Http,
            Balance::RoundRobin,
            Duration::from_secs(30),
        );
        cfg.response_timeout = Duration::from_millis(400);
        let proxy = Proxy::bind(cfg).await.expect("bind");
        proxy.set_backends(vec![Backend::new("s", backend.addr, "v1")]);
        let addr = proxy.local_addr();
        let c = client();
        let started = std::time::Instant::now();
        assert_eq!(
            get(&c, addr, "/stall").await,
            (504, "backend did not answer in time\n".into())
        );
        eprintln!("504 after {:?}", started.elapsed());
        // An answer that takes a while but less than the timeout is fine.
        assert_eq!(get(&c, addr, "/slow").await, (200, "slow".into()));
        assert_eq!(get(&c, addr, "/").await, (200, "plain".into()));
        let m = proxy.metrics();
        assert_eq!(
            (m.revisions["v1"].failures, m.revisions["v1"].active),
            (1, 0)
        );
        proxy.shutdown().await;
    })
    .await;
}
