//! The catalog import as the template runner's [`Registrar`]: the binary
//! joins the API's import to the workers' runner, which do not depend on
//! each other (they meet in the log).

use futures::future::BoxFuture;
use paved_eventlog::{CommandMeta, Executor};
use paved_workers::effects::scaffolder::{RegisterError, Registered, Registrar};
use tonic::Code;

pub struct CatalogRegistrar {
    executor: Executor,
}

impl CatalogRegistrar {
    pub fn new(executor: Executor) -> Self {
        Self { executor }
    }
}

impl Registrar for CatalogRegistrar {
    fn register<'a>(
        &'a self,
        meta: &'a CommandMeta,
        yaml: &'a str,
    ) -> BoxFuture<'a, Result<Registered, RegisterError>> {
        Box::pin(async move {
            match paved_api::catalog::import_descriptors(&self.executor, meta, yaml).await {
                Ok(r) => Ok(Registered {
                    sequence: r.sequence,
                    commands: r.commands,
                }),
                Err(s)
                    if matches!(
                        s.code(),
                        Code::Unavailable | Code::Internal | Code::Aborted | Code::Unknown
                    ) =>
                {
                    Err(RegisterError::Unavailable(s.message().to_owned()))
                }
                Err(s) => Err(RegisterError::Refused(describe(&s))),
            }
        })
    }
}

/// A refusal as one line: its message and its field violations.
fn describe(s: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    let mut out = s.message().to_owned();
    if let Some(bad) = s.get_details_bad_request() {
        for v in bad.field_violations {
            out.push_str(&format!("; {}: {}", v.field, v.description));
        }
    }
    out
}
