//! The one write path: `execute(aggregate, command, meta)` = load (cached)
//! → decide → append → retry on conflict / answer duplicates.

use std::any::Any;
use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lru::LruCache;
use paved_domain::catalog::{RepositoryClaim, Service, System, Team};
use paved_domain::delivery::Deployment;
use paved_domain::plugins::marketplace::PluginListing;
use paved_domain::{
    Aggregate, AggregateKind, AggregateRef, Context, Name, Principal, References, Rejection,
};
use tracing::Instrument;

use crate::codec::{self, Commit, DecodeError};
use crate::log::{AppendError, EventLog, LogError, StoredMessage, TraceContext};

/// Within this of its first sending, a retry is caught by the stream's
/// duplicate window (`Nats-Msg-Id`, at least 2 minutes) whatever the
/// aggregate remembers.
pub const RETRY_WINDOW: chrono::TimeDelta = chrono::TimeDelta::seconds(110);
/// How many times a command is re-decided after losing a race.
pub const MAX_ATTEMPTS: usize = 5;
/// Command ids remembered per aggregate, so a retried request is answered
/// from the log even after the stream's duplicate window has passed.
pub const RECENT_COMMANDS: usize = 128;
/// How far the chain of references of one command may go.
const MAX_REFERENCE_ROUNDS: usize = 70;
/// How old a cached state of a *referenced* aggregate (the owner team of a
/// service, say) may be before it is checked against the log again. This
/// process's own writes keep its cache current; the bound is for writes by
/// other replicas. Even a fresh read races with a concurrent change of the
/// other aggregate, so a check across aggregates is never stricter than this.
pub const REFERENCE_MAX_AGE: Duration = Duration::from_secs(1);

/// Who issued a command, why, and in which trace (invariant 6).
#[derive(Clone, Debug)]
pub struct CommandMeta {
    /// The client's request id; also the `Nats-Msg-Id`.
    pub command_id: String,
    pub principal: Principal,
    pub correlation_id: String,
    pub causation_id: String,
    pub reason: String,
    pub trace: TraceContext,
    pub now: DateTime<Utc>,
    /// The aggregate's version (last sequence, 0 = none yet) the client last
    /// read; `None`: no check.
    pub expected_version: Option<u64>,
    /// When the client first sent this request (retries keep it): lets the
    /// write path refuse a retry too old to tell whether it was applied.
    pub sent_at: Option<DateTime<Utc>>,
    /// An anonymous command (a survey response): no trace context is
    /// stored with it, and no span of the caller's trace names its
    /// aggregate, command id or sequence, so a tracing backend cannot join
    /// the caller to the commit.
    pub untraced: bool,
}

impl CommandMeta {
    /// Meta for a command that starts its own correlation.
    pub fn new(command_id: impl Into<String>, principal: Principal) -> Self {
        let command_id = command_id.into();
        Self {
            correlation_id: command_id.clone(),
            causation_id: String::new(),
            command_id,
            principal,
            reason: String::new(),
            trace: TraceContext::default(),
            now: Utc::now(),
            expected_version: None,
            sent_at: None,
            untraced: false,
        }
    }
}

/// A command's result: the commit's sequence and how many events it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Executed {
    /// The commit's stream sequence; for a no-op, the aggregate's last sequence.
    pub sequence: u64,
    pub events: u32,
    /// The command had been executed before (a retry): this is its original
    /// result, and nothing was appended now.
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("gave up after {attempts} conflicting attempts")]
    Conflict { attempts: usize },
    #[error("request id {0:?} was already used for another command")]
    RequestIdReused(String),
    #[error("request id {0:?} cannot be a message id (control characters, non-ASCII or too long)")]
    RequestIdInvalid(String),
    #[error(
        "request id {command_id:?} was first sent at {sent_at}, before the oldest command this entity remembers ({horizon}): it cannot be told whether it was applied; send the change again under a new request id"
    )]
    RequestTooOld {
        command_id: String,
        sent_at: DateTime<Utc>,
        horizon: DateTime<Utc>,
    },
    #[error("the entity is at version {current}, not {expected}")]
    VersionMismatch { expected: u64, current: u64 },
    #[error("the commit is too large")]
    TooLarge,
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    #[error("the event log's storage is full: {0}")]
    StorageFull(String),
    #[error("stored commit at sequence {sequence} does not decode: {source}")]
    Corrupt {
        sequence: u64,
        #[source]
        source: DecodeError,
    },
}

