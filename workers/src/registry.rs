//! The one list of what runs beside the log: every read model (its
//! projection and shares) and every effect worker. `paved serve`, `paved
//! replay`, `paved replay --check` and the operator commands all take their
//! projections from here, so adding one is a line in [`read_models`], and
//! adding an effect a line in [`effects`].

use futures::future::{BoxFuture, LocalBoxFuture};
use paved_eventlog::audit::{SigningKey, TrustedKeys};
use paved_eventlog::{EventLog, Executor, SurveyKeys};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::effects::deployer::{ArgoConfig, Deployer};
use crate::effects::gitops::{GitopsWriter, ProvisioningConfig};
use crate::effects::plugin_webhooks::{WebhookConfig, WebhookDeliverer};
use crate::effects::scaffolder::{Registrar, TaskRunner, TemplatesConfig};
use crate::projections::{
    AuditProjection, CatalogProjection, DeliveryProjection, PluginsProjection,
    ProvisioningProjection, SurveysProjection, TemplatesProjection,
};
use crate::runtime::{self, RebuildProgress, RebuildReport, TableCheck};
use crate::{Projection, ProjectionError, ProjectionStatus, ProjectionWorker};

/// What the projections are built from (configuration, not connections).
#[derive(Clone)]
pub struct ProjectionNeeds {
    /// Opens sealed survey responses.
    pub survey_keys: SurveyKeys,
    /// How many ways the delivery read model is split (`PAVED_DELIVERY_PARTITIONS`).
    pub delivery_partitions: u32,
}

/// The connections a read model's jobs run with.
#[derive(Clone)]
pub struct Handles {
    pub pool: PgPool,
    pub log: EventLog,
    /// Whose quarantines the projections honour.
    pub trusted: TrustedKeys,
}

/// A job, started with the shutdown token.
pub type Job =
    Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, Result<(), ProjectionError>> + Send>;

/// A read model: its projection, once or in shares, behind one name.
pub trait ReadModel: Send + Sync {
    /// Its name (`paved replay NAME`, its checkpoint rows).
    fn name(&self) -> &'static str;

    /// A live worker per share, with its status.
    fn workers(&self, handles: &Handles) -> Vec<(Job, watch::Receiver<ProjectionStatus>)>;

    /// Rebuilds it from the log ([`runtime::rebuild`]).
    fn rebuild<'a>(
        &'a self,
        handles: &'a Handles,
        progress: &'a mut dyn FnMut(RebuildProgress),
    ) -> LocalBoxFuture<'a, Result<RebuildReport, ProjectionError>>;

    /// Compares it with a fresh replay ([`runtime::check`]).
    fn check<'a>(
        &'a self,
        handles: &'a Handles,
        progress: &'a mut dyn FnMut(RebuildProgress),
    ) -> LocalBoxFuture<'a, Result<(RebuildReport, Vec<TableCheck>), ProjectionError>>;
}

/// Every read model, in the order `paved replay --all` rebuilds them.
pub fn read_models(needs: &ProjectionNeeds) -> Vec<Box<dyn ReadModel>> {
    vec![
        Shares::whole(CatalogProjection),
        Shares::whole(SurveysProjection::new(needs.survey_keys.clone())),
        Shares::whole(AuditProjection),
        Box::new(Shares(DeliveryProjection::shares(
            needs.delivery_partitions,
        ))),
        Shares::whole(ProvisioningProjection),
        Shares::whole(TemplatesProjection),
        Shares::whole(PluginsProjection),
    ]
}

/// The names of every read model.
pub fn names() -> Vec<&'static str> {
    let needs = ProjectionNeeds {
        survey_keys: SurveyKeys::new(Vec::new()),
        delivery_partitions: 1,
    };
    read_models(&needs).iter().map(|m| m.name()).collect()
}

/// The read model called `name`; an error naming the known ones.
pub fn read_model(needs: &ProjectionNeeds, name: &str) -> Result<Box<dyn ReadModel>, String> {
    read_models(needs)
        .into_iter()
        .find(|m| m.name() == name)
        .ok_or_else(|| {
            format!(
                "unknown projection {name:?} (known: {})",
                names().join(", ")
            )
        })
}

/// Every share of one projection.
struct Shares<P>(Vec<P>);

impl<P: Projection + Clone> Shares<P> {
    fn whole(p: P) -> Box<dyn ReadModel> {
        Box::new(Self(vec![p]))
    }
}

