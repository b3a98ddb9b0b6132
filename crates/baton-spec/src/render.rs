//! A project written back out as a file the reader loads to the same project: what
//! `baton config` prints, as YAML or as JSON.
//!
//! The model's own serde form is for hashing and the state store (durations in
//! milliseconds, `other` maps nested); this is the Compose form: durations as `1m30s`,
//! sizes as `512m`, every `other` and `x-*` key back in its place, baton's sections at
//! the top level (the rest of `x-baton` under it), disabled services with their
//! profiles, and every `$` written `$$` so interpolation gives the values back.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};
use yaml_rust2::{Yaml, YamlEmitter};

use crate::model::*;
use crate::schema;

/// The project as YAML, ending in a newline.
pub fn yaml(project: &Project) -> String {
    let doc = to_yaml(&document(project));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = YamlEmitter::new(&mut out).dump(&doc);
    let mut out = out.strip_prefix("---\n").map(str::to_string).unwrap_or(out);
    out.push('\n');
    out
}

/// The project as pretty-printed JSON (which is YAML too), ending in a newline.
pub fn json(project: &Project) -> String {
    let mut out = serde_json::to_string_pretty(&document(project)).unwrap_or_default();
    out.push('\n');
    out
}

/// The project as a Compose document.
pub fn document(project: &Project) -> Json {
    // Destructured, so a field added to the model cannot be forgotten here.
    let Project {
        name,
        // Where the files were; the written file has its own place.
        working_dir: _,
        files: _,
        services,
        disabled_services,
        networks,
        volumes,
        configs,
        secrets,
        models,
        baton,
        extensions,
        // Positions in the files read; the written file has its own.
        baton_marks: _,
    } = project;
    let mut doc = Obj::default();
    doc.text("name", name);
    let all: BTreeMap<&String, &Service> = services.iter().chain(disabled_services).collect();
    doc.set(
        "services",
        Json::Object(
            all.into_iter()
                .map(|(n, s)| (n.clone(), service(s)))
                .collect(),
        ),
    );
    doc.map("networks", networks, network);
    doc.map("volumes", volumes, volume);
    doc.map("configs", configs, file_object);
    doc.map("secrets", secrets, file_object);
    doc.map("models", models, escaped);
    let mut x_baton = Map::new();
    for (k, v) in baton {
        if schema::BATON_TOP.contains(&k.as_str()) {
            doc.set(k, escaped(v));
        } else {
            x_baton.insert(k.clone(), escaped(v));
        }
    }
    if !x_baton.is_empty() {
        doc.set("x-baton", Json::Object(x_baton));
    }
    doc.carried(extensions);
    doc.0.into()
}

