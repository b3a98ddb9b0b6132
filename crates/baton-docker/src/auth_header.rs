//! The engine connection for requests that carry registry credentials (pull, push,
//! build): the same engine, with the credential headers in the encoding dockerd reads.
//!
//! bollard 0.19 encodes `X-Registry-Auth` and `X-Registry-Config` in standard base64;
//! dockerd decodes them as URL-safe base64 and silently drops what it cannot decode, so
//! a password with `?`, `>` or `~` in an unlucky place turned a pull anonymous. This
//! transport rewrites the two headers (the alphabets differ in `+` and `/` only) and
//! sends the request itself, over the Unix socket or TCP.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bollard::{BollardRequest, ClientVersion};
use bytes::Bytes;
use futures_util::Stream;
use http_body_util::{Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderMap, HeaderValue};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// bollard's request body type, spelled out (bollard keeps its alias private).
type Body = http_body_util::Either<
    Full<Bytes>,
    StreamBody<Pin<Box<dyn Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send>>>,
>;

const AUTH_HEADERS: [&str; 2] = ["x-registry-auth", "x-registry-config"];

/// Rewrites the credential headers from standard to URL-safe base64.
pub(crate) fn fix_auth_headers(headers: &mut HeaderMap) {
    for name in AUTH_HEADERS {
        let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let fixed = value.replace('+', "-").replace('/', "_");
        if let Ok(v) = HeaderValue::from_str(&fixed) {
            headers.insert(name, v);
        }
    }
}

/// A bollard client for `host` (`unix:///path`, `/path`, `tcp://h:p`, `http://h:p`)
/// whose requests go through `fix_auth_headers`.
pub(crate) fn connect(
    host: &str,
    timeout_secs: u64,
    version: &ClientVersion,
) -> Result<bollard::Docker, bollard::errors::Error> {
    let socket = host
        .strip_prefix("unix://")
        .or_else(|| host.starts_with('/').then_some(host));
    if let Some(socket) = socket {
        let socket = PathBuf::from(socket);
        let client: Arc<Client<hyperlocal::UnixConnector, Body>> =
            Arc::new(Client::builder(TokioExecutor::new()).build(hyperlocal::UnixConnector));
        return bollard::Docker::connect_with_custom_transport(
            move |req: BollardRequest| {
                let client = Arc::clone(&client);
                let socket = socket.clone();
                async move {
                    let (mut parts, body) = req.into_parts();
                    fix_auth_headers(&mut parts.headers);
                    let path = parts
                        .uri
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_string();
                    parts.uri = hyperlocal::Uri::new(&socket, &path).into();
                    client
                        .request(hyper::Request::from_parts(parts, body))
                        .await
                        .map_err(bollard::errors::Error::from)
                }
            },
            Some("http://docker"),
            timeout_secs,
            version,
        );
    }
    let address = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
        .unwrap_or(host)
        .to_string();
    let client: Arc<Client<HttpConnector, Body>> =
        Arc::new(Client::builder(TokioExecutor::new()).build(HttpConnector::new()));
    bollard::Docker::connect_with_custom_transport(
        move |req: BollardRequest| {
            let client = Arc::clone(&client);
            async move {
                let (mut parts, body) = req.into_parts();
                fix_auth_headers(&mut parts.headers);
                client
                    .request(hyper::Request::from_parts(parts, body))
                    .await
                    .map_err(bollard::errors::Error::from)
            }
        },
        Some(format!("http://{address}")),
        timeout_secs,
        version,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_headers_become_url_safe() {
        let mut h = HeaderMap::new();
        h.insert("x-registry-auth", HeaderValue::from_static("ab+c/d=="));
        h.insert("X-Registry-Config", HeaderValue::from_static("+/+/"));
        h.insert("content-type", HeaderValue::from_static("a/b+c"));
        fix_auth_headers(&mut h);
        assert_eq!(h["x-registry-auth"], "ab-c_d==");
        assert_eq!(h["x-registry-config"], "-_-_");
        assert_eq!(h["content-type"], "a/b+c", "other headers untouched");
    }
}
