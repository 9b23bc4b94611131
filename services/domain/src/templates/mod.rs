//! Golden-path templates: Backstage `scaffolder.backstage.io/v1beta3`
//! `Template` documents, checked before anything runs, and their skeletons
//! rendered — pure, from the template's files and the values, with a
//! Jinja engine (minijinja) set to Backstage's `${{ … }}` delimiters.
//!
//! - this module: checking a template ([`check_template`]), its parameters
//!   against its forms ([`parameters`], JSON Schema), step inputs
//!   ([`render_input`], [`condition_holds`]) and skeletons
//!   ([`render_skeleton`], [`render_fetch`], [`render_workspace`]).
//! - [`library`]: the published versions of a template, each with its own
//!   files (aggregate `template`, `paved.templates.template.<name>`).
//! - [`task`]: one run of a template, step by step (aggregate `task`,
//!   `paved.templates.task.<id>`): what the task runner did and is doing.

pub mod library;
pub mod task;

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

/// The actions that render files into the task's workspace.
pub const FETCH_ACTIONS: &[&str] = &["fetch:template", "fetch:plain"];

/// The action of an upgrade task's one step (not for templates to name):
/// a three-way merge of a newer version into the service's repository.
pub const UPGRADE_ACTION: &str = "paved:template-upgrade";

/// The annotation Backstage templates declare the time they save with (ISO 8601).
pub const TIME_SAVED_ANNOTATION: &str = "backstage.io/time-saved";

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

/// Most steps of one template.
pub const MAX_STEPS: usize = 64;

