//! The plugins projection: `plugin_versions` (one row per published version
//! of a plugin's manifest) and `plugin_installations` (one row per
//! installation, with its grant and cursor). The API reads both; token
//! lookups join the installation to know its scopes and whether it stands.

use paved_domain::Event;
use paved_domain::plugins::installation::InstallationEvent;
use paved_domain::plugins::marketplace::{Delivery, PluginEvent};
use paved_domain::scope::Scope;
use paved_eventlog::StoredCommit;
use sqlx::PgConnection;

use crate::runtime::{Projection, ProjectionError};

#[derive(Clone, Copy, Debug, Default)]
pub struct PluginsProjection;

fn strings(scopes: &[Scope]) -> Vec<String> {
    scopes.iter().map(Scope::to_string).collect()
}

impl Projection for PluginsProjection {
    type Window = ();
    const NAME: &'static str = paved_eventlog::readmodel::PLUGINS;
    const CONTEXT: Option<&'static str> = Some("plugins");
    const TABLES: &'static [&'static str] = &[
        "plugin_versions",
        "plugin_installations",
        "plugin_dead_letters",
    ];

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
                    Event::Plugin(PluginEvent::Published(m)) => {
                        let v = semver::Version::parse(&m.version)
                            .unwrap_or_else(|_| semver::Version::new(0, 0, 0));
                        sqlx::query(
                            "INSERT INTO plugin_versions (plugin, version, major, minor, patch,
                                    prerelease, publisher, title, description, homepage, scopes,
                                    event_types, webhook_url, status, published_by, published_at,
                                    last_sequence)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                                     'active', $14, $15, $16)",
                        )
                        .bind(id)
                        .bind(&m.version)
                        .bind(v.major as i64)
                        .bind(v.minor as i64)
                        .bind(v.patch as i64)
                        .bind(v.pre.as_str())
                        .bind(m.publisher.as_str())
                        .bind(&m.title)
                        .bind(&m.description)
                        .bind(&m.homepage)
                        .bind(strings(&m.scopes))
                        .bind(&m.event_types)
                        .bind(match &m.delivery {
                            Delivery::Pull => "",
                            Delivery::Webhook { url } => url.as_str(),
                        })
                        .bind(&c.principal)
                        .bind(c.occurred_at)
                        .bind(seq)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Event::Plugin(
                        e @ (PluginEvent::Deprecated { version, reason }
                        | PluginEvent::Yanked { version, reason }),
                    ) => {
                        let status = match e {
                            PluginEvent::Yanked { .. } => "yanked",
                            _ => "deprecated",
                        };
                        sqlx::query(
                            "UPDATE plugin_versions SET status = $3, status_reason = $4, last_sequence = $5
                              WHERE plugin = $1 AND version = $2",
                        )
                        .bind(id)
                        .bind(version)
                        .bind(status)
                        .bind(reason)
                        .bind(seq)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Event::Installation(InstallationEvent::Installed(g)) => {
                        sqlx::query(
                            "INSERT INTO plugin_installations (name, plugin, version, scopes, team,
                                    status, installed_by, installed_at, updated_at, last_sequence,
                                    installed_sequence)
                             VALUES ($1, $2, $3, $4, $5, 'installed', $6, $7, $7, $8, $8)",
                        )
                        .bind(id)
                        .bind(g.plugin.as_str())
                        .bind(&g.version)
                        .bind(strings(&g.scopes))
                        .bind(g.team.as_ref().map(|t| t.as_str()).unwrap_or_default())
                        .bind(&c.principal)
                        .bind(c.occurred_at)
                        .bind(seq)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Event::Installation(InstallationEvent::Upgraded { version, scopes }) => {
                        sqlx::query(
                            "UPDATE plugin_installations SET version = $2, scopes = $3, updated_at = $4,
                                    last_sequence = $5, disabled_reason = '', failing_sequence = 0,
                                    failing_attempts = 0, retry_at = NULL
                              WHERE name = $1",
                        )
                        .bind(id)
                        .bind(version)
                        .bind(strings(scopes))
                        .bind(c.occurred_at)
                        .bind(seq)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Event::Installation(InstallationEvent::Acknowledged { sequence }) => {
                        sqlx::query(
                            "UPDATE plugin_installations SET cursor = GREATEST(cursor, $2),
                                    updated_at = $3, last_sequence = $4,
                                    failing_sequence = CASE WHEN failing_sequence <= $2 THEN 0 ELSE failing_sequence END,
                                    failing_attempts = CASE WHEN failing_sequence <= $2 THEN 0 ELSE failing_attempts END,
                                    retry_at = CASE WHEN failing_sequence <= $2 THEN NULL ELSE retry_at END
                              WHERE name = $1",
                        )
                        .bind(id)
                        .bind(*sequence as i64)
                        .bind(c.occurred_at)
                        .bind(seq)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Event::Installation(InstallationEvent::Uninstalled { reason }) => {
                        sqlx::query(
                            "UPDATE plugin_installations SET status = 'uninstalled',
                                    uninstalled_reason = $2, updated_at = $3, last_sequence = $4
                              WHERE name = $1",
                        )
                        .bind(id)
                        .bind(reason)
                        .bind(c.occurred_at)
                        .bind(seq)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Event::Installation(e) => {
                        apply_webhook(conn, id, e, c.occurred_at, seq).await?
                    }
                    _ => {}
                }
            }
            if let Some(Event::Installation(
                InstallationEvent::Installed(_) | InstallationEvent::Upgraded { .. },
            )) = c.events.first()
            {
                // The pinned version's webhook (this projection's own table).
                sqlx::query(
                    "UPDATE plugin_installations i SET webhook_url = v.webhook_url
                       FROM plugin_versions v
                      WHERE i.name = $1 AND v.plugin = i.plugin AND v.version = i.version",
                )
                .bind(id)
                .execute(&mut *conn)
                .await?;
            }
        }
        Ok(())
    }
}

