//! Tests against the real Docker Engine: lifecycle from a hand-made `ContainerSpec`,
//! pull failures, builds with `.dockerignore`, logs and exec. No mocks.
//!
//! They skip (with a message) when no engine answers, unless `BATON_REQUIRE_DOCKER` is
//! set. They use `baton-test/busybox:latest` (see `scripts/make-test-image.sh`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use baton_docker::{Docker, ExecOptions, ImageFilter, LogOptions, OutputStream};
use baton_engine::runtime::{
    labels, BuildSpec, ContainerSpec, ContainerState, FileMount, Health, NetworkAttachment,
    NetworkSpec, Runtime, RuntimeError, VolumeSpec,
};
use baton_spec::{Healthcheck, Mount, Port, Service};
use futures_util::StreamExt;

const IMAGE: &str = "baton-test/busybox:latest";

/// The engine, or `None` (test skipped) when it is unreachable and not required.
async fn engine() -> Option<Docker> {
    match Docker::connect().await {
        Ok(d) => {
            if !d.image_exists(IMAGE).await.unwrap_or(false) {
                assert!(
                    std::env::var_os("BATON_REQUIRE_DOCKER").is_none(),
                    "test image {IMAGE} missing; run scripts/make-test-image.sh"
                );
                eprintln!("skipped: test image {IMAGE} missing; run scripts/make-test-image.sh");
                return None;
            }
            Some(d)
        }
        Err(e) if std::env::var_os("BATON_REQUIRE_DOCKER").is_some() => {
            panic!("BATON_REQUIRE_DOCKER is set but the engine is unreachable: {e}")
        }
        Err(e) => {
            eprintln!("skipped: docker engine unreachable ({e})");
            None
        }
    }
}

fn unique(test: &str) -> String {
    format!("baton-t-{}-{test}", std::process::id())
}

/// Removes what a test made, even when it panics.
#[derive(Default)]
struct Cleanup {
    containers: Vec<String>,
    networks: Vec<String>,
    volumes: Vec<String>,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let containers = std::mem::take(&mut self.containers);
        let networks = std::mem::take(&mut self.networks);
        let volumes = std::mem::take(&mut self.volumes);
        let images = std::mem::take(&mut self.images);
        // A fresh runtime on its own thread: drop may run inside the test's runtime.
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(d) = Docker::connect().await else {
                    return;
                };
                for c in &containers {
                    let _ = d.remove_container(c).await;
                }
                for n in &networks {
                    let _ = d.remove_network(n).await;
                }
                for v in &volumes {
                    let _ = d.remove_volume(v).await;
                }
                for i in &images {
                    let _ = d.image_remove(i, true).await;
                }
            });
        });
        let _ = done.join();
    }
}

