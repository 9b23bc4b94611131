//! The one mapping from internal errors to `tonic::Status`. Internal detail
//! goes to the log with the trace id; a client sees a code and a safe message.

use paved_domain::{FieldViolation, Precondition, Rejection};
use paved_eventlog::ExecuteError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, PreconditionViolation, StatusExt};

/// `google.rpc.ErrorInfo` reason of an `ABORTED` for a stale `expected_version`.
pub const VERSION_MISMATCH: &str = "VERSION_MISMATCH";

/// Most field violations one status carries (the rest are counted).
pub const MAX_VIOLATIONS: usize = 20;
/// Most field violations the status message spells out.
const MESSAGE_VIOLATIONS: usize = 5;
/// Longest field path and description a violation carries, in bytes: both
/// may echo the client's input.
const MAX_FIELD: usize = 100;
const MAX_DESCRIPTION: usize = 120;

/// `s` cut to at most `max` bytes on a character boundary, `…` marking a cut.
fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `INVALID_ARGUMENT` with a `google.rpc.BadRequest` naming the bad fields:
/// the first [`MAX_VIOLATIONS`], each clipped, and how many more there were,
/// so the status always fits in 8 KiB of trailers (clients fail with
/// "h2 protocol error" past their header limit, often 16 KiB).
pub fn invalid(violations: Vec<FieldViolation>) -> Status {
    let total = violations.len();
    let shown: Vec<(String, String)> = violations
        .into_iter()
        .take(MAX_VIOLATIONS)
        .map(|v| {
            (
                clip(&v.field, MAX_FIELD),
                clip(&v.description, MAX_DESCRIPTION),
            )
        })
        .collect();
    let mut message = shown
        .iter()
        .take(MESSAGE_VIOLATIONS)
        .map(|(f, d)| format!("{f}: {d}"))
        .collect::<Vec<_>>()
        .join("; ");
    if total > MESSAGE_VIOLATIONS {
        message.push_str(&format!(
            "; and {} more (the first {} are in the details)",
            total - MESSAGE_VIOLATIONS,
            shown.len()
        ));
    }
    let mut details: Vec<tonic_types::FieldViolation> = shown
        .into_iter()
        .map(|(f, d)| tonic_types::FieldViolation::new(f, d))
        .collect();
    if total > MAX_VIOLATIONS {
        details.push(tonic_types::FieldViolation::new(
            "",
            format!("and {} more violations", total - MAX_VIOLATIONS),
        ));
    }
    Status::with_error_details(
        Code::InvalidArgument,
        message,
        ErrorDetails::with_bad_request(details),
    )
}

pub fn invalid_field(field: &str, description: impl Into<String>) -> Status {
    invalid(vec![FieldViolation::new(field, description)])
}

/// `NOT_FOUND` for the `kind` (team, service, deployment, …) named `name`.
pub fn not_found(kind: &str, name: &str) -> Status {
    Status::not_found(format!("{kind} {name:?} not found"))
}

pub fn rejection(r: Rejection) -> Status {
    match r {
        Rejection::Invalid(v) => invalid(v),
        Rejection::NotFound(what) => Status::not_found(format!("{what} not found")),
        Rejection::AlreadyExists(what) => Status::already_exists(format!("{what} already exists")),
        Rejection::PermissionDenied(why) => Status::permission_denied(why),
        Rejection::Precondition(p) => {
            let (kind, subject) = match &p {
                Precondition::Retired(r) => ("RETIRED", r.to_string()),
                Precondition::MissingReference(r) => ("MISSING_REFERENCE", r.to_string()),
                Precondition::RetiredReference(r) => ("RETIRED_REFERENCE", r.to_string()),
                Precondition::ParentCycle { team, .. } => ("PARENT_CYCLE", team.clone()),
                Precondition::SurveyNotOpen { survey, .. } => ("SURVEY_NOT_OPEN", survey.clone()),
                Precondition::NotInAudience { survey, .. } => ("NOT_IN_AUDIENCE", survey.clone()),
                Precondition::Finished(what) => ("FINISHED", what.clone()),
                Precondition::Quota { team, .. } => ("QUOTA_EXCEEDED", team.clone()),
                Precondition::State { what, .. } => ("WRONG_STATE", what.clone()),
                Precondition::BadReference { reference, why, .. } if why.is_empty() => {
                    ("MISSING_REFERENCE", reference.to_string())
                }
                Precondition::BadReference { reference, .. } => {
                    ("BAD_REFERENCE", reference.to_string())
                }
            };
            let message = p.to_string();
            Status::with_error_details(
                Code::FailedPrecondition,
                message.clone(),
                ErrorDetails::with_precondition_failure(vec![PreconditionViolation::new(
                    kind, subject, message,
                )]),
            )
        }
    }
}

