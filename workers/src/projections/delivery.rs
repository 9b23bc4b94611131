//! The delivery projection: `delivery_deployments`, `delivery_changes` and
//! `delivery_incidents`, the facts `MetricsService` computes DORA from.
//!
//! Which changes a deployment ships (lead time): when a production
//! deployment succeeds, it ships the changes it lists; one that lists none
//! ships every change of its service merged (else committed) at or before
//! its finish that no earlier production deployment shipped. A change
//! recorded after a deployment that listed it is matched when it arrives.

use chrono::{DateTime, Utc};
use paved_domain::Event;
use paved_domain::delivery::{
    ChangeEvent, DeploymentEvent, IncidentEvent, Outcome, PRODUCTION, Target,
};
use paved_eventlog::StoredCommit;
use sqlx::PgConnection;

use crate::runtime::{Projection, ProjectionError};

#[derive(Clone, Copy, Debug, Default)]
pub struct DeliveryProjection;

impl Projection for DeliveryProjection {
    const NAME: &'static str = paved_eventlog::readmodel::DELIVERY;
    const CONTEXT: Option<&'static str> = Some("delivery");
    const TABLES: &'static [&'static str] = &[
        "delivery_deployments",
        "delivery_changes",
        "delivery_incidents",
    ];

    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[StoredCommit],
    ) -> Result<(), ProjectionError> {
        for stored in batch {
            let c = &stored.commit;
            let seq = stored.sequence as i64;
            let id = c.aggregate_id.as_str();
            for event in &c.events {
                match event {
                    Event::Deployment(e) => deployment(conn, id, &c.principal, seq, e).await?,
                    Event::Change(ChangeEvent::Recorded { sha, spec }) => {
                        sqlx::query(
                            "INSERT INTO delivery_changes (sha, service, authored_at, committed_at,
                                 merged_at, pr_number, pr_url, author, title, last_sequence)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                             ON CONFLICT (sha) DO NOTHING",
                        )
                        .bind(sha.as_str())
                        .bind(spec.service.as_str())
                        .bind(spec.authored_at)
                        .bind(spec.committed_at)
                        .bind(spec.merged_at)
                        .bind(spec.pr_number as i64)
                        .bind(&spec.pr_url)
                        .bind(&spec.author)
                        .bind(&spec.title)
                        .bind(seq)
                        .execute(&mut *conn)
                        .await?;
                        // Shipped already by a deployment that listed it?
                        sqlx::query(
                            "UPDATE delivery_changes c SET deployment = d.id, deployed_at = d.finished_at
                               FROM (SELECT id, finished_at FROM delivery_deployments
                                      WHERE service = $2 AND environment = $3 AND status = 'succeeded'
                                        AND $1 = ANY(commits)
                                      ORDER BY finished_at LIMIT 1) d
                              WHERE c.sha = $1 AND c.deployment IS NULL",
                        )
                        .bind(sha.as_str())
                        .bind(spec.service.as_str())
                        .bind(PRODUCTION)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Event::Incident(e) => incident(conn, id, seq, e).await?,
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

async fn insert_deployment(
    conn: &mut PgConnection,
    id: &str,
    target: &Target,
    source: &str,
    requested_at: DateTime<Utc>,
    principal: &str,
    seq: i64,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO delivery_deployments (id, service, environment, revision, commits,
             rollback_of, source, status, requested_at, requested_by, last_sequence)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'requested', $8, $9, $10)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(target.service.as_str())
    .bind(target.environment.as_str())
    .bind(&target.revision)
    .bind(&target.commits)
    .bind(target.rollback_of.as_ref().map(|n| n.as_str()))
    .bind(source)
    .bind(requested_at)
    .bind(principal)
    .bind(seq)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn finish(
    conn: &mut PgConnection,
    id: &str,
    o: &Outcome,
    seq: i64,
) -> Result<(), ProjectionError> {
    let row: Option<(String, String, Vec<String>)> = sqlx::query_as(
        "UPDATE delivery_deployments
            SET status = $2, finished_at = $3, phase = $4, health = $5, message = $6,
                deployed_revision = $7, last_sequence = $8
          WHERE id = $1
          RETURNING service, environment, commits",
    )
    .bind(id)
    .bind(if o.succeeded { "succeeded" } else { "failed" })
    .bind(o.finished_at)
    .bind(&o.phase)
    .bind(&o.health)
    .bind(&o.message)
    .bind(&o.revision)
    .bind(seq)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((service, environment, commits)) = row else {
        return Ok(());
    };
    if o.succeeded && environment == PRODUCTION {
        sqlx::query(
            "UPDATE delivery_changes SET deployment = $1, deployed_at = $2
              WHERE service = $3 AND deployment IS NULL
                AND CASE WHEN cardinality($4::text[]) > 0 THEN sha = ANY($4)
                         ELSE coalesce(merged_at, committed_at) <= $2 END",
        )
        .bind(id)
        .bind(o.finished_at)
        .bind(&service)
        .bind(&commits)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn deployment(
    conn: &mut PgConnection,
    id: &str,
    principal: &str,
    seq: i64,
    e: &DeploymentEvent,
) -> Result<(), ProjectionError> {
    match e {
        DeploymentEvent::Requested {
            target,
            requested_at,
            ..
        } => insert_deployment(conn, id, target, "paved", *requested_at, principal, seq).await,
        DeploymentEvent::Recorded {
            target,
            source,
            started_at,
            outcome,
            ..
        } => {
            insert_deployment(conn, id, target, source, *started_at, principal, seq).await?;
            sqlx::query("UPDATE delivery_deployments SET started_at = $2 WHERE id = $1")
                .bind(id)
                .bind(started_at)
                .execute(&mut *conn)
                .await?;
            finish(conn, id, outcome, seq).await
        }
        DeploymentEvent::Started {
            application,
            started_at,
        } => {
            sqlx::query(
                "UPDATE delivery_deployments
                    SET status = 'running', application = $2, started_at = $3, last_sequence = $4
                  WHERE id = $1",
            )
            .bind(id)
            .bind(application)
            .bind(started_at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
        DeploymentEvent::Succeeded(o) | DeploymentEvent::Failed(o) => {
            finish(conn, id, o, seq).await
        }
    }
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
