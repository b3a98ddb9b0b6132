//! A Kubernetes cluster as a deploy target, through kube-rs: the rendered manifests
//! server-side applied (field manager `baton`, ownership labels, the config hash as an
//! annotation), objects that left the file pruned, Deployments' rollouts waited for.
//! Pods are the cluster's: container-level `Runtime` calls are refused.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use baton_engine::apply::{Reporter, Step};
use baton_engine::hash::{hash_value, DigestKey};
use baton_engine::orchestrate::{
    ignored_settings, plan_objects, rollout_warnings, Desired, Existing, Orchestrator, Planned,
    Removed, Task, UpdateStatus,
};
use baton_engine::plan::{Action, PlanOptions};
use baton_engine::rollout::{rollout_spec, CanaryStep, Strategy, StrategyKind};
use baton_engine::runtime::{
    BuildSpec, Capabilities, ContainerSpec, LogLine, LogOptions, LogStream, NetworkSpec, Observed,
    ObservedContainer, OutputStream, ProgressFn, Runtime, RuntimeError, VolumeSpec,
};
use baton_spec::Project;
use futures_util::future::LocalBoxFuture;
use futures_util::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, Secret, Service as KubeService,
};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams,
};
use kube::config::{Config, KubeConfigOptions};
use kube::Client;
use serde_json::{json, Value};

use crate::render::{k8s_name, render, RenderOptions, MANAGED_BY, PROJECT_LABEL, SERVICE_LABEL};
use crate::status::{self, Progress};

/// The field manager of every apply: `kubectl` and other tools see baton's fields.
pub const FIELD_MANAGER: &str = "baton";
/// The annotation that carries `Desired::hash()` of what was applied.
pub const HASH_ANNOTATION: &str = "io.baton.config-hash";
/// What `rollout undo` writes as the hash: the next `up` puts the file back.
const UNDONE: &str = "undone";
/// The hash of a Deployment's pod template as it was last applied: a canary runs only
/// when the template (what its pods run) changes, not for a new replica count.
pub const TEMPLATE_ANNOTATION: &str = "io.baton.template-hash";
/// The label of a canary's pods (`canary`), beside the service's own: the Service
/// selects both Deployments' pods, the canary Deployment only its own.
pub const TRACK_LABEL: &str = "io.baton.track";
/// The hash a Deployment carries while a canary has taken some of its pods (and a
/// canary Deployment always): an `up` killed mid-way is finished by the next one.
const CANARY: &str = "canary";

/// Every kind `render` makes, in the order `down` deletes them (users before what they
/// use).
const KINDS: [&str; 10] = [
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "Ingress",
    "Service",
    "Deployment",
    "DaemonSet",
    "Job",
    "ConfigMap",
    "Secret",
    "PersistentVolumeClaim",
];

fn resource(kind: &str) -> Option<ApiResource> {
    Some(match kind {
        "HorizontalPodAutoscaler" => ApiResource::erase::<HorizontalPodAutoscaler>(&()),
        "PodDisruptionBudget" => ApiResource::erase::<PodDisruptionBudget>(&()),
        "Ingress" => ApiResource::erase::<Ingress>(&()),
        "Service" => ApiResource::erase::<KubeService>(&()),
        "Deployment" => ApiResource::erase::<Deployment>(&()),
        "DaemonSet" => ApiResource::erase::<DaemonSet>(&()),
        "Job" => ApiResource::erase::<Job>(&()),
        "ConfigMap" => ApiResource::erase::<ConfigMap>(&()),
        "Secret" => ApiResource::erase::<Secret>(&()),
        "PersistentVolumeClaim" => ApiResource::erase::<PersistentVolumeClaim>(&()),
        _ => return None,
    })
}

/// The settings of a service that `render` maps, or reports itself with its reason
/// (so `ignored_settings` does not say it twice).
const HANDLED: &[&str] = &[
    "image",
    "build",
    "command",
    "entrypoint",
    "working_dir",
    "environment",
    "ports",
    "expose",
    "volumes",
    "tmpfs",
    "networks",
    "network_mode",
    "depends_on",
    "healthcheck",
    "restart",
    "container_name",
    "user",
    "hostname",
    "domainname",
    "stop_grace_period",
    "stop_signal",
    "init",
    "cap_add",
    "cap_drop",
    "ulimits",
    "extra_hosts",
    "logging",
    "profiles",
    "configs",
    "secrets",
    "privileged",
    "read_only",
    "tty",
    "stdin_open",
    "dns",
    "dns_search",
    "sysctls",
    "platform",
    "x-baton.routes",
    "x-baton.autoscale",
    "x-baton.rollout",
    "x-baton.healthcheck",
    "deploy.mode",
    "deploy.replicas",
    "deploy.resources",
    "deploy.restart_policy",
    "deploy.update_config",
    "deploy.rollback_config",
    "deploy.placement",
    "deploy.endpoint_mode",
];

/// How long `apply` waits for Deployments to roll out, and `down` for pods to go.
const WAIT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(500);

/// One cluster (a kubeconfig context) and the namespace baton works in.
#[derive(Clone)]
pub struct Kube {
    client: Client,
    namespace: String,
    /// How errors name the target (`prod (kubernetes)`).
    target: String,
    wait: Duration,
    /// What a Secret's values are digested with in plans and the store.
    key: DigestKey,
}

