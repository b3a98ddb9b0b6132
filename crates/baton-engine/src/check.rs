//! Checks of what the engine reads from a project beyond the spec reader's own rules
//! (rollout, health check and proxy settings): run whenever a file is read, located.

use baton_spec::{ErrorKind, Project, SpecError};

use crate::health::probe_spec;
use crate::resolve::proxy_settings;
use crate::rollout::{rollout_spec, unused_settings};

/// Every service's baton settings, checked as `up` would read them: an error located at
/// the setting at fault, or warnings (settings that are valid but not used).
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
        for (path, why) in unused_settings(svc) {
            let e = at(&path, &why);
            warnings.push(e.to_string());
        }
    }
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
    fn settings_of_another_strategy_are_a_warning() {
        let p =
            with_service(json!({"rollout": {"strategy": "rolling", "steps": [{"weight": 10}]}}));
        assert_eq!(
            project(&p).unwrap(),
            ["baton.yaml:7:9: services.web.x-baton.rollout.steps: only used by strategy canary, not rolling: ignored"]
        );
    }
}
