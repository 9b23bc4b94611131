//! The shape every aggregate has: a pure `decide` and a pure `evolve`.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};

use crate::catalog::{RepositoryClaim, Service, System, Team};
use crate::delivery::Deployment;
use crate::event::Event;
use crate::name::Name;
use crate::plugins::marketplace::PluginListing;
use crate::principal::Principal;
use crate::rejection::Rejection;

/// The kinds of aggregates, each with its bounded context and subject token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AggregateKind {
    Team,
    System,
    Service,
    Survey,
    Deployment,
    Change,
    Incident,
    /// The receipt of a Backstage import.
    Import,
    /// The claim of a source repository by one service.
    Repository,
    /// A message of the log set aside by an operator.
    Quarantine,
    /// A catalog entity of a kind without an aggregate of its own (API,
    /// Resource, Domain, User, Location, a plugin's kind), stored as given.
    Entity,
    /// A team's provisioned resources and its requests.
    Tenancy,
    /// A golden-path template's published versions.
    Template,
    /// One run of a template.
    Task,
    /// A plugin's versions in the marketplace.
    Plugin,
    /// One installation of a plugin (its grant and cursor).
    Installation,
}

impl AggregateKind {
    pub const ALL: [AggregateKind; 16] = [
        Self::Team,
        Self::System,
        Self::Service,
        Self::Survey,
        Self::Deployment,
        Self::Change,
        Self::Incident,
        Self::Import,
        Self::Repository,
        Self::Quarantine,
        Self::Entity,
        Self::Tenancy,
        Self::Template,
        Self::Task,
        Self::Plugin,
        Self::Installation,
    ];

    /// The bounded context, the second token of the subject (`paved.<context>.…`).
    pub fn context(self) -> &'static str {
        match self {
            Self::Team
            | Self::System
            | Self::Service
            | Self::Import
            | Self::Repository
            | Self::Entity => "catalog",
            Self::Survey => "surveys",
            Self::Deployment | Self::Change | Self::Incident => "delivery",
            Self::Quarantine => "ops",
            Self::Tenancy => "provisioning",
            Self::Template | Self::Task => "templates",
            Self::Plugin | Self::Installation => "plugins",
        }
    }

    /// The aggregate type, the third token of the subject.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::Team => "team",
            Self::System => "system",
            Self::Service => "service",
            Self::Survey => "survey",
            Self::Deployment => "deployment",
            Self::Change => "change",
            Self::Incident => "incident",
            Self::Import => "import",
            Self::Repository => "repository",
            Self::Quarantine => "quarantine",
            Self::Entity => "entity",
            Self::Tenancy => "tenancy",
            Self::Template => "template",
            Self::Task => "task",
            Self::Plugin => "plugin",
            Self::Installation => "installation",
        }
    }

    pub fn parse(type_name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.type_name() == type_name)
    }
}

impl fmt::Display for AggregateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.type_name())
    }
}

/// One aggregate instance: its kind and its id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AggregateRef {
    pub kind: AggregateKind,
    pub id: Name,
}

impl AggregateRef {
    pub fn team(id: &Name) -> Self {
        Self {
            kind: AggregateKind::Team,
            id: id.clone(),
        }
    }
    pub fn system(id: &Name) -> Self {
        Self {
            kind: AggregateKind::System,
            id: id.clone(),
        }
    }
    pub fn service(id: &Name) -> Self {
        Self {
            kind: AggregateKind::Service,
            id: id.clone(),
        }
    }
}

impl fmt::Display for AggregateRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.kind, self.id.as_str())
    }
}

/// The current states of the other aggregates a command looks at (the owner
/// team of a service, the target of a dependency, …), loaded by the write path
/// before `decide`. An aggregate absent from the log is present here as `None`.
#[derive(Clone, Debug, Default)]
pub struct References {
    teams: HashMap<Name, Option<Team>>,
    systems: HashMap<Name, Option<System>>,
    services: HashMap<Name, Option<Service>>,
    deployments: HashMap<Name, Option<Deployment>>,
    repositories: HashMap<Name, Option<RepositoryClaim>>,
    plugins: HashMap<Name, PluginListing>,
}

