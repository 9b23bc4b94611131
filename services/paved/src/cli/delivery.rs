//! Delivery verbs: `paved deploy`, `paved rollback`, `paved deployments`,
//! `paved incident`, `paved change`, `paved dora`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use paved_eventlog::codec::{time_from_proto, timestamp};
use paved_sdk::{Client, pb};

use super::catalog::{ClientArgs, explain};
use super::output::{self, Output};

#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The service to deploy (its catalog name).
    service: String,
    /// Environment (its Argo CD is in PAVED_ARGOCD_CONFIG).
    #[arg(long = "env", default_value = "production")]
    environment: String,
    /// Git revision to sync (SHA, tag or branch).
    #[arg(long)]
    revision: String,
    /// A commit this deployment ships (full SHA); repeatable. Without any,
    /// it ships every undeployed change of the service merged before it finishes.
    #[arg(long = "commit")]
    commits: Vec<String>,
    /// Follow the deployment until it finishes (exit 1 if it fails).
    #[arg(long)]
    wait: bool,
    /// With --wait: give up waiting after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Idempotency key (default: a fresh one); reuse it to retry safely.
    #[arg(long)]
    request_id: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The deployment to roll back (to the revision deployed before it).
    deployment: String,
    /// Follow the rollback until it finishes (exit 1 if it fails).
    #[arg(long)]
    wait: bool,
    /// With --wait: give up waiting after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
}

