//! The service dependency graph: start order (dependencies first) and stop order.
//! The loader has rejected cycles; these functions stay total even if one slips through.

use std::collections::BTreeSet;

use baton_spec::Project;

/// The selected services, dependencies before dependants, ties in name order.
pub fn start_order(project: &Project, selected: &BTreeSet<String>) -> Vec<String> {
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut order = Vec::new();
    while order.len() < selected.len() {
        let ready: Vec<&String> = selected
            .iter()
            .filter(|s| !done.contains(*s))
            .filter(|s| {
                project.services[*s]
                    .depends_on
                    .keys()
                    .all(|d| done.contains(d) || !selected.contains(d))
            })
            .collect();
        // A cycle would leave nothing ready: take the rest in name order.
        let take: Vec<String> = if ready.is_empty() {
            selected
                .iter()
                .filter(|s| !done.contains(*s))
                .cloned()
                .collect()
        } else {
            ready.into_iter().cloned().collect()
        };
        for s in take {
            done.insert(s.clone());
            order.push(s);
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_spec::{Condition, Dependency, Service};

    fn project(edges: &[(&str, &[&str])]) -> Project {
        let mut p = Project {
            name: "p".into(),
            ..Default::default()
        };
        for (name, deps) in edges {
            let mut s = Service::default();
            for d in *deps {
                s.depends_on.insert(
                    d.to_string(),
                    Dependency {
                        condition: Condition::ServiceStarted,
                        required: true,
                        restart: false,
                    },
                );
            }
            p.services.insert(name.to_string(), s);
        }
        p
    }

    #[test]
    fn dependencies_come_first() {
        let p = project(&[
            ("web", &["api"]),
            ("api", &["db", "cache"]),
            ("db", &[]),
            ("cache", &[]),
        ]);
        let all = p.services.keys().cloned().collect();
        assert_eq!(start_order(&p, &all), vec!["cache", "db", "api", "web"]);
    }
}
