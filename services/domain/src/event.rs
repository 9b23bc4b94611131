//! [`Event`]: every aggregate's events in one type, as the log stores them.

use crate::catalog::{ServiceEvent, SystemEvent, TeamEvent};

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Team(TeamEvent),
    System(SystemEvent),
    Service(ServiceEvent),
}

impl Event {
    /// The event's type name as shown to auditors and plugins, e.g. `TeamCreated`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::Team(e) => e.type_name(),
            Event::System(e) => e.type_name(),
            Event::Service(e) => e.type_name(),
        }
    }
}

impl From<TeamEvent> for Event {
    fn from(e: TeamEvent) -> Self {
        Event::Team(e)
    }
}
impl From<SystemEvent> for Event {
    fn from(e: SystemEvent) -> Self {
        Event::System(e)
    }
}
impl From<ServiceEvent> for Event {
    fn from(e: ServiceEvent) -> Self {
        Event::Service(e)
    }
}
