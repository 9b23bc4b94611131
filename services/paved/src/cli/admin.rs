//! Operator verbs that talk to PostgreSQL and NATS directly: migrate,
//! replay, token.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use paved_domain::{Name, Principal, Role};
use paved_eventlog::audit::TrustedKeys;
use paved_eventlog::{EventLog, SurveyKeys};
use paved_workers::registry::{self, Handles, ProjectionNeeds};
use paved_workers::runtime::RebuildProgress;
use sqlx::PgPool;

use super::output::{self, Output};
use crate::settings::Settings;

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// PostgreSQL database with Paved's read models.
    #[arg(
        long,
        env = "PAVED_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/paved"
    )]
    database_url: String,
}

pub async fn migrate(a: MigrateArgs) -> anyhow::Result<()> {
    let pool = crate::db::connect(&a.database_url, 2).await?;
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await?;
    println!("database is at migration {applied}");
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// The projection to rebuild (known: catalog, surveys, audit, delivery).
    #[arg(required_unless_present = "all")]
    projection: Option<String>,
    /// Rebuild every projection.
    #[arg(long, conflicts_with = "projection")]
    all: bool,
    /// Replay into a shadow schema and compare with the live tables (row
    /// counts and digests) without changing them; exit 1 on drift.
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    settings: Settings,
}

pub async fn replay(a: ReplayArgs) -> anyhow::Result<()> {
    let names: Vec<String> = if a.all {
        registry::names().iter().map(|p| p.to_string()).collect()
    } else {
        a.projection.into_iter().collect()
    };
    let log = crate::secrets::existing_log(&a.settings).await?;
    let pool = crate::secrets::existing_database(&a.settings.database_url).await?;
    let keys = crate::secrets::existing_survey_keys(&a.settings, &pool).await?;
    // Quarantines signed by these keys are honoured, as by the workers.
    let signing = crate::secrets::existing_signing_key(&a.settings, Some(&pool))
        .await
        .ok();
    let trusted = crate::secrets::trusted_keys(&a.settings, signing.as_ref(), &[])?;
    let mut drift = false;
    for name in names {
        if a.check {
            drift |= check_one(&name, &pool, &log, &keys, &trusted, &a.settings).await?;
        } else {
            rebuild_one(&name, &pool, &log, &keys, &trusted, &a.settings).await?;
        }
    }
    anyhow::ensure!(!drift, "read models drifted from the log (see above)");
    Ok(())
}

fn progress_bar(name: &str) -> anyhow::Result<ProgressBar> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>8} [{bar:40}] {pos}/{len} events  {per_sec}  ETA {eta}",
        )?
        .progress_chars("=> "),
    );
    bar.set_prefix(name.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    Ok(bar)
}

fn needs(keys: &SurveyKeys, settings: &Settings) -> ProjectionNeeds {
    ProjectionNeeds {
        survey_keys: keys.clone(),
        delivery_partitions: settings.delivery_partitions,
    }
}

fn handles(pool: &PgPool, log: &EventLog, trusted: &TrustedKeys) -> Handles {
    Handles {
        pool: pool.clone(),
        log: log.clone(),
        trusted: trusted.clone(),
    }
}

/// Replays `name` into a shadow schema and compares; true if it drifted.
async fn check_one(
    name: &str,
    pool: &PgPool,
    log: &EventLog,
    keys: &SurveyKeys,
    trusted: &TrustedKeys,
    settings: &Settings,
) -> anyhow::Result<bool> {
    let bar = progress_bar(name)?;
    let mut progress = |p: RebuildProgress| {
        bar.set_length(p.total);
        bar.set_position(p.applied);
    };
    let model = registry::read_model(&needs(keys, settings), name).map_err(anyhow::Error::msg)?;
    let handles = handles(pool, log, trusted);
    let (report, checks) = model.check(&handles, &mut progress).await?;
    bar.finish_and_clear();
    output::table(
        &[
            "TABLE",
            "LIVE ROWS",
            "REPLAYED ROWS",
            "LIVE DIGEST",
            "REPLAYED DIGEST",
            "",
        ],
        &checks
            .iter()
            .map(|c| {
                vec![
                    c.table.clone(),
                    c.live_rows.to_string(),
                    c.rebuilt_rows.to_string(),
                    c.live_digest.clone(),
                    c.rebuilt_digest.clone(),
                    if c.drifted() {
                        "DRIFT".into()
                    } else {
                        "ok".into()
                    },
                ]
            })
            .collect::<Vec<_>>(),
    );
    eprintln!(
        "checked {name} up to sequence {} ({} events replayed in {:.1}s)",
        report.checkpoint,
        report.messages,
        report.elapsed.as_secs_f64()
    );
    Ok(checks.iter().any(|c| c.drifted()))
}

async fn rebuild_one(
    name: &str,
    pool: &PgPool,
    log: &EventLog,
    keys: &SurveyKeys,
    trusted: &TrustedKeys,
    settings: &Settings,
) -> anyhow::Result<()> {
    let bar = progress_bar(name)?;
    let mut progress = |p: RebuildProgress| {
        bar.set_length(p.total);
        bar.set_position(p.applied);
    };
    let model = registry::read_model(&needs(keys, settings), name).map_err(anyhow::Error::msg)?;
    let handles = handles(pool, log, trusted);
    let report = model.rebuild(&handles, &mut progress).await?;
    bar.finish_and_clear();
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "rebuilt {name}: {} events in {:.1}s ({:.0} events/s), checkpoint {}",
        report.messages,
        secs,
        report.messages as f64 / secs,
        report.checkpoint
    );
    Ok(())
}

