//! The few Engine API calls bollard 0.19 does not have — swarm configs (`/configs`)
//! and a service's merged logs (`/services/{id}/logs`) — sent as plain HTTP requests to
//! the same engine, in the negotiated API version.

use std::pin::Pin;

use baton_engine::runtime::{LogLine, OutputStream, RuntimeError};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyStream, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Largest reply read whole (a list of configs).
const MAX_REPLY: usize = 16 * 1024 * 1024;

/// A plain HTTP client for one engine.
#[derive(Debug, Clone)]
pub struct Raw {
    host: String,
    version: String,
}

type Body = Pin<Box<dyn Stream<Item = Result<Bytes, RuntimeError>> + Send>>;

impl Raw {
    pub fn new(host: &str, version: &str) -> Raw {
        Raw {
            host: host.to_string(),
            version: version.to_string(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Body), RuntimeError> {
        let path = format!("/v{}{path}", self.version);
        let unavailable =
            |e: String| RuntimeError::Unavailable(format!("engine at {}: {e}", self.host));
        let req = |uri: hyper::Uri| {
            Request::builder()
                .method(method.clone())
                .uri(uri)
                .header("content-type", "application/json")
                .header("host", "docker")
                .body(Full::new(Bytes::from(body.clone().unwrap_or_default())))
                .map_err(|e| unavailable(e.to_string()))
        };
        let socket = self
            .host
            .strip_prefix("unix://")
            .or_else(|| self.host.starts_with('/').then_some(self.host.as_str()));
        let reply = if let Some(socket) = socket {
            let client: Client<hyperlocal::UnixConnector, Full<Bytes>> =
                Client::builder(TokioExecutor::new()).build(hyperlocal::UnixConnector);
            client
                .request(req(hyperlocal::Uri::new(socket, &path).into())?)
                .await
        } else {
            let address = self
                .host
                .strip_prefix("tcp://")
                .or_else(|| self.host.strip_prefix("http://"))
                .unwrap_or(&self.host);
            let uri: hyper::Uri = format!("http://{address}{path}")
                .parse()
                .map_err(|e: hyper::http::uri::InvalidUri| unavailable(e.to_string()))?;
            let client: Client<HttpConnector, Full<Bytes>> =
                Client::builder(TokioExecutor::new()).build(HttpConnector::new());
            client.request(req(uri)?).await
        }
        .map_err(|e| unavailable(e.to_string()))?;
        let status = reply.status().as_u16();
        let stream = BodyStream::new(reply.into_body()).filter_map(|f| async move {
            match f {
                Ok(frame) => frame.into_data().ok().map(Ok),
                Err(e) => Some(Err(RuntimeError::Unavailable(e.to_string()))),
            }
        });
        Ok((status, Box::pin(stream)))
    }

    /// One request whose reply is read whole (at most 16 MiB); a status of 400 or more
    /// is an error with the engine's message.
    pub async fn call(
        &self,
        op: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, RuntimeError> {
        let body = body.map(|b| b.to_string().into_bytes());
        let (status, mut stream) = self.send(method, path, body).await?;
        let mut buf = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if buf.len() + chunk.len() > MAX_REPLY {
                return Err(RuntimeError::Failed {
                    op: op.into(),
                    detail: "the engine's reply is larger than 16 MiB".into(),
                });
            }
            buf.extend_from_slice(&chunk);
        }
        let value: Value = if buf.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&buf).unwrap_or(Value::Null)
        };
        if status >= 400 {
            let message = value["message"].as_str().unwrap_or("").to_string();
            return Err(match status {
                404 => RuntimeError::NotFound { what: op.into() },
                409 => RuntimeError::Conflict { what: op.into() },
                _ => RuntimeError::Failed {
                    op: op.into(),
                    detail: message,
                },
            });
        }
        Ok(value)
    }

    /// A service's output, every task merged, as the engine multiplexes it.
    pub async fn service_logs(
        &self,
        service: &str,
        follow: bool,
        tail: Option<usize>,
        timestamps: bool,
    ) -> Result<impl Stream<Item = Result<LogLine, RuntimeError>> + Send + 'static, RuntimeError>
    {
        let tail = tail.map_or("all".to_string(), |t| t.to_string());
        let path = format!(
            "/services/{service}/logs?stdout=1&stderr=1&follow={}&timestamps={}&tail={tail}",
            u8::from(follow),
            u8::from(timestamps)
        );
        let (status, stream) = self.send(Method::GET, &path, None).await?;
        if status >= 400 {
            return Err(RuntimeError::Failed {
                op: format!("logs of service {service}"),
                detail: format!("the engine answered {status}"),
            });
        }
        Ok(demux(stream))
    }
}

/// The engine's multiplexed stream (8-byte headers: stream, 0, 0, 0, length) as lines.
fn demux(stream: Body) -> impl Stream<Item = Result<LogLine, RuntimeError>> + Send + 'static {
    futures_util::stream::unfold(
        (stream, BytesMut::new(), Vec::<LogLine>::new(), false),
        |(mut stream, mut buf, mut ready, mut done)| async move {
            loop {
                if let Some(line) = ready.pop() {
                    return Some((Ok(line), (stream, buf, ready, done)));
                }
                if done {
                    return None;
                }
                while buf.len() >= 8 {
                    let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
                    if buf.len() < 8 + len {
                        break;
                    }
                    let kind = if buf[0] == 2 {
                        OutputStream::Stderr
                    } else {
                        OutputStream::Stdout
                    };
                    buf.advance(8);
                    let frame = buf.split_to(len);
                    let text = String::from_utf8_lossy(&frame);
                    for l in text.lines() {
                        ready.push(LogLine {
                            stream: kind,
                            text: l.to_string(),
                        });
                    }
                }
                if !ready.is_empty() {
                    ready.reverse();
                    continue;
                }
                match stream.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => return Some((Err(e), (stream, buf, ready, true))),
                    None => done = true,
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn multiplexed_frames_become_lines_in_order() {
        let mut bytes = Vec::new();
        for (kind, text) in [(1u8, "a\nb\n"), (2, "err\n"), (1, "c\n")] {
            bytes.extend_from_slice(&[kind, 0, 0, 0]);
            bytes.extend_from_slice(&(text.len() as u32).to_be_bytes());
            bytes.extend_from_slice(text.as_bytes());
        }
        // Split mid-header to check that partial frames wait for the rest.
        let (a, b) = bytes.split_at(5);
        let chunks = vec![Ok(Bytes::from(a.to_vec())), Ok(Bytes::from(b.to_vec()))];
        let stream: Body = Box::pin(futures_util::stream::iter(chunks));
        let lines: Vec<LogLine> = demux(stream).map(|l| l.unwrap()).collect().await;
        let texts: Vec<(&str, OutputStream)> =
            lines.iter().map(|l| (l.text.as_str(), l.stream)).collect();
        assert_eq!(
            texts,
            vec![
                ("a", OutputStream::Stdout),
                ("b", OutputStream::Stdout),
                ("err", OutputStream::Stderr),
                ("c", OutputStream::Stdout),
            ]
        );
    }
}
