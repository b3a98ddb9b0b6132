//! The edge's routing table: a request's host (exact, then a `*.` wildcard) and path
//! (the longest matching prefix) to whatever the caller routes there. Pure data and lookups.
//!
//! Hosts are compared without case, port or trailing dot. A wildcard `*.example.com`
//! stands for one label, as in a TLS certificate: `a.example.com`, not `example.com` nor
//! `a.b.example.com`. A prefix matches whole path segments: `/api` matches `/api` and
//! `/api/orders`, not `/apix`; `/` matches every path. An exact host's routes are tried
//! before the wildcard's, so a wildcard catches only the paths the exact host leaves.

use std::collections::HashMap;

/// A table of routes to values of type `T`; built once, then only read.
#[derive(Debug)]
pub struct RouteTable<T> {
    exact: HashMap<String, Vec<Entry<T>>>,
    /// Keyed by what follows `*.`.
    wildcard: HashMap<String, Vec<Entry<T>>>,
}

#[derive(Debug)]
struct Entry<T> {
    path: String,
    value: T,
}

/// Why a set of routes makes no table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// A host that is no DNS name (or a wildcard anywhere but the first label).
    #[error("route host {host:?}: {why}")]
    Host { host: String, why: &'static str },
    /// A path prefix that does not start with `/`.
    #[error("route path {path:?}: a path prefix starts with /")]
    Path { path: String },
    /// Two routes for the same host and path.
    #[error("{host}{path} is routed twice")]
    Duplicate { host: String, path: String },
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }
}

impl<T> RouteTable<T> {
    /// A table of `(host, path prefix, value)` routes. Hosts are normalised (lower case,
    /// no trailing dot).
    pub fn new(routes: impl IntoIterator<Item = (String, String, T)>) -> Result<Self, RouteError> {
        let mut table = RouteTable::default();
        for (host, path, value) in routes {
            let normal = normalize_host(&host);
            check_host(&normal).map_err(|why| RouteError::Host {
                host: host.clone(),
                why,
            })?;
            if !path.starts_with('/') {
                return Err(RouteError::Path { path });
            }
            let (map, key) = match normal.strip_prefix("*.") {
                Some(rest) => (&mut table.wildcard, rest.to_string()),
                None => (&mut table.exact, normal.clone()),
            };
            let entries = map.entry(key).or_default();
            if entries.iter().any(|e| e.path == path) {
                return Err(RouteError::Duplicate { host: normal, path });
            }
            entries.push(Entry { path, value });
        }
        for entries in table.exact.values_mut().chain(table.wildcard.values_mut()) {
            // Longest prefix first: the first match is the longest.
            entries.sort_by_key(|e| std::cmp::Reverse(e.path.len()));
        }
        Ok(table)
    }

    /// The value routed for a request to `host` (as in a `Host` header: a port and a
    /// trailing dot are ignored, case too) and `path`.
    pub fn lookup(&self, host: &str, path: &str) -> Option<&T> {
        let host = strip_port(host);
        let host = host.strip_suffix('.').unwrap_or(host);
        // Most Host headers are lower case already: no allocation then.
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        if let Some(v) = self.exact.get(host).and_then(|e| longest(e, path)) {
            return Some(v);
        }
        let (_, parent) = host.split_once('.')?;
        self.wildcard.get(parent).and_then(|e| longest(e, path))
    }

    /// How many routes the table holds.
    pub fn len(&self) -> usize {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .map(Vec::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn longest<'a, T>(entries: &'a [Entry<T>], path: &str) -> Option<&'a T> {
    entries
        .iter()
        .find(|e| prefix_matches(&e.path, path))
        .map(|e| &e.value)
}

/// Whether `prefix` matches `path` on segment boundaries.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
    }
}

