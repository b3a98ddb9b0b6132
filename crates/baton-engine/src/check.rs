//! Checks of what the engine reads from a project beyond the spec reader's own rules
//! (rollout, health check, proxy, autoscale and alert settings): run whenever a file is read, located.

use baton_spec::{ErrorKind, Project, SpecError};

use crate::alert::alerts_spec;
use crate::autoscale::{autoscale_spec, autoscale_warnings};
use crate::health::probe_spec;
use crate::resolve::proxy_settings;
use crate::rollout::{rollout_spec, unused_settings};

/// Every service's baton settings and the `alerts:` section, checked as `up` and the daemon
/// would read them: an error located at the setting at fault, or warnings (settings that
/// are valid but not used).
pub fn project(project: &Project) -> Result<Vec<String>, SpecError> {
    let mut warnings = Vec::new();
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
}
