//! Failover of `ha: true` VMs between agents, with fencing that cannot lie.
//!
//! Every agent of a group is a voter (itself and its `--peer`s). The agent that runs an
//! ha VM holds a lease on it from the voters: each grants it for `ttl` on its own clock
//! and refuses anyone else until then. The owner renews every tick and keeps the VM
//! only while it holds enough votes that nobody else can gather a majority
//! ([`keep_quorum`]); its deadline is written to the VM's directory, where a guard
//! process (`baton vm guard`, started beside QEMU and independent of the agent) kills
//! QEMU when the deadline passes. So once a lease has expired at a majority of voters,
//! the guest on the old owner is dead: its guard killed it before, whether its agent
//! lives, is cut off or was killed.
//!
//! Another agent takes the VM over only with the votes of a majority ([`majority`]):
//! after the owner confirmed it killed the guest (`POST /v1/fence`, which releases the
//! owner's vote), or after the lease expired at a majority. A fence that is not
//! confirmed is recorded as not done, and without a majority nothing starts. With two
//! agents no majority can form without the owner: a cut-off owner keeps its VM, and a
//! dead one loses it until a person acts (or a third agent joins as witness).
//! QEMU's lock on the shared qcow2 remains the last guard.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::host::{Host, Machine};
use crate::VmError;

/// Votes needed to take a VM over (or to start one): a strict majority of `voters`.
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// Votes the owner must hold to keep running: with this many, the others cannot
/// gather a majority.
pub fn keep_quorum(voters: usize) -> usize {
    voters + 1 - majority(voters)
}

/// Timing of the lease protocol.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a vote lasts at the voter (its own clock, from when it granted).
    pub ttl_ms: i64,
    /// How often owners renew and watchers look.
    pub tick: Duration,
}

impl Timing {
    /// How long before its votes run out the owner's guard kills the guest: the time a
    /// kill takes, with room to spare.
    pub fn margin_ms(&self) -> i64 {
        (self.ttl_ms / 4).max(200)
    }

    /// How long a vote request may take: a voter that does not answer by then does
    /// not hold up the round (renewals must land well before the deadline).
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.ttl_ms / 6).unwrap_or(0))
            .clamp(Duration::from_millis(250), Duration::from_millis(1000))
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            ttl_ms: 3000,
            tick: Duration::from_millis(500),
        }
    }
}

/// One voter's vote for one VM.
#[derive(Debug, Clone)]
pub struct Grant {
    pub holder: String,
    pub expires: Instant,
    /// The VM as its holder runs it, for whoever takes it over.
    pub machine: Machine,
}

/// What a voter answers to a lease request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Vote {
    Granted,
    /// Someone else holds it for `remaining_ms` more, or this voter started too
    /// recently to know (`holder` empty).
    Refused {
        holder: String,
        remaining_ms: i64,
    },
}

