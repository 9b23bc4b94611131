//! `paved create …`: run a golden-path template as a task (`--dry-run`
//! renders into a directory and publishes nothing), follow it step by step
//! (`--wait`, `create status`), retry it from its failed step, list tasks.

use std::io::IsTerminal as _;
use std::path::Path;
use std::time::{Duration, Instant};

use paved_eventlog::codec::time_from_proto;
use paved_sdk::{Client, pb};
use serde_json::Value;

use super::catalog::{ClientArgs, explain};
use super::output::{self, Output};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, disable_version_flag = true)]
pub struct CreateArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    run: Run,
    #[command(subcommand)]
    command: Option<CreateCommand>,
}

/// How a task is followed.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct Follow {
    /// Follow the task step by step until it completes or fails (exit 1 if
    /// it fails).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up waiting after this many seconds.
    #[arg(long, default_value_t = 1800)]
    pub timeout: u64,
}

#[derive(clap::Args, Debug)]
struct Run {
    /// The template to run (`paved template list`).
    #[arg(long)]
    template: Option<String>,
    /// A parameter of the template's form, `key=value`; repeatable. A value
    /// for a number, integer or boolean property is read as one.
    #[arg(long = "param", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// The team it runs for (default: the `owner` parameter, else yours).
    #[arg(long)]
    team: Option<String>,
    /// A version of the template (default: the latest).
    #[arg(long)]
    version: Option<u64>,
    /// Check the parameters and render the files into a directory; publish,
    /// register and provision nothing.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: the directory to render into (default: a new one
    /// under the temp dir).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    #[command(flatten)]
    follow: Follow,
    /// Idempotency key (default: a fresh one); reuse it to retry safely.
    #[arg(long)]
    request_id: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
enum CreateCommand {
    /// A task with its steps (their outputs and logs with -o json).
    Status {
        /// The task's id (`paved create` prints it).
        id: String,
        #[command(flatten)]
        follow: Follow,
    },
    /// Run a failed task again from its failed step.
    Retry {
        /// The failed task's id.
        id: String,
        #[command(flatten)]
        follow: Follow,
    },
    /// Tasks, newest first.
    List {
        /// Only this team's.
        #[arg(long)]
        team: Option<String>,
        /// Only this template's.
        #[arg(long)]
        template: Option<String>,
        /// running, completed or failed.
        #[arg(long)]
        status: Option<String>,
        /// Most tasks to show (at most 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

pub fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?}: a parameter is key=value"))
}

pub async fn create(a: CreateArgs) -> anyhow::Result<()> {
    let out = a.client.output;
    let client = a.client.connect().await?;
    match a.command {
        Some(CreateCommand::Status { id, follow }) => finish(out, &client, &id, 0, follow).await,
        Some(CreateCommand::Retry { id, follow }) => {
            let r = client
                .retry_task(pb::RetryTaskRequest {
                    id: id.clone(),
                    ..Default::default()
                })
                .await
                .map_err(explain)?;
            if out == Output::Table {
                println!("task {id} runs again from its failed step");
            }
            finish(out, &client, &id, r.sequence, follow).await
        }
        Some(CreateCommand::List {
            team,
            template,
            status,
            limit,
        }) => {
            let page = client
                .at(0)
                .tasks(pb::ListTasksRequest {
                    team: team.unwrap_or_default(),
                    template: template.unwrap_or_default(),
                    status: status.unwrap_or_default(),
                    page_size: limit,
                    ..Default::default()
                })
                .await
                .map_err(explain)?;
            match out {
                Output::Table => {
                    output::table(
                        &[
                            "ID", "TEMPLATE", "VERSION", "KIND", "TEAM", "SERVICE", "STATUS", "BY",
                            "STARTED",
                        ],
                        &page
                            .tasks
                            .iter()
                            .map(|t| {
                                vec![
                                    t.id.clone(),
                                    t.template.clone(),
                                    t.version.to_string(),
                                    t.kind.clone(),
                                    t.team.clone(),
                                    or_dash(&t.service),
                                    t.status.clone(),
                                    t.requested_by.clone(),
                                    time(t.created_at.as_ref()),
                                ]
                            })
                            .collect::<Vec<_>>(),
                    );
                    Ok(())
                }
                _ => output::json(&page),
            }
        }
        None => {
            let run = a.run;
            let Some(template) = run.template else {
                anyhow::bail!("--template is required (or a subcommand: status, retry, list)");
            };
            let parameters: serde_json::Map<String, Value> = run
                .params
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            let r = client
                .create_task(pb::CreateTaskRequest {
                    request_id: run.request_id.unwrap_or_default(),
                    template: template.clone(),
                    version: run.version.unwrap_or(0),
                    parameters_json: Value::Object(parameters).to_string(),
                    team: run.team.unwrap_or_default(),
                    dry_run: run.dry_run,
                })
                .await
                .map_err(explain)?;
            if run.dry_run {
                let target = run.out.unwrap_or_else(|| {
                    std::env::temp_dir().join(format!(
                        "paved-create-{template}-{}",
                        uuid::Uuid::new_v4().simple()
                    ))
                });
                let files: Vec<(String, String)> =
                    r.files.into_iter().map(|f| (f.path, f.content)).collect();
                let written = write_files(&target, &files)?;
                return print_rendered(out, &template, &target, &written, &r.not_run);
            }
            if out == Output::Table {
                println!(
                    "task {} runs {template} version {} (paved create status {})",
                    r.task_id, r.version, r.task_id
                );
            }
            finish(out, &client, &r.task_id, r.sequence, run.follow).await
        }
    }
}

/// Writes rendered files under `target`; their paths, sorted.
pub(super) fn write_files(
    target: &Path,
    files: &[(String, String)],
) -> anyhow::Result<Vec<String>> {
    let mut written = Vec::new();
    for (rel, content) in files {
        // The server and the renderer keep paths inside the workspace; check anyway.
        anyhow::ensure!(
            !rel.starts_with('/') && !rel.split('/').any(|s| s == ".."),
            "{rel}: not a path inside the workspace"
        );
        let file = target.join(rel);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, content)?;
        written.push(rel.clone());
    }
    written.sort();
    Ok(written)
}

