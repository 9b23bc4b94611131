//! `paved provision …`: ask for a team namespace, a PostgreSQL database, a
//! Redis cache or a service's Argo CD Application; follow, show, diff,
//! approve, reject; decommission.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use paved_eventlog::codec::time_from_proto;
use paved_sdk::{Client, pb};

use super::catalog::{ClientArgs, explain};
use super::output::{self, Output};

#[derive(clap::Args, Debug)]
pub struct ProvisionArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: ProvisionCommand,
}

/// How a request is followed.
#[derive(clap::Args, Debug, Clone, Copy)]
struct Follow {
    /// Follow the request until it is applied (or waits for an approval,
    /// or ends); exit 1 if it fails or is rejected.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up waiting after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

/// A database or cache of a service.
#[derive(clap::Args, Debug)]
struct Database {
    /// The service it is for (its owner is the team).
    #[arg(long)]
    service: String,
    /// The environment, e.g. staging or production.
    #[arg(long = "env")]
    environment: String,
    /// small, medium, large (or the configuration's).
    #[arg(long, default_value = "small")]
    size: String,
    #[command(flatten)]
    follow: Follow,
    /// Idempotency key (default: a fresh one); reuse it to retry safely.
    #[arg(long)]
    request_id: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
enum ProvisionCommand {
    /// A team's namespace in an environment: RBAC, quota, limits and
    /// network policies.
    Namespace {
        /// The team it is for.
        #[arg(long)]
        team: String,
        /// The environment, e.g. staging or production.
        #[arg(long = "env")]
        environment: String,
        /// The tier: small, medium, large (or the configuration's).
        #[arg(long, default_value = "small")]
        tier: String,
        #[command(flatten)]
        follow: Follow,
        /// Idempotency key (default: a fresh one); reuse it to retry safely.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// A PostgreSQL database of a service (a Terraform module call).
    Postgres(Database),
    /// A Redis cache of a service (a Terraform module call).
    Redis(Database),
    /// The Argo CD Application of a service in an environment (into the
    /// team's namespace and AppProject); verified when Argo CD reports it
    /// synced and healthy.
    #[command(name = "argocd-app")]
    ArgocdApp {
        /// The service it is for (its owner is the team).
        #[arg(long)]
        service: String,
        /// The environment, e.g. staging or production.
        #[arg(long = "env")]
        environment: String,
        #[command(flatten)]
        follow: Follow,
        /// Idempotency key (default: a fresh one); reuse it to retry safely.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Change the tier or size of a live resource (a new plan of it).
    Change {
        /// The resource: namespace, postgres, redis or argocd-app.
        kind: String,
        /// The team (for a namespace; a service's resources take its owner).
        #[arg(long)]
        team: Option<String>,
        /// The service it is for (its owner is the team).
        #[arg(long)]
        service: Option<String>,
        /// The environment, e.g. staging or production.
        #[arg(long = "env")]
        environment: String,
        /// The new tier or size.
        #[arg(long)]
        size: String,
        #[command(flatten)]
        follow: Follow,
    },
    /// Remove a live resource: a plan that deletes its files, approved like any other.
    Decommission {
        /// The resource: namespace, postgres, redis or argocd-app.
        kind: String,
        /// The team (for a namespace; a service's resources take its owner).
        #[arg(long)]
        team: Option<String>,
        /// The service it is for (its owner is the team).
        #[arg(long)]
        service: Option<String>,
        /// The environment, e.g. staging or production.
        #[arg(long = "env")]
        environment: String,
        #[command(flatten)]
        follow: Follow,
    },
    /// Requests, newest first.
    List {
        /// The team (for a namespace; a service's resources take its owner).
        #[arg(long)]
        team: Option<String>,
        /// requested, planned, approved, rejected, applying, applied, verified, failed.
        #[arg(long)]
        state: Option<String>,
        /// Most requests to show (at most 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One request: its resource, state, approvals, plan and commit.
    Show {
        /// `<team>/<number>`.
        id: String,
    },
    /// Follow a request (`--wait` of the requesting verbs).
    Status {
        /// The request: `<team>/<number>`.
        id: String,
        #[command(flatten)]
        follow: Follow,
    },
    /// The plan's unified diff (coloured on a terminal).
    Diff {
        /// The request: `<team>/<number>`.
        id: String,
        /// Colour: auto (on a terminal), always or never.
        #[arg(long, default_value = "auto")]
        color: String,
    },
    /// Approve a planned request (who may: the policy's say).
    Approve {
        /// The request: `<team>/<number>`.
        id: String,
        /// Why (recorded with the approval).
        #[arg(long, default_value = "approved")]
        reason: String,
    },
    /// Reject a request not yet approved (its requester may withdraw it).
    Reject {
        /// The request: `<team>/<number>`.
        id: String,
        /// Why (recorded with the decision; required to reject).
        #[arg(long)]
        reason: String,
    },
    /// A team's resources (or every team's) and where each stands.
    Resources {
        /// The team (for a namespace; a service's resources take its owner).
        #[arg(long)]
        team: Option<String>,
    },
}

pub async fn provision(a: ProvisionArgs) -> anyhow::Result<()> {
    let out = a.client.output;
    let client = a.client.connect().await?;
    let request = |kind: &str,
                   team: Option<String>,
                   service: Option<String>,
                   environment,
                   size,
                   action: &str| {
        pb::RequestResourceRequest {
            team: team.unwrap_or_default(),
            kind: kind.to_owned(),
            environment,
            service: service.unwrap_or_default(),
            size,
            action: action.to_owned(),
            ..Default::default()
        }
    };
    match a.command {
        ProvisionCommand::Namespace {
            team,
            environment,
            tier,
            follow,
            request_id,
        } => {
            let mut r = request("namespace", Some(team), None, environment, tier, "create");
            r.request_id = request_id.unwrap_or_default();
            submit(out, &client, r, follow).await
        }
        ProvisionCommand::Postgres(d) => submit_database(out, &client, "postgres", d).await,
        ProvisionCommand::Redis(d) => submit_database(out, &client, "redis", d).await,
        ProvisionCommand::ArgocdApp {
            service,
            environment,
            follow,
            request_id,
        } => {
            let mut r = request(
                "argocd-app",
                None,
                Some(service),
                environment,
                String::new(),
                "create",
            );
            r.request_id = request_id.unwrap_or_default();
            submit(out, &client, r, follow).await
        }
        ProvisionCommand::Change {
            kind,
            team,
            service,
            environment,
            size,
            follow,
        } => {
            let r = request(&kind, team, service, environment, size, "change");
            submit(out, &client, r, follow).await
        }
        ProvisionCommand::Decommission {
            kind,
            team,
            service,
            environment,
            follow,
        } => {
            let r = request(
                &kind,
                team,
                service,
                environment,
                String::new(),
                "decommission",
            );
            submit(out, &client, r, follow).await
        }
        ProvisionCommand::List { team, state, limit } => {
            let page = client
                .at(0)
                .provision_requests(pb::ListRequestsRequest {
                    team: team.unwrap_or_default(),
                    state: state.unwrap_or_default(),
                    page_size: limit,
                    ..Default::default()
                })
                .await
                .map_err(explain)?;
            match out {
                Output::Table => {
                    output::table(
                        &[
                            "ID",
                            "RESOURCE",
                            "ACTION",
                            "STATE",
                            "APPROVER",
                            "REQUESTED BY",
                            "REQUESTED",
                        ],
                        &page
                            .requests
                            .iter()
                            .map(|r| {
                                vec![
                                    r.id.clone(),
                                    r.resource.clone(),
                                    r.action.clone(),
                                    r.state.clone(),
                                    or_dash(&r.approver),
                                    r.requested_by.clone(),
                                    time(r.requested_at.as_ref()),
                                ]
                            })
                            .collect::<Vec<_>>(),
                    );
                    Ok(())
                }
                _ => output::json(&page),
            }
        }
        ProvisionCommand::Show { id } => {
            let r = client.at(0).provision_request(&id).await.map_err(explain)?;
            match out {
                Output::Table => {
                    print_request(&r);
                    Ok(())
                }
                _ => output::json(&r),
            }
        }
        ProvisionCommand::Status { id, follow } => {
            let r = if follow.wait {
                wait_for(&client, &id, 0, follow.timeout).await?
            } else {
                client.at(0).provision_request(&id).await.map_err(explain)?
            };
            show_outcome(out, &r)
        }
        ProvisionCommand::Diff { id, color } => {
            let r = client.at(0).provision_request(&id).await.map_err(explain)?;
            if out != Output::Table {
                return output::json(
                    &serde_json::json!({ "id": r.id, "base": r.plan_base, "diff": r.diff }),
                );
            }
            anyhow::ensure!(
                !r.diff.is_empty() || r.state != "requested",
                "{id} has no plan yet (it is {})",
                r.state
            );
            let colour = match color.as_str() {
                "always" => true,
                "never" => false,
                "auto" => std::io::stdout().is_terminal(),
                other => anyhow::bail!("--color {other:?}: auto, always or never"),
            };
            print!("{}", coloured_diff(&r.diff, colour));
            Ok(())
        }
        ProvisionCommand::Approve { id, reason } => {
            let done = client
                .approve_request(pb::ApproveRequestRequest {
                    id,
                    reason,
                    ..Default::default()
                })
                .await
                .map_err(explain)?;
            print_done(out, "approved", &done)
        }
        ProvisionCommand::Reject { id, reason } => {
            let done = client
                .reject_request(pb::RejectRequestRequest {
                    id,
                    reason,
                    ..Default::default()
                })
                .await
                .map_err(explain)?;
            print_done(out, "rejected", &done)
        }
        ProvisionCommand::Resources { team } => {
            let all = client
                .at(0)
                .provisioned_resources(team.as_deref().unwrap_or_default())
                .await
                .map_err(explain)?;
            match out {
                Output::Table => {
                    output::table(
                        &[
                            "TEAM",
                            "RESOURCE",
                            "SIZE",
                            "STATUS",
                            "OPEN REQUEST",
                            "COMMIT",
                        ],
                        &all.iter()
                            .map(|r| {
                                vec![
                                    r.team.clone(),
                                    r.resource.clone(),
                                    r.size.clone(),
                                    r.status.clone(),
                                    or_dash(&r.open_request),
                                    or_dash(&r.commit.chars().take(12).collect::<String>()),
                                ]
                            })
                            .collect::<Vec<_>>(),
                    );
                    Ok(())
                }
                _ => output::json(&pb::ListResourcesResponse { resources: all }),
            }
        }
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_owned()
    }
}

fn time(t: Option<&paved_proto::wkt::Timestamp>) -> String {
    time_from_proto(t)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

fn print_done(out: Output, verb: &str, done: &impl output::Answer) -> anyhow::Result<()> {
    let (id, (sequence, events)) = (done.id(), done.recorded());
    match out {
        Output::Table => {
            if events == 0 {
                println!("{id}: nothing changed");
            } else {
                println!("{id} {verb} (sequence {sequence})");
            }
            Ok(())
        }
        _ => output::json(done),
    }
}

async fn submit_database(
    out: Output,
    client: &Client,
    kind: &str,
    d: Database,
) -> anyhow::Result<()> {
    let r = pb::RequestResourceRequest {
        kind: kind.to_owned(),
        service: d.service,
        environment: d.environment,
        size: d.size,
        request_id: d.request_id.unwrap_or_default(),
        ..Default::default()
    };
    submit(out, client, r, d.follow).await
}

async fn submit(
    out: Output,
    client: &Client,
    request: pb::RequestResourceRequest,
    follow: Follow,
) -> anyhow::Result<()> {
    let done = client.request_resource(request).await.map_err(explain)?;
    if !follow.wait {
        return print_done(out, "requested", &done);
    }
    let r = wait_for(client, &done.id, done.sequence, follow.timeout).await?;
    show_outcome(out, &r)
}

fn show_outcome(out: Output, r: &pb::ProvisionRequest) -> anyhow::Result<()> {
    match out {
        Output::Table => print_request(r),
        _ => output::json(r)?,
    }
    anyhow::ensure!(
        !matches!(r.state.as_str(), "failed" | "rejected"),
        "{} {}: {}",
        r.id,
        r.state,
        r.reason
    );
    Ok(())
}

/// Follows a request until it is applied, waits for someone's approval, or
/// ends; a spinner on stderr says where it stands.
async fn wait_for(
    client: &Client,
    id: &str,
    sequence: u64,
    timeout: u64,
) -> anyhow::Result<pb::ProvisionRequest> {
    let bar = output::spinner()?;

    let deadline = Instant::now() + Duration::from_secs(timeout);
    let reader = client.at(sequence);
    loop {
        let r = reader.provision_request(id).await.map_err(explain)?;
        bar.set_message(match r.state.as_str() {
            "requested" => "waiting for the GitOps writer to plan it".to_owned(),
            "approved" | "applying" => "committing to the GitOps repository".to_owned(),
            s => s.to_owned(),
        });
        let waiting_for_someone = r.state == "planned" && r.approver != "automatic";
        if waiting_for_someone
            || matches!(
                r.state.as_str(),
                "applied" | "verified" | "failed" | "rejected"
            )
        {
            bar.finish_and_clear();
            if waiting_for_someone {
                eprintln!(
                    "{id} is planned and waits for approval by {} (paved provision diff {id}; paved provision approve {id})",
                    match r.approver.as_str() {
                        "admin" => "an admin".to_owned(),
                        _ => format!("another member of {}", r.team),
                    }
                );
            }
            return Ok(r);
        }
        if Instant::now() > deadline {
            bar.finish_and_clear();
            anyhow::bail!("{id} is still {} after {timeout}s", r.state);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn print_request(r: &pb::ProvisionRequest) {
    let mut rows = vec![
        ("id", r.id.clone()),
        ("resource", r.resource.clone()),
        ("kind", r.kind.clone()),
        ("environment", r.environment.clone()),
        ("action", r.action.clone()),
        ("size", or_dash(&r.size)),
        ("state", r.state.clone()),
        ("requested by", r.requested_by.clone()),
        ("requested", time(r.requested_at.as_ref())),
    ];
    if !r.service.is_empty() {
        rows.insert(3, ("service", r.service.clone()));
    }
    if !r.approver.is_empty() {
        rows.push(("needs", r.approver.clone()));
    }
    if !r.approved_by.is_empty() {
        rows.push(("approved by", r.approved_by.clone()));
    }
    if !r.plan_base.is_empty() {
        rows.push(("planned on", r.plan_base.chars().take(12).collect()));
    }
    if !r.files.is_empty() {
        let deleted = r.files.iter().filter(|f| f.deleted).count();
        rows.push((
            "files",
            format!("{} written, {deleted} deleted", r.files.len() - deleted),
        ));
    }
    if !r.drift.is_empty() {
        rows.push(("drift", r.drift.join(", ")));
    }
    if !r.commit.is_empty() {
        rows.push(("commit", r.commit.clone()));
    }
    if !r.reason.is_empty() {
        rows.push(("reason", r.reason.clone()));
    }
    output::fields(&rows);
}

/// A unified diff with ANSI colours: additions green, deletions red, hunks cyan.
fn coloured_diff(diff: &str, colour: bool) -> String {
    if !colour {
        return diff.to_owned();
    }
    diff.lines()
        .map(|l| {
            let code = if l.starts_with("+++") || l.starts_with("---") || l.starts_with("diff ") {
                "1"
            } else if l.starts_with('+') {
                "32"
            } else if l.starts_with('-') {
                "31"
            } else if l.starts_with("@@") {
                "36"
            } else {
                return format!("{l}\n");
            };
            format!("\x1b[{code}m{l}\x1b[0m\n")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::coloured_diff;

    #[test]
    fn a_diff_is_coloured_only_when_asked() {
        let diff = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n+new\n same\n";
        assert_eq!(coloured_diff(diff, false), diff);
        let c = coloured_diff(diff, true);
        assert!(c.contains("\x1b[31m-old\x1b[0m"));
        assert!(c.contains("\x1b[32m+new\x1b[0m"));
        assert!(c.contains("\x1b[36m@@ -1 +1 @@\x1b[0m"));
        assert!(c.contains("\n same\n"));
    }
}
