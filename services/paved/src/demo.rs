//! `paved demo techflow`: the seed's organisation (5 teams, 22 services)
//! and eight months of delivery history through the API: four months shaped
//! like the seed's baseline (1-2 deploys a week per team, lead time 5-7 days,
//! time to restore 4-6 h, change failure rate 28 %, 4 incidents a month),
//! four like its results (3-5 deploys a day per team, lead time 4-6 h, 45
//! minutes to restore, 8 %, 1 incident a month). Then it prints the
//! before/after figures MetricsService computes beside the seed's.
//! Deterministic for a seed: same history, same figures (times are relative
//! to the start of today, UTC); re-running it appends nothing new.

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use paved_eventlog::codec::timestamp;
use paved_sdk::{Client, pb};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::Code;

use crate::cli::output::{self, Output};

/// Teams and their services (22 in all), as a workflow-automation SaaS has them.
pub const ORGANISATION: [(&str, &[&str]); 5] = [
    (
        "workflow-engine",
        &[
            "scheduler",
            "executor",
            "workflow-api",
            "rules-engine",
            "state-store",
        ],
    ),
    (
        "integrations",
        &[
            "connector-hub",
            "webhook-gateway",
            "salesforce-sync",
            "slack-bridge",
            "oauth-broker",
        ],
    ),
    (
        "web-app",
        &["web-frontend", "bff", "notifications", "search"],
    ),
    (
        "identity",
        &["auth-service", "user-directory", "billing", "audit-trail"],
    ),
    (
        "data",
        &[
            "analytics-ingest",
            "reporting",
            "warehouse-loader",
            "ml-insights",
        ],
    ),
];

/// One period's shape.
struct Shape {
    /// Deployments per team per day (a range; fractional: a probability).
    deploys_per_day: (f64, f64),
    commits_per_deploy: (u32, u32),
    lead_hours: (f64, f64),
    restore_minutes: (f64, f64),
    change_failure_rate: f64,
    incidents_per_month: u32,
}

const BEFORE: Shape = Shape {
    deploys_per_day: (1.0 / 7.0, 2.0 / 7.0),
    commits_per_deploy: (3, 8),
    lead_hours: (120.0, 168.0),
    restore_minutes: (240.0, 360.0),
    change_failure_rate: 0.28,
    incidents_per_month: 4,
};

const AFTER: Shape = Shape {
    deploys_per_day: (3.0, 5.0),
    commits_per_deploy: (1, 2),
    lead_hours: (4.0, 6.0),
    restore_minutes: (35.0, 55.0),
    change_failure_rate: 0.08,
    incidents_per_month: 1,
};

const PERIOD_DAYS: i64 = 120;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    client: crate::cli::catalog::ClientArgs,
    #[command(subcommand)]
    which: Which,
}

