//! Who may call which RPC: one table for people and plugins, enforced by a
//! tower layer in front of every `paved.v1` service, so no handler can
//! forget it. Default deny: an RPC the table does not name is refused.
//!
//! The layer authenticates the bearer token once, checks the RPC's scope
//! against the [`Caller`] (a person's role, a plugin's grant), and hands
//! the caller to the handler in the request's extensions. Ownership rules
//! (which team's things a caller may change) stay with the domain.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use paved_domain::Scope;
use paved_domain::scope::Area::{self, *};
use tonic::Status;
use tonic::codegen::Service;
use tonic::codegen::http;

use crate::auth::{Authenticator, Caller};

/// What an RPC asks of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// This scope.
    Scope(Scope),
    /// Some `events:read:<context>` scope; the read is narrowed to the
    /// contexts the caller holds.
    Events,
    /// A plugin's own token (its cursor, its events).
    Plugin,
}

const fn read(a: Area) -> Need {
    Need::Scope(Scope::Read(a))
}
const fn write(a: Area) -> Need {
    Need::Scope(Scope::Write(a))
}

/// Every RPC of `paved.v1`: (service, method, what it needs).
pub const TABLE: &[(&str, &str, Need)] = &[
    ("CatalogService", "CreateTeam", write(Catalog)),
    ("CatalogService", "UpdateTeamProfile", write(Catalog)),
    ("CatalogService", "AddTeamMember", write(Catalog)),
    ("CatalogService", "RemoveTeamMember", write(Catalog)),
    ("CatalogService", "SetTeamParent", write(Catalog)),
    ("CatalogService", "RetireTeam", write(Catalog)),
    ("CatalogService", "CreateSystem", write(Catalog)),
    ("CatalogService", "UpdateSystem", write(Catalog)),
    ("CatalogService", "TransferSystemOwnership", write(Catalog)),
    ("CatalogService", "RetireSystem", write(Catalog)),
    ("CatalogService", "RegisterService", write(Catalog)),
    ("CatalogService", "UpdateService", write(Catalog)),
    ("CatalogService", "TransferServiceOwnership", write(Catalog)),
    ("CatalogService", "DeprecateService", write(Catalog)),
    ("CatalogService", "RetireService", write(Catalog)),
    ("CatalogService", "AddDependency", write(Catalog)),
    ("CatalogService", "RemoveDependency", write(Catalog)),
    ("CatalogService", "SetSlo", write(Catalog)),
    ("CatalogService", "RemoveSlo", write(Catalog)),
    ("CatalogService", "ImportBackstage", write(Catalog)),
    ("CatalogService", "ImportBackstageStream", write(Catalog)),
    ("CatalogService", "ExportBackstage", read(Catalog)),
    ("CatalogService", "ExportBackstageStream", read(Catalog)),
    ("CatalogService", "GetTeam", read(Catalog)),
    ("CatalogService", "ListTeams", read(Catalog)),
    ("CatalogService", "GetSystem", read(Catalog)),
    ("CatalogService", "ListSystems", read(Catalog)),
    ("CatalogService", "GetService", read(Catalog)),
    ("CatalogService", "ListServices", read(Catalog)),
    ("CatalogService", "GetDependencyGraph", read(Catalog)),
    ("CatalogService", "GetCatalogHealth", read(Catalog)),
    ("CatalogService", "GetEntity", read(Catalog)),
    ("CatalogService", "ListEntities", read(Catalog)),
    ("DeliveryService", "RequestDeployment", write(Delivery)),
    ("DeliveryService", "RequestRollback", write(Delivery)),
    ("DeliveryService", "RecordDeployment", write(Delivery)),
    ("DeliveryService", "RecordChange", write(Delivery)),
    ("DeliveryService", "OpenIncident", write(Delivery)),
    ("DeliveryService", "LinkIncident", write(Delivery)),
    ("DeliveryService", "ResolveIncident", write(Delivery)),
    ("DeliveryService", "GetDeployment", read(Delivery)),
    ("DeliveryService", "ListDeployments", read(Delivery)),
    ("DeliveryService", "ListWebhookDeliveries", read(Delivery)),
    ("MetricsService", "GetDora", read(Metrics)),
    ("EventLogService", "ReadEvents", Need::Events),
    ("EventLogService", "Subscribe", Need::Events),
    (
        "ProvisioningService",
        "RequestResource",
        write(Provisioning),
    ),
    ("ProvisioningService", "ApproveRequest", write(Provisioning)),
    ("ProvisioningService", "RejectRequest", write(Provisioning)),
    ("ProvisioningService", "GetRequest", read(Provisioning)),
    ("ProvisioningService", "ListRequests", read(Provisioning)),
    ("ProvisioningService", "ListResources", read(Provisioning)),
    ("SurveyService", "CreateSurvey", write(Surveys)),
    ("SurveyService", "CloseSurvey", write(Surveys)),
    (
        "SurveyService",
        "SubmitResponse",
        Need::Scope(Scope::Respond),
    ),
    (
        "SurveyService",
        "ListMySurveys",
        Need::Scope(Scope::Respond),
    ),
    ("SurveyService", "GetSurvey", read(Surveys)),
    ("SurveyService", "ListSurveys", read(Surveys)),
    ("SurveyService", "GetSurveyResults", read(Surveys)),
    ("SurveyService", "GetSurveyTrend", read(Surveys)),
    ("TemplateService", "PublishTemplate", write(Templates)),
    ("TemplateService", "CreateTask", write(Templates)),
    ("TemplateService", "RetryTask", write(Templates)),
    ("TemplateService", "UpgradeService", write(Templates)),
    ("TemplateService", "GetTemplate", read(Templates)),
    ("TemplateService", "ListTemplates", read(Templates)),
    ("TemplateService", "GetTask", read(Templates)),
    ("TemplateService", "ListTasks", read(Templates)),
    ("TemplateService", "ListOutdatedServices", read(Templates)),
    ("TemplateService", "GetTemplateStats", read(Templates)),
    ("PluginService", "PublishPlugin", write(Plugins)),
    ("PluginService", "DeprecatePluginVersion", write(Plugins)),
    ("PluginService", "YankPluginVersion", write(Plugins)),
    ("PluginService", "InstallPlugin", write(Plugins)),
    ("PluginService", "UpgradeInstallation", write(Plugins)),
    ("PluginService", "RotatePluginToken", write(Plugins)),
    ("PluginService", "UninstallPlugin", write(Plugins)),
    ("PluginService", "ListPlugins", read(Plugins)),
    ("PluginService", "GetPlugin", read(Plugins)),
    ("PluginService", "ListInstallations", read(Plugins)),
    ("PluginService", "ListDeadLetters", read(Plugins)),
    ("PluginService", "ReplayDeadLetter", write(Plugins)),
    ("PluginService", "SubscribePluginEvents", Need::Plugin),
    ("PluginService", "AcknowledgePluginEvents", Need::Plugin),
];

