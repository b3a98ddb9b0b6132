//! The host-wide edge table: every active project's routes together, as the daemon serves
//! them. Pure: the projects and the table served before in, the table and refusals out.
//!
//! Two projects may not claim the same host and path, give one host two different
//! certificates or client CAs, or ask for different listeners. The claim the edge already
//! serves wins (else the project whose name sorts first); the project that loses is
//! refused as a whole, with a message naming both, and keeps the routes it had: the edge
//! goes on serving what it served before for it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use baton_spec::Project;

use super::spec::{
    edge_settings, service_routes, AcmeSettings, EdgeSettings, EdgeSpecError, Listen, Route,
    ServiceRoutes, Tls,
};

/// A project's part of the edge as its file says; `None` when it has neither routes nor
/// edge settings. Errors name the setting from the file's root.
pub fn project_edge(p: &Project) -> Result<Option<ProjectEdge>, EdgeSpecError> {
    let settings = edge_settings(p)?;
    let mut services = BTreeMap::new();
    for (name, svc) in &p.services {
        if let Some(r) = service_routes(svc).map_err(|e| EdgeSpecError {
            path: format!("services.{name}.{}", e.path),
            message: e.message,
        })? {
            services.insert(name.clone(), r);
        }
    }
    if services.is_empty() && settings.is_none() {
        return Ok(None);
    }
    Ok(Some(ProjectEdge {
        project: p.name.clone(),
        dir: p.working_dir.clone(),
        settings: settings.unwrap_or_default(),
        services,
    }))
}

/// One active project's part of the edge, as its file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectEdge {
    pub project: String,
    /// The project directory: relative certificate and CA files are found from it.
    pub dir: PathBuf,
    pub settings: EdgeSettings,
    pub services: BTreeMap<String, ServiceRoutes>,
}

/// Where one route's host gets its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableTls {
    /// From the project's ACME directory (its `ca` file made absolute).
    Acme(AcmeSettings),
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
}

/// One route of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRoute {
    pub project: String,
    pub service: String,
    /// Its place in the service's `x-baton.routes`.
    pub index: usize,
    pub route: Route,
    pub tls: Option<TableTls>,
    /// `client_ca` made absolute.
    pub client_ca: Option<PathBuf>,
}

impl TableRoute {
    /// The setting's path in its file (`services.web.x-baton.routes[0]`).
    pub fn setting(&self) -> String {
        format!("services.{}.x-baton.routes[{}]", self.service, self.index)
    }
}

/// What the edge serves: its listeners and each project's routes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub listen: Listen,
    pub routes: BTreeMap<String, Vec<TableRoute>>,
}

impl Accepted {
    pub fn all(&self) -> impl Iterator<Item = &TableRoute> {
        self.routes.values().flatten()
    }
}

/// A project whose new routes the edge does not take, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub project: String,
    /// The setting at fault in the project's file (`services.web.x-baton.routes[0].host`).
    pub setting: String,
    /// Why, naming the other project.
    pub why: String,
    /// All of it in one line, for events and logs.
    pub message: String,
}

/// The outcome of `table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub accepted: Accepted,
    pub refused: Vec<Refusal>,
}

