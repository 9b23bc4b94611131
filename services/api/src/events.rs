//! `paved.v1.EventLogService`: filtered reads of the log and a resumable live
//! tail. Both stream through a bounded channel, so a slow client slows the
//! read instead of making the server buffer; a client that goes away (or a
//! deadline that passes) stops it.

use std::collections::BTreeSet;

use async_nats::jetstream::consumer::DeliverPolicy;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use paved_domain::{AggregateKind, Event, Name};
use paved_eventlog::audit::TrustedKeys;
use paved_eventlog::codec::{self, time_from_proto};
use paved_eventlog::{EventLog, StoredCommit, quarantine};
use paved_proto::v1 as pb;
use pb::event_log_service_server::EventLogService;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::auth::{Authenticator, Caller};
use crate::error;

/// Records buffered per stream before the reader waits for the client.
const BUFFER: usize = 512;

#[derive(Clone)]
pub struct EventLogApi {
    log: EventLog,
    auth: Authenticator,
    pool: PgPool,
    quarantine_keys: TrustedKeys,
    shutdown: CancellationToken,
}

impl EventLogApi {
    pub fn new(log: EventLog, auth: Authenticator, pool: PgPool) -> Self {
        Self {
            log,
            auth,
            pool,
            quarantine_keys: TrustedKeys::default(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Passes over messages quarantined by a record signed with `keys`
    /// (otherwise a message that does not decode ends a read with DATA_LOSS).
    pub fn with_quarantine_keys(mut self, keys: TrustedKeys) -> Self {
        self.quarantine_keys = keys;
        self
    }

    /// Ends live subscriptions when `shutdown` fires (see [`shutting_down`]).
    pub fn with_shutdown(mut self, shutdown: CancellationToken) -> Self {
        self.shutdown = shutdown;
        self
    }
}

/// What a live subscription ends with when Paved shuts down, so that the
/// server's drain does not wait for streams that never end and clients
/// resume (from their cursor or last sequence) at once, elsewhere or here
/// once Paved is back.
pub fn shutting_down() -> Status {
    Status::unavailable("Paved is shutting down: reconnect and resume")
}

/// Response metadata naming where a read's records came from:
/// `index<=N,stream>N` (the audit index up to N, the stream after it) or
/// `stream` (no filter to look up, or the index not there yet).
pub const READ_SOURCE_HEADER: &str = "paved-read-source";

/// Messages fetched from the stream at once for index hits.
const INDEX_FETCH_CONCURRENCY: usize = 32;

/// A validated filter.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    subject: Option<String>,
    aggregate_type: Option<&'static str>,
    aggregate_id: Option<String>,
    event_types: Vec<String>,
    principal: String,
    correlation_id: String,
    /// Leave each record's JSON rendering out (the caller asked).
    pub(crate) omit_json: bool,
    /// The contexts the caller may read (`None`: every one).
    contexts: Option<BTreeSet<&'static str>>,
    /// Leave survey responses out (a plugin never reads them, sealed or not).
    hide_responses: bool,
}

impl Filter {
    /// Narrows the filter to what `caller` may read: its `events:read`
    /// contexts; and for a plugin, never a survey response.
    pub(crate) fn restrict_to(&mut self, caller: &Caller) {
        let contexts = caller.event_contexts();
        if contexts.len() < paved_domain::scope::EVENT_CONTEXTS.len() {
            self.contexts = Some(contexts);
        }
        self.hide_responses = caller.plugin.is_some();
    }

    /// With no subject of its own and one context allowed, read only that
    /// context's subjects (the rest of the log is nothing to this reader).
    pub(crate) fn narrow_subject(&mut self, log: &EventLog) {
        if let (None, Some(contexts)) = (&self.subject, &self.contexts)
            && let [context] = contexts.iter().collect::<Vec<_>>()[..]
        {
            self.subject = Some(format!("{}.{context}.>", log.config().subject_prefix));
        }
    }

    /// Only these event types (a plugin's manifest); empty keeps the filter's.
    pub(crate) fn only_types(&mut self, types: Vec<String>) {
        if !types.is_empty() {
            self.event_types = types;
        }
    }

    pub(crate) fn parse(log: &EventLog, f: Option<&pb::EventFilter>) -> Result<Self, Status> {
        let Some(f) = f else {
            return Ok(Self::default());
        };
        // Free-text filters: no control characters (a NUL would reach
        // PostgreSQL through the audit index), and a bounded length.
        for (field, value) in [
            ("filter.principal", &f.principal),
            ("filter.correlation_id", &f.correlation_id),
        ] {
            if value.chars().any(char::is_control) || value.len() > 256 {
                return Err(error::invalid_field(
                    field,
                    "at most 256 characters, no control characters (NUL, line breaks)",
                ));
            }
        }
        let kind = match f.aggregate_type.as_str() {
            "" => None,
            t => Some(AggregateKind::parse(t).ok_or_else(|| {
                error::invalid_field(
                    "filter.aggregate_type",
                    format!(
                        "unknown aggregate type {t:?} (one of {})",
                        AggregateKind::ALL.map(AggregateKind::type_name).join(", ")
                    ),
                )
            })?),
        };
        let prefix = &log.config().subject_prefix;
        let subject = match (kind, f.aggregate_id.as_str()) {
            (None, "") => None,
            (None, _) => {
                return Err(error::invalid_field(
                    "filter.aggregate_id",
                    "needs filter.aggregate_type",
                ));
            }
            (Some(k), "") => Some(format!("{prefix}.{}.{}.*", k.context(), k.type_name())),
            (Some(k), id) => {
                let id = Name::parse(id)
                    .map_err(|e| error::invalid_field("filter.aggregate_id", e.to_string()))?;
                Some(log.subject(k, &id))
            }
        };
        for (i, t) in f.event_types.iter().enumerate() {
            if !Event::TYPE_NAMES.contains(&t.as_str()) {
                return Err(error::invalid_field(
                    &format!("filter.event_types[{i}]"),
                    format!("unknown event type {t:?}"),
                ));
            }
        }
        Ok(Self {
            subject,
            aggregate_type: kind.map(|k| k.type_name()),
            aggregate_id: (!f.aggregate_id.is_empty()).then(|| f.aggregate_id.clone()),
            event_types: f.event_types.clone(),
            principal: f.principal.clone(),
            correlation_id: f.correlation_id.clone(),
            omit_json: false,
            contexts: None,
            hide_responses: false,
        })
    }

    /// Does the filter narrow the log (so the audit index can help)?
    fn selective(&self) -> bool {
        self.subject.is_some()
            || !self.event_types.is_empty()
            || !self.principal.is_empty()
            || !self.correlation_id.is_empty()
    }

    fn commit_matches(&self, c: &codec::Commit) -> bool {
        self.contexts
            .as_ref()
            .is_none_or(|allowed| allowed.contains(c.kind.context()))
            && (self.principal.is_empty() || c.principal == self.principal)
            && (self.correlation_id.is_empty() || c.correlation_id == self.correlation_id)
    }

    fn event_matches(&self, e: &Event) -> bool {
        (self.event_types.is_empty() || self.event_types.iter().any(|t| t == e.type_name()))
            && !(self.hide_responses && paved_domain::plugins::withheld(e))
    }
}

/// The records of one stored commit that pass the filter.
pub fn records(stored: &StoredCommit, filter: &Filter) -> Vec<pb::EventRecord> {
    let c = &stored.commit;
    if !filter.commit_matches(c) {
        return Vec::new();
    }
    c.events
        .iter()
        .enumerate()
        .filter(|(_, e)| filter.event_matches(e))
        .map(|(i, e)| stored.record(i, e, !filter.omit_json))
        .collect()
}

fn start_time(t: DateTime<Utc>) -> Result<time::OffsetDateTime, Status> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(
        t.timestamp_nanos_opt().unwrap_or(0),
    ))
    .map_err(|e| error::invalid_field("since", e.to_string()))
}

