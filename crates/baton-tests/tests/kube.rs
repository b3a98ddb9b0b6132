//! A `kubernetes:` target through the real `baton` binary: plan, up (server-side
//! apply), an unchanged up, ps, scale, a rollout waited for, a prune, a broken rollout,
//! rollout undo, logs and down. Against the fake API server of `src/kube_fake.rs` (a
//! fake: no cluster runs here), or, with `BATON_REQUIRE_KUBE=1` and `KUBECONFIG`, the
//! real cluster that kubeconfig names (its current context; the namespace
//! `BATON_KUBE_NAMESPACE`, else `default`, must exist), where the fake-only assertions
//! (the request log, the objects it holds) are left out.

use std::path::PathBuf;
use std::process::Output;

use baton_tests::kube_fake::KubeFake;
use baton_tests::Scratch;

const SECRET: &str = "s3cr3t-value-never-shown";

/// Where the test runs: the fake, or a real cluster.
struct Cluster {
    fake: Option<KubeFake>,
    kubeconfig: PathBuf,
    /// The target's settings in the file.
    target: String,
    namespace: String,
}

fn cluster(s: &Scratch) -> Cluster {
    let real = std::env::var_os("BATON_REQUIRE_KUBE").is_some();
    if real {
        let kubeconfig = std::env::var_os("KUBECONFIG")
            .map(PathBuf::from)
            .expect("BATON_REQUIRE_KUBE is set: KUBECONFIG must name the cluster's kubeconfig");
        let namespace =
            std::env::var("BATON_KUBE_NAMESPACE").unwrap_or_else(|_| "default".to_string());
        return Cluster {
            fake: None,
            kubeconfig,
            target: format!("{{kubernetes: {{namespace: {namespace}}}}}"),
            namespace,
        };
    }
    let fake = KubeFake::start();
    let kubeconfig = s.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig, "fake");
    Cluster {
        fake: Some(fake),
        kubeconfig,
        target: "{kubernetes: {context: fake, namespace: shop}}".into(),
        namespace: "shop".into(),
    }
}

fn file(target: &str, web_image: &str, with_worker: bool) -> String {
    let worker = if with_worker {
        "  worker:\n    image: busybox:1.36\n    command: [sleep, '3600']\n    depends_on: [web]\n    pid: host\n"
    } else {
        ""
    };
    format!(
        "services:\n  web:\n    image: {web_image}\n    ports: ['8080:80']\n    healthcheck:\n      test: [CMD, wget, -q, -O-, 'http://localhost/']\n      interval: 5s\n    deploy:\n      replicas: 2\n    secrets: [api_key]\n{worker}secrets:\n  api_key:\n    file: ./api_key.txt\ntargets:\n  prod: {target}\n"
    )
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_context_the_kubeconfig_lacks_is_named() {
    let s = Scratch::new("kubectx");
    let fake = KubeFake::start();
    let kubeconfig = s.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig, "fake");
    s.write(
        "compose.yaml",
        "services:\n  web:\n    image: nginx:1.27-alpine\ntargets:\n  prod: {kubernetes: {context: elsewhere}}\n",
    );
    let out = s
        .cmd()
        .env("KUBECONFIG", &kubeconfig)
        .args(["--target", "prod", "plan"])
        .output()
        .expect("run baton");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("target prod (kubernetes)"), "{all}");
    assert!(all.contains("elsewhere"), "{all}");
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