impl fmt::Debug for Kube {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kube")
            .field("target", &self.target)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Kube {
    /// Reads the kubeconfig (`KUBECONFIG`, else `~/.kube/config`) with `context` (its
    /// current one when `None`); the namespace defaults to the context's, else
    /// `default`. Nothing is asked of the cluster yet.
    pub async fn connect(
        context: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<Kube, RuntimeError> {
        let options = KubeConfigOptions {
            context: context.map(str::to_string),
            ..Default::default()
        };
        let which = context
            .map(|c| format!(" (context {c})"))
            .unwrap_or_default();
        let config = Config::from_kubeconfig(&options).await.map_err(|e| {
            RuntimeError::Unavailable(format!("cannot read the kubeconfig{which}: {e}"))
        })?;
        let namespace = namespace
            .map(str::to_string)
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(|e| {
            RuntimeError::Unavailable(format!(
                "cannot make a client for the kubeconfig{which}: {e}"
            ))
        })?;
        Ok(Kube {
            client,
            namespace,
            target: format!("{} (kubernetes)", context.unwrap_or("current context")),
            wait: WAIT,
            key: DigestKey::new([0; 32]),
        })
    }

    /// The same cluster, with the key a Secret's values are digested with in plans and
    /// the store (`baton_engine::hash::DigestKey`; the front doors keep one per state
    /// directory).
    pub fn keyed(mut self, key: DigestKey) -> Kube {
        self.key = key;
        self
    }

    /// The same cluster, named as the project's target in errors (`prod (kubernetes)`).
    pub fn named(mut self, target: impl Into<String>) -> Kube {
        self.target = target.into();
        self
    }

    /// The same cluster, with another bound on how long rollouts, `scale`, `undo` and
    /// `down` wait.
    pub fn waiting(mut self, wait: Duration) -> Kube {
        self.wait = wait;
        self
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn dynamic(&self, kind: &str) -> Result<Api<DynamicObject>, RuntimeError> {
        let ar = resource(kind).ok_or_else(|| {
            RuntimeError::Unsupported(format!(
                "target {}: baton does not apply objects of kind {kind}",
                self.target
            ))
        })?;
        Ok(Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &ar,
        ))
    }

    fn typed<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// A kube-rs error as baton's, naming the target and what was being done.
    fn error(&self, op: &str, e: kube::Error) -> RuntimeError {
        let at = format!("target {}, namespace {}", self.target, self.namespace);
        match e {
            kube::Error::Api(s) if s.code == 404 => RuntimeError::NotFound {
                what: format!("{op} ({at})"),
            },
            kube::Error::Api(s) if s.code == 409 => RuntimeError::Conflict {
                what: format!("{op} ({at}): {}", s.message),
            },
            kube::Error::Api(s) => RuntimeError::Failed {
                op: format!("{op} ({at})"),
                detail: format!("{} ({})", s.message, s.code),
            },
            e @ (kube::Error::HyperError(_) | kube::Error::Service(_)) => {
                RuntimeError::Unavailable(format!("{op} ({at}): {e}"))
            }
            other => RuntimeError::Failed {
                op: format!("{op} ({at})"),
                detail: other.to_string(),
            },
        }
    }

    /// A merge patch's parameters: baton is the manager of what it changes.
    fn update_params() -> PatchParams {
        PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        }
    }

    fn project_selector(project: &str) -> ListParams {
        ListParams::default().labels(&format!("{PROJECT_LABEL}={}", k8s_name(project)))
    }

    fn service_selector(project: &str, service: &str) -> ListParams {
        ListParams::default().labels(&format!(
            "{PROJECT_LABEL}={},{SERVICE_LABEL}={}",
            k8s_name(project),
            k8s_name(service)
        ))
    }

    /// The project's objects of one kind; a kind the cluster does not serve (no
    /// autoscaling/v2, say) has none.
    async fn list_kind(
        &self,
        project: &str,
        kind: &str,
    ) -> Result<Vec<DynamicObject>, RuntimeError> {
        let api = self.dynamic(kind)?;
        match api.list(&Self::project_selector(project)).await {
            Ok(list) => Ok(list.items),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Vec::new()),
            Err(e) => Err(self.error(&format!("list {kind} objects of project {project}"), e)),
        }
    }

    /// The objects as baton wants them, with the real manifests (Secret data included)
    /// kept apart from `Desired::config`, which shows a Secret's values only as hashes.
    fn desired(
        &self,
        project: &Project,
        options: &PlanOptions,
    ) -> (Vec<Desired>, Vec<Value>, Vec<String>) {
        let rendered = render(
            project,
            &RenderOptions {
                namespace: Some(self.namespace.clone()),
            },
        );
        let services = file_names(project);
        let mut desired = Vec::new();
        let mut objects = Vec::new();
        for mut object in rendered.objects {
            let kind = object["kind"].as_str().unwrap_or_default().to_string();
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let service = object["metadata"]["labels"][SERVICE_LABEL]
                .as_str()
                .map(|s| services.get(s).cloned().unwrap_or_else(|| s.to_string()));
            if kind == "Deployment" {
                if let Some(n) = service.as_ref().and_then(|s| options.scale.get(s)) {
                    object["spec"]["replicas"] = json!(n);
                }
            }
            let config = if kind == "Secret" {
                redacted(&object, &self.key)
            } else {
                object.clone()
            };
            desired.push(Desired {
                kind,
                name,
                service,
                config,
            });
            objects.push(object);
        }
        (desired, objects, rendered.unsupported)
    }

