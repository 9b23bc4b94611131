//! Quarantined messages: a message of the log that cannot be applied (it
//! does not decode) can be set aside by an operator with a signed record
//! (aggregate type `quarantine`, id `seq-<sequence>`; see
//! [`paved_domain::ops`]). Projections skip such a message, and `audit
//! verify` reports it instead of calling it altered, only if the record's
//! signature verifies with a trusted audit key and it names the exact bytes
//! stored (their SHA-256).

use std::collections::HashMap;

use futures::StreamExt;
use paved_domain::ops::{OpsEvent, Quarantine, quarantine_id};
use paved_domain::{AggregateKind, Event, Name};
use sha2::{Digest, Sha256};

use crate::audit::TrustedKeys;
use crate::codec;
use crate::log::{EventLog, LogError};

/// The quarantine record of `sequence`, if there is one that holds for the
/// bytes `payload` and is signed by one of `keys`.
pub async fn find(
    log: &EventLog,
    keys: &TrustedKeys,
    sequence: u64,
    payload: &[u8],
) -> Result<Option<Quarantine>, LogError> {
    let Ok(id) = Name::parse(&quarantine_id(sequence)) else {
        return Ok(None);
    };
    let subject = log.subject(AggregateKind::Quarantine, &id);
    let Some(m) = log.last_on_subject(&subject).await? else {
        return Ok(None);
    };
    Ok(record(&m.payload).filter(|q| holds(keys, q, payload)))
}

/// Every quarantine record of the log (signed by one of `keys`), by the
/// sequence it sets aside. Whether it names the stored bytes is the caller's
/// check ([`holds_for`]).
pub async fn all(log: &EventLog, keys: &TrustedKeys) -> Result<HashMap<u64, Quarantine>, LogError> {
    let filter = format!(
        "{}.{}.{}.>",
        log.config().subject_prefix,
        AggregateKind::Quarantine.context(),
        AggregateKind::Quarantine.type_name()
    );
    let mut out = HashMap::new();
    let mut read = log
        .ordered(&filter, async_nats::jetstream::consumer::DeliverPolicy::All)
        .await?;
    if read.pending == 0 {
        return Ok(out);
    }
    let mut left = read.pending;
    while let Some(m) = read.messages.next().await {
        let m = m.map_err(|e| LogError::Unavailable(e.to_string()))?;
        if let Some(q) = record(&m.payload)
            && keys.verify_quarantine(&q).is_ok()
        {
            out.insert(q.statement.sequence, q);
        }
        left -= 1;
        if left == 0 {
            break;
        }
    }
    Ok(out)
}

/// Is `q` signed by one of `keys`, and about exactly `payload`?
pub fn holds(keys: &TrustedKeys, q: &Quarantine, payload: &[u8]) -> bool {
    match keys.verify_quarantine(q) {
        Ok(()) => holds_for(q, payload),
        Err(why) => {
            tracing::warn!(
                sequence = q.statement.sequence,
                why,
                "a quarantine record is not honoured"
            );
            false
        }
    }
}

/// Does `q` name exactly these bytes?
pub fn holds_for(q: &Quarantine, payload: &[u8]) -> bool {
    Sha256::digest(payload)[..] == q.statement.payload_sha256[..]
}

fn record(payload: &[u8]) -> Option<Quarantine> {
    let commit = codec::decode_commit(payload).ok()?;
    commit.events.into_iter().find_map(|e| match e {
        Event::Ops(OpsEvent::MessageQuarantined(q)) => Some(q),
        _ => None,
    })
}
