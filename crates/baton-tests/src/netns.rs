//! Several hosts on this machine, each with an address of its own: network namespaces
//! joined by a bridge that lives in a switch namespace of its own (so this machine's
//! firewall, which drops bridged traffic, never sees it), and a veth from here to the
//! switch so tests reach every host. A host's link can be cut at the switch (the host
//! keeps running, its packets go nowhere) and joined again. All is removed on drop.

use std::process::{Command, Stdio};

/// One host: its namespace and address.
#[derive(Debug, Clone)]
pub struct NsHost {
    pub ns: String,
    pub ip: String,
    /// Its end of the link, in the switch namespace.
    port: String,
}

/// The hosts, the switch and the way in from here.
pub struct HostNet {
    switch: String,
    here: String,
    pub hosts: Vec<NsHost>,
    /// This side's address on the hosts' network.
    pub my_ip: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn inside(ns: &str, args: &[&str]) -> Result<(), String> {
    let mut v = vec!["netns", "exec", ns, "ip"];
    v.extend_from_slice(args);
    ip(&v)
}

impl HostNet {
    /// Makes `n` hosts at 10.240.X.2, .3, … (X from this process and a counter), with
    /// this side at .1. `None` (with the reason printed) when this machine refuses
    /// `ip netns add`, which is a failure under `BATON_REQUIRE_VM`.
    pub fn start(n: usize) -> Option<HostNet> {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{}{seq}", pid % 100_000);
        let switch = format!("bt-sw-{tag}");
        let _ = ip(&["netns", "del", &switch]);
        if let Err(e) = ip(&["netns", "add", &switch]) {
            assert!(
                std::env::var_os("BATON_REQUIRE_VM").is_none(),
                "BATON_REQUIRE_VM is set but `ip netns add` is refused: {e}"
            );
            eprintln!(
                "skipped: cannot create a network namespace ({e}); run as root with iproute2"
            );
            return None;
        }
        let subnet = (pid.wrapping_mul(7).wrapping_add(seq)) % 250;
        let mut net = HostNet {
            here: format!("bh{tag}"),
            hosts: Vec::new(),
            my_ip: format!("10.240.{subnet}.1"),
            switch,
        };
        let sw = net.switch.clone();
        let wired = inside(&sw, &["link", "add", "br0", "type", "bridge"])
            .and_then(|_| inside(&sw, &["link", "set", "br0", "up"]))
            .and_then(|_| {
                let peer = format!("{}s", net.here);
                ip(&[
                    "link", "add", &net.here, "type", "veth", "peer", "name", &peer,
                ])
                .and_then(|_| ip(&["link", "set", &peer, "netns", &sw]))
                .and_then(|_| inside(&sw, &["link", "set", &peer, "master", "br0", "up"]))
                .and_then(|_| {
                    ip(&[
                        "addr",
                        "add",
                        &format!("{}/24", net.my_ip),
                        "dev",
                        &net.here,
                    ])
                })
                .and_then(|_| ip(&["link", "set", &net.here, "up"]))
            });
        if let Err(e) = wired {
            panic!("cannot wire the switch {sw}: {e}");
        }
        for i in 0..n {
            let ns = format!("bt-h{i}-{tag}");
            let port = format!("bp{tag}x{i}");
            let addr = format!("10.240.{subnet}.{}", i + 2);
            let _ = ip(&["netns", "del", &ns]);
            let made = ip(&["netns", "add", &ns])
                .and_then(|_| {
                    ip(&[
                        "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                    ])
                })
                .and_then(|_| ip(&["link", "set", &port, "netns", &sw]))
                .and_then(|_| inside(&sw, &["link", "set", &port, "master", "br0", "up"]))
                .and_then(|_| inside(&ns, &["addr", "add", &format!("{addr}/24"), "dev", "eth0"]))
                .and_then(|_| inside(&ns, &["link", "set", "eth0", "up"]))
                .and_then(|_| inside(&ns, &["link", "set", "lo", "up"]));
            net.hosts.push(NsHost {
                ns: ns.clone(),
                ip: addr,
                port,
            });
            if let Err(e) = made {
                panic!("cannot make host {ns}: {e}");
            }
        }
        Some(net)
    }

    /// Cuts host `i` off: its link goes down at the switch, the host runs on.
    pub fn cut(&self, i: usize) {
        inside(&self.switch, &["link", "set", &self.hosts[i].port, "down"])
            .expect("cut a host off");
    }

    /// Joins host `i` again.
    pub fn join(&self, i: usize) {
        inside(&self.switch, &["link", "set", &self.hosts[i].port, "up"]).expect("join a host");
    }

    /// `program` run inside host `i`'s namespace (`ip netns exec` execs it: the
    /// child's pid is the program's).
    pub fn command(&self, i: usize, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.hosts[i].ns]).arg(program);
        c
    }
}

impl Drop for HostNet {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both; a namespace goes with its last
        // process once unnamed.
        let _ = ip(&["link", "del", &self.here]);
        for h in &self.hosts {
            let _ = ip(&["netns", "del", &h.ns]);
        }
        let _ = ip(&["netns", "del", &self.switch]);
    }
}
