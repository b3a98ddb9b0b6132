//! The client side of the stack: one HTTP/1.1 request per connection to an
//! [`Endpoint`], over TLS when it asks for it, with the bearer token when given.

use std::time::Duration;

use axum::http::{header, Method, Request, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::auth::Token;
use crate::tls::ClientTls;
use crate::HttpError;

/// Answers larger than this are cut off (an error): the APIs baton talks to answer in
/// kilobytes.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// `http://` or `https://`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// Where a server listens: `HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT`
/// (an IPv6 host in brackets). Without a scheme, the client decides: TLS when it
/// trusts a CA, plain HTTP otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Option<Scheme>,
    /// Without brackets.
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn parse(text: &str) -> Result<Endpoint, HttpError> {
        let bad = || HttpError::Address(text.to_string());
        let (scheme, rest) = if let Some(r) = text.strip_prefix("https://") {
            (Some(Scheme::Https), r)
        } else if let Some(r) = text.strip_prefix("http://") {
            (Some(Scheme::Http), r)
        } else {
            (None, text)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
        let host = match host.strip_prefix('[') {
            Some(h) => h.strip_suffix(']').ok_or_else(bad)?,
            None if host.contains(':') => return Err(bad()),
            None => host,
        };
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:_".contains(c));
        if !host_ok {
            return Err(bad());
        }
        Ok(Endpoint {
            scheme,
            host: host.to_string(),
            port,
        })
    }

    /// `host:port` as the `Host` header writes it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.scheme {
            Some(Scheme::Https) => write!(f, "https://{}", self.authority()),
            Some(Scheme::Http) => write!(f, "http://{}", self.authority()),
            None => f.write_str(&self.authority()),
        }
    }
}

/// An HTTP answer, whatever its status.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// How requests are sent: the token to present, the CAs to trust, and how long a whole
/// request (connect, TLS, answer) may take.
#[derive(Debug, Clone)]
pub struct Client {
    pub token: Option<Token>,
    pub tls: Option<ClientTls>,
    pub timeout: Duration,
}

impl Default for Client {
    fn default() -> Self {
        Client {
            token: None,
            tls: None,
            timeout: Duration::from_secs(60),
        }
    }
}

impl Client {
    /// Sends one request (a JSON body when given) on a new connection. Any HTTP answer
    /// is `Ok`, whatever its status; `Err` means no answer came.
    pub async fn send(
        &self,
        to: &Endpoint,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
    ) -> Result<Answer, HttpError> {
        let err = |message: String| HttpError::Request {
            endpoint: to.to_string(),
            message,
        };
        let failed = |f: Failure| {
            if f.identity_refused {
                HttpError::IdentityRefused {
                    endpoint: to.to_string(),
                    message: f.message,
                }
            } else {
                err(f.message)
            }
        };
        let tls = match (to.scheme, &self.tls) {
            (Some(Scheme::Http), _) | (None, None) => None,
            (Some(Scheme::Https) | None, Some(t)) => Some(t),
            (Some(Scheme::Https), None) => {
                return Err(err(
                    "https needs the CA certificate that signed the server's certificate".into(),
                ))
            }
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, to.authority());
        if json.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, t.header_value());
        }
        let req = req
            .body(Full::new(Bytes::from(json.unwrap_or_default())))
            .map_err(|e| err(format!("cannot build the request: {e}")))?;
        let exchange = async {
            let tcp = TcpStream::connect((to.host.as_str(), to.port))
                .await
                .map_err(|e| err(format!("cannot connect: {e}")))?;
            let _ = tcp.set_nodelay(true);
            match tls {
                None => exchange(tcp, req).await.map_err(failed),
                Some(t) => {
                    let name = ServerName::try_from(to.host.clone())
                        .map_err(|e| err(format!("not a TLS server name: {e}")))?;
                    let stream = t
                        .connector
                        .connect(name, tcp)
                        .await
                        .map_err(|e| failed(Failure::of("TLS handshake failed", &e)))?;
                    exchange(stream, req).await.map_err(failed)
                }
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| err(format!("no answer within {} s", self.timeout.as_secs())))?
    }
}

/// Why an exchange got no answer: the error with what caused it (hyper's own says
/// only "connection error"; the TLS alert that ended the connection is in its
/// sources), and whether that was the server refusing this client's certificate.
struct Failure {
    message: String,
    identity_refused: bool,
}

impl Failure {
    fn of(what: &str, e: &(dyn std::error::Error + 'static)) -> Failure {
        let mut message = format!("{what}: {e}");
        let mut identity_refused = false;
        let mut next = Some(e);
        while let Some(cause) = next {
            identity_refused |= refuses_identity(cause);
            let more = cause.to_string();
            if !message.ends_with(&more) {
                message.push_str(": ");
                message.push_str(&more);
            }
            next = cause.source();
        }
        Failure {
            message,
            identity_refused,
        }
    }
}

/// A TLS alert a server sends when it wants a client certificate or refuses the one
/// given (one whose signature does not verify under its CA is a `DecryptError`).
/// rustls's error travels inside an `io::Error`, whose `source` skips it.
fn refuses_identity(e: &(dyn std::error::Error + 'static)) -> bool {
    use rustls::AlertDescription as A;
    let inner = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|i| i.downcast_ref::<rustls::Error>());
    matches!(
        inner,
        Some(rustls::Error::AlertReceived(
            A::CertificateRequired
                | A::UnknownCA
                | A::BadCertificate
                | A::CertificateUnknown
                | A::DecryptError
        ))
    )
}

async fn exchange<S>(stream: S, req: Request<Full<Bytes>>) -> Result<Answer, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Failure::of("HTTP handshake failed", &e))?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let result = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Failure::of("cannot reach it", &e))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| Failure::of("cannot read the answer", &*e))?
            .to_bytes();
        Ok(Answer { status, body })
    }
    .await;
    conn.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_and_without_a_scheme() {
        let e = Endpoint::parse("127.0.0.1:7420").unwrap();
        assert_eq!(
            (e.scheme, e.host.as_str(), e.port),
            (None, "127.0.0.1", 7420)
        );
        let e = Endpoint::parse("https://agent.example:443/").unwrap();
        assert_eq!(e.scheme, Some(Scheme::Https));
        assert_eq!(e.to_string(), "https://agent.example:443");
        let e = Endpoint::parse("http://[::1]:80").unwrap();
        assert_eq!(
            (e.host.as_str(), e.to_string().as_str()),
            ("::1", "http://[::1]:80")
        );
        for bad in [
            "",
            "host",
            "host:0",
            "host:99999",
            ":80",
            "::1:80",
            "ftp://h:1",
            "https://h:1/path",
            "h h:1",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?}");
        }
    }
}