#[test]
fn a_project_on_a_kubernetes_target_through_the_binary() {
    let s = Scratch::new("kube");
    let c = cluster(&s);
    s.write("api_key.txt", SECRET);
    let run = |args: &[&str]| -> Output {
        let mut cmd = s.cmd();
        cmd.env("KUBECONFIG", &c.kubeconfig)
            .env_remove("BATON_TARGET")
            .arg("--target")
            .arg("prod")
            .args(args);
        let out = cmd.output().expect("run baton");
        let all = text(&out);
        assert!(
            !all.contains(SECRET),
            "baton {args:?} showed a secret's value:\n{all}"
        );
        out
    };
    let ok = |args: &[&str]| -> String {
        let out = run(args);
        assert!(out.status.success(), "baton {args:?}: {}", text(&out));
        text(&out)
    };
    let in_project = |fake: &KubeFake| -> Vec<String> {
        fake.objects()
            .into_iter()
            .filter(|(_, o)| o["metadata"]["labels"]["io.baton.project"] == s.name.as_str())
            .map(|((plural, _, name), _)| format!("{plural}/{name}"))
            .collect()
    };

    // plan: what would be created, and each setting the cluster ignores.
    s.write("compose.yaml", &file(&c.target, "nginx:1.27-alpine", true));
    let out = run(&["plan"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "plan has changes: {shown}");
    let words = shown.split_whitespace().collect::<Vec<_>>().join(" ");
    for line in [
        "create Deployment web",
        "create Deployment worker",
        "create Service web",
        "create Secret api-key",
    ] {
        assert!(
            words.contains(line),
            "{line:?} missing from the plan: {shown}"
        );
    }
    assert!(shown.contains("services.worker.depends_on"), "{shown}");
    assert!(
        shown.contains("services.worker.pid: ignored by target prod (kubernetes)"),
        "{shown}"
    );
    if let Some(fake) = &c.fake {
        assert!(
            fake.requests().iter().all(|r| r.method == "GET"),
            "plan changed the cluster: {:?}",
            fake.requests()
        );
    }

    // up: every object by server-side apply, as baton, labelled, into the namespace.
    ok(&["up", "-d"]);
    if let Some(fake) = &c.fake {
        let patches: Vec<_> = fake
            .requests()
            .into_iter()
            .filter(|r| r.method == "PATCH")
            .collect();
        assert!(patches.len() >= 4, "{patches:#?}");
        for r in &patches {
            assert_eq!(
                r.content_type.as_deref(),
                Some("application/apply-patch+yaml"),
                "{r:?}"
            );
            assert_eq!(r.field_manager.as_deref(), Some("baton"), "{r:?}");
            assert!(
                r.path.contains(&format!("/namespaces/{}/", c.namespace)),
                "{r:?}"
            );
            let body = r.body.as_ref().expect("a JSON body");
            assert_eq!(
                body["metadata"]["labels"]["io.baton.project"],
                s.name.as_str(),
                "{r:?}"
            );
            assert_eq!(
                body["metadata"]["labels"]["app.kubernetes.io/managed-by"], "baton",
                "{r:?}"
            );
        }
        for object in [
            "deployments/web",
            "deployments/worker",
            "services/web",
            "secrets/api-key",
        ] {
            assert!(
                in_project(fake).contains(&object.to_string()),
                "{object}: {:?}",
                in_project(fake)
            );
        }
        fake.clear_requests();
    }

    // An unchanged up applies nothing.
    let again = ok(&["up", "-d"]);
    assert!(again.contains("nothing to do"), "{again}");
    if let Some(fake) = &c.fake {
        let changes: Vec<_> = fake
            .requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .collect();
        assert!(
            changes.is_empty(),
            "an unchanged up changed the cluster: {changes:#?}"
        );
    }

    // ps: the pods.
    let ps = ok(&["ps"]);
    assert!(ps.matches("web-").count() >= 2, "{ps}");
    assert!(ps.contains("worker-"), "{ps}");

    // scale web=3
    ok(&["scale", "web=3"]);
    if let Some(fake) = &c.fake {
        let web = fake
            .object("deployments", &c.namespace, "web")
            .expect("web");
        assert_eq!(web["spec"]["replicas"], 3, "{web}");
    }
    let ps = ok(&["ps"]);
    assert!(ps.matches("web-").count() >= 3, "{ps}");

    // A changed image rolls out, and up waits for it.
    s.write("compose.yaml", &file(&c.target, "nginx:1.28-alpine", true));
    ok(&["up", "-d"]);
    let status = ok(&["rollout", "status", "web"]);
    assert!(status.contains("completed"), "{status}");
    let ps = ok(&["ps"]);
    assert!(ps.contains("nginx:1.28-alpine"), "{ps}");

    // A service that left the file is pruned.
    s.write("compose.yaml", &file(&c.target, "nginx:1.28-alpine", false));
    ok(&["up", "-d"]);
    let ps = ok(&["ps"]);
    assert!(!ps.contains("worker-"), "{ps}");
    if let Some(fake) = &c.fake {
        assert!(fake.object("deployments", &c.namespace, "worker").is_none());
    }

    // A broken image fails up, naming the Deployment.
    s.write(
        "compose.yaml",
        &file(&c.target, "nginx:broken-on-purpose", false),
    );
    let out = run(&["up", "-d"]);
    let failed = text(&out);
    assert_eq!(out.status.code(), Some(1), "{failed}");
    assert!(failed.contains("Deployment web"), "{failed}");
    assert!(
        failed.contains("exceeded its progress deadline")
            || failed.contains("not rolled out after"),
        "{failed}"
    );
    if c.fake.is_some() {
        // The orchestrator's own status says so too (exit 1: not rolled out).
        let out = run(&["rollout", "status", "web"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("progress deadline"), "{}", text(&out));
    }

    // rollout undo: back to the previous template, rolled out.
    ok(&["rollout", "undo", "web"]);
    let status = ok(&["rollout", "status", "web"]);
    assert!(status.contains("completed"), "{status}");
    if let Some(fake) = &c.fake {
        let web = fake
            .object("deployments", &c.namespace, "web")
            .expect("web");
        assert_eq!(
            web["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.28-alpine",
            "{web}"
        );
    }

    // logs: every pod of the service.
    let logs = ok(&["logs", "web"]);
    if c.fake.is_some() {
        assert!(logs.contains("fake: running nginx:1.28-alpine"), "{logs}");
    }

    // down leaves nothing.
    ok(&["down"]);
    let ps = ok(&["ps"]);
    assert!(!ps.contains("web-"), "{ps}");
    if let Some(fake) = &c.fake {
        assert!(in_project(fake).is_empty(), "{:?}", in_project(fake));
    }
}

fn canary_file(target: &str, image: &str) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    ports: ['8080:80']\n    deploy:\n      replicas: 4\n    x-baton:\n      rollout:\n        strategy: canary\n        steps: [{{weight: 25, pause: 1s}}, {{weight: 50, pause: 0s}}]\n        analysis: {{max_error_rate: 0.01}}\ntargets:\n  prod: {target}\n"
    )
}

/// `x-baton.rollout.strategy: canary` on a cluster: a second Deployment `web-canary`
/// takes 1 of 4 pods, then 2 of 4 (the Service selects both), then the Deployment
/// itself rolls to the new template and the canary goes; a new replica count alone is
/// no canary; a broken version's canary is deleted and the Deployment scaled back.
#[test]
fn a_canary_on_a_kubernetes_target_moves_pods_step_by_step() {
    let s = Scratch::new("kcanary");
    let c = cluster(&s);
    let run = |args: &[&str]| -> Output {
        s.cmd()
            .env("KUBECONFIG", &c.kubeconfig)
            .env_remove("BATON_TARGET")
            .arg("--target")
            .arg("prod")
            .args(args)
            .output()
            .expect("run baton")
    };
    let ok = |args: &[&str]| -> String {
        let out = run(args);
        assert!(out.status.success(), "baton {args:?}: {}", text(&out));
        text(&out)
    };
    let image_of = |fake: &KubeFake, name: &str| -> Option<String> {
        fake.object("deployments", &c.namespace, name)
            .and_then(|d| {
                d["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .map(String::from)
            })
    };

    s.write("compose.yaml", &canary_file(&c.target, "nginx:1.27-alpine"));
    // The analysis thresholds are not judged there: plan says so, on its own line.
    let plan = text(&run(&["plan"]));
    assert!(
        plan.contains(
            "services.web.x-baton.rollout.analysis: not judged by target prod (kubernetes)"
        ),
        "{plan}"
    );
    assert!(!plan.contains("x-baton.rollout: ignored"), "{plan}");
    // The first up creates the Deployment: nothing to canary against.
    ok(&["up", "-d"]);
    if let Some(fake) = &c.fake {
        assert!(fake
            .object("deployments", &c.namespace, "web-canary")
            .is_none());
        fake.clear_requests();
    }

    // A new image: the canary steps.
    s.write("compose.yaml", &canary_file(&c.target, "nginx:1.28-alpine"));
    let started = std::time::Instant::now();
    ok(&["up", "-d"]);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "the first step's pause was kept"
    );
    if let Some(fake) = &c.fake {
        // What the cluster was asked, in order: (object, replicas) of each change.
        let steps: Vec<(String, String)> = fake
            .requests()
            .into_iter()
            .filter(|r| r.method != "GET" && r.path.contains("/deployments/"))
            .map(|r| {
                let name = r.path.rsplit('/').next().unwrap_or_default().to_string();
                let what = match (&r.method[..], &r.body) {
                    ("DELETE", _) => "delete".to_string(),
                    (_, Some(b)) => format!("replicas {}", b["spec"]["replicas"]),
                    _ => "?".into(),
                };
                (name, what)
            })
            .collect();
        let want: Vec<(String, String)> = [
            ("web-canary", "replicas 1"),
            ("web", "replicas 3"),
            ("web-canary", "replicas 2"),
            ("web", "replicas 2"),
            ("web", "replicas 4"),
            ("web-canary", "delete"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(steps, want);
        // The canary's pods: the service's labels (the Service selects them) and
        // the track; its own selector keeps the Deployments apart.
        let applied = fake
            .requests()
            .into_iter()
            .find(|r| r.path.ends_with("/deployments/web-canary") && r.method == "PATCH")
            .and_then(|r| r.body)
            .expect("the canary was applied");
        let labels = &applied["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["io.baton.service"], "web", "{applied}");
        assert_eq!(labels["io.baton.track"], "canary", "{applied}");
        assert_eq!(
            applied["spec"]["selector"]["matchLabels"]["io.baton.track"], "canary",
            "{applied}"
        );
        let service = fake
            .object("services", &c.namespace, "web")
            .expect("the Service");
        assert!(
            service["spec"]["selector"].get("io.baton.track").is_none(),
            "{service}"
        );
        assert!(fake
            .object("deployments", &c.namespace, "web-canary")
            .is_none());
        assert_eq!(image_of(fake, "web").as_deref(), Some("nginx:1.28-alpine"));
        fake.clear_requests();
    }
    let status = ok(&["rollout", "status", "web"]);
    assert!(status.contains("completed"), "{status}");

    // A new replica count alone: applied as is, no canary.
    s.write(
        "compose.yaml",
        &canary_file(&c.target, "nginx:1.28-alpine").replace("replicas: 4", "replicas: 5"),
    );
    ok(&["up", "-d"]);
    if let Some(fake) = &c.fake {
        assert!(
            fake.requests()
                .iter()
                .all(|r| !r.path.contains("web-canary")),
            "{:?}",
            fake.requests()
        );
        fake.clear_requests();
    }

    // A broken version: its canary never gets ready; it goes, web keeps its pods.
    s.write(
        "compose.yaml",
        &canary_file(&c.target, "nginx:broken-on-purpose").replace("replicas: 4", "replicas: 5"),
    );
    let out = run(&["up", "-d"]);
    let failed = text(&out);
    assert_eq!(out.status.code(), Some(1), "{failed}");
    assert!(failed.contains("did not become ready"), "{failed}");
    assert!(
        failed.contains("keeps serving the old version with 5 pods"),
        "{failed}"
    );
    if let Some(fake) = &c.fake {
        assert!(fake
            .object("deployments", &c.namespace, "web-canary")
            .is_none());
        let web = fake
            .object("deployments", &c.namespace, "web")
            .expect("web");
        assert_eq!(web["spec"]["replicas"], 5, "{web}");
        assert_eq!(image_of(fake, "web").as_deref(), Some("nginx:1.28-alpine"));
    }
    // The file is not what runs: plan says web changes.
    let out = run(&["plan"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // Back to the version that works: the next up is a plain apply again.
    s.write(
        "compose.yaml",
        &canary_file(&c.target, "nginx:1.28-alpine").replace("replicas: 4", "replicas: 5"),
    );
    ok(&["up", "-d"]);
    ok(&["down"]);
    if let Some(fake) = &c.fake {
        assert!(
            fake.objects()
                .iter()
                .all(|(_, o)| o["metadata"]["labels"]["io.baton.project"] != s.name.as_str()),
            "down left objects"
        );
    }
}
