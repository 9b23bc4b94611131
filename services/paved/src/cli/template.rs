//! `paved template …`: check a golden-path template and render it locally
//! (no server); publish it with its files; list, show, time to first
//! deploy (`stats`), services behind their template (`outdated`) and their
//! upgrade (`upgrade`).

use std::path::{Path, PathBuf};

use paved_domain::templates::{self, FETCH_ACTIONS, Template};
use paved_sdk::pb;
use serde_json::Value;

use super::catalog::{ClientArgs, explain};
use super::output::{self, Output};
use super::task;

#[derive(clap::Args, Debug)]
pub struct TemplateArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: TemplateCommand,
}

#[derive(clap::Subcommand, Debug)]
enum TemplateCommand {
    /// Check a template file: its version, kind, parameters (each page a
    /// JSON Schema) and steps (exit 1 with every problem by field). Local.
    Check {
        /// A `template.yaml` (scaffolder.backstage.io/v1beta3).
        path: PathBuf,
    },
    /// Render a template's skeleton into a directory and list the files;
    /// publishes nothing (the steps after the fetch are listed, not run). Local.
    Render {
        /// The template: a directory name under --templates (e.g. rust-service).
        name: String,
        /// Where the templates are (each in `<name>/template.yaml`).
        #[arg(long, env = "PAVED_TEMPLATES", default_value = "templates")]
        templates: PathBuf,
        /// A parameter, `key=value`; repeatable.
        #[arg(long = "param", value_parser = task::parse_param)]
        params: Vec<(String, String)>,
        /// The directory to render into (default: a new one under the temp dir).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Publish a template with the files its fetch steps read (its
    /// skeleton) as its next version; nothing when the latest holds the same.
    Publish {
        /// The template's directory (holding `template.yaml`) or the file.
        path: PathBuf,
        /// Idempotency key (default: a fresh one); reuse it to retry safely.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// The latest version of every published template.
    List,
    /// One template: its versions, owner, steps and files.
    #[command(disable_version_flag = true)]
    Show {
        /// The template's name.
        name: String,
        /// A version (default: the latest).
        #[arg(long)]
        version: Option<u64>,
    },
    /// Tasks per template and team, and time to first deploy (from a
    /// task's start to its service's first successful production
    /// deployment), p50/p90, beside what the template declares it saves.
    Stats {
        /// Only this template.
        #[arg(long)]
        template: Option<String>,
        /// Only this team.
        #[arg(long)]
        team: Option<String>,
    },
    /// Services made from a template whose version is behind its latest.
    Outdated {
        /// Only this team's.
        #[arg(long)]
        team: Option<String>,
    },
    /// Propose the upgrade of a service to its template's latest version:
    /// a three-way merge on a branch of its repository (base: the old
    /// version's render, ours: the repository, theirs: the new render),
    /// conflicts marked. A task: `--wait` follows it.
    #[command(disable_version_flag = true)]
    Upgrade {
        /// The service made from the template.
        service: String,
        /// The version to upgrade to (default: the latest).
        #[arg(long)]
        version: Option<u64>,
        #[command(flatten)]
        follow: task::Follow,
        /// Idempotency key (default: a fresh one); reuse it to retry safely.
        #[arg(long)]
        request_id: Option<String>,
    },
}

fn load(path: &Path) -> anyhow::Result<(Value, Template, String)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let doc: Value = serde_yaml_ng::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not YAML: {e}", path.display()))?;
    let t = templates::check_template(&doc).map_err(|v| problems(path, &v))?;
    Ok((doc, t, text))
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

/// Every file under `dir`, as (relative path, content); a file that is not
/// UTF-8 text is an error naming it.
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
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    anyhow::anyhow!("{}: {e} (templates hold UTF-8 text files)", path.display())
                })?;
                out.push((rel, text));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The files a template's fetch steps read, by their path in its directory.
fn template_files(root: &Path, t: &Template) -> anyhow::Result<Vec<(String, String)>> {
    let mut dirs = std::collections::BTreeSet::new();
    for step in t
        .steps
        .iter()
        .filter(|s| FETCH_ACTIONS.contains(&s.action.as_str()))
    {
        let Some(url) = step.input["url"].as_str() else {
            continue;
        };
        anyhow::ensure!(
            !url.contains("${{"),
            "step {}: input.url {url:?} is an expression: publish needs a directory it can read",
            step.id
        );
        let dir = templates::source_dir(url).ok_or_else(|| {
            anyhow::anyhow!(
                "step {}: input.url {url:?}: only a directory of the template's own",
                step.id
            )
        })?;
        dirs.insert(dir);
    }
    let mut files = std::collections::BTreeMap::new();
    for dir in dirs {
        for (rel, content) in read_tree(&root.join(&dir))? {
            let path = if dir.is_empty() {
                rel
            } else {
                format!("{dir}/{rel}")
            };
            if path != "template.yaml" {
                files.insert(path, content);
            }
        }
    }
    Ok(files.into_iter().collect())
}