    async fn existing(
        &self,
        project: &str,
        services: &BTreeMap<String, String>,
    ) -> Result<Vec<Existing>, RuntimeError> {
        let mut out = Vec::new();
        for kind in KINDS {
            for o in self.list_kind(project, kind).await? {
                let labels = o.metadata.labels.as_ref();
                let service = labels
                    .and_then(|l| l.get(SERVICE_LABEL))
                    .map(|s| services.get(s).cloned().unwrap_or_else(|| s.clone()));
                let hash = o
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(HASH_ANNOTATION))
                    .cloned()
                    .unwrap_or_default();
                out.push(Existing {
                    kind: kind.to_string(),
                    name: o.metadata.name.clone().unwrap_or_default(),
                    service,
                    hash,
                });
            }
        }
        Ok(out)
    }

    async fn put(&self, object: &Value, hash: &str) -> Result<(), RuntimeError> {
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let mut object = object.clone();
        object["metadata"]["labels"][MANAGED_BY.0] = json!(MANAGED_BY.1);
        object["metadata"]["annotations"][HASH_ANNOTATION] = json!(hash);
        if kind == "Deployment" {
            object["metadata"]["annotations"][TEMPLATE_ANNOTATION] =
                json!(hash_value(&object["spec"]["template"]));
        }
        let api = self.dynamic(kind)?;
        match api
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await
        {
            Ok(_) => Ok(()),
            // An apply creates the object: what is missing is its namespace (or the
            // kind's API on this cluster).
            Err(kube::Error::Api(s)) if s.code == 404 => Err(RuntimeError::Failed {
                op: format!("apply {kind} {name} (target {})", self.target),
                detail: format!(
                    "{}: does namespace {ns} exist? (kubectl create namespace {ns})",
                    s.message,
                    ns = self.namespace
                ),
            }),
            Err(e) => Err(self.error(&format!("apply {kind} {name}"), e)),
        }
    }

    async fn delete(&self, kind: &str, name: &str) -> Result<(), RuntimeError> {
        let api = self.dynamic(kind)?;
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(self.error(&format!("delete {kind} {name}"), e)),
        }
    }

    /// Waits until each Deployment and DaemonSet rolled out (as `kubectl rollout
    /// status`), reporting
    /// what it waits for; the first that fails or outlasts the bound is the error.
    async fn wait_rollouts(
        &self,
        workloads: &[(&str, String)],
        reporter: &dyn Reporter,
    ) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + self.wait;
        for (kind, name) in workloads {
            let target = format!("{kind} {name}");
            reporter.report(Step::Started {
                target: &target,
                what: "rollout",
            });
            let mut last = String::new();
            loop {
                let progress = if *kind == "DaemonSet" {
                    let api: Api<DaemonSet> = self.typed();
                    let d = api
                        .get(name)
                        .await
                        .map_err(|e| self.error(&format!("read {target}"), e))?;
                    status::daemon_progress(&d)
                } else {
                    let api: Api<Deployment> = self.typed();
                    let d = api
                        .get(name)
                        .await
                        .map_err(|e| self.error(&format!("read {target}"), e))?;
                    status::rollout_progress(&d)
                };
                match progress {
                    Progress::Done => {
                        reporter.report(Step::Done {
                            target: &target,
                            what: "rolled out",
                        });
                        break;
                    }
                    Progress::Failed(m) => {
                        let error = format!("target {}: {m}", self.target);
                        reporter.report(Step::Failed {
                            target: &target,
                            error: &error,
                        });
                        return Err(RuntimeError::Failed {
                            op: format!("rollout of {target}"),
                            detail: error,
                        });
                    }
                    Progress::Waiting(m) => {
                        if Instant::now() >= deadline {
                            let error = format!(
                                "target {}: not rolled out after {}s: {m}",
                                self.target,
                                self.wait.as_secs()
                            );
                            reporter.report(Step::Failed {
                                target: &target,
                                error: &error,
                            });
                            return Err(RuntimeError::Failed {
                                op: format!("rollout of {target}"),
                                detail: error,
                            });
                        }
                        if m != last {
                            reporter.report(Step::Waiting {
                                target: &target,
                                on: &m,
                            });
                            last = m;
                        }
                    }
                }
                tokio::time::sleep(POLL).await;
            }
        }
        Ok(())
    }

    /// Waits (bounded) until no pod matches `params`: deleted workloads' pods go in the
    /// background.
    async fn wait_gone(
        &self,
        target: &str,
        params: &ListParams,
        reporter: &dyn Reporter,
    ) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + self.wait;
        loop {
            let left = self.pods(params).await?.len();
            if left == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(RuntimeError::Failed {
                    op: format!("waiting for {target} to terminate (target {})", self.target),
                    detail: format!("{left} pods still there after {}s", self.wait.as_secs()),
                });
            }
            reporter.report(Step::Waiting {
                target,
                on: &format!("{left} pods to terminate"),
            });
            tokio::time::sleep(POLL).await;
        }
    }

    /// The service's Deployment; a DaemonSet (a global service) is refused by name.
    async fn deployment(
        &self,
        project: &str,
        service: &str,
        what: &str,
    ) -> Result<Deployment, RuntimeError> {
        let name = k8s_name(service);
        let api: Api<Deployment> = self.typed();
        match api.get(&name).await {
            Ok(d) if owned_by(&d.metadata, project) => Ok(d),
            Ok(_) => Err(RuntimeError::NotFound {
                what: format!(
                    "Deployment {name} of project {project} (target {}, namespace {}: one of that name exists but another project or tool owns it)",
                    self.target, self.namespace
                ),
            }),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                let ds: Api<DaemonSet> = self.typed();
                if let Ok(d) = ds.get(&name).await {
                    if owned_by(&d.metadata, project) {
                        return Err(RuntimeError::Unsupported(format!(
                            "target {}: service {service} is global (DaemonSet {name}, one pod per node): it cannot {what}",
                            self.target
                        )));
                    }
                }
                Err(RuntimeError::NotFound {
                    what: format!(
                        "Deployment {name} of service {service} (target {}, namespace {}; has `up` run?)",
                        self.target, self.namespace
                    ),
                })
            }
            Err(e) => Err(self.error(&format!("read Deployment {name}"), e)),
        }
    }

    /// The canary steps to take before `object` replaces its Deployment: the service
    /// rolls out as a canary and the pod template changed (a new replica count alone
    /// is no new version). `None`: a plain apply.
    async fn canary_due(
        &self,
        project: &Project,
        service: &str,
        object: &Value,
    ) -> Result<Option<Vec<CanaryStep>>, RuntimeError> {
        let Some(Strategy::Canary(c)) = project
            .services
            .get(service)
            .and_then(|s| rollout_spec(s).ok())
            .map(|r| r.strategy)
        else {
            return Ok(None);
        };
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let api: Api<Deployment> = self.typed();
        let live = match api.get(name).await {
            Ok(d) => d,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
            Err(e) => return Err(self.error(&format!("read Deployment {name}"), e)),
        };
        let applied = live
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TEMPLATE_ANNOTATION));
        let wanted = hash_value(&object["spec"]["template"]);
        Ok((applied != Some(&wanted)).then_some(c.steps))
    }

    /// A canary on a cluster, with replica ratios for weights. The new pod template
    /// runs as a second Deployment, `<name>-canary`, whose pods carry the service's
    /// labels and `io.baton.track: canary`; the service's Service selects on the
    /// service's labels alone, so it sends each pod an equal share: a step of `w`%
    /// runs `round(total × w / 100)` canary pods (at least 1) once they are ready,
    /// then scales the Deployment down to the rest (never below 1 before the end), and
    /// pauses. After the last step the Deployment itself takes the new template (its
    /// own rolling update) and the canary Deployment goes. A canary that does not
    /// become or stay ready is deleted and the Deployment scaled back: the old version
    /// serves as before, and `up` fails saying so.
    async fn canary(
        &self,
        object: &Value,
        hash: &str,
        steps: &[CanaryStep],
        reporter: &dyn Reporter,
    ) -> Result<(), RuntimeError> {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let api: Api<Deployment> = self.typed();
        let live = api
            .get(&name)
            .await
            .map_err(|e| self.error(&format!("read Deployment {name}"), e))?;
        // The file's count, else what runs now (an HPA's).
        let running = live.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let total = object["spec"]["replicas"]
            .as_i64()
            .unwrap_or(i64::from(running))
            .clamp(1, i64::from(i32::MAX)) as i32;
        let cname = canary_name(&name);
        let mut canary = object.clone();
        canary["metadata"]["name"] = json!(cname);
        canary["metadata"]["labels"][TRACK_LABEL] = json!("canary");
        canary["spec"]["selector"]["matchLabels"][TRACK_LABEL] = json!("canary");
        canary["spec"]["template"]["metadata"]["labels"][TRACK_LABEL] = json!("canary");
        let target = format!("Deployment {name}");
        for step in steps.iter().filter(|s| s.weight < 100) {
            let weight = i64::from(step.weight);
            let pods = ((i64::from(total) * weight + 50) / 100).clamp(1, i64::from(total)) as i32;
            let stable = (total - pods).max(1);
            canary["spec"]["replicas"] = json!(pods);
            let step_done = async {
                self.put(&canary, CANARY).await?;
                self.wait_rollouts(&[("Deployment", cname.clone())], reporter)
                    .await?;
                self.set_replicas(&name, stable).await
            };
            if let Err(e) = step_done.await {
                return Err(self.abandon_canary(&name, &cname, total, &e).await);
            }
            let share = i64::from(pods) * 100 / i64::from(pods + stable);
            reporter.report(Step::Waiting {
                target: &target,
                on: &format!(
                    "canary at {}%: {pods} of {} pods ({share}% of the traffic) run the new version",
                    step.weight,
                    pods + stable
                ),
            });
            tokio::time::sleep(Duration::from_millis(step.pause_ms)).await;
            // Still ready after the pause: a version that fails later is not promoted.
            let unready = match api.get(&cname).await {
                Ok(d) => match status::rollout_progress(&d) {
                    Progress::Done => None,
                    Progress::Failed(m) | Progress::Waiting(m) => Some(RuntimeError::Failed {
                        op: format!("canary Deployment {cname}"),
                        detail: format!("not ready after the step's pause: {m}"),
                    }),
                },
                Err(e) => Some(self.error(&format!("read Deployment {cname}"), e)),
            };
            if let Some(e) = unready {
                return Err(self.abandon_canary(&name, &cname, total, &e).await);
            }
        }
        // All of it: the Deployment takes the new template, then the canary goes.
        self.put(object, hash).await?;
        self.wait_rollouts(&[("Deployment", name.clone())], reporter)
            .await?;
        self.delete("Deployment", &cname).await?;
        reporter.report(Step::Done {
            target: &target,
            what: "canary promoted: every pod runs the new version",
        });
        Ok(())
    }

    /// Scales a Deployment during a canary, marking it as mid-canary (the next `up`
    /// puts it back if this one is killed).
    async fn set_replicas(&self, name: &str, replicas: i32) -> Result<(), RuntimeError> {
        let api: Api<Deployment> = self.typed();
        let patch = json!({
            "metadata": {"annotations": {HASH_ANNOTATION: CANARY}},
            "spec": {"replicas": replicas}
        });
        api.patch(name, &Self::update_params(), &Patch::Merge(patch))
            .await
            .map(|_| ())
            .map_err(|e| self.error(&format!("scale Deployment {name}"), e))
    }

    /// A failed canary: its Deployment goes, the old one gets its pods back; the error
    /// says both.
    async fn abandon_canary(
        &self,
        name: &str,
        cname: &str,
        total: i32,
        cause: &RuntimeError,
    ) -> RuntimeError {
        let removed = self.delete("Deployment", cname).await;
        let restored = self.set_replicas(name, total).await;
        let aftermath = match (removed, restored) {
            (Ok(()), Ok(())) => format!(
                "the canary Deployment {cname} was deleted and Deployment {name} keeps serving the old version with {total} pods"
            ),
            (Err(e), _) | (_, Err(e)) => format!("cleaning up failed too: {e}"),
        };
        RuntimeError::Failed {
            op: format!("canary of Deployment {name} (target {})", self.target),
            detail: format!("the new version did not become ready: {cause}; {aftermath}"),
        }
    }

    async fn pods(&self, params: &ListParams) -> Result<Vec<Pod>, RuntimeError> {
        let api: Api<Pod> = self.typed();
        api.list(params)
            .await
            .map(|l| l.items)
            .map_err(|e| self.error("list pods", e))
    }

    /// `prod` of `prod (kubernetes)`.
    fn target_name(&self) -> &str {
        self.target
            .strip_suffix(" (kubernetes)")
            .unwrap_or(&self.target)
    }

    fn refuse(&self, what: &str) -> RuntimeError {
        RuntimeError::Unsupported(format!(
            "target {} (kubernetes) keeps pods itself; baton does not {what} there: its `up`, `plan`, `ps`, `logs`, `scale`, `rollout` and `down` go through the cluster's objects",
            self.target_name()
        ))
    }
}