impl ExecuteError {
    /// The outcome a span and a counter record for this error.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Rejected(_) | Self::VersionMismatch { .. } => "rejected",
            Self::RequestIdReused(_) | Self::RequestIdInvalid(_) | Self::RequestTooOld { .. } => {
                "rejected"
            }
            Self::TooLarge | Self::StorageFull(_) => "refused",
            Self::Conflict { .. } => "conflict",
            Self::Unavailable(_) | Self::Corrupt { .. } => "failed",
        }
    }
}

impl From<LogError> for ExecuteError {
    fn from(e: LogError) -> Self {
        ExecuteError::Unavailable(e.to_string())
    }
}

/// An aggregate's state as of `version` (its last stream sequence), plus the
/// ids of its most recent commands.
#[derive(Clone, Debug)]
pub struct Loaded<A> {
    pub state: A,
    pub version: u64,
    /// The last commands: their ids, fingerprints and results.
    recent: VecDeque<Remembered>,
    /// The hash of the last commit, which the next one chains to.
    last_hash: Vec<u8>,
    /// When this state was last known to match the log (`None`: assumed,
    /// never read: an aggregate missing from the cache is first assumed new).
    read_at: Option<Instant>,
}

impl<A: Aggregate> Loaded<A> {
    fn empty() -> Self {
        Self {
            state: A::default(),
            version: 0,
            recent: VecDeque::new(),
            last_hash: Vec::new(),
            read_at: None,
        }
    }

    fn fresh_within(&self, age: Duration) -> bool {
        self.read_at.is_some_and(|at| at.elapsed() <= age)
    }

    fn apply(&mut self, sequence: u64, commit: &Commit) {
        for event in &commit.events {
            if let Some(e) = A::select(event) {
                self.state.evolve(e);
            }
        }
        self.version = sequence;
        self.last_hash.clone_from(&commit.hash);
        if self.recent.len() == RECENT_COMMANDS {
            self.recent.pop_front();
        }
        self.recent.push_back(Remembered {
            command_id: commit.command_id.clone(),
            occurred_at: commit.occurred_at,
            fingerprint: commit.command_fingerprint.clone(),
            executed: Executed {
                sequence,
                events: commit.events.len() as u32,
                replayed: false,
            },
        });
    }

    /// The time before which a command may have been forgotten: the oldest
    /// remembered command's, once the memory is full (`None`: every command
    /// of the aggregate is remembered).
    fn horizon(&self) -> Option<DateTime<Utc>> {
        (self.recent.len() >= RECENT_COMMANDS)
            .then(|| self.recent.front().map(|r| r.occurred_at))
            .flatten()
    }

    fn answered(&self, command_id: &str, fingerprint: &[u8]) -> Option<Seen> {
        self.recent
            .iter()
            .rev()
            .find(|r| r.command_id == command_id)
            .map(|r| seen(&r.fingerprint, fingerprint, r.executed))
    }
}

/// A remembered command against the one asked for now.
fn seen(stored: &[u8], asked: &[u8], executed: Executed) -> Seen {
    if stored.is_empty() || stored == asked {
        Seen::Same(Executed {
            replayed: true,
            ..executed
        })
    } else {
        Seen::Other
    }
}

