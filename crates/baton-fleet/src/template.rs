//! Host-aware templating (minijinja): every string of a step, and template contents, see
//! the host's vars plus `host`, `address`, `port`, `user`, `role`, `tags`, `groups`.

use serde_json::{Map, Value};

use crate::inventory::Host;

/// The variables a host's templates see.
pub fn host_context(h: &Host) -> Value {
    let mut m: Map<String, Value> = h.vars.clone();
    m.insert("host".into(), h.id.clone().into());
    m.insert("address".into(), h.address.clone().into());
    m.insert("port".into(), h.port.into());
    m.insert("user".into(), h.user.clone().into());
    m.insert(
        "role".into(),
        h.role.clone().map(Value::from).unwrap_or(Value::Null),
    );
    m.insert(
        "tags".into(),
        h.tags.iter().cloned().collect::<Vec<_>>().into(),
    );
    m.insert(
        "groups".into(),
        h.groups.iter().cloned().collect::<Vec<_>>().into(),
    );
    Value::Object(m)
}

/// Renders `text` for one host; undefined variables are errors, not empty strings.
pub fn render(text: &str, ctx: &Value) -> Result<String, String> {
    if !text.contains("{{") && !text.contains("{%") {
        return Ok(text.to_string());
    }
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.render_str(text, ctx)
        .map_err(|e| format!("template: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_host_vars_and_refuses_undefined() {
        let mut h =
            crate::inventory::from_ansible_ini("a root=/srv/a\n", "i", std::path::Path::new("/"))
                .unwrap()
                .hosts
                .remove("a")
                .unwrap();
        h.role = Some("web".into());
        let ctx = host_context(&h);
        assert_eq!(
            render("{{ root }}/x {{ host }} {{ role }}", &ctx).unwrap(),
            "/srv/a/x a web"
        );
        assert_eq!(render("plain\n", &ctx).unwrap(), "plain\n");
        assert_eq!(render("{{ host }}\n", &ctx).unwrap(), "a\n");
        assert!(render("{{ nope }}", &ctx).is_err());
    }
}
