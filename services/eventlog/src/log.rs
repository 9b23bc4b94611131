//! The JetStream log: the stream, its subjects, the optimistic append and
//! the reads the write path needs.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, pull},
    context::PublishErrorKind,
    message::PublishMessage,
    stream::{Config, DirectGetErrorKind, DiscardPolicy, RetentionPolicy, StorageType, Stream},
};
use bytes::Bytes;
use paved_domain::{AggregateKind, Name};

/// Where the log lives. Tests give each run its own stream and prefix.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// JetStream stream name (`PAVED`).
    pub stream: String,
    /// First subject token (`paved`): subjects are `<prefix>.<context>.<type>.<id>`.
    pub subject_prefix: String,
    /// Stream replicas: 1 in development, 3 in production.
    pub replicas: usize,
    /// `Nats-Msg-Id` de-duplication window (at least 2 minutes).
    pub duplicate_window: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            stream: "PAVED".to_owned(),
            subject_prefix: "paved".to_owned(),
            replicas: 1,
            duplicate_window: MIN_DUPLICATE_WINDOW,
        }
    }
}

pub const MIN_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// W3C trace context carried in message headers (and in the commit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceContext {
    pub traceparent: String,
    pub tracestate: String,
}

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

impl TraceContext {
    pub fn from_headers(headers: Option<&HeaderMap>) -> Self {
        let get = |k: &str| {
            headers
                .and_then(|h| h.get(k))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        Self {
            traceparent: get(TRACEPARENT),
            tracestate: get(TRACESTATE),
        }
    }
}

/// A raw message read back from the stream.
#[derive(Clone, Debug)]
pub struct StoredMessage {
    pub sequence: u64,
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("NATS unavailable: {0}")]
    Unavailable(String),
    #[error("stream {stream} is configured more weakly than Paved requires: {problems:?}")]
    WeakStream {
        stream: String,
        problems: Vec<String>,
    },
    #[error("jetstream: {0}")]
    Other(String),
    #[error("stream {0} does not exist (is PAVED_STREAM right? `paved serve` creates it)")]
    Missing(String),
}

/// Why an append did not land.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Someone else appended to the aggregate first (`WrongLastSequence`).
    #[error("the aggregate changed since it was read")]
    Conflict,
    #[error("the commit is larger than the server's max_payload")]
    TooLarge,
    #[error("NATS unavailable: {0}")]
    Unavailable(String),
    /// The server has no storage left for the stream: retrying will not help
    /// until an operator makes room.
    #[error("the log's storage is full: {0}")]
    Full(String),
    /// A value that would become a message header is not one (control
    /// characters, non-ASCII, too long).
    #[error("{0} is not a valid header value")]
    BadHeader(&'static str),
}

/// The longest header value the log writes.
pub const MAX_HEADER_VALUE: usize = 1024;

/// Can `v` be a NATS header value? Visible ASCII and spaces only: a line
/// break would end the header (async-nats panics on one), anything else
/// invites confusion in every tool that prints headers.
pub fn header_safe(v: &str) -> bool {
    v.len() <= MAX_HEADER_VALUE && v.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// The result of a successful publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub sequence: u64,
    /// The server had this `Nats-Msg-Id` already; `sequence` is the original's.
    pub duplicate: bool,
}

/// A handle on the stream. Cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    js: jetstream::Context,
    stream: Stream,
    config: LogConfig,
}

