//! The planner as data: (project, observed) in, exact actions and reasons out.

use std::collections::{BTreeMap, BTreeSet};

use baton_engine::hash::{effective_config, service_hash};
use baton_engine::plan::{plan_down, plan_up, Action, PlanError, PlanInput, PlanOptions};
use baton_engine::runtime::{
    Capabilities, ContainerState, Health, Observed, ObservedContainer, ObservedNetwork,
};
use baton_spec::{Deploy, FileObject, FileRef, Network, Project, Service, ServiceNetwork};

fn service(image: &str, env: &[(&str, &str)], replicas: u32) -> Service {
    Service {
        image: Some(image.into()),
        environment: env
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect(),
        networks: BTreeMap::from([("default".to_string(), ServiceNetwork::default())]),
        deploy: Some(Deploy {
            replicas: Some(replicas),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn project(services: &[(&str, Service)]) -> Project {
    Project {
        name: "demo".into(),
        services: services
            .iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect(),
        networks: BTreeMap::from([(
            "default".to_string(),
            Network {
                name: "demo_default".into(),
                ..Default::default()
            },
        )]),
        ..Default::default()
    }
}

fn running(service: &str, replica: u32, svc: &Service) -> ObservedContainer {
    ObservedContainer {
        id: format!("id-{service}-{replica}"),
        name: format!("demo-{service}-{replica}"),
        service: service.into(),
        replica,
        config_hash: service_hash(svc),
        oneoff: false,
        image: svc.image.clone().unwrap_or_default(),
        state: ContainerState::Running,
        health: Health::None,
        exit_code: None,
        status: "Up".into(),
        ports: vec![],
        labels: BTreeMap::new(),
        created: 1,
        restart_count: 0,
        addresses: Default::default(),
    }
}

fn network() -> ObservedNetwork {
    ObservedNetwork {
        id: "net1".into(),
        name: "demo_default".into(),
        labels: BTreeMap::new(),
        created: 1,
    }
}

fn plan(p: &Project, observed: &Observed, opts: &PlanOptions, prev: &[&Service]) -> Vec<Action> {
    let images: BTreeSet<String> = ["busybox".to_string()].into();
    let prev: BTreeMap<String, serde_json::Value> = prev
        .iter()
        .map(|s| (service_hash(s), effective_config(s)))
        .collect();
    let lookup = |h: &str| prev.get(h).cloned();
    plan_up(&PlanInput {
        project: p,
        observed,
        images_present: &images,
        previous_config: &lookup,
        options: opts,
        capabilities: &Capabilities::default(),
    })
    .expect("plan")
    .actions
}

#[test]
fn an_empty_world_gets_network_then_every_replica() {
    let p = project(&[
        ("web", service("busybox", &[], 2)),
        ("db", service("busybox", &[], 1)),
    ]);
    let actions = plan(&p, &Observed::default(), &PlanOptions::default(), &[]);
    let summary: Vec<String> = actions
        .iter()
        .map(|a| format!("{} {}", a.kind(), a.target()))
        .collect();
    assert_eq!(
        summary,
        vec![
            "create-network demo_default",
            "create demo-db-1",
            "create demo-web-1",
            "create demo-web-2"
        ]
    );
}

#[test]
fn an_unchanged_world_plans_nothing() {
    let web = service("busybox", &[("A", "1")], 2);
    let p = project(&[("web", web.clone())]);
    let observed = Observed {
        containers: vec![running("web", 1, &web), running("web", 2, &web)],
        networks: vec![network()],
        volumes: vec![],
    };
    let out = plan_up(&PlanInput {
        project: &p,
        observed: &observed,
        images_present: &["busybox".to_string()].into(),
        previous_config: &|_| None,
        options: &PlanOptions::default(),
        capabilities: &Capabilities::default(),
    })
    .unwrap();
    assert!(out.is_empty(), "{out}");
    assert_eq!(out.up_to_date, vec!["web"]);
    assert_eq!(
        out.to_string(),
        "project demo: nothing to do (1 service up to date)\n"
    );
}

#[test]
fn a_changed_environment_recreates_only_that_service_and_says_why() {
    let old_api = service("busybox", &[("A", "1")], 1);
    let new_api = service("busybox", &[("A", "2")], 1);
    let web = service("busybox", &[], 1);
    let p = project(&[("api", new_api), ("web", web.clone())]);
    let observed = Observed {
        containers: vec![running("api", 1, &old_api), running("web", 1, &web)],
        networks: vec![network()],
        volumes: vec![],
    };
    let actions = plan(&p, &observed, &PlanOptions::default(), &[&old_api]);
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].kind(), "recreate");
    assert_eq!(actions[0].target(), "demo-api-1");
    assert_eq!(actions[0].reason(), "environment.A changed");
}

#[test]
fn scaling_down_removes_the_highest_replicas_and_duplicates_are_removed() {
    let web = service("busybox", &[], 1);
    let p = project(&[("web", web.clone())]);
    let mut dup = running("web", 1, &web);
    dup.id = "dup".into();
    dup.state = ContainerState::Exited;
    let observed = Observed {
        containers: vec![running("web", 1, &web), dup, running("web", 2, &web)],
        networks: vec![network()],
        volumes: vec![],
    };
    let actions = plan(&p, &observed, &PlanOptions::default(), &[]);
    let summary: Vec<String> = actions
        .iter()
        .map(|a| format!("{} {} ({})", a.kind(), a.target(), a.reason()))
        .collect();
    assert_eq!(
        summary,
        vec![
            "remove demo-web-1 (duplicate replica)",
            "remove demo-web-2 (scale down to 1)"
        ]
    );
    if let Action::RemoveContainer { id, .. } = &actions[0] {
        assert_eq!(id, "dup", "the running, up-to-date replica is kept");
    }
}

#[test]
fn a_created_but_not_started_replica_is_started_not_recreated() {
    let web = service("busybox", &[], 1);
    let p = project(&[("web", web.clone())]);
    let mut c = running("web", 1, &web);
    c.state = ContainerState::Created;
    let observed = Observed {
        containers: vec![c],
        networks: vec![network()],
        volumes: vec![],
    };
    let actions = plan(&p, &observed, &PlanOptions::default(), &[]);
    assert_eq!(actions.len(), 1);
    assert_eq!(
        format!("{} {}", actions[0].kind(), actions[0].reason()),
        "start container is created"
    );
}

#[test]
fn orphans_are_warned_about_or_removed_on_request() {
    let web = service("busybox", &[], 1);
    let p = project(&[("web", web.clone())]);
    let observed = Observed {
        containers: vec![running("web", 1, &web), running("old", 1, &web)],
        networks: vec![network()],
        volumes: vec![],
    };
    let images: BTreeSet<String> = ["busybox".to_string()].into();
    let keep = plan_up(&PlanInput {
        project: &p,
        observed: &observed,
        images_present: &images,
        previous_config: &|_| None,
        options: &PlanOptions::default(),
        capabilities: &Capabilities::default(),
    })
    .unwrap();
    assert!(keep.is_empty());
    assert_eq!(keep.warnings.len(), 1);
    assert!(keep.warnings[0].contains("demo-old-1"));
    let opts = PlanOptions {
        remove_orphans: true,
        ..Default::default()
    };
    let actions = plan(&p, &observed, &opts, &[]);
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].target(), "demo-old-1");
}

