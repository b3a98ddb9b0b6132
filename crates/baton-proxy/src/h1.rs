//! The backend side's HTTP/1.1 wire format (RFC 9112) as pure functions over byte buffers:
//! request heads, response heads with their body framing, and chunked decoding. No I/O, so
//! every rule is tested here without a socket; `upstream` moves the bytes.

use std::io::Write as _;

use bytes::{Buf, Bytes, BytesMut};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};

/// A response head longer than this is refused (hyper's default buffer limit is ~400 KiB;
/// nginx's proxy_buffer_size is 4–8 KiB).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Header fields per response head, as hyper's default.
const MAX_HEADERS: usize = 100;
/// A chunk-size or trailer line longer than this is refused.
const MAX_LINE: usize = 4096;

/// A backend answer that does not follow HTTP/1.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError(pub &'static str);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid response from backend: {}", self.0)
    }
}

impl std::error::Error for WireError {}

/// How a request body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyLength {
    /// No body and no length header (GET and the like).
    None,
    Exact(u64),
    Chunked,
}

/// The length to send for a request whose body holds `exact` bytes (when known) or is
/// `empty`. An empty body keeps `content-length: 0` where a backend may require one.
pub(crate) fn request_length(
    method: &Method,
    had_length: bool,
    empty: bool,
    exact: Option<u64>,
) -> BodyLength {
    if empty {
        let wants_length =
            had_length || matches!(*method, Method::POST | Method::PUT | Method::PATCH);
        return if wants_length {
            BodyLength::Exact(0)
        } else {
            BodyLength::None
        };
    }
    match exact {
        Some(n) => BodyLength::Exact(n),
        None => BodyLength::Chunked,
    }
}

/// Writes a request head into `out` (cleared first). Framing headers come from `length`
/// only; the message's own `content-length` and `transfer-encoding` are not repeated.
pub(crate) fn encode_request(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    length: BodyLength,
) {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        // Names and values were validated by `http` (no CR, LF or NUL can appear).
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match length {
        BodyLength::None => {}
        BodyLength::Exact(n) => {
            // Writing to a Vec cannot fail.
            let _ = write!(out, "content-length: {n}\r\n");
        }
        BodyLength::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// The chunk-size line for `n` bytes of data.
pub(crate) fn chunk_size_line(n: usize, out: &mut Vec<u8>) {
    out.clear();
    let _ = write!(out, "{n:x}\r\n");
}

/// A parsed response head (informational 1xx answers already skipped).
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Framing,
    /// The connection can carry another request once the body has been read.
    pub keep_alive: bool,
}

/// Where a response body ends.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No (more) body.
    Empty,
    /// This many bytes still to come.
    Length(u64),
    Chunked(Chunked),
    /// Until the backend closes the connection.
    UntilClose,
}

/// Parses the response head at the start of `buf` and removes it. `Ok(None)`: more bytes
/// are needed. `method` is the request's (a HEAD answer has no body).
pub(crate) fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<ResponseHead>, WireError> {
    loop {
        let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut raw);
        let len = match response.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(WireError("response head too large"))
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(WireError("too many header fields"))
            }
            Err(_) => return Err(WireError("malformed response head")),
        };
        let code = response.code.unwrap_or(0);
        let http11 = response.version == Some(1);
        if (100..200).contains(&code) && code != 101 {
            // Interim answer (100 Continue, 103 Early Hints): the final one follows.
            buf.advance(len);
            continue;
        }
        let status = StatusCode::from_u16(code).map_err(|_| WireError("invalid status code"))?;
        // Where each field sits in `buf`, so the head can be frozen and shared, not copied.
        let base = buf.as_ptr() as usize;
        let mut spans = [(0usize, 0usize, 0usize, 0usize); MAX_HEADERS];
        let count = response.headers.len();
        for (span, h) in spans.iter_mut().zip(response.headers.iter()) {
            *span = (
                h.name.as_ptr() as usize - base,
                h.name.len(),
                h.value.as_ptr() as usize - base,
                h.value.len(),
            );
        }
        let head: Bytes = buf.split_to(len).freeze();
        return build(head, &spans[..count], status, http11, method).map(Some);
    }
}