#[derive(clap::Subcommand, Debug)]
enum Which {
    /// The seed's TechFlow case study: before and after its platform.
    Techflow {
        /// RNG seed: the same seed gives the same history and figures.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Commands in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
}

/// A command to send, in order of dependency (changes before deployments
/// before incidents).
enum Cmd {
    Change(pb::RecordChangeRequest),
    Deploy(pb::RecordDeploymentRequest),
    Incident(pb::OpenIncidentRequest, pb::ResolveIncidentRequest),
}

fn between(rng: &mut StdRng, (lo, hi): (f64, f64)) -> f64 {
    if hi > lo {
        rng.random_range(lo..hi)
    } else {
        lo
    }
}

/// The history of one period, as commands.
fn period(rng: &mut StdRng, seed: u64, tag: &str, start: DateTime<Utc>, shape: &Shape) -> Vec<Cmd> {
    let mut changes = Vec::new();
    let mut deploys = Vec::new();
    let mut successes: Vec<(usize, String, String, DateTime<Utc>)> = Vec::new();
    let total_deploys: f64 = ORGANISATION.len() as f64
        * PERIOD_DAYS as f64
        * (shape.deploys_per_day.0 + shape.deploys_per_day.1)
        / 2.0;
    let incidents = (PERIOD_DAYS / 30) as u32 * shape.incidents_per_month;
    // Incidents are change failures too: fail the rest outright.
    let p_fail = (shape.change_failure_rate - f64::from(incidents) / total_deploys).max(0.0);
    let mut n = 0u64;
    for day in 0..PERIOD_DAYS {
        for (team, services) in ORGANISATION {
            let rate = between(rng, shape.deploys_per_day);
            let mut count = rate.floor() as u32;
            if rng.random_bool(rate.fract()) {
                count += 1;
            }
            for _ in 0..count {
                n += 1;
                let service = services[rng.random_range(0..services.len())];
                let finished = start
                    + Duration::days(day)
                    + Duration::minutes(rng.random_range(8 * 60..20 * 60));
                let started = finished - Duration::minutes(rng.random_range(3..15));
                let mut commits = Vec::new();
                for _ in
                    0..rng.random_range(shape.commits_per_deploy.0..=shape.commits_per_deploy.1)
                {
                    let sha = format!("{:032x}{:08x}", rng.random::<u128>(), rng.random::<u32>());
                    let committed = finished
                        - Duration::minutes((between(rng, shape.lead_hours) * 60.0) as i64);
                    changes.push(Cmd::Change(pb::RecordChangeRequest {
                        request_id: format!("demo-{seed}-{sha}"),
                        sha: sha.clone(),
                        service: service.into(),
                        committed_at: Some(timestamp(committed)),
                        merged_at: Some(timestamp(
                            committed + Duration::minutes(30).min(finished - committed),
                        )),
                        author: format!("{team}-dev"),
                        title: "demo change".into(),
                        ..Default::default()
                    }));
                    commits.push(sha);
                }
                let ok = !rng.random_bool(p_fail.min(1.0));
                let request_id = format!("demo-{seed}-{tag}-{n}");
                if ok {
                    successes.push((
                        deploys.len(),
                        request_id.clone(),
                        service.to_owned(),
                        finished,
                    ));
                }
                deploys.push(Cmd::Deploy(pb::RecordDeploymentRequest {
                    request_id,
                    target: Some(pb::DeploymentTarget {
                        service: service.into(),
                        environment: "production".into(),
                        revision: commits.last().cloned().unwrap_or_default(),
                        commits,
                        rollback_of: String::new(),
                    }),
                    source: "demo".into(),
                    started_at: Some(timestamp(started)),
                    outcome: Some(pb::DeploymentOutcome {
                        succeeded: ok,
                        phase: if ok { "Succeeded" } else { "Failed" }.into(),
                        health: if ok { "Healthy" } else { "Degraded" }.into(),
                        finished_at: Some(timestamp(finished)),
                        ..Default::default()
                    }),
                    expected_version: None,
                }));
            }
        }
    }
    // Incidents, spread over the months, each caused by a deployment.
    let mut out_incidents = Vec::new();
    for i in 0..incidents {
        let lo = successes.len() * i as usize / incidents.max(1) as usize;
        let hi = (successes.len() * (i as usize + 1) / incidents.max(1) as usize).max(lo + 1);
        let Some((_, request_id, service, finished)) = successes
            .get(rng.random_range(lo..hi.min(successes.len())))
            .cloned()
        else {
            continue;
        };
        let started = finished + Duration::minutes(rng.random_range(10..120));
        let resolved = started + Duration::minutes(between(rng, shape.restore_minutes) as i64);
        let id = format!("inc-{tag}-{seed}-{i}");
        out_incidents.push(Cmd::Incident(
            pb::OpenIncidentRequest {
                request_id: format!("demo-{id}"),
                id: id.clone(),
                title: format!("{service} degraded"),
                services: vec![service],
                severity: "sev2".into(),
                started_at: Some(timestamp(started)),
                caused_by_deployment: paved_api::delivery::derived_id("d", &request_id).to_string(),
                expected_version: None,
            },
            pb::ResolveIncidentRequest {
                request_id: format!("demo-{id}-resolved"),
                incident: id,
                resolved_at: Some(timestamp(resolved)),
                expected_version: None,
            },
        ));
    }
    changes
        .into_iter()
        .chain(deploys)
        .chain(out_incidents)
        .collect()
}

fn ok_if_exists<T>(r: Result<T, paved_sdk::Error>) -> anyhow::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Code::AlreadyExists => Ok(()),
        Err(e) => Err(crate::cli::catalog::explain(e)),
    }
}