/// A server stream of records, each wrapped in the RPC's own response.
type RecordStream<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

/// The records a reader task sends, as the RPC's responses.
fn wrapped<T: Send + 'static>(
    rx: mpsc::Receiver<Result<pb::EventRecord, Status>>,
    wrap: fn(pb::EventRecord) -> T,
) -> RecordStream<T> {
    Box::pin(ReceiverStream::new(rx).map(move |r| r.map(wrap)))
}

#[tonic::async_trait]
impl EventLogService for EventLogApi {
    type ReadEventsStream = RecordStream<pb::ReadEventsResponse>;
    type SubscribeStream = RecordStream<pb::SubscribeResponse>;

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "ReadEvents"),
        err(level = "info")
    )]
    async fn read_events(
        &self,
        request: Request<pb::ReadEventsRequest>,
    ) -> Result<Response<Self::ReadEventsStream>, Status> {
        let caller = self.auth.caller(&request).await?;
        let r = request.into_inner();
        let mut filter = Filter::parse(&self.log, r.filter.as_ref())?;
        filter.omit_json = r.omit_json;
        filter.restrict_to(&caller);
        let since = time_from_proto(r.since.as_ref());
        let until = time_from_proto(r.until.as_ref());
        let now = Utc::now();
        if since.is_some_and(|s| s > now) {
            return Err(error::invalid_field("since", "is in the future"));
        }
        if let (Some(s), Some(u)) = (since, until)
            && s > u
        {
            return Err(error::invalid_field("until", "is before since"));
        }
        if r.to_sequence != 0 && r.from_sequence > r.to_sequence {
            return Err(error::invalid_field(
                "to_sequence",
                "is before from_sequence",
            ));
        }
        let last = self
            .log
            .last_sequence()
            .await
            .map_err(|e| crate::error::log_unavailable(&e))?;
        if r.from_sequence > last + 1 {
            return Err(Status::out_of_range(format!(
                "from_sequence {} is past the end of the log ({last})",
                r.from_sequence
            )));
        }
        let end = if r.to_sequence == 0 {
            last
        } else {
            r.to_sequence.min(last)
        };
        let deliver = if r.from_sequence > 1 {
            DeliverPolicy::ByStartSequence {
                start_sequence: r.from_sequence,
            }
        } else if let Some(s) = since {
            DeliverPolicy::ByStartTime {
                start_time: start_time(s)?,
            }
        } else {
            DeliverPolicy::All
        };
        let (tx, rx) = mpsc::channel(BUFFER);
        let log = self.log.clone();
        let keys = self.quarantine_keys.clone();
        let limit = if r.limit == 0 {
            usize::MAX
        } else {
            r.limit as usize
        };
        // A filtered read looks its sequences up in the audit index as far
        // as the index has got, and scans the stream after that.
        let start = r.from_sequence.max(1);
        let indexed = if filter.selective() {
            indexed_to(&self.pool).await?.min(end)
        } else {
            0
        };
        let source = if indexed >= start {
            format!("index<={indexed},stream>{indexed}")
        } else {
            "stream".to_owned()
        };
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let mut sent = 0;
            let mut deliver = deliver;
            if indexed >= start {
                let lookup = IndexLookup {
                    filter: &filter,
                    from: start,
                    to: indexed,
                    since,
                    until,
                };
                match from_index(&pool, &log, &lookup, limit, &tx).await {
                    Ok(n) => sent = n,
                    Err(status) => {
                        tx.send(Err(status)).await.ok();
                        return;
                    }
                }
                deliver = DeliverPolicy::ByStartSequence {
                    start_sequence: indexed + 1,
                };
            }
            if sent == limit || (indexed >= start && indexed >= end) {
                return;
            }
            let result = stream_range(
                &log,
                &keys,
                deliver,
                &filter,
                end,
                since,
                until,
                limit - sent,
                &tx,
            )
            .await;
            if let Err(status) = result {
                // The client may be gone already; nothing else to tell.
                tx.send(Err(status)).await.ok();
            }
        });
        let mut response = Response::new(wrapped(rx, |record| pb::ReadEventsResponse {
            record: Some(record),
        }));
        if let Ok(v) = source.parse() {
            response.metadata_mut().insert(READ_SOURCE_HEADER, v);
        }
        Ok(response)
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "Subscribe"),
        err(level = "info")
    )]
    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = self.auth.caller(&request).await?;
        let r = request.into_inner();
        let mut filter = Filter::parse(&self.log, r.filter.as_ref())?;
        filter.omit_json = r.omit_json;
        filter.restrict_to(&caller);
        let last = self
            .log
            .last_sequence()
            .await
            .map_err(|e| crate::error::log_unavailable(&e))?;
        if r.from_sequence > last + 1 {
            return Err(Status::out_of_range(format!(
                "from_sequence {} is past the end of the log ({last})",
                r.from_sequence
            )));
        }
        let deliver = match r.from_sequence {
            0 => DeliverPolicy::New,
            s => DeliverPolicy::ByStartSequence { start_sequence: s },
        };
        let (tx, rx) = mpsc::channel(BUFFER);
        let log = self.log.clone();
        let keys = self.quarantine_keys.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let read = stream_range(
                &log,
                &keys,
                deliver,
                &filter,
                u64::MAX,
                None,
                None,
                usize::MAX,
                &tx,
            );
            let ended = tokio::select! {
                r = read => r.err(),
                _ = shutdown.cancelled() => Some(shutting_down()),
            };
            if let Some(status) = ended {
                tx.send(Err(status)).await.ok();
            }
        });
        Ok(Response::new(wrapped(rx, |record| pb::SubscribeResponse {
            record: Some(record),
        })))
    }
}