pub async fn template(a: TemplateArgs) -> anyhow::Result<()> {
    let out = a.client.output;
    match a.command {
        TemplateCommand::Check { path } => {
            let (_, t, _) = load(&path)?;
            match out {
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
            out: target,
        } => {
            let root = dir.join(&name);
            let path = root.join("template.yaml");
            let (_, t, _) = load(&path)?;
            let given: serde_json::Map<String, Value> = params
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            let parameters = templates::parameters(&t, &given).map_err(|v| problems(&path, &v))?;
            let files = template_files(&root, &t)?;
            let context = serde_json::json!({ "parameters": parameters, "steps": {} });
            let rendered = templates::render_workspace(&t.steps, &files, &context)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let target = target.unwrap_or_else(|| {
                std::env::temp_dir().join(format!(
                    "paved-render-{name}-{}",
                    uuid::Uuid::new_v4().simple()
                ))
            });
            let written = task::write_files(&target, &rendered)?;
            let not_run: Vec<pb::TaskStepDef> = t
                .steps
                .iter()
                .filter(|s| !FETCH_ACTIONS.contains(&s.action.as_str()))
                .map(|s| pb::TaskStepDef {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    action: s.action.clone(),
                })
                .collect();
            task::print_rendered(out, &name, &target, &written, &not_run)
        }
        TemplateCommand::Publish { path, request_id } => {
            let file = if path.is_dir() {
                path.join("template.yaml")
            } else {
                path.clone()
            };
            let root = file.parent().unwrap_or(Path::new(".")).to_path_buf();
            let (_, t, text) = load(&file)?;
            let files = template_files(&root, &t)?;
            let client = a.client.connect().await?;
            let r = client
                .publish_template(pb::PublishTemplateRequest {
                    request_id: request_id.unwrap_or_default(),
                    document_yaml: text,
                    files: files
                        .iter()
                        .map(|(path, content)| pb::TemplateFile {
                            path: path.clone(),
                            content: content.clone(),
                        })
                        .collect(),
                })
                .await
                .map_err(explain)?;
            match out {
                Output::Table => {
                    if r.events == 0 {
                        println!(
                            "template {} unchanged: version {} holds the same ({} files)",
                            r.name,
                            r.version,
                            files.len()
                        );
                    } else {
                        println!(
                            "published template {} version {} ({} files, digest {})",
                            r.name,
                            r.version,
                            files.len(),
                            &r.digest[..12.min(r.digest.len())]
                        );
                    }
                    println!("in the catalog as {}", r.entity_ref);
                    Ok(())
                }
                _ => output::json(&r),
            }
        }
        TemplateCommand::List => {
            let client = a.client.connect().await?;
            let list = client.at(0).templates().await.map_err(explain)?;
            match out {
                Output::Table => {
                    output::table(
                        &[
                            "NAME",
                            "VERSION",
                            "OWNER",
                            "TITLE",
                            "TIME SAVED",
                            "PUBLISHED",
                        ],
                        &list
                            .iter()
                            .map(|t| {
                                vec![
                                    t.name.clone(),
                                    t.version.to_string(),
                                    t.owner.clone(),
                                    t.title.clone(),
                                    duration(t.time_saved_seconds as f64),
                                    task::time(t.published_at.as_ref()),
                                ]
                            })
                            .collect::<Vec<_>>(),
                    );
                    Ok(())
                }
                _ => output::json(&pb::ListTemplatesResponse { templates: list }),
            }
        }
        TemplateCommand::Show { name, version } => {
            let client = a.client.connect().await?;
            let t = client
                .at(0)
                .template(&name, version.unwrap_or(0))
                .await
                .map_err(explain)?;
            match out {
                Output::Table => {
                    output::fields(&[
                        ("name", t.name.clone()),
                        (
                            "version",
                            format!("{} (latest {})", t.version, t.latest_version),
                        ),
                        ("title", t.title.clone()),
                        ("owner", t.owner.clone()),
                        ("tags", t.tags.join(", ")),
                        ("time saved", duration(t.time_saved_seconds as f64)),
                        ("published by", t.published_by.clone()),
                        ("published", task::time(t.published_at.as_ref())),
                        ("digest", t.digest.clone()),
                    ]);
                    println!("steps:");
                    for s in &t.steps {
                        println!("  {} ({}): {}", s.id, s.action, s.name);
                    }
                    println!("files: {}", t.files.len());
                    for f in &t.files {
                        println!("  {f}");
                    }
                    Ok(())
                }
                _ => output::json(&t),
            }
        }
        TemplateCommand::Stats { template, team } => {
            let client = a.client.connect().await?;
            let stats = client
                .at(0)
                .template_stats(
                    template.as_deref().unwrap_or_default(),
                    team.as_deref().unwrap_or_default(),
                )
                .await
                .map_err(explain)?;
            match out {
                Output::Table => {
                    output::table(
                        &[
                            "TEMPLATE",
                            "TEAM",
                            "TASKS",
                            "DONE",
                            "FAILED",
                            "TASK P50",
                            "IN PROD",
                            "FIRST DEPLOY P50",
                            "P90",
                            "DECLARED SAVED",
                        ],
                        &stats
                            .iter()
                            .map(|s| {
                                let deployed = s.first_deploys > 0;
                                vec![
                                    s.template.clone(),
                                    if s.team.is_empty() {
                                        "(all)".to_owned()
                                    } else {
                                        s.team.clone()
                                    },
                                    s.tasks.to_string(),
                                    s.completed.to_string(),
                                    s.failed.to_string(),
                                    duration(s.task_p50_seconds),
                                    s.first_deploys.to_string(),
                                    if deployed {
                                        duration(s.first_deploy_p50_seconds)
                                    } else {
                                        "-".into()
                                    },
                                    if deployed {
                                        duration(s.first_deploy_p90_seconds)
                                    } else {
                                        "-".into()
                                    },
                                    duration(s.time_saved_seconds as f64),
                                ]
                            })
                            .collect::<Vec<_>>(),
                    );
                    Ok(())
                }
                _ => output::json(&pb::GetTemplateStatsResponse { stats }),
            }
        }
        TemplateCommand::Outdated { team } => {
            let client = a.client.connect().await?;
            let services = client
                .at(0)
                .outdated_services(team.as_deref().unwrap_or_default())
                .await
                .map_err(explain)?;
            match out {
                Output::Table => {
                    output::table(
                        &["SERVICE", "TEAM", "TEMPLATE", "VERSION", "LATEST", "TASK"],
                        &services
                            .iter()
                            .map(|s| {
                                vec![
                                    s.service.clone(),
                                    s.team.clone(),
                                    s.template.clone(),
                                    s.version.to_string(),
                                    s.latest_version.to_string(),
                                    s.task_id.clone(),
                                ]
                            })
                            .collect::<Vec<_>>(),
                    );
                    Ok(())
                }
                _ => output::json(&pb::ListOutdatedServicesResponse { services }),
            }
        }
        TemplateCommand::Upgrade {
            service,
            version,
            follow,
            request_id,
        } => {
            let client = a.client.connect().await?;
            let r = client
                .upgrade_service(pb::UpgradeServiceRequest {
                    request_id: request_id.unwrap_or_default(),
                    service: service.clone(),
                    version: version.unwrap_or(0),
                })
                .await
                .map_err(explain)?;
            if out == Output::Table {
                println!(
                    "task {}: {service} from version {} to {}",
                    r.task_id, r.from_version, r.to_version
                );
            }
            task::finish(out, &client, &r.task_id, r.sequence, follow).await
        }
    }
}

/// Seconds as people read them: 45s, 12m 3s, 2h 5m, 3d 4h; `-` for 0.
pub(super) fn duration(seconds: f64) -> String {
    if seconds <= 0.0 {
        return "-".into();
    }
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{seconds:.1}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
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
        let args = TemplateArgs {
            client: ClientArgs::local(Output::Json),
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
        };
        template(args).await.unwrap();
        let golden = root.join("services/domain/tests/golden/templates/rust-service");
        assert_eq!(read_tree(&out).unwrap(), read_tree(&golden).unwrap());
        std::fs::remove_dir_all(&out).ok();
    }

    #[test]
    fn publish_sends_the_skeletons_the_fetch_steps_name_and_nothing_else() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates/worker");
        let (_, t, _) = load(&root.join("template.yaml")).unwrap();
        let files = template_files(&root, &t).unwrap();
        assert!(!files.is_empty());
        assert!(files.iter().all(|(p, _)| p.starts_with("skeleton/")));
        assert!(files.iter().any(|(p, _)| p == "skeleton/catalog-info.yaml"));
        assert_eq!(duration(0.0), "-");
        assert_eq!(duration(42.0), "42.0s");
        assert_eq!(duration(725.0), "12m 5s");
        assert_eq!(duration(4.0 * 3600.0), "4h 0m");
    }
}
