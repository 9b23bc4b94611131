//! Given / when / then for aggregate tests: a scenario is the aggregate's
//! past events, the other aggregates it may see, and who acts.

use chrono::{DateTime, Utc};

use crate::aggregate::{Aggregate, Context, References};
use crate::name::Name;
use crate::principal::Principal;
use crate::rejection::{Precondition, Rejection};

pub fn n(s: &str) -> Name {
    Name::parse(s).unwrap()
}

pub struct Scenario<A: Aggregate> {
    pub id: Name,
    pub state: A,
    pub refs: References,
    pub principal: Principal,
    pub now: DateTime<Utc>,
}

impl<A: Aggregate> Scenario<A> {
    pub fn new(id: &str) -> Self {
        Self {
            id: n(id),
            state: A::default(),
            refs: References::default(),
            principal: Principal::admin("root"),
            now: Utc::now(),
        }
    }

    pub fn given(mut self, events: impl IntoIterator<Item = A::Event>) -> Self {
        for e in events {
            self.state.evolve(&e);
        }
        self
    }

    pub fn by(mut self, principal: Principal) -> Self {
        self.principal = principal;
        self
    }

    pub fn when(&self, command: A::Command) -> Result<Vec<A::Event>, Rejection> {
        let ctx = Context {
            id: &self.id,
            principal: &self.principal,
            now: self.now,
            refs: &self.refs,
        };
        self.state.decide(&command, &ctx)
    }
}

pub fn precondition<T: std::fmt::Debug>(r: Result<T, Rejection>) -> Precondition {
    match r {
        Err(Rejection::Precondition(p)) => p,
        other => panic!("expected a failed precondition, got {other:?}"),
    }
}

pub fn invalid_fields<T: std::fmt::Debug>(r: Result<T, Rejection>) -> Vec<String> {
    match r {
        Err(Rejection::Invalid(v)) => v.into_iter().map(|v| v.field).collect(),
        other => panic!("expected invalid argument, got {other:?}"),
    }
}
