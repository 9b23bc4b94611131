//! `paved template …`: check a golden-path template, and render it into a
//! directory without publishing anything (the dry run of a create).

use std::path::{Path, PathBuf};

use paved_domain::templates::{self, Template};
use serde_json::Value;

use super::output::{self, Output};

#[derive(clap::Args, Debug)]
pub struct TemplateArgs {
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: TemplateCommand,
}

#[derive(clap::Subcommand, Debug)]
enum TemplateCommand {
    /// Check a template file: its version, kind, parameters and steps
    /// (exit 1 with every problem by field).
    Check {
        /// A `template.yaml` (scaffolder.backstage.io/v1beta3).
        path: PathBuf,
    },
    /// Render a template's skeleton into a directory and list the files;
    /// publishes nothing (the steps after the fetch are listed, not run).
    Render {
        /// The template: a directory name under --templates (e.g. rust-service).
        name: String,
        /// Where the templates are (each in `<name>/template.yaml`).
        #[arg(long, env = "PAVED_TEMPLATES", default_value = "templates")]
        templates: PathBuf,
        /// A parameter, `key=value`; repeatable.
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// The directory to render into (default: a new one under the temp dir).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?}: a parameter is key=value"))
}

fn load(path: &Path) -> anyhow::Result<(Value, Template)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let doc: Value = serde_yaml_ng::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not YAML: {e}", path.display()))?;
    let t = templates::check_template(&doc).map_err(|v| problems(path, &v))?;
    Ok((doc, t))
}

fn problems(path: &Path, v: &[paved_domain::FieldViolation]) -> anyhow::Error {
    let lines: Vec<String> = v
        .iter()
        .map(|v| format!("  {}: {}", v.field, v.description))
        .collect();
    anyhow::anyhow!(
        "{}: {} problem(s):\n{}",
        path.display(),
        v.len(),
        lines.join("\n")
    )
}

/// Every file under `dir`, as (relative path, content).
fn read_tree(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", d.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir)?.to_string_lossy().replace('\\', "/");
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                out.push((rel, text));
            }
        }
    }
    out.sort();
    Ok(out)
}

pub async fn template(a: TemplateArgs) -> anyhow::Result<()> {
    match a.command {
        TemplateCommand::Check { path } => {
            let (_, t) = load(&path)?;
            match a.output {
                Output::Table => {
                    println!("{}: template {} is valid", path.display(), t.name);
                    for s in &t.steps {
                        println!("  step {} ({})", s.id, s.action);
                    }
                    Ok(())
                }
                _ => output::json(&serde_json::json!({
                    "template": t.name,
                    "steps": t.steps.iter().map(|s| serde_json::json!({"id": s.id, "action": s.action})).collect::<Vec<_>>(),
                })),
            }
        }
        TemplateCommand::Render {
            name,
            templates: dir,
            params,
            out,
        } => {
            let root = dir.join(&name);
            let path = root.join("template.yaml");
            let (_, t) = load(&path)?;
            let given: serde_json::Map<String, Value> = params
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            let parameters = templates::parameters(&t, &given).map_err(|v| problems(&path, &v))?;
            let out = out.unwrap_or_else(|| {
                std::env::temp_dir().join(format!(
                    "paved-render-{name}-{}",
                    uuid::Uuid::new_v4().simple()
                ))
            });
            let context = serde_json::json!({ "parameters": parameters, "steps": {} });
            let mut files = Vec::new();
            let mut not_run = Vec::new();
            for step in &t.steps {
                if !matches!(step.action.as_str(), "fetch:template" | "fetch:plain") {
                    not_run.push(serde_json::json!({ "id": step.id, "action": step.action }));
                    continue;
                }
                let input = templates::render_input(&step.input, &context)
                    .map_err(|e| anyhow::anyhow!("step {}: {e}", step.id))?;
                let url = input["url"].as_str().unwrap_or("./skeleton");
                anyhow::ensure!(
                    !url.contains("://") && !url.split('/').any(|s| s == ".."),
                    "step {}: input.url {url:?}: only a directory of the template's own",
                    step.id
                );
                let skeleton = read_tree(&root.join(url))?;
                let rendered = if step.action == "fetch:plain" {
                    skeleton
                } else {
                    let verbatim: Vec<String> = input["copyWithoutTemplating"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|g| g.as_str().map(str::to_owned))
                        .collect();
                    templates::render_skeleton(&skeleton, &input["values"], &verbatim)
                        .map_err(|e| anyhow::anyhow!("step {}: {e}", step.id))?
                };
                let target = out.join(input["targetPath"].as_str().unwrap_or("."));
                for (rel, content) in rendered {
                    let file = target.join(&rel);
                    if let Some(parent) = file.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::fs::write(&file, content)?;
                    files.push(file.strip_prefix(&out)?.to_string_lossy().into_owned());
                }
            }
            files.sort();
            match a.output {
                Output::Table => {
                    println!("rendered {name} into {}:", out.display());
                    for f in &files {
                        println!("  {f}");
                    }
                    for s in &not_run {
                        println!(
                            "not run (render only): step {} ({})",
                            s["id"].as_str().unwrap_or_default(),
                            s["action"].as_str().unwrap_or_default()
                        );
                    }
                    Ok(())
                }
                _ => output::json(&serde_json::json!({
                    "template": name,
                    "out": out,
                    "files": files,
                    "not_run": not_run,
                })),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn render_writes_what_the_golden_files_hold_and_runs_nothing_else() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = std::env::temp_dir().join(format!(
            "paved-render-test-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let param = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        template(TemplateArgs {
            output: Output::Json,
            command: TemplateCommand::Render {
                name: "rust-service".into(),
                templates: root.join("templates"),
                params: vec![
                    param("name", "payments-api"),
                    param("owner", "payments"),
                    param("description", "Takes payments."),
                    param("repoUrl", "github.com?owner=acme&repo=payments-api"),
                ],
                out: Some(out.clone()),
            },
        })
        .await
        .unwrap();
        let golden = root.join("services/domain/tests/golden/templates/rust-service");
        assert_eq!(read_tree(&out).unwrap(), read_tree(&golden).unwrap());
        std::fs::remove_dir_all(&out).ok();
    }
}
