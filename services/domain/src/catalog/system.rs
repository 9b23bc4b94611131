//! Systems (Backstage kind System): a named group of services owned by a team.

use super::{Retirable, live, pending_team, require_acts_for};
use crate::aggregate::{Aggregate, AggregateKind, AggregateRef, Context, References};
use crate::event::Event;
use crate::name::Name;
use crate::rejection::Rejection;
use crate::validate::{self, Violations};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct System {
    pub name: Name,
    pub owner: Name,
    pub display_name: String,
    pub description: String,
    pub retired: Option<String>,
}

impl Retirable for System {
    fn retired(&self) -> bool {
        self.retired.is_some()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SystemCommand {
    Create {
        owner: Name,
        display_name: String,
        description: String,
    },
    Update {
        display_name: String,
        description: String,
    },
    TransferOwnership {
        to: Name,
    },
    Retire {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SystemEvent {
    Created {
        name: Name,
        owner: Name,
        display_name: String,
        description: String,
    },
    Updated {
        display_name: String,
        description: String,
    },
    OwnershipTransferred {
        from: Name,
        to: Name,
    },
    Retired {
        reason: String,
    },
}

impl SystemEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            SystemEvent::Created { .. } => "SystemCreated",
            SystemEvent::Updated { .. } => "SystemUpdated",
            SystemEvent::OwnershipTransferred { .. } => "SystemOwnershipTransferred",
            SystemEvent::Retired { .. } => "SystemRetired",
        }
    }
}

fn validate_text(display_name: &str, description: &str) -> Result<(), Rejection> {
    let mut v = Violations::new();
    v.line("display_name", display_name, validate::MAX_DISPLAY_NAME);
    v.text("description", description, validate::MAX_DESCRIPTION);
    v.finish()
}

impl Aggregate for Option<System> {
    const KIND: AggregateKind = AggregateKind::System;
    type Command = SystemCommand;
    type Event = SystemEvent;

    fn references(&self, command: &SystemCommand, _loaded: &References) -> Vec<AggregateRef> {
        match command {
            SystemCommand::Create { owner, .. } => vec![AggregateRef::team(owner)],
            SystemCommand::TransferOwnership { to } => vec![AggregateRef::team(to)],
            _ => Vec::new(),
        }
    }

    fn decide(
        &self,
        command: &SystemCommand,
        ctx: &Context<'_>,
    ) -> Result<Vec<SystemEvent>, Rejection> {
        let me = AggregateRef::system(ctx.id);
        if let SystemCommand::Create {
            owner,
            display_name,
            description,
        } = command
        {
            require_acts_for(ctx, owner, &me)?;
            validate_text(display_name, description)?;
            if self.is_some() {
                return Err(Rejection::AlreadyExists(me.to_string()));
            }
            pending_team(ctx, owner)?;
            return Ok(vec![SystemEvent::Created {
                name: ctx.id.clone(),
                owner: owner.clone(),
                display_name: display_name.clone(),
                description: description.clone(),
            }]);
        }

        let system = live(self, me.clone())?;
        require_acts_for(ctx, &system.owner, &me)?;
        match command {
            SystemCommand::Create { .. } => unreachable!("handled above"),
            SystemCommand::Update {
                display_name,
                description,
            } => {
                validate_text(display_name, description)?;
                if &system.display_name == display_name && &system.description == description {
                    return Ok(Vec::new());
                }
                Ok(vec![SystemEvent::Updated {
                    display_name: display_name.clone(),
                    description: description.clone(),
                }])
            }
            SystemCommand::TransferOwnership { to } => {
                if &system.owner == to {
                    return Ok(Vec::new());
                }
                pending_team(ctx, to)?;
                Ok(vec![SystemEvent::OwnershipTransferred {
                    from: system.owner.clone(),
                    to: to.clone(),
                }])
            }
            SystemCommand::Retire { reason } => {
                let mut v = Violations::new();
                v.reason("reason", reason);
                v.finish()?;
                Ok(vec![SystemEvent::Retired {
                    reason: reason.clone(),
                }])
            }
        }
    }

    fn evolve(&mut self, event: &SystemEvent) {
        if let SystemEvent::Created {
            name,
            owner,
            display_name,
            description,
        } = event
        {
            *self = Some(System {
                name: name.clone(),
                owner: owner.clone(),
                display_name: display_name.clone(),
                description: description.clone(),
                retired: None,
            });
            return;
        }
        let Some(system) = self else { return };
        match event {
            SystemEvent::Created { .. } => {}
            SystemEvent::Updated {
                display_name,
                description,
            } => {
                system.display_name = display_name.clone();
                system.description = description.clone();
            }
            SystemEvent::OwnershipTransferred { to, .. } => system.owner = to.clone(),
            SystemEvent::Retired { reason } => system.retired = Some(reason.clone()),
        }
    }

    fn select(event: &Event) -> Option<&SystemEvent> {
        match event {
            Event::System(e) => Some(e),
            _ => None,
        }
    }
}
