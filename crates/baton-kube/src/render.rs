//! A project as Kubernetes manifests, following kompose's conventions where they exist:
//! a Deployment (a Job for a service that is not restarted, a DaemonSet for a global
//! one) and a Service per service, PersistentVolumeClaims for named volumes,
//! ConfigMaps and Secrets, probes, resources, HPA, PDB and Ingress; pure data.

use std::collections::{BTreeMap, BTreeSet};

use baton_engine::autoscale::{autoscale_spec, Metric, Step, Target};
use baton_spec::{FileObject, Healthcheck, Mount, Project, Service};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// How to render.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Put every object in this namespace (none: the kubeconfig's).
    pub namespace: Option<String>,
}

/// The manifests, and each setting of the file that has no Kubernetes equivalent (one
/// line each: never dropped silently).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rendered {
    pub objects: Vec<Value>,
    pub unsupported: Vec<String>,
}

/// The label every object baton makes carries, and its project.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "baton");
pub const PROJECT_LABEL: &str = "io.baton.project";
pub const SERVICE_LABEL: &str = "io.baton.service";

/// A name Kubernetes accepts (RFC 1123 label: lowercase alphanumerics and `-`, at most
/// 63 characters, starting and ending alphanumeric).
pub fn k8s_name(raw: &str) -> String {
    let mut s: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let s = s.trim_matches('-');
    let s: String = s.chars().take(63).collect();
    let s = s.trim_end_matches('-').to_string();
    if s.is_empty() {
        "x".into()
    } else {
        s
    }
}

/// Renders every service of the project (disabled profiles left out).
pub fn render(project: &Project, opts: &RenderOptions) -> Rendered {
    let mut r = Renderer {
        project,
        opts,
        out: Rendered::default(),
    };
    r.project_level();
    for (name, svc) in &project.services {
        r.service(name, svc);
    }
    r.out
}

struct Renderer<'a> {
    project: &'a Project,
    opts: &'a RenderOptions,
    out: Rendered,
}

