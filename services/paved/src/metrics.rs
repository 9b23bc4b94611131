//! The Prometheus endpoint (`GET /metrics`, text exposition format) on its
//! own port: commands by outcome, the log's last sequence, and each
//! projection's checkpoint, pending messages, lag, health and decode errors,
//! latency histograms with trace exemplars (gRPC calls, projection batches,
//! Argo CD calls) and the trace exporter's counts.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::get;
use paved_api::CommandCounters;
use paved_eventlog::EventLog;
use paved_workers::{Health, ProjectionStatus};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectionLabels {
    projection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SurveyLabels {
    survey: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DoraLabels {
    /// organisation, team or service.
    scope: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

/// What one process can report.
#[derive(Clone)]
pub struct Sources {
    pub log: EventLog,
    pub pool: sqlx::PgPool,
    pub survey_min_group: u32,
    pub commands: Option<CommandCounters>,
    pub projections: Vec<watch::Receiver<ProjectionStatus>>,
    /// DORA's incident attribution window.
    pub dora_attribution: chrono::Duration,
    /// What came in through the webhooks (when this process serves them).
    pub webhooks: Option<paved_api::webhooks::DeliveryLog>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    source: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SkipLabels {
    source: String,
    reason: String,
}

/// The window of the DORA gauges.
pub const DORA_WINDOW_DAYS: i64 = 30;

/// Renders the current values. Counters come from monotonic sources, so a
/// fresh registry per scrape is exact.
pub async fn render(sources: &Sources) -> String {
    let mut registry = Registry::with_prefix("paved");
    if let Some(commands) = &sources.commands {
        let family = Family::<OutcomeLabels, Counter>::default();
        for (outcome, n) in commands.snapshot() {
            family
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.to_owned(),
                })
                .inc_by(n);
        }
        registry.register(
            "commands",
            "Commands handled by the API, by outcome (applied, unchanged, rejected, failed, replayed: a retried request id)",
            family,
        );
    }
    if let Ok(last) = sources.log.last_sequence().await {
        let g = Gauge::<i64>::default();
        g.set(last as i64);
        registry.register("log_last_sequence", "The stream's last sequence", g);
    }
    let checkpoint = Family::<ProjectionLabels, Gauge>::default();
    let pending = Family::<ProjectionLabels, Gauge>::default();
    let lag = Family::<ProjectionLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let healthy = Family::<ProjectionLabels, Gauge>::default();
    let applied = Family::<ProjectionLabels, Counter>::default();
    let decode_errors = Family::<ProjectionLabels, Counter>::default();
    let regressions = Family::<ProjectionLabels, Counter>::default();
    let leases_lost = Family::<ProjectionLabels, Counter>::default();
    // The database's checkpoints: this process may only stand by for some.
    let stored = paved_eventlog::checkpoints::all(&sources.pool)
        .await
        .unwrap_or_default();
    for status in &sources.projections {
        let mut s = status.borrow().clone();
        if let Some(seq) = stored.get(&s.name) {
            s.checkpoint = *seq;
        }
        let l = ProjectionLabels {
            projection: s.name.clone(),
        };
        checkpoint.get_or_create(&l).set(s.checkpoint as i64);
        // From the log, not from the worker: true also of a projection that
        // halted or stands by (it reports nothing while it is stuck).
        let (behind, lag_s) = match sources.log.backlog(&s.filter_subject, s.checkpoint).await {
            Ok((n, Some(first))) => (
                n,
                (chrono::Utc::now() - first).num_milliseconds().max(0) as f64 / 1000.0,
            ),
            Ok((_, None)) => (0, 0.0),
            Err(_) => (s.pending, s.lag_ms as f64 / 1000.0),
        };
        pending.get_or_create(&l).set(behind as i64);
        lag.get_or_create(&l).set(lag_s);
        healthy
            .get_or_create(&l)
            .set(i64::from(s.health == Health::Running));
        applied.get_or_create(&l).inc_by(s.applied_messages);
        decode_errors.get_or_create(&l).inc_by(s.decode_errors);
        regressions
            .get_or_create(&l)
            .inc_by(s.checkpoint_regressions);
        leases_lost.get_or_create(&l).inc_by(s.leases_lost);
    }
    registry.register(
        "projection_checkpoint_regressions",
        "Times the database's checkpoint was found behind one this worker committed (a failover or restore); the worker re-read from it",
        regressions,
    );
    registry.register(
        "projection_leases_lost",
        "Times this worker found that another one had taken the projection over",
        leases_lost,
    );
    registry.register(
        "projection_checkpoint",
        "Last stream sequence the projection applied",
        checkpoint,
    );
    registry.register(
        "projection_pending_messages",
        "Messages on the projection's subjects after its checkpoint (not yet applied)",
        pending,
    );
    registry.register(
        "projection_lag_seconds",
        "Age of the oldest message the projection has not applied yet (0 when caught up)",
        lag,
    );
    registry.register(
        "projection_healthy",
        "1 while the projection runs, 0 when stopped or failed",
        healthy,
    );
    registry.register(
        "projection_applied_messages",
        "Messages applied since start",
        applied,
    );
    registry.register(
        "projection_decode_errors",
        "Messages that did not decode (each stops the projection)",
        decode_errors,
    );
    let exports = crate::telemetry::export_stats();
    for (name, help, n) in [
        (
            "trace_export_spans",
            "Spans the OTLP collector accepted",
            exports.exported_spans,
        ),
        (
            "trace_export_failures",
            "Span exports that failed (the collector down, refusing or too slow)",
            exports.failed_batches,
        ),
        (
            "trace_export_dropped_spans",
            "Spans lost in failed exports",
            exports.dropped_spans,
        ),
    ] {
        let c = Counter::<u64>::default();
        c.inc_by(n);
        registry.register(name, help, c);
    }
    paved_eventlog::latency::register_all(&mut registry);
    if let Some(hooks) = &sources.webhooks {
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        for (source, outcome, n) in hooks.outcomes() {
            deliveries
                .get_or_create(&DeliveryLabels {
                    source: source.to_owned(),
                    outcome: outcome.to_owned(),
                })
                .inc_by(n);
        }
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries by source and outcome (recorded, ignored, refused, bad_signature, failed)",
            deliveries,
        );
        let skipped = Family::<SkipLabels, Counter>::default();
        for (source, reason, n) in hooks.skipped() {
            skipped
                .get_or_create(&SkipLabels {
                    source: source.to_owned(),
                    reason,
                })
                .inc_by(n);
        }
        registry.register(
            "webhook_changes_skipped",
            "Changes of a delivery left out while the rest were recorded, by reason (other_service, invalid, ...)",
            skipped,
        );
    }
    surveys(&mut registry, sources).await;
    deployments(&mut registry, sources).await;
    provisioning(&mut registry, sources).await;
    templates(&mut registry, sources).await;
    dora(&mut registry, sources).await;
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    out
}

/// NPS, mean and responses of surveys open now or closed in the last 90
/// days, only where the whole survey has enough responses to be shown.
async fn surveys(registry: &mut Registry, sources: &Sources) {
    type F = Family<SurveyLabels, Gauge<f64, std::sync::atomic::AtomicU64>>;
    let ids: Vec<String> = match sqlx::query_scalar(
        "SELECT id FROM survey_surveys
          WHERE COALESCE(closed_at, closes_at) > now() - interval '90 days' AND opens_at <= now()",
    )
    .fetch_all(&sources.pool)
    .await
    {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read surveys for /metrics");
            return;
        }
    };
    let (nps, mean, responses) = (F::default(), F::default(), F::default());
    for id in ids {
        let Ok(r) =
            paved_api::surveys::survey_results(&sources.pool, &id, sources.survey_min_group).await
        else {
            continue;
        };
        let Some(o) = r.overall.filter(|o| !o.hidden) else {
            continue;
        };
        let l = SurveyLabels { survey: id };
        nps.get_or_create(&l).set(o.nps);
        mean.get_or_create(&l).set(o.mean);
        responses.get_or_create(&l).set(f64::from(o.responses));
    }
    registry.register(
        "survey_nps",
        "Net promoter score of a survey (-100..100)",
        nps,
    );
    registry.register(
        "survey_mean_score",
        "Mean NPS-question score of a survey (0..10)",
        mean,
    );
    registry.register("survey_responses", "Responses to a survey", responses);
}

