//! VMs on real QEMU with the tiny test guest (TCG): lifecycle with snapshot and restore,
//! graceful stop and `rm --disks`; retention of automated snapshots; live migration to a
//! second agent with the guest's counter running, then storage migration; between
//! namespaced hosts with their own addresses, live migration with and without storage
//! and failover by majority leases (a cut-off owner, a cut-off watcher, a killed
//! agent), never two copies; bad specs refused before anything starts; under
//! `baton serve`, a snapshot schedule every minute keeping `max_snapshots` (the one slow
//! test, four to six minutes).
//! The agent's guard: a token on every route, TLS off loopback, client certificates
//! when asked for (mutual TLS), names and files confined to its directories, and only
//! images baton made deleted.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use baton_tests::netns::HostNet;
use baton_tests::vm::{
    console_log, guest, guest_vm, http_request, ticks, tls_files, vm_processes, wait_until, Agent,
    GroupTls, NetAgent, TickWatch, VmHost, AGENT_TOKEN,
};
use baton_tests::{baton_bin, free_port};

// Generous: four TCG guests boot at once on a loaded 2-core machine.
const BOOT: Duration = Duration::from_secs(240);

fn ready(dir: &Path) -> bool {
    console_log(dir).contains("baton-guest: ready")
}

/// The last counter value of a serial log.
fn last_tick(dir: &Path) -> Option<(u64, String)> {
    ticks(&console_log(dir)).pop()
}

/// Waits until the guest has printed at least `n` more ticks than now.
fn more_ticks(dir: &Path, n: usize) {
    let before = ticks(&console_log(dir)).len();
    let ok = wait_until(Duration::from_secs(120), || {
        ticks(&console_log(dir)).len() >= before + n
    });
    assert!(
        ok.is_some(),
        "the guest's counter stopped:\n{}",
        console_log(dir)
    );
}

#[test]
fn lifecycle_snapshot_restore_graceful_stop_and_rm() {
    let Some((k, i)) = guest() else { return };
    let h = VmHost::new();
    let vm = h.vm("life");
    h.write(
        "baton.yaml",
        &format!(
            "vms:\n{}",
            guest_vm(&vm, &k, &i, "    disks: [{size: 64M}]\n")
        ),
    );
    h.ok(&["vm", "create", &vm]);
    let dir = h.vm_dir(&vm);
    let disk = dir.join("disk0.qcow2");
    assert!(disk.exists(), "create made the disk");
    let t0 = Instant::now();
    h.ok(&["vm", "start", &vm]);
    let took = wait_until(BOOT, || ready(&dir));
    assert!(took.is_some(), "no ready line:\n{}", console_log(&dir));
    println!("start to ready line: {:?}", t0.elapsed());

    // ls shows the real process.
    let ls = h.json(&["vm", "ls"]);
    let me = &ls.as_array().unwrap()[0];
    assert_eq!(me["state"], "running");
    let pid = me["pid"].as_u64().unwrap() as u32;
    assert_eq!(vm_processes(&vm), vec![pid]);
    assert!(me["rss_mib"].as_f64().unwrap() > 10.0, "{me}");
    assert!(me["cpu_seconds"].as_f64().unwrap() > 0.0, "{me}");

    // State "before", snapshot, change to "after", restore: "before" is back, and the
    // counter goes back to where it was at the snapshot.
    h.guest_run(&vm, "echo before > /tmp/mark");
    assert!(wait_until(Duration::from_secs(120), || last_tick(&dir)
        .is_some_and(|t| t.1 == "before"))
    .is_some());
    let snap = h.json(&["vm", "snapshot", "create", &vm, "--note", "known good"]);
    let snap_name = snap["snapshot"].as_str().unwrap().to_string();
    let at_snapshot = last_tick(&dir).unwrap().0;
    h.guest_run(&vm, "echo after > /tmp/mark");
    assert!(wait_until(Duration::from_secs(120), || last_tick(&dir)
        .is_some_and(|t| t.1 == "after"))
    .is_some());
    let at_change = last_tick(&dir).unwrap().0;
    more_ticks(&dir, 2);
    h.ok(&["vm", "snapshot", "restore", &vm, &snap_name]);
    let log_len = console_log(&dir).len();
    let back = wait_until(Duration::from_secs(120), || {
        ticks(&console_log(&dir)[log_len..]).len() >= 2
    });
    assert!(back.is_some(), "no ticks after restore");
    let after_restore = ticks(&console_log(&dir)[log_len..]);
    assert_eq!(
        after_restore[0].1, "before",
        "the mark is back: {after_restore:?}"
    );
    assert!(
        after_restore[0].0 <= at_snapshot + 2 && after_restore[0].0 < at_change + 2,
        "the counter went back to the snapshot ({at_snapshot}), got {after_restore:?}"
    );
    let listed = h.json(&["vm", "snapshot", "ls", &vm]);
    assert_eq!(listed[0]["note"], "known good");

    // Pause and resume really freeze the guest.
    h.ok(&["vm", "pause", &vm]);
    assert_eq!(h.json(&["vm", "inspect", &vm])["status"]["state"], "paused");
    h.ok(&["vm", "resume", &vm]);
    more_ticks(&dir, 1);

    // Graceful stop: the guest's power-button handler ran, QEMU exited by itself.
    let stop = h.json(&["vm", "stop", "--timeout", "60", &vm]);
    assert_eq!(stop["stopped"][0]["graceful"], true, "{stop}");
    assert!(console_log(&dir).contains("baton-guest: power button, powering off"));
    assert!(vm_processes(&vm).is_empty());
    assert_eq!(h.json(&["vm", "ls"])[0]["state"], "stopped");

    // rm --disks: no process, socket or disk left.
    h.ok(&["vm", "start", &vm]);
    assert!(wait_until(Duration::from_secs(10), || !vm_processes(&vm).is_empty()).is_some());
    h.ok(&["vm", "rm", "--disks", &vm]);
    assert!(vm_processes(&vm).is_empty());
    assert!(!disk.exists());
    assert!(!dir.join("qmp.sock").exists() && !dir.join("console.sock").exists());
    assert!(!dir.exists(), "the VM's directory is gone");
    assert_eq!(h.json(&["vm", "ls"]), serde_json::json!([]));
}

