//! The delivery projection: `delivery_deployments`, `delivery_changes` and
//! `delivery_incidents`, the facts `MetricsService` computes DORA from.
//!
//! A change is a row per commit and service (a monorepo commit may be a
//! change of several services). Which deployment ships a change (lead
//! time): the earliest-finished
//! successful production deployment of its service that finished after the
//! change was committed and either lists the change's SHA, or lists no
//! commits at all and finished after the change was merged (else
//! committed). The rule depends only on the facts, not on the order they
//! arrive in, so a batch recomputes the changes it can affect and a replay
//! gives the same rows as live processing, whatever the batch sizes.
//!
//! Partitioned (`PAVED_DELIVERY_PARTITIONS`), each share owns the
//! deployments and changes of the services that hash to it (lead time joins
//! a service's changes to its deployments, so those sit in one share) and
//! the incidents whose id does (an incident touches its own row only).
//!
//! A batch costs a handful of statements: deployments are folded in memory
//! (one insert for new ones, one update for the rest), changes are inserted
//! in one statement, then the affected changes' deployments are recomputed.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use paved_domain::Event;
use paved_domain::delivery::{ChangeEvent, DeploymentEvent, IncidentEvent, Outcome, PRODUCTION};
use paved_eventlog::StoredCommit;
use paved_eventlog::readmodel::Partition;
use sqlx::PgConnection;

use crate::runtime::{Projection, ProjectionError};

#[derive(Clone, Copy, Debug)]
pub struct DeliveryProjection {
    partition: Partition,
}

impl Default for DeliveryProjection {
    fn default() -> Self {
        Self::share(Partition::WHOLE)
    }
}

impl DeliveryProjection {
    /// The projection of one share of the read model.
    pub fn share(partition: Partition) -> Self {
        Self { partition }
    }

    /// Every share of the read model split `count` ways.
    pub fn shares(count: u32) -> Vec<Self> {
        Partition::all(count).into_iter().map(Self::share).collect()
    }

    /// The commits of `batch` this share owns. A deployment's later events
    /// do not name its service: it comes from the batch's own request, or
    /// else from the deployment's row, which this share wrote if the
    /// deployment is its own (its checkpoint is past the request). No row:
    /// another share's deployment.
    async fn owned(
        &self,
        conn: &mut PgConnection,
        batch: &[StoredCommit],
    ) -> Result<Vec<StoredCommit>, ProjectionError> {
        let mut services: HashMap<&str, String> = HashMap::new();
        let mut unknown: Vec<&str> = Vec::new();
        for stored in batch {
            let id = stored.commit.aggregate_id.as_str();
            for event in &stored.commit.events {
                match event {
                    Event::Deployment(
                        DeploymentEvent::Requested { target, .. }
                        | DeploymentEvent::Recorded { target, .. },
                    ) => {
                        services.insert(id, target.service.to_string());
                    }
                    Event::Deployment(_) if !services.contains_key(id) => unknown.push(id),
                    _ => {}
                }
            }
        }
        if !unknown.is_empty() {
            let rows: Vec<(String, String)> =
                sqlx::query_as("SELECT id, service FROM delivery_deployments WHERE id = ANY($1)")
                    .bind(&unknown)
                    .fetch_all(&mut *conn)
                    .await?;
            let found: HashMap<String, String> = rows.into_iter().collect();
            for id in unknown {
                if let Some(service) = found.get(id) {
                    services.entry(id).or_insert_with(|| service.clone());
                }
            }
        }
        let owns = |stored: &StoredCommit| {
            let id = stored.commit.aggregate_id.as_str();
            stored.commit.events.iter().any(|event| match event {
                Event::Deployment(_) => services.get(id).is_some_and(|s| self.partition.owns(s)),
                Event::Change(e) => e
                    .spec()
                    .is_some_and(|c| self.partition.owns(c.service.as_str())),
                Event::Incident(_) => self.partition.owns(id),
                _ => false,
            })
        };
        Ok(batch.iter().filter(|c| owns(c)).cloned().collect())
    }
}

/// A deployment row being built from this batch's events.
#[derive(Default)]
struct Row {
    /// Set when the batch holds the deployment's first event.
    created: Option<Created>,
    status: Option<&'static str>,
    application: Option<String>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    phase: Option<String>,
    health: Option<String>,
    message: Option<String>,
    deployed_revision: Option<String>,
    last_sequence: i64,
}

