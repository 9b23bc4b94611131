//! Scopes: which RPCs a token may call. One table serves people and plugins:
//! a person's role gives its scopes ([`Role::allows`]), a plugin's
//! installation grants a subset of what its manifest asks for. Ownership
//! rules (which team's things a principal may change) stay in `decide`.

use std::fmt;

use crate::principal::Role;

/// The areas of the API a scope reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Area {
    Catalog,
    Delivery,
    Provisioning,
    Templates,
    Surveys,
    Metrics,
    Plugins,
}

impl Area {
    pub const ALL: [Area; 7] = [
        Area::Catalog,
        Area::Delivery,
        Area::Provisioning,
        Area::Templates,
        Area::Surveys,
        Area::Metrics,
        Area::Plugins,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Area::Catalog => "catalog",
            Area::Delivery => "delivery",
            Area::Provisioning => "provisioning",
            Area::Templates => "templates",
            Area::Surveys => "surveys",
            Area::Metrics => "metrics",
            Area::Plugins => "plugins",
        }
    }

    /// Does the area have anything to write? (Metrics are computed.)
    fn writable(self) -> bool {
        !matches!(self, Area::Metrics)
    }
}

/// The bounded contexts of the log (the subject's second token) an
/// `events:read:<context>` scope may name.
pub const EVENT_CONTEXTS: [&str; 7] = [
    "catalog",
    "delivery",
    "provisioning",
    "surveys",
    "templates",
    "plugins",
    "ops",
];

/// One permission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `<area>:read`: the area's queries.
    Read(Area),
    /// `<area>:write`: the area's commands (ownership rules still apply).
    Write(Area),
    /// `events:read:<context>`: the log's events of one context.
    Events(&'static str),
    /// `surveys:respond`: answer a survey as oneself. People only: a
    /// plugin never answers for anyone.
    Respond,
}

impl Scope {
    /// Every scope there is.
    pub fn all() -> Vec<Scope> {
        let mut all = Vec::new();
        for area in Area::ALL {
            all.push(Scope::Read(area));
            if area.writable() {
                all.push(Scope::Write(area));
            }
        }
        all.extend(EVENT_CONTEXTS.iter().map(|c| Scope::Events(c)));
        all.push(Scope::Respond);
        all
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::all()
            .into_iter()
            .find(|scope| scope.to_string() == s)
    }

    /// May an installation grant it to a plugin?
    pub fn grantable(self) -> bool {
        !matches!(self, Scope::Respond)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Read(a) => write!(f, "{}:read", a.as_str()),
            Scope::Write(a) => write!(f, "{}:write", a.as_str()),
            Scope::Events(c) => write!(f, "events:read:{c}"),
            Scope::Respond => f.write_str("surveys:respond"),
        }
    }
}

impl Role {
    /// The scopes a person's role gives: members and admins everything
    /// (their team's ownership is checked by `decide`), readers every read.
    pub fn allows(&self, scope: Scope) -> bool {
        match self {
            Role::Admin | Role::Member { .. } => true,
            Role::Reader => matches!(scope, Scope::Read(_) | Scope::Events(_)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scope_reads_back_as_itself_and_nothing_else_parses() {
        for s in Scope::all() {
            assert_eq!(Scope::parse(&s.to_string()), Some(s));
        }
        for bad in [
            "",
            "catalog",
            "metrics:write",
            "events:read:",
            "events:read:x",
            "CATALOG:READ",
        ] {
            assert_eq!(Scope::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn readers_read_and_only_people_respond() {
        assert!(Role::Reader.allows(Scope::Read(Area::Catalog)));
        assert!(Role::Reader.allows(Scope::Events("delivery")));
        assert!(!Role::Reader.allows(Scope::Write(Area::Catalog)));
        assert!(!Role::Reader.allows(Scope::Respond));
        assert!(Role::Admin.allows(Scope::Respond));
        assert!(!Scope::Respond.grantable());
        assert!(Scope::Write(Area::Catalog).grantable());
    }
}
