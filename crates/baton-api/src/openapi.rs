//! The OpenAPI 3.1 document, generated from the route table and the serde types the
//! handlers take and return (their JSON Schemas land in `components.schemas`).

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use crate::routes::{openapi_path, table, Answer};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

/// The document, as `GET /api/v1/openapi.json` serves it.
pub fn document() -> Value {
    let mut g = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let mut paths: Map<String, Value> = Map::new();
    for r in table() {
        let path = openapi_path(r.path);
        let mut parameters: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| {
                json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
            })
            .collect();
        if let Some(q) = r.query {
            let schema = q(&mut g).to_value();
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(props) = schema["properties"].as_object() {
                for (name, s) in props {
                    let mut p = json!({
                        "name": name,
                        "in": "query",
                        "required": required.contains(&name.as_str()),
                        "schema": s,
                    });
                    if let Some(d) = s.get("description") {
                        p["description"] = d.clone();
                    }
                    parameters.push(p);
                }
            }
        }
        if path.ends_with("/events") && r.method == "GET" && !path.contains("/projects/") {
            parameters.push(json!({
                "name": "Last-Event-ID", "in": "header", "required": false,
                "schema": {"type": "integer"},
                "description": "resume after this event id (EventSource sends it on reconnect)"
            }));
        }
        let mut responses = Map::new();
        match r.answer {
            Answer::Json(f) => {
                let s = f(&mut g).to_value();
                let code = if r.method == "POST" && path.ends_with("/tokens") {
                    "201"
                } else {
                    "200"
                };
                responses.insert(
                    code.into(),
                    json!({"description": "success", "content": {"application/json": {"schema": s}}}),
                );
            }
            Answer::EventStream => {
                responses.insert(
                    "200".into(),
                    json!({
                        "description": "Server-Sent Events: each `data:` line is one JSON object; `id:` is the event id",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}}
                    }),
                );
            }
            Answer::Bytes => {
                responses.insert(
                    "200".into(),
                    json!({"description": "the file", "content": {"application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}}),
                );
            }
            Answer::Empty => {
                responses.insert("204".into(), json!({"description": "done"}));
            }
        }
        responses.insert("400".into(), error_response("bad path, query or JSON"));
        if r.role.is_some() {
            responses.insert(
                "401".into(),
                error_response("missing or unknown bearer token"),
            );
            responses.insert(
                "403".into(),
                error_response("the token's role may not do this"),
            );
        }
        if r.body.is_some() {
            responses.insert("413".into(), error_response("body over the limit"));
            responses.insert("415".into(), error_response("a body not declared as JSON"));
            responses.insert(
                "422".into(),
                error_response("a body of the wrong shape (unknown field, wrong type)"),
            );
            responses.insert(
                "409".into(),
                error_response("refused as things are (nothing to promote, a daemon needed)"),
            );
            responses.insert(
                "503".into(),
                error_response("the container engine or the control plane is not available"),
            );
        }
        let id: String = format!(
            "{}{}",
            r.method.to_lowercase(),
            path.trim_start_matches("/api/v1")
        )
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
        let mut op = json!({
            "operationId": id.trim_end_matches('_'),
            "summary": r.summary,
            "parameters": parameters,
            "responses": responses,
        });
        match r.role {
            Some(role) => op["x-baton-role"] = json!(role.as_str()),
            None => op["security"] = json!([]),
        }
        if let Some(b) = r.body {
            op["requestBody"] = json!({
                "required": false,
                "content": {"application/json": {"schema": b(&mut g).to_value()}}
            });
        }
        paths
            .entry(path)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|m| m.insert(r.method.to_lowercase(), op));
    }
    let mut schemas: Map<String, Value> = g.take_definitions(true);
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}),
    );
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "baton",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "baton's daemon API. Every route but this document needs `Authorization: Bearer <token>` (`baton token create NAME --role viewer|operator|admin`); `x-baton-role` says which role a route needs. Changes answer 200 with their outcome once they ran (`ok: false` when an action failed)."
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "security": [{"bearer": []}],
    })
}