/// The table for `projects` (the active ones), given what the edge served before.
pub fn table(projects: &[ProjectEdge], previous: &Accepted) -> Table {
    let mut order: Vec<&ProjectEdge> = projects.iter().collect();
    order.sort_by(|a, b| a.project.cmp(&b.project));
    // New routes per project, or the refusal of a project whose file makes none.
    let mut fresh: BTreeMap<&str, Vec<TableRoute>> = BTreeMap::new();
    // project → (setting, why)
    let mut refused: BTreeMap<String, (String, String)> = BTreeMap::new();
    for p in &order {
        match routes_of(p) {
            Ok(r) => {
                fresh.insert(&p.project, r);
            }
            Err(why) => {
                refused.insert(p.project.clone(), why);
            }
        }
    }
    // Refused projects fall back to what they had; a fallback that still loses (it
    // cannot, the table before was consistent, but nothing here relies on it) is dropped.
    let mut dropped: BTreeSet<String> = BTreeSet::new();
    let listen = loop {
        let current = |p: &str| -> Vec<TableRoute> {
            if dropped.contains(p) {
                Vec::new()
            } else if refused.contains_key(p) {
                previous.routes.get(p).cloned().unwrap_or_default()
            } else {
                fresh.get(p).cloned().unwrap_or_default()
            }
        };
        let mut losers: Vec<(String, (String, String))> = Vec::new();
        let routes: Vec<(String, Vec<TableRoute>)> = order
            .iter()
            .map(|p| (p.project.clone(), current(&p.project)))
            .collect();
        conflicts(&routes, previous, &mut losers);
        // Listeners: the one served before if still asked for, else the first asked.
        let asked: Vec<(&str, &Listen)> = order
            .iter()
            .filter(|p| !refused.contains_key(&p.project))
            .filter_map(|p| p.settings.listen.as_ref().map(|l| (p.project.as_str(), l)))
            .collect();
        let served = !previous.routes.is_empty();
        let listen = asked
            .iter()
            .find(|(_, l)| served && **l == previous.listen)
            .or_else(|| asked.first())
            .map(|(_, l)| (*l).clone())
            .unwrap_or_else(|| previous_or_default(previous, &asked));
        if let Some((first, _)) = asked.iter().find(|(_, l)| **l == listen) {
            for (p, l) in &asked {
                if **l != listen {
                    losers.push((
                        p.to_string(),
                        (
                            "edge.listen".to_string(),
                            format!(
                                "the edge listens on {} (http {}, https {}) as project {first} says; project {p} asks for {} (http {}, https {}): every project on a host shares one edge",
                                listen.address, listen.http, listen.https, l.address, l.http, l.https
                            ),
                        ),
                    ));
                }
            }
        }
        let mut changed = false;
        for (p, why) in losers {
            match refused.entry(p) {
                std::collections::btree_map::Entry::Occupied(e) => {
                    changed |= dropped.insert(e.key().clone());
                }
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(why);
                    changed = true;
                }
            }
        }
        if !changed {
            break listen;
        }
    };
    let mut accepted = Accepted {
        listen,
        routes: BTreeMap::new(),
    };
    for p in &order {
        let routes = if dropped.contains(&p.project) {
            Vec::new()
        } else if refused.contains_key(&p.project) {
            previous.routes.get(&p.project).cloned().unwrap_or_default()
        } else {
            fresh.get(p.project.as_str()).cloned().unwrap_or_default()
        };
        if !routes.is_empty() {
            accepted.routes.insert(p.project.clone(), routes);
        }
    }
    let refused = refused
        .into_iter()
        .map(|(project, (setting, why))| Refusal {
            message: format!(
                "project {project}: {setting}: {why}; the edge keeps serving what it served for {project} before"
            ),
            project,
            setting,
            why,
        })
        .collect();
    Table { accepted, refused }
}

fn previous_or_default(previous: &Accepted, asked: &[(&str, &Listen)]) -> Listen {
    if asked.is_empty() && !previous.routes.is_empty() {
        previous.listen.clone()
    } else {
        Listen::default()
    }
}

/// The routes a project's file makes, TLS and CA files made absolute.
fn routes_of(p: &ProjectEdge) -> Result<Vec<TableRoute>, (String, String)> {
    let mut out = Vec::new();
    for (service, s) in &p.services {
        let tls = match &s.tls {
            None => None,
            Some(Tls::Files { cert, key }) => Some(TableTls::Files {
                cert: absolute(&p.dir, cert),
                key: absolute(&p.dir, key),
            }),
            Some(Tls::Acme) => match &p.settings.acme {
                Some(acme) => Some(TableTls::Acme(AcmeSettings {
                    ca: acme
                        .ca
                        .as_ref()
                        .map(|c| absolute(&p.dir, c).to_string_lossy().into_owned()),
                    ..acme.clone()
                })),
                None => {
                    return Err((
                        format!("services.{service}.x-baton.tls"),
                        "acme needs x-baton.edge.acme (directory, email)".to_string(),
                    ))
                }
            },
        };
        for (index, route) in s.routes.iter().enumerate() {
            out.push(TableRoute {
                project: p.project.clone(),
                service: service.clone(),
                index,
                route: route.clone(),
                tls: tls.clone(),
                client_ca: route.client_ca.as_ref().map(|c| absolute(&p.dir, c)),
            });
        }
    }
    Ok(out)
}

fn absolute(dir: &Path, file: &str) -> PathBuf {
    dir.join(file)
}

