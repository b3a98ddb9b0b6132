//! A Docker Swarm of several engines on this machine: one dockerd per network namespace
//! (`netns::HostNet`), the first a manager, the others workers, node `i` labelled
//! `zone=a`, `zone=b`, …; the host's own engine and swarm are never touched. Dropping a
//! `Cluster` stops every dockerd and removes what they left (processes, mounts, files).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::netns::HostNet;

/// One engine: its dockerd, its namespace's address and its swarm node.
pub struct Node {
    /// `unix://…`, for `docker -H` and a target's `host:`.
    pub host: String,
    /// The node's address on the hosts' network.
    pub ip: String,
    /// The swarm's id of this node.
    pub id: String,
    /// The value of its `zone` label: `a`, `b`, …
    pub zone: String,
    dir: PathBuf,
    dockerd: Option<Child>,
}

/// Engines in namespaces, joined as one swarm.
pub struct Cluster {
    /// Dropped first (each stops its dockerd), then the namespaces, then the files.
    pub nodes: Vec<Node>,
    net: HostNet,
    dir: tempfile::TempDir,
}

/// Why engines in namespaces cannot run here, if they cannot.
fn missing_tools() -> Option<String> {
    for (tool, arg) in [("nsenter", "--version"), ("dockerd", "--version")] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

fn skip(why: &str) {
    assert!(
        std::env::var_os("BATON_REQUIRE_DOCKER").is_none(),
        "BATON_REQUIRE_DOCKER is set but a swarm of namespaced engines cannot run: {why}"
    );
    eprintln!("skipped: {why} (set BATON_REQUIRE_DOCKER=1 to make this a failure)");
}

impl Node {
    /// `docker -H <this engine> args`.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("-H")
            .arg(&self.host)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker")
    }

    /// `docker -H <this engine> args`, asserted to succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker -H {} {args:?} failed: {}{}",
            self.host,
            crate::stdout(&out),
            crate::stderr(&out)
        );
        crate::stdout(&out)
    }

    /// Non-empty lines of `docker -H <this engine> args`, asserted to succeed, sorted.
    pub fn lines(&self, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = self
            .ok(args)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    /// Names of the running containers of a swarm service baton put (`<project>_<service>`).
    pub fn running(&self, service: &str) -> Vec<String> {
        self.lines(&[
            "ps",
            "--filter",
            &format!("label=io.baton.swarm.service={service}"),
            "--format",
            "{{.Names}}",
        ])
    }

    /// Whether its dockerd still runs.
    pub fn is_up(&mut self) -> bool {
        self.dockerd
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Stops its dockerd as `systemctl stop docker` would (SIGTERM: its containers
    /// stop, its containerd exits), SIGKILL after `grace`. True if it went in time.
    fn stop(&mut self, grace: Duration) -> bool {
        let Some(mut child) = self.dockerd.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// What a dockerd that did not stop cleanly left: its containerd, the shims and
    /// the container processes (found by this node's own directory and container ids,
    /// never by a program's name), and its mounts.
    fn sweep(&self) {
        let dir = self.dir.to_string_lossy().into_owned();
        let ids: Vec<String> = std::fs::read_dir(self.dir.join("d/containers"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|id| id.len() == 64)
            .collect();
        let me = std::process::id().to_string();
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let pid = e.file_name().to_string_lossy().into_owned();
            if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
                continue;
            }
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            let cgroup = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
            if cmdline.contains(&dir) || ids.iter().any(|id| cgroup.contains(id.as_str())) {
                pids.push(pid);
            }
        }
        if !pids.is_empty() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(&pids)
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(300));
        }
        unmount_below(&self.dir);
    }
}

/// Unmounts everything mounted below `dir` (overlay layers, network namespaces), the
/// deepest first, so the directory can be removed.
fn unmount_below(dir: &Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount")
            .args(["-l", p])
            .stderr(Stdio::null())
            .status();
    }
}