pub(super) fn print_rendered(
    out: Output,
    template: &str,
    target: &Path,
    files: &[String],
    not_run: &[pb::TaskStepDef],
) -> anyhow::Result<()> {
    match out {
        Output::Table => {
            println!("rendered {template} into {}:", target.display());
            for f in files {
                println!("  {f}");
            }
            for s in not_run {
                println!("not run (dry run): step {} ({})", s.id, s.action);
            }
            Ok(())
        }
        _ => output::json(&serde_json::json!({
            "template": template,
            "out": target,
            "files": files,
            "notRun": not_run,
        })),
    }
}

/// Shows task `id` (following it with `--wait`); exit 1 when it failed.
pub(super) async fn finish(
    out: Output,
    client: &Client,
    id: &str,
    sequence: u64,
    follow: Follow,
) -> anyhow::Result<()> {
    let task = if follow.wait {
        wait_for(out, client, id, sequence, follow.timeout).await?
    } else {
        client.at(sequence).task(id).await.map_err(explain)?
    };
    match out {
        Output::Table => {
            if !follow.wait {
                print_task(&task);
            } else {
                print_output(&task);
            }
        }
        _ => output::json(&task)?,
    }
    if task.status == "failed" {
        let failed = task.steps.iter().find(|s| s.status == "failed");
        anyhow::bail!(
            "task {id} failed at step {}: {} (fix the cause, then: paved create retry {id})",
            failed.map_or("?", |s| s.id.as_str()),
            failed.map_or("", |s| s.reason.as_str())
        );
    }
    Ok(())
}