fn build(
    head: Bytes,
    spans: &[(usize, usize, usize, usize)],
    status: StatusCode,
    http11: bool,
    method: &Method,
) -> Result<ResponseHead, WireError> {
    let mut headers = HeaderMap::with_capacity(spans.len());
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut encoded = false;
    let mut close = false;
    let mut keep = false;
    for &(n, nl, v, vl) in spans {
        let name = HeaderName::from_bytes(&head[n..n + nl])
            .map_err(|_| WireError("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(v..v + vl))
            .map_err(|_| WireError("invalid header value"))?;
        if name == header::CONTENT_LENGTH {
            let n = parse_length(value.as_bytes())?;
            if length.is_some_and(|l| l != n) {
                return Err(WireError("conflicting content-length"));
            }
            length = Some(n);
        } else if name == header::TRANSFER_ENCODING {
            encoded = true;
            // Only the last coding decides: chunked must be last to delimit the body.
            chunked = value
                .as_bytes()
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name == header::CONNECTION {
            for token in value.as_bytes().split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        headers.append(name, value);
    }
    let mut keep_alive = !close && (http11 || keep);
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // What follows is the new protocol's, not a body; the connection is never reused.
        return Ok(ResponseHead {
            status,
            headers,
            body: Framing::Empty,
            keep_alive: false,
        });
    }
    let no_body = *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let body = if no_body {
        Framing::Empty
    } else if encoded {
        // A length beside a transfer coding is ignored and must not be forwarded.
        headers.remove(header::CONTENT_LENGTH);
        if chunked {
            Framing::Chunked(Chunked::default())
        } else {
            keep_alive = false;
            Framing::UntilClose
        }
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => {
                keep_alive = false;
                Framing::UntilClose
            }
        }
    };
    Ok(ResponseHead {
        status,
        headers,
        body,
        keep_alive,
    })
}

fn parse_length(v: &[u8]) -> Result<u64, WireError> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(WireError("invalid content-length"));
    }
    Ok(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Decoding state of a chunked body.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Chunked {
    state: ChunkState,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// Data bytes left in the current chunk.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one (trailers are dropped).
    Trailers,
    Done,
}

/// What one decoding step produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    Data(Bytes),
    /// `buf` holds no complete next piece: read more.
    NeedMore,
    Done,
}

impl Chunked {
    /// Decodes the next piece from the front of `buf`, consuming what it used.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        loop {
            match self.state {
                ChunkState::Done => return Ok(Decoded::Done),
                ChunkState::Size => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = parse_chunk_size(&line)?;
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                    return Ok(Decoded::Data(data));
                }
                ChunkState::DataEnd => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    if !line.is_empty() {
                        return Err(WireError("chunk data longer than its size"));
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    if line.is_empty() {
                        self.state = ChunkState::Done;
                    }
                }
            }
        }
    }
}