async fn send(client: &Client, cmd: Cmd) -> anyhow::Result<u64> {
    Ok(match cmd {
        Cmd::Change(r) => {
            client
                .record_change(r)
                .await
                .map_err(crate::cli::catalog::explain)?
                .sequence
        }
        Cmd::Deploy(r) => {
            client
                .record_deployment(r)
                .await
                .map_err(crate::cli::catalog::explain)?
                .sequence
        }
        Cmd::Incident(open, resolve) => {
            client
                .open_incident(open)
                .await
                .map_err(crate::cli::catalog::explain)?;
            client
                .resolve_incident(resolve)
                .await
                .map_err(crate::cli::catalog::explain)?
                .sequence
        }
    })
}

/// What the demo measured.
pub struct Techflow {
    pub start: DateTime<Utc>,
    pub middle: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub before: pb::DoraReport,
    pub after: pb::DoraReport,
    pub per_team: Vec<(&'static str, pb::DoraReport, pb::DoraReport)>,
}

/// Loads TechFlow through `client` and measures it.
pub async fn techflow(client: &Client, seed: u64, concurrency: usize) -> anyhow::Result<Techflow> {
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    let start = today - Duration::days(2 * PERIOD_DAYS);
    let middle = start + Duration::days(PERIOD_DAYS);

    eprintln!("loading TechFlow: 5 teams, 22 services");
    for (team, services) in ORGANISATION {
        ok_if_exists(
            client
                .create_team(pb::CreateTeamRequest {
                    request_id: format!("demo-team-{team}"),
                    name: team.into(),
                    profile: Some(pb::TeamProfile {
                        display_name: team.replace('-', " "),
                        email: format!("{team}@techflow.example"),
                        chat_channel: format!("#team-{team}"),
                    }),
                    ..Default::default()
                })
                .await,
        )?;
        for s in services {
            ok_if_exists(
                client
                    .register_service(pb::RegisterServiceRequest {
                        request_id: format!("demo-service-{s}"),
                        name: (*s).into(),
                        owner: team.into(),
                        spec: Some(pb::ServiceSpec {
                            r#type: pb::ServiceType::Service.into(),
                            lifecycle: pb::Lifecycle::Production.into(),
                            description: format!("TechFlow {s}"),
                            ..Default::default()
                        }),
                        expected_version: None,
                    })
                    .await,
            )?;
        }
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cmds = period(&mut rng, seed, "before", start, &BEFORE);
    let after = period(&mut rng, seed, "after", middle, &AFTER);
    // Changes of both periods first, then deployments, then incidents.
    let (mut changes, mut rest): (Vec<Cmd>, Vec<Cmd>) = cmds
        .drain(..)
        .chain(after)
        .partition(|c| matches!(c, Cmd::Change(_)));
    rest.sort_by_key(|c| matches!(c, Cmd::Incident(..)));
    let incidents = rest.split_off(
        rest.iter()
            .position(|c| matches!(c, Cmd::Incident(..)))
            .unwrap_or(rest.len()),
    );
    let bar = indicatif::ProgressBar::new((changes.len() + rest.len() + incidents.len()) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>12} [{bar:40}] {pos}/{len} commands  {per_sec}",
        )?
        .progress_chars("=> "),
    );
    let mut last = 0u64;
    for (label, batch) in [
        ("changes", std::mem::take(&mut changes)),
        ("deployments", rest),
        ("incidents", incidents),
    ] {
        bar.set_message(label);
        let mut results = futures::stream::iter(batch.into_iter().map(|c| send(client, c)))
            .buffer_unordered(concurrency.max(1));
        while let Some(r) = results.next().await {
            last = last.max(r?);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();

    let reader = client.at(last);
    let window = |from: DateTime<Utc>, to: DateTime<Utc>, team: &str| pb::GetDoraRequest {
        team: team.into(),
        since: Some(timestamp(from)),
        until: Some(timestamp(to)),
        ..Default::default()
    };
    let before = reader
        .dora(window(start, middle, ""))
        .await
        .map_err(crate::cli::catalog::explain)?;
    let after = reader
        .dora(window(middle, today, ""))
        .await
        .map_err(crate::cli::catalog::explain)?;
    let mut per_team = Vec::new();
    for (team, _) in ORGANISATION {
        let b = reader
            .dora(window(start, middle, team))
            .await
            .map_err(crate::cli::catalog::explain)?;
        let a = reader
            .dora(window(middle, today, team))
            .await
            .map_err(crate::cli::catalog::explain)?;
        per_team.push((team, b, a));
    }
    Ok(Techflow {
        start,
        middle,
        end: today,
        before,
        after,
        per_team,
    })
}

pub async fn demo(a: DemoArgs) -> anyhow::Result<()> {
    let out = a.client.output;
    let client = a.client.connect().await?;
    let Which::Techflow { seed, concurrency } = a.which;
    let Techflow {
        start,
        middle,
        end: today,
        before,
        after,
        per_team,
    } = techflow(&client, seed, concurrency).await?;
    let teams = ORGANISATION.len() as f64;
    let months = PERIOD_DAYS as f64 / 30.0;
    let incidents_of = |r: &pb::DoraReport| r.time_to_restore.as_ref().map_or(0, |s| s.count);
    if out != Output::Table {
        return output::json(&serde_json::json!({
            "seed": seed,
            "before": before,
            "after": after,
            "teams": per_team.iter().map(|(t, b, a)| serde_json::json!({"team": t, "before": b, "after": a})).collect::<Vec<_>>(),
        }));
    }
    let h = crate::cli::delivery::hours;
    let spread = |s: &Option<pb::DoraSpread>| {
        s.as_ref()
            .map(|s| h(s.median_hours))
            .unwrap_or_else(|| "-".into())
    };
    let pct = |x: Option<f64>| {
        x.map(|x| format!("{:.1}%", x * 100.0))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "TechFlow (seed {seed}): {} to {} before, {} to {} after (UTC)",
        start.date_naive(),
        middle.date_naive(),
        middle.date_naive(),
        today.date_naive()
    );
    let rows = vec![
        vec![
            "deployment frequency (per team)".to_owned(),
            "1-2 per week".into(),
            format!(
                "{:.1}/week ({})",
                before.deployments_per_day / teams * 7.0,
                before.frequency_level
            ),
            "3-5 per day".into(),
            format!(
                "{:.1}/day ({})",
                after.deployments_per_day / teams,
                after.frequency_level
            ),
        ],
        vec![
            "lead time for changes (median)".into(),
            "5-7 days".into(),
            format!("{} ({})", spread(&before.lead_time), before.lead_time_level),
            "4-6 hours".into(),
            format!("{} ({})", spread(&after.lead_time), after.lead_time_level),
        ],
        vec![
            "change failure rate".into(),
            "28%".into(),
            format!(
                "{} ({})",
                pct(before.change_failure_rate),
                before.change_failure_level
            ),
            "8%".into(),
            format!(
                "{} ({})",
                pct(after.change_failure_rate),
                after.change_failure_level
            ),
        ],
        vec![
            "time to restore (median)".into(),
            "4-6 hours".into(),
            format!(
                "{} ({})",
                spread(&before.time_to_restore),
                before.time_to_restore_level
            ),
            "45 minutes".into(),
            format!(
                "{} ({})",
                spread(&after.time_to_restore),
                after.time_to_restore_level
            ),
        ],
        vec![
            "incidents per month".into(),
            "4".into(),
            format!("{:.1}", f64::from(incidents_of(&before)) / months),
            "1".into(),
            format!("{:.1}", f64::from(incidents_of(&after)) / months),
        ],
        vec![
            "rework rate".into(),
            "-".into(),
            pct(before.rework_rate),
            "-".into(),
            pct(after.rework_rate),
        ],
    ];
    output::table(
        &[
            "METRIC",
            "SEED BEFORE",
            "PAVED BEFORE",
            "SEED AFTER",
            "PAVED AFTER",
        ],
        &rows,
    );
    println!();
    let rows: Vec<Vec<String>> = per_team
        .iter()
        .map(|(t, b, a)| {
            vec![
                (*t).to_owned(),
                format!("{:.1}/week", b.deployments_per_day * 7.0),
                format!("{:.1}/day", a.deployments_per_day),
                spread(&b.lead_time),
                spread(&a.lead_time),
                pct(b.change_failure_rate),
                pct(a.change_failure_rate),
            ]
        })
        .collect();
    output::table(
        &[
            "TEAM",
            "DEPLOYS BEFORE",
            "AFTER",
            "LEAD BEFORE",
            "AFTER",
            "CFR BEFORE",
            "AFTER",
        ],
        &rows,
    );
    Ok(())
}