/// Deployments Paved was asked for and has not finished: what the Argo CD
/// deployer has in hand (a growing number means it is stuck or not running).
async fn deployments(registry: &mut Registry, sources: &Sources) {
    let counts: Vec<(String, i64)> = match sqlx::query_as(
        "SELECT status, count(*) FROM delivery_deployments
          WHERE source = 'paved' AND status IN ('requested', 'running') GROUP BY status",
    )
    .fetch_all(&sources.pool)
    .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot count deployments for /metrics");
            return;
        }
    };
    let family = Family::<StatusLabels, Gauge>::default();
    for status in ["requested", "running"] {
        let n = counts
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        family
            .get_or_create(&StatusLabels {
                status: status.to_owned(),
            })
            .set(n);
    }
    registry.register(
        "deployments_in_flight",
        "Deployments requested through Paved and not finished, by status",
        family,
    );
}

/// Provisioning requests still on their way, by state: the GitOps writer's
/// queue (requested, approved, applying) and what waits for people (planned).
async fn provisioning(registry: &mut Registry, sources: &Sources) {
    const OPEN: [&str; 4] = ["requested", "planned", "approved", "applying"];
    let counts: Vec<(String, i64)> = match sqlx::query_as(
        "SELECT state, count(*) FROM provisioning_requests
          WHERE state IN ('requested', 'planned', 'approved', 'applying') GROUP BY state",
    )
    .fetch_all(&sources.pool)
    .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot count provisioning requests for /metrics");
            return;
        }
    };
    let family = Family::<StatusLabels, Gauge>::default();
    for state in OPEN {
        let n = counts
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n);
        family
            .get_or_create(&StatusLabels {
                status: state.to_owned(),
            })
            .set(n);
    }
    registry.register(
        "provisioning_requests_open",
        "Provisioning requests not finished, by status",
        family,
    );
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TemplateLabels {
    template: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TemplateStatusLabels {
    template: String,
    status: String,
}

/// Golden paths: tasks per template by status, time to first deploy (from
/// a task's start to its service's first successful production
/// deployment, p50 and p90) beside what the template declares it saves.
async fn templates(registry: &mut Registry, sources: &Sources) {
    type F = Family<TemplateLabels, Gauge<f64, std::sync::atomic::AtomicU64>>;
    let stats = match paved_api::templates::template_stats(&sources.pool, "", "").await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read template figures for /metrics");
            return;
        }
    };
    let tasks = Family::<TemplateStatusLabels, Gauge>::default();
    let (p50, p90, saved, deploys) = (F::default(), F::default(), F::default(), F::default());
    for s in stats.iter().filter(|s| s.team.is_empty()) {
        let label = TemplateLabels {
            template: s.template.clone(),
        };
        let running = s.tasks.saturating_sub(s.completed + s.failed);
        for (status, n) in [
            ("running", running),
            ("completed", s.completed),
            ("failed", s.failed),
        ] {
            tasks
                .get_or_create(&TemplateStatusLabels {
                    template: s.template.clone(),
                    status: status.into(),
                })
                .set(i64::from(n));
        }
        deploys
            .get_or_create(&label)
            .set(f64::from(s.first_deploys));
        if s.first_deploys > 0 {
            p50.get_or_create(&label).set(s.first_deploy_p50_seconds);
            p90.get_or_create(&label).set(s.first_deploy_p90_seconds);
        }
        if s.time_saved_seconds > 0 {
            saved.get_or_create(&label).set(s.time_saved_seconds as f64);
        }
    }
    registry.register(
        "template_tasks",
        "Tasks of golden-path templates that create services, by status",
        tasks,
    );
    registry.register(
        "template_first_deploys",
        "Services made from a template that reached production",
        deploys,
    );
    registry.register(
        "template_first_deploy_p50_seconds",
        "From a task's start to its service's first successful production deployment, median",
        p50,
    );
    registry.register(
        "template_first_deploy_p90_seconds",
        "From a task's start to its service's first successful production deployment, 90th percentile",
        p90,
    );
    registry.register(
        "template_time_saved_seconds",
        "What a template declares it saves (backstage.io/time-saved)",
        saved,
    );
}