fn owned_by(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    project: &str,
) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(PROJECT_LABEL))
        .is_some_and(|p| *p == k8s_name(project))
}

fn is_workload(kind: &str) -> bool {
    matches!(kind, "Deployment" | "DaemonSet" | "Job")
}

/// The file's service names by the label value they render to.
/// `<name>-canary`, within Kubernetes' 63 characters and never the name itself.
fn canary_name(name: &str) -> String {
    let stem: String = name.chars().take(63 - "-canary".len()).collect();
    format!("{}-canary", stem.trim_end_matches('-'))
}

fn file_names(project: &Project) -> BTreeMap<String, String> {
    project
        .services
        .keys()
        .map(|s| (k8s_name(s), s.clone()))
        .collect()
}

/// A Secret with each value replaced by its keyed digest: a change still shows (and
/// changes the object's hash), the value never reaches a plan, a log or the store, and
/// a weak one cannot be found again by guessing (the key is the state directory's).
fn redacted(secret: &Value, key: &DigestKey) -> Value {
    let mut out = secret.clone();
    for field in ["stringData", "data"] {
        if let Some(map) = out.get_mut(field).and_then(Value::as_object_mut) {
            for v in map.values_mut() {
                *v = json!(format!(
                    "hmac-sha256:{}",
                    key.digest(v.to_string().as_bytes())
                ));
            }
        }
    }
    out
}

