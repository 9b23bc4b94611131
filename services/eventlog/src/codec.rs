//! The envelope <-> protobuf codec: domain events to `paved.v1.Event` and
//! back, and whole commits to and from the bytes of one JetStream message.
//!
//! Decoding is strict: a stored message that does not map back to a valid
//! domain event is an error, never a silent skip (invariant 4).

use chrono::{DateTime, Utc};
use paved_domain::catalog::{
    Criticality, EntityEvent, EntityRef, ImportEvent, ImportReceipt, ImportResult, Lifecycle, Link,
    Objective, RepositoryEvent, ServiceEvent, ServiceSpec, ServiceType, Slo, SpecField,
    SystemEvent, TeamEvent, TeamProfile,
};
use paved_domain::delivery::{
    ChangeEvent, ChangeSpec, DeploymentEvent, IncidentEvent, Outcome, PullRequestAccount, Target,
};
use paved_domain::ops::{OpsEvent, Quarantine, Statement};
use paved_domain::plugins::installation::{Attempt, Grant, InstallationEvent};
use paved_domain::plugins::marketplace::{Delivery, Manifest, PluginEvent};
use paved_domain::provisioning::{
    Action, Approval, Approver, Plan, PlannedFile, ProvisioningEvent, ResourceKind, ResourceSpec,
};
use paved_domain::surveys::{
    Answers, Audience, DEFAULT_NPS_QUESTION, ResponseContent, SurveyEvent, SurveySpec,
};
use paved_domain::templates::library::{TemplateEvent, TemplateVersion};
use paved_domain::templates::task::{StepDef, TaskEvent, Upgrade};
use paved_domain::validate::Violations;
use paved_domain::{AggregateKind, Event, Name, Scope};
use paved_proto::v1 as pb;
use pb::event::Kind;
use prost::Message;

/// The envelope version written by this code.
pub const SCHEMA_VERSION: u32 = 1;

/// One command's events on one aggregate, with who, when and why (invariant 6).
#[derive(Clone, Debug, PartialEq)]
pub struct Commit {
    pub kind: AggregateKind,
    pub aggregate_id: Name,
    pub command_id: String,
    pub principal: String,
    pub occurred_at: DateTime<Utc>,
    pub correlation_id: String,
    pub causation_id: String,
    pub traceparent: String,
    pub tracestate: String,
    pub reason: String,
    pub events: Vec<Event>,
    /// The hash of the aggregate's previous commit (empty for its first).
    pub prev_hash: Vec<u8>,
    /// SHA-256 over `prev_hash` and this commit (see [`seal`]).
    pub hash: Vec<u8>,
    /// Digest of the command (see the proto); empty in old commits.
    pub command_fingerprint: Vec<u8>,
}

impl Commit {
    /// Chains this commit after `prev_hash` and computes its hash.
    pub fn seal(&mut self, prev_hash: &[u8]) {
        self.prev_hash = prev_hash.to_vec();
        self.hash = chain_hash(self);
    }

    /// Does the stored hash match the content?
    pub fn hash_ok(&self) -> bool {
        !self.hash.is_empty() && chain_hash(self) == self.hash
    }
}

/// SHA-256(prev_hash || the commit encoded with an empty `hash`).
///
/// prost encodes fields in tag order, so a sealed message is exactly the
/// hashed bytes with the `hash` record (field 15) inserted between fields 14
/// and 16: [`check_seal`] takes that record out of the stored bytes and
/// hashes the rest as stored, not a re-encoding of what decoded.
pub fn chain_hash(c: &Commit) -> Vec<u8> {
    let mut p = commit_to_proto(c);
    p.hash = Vec::new();
    link_hash(&c.prev_hash, &p.encode_to_vec())
}

fn link_hash(prev_hash: &[u8], unsealed: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(unsealed);
    h.finalize().to_vec()
}

/// The chain links a stored message claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seal {
    /// `<context>.<type>.<id>`: where the commit belongs (its subject
    /// after the log's prefix).
    pub aggregate: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// Why a stored message's seal does not hold.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("not a paved.v1.Commit: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("the commit carries no hash")]
    Unsealed,
    #[error("the content does not match its hash")]
    Mismatch,
}

/// Checks a stored message's bytes against the hash they carry and returns
/// its links (the caller checks `prev_hash` against the aggregate's chain).
pub fn check_seal(payload: &[u8]) -> Result<Seal, SealError> {
    let p = pb::Commit::decode(payload)?;
    if p.hash.len() != 32 {
        return Err(SealError::Unsealed);
    }
    let unsealed = without_hash_record(payload, &p.hash)?;
    if link_hash(&p.prev_hash, &unsealed) != p.hash {
        return Err(SealError::Mismatch);
    }
    Ok(Seal {
        aggregate: format!("{}.{}.{}", p.context, p.aggregate_type, p.aggregate_id),
        prev_hash: p.prev_hash,
        hash: p.hash,
    })
}

/// The stored bytes without the one `hash` record, which must be there
/// exactly once and in its canonical form (tag, length 32, the hash). Every
/// other byte, known field or not, stays in what is hashed: an appended or
/// altered field breaks the seal.
fn without_hash_record(payload: &[u8], hash: &[u8]) -> Result<Vec<u8>, SealError> {
    use prost::encoding::{WireType, decode_key, decode_varint};
    const HASH_FIELD: u32 = 15;
    let mut expected = vec![(HASH_FIELD << 3 | 2) as u8, 32];
    expected.extend_from_slice(hash);
    let mut rest = payload;
    let mut unsealed = Vec::with_capacity(payload.len());
    let mut found = false;
    while !rest.is_empty() {
        let start = payload.len() - rest.len();
        let (tag, wire) = decode_key(&mut rest)?;
        let skip = match wire {
            WireType::Varint => {
                decode_varint(&mut rest)?;
                0
            }
            WireType::SixtyFourBit => 8,
            WireType::ThirtyTwoBit => 4,
            WireType::LengthDelimited => decode_varint(&mut rest)? as usize,
            WireType::StartGroup | WireType::EndGroup => return Err(SealError::Mismatch),
        };
        if skip > rest.len() {
            return Err(SealError::Mismatch);
        }
        rest = &rest[skip..];
        let record = &payload[start..payload.len() - rest.len()];
        if tag == HASH_FIELD {
            if found || record != expected.as_slice() {
                return Err(SealError::Mismatch);
            }
            found = true;
        } else {
            unsealed.extend_from_slice(record);
        }
    }
    if found {
        Ok(unsealed)
    } else {
        Err(SealError::Mismatch)
    }
}

/// A commit as read back from the stream.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredCommit {
    /// Stream sequence of the message.
    pub sequence: u64,
    pub commit: Commit,
}

impl StoredCommit {
    /// Event `index` of the commit as readers and plugins receive it: the
    /// typed event with its commit's envelope, and its proto3 JSON
    /// rendering when `json` (most of a read's work; empty otherwise).
    pub fn record(&self, index: usize, event: &Event, json: bool) -> pb::EventRecord {
        let c = &self.commit;
        let typed = event_to_proto(event);
        let json = if json {
            serde_json::to_string(&typed).unwrap_or_default()
        } else {
            String::new()
        };
        pb::EventRecord {
            sequence: self.sequence,
            index: index as u32,
            context: c.kind.context().to_owned(),
            aggregate_type: c.kind.type_name().to_owned(),
            aggregate_id: c.aggregate_id.to_string(),
            command_id: c.command_id.clone(),
            principal: c.principal.clone(),
            occurred_at: Some(timestamp(c.occurred_at)),
            correlation_id: c.correlation_id.clone(),
            causation_id: c.causation_id.clone(),
            reason: c.reason.clone(),
            traceparent: c.traceparent.clone(),
            event_type: event.type_name().to_owned(),
            event: Some(typed),
            json,
        }
    }
}

/// Why stored bytes did not decode into a [`Commit`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a paved.v1.Commit: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("unsupported schema version {0}")]
    SchemaVersion(u32),
    #[error("unknown aggregate type {0:?}")]
    UnknownAggregate(String),
    #[error("invalid field {field}: {reason}")]
    Field { field: String, reason: String },
    #[error("event {index} has no kind (written by a newer version?)")]
    UnknownEvent { index: usize },
    #[error("event {index} ({event}) does not belong to a {kind}")]
    WrongAggregate {
        index: usize,
        event: &'static str,
        kind: AggregateKind,
    },
}