/// How far the audit index has got (0: not at all).
async fn indexed_to(pool: &PgPool) -> Result<u64, Status> {
    let seq = paved_eventlog::checkpoints::get(pool, paved_eventlog::readmodel::AUDIT)
        .await
        .map_err(error::database)?;
    Ok(seq.unwrap_or(0))
}

struct IndexLookup<'a> {
    filter: &'a Filter,
    from: u64,
    to: u64,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

/// Sends the records of the commits the audit index finds in `from..=to`
/// (each read from the stream by sequence); returns how many were sent.
async fn from_index(
    pool: &PgPool,
    log: &EventLog,
    q: &IndexLookup<'_>,
    limit: usize,
    tx: &mpsc::Sender<Result<pb::EventRecord, Status>>,
) -> Result<usize, Status> {
    let mut sql = sqlx::QueryBuilder::<sqlx::Postgres>::new(
        "SELECT DISTINCT sequence FROM audit_index WHERE sequence BETWEEN ",
    );
    sql.push_bind(q.from as i64)
        .push(" AND ")
        .push_bind(q.to as i64);
    let f = q.filter;
    if let Some(t) = f.aggregate_type {
        sql.push(" AND aggregate_type = ").push_bind(t);
    }
    if let Some(id) = &f.aggregate_id {
        sql.push(" AND aggregate_id = ").push_bind(id.clone());
    }
    if !f.principal.is_empty() {
        sql.push(" AND principal = ").push_bind(f.principal.clone());
    }
    if !f.correlation_id.is_empty() {
        sql.push(" AND correlation_id = ")
            .push_bind(f.correlation_id.clone());
    }
    if !f.event_types.is_empty() {
        sql.push(" AND event_type = ANY(")
            .push_bind(f.event_types.clone())
            .push(")");
    }
    if let Some(s) = q.since {
        sql.push(" AND occurred_at >= ").push_bind(s);
    }
    if let Some(u) = q.until {
        sql.push(" AND occurred_at <= ").push_bind(u);
    }
    sql.push(" ORDER BY sequence");
    let unavailable = |e: &dyn std::fmt::Display| crate::error::log_unavailable(e);
    let sequences = sql
        .build_query_scalar::<i64>()
        .fetch(pool)
        .map(|r| r.map_err(|e| unavailable(&e)))
        .map(|seq| async move {
            let seq = seq? as u64;
            let m = log
                .get(seq)
                .await
                .map_err(|e| unavailable(&e))?
                .ok_or_else(|| {
                    Status::data_loss(format!(
                        "the index lists sequence {seq}, which the log lacks"
                    ))
                })?;
            let commit = codec::decode_commit(&m.payload).map_err(|_| {
                Status::data_loss(format!("the message at sequence {seq} does not decode"))
            })?;
            Ok::<_, Status>(StoredCommit {
                sequence: seq,
                commit,
            })
        })
        .buffered(INDEX_FETCH_CONCURRENCY);
    futures::pin_mut!(sequences);
    let mut sent = 0;
    while let Some(stored) = sequences.next().await {
        for record in records(&stored?, f) {
            if sent == limit {
                return Ok(sent);
            }
            if tx.send(Ok(record)).await.is_err() {
                return Ok(limit); // the client went away
            }
            sent += 1;
        }
    }
    Ok(sent)
}

