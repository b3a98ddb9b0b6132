//! Networks and volumes: existence checks, create from the engine's specs, and remove.
//! Engine API 1.41 allows duplicate network names, so create checks the name first and
//! settles a race with another creator afterwards.

use std::collections::HashMap;

use baton_engine::runtime::{NetworkSpec, RuntimeError, VolumeSpec};
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest, VolumeCreateOptions};
use bollard::query_parameters::{InspectNetworkOptions, ListNetworksOptions, RemoveVolumeOptions};

use crate::client::{create_error, engine_error, remove_error, status};
use crate::Docker;

/// The explanation given for a network dockerd will not remove although no container
/// is attached to it.
pub const LEAKED_ENDPOINT: &str = "dockerd reports active endpoints but no container is attached \
(a dockerd 20.10 leak after a client is killed while starting a container on several networks); \
restart dockerd to release the network, then run `baton down` again";

impl Docker {
    pub(crate) async fn has_network(&self, name: &str) -> Result<bool, RuntimeError> {
        match self
            .api
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
        {
            // Inspect also answers to an id prefix; only an exact name or id counts.
            Ok(n) => Ok(n.name.as_deref() == Some(name) || n.id.as_deref() == Some(name)),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(engine_error(
                e,
                &format!("inspect network {name}"),
                &format!("network {name}"),
            )),
        }
    }

    pub(crate) async fn make_network(&self, spec: &NetworkSpec) -> Result<String, RuntimeError> {
        let what = format!("network {}", spec.name);
        if self.has_network(&spec.name).await? {
            return Err(RuntimeError::Conflict { what });
        }
        let ipam = spec.ipam.as_ref().map(|ipam| Ipam {
            driver: ipam.driver.clone(),
            config: Some(
                ipam.config
                    .iter()
                    .map(|pool| IpamConfig {
                        subnet: pool.subnet.clone(),
                        ip_range: pool.ip_range.clone(),
                        gateway: pool.gateway.clone(),
                        auxiliary_addresses: (!pool.aux_addresses.is_empty()).then(|| {
                            pool.aux_addresses
                                .iter()
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect()
                        }),
                    })
                    .collect(),
            ),
            options: (!ipam.options.is_empty()).then(|| {
                ipam.options
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }),
        });
        let request = NetworkCreateRequest {
            name: spec.name.clone(),
            driver: spec.driver.clone(),
            internal: spec.internal.then_some(true),
            attachable: spec.attachable.then_some(true),
            enable_ipv6: spec.enable_ipv6.then_some(true),
            ipam,
            options: Some(
                spec.driver_opts
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            labels: Some(
                spec.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            ..Default::default()
        };
        let created = self
            .api
            .create_network(request)
            .await
            .map_err(|e| create_error(e, &format!("create network {}", spec.name), &what))?;
        Ok(self.one_network_named(&spec.name, created.id).await)
    }

    /// A killed baton's network create can still be running inside dockerd when the next
    /// `up` creates the same network, and dockerd allows two networks of one name (every
    /// start then fails: "network … is ambiguous"). So after a create one network of the
    /// name is kept: the lowest id, the same choice whichever process makes it; the others
    /// are removed (one already in use stays; its error is ignored).
    async fn one_network_named(&self, name: &str, created: String) -> String {
        let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
        let Ok(found) = self
            .api
            .list_networks(Some(ListNetworksOptions {
                filters: Some(filters),
            }))
            .await
        else {
            return created;
        };
        // The name filter matches parts of names too.
        let mut ids: Vec<String> = found
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .filter_map(|n| n.id)
            .collect();
        if ids.len() < 2 {
            return created;
        }
        ids.sort();
        let keep = ids.remove(0);
        for id in ids {
            let _ = self.api.remove_network(&id).await;
        }
        keep
    }

    pub(crate) async fn drop_network(&self, id_or_name: &str) -> Result<(), RuntimeError> {
        let err = match self.api.remove_network(id_or_name).await {
            Ok(()) => return Ok(()),
            Err(e) => remove_error(
                e,
                &format!("remove network {id_or_name}"),
                &format!("network {id_or_name}"),
            ),
        };
        let RuntimeError::InUse { what, .. } = &err else {
            return Err(err);
        };
        // dockerd 20.10 can keep an endpoint count with no container behind it when a
        // client dies while starting a container attached to several networks. Say so
        // plainly instead of "active endpoints", which sends people looking for a container.
        let attached = self
            .api
            .inspect_network(id_or_name, None::<InspectNetworkOptions>)
            .await
            .ok()
            .and_then(|n| n.containers)
            .map_or(1, |c| c.len());
        if attached == 0 {
            return Err(RuntimeError::InUse {
                what: what.clone(),
                detail: LEAKED_ENDPOINT.to_string(),
            });
        }
        Err(err)
    }

    pub(crate) async fn has_volume(&self, name: &str) -> Result<bool, RuntimeError> {
        match self.api.inspect_volume(name).await {
            Ok(_) => Ok(true),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(engine_error(
                e,
                &format!("inspect volume {name}"),
                &format!("volume {name}"),
            )),
        }
    }

    pub(crate) async fn make_volume(&self, spec: &VolumeSpec) -> Result<(), RuntimeError> {
        let options = VolumeCreateOptions {
            name: Some(spec.name.clone()),
            driver: spec.driver.clone(),
            driver_opts: Some(
                spec.driver_opts
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            labels: Some(
                spec.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            ..Default::default()
        };
        self.api.create_volume(options).await.map_err(|e| {
            create_error(
                e,
                &format!("create volume {}", spec.name),
                &format!("volume {}", spec.name),
            )
        })?;
        Ok(())
    }

    pub(crate) async fn drop_volume(&self, name: &str) -> Result<(), RuntimeError> {
        self.api
            .remove_volume(name, None::<RemoveVolumeOptions>)
            .await
            .map_err(|e| {
                remove_error(
                    e,
                    &format!("remove volume {name}"),
                    &format!("volume {name}"),
                )
            })
    }
}
