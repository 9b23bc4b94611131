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

/// Every file under `dir`, as (path relative to `dir`, content), in path order.
pub fn read_tree(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// `files` against the golden files in `tests/golden/<case>` of this crate
/// (`PAVED_UPDATE_GOLDEN=1` writes them instead).
pub fn assert_golden(case: &str, files: &[(String, String)]) {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case);
    if std::env::var_os("PAVED_UPDATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        for (path, content) in files {
            let file = dir.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, content).unwrap();
        }
    }
    assert_eq!(
        files,
        read_tree(&dir),
        "{case} differs from its golden files (PAVED_UPDATE_GOLDEN=1 rewrites them)"
    );
}