/// The DORA figures of the last [`DORA_WINDOW_DAYS`] days for the whole
/// organisation, each team and each service with deployments.
async fn dora(registry: &mut Registry, sources: &Sources) {
    use paved_api::delivery::{Facts, Scope, load_facts, report};
    use std::collections::{BTreeMap, HashMap, HashSet};
    type F = Family<DoraLabels, Gauge<f64, std::sync::atomic::AtomicU64>>;
    let now = chrono::Utc::now();
    let window = paved_domain::dora::Window {
        from: now - chrono::Duration::days(DORA_WINDOW_DAYS),
        to: now,
    };
    let owners: Vec<(String, String)> =
        match sqlx::query_as("SELECT name, owner FROM catalog_services")
            .fetch_all(&sources.pool)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the catalog for /metrics");
                return;
            }
        };
    let facts = match load_facts(&sources.pool, None, window).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read delivery facts for /metrics");
            return;
        }
    };
    // Each team's and each deployed service's facts, split in one pass.
    let owner_of: HashMap<&str, &str> = owners
        .iter()
        .map(|(service, owner)| (service.as_str(), owner.as_str()))
        .collect();
    let deployed: HashSet<&str> = facts
        .deployments
        .iter()
        .map(|d| d.service.as_str())
        .collect();
    let mut scopes: Vec<(DoraLabels, Facts)> = Vec::new();
    let mut teams: BTreeMap<&str, Facts> = facts
        .split(|service| owner_of.get(service).copied())
        .into_iter()
        .collect();
    // Teams without facts have figures too (no deployments).
    for owner in owner_of.values() {
        teams.entry(owner).or_default();
    }
    for (team, facts) in teams {
        scopes.push((
            DoraLabels {
                scope: "team".into(),
                name: team.to_owned(),
            },
            facts,
        ));
    }
    let mut services: Vec<(&str, Facts)> = facts
        .split(|service| deployed.get(service).copied())
        .into_iter()
        .collect();
    services.sort_by(|a, b| a.0.cmp(b.0));
    for (service, facts) in services {
        scopes.push((
            DoraLabels {
                scope: "service".into(),
                name: service.to_owned(),
            },
            facts,
        ));
    }
    let (frequency, cfr, rework, deployments) =
        (F::default(), F::default(), F::default(), F::default());
    let (lead_median, lead_p90) = (F::default(), F::default());
    let (restore_median, restore_p90) = (F::default(), F::default());
    let org = DoraLabels {
        scope: "organisation".into(),
        name: "all".into(),
    };
    for (labels, facts) in std::iter::once((org, facts)).chain(scopes) {
        let r = report(
            &Scope::Organisation,
            &facts,
            window,
            sources.dora_attribution,
            false,
        );
        frequency.get_or_create(&labels).set(r.deployments_per_day);
        deployments
            .get_or_create(&labels)
            .set(f64::from(r.finished_deployments));
        if let Some(x) = r.change_failure_rate {
            cfr.get_or_create(&labels).set(x);
        }
        if let Some(x) = r.rework_rate {
            rework.get_or_create(&labels).set(x);
        }
        // One gauge per statistic, in seconds (a gauge has no quantile label).
        let spread = |median: &F, p90: &F, s: Option<paved_proto::v1::DoraSpread>| {
            if let Some(s) = s.filter(|s| s.count > 0) {
                median.get_or_create(&labels).set(s.median_hours * 3600.0);
                p90.get_or_create(&labels).set(s.p90_hours * 3600.0);
            }
        };
        spread(&lead_median, &lead_p90, r.lead_time);
        spread(&restore_median, &restore_p90, r.time_to_restore);
    }
    registry.register(
        "dora_deployments_per_day",
        "Successful production deployments per day over the last 30 days",
        frequency,
    );
    registry.register(
        "dora_production_deployments",
        "Finished production deployments over the last 30 days",
        deployments,
    );
    registry.register(
        "dora_change_failure_ratio",
        "Change failure rate (0..1) over the last 30 days",
        cfr,
    );
    for (name, help, family) in [
        (
            "dora_lead_time_median",
            "Median lead time for changes (commit to production) over the last 30 days",
            lead_median,
        ),
        (
            "dora_lead_time_p90",
            "90th percentile of the lead time for changes over the last 30 days",
            lead_p90,
        ),
        (
            "dora_time_to_restore_median",
            "Median time to restore (incident start to resolution) over the last 30 days",
            restore_median,
        ),
        (
            "dora_time_to_restore_p90",
            "90th percentile of the time to restore over the last 30 days",
            restore_p90,
        ),
    ] {
        registry.register_with_unit(
            name,
            help,
            prometheus_client::registry::Unit::Seconds,
            family,
        );
    }
    registry.register(
        "dora_rework_ratio",
        "Share of production deployments fixing a previous failure, last 30 days",
        rework,
    );
}