struct Created {
    service: String,
    environment: String,
    revision: String,
    commits: Vec<String>,
    rollback_of: Option<String>,
    source: String,
    requested_at: DateTime<Utc>,
    requested_by: String,
}

impl Row {
    fn finish(&mut self, o: &Outcome) {
        // A failure of a deployment this batch saw requested and never
        // started: it never reached Argo CD (see DeploymentStatus::NotStarted).
        let never_started = self.status == Some("requested") && self.started_at.is_none();
        self.status = Some(match (o.succeeded, never_started) {
            (true, _) => "succeeded",
            (false, true) => "not_started",
            (false, false) => "failed",
        });
        self.finished_at = Some(o.finished_at);
        self.phase = Some(o.phase.clone());
        self.health = Some(o.health.clone());
        self.message = Some(o.message.clone());
        self.deployed_revision = Some(o.revision.clone());
    }
}

impl Projection for DeliveryProjection {
    type Window = ();
    const NAME: &'static str = paved_eventlog::readmodel::DELIVERY;
    const CONTEXT: Option<&'static str> = Some("delivery");
    const TABLES: &'static [&'static str] = &[
        "delivery_deployments",
        "delivery_changes",
        "delivery_incidents",
    ];

    fn partition(&self) -> Partition {
        self.partition
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[StoredCommit],
    ) -> Result<(), ProjectionError> {
        let owned;
        let batch = if self.partition.count > 1 {
            owned = self.owned(conn, batch).await?;
            &owned[..]
        } else {
            batch
        };
        let mut rows: BTreeMap<String, Row> = BTreeMap::new();
        let mut changes = Changes::default();
        // Linked after the batch's new changes are in: a push and its pull
        // request can come in one batch.
        let mut linked = Changes::default();
        for stored in batch {
            let c = &stored.commit;
            let seq = stored.sequence as i64;
            let id = c.aggregate_id.as_str();
            for event in &c.events {
                match event {
                    Event::Deployment(e) => {
                        let row = rows.entry(id.to_owned()).or_default();
                        row.last_sequence = seq;
                        match e {
                            DeploymentEvent::Requested {
                                target,
                                requested_at,
                                ..
                            }
                            | DeploymentEvent::Recorded {
                                target,
                                started_at: requested_at,
                                ..
                            } => {
                                let source = match e {
                                    DeploymentEvent::Recorded { source, .. } => source.clone(),
                                    _ => "paved".to_owned(),
                                };
                                row.created = Some(Created {
                                    service: target.service.to_string(),
                                    environment: target.environment.to_string(),
                                    revision: target.revision.clone(),
                                    commits: target.commits.clone(),
                                    rollback_of: target
                                        .rollback_of
                                        .as_ref()
                                        .map(ToString::to_string),
                                    source,
                                    requested_at: *requested_at,
                                    requested_by: c.principal.clone(),
                                });
                                row.status = Some("requested");
                                if let DeploymentEvent::Recorded {
                                    started_at,
                                    outcome,
                                    ..
                                } = e
                                {
                                    row.started_at = Some(*started_at);
                                    row.finish(outcome);
                                }
                            }
                            DeploymentEvent::Started {
                                application,
                                started_at,
                            } => {
                                row.status = Some("running");
                                row.application = Some(application.clone());
                                row.started_at = Some(*started_at);
                            }
                            DeploymentEvent::Succeeded(o) | DeploymentEvent::Failed(o) => {
                                row.finish(o);
                            }
                        }
                    }
                    Event::Change(ChangeEvent::Recorded { sha, spec }) => {
                        changes.push(seq, sha.as_str(), spec);
                    }
                    Event::Change(ChangeEvent::PullRequestLinked { sha, spec }) => {
                        linked.push(seq, sha.as_str(), spec);
                    }
                    Event::Incident(e) => incident(conn, id, seq, e).await?,
                    _ => {}
                }
            }
        }
        insert_deployments(conn, &rows).await?;
        update_deployments(conn, &rows).await?;
        changes.insert(conn).await?;
        linked.replace(conn).await?;
        // What this batch's successful production deployments can ship:
        // new ones are in memory, earlier ones are read back.
        let mut shipped: Vec<(String, Vec<String>, DateTime<Utc>)> = Vec::new();
        let mut earlier: Vec<&str> = Vec::new();
        for (id, r) in rows.iter().filter(|(_, r)| r.status == Some("succeeded")) {
            match (&r.created, r.finished_at) {
                (Some(c), Some(f)) if c.environment == PRODUCTION => {
                    shipped.push((c.service.clone(), c.commits.clone(), f));
                }
                (Some(_), _) => {}
                (None, _) => earlier.push(id),
            }
        }
        if !earlier.is_empty() {
            shipped.extend(
                sqlx::query_as::<_, (String, Vec<String>, DateTime<Utc>)>(
                    "SELECT service, commits, finished_at FROM delivery_deployments
                      WHERE id = ANY($1) AND environment = 'production' AND status = 'succeeded'",
                )
                .bind(&earlier)
                .fetch_all(&mut *conn)
                .await?,
            );
        }
        // The changes (sha and service) whose shipping this batch can move.
        let mut shas = changes.sha.clone();
        shas.extend(linked.sha.iter().cloned());
        let mut of = changes.service.clone();
        of.extend(linked.service.iter().cloned());
        let mut services = Vec::new();
        let mut since: Option<DateTime<Utc>> = None;
        for (service, commits, finished_at) in shipped {
            if commits.is_empty() {
                services.push(service);
                since = Some(since.map_or(finished_at, |s| s.min(finished_at)));
            } else {
                // A deployment ships its own service's changes only.
                of.extend(std::iter::repeat_n(service, commits.len()));
                shas.extend(commits);
            }
        }
        if !shas.is_empty() || !services.is_empty() {
            ship(conn, &services, since, &shas, &of).await?;
        }
        Ok(())
    }
}