pub fn execute(e: ExecuteError) -> Status {
    match e {
        ExecuteError::Rejected(r) => rejection(r),
        ExecuteError::Conflict { attempts } => Status::aborted(format!(
            "concurrent changes to the same entity; gave up after {attempts} attempts: retry with the same request_id"
        )),
        ExecuteError::VersionMismatch { expected, current } => {
            let details = ErrorDetails::with_error_info(
                VERSION_MISMATCH,
                "paved.dev",
                [
                    ("expected_version".to_owned(), expected.to_string()),
                    ("current_version".to_owned(), current.to_string()),
                ],
            );
            Status::with_error_details(
                Code::Aborted,
                format!(
                    "the entity changed since it was read: it is at version {current}, not {expected}; read it again and retry"
                ),
                details,
            )
        }
        e @ ExecuteError::RequestTooOld { .. } => {
            let message = e.to_string();
            Status::with_error_details(
                Code::FailedPrecondition,
                message.clone(),
                ErrorDetails::with_precondition_failure(vec![PreconditionViolation::new(
                    "REQUEST_TOO_OLD",
                    "request_id",
                    message,
                )]),
            )
        }
        ExecuteError::RequestIdInvalid(_) => invalid_field(
            "request_id",
            "must be visible ASCII, at most 1024 characters",
        ),
        ExecuteError::RequestIdReused(id) => invalid_field(
            "request_id",
            format!("{id:?} was already used for a different command"),
        ),
        ExecuteError::TooLarge => Status::resource_exhausted("the command's events are too large"),
        ExecuteError::StorageFull(detail) => {
            tracing::error!(error = %detail, "the event log's storage is full");
            Status::resource_exhausted(
                "the event log's storage is full: nothing can be recorded until an operator makes room (retrying the same request id is safe then)",
            )
        }
        ExecuteError::Unavailable(detail) => {
            tracing::warn!(error = %detail, "event log unavailable");
            Status::unavailable("the event log is unavailable: retry with the same request_id")
        }
        e @ ExecuteError::Corrupt { .. } => internal(&e),
    }
}

/// SQLSTATEs of a value PostgreSQL cannot store in text: a NUL (`\0`),
/// `character_not_in_repertoire` and `untranslatable_character`.
const UNSTORABLE_TEXT: [&str; 2] = ["22021", "22P05"];

/// A database error: connection trouble is `UNAVAILABLE`; text PostgreSQL
/// cannot hold (a NUL in a filter) is the client's `INVALID_ARGUMENT`;
/// anything else `INTERNAL`. The detail goes to the log only.
pub fn database(e: sqlx::Error) -> Status {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            tracing::warn!(error = %e, "read models unavailable");
            Status::unavailable("the read models are unavailable: retry")
        }
        sqlx::Error::Database(d)
            if d.code()
                .is_some_and(|c| UNSTORABLE_TEXT.contains(&c.as_ref())) =>
        {
            tracing::debug!(error = %d, "text PostgreSQL cannot hold");
            Status::invalid_argument(
                "a text field holds a character that cannot be stored or searched for (a NUL, \\0)",
            )
        }
        e => internal(&e),
    }
}

/// The event log could not be read: a retryable `UNAVAILABLE`; the detail
/// (NATS's own text) goes to the log only.
pub fn log_unavailable(e: &dyn std::fmt::Display) -> Status {
    tracing::warn!(error = %e, "event log unavailable");
    Status::unavailable("the event log is unavailable: retry")
}

/// The HTTP status of a gRPC code: the one table the webhooks answer by,
/// so an error is the same error on either protocol (as in Google's
/// `google.rpc.Code` mapping).
pub fn http_status(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::ResourceExhausted => 429,
        Code::Cancelled => 499,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
    }
}

/// Logs the detail and returns an opaque `INTERNAL`.
pub fn internal(e: &dyn std::fmt::Display) -> Status {
    tracing::error!(error = %e, "internal error");
    Status::internal("internal error (logged on the server)")
}
