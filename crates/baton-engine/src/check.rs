//! Checks of what the engine reads from a project beyond the spec reader's own rules
//! (rollout, health check, proxy, autoscale, alert and edge settings): run whenever a file is
//! read, located.

use std::collections::BTreeMap;

use baton_spec::{ErrorKind, Project, SpecError};

use crate::alert::alerts_spec;
use crate::autoscale::{autoscale_spec, autoscale_warnings};
use crate::edge::{edge_settings, service_routes, Tls};
use crate::health::probe_spec;
use crate::resolve::proxy_settings;
use crate::rollout::{rollout_spec, unused_settings};

/// Every service's baton settings and the `alerts:` section, checked as `up` and the daemon
/// would read them: an error located at the setting at fault, or warnings (settings that
/// are valid but not used).
pub fn project(project: &Project) -> Result<Vec<String>, SpecError> {
    let mut warnings = Vec::new();
    let edge = edge_settings(project)
        .map_err(|e| project.error_at(ErrorKind::Invalid, &e.path, e.message))?;
    // Across services: a host and path once, one certificate source per host.
    let mut paths: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut certs: BTreeMap<String, (String, Tls)> = BTreeMap::new();
    for (name, svc) in &project.services {
        let at = |path: &str, message: &str| {
            project.error_at(
                ErrorKind::Invalid,
                &format!("services.{name}.{path}"),
                message.to_string(),
            )
        };
        // The deciders' errors name the setting first: `x-baton.rollout.steps: …`.
        let located = |text: &str| match text.split_once(": ") {
            Some((path, message)) if !path.contains(' ') => at(path, message),
            _ => at("x-baton", text),
        };
        rollout_spec(svc).map_err(|e| at(&e.path, &e.message))?;
        probe_spec(svc).map_err(|e| located(&e))?;
        proxy_settings(svc).map_err(|e| located(&e))?;
        autoscale_spec(svc).map_err(|e| at(&e.path, &e.message))?;
        if let Some(routed) = service_routes(svc).map_err(|e| at(&e.path, &e.message))? {
            if routed.tls == Some(Tls::Acme) && edge.as_ref().is_none_or(|e| e.acme.is_none()) {
                return Err(at(
                    "x-baton.tls",
                    "acme needs x-baton.edge.acme: {directory: URL, email: ADDRESS} at the top of the file",
                ));
            }
            if routed.tls.is_some() && routed.routes.is_empty() {
                warnings.push(
                    at("x-baton.tls", "the service has no x-baton.routes: ignored").to_string(),
                );
            }
            for (i, r) in routed.routes.iter().enumerate() {
                let here = format!("services.{name}.x-baton.routes[{i}]");
                if let Some(first) = paths.insert((r.host.clone(), r.path.clone()), here.clone()) {
                    return Err(at(
                        &format!("x-baton.routes[{i}].host"),
                        &format!("{}{} is already routed by {first}", r.host, r.path),
                    ));
                }
                if let Some(tls) = &routed.tls {
                    match certs.get(&r.host) {
                        Some((by, other)) if other != tls => {
                            return Err(at(
                                "x-baton.tls",
                                &format!(
                                "{} gets its certificate from {by}: one host has one certificate",
                                r.host
                            ),
                            ))
                        }
                        Some(_) => {}
                        None => {
                            certs.insert(
                                r.host.clone(),
                                (format!("services.{name}.x-baton.tls"), tls.clone()),
                            );
                        }
                    }
                }
            }
        }
        for (path, why) in autoscale_warnings(svc) {
            warnings.push(at(&path, &why).to_string());
        }
        for (path, why) in unused_settings(svc) {
            let e = at(&path, &why);
            warnings.push(e.to_string());
        }
    }
    // The rules' `expr` is the metrics crate's to check (`alert::check_exprs`).
    alerts_spec(project)?;
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn with_service(baton: serde_json::Value) -> Project {
        let svc: baton_spec::Service =
            serde_json::from_value(json!({"image": "x", "baton": baton})).unwrap();
        let mut marks = BTreeMap::new();
        marks.insert(
            "services.web.x-baton.rollout.steps".to_string(),
            baton_spec::Location {
                file: "baton.yaml".into(),
                line: 7,
                column: 9,
            },
        );
        Project {
            name: "p".into(),
            services: BTreeMap::from([("web".to_string(), svc)]),
            baton_marks: marks,
            ..Default::default()
        }
    }

    #[test]
    fn errors_are_located_at_the_setting() {
        let p =
            with_service(json!({"rollout": {"strategy": "canary", "steps": [{"weight": 150}]}}));
        assert_eq!(
            project(&p).unwrap_err().to_string(),
            "baton.yaml:7:9: services.web.x-baton.rollout.steps[0].weight: expected a whole percentage from 1 to 100, found 150"
        );
        let p = with_service(json!({"healthcheck": "yes"}));
        assert_eq!(
            project(&p).unwrap_err().to_string(),
            "services.web.x-baton.healthcheck: expected a mapping"
        );
    }

    #[test]
    fn autoscale_errors_are_located_and_replicas_outside_its_range_warned_about() {
        let mut p = with_service(json!({"autoscale": {"max": 4, "metrics": [{"cpuu": "70%"}]}}));
        p.baton_marks.insert(
            "services.web.x-baton.autoscale.metrics[0].cpuu".into(),
            baton_spec::Location {
                file: "baton.yaml".into(),
                line: 12,
                column: 20,
            },
        );
        assert_eq!(
            project(&p).unwrap_err().to_string(),
            "baton.yaml:12:20: services.web.x-baton.autoscale.metrics[0].cpuu: unknown metric \"cpuu\" (did you mean \"cpu\"?) (known: cpu, memory, rps, p95, in_flight)"
        );
        let mut p = with_service(json!({"autoscale": {"min": 2, "max": 4}}));
        if let Some(svc) = p.services.get_mut("web") {
            svc.deploy = Some(baton_spec::Deploy {
                replicas: Some(6),
                ..Default::default()
            });
        }
        assert_eq!(
            project(&p).unwrap(),
            ["services.web.deploy.replicas: 6 is outside x-baton.autoscale's [2, 4]: autoscaling moves the service to 4 at its first decision"]
        );
    }

    #[test]
    fn settings_of_another_strategy_are_a_warning() {
        let p =
            with_service(json!({"rollout": {"strategy": "rolling", "steps": [{"weight": 10}]}}));
        assert_eq!(
            project(&p).unwrap(),
            ["baton.yaml:7:9: services.web.x-baton.rollout.steps: only used by strategy canary, not rolling: ignored"]
        );
    }

    #[test]
    fn edge_settings_are_checked_and_located() {
        let mut p = with_service(json!({"routes": [{"host": "shop.test", "port": 8081}]}));
        if let Some(svc) = p.services.get_mut("web") {
            svc.expose = vec!["80".into()];
        }
        p.baton_marks.insert(
            "services.web.x-baton.routes[0].port".into(),
            baton_spec::Location {
                file: "baton.yaml".into(),
                line: 9,
                column: 42,
            },
        );
        assert_eq!(
            project(&p).unwrap_err().to_string(),
            "baton.yaml:9:42: services.web.x-baton.routes[0].port: 8081 is not a port the service exposes (80); a route goes to a container port listed in `ports` or `expose`"
        );
        // Two services of one file on the same host and path.
        let mut p = with_service(json!({"routes": [{"host": "shop.test"}]}));
        let mut api = p.services["web"].clone();
        api.expose = vec!["80".into()];
        if let Some(svc) = p.services.get_mut("web") {
            svc.expose = vec!["80".into()];
        }
        p.services.insert("api".into(), api);
        assert_eq!(
            project(&p).unwrap_err().to_string(),
            "services.web.x-baton.routes[0].host: shop.test/ is already routed by services.api.x-baton.routes[0]"
        );
        // ACME needs a directory in the file.
        let mut p = with_service(json!({"routes": [{"host": "shop.test"}], "tls": "acme"}));
        if let Some(svc) = p.services.get_mut("web") {
            svc.expose = vec!["80".into()];
        }
        assert_eq!(
            project(&p).unwrap_err().to_string(),
            "services.web.x-baton.tls: acme needs x-baton.edge.acme: {directory: URL, email: ADDRESS} at the top of the file"
        );
        p.baton.insert(
            "edge".into(),
            json!({"acme": {"directory": "https://127.0.0.1:14000/dir"}}),
        );
        assert!(project(&p).is_ok());
        p.baton
            .insert("edge".into(), json!({"listen": {"http": "x"}}));
        assert_eq!(
            project(&p).unwrap_err().to_string(),
            "edge.listen.http: expected a port from 1 to 65535, found \"x\""
        );
    }
}