/// The package every guarded service is in.
pub const PACKAGE: &str = "paved.v1";

/// What `/paved.v1.<Service>/<Method>` needs; `None` for an RPC the table
/// does not name (refused).
pub fn need(path: &str) -> Option<Need> {
    let (service, method) = path
        .strip_prefix('/')?
        .strip_prefix(PACKAGE)?
        .strip_prefix('.')?
        .split_once('/')?;
    TABLE
        .iter()
        .find(|(s, m, _)| *s == service && *m == method)
        .map(|(_, _, n)| *n)
}

/// May `caller` call an RPC that needs `need`? `Err` says why not.
pub fn check(caller: &Caller, need: Need, rpc: &str) -> Result<(), Status> {
    let who = &caller.principal.name;
    match need {
        Need::Scope(scope) if caller.allows(scope) => Ok(()),
        Need::Scope(scope) => Err(Status::permission_denied(match caller.plugin {
            Some(_) => format!("{who} was not granted {scope}, which {rpc} needs"),
            None => format!(
                "{who} is a {} and {rpc} needs {scope}",
                caller.principal.role.as_str()
            ),
        })),
        Need::Events if !caller.event_contexts().is_empty() => Ok(()),
        Need::Events => Err(Status::permission_denied(format!(
            "{who} holds no events:read:<context> scope, which {rpc} needs"
        ))),
        Need::Plugin if caller.plugin.is_some() => Ok(()),
        Need::Plugin => Err(Status::permission_denied(format!(
            "{rpc} takes a plugin installation's token; {who} is a person"
        ))),
    }
}

/// The layer: wraps the whole router.
#[derive(Clone)]
pub struct AccessLayer {
    auth: Authenticator,
}

