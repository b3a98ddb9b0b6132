//! Configuration hashes and field-level diffs: how the planner knows that a service's
//! effective configuration changed, and can say which fields did.

use baton_spec::Service;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The parts of a service that shape its containers, as JSON: the service without the
/// fields that never require a new container (replica count, dependencies, profiles,
/// build instructions, baton's own and `x-` settings).
pub fn effective_config(service: &Service) -> Value {
    let mut s = service.clone();
    if let Some(deploy) = s.deploy.as_mut() {
        deploy.replicas = None;
        deploy.update_config = None;
        deploy.rollback_config = None;
    }
    if s.deploy == Some(Default::default()) {
        s.deploy = None;
    }
    s.depends_on.clear();
    s.profiles.clear();
    s.build = None;
    s.pull_policy = None;
    s.baton = None;
    s.extensions.clear();
    serde_json::to_value(&s).unwrap_or(Value::Null)
}

/// A short, stable hash of any JSON value.
pub fn hash_value(v: &Value) -> String {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    hex::encode(&digest[..12])
}

/// The configuration hash written on a service's containers.
pub fn service_hash(service: &Service) -> String {
    hash_value(&effective_config(service))
}

/// Dotted paths of the fields that differ between two configurations, e.g.
/// `environment.FOO`, `ports[0]`, `command`.
pub fn changed_paths(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff(old, new, String::new(), &mut out);
    out
}

fn diff(old: &Value, new: &Value, path: String, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff(x, y, p, out),
                    _ => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() && !path.is_empty() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(x, y, format!("{path}[{i}]"), out);
            }
        }
        _ if old != new => out.push(if path.is_empty() {
            "(all)".into()
        } else {
            path
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_spec::Deploy;

    fn svc(env: &[(&str, &str)]) -> Service {
        Service {
            image: Some("busybox".into()),
            environment: env
                .iter()
                .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn replicas_and_dependencies_do_not_change_the_hash() {
        let a = svc(&[("A", "1")]);
        let mut b = a.clone();
        b.deploy = Some(Deploy {
            replicas: Some(5),
            ..Default::default()
        });
        b.profiles = vec!["x".into()];
        assert_eq!(service_hash(&a), service_hash(&b));
    }

    #[test]
    fn environment_changes_the_hash_and_is_named() {
        let a = svc(&[("A", "1"), ("B", "2")]);
        let b = svc(&[("A", "1"), ("B", "3"), ("C", "4")]);
        assert_ne!(service_hash(&a), service_hash(&b));
        assert_eq!(
            changed_paths(&effective_config(&a), &effective_config(&b)),
            vec!["environment.B", "environment.C"]
        );
    }

    #[test]
    fn list_changes_are_named_by_index_or_whole() {
        let old = serde_json::json!({"command": ["a", "b"], "ports": [1]});
        let new = serde_json::json!({"command": ["a", "c"], "ports": [1, 2]});
        assert_eq!(changed_paths(&old, &new), vec!["command[1]", "ports"]);
    }
}

/// A key for digests of secret content (the names of a swarm's secrets, a Kubernetes
/// Secret's values in a plan). A plain hash of a weak password can be reversed by
/// guessing; one keyed with 32 random bytes kept in the state directory (0600) cannot,
/// and stays the same from one run to the next. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct DigestKey([u8; 32]);

impl DigestKey {
    pub fn new(bytes: [u8; 32]) -> DigestKey {
        DigestKey(bytes)
    }

    /// HMAC-SHA256 of `data`, the first 12 bytes as hex.
    pub fn digest(&self, data: &[u8]) -> String {
        use hmac::{Hmac, Mac};
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return String::new();
        };
        mac.update(data);
        hex::encode(&mac.finalize().into_bytes()[..12])
    }
}

impl std::fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestKey(..)")
    }
}

#[cfg(test)]
mod digest_tests {
    use super::DigestKey;

    #[test]
    fn a_keyed_digest_depends_on_the_key_and_is_stable() {
        let a = DigestKey::new([1; 32]);
        let b = DigestKey::new([2; 32]);
        assert_eq!(a.digest(b"pw"), a.digest(b"pw"));
        assert_ne!(a.digest(b"pw"), b.digest(b"pw"));
        assert_ne!(a.digest(b"pw"), a.digest(b"pw2"));
        assert_eq!(a.digest(b"pw").len(), 24);
        assert_eq!(format!("{a:?}"), "DigestKey(..)");
    }
}