/// The directory of a template's files a fetch step's `url` names
/// (`./skeleton` → `skeleton`; `.` → the template's own directory, ``),
/// or `None` when it is not one (a URL, an absolute path, `..`).
pub fn source_dir(url: &str) -> Option<String> {
    if url.contains("://") || url.starts_with('/') || url.contains('\\') {
        return None;
    }
    let mut parts = Vec::new();
    for seg in url.split('/') {
        match seg {
            "" | "." => {}
            ".." => return None,
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
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
        } else if let Err(why) = schema_validator(page) {
            push(format!("spec.parameters[{i}]"), &why);
        }
    }
    let mut steps = Vec::new();
    let mut ids = BTreeSet::new();
    match &doc["spec"]["steps"] {
        Value::Array(list) if list.len() > MAX_STEPS => push(
            "spec.steps".into(),
            &format!("has {} steps, at most {MAX_STEPS}", list.len()),
        ),
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
                // A skeleton comes from the template's own files.
                if FETCH_ACTIONS.contains(&action)
                    && let Some(url) = s["input"]["url"].as_str()
                    && !url.contains("${{")
                    && source_dir(url).is_none()
                {
                    push(
                        format!("spec.steps[{i}].input.url"),
                        "must be a directory of the template's own (a relative path such as ./skeleton, without ..)",
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

/// The parameters of a run, checked against the template's forms: the
/// given ones, then each page's `default`s for what is not given; a string
/// given for a `number`, `integer` or `boolean` property is read as one
/// (`--param replicas=3` on the command line gives a string); then every
/// page is validated as the JSON Schema it is (patterns, bounds, enums,
/// formats, required fields…), each problem named by its path
/// (`parameters.name`). `ui:*` keys are form hints, not schema, and are
/// ignored, as the JSON Schema rules for unknown keywords say.
pub fn parameters(
    template: &Template,
    given: &serde_json::Map<String, Value>,
) -> Result<serde_json::Map<String, Value>, Vec<FieldViolation>> {
    let mut out = given.clone();
    for page in &template.parameters {
        let props = page["properties"].as_object().cloned().unwrap_or_default();
        for (name, schema) in &props {
            match out.get(name) {
                None => {
                    if let Some(d) = schema.get("default") {
                        out.insert(name.clone(), d.clone());
                    }
                }
                Some(Value::String(s)) => {
                    let coerced = match schema["type"].as_str() {
                        Some("integer") => s.trim().parse::<i64>().ok().map(Value::from),
                        Some("number") => s
                            .trim()
                            .parse::<f64>()
                            .ok()
                            .and_then(serde_json::Number::from_f64)
                            .map(Value::Number),
                        Some("boolean") => s.trim().parse::<bool>().ok().map(Value::Bool),
                        _ => None,
                    };
                    if let Some(c) = coerced {
                        out.insert(name.clone(), c);
                    }
                }
                Some(_) => {}
            }
        }
    }
    let instance = Value::Object(out.clone());
    let mut v = Vec::new();
    for (i, page) in template.parameters.iter().enumerate() {
        let validator = match schema_validator(page) {
            Ok(x) => x,
            Err(why) => {
                v.push(FieldViolation::new(format!("spec.parameters[{i}]"), why));
                continue;
            }
        };
        for e in validator.iter_errors(&instance) {
            let path = e.instance_path().to_string();
            let mut field = String::from("parameters");
            for token in path.split('/').filter(|t| !t.is_empty()) {
                field.push('.');
                field.push_str(&token.replace("~1", "/").replace("~0", "~"));
            }
            // A missing required property is reported at the object; name it.
            if let jsonschema::error::ValidationErrorKind::Required { property } = e.kind() {
                if let Some(p) = property.as_str() {
                    field.push('.');
                    field.push_str(p);
                }
                v.push(FieldViolation::new(field, "is required"));
                continue;
            }
            v.push(FieldViolation::new(field, e.to_string()));
        }
    }
    v.sort_by(|a, b| a.field.cmp(&b.field));
    v.dedup();
    if v.is_empty() { Ok(out) } else { Err(v) }
}

/// A validator for one form page (JSON Schema, draft 7 unless it says
/// otherwise); the reason when the page is not a schema.
fn schema_validator(page: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .should_validate_formats(true)
        .build(page)
        .map_err(|e| format!("is not a valid JSON Schema: {e}"))
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

/// Is `path` a relative path of plain segments (what a workspace may hold)?
fn workspace_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && s != ".git")
        && !path.chars().any(|c| c.is_control() || c == '\\')
}

/// Renders fetch step `step` (`fetch:template` or `fetch:plain`) with
/// `context` (`parameters`, `steps`): the template's `files` under the
/// step's `url`, rendered (`values`, `copyWithoutTemplating`) or copied
/// as they are, each at its place in the workspace (under `targetPath`).
/// A rendered path that would leave the workspace is an error.
pub fn render_fetch(
    step: &Step,
    files: &[(String, String)],
    context: &Value,
) -> Result<Vec<(String, String)>, RenderError> {
    let at = |field: &str| format!("steps.{}.input.{field}", step.id);
    let input = render_input(&step.input, context)?;
    let url = input["url"].as_str().unwrap_or_default();
    let dir = source_dir(url)
        .filter(|_| !url.is_empty())
        .ok_or_else(|| RenderError {
            path: at("url"),
            why: format!("{url:?} is not a directory of the template's own"),
        })?;
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let skeleton: Vec<(String, String)> = files
        .iter()
        .filter_map(|(p, c)| p.strip_prefix(&prefix).map(|r| (r.to_owned(), c.clone())))
        .collect();
    if skeleton.is_empty() {
        return Err(RenderError {
            path: at("url"),
            why: format!("the template has no files under {url}"),
        });
    }
    let rendered = if step.action == "fetch:plain" {
        skeleton
    } else {
        let verbatim: Vec<String> = input["copyWithoutTemplating"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_str().map(str::to_owned))
            .collect();
        render_skeleton(&skeleton, &input["values"], &verbatim)?
    };
    let target = match &input["targetPath"] {
        Value::Null => String::new(),
        Value::String(t) => source_dir(t).ok_or_else(|| RenderError {
            path: at("targetPath"),
            why: format!("{t:?} must be a relative path inside the workspace"),
        })?,
        _ => {
            return Err(RenderError {
                path: at("targetPath"),
                why: "must be a path".into(),
            });
        }
    };
    rendered
        .into_iter()
        .map(|(p, c)| {
            let path = if target.is_empty() {
                p
            } else {
                format!("{target}/{p}")
            };
            if workspace_path(&path) {
                Ok((path, c))
            } else {
                Err(RenderError {
                    path: path.clone(),
                    why: "the rendered path leaves the workspace (empty, absolute, `..` or `.git`)"
                        .into(),
                })
            }
        })
        .collect()
}

/// The workspace the fetch steps among `steps` make, in order (a later
/// step's file replaces an earlier one's), each when its `if` holds.
/// Pure: the same template, files and context always make the same files.
pub fn render_workspace<'a>(
    steps: impl IntoIterator<Item = &'a Step>,
    files: &[(String, String)],
    context: &Value,
) -> Result<Vec<(String, String)>, RenderError> {
    let mut out = std::collections::BTreeMap::new();
    for step in steps {
        if !FETCH_ACTIONS.contains(&step.action.as_str()) {
            continue;
        }
        if let Some(c) = &step.condition
            && !condition_holds(c, context)?
        {
            continue;
        }
        out.extend(render_fetch(step, files, context)?);
    }
    Ok(out.into_iter().collect())
}

/// Does a step's `if` hold? The expression's value as Backstage reads it:
/// false, null, an empty string, `"false"`, 0 and an empty list or mapping
/// are false.
pub fn condition_holds(condition: &str, context: &Value) -> Result<bool, RenderError> {
    let value = render_input(&Value::String(condition.to_owned()), context)?;
    Ok(match value {
        Value::Null => false,
        Value::Bool(b) => b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => {
            let s = s.trim();
            !s.is_empty() && s != "false"
        }
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    })
}

/// The time a template says it saves (`backstage.io/time-saved`, an ISO
/// 8601 duration such as `PT4H` or `P1DT2H30M`), in seconds.
pub fn time_saved(document: &Value) -> Option<u64> {
    let text = document["metadata"]["annotations"][TIME_SAVED_ANNOTATION].as_str()?;
    let rest = text.trim().strip_prefix('P')?;
    let (days, time) = rest.split_once('T').unwrap_or((rest, ""));
    let mut total = 0u64;
    let mut read = |part: &str, units: &[(char, u64)]| -> Option<()> {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
            } else {
                let (_, secs) = units.iter().find(|(u, _)| *u == c)?;
                total += number.parse::<u64>().ok()?.checked_mul(*secs)?;
                number.clear();
            }
        }
        number.is_empty().then_some(())
    };
    read(days, &[('W', 7 * 86_400), ('D', 86_400)])?;
    read(time, &[('H', 3_600), ('M', 60), ('S', 1)])?;
    (total > 0).then_some(total)
}
