//! The templates projection: `template_versions` (one row per published
//! version, without its files, which stay in the log), `template_tasks`
//! (one row per task; the task runner finds its queue here) and
//! `template_task_steps` (one row per step of a task). The API reads all
//! three.

use chrono::{DateTime, Utc};
use paved_domain::Event;
use paved_domain::templates::library::TemplateEvent;
use paved_domain::templates::task::{StepStatus, TaskEvent};
use paved_domain::templates::{self, check_template};
use paved_eventlog::StoredCommit;
use serde_json::{Value, json};
use sqlx::PgConnection;

use crate::runtime::{Projection, ProjectionError};

#[derive(Clone, Copy, Debug, Default)]
pub struct TemplatesProjection;

impl Projection for TemplatesProjection {
    type Window = ();
    const NAME: &'static str = paved_eventlog::readmodel::TEMPLATES;
    const CONTEXT: Option<&'static str> = Some("templates");
    const TABLES: &'static [&'static str] =
        &["template_versions", "template_tasks", "template_task_steps"];

    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[StoredCommit],
    ) -> Result<(), ProjectionError> {
        for stored in batch {
            let c = &stored.commit;
            let id = c.aggregate_id.as_str();
            let seq = stored.sequence as i64;
            for event in &c.events {
                match event {
                    Event::Template(TemplateEvent::Published(v)) => {
                        let doc = &v.document;
                        let steps: Vec<Value> = check_template(doc)
                            .map(|t| {
                                t.steps
                                    .iter()
                                    .map(
                                        |s| json!({"id": s.id, "name": s.name, "action": s.action}),
                                    )
                                    .collect()
                            })
                            .unwrap_or_default();
                        let files: Vec<&str> = v.files.iter().map(|(p, _)| p.as_str()).collect();
                        let tags: Vec<String> = doc["metadata"]["tags"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|t| t.as_str().map(str::to_owned))
                            .collect();
                        sqlx::query(
                            "INSERT INTO template_versions (name, version, title, description, owner,
                                    tags, digest, time_saved_seconds, steps, files, document,
                                    published_by, published_at, last_sequence)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                        )
                        .bind(id)
                        .bind(v.version as i64)
                        .bind(doc["metadata"]["title"].as_str().unwrap_or_default())
                        .bind(doc["metadata"]["description"].as_str().unwrap_or_default())
                        .bind(v.owner().map(|o| o.to_string()).unwrap_or_default())
                        .bind(&tags)
                        .bind(&v.digest)
                        .bind(templates::time_saved(doc).unwrap_or(0) as i64)
                        .bind(Value::Array(steps))
                        .bind(json!(files))
                        .bind(doc)
                        .bind(&c.principal)
                        .bind(c.occurred_at)
                        .bind(seq)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Event::Task(e) => {
                        apply_task(conn, id, e, &c.principal, c.occurred_at, seq).await?
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// `component:default/payments-api` (a catalog:register step's output) → `payments-api`.
fn registered_service(output: &Value) -> Option<String> {
    let entity = output["entityRef"].as_str()?;
    let r = paved_domain::catalog::EntityRef::parse(entity, Some("Component"), "default").ok()?;
    (r.kind.eq_ignore_ascii_case("component") && r.namespace == "default").then_some(r.name)
}

async fn touch(
    conn: &mut PgConnection,
    task: &str,
    status: Option<&str>,
    at: DateTime<Utc>,
    seq: i64,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE template_tasks SET status = COALESCE($2, status), updated_at = $3, last_sequence = $4,
                finished_at = CASE WHEN $2 IN ('completed', 'failed') THEN $3
                                   WHEN $2 = 'running' THEN NULL ELSE finished_at END
          WHERE id = $1",
    )
    .bind(task)
    .bind(status)
    .bind(at)
    .bind(seq)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn apply_task(
    conn: &mut PgConnection,
    task: &str,
    e: &TaskEvent,
    principal: &str,
    at: DateTime<Utc>,
    seq: i64,
) -> Result<(), ProjectionError> {
    match e {
        TaskEvent::Created {
            template,
            version,
            team,
            parameters,
            steps,
            upgrade,
        } => {
            sqlx::query(
                "INSERT INTO template_tasks (id, template, version, team, service, kind,
                        upgrade_from_version, status, requested_by, parameters, created_at,
                        updated_at, last_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $9, $10, $10, $11)",
            )
            .bind(task)
            .bind(template.as_str())
            .bind(*version as i64)
            .bind(team.as_str())
            .bind(
                upgrade
                    .as_ref()
                    .map(|u| u.service.to_string())
                    .unwrap_or_default(),
            )
            .bind(if upgrade.is_some() {
                "upgrade"
            } else {
                "create"
            })
            .bind(upgrade.as_ref().map_or(0, |u| u.from_version as i64))
            .bind(principal)
            .bind(Value::Object(parameters.clone()))
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
            let positions: Vec<i32> = (0..steps.len() as i32).collect();
            let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
            let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
            let actions: Vec<&str> = steps.iter().map(|s| s.action.as_str()).collect();
            sqlx::query(
                "INSERT INTO template_task_steps (task, position, id, name, action, status)
                 SELECT $1, p, i, n, a, 'pending' FROM unnest($2::int[], $3::text[], $4::text[], $5::text[]) AS s(p, i, n, a)",
            )
            .bind(task)
            .bind(&positions)
            .bind(&ids)
            .bind(&names)
            .bind(&actions)
            .execute(&mut *conn)
            .await?;
        }
        TaskEvent::StepStarted { step, attempt } => {
            sqlx::query(
                "UPDATE template_task_steps SET status = $3, attempts = $4, started_at = $5,
                        finished_at = NULL, reason = ''
                  WHERE task = $1 AND id = $2",
            )
            .bind(task)
            .bind(step)
            .bind(StepStatus::Running.as_str())
            .bind(*attempt as i32)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            touch(conn, task, None, at, seq).await?;
        }
        TaskEvent::StepFinished { step, output, log } => {
            let action: Option<String> = sqlx::query_scalar(
                "UPDATE template_task_steps SET status = $3, output = $4, log = $5, reason = '',
                        finished_at = $6
                  WHERE task = $1 AND id = $2 RETURNING action",
            )
            .bind(task)
            .bind(step)
            .bind(StepStatus::Done.as_str())
            .bind(output)
            .bind(log)
            .bind(at)
            .fetch_optional(&mut *conn)
            .await?;
            if action.as_deref() == Some("catalog:register")
                && let Some(service) = registered_service(output)
            {
                sqlx::query("UPDATE template_tasks SET service = $2 WHERE id = $1")
                    .bind(task)
                    .bind(service)
                    .execute(&mut *conn)
                    .await?;
            }
            touch(conn, task, None, at, seq).await?;
        }
        TaskEvent::StepSkipped { step, why } => {
            sqlx::query(
                "UPDATE template_task_steps SET status = $3, reason = $4, finished_at = $5
                  WHERE task = $1 AND id = $2",
            )
            .bind(task)
            .bind(step)
            .bind(StepStatus::Skipped.as_str())
            .bind(why)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            touch(conn, task, None, at, seq).await?;
        }
        TaskEvent::StepFailed { step, reason, log } => {
            sqlx::query(
                "UPDATE template_task_steps SET status = $3, reason = $4, log = $5, finished_at = $6
                  WHERE task = $1 AND id = $2",
            )
            .bind(task)
            .bind(step)
            .bind(StepStatus::Failed.as_str())
            .bind(reason)
            .bind(log)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            touch(conn, task, Some("failed"), at, seq).await?;
        }
        TaskEvent::Retried { step } => {
            sqlx::query(
                "UPDATE template_task_steps SET status = $3, finished_at = NULL
                  WHERE task = $1 AND id = $2",
            )
            .bind(task)
            .bind(step)
            .bind(StepStatus::Pending.as_str())
            .execute(&mut *conn)
            .await?;
            touch(conn, task, Some("running"), at, seq).await?;
        }
        TaskEvent::Completed { output } => {
            sqlx::query("UPDATE template_tasks SET output = $2 WHERE id = $1")
                .bind(task)
                .bind(output)
                .execute(&mut *conn)
                .await?;
            touch(conn, task, Some("completed"), at, seq).await?;
        }
    }
    Ok(())
}
