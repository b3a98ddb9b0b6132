//! Ports an orchestrator cannot publish itself: on a swarm whose routing mesh accepts
//! nothing (no IPVS in the kernel), each task of a replicated service publishes a port of
//! its own on its node, and `baton serve` for that target answers on the file's port with
//! a `baton_proxy::Proxy` whose backends are the running tasks (`Orchestrator::fronts`).
//! A task the swarm is stopping leaves the proxy at the next tick, before its grace period
//! ends; a connection refused is retried on another task by the proxy itself.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};

use baton_engine::orchestrate::Orchestrator;
use baton_proxy::{Backend, Protocol, Proxy, ProxyConfig};
use baton_state::Store;

/// (project, service, port).
type Key = (String, String, u16);

/// The proxies this daemon runs in front of an orchestrator's tasks.
#[derive(Default)]
pub struct Fronts {
    proxies: BTreeMap<Key, Proxy>,
    /// Ports that could not be bound, said once each.
    refused: BTreeSet<Key>,
}

impl Fronts {
    /// Brings the proxies in line with every project of the store: binds new ports,
    /// sets each one's backends to the tasks running now, and stops those whose service
    /// or port is gone. A project whose tasks cannot be read keeps its proxies as they
    /// are until the next tick.
    pub async fn tick(&mut self, o: &dyn Orchestrator, store: &Store) {
        let projects = match store.projects() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("cannot read the store: {e}");
                return;
            }
        };
        let mut keep: BTreeSet<Key> = BTreeSet::new();
        for p in projects {
            let fronts = match o.fronts(&p.name).await {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(project = %p.name, "cannot read the tasks to front: {e}");
                    keep.extend(self.proxies.keys().filter(|k| k.0 == p.name).cloned());
                    continue;
                }
            };
            for f in fronts {
                let key = (p.name.clone(), f.service.clone(), f.port);
                keep.insert(key.clone());
                if !self.proxies.contains_key(&key) {
                    let listen = SocketAddr::from((Ipv4Addr::UNSPECIFIED, f.port));
                    let mut config = ProxyConfig::http(listen);
                    if f.protocol != "http" {
                        config.protocol = Protocol::Tcp;
                    }
                    match Proxy::bind(config).await {
                        Ok(proxy) => {
                            tracing::info!(
                                "{}/{}: answering on {listen} in front of its tasks",
                                p.name,
                                f.service
                            );
                            self.refused.remove(&key);
                            self.proxies.insert(key.clone(), proxy);
                        }
                        Err(e) => {
                            if self.refused.insert(key.clone()) {
                                tracing::warn!("{}/{}: {e}", p.name, f.service);
                            }
                            continue;
                        }
                    }
                }
                if let Some(proxy) = self.proxies.get(&key) {
                    proxy.set_backends(
                        f.backends
                            .iter()
                            .map(|(id, addr, rev)| Backend::new(id.clone(), *addr, rev.clone()))
                            .collect(),
                    );
                }
            }
        }
        let gone: Vec<Key> = self
            .proxies
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(proxy) = self.proxies.remove(&key) {
                tracing::info!("{}/{}: port {} no longer fronted", key.0, key.1, key.2);
                proxy.shutdown().await;
            }
        }
    }

    /// (project, service, port, backends) of each proxy, for status.
    pub fn ports(&self) -> Vec<Key> {
        self.proxies.keys().cloned().collect()
    }
}
