//! `Kube` as an `Orchestrator`, driven directly against the fake API server of
//! `baton_tests::kube_fake` (a fake: no cluster runs on the test machine): plan, apply
//! by server-side apply, an unchanged re-plan, pods, scale, a rollout waited for, prune,
//! a broken rollout, undo, logs and down.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use baton_engine::apply::{Reporter, Step};
use baton_engine::orchestrate::{Orchestrator, Planned};
use baton_engine::plan::{Action, PlanOptions};
use baton_engine::runtime::{LogOptions, Runtime, RuntimeError};
use baton_kube::Kube;
use baton_spec::{load, LoadOptions, Project};
use baton_tests::kube_fake::KubeFake;
use futures_util::StreamExt;
use serde_json::Value;

const SECRET: &str = "s3cr3t-value-never-shown";

#[derive(Default)]
struct Record(Mutex<Vec<String>>);

impl Reporter for Record {
    fn report(&self, step: Step<'_>) {
        let line = match step {
            Step::Started { target, what } => format!("started {target}: {what}"),
            Step::Waiting { target, on } => format!("waiting {target}: {on}"),
            Step::Done { target, what } => format!("done {target}: {what}"),
            Step::Failed { target, error } => format!("failed {target}: {error}"),
        };
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }
}

impl Record {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn project(dir: &Path, web_image: &str, with_worker: bool) -> Project {
    project_with_job(dir, web_image, with_worker, "1")
}

/// With a service that runs once (`restart: "no"`, a Job) whose command says `step`.
fn project_with_job(dir: &Path, web_image: &str, with_worker: bool, step: &str) -> Project {
    let worker = if with_worker {
        "  worker:\n    image: busybox:1.36\n    command: [sleep, infinity]\n    depends_on: [web]\n    pid: host\n"
    } else {
        ""
    };
    let text = format!(
        "name: shop\nservices:\n  web:\n    image: {web_image}\n    ports: [\"8080:80\"]\n    healthcheck:\n      test: [CMD, wget, -q, -O-, http://localhost/]\n      interval: 5s\n    deploy:\n      replicas: 2\n    secrets: [api_key]\n    volumes: ['data:/data']\n    x-baton:\n      rollout: {{strategy: blue-green}}\n      healthcheck: {{http: {{port: 80, path: /}}}}\n{worker}  migrate:\n    image: busybox:1.36\n    command: [echo, '{step}']\n    restart: 'no'\n  agent:\n    image: busybox:1.36\n    deploy:\n      mode: global\nvolumes:\n  data: {{}}\nsecrets:\n  api_key:\n    file: ./api_key.txt\n"
    );
    std::fs::write(dir.join("api_key.txt"), SECRET).expect("secret file");
    let file = dir.join("compose.yaml");
    std::fs::write(&file, text).expect("compose file");
    load(&LoadOptions {
        files: vec![file],
        working_dir: dir.to_path_buf(),
        ..Default::default()
    })
    .expect("the project loads")
}

fn lines(planned: &Planned) -> Vec<String> {
    planned
        .plan
        .actions
        .iter()
        .map(|a| match a {
            Action::Put {
                kind,
                name,
                create,
                changes,
                ..
            } => format!("put {kind} {name} create={create} {changes:?}"),
            Action::Delete {
                kind, name, reason, ..
            } => format!("delete {kind} {name}: {reason}"),
            other => format!("{other:?}"),
        })
        .collect()
}

/// Every configuration planned so far, by hash, as the store keeps them.
#[derive(Default)]
struct Store(Mutex<BTreeMap<String, Value>>);

impl Store {
    fn keep(&self, planned: &Planned) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for d in &planned.desired {
            m.insert(d.hash(), d.config.clone());
        }
    }
    fn get(&self, hash: &str) -> Option<Value> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
            .cloned()
    }
}

async fn plan(kube: &Kube, project: &Project, store: &Store) -> Planned {
    let previous = |h: &str| store.get(h);
    let planned = kube
        .plan(project, &PlanOptions::default(), &previous)
        .await
        .expect("plan");
    store.keep(&planned);
    planned
}

fn in_project(fake: &KubeFake) -> Vec<(String, String)> {
    fake.objects()
        .into_iter()
        .filter(|(_, o)| o["metadata"]["labels"]["io.baton.project"] == "shop")
        .map(|((plural, _, name), _)| (plural, name))
        .collect()
}