/// Removes one line (without its CRLF or LF) from the front of `buf`.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, WireError> {
    match buf.iter().take(MAX_LINE).position(|&b| b == b'\n') {
        Some(end) => {
            let mut line = buf.split_to(end + 1);
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.truncate(end - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() >= MAX_LINE => Err(WireError("chunk line too long")),
        None => Ok(None),
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, WireError> {
    // chunk-size [ chunk-ext ]: extensions after ';' are ignored.
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(WireError("invalid chunk size"));
    }
    digits.iter().try_fold(0u64, |n, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err(WireError("invalid chunk size")),
        };
        Ok(n * 16 + u64::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, method: &Method) -> (Result<Option<ResponseHead>, WireError>, BytesMut) {
        let mut buf = BytesMut::from(text.as_bytes());
        let head = parse_response(&mut buf, method);
        (head, buf)
    }

    fn head(text: &str) -> (ResponseHead, BytesMut) {
        let (head, rest) = parse(text, &Method::GET);
        (head.expect("valid").expect("complete"), rest)
    }

    #[test]
    fn request_heads_carry_method_target_headers_and_one_framing() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("b:80"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        let mut out = Vec::new();
        encode_request(&mut out, &Method::POST, "/p?q=1", &h, BodyLength::Exact(5));
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "POST /p?q=1 HTTP/1.1\r\nhost: b:80\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 5\r\n\r\n"
        );
        encode_request(
            &mut out,
            &Method::GET,
            "/",
            &HeaderMap::new(),
            BodyLength::None,
        );
        assert_eq!(out, b"GET / HTTP/1.1\r\n\r\n");
        encode_request(
            &mut out,
            &Method::PUT,
            "/",
            &HeaderMap::new(),
            BodyLength::Chunked,
        );
        assert_eq!(out, b"PUT / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n");
        let mut line = Vec::new();
        chunk_size_line(0x1f40, &mut line);
        assert_eq!(line, b"1f40\r\n");
        chunk_size_line(1, &mut line);
        assert_eq!(line, b"1\r\n");
    }

    #[test]
    fn request_length_follows_the_body() {
        let m = Method::GET;
        assert_eq!(request_length(&m, false, true, Some(0)), BodyLength::None);
        assert_eq!(
            request_length(&m, true, true, Some(0)),
            BodyLength::Exact(0)
        );
        assert_eq!(
            request_length(&Method::POST, false, true, Some(0)),
            BodyLength::Exact(0)
        );
        assert_eq!(
            request_length(&Method::POST, true, false, Some(7)),
            BodyLength::Exact(7)
        );
        assert_eq!(
            request_length(&Method::POST, false, false, None),
            BodyLength::Chunked
        );
    }

    #[test]
    fn a_length_response_keeps_its_headers_and_leaves_the_body() {
        let (h, rest) = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Id: b1\r\nSet-Cookie: a\r\nSet-Cookie: b\r\n\r\nhello",
        );
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.body, Framing::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.headers["x-id"], "b1");
        assert_eq!(h.headers.get_all("set-cookie").iter().count(), 2);
        assert_eq!(&rest[..], b"hello");
    }

    #[test]
    fn partial_heads_wait_and_oversized_or_broken_ones_fail() {
        let (r, rest) = parse("HTTP/1.1 200 OK\r\nContent-Le", &Method::GET);
        assert!(matches!(r, Ok(None)));
        assert_eq!(rest.len(), 27, "nothing consumed while partial");
        let big = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD));
        assert!(parse(&big, &Method::GET).0.is_err());
        assert!(parse("HTTP/1.1 abc\r\n\r\n", &Method::GET).0.is_err());
        assert!(parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
            &Method::GET
        )
        .0
        .is_err());
        assert!(parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            &Method::GET
        )
        .0
        .is_err());
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("x{i}: v\r\n"))
            .collect();
        assert!(
            parse(&format!("HTTP/1.1 200 OK\r\n{many}\r\n"), &Method::GET)
                .0
                .is_err()
        );
    }

    #[test]
    fn a_protocol_switch_ends_the_http_part() {
        let (h, rest) = head("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x01\x02hi");
        assert_eq!(h.status, StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(h.body, Framing::Empty);
        assert!(!h.keep_alive);
        assert_eq!(h.headers[header::UPGRADE], "websocket");
        assert_eq!(
            &rest[..],
            b"\x01\x02hi",
            "the new protocol's first bytes stay"
        );
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let (h, _) = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 9\r\n\r\n",
        );
        assert_eq!(h.body, Framing::Chunked(Chunked::default()));
        assert!(
            h.headers.get(header::CONTENT_LENGTH).is_none(),
            "length beside a coding dropped"
        );
        assert!(h.keep_alive);
        let (h, _) = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert_eq!(h.body, Framing::UntilClose);
        assert!(!h.keep_alive);
        let (h, _) = head("HTTP/1.1 200 OK\r\n\r\nrest");
        assert_eq!(h.body, Framing::UntilClose);
        assert!(!h.keep_alive);
        let (h, _) = head("HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(h.body, Framing::Empty);
        let (h, _) = head("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n");
        assert_eq!(h.body, Framing::Empty);
        let (h, _) = head("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        assert_eq!(h.body, Framing::Empty);
        assert!(!h.keep_alive);
        let (h, _) = head("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx");
        assert!(!h.keep_alive, "HTTP/1.0 closes unless asked");
        let (h, _) =
            head("HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: Keep-Alive\r\n\r\nx");
        assert!(h.keep_alive);
        let (r, _) = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
            &Method::HEAD,
        );
        let h = r.unwrap().unwrap();
        assert_eq!(h.body, Framing::Empty, "HEAD answers have no body");
        assert_eq!(h.headers[header::CONTENT_LENGTH], "10");
    }

    #[test]
    fn interim_answers_are_skipped() {
        let (h, rest) = head("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: x\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(h.status, StatusCode::CREATED);
        assert!(h.headers.get("link").is_none());
        assert_eq!(&rest[..], b"ok");
        let (r, rest) = parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2", &Method::GET);
        assert!(matches!(r, Ok(None)));
        assert_eq!(&rest[..], b"HTTP/1.1 2");
    }

    fn decode_all(input: &[&[u8]]) -> Result<(Vec<u8>, bool, BytesMut), WireError> {
        let mut dec = Chunked::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut done = false;
        for piece in input {
            buf.extend_from_slice(piece);
            loop {
                match dec.decode(&mut buf)? {
                    Decoded::Data(d) => out.extend_from_slice(&d),
                    Decoded::NeedMore => break,
                    Decoded::Done => {
                        done = true;
                        break;
                    }
                }
            }
        }
        Ok((out, done, buf))
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let wire =
            b"5;ext=1\r\nhello\r\nB\r\n, chunked w\r\n3\r\norl\r\n1\nd\n0\r\nX-T: 1\r\n\r\nNEXT";
        for cut in 0..wire.len() {
            for cut2 in cut..wire.len() {
                let (out, done, rest) =
                    decode_all(&[&wire[..cut], &wire[cut..cut2], &wire[cut2..]]).unwrap();
                assert_eq!(out, b"hello, chunked world", "cuts {cut} {cut2}");
                assert!(done);
                assert_eq!(&rest[..], b"NEXT");
            }
        }
    }

    #[test]
    fn broken_chunked_bodies_fail() {
        assert!(decode_all(&[b"zz\r\n"]).is_err());
        assert!(decode_all(&[b"2\r\nabc\r\n"]).is_err());
        assert!(decode_all(&[b"ffffffffffffffff1\r\n"]).is_err());
        assert!(decode_all(&[&[b'1'; MAX_LINE + 1]]).is_err());
        let (out, done, _) = decode_all(&[b"3\r\nab"]).unwrap();
        assert_eq!(out, b"ab");
        assert!(!done, "an unfinished body is not done");
    }
}
