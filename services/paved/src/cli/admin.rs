//! Operator verbs that talk to PostgreSQL and NATS directly: migrate,
//! replay, token.

use std::time::Duration;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use paved_domain::{Name, Principal, Role};
use paved_eventlog::readmodel::{AUDIT, CATALOG, DELIVERY, PROJECTIONS, SURVEYS};
use paved_eventlog::{EventLog, SurveyKeys};
use paved_workers::projections::{
    AuditProjection, CatalogProjection, DeliveryProjection, SurveysProjection,
};
use paved_workers::runtime::{self, RebuildProgress};
use sqlx::PgPool;

use super::output::{self, Output};
use crate::settings::Settings;

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
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
    /// The projection to rebuild (known: catalog, surveys).
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
        PROJECTIONS.iter().map(|p| p.to_string()).collect()
    } else {
        a.projection.into_iter().collect()
    };
    let nats = async_nats::connect(&a.settings.nats_url)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", a.settings.nats_url))?;
    let log = EventLog::open(nats, a.settings.log_config()).await?;
    let pool = crate::db::connect(&a.settings.database_url, 4).await?;
    let keys = crate::secrets::survey_keys(&a.settings, &pool).await?;
    let mut drift = false;
    for name in names {
        if a.check {
            drift |= check_one(&name, &pool, &log, &keys).await?;
        } else {
            rebuild_one(&name, &pool, &log, &keys).await?;
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

/// Replays `name` into a shadow schema and compares; true if it drifted.
async fn check_one(
    name: &str,
    pool: &PgPool,
    log: &EventLog,
    keys: &SurveyKeys,
) -> anyhow::Result<bool> {
    let bar = progress_bar(name)?;
    let progress = |p: RebuildProgress| {
        bar.set_length(p.total);
        bar.set_position(p.applied);
    };
    let (report, checks) = match name {
        CATALOG => runtime::check(&CatalogProjection, pool, log, progress).await?,
        SURVEYS => {
            runtime::check(&SurveysProjection::new(keys.clone()), pool, log, progress).await?
        }
        AUDIT => runtime::check(&AuditProjection, pool, log, progress).await?,
        DELIVERY => runtime::check(&DeliveryProjection, pool, log, progress).await?,
        other => anyhow::bail!(
            "unknown projection {other:?} (known: {})",
            PROJECTIONS.join(", ")
        ),
    };
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
) -> anyhow::Result<()> {
    let bar = progress_bar(name)?;
    let progress = |p: RebuildProgress| {
        bar.set_length(p.total);
        bar.set_position(p.applied);
    };
    let report = match name {
        CATALOG => runtime::rebuild(&CatalogProjection, pool, log, progress).await?,
        SURVEYS => {
            runtime::rebuild(&SurveysProjection::new(keys.clone()), pool, log, progress).await?
        }
        AUDIT => runtime::rebuild(&AuditProjection, pool, log, progress).await?,
        DELIVERY => runtime::rebuild(&DeliveryProjection, pool, log, progress).await?,
        other => anyhow::bail!(
            "unknown projection {other:?} (known: {})",
            PROJECTIONS.join(", ")
        ),
    };
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
        #[arg(long)]
        principal: String,
        #[command(flatten)]
        db: MigrateArgs,
    },
    /// List principals with active tokens (never the tokens).
    List {
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
            let pool = crate::db::connect(&db.database_url, 2).await?;
            let token = paved_api::auth::create_token(
                &pool,
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
            let pool = crate::db::connect(&db.database_url, 2).await?;
            let n = paved_api::auth::revoke_tokens(&pool, &principal).await?;
            eprintln!("revoked {n} token(s) of {principal} (effective within 10 s)");
            Ok(())
        }
        TokenCommand::List { output: out, db } => {
            let pool = crate::db::connect(&db.database_url, 2).await?;
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
                        .map(|(p, r, t, n)| serde_json::json!({"principal": p, "role": r, "team": t, "tokens": n}))
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
