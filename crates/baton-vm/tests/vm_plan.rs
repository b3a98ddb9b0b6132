//! The VM planner as data: the file's VMs and the host's records in, exact actions,
//! reasons and restart marks out.

use std::collections::BTreeSet;

use baton_spec::Project;
use baton_vm::spec::{Restart, VmSection, VmSpec};
use baton_vm::vm_plan::{plan_down, plan_up, selected, Change, HostVm, VmAction, VmPlan};
use serde_json::json;

fn vm(name: &str, change: impl FnOnce(&mut serde_json::Value)) -> VmSpec {
    let mut v = json!({
        "name": name, "cpus": 1, "memory_mib": 128,
        "disks": [{"name": "disk0", "source": {"kind": "new", "size_bytes": 67108864,
                                                "backing": null, "path": null}}],
        "boot": {"kind": "kernel", "kernel": "/g/vmlinuz", "initrd": "/g/initramfs.gz",
                 "cmdline": "console=ttyS0"},
        "network": {"mode": "user", "forwards": []},
        "autostart": false, "accel": "tcg", "labels": {}, "environment": "dev", "ha": false
    });
    change(&mut v);
    serde_json::from_value(v).unwrap()
}

fn host(spec: VmSpec, running: bool, project: Option<&str>) -> HostVm {
    HostVm {
        disks: spec.disks.iter().map(|d| d.name.clone()).collect(),
        spec,
        running,
        project: project.map(str::to_string),
    }
}

fn section(vms: Vec<VmSpec>) -> VmSection {
    VmSection {
        vms,
        ..Default::default()
    }
}

fn all(s: &VmSection) -> BTreeSet<String> {
    s.vms.iter().map(|v| v.name.clone()).collect()
}

fn up(s: &VmSection, host: &[HostVm]) -> VmPlan {
    plan_up("demo", s, &all(s), host, false)
}

fn change(field: &str, from: &str, to: &str, restart: bool) -> Change {
    Change {
        field: field.into(),
        from: from.into(),
        to: to.into(),
        restart,
    }
}

#[test]
fn new_vms_are_created_stopped_ones_started_running_ones_kept() {
    let s = section(vec![vm("a", |_| {}), vm("b", |_| {}), vm("c", |_| {})]);
    let p = up(
        &s,
        &[
            host(vm("b", |_| {}), false, Some("demo")),
            host(vm("c", |_| {}), true, Some("demo")),
        ],
    );
    assert_eq!(
        p.actions,
        vec![
            VmAction::Create { vm: "a".into() },
            VmAction::Start {
                vm: "b".into(),
                changes: vec![]
            },
        ]
    );
    assert_eq!(p.up_to_date, vec!["c".to_string()]);
    assert_eq!(
        p.to_string(),
        "project demo VMs: 2 actions\n  + create vm       a                                not on this host\n  > start vm        b                                stopped\n"
    );
}

#[test]
fn changes_say_which_need_a_restart() {
    let s = section(vec![
        vm("mem", |v| v["memory_mib"] = json!(256)),
        vm("pol", |v| v["restart"] = json!("always")),
        vm("both", |v| {
            v["cpus"] = json!(2);
            v["labels"] = json!({"tier": "db"});
        }),
        vm("down", |v| v["memory_mib"] = json!(256)),
    ]);
    let p = up(
        &s,
        &[
            host(vm("mem", |_| {}), true, Some("demo")),
            host(vm("pol", |_| {}), true, Some("demo")),
            host(vm("both", |_| {}), true, Some("demo")),
            host(vm("down", |_| {}), false, Some("demo")),
        ],
    );
    assert_eq!(
        p.actions,
        vec![
            VmAction::Restart {
                vm: "mem".into(),
                changes: vec![change("memory", "128 MiB", "256 MiB", true)]
            },
            VmAction::Update {
                vm: "pol".into(),
                changes: vec![change("restart", "no", "always", false)]
            },
            VmAction::Restart {
                vm: "both".into(),
                changes: vec![
                    change("cpus", "1", "2", true),
                    change("labels", "{}", "{\"tier\":\"db\"}", false)
                ]
            },
            // A stopped VM starts with the new spec: no restart needed.
            VmAction::Start {
                vm: "down".into(),
                changes: vec![change("memory", "128 MiB", "256 MiB", true)]
            },
        ]
    );
    assert_eq!(p.actions[0].reason(), "memory: 128 MiB → 256 MiB (restart)");
    assert_eq!(p.actions[1].reason(), "restart: no → always");
    assert_eq!(
        p.actions[3].reason(),
        "stopped; memory: 128 MiB → 256 MiB (restart)"
    );
    assert_eq!(Restart::default(), Restart::No);
}