/// OpenMetrics when the scraper asks for it (Prometheus does, and keeps the
/// exemplars), else the classic text format 0.0.4 (`curl`, `promtool`,
/// older scrapers).
async fn metrics(State(sources): State<Sources>, headers: HeaderMap) -> impl IntoResponse {
    let body = render(&sources).await;
    if wants_openmetrics(&headers) {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text_format(&body),
        )
    }
}

/// Does `Accept` list OpenMetrics (with a weight above 0)?
fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        })
}

/// The OpenMetrics exposition in Prometheus' text format 0.0.4: counters
/// named by their `_total` samples, no `# UNIT`, `# EOF` or exemplars.
fn text_format(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            // Written with its TYPE, which may rename it.
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let name = if kind == "counter" && !name.ends_with("_total") {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map_or("", |(_, t)| t);
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        // A sample, without its exemplar.
        let sample = line.split_once(" # ").map_or(line, |(s, _)| s);
        out.push_str(sample);
        out.push('\n');
    }
    out
}

/// Serves `/metrics` on `addr` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sources: Sources,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, "metrics endpoint listening");
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .with_state(sources);
    let listener = crate::connections::LimitedListener::new(
        listener,
        crate::connections::Limits::METRICS,
        "metrics",
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENMETRICS: &str = "# HELP paved_commands Commands.\n# TYPE paved_commands counter\npaved_commands_total{outcome=\"applied\"} 3\n# HELP paved_apply_seconds Time.\n# TYPE paved_apply_seconds histogram\n# UNIT paved_apply_seconds seconds\npaved_apply_seconds_bucket{le=\"0.5\"} 1 # {trace_id=\"abc\"} 0.2\npaved_apply_seconds_bucket{le=\"+Inf\"} 1\npaved_apply_seconds_sum 0.2\npaved_apply_seconds_count 1\n# EOF\n";

    #[test]
    fn the_text_format_names_counters_by_their_samples_and_drops_what_it_lacks() {
        let text = text_format(OPENMETRICS);
        assert_eq!(
            text,
            "# HELP paved_commands_total Commands.\n# TYPE paved_commands_total counter\npaved_commands_total{outcome=\"applied\"} 3\n# HELP paved_apply_seconds Time.\n# TYPE paved_apply_seconds histogram\npaved_apply_seconds_bucket{le=\"0.5\"} 1\npaved_apply_seconds_bucket{le=\"+Inf\"} 1\npaved_apply_seconds_sum 0.2\npaved_apply_seconds_count 1\n"
        );
    }

    #[test]
    fn openmetrics_is_served_to_who_asks_for_it() {
        let accept = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, v.parse().unwrap());
            wants_openmetrics(&h)
        };
        // What Prometheus sends.
        assert!(accept(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(!accept("text/plain"));
        assert!(!accept("*/*"));
        assert!(!accept("application/openmetrics-text;q=0"));
        assert!(!wants_openmetrics(&HeaderMap::new()));
    }
}
