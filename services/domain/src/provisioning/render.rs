//! The renderer: a resource of a team → the files of the GitOps repository
//! that describe it. Pure (same inputs, same bytes), built from typed
//! structs (`k8s-openapi` for Kubernetes, serde structs for Terraform's
//! JSON syntax), one resource per file, at stable paths:
//!
//! ```text
//! namespaces/<team>-<env>/namespace.yaml, rolebinding-*.yaml, resourcequota.yaml,
//!                         limitrange.yaml, networkpolicy-*.yaml
//! terraform/<env>/<team>/postgres-<service>/main.tf.json
//! terraform/<env>/<team>/redis-<service>/main.tf.json
//! ```
//!
//! Each resource owns one directory: a decommission deletes what is in it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};

use super::{ResourceKind, ResourceSpec, Rules, Tier};

/// A label every managed object carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "paved");

/// How resources are rendered: the renderer's half of `PAVED_PROVISIONING_CONFIG`.
///
/// ```yaml
/// render:
///   ingress_namespace: ingress-nginx
///   readers_group: platform-readers
///   cost_centres: { payments: cc-4711 }   # default: the team's name
///   modules:
///     postgres: { source: "terraform-aws-modules/rds/aws", version: "6.10.0" }
///     redis: { source: "terraform-aws-modules/elasticache/aws", version: "1.4.1" }
///   argocd_namespace: argocd
///   clusters: { production: https://prod.k8s.example.com }
///   app_path: "deploy/{environment}"
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RenderSettings {
    /// The namespace the ingress controller runs in (allowed in).
    pub ingress_namespace: String,
    /// The group that may read every team's namespaces (`view`).
    pub readers_group: String,
    /// Each team's cost centre label; a team without one gets its name.
    pub cost_centres: BTreeMap<String, String>,
    pub modules: Modules,
    /// The namespace Argo CD runs in (its Applications and AppProjects live there).
    pub argocd_namespace: String,
    /// Each environment's cluster as Argo CD names it; an environment
    /// without one deploys to Argo CD's own (`https://kubernetes.default.svc`).
    pub clusters: BTreeMap<String, String>,
    /// Where a service's manifests for an environment are in its repository.
    pub app_path: String,
}

impl Default for RenderSettings {
    fn default() -> Self {
        Self {
            ingress_namespace: "ingress-nginx".into(),
            readers_group: "platform-readers".into(),
            cost_centres: BTreeMap::new(),
            modules: Modules::default(),
            argocd_namespace: "argocd".into(),
            clusters: BTreeMap::new(),
            app_path: "deploy/{environment}".into(),
        }
    }
}

/// The Terraform modules databases are made with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Modules {
    pub postgres: Module,
    pub redis: Module,
}

impl Default for Modules {
    fn default() -> Self {
        Self {
            postgres: Module {
                source: "terraform-aws-modules/rds/aws".into(),
                version: "6.10.0".into(),
            },
            redis: Module {
                source: "terraform-aws-modules/elasticache/aws".into(),
                version: "1.4.1".into(),
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Module {
    pub source: String,
    pub version: String,
}

/// What one database size means for each engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSize {
    /// RDS instance class (`db.t4g.small`).
    pub postgres_instance_class: String,
    /// Allocated storage of a PostgreSQL database, in GiB.
    pub storage_gib: u32,
    /// ElastiCache node type (`cache.t4g.small`).
    pub redis_node_type: String,
}

pub fn default_sizes() -> BTreeMap<String, DatabaseSize> {
    let size = |class: &str, storage_gib, node: &str| DatabaseSize {
        postgres_instance_class: class.into(),
        storage_gib,
        redis_node_type: node.into(),
    };
    BTreeMap::from([
        ("small".into(), size("db.t4g.small", 20, "cache.t4g.small")),
        (
            "medium".into(),
            size("db.m7g.large", 100, "cache.m7g.large"),
        ),
        (
            "large".into(),
            size("db.m7g.2xlarge", 500, "cache.m7g.2xlarge"),
        ),
    ])
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("unknown size {0:?}")]
    UnknownSize(String),
    #[error("a {0} belongs to a service")]
    NoService(ResourceKind),
    #[error("service {0} has no repository URL in the catalog: Argo CD has nothing to sync")]
    NoRepository(String),
    #[error("cannot write {path}: {why}")]
    Serialize { path: String, why: String },
}

/// The files of one resource, in path order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The directory the resource owns.
    pub dir: String,
    /// `(path, content)`, every path inside `dir`.
    pub files: Vec<(String, String)>,
}

/// What the catalog says about the team, as far as rendering needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TeamContext {
    /// The repository URL of each of the team's services (by service name).
    pub repositories: BTreeMap<String, String>,
}