impl Renderer<'_> {
    fn unsupported(&mut self, path: &str, why: &str) {
        self.out.unsupported.push(format!("{path}: {why}"));
    }

    fn metadata(&self, name: &str, service: Option<&str>) -> Value {
        let mut labels = Map::new();
        labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
        labels.insert(PROJECT_LABEL.into(), k8s_name(&self.project.name).into());
        if let Some(s) = service {
            labels.insert(SERVICE_LABEL.into(), k8s_name(s).into());
            labels.insert("app.kubernetes.io/name".into(), k8s_name(s).into());
        }
        let mut m = json!({"name": k8s_name(name), "labels": labels});
        if let Some(ns) = &self.opts.namespace {
            m["namespace"] = ns.clone().into();
        }
        m
    }

    fn selector(&self, service: &str) -> Value {
        json!({PROJECT_LABEL: k8s_name(&self.project.name), SERVICE_LABEL: k8s_name(service)})
    }

    /// Named volumes as claims, configs as ConfigMaps, secrets as Secrets.
    fn project_level(&mut self) {
        let used: BTreeSet<&str> = self
            .project
            .services
            .values()
            .flat_map(|s| s.volumes.iter())
            .filter(|m| m.kind == "volume")
            .filter_map(|m| m.source.as_deref())
            .collect();
        for key in used {
            let Some(v) = self.project.volumes.get(key) else {
                continue;
            };
            if v.external {
                self.unsupported(
                    &format!("volumes.{key}.external"),
                    "an external volume must exist in the cluster as a PersistentVolumeClaim of that name",
                );
                continue;
            }
            if v.driver.is_some() || !v.driver_opts.is_empty() {
                self.unsupported(
                    &format!("volumes.{key}.driver"),
                    "volume drivers have no equivalent: the cluster's default StorageClass is used",
                );
            }
            self.out.objects.push(json!({
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": self.metadata(key, None),
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "100Mi"}}
                }
            }));
        }
        for (kind, objects) in [
            ("config", &self.project.configs),
            ("secret", &self.project.secrets),
        ] {
            for (name, obj) in objects {
                self.file_object(kind, name, obj);
            }
        }
    }

    fn file_object(&mut self, kind: &str, name: &str, obj: &FileObject) {
        if obj.external {
            self.unsupported(
                &format!("{kind}s.{name}.external"),
                &format!(
                    "must exist in the cluster as a {} of that name",
                    if kind == "secret" {
                        "Secret"
                    } else {
                        "ConfigMap"
                    }
                ),
            );
            return;
        }
        let content = match (&obj.content, &obj.file, &obj.environment) {
            (Some(c), _, _) => Some(c.clone()),
            (None, Some(f), _) => std::fs::read_to_string(f).ok(),
            (None, None, Some(var)) => {
                self.unsupported(
                    &format!("{kind}s.{name}.environment"),
                    &format!("the value of {var} is read when applying, not when rendering: the object is rendered empty"),
                );
                Some(String::new())
            }
            _ => None,
        };
        let Some(content) = content else {
            self.unsupported(
                &format!("{kind}s.{name}"),
                "its file cannot be read: not rendered",
            );
            return;
        };
        let key = k8s_key(name);
        let object = if kind == "secret" {
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": self.metadata(name, None),
                "type": "Opaque",
                "stringData": {key: content}
            })
        } else {
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": self.metadata(name, None),
                "data": {key: content}
            })
        };
        self.out.objects.push(object);
    }

    fn service(&mut self, name: &str, svc: &Service) {
        let path = format!("services.{name}");
        let image = match &svc.image {
            Some(i) => i.clone(),
            None => {
                self.unsupported(
                    &format!("{path}.build"),
                    "a cluster pulls images: build and push it, then give `image:` (rendered with the name baton would build)",
                );
                format!("{}-{}", self.project.name, name)
            }
        };
        if svc.build.is_some() && svc.image.is_some() {
            self.unsupported(
                &format!("{path}.build"),
                "the cluster pulls the image: push it before applying",
            );
        }
        let mut container = Map::new();
        container.insert("name".into(), k8s_name(name).into());
        container.insert("image".into(), image.into());
        if let Some(e) = &svc.entrypoint {
            container.insert("command".into(), json!(e));
        }
        if let Some(c) = &svc.command {
            container.insert("args".into(), json!(c));
        }
        if let Some(w) = &svc.working_dir {
            container.insert("workingDir".into(), w.clone().into());
        }
        let env: Vec<Value> = svc
            .environment
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| json!({"name": k, "value": v})))
            .collect();
        if !env.is_empty() {
            container.insert("env".into(), env.into());
        }
        let ports: Vec<Value> = svc
            .ports
            .iter()
            .map(
                |p| json!({"containerPort": p.target, "protocol": p.protocol.to_ascii_uppercase()}),
            )
            .collect();
        if !ports.is_empty() {
            container.insert("ports".into(), ports.into());
        }
        if svc.tty {
            container.insert("tty".into(), true.into());
        }
        if svc.stdin_open {
            container.insert("stdin".into(), true.into());
        }
        if let Some(p) = probe(svc, &mut self.out.unsupported, &path) {
            container.insert("livenessProbe".into(), p.clone());
            container.insert("readinessProbe".into(), p);
        }
        if let Some(res) = resources(svc) {
            container.insert("resources".into(), res);
        }
        let mut security = Map::new();
        if svc.privileged {
            security.insert("privileged".into(), true.into());
        }
        if svc.read_only {
            security.insert("readOnlyRootFilesystem".into(), true.into());
        }
        if !svc.cap_add.is_empty() || !svc.cap_drop.is_empty() {
            let caps = |list: &[String]| -> Vec<String> {
                list.iter()
                    .map(|c| c.trim_start_matches("CAP_").to_string())
                    .collect()
            };
            security.insert(
                "capabilities".into(),
                json!({"add": caps(&svc.cap_add), "drop": caps(&svc.cap_drop)}),
            );
        }
        if let Some(user) = &svc.user {
            let (uid, gid) = user.split_once(':').unwrap_or((user, ""));
            match uid.parse::<i64>() {
                Ok(u) => {
                    security.insert("runAsUser".into(), u.into());
                    if let Ok(g) = gid.parse::<i64>() {
                        security.insert("runAsGroup".into(), g.into());
                    }
                }
                Err(_) => self.unsupported(
                    &format!("{path}.user"),
                    "Kubernetes takes a numeric user id (runAsUser), not a name",
                ),
            }
        }
        if !security.is_empty() {
            container.insert("securityContext".into(), security.into());
        }

        // Volumes: named ones from their claims, configs and secrets from their objects.
        let mut volumes: Vec<Value> = Vec::new();
        let mut mounts: Vec<Value> = Vec::new();
        for (i, m) in svc.volumes.iter().enumerate() {
            self.mount(&path, i, m, &mut volumes, &mut mounts);
        }
        for (kind, refs) in [("config", &svc.configs), ("secret", &svc.secrets)] {
            for r in refs {
                let vol = k8s_name(&format!("{kind}-{}", r.source));
                let source = if kind == "secret" {
                    json!({"secret": {"secretName": k8s_name(&r.source)}})
                } else {
                    json!({"configMap": {"name": k8s_name(&r.source)}})
                };
                let mut v = json!({"name": vol});
                if let (Some(o), Some(s)) = (v.as_object_mut(), source.as_object()) {
                    o.extend(s.clone());
                }
                volumes.push(v);
                mounts.push(json!({
                    "name": vol,
                    "mountPath": r.target,
                    "subPath": k8s_key(&r.source),
                    "readOnly": true
                }));
            }
        }
        for t in &svc.tmpfs {
            let vol = k8s_name(&format!("tmpfs-{t}"));
            volumes.push(json!({"name": vol, "emptyDir": {"medium": "Memory"}}));
            mounts.push(json!({"name": vol, "mountPath": t.split(':').next().unwrap_or(t)}));
        }
        if !mounts.is_empty() {
            container.insert("volumeMounts".into(), mounts.into());
        }

        let mut pod = Map::new();
        pod.insert("containers".into(), json!([container]));
        if !volumes.is_empty() {
            pod.insert("volumes".into(), volumes.into());
        }
        if let Some(h) = &svc.hostname {
            pod.insert("hostname".into(), k8s_name(h).into());
        }
        if let Some(g) = svc.stop_grace_period {
            pod.insert(
                "terminationGracePeriodSeconds".into(),
                (g.0.div_ceil(1000)).into(),
            );
        }
        if !svc.extra_hosts.is_empty() {
            let mut by_ip: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for h in &svc.extra_hosts {
                if let Some((host, ip)) = h.split_once(['=', ':']) {
                    by_ip
                        .entry(ip.to_string())
                        .or_default()
                        .push(host.to_string());
                }
            }
            let aliases: Vec<Value> = by_ip
                .into_iter()
                .map(|(ip, hosts)| json!({"ip": ip, "hostnames": hosts}))
                .collect();
            pod.insert("hostAliases".into(), aliases.into());
        }
        if !svc.dns.is_empty() || !svc.dns_search.is_empty() {
            pod.insert(
                "dnsConfig".into(),
                json!({"nameservers": svc.dns, "searches": svc.dns_search}),
            );
        }
        if !svc.sysctls.is_empty() {
            let sysctls: Vec<Value> = svc
                .sysctls
                .iter()
                .map(|(k, v)| json!({"name": k, "value": v}))
                .collect();
            pod.insert("securityContext".into(), json!({"sysctls": sysctls}));
        }
        self.report_unsupported(&path, svc);

        let labels = self.selector(name);
        let mut template_meta = json!({"labels": labels});
        if let Some(m) = template_meta
            .get_mut("labels")
            .and_then(Value::as_object_mut)
        {
            m.insert("app.kubernetes.io/name".into(), k8s_name(name).into());
        }
        let mut spec = json!({
            "replicas": svc.replicas(),
            "selector": {"matchLabels": self.selector(name)},
            "template": {"metadata": template_meta, "spec": pod}
        });
        // With an HPA, the HPA owns the replica count: a manifest that says it would
        // set it back on every apply (Kubernetes' own advice is to leave it out).
        if matches!(autoscale_spec(svc), Ok(Some(_))) {
            if let Some(o) = spec.as_object_mut() {
                o.remove("replicas");
            }
        }
        if let Some(strategy) = strategy(svc) {
            spec["strategy"] = strategy;
        }
        let global = svc.deploy.as_ref().and_then(|d| d.mode.as_deref()) == Some("global");
        // A service that is not restarted runs to its end: a Job, as kompose makes it.
        let once = match svc.restart.as_deref() {
            Some("no") => Some("Never"),
            Some(r) if r.starts_with("on-failure") => Some("OnFailure"),
            _ => None,
        };
        if let Some(policy) = once {
            let mut template = spec["template"].clone();
            template["spec"]["restartPolicy"] = policy.into();
            self.out.objects.push(json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": self.metadata(name, Some(name)),
                "spec": {"backoffLimit": if policy == "Never" { 0 } else { 6 }, "template": template}
            }));
            return;
        }
        let workload = if global {
            if let Some(o) = spec.as_object_mut() {
                o.remove("replicas");
                o.remove("strategy");
            }
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": self.metadata(name, Some(name)), "spec": spec})
        } else {
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": self.metadata(name, Some(name)), "spec": spec})
        };
        self.out.objects.push(workload);

        // A Service for the ports (published or exposed), so others reach it by name.
        let mut service_ports: Vec<Value> = Vec::new();
        let mut seen = BTreeSet::new();
        for p in &svc.ports {
            let port = p.published.unwrap_or(p.target);
            if seen.insert((port, p.protocol.clone())) {
                service_ports.push(json!({
                    "name": k8s_name(&format!("{}-{port}", p.protocol)),
                    "port": port,
                    "targetPort": p.target,
                    "protocol": p.protocol.to_ascii_uppercase()
                }));
            }
        }
        for e in &svc.expose {
            let (num, proto) = e.split_once('/').unwrap_or((e, "tcp"));
            if let Ok(port) = num.parse::<u16>() {
                if seen.insert((port, proto.to_string())) {
                    service_ports.push(json!({
                        "name": k8s_name(&format!("{proto}-{port}")),
                        "port": port,
                        "targetPort": port,
                        "protocol": proto.to_ascii_uppercase()
                    }));
                }
            }
        }
        if !service_ports.is_empty() {
            self.out.objects.push(json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": self.metadata(name, Some(name)),
                "spec": {"selector": self.selector(name), "ports": service_ports}
            }));
        }
        self.ingress(name, svc);
        self.autoscaler(name, svc, &path, global);
        self.disruption_budget(name, svc, global);
    }

    fn mount(
        &mut self,
        path: &str,
        i: usize,
        m: &Mount,
        volumes: &mut Vec<Value>,
        mounts: &mut Vec<Value>,
    ) {
        let at = format!("{path}.volumes[{i}]");
        match m.kind.as_str() {
            "volume" => {
                let vol = match &m.source {
                    Some(key) => {
                        let claim = self
                            .project
                            .volumes
                            .get(key)
                            .map(|v| {
                                if v.external {
                                    v.name.clone()
                                } else {
                                    key.clone()
                                }
                            })
                            .unwrap_or_else(|| key.clone());
                        let vol = k8s_name(&format!("vol-{key}"));
                        volumes.push(json!({"name": vol, "persistentVolumeClaim": {"claimName": k8s_name(&claim)}}));
                        vol
                    }
                    None => {
                        let vol = k8s_name(&format!("anon-{i}"));
                        volumes.push(json!({"name": vol, "emptyDir": {}}));
                        vol
                    }
                };
                mounts.push(json!({"name": vol, "mountPath": m.target, "readOnly": m.read_only}));
            }
            "tmpfs" => {
                let vol = k8s_name(&format!("tmpfs-{i}"));
                volumes.push(json!({"name": vol, "emptyDir": {"medium": "Memory"}}));
                mounts.push(json!({"name": vol, "mountPath": m.target}));
            }
            "bind" => {
                self.unsupported(
                    &at,
                    "a bind mount of a host path has no portable equivalent (a node's hostPath is not the machine you render on): left out",
                );
            }
            other => self.unsupported(
                &at,
                &format!("mount type {other} has no equivalent: left out"),
            ),
        }
    }

    /// Each setting Compose has and Kubernetes lacks, one line each.
    fn report_unsupported(&mut self, path: &str, svc: &Service) {
        let mut say =
            |key: &str, why: &str| self.out.unsupported.push(format!("{path}.{key}: {why}"));
        if !svc.depends_on.is_empty() {
            say("depends_on", "pods start together; a Deployment has no start order (make the dependant retry, or add an initContainer)");
        }
        if svc.network_mode.is_some() {
            say("network_mode", "pods have their own network namespace");
        }
        if svc.networks.len() > 1 || svc.networks.values().any(|n| !n.aliases.is_empty()) {
            say(
                "networks",
                "a cluster has one flat pod network; services reach each other by Service name",
            );
        }
        if svc.container_name.is_some() {
            say("container_name", "pod names are generated");
        }
        if svc.init == Some(true) {
            say(
                "init",
                "no init process is injected (use an image with one, or shareProcessNamespace)",
            );
        }
        if !svc.ulimits.is_empty() {
            say("ulimits", "per-container ulimits have no equivalent");
        }
        if svc.logging.is_some() {
            say("logging", "the cluster's logging collects container output");
        }
        if svc.stop_signal.is_some() {
            say(
                "stop_signal",
                "pods are stopped with SIGTERM (change the image's STOPSIGNAL)",
            );
        }
        if svc.domainname.is_some() {
            say("domainname", "no equivalent");
        }
        if svc.platform.is_some() {
            say(
                "platform",
                "use node selectors (kubernetes.io/arch) to place pods",
            );
        }
        if svc.ports.iter().any(|p| p.host_ip.is_some()) {
            say("ports.host_ip", "a Service listens on every node address");
        }
        if let Some(d) = &svc.deploy {
            if d.other.contains_key("placement") {
                say("deploy.placement", "rendered as nothing: write nodeSelector/affinity in the cluster (constraints differ)");
            }
            if d.other.contains_key("endpoint_mode") {
                say(
                    "deploy.endpoint_mode",
                    "a Service always has a virtual IP (headless Services are dnsrr)",
                );
            }
            if d.restart_policy.is_some() {
                say(
                    "deploy.restart_policy",
                    "a Deployment's pods always restart",
                );
            }
            if d.rollback_config.is_some() {
                say(
                    "deploy.rollback_config",
                    "Kubernetes rolls back by `kubectl rollout undo`, not by a policy",
                );
            }
        }
    }

    /// An Ingress for published HTTP ports: the routes' hosts when `x-baton.routes` has
    /// them, else a rule for any host on the first published port.
    fn ingress(&mut self, name: &str, svc: &Service) {
        let routes: Vec<(String, String, u16)> = svc
            .baton
            .as_ref()
            .and_then(|b| b.get("routes"))
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|r| {
                        let host = r.get("host")?.as_str()?.to_string();
                        let path = r
                            .get("path")
                            .and_then(Value::as_str)
                            .unwrap_or("/")
                            .to_string();
                        let port = r
                            .get("port")
                            .and_then(Value::as_u64)
                            .and_then(|p| u16::try_from(p).ok())?;
                        Some((host, path, port))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let port_of = |target: u16| {
            svc.ports
                .iter()
                .find(|p| p.target == target)
                .map(|p| p.published.unwrap_or(p.target))
                .unwrap_or(target)
        };
        let rules: Vec<Value> = if routes.is_empty() {
            let Some(p) = svc.ports.iter().find(|p| {
                p.published.is_some()
                    && p.protocol == "tcp"
                    && p.app_protocol
                        .as_deref()
                        .is_none_or(|a| a.starts_with("http"))
            }) else {
                return;
            };
            if !looks_http(svc, p.target) {
                return;
            }
            vec![
                json!({"http": {"paths": [self.ingress_path("/", name, p.published.unwrap_or(p.target))]}}),
            ]
        } else {
            routes
                .iter()
                .map(|(host, path, port)| {
                    json!({"host": host, "http": {"paths": [self.ingress_path(path, name, port_of(*port))]}})
                })
                .collect()
        };
        self.out.objects.push(json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": self.metadata(name, Some(name)),
            "spec": {"rules": rules}
        }));
    }

    fn ingress_path(&self, path: &str, service: &str, port: u16) -> Value {
        json!({
            "path": path,
            "pathType": "Prefix",
            "backend": {"service": {"name": k8s_name(service), "port": {"number": port}}}
        })
    }

    /// `x-baton.autoscale` as a HorizontalPodAutoscaler (autoscaling/v2).
    fn autoscaler(&mut self, name: &str, svc: &Service, path: &str, global: bool) {
        let a = match autoscale_spec(svc) {
            Ok(Some(a)) => a,
            Ok(None) => return,
            Err(e) => {
                self.out
                    .unsupported
                    .push(format!("{path}.{e}: no HorizontalPodAutoscaler"));
                return;
            }
        };
        if global {
            self.unsupported(
                &format!("{path}.x-baton.autoscale"),
                "a global service (DaemonSet) is not scaled",
            );
            return;
        }
        let mut metrics = Vec::new();
        for m in &a.metrics {
            match (m.metric, m.target) {
                (Metric::Cpu, Target::Utilization { percent, .. }) => metrics.push(json!({
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent.round() as i64}}
                })),
                (Metric::Memory, Target::Utilization { percent, .. }) => metrics.push(json!({
                    "type": "Resource",
                    "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": percent.round() as i64}}
                })),
                (Metric::Memory, Target::AverageValue { value }) => metrics.push(json!({
                    "type": "Resource",
                    "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": format!("{}", value.round() as i64)}}
                })),
                (metric, _) => self.out.unsupported.push(format!(
                    "{path}.x-baton.autoscale.metrics: {metric:?} comes from baton's proxy; the cluster needs a custom metrics adapter for it: left out"
                )),
            }
        }
        let policies = |steps: &[Step], period_ms: u64| -> Vec<Value> {
            steps
                .iter()
                .map(|s| match s {
                    Step::Replicas(n) => {
                        json!({"type": "Pods", "value": n, "periodSeconds": period_ms / 1000})
                    }
                    Step::Percent(p) => {
                        json!({"type": "Percent", "value": p, "periodSeconds": period_ms / 1000})
                    }
                })
                .collect()
        };
        let behavior = |b: &baton_engine::autoscale::Behavior| {
            if b.max_step.is_empty() {
                json!({"stabilizationWindowSeconds": b.stabilization_ms / 1000, "selectPolicy": "Disabled"})
            } else {
                json!({
                    "stabilizationWindowSeconds": b.stabilization_ms / 1000,
                    "selectPolicy": "Max",
                    "policies": policies(&b.max_step, b.period_ms)
                })
            }
        };
        if metrics.is_empty() {
            return;
        }
        self.out.objects.push(json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": self.metadata(name, Some(name)),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": k8s_name(name)},
                "minReplicas": a.min.max(1),
                "maxReplicas": a.max,
                "metrics": metrics,
                "behavior": {"scaleUp": behavior(&a.scale_up), "scaleDown": behavior(&a.scale_down)}
            }
        }));
    }

    /// `deploy.update_config.parallelism` as a PodDisruptionBudget: at most that many
    /// replicas down at once (voluntary disruptions), for services with more than one.
    fn disruption_budget(&mut self, name: &str, svc: &Service, global: bool) {
        let Some(p) = svc
            .deploy
            .as_ref()
            .and_then(|d| d.update_config.as_ref())
            .and_then(|u| u.parallelism)
        else {
            return;
        };
        if global || svc.replicas() < 2 || p == 0 {
            return;
        }
        self.out.objects.push(json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": self.metadata(name, Some(name)),
            "spec": {"maxUnavailable": p, "selector": {"matchLabels": self.selector(name)}}
        }));
    }
}

