//! `x-baton.proxy.provider: nginx | haproxy` with the real servers: baton writes the
//! routing file the server includes, checks it, reloads the server, and a rolling
//! update under continuous load through that server fails no request, and the server's
//! own log lines give baton per-revision counters. `down` takes the file away again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use baton_tests::{
    docker_available, free_port, stderr, wait_for, web_service, Daemon, Load, Scratch,
};

/// A server started for one test, stopped on drop (even when the test fails).
struct Server {
    pid_file: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let _ = Command::new("kill").arg(pid.trim()).output();
        }
    }
}

/// Whether the server is installed; CI (BATON_REQUIRE_DOCKER=1) insists.
fn have(program: &str) -> bool {
    let there = Command::new(program).arg("-v").output().is_ok();
    if !there && std::env::var_os("BATON_REQUIRE_DOCKER").is_some() {
        panic!("{program} is not installed; scripts/ensure-docker.sh installs it");
    }
    there
}

fn run(argv: &[&str]) {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wait_pid(pid_file: &Path) -> String {
    for _ in 0..100 {
        if let Ok(p) = std::fs::read_to_string(pid_file) {
            if !p.trim().is_empty() {
                return p.trim().to_string();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no pid in {}", pid_file.display());
}

/// Starts nginx with its own prefix under `dir`, including `dir/conf.d/*.conf`.
/// Returns the guard and the `x-baton.proxy` settings that drive it.
fn nginx(dir: &Path) -> (Server, String) {
    let d = dir.display();
    std::fs::create_dir_all(dir.join("conf.d")).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nworker_processes 1;\nevents {{ worker_connections 512; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n  fastcgi_temp_path {d}/tmp/fcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n  include {d}/conf.d/*.conf;\n}}\n"
        ),
    )
    .unwrap();
    let c = conf.display().to_string();
    run(&["nginx", "-c", &c, "-p", &d.to_string()]);
    let server = Server {
        pid_file: dir.join("nginx.pid"),
    };
    wait_pid(&server.pid_file);
    let settings = format!(
        "{{provider: nginx, config: {d}/conf.d/web.conf, reload: [nginx, -c, {c}, -p, {d}, -s, reload], check: [nginx, -c, {c}, -p, {d}, -t, -q]}}"
    );
    (server, settings)
}

/// Starts HAProxy in master-worker mode reading `dir/main.cfg` and `dir/conf.d/`.
fn haproxy(dir: &Path) -> (Server, String) {
    let d = dir.display();
    std::fs::create_dir_all(dir.join("conf.d")).unwrap();
    let stats = free_port();
    std::fs::write(
        dir.join("main.cfg"),
        format!(
            "global\n    log stderr format short local0 err\ndefaults\n    timeout connect 2s\n    timeout client 60s\n    timeout server 60s\nlisten stats\n    bind 127.0.0.1:{stats}\n    mode http\n    stats enable\n"
        ),
    )
    .unwrap();
    run(&[
        "haproxy",
        "-W",
        "-D",
        "-p",
        &format!("{d}/haproxy.pid"),
        "-f",
        &format!("{d}/main.cfg"),
        "-f",
        &format!("{d}/conf.d"),
    ]);
    let server = Server {
        pid_file: dir.join("haproxy.pid"),
    };
    let master = wait_pid(&server.pid_file);
    let settings = format!(
        "{{provider: haproxy, config: {d}/conf.d/web.cfg, reload: [kill, -USR2, '{master}']}}"
    );
    (server, settings)
}

fn compose(port: u16, proxy: &str) -> String {
    web_service(
        port,
        ("3s", 3),
        &format!("      rollout: {{strategy: rolling, health_timeout: 20s}}\n      proxy: {proxy}"),
    )
}

fn container_ips(s: &Scratch) -> Vec<String> {
    s.running()
        .iter()
        .map(|c| {
            let out = Command::new("docker")
                .args([
                    "inspect",
                    "--format",
                    "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                    c,
                ])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .collect()
}

fn scenario(tag: &str, start: fn(&Path) -> (Server, String), file_name: &str) {
    if !docker_available() {
        return;
    }
    let s = Scratch::new(tag);
    let dir = s.path().join("server");
    let (_server, settings) = start(&dir);
    let config = dir.join("conf.d").join(file_name);
    let port = free_port();
    s.write("compose.yaml", &compose(port, &settings));
    let _daemon = Daemon::start(&s);
    std::thread::sleep(Duration::from_millis(500));
    s.ok(&["up", "-d"]);
    assert!(
        wait_for(port, "v1", 60),
        "{tag}: v1 serves through the server"
    );
    // Replicas are routed as they become healthy.
    let all_routed = || {
        let text = std::fs::read_to_string(&config).unwrap_or_default();
        let ips = container_ips(&s);
        ips.len() == 3 && ips.iter().all(|ip| text.contains(&format!("{ip}:80")))
    };
    let routed = (0..300).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        all_routed()
    });
    assert!(
        routed,
        "{tag}: all replicas routed: {}",
        std::fs::read_to_string(&config).unwrap_or_default()
    );

    // A rolling update under load through the user's server: no failed request.
    let load = Load::start(port);
    let up = s
        .cmd()
        .env("VERSION", "2")
        .args(["up", "-d"])
        .output()
        .unwrap();
    assert!(up.status.success(), "{tag}: update failed: {}", stderr(&up));
    std::thread::sleep(Duration::from_millis(500));
    let (bodies, failures) = load.finish();
    eprintln!(
        "{tag}: update through the server: {} answers, {failures} failed",
        bodies.len()
    );
    assert!(bodies.len() > 20, "{tag}: the load ran");
    assert_eq!(failures, 0, "{tag}: no failed request");
    assert!(wait_for(port, "v2", 10), "{tag}: v2 serves");
    // The server's log lines reach baton: per-revision counters for the new revision.
    let status: serde_json::Value =
        serde_json::from_str(&s.ok(&["--json", "rollout", "status", "web"])).unwrap();
    let to = status["rollout"]["to_hash"].as_str().unwrap_or_default();
    let new = &status["traffic"][0]["metrics"]["revisions"][to];
    eprintln!("{tag}: the server's lines counted for the new revision: {new}");
    assert!(
        new["requests"].as_u64().unwrap_or(0) > 0,
        "{tag}: requests counted from the server's log: {status}"
    );
    assert_eq!(new["responses_5xx"], 0, "{tag}: {status}");
    assert!(
        new["latency"]["count"].as_u64().unwrap_or(0) > 0,
        "{tag}: {status}"
    );
    let text = std::fs::read_to_string(&config).unwrap();
    let ips = container_ips(&s);
    assert_eq!(ips.len(), 3);
    for ip in &ips {
        assert!(
            text.contains(&format!("{ip}:80")),
            "{tag}: new {ip} routed: {text}"
        );
    }
    let servers = text
        .lines()
        .filter(|l| l.trim_start().starts_with("server ") && l.contains("weight"))
        .count();
    assert_eq!(servers, 3, "{tag}: only the 3 new replicas: {text}");

    // down: the file goes and the server stops serving the port.
    s.ok(&["down"]);
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        !config.exists()
    });
    assert!(gone, "{tag}: routing file removed after down");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        baton_tests::http_get(port, 0).is_none(),
        "{tag}: the port no longer serves"
    );
}

#[test]
fn nginx_provider_routes_and_updates_without_failed_requests() {
    if !have("nginx") {
        eprintln!("nginx is not installed (scripts/ensure-docker.sh installs it)");
        return;
    }
    scenario("ngx", nginx, "web.conf");
}

#[test]
fn haproxy_provider_routes_and_updates_without_failed_requests() {
    if !have("haproxy") {
        eprintln!("haproxy is not installed (scripts/ensure-docker.sh installs it)");
        return;
    }
    scenario("hap", haproxy, "web.cfg");
}