impl Orchestrator for Kube {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn plan<'a>(
        &'a self,
        project: &'a Project,
        options: &'a PlanOptions,
        previous: &'a dyn Fn(&str) -> Option<Value>,
    ) -> LocalBoxFuture<'a, Result<Planned, RuntimeError>> {
        Box::pin(async move {
            let (desired, _, unsupported) = self.desired(project, options);
            let existing = self.existing(&project.name, &file_names(project)).await?;
            let only: BTreeSet<String> = options.services.iter().cloned().collect();
            let mut plan = plan_objects(&project.name, &desired, &existing, previous, &only);
            // `plan_objects` names Swarm's services that are up to date; here the
            // workloads are (a Deployment, DaemonSet or Job found with its hash).
            for d in desired.iter().filter(|d| is_workload(&d.kind)) {
                let wanted =
                    only.is_empty() || d.service.as_ref().is_some_and(|s| only.contains(s));
                let same = existing
                    .iter()
                    .any(|e| e.kind == d.kind && e.name == d.name && e.hash == d.hash());
                if wanted && same {
                    plan.up_to_date.push(d.name.clone());
                }
            }
            plan.up_to_date.sort();
            plan.warnings
                .extend(ignored_settings(project, &self.target, HANDLED));
            plan.warnings.extend(rollout_warnings(
                project,
                &self.target,
                &[StrategyKind::Rolling, StrategyKind::Canary],
                "the Deployment rolls its pods over (RollingUpdate, from deploy.update_config)",
            ));
            plan.warnings.extend(unsupported);
            Ok(Planned { plan, desired })
        })
    }

    fn apply<'a>(
        &'a self,
        project: &'a Project,
        planned: &'a Planned,
        reporter: &'a dyn Reporter,
    ) -> LocalBoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            // The real manifests (a Secret's values are only in these), rendered again
            // from the same project; the plan's hashes say which version was planned.
            let (_, objects, _) = self.desired(project, &PlanOptions::default());
            let mut rolled = Vec::new();
            let mut gone = Vec::new();
            for action in &planned.plan.actions {
                match action {
                    Action::Put { kind, name, .. } => {
                        let target = format!("{kind} {name}");
                        let desired = planned
                            .desired
                            .iter()
                            .find(|d| d.kind == *kind && d.name == *name);
                        let object = objects.iter().find(|o| {
                            o["kind"].as_str() == Some(kind)
                                && o["metadata"]["name"].as_str() == Some(name)
                        });
                        let (Some(desired), Some(object)) = (desired, object) else {
                            let error = format!(
                                "{target} is planned but no longer in the file: plan again"
                            );
                            reporter.report(Step::Failed {
                                target: &target,
                                error: &error,
                            });
                            return Err(RuntimeError::Failed {
                                op: format!("apply {target}"),
                                detail: error,
                            });
                        };
                        // The plan's own replica count (`--scale`) wins over the file's.
                        let mut object = object.clone();
                        if kind == "Deployment" {
                            if let Some(n) = desired.config["spec"].get("replicas") {
                                object["spec"]["replicas"] = n.clone();
                            }
                        }
                        reporter.report(Step::Started {
                            target: &target,
                            what: action.kind(),
                        });
                        // A Job's pod template cannot change: a changed Job is run anew.
                        let replace =
                            kind == "Job" && matches!(action, Action::Put { create: false, .. });
                        let canary = match (kind.as_str(), action, &desired.service) {
                            ("Deployment", Action::Put { create: false, .. }, Some(svc)) => {
                                self.canary_due(project, svc, &object).await?
                            }
                            _ => None,
                        };
                        let put = async {
                            if replace {
                                self.delete(kind, name).await?;
                            }
                            match &canary {
                                Some(steps) => {
                                    self.canary(&object, &desired.hash(), steps, reporter).await
                                }
                                None => self.put(&object, &desired.hash()).await,
                            }
                        };
                        if let Err(e) = put.await {
                            reporter.report(Step::Failed {
                                target: &target,
                                error: &e.to_string(),
                            });
                            return Err(e);
                        }
                        reporter.report(Step::Done {
                            target: &target,
                            what: action.kind(),
                        });
                        if kind == "Deployment" || kind == "DaemonSet" {
                            rolled.push((kind.as_str(), name.clone()));
                        }
                    }
                    Action::Delete {
                        kind,
                        name,
                        service,
                        ..
                    } => {
                        let target = format!("{kind} {name}");
                        // A service that left the file (not one that keeps a workload:
                        // a canary Deployment an `up` left behind).
                        let stays = planned.desired.iter().any(|d| {
                            is_workload(&d.kind) && d.service.is_some() && d.service == *service
                        });
                        if is_workload(kind) && !stays {
                            if let Some(service) = service {
                                gone.push(service.clone());
                            }
                        }
                        reporter.report(Step::Started {
                            target: &target,
                            what: "delete",
                        });
                        if let Err(e) = self.delete(kind, name).await {
                            reporter.report(Step::Failed {
                                target: &target,
                                error: &e.to_string(),
                            });
                            return Err(e);
                        }
                        reporter.report(Step::Done {
                            target: &target,
                            what: "delete",
                        });
                    }
                    other => {
                        return Err(RuntimeError::Unsupported(format!(
                            "target {}: a {} action is not for a cluster",
                            self.target,
                            other.kind()
                        )))
                    }
                }
            }
            self.wait_rollouts(&rolled, reporter).await?;
            // A service that left the file is gone once its pods are.
            for service in gone {
                self.wait_gone(
                    &format!("pods of service {service}"),
                    &Self::service_selector(&project.name, &service),
                    reporter,
                )
                .await?;
            }
            Ok(())
        })
    }

    fn tasks<'a>(
        &'a self,
        project: &'a str,
    ) -> LocalBoxFuture<'a, Result<Vec<Task>, RuntimeError>> {
        Box::pin(async move {
            let mut tasks: Vec<Task> = self
                .pods(&Self::project_selector(project))
                .await?
                .iter()
                .map(status::pod_task)
                .collect();
            tasks.sort_by(|a, b| (&a.service, &a.name).cmp(&(&b.service, &b.name)));
            Ok(tasks)
        })
    }

    fn scale<'a>(
        &'a self,
        project: &'a str,
        service: &'a str,
        replicas: u32,
    ) -> LocalBoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let d = self.deployment(project, service, "be scaled").await?;
            let name = d.metadata.name.clone().unwrap_or_default();
            let api: Api<Deployment> = self.typed();
            api.patch(
                &name,
                &Self::update_params(),
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await
            .map_err(|e| self.error(&format!("scale Deployment {name}"), e))?;
            self.wait_rollouts(&[("Deployment", name)], &baton_engine::apply::Silent)
                .await
        })
    }

    fn update_status<'a>(
        &'a self,
        project: &'a str,
        service: &'a str,
    ) -> LocalBoxFuture<'a, Result<UpdateStatus, RuntimeError>> {
        Box::pin(async move {
            match self.deployment(project, service, "").await {
                Ok(d) => Ok(status::update_status(service, &d)),
                // A global service rolls out too: its DaemonSet says how far.
                Err(RuntimeError::Unsupported(_)) => {
                    let api: Api<DaemonSet> = self.typed();
                    let name = k8s_name(service);
                    let d = api
                        .get(&name)
                        .await
                        .map_err(|e| self.error(&format!("read DaemonSet {name}"), e))?;
                    Ok(status::daemon_update_status(service, &d))
                }
                Err(e) => Err(e),
            }
        })
    }

    fn undo<'a>(
        &'a self,
        project: &'a str,
        service: &'a str,
    ) -> LocalBoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let d = self
                .deployment(
                    project,
                    service,
                    "be rolled back by baton (`kubectl rollout undo daemonset/NAME` can)",
                )
                .await?;
            let name = d.metadata.name.clone().unwrap_or_default();
            let sets: Api<ReplicaSet> = self.typed();
            let sets = sets
                .list(&Self::service_selector(project, service))
                .await
                .map_err(|e| self.error(&format!("list ReplicaSets of Deployment {name}"), e))?
                .items;
            let previous = status::previous_revision(&d, &sets).ok_or_else(|| {
                RuntimeError::NotFound {
                    what: format!(
                        "a previous revision of Deployment {name} (target {}: it was never updated, or its old ReplicaSets are gone)",
                        self.target
                    ),
                }
            })?;
            let template = status::template_of(previous).ok_or_else(|| RuntimeError::Failed {
                op: format!("roll back Deployment {name}"),
                detail: "the previous ReplicaSet has no pod template".into(),
            })?;
            let current = d
                .spec
                .as_ref()
                .map(|s| serde_json::to_value(&s.template).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            // The hash says "not what the file asked": the next `up` puts the file back.
            let patch = json!({
                "metadata": {"annotations": {HASH_ANNOTATION: UNDONE}},
                "spec": {"template": status::merge_diff(&current, &template)}
            });
            let api: Api<Deployment> = self.typed();
            api.patch(&name, &Self::update_params(), &Patch::Merge(patch))
                .await
                .map_err(|e| self.error(&format!("roll back Deployment {name}"), e))?;
            self.wait_rollouts(&[("Deployment", name)], &baton_engine::apply::Silent)
                .await
        })
    }

    fn logs(&self, project: &str, service: &str, options: &LogOptions) -> LogStream {
        let kube = self.clone();
        let params = Self::service_selector(project, service);
        let lp = LogParams {
            follow: options.follow,
            tail_lines: options.tail.and_then(|t| i64::try_from(t).ok()),
            timestamps: options.timestamps,
            ..Default::default()
        };
        let service = service.to_string();
        let streams = async move {
            let pods = kube.pods(&params).await?;
            if pods.is_empty() {
                return Err(RuntimeError::NotFound {
                    what: format!("pods of service {service} (target {})", kube.target),
                });
            }
            let api: Api<Pod> = kube.typed();
            let mut each = Vec::new();
            for pod in pods {
                let name = pod.metadata.name.unwrap_or_default();
                let reader = api
                    .log_stream(&name, &lp)
                    .await
                    .map_err(|e| kube.error(&format!("read the log of pod {name}"), e))?;
                let lines = reader.lines().map(move |l| match l {
                    Ok(text) => Ok(LogLine {
                        stream: OutputStream::Stdout,
                        text: format!("{name} | {text}"),
                    }),
                    Err(e) => Err(RuntimeError::Failed {
                        op: format!("read the log of pod {name}"),
                        detail: e.to_string(),
                    }),
                });
                each.push(lines.boxed());
            }
            Ok(futures_util::stream::select_all(each))
        };
        futures_util::stream::once(streams).try_flatten().boxed()
    }

    fn down<'a>(
        &'a self,
        project: &'a str,
        volumes: bool,
        reporter: &'a dyn Reporter,
    ) -> LocalBoxFuture<'a, Result<Removed, RuntimeError>> {
        Box::pin(async move {
            let mut removed = Removed::default();
            for kind in KINDS {
                if kind == "PersistentVolumeClaim" && !volumes {
                    continue;
                }
                for o in self.list_kind(project, kind).await? {
                    let name = o.metadata.name.clone().unwrap_or_default();
                    let target = format!("{kind} {name}");
                    reporter.report(Step::Started {
                        target: &target,
                        what: "delete",
                    });
                    if let Err(e) = self.delete(kind, &name).await {
                        reporter.report(Step::Failed {
                            target: &target,
                            error: &e.to_string(),
                        });
                        return Err(e);
                    }
                    reporter.report(Step::Done {
                        target: &target,
                        what: "delete",
                    });
                    removed.objects.push(target);
                }
            }
            self.wait_gone(
                &format!("pods of project {project}"),
                &Self::project_selector(project),
                reporter,
            )
            .await?;
            Ok(removed)
        })
    }
}