fn attachment(network: &str, aliases: &[&str]) -> NetworkAttachment {
    NetworkAttachment {
        network: network.to_string(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        ipv4_address: None,
        ipv6_address: None,
    }
}

fn base_spec(name: &str, project: &str, command: &[&str]) -> ContainerSpec {
    ContainerSpec {
        name: name.to_string(),
        project: project.to_string(),
        service_name: "app".to_string(),
        replica: 1,
        image: IMAGE.to_string(),
        service: Service {
            command: Some(command.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        },
        labels: BTreeMap::from([
            (labels::PROJECT.to_string(), project.to_string()),
            (labels::SERVICE.to_string(), "app".to_string()),
            (labels::REPLICA.to_string(), "1".to_string()),
        ]),
        env: vec![],
        networks: vec![],
        mounts: vec![],
        files: vec![],
        hostname: None,
    }
}

async fn exec_code(d: &Docker, id: &str, script: &str) -> i64 {
    let options = ExecOptions {
        cmd: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    };
    d.exec_to(id, &options, tokio::io::sink(), tokio::io::sink())
        .await
        .unwrap()
}

#[tokio::test]
async fn container_lifecycle_from_spec() {
    let Some(d) = engine().await else { return };
    let mut clean = Cleanup::default();
    let project = unique("life");
    let (front, back, vol) = (
        format!("{project}_front"),
        format!("{project}_back"),
        format!("{project}_data"),
    );
    let resource_labels = BTreeMap::from([(labels::PROJECT.to_string(), project.clone())]);
    for net in [&front, &back] {
        clean.networks.push(net.clone());
        let spec = NetworkSpec {
            name: net.clone(),
            driver: None,
            driver_opts: BTreeMap::new(),
            internal: false,
            attachable: false,
            enable_ipv6: false,
            ipam: None,
            labels: resource_labels.clone(),
        };
        d.create_network(&spec).await.unwrap();
        // A second create of the same name is a conflict, not a duplicate network.
        assert!(matches!(
            d.create_network(&spec).await,
            Err(RuntimeError::Conflict { .. })
        ));
    }
    assert!(d.network_exists(&front).await.unwrap());
    clean.volumes.push(vol.clone());
    d.create_volume(&VolumeSpec {
        name: vol.clone(),
        driver: None,
        driver_opts: BTreeMap::new(),
        labels: resource_labels.clone(),
    })
    .await
    .unwrap();
    assert!(d.volume_exists(&vol).await.unwrap());

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.conf");
    std::fs::write(&file, "hello").unwrap();

    let name = format!("{project}-app-1");
    let mut spec = base_spec(&name, &project, &["sleep", "300"]);
    spec.service.healthcheck = Some(Healthcheck {
        test: vec!["CMD-SHELL".into(), "test -d /data".into()],
        interval: Some(baton_spec::Duration(500)),
        timeout: Some(baton_spec::Duration(2000)),
        retries: Some(3),
        ..Default::default()
    });
    spec.service.ports = vec![Port {
        target: 8080,
        published: None,
        host_ip: Some("127.0.0.1".into()),
        protocol: "tcp".into(),
        mode: None,
        name: None,
        app_protocol: None,
    }];
    spec.service.stop_grace_period = Some(baton_spec::Duration(1000));
    spec.labels
        .insert(labels::CONFIG_HASH.to_string(), "abc123".to_string());
    spec.labels.insert("com.example.team".into(), "web".into());
    spec.env = vec!["GREETING=hi".into()];
    spec.networks = vec![
        attachment(&front, &["app", "web"]),
        attachment(&back, &["app"]),
    ];
    spec.mounts = vec![Mount {
        kind: "volume".into(),
        source: Some(vol.clone()),
        target: "/data".into(),
        read_only: false,
        consistency: None,
        bind: None,
        volume: None,
        tmpfs: None,
    }];
    spec.files = vec![FileMount {
        source: file.clone(),
        target: "/etc/app.conf".into(),
        mode: None,
    }];
    spec.hostname = Some("app".into());

    clean.containers.push(name.clone());
    let id = d.create_container(&spec).await.unwrap();
    assert!(matches!(
        d.create_container(&spec).await,
        Err(RuntimeError::Conflict { .. })
    ));
    d.start_container(&id).await.unwrap();
    d.start_container(&id).await.unwrap();

    let observed = d.observe(&project).await.unwrap();
    assert_eq!(observed.containers.len(), 1, "{observed:?}");
    let c = &observed.containers[0];
    assert_eq!(c.id, id);
    assert_eq!(c.name, name);
    assert_eq!(c.service, "app");
    assert_eq!(c.replica, 1);
    assert_eq!(c.config_hash, "abc123");
    assert!(!c.oneoff);
    assert_eq!(c.image, IMAGE);
    assert_eq!(c.state, ContainerState::Running);
    assert_eq!(c.labels["com.example.team"], "web");
    assert!(c.created > 0);
    assert!(
        c.ports
            .iter()
            .any(|p| p.starts_with("127.0.0.1:") && p.ends_with("->8080/tcp")),
        "{:?}",
        c.ports
    );
    let mut nets: Vec<_> = observed.networks.iter().map(|n| n.name.clone()).collect();
    nets.sort();
    assert_eq!(nets, vec![back.clone(), front.clone()]);
    assert!(observed.networks.iter().all(|n| n.created > 0));
    assert_eq!(observed.volumes.len(), 1);
    assert_eq!(observed.volumes[0].name, vol);

    // Health reaches healthy, seen both by inspect and by the list call.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = d.inspect_container(&id).await.unwrap();
        if c.health == Health::Healthy {
            assert_eq!(c.status, "running (healthy)");
            assert!(c.ports.iter().any(|p| p.ends_with("->8080/tcp")));
            break;
        }
        assert!(Instant::now() < deadline, "never healthy: {c:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let listed = d.observe(&project).await.unwrap();
    assert_eq!(listed.containers[0].health, Health::Healthy);

    // Everything the spec asked for is inside the container.
    assert_eq!(
        exec_code(&d, &id, "test \"$(cat /etc/app.conf)\" = hello").await,
        0
    );
    assert_ne!(
        exec_code(&d, &id, "echo x > /etc/app.conf").await,
        0,
        "file is read-only"
    );
    assert_eq!(exec_code(&d, &id, "test \"$GREETING\" = hi").await, 0);
    assert_eq!(exec_code(&d, &id, "test \"$(hostname)\" = app").await, 0);
    assert_eq!(
        exec_code(&d, &id, "test -e /sys/class/net/eth1").await,
        0,
        "two networks"
    );
    assert_eq!(exec_code(&d, &id, "touch /data/x").await, 0);

    // `sleep` as pid 1 ignores SIGTERM: stop must give up after the 1s grace and kill.
    let started = Instant::now();
    d.stop_container(&id, Duration::from_secs(1), None)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let c = d.inspect_container(&id).await.unwrap();
    assert_eq!(c.state, ContainerState::Exited);
    assert_eq!(c.exit_code, Some(137));
    // Stopping an exited container is fine.
    d.stop_container(&id, Duration::from_secs(1), None)
        .await
        .unwrap();
    let listed = d.observe(&project).await.unwrap();
    assert_eq!(listed.containers[0].exit_code, Some(137));

    d.remove_container(&id).await.unwrap();
    assert!(matches!(
        d.remove_container(&id).await,
        Err(RuntimeError::NotFound { .. })
    ));
    d.remove_network(&front).await.unwrap();
    d.remove_network(&back).await.unwrap();
    d.remove_volume(&vol).await.unwrap();
    assert!(!d.volume_exists(&vol).await.unwrap());
    assert_eq!(d.observe(&project).await.unwrap(), Default::default());
}

#[tokio::test]
async fn stop_with_a_custom_signal() {
    let Some(d) = engine().await else { return };
    let mut clean = Cleanup::default();
    let name = unique("signal");
    let spec = base_spec(
        &name,
        &name,
        &[
            "sh",
            "-c",
            "trap 'exit 7' USR1; while true; do sleep 0.1; done",
        ],
    );
    clean.containers.push(name.clone());
    let id = d.create_container(&spec).await.unwrap();
    d.start_container(&id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.stop_container(&id, Duration::from_secs(5), Some("SIGUSR1"))
        .await
        .unwrap();
    assert_eq!(d.inspect_container(&id).await.unwrap().exit_code, Some(7));
}

#[tokio::test]
async fn pulling_a_missing_image_is_image_not_found() {
    let Some(d) = engine().await else { return };
    let image = format!("baton-test/does-not-exist-{}:nope", std::process::id());
    let lines = std::sync::Mutex::new(Vec::<String>::new());
    let progress = |l: &str| lines.lock().unwrap().push(l.to_string());
    match d.pull_image(&image, &progress).await {
        Err(RuntimeError::ImageNotFound {
            image: named,
            detail,
        }) => {
            assert_eq!(named, image);
            assert!(!detail.is_empty());
            let msg = RuntimeError::ImageNotFound {
                image: named,
                detail,
            }
            .to_string();
            assert!(msg.contains(&image), "{msg}");
        }
        other => panic!("expected ImageNotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn build_honours_dockerignore_and_args() {
    let Some(d) = engine().await else { return };
    let mut clean = Cleanup::default();
    let tag = format!("baton-test/build-{}:one", std::process::id());
    let tag2 = format!("baton-test/build-{}:two", std::process::id());
    clean.images.push(tag.clone());
    clean.images.push(tag2.clone());
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM baton-test/busybox:latest\nARG FLAVOUR\nCOPY . /ctx/\nRUN echo \"$FLAVOUR\" > /flavour\n",
    )
    .unwrap();
    std::fs::write(
        ctx.path().join(".dockerignore"),
        "# keep secrets out\nsecret.txt\n",
    )
    .unwrap();
    std::fs::write(ctx.path().join("secret.txt"), "s3cret").unwrap();
    std::fs::write(ctx.path().join("kept.txt"), "kept").unwrap();
    let spec = BuildSpec {
        context: ctx.path().to_path_buf(),
        dockerfile: "Dockerfile".into(),
        dockerfile_inline: None,
        args: BTreeMap::from([("FLAVOUR".into(), "mint".into())]),
        target: None,
        labels: BTreeMap::from([("io.baton.test".into(), "build".into())]),
        tags: vec![tag.clone(), tag2.clone()],
    };
    let lines = std::sync::Mutex::new(Vec::<String>::new());
    let progress = |l: &str| lines.lock().unwrap().push(l.to_string());
    d.build_image(&spec, &progress).await.unwrap();
    assert!(!lines.lock().unwrap().is_empty());
    assert!(d.image_exists(&tag2).await.unwrap());
    let listed = d
        .images_list(&ImageFilter {
            reference: None,
            labels: vec!["io.baton.test=build".into()],
        })
        .await
        .unwrap();
    assert!(listed
        .iter()
        .any(|i| i.tags.contains(&tag) && i.tags.contains(&tag2)));

    let name = unique("build-run");
    clean.containers.push(name.clone());
    let mut run = base_spec(
        &name,
        &name,
        &[
            "sh",
            "-c",
            "test ! -e /ctx/secret.txt && test -e /ctx/kept.txt && test \"$(cat /flavour)\" = mint",
        ],
    );
    run.image = tag.clone();
    let id = d.create_container(&run).await.unwrap();
    d.start_container(&id).await.unwrap();
    assert_eq!(d.wait_container(&id).await.unwrap(), 0);

    // A failing step is `Failed` with the engine's message.
    let bad = BuildSpec {
        dockerfile_inline: Some("FROM baton-test/busybox:latest\nRUN exit 3\n".into()),
        tags: vec![format!("baton-test/build-{}:bad", std::process::id())],
        ..spec
    };
    match d.build_image(&bad, &|_| {}).await {
        Err(RuntimeError::Failed { op, detail }) => {
            assert!(op.starts_with("build "), "{op}");
            assert!(detail.contains("non-zero code: 3"), "{detail}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn logs_of_an_echoing_container() {
    let Some(d) = engine().await else { return };
    let mut clean = Cleanup::default();
    let name = unique("logs");
    clean.containers.push(name.clone());
    let spec = base_spec(
        &name,
        &name,
        &["sh", "-c", "echo one; echo two >&2; echo three"],
    );
    let id = d.create_container(&spec).await.unwrap();
    d.start_container(&id).await.unwrap();
    assert_eq!(d.wait_container(&id).await.unwrap(), 0);
    let lines: Vec<_> = d
        .logs(&id, &LogOptions::default())
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    // stdout and stderr are separate pipes: order is kept within each, not across.
    let of = |stream| -> Vec<&str> {
        lines
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| l.text.as_str())
            .collect()
    };
    assert_eq!(of(OutputStream::Stdout), vec!["one", "three"]);
    assert_eq!(of(OutputStream::Stderr), vec!["two"]);
    let tail: Vec<_> = d
        .logs(
            &id,
            &LogOptions {
                tail: Some(1),
                follow: true,
                timestamps: false,
            },
        )
        .collect::<Vec<_>>()
        .await;
    assert_eq!(tail.len(), 1);
}

#[tokio::test]
async fn exec_returns_the_exit_code() {
    let Some(d) = engine().await else { return };
    let mut clean = Cleanup::default();
    let name = unique("exec");
    clean.containers.push(name.clone());
    let id = d
        .create_container(&base_spec(&name, &name, &["sleep", "300"]))
        .await
        .unwrap();
    d.start_container(&id).await.unwrap();
    let mut out = Vec::new();
    let options = ExecOptions {
        cmd: vec!["sh".into(), "-c".into(), "echo \"$A\"; exit 3".into()],
        env: vec!["A=from-exec".into()],
        workdir: Some("/tmp".into()),
        ..Default::default()
    };
    let code = d
        .exec_to(&id, &options, &mut out, tokio::io::sink())
        .await
        .unwrap();
    assert_eq!(code, 3);
    assert_eq!(String::from_utf8_lossy(&out), "from-exec\n");
    assert_eq!(exec_code(&d, &id, "test \"$(pwd)\" = /").await, 0);

    let stats = d.stats_once(&id).await.unwrap();
    assert!(stats.pids >= 1 && stats.mem_usage > 0, "{stats:?}");

    d.kill_container(&id, None).await.unwrap();
    assert_eq!(d.wait_container(&id).await.unwrap(), 137);
    // Killing a stopped container is not an error.
    d.kill_container(&id, None).await.unwrap();
    assert!(matches!(
        d.exec_to(&id, &options, tokio::io::sink(), tokio::io::sink())
            .await,
        Err(RuntimeError::Failed { .. })
    ));
}

#[tokio::test]
async fn save_and_load_round_trip() {
    let Some(d) = engine().await else { return };
    let mut clean = Cleanup::default();
    let tag = format!("baton-test/save-{}:x", std::process::id());
    clean.images.push(tag.clone());
    d.image_tag(IMAGE, &tag).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img.tar");
    d.image_save(&[tag.as_str()], &path).await.unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > 0);
    d.image_remove(&tag, false).await.unwrap();
    assert!(!d.image_exists(&tag).await.unwrap());
    let lines = d.image_load(&path).await.unwrap();
    assert!(lines.iter().any(|l| l.contains(&tag)), "{lines:?}");
    assert!(d.image_exists(&tag).await.unwrap());
    assert!(matches!(
        d.image_push(&tag, &|_| {}).await,
        Err(RuntimeError::Failed { .. }) | Err(RuntimeError::ImageNotFound { .. })
    ));
}

#[tokio::test]
async fn unreachable_engine_is_unavailable() {
    let err = Docker::connect_to("unix:///nonexistent/docker.sock")
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("is dockerd running"), "{err}");
}
