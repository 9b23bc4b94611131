//! Golden-path templates: Backstage `scaffolder.backstage.io/v1beta3`
//! `Template` documents, checked before anything runs, and their skeletons
//! rendered — pure, from the template's files and the values, with a
//! Jinja engine (minijinja) set to Backstage's `${{ … }}` delimiters.
//!
//! What is here is the first slice of golden paths: checking a template
//! (its steps, their actions) and rendering a skeleton (`fetch:template`).
//! The task runner that carries steps out is not built yet.

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use serde_json::Value;

use crate::rejection::FieldViolation;

/// The only template API version Paved runs.
pub const API_VERSION: &str = "scaffolder.backstage.io/v1beta3";

/// The actions a step may name.
pub const ACTIONS: &[&str] = &[
    "fetch:template",
    "fetch:plain",
    "publish:git",
    "catalog:register",
    "paved:provision",
    "paved:argocd-app",
    "debug:log",
];

/// One step of a template.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub id: String,
    pub name: String,
    pub action: String,
    pub input: Value,
    /// The step runs only when this expression is true (`if`).
    pub condition: Option<String>,
}

/// A checked template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    pub name: String,
    /// The JSON Schemas of the parameters, one per form page.
    pub parameters: Vec<Value>,
    pub steps: Vec<Step>,
    pub output: Value,
}

/// Checks a Template document: its kind and version, its parameters, and
/// every step (an id of its own, a known action). Every problem is named by
/// its field.
pub fn check_template(doc: &Value) -> Result<Template, Vec<FieldViolation>> {
    let mut v = Vec::new();
    let mut push = |field: String, why: &str| v.push(FieldViolation::new(field, why));
    if doc["apiVersion"] != API_VERSION {
        push(
            "apiVersion".into(),
            "must be scaffolder.backstage.io/v1beta3",
        );
    }
    if doc["kind"] != "Template" {
        push("kind".into(), "must be Template");
    }
    let name = doc["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if name.is_empty() {
        push("metadata.name".into(), "is required");
    }
    let parameters = match &doc["spec"]["parameters"] {
        Value::Null => Vec::new(),
        Value::Array(pages) => pages.clone(),
        page @ Value::Object(_) => vec![page.clone()],
        _ => {
            push(
                "spec.parameters".into(),
                "must be a JSON Schema or a list of them",
            );
            Vec::new()
        }
    };
    for (i, page) in parameters.iter().enumerate() {
        if !page.is_object() {
            push(
                format!("spec.parameters[{i}]"),
                "must be a JSON Schema object",
            );
        }
    }
    let mut steps = Vec::new();
    let mut ids = BTreeSet::new();
    match &doc["spec"]["steps"] {
        Value::Array(list) => {
            for (i, s) in list.iter().enumerate() {
                let id = s["id"].as_str().unwrap_or_default();
                let action = s["action"].as_str().unwrap_or_default();
                if id.is_empty() {
                    push(format!("spec.steps[{i}].id"), "is required");
                } else if !ids.insert(id.to_owned()) {
                    push(format!("spec.steps[{i}].id"), "is used by an earlier step");
                }
                if !ACTIONS.contains(&action) {
                    push(
                        format!("spec.steps[{i}].action"),
                        "is not an action Paved runs (fetch:template, fetch:plain, publish:git, catalog:register, paved:provision, paved:argocd-app, debug:log)",
                    );
                }
                let condition = match &s["if"] {
                    Value::Null => None,
                    Value::String(c) => Some(c.clone()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => {
                        push(format!("spec.steps[{i}].if"), "must be an expression");
                        None
                    }
                };
                steps.push(Step {
                    id: id.to_owned(),
                    name: s["name"].as_str().unwrap_or(id).to_owned(),
                    action: action.to_owned(),
                    input: s["input"].clone(),
                    condition,
                });
            }
        }
        _ => push("spec.steps".into(), "must be a list of steps"),
    }
    if v.is_empty() {
        Ok(Template {
            name,
            parameters,
            steps,
            output: doc["spec"]["output"].clone(),
        })
    } else {
        Err(v)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {why}")]
pub struct RenderError {
    pub path: String,
    pub why: String,
}

/// A Jinja environment with Backstage's syntax: `${{ … }}` for values,
/// `{% … %}` for statements, strict about undefined values, and
/// Backstage's filters (`parseRepoUrl`, `projectSlug`, `pick`).
fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .variable_delimiters("${{", "}}")
        .block_delimiters("{%", "%}")
        .comment_delimiters("{#", "#}")
        .keep_trailing_newline(true)
        .build()
        .expect("Backstage's delimiters are a valid syntax");
    env.set_syntax(syntax);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_filter("parseRepoUrl", |url: String| {
        minijinja::Value::from(minijinja::value::Serde(parse_repo_url(&url)))
    });
    env.add_filter("projectSlug", |url: String| {
        let r = parse_repo_url(&url);
        format!(
            "{}/{}",
            r["owner"].as_str().unwrap_or_default(),
            r["repo"].as_str().unwrap_or_default()
        )
    });
    env.add_filter(
        "pick",
        |value: minijinja::Value, key: String| -> Result<minijinja::Value, minijinja::Error> {
            value.get_attr(&key)
        },
    );
    env
}

/// Backstage's repository URL form `github.com?owner=acme&repo=payments-api`
/// as `{host, owner, repo}`.
pub fn parse_repo_url(url: &str) -> Value {
    let (host, query) = url.split_once('?').unwrap_or((url, ""));
    let mut out = serde_json::json!({ "host": host });
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out[k] = Value::String(v.to_owned());
    }
    out
}

/// The parameters of a run: the given ones, then each page's `default`s
/// for what is not given; and the fields that are required and missing,
/// or not the type the schema says (`string`, `number`, `integer`,
/// `boolean`), by their path. `ui:*` keys are ignored.
///
/// This is not a full JSON Schema validator (no patterns, formats,
/// bounds): the server-side check the issue asks for is not built yet.
pub fn parameters(
    template: &Template,
    given: &serde_json::Map<String, Value>,
) -> Result<serde_json::Map<String, Value>, Vec<FieldViolation>> {
    let mut out = given.clone();
    let mut v = Vec::new();
    for page in &template.parameters {
        let props = page["properties"].as_object().cloned().unwrap_or_default();
        for (name, schema) in &props {
            if !out.contains_key(name)
                && let Some(d) = schema.get("default")
            {
                out.insert(name.clone(), d.clone());
            }
            if let (Some(value), Some(kind)) = (out.get(name), schema["type"].as_str()) {
                let fits = match kind {
                    "string" => value.is_string(),
                    "number" => value.is_number(),
                    "integer" => value.is_i64() || value.is_u64(),
                    "boolean" => value.is_boolean(),
                    _ => true,
                };
                if !fits {
                    v.push(FieldViolation::new(
                        format!("parameters.{name}"),
                        format!("must be a {kind}"),
                    ));
                }
            }
        }
        for name in page["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            if !out.contains_key(name) {
                v.push(FieldViolation::new(
                    format!("parameters.{name}"),
                    "is required",
                ));
            }
        }
    }
    if v.is_empty() { Ok(out) } else { Err(v) }
}