impl EventLog {
    /// Creates the stream, or verifies an existing one (invariant 7: no
    /// deletes, no purges, no age limit). A weaker existing stream is
    /// reported, never silently changed.
    #[tracing::instrument(skip_all, fields(stream = %config.stream), err)]
    pub async fn open(client: async_nats::Client, config: LogConfig) -> Result<Self, LogError> {
        let js = jetstream::new(client);
        let wanted = Config {
            name: config.stream.clone(),
            description: Some("Paved: the platform's append-only event log".to_owned()),
            subjects: vec![
                format!("{}.>", config.subject_prefix),
                crate::audit::checkpoint_subject(&config.subject_prefix),
            ],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            discard: DiscardPolicy::New,
            num_replicas: config.replicas,
            duplicate_window: config.duplicate_window.max(MIN_DUPLICATE_WINDOW),
            deny_delete: true,
            deny_purge: true,
            allow_direct: true,
            ..Default::default()
        };
        let stream = match js.get_stream(&config.stream).await {
            Ok(mut stream) => {
                let mut info = stream.info().await.map_err(other)?.config.clone();
                // Streams made before checkpoints existed gain their
                // subject, but only a stream that is otherwise fine is
                // changed at all: refused is refused untouched.
                let missing: Vec<String> = wanted
                    .subjects
                    .iter()
                    .filter(|s| !info.subjects.contains(s))
                    .cloned()
                    .collect();
                let gains_subjects =
                    !missing.is_empty() && info.subjects.contains(&wanted.subjects[0]);
                let mut judged = info.clone();
                if gains_subjects {
                    judged.subjects.extend(missing.iter().cloned());
                }
                let problems = weaknesses(&judged, &wanted);
                if !problems.is_empty() {
                    return Err(LogError::WeakStream {
                        stream: config.stream.clone(),
                        problems,
                    });
                }
                if gains_subjects {
                    tracing::info!(stream = %config.stream, subjects = ?missing, "adding subjects to the stream");
                    info.subjects.extend(missing);
                    js.update_stream(&info).await.map_err(other)?;
                    stream = js.get_stream(&config.stream).await.map_err(other)?;
                }
                stream
            }
            Err(e)
                if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(je)
                    if je.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                tracing::info!(stream = %config.stream, "creating stream");
                js.create_stream(wanted).await.map_err(other)?
            }
            Err(e) => return Err(LogError::Unavailable(e.to_string())),
        };
        Ok(Self { js, stream, config })
    }

    /// Opens a stream that must exist already (operator verbs: a mistyped
    /// name must fail, not create an empty log). It is verified like
    /// [`Self::open`], and never changed.
    pub async fn open_existing(
        client: async_nats::Client,
        config: LogConfig,
    ) -> Result<Self, LogError> {
        let js = jetstream::new(client);
        match js.get_stream(&config.stream).await {
            Ok(stream) => Ok(Self { js, stream, config }),
            Err(e)
                if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(je)
                    if je.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                Err(LogError::Missing(config.stream.clone()))
            }
            Err(e) => Err(LogError::Unavailable(e.to_string())),
        }
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// `<prefix>.<context>.<type>.<id>`.
    pub fn subject(&self, kind: AggregateKind, id: &Name) -> String {
        format!(
            "{}.{}.{}.{}",
            self.config.subject_prefix,
            kind.context(),
            kind.type_name(),
            id
        )
    }

    /// Where signed Merkle checkpoints are stored: in the stream, outside
    /// `<prefix>.>`, so readers of commits never meet them.
    pub fn checkpoint_subject(&self) -> String {
        crate::audit::checkpoint_subject(&self.config.subject_prefix)
    }

    /// The filter for one bounded context, e.g. `paved.catalog.>`.
    pub fn context_filter(&self, context: &str) -> String {
        format!("{}.{context}.>", self.config.subject_prefix)
    }

    /// The subjects of one aggregate type, as a span names them
    /// (`paved.catalog.service`: the id is left out, it is unbounded).
    pub fn subject_template(&self, kind: AggregateKind) -> String {
        format!(
            "{}.{}.{}",
            self.config.subject_prefix,
            kind.context(),
            kind.type_name()
        )
    }

    /// Publishes one commit with `Nats-Expected-Last-Subject-Sequence` and
    /// `Nats-Msg-Id` (invariant 2) and waits for the stream's ack. The
    /// caller's span is the PRODUCER span whose context `trace` is.
    pub async fn append(
        &self,
        subject: String,
        expected: u64,
        msg_id: &str,
        payload: Vec<u8>,
        trace: &TraceContext,
    ) -> Result<Appended, AppendError> {
        if msg_id.is_empty() || !header_safe(msg_id) {
            return Err(AppendError::BadHeader("Nats-Msg-Id"));
        }
        let mut message = PublishMessage::build()
            .payload(Bytes::from(payload))
            .message_id(msg_id)
            .expected_last_subject_sequence(expected);
        // Trace context is best effort: a malformed one is left out, not fatal.
        if !trace.traceparent.is_empty() && header_safe(&trace.traceparent) {
            message = message.header(TRACEPARENT, trace.traceparent.as_str());
        }
        if !trace.tracestate.is_empty() && header_safe(&trace.tracestate) {
            message = message.header(TRACESTATE, trace.tracestate.as_str());
        }
        let ack = self
            .js
            .send_publish(subject, message)
            .await
            .map_err(publish_error)?
            .await
            .map_err(publish_error)?;
        Ok(Appended {
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    /// The first message on `subject` (an aggregate's first commit), if any.
    pub async fn first_on_subject(&self, subject: &str) -> Result<Option<StoredMessage>, LogError> {
        match self.stream.direct_get_next_for_subject(subject, None).await {
            Ok(m) => Ok(Some(stored(m))),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(LogError::Unavailable(e.to_string())),
        }
    }

    /// The messages on `subject` from stream sequence `from` up to and
    /// including `until` (the subject's last sequence, from
    /// [`Self::last_on_subject`]), in order. One direct get per message: the
    /// write path caches what it read, so only new commits are read again.
    /// Stopping at `until` matters: asking for a message past a subject's last
    /// one makes the server look through the rest of the stream.
    pub async fn read_subject(
        &self,
        subject: &str,
        from: u64,
        until: u64,
    ) -> Result<Vec<StoredMessage>, LogError> {
        let mut out = Vec::new();
        let mut next = from.max(1);
        while next <= until {
            match self
                .stream
                .direct_get_next_for_subject(subject, Some(next))
                .await
            {
                Ok(m) => {
                    next = m.sequence + 1;
                    out.push(stored(m));
                }
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => break,
                Err(e) => return Err(LogError::Unavailable(e.to_string())),
            }
        }
        Ok(out)
    }

    /// The message at `sequence`, if there is one.
    pub async fn get(&self, sequence: u64) -> Result<Option<StoredMessage>, LogError> {
        match self.stream.direct_get(sequence).await {
            Ok(m) => Ok(Some(stored(m))),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(LogError::Unavailable(e.to_string())),
        }
    }

    /// The stream sequence of the first message at or after `from` on a
    /// subject matching `filter` (wildcards allowed), if there is one.
    pub async fn next_matching(&self, filter: &str, from: u64) -> Result<Option<u64>, LogError> {
        match self
            .stream
            .direct_get_next_for_subject(filter, Some(from.max(1)))
            .await
        {
            Ok(m) => Ok(Some(m.sequence)),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(LogError::Unavailable(e.to_string())),
        }
    }

    /// Where the messages on `filter` after `after` stand: how many there
    /// are, and when the first of them was published (its age is how far a
    /// reader at `after` lags). A throwaway consumer counts them.
    pub async fn backlog(
        &self,
        filter: &str,
        after: u64,
    ) -> Result<(u64, Option<chrono::DateTime<chrono::Utc>>), LogError> {
        let first = match self
            .stream
            .direct_get_next_for_subject(filter, Some(after + 1))
            .await
        {
            Ok(m) => Some(chrono::DateTime::from_timestamp_nanos(
                m.time.unix_timestamp_nanos() as i64,
            )),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok((0, None)),
            Err(e) => return Err(LogError::Unavailable(e.to_string())),
        };
        let read = self
            .ordered(
                filter,
                DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
            )
            .await?;
        Ok((read.pending, first))
    }

    /// The last message on `subject`, if there is one. Cheap at any stream
    /// size: the server keeps each subject's last sequence in memory.
    pub async fn last_on_subject(&self, subject: &str) -> Result<Option<StoredMessage>, LogError> {
        match self.stream.direct_get_last_for_subject(subject).await {
            Ok(m) => Ok(Some(stored(m))),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(LogError::Unavailable(e.to_string())),
        }
    }

    /// An ordered read of the messages on `filter` (empty: every subject)
    /// from `deliver` on. Its consumer is deleted as soon as the returned
    /// [`OrderedRead`] is dropped, not left for the server's inactivity
    /// threshold: NATS >= 2.15 allows 1,000 consumers per stream by default,
    /// and readers that poll would otherwise reach it within seconds.
    pub async fn ordered(
        &self,
        filter: &str,
        deliver: DeliverPolicy,
    ) -> Result<OrderedRead, LogError> {
        let name = format!("paved-read-{:016x}", rand::random::<u64>());
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                name: Some(name.clone()),
                filter_subject: filter.to_owned(),
                deliver_policy: deliver,
                ..Default::default()
            })
            .await
            .map_err(|e| LogError::Unavailable(e.to_string()))?;
        let pending = consumer.cached_info().num_pending;
        let guard = ConsumerGuard {
            stream: self.stream.clone(),
            name,
        };
        let messages = consumer
            .messages()
            .await
            .map_err(|e| LogError::Unavailable(e.to_string()))?;
        Ok(OrderedRead {
            messages,
            pending,
            _guard: guard,
        })
    }

    /// Deletes consumer `name` if it is there (a failure is only logged: the
    /// server removes an inactive consumer by itself).
    pub async fn delete_consumer(&self, name: &str) {
        delete_consumer(&self.stream, name).await;
    }

    /// Every message of the stream (all subjects) from `start` up to `end`
    /// inclusive, in order, through an ordered consumer: `f(sequence,
    /// subject, payload)` sees each.
    pub async fn scan(
        &self,
        start: u64,
        end: u64,
        mut f: impl FnMut(u64, &str, &[u8]),
    ) -> Result<(), LogError> {
        use futures::StreamExt;
        let unavailable = |e: &dyn std::fmt::Display| LogError::Unavailable(e.to_string());
        let mut read = self
            .ordered(
                "",
                DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
            )
            .await?;
        let messages = &mut read.messages;
        while let Some(m) = messages.next().await {
            let m = m.map_err(|e| unavailable(&e))?;
            let sequence = m.info().map_err(|e| unavailable(&e))?.stream_sequence;
            if sequence > end {
                break;
            }
            f(sequence, &m.subject, &m.payload);
            if sequence >= end {
                break;
            }
        }
        Ok(())
    }

    /// The stream's last sequence right now.
    pub async fn last_sequence(&self) -> Result<u64, LogError> {
        let info = self.stream.get_info().await.map_err(other)?;
        Ok(info.state.last_sequence)
    }
}