/// `1m30s`, `500ms`, `0s`: what `parse_duration` reads back to the same milliseconds.
pub fn duration(d: Duration) -> String {
    const EXACT: u64 = 1 << 53;
    let ms = d.0;
    if ms == 0 {
        return "0s".into();
    }
    // Above 2^53 the reader's floating-point sum of several units could round.
    if ms >= EXACT {
        return format!("{ms}ms");
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, rest) = (rest / 1000, rest % 1000);
    [(h, "h"), (m, "m"), (s, "s"), (rest, "ms")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect()
}

/// `512m`, `1g`, `1536`: a size in the largest binary unit that divides it.
pub fn bytes(n: u64) -> String {
    for (unit, shift) in [("t", 40), ("g", 30), ("m", 20), ("k", 10)] {
        if n != 0 && n.trailing_zeros() >= shift {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

/// A JSON object built in order, leaving out what is empty or default.
#[derive(Default)]
struct Obj(Map<String, Json>);

impl Obj {
    fn set(&mut self, key: &str, value: Json) {
        self.0.insert(key.to_string(), value);
    }

    fn text(&mut self, key: &str, value: &str) {
        self.set(key, text(value));
    }

    fn opt_text(&mut self, key: &str, value: &Option<String>) {
        if let Some(v) = value {
            self.text(key, v);
        }
    }

    fn texts(&mut self, key: &str, values: &[String]) {
        if !values.is_empty() {
            self.set(key, values.iter().map(|v| text(v)).collect());
        }
    }

    fn text_map(&mut self, key: &str, values: &BTreeMap<String, String>) {
        if !values.is_empty() {
            self.set(
                key,
                Json::Object(values.iter().map(|(k, v)| (k.clone(), text(v))).collect()),
            );
        }
    }

    fn flag(&mut self, key: &str, value: bool) {
        if value {
            self.set(key, Json::Bool(true));
        }
    }

    fn number(&mut self, key: &str, value: Option<impl Into<Json>>) {
        if let Some(v) = value {
            self.set(key, v.into());
        }
    }

    fn float(&mut self, key: &str, value: Option<f64>) {
        if let Some(n) = value.and_then(serde_json::Number::from_f64) {
            self.set(key, Json::Number(n));
        }
    }

    fn duration(&mut self, key: &str, value: Option<Duration>) {
        if let Some(d) = value {
            self.set(key, Json::String(duration(d)));
        }
    }

    fn map<T>(&mut self, key: &str, values: &BTreeMap<String, T>, f: impl Fn(&T) -> Json) {
        if !values.is_empty() {
            self.set(
                key,
                Json::Object(values.iter().map(|(k, v)| (k.clone(), f(v))).collect()),
            );
        }
    }

    /// Keys carried as written (`other`, `x-*`), back beside the typed ones.
    fn carried(&mut self, values: &BTreeMap<String, Json>) {
        for (k, v) in values {
            self.set(k, escaped(v));
        }
    }
}

/// A string as written for the reader: `$` doubled, so interpolation leaves it as it is.
fn text(s: &str) -> Json {
    Json::String(s.replace('$', "$$"))
}

/// A value carried as written, with every string in it escaped.
fn escaped(v: &Json) -> Json {
    match v {
        Json::String(s) => text(s),
        Json::Array(items) => items.iter().map(escaped).collect(),
        Json::Object(o) => Json::Object(o.iter().map(|(k, v)| (k.clone(), escaped(v))).collect()),
        other => other.clone(),
    }
}

fn escaped_map(m: &BTreeMap<String, Json>) -> Json {
    Json::Object(m.iter().map(|(k, v)| (k.clone(), escaped(v))).collect())
}

fn service(s: &Service) -> Json {
    let Service {
        image,
        build,
        command,
        entrypoint,
        environment,
        ports,
        expose,
        volumes,
        tmpfs,
        networks,
        network_mode,
        depends_on,
        healthcheck,
        restart,
        deploy,
        labels,
        container_name,
        working_dir,
        user,
        hostname,
        domainname,
        stop_grace_period,
        stop_signal,
        init,
        cap_add,
        cap_drop,
        ulimits,
        extra_hosts,
        logging,
        profiles,
        configs,
        secrets,
        privileged,
        read_only,
        tty,
        stdin_open,
        pull_policy,
        dns,
        dns_search,
        sysctls,
        platform,
        other,
        baton,
        extensions,
    } = s;
    let mut o = Obj::default();
    o.opt_text("image", image);
    if let Some(b) = build {
        o.set("build", self::build(b));
    }
    // A command is written as a list: a string would be split again.
    if let Some(c) = command {
        o.set("command", c.iter().map(|a| text(a)).collect());
    }
    if let Some(e) = entrypoint {
        o.set("entrypoint", e.iter().map(|a| text(a)).collect());
    }
    if !environment.is_empty() {
        o.set("environment", optional_texts(environment));
    }
    if !ports.is_empty() {
        o.set("ports", ports.iter().map(port).collect());
    }
    o.texts("expose", expose);
    if !volumes.is_empty() {
        o.set("volumes", volumes.iter().map(mount).collect());
    }
    o.texts("tmpfs", tmpfs);
    o.map("networks", networks, service_network);
    o.opt_text("network_mode", network_mode);
    o.map("depends_on", depends_on, dependency);
    if let Some(h) = healthcheck {
        o.set("healthcheck", self::healthcheck(h));
    }
    o.opt_text("restart", restart);
    if let Some(d) = deploy {
        o.set("deploy", self::deploy(d));
    }
    o.text_map("labels", labels);
    o.opt_text("container_name", container_name);
    o.opt_text("working_dir", working_dir);
    o.opt_text("user", user);
    o.opt_text("hostname", hostname);
    o.opt_text("domainname", domainname);
    o.duration("stop_grace_period", *stop_grace_period);
    o.opt_text("stop_signal", stop_signal);
    if let Some(i) = init {
        o.set("init", Json::Bool(*i));
    }
    o.texts("cap_add", cap_add);
    o.texts("cap_drop", cap_drop);
    o.map("ulimits", ulimits, |u| {
        let Ulimit { soft, hard } = u;
        serde_json::json!({"soft": soft, "hard": hard})
    });
    o.texts("extra_hosts", extra_hosts);
    if let Some(l) = logging {
        let Logging { driver, options } = l;
        let mut lo = Obj::default();
        lo.opt_text("driver", driver);
        lo.text_map("options", options);
        o.set("logging", lo.0.into());
    }
    o.texts("profiles", profiles);
    if !configs.is_empty() {
        o.set("configs", configs.iter().map(file_ref).collect());
    }
    if !secrets.is_empty() {
        o.set("secrets", secrets.iter().map(file_ref).collect());
    }
    o.flag("privileged", *privileged);
    o.flag("read_only", *read_only);
    o.flag("tty", *tty);
    o.flag("stdin_open", *stdin_open);
    o.opt_text("pull_policy", pull_policy);
    o.texts("dns", dns);
    o.texts("dns_search", dns_search);
    o.text_map("sysctls", sysctls);
    o.opt_text("platform", platform);
    o.carried(other);
    if let Some(b) = baton {
        o.set("x-baton", escaped(b));
    }
    o.carried(extensions);
    o.0.into()
}

/// A mapping of names to values, a name without a value written as null.
fn optional_texts(values: &BTreeMap<String, Option<String>>) -> Json {
    Json::Object(
        values
            .iter()
            .map(|(k, v)| (k.clone(), v.as_deref().map_or(Json::Null, text)))
            .collect(),
    )
}

fn build(b: &Build) -> Json {
    let Build {
        context,
        dockerfile,
        dockerfile_inline,
        args,
        target,
        labels,
        tags,
        other,
    } = b;
    let mut o = Obj::default();
    o.text("context", context);
    o.opt_text("dockerfile", dockerfile);
    o.opt_text("dockerfile_inline", dockerfile_inline);
    if !args.is_empty() {
        o.set("args", optional_texts(args));
    }
    o.opt_text("target", target);
    o.text_map("labels", labels);
    o.texts("tags", tags);
    o.carried(other);
    o.0.into()
}

fn port(p: &Port) -> Json {
    let Port {
        target,
        published,
        host_ip,
        protocol,
        mode,
        name,
        app_protocol,
    } = p;
    let mut o = Obj::default();
    o.number("target", Some(*target));
    o.number("published", *published);
    o.opt_text("host_ip", host_ip);
    o.text("protocol", protocol);
    o.opt_text("mode", mode);
    o.opt_text("name", name);
    o.opt_text("app_protocol", app_protocol);
    o.0.into()
}

fn mount(m: &Mount) -> Json {
    let Mount {
        kind,
        source,
        target,
        read_only,
        consistency,
        bind,
        volume,
        tmpfs,
    } = m;
    let mut o = Obj::default();
    o.text("type", kind);
    o.opt_text("source", source);
    o.text("target", target);
    o.flag("read_only", *read_only);
    o.opt_text("consistency", consistency);
    for (key, value) in [("bind", bind), ("volume", volume), ("tmpfs", tmpfs)] {
        if let Some(v) = value {
            o.set(key, escaped_map(v));
        }
    }
    o.0.into()
}

fn service_network(n: &ServiceNetwork) -> Json {
    let ServiceNetwork {
        aliases,
        ipv4_address,
        ipv6_address,
        priority,
        other,
    } = n;
    let mut o = Obj::default();
    o.texts("aliases", aliases);
    o.opt_text("ipv4_address", ipv4_address);
    o.opt_text("ipv6_address", ipv6_address);
    o.number("priority", *priority);
    o.carried(other);
    o.0.into()
}

fn dependency(d: &Dependency) -> Json {
    let Dependency {
        condition,
        required,
        restart,
    } = d;
    let mut o = Obj::default();
    let condition = match condition {
        Condition::ServiceStarted => "service_started",
        Condition::ServiceHealthy => "service_healthy",
        Condition::ServiceCompletedSuccessfully => "service_completed_successfully",
    };
    o.text("condition", condition);
    if !required {
        o.set("required", Json::Bool(false));
    }
    o.flag("restart", *restart);
    o.0.into()
}

fn healthcheck(h: &Healthcheck) -> Json {
    let Healthcheck {
        test,
        interval,
        timeout,
        retries,
        start_period,
        start_interval,
        disable,
    } = h;
    let mut o = Obj::default();
    o.texts("test", test);
    o.duration("interval", *interval);
    o.duration("timeout", *timeout);
    o.number("retries", *retries);
    o.duration("start_period", *start_period);
    o.duration("start_interval", *start_interval);
    o.flag("disable", *disable);
    o.0.into()
}

fn deploy(d: &Deploy) -> Json {
    let Deploy {
        mode,
        replicas,
        labels,
        resources,
        restart_policy,
        update_config,
        rollback_config,
        other,
    } = d;
    let mut o = Obj::default();
    o.opt_text("mode", mode);
    o.number("replicas", *replicas);
    o.text_map("labels", labels);
    if let Some(r) = resources {
        let Resources {
            limits,
            reservations,
        } = r;
        let mut ro = Obj::default();
        for (key, spec) in [("limits", limits), ("reservations", reservations)] {
            if let Some(s) = spec {
                ro.set(key, resource_spec(s));
            }
        }
        o.set("resources", ro.0.into());
    }
    if let Some(r) = restart_policy {
        let RestartPolicy {
            condition,
            delay,
            max_attempts,
            window,
        } = r;
        let mut ro = Obj::default();
        ro.opt_text("condition", condition);
        ro.duration("delay", *delay);
        ro.number("max_attempts", *max_attempts);
        ro.duration("window", *window);
        o.set("restart_policy", ro.0.into());
    }
    for (key, config) in [
        ("update_config", update_config),
        ("rollback_config", rollback_config),
    ] {
        if let Some(u) = config {
            o.set(key, self::update_config(u));
        }
    }
    o.carried(other);
    o.0.into()
}

fn resource_spec(s: &ResourceSpec) -> Json {
    let ResourceSpec {
        cpus,
        memory,
        pids,
        other,
    } = s;
    let mut o = Obj::default();
    o.float("cpus", *cpus);
    if let Some(m) = memory {
        o.set("memory", Json::String(bytes(*m)));
    }
    o.number("pids", *pids);
    o.carried(other);
    o.0.into()
}

fn update_config(u: &UpdateConfig) -> Json {
    let UpdateConfig {
        parallelism,
        delay,
        failure_action,
        monitor,
        max_failure_ratio,
        order,
    } = u;
    let mut o = Obj::default();
    o.number("parallelism", *parallelism);
    o.duration("delay", *delay);
    o.opt_text("failure_action", failure_action);
    o.duration("monitor", *monitor);
    o.float("max_failure_ratio", *max_failure_ratio);
    o.opt_text("order", order);
    o.0.into()
}

fn file_ref(r: &FileRef) -> Json {
    let FileRef {
        source,
        target,
        uid,
        gid,
        mode,
    } = r;
    let mut o = Obj::default();
    o.text("source", source);
    o.text("target", target);
    o.opt_text("uid", uid);
    o.opt_text("gid", gid);
    o.number("mode", *mode);
    o.0.into()
}

fn network(n: &Network) -> Json {
    let Network {
        name,
        driver,
        driver_opts,
        external,
        internal,
        attachable,
        enable_ipv6,
        ipam,
        labels,
        other,
    } = n;
    let mut o = Obj::default();
    o.text("name", name);
    o.opt_text("driver", driver);
    o.text_map("driver_opts", driver_opts);
    o.flag("external", *external);
    o.flag("internal", *internal);
    o.flag("attachable", *attachable);
    o.flag("enable_ipv6", *enable_ipv6);
    if let Some(i) = ipam {
        let Ipam {
            driver,
            config,
            options,
        } = i;
        let mut io = Obj::default();
        io.opt_text("driver", driver);
        if !config.is_empty() {
            let pools = config.iter().map(|p| {
                let IpamPool {
                    subnet,
                    ip_range,
                    gateway,
                    aux_addresses,
                } = p;
                let mut po = Obj::default();
                po.opt_text("subnet", subnet);
                po.opt_text("ip_range", ip_range);
                po.opt_text("gateway", gateway);
                po.text_map("aux_addresses", aux_addresses);
                Json::from(po.0)
            });
            io.set("config", pools.collect());
        }
        io.text_map("options", options);
        o.set("ipam", io.0.into());
    }
    o.text_map("labels", labels);
    o.carried(other);
    o.0.into()
}

fn volume(v: &Volume) -> Json {
    let Volume {
        name,
        driver,
        driver_opts,
        external,
        labels,
        other,
    } = v;
    let mut o = Obj::default();
    o.text("name", name);
    o.opt_text("driver", driver);
    o.text_map("driver_opts", driver_opts);
    o.flag("external", *external);
    o.text_map("labels", labels);
    o.carried(other);
    o.0.into()
}

fn file_object(f: &FileObject) -> Json {
    // `c:` with nothing under it reads as the default; `{}` would be refused.
    if *f == FileObject::default() {
        return Json::Null;
    }
    let FileObject {
        name,
        file,
        environment,
        content,
        external,
        labels,
        other,
    } = f;
    let mut o = Obj::default();
    o.opt_text("name", name);
    if let Some(p) = file {
        o.text("file", &p.display().to_string());
    }
    o.opt_text("environment", environment);
    o.opt_text("content", content);
    o.flag("external", *external);
    o.text_map("labels", labels);
    o.carried(other);
    o.0.into()
}

/// JSON as a yaml-rust2 tree for its emitter. Floats keep serde_json's shortest form
/// (`5.0` stays a float when read back).
fn to_yaml(v: &Json) -> Yaml {
    match v {
        Json::Null => Yaml::Null,
        Json::Bool(b) => Yaml::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Json::String(s) => Yaml::String(s.clone()),
        Json::Array(items) => Yaml::Array(items.iter().map(to_yaml).collect()),
        Json::Object(o) => Yaml::Hash(
            o.iter()
                .map(|(k, v)| (Yaml::String(k.clone()), to_yaml(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::limits::Budget;
    use crate::normalize::{parse_bytes, parse_duration};
    use crate::yaml::{parse, Source};

    #[test]
    fn durations_read_back_the_same() {
        let cases = [
            (0, "0s"),
            (1, "1ms"),
            (500, "500ms"),
            (1000, "1s"),
            (1500, "1s500ms"),
            (90_000, "1m30s"),
            (3_600_000, "1h"),
            (3_661_001, "1h1m1s1ms"),
            (90_000_000_000, "25000h"),
        ];
        for (ms, want) in cases {
            assert_eq!(duration(Duration(ms)), want);
            assert_eq!(parse_duration(want), Ok(Duration(ms)), "{want}");
        }
        for ms in [
            (1 << 53) - 1,
            1 << 53,
            u64::MAX - 2047,
            3_599_999_999_996_416_000,
        ] {
            let text = duration(Duration(ms));
            assert_eq!(parse_duration(&text), Ok(Duration(ms)), "{text}");
        }
    }

    #[test]
    fn sizes_read_back_the_same() {
        for (n, want) in [
            (0, "0"),
            (1000, "1000"),
            (1024, "1k"),
            (1536, "1536"),
            (512 << 20, "512m"),
            (3 << 30, "3g"),
            (1 << 40, "1t"),
        ] {
            assert_eq!(bytes(n), want);
            assert_eq!(parse_bytes(want), Ok(n));
        }
    }

    #[test]
    fn awkward_strings_read_back_the_same() {
        let strings = [
            "",
            " x",
            "x ",
            "true",
            "False",
            "null",
            "~",
            "1",
            "-1",
            "1.5",
            "1e5",
            "+1",
            ".5",
            "0x10",
            "yes",
            "#x",
            "a # b",
            "a: b",
            "- a",
            "---",
            "...",
            "<<",
            "&a",
            "*a",
            "!x",
            "%x",
            "@x",
            "`x",
            "[a]",
            "{a}",
            "a,b",
            "\"q\"",
            "'q'",
            "back\\slash",
            "tab\tx",
            "line\nbreak",
            "trailing\n",
            "\r",
            "\u{0}",
            "\u{7f}",
            "\u{85}",
            "\u{a0}",
            "\u{2028}",
            "\u{feff}x",
            "é",
            "日本",
            "$A",
            "$$",
            "${A:-b}",
        ];
        let doc: Json = Json::Object(
            strings
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("k{i}"), Json::String(s.to_string())))
                .chain(strings.iter().map(|s| (s.to_string(), Json::Null)))
                .collect(),
        );
        let mut out = String::new();
        YamlEmitter::new(&mut out).dump(&to_yaml(&doc)).unwrap();
        let src: Arc<Source> = Source::new("r.yaml".into(), "r.yaml".into(), "/".into());
        let back = parse(&out, &src, &Budget::default()).unwrap();
        assert_eq!(back.to_json(), doc, "{out}");
    }
}
