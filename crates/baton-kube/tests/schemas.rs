//! Every Compose file of the shared corpus that baton accepts, and the examples, render
//! to manifests that validate against the official Kubernetes JSON schemas (PyPI's
//! `kubernetes-validate`, strict, Kubernetes 1.30), and the mapping holds for a file
//! that uses what it covers.

use std::path::{Path, PathBuf};
use std::process::Command;

use baton_kube::{render, to_yaml, RenderOptions};
use baton_spec::{load, LoadOptions, Project};
use serde_json::Value;

const KUBERNETES: &str = "1.30.0";

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("readable directory")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

fn load_file(file: &Path) -> Option<Project> {
    let opts = LoadOptions {
        files: vec![file.to_path_buf()],
        working_dir: file.parent()?.to_path_buf(),
        ..Default::default()
    };
    load(&opts).ok()
}

/// Whether the validator is on this machine; `BATON_REQUIRE_KUBE_SCHEMAS=1` (set by
/// scripts/test.sh) makes its absence a failure.
fn validator() -> bool {
    let ok = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("BATON_REQUIRE_KUBE_SCHEMAS").is_none(),
            "BATON_REQUIRE_KUBE_SCHEMAS is set but kubernetes-validate is missing (scripts/ensure-kube.sh installs it)"
        );
        eprintln!(
            "skipped: kubernetes-validate is not installed (pip install kubernetes-validate)"
        );
    }
    ok
}

#[test]
fn the_corpus_and_the_examples_render_to_valid_manifests() {
    if !validator() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    yaml_files(&root.join("../shared/compose-spec/fixtures"), &mut files);
    yaml_files(&root.join("examples"), &mut files);
    let out = tempfile::tempdir().unwrap();
    let mut rendered = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let Some(project) = load_file(file) else {
            continue;
        };
        if project.services.is_empty() {
            continue;
        }
        let r = render(
            &project,
            &RenderOptions {
                namespace: Some("shop".into()),
            },
        );
        assert!(
            !r.objects.is_empty(),
            "{}: nothing rendered",
            file.display()
        );
        let path = out.path().join(format!("{i:03}.yaml"));
        std::fs::write(&path, to_yaml(&r).unwrap()).unwrap();
        rendered.push((file.clone(), path));
    }
    assert!(
        rendered.len() > 20,
        "only {} files rendered",
        rendered.len()
    );
    let o = Command::new("python3")
        .args([
            "-m",
            "kubernetes_validate",
            "-k",
            KUBERNETES,
            "--strict",
            "--quiet",
        ])
        .args(rendered.iter().map(|(_, p)| p))
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let names: Vec<String> = rendered
        .iter()
        .map(|(f, p)| format!("{} <- {}", p.display(), f.display()))
        .collect();
    assert!(
        o.status.success() && !report.contains("ERROR"),
        "{report}\n{}",
        names.join("\n")
    );
}

fn kinds(r: &baton_kube::Rendered) -> Vec<String> {
    r.objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

fn find<'a>(r: &'a baton_kube::Rendered, kind: &str, name: &str) -> &'a Value {
    r.objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in {:?}", kinds(r)))
}

#[test]
fn the_mapping_covers_what_the_docs_table_says() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yaml");
    std::fs::write(
        &file,
        r#"name: shop
services:
  web:
    image: shop/web:1
    command: [serve, --port, "8080"]
    environment: {MODE: prod}
    ports: ["80:8080"]
    volumes: [data:/var/lib/web]
    secrets: [api_key]
    depends_on: [db]
    healthcheck: {test: [CMD, wget, -q, -O-, localhost:8080/health], interval: 5s, retries: 4}
    deploy:
      replicas: 3
      resources: {limits: {cpus: "0.5", memory: 256M}}
      update_config: {parallelism: 1, order: start-first}
    x-baton:
      rollout: {strategy: rolling}
      autoscale: {min: 2, max: 6, metrics: [{cpu: 70%}, {rps: 100}]}
      routes: [{host: shop.example.com, path: /, port: 8080}]
  db:
    image: postgres:16
    user: "999:999"
    volumes: [./init:/docker-entrypoint-initdb.d]
  seed:
    image: shop/seed:1
    restart: "no"
    depends_on: [db]
volumes:
  data: {}
secrets:
  api_key: {file: ./api_key.txt}
"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("api_key.txt"), "s3cret").unwrap();
    let p = load(&LoadOptions {
        files: vec![file.clone()],
        working_dir: dir.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap();
    let r = render(&p, &RenderOptions::default());
    assert_eq!(
        kinds(&r),
        [
            "PersistentVolumeClaim/data",
            "Secret/api-key",
            "Deployment/db",
            "Job/seed",
            "Deployment/web",
            "Service/web",
            "Ingress/web",
            "HorizontalPodAutoscaler/web",
            "PodDisruptionBudget/web",
        ]
    );
    let web = find(&r, "Deployment", "web");
    assert_eq!(
        web["spec"]["strategy"]["rollingUpdate"],
        serde_json::json!({"maxSurge": 1, "maxUnavailable": 0})
    );
    let c = &web["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["args"], serde_json::json!(["serve", "--port", "8080"]));
    assert_eq!(c["resources"]["limits"]["cpu"], "500m");
    assert_eq!(c["livenessProbe"]["exec"]["command"][0], "wget");
    assert_eq!(c["livenessProbe"]["periodSeconds"], 5);
    let svc = find(&r, "Service", "web");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    let ing = find(&r, "Ingress", "web");
    assert_eq!(ing["spec"]["rules"][0]["host"], "shop.example.com");
    let hpa = find(&r, "HorizontalPodAutoscaler", "web");
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    // The HPA owns the count: the Deployment does not say it, so an apply never
    // sets it back.
    let web = find(&r, "Deployment", "web");
    assert_eq!(web["spec"].get("replicas"), None, "{web:#}");
    assert_eq!(find(&r, "Deployment", "db")["spec"]["replicas"], 1);
    assert_eq!(hpa["spec"]["metrics"].as_array().unwrap().len(), 1);
    let seed = find(&r, "Job", "seed");
    assert_eq!(seed["spec"]["template"]["spec"]["restartPolicy"], "Never");
    let db = find(&r, "Deployment", "db");
    assert_eq!(
        db["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"],
        999
    );
    // What has no equivalent is said, one line each.
    for said in [
        "services.web.depends_on:",
        "services.web.x-baton.autoscale.metrics: Rps",
        "services.db.volumes[0]: a bind mount",
    ] {
        assert!(
            r.unsupported.iter().any(|u| u.starts_with(said)),
            "{said} not in {:#?}",
            r.unsupported
        );
    }
}
