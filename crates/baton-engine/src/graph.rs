//! The service dependency graph: start order (dependencies first) and stop order.
//! The loader has rejected cycles; these functions stay total even if one slips through.

use std::collections::{BTreeMap, BTreeSet};

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

/// The wave in which each service stops: 0 for services nothing depends on, else one
/// more than the latest of its dependants. Services of a wave stop in parallel.
pub fn stop_levels(project: &Project) -> BTreeMap<String, usize> {
    let all: BTreeSet<String> = project.services.keys().cloned().collect();
    let mut levels: BTreeMap<String, usize> = BTreeMap::new();
    // Dependants come after their dependencies in start order, so walking it backwards
    // sees every dependant of a service before the service itself.
    for name in start_order(project, &all).into_iter().rev() {
        let level = project
            .services
            .iter()
            .filter(|(_, s)| s.depends_on.contains_key(&name))
            .filter_map(|(dependant, _)| levels.get(dependant))
            .map(|l| l + 1)
            .max()
            .unwrap_or(0);
        levels.insert(name, level);
    }
    levels
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

    #[test]
    fn independent_services_stop_together_and_dependants_first() {
        let p = project(&[
            ("web", &["api"]),
            ("api", &["db"]),
            ("db", &[]),
            ("a", &[]),
            ("b", &[]),
        ]);
        let levels = stop_levels(&p);
        let got: Vec<(&str, usize)> = levels.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            got,
            vec![("a", 0), ("api", 1), ("b", 0), ("db", 2), ("web", 0)]
        );
    }
}
