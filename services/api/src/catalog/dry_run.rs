//! An import's steps run over an in-memory copy of the catalog with the
//! domain's own `decide` and `evolve`, in the order the import would run
//! them: whatever the domain would refuse halfway through (a parent cycle
//! with teams already in the catalog, too many members or dependencies, a
//! claim taken meanwhile) is found before anything is appended. One copy of
//! the rules: the importer does not list them again.

use paved_domain::catalog::{RepositoryClaim, Service, System, Team};
use paved_domain::{Aggregate, AggregateKind, AggregateRef, Context, Name, References, Rejection};
use paved_eventlog::{CommandMeta, Executor};
use tonic::Status;

use crate::error;

/// Rounds of references a command may need (a team's ancestors, one a round).
const MAX_ROUNDS: usize = 70;

/// Aggregates the copy holds, in a [`References`].
pub(super) trait Held: Aggregate + Sized {
    fn get(refs: &References, id: &Name) -> Self;
    fn put(refs: &mut References, id: Name, state: Self);
}

impl Held for Option<Team> {
    fn get(refs: &References, id: &Name) -> Self {
        refs.team(id).cloned()
    }
    fn put(refs: &mut References, id: Name, state: Self) {
        refs.insert_team(id, state);
    }
}

impl Held for Option<System> {
    fn get(refs: &References, id: &Name) -> Self {
        refs.system(id).cloned()
    }
    fn put(refs: &mut References, id: Name, state: Self) {
        refs.insert_system(id, state);
    }
}

impl Held for Option<Service> {
    fn get(refs: &References, id: &Name) -> Self {
        refs.service(id).cloned()
    }
    fn put(refs: &mut References, id: Name, state: Self) {
        refs.insert_service(id, state);
    }
}

impl Held for Option<RepositoryClaim> {
    fn get(refs: &References, id: &Name) -> Self {
        refs.repository(id).cloned()
    }
    fn put(refs: &mut References, id: Name, state: Self) {
        refs.insert_repository(id, state);
    }
}

/// The catalog as the import's steps leave it, loaded from the log as the
/// steps come to need each aggregate.
pub(super) struct CatalogCopy<'e> {
    executor: &'e Executor,
    refs: References,
}

impl<'e> CatalogCopy<'e> {
    pub(super) fn new(executor: &'e Executor) -> Self {
        Self {
            executor,
            refs: References::default(),
        }
    }

    /// States already read (concurrently, by the caller): the copy starts
    /// from them instead of reading each when a step needs it.
    pub(super) fn seed<A: Held>(&mut self, states: impl IntoIterator<Item = (Name, A)>) {
        for (id, state) in states {
            A::put(&mut self.refs, id, state);
        }
    }

    /// The state of `id` in the copy.
    pub(super) async fn state<A: Held>(&mut self, id: &Name) -> Result<A, Status> {
        self.load(&AggregateRef {
            kind: A::KIND,
            id: id.clone(),
        })
        .await?;
        Ok(A::get(&self.refs, id))
    }

    async fn load(&mut self, r: &AggregateRef) -> Result<(), Status> {
        if self.refs.contains(r) {
            return Ok(());
        }
        let e = self.executor;
        let err = error::execute;
        match r.kind {
            AggregateKind::Team => {
                let s = e.state::<Option<Team>>(&r.id).await.map_err(err)?.state;
                self.refs.insert_team(r.id.clone(), s);
            }
            AggregateKind::System => {
                let s = e.state::<Option<System>>(&r.id).await.map_err(err)?.state;
                self.refs.insert_system(r.id.clone(), s);
            }
            AggregateKind::Service => {
                let s = e.state::<Option<Service>>(&r.id).await.map_err(err)?.state;
                self.refs.insert_service(r.id.clone(), s);
            }
            AggregateKind::Repository => {
                let s = e
                    .state::<Option<RepositoryClaim>>(&r.id)
                    .await
                    .map_err(err)?
                    .state;
                self.refs.insert_repository(r.id.clone(), s);
            }
            // Catalog commands refer to nothing else.
            _ => {}
        }
        Ok(())
    }

    /// What the domain decides for `command` on `id` in the copy, which
    /// it leaves as it was; `Err` is a failure to load.
    pub(super) async fn decide<A: Held>(
        &mut self,
        id: &Name,
        command: &A::Command,
        meta: &CommandMeta,
    ) -> Result<Result<Vec<A::Event>, Rejection>, Status> {
        let state: A = self.loaded(id, command).await?;
        let ctx = Context {
            id,
            principal: &meta.principal,
            now: meta.now,
            refs: &self.refs,
        };
        Ok(state.decide(command, &ctx))
    }

    /// Runs `command` on `id` in the copy: `Ok(Err(_))` is the domain's
    /// refusal (the copy is left as it was), `Err` a failure to load.
    pub(super) async fn run<A: Held>(
        &mut self,
        id: &Name,
        command: &A::Command,
        meta: &CommandMeta,
    ) -> Result<Result<(), Rejection>, Status> {
        let events = match self.decide::<A>(id, command, meta).await? {
            Ok(events) => events,
            Err(r) => return Ok(Err(r)),
        };
        let mut state: A = A::get(&self.refs, id);
        for e in &events {
            state.evolve(e);
        }
        A::put(&mut self.refs, id.clone(), state);
        Ok(Ok(()))
    }

    /// The state of `id`, with everything `command` refers to loaded.
    async fn loaded<A: Held>(&mut self, id: &Name, command: &A::Command) -> Result<A, Status> {
        let state: A = self.state(id).await?;
        for _ in 0..MAX_ROUNDS {
            let wanted: Vec<AggregateRef> = state
                .references(command, &self.refs)
                .into_iter()
                .filter(|r| !self.refs.contains(r))
                .collect();
            if wanted.is_empty() {
                break;
            }
            for r in &wanted {
                self.load(r).await?;
            }
        }
        Ok(state)
    }
}
