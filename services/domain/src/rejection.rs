//! Why a command was refused. The API maps each variant to one gRPC code.

use crate::aggregate::AggregateRef;

/// One invalid field of a request, named by its path in the request message
/// (e.g. `spec.docs_url`), as in `google.rpc.BadRequest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// A business rule that said no (`FAILED_PRECONDITION`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Precondition {
    #[error("{0} is retired")]
    Retired(AggregateRef),
    #[error("{0} does not exist")]
    MissingReference(AggregateRef),
    #[error("{0} is retired and cannot be referenced")]
    RetiredReference(AggregateRef),
    #[error("making {parent} the parent of {team} would create a cycle")]
    ParentCycle { team: String, parent: String },
    #[error("survey {survey:?} is not open ({why})")]
    SurveyNotOpen { survey: String, why: &'static str },
    #[error("survey {survey:?} is for other teams than {team:?}")]
    NotInAudience { survey: String, team: String },
    #[error("{0} has finished")]
    Finished(String),
    /// The team would hold more than its quota allows.
    #[error("the quota of team {team:?} does not allow this: {why}")]
    Quota { team: String, why: String },
    /// The thing is not in a state that allows the command.
    #[error("{what} is {state}: {why}")]
    State {
        what: String,
        state: String,
        why: String,
    },
    /// Field `field` names an aggregate that does not exist (`why` empty),
    /// or one that does not fit (`why` says how).
    #[error("{field}: {reference} {}", if why.is_empty() { "does not exist" } else { why })]
    BadReference {
        field: String,
        reference: AggregateRef,
        why: String,
    },
}

/// Why `decide` refused a command. Nothing is appended for any of these.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The command's input is malformed (`INVALID_ARGUMENT`).
    #[error("invalid argument: {}", describe(.0))]
    Invalid(Vec<FieldViolation>),
    /// The target does not exist (`NOT_FOUND`).
    #[error("{0} not found")]
    NotFound(String),
    /// The target already exists, or the thing to add is already there (`ALREADY_EXISTS`).
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A business rule said no (`FAILED_PRECONDITION`).
    #[error("failed precondition: {0}")]
    Precondition(Precondition),
    /// The principal may not do this (`PERMISSION_DENIED`).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Rejection {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }
}