async fn insert_deployments(
    conn: &mut PgConnection,
    rows: &BTreeMap<String, Row>,
) -> Result<(), ProjectionError> {
    let new: Vec<(&String, &Row, &Created)> = rows
        .iter()
        .filter_map(|(id, r)| r.created.as_ref().map(|c| (id, r, c)))
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    // Arrays of arrays are not rectangular in general: commits go as JSON.
    let commits: Vec<serde_json::Value> = new
        .iter()
        .map(|(_, _, c)| serde_json::json!(c.commits))
        .collect();
    sqlx::query(
        "INSERT INTO delivery_deployments (id, service, environment, revision, commits,
             rollback_of, source, status, requested_at, started_at, finished_at, application,
             phase, health, message, deployed_revision, requested_by, last_sequence)
         SELECT u.id, u.service, u.environment, u.revision,
                ARRAY(SELECT jsonb_array_elements_text(u.commits)),
                u.rollback_of, u.source, u.status, u.requested_at, u.started_at, u.finished_at,
                u.application, u.phase, u.health, u.message, u.deployed_revision,
                u.requested_by, u.last_sequence
           FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[],
                       $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[],
                       $11::timestamptz[], $12::text[], $13::text[], $14::text[], $15::text[],
                       $16::text[], $17::text[], $18::bigint[])
             AS u(id, service, environment, revision, commits, rollback_of, source, status,
                  requested_at, started_at, finished_at, application, phase, health, message,
                  deployed_revision, requested_by, last_sequence)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(new.iter().map(|(id, _, _)| id.as_str()).collect::<Vec<_>>())
    .bind(
        new.iter()
            .map(|(_, _, c)| c.service.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        new.iter()
            .map(|(_, _, c)| c.environment.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        new.iter()
            .map(|(_, _, c)| c.revision.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(commits)
    .bind(
        new.iter()
            .map(|(_, _, c)| c.rollback_of.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        new.iter()
            .map(|(_, _, c)| c.source.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        new.iter()
            .map(|(_, r, _)| r.status.unwrap_or("requested"))
            .collect::<Vec<_>>(),
    )
    .bind(
        new.iter()
            .map(|(_, _, c)| c.requested_at)
            .collect::<Vec<_>>(),
    )
    .bind(new.iter().map(|(_, r, _)| r.started_at).collect::<Vec<_>>())
    .bind(
        new.iter()
            .map(|(_, r, _)| r.finished_at)
            .collect::<Vec<_>>(),
    )
    .bind(
        new.iter()
            .map(|(_, r, _)| r.application.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        new.iter()
            .map(|(_, r, _)| r.phase.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        new.iter()
            .map(|(_, r, _)| r.health.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        new.iter()
            .map(|(_, r, _)| r.message.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        new.iter()
            .map(|(_, r, _)| r.deployed_revision.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        new.iter()
            .map(|(_, _, c)| c.requested_by.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        new.iter()
            .map(|(_, r, _)| r.last_sequence)
            .collect::<Vec<_>>(),
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Steps of deployments created in earlier batches.
async fn update_deployments(
    conn: &mut PgConnection,
    rows: &BTreeMap<String, Row>,
) -> Result<(), ProjectionError> {
    let old: Vec<(&String, &Row)> = rows.iter().filter(|(_, r)| r.created.is_none()).collect();
    if old.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE delivery_deployments d SET
             -- Failed without ever starting (across batches): not started.
             status = CASE WHEN u.status = 'failed' AND d.status = 'requested'
                                AND u.started_at IS NULL AND d.started_at IS NULL
                           THEN 'not_started' ELSE coalesce(u.status, d.status) END,
             application = coalesce(u.application, d.application),
             started_at = coalesce(u.started_at, d.started_at),
             finished_at = coalesce(u.finished_at, d.finished_at),
             phase = coalesce(u.phase, d.phase),
             health = coalesce(u.health, d.health),
             message = coalesce(u.message, d.message),
             deployed_revision = coalesce(u.deployed_revision, d.deployed_revision),
             last_sequence = u.last_sequence
           FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[],
                       $6::text[], $7::text[], $8::text[], $9::text[], $10::bigint[])
             AS u(id, status, application, started_at, finished_at, phase, health, message,
                  deployed_revision, last_sequence)
          WHERE d.id = u.id",
    )
    .bind(old.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>())
    .bind(old.iter().map(|(_, r)| r.status).collect::<Vec<_>>())
    .bind(
        old.iter()
            .map(|(_, r)| r.application.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(old.iter().map(|(_, r)| r.started_at).collect::<Vec<_>>())
    .bind(old.iter().map(|(_, r)| r.finished_at).collect::<Vec<_>>())
    .bind(
        old.iter()
            .map(|(_, r)| r.phase.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        old.iter()
            .map(|(_, r)| r.health.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        old.iter()
            .map(|(_, r)| r.message.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        old.iter()
            .map(|(_, r)| r.deployed_revision.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(old.iter().map(|(_, r)| r.last_sequence).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Default)]
struct Changes {
    seq: Vec<i64>,
    sha: Vec<String>,
    service: Vec<String>,
    authored_at: Vec<Option<DateTime<Utc>>>,
    committed_at: Vec<DateTime<Utc>>,
    merged_at: Vec<Option<DateTime<Utc>>>,
    pr_number: Vec<i64>,
    pr_url: Vec<String>,
    author: Vec<String>,
    title: Vec<String>,
    backfill: Vec<bool>,
}

impl Changes {
    fn push(&mut self, seq: i64, sha: &str, spec: &paved_domain::delivery::ChangeSpec) {
        self.seq.push(seq);
        self.sha.push(sha.to_owned());
        self.service.push(spec.service.to_string());
        self.authored_at.push(spec.authored_at);
        self.committed_at.push(spec.committed_at);
        self.merged_at.push(spec.merged_at);
        self.pr_number.push(spec.pr_number as i64);
        self.pr_url.push(spec.pr_url.clone());
        self.author.push(spec.author.clone());
        self.title.push(spec.title.clone());
        self.backfill.push(spec.backfill);
    }

    async fn insert(&self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.sha.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO delivery_changes (sha, service, authored_at, committed_at, merged_at,
                 pr_number, pr_url, author, title, last_sequence, backfill)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[],
                                  $5::timestamptz[], $6::bigint[], $7::text[], $8::text[],
                                  $9::text[], $10::bigint[], $11::bool[])
             ON CONFLICT (sha, service) DO NOTHING",
        )
        .bind(&self.sha)
        .bind(&self.service)
        .bind(&self.authored_at)
        .bind(&self.committed_at)
        .bind(&self.merged_at)
        .bind(&self.pr_number)
        .bind(&self.pr_url)
        .bind(&self.author)
        .bind(&self.title)
        .bind(&self.seq)
        .bind(&self.backfill)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Replaces the account of changes already recorded (a pull request
    /// linked to a pushed commit); a row already past `seq` is left as is.
    async fn replace(&self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.sha.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE delivery_changes c
                SET authored_at = n.authored_at, committed_at = n.committed_at,
                    merged_at = n.merged_at, pr_number = n.pr_number, pr_url = n.pr_url,
                    author = n.author, title = n.title, backfill = n.backfill,
                    last_sequence = n.seq
               FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[],
                           $5::bigint[], $6::text[], $7::text[], $8::text[], $9::bool[],
                           $10::bigint[], $11::text[])
                    AS n(sha, authored_at, committed_at, merged_at, pr_number, pr_url, author,
                         title, backfill, seq, service)
              WHERE c.sha = n.sha AND c.service = n.service AND c.last_sequence < n.seq",
        )
        .bind(&self.sha)
        .bind(&self.authored_at)
        .bind(&self.committed_at)
        .bind(&self.merged_at)
        .bind(&self.pr_number)
        .bind(&self.pr_url)
        .bind(&self.author)
        .bind(&self.title)
        .bind(&self.backfill)
        .bind(&self.seq)
        .bind(&self.service)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// Recomputes which deployment ships the changes a batch can affect: its
/// own changes and the commits its deployments list (`shas` of the services
/// `of`, pairwise), and for `services` that got a deployment listing no
/// commits (the earliest finishing at `since`), their unshipped changes and
/// those shipped since.
///
/// Every lookup is by key or by index range, whatever the planner's
/// statistics say: a projection catching up fills its tables faster than
/// `ANALYZE` follows, and a plan from stale statistics (a sequential scan
/// per batch) made catch-up slow down as the table grew.
async fn ship(
    conn: &mut PgConnection,
    services: &[String],
    since: Option<DateTime<Utc>>,
    shas: &[String],
    of: &[String],
) -> Result<(), ProjectionError> {
    sqlx::query(
        "WITH affected AS (
             -- Three index lookups rather than one OR the planner would scan for.
             SELECT c.sha, c.service, c.committed_at, coalesce(c.merged_at, c.committed_at) AS merged
               FROM UNNEST($3::text[], $4::text[]) AS k(sha, service)
               JOIN delivery_changes c ON c.sha = k.sha AND c.service = k.service
             UNION
             SELECT sha, service, committed_at, coalesce(merged_at, committed_at)
               FROM delivery_changes WHERE service = ANY($1) AND deployment IS NULL
             UNION
             SELECT sha, service, committed_at, coalesce(merged_at, committed_at)
               FROM delivery_changes WHERE service = ANY($1) AND deployed_at >= $2
         ), chosen AS (
             SELECT a.sha, a.service, d.id, d.finished_at
               FROM affected a
               LEFT JOIN LATERAL (
                   SELECT id, finished_at FROM delivery_deployments d
                    WHERE d.service = a.service AND d.environment = 'production'
                      AND d.status = 'succeeded' AND d.finished_at >= a.committed_at
                      AND ((cardinality(d.commits) = 0 AND d.finished_at >= a.merged)
                           OR a.sha = ANY(d.commits))
                    ORDER BY d.finished_at, d.id
                    LIMIT 1
               ) d ON true
         )
         UPDATE delivery_changes c SET deployment = chosen.id, deployed_at = chosen.finished_at
           FROM chosen
          WHERE c.sha = chosen.sha AND c.service = chosen.service
            AND c.deployment IS DISTINCT FROM chosen.id",
    )
    .bind(services)
    .bind(since)
    .bind(shas)
    .bind(of)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn incident(
    conn: &mut PgConnection,
    id: &str,
    seq: i64,
    e: &IncidentEvent,
) -> Result<(), ProjectionError> {
    match e {
        IncidentEvent::Opened {
            title,
            services,
            severity,
            started_at,
            ..
        } => {
            let services: Vec<&str> = services.iter().map(|s| s.as_str()).collect();
            sqlx::query(
                "INSERT INTO delivery_incidents (id, title, services, severity, started_at,
                     caused_by, last_sequence)
                 VALUES ($1, $2, $3, $4, $5, '{}', $6) ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(title)
            .bind(&services)
            .bind(severity)
            .bind(started_at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
        }
        IncidentEvent::Linked { deployment } => {
            sqlx::query(
                "UPDATE delivery_incidents
                    SET caused_by = array_append(caused_by, $2), last_sequence = $3
                  WHERE id = $1 AND NOT ($2 = ANY(caused_by))",
            )
            .bind(id)
            .bind(deployment.as_str())
            .bind(seq)
            .execute(&mut *conn)
            .await?;
        }
        IncidentEvent::Resolved { resolved_at } => {
            sqlx::query(
                "UPDATE delivery_incidents SET resolved_at = $2, last_sequence = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(resolved_at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}