/// Finds the projects that lose a claim: a host and path someone else routes, or a host
/// whose certificate or client CA someone else gives differently.
fn conflicts(
    routes: &[(String, Vec<TableRoute>)],
    previous: &Accepted,
    losers: &mut Vec<(String, (String, String))>,
) {
    // host+path → claimants (project, route), in project order.
    let mut paths: BTreeMap<(String, String), Vec<&TableRoute>> = BTreeMap::new();
    // host → (certificate source, claimant route).
    let mut certs: BTreeMap<String, Vec<(String, &TableRoute)>> = BTreeMap::new();
    let mut cas: BTreeMap<String, Vec<(String, &TableRoute)>> = BTreeMap::new();
    for (_, rs) in routes {
        for r in rs {
            paths
                .entry((r.route.host.clone(), r.route.path.clone()))
                .or_default()
                .push(r);
            if let Some(t) = &r.tls {
                certs
                    .entry(r.route.host.clone())
                    .or_default()
                    .push((describe(t), r));
            }
            if let Some(ca) = &r.client_ca {
                cas.entry(r.route.host.clone())
                    .or_default()
                    .push((ca.display().to_string(), r));
            }
        }
    }
    let served_by = |host: &str, path: &str| -> Option<&str> {
        previous
            .all()
            .find(|r| r.route.host == host && r.route.path == path)
            .map(|r| r.project.as_str())
    };
    for ((host, path), claims) in &paths {
        let projects: BTreeSet<&str> = claims.iter().map(|r| r.project.as_str()).collect();
        if projects.len() < 2 {
            continue;
        }
        let winner = served_by(host, path)
            .filter(|p| projects.contains(p))
            .or_else(|| projects.iter().next().copied())
            .unwrap_or_default();
        let Some(won) = claims.iter().find(|r| r.project == winner) else {
            continue;
        };
        for r in claims.iter().filter(|r| r.project != winner) {
            losers.push((
                r.project.clone(),
                (
                    format!("{}.host", r.setting()),
                    format!(
                        "{host}{path} is already routed by project {winner} ({}); project {} cannot claim it too",
                        won.setting(),
                        r.project
                    ),
                ),
            ));
        }
    }
    let served_value = |host: &str, value: &dyn Fn(&TableRoute) -> Option<String>| {
        previous
            .all()
            .filter(|r| r.route.host == host)
            .find_map(value)
    };
    let mut one_per_host =
        |claims: &BTreeMap<String, Vec<(String, &TableRoute)>>,
         what: &str,
         setting: &dyn Fn(&TableRoute) -> String,
         value: &dyn Fn(&TableRoute) -> Option<String>| {
            for (host, list) in claims {
                let values: BTreeSet<&str> = list.iter().map(|(v, _)| v.as_str()).collect();
                if values.len() < 2 {
                    continue;
                }
                let before = served_value(host, value);
                let Some((winning, by)) = list
                    .iter()
                    .find(|(v, _)| Some(v) == before.as_ref())
                    .or_else(|| list.first())
                    .map(|(v, r)| (v.clone(), *r))
                else {
                    continue;
                };
                for (v, r) in list.iter().filter(|(v, _)| *v != winning) {
                    losers.push((
                    r.project.clone(),
                    (
                        setting(r),
                        format!(
                            "{host} gets its {what} from project {}'s {} ({winning}), not {v}: one host has one {what}",
                            by.project,
                            setting(by),
                        ),
                    ),
                ));
                }
            }
        };
    one_per_host(
        &certs,
        "certificate",
        &|r: &TableRoute| format!("services.{}.x-baton.tls", r.service),
        &|r: &TableRoute| r.tls.as_ref().map(describe),
    );
    one_per_host(
        &cas,
        "client CA",
        &|r: &TableRoute| format!("{}.client_ca", r.setting()),
        &|r: &TableRoute| r.client_ca.as_ref().map(|c| c.display().to_string()),
    );
}