/// An ordered read from [`EventLog::ordered`]: its messages, how many were
/// pending when it started, and its consumer, deleted on drop.
pub struct OrderedRead {
    pub messages: pull::Ordered,
    /// Messages matching the filter from the start position, when it began.
    pub pending: u64,
    _guard: ConsumerGuard,
}

/// Deletes a consumer when dropped (in a task of the current runtime).
struct ConsumerGuard {
    stream: Stream,
    name: String,
}

impl Drop for ConsumerGuard {
    fn drop(&mut self) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (stream, name) = (self.stream.clone(), std::mem::take(&mut self.name));
            rt.spawn(async move { delete_consumer(&stream, &name).await });
        }
    }
}

async fn delete_consumer(stream: &Stream, name: &str) {
    use async_nats::jetstream::stream::ConsumerErrorKind;
    match stream.delete_consumer(name).await {
        Ok(_) => {}
        Err(e)
            if matches!(e.kind(), ConsumerErrorKind::JetStream(je)
                if je.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND) => {}
        Err(e) => tracing::debug!(consumer = name, error = %e, "cannot delete a consumer"),
    }
}

fn other(e: impl std::fmt::Display) -> LogError {
    LogError::Other(e.to_string())
}

/// JetStream error codes of a server or stream out of storage.
const OUT_OF_STORAGE: [u64; 3] = [
    10023, // insufficient resources (the account's or server's store limit)
    10047, // insufficient storage resources available (the disk)
    10028, // insufficient memory resources available
];

