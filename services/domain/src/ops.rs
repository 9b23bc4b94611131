//! Operations on the log itself: quarantining a message that cannot be
//! applied. The message stays in the log (nothing is deleted); the record
//! says who set it aside, why, for which projections, and carries the
//! operator's signature (made and checked outside the domain, with the
//! audit keys).

use crate::aggregate::{Aggregate, AggregateKind, Context};
use crate::event::Event;
use crate::rejection::Rejection;
use crate::validate::Violations;

/// What is quarantined: the message's sequence and the digest of its bytes,
/// for which projections (empty: all), and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub sequence: u64,
    pub payload_sha256: Vec<u8>,
    pub projections: Vec<String>,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantine {
    pub statement: Statement,
    pub key_id: String,
    pub signature: Vec<u8>,
}

impl Quarantine {
    /// Does it hold for `projection`?
    pub fn covers(&self, projection: &str) -> bool {
        self.statement.projections.is_empty()
            || self.statement.projections.iter().any(|p| p == projection)
    }
}

/// The quarantine aggregate's id for a sequence.
pub fn quarantine_id(sequence: u64) -> String {
    format!("seq-{sequence}")
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpsCommand {
    Quarantine(Quarantine),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpsEvent {
    MessageQuarantined(Quarantine),
}

impl OpsEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::MessageQuarantined(_) => "MessageQuarantined",
        }
    }
}

impl From<OpsEvent> for Event {
    fn from(e: OpsEvent) -> Self {
        Event::Ops(e)
    }
}

impl Aggregate for Option<Quarantine> {
    const KIND: AggregateKind = AggregateKind::Quarantine;
    type Command = OpsCommand;
    type Event = OpsEvent;

    fn decide(&self, command: &OpsCommand, ctx: &Context<'_>) -> Result<Vec<OpsEvent>, Rejection> {
        let OpsCommand::Quarantine(q) = command;
        crate::catalog::require_admin(ctx, "quarantine messages of the log")?;
        let mut v = Violations::new();
        if ctx.id.as_str() != quarantine_id(q.statement.sequence) {
            v.push("sequence", "does not match the quarantine's id");
        }
        if q.statement.payload_sha256.len() != 32 {
            v.push("payload_sha256", "must be a SHA-256 digest");
        }
        v.reason("reason", &q.statement.reason);
        if q.signature.is_empty() || q.key_id.is_empty() {
            v.push("signature", "a quarantine must be signed with an audit key");
        }
        v.finish()?;
        match self {
            Some(existing) if existing == q => Ok(Vec::new()),
            Some(_) => Err(Rejection::AlreadyExists(format!(
                "a quarantine of sequence {}",
                q.statement.sequence
            ))),
            None => Ok(vec![OpsEvent::MessageQuarantined(q.clone())]),
        }
    }

    fn evolve(&mut self, event: &OpsEvent) {
        let OpsEvent::MessageQuarantined(q) = event;
        *self = Some(q.clone());
    }

    fn select(event: &Event) -> Option<&OpsEvent> {
        match event {
            Event::Ops(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::Principal;
    use crate::scenario::{Scenario, invalid_fields};

    fn quarantine(sequence: u64, reason: &str) -> Quarantine {
        Quarantine {
            statement: Statement {
                sequence,
                payload_sha256: vec![1; 32],
                projections: vec![],
                reason: reason.into(),
            },
            key_id: "k1".into(),
            signature: vec![2; 64],
        }
    }

    #[test]
    fn an_admin_quarantines_a_sequence_once_with_a_reason() {
        let s = Scenario::<Option<Quarantine>>::new("seq-7");
        let e = s
            .when(OpsCommand::Quarantine(quarantine(
                7,
                "bad bytes from a test publisher",
            )))
            .unwrap();
        let s = s.given(e);
        assert!(
            s.when(OpsCommand::Quarantine(quarantine(
                7,
                "bad bytes from a test publisher"
            )))
            .unwrap()
            .is_empty()
        );
        assert!(matches!(
            s.when(OpsCommand::Quarantine(quarantine(7, "another reason"))),
            Err(Rejection::AlreadyExists(_))
        ));
        assert!(s.state.as_ref().unwrap().covers("catalog"));
    }

    #[test]
    fn only_admins_and_only_whole_statements() {
        let s = Scenario::<Option<Quarantine>>::new("seq-7").by(Principal::reader("auditor"));
        assert!(matches!(
            s.when(OpsCommand::Quarantine(quarantine(7, "bad bytes"))),
            Err(Rejection::PermissionDenied(_))
        ));
        let s = Scenario::<Option<Quarantine>>::new("seq-8");
        let mut q = quarantine(7, "");
        q.signature.clear();
        assert_eq!(
            invalid_fields(s.when(OpsCommand::Quarantine(q))),
            ["sequence", "reason", "signature"]
        );
    }
}