#[test]
fn max_snapshots_five_keeps_the_five_newest_of_twelve() {
    let Some((k, i)) = guest() else { return };
    let h = VmHost::new();
    let vm = h.vm("ret");
    h.write(
        "baton.yaml",
        &format!(
            "vms:\n{}snapshot_policies:\n  prod:\n    max_snapshots: 5\n    naming: \"{{vm}}_{{date}}_{{type}}_{{seq}}\"\n",
            guest_vm(&vm, &k, &i, "    environment: prod\n    disks: [{size: 64M}]\n")
        ),
    );
    h.ok(&["vm", "start", &vm]);
    let dir = h.vm_dir(&vm);
    assert!(wait_until(BOOT, || ready(&dir)).is_some(), "no ready line");
    let t = Instant::now();
    for _ in 0..12 {
        h.ok(&["vm", "snapshot", "create", &vm, "--type", "automated"]);
    }
    println!("12 snapshots with pruning: {:?}", t.elapsed());
    let snaps = h.json(&["vm", "snapshot", "ls", &vm]);
    let names: Vec<String> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    let date = names
        .first()
        .and_then(|n| n.split('_').nth(1))
        .unwrap_or("")
        .to_string();
    assert_eq!(date.len(), 8, "{{date}} is YYYYMMDD: {names:?}");
    let want: Vec<String> = (8..=12)
        .map(|n| format!("{vm}_{date}_automated_{n}"))
        .collect();
    assert_eq!(names, want);
    // QEMU's own view of the disk agrees: exactly those five internal snapshots.
    let out = std::process::Command::new("qemu-img")
        .args(["snapshot", "-l", "-U"])
        .arg(dir.join("disk0.qcow2"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for n in &want {
        assert!(
            text.contains(n.as_str()),
            "{n} missing in qemu-img:\n{text}"
        );
    }
    let in_image = text
        .lines()
        .filter(|l| l.contains(&format!("{vm}_")))
        .count();
    assert_eq!(in_image, 5, "exactly five snapshots in the image:\n{text}");
    let stats = h.json(&["vm", "snapshot", "stats"]);
    assert_eq!(stats["total"], 5);
    assert_eq!(stats["newest"]["name"], want[4].as_str());
    assert_eq!(stats["oldest"]["name"], want[0].as_str());
    // The host report: capabilities from the host, the VM, snapshot totals, operations.
    let report = h.json(&["vm", "report"]);
    assert!(
        report["capabilities"]["cpus"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert!(report["capabilities"]["memory_mib"].as_u64().unwrap() > 128);
    assert!(
        report["capabilities"]["storage_total_mib"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(report["vms"][0]["name"], vm.as_str());
    assert_eq!(report["vms"][0]["state"], "running");
    assert_eq!(report["snapshots"]["total"], 5);
    assert_eq!(report["snapshots"]["per_vm"][&vm], 5);
    let ops = report["recent_operations"].as_array().unwrap();
    assert!(ops.iter().any(|o| o["op"] == "prune"), "{report}");
    let text = h.ok(&["vm", "report"]);
    assert!(
        text.contains("snapshots: 5 in all") && text.contains(&vm),
        "{text}"
    );
    h.ok(&["vm", "rm", "--disks", &vm]);
}

#[test]
fn live_migration_keeps_the_counter_then_storage_moves_while_running() {
    let Some((k, i)) = guest() else { return };
    let h = VmHost::new();
    let vm = h.vm("mig");
    h.write(
        "baton.yaml",
        &format!(
            "vms:\n{}",
            guest_vm(&vm, &k, &i, "    disks: [{size: 64M}]\n")
        ),
    );
    h.ok(&["vm", "start", &vm]);
    // The source's disks stay where they are: the destination must allow that
    // directory (shared storage).
    let src_vms = h.state.path().join("vms");
    let dest = Agent::start(None, 3000, &[&src_vms]);
    let src_dir = h.vm_dir(&vm);
    assert!(
        wait_until(BOOT, || ready(&src_dir)).is_some(),
        "no ready line"
    );
    more_ticks(&src_dir, 3);
    let src_pid = vm_processes(&vm);
    assert_eq!(src_pid.len(), 1);

    let job = h.json(&[
        "vm",
        "migrate",
        &vm,
        "--to",
        &dest.addr,
        "--downtime",
        "300",
        "--bandwidth",
        "1G",
    ]);
    assert_eq!(job["status"], "completed", "{job}");
    let downtime = job["downtime_ms"]
        .as_i64()
        .expect("QEMU's downtime is recorded");
    println!(
        "live migration: downtime {downtime} ms, {} bytes",
        job["bytes"]
    );
    assert!(job["bytes"].as_i64().unwrap() > 0);

    // The source process is gone; one process runs, the destination's.
    let pids = vm_processes(&vm);
    assert_eq!(pids.len(), 1, "{pids:?}");
    assert_ne!(pids, src_pid, "the source process is gone");
    let last_src = last_tick(&src_dir).unwrap().0;
    let dst_dir = dest.vm_dir(&vm);
    more_ticks(&dst_dir, 2);
    let dst_log = console_log(&dst_dir);
    assert!(
        !dst_log.contains("baton-guest: ready"),
        "the guest did not reboot"
    );
    let first_dst = ticks(&dst_log)[0].0;
    assert!(
        first_dst >= last_src && first_dst <= last_src + 5,
        "the counter goes on: source ended at {last_src}, destination began at {first_dst}"
    );
    let jobs = h.json(&["vm", "migrations"]);
    assert_eq!(jobs["migrations"][0]["kind"], "live");
    assert_eq!(jobs["stats"]["max_downtime_ms"], downtime);

    // Storage migration on the destination host, guest running throughout. A target
    // outside the host's directories is refused and nothing is made there.
    let evil = tempfile::Builder::new().prefix("evil").tempdir().unwrap();
    let out = dest
        .cmd()
        .args(["vm", "move-storage", &vm])
        .arg(evil.path().join("moved.qcow2"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("outside the directories"), "{err}");
    assert_eq!(std::fs::read_dir(evil.path()).unwrap().count(), 0);
    // Allowed: the target's directory, and the source's (so the old image baton made
    // may go).
    let target = h.dir.path().join("moved.qcow2");
    let mut on_dest = dest.cmd();
    let out = on_dest
        .args(["--json", "vm", "move-storage", &vm])
        .arg(&target)
        .arg("--disk-dir")
        .arg(h.dir.path())
        .arg("--disk-dir")
        .arg(&src_vms)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mv: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(mv["status"], "completed");
    assert!(target.exists());
    assert!(
        !src_dir.join("disk0.qcow2").exists(),
        "the old image is gone"
    );
    assert_eq!(
        vm_processes(&vm),
        pids,
        "same process: the guest kept running"
    );
    more_ticks(&dst_dir, 2);
    // The guest writes through the new disk: a snapshot lands in the new image.
    let out = dest
        .cmd()
        .args(["vm", "snapshot", "create", &vm, "--name", "onmoved"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let l = std::process::Command::new("qemu-img")
        .args(["snapshot", "-l", "-U"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&l.stdout).contains("onmoved"));
    // The VM outlives its host's agent (killed with -9) and a later baton re-attaches
    // to it through the pid file and the QMP socket.
    let mut dest = dest;
    dest.kill();
    assert_eq!(vm_processes(&vm), pids, "the VM survived its agent");
    let out = dest.cmd().args(["--json", "vm", "ls"]).output().unwrap();
    let ls: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ls[0]["state"], "running", "{ls}");
    assert_eq!(ls[0]["pid"].as_u64(), Some(u64::from(pids[0])));
    let out = dest
        .cmd()
        .args(["vm", "rm", "--disks", &vm, "--disk-dir"])
        .arg(h.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(vm_processes(&vm).is_empty());
    assert!(!target.exists(), "the image baton made is gone");
}

/// The test guest as an ha VM whose disk is in `shared`.
fn ha_file(h: &VmHost, vm: &str, k: &Path, i: &Path, shared: &Path) {
    h.write(
        "baton.yaml",
        &format!(
            "vms:\n{}",
            guest_vm(
                vm,
                k,
                i,
                &format!(
                    "    ha: true\n    disks: [{{size: 64M, path: {}}}]\n",
                    shared.join(format!("{vm}.qcow2")).display()
                )
            )
        ),
    );
}

/// The agent (index) whose host runs the VM now, by its pid file and the process table.
fn running_on(agents: &[NetAgent], vm: &str) -> Option<usize> {
    let pids = vm_processes(vm);
    if pids.len() != 1 {
        return None;
    }
    agents.iter().position(|a| {
        std::fs::read_to_string(a.vm_dir(vm).join("qemu.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            == Some(pids[0])
    })
}

/// The recent operations of an agent's host, newest first.
fn ops(a: &NetAgent) -> Vec<serde_json::Value> {
    a.json(&["vm", "report"])["recent_operations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Spans of ticks never overlap between hosts: at no moment did two copies count.
fn one_copy_at_a_time(spans: &[(usize, Instant, Instant, usize)]) {
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            assert!(
                a.2 < b.1 || b.2 < a.1,
                "hosts {} and {} both counted at once: {:?} and {:?}",
                a.0,
                b.0,
                (a.1, a.2),
                (b.1, b.2)
            );
        }
    }
}

/// Three hosts, each its own network namespace, address, agent and state directory,
/// voting on an ha VM's lease. A cut-off owner's guard kills its guest when its votes
/// run out, and only then does a majority let another host start it; a host cut off
/// from a running owner cannot gather a majority and records that it did not take
/// over; an owner whose agent is killed with -9 loses its guest to its guard. The
/// guests' own counters, read from here, never run on two hosts at once.
#[test]
fn failover_needs_a_majority_or_a_confirmed_fence_never_two_copies() {
    let Some((k, i)) = guest() else { return };
    let Some(net) = HostNet::start(3) else { return };
    let tls = GroupTls::new(&net);
    let shared = tempfile::tempdir().unwrap();
    let addrs: Vec<String> = net
        .hosts
        .iter()
        .map(|h| format!("https://{}:7420", h.ip))
        .collect();
    let mut agents: Vec<NetAgent> = (0..3)
        .map(|n| {
            let mut args = vec![
                "--shared".to_string(),
                shared.path().display().to_string(),
                "--lease-ms".into(),
                "3000".into(),
            ];
            for (m, a) in addrs.iter().enumerate() {
                if m != n {
                    args.extend(["--peer".to_string(), a.clone()]);
                }
            }
            NetAgent::start(&net, n, &tls, &args)
        })
        .collect();
    let h = VmHost::new();
    let vm = h.vm("ha");
    ha_file(&h, &vm, &k, &i, shared.path());
    let out = h
        .cmd()
        .env("BATON_AGENT_CA", &tls.ca)
        .args(["vm", "start", &vm, "--on", &agents[0].addr])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_until(BOOT, || ready(&agents[0].vm_dir(&vm))).is_some(),
        "no ready line on A"
    );
    more_ticks(&agents[0].vm_dir(&vm), 2);
    let dirs = |agents: &[NetAgent]| agents.iter().map(|a| a.vm_dir(&vm)).collect::<Vec<_>>();

    // 1. A is cut off, alive. Its guard kills the guest before A's votes expire
    //    elsewhere; then B or C gathers a majority and starts it.
    let watch = TickWatch::start(dirs(&agents));
    let cut = Instant::now();
    net.cut(0);
    let moved = wait_until(Duration::from_secs(120), || {
        running_on(&agents, &vm).is_some_and(|n| n != 0)
    });
    assert!(moved.is_some(), "the ha VM never came up on B or C");
    let owner = running_on(&agents, &vm).unwrap();
    println!(
        "failover: running on host {owner} {:?} after A was cut off",
        cut.elapsed()
    );
    let fenced: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(agents[0].vm_dir(&vm).join("fenced")).expect("A's guard fenced"),
    )
    .unwrap();
    assert_eq!(fenced["confirmed_dead"], true, "{fenced}");
    assert!(
        wait_until(BOOT, || !ticks(&console_log(&agents[owner].vm_dir(&vm)))
            .is_empty())
        .is_some(),
        "the guest never counted on host {owner}"
    );
    more_ticks(&agents[owner].vm_dir(&vm), 2);
    let spans = watch.finish();
    println!("phase 1 tick spans: {spans:?}");
    assert!(spans.iter().any(|s| s.0 == owner));
    one_copy_at_a_time(&spans);
    let jobs = agents[owner].json(&["vm", "migrations"]);
    assert_eq!(jobs["migrations"][0]["kind"], "failover", "{jobs}");
    assert_eq!(jobs["migrations"][0]["status"], "completed", "{jobs}");
    let took: Vec<String> = ops(&agents[owner])
        .iter()
        .filter(|o| o["op"] == "fence" || o["op"] == "failover")
        .map(|o| {
            let f = |k: &str| o[k].as_str().unwrap_or("").to_string();
            format!("{} {} {}", f("op"), f("outcome"), f("message"))
        })
        .collect();
    assert!(
        took.iter()
            .any(|o| o.starts_with("fence not-confirmed") && o.contains("did not answer")),
        "the unconfirmed fence is recorded as such: {took:?}"
    );
    assert!(
        took.iter()
            .any(|o| o.starts_with("failover ok") && o.contains("its lease expired at a majority")),
        "{took:?}"
    );
    net.join(0);

    // 2. The third host is cut off from a running owner: it cannot gather a majority,
    //    says so, and starts nothing; the owner keeps counting.
    let third = (1..3).find(|n| *n != owner).unwrap();
    let watch = TickWatch::start(dirs(&agents));
    net.cut(third);
    let refused = wait_until(Duration::from_secs(60), || {
        ops(&agents[third])
            .iter()
            .any(|o| o["op"] == "failover" && o["outcome"] == "not-done")
    });
    assert!(
        refused.is_some(),
        "host {third} did not record a failover not done"
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        running_on(&agents, &vm),
        Some(owner),
        "still only on host {owner}"
    );
    assert!(!agents[third].vm_dir(&vm).join("qemu.pid").exists());
    more_ticks(&agents[owner].vm_dir(&vm), 2);
    let spans = watch.finish();
    assert_eq!(
        spans.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![owner],
        "{spans:?}"
    );
    net.join(third);
    std::thread::sleep(Duration::from_secs(2));

    // 3. The owner's agent is killed with -9: nothing renews its votes, its guard kills
    //    the guest, and another host takes it over.
    let watch = TickWatch::start(dirs(&agents));
    let killed = Instant::now();
    agents[owner].kill();
    let moved = wait_until(Duration::from_secs(120), || {
        running_on(&agents, &vm).is_some_and(|n| n != owner)
    });
    assert!(
        moved.is_some(),
        "the ha VM never left the host whose agent died"
    );
    let next = running_on(&agents, &vm).unwrap();
    println!(
        "failover after kill -9 of the agent: host {next}, {:?}",
        killed.elapsed()
    );
    assert!(
        agents[owner].vm_dir(&vm).join("fenced").exists(),
        "its guard fenced it"
    );
    assert!(
        wait_until(BOOT, || ready(&agents[next].vm_dir(&vm))).is_some(),
        "no ready line on host {next}"
    );
    more_ticks(&agents[next].vm_dir(&vm), 2);
    let spans = watch.finish();
    println!("phase 3 tick spans: {spans:?}");
    one_copy_at_a_time(&spans);
    let out = agents[next].cmd().args(["vm", "rm", &vm]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Live migration between namespaced hosts, each with its own address and state
/// directory: A → B on shared storage, then B → C copying the disk while the guest
/// counts; neither restarts the guest, both report their downtime. A daemon here that
/// follows the three agents has each host's migration events once in its own stream,
/// and still once after it was killed and started again.
#[test]
fn live_migration_between_hosts_with_and_without_storage() {
    let Some((k, i)) = guest() else { return };
    let Some(net) = HostNet::start(3) else { return };
    let tls = GroupTls::new(&net);
    let h = VmHost::new();
    let vm = h.vm("nsmig");
    h.write(
        "baton.yaml",
        &format!(
            "vms:\n{}",
            guest_vm(&vm, &k, &i, "    disks: [{size: 64M}]\n")
        ),
    );
    let a = NetAgent::start(&net, 0, &tls, &[]);
    // B sees A's disks where A made them: storage shared by the two.
    let a_vms = a.dir.join("vms");
    let b = NetAgent::start(
        &net,
        1,
        &tls,
        &["--disk-dir".into(), a_vms.display().to_string()],
    );
    let c = NetAgent::start(&net, 2, &tls, &[]);
    // A daemon here follows the three agents (and one that never answers): their
    // VMs' events join its stream.
    let follow = || {
        let mut args = vec!["serve", "--tick-ms", "200", "--sample-interval", "1s"];
        for addr in [
            a.addr.as_str(),
            b.addr.as_str(),
            c.addr.as_str(),
            "127.0.0.1:1",
        ] {
            args.extend(["--agent", addr]);
        }
        KillOnDrop(
            h.cmd()
                .env("BATON_AGENT_CA", &tls.ca)
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("baton serve"),
        )
    };
    let mut serve = follow();
    let run = |args: &[&str]| {
        let out = h
            .cmd()
            .env("BATON_AGENT_CA", &tls.ca)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["vm", "start", &vm, "--on", &a.addr]);
    assert!(
        wait_until(BOOT, || ready(&a.vm_dir(&vm))).is_some(),
        "no ready line on A"
    );
    more_ticks(&a.vm_dir(&vm), 3);

    let job: serde_json::Value = serde_json::from_str(&run(&[
        "--json",
        "vm",
        "migrate",
        &vm,
        "--from",
        &a.addr,
        "--to",
        &b.addr,
        "--downtime",
        "300",
    ]))
    .unwrap();
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["kind"], "live");
    println!(
        "A → B (shared storage): downtime {} ms, {} bytes",
        job["downtime_ms"], job["bytes"]
    );
    assert!(job["downtime_ms"].as_i64().is_some());
    let last_a = last_tick(&a.vm_dir(&vm)).unwrap().0;
    more_ticks(&b.vm_dir(&vm), 2);
    let on_b = console_log(&b.vm_dir(&vm));
    assert!(
        !on_b.contains("baton-guest: ready"),
        "the guest did not reboot"
    );
    let first_b = ticks(&on_b)[0].0;
    assert!(
        first_b >= last_a && first_b <= last_a + 5,
        "A ended at {last_a}, B began at {first_b}"
    );
    assert_eq!(vm_processes(&vm).len(), 1);

    let b_disk = b.json(&["vm", "inspect", &vm])["status"]["disks"][0]["path"]
        .as_str()
        .unwrap()
        .to_string();
    let job: serde_json::Value = serde_json::from_str(&run(&[
        "--json",
        "vm",
        "migrate",
        &vm,
        "--storage",
        "--from",
        &b.addr,
        "--to",
        &c.addr,
        "--downtime",
        "300",
        "--bandwidth",
        "500M",
    ]))
    .unwrap();
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["kind"], "live-storage");
    println!(
        "B → C (with storage): downtime {} ms, {} bytes",
        job["downtime_ms"], job["bytes"]
    );
    assert!(
        job["bytes"].as_i64().unwrap() > 64 << 20,
        "memory and disk were sent: {job}"
    );
    let last_b = last_tick(&b.vm_dir(&vm)).unwrap().0;
    more_ticks(&c.vm_dir(&vm), 2);
    let on_c = console_log(&c.vm_dir(&vm));
    assert!(
        !on_c.contains("baton-guest: ready"),
        "the guest did not reboot"
    );
    let first_c = ticks(&on_c)[0].0;
    assert!(
        first_c >= last_b && first_c <= last_b + 5,
        "B ended at {last_b}, C began at {first_c}"
    );
    // C runs on its own copy; the image baton made went with the move.
    let c_disk = c.json(&["vm", "inspect", &vm])["status"]["disks"][0]["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(c_disk.starts_with(&c.dir.display().to_string()), "{c_disk}");
    assert!(
        !Path::new(&b_disk).exists(),
        "{b_disk} was moved, not copied"
    );
    // The guest writes through the copy: a snapshot lands in C's image.
    let out = c
        .cmd()
        .args(["vm", "snapshot", "create", &vm, "--name", "onc"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let l = Command::new("qemu-img")
        .args(["snapshot", "-l", "-U", &c_disk])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&l.stdout).contains("onc"));
    // Capabilities were measured, and say how.
    let report = c.json(&["vm", "report"]);
    assert_eq!(report["hypervisor"]["storage_migration"], true, "{report}");
    assert!(
        report["hypervisor"]["measured"]
            .to_string()
            .contains("pc-i440fx"),
        "{}",
        report["hypervisor"]
    );
    // The daemon's one stream carries what happened on each host, once.
    let followed = |h: &VmHost| -> Vec<(String, String, String)> {
        let v = h.json(&["-p", "vms", "events", "--limit", "1000"]);
        v["events"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let text = |k: &str| e[k].as_str().unwrap_or("").to_string();
                (text("kind"), text("subject"), text("message"))
            })
            .collect()
    };
    let wanted = [
        (vm.clone(), format!("on {}: migrated to ", a.addr)),
        (
            vm.clone(),
            format!("on {}: arrived by live migration, running", b.addr),
        ),
        (vm.clone(), format!("on {}: migrated to ", b.addr)),
        (
            vm.clone(),
            format!("on {}: arrived by live migration, running", c.addr),
        ),
        ("127.0.0.1:1".to_string(), "unreachable: ".to_string()),
    ];
    let has = |events: &[(String, String, String)], (subject, start): &(String, String)| {
        events
            .iter()
            .filter(|(_, s, m)| s == subject && m.starts_with(start.as_str()))
            .count()
    };
    let _ = wait_until(Duration::from_secs(30), || {
        std::thread::sleep(Duration::from_millis(300));
        let events = followed(&h);
        wanted.iter().all(|w| has(&events, w) >= 1)
    });
    let events = followed(&h);
    for w in &wanted {
        assert_eq!(has(&events, w), 1, "{w:?} once in {events:#?}");
    }
    assert!(events
        .iter()
        .any(|(k, s, _)| k == "agent" && s == "127.0.0.1:1"));
    // A daemon started again goes on from where the last one stopped: nothing twice.
    let _ = serve.0.kill();
    let _ = serve.0.wait();
    let _serve = follow();
    let again = wait_until(Duration::from_secs(30), || {
        std::thread::sleep(Duration::from_millis(300));
        let out = h.baton(&["--json", "serve", "--status"]);
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let agents = s["agents"].as_array().cloned().unwrap_or_default();
        agents.iter().filter(|a| a["reachable"] == true).count() == 3
    });
    assert!(again.is_some(), "the three agents are followed again");
    std::thread::sleep(Duration::from_secs(2));
    let again = followed(&h);
    for w in &wanted[..4] {
        assert_eq!(has(&again, w), 1, "{w:?} once after a restart: {again:#?}");
    }
    let out = c.cmd().args(["vm", "rm", "--disks", &vm]).output().unwrap();
    assert!(out.status.success());
    assert!(vm_processes(&vm).is_empty());
}

#[test]
fn bad_specs_are_refused_before_anything_starts() {
    let Some((k, i)) = guest() else { return };
    let h = VmHost::new();
    let vm = h.vm("bad");
    h.write(
        "baton.yaml",
        &format!(
            "vms:\n  - name: {vm}\n    memory: 64T\n    boot: {{kernel: {}, initrd: {}}}\n  - name: other\n    boot: {{kernel: /nonexistent/vmlinuz}}\n  - name: {vm}\n    boot: {{kernel: {}}}\n    cpu: 2\n",
            k.display(),
            i.display(),
            k.display()
        ),
    );
    for args in [vec!["vm", "create"], vec!["vm", "start", &vm]] {
        let out = h.baton(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("baton.yaml:3:"), "located: {err}");
        assert!(err.contains("is more memory than this host has"), "{err}");
        assert!(
            err.contains("vms[1].boot.kernel: kernel /nonexistent/vmlinuz does not exist"),
            "{err}"
        );
        assert!(
            err.contains(&format!("vms[2].name: duplicate VM name \"{vm}\"")),
            "{err}"
        );
    }
    assert!(vm_processes(&vm).is_empty());
    assert!(
        !h.state.path().join("vms").join(&vm).exists(),
        "nothing was made"
    );
    assert_eq!(h.json(&["vm", "ls"]), serde_json::json!([]));
}

/// Runs `baton vm agent ARGS` that must refuse to start: its exit code and stderr (it
/// is killed, and the test fails, if it still runs after 10 s).
fn agent_refusing(env_token: Option<&str>, args: &[&str]) -> (Option<i32>, String) {
    let state = tempfile::tempdir().unwrap();
    let mut c = Command::new(baton_bin());
    c.env("BATON_STATE_DIR", state.path())
        .env_remove("BATON_AGENT_CA")
        .args(["vm", "agent"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    match env_token {
        Some(t) => c.env("BATON_AGENT_TOKEN", t),
        None => c.env_remove("BATON_AGENT_TOKEN"),
    };
    let mut child = c.spawn().unwrap();
    let exited = wait_until(Duration::from_secs(10), || {
        child.try_wait().ok().flatten().is_some()
    });
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("baton vm agent {args:?} started instead of refusing");
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_agent_needs_a_token_and_tls_off_loopback() {
    let listen = format!("127.0.0.1:{}", free_port());
    let (code, err) = agent_refusing(None, &["--listen", &listen]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("baton vm agent needs a token"), "{err}");
    let (code, err) = agent_refusing(Some("short"), &["--listen", &listen]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("BATON_AGENT_TOKEN: bearer token: it is 5 characters long"),
        "{err}"
    );
    assert!(
        !err.contains("short\n") && !err.contains("\"short\""),
        "{err}"
    );
    let open = format!("0.0.0.0:{}", free_port());
    let (code, err) = agent_refusing(Some(AGENT_TOKEN), &["--listen", &open]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("is not a loopback address: the agent needs TLS"),
        "{err}"
    );
    assert!(
        !err.contains(AGENT_TOKEN),
        "the token stays out of errors: {err}"
    );

    // A new state directory is made private.
    let a = Agent::start(None, 3000, &[]);
    let mode = std::fs::metadata(&a.dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", a.dir.display());
}

#[test]
fn every_agent_route_needs_the_token() {
    let a = Agent::start(None, 3000, &[]);
    let routes = [
        ("GET", "/v1/health"),
        ("GET", "/v1/vms"),
        ("GET", "/v1/report"),
        ("GET", "/v1/events"),
        ("POST", "/v1/incoming"),
        ("POST", "/v1/incoming/finish"),
        ("POST", "/v1/incoming/abort"),
        ("POST", "/v1/migrate"),
        ("POST", "/v1/start"),
        ("POST", "/v1/lease"),
        ("POST", "/v1/lease/release"),
        ("POST", "/v1/fence"),
        ("GET", "/v1/no-such-route"),
    ];
    for (method, path) in routes {
        for token in [None, Some("wrong-token-0123456789abcdef"), Some("")] {
            let (status, body) = a.request(method, path, token, Some("{}"));
            assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
            assert!(
                body["error"]
                    .as_str()
                    .unwrap_or("")
                    .contains("bearer token"),
                "{body}"
            );
        }
    }
    let (status, body) = a.request("GET", "/v1/health", Some(AGENT_TOKEN), None);
    assert_eq!((status, body["ok"].as_bool()), (200, Some(true)), "{body}");
    let (status, body) = a.request("GET", "/v1/vms", Some(AGENT_TOKEN), None);
    assert_eq!((status, body), (200, serde_json::json!([])));

    // The CLI without a token says where to give one.
    let h = VmHost::new();
    let vm = h.vm("notok");
    h.write(
        "baton.yaml",
        &format!(
            "vms:\n  {vm}:\n    boot: {{kernel: {}}}\n",
            h.dir.path().join("baton.yaml").display()
        ),
    );
    let out = h
        .cmd()
        .env_remove("BATON_AGENT_TOKEN")
        .args(["vm", "start", &vm, "--on", &a.addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing bearer token"), "{err}");
    assert!(
        err.contains("set BATON_AGENT_TOKEN or pass --token-file"),
        "{err}"
    );
}

/// A `/v1/start` body: a VM booting `kernel`, with `change` applied.
fn start_body(kernel: &Path, change: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v = serde_json::json!({
        "name": "ok", "cpus": 1, "memory_mib": 128, "disks": [],
        "boot": {"kind": "kernel", "kernel": kernel, "initrd": null, "cmdline": ""},
        "network": {"mode": "none", "forwards": []},
        "autostart": false, "accel": "tcg", "labels": {}, "environment": "dev", "ha": false
    });
    change(&mut v);
    v.to_string()
}

/// Every path under `dir`, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            out.push(e.path().display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_agent_refuses_names_and_files_outside_its_directories() {
    let images = tempfile::tempdir().unwrap();
    let kernel = images.path().join("vmlinuz");
    std::fs::write(&kernel, "not a kernel").unwrap();
    let evil = tempfile::Builder::new().prefix("evil").tempdir().unwrap();
    let a = Agent::start(None, 3000, &[images.path()]);
    let before = tree(a.tmp.path());
    let disk = |d: serde_json::Value| move |v: &mut serde_json::Value| v["disks"] = d;
    let new_disk = |path: Option<&Path>, backing: Option<&str>| {
        serde_json::json!([{"name": "disk0", "source": {"kind": "new",
            "size_bytes": 1048576, "backing": backing, "path": path}}])
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "/v1/start",
            start_body(&kernel, |v| v["name"] = "../x".into()),
            "VM name \"../x\"",
        ),
        (
            "/v1/start",
            start_body(
                &kernel,
                disk(new_disk(Some(&evil.path().join("disk.qcow2")), None)),
            ),
            "outside the directories",
        ),
        (
            "/v1/start",
            start_body(&kernel, disk(new_disk(None, Some("/etc/shadow")))),
            "backing image /etc/shadow: outside the directories",
        ),
        (
            "/v1/start",
            start_body(
                &kernel,
                disk(serde_json::json!([{"name": "disk0",
                    "source": {"kind": "existing", "path": "/etc/shadow"}}])),
            ),
            "disk path /etc/shadow: outside the directories",
        ),
        (
            "/v1/start",
            start_body(&kernel, |v| {
                v["boot"] = serde_json::json!({"kind": "iso", "path": "/etc/shadow"})
            }),
            "ISO image /etc/shadow: outside the directories",
        ),
        (
            "/v1/incoming",
            serde_json::json!({"machine": {
                "spec": serde_json::from_str::<serde_json::Value>(
                    &start_body(&kernel, |v| v["name"] = "../x".into())).unwrap(),
                "disks": []
            }})
            .to_string(),
            "VM name \"../x\"",
        ),
        (
            "/v1/incoming",
            serde_json::json!({"machine": {
                "spec": serde_json::from_str::<serde_json::Value>(
                    &start_body(&kernel, |_| {})).unwrap(),
                "disks": [{"name": "disk0", "path": "/etc/shadow", "owned": true}]
            }})
            .to_string(),
            "disk path /etc/shadow: outside the directories",
        ),
    ];
    for (path, body, want) in cases {
        let (status, answer) = a.request("POST", path, Some(AGENT_TOKEN), Some(&body));
        assert!(
            (400..500).contains(&status),
            "{path} {body}: {status} {answer}"
        );
        let msg = answer["error"].as_str().unwrap_or("");
        assert!(msg.contains(want), "{path}: wanted {want:?} in {msg:?}");
        assert_eq!(
            tree(a.tmp.path()),
            before,
            "{path} {body}: something was made"
        );
        assert_eq!(tree(evil.path()), Vec::<String>::new());
    }
    assert!(!a.dir.join("x").exists());
    let (_, vms) = a.request("GET", "/v1/vms", Some(AGENT_TOKEN), None);
    assert_eq!(vms, serde_json::json!([]));
}

/// A TLS agent on `listen` (its token, certificate and key, a disk directory holding a
/// file that is no kernel, and with `client_ca` its own CA for callers' certificates),
/// and a project whose one VM boots that "kernel": the agent's own refusal of it shows
/// a request got through.
struct TlsScene {
    certs: tempfile::TempDir,
    ca: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    agent: KillOnDrop,
    h: VmHost,
    vm: String,
    // Bind these when destructuring: a field left to `..` is dropped (and its
    // directory removed) at once.
    _state: tempfile::TempDir,
    _images: tempfile::TempDir,
}

impl TlsScene {
    fn start(listen: &str, vm: &str, client_ca: bool) -> TlsScene {
        let certs = tempfile::tempdir().unwrap();
        // The test certificates are good for both ends (serverAuth and clientAuth).
        let (ca, cert, key) = tls_files(certs.path(), "agent");
        let token_file = certs.path().join("token");
        std::fs::write(&token_file, AGENT_TOKEN).unwrap();
        let images = tempfile::tempdir().unwrap();
        let kernel = images.path().join("vmlinuz");
        std::fs::write(&kernel, "not a kernel").unwrap();
        let state = tempfile::tempdir().unwrap();
        let agent = KillOnDrop(
            Command::new(baton_bin())
                .env("BATON_STATE_DIR", state.path())
                .env_remove("BATON_AGENT_TOKEN")
                .args(["vm", "agent", "--listen", listen])
                .args(["--token-file".as_ref(), token_file.as_os_str()])
                .args(["--tls-cert".as_ref(), cert.as_os_str()])
                .args(["--tls-key".as_ref(), key.as_os_str()])
                .args(["--disk-dir".as_ref(), images.path().as_os_str()])
                .args(client_ca.then_some("--tls-client-ca"))
                .args(client_ca.then_some(&ca))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let port = listen.rsplit_once(':').unwrap().1;
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok()
        });
        assert!(up.is_some(), "the TLS agent did not listen");
        let h = VmHost::new();
        let vm = h.vm(vm);
        h.write(
            "baton.yaml",
            &format!(
                "vms:\n  {vm}:\n    accel: tcg\n    network: none\n    boot: {{kernel: {}}}\n",
                kernel.display()
            ),
        );
        TlsScene {
            certs,
            ca,
            cert,
            key,
            agent,
            h,
            vm,
            _state: state,
            _images: images,
        }
    }
}

#[test]
fn an_agent_over_tls_with_a_ca_and_the_token() {
    // Off loopback, with TLS: allowed.
    let port = free_port();
    let TlsScene {
        certs,
        ca,
        mut agent,
        h,
        vm,
        _state,
        _images,
        ..
    } = TlsScene::start(&format!("0.0.0.0:{port}"), "tls", false);
    let (other_ca, _, _) = tls_files(certs.path(), "other");
    let addr = format!("127.0.0.1:{port}");
    let start = |to: &str, ca: &Path| {
        let out = h
            .cmd()
            .args(["vm", "start", &vm, "--on", to, "--tls-ca"])
            .arg(ca)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let https = format!("https://{addr}");
    let through = start(&https, &ca);
    let plain = http_request(&addr, "GET", "/v1/health", Some(AGENT_TOKEN), None);
    let stranger = start(&addr, &other_ca);
    let _ = agent.0.kill();
    let _ = agent.0.wait();
    // The request went through TLS and the token check: what comes back is the agent's
    // own answer about the VM (its "kernel" is not one), or the VM started.
    assert!(
        !through.contains("TLS") && !through.contains("bearer"),
        "{through}"
    );
    if !through.is_empty() {
        assert!(through.contains(&format!("agent {https}: ")), "{through}");
    }
    assert_eq!(plain.0, 0, "plain HTTP gets no answer from a TLS agent");
    assert!(stranger.contains("TLS handshake failed"), "{stranger}");
}

/// An agent started with `--tls-client-ca` asks every caller for a certificate signed
/// by that CA, besides the token: none, or one of another CA, is refused in the
/// handshake; the right one goes through, and still needs the token. A daemon follows
/// such an agent with its own certificate (`serve --agent-client-cert`).
#[test]
fn an_agent_with_a_client_ca_needs_the_caller_s_certificate_too() {
    let port = free_port();
    let TlsScene {
        certs,
        ca,
        cert,
        key,
        agent,
        h,
        vm,
        _state,
        _images,
    } = TlsScene::start(&format!("127.0.0.1:{port}"), "mtls", true);
    let (_, other_cert, other_key) = tls_files(certs.path(), "other");
    let addr = format!("https://127.0.0.1:{port}");
    let start = |me: Option<(&Path, &Path)>, token: bool| {
        let mut c = h.cmd();
        c.args(["vm", "start", &vm, "--on", &addr, "--tls-ca"])
            .arg(&ca);
        if let Some((cert, key)) = me {
            c.arg("--client-cert")
                .arg(cert)
                .arg("--client-key")
                .arg(key);
        }
        if !token {
            c.env_remove("BATON_AGENT_TOKEN");
        }
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let kernel_refused = |e: &str| e.contains("vmlinuz") || e.contains("kernel");
    let (ok, none) = start(None, true);
    assert!(!ok && !kernel_refused(&none), "no certificate: {none}");
    assert!(none.contains("asks for a client certificate"), "{none}");
    let (ok, stranger) = start(Some((&other_cert, &other_key)), true);
    assert!(
        !ok && !kernel_refused(&stranger),
        "another CA's: {stranger}"
    );
    assert!(
        stranger.contains("asks for a client certificate"),
        "{stranger}"
    );
    let (_, tokenless) = start(Some((&cert, &key)), false);
    assert!(
        tokenless.contains("401") || tokenless.contains("token"),
        "{tokenless}"
    );
    assert!(!kernel_refused(&tokenless), "{tokenless}");
    // Through both checks: the agent's own answer about the VM (its "kernel" is none).
    let (_, through) = start(Some((&cert, &key)), true);
    assert!(
        !through.contains("TLS") && !through.contains("401"),
        "{through}"
    );
    // Half a client identity is refused before anything is sent.
    let mut c = h.cmd();
    c.args(["vm", "start", &vm, "--on", &addr, "--tls-ca"])
        .arg(&ca)
        .arg("--client-cert")
        .arg(&cert);
    let out = c.output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--client-key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A daemon follows the agent with its own certificate, and says so.
    let d = VmHost::new();
    let _serve = KillOnDrop(
        d.cmd()
            .args(["serve", "--tick-ms", "200", "--agent", &addr])
            .args(["--agent-ca".as_ref(), ca.as_os_str()])
            .args(["--agent-client-cert".as_ref(), cert.as_os_str()])
            .args(["--agent-client-key".as_ref(), key.as_os_str()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let followed = wait_until(Duration::from_secs(30), || {
        std::thread::sleep(Duration::from_millis(300));
        let out = d.baton(&["--json", "serve", "--status"]);
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        s["agents"][0]["reachable"] == true
    });
    assert!(followed.is_some(), "{}", d.ok(&["serve", "--status"]));
    drop(agent);
}

/// Runs `baton down -v` for the project when dropped, so a failed test leaves neither
/// containers nor VMs behind.
struct DownOnDrop<'a>(&'a VmHost);

impl Drop for DownOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.baton(&["down", "-v"]);
    }
}

/// One file with a VM and a service that waits for it (`depends_on` across kinds):
/// `plan` shows both, `up` brings both up, `ps` lists both; under `baton serve` a guest killed with -9 comes back by its restart
/// policy; `down` stops the VM and keeps its disk, `down -v` removes it.
#[test]
fn one_plan_for_a_vm_and_a_service_and_serve_restarts_a_killed_guest() {
    let Some((k, i)) = guest() else { return };
    if !baton_tests::docker_available() {
        return;
    }
    let h = VmHost::new();
    let _down = DownOnDrop(&h);
    let vm = h.vm("mixed");
    let port = free_port();
    let project = format!("mix{}", std::process::id());
    h.write(
        "baton.yaml",
        &format!(
            "name: {project}\nservices:\n  app:\n    image: {}\n    init: true\n    stop_grace_period: 1s\n    command: [sleep, \"3600\"]\n    depends_on: {{{vm}: {{condition: service_healthy}}}}\nvms:\n{}",
            baton_tests::IMAGE,
            guest_vm(
                &vm,
                &k,
                &i,
                &format!(
                    "    restart: always\n    network: {{mode: user, forwards: [\"127.0.0.1:{port}:80\"]}}\n    disks: [{{size: 16M}}]\n    healthcheck: {{http: {{port: 80, path: /health}}}}\n"
                )
            )
        ),
    );

    // plan: both halves, exit 2 (changes), nothing made.
    let plan = h.baton(&["plan"]);
    assert_eq!(
        plan.status.code(),
        Some(2),
        "{}",
        baton_tests::stderr(&plan)
    );
    let shown = format!(
        "{}{}",
        baton_tests::stdout(&plan),
        baton_tests::stderr(&plan)
    );
    assert!(shown.contains(&vm) && shown.contains("create"), "{shown}");
    assert!(shown.contains("app"), "{shown}");
    assert!(vm_processes(&vm).is_empty(), "plan started nothing");

    // up: the VM first (the app waits for its health check), then the container.
    h.ok(&["up", "-d", "--wait-timeout", "300"]);
    let pids = vm_processes(&vm);
    assert_eq!(pids.len(), 1, "one QEMU for {vm}");
    let rows = h.json(&["ps"]);
    let rows = rows.as_array().unwrap();
    let vm_row = rows
        .iter()
        .find(|r| r["kind"] == "vm")
        .unwrap_or_else(|| panic!("no VM row in {rows:?}"));
    assert_eq!(vm_row["name"], vm.as_str());
    assert_eq!(vm_row["state"], "running", "{vm_row}");
    assert_eq!(vm_row["health"], "healthy", "{vm_row}");
    assert!(
        rows.iter()
            .any(|r| r["service"] == "app" && r["state"] == "running"),
        "{rows:?}"
    );

    // Under baton serve, a guest killed with -9 comes back (restart: always).
    let mut serve = h
        .cmd()
        .args(["serve", "--tick-ms", "200", "--sample-interval", "1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("baton serve");
    std::thread::sleep(Duration::from_secs(2));
    let killed = pids[0];
    let t0 = Instant::now();
    let _ = Command::new("kill")
        .args(["-9", &killed.to_string()])
        .status();
    let back = wait_until(Duration::from_secs(180), || {
        let now = vm_processes(&vm);
        now.len() == 1 && now[0] != killed
    });
    // The stop nobody asked for is the built-in alert VmStopped, although the guest
    // came back (it counts until the VM has run again for a minute).
    let alerted = wait_until(Duration::from_secs(30), || {
        let Ok(out) = h.cmd().args(["--json", "alerts", "ls"]).output() else {
            return false;
        };
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["alerts"].as_array().is_some_and(|all| {
            all.iter().any(|a| {
                a["labels"]["alertname"] == "VmStopped"
                    && a["labels"]["vm"] == vm.as_str()
                    && a["phase"] == "firing"
            })
        })
    });
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(
        back.is_some(),
        "the killed guest did not come back under baton serve"
    );
    println!("guest back {:?} after kill -9", t0.elapsed());
    let ls = h.cmd().args(["--json", "alerts", "ls"]).output().unwrap();
    assert!(
        alerted.is_some(),
        "no VmStopped alert: {}",
        String::from_utf8_lossy(&ls.stdout)
    );
    assert!(
        wait_until(BOOT, || ready(&h.vm_dir(&vm))).is_some(),
        "the restarted guest never said ready"
    );

    // down keeps the disk; down -v removes it.
    let disk = h.vm_dir(&vm).join("disk0.qcow2");
    assert!(disk.exists());
    h.ok(&["down"]);
    assert!(
        wait_until(Duration::from_secs(60), || vm_processes(&vm).is_empty()).is_some(),
        "down stopped the VM"
    );
    assert!(disk.exists(), "down keeps the VM's disk");
    h.ok(&["down", "-v"]);
    assert!(!disk.exists(), "down -v removes the disk baton made");
}

/// `healthcheck: {agent: true}`: the VM gets the guest agent's virtio-serial port and
/// the guest's own qemu-ga (Debian's, in the test guest) answers `guest-sync` and
/// `guest-ping` there, with no port forwarded at all: `up` waits for it and `ps` says
/// healthy; once qemu-ga is killed inside the guest, `ps` says unhealthy.
#[test]
fn the_guest_agent_answers_for_a_vm_s_health() {
    let Some((k, i)) = guest() else { return };
    let h = VmHost::new();
    let _down = DownOnDrop(&h);
    let vm = h.vm("qga");
    h.write(
        "baton.yaml",
        &format!(
            "name: qga{}\nvms:\n{}",
            std::process::id(),
            guest_vm(
                &vm,
                &k,
                &i,
                "    healthcheck: {agent: true, interval: 1s, timeout: 3s}\n"
            )
        ),
    );
    h.ok(&["up", "-d", "--wait-timeout", "300"]);
    let health = || -> String {
        let rows = h.json(&["ps"]);
        rows.as_array()
            .and_then(|rows| {
                rows.iter()
                    .find(|r| r["kind"] == "vm" && r["name"] == vm.as_str())
            })
            .map(|r| r["health"].as_str().unwrap_or("-").to_string())
            .unwrap_or_default()
    };
    assert!(
        wait_until(BOOT, || health() == "healthy").is_some(),
        "the agent never answered: {}\n{}",
        health(),
        console_log(&h.vm_dir(&vm))
    );
    assert!(
        console_log(&h.vm_dir(&vm)).contains("baton-guest: agent on /dev/vport"),
        "qemu-ga runs in the guest"
    );
    h.guest_run(&vm, "kill $(cat /tmp/qemu-ga.pid)");
    assert!(
        wait_until(Duration::from_secs(60), || health() == "unhealthy").is_some(),
        "still {} with qemu-ga killed",
        health()
    );
}

/// Kills and reaps a child process when dropped (a daemon a failed test started).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `(subject, message)` of the project's VM events, oldest first.
fn vm_events(h: &VmHost) -> Vec<(String, String)> {
    let out = h.baton(&["--json", "events", "--limit", "1000"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut events: Vec<(i64, String, String)> = v["events"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|e| e["kind"] == "vm")
                .map(|e| {
                    (
                        e["id"].as_i64().unwrap_or(0),
                        e["subject"].as_str().unwrap_or("").to_string(),
                        e["message"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    events.sort();
    events.into_iter().map(|(_, s, m)| (s, m)).collect()
}

/// A policy scheduled every minute with `max_snapshots: 3`, kept by `baton serve`: after
/// five scheduled snapshots exactly the three newest `automated` ones are left (in the
/// store and in the image), the events name the two older ones as pruned, and a
/// `manual` snapshot taken before is not touched. Four to six minutes: the schedule's
/// minutes are real ones.
#[test]
fn a_schedule_every_minute_with_max_snapshots_three_keeps_the_three_newest() {
    let Some((k, i)) = guest() else { return };
    if !baton_tests::docker_available() {
        return;
    }
    let h = VmHost::new();
    let _down = DownOnDrop(&h);
    let vm = h.vm("sched");
    let project = format!("sched{}", std::process::id());
    h.write(
        "baton.yaml",
        &format!(
            "name: {project}\nvms:\n{}snapshot_policies:\n  prod: {{max_snapshots: 3, schedule: \"* * * * *\"}}   # cron, UTC\n",
            guest_vm(
                &vm,
                &k,
                &i,
                "    environment: prod\n    disks: [{size: 16M}]\n"
            )
        ),
    );
    h.ok(&["up", "-d", "--wait-timeout", "300"]);
    let dir = h.vm_dir(&vm);
    assert!(
        wait_until(BOOT, || ready(&dir)).is_some(),
        "no ready line:\n{}",
        console_log(&dir)
    );
    // A manual snapshot: policies neither count nor prune it.
    h.ok(&["vm", "snapshot", "create", &vm, "--name", "by-hand"]);

    let mut serve = KillOnDrop(
        h.cmd()
            .args(["serve", "--tick-ms", "200", "--sample-interval", "1s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("baton serve"),
    );
    let taken = |events: &[(String, String)]| -> Vec<String> {
        events
            .iter()
            .filter(|(s, _)| *s == vm)
            .filter_map(|(_, m)| {
                let rest = m.strip_prefix("snapshot ")?;
                let (name, how) = rest.split_once(' ')?;
                how.starts_with("taken (schedule \"* * * * *\")")
                    .then(|| name.to_string())
            })
            .collect()
    };
    // Polled every 2 s (a CLI run each): the next run is a minute away.
    let t0 = Instant::now();
    let mut five = None;
    while t0.elapsed() < Duration::from_secs(600) {
        if taken(&vm_events(&h)).len() >= 5 {
            five = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    // The fifth run's event comes after its pruning: stopping the daemon now leaves
    // the store and the image as that run left them.
    let _ = serve.0.kill();
    let _ = serve.0.wait();
    let events = vm_events(&h);
    assert!(five.is_some(), "not five scheduled snapshots: {events:#?}");
    let failed: Vec<_> = events
        .iter()
        .filter(|(s, m)| *s == vm && m.contains("failed"))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    let snaps = h.json(&["vm", "snapshot", "ls", &vm]);
    let all_taken = taken(&events);
    let snaps = snaps.as_array().unwrap();
    let automated: Vec<String> = snaps
        .iter()
        .filter(|s| s["kind"] == "automated")
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    let newest: Vec<String> = all_taken[all_taken.len() - 3..].to_vec();
    assert_eq!(
        automated, newest,
        "the three newest of {all_taken:?} are kept: {snaps:?}"
    );
    assert!(
        snaps
            .iter()
            .any(|s| s["name"] == "by-hand" && s["kind"] == "manual"),
        "the manual snapshot stays: {snaps:?}"
    );
    assert_eq!(snaps.len(), 4, "{snaps:?}");
    // Every older one was pruned, and an event says so.
    let pruned_text: Vec<&str> = events
        .iter()
        .filter(|(s, m)| *s == vm && m.contains("pruned"))
        .map(|(_, m)| m.as_str())
        .collect();
    for old in &all_taken[..all_taken.len() - 3] {
        assert!(
            pruned_text
                .iter()
                .any(|m| m.starts_with(&format!("snapshot {old} pruned"))
                    || m.split("; pruned ")
                        .nth(1)
                        .is_some_and(|p| p.split(", ").any(|n| n == old.as_str()))),
            "no event says {old} was pruned: {pruned_text:#?}"
        );
    }
    assert!(
        !pruned_text.iter().any(|m| m.contains("by-hand")),
        "{pruned_text:?}"
    );
    // QEMU's view of the disk agrees: the kept ones and the manual one, nothing else.
    let out = Command::new("qemu-img")
        .args(["snapshot", "-l", "-U"])
        .arg(dir.join("disk0.qcow2"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let in_image: Vec<&str> = text
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    for n in newest.iter().map(String::as_str).chain(["by-hand"]) {
        assert!(in_image.contains(&n), "{n} missing in qemu-img:\n{text}");
    }
    assert_eq!(in_image.len(), 4, "{text}");
    println!(
        "{} scheduled snapshots in {:?}, kept {newest:?}",
        all_taken.len(),
        five.unwrap()
    );
}