/// The Kubernetes namespace of `team` in `environment`.
pub fn namespace_name(team: &str, environment: &str) -> String {
    format!("{team}-{environment}")
}

/// The directory resource `spec` of `team` owns in the repository.
pub fn resource_dir(team: &str, spec: &ResourceSpec) -> Result<String, RenderError> {
    let env = spec.environment.as_str();
    Ok(match spec.kind {
        ResourceKind::Namespace => format!("namespaces/{}", namespace_name(team, env)),
        ResourceKind::ArgoApp => {
            let service = spec
                .service
                .as_ref()
                .ok_or(RenderError::NoService(spec.kind))?;
            format!("argocd/{env}/{team}/{service}")
        }
        kind => {
            let service = spec.service.as_ref().ok_or(RenderError::NoService(kind))?;
            format!("terraform/{env}/{team}/{kind}-{service}")
        }
    })
}

/// Renders resource `spec` of `team`.
pub fn render(
    team: &str,
    spec: &ResourceSpec,
    rules: &Rules,
    context: &TeamContext,
) -> Result<Rendered, RenderError> {
    let dir = resource_dir(team, spec)?;
    let mut files = match spec.kind {
        ResourceKind::Namespace => {
            let tier = rules
                .tiers
                .get(&spec.size)
                .ok_or_else(|| RenderError::UnknownSize(spec.size.clone()))?;
            let mut files = namespace_files(team, spec.environment.as_str(), *tier, &rules.render)?;
            files.push(app_project(
                team,
                spec.environment.as_str(),
                &rules.render,
                context,
            )?);
            files
        }
        ResourceKind::ArgoApp => vec![application(team, spec, &rules.render, context)?],
        ResourceKind::Postgres | ResourceKind::Redis => {
            let size = rules
                .sizes
                .get(&spec.size)
                .ok_or_else(|| RenderError::UnknownSize(spec.size.clone()))?;
            vec![database_file(team, spec, size, &rules.render)?]
        }
    };
    for (path, _) in &mut files {
        *path = format!("{dir}/{path}");
    }
    files.sort();
    Ok(Rendered { dir, files })
}

fn yaml<T: Serialize>(path: &str, value: &T) -> Result<(String, String), RenderError> {
    let text = serde_yaml_ng::to_string(value).map_err(|e| RenderError::Serialize {
        path: path.to_owned(),
        why: e.to_string(),
    })?;
    Ok((path.to_owned(), text))
}

fn labels(team: &str, environment: &str, settings: &RenderSettings) -> BTreeMap<String, String> {
    let cost_centre = settings
        .cost_centres
        .get(team)
        .cloned()
        .unwrap_or_else(|| team.to_owned());
    BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        ("paved.dev/cost-centre".to_owned(), cost_centre),
        ("paved.dev/environment".to_owned(), environment.to_owned()),
        ("paved.dev/team".to_owned(), team.to_owned()),
    ])
}

fn meta(name: &str, namespace: Option<&str>, labels: &BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels.clone()),
        ..Default::default()
    }
}

fn quantities(pairs: &[(&str, String)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity(v.clone())))
        .collect()
}

fn selector(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..Default::default()
    }
}