impl AccessLayer {
    pub fn new(auth: Authenticator) -> Self {
        Self { auth }
    }
}

impl<S> tower_layer::Layer<S> for AccessLayer {
    type Service = AccessService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AccessService<S> {
    inner: S,
    auth: Authenticator,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for AccessService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The service that was polled ready serves this call; a fresh clone
        // stays for the next (tower's rule for cloned services).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = request.uri().path().to_owned();
        // Health checks and reflection are open, as gRPC tooling expects.
        if !path.starts_with(&format!("/{PACKAGE}.")) {
            return Box::pin(inner.call(request));
        }
        let auth = self.auth.clone();
        Box::pin(async move {
            let Some(need) = need(&path) else {
                return Ok(Status::permission_denied(format!(
                    "{path} is not in the access table: nobody may call it"
                ))
                .into_http());
            };
            let peer: Option<IpAddr> = request
                .extensions()
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(|i| i.remote_addr())
                .map(|a| a.ip());
            let header = request
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap_or_default());
            let caller = match auth.authenticate_header(header, peer).await {
                Ok(c) => c,
                Err(status) => return Ok(status.into_http()),
            };
            let rpc = path.rsplit('/').next().unwrap_or_default();
            if let Err(status) = check(&caller, need, rpc) {
                return Ok(status.into_http());
            }
            request.extensions_mut().insert(caller);
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paved_domain::{Name, Principal};
    use std::collections::BTreeSet;

    fn plugin(scopes: &[Scope]) -> Caller {
        Caller {
            principal: Principal::reader("plugin:x"),
            plugin: Some(crate::auth::PluginGrant {
                installation: Name::parse("x").unwrap(),
                scopes: scopes.iter().copied().collect::<BTreeSet<_>>(),
            }),
        }
    }

    fn person(principal: Principal) -> Caller {
        Caller {
            principal,
            plugin: None,
        }
    }

    /// Every RPC × every scope: a plugin holding exactly one scope may call
    /// exactly the RPCs that need it; people by their role.
    #[test]
    fn the_matrix_of_rpcs_and_scopes() {
        for (service, method, need) in TABLE {
            let path = format!("/paved.v1.{service}/{method}");
            assert_eq!(super::need(&path), Some(*need), "{path}");
            for scope in Scope::all() {
                let allowed = check(&plugin(&[scope]), *need, method).is_ok();
                let expected = match need {
                    Need::Scope(s) => *s == scope,
                    Need::Events => matches!(scope, Scope::Events(_)),
                    Need::Plugin => true,
                };
                assert_eq!(allowed, expected, "{path} with {scope}");
            }
            assert_eq!(
                check(&plugin(&[]), *need, method).is_ok(),
                *need == Need::Plugin,
                "{path} with no scope"
            );
            let admin = check(&person(Principal::admin("a")), *need, method).is_ok();
            let reader = check(&person(Principal::reader("r")), *need, method).is_ok();
            assert_eq!(admin, *need != Need::Plugin, "{path} as admin");
            let reads = matches!(need, Need::Scope(Scope::Read(_)) | Need::Events);
            assert_eq!(reader, reads, "{path} as reader");
        }
    }

    #[test]
    fn what_the_table_does_not_name_is_refused() {
        assert_eq!(need("/paved.v1.CatalogService/DropEverything"), None);
        assert_eq!(need("/paved.v2.CatalogService/GetTeam"), None);
        assert_eq!(need("/paved.v1.CatalogService"), None);
        assert_eq!(need("paved.v1.CatalogService/GetTeam"), None);
    }

    /// The table names every RPC the protos define, and nothing else.
    #[test]
    fn the_table_covers_every_rpc_of_the_protos() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(paved_proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut defined = BTreeSet::new();
        for file in set.file.iter().filter(|f| f.package() == PACKAGE) {
            for service in &file.service {
                for method in &service.method {
                    defined.insert((service.name().to_owned(), method.name().to_owned()));
                }
            }
        }
        let listed: BTreeSet<(String, String)> = TABLE
            .iter()
            .map(|(s, m, _)| (s.to_string(), m.to_string()))
            .collect();
        assert_eq!(listed.len(), TABLE.len(), "an RPC is listed twice");
        assert_eq!(defined, listed);
    }
}
