//! The plugin marketplace (`paved.plugins.…`): plugins are separate
//! programs on the protobuf contract that see only what an admin granted.
//!
//! - [`marketplace`]: a plugin's published versions (aggregate `plugin`):
//!   its manifest (scopes asked for, event types, delivery), deprecated or
//!   yanked.
//! - [`installation`]: one installation of a plugin (aggregate
//!   `installation`): the version it pins, the scopes granted, the team it
//!   acts for, and its durable cursor in the log.

pub mod installation;
pub mod marketplace;

#[cfg(test)]
mod tests;

use crate::event::Event;
use crate::name::Name;
use crate::scope::Scope;
use crate::surveys::SurveyEvent;

/// The principal name of an installation's tokens: `plugin:<installation>`.
pub fn principal_name(installation: &Name) -> String {
    format!("plugin:{installation}")
}

/// Never sent to a plugin, whatever it was granted: a survey answer.
pub fn withheld(event: &Event) -> bool {
    matches!(event, Event::Survey(SurveyEvent::ResponseSubmitted { .. }))
}

/// What an installation receives of the log: the events of the contexts
/// its `events:read:<context>` scopes name, of the types its manifest asks
/// for (every type when it names none), never a [`withheld`] one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub scopes: Vec<Scope>,
    pub event_types: Vec<String>,
}

impl Selection {
    /// The contexts it reads.
    pub fn contexts(&self) -> Vec<&'static str> {
        self.scopes
            .iter()
            .filter_map(|s| match s {
                Scope::Events(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    pub fn receives(&self, context: &str, event: &Event) -> bool {
        self.contexts().contains(&context)
            && (self.event_types.is_empty()
                || self.event_types.iter().any(|t| t == event.type_name()))
            && !withheld(event)
    }
}