#[test]
fn a_new_disk_needs_a_restart_a_changed_one_is_kept_and_said() {
    let s = section(vec![vm("a", |v| {
        v["disks"][0]["source"]["size_bytes"] = json!(134217728);
        v["disks"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "data", "source":
            {"kind": "new", "size_bytes": 1048576, "backing": null, "path": null}}));
    })]);
    let p = up(&s, &[host(vm("a", |_| {}), true, Some("demo"))]);
    assert_eq!(
        p.actions,
        vec![VmAction::Restart {
            vm: "a".into(),
            changes: vec![change("disks", "[disk0]", "[disk0, data]", true)]
        }]
    );
    assert_eq!(p.warnings.len(), 1);
    assert!(
        p.warnings[0].starts_with(
            "VM a: disk disk0 changed in the file (128 MiB); an existing disk is kept"
        ),
        "{:?}",
        p.warnings
    );
}

#[test]
fn orphans_are_warned_about_or_removed_ha_vms_left_to_agents() {
    let s = section(vec![vm("ha", |v| v["ha"] = json!(true))]);
    let h = [
        host(vm("gone", |_| {}), true, Some("demo")),
        host(vm("theirs", |_| {}), true, Some("other")),
        host(vm("loose", |_| {}), true, None),
    ];
    let p = up(&s, &h);
    assert!(p.actions.is_empty());
    assert_eq!(
        p.warnings,
        vec![
            "VM ha is ha: it runs on agents (`baton vm start ha --on ADDR`); up leaves it alone",
            "VM gone (running) of this project is no longer in the file: `up --remove-orphans` removes it (disks kept)",
        ]
    );
    let p = plan_up("demo", &s, &all(&s), &h, true);
    assert_eq!(
        p.actions,
        vec![VmAction::Remove {
            vm: "gone".into(),
            disks: false,
            reason: "no longer in the file (--remove-orphans)".into()
        }]
    );
}

#[test]
fn down_stops_the_project_s_vms_and_keeps_disks_unless_asked() {
    let s = section(vec![vm("a", |_| {}), vm("b", |_| {})]);
    let h = [
        host(vm("a", |_| {}), true, Some("demo")),
        host(vm("b", |_| {}), false, None),
        host(vm("old", |_| {}), true, Some("demo")),
        host(vm("theirs", |_| {}), true, Some("other")),
    ];
    let p = plan_down("demo", &s, &h, false);
    let names: Vec<(&str, &str)> = p.actions.iter().map(|a| (a.kind(), a.vm())).collect();
    assert_eq!(names, vec![("stop vm", "a"), ("stop vm", "old")]);
    let p = plan_down("demo", &s, &h, true);
    let names: Vec<(&str, &str)> = p.actions.iter().map(|a| (a.kind(), a.vm())).collect();
    assert_eq!(
        names,
        vec![("remove vm", "a"), ("remove vm", "b"), ("remove vm", "old")]
    );
    assert_eq!(p.actions[0].reason(), "down -v, with the disks baton made");
}

#[test]
fn named_services_bring_the_vms_they_depend_on() {
    let mut project = Project::default();
    let dep = |n: &str| {
        (
            n.to_string(),
            baton_spec::Dependency {
                condition: baton_spec::Condition::ServiceHealthy,
                required: true,
                restart: false,
            },
        )
    };
    project.services.insert(
        "web".into(),
        baton_spec::Service {
            depends_on: [dep("api")].into(),
            ..Default::default()
        },
    );
    project.services.insert(
        "api".into(),
        baton_spec::Service {
            depends_on: [dep("db")].into(),
            ..Default::default()
        },
    );
    project
        .services
        .insert("other".into(), baton_spec::Service::default());
    let s = section(vec![
        vm("db", |v| {
            v["depends_on"] = json!({"cache": {"condition": "service_started"}})
        }),
        vm("cache", |_| {}),
        vm("lone", |_| {}),
    ]);
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        selected(&project, &s, &[], false),
        set(&["cache", "db", "lone"])
    );
    assert_eq!(
        selected(&project, &s, &["web".into()], false),
        set(&["cache", "db"])
    );
    assert_eq!(selected(&project, &s, &["other".into()], false), set(&[]));
    assert_eq!(selected(&project, &s, &["web".into()], true), set(&[]));
}
