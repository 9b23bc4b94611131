//! Teams (Backstage kind Group): profile, members and a parent team.

use std::collections::BTreeSet;

use super::{Retirable, live, pending_team, require_acts_for, require_admin};
use crate::aggregate::{Aggregate, AggregateKind, AggregateRef, Context, References};
use crate::event::Event;
use crate::name::Name;
use crate::rejection::{Precondition, Rejection};
use crate::validate::{self, Violations};

/// The most members one team holds.
pub const MAX_MEMBERS: usize = 1000;
/// The deepest team hierarchy the cycle check walks.
pub const MAX_DEPTH: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TeamProfile {
    pub display_name: String,
    pub email: String,
    pub chat_channel: String,
}

impl TeamProfile {
    pub fn validate(&self, v: &mut Violations, prefix: &str) {
        v.line(
            &format!("{prefix}display_name"),
            &self.display_name,
            validate::MAX_DISPLAY_NAME,
        );
        v.email(&format!("{prefix}email"), &self.email);
        v.line(
            &format!("{prefix}chat_channel"),
            &self.chat_channel,
            validate::MAX_CHAT_CHANNEL,
        );
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Team {
    pub name: Name,
    pub profile: TeamProfile,
    pub parent: Option<Name>,
    pub members: BTreeSet<String>,
    /// The tombstone's reason, once retired.
    pub retired: Option<String>,
}

impl Retirable for Team {
    fn retired(&self) -> bool {
        self.retired.is_some()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TeamCommand {
    Create {
        profile: TeamProfile,
        parent: Option<Name>,
        members: Vec<String>,
    },
    UpdateProfile {
        profile: TeamProfile,
    },
    AddMember {
        member: String,
    },
    RemoveMember {
        member: String,
    },
    SetParent {
        parent: Option<Name>,
    },
    Retire {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TeamEvent {
    Created {
        name: Name,
        profile: TeamProfile,
        parent: Option<Name>,
    },
    ProfileUpdated {
        profile: TeamProfile,
    },
    MemberAdded {
        member: String,
    },
    MemberRemoved {
        member: String,
    },
    ParentChanged {
        parent: Option<Name>,
    },
    Retired {
        reason: String,
    },
}

impl TeamEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            TeamEvent::Created { .. } => "TeamCreated",
            TeamEvent::ProfileUpdated { .. } => "TeamProfileUpdated",
            TeamEvent::MemberAdded { .. } => "TeamMemberAdded",
            TeamEvent::MemberRemoved { .. } => "TeamMemberRemoved",
            TeamEvent::ParentChanged { .. } => "TeamParentChanged",
            TeamEvent::Retired { .. } => "TeamRetired",
        }
    }
}

/// Walks up from `start` through the loaded teams; returns the first ancestor
/// not loaded yet, or `None` when the chain ends, loops or gets too deep.
fn next_unloaded_ancestor(start: &Name, refs: &References) -> Option<Name> {
    let mut current = start.clone();
    for _ in 0..MAX_DEPTH {
        let r = AggregateRef::team(&current);
        if !refs.contains(&r) {
            return Some(current);
        }
        current = refs.team(&current)?.parent.clone()?;
    }
    None
}

/// Would `team` become its own ancestor if its parent were `parent`?
fn creates_cycle(team: &Name, parent: &Name, refs: &References) -> bool {
    let mut current = Some(parent.clone());
    for _ in 0..MAX_DEPTH {
        match current {
            Some(ref c) if c == team => return true,
            Some(ref c) => current = refs.team(c).and_then(|t| t.parent.clone()),
            None => return false,
        }
    }
    // Deeper than MAX_DEPTH: refuse rather than risk an unseen cycle.
    true
}

impl Aggregate for Option<Team> {
    const KIND: AggregateKind = AggregateKind::Team;
    type Command = TeamCommand;
    type Event = TeamEvent;

    fn references(&self, command: &TeamCommand, loaded: &References) -> Vec<AggregateRef> {
        match command {
            TeamCommand::Create {
                parent: Some(parent),
                ..
            } => vec![AggregateRef::team(parent)],
            TeamCommand::SetParent {
                parent: Some(parent),
            } => next_unloaded_ancestor(parent, loaded)
                .map(|t| vec![AggregateRef::team(&t)])
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn decide(
        &self,
        command: &TeamCommand,
        ctx: &Context<'_>,
    ) -> Result<Vec<TeamEvent>, Rejection> {
        let me = AggregateRef::team(ctx.id);
        if let TeamCommand::Create {
            profile,
            parent,
            members,
        } = command
        {
            require_admin(ctx, "create teams")?;
            let mut v = Violations::new();
            profile.validate(&mut v, "profile.");
            if members.len() > MAX_MEMBERS {
                v.push("members", format!("at most {MAX_MEMBERS} members"));
            }
            for (i, m) in members.iter().enumerate() {
                v.member(&format!("members[{i}]"), m);
            }
            if parent.as_ref() == Some(ctx.id) {
                v.push("parent", "a team cannot be its own parent");
            }
            v.finish()?;
            if self.is_some() {
                return Err(Rejection::AlreadyExists(me.to_string()));
            }
            if let Some(parent) = parent {
                pending_team(ctx, parent)?;
            }
            let mut events = vec![TeamEvent::Created {
                name: ctx.id.clone(),
                profile: profile.clone(),
                parent: parent.clone(),
            }];
            let unique: BTreeSet<&String> = members.iter().collect();
            events.extend(
                unique
                    .into_iter()
                    .map(|m| TeamEvent::MemberAdded { member: m.clone() }),
            );
            return Ok(events);
        }

        let team = live(self, me.clone())?;
        match command {
            TeamCommand::Create { .. } => unreachable!("handled above"),
            TeamCommand::UpdateProfile { profile } => {
                require_acts_for(ctx, ctx.id, &me)?;
                let mut v = Violations::new();
                profile.validate(&mut v, "profile.");
                v.finish()?;
                if &team.profile == profile {
                    return Ok(Vec::new());
                }
                Ok(vec![TeamEvent::ProfileUpdated {
                    profile: profile.clone(),
                }])
            }
            TeamCommand::AddMember { member } => {
                require_acts_for(ctx, ctx.id, &me)?;
                let mut v = Violations::new();
                v.member("member", member);
                v.finish()?;
                if team.members.contains(member) {
                    return Err(Rejection::AlreadyExists(format!(
                        "member {member:?} of {me}"
                    )));
                }
                if team.members.len() >= MAX_MEMBERS {
                    return Err(Rejection::invalid(
                        "member",
                        format!("a team has at most {MAX_MEMBERS} members"),
                    ));
                }
                Ok(vec![TeamEvent::MemberAdded {
                    member: member.clone(),
                }])
            }
            TeamCommand::RemoveMember { member } => {
                require_acts_for(ctx, ctx.id, &me)?;
                if !team.members.contains(member) {
                    return Err(Rejection::NotFound(format!("member {member:?} of {me}")));
                }
                Ok(vec![TeamEvent::MemberRemoved {
                    member: member.clone(),
                }])
            }
            TeamCommand::SetParent { parent } => {
                require_admin(ctx, "change a team's parent")?;
                if parent.as_ref() == Some(ctx.id) {
                    return Err(Rejection::invalid(
                        "parent",
                        "a team cannot be its own parent",
                    ));
                }
                if &team.parent == parent {
                    return Ok(Vec::new());
                }
                if let Some(parent) = parent {
                    pending_team(ctx, parent)?;
                    if creates_cycle(ctx.id, parent, ctx.refs) {
                        return Err(Rejection::Precondition(Precondition::ParentCycle {
                            team: ctx.id.to_string(),
                            parent: parent.to_string(),
                        }));
                    }
                }
                Ok(vec![TeamEvent::ParentChanged {
                    parent: parent.clone(),
                }])
            }
            TeamCommand::Retire { reason } => {
                require_admin(ctx, "retire teams")?;
                let mut v = Violations::new();
                v.reason("reason", reason);
                v.finish()?;
                Ok(vec![TeamEvent::Retired {
                    reason: reason.clone(),
                }])
            }
        }
    }

    fn evolve(&mut self, event: &TeamEvent) {
        if let TeamEvent::Created {
            name,
            profile,
            parent,
        } = event
        {
            *self = Some(Team {
                name: name.clone(),
                profile: profile.clone(),
                parent: parent.clone(),
                members: BTreeSet::new(),
                retired: None,
            });
            return;
        }
        // Events only ever follow `Created`; a stray one has nothing to change.
        let Some(team) = self else { return };
        match event {
            TeamEvent::Created { .. } => {}
            TeamEvent::ProfileUpdated { profile } => team.profile = profile.clone(),
            TeamEvent::MemberAdded { member } => {
                team.members.insert(member.clone());
            }
            TeamEvent::MemberRemoved { member } => {
                team.members.remove(member);
            }
            TeamEvent::ParentChanged { parent } => team.parent = parent.clone(),
            TeamEvent::Retired { reason } => team.retired = Some(reason.clone()),
        }
    }

    fn select(event: &Event) -> Option<&TeamEvent> {
        match event {
            Event::Team(e) => Some(e),
            _ => None,
        }
    }
}
