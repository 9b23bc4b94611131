//! Receipts of Backstage imports. An import issues many commands on many
//! aggregates; its receipt binds the import's request id to the file it
//! imported (a fingerprint) and remembers what came of it, so a retry with
//! the same request id answers the original result and a retry with another
//! file under it is refused.

use crate::aggregate::{Aggregate, AggregateKind, Context};
use crate::event::Event;
use crate::name::Name;
use crate::rejection::Rejection;

/// What an import did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportResult {
    /// The highest commit sequence it produced (0 if nothing changed).
    pub sequence: u64,
    pub commands: u32,
    pub events: u32,
    pub entities: u32,
    pub unchanged: u32,
}

/// The receipt: the file's fingerprint (SHA-256 over the importing principal
/// and the YAML) and the result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportReceipt {
    pub fingerprint: Vec<u8>,
    pub result: ImportResult,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportCommand {
    Record(ImportReceipt),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportEvent {
    Recorded(ImportReceipt),
}

impl ImportEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Recorded(_) => "BackstageImportRecorded",
        }
    }
}

impl From<ImportEvent> for Event {
    fn from(e: ImportEvent) -> Self {
        Event::Import(e)
    }
}

/// The receipt's aggregate id for an import's request id: `import-` and 24
/// hex digits of a digest the caller computes (request ids are not DNS labels).
pub fn receipt_id(digest_hex: &str) -> Result<Name, Rejection> {
    let short: String = digest_hex.chars().take(24).collect();
    Name::parse(&format!("import-{short}")).map_err(|e| {
        Rejection::Invalid(vec![crate::FieldViolation::new(
            "request_id",
            e.to_string(),
        )])
    })
}

impl Aggregate for Option<ImportReceipt> {
    const KIND: AggregateKind = AggregateKind::Import;
    type Command = ImportCommand;
    type Event = ImportEvent;

    fn decide(
        &self,
        command: &ImportCommand,
        ctx: &Context<'_>,
    ) -> Result<Vec<ImportEvent>, Rejection> {
        let ImportCommand::Record(receipt) = command;
        if !ctx.principal.may_write() {
            return Err(Rejection::PermissionDenied(format!(
                "{} may not import",
                ctx.principal.name
            )));
        }
        Ok(match self {
            // The first receipt stands.
            Some(_) => Vec::new(),
            None => vec![ImportEvent::Recorded(receipt.clone())],
        })
    }

    fn evolve(&mut self, event: &ImportEvent) {
        let ImportEvent::Recorded(receipt) = event;
        *self = Some(receipt.clone());
    }

    fn select(event: &Event) -> Option<&ImportEvent> {
        match event {
            Event::Import(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::References;
    use crate::principal::Principal;

    fn receipt(sequence: u64) -> ImportReceipt {
        ImportReceipt {
            fingerprint: vec![1, 2, 3],
            result: ImportResult {
                sequence,
                commands: 3,
                ..Default::default()
            },
        }
    }

    fn decide(
        state: &Option<ImportReceipt>,
        who: &Principal,
        r: ImportReceipt,
    ) -> Result<Vec<ImportEvent>, Rejection> {
        let id = receipt_id("00ff00ff00ff00ff00ff00ff00ff").unwrap();
        let refs = References::default();
        let ctx = Context {
            id: &id,
            principal: who,
            now: chrono::DateTime::UNIX_EPOCH,
            refs: &refs,
        };
        state.decide(&ImportCommand::Record(r), &ctx)
    }

    #[test]
    fn the_first_receipt_is_recorded_and_stands() {
        let admin = Principal::admin("admin");
        let events = decide(&None, &admin, receipt(7)).unwrap();
        assert_eq!(events, vec![ImportEvent::Recorded(receipt(7))]);
        let mut state = None;
        state.evolve(&events[0]);
        assert!(decide(&state, &admin, receipt(9)).unwrap().is_empty());
        assert_eq!(state.unwrap().result.sequence, 7);
    }

    #[test]
    fn readers_record_no_receipts() {
        let reader = Principal::reader("auditor");
        assert!(matches!(
            decide(&None, &reader, receipt(1)),
            Err(Rejection::PermissionDenied(_))
        ));
    }
}
