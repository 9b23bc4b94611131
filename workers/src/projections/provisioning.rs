//! The provisioning projection: `provisioning_requests` (one row per request
//! of a team's tenancy, with its plan's files and diff) and
//! `provisioning_resources` (one row per resource of a team). The GitOps
//! writer finds its queue here; the API reads both.

use paved_domain::Event;
use paved_domain::provisioning::{Action, ProvisioningEvent, RequestState, ResourceStatus};
use paved_eventlog::StoredCommit;
use sqlx::PgConnection;

use crate::runtime::{Projection, ProjectionError};

#[derive(Clone, Copy, Debug, Default)]
pub struct ProvisioningProjection;

impl Projection for ProvisioningProjection {
    type Window = ();
    const NAME: &'static str = paved_eventlog::readmodel::PROVISIONING;
    const CONTEXT: Option<&'static str> = Some("provisioning");
    const TABLES: &'static [&'static str] = &["provisioning_requests", "provisioning_resources"];

    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[StoredCommit],
    ) -> Result<(), ProjectionError> {
        for stored in batch {
            let c = &stored.commit;
            let team = c.aggregate_id.as_str();
            let seq = stored.sequence as i64;
            for event in &c.events {
                if let Event::Provisioning(e) = event {
                    apply(conn, team, e, c.occurred_at, seq).await?;
                }
            }
        }
        Ok(())
    }
}