/// GETs `/` at `ip:port` once, with short timeouts; the body of an HTTP answer.
pub fn http_get_at(ip: &str, port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = format!("{ip}:{port}").parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: swarm\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.starts_with("HTTP/1")
        .then(|| buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()))
        .flatten()
}

impl Cluster {
    /// `n` engines in namespaces of their own, each with `image` loaded from the host's
    /// engine, in one swarm whose manager is node 0. `None` (the reason printed) when
    /// this machine cannot run them: no Docker, no `nsenter`/`dockerd`, no `ip netns`;
    /// under `BATON_REQUIRE_DOCKER` that is a failure.
    pub fn start(n: usize, image: &str) -> Option<Cluster> {
        if !crate::docker_available() {
            return None;
        }
        if let Some(why) = missing_tools() {
            skip(&why);
            return None;
        }
        let Some(net) = HostNet::start(n) else {
            skip("cannot create network namespaces");
            return None;
        };
        // Short: a unix socket's path holds at most 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("btsw")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let mut cluster = Cluster {
            nodes: Vec::new(),
            net,
            dir,
        };
        let tar = cluster.dir.path().join("image.tar");
        let saved = Command::new("docker")
            .args(["save", "-o"])
            .arg(&tar)
            .arg(image)
            .output()
            .expect("docker save");
        assert!(
            saved.status.success(),
            "cannot save {image} from the host's engine (scripts/make-test-image.sh builds it): {}",
            crate::stderr(&saved)
        );
        for i in 0..n {
            let node = cluster.start_engine(i);
            cluster.nodes.push(node);
        }
        for node in &cluster.nodes {
            node.ok(&["load", "-q", "-i", &tar.to_string_lossy()]);
        }
        cluster.form_swarm();
        Some(cluster)
    }

    fn start_engine(&self, i: usize) -> Node {
        let h = &self.net.hosts[i];
        let zone = ((b'a' + i as u8) as char).to_string();
        let dir = self.dir.path().join(&zone);
        std::fs::create_dir_all(&dir).expect("mkdir");
        // An empty configuration: nothing from /etc/docker/daemon.json applies here.
        std::fs::write(dir.join("daemon.json"), "{}").expect("write daemon.json");
        let socket = dir.join("sock");
        let log = std::fs::File::create(dir.join("log")).expect("dockerd log");
        let err = log.try_clone().expect("dockerd log");
        // nsenter, not `ip netns exec`: the latter remounts /sys, and dockerd then
        // finds no devices cgroup. nsenter execs dockerd: the child's pid is dockerd's.
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", h.ns))
            .arg("dockerd")
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("d"))
            .arg("--exec-root")
            .arg(dir.join("x"))
            .arg("--pidfile")
            .arg(dir.join("pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args(["--bridge", "none", "--iptables=false", "--ip-masq=false"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("start dockerd");
        let mut node = Node {
            host: format!("unix://{}", socket.display()),
            ip: h.ip.clone(),
            id: String::new(),
            zone,
            dir,
            dockerd: Some(child),
        };
        let answered = crate::within(Duration::from_secs(60), || {
            node.docker(&["version", "--format", "{{.Server.Version}}"])
                .status
                .success()
                || !node.is_up()
        })
        .is_some();
        assert!(
            answered && node.is_up(),
            "the dockerd of node {} did not answer within 60 s:\n{}",
            node.zone,
            node.log_tail()
        );
        node
    }

    fn form_swarm(&mut self) {
        let manager = &self.nodes[0];
        // Overlay subnets from a pool of their own, away from the hosts' 10.240.x.0/24.
        manager.ok(&[
            "swarm",
            "init",
            "--advertise-addr",
            &manager.ip,
            "--listen-addr",
            &format!("{}:2377", manager.ip),
            "--default-addr-pool",
            "10.201.0.0/16",
        ]);
        let token = manager.ok(&["swarm", "join-token", "-q", "worker"]);
        let join = format!("{}:2377", manager.ip);
        for w in &self.nodes[1..] {
            w.ok(&[
                "swarm",
                "join",
                "--token",
                token.trim(),
                "--advertise-addr",
                &w.ip,
                "--listen-addr",
                &format!("{}:2377", w.ip),
                &join,
            ]);
        }
        for node in &mut self.nodes {
            node.id = node
                .ok(&["info", "--format", "{{.Swarm.NodeID}}"])
                .trim()
                .to_string();
        }
        let manager = &self.nodes[0];
        let ready = crate::within(Duration::from_secs(60), || {
            let states = manager.lines(&["node", "ls", "--format", "{{.Status}}"]);
            states.len() == self.nodes.len() && states.iter().all(|s| s == "Ready")
        })
        .is_some();
        assert!(
            ready,
            "the swarm's nodes are not all ready after 60 s:\n{}",
            self.diagnostics(&[])
        );
        for node in &self.nodes {
            manager.ok(&[
                "node",
                "update",
                "--label-add",
                &format!("zone={}", node.zone),
                &node.id,
            ]);
        }
    }

    /// The manager (node 0).
    pub fn manager(&self) -> &Node {
        &self.nodes[0]
    }

    /// Stops node `i`'s dockerd as a machine going down would; panics unless it went
    /// within 60 s.
    pub fn stop(&mut self, i: usize) {
        let clean = self.nodes[i].stop(Duration::from_secs(60));
        assert!(
            clean,
            "the dockerd of node {} did not stop within 60 s:\n{}",
            self.nodes[i].zone,
            self.nodes[i].log_tail()
        );
    }

    /// The node's state as the manager sees it (`ready`, `down`, …).
    pub fn node_state(&self, i: usize) -> String {
        self.manager()
            .ok(&[
                "node",
                "inspect",
                "--format",
                "{{.Status.State}}",
                &self.nodes[i].id,
            ])
            .trim()
            .to_string()
    }

    /// What a failed assertion should show: the nodes, the services' tasks with their
    /// errors, each running engine's containers and the end of every dockerd's log.
    pub fn diagnostics(&self, services: &[&str]) -> String {
        let m = self.manager();
        let show = |o: Output| format!("{}{}", crate::stdout(&o), crate::stderr(&o));
        let mut out = format!(
            "--- node ls\n{}",
            show(m.docker(&[
                "node",
                "ls",
                "--format",
                "{{.ID}} {{.Status}} {{.Availability}} {{.ManagerStatus}}"
            ]))
        );
        for n in &self.nodes {
            out += &format!(
                "--- node {} ({}): labels {}",
                n.zone,
                n.id,
                show(m.docker(&["node", "inspect", "--format", "{{.Spec.Labels}}", &n.id]))
            );
        }
        for s in services {
            out += &format!(
                "--- service ps {s}\n{}",
                show(m.docker(&[
                    "service",
                    "ps",
                    "--no-trunc",
                    "--format",
                    "{{.Name}} node={{.Node}} desired={{.DesiredState}} current={{.CurrentState}} error={{.Error}}",
                    s
                ]))
            );
            out += &format!(
                "    endpoint {}",
                show(m.docker(&[
                    "service",
                    "inspect",
                    "--format",
                    "{{json .Spec.EndpointSpec}} {{json .Endpoint.Ports}}",
                    s
                ]))
            );
            for t in crate::stdout(&m.docker(&["service", "ps", "-q", s])).lines() {
                out += &format!(
                    "    task {t} on node {}",
                    show(m.docker(&["inspect", "--format", "{{.NodeID}}", t]))
                );
            }
        }
        for n in &self.nodes {
            out += &format!(
                "--- containers on node {}\n{}--- dockerd log of node {} (end)\n{}\n",
                n.zone,
                show(n.docker(&[
                    "ps",
                    "-a",
                    "--format",
                    "{{.Names}} {{.Status}} {{.Networks}} {{.Ports}}"
                ])),
                n.zone,
                n.log_tail()
            );
        }
        out
    }
}

impl Drop for Node {
    /// Stops its dockerd, and sweeps what it left if it had to be killed (or was).
    fn drop(&mut self) {
        self.stop(Duration::from_secs(30));
        self.sweep();
    }
}