/// Follows a task, printing each step as it finishes.
async fn wait_for(
    out: Output,
    client: &Client,
    id: &str,
    sequence: u64,
    timeout: u64,
) -> anyhow::Result<pb::TemplateTask> {
    let people = out == Output::Table;
    let bar = if people && std::io::stderr().is_terminal() {
        Some(output::spinner()?)
    } else {
        None
    };
    let say = |line: String| match &bar {
        Some(b) => b.println(line),
        None if people => eprintln!("{line}"),
        None => {}
    };
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let reader = client.at(sequence);
    let mut shown = std::collections::HashMap::<String, String>::new();
    loop {
        let t = reader.task(id).await.map_err(explain)?;
        for s in &t.steps {
            if shown.get(&s.id) == Some(&s.status) {
                continue;
            }
            shown.insert(s.id.clone(), s.status.clone());
            let took = match (
                time_from_proto(s.started_at.as_ref()),
                time_from_proto(s.finished_at.as_ref()),
            ) {
                (Some(a), Some(b)) => {
                    format!(" ({:.1}s)", (b - a).num_milliseconds() as f64 / 1000.0)
                }
                _ => String::new(),
            };
            match s.status.as_str() {
                "done" => say(format!("✓ {:<12} {}{took}", s.id, s.name)),
                "skipped" => say(format!("- {:<12} {} (skipped: {})", s.id, s.name, s.reason)),
                "failed" => {
                    say(format!("✗ {:<12} {}: {}", s.id, s.name, s.reason));
                    for line in s
                        .log
                        .lines()
                        .rev()
                        .take(10)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                    {
                        say(format!("    {line}"));
                    }
                }
                _ => {}
            }
        }
        let current = t.steps.iter().find(|s| s.status == "running");
        if let Some(b) = &bar {
            b.set_message(match current {
                Some(s) => format!("{}: {} ({})", s.id, s.name, s.action),
                None => t.status.clone(),
            });
        }
        if t.status != "running" {
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            return Ok(t);
        }
        if Instant::now() > deadline {
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            anyhow::bail!(
                "task {id} is still running after {timeout}s{}",
                current
                    .map(|s| format!(" (at step {})", s.id))
                    .unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn print_task(t: &pb::TemplateTask) {
    let mut rows = vec![
        ("id", t.id.clone()),
        ("template", format!("{} version {}", t.template, t.version)),
        ("kind", t.kind.clone()),
        ("team", t.team.clone()),
        ("service", or_dash(&t.service)),
        ("status", t.status.clone()),
        ("requested by", t.requested_by.clone()),
        ("started", time(t.created_at.as_ref())),
        ("finished", time(t.finished_at.as_ref())),
    ];
    if t.kind == "upgrade" {
        rows.insert(2, ("from version", t.upgrade_from_version.to_string()));
    }
    output::fields(&rows);
    println!("steps:");
    for s in &t.steps {
        let mark = match s.status.as_str() {
            "done" => "✓",
            "failed" => "✗",
            "skipped" => "-",
            "running" => "…",
            _ => " ",
        };
        let why = if s.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", s.reason)
        };
        println!("  {mark} {:<12} {:<8} {}{why}", s.id, s.status, s.name);
    }
    print_output(t);
}

/// The template's output links, when the task completed.
fn print_output(t: &pb::TemplateTask) {
    let Ok(output) = serde_json::from_str::<Value>(&t.output_json) else {
        return;
    };
    for link in output["links"].as_array().into_iter().flatten() {
        let title = link["title"].as_str().unwrap_or("link");
        let target = link["url"]
            .as_str()
            .or(link["entityRef"].as_str())
            .unwrap_or_default();
        println!("{title}: {target}");
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_owned()
    }
}

pub(super) fn time(t: Option<&paved_proto::wkt::Timestamp>) -> String {
    time_from_proto(t)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}