#[derive(clap::Args, Debug)]
pub struct DeploymentsArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: DeploymentsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum DeploymentsCommand {
    /// Newest first.
    List {
        /// Only deployments of this service.
        #[arg(long)]
        service: Option<String>,
        /// Only deployments of services this team owns.
        #[arg(long)]
        team: Option<String>,
        /// Only deployments to this environment, e.g. production.
        #[arg(long = "env")]
        environment: Option<String>,
        /// Most deployments to show (at most 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one deployment: target, status, timings and Argo CD outcome.
    Show {
        /// The deployment's id.
        id: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct IncidentArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: IncidentCommand,
}

#[derive(clap::Subcommand, Debug)]
enum IncidentCommand {
    /// Open an incident (prints its id).
    Open {
        /// An affected service; repeatable.
        #[arg(long = "service", required = true)]
        services: Vec<String>,
        /// One-line summary of what is wrong.
        #[arg(long)]
        title: String,
        /// sev1 (worst) .. sev4.
        #[arg(long, default_value = "sev2")]
        severity: String,
        /// When it started (default: now).
        #[arg(long)]
        started_at: Option<DateTime<Utc>>,
        /// The deployment that caused it, if known.
        #[arg(long)]
        caused_by: Option<String>,
        /// DNS-label id (default: derived from the request).
        #[arg(long)]
        id: Option<String>,
    },
    /// Name the deployment that caused it.
    Link {
        /// The incident's id.
        incident: String,
        /// The id of the deployment that caused it.
        deployment: String,
    },
    /// Resolve an incident: service is restored.
    Resolve {
        /// The incident's id.
        incident: String,
        /// When service was restored (default: now).
        #[arg(long)]
        at: Option<DateTime<Utc>>,
    },
}

#[derive(clap::Args, Debug)]
pub struct ChangeArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: ChangeCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ChangeCommand {
    /// Record a commit on its way to production (CI usually does this
    /// through the GitHub webhook).
    Record {
        /// Full 40-character commit SHA.
        sha: String,
        /// The service the commit belongs to.
        #[arg(long)]
        service: String,
        /// When it was committed (RFC 3339, e.g. 2026-03-01T12:00:00Z).
        #[arg(long)]
        committed_at: DateTime<Utc>,
        /// When it was merged (RFC 3339).
        #[arg(long)]
        merged_at: Option<DateTime<Utc>>,
        /// Number of the pull request that merged it.
        #[arg(long)]
        pr: Option<u64>,
        /// URL of the pull request that merged it.
        #[arg(long)]
        pr_url: Option<String>,
        /// The commit's author.
        #[arg(long)]
        author: Option<String>,
        /// The commit's (or pull request's) title.
        #[arg(long)]
        title: Option<String>,
        /// History rather than work (an imported repository): kept, left out of DORA.
        #[arg(long)]
        backfill: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct WebhooksArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: WebhooksCommand,
}

#[derive(clap::Subcommand, Debug)]
enum WebhooksCommand {
    /// The last deliveries the API took (newest first) and how each ended:
    /// recorded, ignored or refused with the reason, changes skipped.
    /// Each API process keeps its own last 200. Admins only.
    Recent {
        /// Only this source: github, argocd, incidents, pagerduty or alertmanager.
        #[arg(long)]
        source: Option<String>,
        /// How many (at most 200).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(clap::Args, Debug)]
pub struct DoraArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Only this team's services (default: the whole organisation).
    #[arg(long, conflicts_with = "service")]
    team: Option<String>,
    /// Only this service (default: the whole organisation).
    #[arg(long)]
    service: Option<String>,
    /// Window ending now (or at --until): 7d, 30d, 90d, any Nd.
    #[arg(long, default_value = "30d", value_parser = parse_days)]
    window: u32,
    /// Custom window start (overrides --window).
    #[arg(long)]
    since: Option<DateTime<Utc>>,
    /// Window end (RFC 3339; default: now).
    #[arg(long)]
    until: Option<DateTime<Utc>>,
    /// Also print the daily series.
    #[arg(long)]
    daily: bool,
}

fn parse_days(s: &str) -> Result<u32, String> {
    s.strip_suffix('d')
        .unwrap_or(s)
        .parse::<u32>()
        .ok()
        .filter(|d| (1..=3660).contains(d))
        .ok_or_else(|| format!("{s:?}: a number of days like 30d (1..3660)"))
}

fn time(t: Option<&paved_proto::wkt::Timestamp>) -> String {
    time_from_proto(t)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

fn print_deployment(d: &pb::Deployment) {
    let t = d.target.clone().unwrap_or_default();
    let o = d.outcome.clone().unwrap_or_default();
    let mut rows = vec![
        ("id", d.id.clone()),
        ("service", t.service),
        ("environment", t.environment),
        ("revision", t.revision),
        ("status", d.status.clone()),
        ("source", d.source.clone()),
        ("requested by", d.requested_by.clone()),
        ("requested", time(d.requested_at.as_ref())),
        ("started", time(d.started_at.as_ref())),
        ("finished", time(d.finished_at.as_ref())),
    ];
    if !d.application.is_empty() {
        rows.push(("Argo CD app", d.application.clone()));
    }
    if !t.rollback_of.is_empty() {
        rows.push(("rolls back", t.rollback_of));
    }
    if !o.phase.is_empty() || !o.health.is_empty() {
        rows.push(("phase / health", format!("{} / {}", o.phase, o.health)));
    }
    if !o.message.is_empty() {
        rows.push(("message", o.message));
    }
    output::fields(&rows);
}

/// Follows a deployment until it finishes, with a spinner on stderr.
async fn wait_for(
    client: &Client,
    id: &str,
    sequence: u64,
    timeout: u64,
) -> anyhow::Result<pb::Deployment> {
    let bar = output::spinner()?;
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let reader = client.at(sequence);
    loop {
        let d = reader.get_deployment(id).await.map_err(explain)?;
        let o = d.outcome.clone().unwrap_or_default();
        bar.set_message(match d.status.as_str() {
            "requested" => "waiting for the Argo CD worker".to_owned(),
            "running" => format!("syncing {} in Argo CD", d.application),
            s => format!("{s}: {} / {}", o.phase, o.health),
        });
        if matches!(d.status.as_str(), "succeeded" | "failed" | "not_started") {
            bar.finish_and_clear();
            return Ok(d);
        }
        if Instant::now() > deadline {
            bar.finish_and_clear();
            anyhow::bail!("deployment {id} is still {} after {timeout}s", d.status);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn finish(
    out: Output,
    client: &Client,
    r: impl output::Answer,
    wait: bool,
    timeout: u64,
) -> anyhow::Result<()> {
    if !wait {
        return match out {
            Output::Table => {
                println!(
                    "deployment {} requested (sequence {})",
                    r.id(),
                    r.recorded().0
                );
                Ok(())
            }
            _ => output::json(&r),
        };
    }
    let d = wait_for(client, r.id(), r.recorded().0, timeout).await?;
    match out {
        Output::Table => print_deployment(&d),
        _ => output::json(&d)?,
    }
    anyhow::ensure!(d.status == "succeeded", "deployment {} failed", d.id);
    Ok(())
}

pub async fn deploy(a: DeployArgs) -> anyhow::Result<()> {
    let client = a.client.connect().await?;
    let r = client
        .request_deployment(pb::RequestDeploymentRequest {
            request_id: a.request_id.unwrap_or_default(),
            service: a.service,
            environment: a.environment,
            revision: a.revision,
            commits: a.commits,
            expected_version: None,
        })
        .await
        .map_err(explain)?;
    finish(a.client.output, &client, r, a.wait, a.timeout).await
}

pub async fn rollback(a: RollbackArgs) -> anyhow::Result<()> {
    let client = a.client.connect().await?;
    let r = client
        .request_rollback(pb::RequestRollbackRequest {
            deployment: a.deployment,
            ..Default::default()
        })
        .await
        .map_err(explain)?;
    finish(a.client.output, &client, r, a.wait, a.timeout).await
}

pub async fn deployments(a: DeploymentsArgs) -> anyhow::Result<()> {
    let out = a.client.output;
    let client = a.client.connect().await?;
    match a.command {
        DeploymentsCommand::List {
            service,
            team,
            environment,
            limit,
        } => {
            let list = client
                .at(0)
                .list_deployments(pb::ListDeploymentsRequest {
                    service: service.unwrap_or_default(),
                    team: team.unwrap_or_default(),
                    environment: environment.unwrap_or_default(),
                    limit,
                    min_sequence: 0,
                })
                .await
                .map_err(explain)?;
            match out {
                Output::Table => {
                    let rows: Vec<Vec<String>> = list
                        .iter()
                        .map(|d| {
                            let t = d.target.clone().unwrap_or_default();
                            vec![
                                d.id.clone(),
                                t.service,
                                t.environment,
                                t.revision,
                                d.status.clone(),
                                d.source.clone(),
                                time(d.finished_at.as_ref().or(d.requested_at.as_ref())),
                            ]
                        })
                        .collect();
                    output::table(
                        &[
                            "ID",
                            "SERVICE",
                            "ENV",
                            "REVISION",
                            "STATUS",
                            "SOURCE",
                            "WHEN (UTC)",
                        ],
                        &rows,
                    );
                    Ok(())
                }
                Output::Jsonl => list.iter().try_for_each(output::json_line),
                Output::Json => output::json(&list),
            }
        }
        DeploymentsCommand::Show { id } => {
            let d = client.get_deployment(&id).await.map_err(explain)?;
            match out {
                Output::Table => {
                    print_deployment(&d);
                    Ok(())
                }
                _ => output::json(&d),
            }
        }
    }
}

fn print_command(out: Output, what: &str, r: &impl output::Answer) -> anyhow::Result<()> {
    let (sequence, events) = r.recorded();
    match out {
        Output::Table => {
            println!("{what} {} (sequence {sequence}, {events} events)", r.id());
            Ok(())
        }
        _ => output::json(r),
    }
}

pub async fn incident(a: IncidentArgs) -> anyhow::Result<()> {
    let out = a.client.output;
    let client = a.client.connect().await?;
    match a.command {
        IncidentCommand::Open {
            services,
            title,
            severity,
            started_at,
            caused_by,
            id,
        } => client
            .open_incident(pb::OpenIncidentRequest {
                id: id.unwrap_or_default(),
                title,
                services,
                severity,
                started_at: Some(timestamp(started_at.unwrap_or_else(Utc::now))),
                caused_by_deployment: caused_by.unwrap_or_default(),
                ..Default::default()
            })
            .await
            .map_err(explain)
            .and_then(|r| print_command(out, "incident", &r)),
        IncidentCommand::Link {
            incident,
            deployment,
        } => client
            .link_incident(pb::LinkIncidentRequest {
                incident,
                deployment,
                ..Default::default()
            })
            .await
            .map_err(explain)
            .and_then(|r| print_command(out, "incident", &r)),
        IncidentCommand::Resolve { incident, at } => {
            let mut r = client
                .resolve_incident(pb::ResolveIncidentRequest {
                    incident: incident.clone(),
                    resolved_at: Some(timestamp(at.unwrap_or_else(Utc::now))),
                    ..Default::default()
                })
                .await
                .map_err(explain)?;
            r.id = incident;
            print_command(out, "incident", &r)
        }
    }
}

pub async fn change(a: ChangeArgs) -> anyhow::Result<()> {
    let out = a.client.output;
    let client = a.client.connect().await?;
    let ChangeCommand::Record {
        sha,
        service,
        committed_at,
        merged_at,
        pr,
        pr_url,
        author,
        title,
        backfill,
    } = a.command;
    let mut r = client
        .record_change(pb::RecordChangeRequest {
            sha: sha.clone(),
            service,
            committed_at: Some(timestamp(committed_at)),
            merged_at: merged_at.map(timestamp),
            pr_number: pr.unwrap_or_default(),
            pr_url: pr_url.unwrap_or_default(),
            author: author.unwrap_or_default(),
            title: title.unwrap_or_default(),
            backfill,
            ..Default::default()
        })
        .await
        .map_err(explain)?;
    r.id = sha;
    print_command(out, "change", &r)
}

pub async fn webhooks(a: WebhooksArgs) -> anyhow::Result<()> {
    let out = a.client.output;
    let client = a.client.connect().await?;
    let WebhooksCommand::Recent { source, limit } = a.command;
    let list = client
        .webhook_deliveries(pb::ListWebhookDeliveriesRequest {
            source: source.unwrap_or_default(),
            limit,
        })
        .await
        .map_err(explain)?;
    match out {
        Output::Table => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|d| {
                    let mut why = d.reason.clone();
                    for s in &d.skipped {
                        why.push_str(&format!("; skipped {}: {}", &s.sha, s.reason));
                    }
                    vec![
                        time(d.received_at.as_ref()),
                        d.source.clone(),
                        d.event.clone(),
                        d.outcome.clone(),
                        d.http_status.to_string(),
                        d.recorded.to_string(),
                        why.trim_start_matches("; ").to_owned(),
                    ]
                })
                .collect();
            output::table(
                &[
                    "WHEN (UTC)",
                    "SOURCE",
                    "EVENT",
                    "OUTCOME",
                    "HTTP",
                    "RECORDED",
                    "WHY",
                ],
                &rows,
            );
            Ok(())
        }
        Output::Jsonl => list.iter().try_for_each(output::json_line),
        Output::Json => output::json(&list),
    }
}

/// `4.2 h`, `3.1 d`, `25 min`.
pub fn hours(h: f64) -> String {
    if h < 1.0 {
        format!("{:.0} min", h * 60.0)
    } else if h < 48.0 {
        format!("{h:.1} h")
    } else {
        format!("{:.1} d", h / 24.0)
    }
}

pub fn dora_rows(r: &pb::DoraReport) -> Vec<Vec<String>> {
    let level = |l: &str| {
        if l.is_empty() {
            "-".to_owned()
        } else {
            l.to_owned()
        }
    };
    let spread = |s: &Option<pb::DoraSpread>| match s {
        Some(s) => format!(
            "{} (p90 {}, n={})",
            hours(s.median_hours),
            hours(s.p90_hours),
            s.count
        ),
        None => "-".to_owned(),
    };
    let pct = |x: Option<f64>| {
        x.map(|x| format!("{:.1}%", x * 100.0))
            .unwrap_or_else(|| "-".into())
    };
    vec![
        vec![
            "deployment frequency".into(),
            format!(
                "{:.2}/day ({} deployments)",
                r.deployments_per_day, r.deployments
            ),
            level(&r.frequency_level),
        ],
        vec![
            "lead time for changes".into(),
            spread(&r.lead_time),
            level(&r.lead_time_level),
        ],
        vec![
            "change failure rate".into(),
            format!(
                "{} ({} of {}, {} by heuristic)",
                pct(r.change_failure_rate),
                r.change_failures,
                r.finished_deployments,
                r.heuristic_failures
            ),
            level(&r.change_failure_level),
        ],
        vec![
            "time to restore".into(),
            spread(&r.time_to_restore),
            level(&r.time_to_restore_level),
        ],
        vec![
            "rework rate".into(),
            format!(
                "{} ({} deployments)",
                pct(r.rework_rate),
                r.rework_deployments
            ),
            "-".into(),
        ],
    ]
}

pub async fn dora(a: DoraArgs) -> anyhow::Result<()> {
    let out = a.client.output;
    let client = a.client.connect().await?;
    let r = client
        .dora(pb::GetDoraRequest {
            team: a.team.unwrap_or_default(),
            service: a.service.unwrap_or_default(),
            window_days: a.window,
            since: a.since.map(timestamp),
            until: a.until.map(timestamp),
            daily: a.daily,
            min_sequence: 0,
        })
        .await
        .map_err(explain)?;
    match out {
        Output::Table => {
            println!(
                "DORA for {} from {} to {} (UTC){}",
                r.scope,
                time(r.since.as_ref()),
                time(r.until.as_ref()),
                if r.open_incidents > 0 {
                    format!("; {} incident(s) open", r.open_incidents)
                } else {
                    String::new()
                }
            );
            output::table(&["METRIC", "VALUE", "LEVEL"], &dora_rows(&r));
            if a.daily {
                println!();
                let rows: Vec<Vec<String>> = r
                    .days
                    .iter()
                    .map(|d| {
                        vec![
                            d.date.clone(),
                            d.deployments.to_string(),
                            d.change_failures.to_string(),
                            d.lead_time_median_hours
                                .map(hours)
                                .unwrap_or_else(|| "-".into()),
                            d.restores.to_string(),
                        ]
                    })
                    .collect();
                output::table(
                    &["DAY", "DEPLOYS", "FAILURES", "LEAD TIME", "RESTORES"],
                    &rows,
                );
            }
            Ok(())
        }
        _ => output::json(&r),
    }
}