/// Renders a step's `input` with `context` (`parameters`, `steps`): every
/// string holding one `${{ … }}` and nothing else becomes that
/// expression's value (an object stays an object, as in Backstage); any
/// other string is rendered as text.
pub fn render_input(input: &Value, context: &Value) -> Result<Value, RenderError> {
    let env = environment();
    let ctx = minijinja::Value::from(minijinja::value::Serde(context));
    fn walk(
        env: &minijinja::Environment<'static>,
        ctx: &minijinja::Value,
        at: &str,
        v: &Value,
    ) -> Result<Value, RenderError> {
        let err = |e: minijinja::Error| RenderError {
            path: at.to_owned(),
            why: e.to_string(),
        };
        Ok(match v {
            Value::String(s) => {
                let t = s.trim();
                let whole = t
                    .strip_prefix("${{")
                    .and_then(|r| r.strip_suffix("}}"))
                    .filter(|inner| !inner.contains("${{") && !inner.contains("}}"));
                match whole {
                    Some(expr) => {
                        let value = env
                            .compile_expression(expr)
                            .map_err(err)?
                            .eval(ctx)
                            .map_err(err)?;
                        serde_json::to_value(&value).map_err(|e| RenderError {
                            path: at.to_owned(),
                            why: e.to_string(),
                        })?
                    }
                    None => Value::String(env.render_str(s, ctx).map_err(err)?),
                }
            }
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| walk(env, ctx, &format!("{at}[{i}]"), x))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, x)| Ok((k.clone(), walk(env, ctx, &format!("{at}.{k}"), x)?)))
                    .collect::<Result<_, RenderError>>()?,
            ),
            other => other.clone(),
        })
    }
    walk(&env, &ctx, "input", input)
}

/// Renders a skeleton (`fetch:template`): every file's path and content
/// with `values` as `values`, except the files `copy_without_templating`
/// names (globs: `*` within a path segment, `**` any segments), whose
/// content is copied as it is (their paths are still rendered). Output in
/// path order.
pub fn render_skeleton(
    files: &[(String, String)],
    values: &Value,
    copy_without_templating: &[String],
) -> Result<Vec<(String, String)>, RenderError> {
    let env = environment();
    let ctx =
        minijinja::context! { values => minijinja::Value::from(minijinja::value::Serde(values)) };
    let render = |path: &str, text: &str| {
        env.render_str(text, &ctx).map_err(|e| RenderError {
            path: path.to_owned(),
            why: e.to_string(),
        })
    };
    let mut out = Vec::with_capacity(files.len());
    for (path, content) in files {
        let target = render(path, path)?;
        let body = if copy_without_templating.iter().any(|g| glob(g, path)) {
            content.clone()
        } else {
            render(path, content)?
        };
        out.push((target, body));
    }
    out.sort();
    Ok(out)
}

/// Does `path` match `pattern` (`*` within a segment, `**` across segments)?
pub fn glob(pattern: &str, path: &str) -> bool {
    fn segments(p: &[&str], s: &[&str]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(&"**"), _) => segments(&p[1..], s) || (!s.is_empty() && segments(p, &s[1..])),
            (Some(pat), Some(seg)) => segment(pat, seg) && segments(&p[1..], &s[1..]),
            _ => false,
        }
    }
    fn segment(pat: &str, seg: &str) -> bool {
        match pat.split_once('*') {
            None => pat == seg,
            Some((head, tail)) => {
                seg.starts_with(head)
                    && (head.len()..=seg.len())
                        .any(|i| seg.is_char_boundary(i) && segment(tail, &seg[i..]))
            }
        }
    }
    let p: Vec<&str> = pattern.trim_start_matches("./").split('/').collect();
    let s: Vec<&str> = path.split('/').collect();
    segments(&p, &s)
}