fn describe(t: &TableTls) -> String {
    match t {
        TableTls::Acme(a) => format!("ACME from {}", a.directory),
        TableTls::Files { cert, .. } => cert.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::spec::RouteTo;

    fn route(host: &str, path: &str) -> Route {
        Route {
            host: host.into(),
            path: path.into(),
            to: RouteTo::Port(80),
            https_redirect: true,
            hsts_max_age: None,
            client_ca: None,
        }
    }

    fn project(name: &str, routes: &[(&str, &str)], tls: Option<Tls>) -> ProjectEdge {
        ProjectEdge {
            project: name.into(),
            dir: PathBuf::from(format!("/srv/{name}")),
            settings: EdgeSettings::default(),
            services: BTreeMap::from([(
                "web".to_string(),
                ServiceRoutes {
                    routes: routes.iter().map(|(h, p)| route(h, p)).collect(),
                    tls,
                },
            )]),
        }
    }

    fn hosts(a: &Accepted) -> Vec<String> {
        a.all()
            .map(|r| format!("{} {}{}", r.project, r.route.host, r.route.path))
            .collect()
    }

    #[test]
    fn projects_share_the_edge_by_host_and_path() {
        let t = table(
            &[
                project("a", &[("shop.test", "/")], None),
                project("b", &[("blog.test", "/"), ("shop.test", "/blog")], None),
            ],
            &Accepted::default(),
        );
        assert!(t.refused.is_empty(), "{:?}", t.refused);
        assert_eq!(
            hosts(&t.accepted),
            ["a shop.test/", "b blog.test/", "b shop.test/blog"]
        );
        assert_eq!(t.accepted.listen, Listen::default());
    }

    #[test]
    fn a_host_claimed_twice_stays_with_the_project_that_had_it() {
        let before = table(
            &[
                project("b", &[("shop.test", "/")], None),
                project("a", &[("a.test", "/")], None),
            ],
            &Accepted::default(),
        )
        .accepted;
        // a now claims shop.test/ too: b served it, b keeps it; a keeps what it had.
        let t = table(
            &[
                project("b", &[("shop.test", "/")], None),
                project(
                    "a",
                    &[("a.test", "/"), ("shop.test", "/"), ("new.test", "/")],
                    None,
                ),
            ],
            &before,
        );
        assert_eq!(hosts(&t.accepted), ["a a.test/", "b shop.test/"]);
        assert_eq!(
            t.refused,
            [Refusal {
                project: "a".into(),
                setting: "services.web.x-baton.routes[1].host".into(),
                why: "shop.test/ is already routed by project b (services.web.x-baton.routes[0]); project a cannot claim it too".into(),
                message: "project a: services.web.x-baton.routes[1].host: shop.test/ is already routed by project b (services.web.x-baton.routes[0]); project a cannot claim it too; the edge keeps serving what it served for a before".into(),
            }]
        );
        // With nothing served before, the name that sorts first wins.
        let fresh = table(
            &[
                project("b", &[("shop.test", "/")], None),
                project("a", &[("shop.test", "/")], None),
            ],
            &Accepted::default(),
        );
        assert_eq!(hosts(&fresh.accepted), ["a shop.test/"]);
        assert_eq!(fresh.refused[0].project, "b");
    }

    #[test]
    fn one_host_has_one_certificate() {
        let files = |c: &str| Tls::Files {
            cert: c.into(),
            key: "k.pem".into(),
        };
        let t = table(
            &[
                project("a", &[("shop.test", "/")], Some(files("a.pem"))),
                project("b", &[("shop.test", "/api")], Some(files("b.pem"))),
                project("c", &[("shop.test", "/c")], None),
            ],
            &Accepted::default(),
        );
        assert_eq!(hosts(&t.accepted), ["a shop.test/", "c shop.test/c"]);
        assert_eq!(t.refused.len(), 1);
        assert!(
            t.refused[0].message.starts_with("project b: services.web.x-baton.tls: shop.test gets its certificate from project a's services.web.x-baton.tls (/srv/a/a.pem), not /srv/b/b.pem"),
            "{}",
            t.refused[0].message
        );
    }

    #[test]
    fn projects_that_ask_for_other_listeners_are_refused() {
        let mut a = project("a", &[("a.test", "/")], None);
        a.settings.listen = Some(Listen {
            http: 8080,
            https: 8443,
            address: "127.0.0.1".into(),
        });
        let mut b = project("b", &[("b.test", "/")], None);
        b.settings.listen = Some(Listen::default());
        let t = table(&[b.clone(), a.clone()], &Accepted::default());
        assert_eq!(t.accepted.listen.http, 8080);
        assert_eq!(hosts(&t.accepted), ["a a.test/"]);
        assert!(
            t.refused[0].message.contains("project b asks for 0.0.0.0"),
            "{:?}",
            t.refused
        );
        // Without a listen of its own, a project goes where the edge listens.
        b.settings.listen = None;
        let t = table(&[b, a], &Accepted::default());
        assert!(t.refused.is_empty());
        assert_eq!(hosts(&t.accepted), ["a a.test/", "b b.test/"]);
    }

    #[test]
    fn acme_without_a_directory_is_refused_and_files_are_made_absolute() {
        let t = table(
            &[project("a", &[("a.test", "/")], Some(Tls::Acme))],
            &Accepted::default(),
        );
        assert!(t.accepted.routes.is_empty());
        assert_eq!(t.refused[0].message, "project a: services.web.x-baton.tls: acme needs x-baton.edge.acme (directory, email); the edge keeps serving what it served for a before");
        let t = table(
            &[project(
                "a",
                &[("a.test", "/")],
                Some(Tls::Files {
                    cert: "tls/a.pem".into(),
                    key: "/etc/a.key".into(),
                }),
            )],
            &Accepted::default(),
        );
        assert_eq!(
            t.accepted.routes["a"][0].tls,
            Some(TableTls::Files {
                cert: "/srv/a/tls/a.pem".into(),
                key: "/etc/a.key".into()
            })
        );
    }
}