fn namespace_files(
    team: &str,
    environment: &str,
    tier: Tier,
    settings: &RenderSettings,
) -> Result<Vec<(String, String)>, RenderError> {
    let ns = namespace_name(team, environment);
    let labels = labels(team, environment, settings);
    let mut files = Vec::new();
    files.push(yaml(
        "namespace.yaml",
        &Namespace {
            metadata: meta(&ns, None, &labels),
            ..Default::default()
        },
    )?);
    let binding = |name: &str, role: &str, group: &str| RoleBinding {
        metadata: meta(name, Some(&ns), &labels),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Group".into(),
            name: group.into(),
            namespace: None,
        }]),
    };
    files.push(yaml(
        "rolebinding-edit.yaml",
        &binding(&format!("{team}-edit"), "edit", team),
    )?);
    files.push(yaml(
        "rolebinding-view.yaml",
        &binding("readers-view", "view", &settings.readers_group),
    )?);
    let cpu = format!("{}m", tier.cpu_millis);
    let memory = format!("{}Mi", tier.memory_mib);
    files.push(yaml(
        "resourcequota.yaml",
        &ResourceQuota {
            metadata: meta("team-quota", Some(&ns), &labels),
            spec: Some(ResourceQuotaSpec {
                hard: Some(quantities(&[
                    ("limits.cpu", format!("{}m", tier.cpu_millis * 2)),
                    ("limits.memory", format!("{}Mi", tier.memory_mib * 2)),
                    ("pods", tier.pods.to_string()),
                    ("requests.cpu", cpu.clone()),
                    ("requests.memory", memory.clone()),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        },
    )?);
    files.push(yaml(
        "limitrange.yaml",
        &LimitRange {
            metadata: meta("container-defaults", Some(&ns), &labels),
            spec: Some(LimitRangeSpec {
                limits: vec![LimitRangeItem {
                    type_: "Container".into(),
                    default: Some(quantities(&[
                        ("cpu", "500m".into()),
                        ("memory", "512Mi".into()),
                    ])),
                    default_request: Some(quantities(&[
                        ("cpu", "100m".into()),
                        ("memory", "128Mi".into()),
                    ])),
                    max: Some(quantities(&[("cpu", cpu), ("memory", memory)])),
                    ..Default::default()
                }],
            }),
        },
    )?);
    let policy = |name: &str, spec: NetworkPolicySpec| NetworkPolicy {
        metadata: meta(name, Some(&ns), &labels),
        spec: Some(spec),
    };
    let both = Some(vec!["Ingress".to_owned(), "Egress".to_owned()]);
    let everything = Some(LabelSelector::default());
    files.push(yaml(
        "networkpolicy-default-deny.yaml",
        &policy(
            "default-deny",
            NetworkPolicySpec {
                pod_selector: everything.clone(),
                policy_types: both.clone(),
                ..Default::default()
            },
        ),
    )?);
    let same_namespace = NetworkPolicyPeer {
        pod_selector: Some(LabelSelector::default()),
        ..Default::default()
    };
    files.push(yaml(
        "networkpolicy-allow-same-namespace.yaml",
        &policy(
            "allow-same-namespace",
            NetworkPolicySpec {
                pod_selector: everything.clone(),
                policy_types: both,
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![same_namespace.clone()]),
                    ports: None,
                }]),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![same_namespace]),
                    ports: None,
                }]),
            },
        ),
    )?);
    files.push(yaml(
        "networkpolicy-allow-from-ingress.yaml",
        &policy(
            "allow-from-ingress",
            NetworkPolicySpec {
                pod_selector: everything.clone(),
                policy_types: Some(vec!["Ingress".to_owned()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(selector(&[(
                            "kubernetes.io/metadata.name",
                            &settings.ingress_namespace,
                        )])),
                        ..Default::default()
                    }]),
                    ports: None,
                }]),
                ..Default::default()
            },
        ),
    )?);
    let dns_port = |protocol: &str| NetworkPolicyPort {
        port: Some(IntOrString::Int(53)),
        protocol: Some(protocol.to_owned()),
        end_port: None,
    };
    files.push(yaml(
        "networkpolicy-allow-dns.yaml",
        &policy(
            "allow-dns",
            NetworkPolicySpec {
                pod_selector: everything,
                policy_types: Some(vec!["Egress".to_owned()]),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(selector(&[(
                            "kubernetes.io/metadata.name",
                            "kube-system",
                        )])),
                        pod_selector: Some(selector(&[("k8s-app", "kube-dns")])),
                        ..Default::default()
                    }]),
                    ports: Some(vec![dns_port("UDP"), dns_port("TCP")]),
                }]),
                ..Default::default()
            },
        ),
    )?);
    Ok(files)
}