/// A ConfigMap or Secret key from a Compose name (`[-._a-zA-Z0-9]+`).
fn k8s_key(name: &str) -> String {
    let k: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if k.is_empty() {
        "value".into()
    } else {
        k
    }
}

/// Whether a published port serves HTTP: baton's own health check says so, or the port
/// is one of the usual web ports.
fn looks_http(svc: &Service, target: u16) -> bool {
    let probe_http = svc
        .baton
        .as_ref()
        .and_then(|b| b.get("healthcheck"))
        .and_then(|h| h.get("http"))
        .is_some();
    probe_http || matches!(target, 80 | 443 | 3000 | 5000 | 8000 | 8080 | 8443 | 9000)
}

/// The rolling update from `deploy.update_config`: `order: start-first` surges, else
/// replicas go down first; `parallelism` is how many at a time.
fn strategy(svc: &Service) -> Option<Value> {
    let u = svc.deploy.as_ref()?.update_config.as_ref()?;
    let n = u.parallelism.filter(|p| *p > 0).unwrap_or(1);
    let start_first = u.order.as_deref() == Some("start-first");
    Some(json!({
        "type": "RollingUpdate",
        "rollingUpdate": if start_first {
            json!({"maxSurge": n, "maxUnavailable": 0})
        } else {
            json!({"maxSurge": 0, "maxUnavailable": n})
        }
    }))
}