/// Reads the log from `deliver` up to sequence `end` (inclusive) through an
/// ordered consumer, sending matching records until the client goes.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn stream_range(
    log: &EventLog,
    keys: &TrustedKeys,
    deliver: DeliverPolicy,
    filter: &Filter,
    end: u64,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limit: usize,
    tx: &mpsc::Sender<Result<pb::EventRecord, Status>>,
) -> Result<(), Status> {
    let unavailable = |e: &dyn std::fmt::Display| crate::error::log_unavailable(e);
    let filter_subject = filter
        .subject
        .clone()
        .unwrap_or_else(|| format!("{}.>", log.config().subject_prefix));
    // Its consumer goes when this returns: the client left, the range ended.
    let mut read = log
        .ordered(&filter_subject, deliver)
        .await
        .map_err(|e| unavailable(&e))?;
    if end != u64::MAX && read.pending == 0 {
        return Ok(());
    }
    let mut sent = 0usize;
    loop {
        // A client that leaves (or whose deadline passes) while nothing
        // arrives ends the read at once, not at the next message.
        let next = tokio::select! {
            () = tx.closed() => return Ok(()),
            next = read.messages.next() => next,
        };
        let Some(m) = next else { break };
        let m = m.map_err(|e| unavailable(&e))?;
        let info = m.info().map_err(|e| unavailable(&e))?;
        let sequence = info.stream_sequence;
        let pending = info.pending;
        if sequence > end {
            return Ok(());
        }
        let commit = match codec::decode_commit(&m.payload) {
            Ok(c) => c,
            // Set aside by an operator: not an event, nothing to show.
            Err(_)
                if matches!(
                    quarantine::find(log, keys, sequence, &m.payload).await,
                    Ok(Some(_))
                ) =>
            {
                if end != u64::MAX && (sequence >= end || pending == 0) {
                    return Ok(());
                }
                continue;
            }
            Err(e) => {
                tracing::error!(sequence, error = %e, "undecodable message in the log");
                return Err(Status::data_loss(format!(
                    "the message at sequence {sequence} does not decode"
                )));
            }
        };
        if until.is_some_and(|u| commit.occurred_at > u) {
            return Ok(());
        }
        if since.is_none_or(|s| commit.occurred_at >= s) {
            for record in records(&StoredCommit { sequence, commit }, filter) {
                if sent == limit {
                    return Ok(());
                }
                if tx.send(Ok(record)).await.is_err() {
                    return Ok(()); // the client went away
                }
                sent += 1;
            }
        }
        if end != u64::MAX && (sequence >= end || pending == 0) {
            return Ok(());
        }
    }
    Ok(())
}
