//! What a request brings, read strictly: JSON bodies (the type refuses unknown fields;
//! malformed JSON is 400, a wrong shape 422, another media type 415), flags in query
//! strings, names in paths, and pages of long lists.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::ApiError;

/// A JSON body; an empty one is `T::default()` (so `curl -X POST` works for actions
/// without parameters).
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let media = v.split(';').next().unwrap_or("").trim();
                media.eq_ignore_ascii_case("application/json")
            });
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            // The body cap and deadline of baton-http answer 413/408 themselves; what
            // reaches here is a body that broke off.
            ApiError::new(e.status(), format!("cannot read the request body: {e}"))
        })?;
        parse(&bytes, json)
    }
}

/// Reads a body: empty is the default; otherwise it must be declared JSON and parse.
pub fn parse<T: DeserializeOwned + Default>(
    bytes: &[u8],
    json: Option<bool>,
) -> Result<Body<T>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Body(T::default()));
    }
    if json != Some(true) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as JSON with Content-Type: application/json",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(Body(v)),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let at = if path == "." {
                String::new()
            } else {
                format!(" at {path}")
            };
            if inner.is_syntax() || inner.is_eof() {
                Err(ApiError::bad_request(format!("malformed JSON: {inner}")))
            } else {
                Err(ApiError::unprocessable(format!(
                    "request body{at}: {inner}"
                )))
            }
        }
    }
}

/// A flag in a query string: `1`, `true`, `yes` or `0`, `false`, `no` (and empty:
/// present means on).
pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let s = String::deserialize(d)?;
    match s.to_ascii_lowercase().as_str() {
        "" | "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(serde::de::Error::custom(format!(
            "expected 1 or 0 (true or false), got {other:?}"
        ))),
    }
}

/// A project, service or token name from a path: one component, no traversal, bounded.
/// A silence's `duration` (`2h`, `30m`, `1d`) in whole seconds, at least one; the
/// control plane bounds it from above.
pub fn silence_secs(text: &str) -> Result<u64, ApiError> {
    baton_metrics::query::parse_duration(text.trim())
        .filter(|ms| *ms >= 1000)
        .map(|ms| (ms / 1000) as u64)
        .ok_or_else(|| {
            ApiError::unprocessable(format!(
                "duration: a duration such as 2h, 30m or 1d, not {text:?}"
            ))
        })
}

pub fn name(what: &str, s: &str) -> Result<String, ApiError> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && s != "."
        && s != ".."
        && !s.contains(['/', '\\', '\0'])
        && !s.chars().any(char::is_control);
    if ok {
        Ok(s.to_string())
    } else {
        Err(ApiError::bad_request(format!("{what} {s:?} is not a name")))
    }
}

/// The longest page asked for.
pub const MAX_LIMIT: i64 = 1000;
/// A page's length when none is asked for.
pub const DEFAULT_LIMIT: i64 = 100;

/// `?before=ID&limit=N`: newest first, `before` the `next` of the page before.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Only entries older than this id (the previous page's `next`).
    pub before: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<i64>,
    /// Only this project's entries.
    pub project: Option<String>,
}

impl PageQuery {
    /// The limit to use: asked for, within 1..=MAX_LIMIT.
    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
    }
}

/// One page of a list, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next: Option<i64>,
}

impl<T> Page<T> {
    /// A page from up to `limit + 1` entries read newest first: the extra one only
    /// says that there is more.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, id: impl Fn(&T) -> i64) -> Page<T> {
        let limit = usize::try_from(limit).unwrap_or(0);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = if more { rows.last().map(id) } else { None };
        Page { items: rows, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Stop {
        services: Vec<String>,
        timeout_secs: Option<u64>,
    }

    #[test]
    fn bodies_are_read_strictly() {
        let ok = parse::<Stop>(br#"{"services": ["web"]}"#, Some(true)).unwrap();
        assert_eq!(ok.0.services, ["web"]);
        assert_eq!(parse::<Stop>(b"", None).unwrap().0, Stop::default());
        assert_eq!(
            parse::<Stop>(b" \n", Some(true)).unwrap().0,
            Stop::default()
        );
        let e = parse::<Stop>(br#"{"services": ["web"]"#, Some(true))
            .err()
            .unwrap();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.starts_with("malformed JSON"), "{}", e.message);
        let e = parse::<Stop>(br#"{"services": [], "force": true}"#, Some(true))
            .err()
            .unwrap();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.message.contains("unknown field `force`"), "{}", e.message);
        let e = parse::<Stop>(br#"{"timeout_secs": "soon"}"#, Some(true))
            .err()
            .unwrap();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.message.contains("at timeout_secs"), "{}", e.message);
        let e = parse::<Stop>(br#"{}"#, Some(false)).err().unwrap();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let e = parse::<Stop>(br#"{}"#, None).err().unwrap();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn names_in_paths_are_single_components() {
        assert_eq!(name("service", "web-1").unwrap(), "web-1");
        for bad in ["", ".", "..", "a/b", "..\\x", "a\0b", "a\nb"] {
            assert!(name("service", bad).is_err(), "{bad:?}");
        }
        assert!(name("service", &"x".repeat(256)).is_err());
    }

    #[test]
    fn pages_say_where_the_next_one_starts() {
        let p = Page::from_rows(vec![9, 8, 7], 2, |i| *i);
        assert_eq!((p.items, p.next), (vec![9, 8], Some(8)));
        let last = Page::from_rows(vec![7, 6], 2, |i| *i);
        assert_eq!((last.items, last.next), (vec![7, 6], None));
        let q = PageQuery {
            limit: Some(100_000),
            ..Default::default()
        };
        assert_eq!(q.limit(), MAX_LIMIT);
        assert_eq!(
            PageQuery {
                limit: Some(0),
                ..Default::default()
            }
            .limit(),
            1
        );
        assert_eq!(PageQuery::default().limit(), DEFAULT_LIMIT);
    }

    #[test]
    fn flags_read_as_people_write_them() {
        #[derive(Deserialize)]
        struct Q {
            #[serde(deserialize_with = "flag")]
            follow: bool,
        }
        let read = |s: &str| serde_json::from_value::<Q>(serde_json::json!({ "follow": s }));
        assert!(read("1").unwrap().follow);
        assert!(read("true").unwrap().follow);
        assert!(!read("0").unwrap().follow);
        assert!(read("maybe").is_err());
    }
}
