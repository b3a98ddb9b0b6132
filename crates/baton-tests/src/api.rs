//! Helpers for the API tests: a raw HTTP/1.1 client (one request per connection, the
//! answer's status and JSON), an SSE reader on its own thread, and tokens made by the
//! real `baton token create`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Scratch;

/// `baton token create NAME --role ROLE` in the scratch state; the token it printed.
pub fn token(s: &Scratch, name: &str, role: &str) -> String {
    let out = s.ok(&["token", "create", name, "--role", role]);
    let t = out.trim().to_string();
    assert!(t.starts_with("baton_") && t.len() >= 40, "{t:?}");
    t
}

/// An answer: status (0 when none came) and body (JSON when it parses, else text).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn unchunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&raw[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        raw = &raw[end + 2..];
        if size == 0 || raw.len() < size {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[(size + 2).min(raw.len())..];
    }
}

/// One request to `127.0.0.1:port`; `token` as a bearer, `body` as JSON.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> Answer {
    request_with(port, method, path, token, body, &[])
}

/// [`request`] with extra headers.
pub fn request_with(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Answer {
    let none = Answer {
        status: 0,
        body: Value::Null,
    };
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return none;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    } else if method != "GET" {
        head.push_str("Content-Length: 0\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    if s.write_all(head.as_bytes()).is_err() {
        return none;
    }
    if let Some(b) = body {
        // A server may answer (413) and close before the whole body is sent.
        let _ = s.write_all(b);
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return none;
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut bytes = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bytes = unchunk(&bytes);
    }
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer { status, body }
}

/// A Server-Sent Events client on its own thread: each `data:` line's JSON, with the
/// time it arrived.
pub struct Sse {
    pub status: u16,
    pub events: mpsc::Receiver<(Instant, Value)>,
    stream: TcpStream,
}

impl Sse {
    /// Connects and waits for the answer's head (so the stream is live when it
    /// returns).
    pub fn open(port: u16, path: &str, token: &str, last_event_id: Option<i64>) -> Sse {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let mut head = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nAuthorization: Bearer {token}\r\n"
        );
        if let Some(id) = last_event_id {
            head.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).expect("send");
        let mut reader = BufReader::new(s.try_clone().expect("clone"));
        let mut status = 0;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if status == 0 {
                status = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
            }
            if line
                .to_ascii_lowercase()
                .starts_with("transfer-encoding: chunked")
            {
                chunked = true;
            }
            if line == "\r\n" {
                break;
            }
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut pending = String::new();
            let feed = |text: &str, pending: &mut String| -> bool {
                pending.push_str(text);
                while let Some(i) = pending.find('\n') {
                    let line: String = pending.drain(..=i).collect();
                    if let Some(data) = line.trim_end().strip_prefix("data:") {
                        let v = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                        if tx.send((Instant::now(), v)).is_err() {
                            return false;
                        }
                    }
                }
                true
            };
            loop {
                let text = if chunked {
                    let mut size = String::new();
                    if reader.read_line(&mut size).unwrap_or(0) == 0 {
                        return;
                    }
                    let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    let mut buf = vec![0; n + 2];
                    if reader.read_exact(&mut buf).is_err() {
                        return;
                    }
                    buf.truncate(n);
                    String::from_utf8_lossy(&buf).into_owned()
                } else {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    line
                };
                if !feed(&text, &mut pending) {
                    return;
                }
            }
        });
        Sse {
            status,
            events: rx,
            stream: s,
        }
    }

    /// The first event within `limit` for which `want` holds.
    pub fn wait(
        &self,
        limit: Duration,
        mut want: impl FnMut(&Value) -> bool,
    ) -> Option<(Instant, Value)> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.events.recv_timeout(left) {
                Ok((at, v)) if want(&v) => return Some((at, v)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for Sse {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// A dashboard session held by curl: logged in with a token (the cookie in a jar
/// beside the project), then pages fetched and forms posted with the page's CSRF token,
/// as a browser's htmx would.
pub struct Dashboard {
    jar: std::path::PathBuf,
    base: String,
}

impl Dashboard {
    /// Logs in as `token` on the dashboard at `127.0.0.1:port`.
    pub fn login(s: &Scratch, port: u16, token: &str) -> Dashboard {
        let jar = s
            .path()
            .join(format!("cookies-{}.txt", &token[token.len() - 8..]));
        let base = format!("http://127.0.0.1:{port}");
        let login = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-c"])
            .arg(&jar)
            .args([
                "--data-urlencode",
                &format!("token={token}"),
                "--data-urlencode",
                "next=/ui/",
            ])
            .arg(format!("{base}/ui/login"))
            .output()
            .expect("curl");
        assert_eq!(String::from_utf8_lossy(&login.stdout), "303", "login");
        Dashboard { jar, base }
    }

    /// A page's HTML.
    pub fn get(&self, path: &str) -> String {
        let page = std::process::Command::new("curl")
            .args(["-s", "-b"])
            .arg(&self.jar)
            .arg(format!("{}{path}", self.base))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&page.stdout).into_owned()
    }

    /// Posts `form` to `path` as a button of `page` would (its CSRF token, htmx's
    /// header); the status and the answer's text.
    pub fn post(&self, page: &str, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let html = self.get(page);
        let csrf = html
            .split("\"X-CSRF-Token\": \"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("a page carries its CSRF token")
            .to_string();
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-s", "-w", "\n%{http_code}", "-b"])
            .arg(&self.jar)
            .args(["-H", "HX-Request: true", "-H"])
            .arg(format!("X-CSRF-Token: {csrf}"))
            .args(["--data-urlencode", "_=1"]);
        for (k, v) in form {
            cmd.args(["--data-urlencode", &format!("{k}={v}")]);
        }
        let out = cmd
            .arg(format!("{}{path}", self.base))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}