/// A command the aggregate remembers having executed.
#[derive(Clone, Debug)]
struct Remembered {
    command_id: String,
    occurred_at: DateTime<Utc>,
    /// Empty for commits written before fingerprints existed.
    fingerprint: Vec<u8>,
    executed: Executed,
}

/// Whether a command id was seen before, and with the same command.
enum Seen {
    /// The same command: its original result.
    Same(Executed),
    /// Another command under this id.
    Other,
}

/// The fingerprint of a command (see `Commit.command_fingerprint` in the
/// proto): the first 16 bytes of SHA-256 over the aggregate, the principal
/// and the command's canonical form. The canonical form is the command's
/// `Debug` rendering: commands are plain data (ordered maps, no clocks), so
/// the same request always renders the same; a change of a command's shape
/// in a new release changes it, which only matters to a retry that spans the
/// upgrade.
pub fn fingerprint<A: Aggregate>(
    id: &Name,
    principal: &Principal,
    command: &A::Command,
) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"paved.command.v1\n");
    h.update(A::KIND.type_name().as_bytes());
    h.update(b"\n");
    h.update(id.as_str().as_bytes());
    h.update(b"\n");
    h.update(principal.name.as_bytes());
    h.update(b"\n");
    h.update(format!("{command:?}").as_bytes());
    h.finalize()[..16].to_vec()
}

type CachedState = Arc<dyn Any + Send + Sync>;

/// Runs commands against the log. Holds a bounded in-process cache of
/// aggregate states; the cache is only a cache (the stream's expected-sequence
/// check is what guarantees correctness), refreshed whenever a race is lost.
#[derive(Clone)]
pub struct Executor {
    log: EventLog,
    cache: Arc<Mutex<LruCache<AggregateRef, CachedState>>>,
}