fn publish_error(e: jetstream::context::PublishError) -> AppendError {
    use std::error::Error as _;
    match e.kind() {
        PublishErrorKind::WrongLastSequence => AppendError::Conflict,
        PublishErrorKind::MaxPayloadExceeded => AppendError::TooLarge,
        _ => {
            let code = e
                .source()
                .and_then(|s| s.downcast_ref::<jetstream::Error>())
                .map(|j| j.error_code().0);
            match code {
                Some(c) if OUT_OF_STORAGE.contains(&c) => AppendError::Full(e.to_string()),
                _ => AppendError::Unavailable(e.to_string()),
            }
        }
    }
}

/// What an existing stream lacks compared with what Paved creates.
fn weaknesses(have: &Config, want: &Config) -> Vec<String> {
    let mut p = Vec::new();
    if !want.subjects.iter().all(|s| have.subjects.contains(s)) {
        p.push(format!(
            "subjects {:?} do not include {:?}",
            have.subjects, want.subjects
        ));
    }
    if !have.deny_delete {
        p.push("deny_delete is off".to_owned());
    }
    if !have.deny_purge {
        p.push("deny_purge is off".to_owned());
    }
    if !have.allow_direct {
        p.push("allow_direct is off (the write path reads aggregates by direct get)".to_owned());
    }
    if have.max_age != Duration::ZERO {
        p.push(format!("max_age is {:?}, must be unlimited", have.max_age));
    }
    for (limit, value) in [
        ("max_messages", have.max_messages),
        ("max_bytes", have.max_bytes),
        ("max_messages_per_subject", have.max_messages_per_subject),
    ] {
        if value > 0 {
            p.push(format!(
                "{limit} is {value}: the log must keep everything (unset it, -1)"
            ));
        }
    }
    if have.no_ack {
        p.push(
            "no_ack is on: publishes would not be acknowledged, so no append could be confirmed"
                .to_owned(),
        );
    }
    if have.retention != RetentionPolicy::Limits {
        p.push(format!("retention is {:?}, must be limits", have.retention));
    }
    if have.storage != StorageType::File {
        p.push("storage is not file".to_owned());
    }
    if have.duplicate_window < MIN_DUPLICATE_WINDOW {
        p.push(format!(
            "duplicate_window is {:?}, must be at least {:?}",
            have.duplicate_window, MIN_DUPLICATE_WINDOW
        ));
    }
    if have.num_replicas < want.num_replicas {
        p.push(format!(
            "{} replicas, configured {}",
            have.num_replicas, want.num_replicas
        ));
    }
    p
}

/// A message read directly from the stream, as the log hands it out.
fn stored(m: async_nats::jetstream::message::StreamMessage) -> StoredMessage {
    StoredMessage {
        sequence: m.sequence,
        subject: m.subject.to_string(),
        headers: m.headers,
        payload: m.payload,
    }
}
