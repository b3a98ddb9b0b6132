//! The edge against real sockets on 127.0.0.1: routing by host and path, TLS by SNI with
//! ALPN, redirects, HSTS, certificate rotation under open connections, client certificates,
//! ACME challenge answers and a weighted split behind a route.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use baton_proxy::edge::{Certificate, ClientCa, Edge, EdgeConfig, Route, Target, TlsError};
use baton_proxy::{BackendPool, PoolConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use support::{bounded, Behaviour, TestBackend};

/// A self-signed certificate for `names`: (certificate PEM, key PEM).
fn self_signed(names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let c = rcgen::generate_simple_self_signed(names).expect("rcgen");
    (c.cert.pem(), c.signing_key.serialize_pem())
}

fn cert(pem: &(String, String)) -> Certificate {
    Certificate::from_pem(pem.0.as_bytes(), pem.1.as_bytes()).expect("certificate")
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("der")
}

async fn edge() -> Edge {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    Edge::bind(EdgeConfig::new(any, any)).await.expect("edge")
}

async fn pool_of(ids: &[&str]) -> (BackendPool, Vec<TestBackend>) {
    let pool = BackendPool::new(&PoolConfig::http());
    let mut backends = Vec::new();
    for id in ids {
        backends.push(TestBackend::start(id, Behaviour::Ok).await);
    }
    pool.set_backends(backends.iter().map(|b| b.backend("v1")).collect());
    (pool, backends)
}

fn route(host: &str, path: &str, target: Target) -> Route {
    Route {
        host: host.into(),
        path: path.into(),
        target,
        tls: false,
        https_redirect: true,
        hsts_max_age: None,
        client_ca: None,
    }
}

fn tls_route(host: &str, path: &str, pool: &BackendPool) -> Route {
    Route {
        tls: true,
        ..route(host, path, Target::Pool(pool.clone()))
    }
}

/// How a test client connects over TLS.
#[derive(Default)]
struct Client {
    roots: Vec<CertificateDer<'static>>,
    alpn: Vec<Vec<u8>>,
    identity: Option<(String, String)>,
}

impl Client {
    fn trusting(pems: &[&(String, String)]) -> Client {
        Client {
            roots: pems.iter().map(|p| der(&p.0)).collect(),
            alpn: vec![b"http/1.1".to_vec()],
            identity: None,
        }
    }

    async fn connect(&self, addr: SocketAddr, sni: &str) -> std::io::Result<TlsStream<TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        for r in &self.roots {
            roots.add(r.clone()).expect("root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let mut config = match &self.identity {
            Some((c, k)) => builder
                .with_client_auth_cert(
                    vec![der(c)],
                    PrivateKeyDer::from_pem_slice(k.as_bytes()).expect("key"),
                )
                .expect("client cert"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(sni.to_string()).expect("server name");
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    }
}

/// An HTTP/1.1 connection over any stream: send requests one after another.
struct H1 {
    sender: http1::SendRequest<Empty<Bytes>>,
}

impl H1 {
    async fn over<S>(stream: S) -> H1
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.expect("h1");
        tokio::spawn(conn);
        H1 { sender }
    }

    /// (status, headers, body)
    async fn get(&mut self, host: &str, path: &str) -> (u16, hyper::HeaderMap, String) {
        let req = Request::builder()
            .uri(path)
            .header("host", host)
            .body(Empty::new())
            .expect("request");
        self.sender.ready().await.expect("connection ready");
        let res = self.sender.send_request(req).await.expect("response");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.expect("body").to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }
}

async fn plain(addr: SocketAddr) -> H1 {
    H1::over(TcpStream::connect(addr).await.expect("connect")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_longest_path_prefix() {
    bounded(async {
        let (web, _w) = pool_of(&["web"]).await;
        let (api, _a) = pool_of(&["api"]).await;
        let (blog, _b) = pool_of(&["blog"]).await;
        let edge = edge().await;
        edge.set_routes(vec![
            route("shop.test", "/", Target::Pool(web.clone())),
            route("shop.test", "/api", Target::Pool(api.clone())),
            route("*.blog.test", "/", Target::Pool(blog.clone())),
            route(
                "www.shop.test",
                "/",
                Target::Redirect("https://shop.test".into()),
            ),
        ])
        .expect("routes");
        let addr = edge.http_addr().expect("http");
        let mut c = plain(addr).await;
        let cases = [
            ("shop.test", "/", 200, "web"),
            ("shop.test", "/cart", 200, "web"),
            ("shop.test", "/api/orders", 200, "api"),
            ("SHOP.TEST:80", "/api", 200, "api"),
            ("shop.test", "/apis", 200, "web"),
            ("me.blog.test", "/", 200, "blog"),
            ("blog.test", "/", 404, "no route for this host and path\n"),
            ("other.test", "/", 404, "no route for this host and path\n"),
        ];
        for (host, path, status, body) in cases {
            let (s, _, b) = c.get(host, path).await;
            assert_eq!((s, b.as_str()), (status, body), "{host}{path}");
        }
        let (s, h, _) = c.get("www.shop.test", "/cart?id=1").await;
        assert_eq!(s, 308);
        assert_eq!(h["location"], "https://shop.test/cart?id=1");
        // The backend sees the host, the client and the scheme.
        let (_, _, b) = c.get("shop.test", "/headers").await;
        assert!(b.contains("host=shop.test"), "{b}");
        assert!(b.contains("xff=127.0.0.1"), "{b}");
        // A table that repeats a host and path is refused, the old one stays.
        let err = edge
            .set_routes(vec![
                route("a.test", "/", Target::Pool(web.clone())),
                route("A.test", "/", Target::Pool(api.clone())),
            ])
            .unwrap_err();
        assert_eq!(err.to_string(), "a.test/ is routed twice");
        let (s, _, b) = c.get("shop.test", "/api").await;
        assert_eq!((s, b.as_str()), (200, "api"));
        edge.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_picks_the_certificate_by_sni_and_offers_h2() {
    bounded(async {
        let (web, _w) = pool_of(&["web"]).await;
        let (blog, _b) = pool_of(&["blog"]).await;
        let shop = self_signed(&["shop.test"]);
        let blogs = self_signed(&["*.blog.test"]);
        let edge = edge().await;
        edge.set_routes(vec![
            tls_route("shop.test", "/", &web),
            tls_route("*.blog.test", "/", &blog),
        ])
        .expect("routes");
        edge.set_certificates(vec![
            ("shop.test".into(), cert(&shop)),
            ("*.blog.test".into(), cert(&blogs)),
        ]);
        let addr = edge.https_addr().expect("https");
        let client = Client::trusting(&[&shop, &blogs]);
        for (sni, pem, want) in [
            ("shop.test", &shop, "web"),
            ("me.blog.test", &blogs, "blog"),
        ] {
            let stream = client.connect(addr, sni).await.expect("handshake");
            let served = stream.get_ref().1.peer_certificates().expect("certs")[0].clone();
            assert_eq!(served, der(&pem.0), "{sni}");
            let mut c = H1::over(stream).await;
            let (s, _, b) = c.get(sni, "/").await;
            assert_eq!((s, b.as_str()), (200, want));
            let (_, _, headers) = c.get(sni, "/headers").await;
            assert!(headers.contains(&format!("host={sni}")), "{headers}");
        }
        // A name with no certificate: no handshake.
        assert!(client.connect(addr, "none.test").await.is_err());
        // ALPN: h2 when offered, and served as h2.
        let h2 = Client {
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            ..Client::trusting(&[&shop])
        };
        let stream = h2.connect(addr, "shop.test").await.expect("handshake");
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(stream),
        )
        .await
        .expect("h2");
        tokio::spawn(conn);
        let req = Request::builder()
            .uri("https://shop.test/headers")
            .body(Empty::<Bytes>::new())
            .expect("request");
        let res = sender.send_request(req).await.expect("h2 response");
        assert_eq!(res.status(), 200);
        let body = res.into_body().collect().await.expect("body").to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("host=shop.test"), "{body}");
        edge.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_redirected_to_https_and_hsts_is_opt_in() {
    bounded(async {
        let (web, _w) = pool_of(&["web"]).await;
        let shop = self_signed(&["shop.test", "secure.test", "open.test"]);
        let edge = edge().await;
        let https_port = edge.https_addr().expect("https").port();
        edge.set_routes(vec![
            tls_route("shop.test", "/", &web),
            Route {
                hsts_max_age: Some(31_536_000),
                ..tls_route("secure.test", "/", &web)
            },
            Route {
                https_redirect: false,
                ..tls_route("open.test", "/", &web)
            },
            route("plain.test", "/", Target::Pool(web.clone())),
        ])
        .expect("routes");
        edge.set_certificates(vec![
            ("shop.test".into(), cert(&shop)),
            ("secure.test".into(), cert(&shop)),
            ("open.test".into(), cert(&shop)),
        ]);
        let mut c = plain(edge.http_addr().expect("http")).await;
        let (s, h, _) = c.get("shop.test:8080", "/a?b=1").await;
        assert_eq!(s, 308);
        assert_eq!(
            h["location"],
            format!("https://shop.test:{https_port}/a?b=1").as_str()
        );
        assert!(h.get("strict-transport-security").is_none());
        let (s, _, b) = c.get("open.test", "/").await;
        assert_eq!((s, b.as_str()), (200, "web"));
        let (s, _, b) = c.get("plain.test", "/").await;
        assert_eq!((s, b.as_str()), (200, "web"));
        let client = Client::trusting(&[&shop]);
        let addr = edge.https_addr().expect("https");
        let mut secure = H1::over(client.connect(addr, "secure.test").await.expect("tls")).await;
        let (s, h, _) = secure.get("secure.test", "/").await;
        assert_eq!(s, 200);
        assert_eq!(h["strict-transport-security"], "max-age=31536000");
        let mut shop_c = H1::over(client.connect(addr, "shop.test").await.expect("tls")).await;
        let (s, h, _) = shop_c.get("shop.test", "/").await;
        assert_eq!(s, 200);
        assert!(h.get("strict-transport-security").is_none());
        edge.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_serves_new_handshakes_and_open_connections_go_on() {
    bounded(async {
        let (web, _w) = pool_of(&["web"]).await;
        let old = self_signed(&["shop.test"]);
        let new = self_signed(&["shop.test"]);
        let edge = edge().await;
        edge.set_routes(vec![tls_route("shop.test", "/", &web)])
            .expect("routes");
        edge.set_certificates(vec![("shop.test".into(), cert(&old))]);
        let addr = edge.https_addr().expect("https");
        let client = Client::trusting(&[&old, &new]);
        let mut open = H1::over(client.connect(addr, "shop.test").await.expect("tls")).await;
        assert_eq!(open.get("shop.test", "/").await.0, 200);
        edge.set_certificates(vec![("shop.test".into(), cert(&new))]);
        // The connection opened before keeps working.
        for _ in 0..10 {
            assert_eq!(open.get("shop.test", "/").await.0, 200);
        }
        let stream = client.connect(addr, "shop.test").await.expect("tls");
        let served = stream.get_ref().1.peer_certificates().expect("certs")[0].clone();
        assert_eq!(served, der(&new.0));
        assert_eq!(
            edge.certificate("shop.test")
                .map(|c| c.end_entity().to_vec()),
            Some(der(&new.0).to_vec())
        );
        edge.shutdown().await;
    })
    .await;
}

/// A CA and a client certificate it signed: (CA PEM, (client cert PEM, client key PEM)).
fn client_ca() -> (String, (String, String)) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test client CA");
    let ca = rcgen::CertifiedIssuer::self_signed(params, ca_key).expect("ca");
    let client_key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "a client");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client = params.signed_by(&client_key, &ca).expect("client cert");
    (ca.pem(), (client.pem(), client_key.serialize_pem()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_asked_per_route() {
    bounded(async {
        let (web, _w) = pool_of(&["web"]).await;
        let (admin, _a) = pool_of(&["admin"]).await;
        let shop = self_signed(&["shop.test"]);
        let (ca_pem, identity) = client_ca();
        let (_, stranger) = client_ca();
        let ca = ClientCa::from_pem(ca_pem.as_bytes()).expect("ca");
        let edge = edge().await;
        edge.set_routes(vec![
            tls_route("shop.test", "/", &web),
            Route {
                client_ca: Some(ca),
                ..tls_route("shop.test", "/admin", &admin)
            },
        ])
        .expect("routes");
        edge.set_certificates(vec![("shop.test".into(), cert(&shop))]);
        let addr = edge.https_addr().expect("https");
        let anonymous = Client::trusting(&[&shop]);
        let mut c = H1::over(anonymous.connect(addr, "shop.test").await.expect("tls")).await;
        assert_eq!(c.get("shop.test", "/").await.0, 200);
        let (s, _, b) = c.get("shop.test", "/admin").await;
        assert_eq!(
            (s, b.as_str()),
            (403, "this route needs a client certificate\n")
        );
        let known = Client {
            identity: Some(identity),
            ..Client::trusting(&[&shop])
        };
        let mut c = H1::over(known.connect(addr, "shop.test").await.expect("tls")).await;
        let (s, _, b) = c.get("shop.test", "/admin/users").await;
        assert_eq!((s, b.as_str()), (200, "admin"));
        // A certificate from another CA fails the handshake.
        let other = Client {
            identity: Some(stranger),
            ..Client::trusting(&[&shop])
        };
        let refused = match other.connect(addr, "shop.test").await {
            Err(_) => true,
            // TLS 1.3: the client learns of the refusal on its first read.
            Ok(stream) => {
                let mut c = H1::over(stream).await;
                let req = Request::builder()
                    .uri("/admin")
                    .header("host", "shop.test")
                    .body(Empty::new())
                    .expect("request");
                c.sender.send_request(req).await.is_err()
            }
        };
        assert!(refused, "a stranger's certificate is refused");
        edge.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_challenges_are_answered() {
    bounded(async {
        let edge = edge().await;
        edge.set_http_challenge("tok3n", Some("tok3n.thumbprint".into()));
        let mut c = plain(edge.http_addr().expect("http")).await;
        let (s, _, b) = c
            .get("shop.test", "/.well-known/acme-challenge/tok3n")
            .await;
        assert_eq!((s, b.as_str()), (200, "tok3n.thumbprint"));
        edge.set_http_challenge("tok3n", None);
        let (s, _, _) = c
            .get("shop.test", "/.well-known/acme-challenge/tok3n")
            .await;
        assert_eq!(s, 404);
        // TLS-ALPN-01: a handshake offering only acme-tls/1 gets the challenge certificate
        // and nothing else is served on it.
        let challenge = self_signed(&["shop.test"]);
        edge.set_alpn_challenge("shop.test", Some(cert(&challenge)))
            .expect("alpn");
        let acme = Client {
            alpn: vec![b"acme-tls/1".to_vec()],
            ..Client::trusting(&[&challenge])
        };
        let stream = acme
            .connect(edge.https_addr().expect("https"), "shop.test")
            .await
            .expect("handshake");
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"acme-tls/1"[..]));
        assert_eq!(
            stream.get_ref().1.peer_certificates().expect("certs")[0],
            der(&challenge.0)
        );
        edge.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_split_behind_a_route_keeps_its_weights() {
    bounded(async {
        let pool = BackendPool::new(&PoolConfig::http());
        let old = TestBackend::start("old", Behaviour::Ok).await;
        let new = TestBackend::start("new", Behaviour::Ok).await;
        pool.set_backends(vec![old.backend("v1"), new.backend("v2")]);
        pool.set_split(Some(vec![("v2".into(), 25), ("v1".into(), 75)]));
        let edge = edge().await;
        edge.set_routes(vec![route("shop.test", "/", Target::Pool(pool.clone()))])
            .expect("routes");
        let mut c = plain(edge.http_addr().expect("http")).await;
        let mut seen: HashMap<String, u32> = HashMap::new();
        for _ in 0..400 {
            let (s, _, b) = c.get("shop.test", "/").await;
            assert_eq!(s, 200);
            *seen.entry(b).or_default() += 1;
        }
        assert_eq!(seen["new"], 100, "{seen:?}");
        assert_eq!(seen["old"], 300, "{seen:?}");
        let m = pool.metrics();
        assert_eq!(m.revisions["v2"].requests, 100);
        edge.shutdown().await;
        // Kept alive until here.
        drop((old, new));
        tokio::time::sleep(Duration::from_millis(1)).await;
    })
    .await;
}

#[test]
fn certificates_refuse_a_key_that_does_not_belong() {
    let a = self_signed(&["a.test"]);
    let b = self_signed(&["b.test"]);
    let e = Certificate::from_pem(a.0.as_bytes(), b.1.as_bytes()).unwrap_err();
    assert!(matches!(e, TlsError::Mismatch), "{e}");
    assert_eq!(
        e.to_string(),
        "the private key does not match the certificate"
    );
    let e = Certificate::from_pem(a.0.as_bytes(), b"").unwrap_err();
    assert!(matches!(e, TlsError::NoKey), "{e}");
    let e = Certificate::from_pem(b"", a.1.as_bytes()).unwrap_err();
    assert!(matches!(e, TlsError::NoCertificate), "{e}");
    // Debug never shows the key.
    let c = cert(&a);
    assert!(!format!("{c:?}").contains("PRIVATE"), "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_sni_gets_the_only_certificate() {
    bounded(async {
        let (web, _w) = pool_of(&["web"]).await;
        let one = self_signed(&["shop.test", "127.0.0.1"]);
        let edge = edge().await;
        edge.set_routes(vec![tls_route("shop.test", "/", &web)])
            .expect("routes");
        edge.set_certificates(vec![("shop.test".into(), cert(&one))]);
        let addr = edge.https_addr().expect("https");
        // An IP address as the server name: rustls sends no SNI.
        let client = Client::trusting(&[&one]);
        let stream = client.connect(addr, "127.0.0.1").await.expect("handshake");
        let mut c = H1::over(stream).await;
        assert_eq!(c.get("shop.test", "/").await.0, 200);
        // Two certificates: which one is unknown, so none.
        let two = self_signed(&["blog.test", "127.0.0.1"]);
        edge.set_certificates(vec![
            ("shop.test".into(), cert(&one)),
            ("blog.test".into(), cert(&two)),
        ]);
        assert!(Client::trusting(&[&one, &two])
            .connect(addr, "127.0.0.1")
            .await
            .is_err());
        edge.shutdown().await;
    })
    .await;
}