impl Executor {
    pub fn new(log: EventLog, cache_capacity: usize) -> Self {
        let cap = NonZeroUsize::new(cache_capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            log,
            cache: Arc::new(Mutex::new(LruCache::new(cap))),
        }
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Decides `command` against aggregate `id` and appends the resulting
    /// events as one commit. Retrying with the same `meta.command_id` answers
    /// the original result and appends nothing.
    #[tracing::instrument(
        skip_all,
        fields(
            paved.aggregate.type = %A::KIND,
            paved.aggregate.id = tracing::field::Empty,
            paved.command.id = tracing::field::Empty,
            paved.command.outcome = tracing::field::Empty,
            paved.command.conflicts = tracing::field::Empty,
            paved.commit.sequence = tracing::field::Empty,
        ),
        err(level = "debug")
    )]
    pub async fn execute<A: Aggregate>(
        &self,
        id: &Name,
        command: &A::Command,
        meta: &CommandMeta,
    ) -> Result<Executed, ExecuteError> {
        let span = tracing::Span::current();
        if !meta.untraced {
            span.record("paved.aggregate.id", id.as_str());
            span.record("paved.command.id", meta.command_id.as_str());
        }
        let result = self.execute_inner::<A>(id, command, meta).await;
        match &result {
            Ok(done) => {
                let outcome = if done.replayed {
                    "replayed"
                } else if done.events == 0 {
                    "unchanged"
                } else {
                    "applied"
                };
                span.record("paved.command.outcome", outcome);
                if !meta.untraced {
                    span.record("paved.commit.sequence", done.sequence);
                }
            }
            Err(e) => {
                span.record("paved.command.outcome", e.outcome());
            }
        }
        result
    }

    async fn execute_inner<A: Aggregate>(
        &self,
        id: &Name,
        command: &A::Command,
        meta: &CommandMeta,
    ) -> Result<Executed, ExecuteError> {
        let me = AggregateRef {
            kind: A::KIND,
            id: id.clone(),
        };
        let subject = self.log.subject(A::KIND, id);
        // A state missing from the cache is assumed new: creating commands
        // then cost one round trip (the append, whose expected sequence 0
        // checks the assumption). Anything else is verified against the log
        // before it is answered.
        let mut loaded = self.cached::<A>(&me).unwrap_or_else(Loaded::empty);
        let print = fingerprint::<A>(id, &meta.principal, command);
        let mut refresh = false;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                tracing::Span::current().record("paved.command.conflicts", attempt);
            }
            let verified = refresh;
            if refresh {
                loaded = self.load::<A>(&me, &subject, true).await?;
            }
            let assumed = loaded.read_at.is_none();
            refresh = true;
            match loaded.answered(&meta.command_id, &print) {
                Some(Seen::Same(done)) => return Ok(done),
                Some(Seen::Other) => {
                    return Err(ExecuteError::RequestIdReused(meta.command_id.clone()));
                }
                None => {}
            }
            // A retry sent before the oldest remembered command, and past the
            // stream's duplicate window, might have been applied and
            // forgotten: refuse it rather than apply it twice.
            if !assumed
                && let (Some(sent_at), Some(horizon)) = (meta.sent_at, loaded.horizon())
                && sent_at < horizon
                && meta.now - sent_at > RETRY_WINDOW
            {
                return Err(ExecuteError::RequestTooOld {
                    command_id: meta.command_id.clone(),
                    sent_at,
                    horizon,
                });
            }
            if let Some(expected) = meta.expected_version
                && expected != loaded.version
            {
                // A cached (or assumed) state may be behind the log: only a
                // state just read from the log can say no.
                if verified {
                    return Err(ExecuteError::VersionMismatch {
                        expected,
                        current: loaded.version,
                    });
                }
                continue;
            }
            let refs = self.references(&loaded.state, command).await?;
            let ctx = Context {
                id,
                principal: &meta.principal,
                now: meta.now,
                refs: &refs,
            };
            // A refusal or a no-op is an answer about the state: only a
            // state just read from the log may give it. A cached one may be
            // behind commits another process appended (a worker recording
            // the outcome of what this API asked for).
            let events = match loaded.state.decide(command, &ctx) {
                Err(_) if !verified => continue,
                Err(rejection) => return Err(rejection.into()),
                Ok(events) if events.is_empty() && !verified => continue,
                Ok(events) => events,
            };
            if events.is_empty() {
                return Ok(Executed {
                    sequence: loaded.version,
                    events: 0,
                    replayed: false,
                });
            }
            // The PRODUCER span of this append: its context is what the
            // commit and the message headers carry.
            let publish = if meta.untraced {
                tracing::Span::none()
            } else {
                tracing::info_span!(
                    "publish",
                    otel.name = %format!("send {}", self.log.subject_template(A::KIND)),
                    otel.kind = "producer",
                    messaging.system = "nats",
                    messaging.operation.type = "send",
                    messaging.operation.name = "publish",
                    messaging.destination.name = %subject,
                    messaging.message.id = %meta.command_id,
                    messaging.nats.stream = %self.log.config().stream,
                    messaging.nats.stream.sequence = tracing::field::Empty,
                )
            };
            let trace = if meta.untraced {
                TraceContext::default()
            } else {
                crate::trace::context_of(&publish, &meta.trace)
            };
            let commit = Commit {
                kind: A::KIND,
                aggregate_id: id.clone(),
                command_id: meta.command_id.clone(),
                principal: meta.principal.name.clone(),
                occurred_at: meta.now,
                correlation_id: meta.correlation_id.clone(),
                causation_id: meta.causation_id.clone(),
                traceparent: trace.traceparent.clone(),
                tracestate: trace.tracestate.clone(),
                reason: meta.reason.clone(),
                events: events.into_iter().map(Into::into).collect(),
                prev_hash: Vec::new(),
                hash: Vec::new(),
                command_fingerprint: print.clone(),
            };
            let mut commit = commit;
            commit.seal(&loaded.last_hash);
            let appended = self
                .log
                .append(
                    subject.clone(),
                    loaded.version,
                    &meta.command_id,
                    codec::encode_commit(&commit),
                    &trace,
                )
                .instrument(publish.clone())
                .await;
            if let Ok(a) = &appended {
                publish.record("messaging.nats.stream.sequence", a.sequence);
            }
            match appended {
                Ok(a) if !a.duplicate => {
                    let mut next = loaded;
                    next.apply(a.sequence, &commit);
                    next.read_at = Some(Instant::now());
                    let done = Executed {
                        sequence: a.sequence,
                        events: commit.events.len() as u32,
                        replayed: false,
                    };
                    self.store(&me, next);
                    return Ok(done);
                }
                Ok(a) => {
                    return self
                        .duplicate::<A>(&me, &subject, &meta.command_id, &print, a.sequence)
                        .await;
                }
                // Lost a race, or (NATS >= 2.12) a retry whose first attempt
                // landed: re-read, then either answer it or re-decide.
                Err(AppendError::Conflict) => {}
                Err(AppendError::TooLarge) => return Err(ExecuteError::TooLarge),
                Err(AppendError::Full(e)) => return Err(ExecuteError::StorageFull(e)),
                Err(AppendError::BadHeader(_)) => {
                    return Err(ExecuteError::RequestIdInvalid(meta.command_id.clone()));
                }
                Err(AppendError::Unavailable(e)) => return Err(ExecuteError::Unavailable(e)),
            }
        }
        Err(ExecuteError::Conflict {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// The stream said our `Nats-Msg-Id` was seen before, at `sequence`. If
    /// that message is this aggregate's, the command already happened: answer
    /// it. Otherwise the client reused a request id for another command.
    async fn duplicate<A: Aggregate>(
        &self,
        me: &AggregateRef,
        subject: &str,
        command_id: &str,
        print: &[u8],
        sequence: u64,
    ) -> Result<Executed, ExecuteError> {
        let loaded = self.load::<A>(me, subject, true).await?;
        let reused = || ExecuteError::RequestIdReused(command_id.to_owned());
        match loaded.answered(command_id, print) {
            Some(Seen::Same(done)) => return Ok(done),
            Some(Seen::Other) => return Err(reused()),
            None => {}
        }
        match self.log.get(sequence).await? {
            Some(m) if m.subject == subject => {
                let commit = decode(&m)?;
                let executed = Executed {
                    sequence,
                    events: commit.events.len() as u32,
                    replayed: false,
                };
                match seen(&commit.command_fingerprint, print, executed) {
                    Seen::Same(done) => Ok(done),
                    Seen::Other => Err(reused()),
                }
            }
            _ => Err(reused()),
        }
    }

    /// What `command` would append now, decided against the aggregate's
    /// state read from the log and the aggregates it refers to, by the
    /// same rules as [`Self::execute`]; appends nothing (a dry run).
    pub async fn decide<A: Aggregate>(
        &self,
        id: &Name,
        command: &A::Command,
        meta: &CommandMeta,
    ) -> Result<Vec<A::Event>, ExecuteError> {
        let loaded = self.state::<A>(id).await?;
        let refs = self.references(&loaded.state, command).await?;
        let ctx = Context {
            id,
            principal: &meta.principal,
            now: meta.now,
            refs: &refs,
        };
        Ok(loaded.state.decide(command, &ctx)?)
    }

    /// The aggregate's current state, read fresh from the log (through the cache).
    pub async fn state<A: Aggregate>(&self, id: &Name) -> Result<Loaded<A>, ExecuteError> {
        let me = AggregateRef {
            kind: A::KIND,
            id: id.clone(),
        };
        let subject = self.log.subject(A::KIND, id);
        self.load::<A>(&me, &subject, true).await
    }

    /// The aggregate's state, from the cache or the log. With `refresh`, the
    /// subject's last sequence is checked first (one cheap direct get) and
    /// only commits newer than the cached state are read.
    pub async fn load<A: Aggregate>(
        &self,
        me: &AggregateRef,
        subject: &str,
        refresh: bool,
    ) -> Result<Loaded<A>, ExecuteError> {
        let cached = self.cached::<A>(me);
        let mut loaded = match cached {
            Some(l) if !refresh => return Ok(l),
            Some(l) => l,
            None => Loaded::empty(),
        };
        let last = match self.log.last_on_subject(subject).await? {
            None => 0,
            Some(m) => m.sequence,
        };
        if last > loaded.version {
            for m in &self
                .log
                .read_subject(subject, loaded.version + 1, last)
                .await?
            {
                loaded.apply(m.sequence, &decode(m)?);
            }
        }
        loaded.read_at = Some(Instant::now());
        self.store(me, loaded.clone());
        Ok(loaded)
    }

    fn cached<A: Aggregate>(&self, me: &AggregateRef) -> Option<Loaded<A>> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(me)
            .and_then(|c| c.downcast_ref::<Loaded<A>>())
            .cloned()
    }

    /// Caches `loaded` unless a newer version is cached already.
    fn store<A: Aggregate>(&self, me: &AggregateRef, loaded: Loaded<A>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let newer = cache
            .peek(me)
            .and_then(|c| c.downcast_ref::<Loaded<A>>())
            .is_some_and(|c| c.version > loaded.version);
        if !newer {
            cache.put(me.clone(), Arc::new(loaded));
        }
    }

    /// A referenced aggregate: cached if checked within [`REFERENCE_MAX_AGE`],
    /// else read from the log.
    async fn reference<A: Aggregate>(&self, r: &AggregateRef) -> Result<Loaded<A>, ExecuteError> {
        match self.cached::<A>(r) {
            Some(l) if l.fresh_within(REFERENCE_MAX_AGE) => Ok(l),
            _ => {
                let subject = self.log.subject(r.kind, &r.id);
                self.load::<A>(r, &subject, true).await
            }
        }
    }

    /// Loads every aggregate the command refers to (see [`Self::reference`]).
    async fn references<A: Aggregate>(
        &self,
        state: &A,
        command: &A::Command,
    ) -> Result<References, ExecuteError> {
        let mut refs = References::default();
        for _ in 0..MAX_REFERENCE_ROUNDS {
            let wanted: Vec<AggregateRef> = state
                .references(command, &refs)
                .into_iter()
                .filter(|r| !refs.contains(r))
                .collect();
            if wanted.is_empty() {
                break;
            }
            for r in wanted {
                match r.kind {
                    AggregateKind::Team => {
                        let l = self.reference::<Option<Team>>(&r).await?;
                        refs.insert_team(r.id, l.state);
                    }
                    AggregateKind::System => {
                        let l = self.reference::<Option<System>>(&r).await?;
                        refs.insert_system(r.id, l.state);
                    }
                    AggregateKind::Service => {
                        let l = self.reference::<Option<Service>>(&r).await?;
                        refs.insert_service(r.id, l.state);
                    }
                    AggregateKind::Deployment => {
                        let l = self.reference::<Option<Deployment>>(&r).await?;
                        refs.insert_deployment(r.id, l.state);
                    }
                    AggregateKind::Repository => {
                        let l = self.reference::<Option<RepositoryClaim>>(&r).await?;
                        refs.insert_repository(r.id, l.state);
                    }
                    AggregateKind::Plugin => {
                        let l = self.reference::<PluginListing>(&r).await?;
                        refs.insert_plugin(r.id, l.state);
                    }
                    // Nothing refers to the others.
                    _ => {}
                }
            }
        }
        Ok(refs)
    }
}

fn decode(m: &StoredMessage) -> Result<Commit, ExecuteError> {
    codec::decode_commit(&m.payload).map_err(|source| ExecuteError::Corrupt {
        sequence: m.sequence,
        source,
    })
}
