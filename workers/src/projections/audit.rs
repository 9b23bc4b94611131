//! The audit projection: `audit_index`, one row per event of the whole log
//! (sequence, index in its commit, time, principal, aggregate, event type,
//! correlation id). `EventLogService.ReadEvents` looks filtered queries up
//! here and reads only the matching messages from the stream.

use paved_eventlog::StoredCommit;
use sqlx::PgConnection;

use crate::runtime::{Projection, ProjectionError};

#[derive(Clone, Copy, Debug, Default)]
pub struct AuditProjection;

impl Projection for AuditProjection {
    type Window = ();
    const NAME: &'static str = paved_eventlog::readmodel::AUDIT;
    const CONTEXT: Option<&'static str> = None;
    const TABLES: &'static [&'static str] = &["audit_index"];

    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[StoredCommit],
    ) -> Result<(), ProjectionError> {
        let rows = batch.iter().map(|s| s.commit.events.len()).sum();
        let mut sequence = Vec::with_capacity(rows);
        let mut idx = Vec::with_capacity(rows);
        let mut occurred_at = Vec::with_capacity(rows);
        let mut principal = Vec::with_capacity(rows);
        let mut aggregate_type = Vec::with_capacity(rows);
        let mut aggregate_id = Vec::with_capacity(rows);
        let mut event_type = Vec::with_capacity(rows);
        let mut correlation_id = Vec::with_capacity(rows);
        for s in batch {
            let c = &s.commit;
            for (i, e) in c.events.iter().enumerate() {
                sequence.push(s.sequence as i64);
                idx.push(i as i32);
                occurred_at.push(c.occurred_at);
                principal.push(c.principal.as_str());
                aggregate_type.push(c.kind.type_name());
                aggregate_id.push(c.aggregate_id.as_str());
                event_type.push(e.type_name());
                correlation_id.push(c.correlation_id.as_str());
            }
        }
        // Re-applying a batch after a crash finds its rows there already.
        sqlx::query(
            "INSERT INTO audit_index (sequence, idx, occurred_at, principal, aggregate_type,
                                      aggregate_id, event_type, correlation_id)
             SELECT * FROM UNNEST($1::bigint[], $2::int[], $3::timestamptz[], $4::text[],
                                  $5::text[], $6::text[], $7::text[], $8::text[])
             ON CONFLICT (sequence, idx) DO NOTHING",
        )
        .bind(&sequence)
        .bind(&idx)
        .bind(&occurred_at)
        .bind(&principal)
        .bind(&aggregate_type)
        .bind(&aggregate_id)
        .bind(&event_type)
        .bind(&correlation_id)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