impl<P: Projection + Clone> ReadModel for Shares<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn workers(&self, h: &Handles) -> Vec<(Job, watch::Receiver<ProjectionStatus>)> {
        self.0
            .iter()
            .map(|p| {
                let worker = ProjectionWorker::new(p.clone(), h.pool.clone(), h.log.clone())
                    .with_quarantine_keys(h.trusted.clone());
                let status = worker.status();
                let job: Job = Box::new(move |token| Box::pin(worker.run(token)));
                (job, status)
            })
            .collect()
    }

    fn rebuild<'a>(
        &'a self,
        h: &'a Handles,
        progress: &'a mut dyn FnMut(RebuildProgress),
    ) -> LocalBoxFuture<'a, Result<RebuildReport, ProjectionError>> {
        Box::pin(runtime::rebuild(
            &self.0, &h.pool, &h.log, &h.trusted, progress,
        ))
    }

    fn check<'a>(
        &'a self,
        h: &'a Handles,
        progress: &'a mut dyn FnMut(RebuildProgress),
    ) -> LocalBoxFuture<'a, Result<(RebuildReport, Vec<TableCheck>), ProjectionError>> {
        Box::pin(runtime::check(
            &self.0, &h.pool, &h.log, &h.trusted, progress,
        ))
    }
}

/// What the effect workers are built from.
pub struct EffectNeeds<'a> {
    pub pool: PgPool,
    pub log: EventLog,
    /// Where each environment's Argo CD is (`PAVED_ARGOCD_CONFIG`).
    pub argocd: &'a ArgoConfig,
    /// The GitOps repository and the provisioning rules (`PAVED_PROVISIONING_CONFIG`).
    pub provisioning: &'a ProvisioningConfig,
    /// Where `publish:git` puts repositories (`PAVED_TEMPLATES_CONFIG`).
    pub templates: &'a TemplatesConfig,
    /// The catalog import, for `catalog:register`.
    pub registrar: std::sync::Arc<dyn Registrar>,
    /// Signs the audit checkpoints; `None`: no checkpoints.
    pub checkpoints: Option<(SigningKey, std::time::Duration)>,
    /// How plugin webhooks are delivered (`PAVED_PLUGIN_WEBHOOK_*`).
    pub webhooks: WebhookConfig,
}

/// Every effect worker, by name; an error when one's configuration is wrong.
pub fn effects(needs: EffectNeeds<'_>) -> Result<Vec<(&'static str, Job)>, String> {
    let mut jobs: Vec<(&'static str, Job)> = Vec::new();
    let deployer = Deployer::new(
        Executor::new(needs.log.clone(), 10_000),
        needs.pool.clone(),
        needs.argocd,
    )
    .map_err(|e| format!("PAVED_ARGOCD_CONFIG: {e}"))?;
    jobs.push((
        "argocd-deployer",
        Box::new(move |token| {
            Box::pin(async move {
                deployer.run(token).await;
                Ok(())
            })
        }),
    ));
    // Without a repository nothing is planned: requests wait as requested.
    if let Some(writer) = GitopsWriter::new(
        Executor::new(needs.log.clone(), 10_000),
        needs.pool.clone(),
        needs.provisioning,
    ) {
        let writer = writer
            .with_argocd(needs.argocd)
            .map_err(|e| format!("PAVED_ARGOCD_CONFIG: {e}"))?;
        jobs.push((
            "gitops-writer",
            Box::new(move |token| {
                Box::pin(async move {
                    writer.run(token).await;
                    Ok(())
                })
            }),
        ));
    }
    let runner = TaskRunner::new(
        Executor::new(needs.log.clone(), 10_000),
        needs.pool.clone(),
        needs.templates.clone(),
        needs.provisioning.rules(),
        needs.argocd.environments.keys().cloned().collect(),
        needs.registrar.clone(),
    );
    jobs.push((
        "template-runner",
        Box::new(move |token| {
            Box::pin(async move {
                runner.run(token).await;
                Ok(())
            })
        }),
    ));
    let deliverer = WebhookDeliverer::new(
        Executor::new(needs.log.clone(), 10_000),
        needs.pool.clone(),
        needs.log.clone(),
        needs.webhooks,
    )?;
    jobs.push((
        "plugin-webhooks",
        Box::new(move |token| {
            Box::pin(async move {
                deliverer.run(token).await;
                Ok(())
            })
        }),
    ));
    if let Some((key, every)) = needs.checkpoints {
        let checkpointer = crate::checkpoint::Checkpointer::new(needs.log.clone(), key, every);
        jobs.push((
            "audit-checkpointer",
            Box::new(move |token| {
                Box::pin(async move {
                    checkpointer.run(token).await;
                    Ok(())
                })
            }),
        ));
    }
    Ok(jobs)
}