impl References {
    pub fn contains(&self, r: &AggregateRef) -> bool {
        match r.kind {
            AggregateKind::Team => self.teams.contains_key(&r.id),
            AggregateKind::System => self.systems.contains_key(&r.id),
            AggregateKind::Service => self.services.contains_key(&r.id),
            AggregateKind::Deployment => self.deployments.contains_key(&r.id),
            AggregateKind::Repository => self.repositories.contains_key(&r.id),
            AggregateKind::Plugin => self.plugins.contains_key(&r.id),
            _ => false,
        }
    }

    pub fn insert_team(&mut self, id: Name, state: Option<Team>) {
        self.teams.insert(id, state);
    }
    pub fn insert_system(&mut self, id: Name, state: Option<System>) {
        self.systems.insert(id, state);
    }
    pub fn insert_service(&mut self, id: Name, state: Option<Service>) {
        self.services.insert(id, state);
    }
    pub fn insert_deployment(&mut self, id: Name, state: Option<Deployment>) {
        self.deployments.insert(id, state);
    }
    pub fn insert_repository(&mut self, id: Name, state: Option<RepositoryClaim>) {
        self.repositories.insert(id, state);
    }
    pub fn insert_plugin(&mut self, id: Name, state: PluginListing) {
        self.plugins.insert(id, state);
    }

    /// The team, if it was loaded and exists.
    pub fn team(&self, id: &Name) -> Option<&Team> {
        self.teams.get(id).and_then(Option::as_ref)
    }
    pub fn system(&self, id: &Name) -> Option<&System> {
        self.systems.get(id).and_then(Option::as_ref)
    }
    pub fn service(&self, id: &Name) -> Option<&Service> {
        self.services.get(id).and_then(Option::as_ref)
    }
    pub fn deployment(&self, id: &Name) -> Option<&Deployment> {
        self.deployments.get(id).and_then(Option::as_ref)
    }
    /// The claim with id `id` (see [`crate::catalog::claim_id`]).
    pub fn repository(&self, id: &Name) -> Option<&RepositoryClaim> {
        self.repositories.get(id).and_then(Option::as_ref)
    }
    /// The plugin's listing, if it was loaded (empty when never published).
    pub fn plugin(&self, id: &Name) -> Option<&PluginListing> {
        self.plugins.get(id)
    }
}

/// Facts from outside that a decision may use.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The id of the aggregate the command is addressed to.
    pub id: &'a Name,
    pub principal: &'a Principal,
    pub now: DateTime<Utc>,
    pub refs: &'a References,
}

/// An event-sourced aggregate. The state is `Default` when the aggregate has
/// no commits yet; `evolve` folds one event into it, `decide` turns a command
/// into events or a [`Rejection`]. Both are pure.
pub trait Aggregate: Clone + Default + Send + Sync + 'static {
    const KIND: AggregateKind;
    type Command: fmt::Debug + Send + Sync;
    type Event: Clone + fmt::Debug + Send + Sync + Into<Event>;

    /// Other aggregates `decide` needs to see for this command. Called again
    /// with what was loaded so far until it names nothing new, so a rule can
    /// walk a chain (a team's ancestors).
    fn references(&self, _command: &Self::Command, _loaded: &References) -> Vec<AggregateRef> {
        Vec::new()
    }

    fn decide(
        &self,
        command: &Self::Command,
        ctx: &Context<'_>,
    ) -> Result<Vec<Self::Event>, Rejection>;

    fn evolve(&mut self, event: &Self::Event);

    /// This aggregate's event inside the union, or `None` for another kind's.
    fn select(event: &Event) -> Option<&Self::Event>;
}
