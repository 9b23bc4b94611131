//! Operations an operator performs (`paved projection skip`, `paved token create`).

use paved_domain::ops::{OpsCommand, Quarantine, Statement, quarantine_id};
use paved_domain::{Name, Principal};
use sha2::{Digest, Sha256};

use crate::settings::Settings;

/// What a quarantine appended.
#[derive(Clone, Debug)]
pub struct Quarantined {
    /// The stream sequence of the quarantine record.
    pub record_sequence: u64,
    pub key_id: String,
}

/// Sets the message at `sequence` aside for `projections` (empty: all):
/// signs a statement over its exact bytes with the audit key and appends it
/// as `operator:<actor>`. Only a message that does not decode qualifies; the
/// stream, the database and the key must exist (nothing is created).
pub async fn quarantine(
    settings: &Settings,
    sequence: u64,
    projections: &[String],
    reason: &str,
    actor: &str,
) -> anyhow::Result<Quarantined> {
    let known = paved_workers::registry::names();
    for p in projections {
        anyhow::ensure!(
            known.contains(&p.as_str()),
            "unknown projection {p:?} (one of {})",
            known.join(", ")
        );
    }
    let log = crate::secrets::existing_log(settings).await?;
    let pool = crate::secrets::existing_database(&settings.database_url).await?;
    let key = crate::secrets::existing_signing_key(settings, Some(&pool)).await?;
    let m = log
        .get(sequence)
        .await?
        .ok_or_else(|| anyhow::anyhow!("sequence {sequence} is not in the log"))?;
    anyhow::ensure!(
        paved_eventlog::codec::decode_commit(&m.payload).is_err(),
        "the message at sequence {sequence} is a commit that decodes: only messages that cannot be applied are quarantined"
    );
    let quarantine = key.quarantine(Statement {
        sequence,
        payload_sha256: Sha256::digest(&m.payload).to_vec(),
        projections: projections.to_vec(),
        reason: reason.to_owned(),
    });
    let mut meta = paved_eventlog::CommandMeta::new(
        format!("quarantine-{sequence}"),
        Principal::admin(format!("operator:{actor}")),
    );
    meta.reason = reason.to_owned();
    let id = Name::parse(&quarantine_id(sequence))?;
    let done = paved_eventlog::Executor::new(log, 16)
        .execute::<Option<Quarantine>>(&id, &OpsCommand::Quarantine(quarantine), &meta)
        .await?;
    Ok(Quarantined {
        record_sequence: done.sequence,
        key_id: key.id().to_owned(),
    })
}

/// Creates an API token for `principal` in the existing database at
/// `database_url` (nothing is created). A member's team must be a live team
/// of the catalog: a token for a mistyped team would authorize nothing and
/// say nothing.
pub async fn create_token(database_url: &str, principal: &Principal) -> anyhow::Result<String> {
    let pool = crate::secrets::existing_database(database_url).await?;
    if let paved_domain::Role::Member { team } = &principal.role {
        let known: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM catalog_teams WHERE name = $1 AND retired_reason IS NULL)",
        )
        .bind(team.as_str())
        .fetch_one(&pool)
        .await?;
        anyhow::ensure!(
            known,
            "--team {team}: no such team in the catalog (create it first: paved team create {team})"
        );
    }
    Ok(paved_api::auth::create_token(&pool, principal).await?)
}