/// A webhook delivery worker's reports.
async fn apply_webhook(
    conn: &mut PgConnection,
    id: &str,
    e: &InstallationEvent,
    at: chrono::DateTime<chrono::Utc>,
    seq: i64,
) -> Result<(), ProjectionError> {
    match e {
        InstallationEvent::WebhookAttemptFailed {
            attempt,
            number,
            retry_at,
        } => {
            sqlx::query(
                "UPDATE plugin_installations SET failing_sequence = $2, failing_attempts = $3,
                        retry_at = $4, updated_at = $5, last_sequence = $6
                  WHERE name = $1",
            )
            .bind(id)
            .bind(attempt.sequence as i64)
            .bind(*number as i32)
            .bind(retry_at)
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
        }
        InstallationEvent::WebhookDeadLettered { attempt, attempts } => {
            sqlx::query(
                "INSERT INTO plugin_dead_letters (installation, sequence, attempts, status, error,
                        dead_at, last_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (installation, sequence) DO UPDATE SET attempts = $3, status = $4,
                        error = $5, dead_at = $6, last_sequence = $7",
            )
            .bind(id)
            .bind(attempt.sequence as i64)
            .bind(*attempts as i32)
            .bind(attempt.status as i32)
            .bind(&attempt.error)
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
        }
        InstallationEvent::WebhookEndpointDisabled { attempt } => {
            sqlx::query(
                "UPDATE plugin_installations SET disabled_reason = $2, updated_at = $3,
                        last_sequence = $4
                  WHERE name = $1",
            )
            .bind(id)
            .bind(format!(
                "the endpoint answered {} to sequence {}",
                attempt.status, attempt.sequence
            ))
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
        }
        InstallationEvent::WebhookReplayRequested { sequence } => {
            sqlx::query(
                "UPDATE plugin_dead_letters SET replay_pending = true, last_sequence = $3
                  WHERE installation = $1 AND sequence = $2",
            )
            .bind(id)
            .bind(*sequence as i64)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
        }
        InstallationEvent::WebhookReplayed { attempt, delivered } => {
            sqlx::query(
                "UPDATE plugin_dead_letters SET replay_pending = false,
                        delivered = delivered OR $3, status = $4, error = $5, last_sequence = $6
                  WHERE installation = $1 AND sequence = $2",
            )
            .bind(id)
            .bind(attempt.sequence as i64)
            .bind(*delivered)
            .bind(attempt.status as i32)
            .bind(&attempt.error)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
        }
        _ => {}
    }
    Ok(())
}