/// A host name as routes and certificates are keyed: lower case, no trailing dot.
pub fn normalize_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// `host` without its `:port` (and an IPv6 literal without its brackets' port).
pub(crate) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Whether a normalised host is a DNS name, optionally with a leading `*.` label.
pub fn check_host(host: &str) -> Result<(), &'static str> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.is_empty() {
        return Err("empty host name");
    }
    if name.len() > 253 {
        return Err("longer than 253 characters");
    }
    if name.contains('*') {
        return Err("a wildcard is only allowed as the whole first label (*.example.com)");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each dot-separated label needs 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err("a host name has letters, digits and inner hyphens only");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[(&str, &str, &str)]) -> RouteTable<String> {
        RouteTable::new(
            routes
                .iter()
                .map(|(h, p, v)| (h.to_string(), p.to_string(), v.to_string())),
        )
        .unwrap()
    }

    /// Each request and the value it is routed to (`-` for none).
    fn check(t: &RouteTable<String>, cases: &[(&str, &str, &str)]) {
        for (host, path, want) in cases {
            let got = t.lookup(host, path).map_or("-", String::as_str);
            assert_eq!(got, *want, "{host}{path}");
        }
    }

    #[test]
    fn exact_hosts_longest_prefix_and_segment_boundaries() {
        let t = table(&[
            ("shop.test", "/", "web"),
            ("shop.test", "/api", "api"),
            ("shop.test", "/api/v2/", "api2"),
            ("blog.test", "/blog", "blog"),
        ]);
        check(
            &t,
            &[
                ("shop.test", "/", "web"),
                ("shop.test", "/index.html", "web"),
                ("shop.test", "/api", "api"),
                ("shop.test", "/api/orders", "api"),
                ("shop.test", "/apix", "web"),
                ("shop.test", "/api/v2/x", "api2"),
                ("shop.test", "/api/v2", "api"),
                ("SHOP.Test:8443", "/api", "api"),
                ("shop.test.", "/", "web"),
                ("blog.test", "/blog/post", "blog"),
                ("blog.test", "/", "-"),
                ("other.test", "/", "-"),
                ("", "/", "-"),
            ],
        );
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn a_wildcard_is_one_label_and_yields_to_the_exact_host() {
        let t = table(&[
            ("*.shop.test", "/", "tenant"),
            ("admin.shop.test", "/admin", "admin"),
        ]);
        check(
            &t,
            &[
                ("a.shop.test", "/", "tenant"),
                ("A.Shop.Test", "/x", "tenant"),
                ("admin.shop.test", "/admin/users", "admin"),
                // The exact host has no route for /: the wildcard's applies.
                ("admin.shop.test", "/", "tenant"),
                ("shop.test", "/", "-"),
                ("a.b.shop.test", "/", "-"),
            ],
        );
    }

    #[test]
    fn ports_and_ipv6_literals_in_the_host_header() {
        assert_eq!(strip_port("shop.test:443"), "shop.test");
        assert_eq!(strip_port("shop.test"), "shop.test");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }

    #[test]
    fn bad_routes_make_no_table() {
        let new =
            |h: &str, p: &str| RouteTable::new([(h.to_string(), p.to_string(), ())]).map(|_| ());
        assert!(new("shop.test", "/").is_ok());
        assert!(new("*.shop.test", "/").is_ok());
        assert!(matches!(new("", "/"), Err(RouteError::Host { .. })));
        assert!(matches!(new("a.*.test", "/"), Err(RouteError::Host { .. })));
        assert!(matches!(new("*", "/"), Err(RouteError::Host { .. })));
        assert!(matches!(
            new("shop test", "/"),
            Err(RouteError::Host { .. })
        ));
        assert!(matches!(new("a..test", "/"), Err(RouteError::Host { .. })));
        assert!(matches!(new("-a.test", "/"), Err(RouteError::Host { .. })));
        assert!(matches!(
            new("shop.test", "api"),
            Err(RouteError::Path { .. })
        ));
        let twice = RouteTable::new([
            ("Shop.test".to_string(), "/".to_string(), 1),
            ("shop.test.".to_string(), "/".to_string(), 2),
        ]);
        assert_eq!(twice.unwrap_err().to_string(), "shop.test/ is routed twice");
    }
}