/// The container's probe: baton's own HTTP/TCP check, else Compose's `healthcheck`.
fn probe(svc: &Service, unsupported: &mut Vec<String>, path: &str) -> Option<Value> {
    if let Ok(Some(p)) = baton_engine::health::probe_spec(svc) {
        let mut v = match &p.probe {
            baton_engine::health::Probe::Http { port, path, .. } => {
                json!({"httpGet": {"path": path, "port": port}})
            }
            baton_engine::health::Probe::Tcp { port } => json!({"tcpSocket": {"port": port}}),
        };
        v["periodSeconds"] = p.interval_ms.div_ceil(1000).max(1).into();
        v["timeoutSeconds"] = p.timeout_ms.div_ceil(1000).max(1).into();
        v["failureThreshold"] = p.retries.max(1).into();
        v["initialDelaySeconds"] = (p.start_period_ms / 1000).into();
        return Some(v);
    }
    let h: &Healthcheck = svc.healthcheck.as_ref()?;
    if h.disable || h.test.is_empty() {
        return None;
    }
    let command = match h.test.first().map(String::as_str) {
        Some("CMD") => h.test[1..].to_vec(),
        Some("CMD-SHELL") => vec!["sh".into(), "-c".into(), h.test[1..].join(" ")],
        Some("NONE") => return None,
        _ => {
            unsupported.push(format!(
                "{path}.healthcheck.test: not a CMD or CMD-SHELL list: left out"
            ));
            return None;
        }
    };
    let secs = |d: Option<baton_spec::Duration>, default: u64| -> u64 {
        d.map(|d| d.0.div_ceil(1000).max(1)).unwrap_or(default)
    };
    Some(json!({
        "exec": {"command": command},
        "periodSeconds": secs(h.interval, 30),
        "timeoutSeconds": secs(h.timeout, 30),
        "failureThreshold": h.retries.unwrap_or(3).max(1),
        "initialDelaySeconds": h.start_period.map(|d| d.0 / 1000).unwrap_or(0)
    }))
}

/// `deploy.resources` as limits and requests (CPU in cores, memory in bytes).
fn resources(svc: &Service) -> Option<Value> {
    let r = svc.deploy.as_ref()?.resources.as_ref()?;
    let spec = |s: &baton_spec::ResourceSpec| {
        let mut m = Map::new();
        if let Some(c) = s.cpus {
            m.insert(
                "cpu".into(),
                format!("{}m", (c * 1000.0).round() as i64).into(),
            );
        }
        if let Some(b) = s.memory {
            m.insert("memory".into(), b.to_string().into());
        }
        m
    };
    let mut out = Map::new();
    if let Some(l) = &r.limits {
        let m = spec(l);
        if !m.is_empty() {
            out.insert("limits".into(), m.into());
        }
    }
    if let Some(q) = &r.reservations {
        let m = spec(q);
        if !m.is_empty() {
            out.insert("requests".into(), m.into());
        }
    }
    (!out.is_empty()).then(|| out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_rfc1123_labels() {
        assert_eq!(k8s_name("My_App.web"), "my-app-web");
        assert_eq!(k8s_name("--x--"), "x");
        assert_eq!(k8s_name(""), "x");
        assert_eq!(k8s_name(&"a".repeat(80)).len(), 63);
    }
}