/// The cluster Argo CD deploys `environment` to.
fn cluster(settings: &RenderSettings, environment: &str) -> String {
    settings
        .clusters
        .get(environment)
        .cloned()
        .unwrap_or_else(|| "https://kubernetes.default.svc".into())
}

/// The AppProject of a team in one environment: only the team's
/// repositories as sources, only its namespace as destination, no
/// cluster-scoped resources, and the namespace's guardrails (quota, limits,
/// network policies) out of the apps' reach.
fn app_project(
    team: &str,
    environment: &str,
    settings: &RenderSettings,
    context: &TeamContext,
) -> Result<(String, String), RenderError> {
    let repos: std::collections::BTreeSet<&str> = context
        .repositories
        .values()
        .map(String::as_str)
        .filter(|r| !r.is_empty())
        .collect();
    let kind = |group: &str, kind: &str| argo::GroupKind {
        group: group.into(),
        kind: kind.into(),
    };
    let project = argo::AppProject {
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "AppProject".into(),
        metadata: meta(
            &namespace_name(team, environment),
            Some(&settings.argocd_namespace),
            &labels(team, environment, settings),
        ),
        spec: argo::AppProjectSpec {
            description: format!("{team} in {environment}, managed by Paved"),
            source_repos: repos.into_iter().map(str::to_owned).collect(),
            destinations: vec![argo::Destination {
                server: cluster(settings, environment),
                namespace: namespace_name(team, environment),
            }],
            cluster_resource_whitelist: Vec::new(),
            namespace_resource_blacklist: vec![
                kind("", "ResourceQuota"),
                kind("", "LimitRange"),
                kind("networking.k8s.io", "NetworkPolicy"),
            ],
        },
    };
    yaml("appproject.yaml", &project)
}

/// The Application of a service in an environment.
fn application(
    team: &str,
    spec: &ResourceSpec,
    settings: &RenderSettings,
    context: &TeamContext,
) -> Result<(String, String), RenderError> {
    let service = spec
        .service
        .as_ref()
        .ok_or(RenderError::NoService(spec.kind))?;
    let env = spec.environment.as_str();
    let repo = context
        .repositories
        .get(service.as_str())
        .filter(|r| !r.is_empty())
        .ok_or_else(|| RenderError::NoRepository(service.to_string()))?;
    let mut labels = labels(team, env, settings);
    labels.insert("paved.dev/service".into(), service.to_string());
    let mut metadata = meta(
        &format!("{service}-{env}"),
        Some(&settings.argocd_namespace),
        &labels,
    );
    // Deleting the Application (a decommission) deletes what it deployed.
    metadata.finalizers = Some(vec!["resources-finalizer.argocd.argoproj.io".into()]);
    let app = argo::Application {
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Application".into(),
        metadata,
        spec: argo::ApplicationSpec {
            project: namespace_name(team, env),
            source: argo::Source {
                repo_url: repo.clone(),
                path: settings.app_path.replace("{environment}", env),
                target_revision: "HEAD".into(),
            },
            destination: argo::Destination {
                server: cluster(settings, env),
                namespace: namespace_name(team, env),
            },
            sync_policy: argo::SyncPolicy {
                automated: argo::Automated {
                    prune: true,
                    self_heal: true,
                },
                sync_options: vec!["CreateNamespace=false".into()],
            },
        },
    };
    yaml("application.yaml", &app)
}