#[tokio::test]
async fn a_project_goes_up_rolls_out_is_pruned_rolls_back_and_goes_down() {
    let fake = KubeFake::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig, "fake");
    // The one test in this binary: nothing else reads the environment meanwhile.
    std::env::set_var("KUBECONFIG", &kubeconfig);
    let e = Kube::connect(Some("no-such-context"), None)
        .await
        .expect_err("no such context");
    assert!(e.to_string().contains("no-such-context"), "{e}");
    let kube = Kube::connect(Some("fake"), Some("shop"))
        .await
        .expect("connect")
        .named("prod (kubernetes)");
    assert_eq!(kube.namespace(), "shop");
    let orchestrator = kube.orchestrator().expect("an orchestrator");
    assert_eq!(orchestrator.kind(), "kubernetes");
    let store = Store::default();

    // Plan: every object created, every ignored setting one line.
    let p = project(dir.path(), "nginx:1.27", true);
    let planned = plan(&kube, &p, &store).await;
    let mut got = lines(&planned);
    got.sort();
    assert_eq!(
        got,
        vec![
            "put DaemonSet agent create=true []",
            "put Deployment web create=true []",
            "put Deployment worker create=true []",
            "put Ingress web create=true []",
            "put Job migrate create=true []",
            "put PersistentVolumeClaim data create=true []",
            "put Secret api-key create=true []",
            "put Service web create=true []",
        ]
    );
    let warnings = planned.plan.warnings.join("\n");
    assert!(
        warnings.contains("services.worker.depends_on: pods start together"),
        "{warnings}"
    );
    assert!(
        warnings.contains("services.web.x-baton.rollout.strategy: blue-green is not carried out by target prod (kubernetes): the Deployment rolls"),
        "{warnings}"
    );
    assert!(
        !warnings.contains("x-baton: ignored") && !warnings.contains("x-baton.healthcheck"),
        "{warnings}"
    );
    assert!(
        warnings.contains("services.worker.pid: ignored by target prod (kubernetes)"),
        "{warnings}"
    );
    let shown = format!("{:?}", planned.desired);
    assert!(
        !shown.contains(SECRET),
        "a plan shows a secret's value: {shown}"
    );

    // Up: each object by server-side apply, as baton, labelled, into namespace shop.
    fake.clear_requests();
    let record = Record::default();
    kube.apply(&p, &planned, &record).await.expect("apply");
    let patches: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 8, "{patches:#?}");
    for r in &patches {
        assert_eq!(
            r.content_type.as_deref(),
            Some("application/apply-patch+yaml"),
            "{r:?}"
        );
        assert_eq!(r.field_manager.as_deref(), Some("baton"), "{r:?}");
        assert_eq!(
            r.query.get("force").map(String::as_str),
            Some("true"),
            "{r:?}"
        );
        assert!(r.path.contains("/namespaces/shop/"), "{r:?}");
        let body = r.body.as_ref().expect("a JSON body");
        assert_eq!(
            body["metadata"]["labels"]["io.baton.project"], "shop",
            "{r:?}"
        );
        assert_eq!(
            body["metadata"]["labels"]["app.kubernetes.io/managed-by"], "baton",
            "{r:?}"
        );
        assert!(
            body["metadata"]["annotations"]["io.baton.config-hash"].is_string(),
            "{r:?}"
        );
    }
    let secret = fake
        .object("secrets", "shop", "api-key")
        .expect("the secret");
    assert!(
        secret["data"]["api_key.txt"].is_string() || secret["data"]["api_key"].is_string(),
        "{secret}"
    );
    let web = fake.object("deployments", "shop", "web").expect("web");
    assert_eq!(web["metadata"]["managedFields"][0]["manager"], "baton");
    let progress = record.lines();
    assert!(
        progress
            .iter()
            .any(|l| l == "done Deployment web: rolled out"),
        "{progress:?}"
    );
    assert!(!progress.join("\n").contains(SECRET));
    assert!(
        progress
            .iter()
            .any(|l| l == "done DaemonSet agent: rolled out"),
        "{progress:?}"
    );
    // The fake's controller catches up one read late: the wait saw that and said so.
    assert!(
        progress
            .iter()
            .any(|l| l.starts_with("waiting Deployment web: deployment web: waiting")),
        "{progress:?}"
    );

    // Unchanged: nothing to do, nothing applied.
    fake.clear_requests();
    let again = plan(&kube, &p, &store).await;
    assert!(again.plan.actions.is_empty(), "{:?}", lines(&again));
    assert_eq!(
        again.plan.up_to_date,
        vec!["agent", "migrate", "web", "worker"]
    );
    kube.apply(&p, &again, &Record::default())
        .await
        .expect("apply nothing");
    assert!(
        fake.requests().iter().all(|r| r.method == "GET"),
        "{:?}",
        fake.requests()
    );

    // ps: the pods, by service.
    let tasks = kube.tasks("shop").await.expect("tasks");
    let web_pods: Vec<_> = tasks.iter().filter(|t| t.service == "web").collect();
    assert_eq!(web_pods.len(), 2, "{tasks:#?}");
    assert!(
        web_pods
            .iter()
            .all(|t| t.state == "running" && t.node == "fake-node-1" && t.image == "nginx:1.27"),
        "{tasks:#?}"
    );
    assert_eq!(tasks.iter().filter(|t| t.service == "worker").count(), 1);
    assert_eq!(
        tasks.iter().filter(|t| t.service == "agent").count(),
        1,
        "{tasks:#?}"
    );

    // scale: a Deployment's replicas; a global service refused by name.
    fake.clear_requests();
    kube.scale("shop", "web", 3).await.expect("scale");
    let patch = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .expect("a patch");
    assert_eq!(
        (
            patch.content_type.as_deref(),
            patch.field_manager.as_deref()
        ),
        (Some("application/merge-patch+json"), Some("baton")),
        "{patch:?}"
    );
    let status = kube.update_status("shop", "web").await.expect("status");
    assert_eq!(
        (status.state.as_str(), status.running, status.desired),
        ("completed", 3, 3),
        "{status:?}"
    );
    assert_eq!(
        kube.tasks("shop")
            .await
            .expect("tasks")
            .iter()
            .filter(|t| t.service == "web")
            .count(),
        3
    );
    let e = kube
        .scale("shop", "agent", 2)
        .await
        .expect_err("a DaemonSet is not scaled");
    assert!(
        matches!(e, RuntimeError::Unsupported(_)) && e.to_string().contains("global"),
        "{e}"
    );
    let agent = kube
        .update_status("shop", "agent")
        .await
        .expect("a global service's status");
    assert_eq!(
        (agent.state.as_str(), agent.running, agent.desired),
        ("completed", 1, 1),
        "{agent:?}"
    );
    let e = kube
        .undo("shop", "agent")
        .await
        .expect_err("baton does not roll a DaemonSet back");
    assert!(
        e.to_string().contains("kubectl rollout undo daemonset"),
        "{e}"
    );
    let e = kube
        .scale("shop", "nope", 2)
        .await
        .expect_err("no such service");
    assert!(e.to_string().contains("Deployment nope"), "{e}");

    // A new image rolls out, with the changed field named, and is waited for.
    let p = project(dir.path(), "nginx:1.28", true);
    let planned = plan(&kube, &p, &store).await;
    assert_eq!(
        lines(&planned),
        vec!["put Deployment web create=false [\"spec.template.spec.containers[0].image\"]"]
    );
    let record = Record::default();
    kube.apply(&p, &planned, &record).await.expect("roll out");
    assert!(record
        .lines()
        .iter()
        .any(|l| l == "done Deployment web: rolled out"));
    let tasks = kube.tasks("shop").await.expect("tasks");
    assert!(
        tasks
            .iter()
            .filter(|t| t.service == "web")
            .all(|t| t.image == "nginx:1.28"),
        "{tasks:#?}"
    );

    // A service that left the file is pruned.
    let p = project(dir.path(), "nginx:1.28", false);
    let planned = plan(&kube, &p, &store).await;
    assert_eq!(
        lines(&planned),
        vec!["delete Deployment worker: its service left the file"]
    );
    let record = Record::default();
    kube.apply(&p, &planned, &record).await.expect("prune");
    // Its pods terminate in the background: the apply waited for them.
    assert!(
        record
            .lines()
            .iter()
            .any(|l| l == "waiting pods of service worker: 1 pods to terminate"),
        "{:?}",
        record.lines()
    );
    assert!(fake.object("deployments", "shop", "worker").is_none());
    assert!(kube
        .tasks("shop")
        .await
        .expect("tasks")
        .iter()
        .all(|t| t.service != "worker"));

    // A broken image fails, naming the Deployment; the old pods stay.
    let p = project(dir.path(), "nginx:broken", false);
    let planned = plan(&kube, &p, &store).await;
    let record = Record::default();
    let e = kube
        .apply(&p, &planned, &record)
        .await
        .expect_err("a broken rollout fails");
    let text = e.to_string();
    assert!(
        text.contains("Deployment web") && text.contains("progress deadline"),
        "{text}"
    );
    assert!(text.contains("prod (kubernetes)"), "{text}");
    assert!(
        record
            .lines()
            .iter()
            .any(|l| l.starts_with("failed Deployment web")),
        "{:?}",
        record.lines()
    );
    let status = kube.update_status("shop", "web").await.expect("status");
    assert_eq!(status.state, "paused", "{status:?}");

    // Undo: the previous ReplicaSet's template back on the Deployment.
    kube.undo("shop", "web").await.expect("undo");
    let web = fake.object("deployments", "shop", "web").expect("web");
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.28"
    );
    assert!(
        web["spec"]["template"]["metadata"]["labels"]
            .get("pod-template-hash")
            .is_none(),
        "{web}"
    );
    let tasks = kube.tasks("shop").await.expect("tasks");
    let web_pods: Vec<_> = tasks.iter().filter(|t| t.service == "web").collect();
    assert!(
        !web_pods.is_empty()
            && web_pods
                .iter()
                .all(|t| t.image == "nginx:1.28" && t.state == "running"),
        "{tasks:#?}"
    );
    // The next `up` of the same (broken) file is a change again, not "up to date".
    let planned = plan(&kube, &p, &store).await;
    assert_eq!(planned.plan.actions.len(), 1, "{:?}", lines(&planned));

    // A changed Job is run anew: its template cannot change in place.
    // (web goes back to the file's version too, which `undo` left.)
    let p = project_with_job(dir.path(), "nginx:1.28", false, "2");
    let planned = plan(&kube, &p, &store).await;
    assert_eq!(
        lines(&planned),
        vec![
            "put Job migrate create=false [\"spec.template.spec.containers[0].args[1]\"]",
            "put Deployment web create=false [\"configuration (changed outside baton or before it kept it)\"]",
        ]
    );
    let before = fake.object("jobs", "shop", "migrate").expect("the job");
    fake.clear_requests();
    kube.apply(&p, &planned, &Record::default())
        .await
        .expect("the job again");
    let calls: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.method != "GET" && r.path.contains("/jobs/"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        calls,
        vec![
            "DELETE /apis/batch/v1/namespaces/shop/jobs/migrate",
            "PATCH /apis/batch/v1/namespaces/shop/jobs/migrate",
        ]
    );
    let after = fake.object("jobs", "shop", "migrate").expect("the job");
    assert_ne!(before["metadata"]["uid"], after["metadata"]["uid"]);

    // Logs: every pod of the service.
    let mut stream = kube.logs("shop", "web", &LogOptions::default());
    let mut got = Vec::new();
    while let Some(line) = stream.next().await {
        got.push(line.expect("a log line").text);
    }
    assert!(
        got.iter().any(|l| l.contains("fake: running nginx:1.28")),
        "{got:?}"
    );

    // Down keeps the claims unless asked; then nothing of the project is left.
    let record = Record::default();
    let removed = kube.down("shop", false, &record).await.expect("down");
    assert_eq!(
        in_project(&fake),
        vec![("persistentvolumeclaims".to_string(), "data".to_string())]
    );
    assert!(!removed
        .objects
        .iter()
        .any(|o| o.starts_with("PersistentVolumeClaim")));
    let gone = kube
        .down("shop", true, &Record::default())
        .await
        .expect("down -v");
    assert_eq!(gone.objects, vec!["PersistentVolumeClaim data".to_string()]);
    assert!(
        record
            .lines()
            .iter()
            .any(|l| l.starts_with("waiting pods of project shop:")),
        "{:?}",
        record.lines()
    );
    assert!(
        removed.objects.contains(&"Deployment web".to_string()),
        "{removed:?}"
    );
    assert!(in_project(&fake).is_empty(), "{:?}", in_project(&fake));
    assert!(kube.tasks("shop").await.expect("tasks").is_empty());

    // An https cluster that does not answer: the client is made (TLS with the one
    // crypto provider baton builds), the first request says the target is unreachable.
    let tls = dir.path().join("kubeconfig-tls");
    std::fs::write(
        &tls,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: far\n  cluster:\n    server: https://127.0.0.1:1\nusers:\n- name: u\n  user: {token: not-a-real-token}\ncontexts:\n- name: far\n  context: {cluster: far, user: u}\ncurrent-context: far\n",
    )
    .expect("kubeconfig");
    std::env::set_var("KUBECONFIG", &tls);
    let far = Kube::connect(Some("far"), None)
        .await
        .expect("a client for an https cluster")
        .named("far (kubernetes)");
    assert_eq!(far.namespace(), "default");
    let e = far.tasks("shop").await.expect_err("nothing answers");
    let text = e.to_string();
    assert!(matches!(e, RuntimeError::Unavailable(_)), "{text}");
    assert!(text.contains("target far (kubernetes)"), "{text}");
    assert!(!text.contains("not-a-real-token"), "{text}");
}