#[test]
fn missing_images_are_pulled_and_duplicate_networks_removed() {
    let web = service("nginx:missing", &[], 1);
    let p = project(&[("web", web)]);
    let mut n2 = network();
    n2.id = "net2".into();
    n2.created = 5;
    let observed = Observed {
        containers: vec![],
        networks: vec![n2, network()],
        volumes: vec![],
    };
    let actions = plan(&p, &observed, &PlanOptions::default(), &[]);
    let summary: Vec<String> = actions
        .iter()
        .map(|a| format!("{} {}", a.kind(), a.target()))
        .collect();
    assert_eq!(
        summary,
        vec![
            "pull nginx:missing",
            "create demo-web-1",
            "remove-network demo_default"
        ]
    );
    if let Some(Action::RemoveNetwork { id, .. }) = actions.last() {
        assert_eq!(id, "net2", "the oldest network is kept");
    }
}

#[test]
fn unknown_services_are_named_with_a_suggestion() {
    let p = project(&[("web", service("busybox", &[], 1))]);
    let err = plan_up(&PlanInput {
        project: &p,
        observed: &Observed::default(),
        images_present: &BTreeSet::new(),
        previous_config: &|_| None,
        options: &PlanOptions {
            services: vec!["wbe".into()],
            ..Default::default()
        },
        capabilities: &Capabilities::default(),
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no such service: wbe (did you mean \"web\"?)"
    );
}

fn plan_with(p: &Project, caps: &Capabilities) -> Result<baton_engine::plan::Plan, PlanError> {
    plan_up(&PlanInput {
        project: p,
        observed: &Observed::default(),
        images_present: &BTreeSet::from(["busybox".to_string()]),
        previous_config: &|_| None,
        options: &PlanOptions::default(),
        capabilities: caps,
    })
}

#[test]
fn an_external_secret_on_an_engine_without_a_store_is_an_error_naming_it() {
    let mut web = service("busybox", &[], 1);
    web.secrets = vec![FileRef {
        source: "db_pass".into(),
        target: "/run/secrets/db_pass".into(),
        uid: None,
        gid: None,
        mode: None,
    }];
    let mut p = project(&[("web", web)]);
    p.secrets.insert(
        "db_pass".into(),
        FileObject {
            external: true,
            ..Default::default()
        },
    );
    let err = plan_with(&p, &Capabilities::default()).unwrap_err();
    assert!(
        matches!(&err, PlanError::ExternalFile { service, kind: "secret", name } if service == "web" && name == "db_pass"),
        "{err}"
    );
    assert!(
        err.to_string().contains("secret \"db_pass\" is external"),
        "{err}"
    );
    // An engine with a secret store takes it from there.
    let swarm = Capabilities {
        external_files: true,
        ..Default::default()
    };
    assert!(plan_with(&p, &swarm).is_ok());
    // A secret with a source is fine anywhere.
    p.secrets.get_mut("db_pass").unwrap().external = false;
    p.secrets.get_mut("db_pass").unwrap().content = Some("x".into());
    assert!(plan_with(&p, &Capabilities::default()).is_ok());
}

#[test]
fn settings_one_machine_ignores_are_one_warning_each() {
    let mut web = service("busybox", &[], 1);
    let deploy = web.deploy.as_mut().unwrap();
    deploy.mode = Some("global".into());
    deploy.other.insert(
        "placement".into(),
        serde_json::json!({"constraints": ["node.role==worker"]}),
    );
    deploy
        .other
        .insert("endpoint_mode".into(), serde_json::json!("dnsrr"));
    let p = project(&[("web", web)]);
    let plan = plan_with(&p, &Capabilities::default()).unwrap();
    assert_eq!(
        plan.warnings,
        [
            "service web: deploy.mode: global is ignored: this engine is one machine, so the service runs its replicas here",
            "service web: deploy.placement is ignored: this engine is one machine, there is nowhere else to place replicas",
            "service web: deploy.endpoint_mode is ignored: this engine resolves a service name to its containers' addresses",
        ]
    );
    assert!(plan
        .to_string()
        .contains("warning: service web: deploy.placement is ignored"));
    let cluster = Capabilities {
        placement: true,
        global_mode: true,
        endpoint_mode: true,
        ..Default::default()
    };
    assert!(plan_with(&p, &cluster).unwrap().warnings.is_empty());
}

#[test]
fn down_removes_everything_observed() {
    let web = service("busybox", &[], 1);
    let observed = Observed {
        containers: vec![running("web", 1, &web)],
        networks: vec![network()],
        volumes: vec![baton_engine::runtime::ObservedVolume {
            name: "demo_data".into(),
            labels: BTreeMap::new(),
        }],
    };
    let kinds: Vec<&str> = plan_down("demo", &observed, true)
        .actions
        .iter()
        .map(|a| a.kind())
        .collect();
    assert_eq!(kinds, vec!["remove", "remove-network", "remove-volume"]);
    assert_eq!(plan_down("demo", &observed, false).actions.len(), 2);
}