impl Runtime for Kube {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            build: false,
            healthchecks: true,
            networks: false,
            volumes: true,
            external_files: true,
            placement: false,
            global_mode: true,
            endpoint_mode: false,
        }
    }

    fn orchestrator(&self) -> Option<&dyn Orchestrator> {
        Some(self)
    }

    /// Pods are not containers baton keeps: nothing to observe at that level.
    async fn observe(&self, _project: &str) -> Result<Observed, RuntimeError> {
        Ok(Observed::default())
    }
    async fn image_exists(&self, _reference: &str) -> Result<bool, RuntimeError> {
        Err(self.refuse("look up images (the nodes pull them)"))
    }
    async fn pull_image(
        &self,
        _reference: &str,
        _progress: ProgressFn<'_>,
    ) -> Result<(), RuntimeError> {
        Err(self.refuse("pull images (the nodes pull them)"))
    }
    async fn build_image(
        &self,
        _spec: &BuildSpec,
        _progress: ProgressFn<'_>,
    ) -> Result<(), RuntimeError> {
        Err(self.refuse("build images (build and push, then give `image:`)"))
    }
    async fn network_exists(&self, _name: &str) -> Result<bool, RuntimeError> {
        Err(self.refuse("keep networks (a cluster has one pod network)"))
    }
    async fn create_network(&self, _spec: &NetworkSpec) -> Result<String, RuntimeError> {
        Err(self.refuse("create networks (a cluster has one pod network)"))
    }
    async fn remove_network(&self, _id_or_name: &str) -> Result<(), RuntimeError> {
        Err(self.refuse("remove networks"))
    }
    async fn volume_exists(&self, _name: &str) -> Result<bool, RuntimeError> {
        Err(self.refuse("keep volumes one by one (they are PersistentVolumeClaims)"))
    }
    async fn create_volume(&self, _spec: &VolumeSpec) -> Result<(), RuntimeError> {
        Err(self.refuse("create volumes one by one (they are PersistentVolumeClaims)"))
    }
    async fn remove_volume(&self, _name: &str) -> Result<(), RuntimeError> {
        Err(self.refuse("remove volumes one by one (`down --volumes` deletes the claims)"))
    }
    async fn create_container(&self, _spec: &ContainerSpec) -> Result<String, RuntimeError> {
        Err(self.refuse("create containers"))
    }
    async fn start_container(&self, _id: &str) -> Result<(), RuntimeError> {
        Err(self.refuse("start containers"))
    }
    async fn stop_container(
        &self,
        _id: &str,
        _grace: Duration,
        _signal: Option<&str>,
    ) -> Result<(), RuntimeError> {
        Err(self.refuse("stop containers"))
    }
    async fn kill_container(&self, _id: &str, _signal: Option<&str>) -> Result<(), RuntimeError> {
        Err(self.refuse("kill containers"))
    }
    async fn remove_container(&self, _id: &str) -> Result<(), RuntimeError> {
        Err(self.refuse("remove containers"))
    }
    async fn inspect_container(&self, _id: &str) -> Result<ObservedContainer, RuntimeError> {
        Err(self.refuse("inspect containers (`ps` shows the pods)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_shows_hashes_of_its_values_never_the_values() {
        let s =
            json!({"kind": "Secret", "metadata": {"name": "db"}, "stringData": {"pw": "hunter2"}});
        let key = DigestKey::new([3; 32]);
        let r = redacted(&s, &key);
        let text = r.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(r["stringData"]["pw"]
            .as_str()
            .is_some_and(|v| v.starts_with("hmac-sha256:")));
        let other = redacted(
            &json!({"kind": "Secret", "metadata": {"name": "db"}, "stringData": {"pw": "hunter3"}}),
            &key,
        );
        assert_ne!(r, other, "a changed value changes the redacted object");
        assert_eq!(r, redacted(&s, &key), "and the same one does not");
        assert_ne!(
            r,
            redacted(&s, &DigestKey::new([4; 32])),
            "the digest is keyed"
        );
    }

    #[test]
    fn every_kind_render_makes_has_a_resource() {
        for kind in KINDS {
            assert!(resource(kind).is_some(), "{kind}");
        }
    }
}