/// Argo CD's custom resources (the fields Paved writes, as Argo CD's
/// `argoproj.io/v1alpha1` schema names them).
pub mod argo {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct Application {
        pub api_version: String,
        pub kind: String,
        pub metadata: ObjectMeta,
        pub spec: ApplicationSpec,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct ApplicationSpec {
        pub project: String,
        pub source: Source,
        pub destination: Destination,
        pub sync_policy: SyncPolicy,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct Source {
        #[serde(rename = "repoURL")]
        pub repo_url: String,
        pub path: String,
        pub target_revision: String,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct Destination {
        pub server: String,
        pub namespace: String,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct SyncPolicy {
        pub automated: Automated,
        pub sync_options: Vec<String>,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct Automated {
        pub prune: bool,
        pub self_heal: bool,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct AppProject {
        pub api_version: String,
        pub kind: String,
        pub metadata: ObjectMeta,
        pub spec: AppProjectSpec,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct AppProjectSpec {
        pub description: String,
        pub source_repos: Vec<String>,
        pub destinations: Vec<Destination>,
        /// Empty: no cluster-scoped resource is allowed.
        pub cluster_resource_whitelist: Vec<GroupKind>,
        pub namespace_resource_blacklist: Vec<GroupKind>,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct GroupKind {
        pub group: String,
        pub kind: String,
    }
}

/// `main.tf.json`: one module call, the Kubernetes Secret that publishes
/// its connection in the team's namespace, and an output naming that
/// Secret, in Terraform's JSON syntax. (The root module of the repository
/// configures the `aws` and `kubernetes` providers.)
#[derive(Serialize)]
struct TerraformFile {
    module: BTreeMap<String, ModuleCall>,
    resource: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    output: BTreeMap<String, Output>,
}

#[derive(Serialize)]
struct ModuleCall {
    source: String,
    version: String,
    /// The module's inputs, by name (sorted: stable bytes).
    #[serde(flatten)]
    inputs: BTreeMap<String, serde_json::Value>,
}

#[derive(Serialize)]
struct Output {
    description: String,
    value: serde_json::Value,
}

fn database_file(
    team: &str,
    spec: &ResourceSpec,
    size: &DatabaseSize,
    settings: &RenderSettings,
) -> Result<(String, String), RenderError> {
    use serde_json::json;
    let service = spec
        .service
        .as_ref()
        .ok_or(RenderError::NoService(spec.kind))?;
    let env = spec.environment.as_str();
    let namespace = namespace_name(team, env);
    let identifier = format!("{team}-{service}-{env}");
    let secret = format!("{service}-{}", spec.kind);
    let labels = labels(team, env, settings);
    // AWS tag keys may hold `/` and `.`; the same keys as the labels.
    let mut tags = labels.clone();
    tags.insert("paved.dev/service".to_owned(), service.to_string());
    let production = env == "production";
    let (name, module, mut inputs, data) = match spec.kind {
        ResourceKind::Postgres => {
            let m = "module.postgres";
            (
                "postgres",
                &settings.modules.postgres,
                BTreeMap::from([
                    ("identifier", json!(identifier)),
                    ("engine", json!("postgres")),
                    ("engine_version", json!("16")),
                    ("family", json!("postgres16")),
                    ("major_engine_version", json!("16")),
                    ("instance_class", json!(size.postgres_instance_class)),
                    ("allocated_storage", json!(size.storage_gib)),
                    ("db_name", json!(service.as_str().replace('-', "_"))),
                    ("username", json!("app")),
                    ("manage_master_user_password", json!(true)),
                    ("multi_az", json!(production)),
                    ("deletion_protection", json!(production)),
                ]),
                json!({
                    "host": format!("${{{m}.db_instance_address}}"),
                    "port": format!("${{{m}.db_instance_port}}"),
                    "database": format!("${{{m}.db_instance_name}}"),
                    "username": format!("${{{m}.db_instance_username}}"),
                    "password_secret_arn": format!("${{{m}.db_instance_master_user_secret_arn}}"),
                }),
            )
        }
        _ => {
            let m = "module.redis";
            (
                "redis",
                &settings.modules.redis,
                BTreeMap::from([
                    ("cluster_id", json!(identifier)),
                    ("create_cluster", json!(true)),
                    ("create_replication_group", json!(false)),
                    ("engine", json!("redis")),
                    ("engine_version", json!("7.1")),
                    ("node_type", json!(size.redis_node_type)),
                    ("num_cache_nodes", json!(1)),
                ]),
                json!({
                    "host": format!("${{{m}.cluster_cache_nodes[0].address}}"),
                    "port": format!("${{{m}.cluster_cache_nodes[0].port}}"),
                }),
            )
        }
    };
    inputs.insert("tags", json!(tags));
    let file = TerraformFile {
        module: BTreeMap::from([(
            name.to_owned(),
            ModuleCall {
                source: module.source.clone(),
                version: module.version.clone(),
                inputs: inputs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            },
        )]),
        resource: BTreeMap::from([(
            "kubernetes_secret_v1".to_owned(),
            BTreeMap::from([(
                "connection".to_owned(),
                json!({
                    "metadata": { "name": secret, "namespace": namespace, "labels": labels },
                    "data": data,
                }),
            )]),
        )]),
        output: BTreeMap::from([(
            "connection_secret".to_owned(),
            Output {
                description: format!(
                    "The Kubernetes Secret holding the {} connection of {service}",
                    spec.kind
                ),
                value: json!({ "namespace": namespace, "name": secret }),
            },
        )]),
    };
    let path = "main.tf.json";
    let mut text = serde_json::to_string_pretty(&file).map_err(|e| RenderError::Serialize {
        path: path.to_owned(),
        why: e.to_string(),
    })?;
    text.push('\n');
    Ok((path.to_owned(), text))
}

/// The catalog entity of a provisioned resource: Backstage's `Resource`
/// kind, owned by the team, `dependencyOf` the service a database is for,
/// with its environment, the request that made it and the commit that
/// applied it as `paved.dev/` annotations.
pub fn resource_entity(
    team: &str,
    spec: &ResourceSpec,
    request: &str,
    commit: &str,
) -> serde_json::Value {
    let kind = match spec.kind {
        ResourceKind::Namespace => "kubernetes-namespace",
        ResourceKind::Postgres => "postgres-database",
        ResourceKind::Redis => "redis-cache",
        ResourceKind::ArgoApp => "argocd-application",
    };
    let mut spec_doc = serde_json::json!({
        "type": kind,
        "owner": format!("group:default/{team}"),
    });
    if let Some(service) = &spec.service {
        spec_doc["dependencyOf"] = serde_json::json!([format!("component:default/{service}")]);
    }
    serde_json::json!({
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Resource",
        "metadata": {
            "name": resource_entity_name(team, spec),
            "namespace": "default",
            "title": format!("{} {} of {team}", spec.environment, spec.kind),
            "labels": { "paved.dev/environment": spec.environment.as_str() },
            "annotations": {
                "paved.dev/environment": spec.environment.as_str(),
                "paved.dev/provisioning-request": request,
                "paved.dev/commit": commit,
                "paved.dev/size": spec.size,
                "paved.dev/status": "live",
            },
        },
        "spec": spec_doc,
    })
}

/// The name of a resource's catalog entity: `<team>-<resource id>`, cut
/// to Backstage's 63 characters with a digest when longer.
pub fn resource_entity_name(team: &str, spec: &ResourceSpec) -> String {
    let name = format!("{team}-{}", spec.id());
    if name.len() <= 63 {
        return name;
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest[..5].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", name[..52].trim_end_matches('-'))
}
