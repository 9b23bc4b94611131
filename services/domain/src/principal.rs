//! Who issues a command, and what their role lets them change.

use crate::name::Name;

/// The authenticated caller of a command; recorded in every commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// A readable id such as `alice`, `ci:payments` or `worker:argocd`.
    pub name: String,
    pub role: Role,
}

/// What a principal may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Change what `team` owns (its profile, members, systems and services), read everything.
    Member { team: Name },
    /// Read only.
    Reader,
}

impl Role {
    /// The stored spelling: `admin`, `member`, `reader`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member { .. } => "member",
            Role::Reader => "reader",
        }
    }
}

impl Principal {
    pub fn admin(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            role: Role::Admin,
        }
    }

    pub fn member(name: impl Into<String>, team: Name) -> Self {
        Self {
            name: name.into(),
            role: Role::Member { team },
        }
    }

    pub fn reader(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            role: Role::Reader,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self.role, Role::Admin)
    }

    /// May this principal change something owned by `team`?
    pub fn acts_for(&self, team: &Name) -> bool {
        match &self.role {
            Role::Admin => true,
            Role::Member { team: own } => own == team,
            Role::Reader => false,
        }
    }

    /// May this principal change anything at all?
    pub fn may_write(&self) -> bool {
        !matches!(self.role, Role::Reader)
    }
}
