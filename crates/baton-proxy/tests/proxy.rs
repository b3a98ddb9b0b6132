//! The proxy against real sockets on 127.0.0.1: balancing, splits, swaps, draining, retries,
//! metrics, h2c and TCP. Every test is bounded in time; no assertion depends on speed.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use baton_proxy::{Balance, Protocol, Proxy};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{
    bounded, client, config, get, h2_client, http_proxy, send, until, Behaviour, TestBackend,
};

async fn backends(ids: &[&str]) -> Vec<TestBackend> {
    let mut out = Vec::new();
    for id in ids {
        out.push(TestBackend::start(id, Behaviour::Ok).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_evenly() {
    bounded(async {
        let bs = backends(&["a", "b", "c"]).await;
        let proxy = http_proxy(Balance::RoundRobin).await;
        proxy.set_backends(bs.iter().map(|b| b.backend("v1")).collect());
        let c = client();
        let mut seen: HashMap<String, u32> = HashMap::new();
        for _ in 0..300 {
            let (status, body) = get(&c, proxy.local_addr(), "/").await;
            assert_eq!(status, 200);
            *seen.entry(body).or_default() += 1;
        }
        assert_eq!(
            seen,
            HashMap::from([("a".into(), 100), ("b".into(), 100), ("c".into(), 100)])
        );
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_prefers_the_idle_backend() {
    bounded(async {
        let bs = backends(&["a", "b"]).await;
        let proxy = http_proxy(Balance::LeastConnections).await;
        proxy.set_backends(bs.iter().map(|b| b.backend("v1")).collect());
        let addr = proxy.local_addr();
        let held = tokio::spawn(async move { get(&client(), addr, "/hold").await });
        until(|| bs[0].held() + bs[1].held() == 1).await;
        let (busy, idle) = if bs[0].held() == 1 {
            (&bs[0], &bs[1])
        } else {
            (&bs[1], &bs[0])
        };
        let c = client();
        for _ in 0..20 {
            assert_eq!(get(&c, addr, "/").await, (200, idle.id.clone()));
        }
        busy.release(1);
        assert_eq!(held.await.expect("join"), (200, busy.id.clone()));
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_lands_on_its_weights() {
    bounded(async {
        let bs = backends(&["old-1", "old-2", "new-1"]).await;
        let proxy = http_proxy(Balance::RoundRobin).await;
        proxy.set_backends(vec![
            bs[0].backend("v1"),
            bs[1].backend("v1"),
            bs[2].backend("v2"),
        ]);
        proxy.set_split(Some(vec![("v2".into(), 10), ("v1".into(), 90)]));
        let c = client();
        for _ in 0..1000 {
            assert_eq!(get(&c, proxy.local_addr(), "/").await.0, 200);
        }
        let new = bs[2].hits();
        assert!((70..=130).contains(&new), "v2 got {new} of 1000");
        let m = proxy.metrics();
        assert_eq!(m.revisions["v2"].requests, new);
        assert_eq!(m.revisions["v1"].requests, 1000 - new);
        // Unlisted revisions get nothing while a split is set; `None` makes all equal again.
        proxy.set_split(Some(vec![("v2".into(), 1)]));
        let before = bs[0].hits() + bs[1].hits();
        for _ in 0..20 {
            assert_eq!(
                get(&c, proxy.local_addr(), "/").await,
                (200, "new-1".into())
            );
        }
        proxy.set_split(None);
        for _ in 0..30 {
            assert_eq!(get(&c, proxy.local_addr(), "/").await.0, 200);
        }
        assert_eq!(bs[0].hits() + bs[1].hits(), before + 20);
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_swaps_under_load_fail_no_request() {
    bounded(async {
        let bs = backends(&["g0", "g1", "g2", "g3", "g4", "g5"]).await;
        let proxy = http_proxy(Balance::RoundRobin).await;
        proxy.set_backends(vec![bs[0].backend("r0"), bs[1].backend("r0")]);
        let addr = proxy.local_addr();
        let done = Arc::new(AtomicU64::new(0));
        let mut clients = Vec::new();
        for _ in 0..4 {
            let done = done.clone();
            clients.push(tokio::spawn(async move {
                let c = client();
                let mut statuses = HashMap::<u16, u32>::new();
                for _ in 0..500 {
                    *statuses.entry(get(&c, addr, "/").await.0).or_default() += 1;
                    done.fetch_add(1, Ordering::SeqCst);
                }
                statuses
            }));
        }
        // Rolling update: each step adds the next backend and removes the oldest, waits for
        // the removed one to drain, then kills it like a stopped container.
        let mut after_removal = Vec::new();
        for step in 0..4 {
            until(|| done.load(Ordering::SeqCst) >= 400 * (step as u64 + 1)).await;
            let rev = format!("r{}", step + 1);
            proxy.set_backends(vec![bs[step + 1].backend(&rev), bs[step + 2].backend(&rev)]);
            proxy.drained(&[bs[step].id.clone()]).await;
            after_removal.push((step, bs[step].hits()));
            bs[step].kill();
        }
        let mut total = HashMap::<u16, u32>::new();
        for c in clients {
            for (status, n) in c.await.expect("join") {
                *total.entry(status).or_default() += n;
            }
        }
        assert_eq!(total, HashMap::from([(200, 2000)]));
        for (step, hits) in after_removal {
            assert_eq!(
                bs[step].hits(),
                hits,
                "{} got requests after removal",
                bs[step].id
            );
        }
        let m = proxy.metrics();
        assert_eq!(m.revisions.values().map(|r| r.failures).sum::<u64>(), 0);
        assert_eq!(m.no_backend, 0);
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_backend_finishes_its_slow_request_before_drained() {
    bounded(async {
        let bs = backends(&["slow", "next"]).await;
        let proxy = http_proxy(Balance::RoundRobin).await;
        proxy.set_backends(vec![bs[0].backend("v1")]);
        let addr = proxy.local_addr();
        let slow = tokio::spawn(async move { get(&client(), addr, "/hold").await });
        until(|| bs[0].held() == 1).await;
        proxy.set_backends(vec![bs[1].backend("v2")]);
        assert_eq!(get(&client(), addr, "/").await, (200, "next".into()));
        let ids = vec!["slow".to_string()];
        let waiter = proxy.clone();
        let drained = tokio::spawn(async move { waiter.drained(&ids).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !drained.is_finished(),
            "drained resolved while a request was in flight"
        );
        bs[0].release(1);
        assert_eq!(slow.await.expect("join"), (200, "slow".into()));
        // The drain timeout is 30 s, so resolving inside the 20 s bound means it saw idle.
        drained.await.expect("join");
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_are_reused_and_closed_after_drain() {
    bounded(async {
        let bs = backends(&["old", "new"]).await;
        let proxy = http_proxy(Balance::RoundRobin).await;
        proxy.set_backends(vec![bs[0].backend("v1")]);
        let addr = proxy.local_addr();
        let c = client();
        for _ in 0..50 {
            assert_eq!(get(&c, addr, "/").await, (200, "old".into()));
        }
        // One client connection in sequence needs one backend connection, reused.
        let open = bs[0].open();
        assert!(
            (1..=2).contains(&open),
            "{open} backend connections for 50 requests"
        );
        // The backend crashes and is replaced; a POST with a body goes to the new one.
        bs[0].kill();
        let fresh = TestBackend::start("fresh", Behaviour::Ok).await;
        proxy.set_backends(vec![fresh.backend("v1")]);
        let (status, body) = send(&c, addr, "POST", "/echo", Bytes::from_static(b"x")).await;
        assert_eq!((status, &body[..]), (200, &b"x"[..]));
        proxy.set_backends(vec![bs[1].backend("v2")]);
        proxy.drained(&["fresh".to_string()]).await;
        until(|| fresh.open() == 0).await;
        assert_eq!(get(&c, addr, "/").await, (200, "new".into()));
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_cuts_a_stuck_request() {
    bounded(async {
        let bs = backends(&["stuck", "next"]).await;
        let cfg = config(
            Protocol::Http,
            Balance::RoundRobin,
            Duration::from_millis(200),
        );
        let proxy = Proxy::bind(cfg).await.expect("bind");
        proxy.set_backends(vec![bs[0].backend("v1")]);
        let addr = proxy.local_addr();
        let stuck = tokio::spawn(async move { get(&client(), addr, "/hold").await });
        until(|| bs[0].held() == 1).await;
        proxy.set_backends(vec![bs[1].backend("v1")]);
        proxy.drained(&["stuck".to_string()]).await;
        assert_ne!(stuck.await.expect("join").0, 200);
        assert_eq!(get(&client(), addr, "/").await, (200, "next".into()));
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_backends_are_retried_around() {
    bounded(async {
        let bs = backends(&["a", "b", "doomed"]).await;
        // A port nothing listens on: connects are refused.
        let refused = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let proxy = http_proxy(Balance::RoundRobin).await;
        let mut set: Vec<_> = bs.iter().map(|b| b.backend("v1")).collect();
        set.push(baton_proxy::Backend::new("refused", refused, "v1"));
        proxy.set_backends(set);
        let c = client();
        for _ in 0..30 {
            assert_eq!(get(&c, proxy.local_addr(), "/").await.0, 200);
        }
        bs[2].kill();
        let before = bs[2].hits();
        let mut seen = HashMap::<String, u32>::new();
        for _ in 0..100 {
            let (status, body) = get(&c, proxy.local_addr(), "/").await;
            assert_eq!(status, 200);
            *seen.entry(body).or_default() += 1;
        }
        assert_eq!(bs[2].hits(), before);
        assert_eq!(seen.keys().count(), 2, "{seen:?}");
        let m = proxy.metrics();
        assert_eq!(m.revisions["v1"].failures, 0);
        assert_eq!(m.revisions["v1"].requests, 130);
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_5xx_and_latency_per_revision() {
    bounded(async {
        let ok = TestBackend::start("ok", Behaviour::Ok).await;
        let bad = TestBackend::start("bad", Behaviour::Fail).await;
        let slow = TestBackend::start("slow", Behaviour::Sleep(Duration::from_millis(20))).await;
        let proxy = http_proxy(Balance::RoundRobin).await;
        let c = client();
        assert_eq!(get(&c, proxy.local_addr(), "/").await.0, 503);
        proxy.set_backends(vec![
            ok.backend("v1"),
            bad.backend("v2"),
            slow.backend("v3"),
        ]);
        for _ in 0..90 {
            get(&c, proxy.local_addr(), "/").await;
        }
        let m = proxy.metrics();
        assert_eq!(m.no_backend, 1);
        for rev in ["v1", "v2", "v3"] {
            let r = &m.revisions[rev];
            assert_eq!(
                (r.requests, r.failures, r.active, r.latency.count),
                (30, 0, 0, 30),
                "{rev}: {r:?}"
            );
            assert!(
                r.latency.p50_ms > 0.0
                    && r.latency.p50_ms <= r.latency.p95_ms
                    && r.latency.p95_ms <= r.latency.p99_ms
            );
        }
        assert_eq!(m.revisions["v1"].responses_5xx, 0);
        assert_eq!(m.revisions["v2"].responses_5xx, 30);
        assert!(
            m.revisions["v3"].latency.p50_ms >= 20.0,
            "{:?}",
            m.revisions["v3"]
        );
        assert!(m.revisions["v3"].latency.p95_ms < 10_000.0);
        let json = serde_json::to_value(&m).expect("metrics serialise");
        assert_eq!(json["revisions"]["v2"]["responses_5xx"], 30);
        proxy.reset_metrics();
        let m = proxy.metrics();
        assert_eq!(
            (
                m.no_backend,
                m.revisions["v2"].requests,
                m.revisions["v3"].latency.count
            ),
            (0, 0, 0)
        );
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_and_http1_keep_method_headers_and_bodies() {
    bounded(async {
        let bs = backends(&["a"]).await;
        let proxy = http_proxy(Balance::RoundRobin).await;
        proxy.set_backends(vec![bs[0].backend("v1")]);
        let addr = proxy.local_addr();
        let big = Bytes::from(
            (0..2_000_000u32)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<u8>>(),
        );
        for c in [client(), h2_client()] {
            assert_eq!(get(&c, addr, "/").await, (200, "a".into()));
            let (status, echoed) = send(&c, addr, "PUT", "/echo", big.clone()).await;
            assert_eq!((status, echoed.len()), (200, big.len()));
            assert!(echoed == big);
            let (status, seen) = get(&c, addr, "/headers?x=1").await;
            assert_eq!(status, 200);
            assert_eq!(
                seen,
                format!("GET /headers?x=1 xff=127.0.0.1 x-test=kept host={addr}")
            );
        }
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_mode_forwards_and_drains_connections() {
    bounded(async {
        let (echo, _task) = support::echo_server().await;
        let proxy = Proxy::bind(config(
            Protocol::Tcp,
            Balance::LeastConnections,
            Duration::from_secs(30),
        ))
        .await
        .expect("bind");
        proxy.set_backends(vec![baton_proxy::Backend::new("echo", echo, "v1")]);
        let mut conn = TcpStream::connect(proxy.local_addr())
            .await
            .expect("connect");
        let mut buf = [0u8; 5];
        conn.write_all(b"hello").await.expect("write");
        conn.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"hello");
        // Removed: the open connection keeps working, new ones find no backend.
        proxy.set_backends(Vec::new());
        let waiter = proxy.clone();
        let drained = tokio::spawn(async move { waiter.drained(&["echo".to_string()]).await });
        let mut late = TcpStream::connect(proxy.local_addr())
            .await
            .expect("connect");
        assert_eq!(late.read(&mut buf).await.unwrap_or(0), 0);
        conn.write_all(b"again").await.expect("write");
        conn.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"again");
        assert!(!drained.is_finished());
        let m = proxy.metrics();
        assert_eq!(
            (
                m.revisions["v1"].requests,
                m.revisions["v1"].active,
                m.no_backend
            ),
            (1, 1, 1)
        );
        drop(conn);
        drained.await.expect("join");
        assert_eq!(proxy.metrics().revisions["v1"].active, 0);
        proxy.shutdown().await;
    })
    .await;
}