fn field_err(field: &str, reason: impl Into<String>) -> DecodeError {
    DecodeError::Field {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn name(field: &str, value: &str) -> Result<Name, DecodeError> {
    Name::parse(value).map_err(|e| field_err(field, e.to_string()))
}

fn optional_name(field: &str, value: &str) -> Result<Option<Name>, DecodeError> {
    if value.is_empty() {
        Ok(None)
    } else {
        name(field, value).map(Some)
    }
}

fn violations_err(v: Violations) -> DecodeError {
    let mut all = v.into_vec();
    let first = all.remove(0);
    field_err(&first.field, first.description)
}

// ---- value types ----

pub fn profile_to_proto(p: &TeamProfile) -> pb::TeamProfile {
    pb::TeamProfile {
        display_name: p.display_name.clone(),
        email: p.email.clone(),
        chat_channel: p.chat_channel.clone(),
    }
}

pub fn profile_from_proto(p: Option<&pb::TeamProfile>) -> TeamProfile {
    p.map(|p| TeamProfile {
        display_name: p.display_name.clone(),
        email: p.email.clone(),
        chat_channel: p.chat_channel.clone(),
    })
    .unwrap_or_default()
}

/// The enum value and the free text: set only for a value the enum does
/// not name (the enum then `UNSPECIFIED`).
pub fn service_type_to_proto(t: &ServiceType) -> (pb::ServiceType, String) {
    match t {
        ServiceType::Service => (pb::ServiceType::Service, String::new()),
        ServiceType::Website => (pb::ServiceType::Website, String::new()),
        ServiceType::Library => (pb::ServiceType::Library, String::new()),
        ServiceType::Worker => (pb::ServiceType::Worker, String::new()),
        ServiceType::Other(s) => (pb::ServiceType::Unspecified, s.clone()),
    }
}

/// A required `ServiceType`: the enum, else the free text `name` (at
/// `<field>_name`); neither, or both naming different values, is a violation.
pub fn service_type_from_proto(
    v: &mut Violations,
    field: &str,
    raw: i32,
    name: &str,
) -> Option<ServiceType> {
    let known = pb::ServiceType::try_from(raw).map(|t| match t {
        pb::ServiceType::Service => Some(ServiceType::Service),
        pb::ServiceType::Website => Some(ServiceType::Website),
        pb::ServiceType::Library => Some(ServiceType::Library),
        pb::ServiceType::Worker => Some(ServiceType::Worker),
        pb::ServiceType::Unspecified => None,
    });
    free_from_proto(
        v,
        field,
        raw,
        known.ok(),
        name,
        ServiceType::parse,
        ServiceType::as_str,
    )
}

/// An enum field whose other values travel as text: `known` is the enum's
/// value (`Some(None)` for UNSPECIFIED, `None` for a number it lacks).
fn free_from_proto<T>(
    v: &mut Violations,
    field: &str,
    raw: i32,
    known: Option<Option<T>>,
    name: &str,
    parse: fn(&str) -> Option<T>,
    as_str: fn(&T) -> &str,
) -> Option<T> {
    match known {
        None => {
            v.push(field, format!("unknown enum value {raw}"));
            None
        }
        Some(None) => {
            let parsed = parse(name);
            if parsed.is_none() {
                v.push(
                    field,
                    format!("is required (or {field}_name for another value)"),
                );
            }
            parsed
        }
        Some(Some(known)) => {
            if !name.is_empty() && name != as_str(&known) {
                v.push(format!("{field}_name"), format!("conflicts with {field}"));
            }
            Some(known)
        }
    }
}

/// As [`service_type_to_proto`].
pub fn lifecycle_to_proto(l: &Lifecycle) -> (pb::Lifecycle, String) {
    match l {
        Lifecycle::Experimental => (pb::Lifecycle::Experimental, String::new()),
        Lifecycle::Production => (pb::Lifecycle::Production, String::new()),
        Lifecycle::Deprecated => (pb::Lifecycle::Deprecated, String::new()),
        Lifecycle::Other(s) => (pb::Lifecycle::Unspecified, s.clone()),
    }
}

/// As [`service_type_from_proto`].
pub fn lifecycle_from_proto(
    v: &mut Violations,
    field: &str,
    raw: i32,
    name: &str,
) -> Option<Lifecycle> {
    let known = pb::Lifecycle::try_from(raw).map(|l| match l {
        pb::Lifecycle::Experimental => Some(Lifecycle::Experimental),
        pb::Lifecycle::Production => Some(Lifecycle::Production),
        pb::Lifecycle::Deprecated => Some(Lifecycle::Deprecated),
        pb::Lifecycle::Unspecified => None,
    });
    free_from_proto(
        v,
        field,
        raw,
        known.ok(),
        name,
        Lifecycle::parse,
        Lifecycle::as_str,
    )
}

pub fn criticality_to_proto(c: Option<Criticality>) -> pb::Criticality {
    match c {
        None => pb::Criticality::Unspecified,
        Some(Criticality::Low) => pb::Criticality::Low,
        Some(Criticality::Medium) => pb::Criticality::Medium,
        Some(Criticality::High) => pb::Criticality::High,
    }
}

/// An optional `Criticality`: unspecified is `None`, unknown values are violations.
pub fn criticality_from_proto(
    v: &mut Violations,
    field: &str,
    raw: i32,
) -> Option<Option<Criticality>> {
    match pb::Criticality::try_from(raw) {
        Ok(pb::Criticality::Unspecified) => Some(None),
        Ok(pb::Criticality::Low) => Some(Some(Criticality::Low)),
        Ok(pb::Criticality::Medium) => Some(Some(Criticality::Medium)),
        Ok(pb::Criticality::High) => Some(Some(Criticality::High)),
        Err(_) => {
            v.push(field, format!("unknown enum value {raw}"));
            None
        }
    }
}

pub fn spec_to_proto(s: &ServiceSpec) -> pb::ServiceSpec {
    let (kind, type_name) = service_type_to_proto(&s.kind);
    let (lifecycle, lifecycle_name) = lifecycle_to_proto(&s.lifecycle);
    pb::ServiceSpec {
        r#type: kind.into(),
        type_name,
        lifecycle: lifecycle.into(),
        lifecycle_name,
        system: s.system.as_ref().map(Name::to_string).unwrap_or_default(),
        description: s.description.clone(),
        tier: s.tier.map(u32::from).unwrap_or(0),
        repository_url: s.repository_url.clone(),
        docs_url: s.docs_url.clone(),
        tags: s.tags.clone(),
        labels: s.labels.clone(),
        annotations: s.annotations.clone(),
        links: s
            .links
            .iter()
            .map(|l| pb::Link {
                url: l.url.clone(),
                title: l.title.clone(),
            })
            .collect(),
    }
}

/// Copies the fields named in `fields` from a proto spec into `into`,
/// recording malformed values in `v` under `prefix` (e.g. `spec.`). Only the
/// named fields are read, so an update need not fill in the others.
pub fn spec_fields_from_proto(
    v: &mut Violations,
    prefix: &str,
    p: &pb::ServiceSpec,
    fields: &[SpecField],
    into: &mut ServiceSpec,
) {
    for field in fields {
        let path = format!("{prefix}{}", field.as_str());
        match field {
            SpecField::Type => {
                if let Some(t) = service_type_from_proto(v, &path, p.r#type, &p.type_name) {
                    into.kind = t;
                }
            }
            SpecField::Lifecycle => {
                if let Some(l) = lifecycle_from_proto(v, &path, p.lifecycle, &p.lifecycle_name) {
                    into.lifecycle = l;
                }
            }
            SpecField::System => into.system = v.optional_name(&path, &p.system),
            SpecField::Description => into.description.clone_from(&p.description),
            SpecField::Tier => match u8::try_from(p.tier) {
                Ok(0) => into.tier = None,
                Ok(t) => into.tier = Some(t),
                Err(_) => v.push(path, "must be 1..=5 (0 for none)"),
            },
            SpecField::RepositoryUrl => into.repository_url.clone_from(&p.repository_url),
            SpecField::DocsUrl => into.docs_url.clone_from(&p.docs_url),
            SpecField::Tags => into.tags.clone_from(&p.tags),
            SpecField::Labels => into.labels = p.labels.clone().into_iter().collect(),
            SpecField::Annotations => {
                into.annotations = p.annotations.clone().into_iter().collect();
            }
            SpecField::Links => {
                into.links = p
                    .links
                    .iter()
                    .map(|l| Link {
                        url: l.url.clone(),
                        title: l.title.clone(),
                    })
                    .collect();
            }
        }
    }
}

/// A whole spec from its proto form; `None` (with violations) if malformed.
pub fn spec_from_proto(
    v: &mut Violations,
    prefix: &str,
    p: Option<&pb::ServiceSpec>,
) -> Option<ServiceSpec> {
    let Some(p) = p else {
        v.push(prefix.trim_end_matches('.'), "is required");
        return None;
    };
    let before = v.len();
    let mut spec = ServiceSpec::new(ServiceType::Service, Lifecycle::Experimental);
    spec_fields_from_proto(v, prefix, p, &SpecField::ALL, &mut spec);
    (v.len() == before).then_some(spec)
}

pub fn slo_to_proto(s: &Slo) -> pb::Slo {
    pb::Slo {
        name: s.name.to_string(),
        window_days: s.window_days,
        objective: Some(match s.objective {
            Objective::Availability { target_percent } => {
                pb::slo::Objective::Availability(pb::AvailabilityObjective { target_percent })
            }
            Objective::Latency {
                percentile,
                threshold_ms,
            } => pb::slo::Objective::Latency(pb::LatencyObjective {
                percentile,
                threshold_ms,
            }),
        }),
    }
}

/// An SLO from its proto form; `window_days` 0 means the default window.
pub fn slo_from_proto(v: &mut Violations, prefix: &str, p: Option<&pb::Slo>) -> Option<Slo> {
    let Some(p) = p else {
        v.push(prefix.trim_end_matches('.'), "is required");
        return None;
    };
    let name = v.name(&format!("{prefix}name"), &p.name);
    let objective = match &p.objective {
        Some(pb::slo::Objective::Availability(a)) => Some(Objective::Availability {
            target_percent: a.target_percent,
        }),
        Some(pb::slo::Objective::Latency(l)) => Some(Objective::Latency {
            percentile: l.percentile,
            threshold_ms: l.threshold_ms,
        }),
        None => {
            v.push(
                format!("{prefix}objective"),
                "one of availability or latency is required",
            );
            None
        }
    };
    let window_days = if p.window_days == 0 {
        Slo::DEFAULT_WINDOW_DAYS
    } else {
        p.window_days
    };
    Some(Slo {
        name: name?,
        objective: objective?,
        window_days,
    })
}

// ---- events ----

pub fn event_to_proto(e: &Event) -> pb::Event {
    let kind = match e {
        Event::Team(e) => match e {
            TeamEvent::Created {
                name,
                profile,
                parent,
            } => Kind::TeamCreated(pb::TeamCreated {
                name: name.to_string(),
                profile: Some(profile_to_proto(profile)),
                parent: opt(parent),
            }),
            TeamEvent::ProfileUpdated { profile } => {
                Kind::TeamProfileUpdated(pb::TeamProfileUpdated {
                    profile: Some(profile_to_proto(profile)),
                })
            }
            TeamEvent::MemberAdded { member } => Kind::TeamMemberAdded(pb::TeamMemberAdded {
                member: member.clone(),
            }),
            TeamEvent::MemberRemoved { member } => Kind::TeamMemberRemoved(pb::TeamMemberRemoved {
                member: member.clone(),
            }),
            TeamEvent::ParentChanged { parent } => Kind::TeamParentChanged(pb::TeamParentChanged {
                parent: opt(parent),
            }),
            TeamEvent::Retired { reason } => Kind::TeamRetired(pb::TeamRetired {
                reason: reason.clone(),
            }),
        },
        Event::System(e) => match e {
            SystemEvent::Created {
                name,
                owner,
                display_name,
                description,
            } => Kind::SystemCreated(pb::SystemCreated {
                name: name.to_string(),
                owner: owner.to_string(),
                display_name: display_name.clone(),
                description: description.clone(),
            }),
            SystemEvent::Updated {
                display_name,
                description,
            } => Kind::SystemUpdated(pb::SystemUpdated {
                display_name: display_name.clone(),
                description: description.clone(),
            }),
            SystemEvent::OwnershipTransferred { from, to } => {
                Kind::SystemOwnershipTransferred(pb::SystemOwnershipTransferred {
                    from: from.to_string(),
                    to: to.to_string(),
                })
            }
            SystemEvent::Retired { reason } => Kind::SystemRetired(pb::SystemRetired {
                reason: reason.clone(),
            }),
        },
        Event::Service(e) => match e {
            ServiceEvent::Registered { name, owner, spec } => {
                Kind::ServiceRegistered(pb::ServiceRegistered {
                    name: name.to_string(),
                    owner: owner.to_string(),
                    spec: Some(spec_to_proto(spec)),
                })
            }
            ServiceEvent::Updated { spec, fields } => {
                // Only the changed fields are stored (the others keep their
                // defaults), so an update encodes the same way it decodes.
                let mut changed = ServiceSpec::new(ServiceType::Service, Lifecycle::Experimental);
                for f in fields {
                    f.copy(spec, &mut changed);
                }
                Kind::ServiceUpdated(pb::ServiceUpdated {
                    spec: Some(spec_to_proto(&changed)),
                    changed_fields: fields.iter().map(|f| f.as_str().to_owned()).collect(),
                })
            }
            ServiceEvent::OwnershipTransferred { from, to } => {
                Kind::ServiceOwnershipTransferred(pb::ServiceOwnershipTransferred {
                    from: from.to_string(),
                    to: to.to_string(),
                })
            }
            ServiceEvent::Deprecated { reason } => Kind::ServiceDeprecated(pb::ServiceDeprecated {
                reason: reason.clone(),
            }),
            ServiceEvent::Retired { reason } => Kind::ServiceRetired(pb::ServiceRetired {
                reason: reason.clone(),
            }),
            ServiceEvent::DependencyAdded { on, criticality } => {
                Kind::DependencyAdded(pb::DependencyAdded {
                    depends_on: on.to_string(),
                    criticality: criticality_to_proto(*criticality).into(),
                })
            }
            ServiceEvent::DependencyRemoved { on } => {
                Kind::DependencyRemoved(pb::DependencyRemoved {
                    depends_on: on.to_string(),
                })
            }
            ServiceEvent::SloSet { slo } => Kind::SloSet(pb::SloSet {
                slo: Some(slo_to_proto(slo)),
            }),
            ServiceEvent::SloRemoved { name } => Kind::SloRemoved(pb::SloRemoved {
                name: name.to_string(),
            }),
        },
        Event::Survey(e) => match e {
            SurveyEvent::Created { id, spec } => Kind::SurveyCreated(pb::SurveyCreated {
                id: id.to_string(),
                definition: Some(survey_spec_to_proto(spec)),
            }),
            SurveyEvent::Closed { at } => Kind::SurveyClosed(pb::SurveyClosed {
                at: Some(timestamp(*at)),
            }),
            SurveyEvent::ResponseSubmitted {
                pseudonym,
                content,
                replaces,
            } => Kind::SurveyResponseSubmitted(match content {
                ResponseContent::Sealed(sealed) => pb::SurveyResponseSubmitted {
                    pseudonym: pseudonym.clone(),
                    replaces: *replaces,
                    sealed: sealed.clone(),
                    ..Default::default()
                },
                ResponseContent::Plain { team, answers } => pb::SurveyResponseSubmitted {
                    pseudonym: pseudonym.clone(),
                    team: opt(team),
                    nps: u32::from(answers.nps),
                    comment: answers.comment.clone(),
                    scales: answers.scales.iter().map(|s| u32::from(*s)).collect(),
                    replaces: *replaces,
                    sealed: Vec::new(),
                },
            }),
        },
        Event::Deployment(e) => match e {
            DeploymentEvent::Requested {
                id,
                target,
                requested_at,
            } => Kind::DeploymentRequested(pb::DeploymentRequested {
                id: id.to_string(),
                target: Some(target_to_proto(target)),
                requested_at: Some(timestamp(*requested_at)),
            }),
            DeploymentEvent::Recorded {
                id,
                target,
                source,
                started_at,
                outcome,
            } => Kind::DeploymentRecorded(pb::DeploymentRecorded {
                id: id.to_string(),
                target: Some(target_to_proto(target)),
                source: source.clone(),
                started_at: Some(timestamp(*started_at)),
                outcome: Some(outcome_to_proto(outcome)),
            }),
            DeploymentEvent::Started {
                application,
                started_at,
            } => Kind::DeploymentStarted(pb::DeploymentStarted {
                application: application.clone(),
                started_at: Some(timestamp(*started_at)),
            }),
            DeploymentEvent::Succeeded(o) => Kind::DeploymentSucceeded(pb::DeploymentSucceeded {
                outcome: Some(outcome_to_proto(o)),
            }),
            DeploymentEvent::Failed(o) => Kind::DeploymentFailed(pb::DeploymentFailed {
                outcome: Some(outcome_to_proto(o)),
            }),
        },
        Event::Change(ChangeEvent::Recorded { sha, spec }) => {
            Kind::ChangeRecorded(change_to_proto(sha, spec))
        }
        Event::Change(ChangeEvent::PullRequestLinked { sha, spec }) => {
            Kind::ChangePullRequestLinked(pb::ChangePullRequestLinked {
                change: Some(change_to_proto(sha, spec)),
            })
        }
        Event::Change(ChangeEvent::PullRequestNoted { sha, pull_request }) => {
            Kind::ChangePullRequestNoted(pb::ChangePullRequestNoted {
                sha: sha.to_string(),
                pr_number: pull_request.number,
                pr_url: pull_request.url.clone(),
                created_at: Some(timestamp(pull_request.created_at)),
                merged_at: pull_request.merged_at.map(timestamp),
                author: pull_request.author.clone(),
                title: pull_request.title.clone(),
            })
        }
        Event::Incident(e) => match e {
            IncidentEvent::Opened {
                id,
                title,
                services,
                severity,
                started_at,
            } => Kind::IncidentOpened(pb::IncidentOpened {
                id: id.to_string(),
                title: title.clone(),
                services: services.iter().map(Name::to_string).collect(),
                severity: severity.clone(),
                started_at: Some(timestamp(*started_at)),
            }),
            IncidentEvent::Linked { deployment } => Kind::IncidentLinked(pb::IncidentLinked {
                deployment: deployment.to_string(),
            }),
            IncidentEvent::Resolved { resolved_at } => {
                Kind::IncidentResolved(pb::IncidentResolved {
                    resolved_at: Some(timestamp(*resolved_at)),
                })
            }
        },
        Event::Repository(RepositoryEvent::Claimed {
            identity,
            path,
            service,
            owner,
            claimed_at,
            joins,
        }) => Kind::RepositoryClaimed(pb::RepositoryClaimed {
            identity: identity.clone(),
            service: service.to_string(),
            claimed_at: Some(timestamp(*claimed_at)),
            path: path.clone(),
            owner: owner.as_ref().map(Name::to_string).unwrap_or_default(),
            joins: *joins,
        }),
        Event::Repository(RepositoryEvent::GithubIdRecorded {
            identity,
            github_id,
        }) => Kind::RepositoryGithubIdRecorded(pb::RepositoryGithubIdRecorded {
            identity: identity.clone(),
            github_id: *github_id,
        }),
        Event::Entity(EntityEvent::Stored {
            entity_ref,
            document,
        }) => Kind::EntityStored(pb::EntityStored {
            kind: entity_ref.kind.clone(),
            namespace: entity_ref.namespace.clone(),
            name: entity_ref.name.clone(),
            document_json: document.to_string(),
        }),
        Event::Entity(EntityEvent::Removed { entity_ref }) => {
            Kind::EntityRemoved(pb::EntityRemoved {
                kind: entity_ref.kind.clone(),
                namespace: entity_ref.namespace.clone(),
                name: entity_ref.name.clone(),
            })
        }
        Event::Provisioning(e) => provisioning_to_proto(e),
        Event::Template(e) => template_to_proto(e),
        Event::Task(e) => task_to_proto(e),
        Event::Plugin(e) => plugin_to_proto(e),
        Event::Installation(e) => installation_to_proto(e),
        Event::Ops(OpsEvent::MessageQuarantined(q)) => {
            Kind::MessageQuarantined(pb::MessageQuarantined {
                statement: Some(statement_to_proto(&q.statement)),
                key_id: q.key_id.clone(),
                signature: q.signature.clone(),
            })
        }
        Event::Import(ImportEvent::Recorded(r)) => {
            Kind::BackstageImportRecorded(pb::BackstageImportRecorded {
                fingerprint: r.fingerprint.clone(),
                sequence: r.result.sequence,
                commands: r.result.commands,
                events: r.result.events,
                entities: r.result.entities,
                unchanged: r.result.unchanged,
            })
        }
    };
    pb::Event { kind: Some(kind) }
}

// ---- delivery ----

pub fn target_to_proto(t: &Target) -> pb::DeploymentTarget {
    pb::DeploymentTarget {
        service: t.service.to_string(),
        environment: t.environment.to_string(),
        revision: t.revision.clone(),
        commits: t.commits.clone(),
        rollback_of: opt(&t.rollback_of),
    }
}

/// Reads a target, recording what is wrong under `prefix` (e.g. `target.`).
pub fn target_from_proto(
    v: &mut Violations,
    prefix: &str,
    t: Option<&pb::DeploymentTarget>,
) -> Option<Target> {
    let Some(t) = t else {
        v.push(prefix.trim_end_matches('.'), "is required");
        return None;
    };
    let service = v.name(&format!("{prefix}service"), &t.service);
    let environment = v.name(&format!("{prefix}environment"), &t.environment);
    let rollback_of = if t.rollback_of.is_empty() {
        None
    } else {
        v.name(&format!("{prefix}rollback_of"), &t.rollback_of)
    };
    if !t.rollback_of.is_empty() && rollback_of.is_none() {
        return None;
    }
    Some(Target {
        service: service?,
        environment: environment?,
        revision: t.revision.clone(),
        commits: t.commits.clone(),
        rollback_of,
    })
}

pub fn outcome_to_proto(o: &Outcome) -> pb::DeploymentOutcome {
    pb::DeploymentOutcome {
        succeeded: o.succeeded,
        revision: o.revision.clone(),
        phase: o.phase.clone(),
        health: o.health.clone(),
        message: o.message.clone(),
        finished_at: Some(timestamp(o.finished_at)),
    }
}

pub fn outcome_from_proto(
    v: &mut Violations,
    prefix: &str,
    o: Option<&pb::DeploymentOutcome>,
) -> Option<Outcome> {
    let Some(o) = o else {
        v.push(prefix.trim_end_matches('.'), "is required");
        return None;
    };
    let Some(finished_at) = time_from_proto(o.finished_at.as_ref()) else {
        v.push(format!("{prefix}finished_at"), "is required");
        return None;
    };
    Some(Outcome {
        succeeded: o.succeeded,
        revision: o.revision.clone(),
        phase: o.phase.clone(),
        health: o.health.clone(),
        message: o.message.clone(),
        finished_at,
    })
}

fn change_to_proto(sha: &Name, spec: &ChangeSpec) -> pb::ChangeRecorded {
    pb::ChangeRecorded {
        sha: sha.to_string(),
        service: spec.service.to_string(),
        authored_at: spec.authored_at.map(timestamp),
        committed_at: Some(timestamp(spec.committed_at)),
        merged_at: spec.merged_at.map(timestamp),
        pr_number: spec.pr_number,
        pr_url: spec.pr_url.clone(),
        author: spec.author.clone(),
        title: spec.title.clone(),
        backfill: spec.backfill,
    }
}

fn change_from_proto(e: &pb::ChangeRecorded) -> Result<(Name, ChangeSpec), DecodeError> {
    Ok((
        name("sha", &e.sha)?,
        ChangeSpec {
            service: name("service", &e.service)?,
            authored_at: time_from_proto(e.authored_at.as_ref()),
            committed_at: required_time("committed_at", e.committed_at.as_ref())?,
            merged_at: time_from_proto(e.merged_at.as_ref()),
            pr_number: e.pr_number,
            pr_url: e.pr_url.clone(),
            author: e.author.clone(),
            title: e.title.clone(),
            backfill: e.backfill,
        },
    ))
}

fn required_time(
    field: &str,
    t: Option<&paved_proto::wkt::Timestamp>,
) -> Result<DateTime<Utc>, DecodeError> {
    time_from_proto(t).ok_or_else(|| field_err(field, "missing"))
}

fn opt(name: &Option<Name>) -> String {
    name.as_ref().map(Name::to_string).unwrap_or_default()
}

/// Runs a mapping that records violations and turns the first into a decode error.
fn strict<T>(f: impl FnOnce(&mut Violations) -> Option<T>) -> Result<T, DecodeError> {
    let mut v = Violations::new();
    match f(&mut v) {
        Some(t) if v.is_empty() => Ok(t),
        _ if !v.is_empty() => Err(violations_err(v)),
        _ => Err(field_err("event", "missing value")),
    }
}

/// A quarantine statement as signed (see `QuarantineStatement` in the proto).
pub fn statement_to_proto(s: &Statement) -> pb::QuarantineStatement {
    pb::QuarantineStatement {
        sequence: s.sequence,
        payload_sha256: s.payload_sha256.clone(),
        projections: s.projections.clone(),
        reason: s.reason.clone(),
    }
}

pub fn statement_from_proto(p: &pb::QuarantineStatement) -> Statement {
    Statement {
        sequence: p.sequence,
        payload_sha256: p.payload_sha256.clone(),
        projections: p.projections.clone(),
        reason: p.reason.clone(),
    }
}

/// Survey answers as stored (plain in old events, inside sealed content since).
pub fn answers_from_proto(nps: u32, comment: &str, scales: &[u32]) -> Result<Answers, DecodeError> {
    Ok(Answers {
        nps: u8::try_from(nps).map_err(|_| field_err("nps", "out of range"))?,
        comment: comment.to_owned(),
        scales: scales
            .iter()
            .map(|s| u8::try_from(*s).map_err(|_| field_err("scales", "out of range")))
            .collect::<Result<_, _>>()?,
    })
}

pub fn event_from_proto(e: &pb::Event, index: usize) -> Result<Event, DecodeError> {
    let Some(kind) = &e.kind else {
        return Err(DecodeError::UnknownEvent { index });
    };
    Ok(match kind {
        Kind::TeamCreated(e) => TeamEvent::Created {
            name: name("name", &e.name)?,
            profile: profile_from_proto(e.profile.as_ref()),
            parent: optional_name("parent", &e.parent)?,
        }
        .into(),
        Kind::TeamProfileUpdated(e) => TeamEvent::ProfileUpdated {
            profile: profile_from_proto(e.profile.as_ref()),
        }
        .into(),
        Kind::TeamMemberAdded(e) => TeamEvent::MemberAdded {
            member: e.member.clone(),
        }
        .into(),
        Kind::TeamMemberRemoved(e) => TeamEvent::MemberRemoved {
            member: e.member.clone(),
        }
        .into(),
        Kind::TeamParentChanged(e) => TeamEvent::ParentChanged {
            parent: optional_name("parent", &e.parent)?,
        }
        .into(),
        Kind::TeamRetired(e) => TeamEvent::Retired {
            reason: e.reason.clone(),
        }
        .into(),
        Kind::SystemCreated(e) => SystemEvent::Created {
            name: name("name", &e.name)?,
            owner: name("owner", &e.owner)?,
            display_name: e.display_name.clone(),
            description: e.description.clone(),
        }
        .into(),
        Kind::SystemUpdated(e) => SystemEvent::Updated {
            display_name: e.display_name.clone(),
            description: e.description.clone(),
        }
        .into(),
        Kind::SystemOwnershipTransferred(e) => SystemEvent::OwnershipTransferred {
            from: name("from", &e.from)?,
            to: name("to", &e.to)?,
        }
        .into(),
        Kind::SystemRetired(e) => SystemEvent::Retired {
            reason: e.reason.clone(),
        }
        .into(),
        Kind::ServiceRegistered(e) => ServiceEvent::Registered {
            name: name("name", &e.name)?,
            owner: name("owner", &e.owner)?,
            spec: strict(|v| spec_from_proto(v, "spec.", e.spec.as_ref()))?,
        }
        .into(),
        Kind::ServiceUpdated(e) => {
            let fields = e
                .changed_fields
                .iter()
                .map(|f| SpecField::parse(f).ok_or_else(|| field_err("changed_fields", f.clone())))
                .collect::<Result<Vec<_>, _>>()?;
            let p = e
                .spec
                .as_ref()
                .ok_or_else(|| field_err("spec", "missing"))?;
            let spec = strict(|v| {
                let mut spec = ServiceSpec::new(ServiceType::Service, Lifecycle::Experimental);
                spec_fields_from_proto(v, "spec.", p, &fields, &mut spec);
                Some(spec)
            })?;
            ServiceEvent::Updated { spec, fields }.into()
        }
        Kind::ServiceOwnershipTransferred(e) => ServiceEvent::OwnershipTransferred {
            from: name("from", &e.from)?,
            to: name("to", &e.to)?,
        }
        .into(),
        Kind::ServiceDeprecated(e) => ServiceEvent::Deprecated {
            reason: e.reason.clone(),
        }
        .into(),
        Kind::ServiceRetired(e) => ServiceEvent::Retired {
            reason: e.reason.clone(),
        }
        .into(),
        Kind::DependencyAdded(e) => ServiceEvent::DependencyAdded {
            on: name("depends_on", &e.depends_on)?,
            criticality: strict(|v| criticality_from_proto(v, "criticality", e.criticality))?,
        }
        .into(),
        Kind::DependencyRemoved(e) => ServiceEvent::DependencyRemoved {
            on: name("depends_on", &e.depends_on)?,
        }
        .into(),
        Kind::SloSet(e) => ServiceEvent::SloSet {
            slo: strict(|v| slo_from_proto(v, "slo.", e.slo.as_ref()))?,
        }
        .into(),
        Kind::SloRemoved(e) => ServiceEvent::SloRemoved {
            name: name("name", &e.name)?,
        }
        .into(),
        Kind::SurveyCreated(e) => SurveyEvent::Created {
            id: name("id", &e.id)?,
            spec: strict(|v| survey_spec_from_proto(v, "definition.", e.definition.as_ref()))?,
        }
        .into(),
        Kind::SurveyClosed(e) => SurveyEvent::Closed {
            at: time_from_proto(e.at.as_ref()).ok_or_else(|| field_err("at", "missing"))?,
        }
        .into(),
        Kind::SurveyResponseSubmitted(e) => SurveyEvent::ResponseSubmitted {
            pseudonym: e.pseudonym.clone(),
            content: if e.sealed.is_empty() {
                ResponseContent::Plain {
                    team: optional_name("team", &e.team)?,
                    answers: answers_from_proto(e.nps, &e.comment, &e.scales)?,
                }
            } else {
                ResponseContent::Sealed(e.sealed.clone())
            },
            replaces: e.replaces,
        }
        .into(),
        Kind::DeploymentRequested(e) => DeploymentEvent::Requested {
            id: name("id", &e.id)?,
            target: strict(|v| target_from_proto(v, "target.", e.target.as_ref()))?,
            requested_at: required_time("requested_at", e.requested_at.as_ref())?,
        }
        .into(),
        Kind::DeploymentRecorded(e) => DeploymentEvent::Recorded {
            id: name("id", &e.id)?,
            target: strict(|v| target_from_proto(v, "target.", e.target.as_ref()))?,
            source: e.source.clone(),
            started_at: required_time("started_at", e.started_at.as_ref())?,
            outcome: strict(|v| outcome_from_proto(v, "outcome.", e.outcome.as_ref()))?,
        }
        .into(),
        Kind::DeploymentStarted(e) => DeploymentEvent::Started {
            application: e.application.clone(),
            started_at: required_time("started_at", e.started_at.as_ref())?,
        }
        .into(),
        Kind::DeploymentSucceeded(e) => DeploymentEvent::Succeeded(strict(|v| {
            outcome_from_proto(v, "outcome.", e.outcome.as_ref())
        })?)
        .into(),
        Kind::DeploymentFailed(e) => DeploymentEvent::Failed(strict(|v| {
            outcome_from_proto(v, "outcome.", e.outcome.as_ref())
        })?)
        .into(),
        Kind::ChangeRecorded(e) => {
            let (sha, spec) = change_from_proto(e)?;
            ChangeEvent::Recorded { sha, spec }.into()
        }
        Kind::ChangePullRequestLinked(e) => {
            let Some(change) = &e.change else {
                return Err(field_err("change", "missing"));
            };
            let (sha, spec) = change_from_proto(change)?;
            ChangeEvent::PullRequestLinked { sha, spec }.into()
        }
        Kind::ChangePullRequestNoted(e) => ChangeEvent::PullRequestNoted {
            sha: name("sha", &e.sha)?,
            pull_request: PullRequestAccount {
                number: e.pr_number,
                url: e.pr_url.clone(),
                created_at: required_time("created_at", e.created_at.as_ref())?,
                merged_at: time_from_proto(e.merged_at.as_ref()),
                author: e.author.clone(),
                title: e.title.clone(),
            },
        }
        .into(),
        Kind::IncidentOpened(e) => IncidentEvent::Opened {
            id: name("id", &e.id)?,
            title: e.title.clone(),
            services: e
                .services
                .iter()
                .map(|s| name("services", s))
                .collect::<Result<_, _>>()?,
            severity: e.severity.clone(),
            started_at: required_time("started_at", e.started_at.as_ref())?,
        }
        .into(),
        Kind::IncidentLinked(e) => IncidentEvent::Linked {
            deployment: name("deployment", &e.deployment)?,
        }
        .into(),
        Kind::IncidentResolved(e) => IncidentEvent::Resolved {
            resolved_at: required_time("resolved_at", e.resolved_at.as_ref())?,
        }
        .into(),
        Kind::RepositoryClaimed(e) => RepositoryEvent::Claimed {
            identity: e.identity.clone(),
            path: e.path.clone(),
            service: name("service", &e.service)?,
            owner: (!e.owner.is_empty())
                .then(|| name("owner", &e.owner))
                .transpose()?,
            claimed_at: required_time("claimed_at", e.claimed_at.as_ref())?,
            joins: e.joins,
        }
        .into(),
        Kind::RepositoryGithubIdRecorded(e) => RepositoryEvent::GithubIdRecorded {
            identity: e.identity.clone(),
            github_id: e.github_id,
        }
        .into(),
        Kind::EntityStored(e) => EntityEvent::Stored {
            entity_ref: EntityRef {
                kind: e.kind.clone(),
                namespace: e.namespace.clone(),
                name: e.name.clone(),
            },
            document: serde_json::from_str(&e.document_json)
                .map_err(|err| field_err("document_json", err.to_string()))?,
        }
        .into(),
        Kind::EntityRemoved(e) => EntityEvent::Removed {
            entity_ref: EntityRef {
                kind: e.kind.clone(),
                namespace: e.namespace.clone(),
                name: e.name.clone(),
            },
        }
        .into(),
        Kind::ProvisionRequested(e) => ProvisioningEvent::Requested {
            number: e.number,
            spec: resource_from_proto(e.resource.as_ref())?,
            action: Action::parse(&e.action)
                .ok_or_else(|| field_err("action", format!("unknown action {:?}", e.action)))?,
            requested_by: e.requested_by.clone(),
        }
        .into(),
        Kind::ProvisionPlanned(e) => ProvisioningEvent::Planned {
            number: e.number,
            plan: Plan {
                base: e.base.clone(),
                files: e
                    .files
                    .iter()
                    .map(|f| PlannedFile {
                        path: f.path.clone(),
                        content: (!f.deleted).then(|| f.content.clone()),
                    })
                    .collect(),
                diff: e.diff.clone(),
                drift: e.drift.clone(),
            },
            approval: Approval {
                approver: Approver::parse(&e.approver).ok_or_else(|| {
                    field_err("approver", format!("unknown approver {:?}", e.approver))
                })?,
                self_approval: e.self_approval,
            },
        }
        .into(),
        Kind::ProvisionApproved(e) => ProvisioningEvent::Approved {
            number: e.number,
            by: e.by.clone(),
            reason: e.reason.clone(),
            automatic: e.automatic,
        }
        .into(),
        Kind::ProvisionRejected(e) => ProvisioningEvent::Rejected {
            number: e.number,
            by: e.by.clone(),
            reason: e.reason.clone(),
        }
        .into(),
        Kind::ProvisionApplyStarted(e) => {
            ProvisioningEvent::ApplyStarted { number: e.number }.into()
        }
        Kind::ProvisionApplied(e) => ProvisioningEvent::Applied {
            number: e.number,
            commit: e.commit.clone(),
        }
        .into(),
        Kind::ProvisionVerified(e) => ProvisioningEvent::Verified { number: e.number }.into(),
        Kind::ProvisionFailed(e) => ProvisioningEvent::Failed {
            number: e.number,
            reason: e.reason.clone(),
        }
        .into(),
        Kind::TemplatePublished(e) => TemplateEvent::Published(TemplateVersion {
            version: e.version,
            document: json("document_json", &e.document_json)?,
            files: e
                .files
                .iter()
                .map(|f| (f.path.clone(), f.content.clone()))
                .collect(),
            digest: e.digest.clone(),
        })
        .into(),
        Kind::PluginVersionPublished(e) => PluginEvent::Published(Manifest {
            version: e.version.clone(),
            publisher: name("publisher", &e.publisher)?,
            title: e.title.clone(),
            description: e.description.clone(),
            homepage: e.homepage.clone(),
            scopes: scopes("scopes", &e.scopes)?,
            event_types: e.event_types.clone(),
            delivery: if e.webhook_url.is_empty() {
                Delivery::Pull
            } else {
                Delivery::Webhook {
                    url: e.webhook_url.clone(),
                }
            },
        })
        .into(),
        Kind::PluginVersionDeprecated(e) => PluginEvent::Deprecated {
            version: e.version.clone(),
            reason: e.reason.clone(),
        }
        .into(),
        Kind::PluginVersionYanked(e) => PluginEvent::Yanked {
            version: e.version.clone(),
            reason: e.reason.clone(),
        }
        .into(),
        Kind::PluginInstalled(e) => InstallationEvent::Installed(Grant {
            plugin: name("plugin", &e.plugin)?,
            version: e.version.clone(),
            scopes: scopes("scopes", &e.scopes)?,
            team: optional_name("team", &e.team)?,
        })
        .into(),
        Kind::PluginInstallationUpgraded(e) => InstallationEvent::Upgraded {
            version: e.version.clone(),
            scopes: scopes("scopes", &e.scopes)?,
        }
        .into(),
        Kind::PluginEventsAcknowledged(e) => InstallationEvent::Acknowledged {
            sequence: e.sequence,
        }
        .into(),
        Kind::PluginUninstalled(e) => InstallationEvent::Uninstalled {
            reason: e.reason.clone(),
        }
        .into(),
        Kind::WebhookAttemptFailed(e) => InstallationEvent::WebhookAttemptFailed {
            attempt: attempt_from_proto(e.attempt.as_ref()),
            number: e.number,
            retry_at: time_from_proto(e.retry_at.as_ref())
                .ok_or_else(|| field_err("retry_at", "is required".to_owned()))?,
        }
        .into(),
        Kind::WebhookDeadLettered(e) => InstallationEvent::WebhookDeadLettered {
            attempt: attempt_from_proto(e.attempt.as_ref()),
            attempts: e.attempts,
        }
        .into(),
        Kind::WebhookEndpointDisabled(e) => InstallationEvent::WebhookEndpointDisabled {
            attempt: attempt_from_proto(e.attempt.as_ref()),
        }
        .into(),
        Kind::PluginTokenRotated(e) => InstallationEvent::TokenRotated {
            overlap_seconds: e.overlap_seconds,
        }
        .into(),
        Kind::WebhookReplayRequested(e) => InstallationEvent::WebhookReplayRequested {
            sequence: e.sequence,
        }
        .into(),
        Kind::WebhookReplayed(e) => InstallationEvent::WebhookReplayed {
            attempt: attempt_from_proto(e.attempt.as_ref()),
            delivered: e.delivered,
        }
        .into(),
        Kind::TaskCreated(e) => TaskEvent::Created {
            template: name("template", &e.template)?,
            version: e.version,
            team: name("team", &e.team)?,
            parameters: match json("parameters_json", &e.parameters_json)? {
                serde_json::Value::Object(m) => m,
                _ => return Err(field_err("parameters_json", "is not a JSON object")),
            },
            steps: e
                .steps
                .iter()
                .map(|s| StepDef {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    action: s.action.clone(),
                })
                .collect(),
            upgrade: optional_name("upgrade_service", &e.upgrade_service)?.map(|service| Upgrade {
                service,
                from_version: e.upgrade_from_version,
            }),
        }
        .into(),
        Kind::TaskStepStarted(e) => TaskEvent::StepStarted {
            step: e.step.clone(),
            attempt: e.attempt,
        }
        .into(),
        Kind::TaskStepFinished(e) => TaskEvent::StepFinished {
            step: e.step.clone(),
            output: json("output_json", &e.output_json)?,
            log: e.log.clone(),
        }
        .into(),
        Kind::TaskStepSkipped(e) => TaskEvent::StepSkipped {
            step: e.step.clone(),
            why: e.why.clone(),
        }
        .into(),
        Kind::TaskStepFailed(e) => TaskEvent::StepFailed {
            step: e.step.clone(),
            reason: e.reason.clone(),
            log: e.log.clone(),
        }
        .into(),
        Kind::TaskRetried(e) => TaskEvent::Retried {
            step: e.step.clone(),
        }
        .into(),
        Kind::TaskCompleted(e) => TaskEvent::Completed {
            output: json("output_json", &e.output_json)?,
        }
        .into(),
        Kind::MessageQuarantined(e) => OpsEvent::MessageQuarantined(Quarantine {
            statement: statement_from_proto(
                e.statement
                    .as_ref()
                    .ok_or_else(|| field_err("statement", "missing"))?,
            ),
            key_id: e.key_id.clone(),
            signature: e.signature.clone(),
        })
        .into(),
        Kind::BackstageImportRecorded(e) => ImportEvent::Recorded(ImportReceipt {
            fingerprint: e.fingerprint.clone(),
            result: ImportResult {
                sequence: e.sequence,
                commands: e.commands,
                events: e.events,
                entities: e.entities,
                unchanged: e.unchanged,
            },
        })
        .into(),
    })
}

// ---- surveys ----

pub fn survey_spec_to_proto(s: &SurveySpec) -> pb::SurveyDefinition {
    pb::SurveyDefinition {
        title: s.title.clone(),
        nps_question: s.nps_question.clone(),
        comment_question: s.comment_question.clone().unwrap_or_default(),
        scale_questions: s.scale_questions.clone(),
        audience: match &s.audience {
            Audience::Everyone => Vec::new(),
            Audience::Teams(t) => t.iter().map(Name::to_string).collect(),
        },
        opens_at: Some(timestamp(s.opens_at)),
        closes_at: Some(timestamp(s.closes_at)),
        trigger: s.trigger.clone().unwrap_or_default(),
    }
}

/// A survey definition from its proto form. An empty `nps_question` takes
/// the default; a missing `opens_at` means `now`.
pub fn survey_spec_from_proto(
    v: &mut Violations,
    prefix: &str,
    p: Option<&pb::SurveyDefinition>,
) -> Option<SurveySpec> {
    let Some(p) = p else {
        v.push(prefix.trim_end_matches('.'), "is required");
        return None;
    };
    let mut teams = std::collections::BTreeSet::new();
    for (i, t) in p.audience.iter().enumerate() {
        teams.extend(v.name(&format!("{prefix}audience[{i}]"), t));
    }
    let opens_at = time_from_proto(p.opens_at.as_ref());
    let closes_at = time_from_proto(p.closes_at.as_ref());
    if opens_at.is_none() {
        v.push(format!("{prefix}opens_at"), "is required");
    }
    if closes_at.is_none() {
        v.push(format!("{prefix}closes_at"), "is required");
    }
    Some(SurveySpec {
        title: p.title.clone(),
        nps_question: if p.nps_question.is_empty() {
            DEFAULT_NPS_QUESTION.to_owned()
        } else {
            p.nps_question.clone()
        },
        comment_question: (!p.comment_question.is_empty()).then(|| p.comment_question.clone()),
        scale_questions: p.scale_questions.clone(),
        audience: if p.audience.is_empty() {
            Audience::Everyone
        } else {
            Audience::Teams(teams)
        },
        opens_at: opens_at?,
        closes_at: closes_at?,
        trigger: (!p.trigger.is_empty()).then(|| p.trigger.clone()),
    })
}

pub fn time_from_proto(t: Option<&paved_proto::wkt::Timestamp>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
}

// ---- commits ----

pub fn timestamp(t: DateTime<Utc>) -> paved_proto::wkt::Timestamp {
    paved_proto::wkt::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn commit_to_proto(c: &Commit) -> pb::Commit {
    pb::Commit {
        schema_version: SCHEMA_VERSION,
        context: c.kind.context().to_owned(),
        aggregate_type: c.kind.type_name().to_owned(),
        aggregate_id: c.aggregate_id.to_string(),
        command_id: c.command_id.clone(),
        principal: c.principal.clone(),
        occurred_at: Some(timestamp(c.occurred_at)),
        correlation_id: c.correlation_id.clone(),
        causation_id: c.causation_id.clone(),
        traceparent: c.traceparent.clone(),
        tracestate: c.tracestate.clone(),
        reason: c.reason.clone(),
        events: c.events.iter().map(event_to_proto).collect(),
        prev_hash: c.prev_hash.clone(),
        hash: c.hash.clone(),
        command_fingerprint: c.command_fingerprint.clone(),
    }
}

/// The bytes of one JetStream message.
pub fn encode_commit(c: &Commit) -> Vec<u8> {
    commit_to_proto(c).encode_to_vec()
}

pub fn commit_from_proto(p: pb::Commit) -> Result<Commit, DecodeError> {
    if p.schema_version != SCHEMA_VERSION {
        return Err(DecodeError::SchemaVersion(p.schema_version));
    }
    let kind = AggregateKind::parse(&p.aggregate_type)
        .ok_or_else(|| DecodeError::UnknownAggregate(p.aggregate_type.clone()))?;
    let occurred_at = time_from_proto(p.occurred_at.as_ref())
        .ok_or_else(|| field_err("occurred_at", "missing or out of range"))?;
    let events = p
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let event = event_from_proto(e, i)?;
            if event_kind(&event) != kind {
                return Err(DecodeError::WrongAggregate {
                    index: i,
                    event: event.type_name(),
                    kind,
                });
            }
            Ok(event)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Commit {
        kind,
        aggregate_id: name("aggregate_id", &p.aggregate_id)?,
        command_id: p.command_id,
        principal: p.principal,
        occurred_at,
        correlation_id: p.correlation_id,
        causation_id: p.causation_id,
        traceparent: p.traceparent,
        tracestate: p.tracestate,
        reason: p.reason,
        events,
        prev_hash: p.prev_hash,
        hash: p.hash,
        command_fingerprint: p.command_fingerprint,
    })
}

pub fn decode_commit(bytes: &[u8]) -> Result<Commit, DecodeError> {
    commit_from_proto(pb::Commit::decode(bytes)?)
}

/// The aggregate kind an event belongs to.
pub fn event_kind(e: &Event) -> AggregateKind {
    match e {
        Event::Team(_) => AggregateKind::Team,
        Event::System(_) => AggregateKind::System,
        Event::Service(_) => AggregateKind::Service,
        Event::Survey(_) => AggregateKind::Survey,
        Event::Deployment(_) => AggregateKind::Deployment,
        Event::Change(_) => AggregateKind::Change,
        Event::Incident(_) => AggregateKind::Incident,
        Event::Import(_) => AggregateKind::Import,
        Event::Repository(_) => AggregateKind::Repository,
        Event::Ops(_) => AggregateKind::Quarantine,
        Event::Entity(_) => AggregateKind::Entity,
        Event::Provisioning(_) => AggregateKind::Tenancy,
        Event::Template(_) => AggregateKind::Template,
        Event::Task(_) => AggregateKind::Task,
        Event::Plugin(_) => AggregateKind::Plugin,
        Event::Installation(_) => AggregateKind::Installation,
    }
}

/// A JSON field of an event (empty: null).
fn json(field: &str, text: &str) -> Result<serde_json::Value, DecodeError> {
    if text.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(text).map_err(|e| field_err(field, e.to_string()))
}

/// JSON of a value for an event field (null: empty).
fn json_text(v: &serde_json::Value) -> String {
    if v.is_null() {
        String::new()
    } else {
        v.to_string()
    }
}

/// Scopes of an event, each one Paved knows.
fn scopes(field: &str, values: &[String]) -> Result<Vec<Scope>, DecodeError> {
    values
        .iter()
        .map(|s| Scope::parse(s).ok_or_else(|| field_err(field, format!("unknown scope {s:?}"))))
        .collect()
}

fn scope_strings(scopes: &[Scope]) -> Vec<String> {
    scopes.iter().map(Scope::to_string).collect()
}

fn plugin_to_proto(e: &PluginEvent) -> Kind {
    match e {
        PluginEvent::Published(m) => Kind::PluginVersionPublished(pb::PluginVersionPublished {
            version: m.version.clone(),
            publisher: m.publisher.to_string(),
            title: m.title.clone(),
            description: m.description.clone(),
            homepage: m.homepage.clone(),
            scopes: scope_strings(&m.scopes),
            event_types: m.event_types.clone(),
            webhook_url: match &m.delivery {
                Delivery::Pull => String::new(),
                Delivery::Webhook { url } => url.clone(),
            },
        }),
        PluginEvent::Deprecated { version, reason } => {
            Kind::PluginVersionDeprecated(pb::PluginVersionDeprecated {
                version: version.clone(),
                reason: reason.clone(),
            })
        }
        PluginEvent::Yanked { version, reason } => {
            Kind::PluginVersionYanked(pb::PluginVersionYanked {
                version: version.clone(),
                reason: reason.clone(),
            })
        }
    }
}

fn installation_to_proto(e: &InstallationEvent) -> Kind {
    match e {
        InstallationEvent::Installed(g) => Kind::PluginInstalled(pb::PluginInstalled {
            plugin: g.plugin.to_string(),
            version: g.version.clone(),
            scopes: scope_strings(&g.scopes),
            team: g.team.as_ref().map(Name::to_string).unwrap_or_default(),
        }),
        InstallationEvent::Upgraded { version, scopes } => {
            Kind::PluginInstallationUpgraded(pb::PluginInstallationUpgraded {
                version: version.clone(),
                scopes: scope_strings(scopes),
            })
        }
        InstallationEvent::Acknowledged { sequence } => {
            Kind::PluginEventsAcknowledged(pb::PluginEventsAcknowledged {
                sequence: *sequence,
            })
        }
        InstallationEvent::Uninstalled { reason } => {
            Kind::PluginUninstalled(pb::PluginUninstalled {
                reason: reason.clone(),
            })
        }
        InstallationEvent::WebhookAttemptFailed {
            attempt,
            number,
            retry_at,
        } => Kind::WebhookAttemptFailed(pb::WebhookAttemptFailed {
            attempt: Some(attempt_to_proto(attempt)),
            number: *number,
            retry_at: Some(timestamp(*retry_at)),
        }),
        InstallationEvent::WebhookDeadLettered { attempt, attempts } => {
            Kind::WebhookDeadLettered(pb::WebhookDeadLettered {
                attempt: Some(attempt_to_proto(attempt)),
                attempts: *attempts,
            })
        }
        InstallationEvent::WebhookEndpointDisabled { attempt } => {
            Kind::WebhookEndpointDisabled(pb::WebhookEndpointDisabled {
                attempt: Some(attempt_to_proto(attempt)),
            })
        }
        InstallationEvent::TokenRotated { overlap_seconds } => {
            Kind::PluginTokenRotated(pb::PluginTokenRotated {
                overlap_seconds: *overlap_seconds,
            })
        }
        InstallationEvent::WebhookReplayRequested { sequence } => {
            Kind::WebhookReplayRequested(pb::WebhookReplayRequested {
                sequence: *sequence,
            })
        }
        InstallationEvent::WebhookReplayed { attempt, delivered } => {
            Kind::WebhookReplayed(pb::WebhookReplayed {
                attempt: Some(attempt_to_proto(attempt)),
                delivered: *delivered,
            })
        }
    }
}

fn attempt_to_proto(a: &Attempt) -> pb::WebhookAttempt {
    pb::WebhookAttempt {
        sequence: a.sequence,
        status: a.status,
        error: a.error.clone(),
    }
}

fn attempt_from_proto(a: Option<&pb::WebhookAttempt>) -> Attempt {
    let a = a.cloned().unwrap_or_default();
    Attempt {
        sequence: a.sequence,
        status: a.status,
        error: a.error,
    }
}

fn template_to_proto(e: &TemplateEvent) -> Kind {
    let TemplateEvent::Published(v) = e;
    Kind::TemplatePublished(pb::TemplatePublished {
        version: v.version,
        document_json: v.document.to_string(),
        files: v
            .files
            .iter()
            .map(|(path, content)| pb::TemplateFile {
                path: path.clone(),
                content: content.clone(),
            })
            .collect(),
        digest: v.digest.clone(),
    })
}

fn task_to_proto(e: &TaskEvent) -> Kind {
    match e {
        TaskEvent::Created {
            template,
            version,
            team,
            parameters,
            steps,
            upgrade,
        } => Kind::TaskCreated(pb::TaskCreated {
            template: template.to_string(),
            version: *version,
            team: team.to_string(),
            parameters_json: serde_json::Value::Object(parameters.clone()).to_string(),
            steps: steps
                .iter()
                .map(|s| pb::TaskStepDef {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    action: s.action.clone(),
                })
                .collect(),
            upgrade_service: upgrade
                .as_ref()
                .map(|u| u.service.to_string())
                .unwrap_or_default(),
            upgrade_from_version: upgrade.as_ref().map_or(0, |u| u.from_version),
        }),
        TaskEvent::StepStarted { step, attempt } => Kind::TaskStepStarted(pb::TaskStepStarted {
            step: step.clone(),
            attempt: *attempt,
        }),
        TaskEvent::StepFinished { step, output, log } => {
            Kind::TaskStepFinished(pb::TaskStepFinished {
                step: step.clone(),
                output_json: json_text(output),
                log: log.clone(),
            })
        }
        TaskEvent::StepSkipped { step, why } => Kind::TaskStepSkipped(pb::TaskStepSkipped {
            step: step.clone(),
            why: why.clone(),
        }),
        TaskEvent::StepFailed { step, reason, log } => Kind::TaskStepFailed(pb::TaskStepFailed {
            step: step.clone(),
            reason: reason.clone(),
            log: log.clone(),
        }),
        TaskEvent::Retried { step } => Kind::TaskRetried(pb::TaskRetried { step: step.clone() }),
        TaskEvent::Completed { output } => Kind::TaskCompleted(pb::TaskCompleted {
            output_json: json_text(output),
        }),
    }
}

fn resource_to_proto(r: &ResourceSpec) -> pb::ProvisionResource {
    pb::ProvisionResource {
        kind: r.kind.as_str().to_owned(),
        environment: r.environment.to_string(),
        service: r.service.as_ref().map(Name::to_string).unwrap_or_default(),
        size: r.size.clone(),
    }
}

fn resource_from_proto(r: Option<&pb::ProvisionResource>) -> Result<ResourceSpec, DecodeError> {
    let r = r.ok_or_else(|| field_err("resource", "missing"))?;
    Ok(ResourceSpec {
        kind: ResourceKind::parse(&r.kind)
            .ok_or_else(|| field_err("resource.kind", format!("unknown kind {:?}", r.kind)))?,
        environment: name("resource.environment", &r.environment)?,
        service: (!r.service.is_empty())
            .then(|| name("resource.service", &r.service))
            .transpose()?,
        size: r.size.clone(),
    })
}

fn provisioning_to_proto(e: &ProvisioningEvent) -> Kind {
    match e {
        ProvisioningEvent::Requested {
            number,
            spec,
            action,
            requested_by,
        } => Kind::ProvisionRequested(pb::ProvisionRequested {
            number: *number,
            resource: Some(resource_to_proto(spec)),
            action: action.as_str().to_owned(),
            requested_by: requested_by.clone(),
        }),
        ProvisioningEvent::Planned {
            number,
            plan,
            approval,
        } => Kind::ProvisionPlanned(pb::ProvisionPlanned {
            number: *number,
            base: plan.base.clone(),
            files: plan
                .files
                .iter()
                .map(|f| pb::ProvisionFile {
                    path: f.path.clone(),
                    content: f.content.clone().unwrap_or_default(),
                    deleted: f.content.is_none(),
                })
                .collect(),
            diff: plan.diff.clone(),
            drift: plan.drift.clone(),
            approver: approval.approver.as_str().to_owned(),
            self_approval: approval.self_approval,
        }),
        ProvisioningEvent::Approved {
            number,
            by,
            reason,
            automatic,
        } => Kind::ProvisionApproved(pb::ProvisionApproved {
            number: *number,
            by: by.clone(),
            reason: reason.clone(),
            automatic: *automatic,
        }),
        ProvisioningEvent::Rejected { number, by, reason } => {
            Kind::ProvisionRejected(pb::ProvisionRejected {
                number: *number,
                by: by.clone(),
                reason: reason.clone(),
            })
        }
        ProvisioningEvent::ApplyStarted { number } => {
            Kind::ProvisionApplyStarted(pb::ProvisionApplyStarted { number: *number })
        }
        ProvisioningEvent::Applied { number, commit } => {
            Kind::ProvisionApplied(pb::ProvisionApplied {
                number: *number,
                commit: commit.clone(),
            })
        }
        ProvisioningEvent::Verified { number } => {
            Kind::ProvisionVerified(pb::ProvisionVerified { number: *number })
        }
        ProvisioningEvent::Failed { number, reason } => {
            Kind::ProvisionFailed(pb::ProvisionFailed {
                number: *number,
                reason: reason.clone(),
            })
        }
    }
}