#[derive(clap::Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print it (the only time it is shown).
    Create {
        /// Principal name recorded in every event this token causes.
        #[arg(long)]
        principal: String,
        /// What it may do: admin (everything), member (change what its --team
        /// owns, read everything) or reader (read only).
        #[arg(long, value_enum)]
        role: RoleArg,
        /// The team a member acts for (required with --role member).
        #[arg(long, required_if_eq("role", "member"))]
        team: Option<String>,
        #[command(flatten)]
        db: MigrateArgs,
    },
    /// Revoke every token of a principal.
    Revoke {
        /// The principal whose tokens are revoked.
        #[arg(long)]
        principal: String,
        #[command(flatten)]
        db: MigrateArgs,
    },
    /// List principals with active tokens (never the tokens).
    List {
        /// Output format: table (default), json or jsonl.
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        db: MigrateArgs,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleArg {
    Admin,
    Member,
    Reader,
}

pub async fn token(t: TokenCommand) -> anyhow::Result<()> {
    match t {
        TokenCommand::Create {
            principal,
            role,
            team,
            db,
        } => {
            let role = match role {
                RoleArg::Admin => Role::Admin,
                RoleArg::Reader => Role::Reader,
                RoleArg::Member => Role::Member {
                    team: Name::parse(team.as_deref().unwrap_or_default())
                        .map_err(|e| anyhow::anyhow!("--team: {e}"))?,
                },
            };
            let token = crate::operations::create_token(
                &db.database_url,
                &Principal {
                    name: principal,
                    role,
                },
            )
            .await?;
            println!("{token}");
            Ok(())
        }
        TokenCommand::Revoke { principal, db } => {
            let pool = crate::secrets::existing_database(&db.database_url).await?;
            let n = paved_api::auth::revoke_tokens(&pool, &principal).await?;
            eprintln!("revoked {n} token(s) of {principal} (effective within 10 s)");
            Ok(())
        }
        TokenCommand::List { output: out, db } => {
            let pool = crate::secrets::existing_database(&db.database_url).await?;
            let rows: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(
                "SELECT principal, role, team, count(*) FROM api_tokens WHERE revoked_at IS NULL
                  GROUP BY principal, role, team ORDER BY principal",
            )
            .fetch_all(&pool)
            .await?;
            match out {
                Output::Json | Output::Jsonl => output::json(
                    &rows
                        .iter()
                        .map(|(p, r, t, n)| serde_json::json!({"principal": p, "role": r, "team": t, "tokens": n.to_string()}))
                        .collect::<Vec<_>>(),
                ),
                Output::Table => {
                    output::table(
                        &["PRINCIPAL", "ROLE", "TEAM", "TOKENS"],
                        &rows
                            .into_iter()
                            .map(|(p, r, t, n)| vec![p, r, t.unwrap_or_default(), n.to_string()])
                            .collect::<Vec<_>>(),
                    );
                    Ok(())
                }
            }
        }
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum ProjectionCommand {
    /// Set aside a message of the log that does not decode, so the halted
    /// projections carry on past it. Appends a quarantine record signed with
    /// the audit key (who, why, which projections, the message's SHA-256);
    /// the message itself stays in the log, and `audit verify` reports it as
    /// quarantined.
    Skip {
        /// The projection that skips it (catalog, surveys, audit, delivery).
        #[arg(required_unless_present = "all")]
        projection: Option<String>,
        /// Every projection skips it.
        #[arg(long, conflicts_with = "projection")]
        all: bool,
        /// The message's stream sequence (the projection's error log and
        /// `grpc.health.v1` name it).
        #[arg(long)]
        sequence: u64,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: String,
        /// Who does it (recorded as `operator:<actor>`); default `$USER`.
        #[arg(long)]
        actor: Option<String>,
        /// Output format: table (default), json or jsonl.
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        settings: Settings,
    },
}

pub async fn projection(c: ProjectionCommand) -> anyhow::Result<()> {
    let ProjectionCommand::Skip {
        projection,
        all,
        sequence,
        reason,
        actor,
        output: out,
        settings,
    } = c;
    let projections: Vec<String> = match (all, projection) {
        (true, _) | (_, None) => Vec::new(),
        (false, Some(p)) => vec![p],
    };
    let actor = actor
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "operator".into());
    let done =
        crate::operations::quarantine(&settings, sequence, &projections, &reason, &actor).await?;
    let scope = if projections.is_empty() {
        "every projection".to_owned()
    } else {
        projections.join(", ")
    };
    match out {
        Output::Table => {
            println!(
                "quarantined sequence {sequence} for {scope} (record at sequence {}, signed by key {}); halted workers carry on within 5 s",
                done.record_sequence, done.key_id
            );
            Ok(())
        }
        _ => output::json(&serde_json::json!({
            "sequence": sequence,
            "projections": projections,
            "recordSequence": done.record_sequence.to_string(),
            "keyId": done.key_id,
        })),
    }
}