async fn set_state(
    conn: &mut PgConnection,
    team: &str,
    number: u64,
    state: RequestState,
    at: chrono::DateTime<chrono::Utc>,
    seq: i64,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE provisioning_requests SET state = $3, updated_at = $4, last_sequence = $5
          WHERE team = $1 AND number = $2",
    )
    .bind(team)
    .bind(number as i64)
    .bind(state.as_str())
    .bind(at)
    .bind(seq)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn apply(
    conn: &mut PgConnection,
    team: &str,
    e: &ProvisioningEvent,
    at: chrono::DateTime<chrono::Utc>,
    seq: i64,
) -> Result<(), ProjectionError> {
    let number = e.number();
    match e {
        ProvisioningEvent::Requested {
            spec,
            action,
            requested_by,
            ..
        } => {
            let service = spec
                .service
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default();
            sqlx::query(
                "INSERT INTO provisioning_requests (team, number, resource, kind, environment,
                        service, size, action, state, requested_by, requested_at, updated_at, last_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'requested', $9, $10, $10, $11)",
            )
            .bind(team)
            .bind(number as i64)
            .bind(spec.id())
            .bind(spec.kind.as_str())
            .bind(spec.environment.as_str())
            .bind(&service)
            .bind(&spec.size)
            .bind(action.as_str())
            .bind(requested_by)
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
            // A creation makes the resource pending; a change or a
            // decommission keeps what is live until it is applied.
            sqlx::query(
                "INSERT INTO provisioning_resources (team, resource, kind, environment, service,
                        size, status, open_request, updated_at, last_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9)
                 ON CONFLICT (team, resource) DO UPDATE SET
                    open_request = EXCLUDED.open_request,
                    status = CASE WHEN $10 THEN 'pending' ELSE provisioning_resources.status END,
                    size = CASE WHEN $10 THEN EXCLUDED.size ELSE provisioning_resources.size END,
                    updated_at = EXCLUDED.updated_at, last_sequence = EXCLUDED.last_sequence",
            )
            .bind(team)
            .bind(spec.id())
            .bind(spec.kind.as_str())
            .bind(spec.environment.as_str())
            .bind(&service)
            .bind(&spec.size)
            .bind(number as i64)
            .bind(at)
            .bind(seq)
            .bind(*action == Action::Create)
            .execute(&mut *conn)
            .await?;
        }
        ProvisioningEvent::Planned { plan, approval, .. } => {
            let files: Vec<serde_json::Value> = plan
                .files
                .iter()
                .map(|f| serde_json::json!({ "path": f.path, "deleted": f.content.is_none() }))
                .collect();
            sqlx::query(
                "UPDATE provisioning_requests SET state = 'planned', approver = $3, approved_by = '',
                        plan_base = $4, plan_files = $5, plan_diff = $6, drift = $7,
                        updated_at = $8, last_sequence = $9
                  WHERE team = $1 AND number = $2",
            )
            .bind(team)
            .bind(number as i64)
            .bind(approval.approver.as_str())
            .bind(&plan.base)
            .bind(serde_json::Value::Array(files))
            .bind(&plan.diff)
            .bind(serde_json::json!(plan.drift))
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
        }
        ProvisioningEvent::Approved { by, .. } => {
            sqlx::query(
                "UPDATE provisioning_requests SET state = 'approved', approved_by = $3,
                        updated_at = $4, last_sequence = $5
                  WHERE team = $1 AND number = $2",
            )
            .bind(team)
            .bind(number as i64)
            .bind(by)
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
        }
        ProvisioningEvent::ApplyStarted { .. } => {
            set_state(conn, team, number, RequestState::Applying, at, seq).await?;
        }
        ProvisioningEvent::Verified { .. } => {
            set_state(conn, team, number, RequestState::Verified, at, seq).await?;
        }
        ProvisioningEvent::Applied { commit, .. } => {
            let (resource, action, size): (String, String, String) = sqlx::query_as(
                "UPDATE provisioning_requests SET state = 'applied', commit_sha = $3,
                        updated_at = $4, last_sequence = $5
                  WHERE team = $1 AND number = $2 RETURNING resource, action, size",
            )
            .bind(team)
            .bind(number as i64)
            .bind(commit)
            .bind(at)
            .bind(seq)
            .fetch_one(&mut *conn)
            .await?;
            let status = if action == Action::Decommission.as_str() {
                ResourceStatus::Decommissioned
            } else {
                ResourceStatus::Live
            };
            sqlx::query(
                "UPDATE provisioning_resources SET status = $3, commit_sha = $4, open_request = NULL,
                        size = CASE WHEN $3 = 'live' THEN $5 ELSE size END,
                        updated_at = $6, last_sequence = $7
                  WHERE team = $1 AND resource = $2",
            )
            .bind(team)
            .bind(&resource)
            .bind(status.as_str())
            .bind(commit)
            .bind(&size)
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
        }
        ProvisioningEvent::Rejected { reason, .. } | ProvisioningEvent::Failed { reason, .. } => {
            let state = if matches!(e, ProvisioningEvent::Rejected { .. }) {
                RequestState::Rejected
            } else {
                RequestState::Failed
            };
            let (resource, action, was): (String, String, String) = sqlx::query_as(
                "UPDATE provisioning_requests r SET state = $3, reason = $4, updated_at = $5,
                        last_sequence = $6
                   FROM (SELECT state FROM provisioning_requests WHERE team = $1 AND number = $2) old
                  WHERE r.team = $1 AND r.number = $2
              RETURNING r.resource, r.action, old.state",
            )
            .bind(team)
            .bind(number as i64)
            .bind(state.as_str())
            .bind(reason)
            .bind(at)
            .bind(seq)
            .fetch_one(&mut *conn)
            .await?;
            // A creation that never landed holds nothing.
            let abandoned =
                action == Action::Create.as_str() && was != RequestState::Applied.as_str();
            sqlx::query(
                "UPDATE provisioning_resources SET
                        open_request = CASE WHEN open_request = $3 THEN NULL ELSE open_request END,
                        status = CASE WHEN $4 AND status = 'pending' THEN 'abandoned' ELSE status END,
                        updated_at = $5, last_sequence = $6
                  WHERE team = $1 AND resource = $2",
            )
            .bind(team)
            .bind(&resource)
            .bind(number as i64)
            .bind(abandoned)
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}