/// Pure: a voter's answer to `holder` asking for `vm` at `now`, given its grant so far
/// and the time before which it grants nothing (its start plus a ttl: it may have
/// granted to someone before it restarted).
pub fn answer(current: Option<&Grant>, holder: &str, now: Instant, quiet_until: Instant) -> Vote {
    if now < quiet_until {
        return Vote::Refused {
            holder: String::new(),
            remaining_ms: millis(quiet_until - now),
        };
    }
    match current {
        Some(g) if g.holder != holder && g.expires > now => Vote::Refused {
            holder: g.holder.clone(),
            remaining_ms: millis(g.expires - now),
        },
        _ => Vote::Granted,
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Pure: the owner's deadline (wall ms) from when it last sent each request a voter
/// granted: the `keep_quorum`-th latest, plus the ttl, less the margin. `None` when it
/// holds too few votes.
pub fn deadline(granted_at: &[i64], voters: usize, t: Timing) -> Option<i64> {
    let mut times = granted_at.to_vec();
    times.sort_unstable_by(|a, b| b.cmp(a));
    let nth = times.get(keep_quorum(voters).checked_sub(1)?)?;
    Some(nth + t.ttl_ms - t.margin_ms())
}

/// A lease request, as voters receive it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRequest {
    pub vm: String,
    pub holder: String,
    pub machine: Machine,
}

/// The lease deadline of the VM in `dir` (wall ms), as its guard reads it.
pub fn deadline_path(dir: &Path) -> PathBuf {
    dir.join("lease-deadline")
}

fn fenced_path(dir: &Path) -> PathBuf {
    dir.join("fenced")
}

fn guard_pid_path(dir: &Path) -> PathBuf {
    dir.join("guard.pid")
}

/// Writes the deadline atomically (temporary file, then rename).
pub fn write_deadline(dir: &Path, at_ms: i64) -> Result<(), VmError> {
    let p = deadline_path(dir);
    let tmp = dir.join(format!("lease-deadline.tmp{}", std::process::id()));
    std::fs::write(&tmp, at_ms.to_string())
        .and_then(|()| std::fs::rename(&tmp, &p))
        .map_err(|e| VmError::Io(p.display().to_string(), e))
}

pub fn read_deadline(dir: &Path) -> Option<i64> {
    std::fs::read_to_string(deadline_path(dir))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The guard of one ha VM (`baton vm guard DIR`): in its own session, it reads the
/// lease deadline every 50 ms and kills the VM's QEMU once it has passed, writing why
/// to `DIR/fenced`. Started before QEMU, it waits for it (up to `STARTUP`) and ends
/// when QEMU is gone. It needs no network and no agent.
pub async fn guard(dir: &Path) -> Result<(), VmError> {
    const STARTUP: Duration = Duration::from_secs(60);
    let _ = nix::unistd::setsid();
    let qemu = crate::qemu::Qemu::default();
    let me = std::process::id().to_string();
    std::fs::write(guard_pid_path(dir), &me)
        .map_err(|e| VmError::Io(guard_pid_path(dir).display().to_string(), e))?;
    let started = Instant::now();
    let mut seen = false;
    loop {
        let pid = qemu.pid(dir);
        match pid {
            Some(_) => seen = true,
            None if seen || started.elapsed() > STARTUP => break,
            None => {}
        }
        // No deadline file is a deadline passed: nobody renews this VM.
        let deadline = read_deadline(dir).unwrap_or(0);
        let now = wall_ms();
        if now >= deadline {
            if let Some(pid) = pid {
                qemu.kill(dir);
                let gone = qemu.wait_gone(dir, Duration::from_secs(5)).await;
                let note = serde_json::json!({
                    "at_ms": now, "deadline_ms": deadline, "pid": pid, "confirmed_dead": gone,
                    "by": "guard",
                });
                let _ = std::fs::write(fenced_path(dir), note.to_string());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if std::fs::read_to_string(guard_pid_path(dir)).is_ok_and(|p| p.trim() == me) {
        let _ = std::fs::remove_file(guard_pid_path(dir));
    }
    Ok(())
}

/// True when the guard of the VM in `dir` runs.
pub fn guard_alive(dir: &Path) -> bool {
    std::fs::read_to_string(guard_pid_path(dir))
        .ok()
        .and_then(|p| p.trim().parse::<i64>().ok())
        .is_some_and(|pid| crate::facts::is_live(pid, &dir.display().to_string()))
}

/// Starts `program vm guard DIR` in its own process group (it makes its own session),
/// and reaps it when it ends.
pub async fn spawn_guard(program: &Path, dir: &Path) -> Result<(), VmError> {
    let mut child = tokio::process::Command::new(program)
        .arg("vm")
        .arg("guard")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| VmError::Tool {
            tool: program.display().to_string(),
            message: format!("cannot start the lease guard: {e}"),
        })?;
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    // The guard writes its pid first thing: wait for it, so the VM is never unguarded.
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if guard_alive(dir) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(VmError::Tool {
        tool: program.display().to_string(),
        message: "the lease guard did not start".into(),
    })
}

/// How an agent takes part in failover.
#[derive(Debug, Clone)]
pub struct HaConfig {
    /// This agent's address as its peers name it (the lease holder's name).
    pub me: String,
    /// The other agents of the group.
    pub peers: Vec<String>,
    pub timing: Timing,
    /// The `baton` executable, which runs the guards (`baton vm guard DIR`).
    pub guard_program: PathBuf,
}

/// One agent's side of failover: its votes, and its view of the leases it holds.
pub struct Ha {
    pub config: HaConfig,
    grants: Mutex<BTreeMap<String, Grant>>,
    quiet_until: Instant,
    /// For VMs this agent runs: when it last sent a request each voter granted.
    held: Mutex<BTreeMap<String, BTreeMap<String, i64>>>,
    /// Takeovers not possible now: when to try again, and the last reason (said once).
    backoff: Mutex<BTreeMap<String, (Instant, String)>>,
    /// VMs being started here under a fresh lease: renewed before their QEMU runs.
    starting: Mutex<std::collections::BTreeSet<String>>,
}

impl Ha {
    pub fn new(config: HaConfig) -> Ha {
        let quiet = Duration::from_millis(u64::try_from(config.timing.ttl_ms).unwrap_or(0));
        Ha {
            config,
            grants: Mutex::new(BTreeMap::new()),
            quiet_until: Instant::now() + quiet,
            held: Mutex::new(BTreeMap::new()),
            backoff: Mutex::new(BTreeMap::new()),
            starting: Mutex::new(Default::default()),
        }
    }

    fn voters(&self) -> usize {
        1 + self.config.peers.len()
    }

    /// This agent's vote on a request (`POST /v1/lease`).
    pub fn vote(&self, req: &LeaseRequest) -> Vote {
        let now = Instant::now();
        let Ok(mut grants) = self.grants.lock() else {
            return Vote::Refused {
                holder: String::new(),
                remaining_ms: 0,
            };
        };
        let v = answer(grants.get(&req.vm), &req.holder, now, self.quiet_until);
        if v == Vote::Granted {
            let ttl = Duration::from_millis(u64::try_from(self.config.timing.ttl_ms).unwrap_or(0));
            grants.insert(
                req.vm.clone(),
                Grant {
                    holder: req.holder.clone(),
                    expires: now + ttl,
                    machine: req.machine.clone(),
                },
            );
        }
        v
    }

    /// Drops this agent's vote for `holder` on `vm` (`POST /v1/lease/release`).
    pub fn release(&self, vm: &str, holder: &str) {
        if let Ok(mut grants) = self.grants.lock() {
            if grants.get(vm).is_some_and(|g| g.holder == holder) {
                grants.remove(vm);
            }
        }
    }

    /// Asks every voter (this agent directly, its peers over HTTP) for `vm`; returns
    /// the voters that granted, with the wall time the round started.
    async fn canvass(
        &self,
        req: &LeaseRequest,
        client: &crate::agent::Client,
    ) -> (Vec<String>, i64, Vec<(String, Vote)>) {
        let sent = wall_ms();
        let mut granted = Vec::new();
        let mut refusals = Vec::new();
        match self.vote(req) {
            Vote::Granted => granted.push(self.config.me.clone()),
            v => refusals.push((self.config.me.clone(), v)),
        }
        let asks = self.config.peers.iter().map(|p| async move {
            (
                p.clone(),
                client
                    .lease(p, req, self.config.timing.request_timeout())
                    .await,
            )
        });
        for (peer, v) in futures_util::future::join_all(asks).await {
            match v {
                Ok(Vote::Granted) => granted.push(peer),
                Ok(v) => refusals.push((peer, v)),
                Err(_) => {}
            }
        }
        (granted, sent, refusals)
    }

    /// Gathers a majority for `vm` (to start it, or take it over); `Ok` with the
    /// deadline to guard it with, `Err` with why not (and votes given back).
    pub async fn acquire(
        &self,
        machine: &Machine,
        client: &crate::agent::Client,
    ) -> Result<i64, String> {
        let vm = machine.spec.name.clone();
        let req = LeaseRequest {
            vm: vm.clone(),
            holder: self.config.me.clone(),
            machine: machine.clone(),
        };
        let (granted, sent, refusals) = self.canvass(&req, client).await;
        let need = majority(self.voters());
        if granted.len() >= need {
            if let Ok(mut held) = self.held.lock() {
                held.insert(vm, granted.iter().map(|v| (v.clone(), sent)).collect());
            }
            let times = vec![sent; granted.len()];
            return deadline(&times, self.voters(), self.config.timing)
                .ok_or_else(|| "no deadline".to_string());
        }
        self.give_back(&vm, &granted, client).await;
        let held_by: Vec<String> = refusals
            .iter()
            .filter_map(|(voter, v)| match v {
                Vote::Refused { holder, .. } if !holder.is_empty() => {
                    Some(format!("{voter} votes for {holder}"))
                }
                _ => None,
            })
            .collect();
        Err(format!(
            "{} of {} agents granted the lease (a majority is {need}){}",
            granted.len(),
            self.voters(),
            if held_by.is_empty() {
                String::new()
            } else {
                format!(": {}", held_by.join(", "))
            }
        ))
    }

    async fn give_back(&self, vm: &str, voters: &[String], client: &crate::agent::Client) {
        for v in voters {
            if *v == self.config.me {
                self.release(vm, &self.config.me);
            } else {
                let _ = client.release(v, vm, &self.config.me).await;
            }
        }
    }

    /// Starts an ha VM here under a lease: a majority first, then QEMU, its deadline
    /// and its guard.
    pub async fn start(
        &self,
        host: &Host,
        vm: &str,
        client: &crate::agent::Client,
        now: i64,
    ) -> Result<i64, VmError> {
        let machine = host.machine(vm)?;
        let until = self
            .acquire(&machine, client)
            .await
            .map_err(|e| VmError::Invalid(format!("cannot start ha VM {vm}: {e}")))?;
        self.launch(host, &machine, until, client, now).await
    }

    /// Starts a VM whose lease this agent just gathered, always guarded: the deadline
    /// is written and the guard started before QEMU, and the lease is renewed while
    /// QEMU starts (which may take longer than a lease lasts).
    async fn launch(
        &self,
        host: &Host,
        machine: &Machine,
        until: i64,
        client: &crate::agent::Client,
        now: i64,
    ) -> Result<i64, VmError> {
        let vm = machine.spec.name.as_str();
        let dir = host.vm_dir(vm)?;
        std::fs::create_dir_all(&dir).map_err(|e| VmError::Io(dir.display().to_string(), e))?;
        let _ = std::fs::remove_file(fenced_path(&dir));
        write_deadline(&dir, until)?;
        if let Ok(mut s) = self.starting.lock() {
            s.insert(vm.to_string());
        }
        let r = async {
            spawn_guard(&self.config.guard_program, &dir).await?;
            let pid = host.start(vm, now).await?;
            self.renew(host, machine, client).await;
            Ok::<_, VmError>(pid)
        }
        .await;
        if let Ok(mut s) = self.starting.lock() {
            s.remove(vm);
        }
        if r.is_err() {
            let _ = host.kill(vm, now).await;
        }
        r
    }

    fn is_starting(&self, vm: &str) -> bool {
        self.starting.lock().is_ok_and(|s| s.contains(vm))
    }

    /// Renews, every tick, the leases of the ha VMs running here (their deadlines move
    /// only with enough votes), and gives back those of VMs stopped through baton.
    pub async fn renew_all(&self, host: &Host, client: &crate::agent::Client) {
        for rec in host.store.vms().unwrap_or_default() {
            let Ok(m) = host.machine(&rec.name) else {
                continue;
            };
            if !m.spec.ha {
                continue;
            }
            if host.pid(&rec.name).is_some() || self.is_starting(&rec.name) {
                self.renew(host, &m, client).await;
            } else if rec.pid.is_none() && self.holds(&rec.name) {
                // Stopped through baton: nobody should take it over.
                let voters: Vec<String> = self
                    .config
                    .peers
                    .iter()
                    .cloned()
                    .chain([self.config.me.clone()])
                    .collect();
                self.give_back(&rec.name, &voters, client).await;
                if let Ok(mut held) = self.held.lock() {
                    held.remove(&rec.name);
                }
                host.event(
                    &rec.name,
                    "stopped by hand: its lease is given back",
                    wall_ms(),
                );
            }
            // A process that died without being asked keeps its lease until it
            // expires: then a peer takes the VM over.
        }
    }

    /// Looks, every tick, for leases that expired here and tries to take those VMs
    /// over. Returns the VMs taken over.
    pub async fn watch(&self, host: &Host, client: &crate::agent::Client) -> Vec<String> {
        let candidates: Vec<(String, Machine, Instant)> = match self.grants.lock() {
            Ok(g) => g
                .iter()
                .filter(|(_, g)| g.holder != self.config.me)
                .map(|(vm, g)| (vm.clone(), g.machine.clone(), g.expires))
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut taken = Vec::new();
        for (vm, machine, expires) in candidates {
            if Instant::now() < expires + self.stagger() || host.pid(&vm).is_some() {
                continue;
            }
            if self
                .backoff
                .lock()
                .ok()
                .and_then(|b| b.get(&vm).map(|(at, _)| *at))
                .is_some_and(|at| Instant::now() < at)
            {
                continue;
            }
            if self.take_over(host, &vm, &machine, expires, client).await {
                taken.push(vm);
            }
        }
        taken
    }

    fn holds(&self, vm: &str) -> bool {
        self.held.lock().is_ok_and(|h| h.contains_key(vm))
    }

    /// Watchers try one after another, in the order of their names: fewer races.
    fn stagger(&self) -> Duration {
        let mut all: Vec<&String> = self.config.peers.iter().collect();
        all.push(&self.config.me);
        all.sort();
        let rank = all.iter().position(|a| **a == self.config.me).unwrap_or(0);
        self.config.timing.tick * u32::try_from(rank).unwrap_or(0)
    }

    async fn renew(&self, host: &Host, m: &Machine, client: &crate::agent::Client) {
        let vm = &m.spec.name;
        let Ok(dir) = host.vm_dir(vm) else {
            return;
        };
        let req = LeaseRequest {
            vm: vm.clone(),
            holder: self.config.me.clone(),
            machine: m.clone(),
        };
        let (granted, sent, refusals) = self.canvass(&req, client).await;
        let times: Vec<i64> = match self.held.lock() {
            Ok(mut held) => {
                let mine = held.entry(vm.clone()).or_default();
                for v in &granted {
                    mine.insert(v.clone(), sent);
                }
                mine.values().copied().collect()
            }
            Err(_) => Vec::new(),
        };
        let now = wall_ms();
        let current = read_deadline(&dir).unwrap_or(0);
        if let Some(until) = deadline(&times, self.voters(), self.config.timing) {
            if until > current && until > now {
                let _ = write_deadline(&dir, until);
            }
        }
        for (voter, v) in refusals {
            if let Vote::Refused { holder, .. } = v {
                if !holder.is_empty() && holder != self.config.me {
                    host.event(
                        vm,
                        &format!("voter {voter} holds the lease for {holder}"),
                        now,
                    );
                }
            }
        }
        // The guard is what makes the deadline true: without it, the agent fences.
        let deadline_now = read_deadline(&dir).unwrap_or(0);
        if self.is_starting(vm) {
            return;
        }
        if !guard_alive(&dir) {
            if deadline_now > now {
                let _ = spawn_guard(&self.config.guard_program, &dir).await;
            }
            if !guard_alive(&dir) {
                let _ = host.kill(vm, now).await;
                host.event(vm, "killed: its lease guard is gone", now);
            }
        }
        if now >= deadline_now && host.pid(vm).is_some() {
            let _ = host.kill(vm, now).await;
            host.event(
                vm,
                &format!(
                    "self-fenced: the lease ran out without {} of {} votes",
                    keep_quorum(self.voters()),
                    self.voters()
                ),
                now,
            );
        }
    }

    /// Kills `vm` here at a peer's request and confirms it is gone (`POST /v1/fence`);
    /// this agent's own vote is then free. `Ok(true)` when confirmed dead (or not
    /// running here at all); `Ok(false)` while this agent still holds the VM's lease.
    pub async fn fence(&self, host: &Host, vm: &str, now: i64) -> Result<bool, VmError> {
        let dir = host.vm_dir(vm)?;
        if host.pid(vm).is_some() {
            // An owner that still holds its votes keeps its guest: nobody could take
            // it over anyway, and its guard kills it when the votes run out.
            if read_deadline(&dir).is_some_and(|d| d > now) {
                return Ok(false);
            }
            let _ = std::fs::remove_file(deadline_path(&dir));
            host.kill(vm, now).await?;
        }
        let dead = host.pid(vm).is_none();
        if dead {
            self.release(vm, &self.config.me);
            if let Ok(mut held) = self.held.lock() {
                held.remove(vm);
            }
            host.op(
                vm,
                "fence",
                "ok",
                "killed at a peer's request, confirmed gone",
                now,
            );
        }
        Ok(dead)
    }

    async fn take_over(
        &self,
        host: &Host,
        vm: &str,
        machine: &Machine,
        expired: Instant,
        client: &crate::agent::Client,
    ) -> bool {
        let now = wall_ms();
        let holder = self
            .grants
            .lock()
            .ok()
            .and_then(|g| g.get(vm).map(|g| g.holder.clone()))
            .unwrap_or_default();
        // First the holder's own word: it kills the guest and says so.
        let confirmed = match client.fence(&holder, vm).await {
            Ok(true) => {
                host.op(
                    vm,
                    "fence",
                    "confirmed",
                    &format!("{holder} killed it and confirmed"),
                    now,
                );
                true
            }
            Ok(false) => {
                host.op(
                    vm,
                    "fence",
                    "not-confirmed",
                    &format!("{holder} could not confirm the guest dead"),
                    now,
                );
                false
            }
            Err(e) => {
                host.op(
                    vm,
                    "fence",
                    "not-confirmed",
                    &format!("{holder} did not answer ({e}): only an expired majority lease allows a takeover"),
                    now,
                );
                false
            }
        };
        let mut m = machine.clone();
        m.accel = None;
        let until = match self.acquire(&m, client).await {
            Ok(until) => until,
            Err(why) => {
                let fence = if confirmed {
                    "fence confirmed"
                } else {
                    "fence not confirmed"
                };
                let message = format!("not taken over ({fence}): {why}");
                let said = self
                    .backoff
                    .lock()
                    .ok()
                    .and_then(|b| b.get(vm).map(|(_, m)| m.clone()));
                if said.as_deref() != Some(message.as_str()) {
                    host.event(vm, &message, now);
                    let _ = host
                        .store
                        .add_vm_op(vm, "failover", "not-done", &message, now);
                }
                if let Ok(mut b) = self.backoff.lock() {
                    b.insert(
                        vm.to_string(),
                        (Instant::now() + self.config.timing.tick * 2, message),
                    );
                }
                return false;
            }
        };
        if let Ok(mut b) = self.backoff.lock() {
            b.remove(vm);
        }
        let Ok(job) = host
            .store
            .start_vm_migration(vm, "failover", &holder, &self.config.me, now)
        else {
            return false;
        };
        let started = async {
            let m = host.adopt(&m, now)?;
            self.launch(host, &m, until, client, now).await
        }
        .await;
        let done = wall_ms();
        match started {
            Ok(pid) => {
                // Downtime as this agent can know it: since the lease expired here.
                let down = millis(expired.elapsed());
                let _ =
                    host.store
                        .finish_vm_migration(job, "completed", None, Some(down), None, done);
                let how = if confirmed {
                    "its fence was confirmed"
                } else {
                    "its lease expired at a majority"
                };
                let _ = host.store.add_vm_op(
                    vm,
                    "failover",
                    "ok",
                    &format!("from {holder}: {how}; pid {pid}"),
                    done,
                );
                host.event(vm, &format!("taken over from {holder} ({how})"), done);
                true
            }
            Err(e) => {
                let _ = host.store.finish_vm_migration(
                    job,
                    "failed",
                    None,
                    None,
                    Some(&e.to_string()),
                    done,
                );
                self.give_back(vm, std::slice::from_ref(&self.config.me), client)
                    .await;
                host.event(vm, &format!("takeover from {holder} failed: {e}"), done);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        let spec: crate::VmSpec = serde_json::from_value(serde_json::json!({
            "name": "a", "cpus": 1, "memory_mib": 128, "disks": [],
            "boot": {"kind": "disk"}, "network": {"mode": "none", "forwards": []},
            "autostart": false, "accel": "tcg", "labels": {}, "environment": "dev", "ha": true
        }))
        .unwrap();
        Machine {
            spec,
            disks: vec![],
            accel: None,
            policy: None,
            project: None,
        }
    }

    #[test]
    fn a_majority_to_take_enough_to_keep() {
        let table: Vec<(usize, usize, usize)> =
            (1..=5).map(|n| (n, majority(n), keep_quorum(n))).collect();
        assert_eq!(
            table,
            vec![(1, 1, 1), (2, 2, 1), (3, 2, 2), (4, 3, 2), (5, 3, 3)]
        );
        // Whoever keeps and whoever takes can never both be satisfied.
        for n in 1..=9 {
            assert!(keep_quorum(n) + majority(n) > n, "{n}");
        }
    }

    #[test]
    fn a_voter_grants_one_holder_at_a_time() {
        let t0 = Instant::now();
        let later = |ms| t0 + Duration::from_millis(ms);
        let grant = |holder: &str, expires| Grant {
            holder: holder.into(),
            expires,
            machine: machine(),
        };
        // Just started: it may have granted before it restarted.
        assert_eq!(
            answer(None, "b", t0, later(3000)),
            Vote::Refused {
                holder: String::new(),
                remaining_ms: 3000
            }
        );
        assert_eq!(answer(None, "b", later(10), t0), Vote::Granted);
        let held = grant("a", later(3000));
        assert_eq!(answer(Some(&held), "a", later(100), t0), Vote::Granted);
        assert_eq!(
            answer(Some(&held), "b", later(1000), t0),
            Vote::Refused {
                holder: "a".into(),
                remaining_ms: 2000
            }
        );
        assert_eq!(answer(Some(&held), "b", later(3000), t0), Vote::Granted);
    }

    #[test]
    fn the_owner_s_deadline_follows_the_votes_it_holds() {
        let t = Timing {
            ttl_ms: 3000,
            tick: Duration::from_millis(500),
        };
        assert_eq!(t.margin_ms(), 750);
        // Three voters: it keeps the VM on the second-latest grant.
        assert_eq!(deadline(&[10_000, 9_000, 4_000], 3, t), Some(9_000 + 2250));
        assert_eq!(deadline(&[10_000], 3, t), None);
        // Two voters: its own vote is enough to keep (nobody else can take).
        assert_eq!(deadline(&[10_000], 2, t), Some(12_250));
        assert_eq!(deadline(&[], 2, t), None);
    }

    #[test]
    fn votes_are_recorded_and_released() {
        let ha = Ha::new(HaConfig {
            me: "a".into(),
            peers: vec!["b".into(), "c".into()],
            timing: Timing {
                ttl_ms: 0,
                tick: Duration::from_millis(1),
            },
            guard_program: PathBuf::from("baton"),
        });
        let req = |holder: &str| LeaseRequest {
            vm: "a".into(),
            holder: holder.into(),
            machine: machine(),
        };
        // A zero ttl expires at once: granted again to anyone.
        assert_eq!(ha.vote(&req("b")), Vote::Granted);
        assert_eq!(ha.vote(&req("c")), Vote::Granted);
        let ha = Ha::new(HaConfig {
            me: "a".into(),
            peers: vec!["b".into()],
            timing: Timing {
                ttl_ms: 60_000,
                tick: Duration::from_millis(1),
            },
            guard_program: PathBuf::from("baton"),
        });
        // Quiet after its start.
        assert!(matches!(ha.vote(&req("b")), Vote::Refused { .. }));
    }

    #[test]
    fn deadline_files_round_trip() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read_deadline(d.path()), None);
        write_deadline(d.path(), 1234).unwrap();
        assert_eq!(read_deadline(d.path()), Some(1234));
        assert!(!guard_alive(d.path()));
    }
}
