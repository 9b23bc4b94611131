//! The `paved` command line.

mod admin;
pub mod audit;
pub(crate) mod catalog;
pub(crate) mod delivery;
mod health;
mod locations;
pub mod output;
mod plugin;
mod provision;
mod survey;
mod task;
mod template;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

pub use plugin::read_manifest as read_plugin_manifest;

use crate::settings::Settings;
use crate::startup::{Application, Roles};
use crate::telemetry::{self, LogFormat};

/// Paved: the control plane of an Internal Developer Platform.
///
/// Commands are appended to an event log on NATS JetStream; workers project
/// it into PostgreSQL read models. Every flag has a PAVED_* variable.
#[derive(Parser, Debug)]
#[command(name = "paved", version, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, env = "PAVED_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gRPC API and every worker in one process (creates the
    /// database, runs migrations, creates or verifies the stream).
    Serve(ServerArgs),
    /// Run only the gRPC API.
    Api(ServerArgs),
    /// Run only the workers (projections, the Argo CD deployer, the GitOps
    /// writer, audit checkpoints).
    Worker(ServerArgs),
    /// Create the database if needed and apply the migrations, then exit.
    Migrate(admin::MigrateArgs),
    /// Rebuild read models from the log (sequence 1), with a progress bar.
    Replay(admin::ReplayArgs),
    /// Manage API tokens (stored hashed in PostgreSQL).
    #[command(subcommand)]
    Token(admin::TokenCommand),
    /// Operate projections: set aside a message they cannot apply.
    #[command(subcommand)]
    Projection(admin::ProjectionCommand),
    /// Services and systems in the catalog (client verbs).
    Catalog(catalog::CatalogArgs),
    /// Teams in the catalog (client verbs).
    Team(catalog::TeamArgs),
    /// Developer surveys: create, answer (anonymously), results (client verbs).
    Survey(survey::SurveyArgs),
    /// Deploy a service's revision through Argo CD (`--wait` follows it).
    Deploy(delivery::DeployArgs),
    /// Roll a deployment back to the revision deployed before it.
    Rollback(delivery::RollbackArgs),
    /// Deployments: list and show.
    Deployments(delivery::DeploymentsArgs),
    /// Incidents: open, link to the deployment that caused them, resolve.
    Incident(delivery::IncidentArgs),
    /// Changes (commits) on their way to production.
    Change(delivery::ChangeArgs),
    /// What came in through the webhooks (`webhooks recent`).
    Webhooks(delivery::WebhooksArgs),
    /// The four DORA keys (and rework rate) with performance levels.
    Dora(delivery::DoraArgs),
    /// Namespaces, databases, caches and Argo CD applications through the GitOps repository:
    /// request, follow, diff, approve, reject, decommission.
    Provision(provision::ProvisionArgs),
    /// Golden-path templates: check and render locally; publish, list,
    /// show; time to first deploy (stats); services behind their template
    /// (outdated) and their upgrade.
    Template(template::TemplateArgs),
    /// Run a golden-path template as a task: a repository, a catalog entry,
    /// a namespace, an Argo CD application (`--wait` follows it step by
    /// step; `--dry-run` renders only); status, retry, list.
    Create(task::CreateArgs),
    /// The plugin marketplace: publish, list, show, deprecate, yank;
    /// install with a grant of scopes, upgrade, rotate, uninstall; webhook
    /// dead letters; the scope table.
    Plugin(plugin::PluginArgs),
    /// Read the log: who did what when, exports, the state at a time, diffs,
    /// and proof that it was not edited (`audit verify`).
    Audit(audit::AuditArgs),
    /// Load a case study's organisation and history through the API and
    /// print its DORA figures (`techflow`: the seed's before/after).
    Demo(crate::demo::DemoArgs),
    /// Ask a running Paved whether it serves (grpc.health.v1; exit 1 if not).
    Health(health::HealthArgs),
    /// Measure Paved against the machine's raw limits (its own stream and database).
    Bench(Box<crate::bench::BenchArgs>),
}

#[derive(clap::Args, Debug)]
struct ServerArgs {
    #[command(flatten)]
    settings: Settings,
}

/// Parses the command line, runs it, and turns failures into exit code 1.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _telemetry = telemetry::init(cli.log_format);
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(a) => serve(a.settings, Roles::ALL).await,
        Command::Api(a) => serve(a.settings, Roles::API).await,
        Command::Worker(a) => serve(a.settings, Roles::WORKERS).await,
        Command::Migrate(a) => admin::migrate(a).await,
        Command::Replay(a) => admin::replay(a).await,
        Command::Token(t) => admin::token(t).await,
        Command::Projection(c) => admin::projection(c).await,
        Command::Catalog(a) => catalog::catalog(a).await,
        Command::Team(a) => catalog::team(a).await,
        Command::Survey(a) => survey::survey(a).await,
        Command::Audit(a) => audit::audit(a).await,
        Command::Deploy(a) => delivery::deploy(a).await,
        Command::Rollback(a) => delivery::rollback(a).await,
        Command::Deployments(a) => delivery::deployments(a).await,
        Command::Webhooks(a) => delivery::webhooks(a).await,
        Command::Incident(a) => delivery::incident(a).await,
        Command::Change(a) => delivery::change(a).await,
        Command::Dora(a) => delivery::dora(a).await,
        Command::Provision(a) => provision::provision(a).await,
        Command::Template(a) => template::template(a).await,
        Command::Create(a) => task::create(a).await,
        Command::Plugin(a) => plugin::plugin(a).await,
        Command::Demo(a) => crate::demo::demo(a).await,
        Command::Bench(a) => crate::bench::bench(*a).await,
        Command::Health(a) => health::health(a).await,
    }
}

async fn serve(settings: Settings, roles: Roles) -> anyhow::Result<()> {
    let app = Application::build(settings, roles).await?;
    if let Some(token) = app.admin_token() {
        println!("First start in dev mode: created an admin token. It is shown only this once:");
        println!();
        println!("    export PAVED_TOKEN={token}");
        println!();
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    app.run_until_stopped(shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Cancels `token` on ctrl-c or SIGTERM.
pub async fn stop_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("ctrl-c: draining"),
        _ = term => tracing::info!("SIGTERM: draining"),
    }
    token.cancel();
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own checks of every verb (names unique, `--version` not
    /// taken twice, …), which otherwise fail only when the verb is used.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }

    /// Every verb and every flag says what it is for (`--help`).
    #[test]
    fn every_flag_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() && path.trim() != "paved" {
                missing.push(format!("{path}: the verb"));
            }
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path}: {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "without help:\n{}", missing.join("\n"));
    }
}
