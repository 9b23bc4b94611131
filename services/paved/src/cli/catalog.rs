//! Client verbs for the catalog, through the SDK: `paved catalog …`, `paved team …`.

use std::collections::BTreeMap;

use anyhow::Context as _;
use paved_sdk::{Client, pb};

use super::output::{self, Output};

#[derive(clap::Args, Debug)]
pub struct ClientArgs {
    /// Paved's gRPC address.
    #[arg(
        long,
        env = "PAVED_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    server: String,
    /// API token (`paved token create`, or the one printed on first start).
    #[arg(long, env = "PAVED_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table, global = true)]
    pub(crate) output: Output,
}

impl ClientArgs {
    /// Arguments of a verb that needs no server (tests).
    #[cfg(test)]
    pub(crate) fn local(output: Output) -> Self {
        Self {
            server: String::new(),
            token: None,
            output,
        }
    }

    pub(crate) async fn connect(&self) -> anyhow::Result<Client> {
        let token = self
            .token
            .as_deref()
            .context("no token: pass --token or set PAVED_TOKEN")?;
        Client::connect(self.server.clone(), token)
            .await
            .with_context(|| format!("cannot reach Paved at {}", self.server))
    }
}

#[derive(clap::Args, Debug)]
pub struct CatalogArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Change only if the service (or system) is still at this version (the
    /// `sequence` that `get` shows; 0: it must not exist yet). Otherwise the
    /// command is refused and nothing changes: read it again and retry.
    #[arg(long, global = true, value_name = "SEQUENCE")]
    if_version: Option<u64>,
    #[command(subcommand)]
    command: CatalogCommand,
}

/// A `--type` as the proto carries it: the enum for a well-known value,
/// else the free text (Backstage's `spec.type` is any string).
fn type_arg(t: &str) -> (i32, String) {
    use paved_domain::catalog::ServiceType;
    match ServiceType::parse(t) {
        Some(t) => {
            let (e, name) = paved_eventlog::codec::service_type_to_proto(&t);
            (e.into(), name)
        }
        None => (0, String::new()),
    }
}

/// A `--lifecycle` as the proto carries it (see [`type_arg`]).
fn lifecycle_arg(l: &str) -> (i32, String) {
    use paved_domain::catalog::Lifecycle;
    match Lifecycle::parse(l) {
        Some(l) => {
            let (e, name) = paved_eventlog::codec::lifecycle_to_proto(&l);
            (e.into(), name)
        }
        None => (0, String::new()),
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum CriticalityArg {
    Low,
    Medium,
    High,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum DirectionArg {
    Upstream,
    Downstream,
    Both,
}

/// Spec fields settable from the command line; for `update`, the fields
/// given are the ones replaced.
#[derive(clap::Args, Debug, Default)]
struct SpecArgs {
    /// Service type (Backstage's spec.type, any string): well-known are
    /// service, website, library and worker.
    #[arg(long = "type")]
    kind: Option<String>,
    /// Lifecycle stage (Backstage's spec.lifecycle, any string): well-known
    /// are experimental, production and deprecated.
    #[arg(long)]
    lifecycle: Option<String>,
    /// System the service belongs to ("" for none).
    #[arg(long)]
    system: Option<String>,
    /// One-line description of what the service does.
    #[arg(long)]
    description: Option<String>,
    /// 1 (most critical) to 5; 0 for none.
    #[arg(long)]
    tier: Option<u32>,
    /// Source repository URL, e.g. https://github.com/acme/payments-api.
    #[arg(long = "repo")]
    repository_url: Option<String>,
    /// Documentation URL.
    #[arg(long = "docs")]
    docs_url: Option<String>,
    /// Repeatable; replaces all tags.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// KEY=VALUE, repeatable; replaces all labels.
    #[arg(long = "label", value_parser = key_value)]
    labels: Vec<(String, String)>,
    /// KEY=VALUE, repeatable; replaces all annotations.
    #[arg(long = "annotation", value_parser = key_value)]
    annotations: Vec<(String, String)>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} must be KEY=VALUE"))
}

impl SpecArgs {
    /// The spec and the names of the fields that were given.
    fn spec(&self) -> (pb::ServiceSpec, Vec<String>) {
        let mut mask = Vec::new();
        let mut spec = pb::ServiceSpec::default();
        if let Some(k) = &self.kind {
            (spec.r#type, spec.type_name) = type_arg(k);
            mask.push("type");
        }
        if let Some(l) = &self.lifecycle {
            (spec.lifecycle, spec.lifecycle_name) = lifecycle_arg(l);
            mask.push("lifecycle");
        }
        if let Some(s) = &self.system {
            spec.system = s.clone();
            mask.push("system");
        }
        if let Some(d) = &self.description {
            spec.description = d.clone();
            mask.push("description");
        }
        if let Some(t) = self.tier {
            spec.tier = t;
            mask.push("tier");
        }
        if let Some(u) = &self.repository_url {
            spec.repository_url = u.clone();
            mask.push("repository_url");
        }
        if let Some(u) = &self.docs_url {
            spec.docs_url = u.clone();
            mask.push("docs_url");
        }
        if !self.tags.is_empty() {
            spec.tags = self.tags.clone();
            mask.push("tags");
        }
        if !self.labels.is_empty() {
            spec.labels = self.labels.iter().cloned().collect::<BTreeMap<_, _>>();
            mask.push("labels");
        }
        if !self.annotations.is_empty() {
            spec.annotations = self.annotations.iter().cloned().collect::<BTreeMap<_, _>>();
            mask.push("annotations");
        }
        (spec, mask.into_iter().map(str::to_owned).collect())
    }
}

#[derive(clap::Subcommand, Debug)]
enum CatalogCommand {
    /// Register a service.
    Register {
        /// Service name (a DNS label, e.g. payments-api).
        name: String,
        /// Owning team (a DNS label).
        #[arg(long)]
        owner: String,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Replace the given fields of a service.
    Update {
        /// The service to change.
        name: String,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Show one service with its dependencies, dependents and SLOs, or an
    /// entity of another kind with its relations.
    Get {
        /// Service name, or an entity ref `kind:[namespace/]name` of another
        /// kind (api:ops/ArtistLookup, resource:payments-db, user:ana).
        name: String,
    },
    /// List services.
    List {
        /// Only services owned by this team.
        #[arg(long)]
        owner: Option<String>,
        /// Only services of this system.
        #[arg(long)]
        system: Option<String>,
        /// Only services at this lifecycle stage (experimental, production,
        /// deprecated, or any other).
        #[arg(long)]
        lifecycle: Option<String>,
        /// Only services of this type (service, website, library, worker, or
        /// any other).
        #[arg(long = "type")]
        kind: Option<String>,
        /// Only services with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Include retired services.
        #[arg(long)]
        all: bool,
        /// List entities of this kind instead of services (API, Resource,
        /// Domain, User, Location, or a plugin's kind; case-insensitive).
        #[arg(long = "kind")]
        entity_kind: Option<String>,
        /// With --kind: only this namespace.
        #[arg(long, requires = "entity_kind")]
        namespace: Option<String>,
    },
    /// The dependency graph around a service.
    Graph {
        /// The service at the centre of the graph.
        name: String,
        /// upstream (what it depends on), downstream (what depends on it) or both.
        #[arg(long, value_enum, default_value = "both")]
        direction: DirectionArg,
        /// Hops to follow from the service (1..=20).
        #[arg(long, default_value_t = 3)]
        depth: u32,
    },
    /// Catalog health: services without docs, without SLOs, orphaned, deprecated but depended upon.
    Health {
        /// Only this team's figures (default: every team and the whole organisation).
        #[arg(long)]
        team: Option<String>,
    },
    /// Import Backstage descriptor YAML (multi-document).
    Import {
        /// YAML file of Backstage descriptors (`---` between them). The files
        /// its Location entities name (relative targets, as Backstage reads
        /// them) are imported with it, as one unit; URL targets are not fetched.
        file: std::path::PathBuf,
        /// Validate and plan only; append nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Export the catalog as Backstage descriptor YAML on stdout.
    Export {
        /// Include retired teams, systems and services.
        #[arg(long)]
        include_retired: bool,
    },
    /// Transfer a service to another team.
    Transfer {
        /// The service to transfer.
        name: String,
        /// The new owning team.
        #[arg(long)]
        to: String,
    },
    /// Mark a service deprecated.
    Deprecate {
        /// The service to deprecate.
        name: String,
        /// Why, for its users and the audit trail (1..=1024 characters).
        #[arg(long)]
        reason: String,
    },
    /// Retire a service (a tombstone; the name stays taken).
    Retire {
        /// The service to retire.
        name: String,
        /// Why, for the audit trail (1..=1024 characters).
        #[arg(long)]
        reason: String,
    },
    /// Record that NAME depends on another service.
    Depend {
        /// The service that depends.
        name: String,
        /// The service it depends on.
        #[arg(long)]
        on: String,
        /// How much NAME needs it: low, medium or high.
        #[arg(long, value_enum)]
        criticality: Option<CriticalityArg>,
    },
    /// Remove a dependency.
    Undepend {
        /// The service that depends.
        name: String,
        /// The service it no longer depends on.
        #[arg(long)]
        on: String,
    },
    /// Set an SLO: --availability PERCENT, or --latency-ms MS with --percentile P.
    Slo {
        /// The service the SLO is for.
        name: String,
        /// SLO name, e.g. availability.
        #[arg(long = "slo")]
        slo_name: String,
        /// Availability target in percent (0 < x < 100, e.g. 99.9).
        #[arg(long, conflicts_with = "latency_ms")]
        availability: Option<f64>,
        /// Latency threshold in milliseconds (> 0).
        #[arg(long, requires = "percentile")]
        latency_ms: Option<u32>,
        /// Latency percentile the threshold applies to (0 < p < 100, e.g. 99).
        #[arg(long)]
        percentile: Option<f64>,
        /// Rolling window in days (1..=365).
        #[arg(long, default_value_t = 28)]
        window_days: u32,
    },
    /// Create a system.
    System {
        /// System name (a DNS label, e.g. billing).
        name: String,
        /// Owning team (a DNS label).
        #[arg(long)]
        owner: String,
        /// Human-readable name, e.g. "Billing".
        #[arg(long, default_value = "")]
        display_name: String,
        /// One-line description of the system.
        #[arg(long, default_value = "")]
        description: String,
    },
}

fn enum_name(s: &str, prefix: &str) -> String {
    s.trim_start_matches(prefix).to_lowercase()
}

/// The lifecycle shown: the enum's value, else the free text.
pub(super) fn lifecycle_name(l: i32, name: &str) -> String {
    match pb::Lifecycle::try_from(l) {
        Ok(pb::Lifecycle::Unspecified) | Err(_) => name.to_owned(),
        Ok(l) => enum_name(l.as_str_name(), "LIFECYCLE_"),
    }
}

/// The type shown: the enum's value, else the free text.
fn type_name(t: i32, name: &str) -> String {
    match pb::ServiceType::try_from(t) {
        Ok(pb::ServiceType::Unspecified) | Err(_) => name.to_owned(),
        Ok(t) => enum_name(t.as_str_name(), "SERVICE_TYPE_"),
    }
}

fn done(out: Output, what: &str, r: &impl output::Answer) -> anyhow::Result<()> {
    let (sequence, events) = r.recorded();
    match out {
        Output::Json | Output::Jsonl => output::json(r),
        Output::Table => {
            if events == 0 {
                println!("{what}: nothing to change (sequence {sequence})");
            } else {
                println!("{what}: recorded at sequence {sequence}");
            }
            Ok(())
        }
    }
}

pub async fn catalog(a: CatalogArgs) -> anyhow::Result<()> {
    let out = a.client.output;
    let if_version = a.if_version;
    let client = a.client.connect().await?;
    match a.command {
        CatalogCommand::Register { name, owner, spec } => {
            let (spec, _) = spec.spec();
            let r = client
                .register_service(pb::RegisterServiceRequest {
                    expected_version: if_version,
                    name: name.clone(),
                    owner,
                    spec: Some(spec),
                    ..Default::default()
                })
                .await
                .map_err(explain)?;
            done(out, &format!("registered {name}"), &r)
        }
        CatalogCommand::Update { name, spec } => {
            let (spec, mask) = spec.spec();
            anyhow::ensure!(
                !mask.is_empty(),
                "give at least one field to change (see --help)"
            );
            let r = client
                .update_service(pb::UpdateServiceRequest {
                    expected_version: if_version,
                    name: name.clone(),
                    spec: Some(spec),
                    update_mask: Some(paved_proto::wkt::FieldMask { paths: mask }),
                    ..Default::default()
                })
                .await
                .map_err(explain)?;
            done(out, &format!("updated {name}"), &r)
        }
        CatalogCommand::Get { name } if is_entity_ref(&name) => {
            let e = match client.at(0).get_entity(&name).await {
                Ok(e) => e,
                // A team or system made through the API has no descriptor.
                Err(e) if e.code() == tonic::Code::NotFound => {
                    return typed_fallback(&client, out, &name)
                        .await
                        .map_err(|_| e.into());
                }
                Err(e) => return Err(e.into()),
            };
            match out {
                Output::Json | Output::Jsonl => output::json(&e),
                Output::Table => {
                    print_entity(&e);
                    Ok(())
                }
            }
        }
        CatalogCommand::Get { name } => {
            let name = name
                .split_once(':')
                .map_or(name.as_str(), |(_, n)| n.trim_start_matches("default/"));
            let s = client.get_service(name).await?;
            match out {
                Output::Json | Output::Jsonl => output::json(&s),
                Output::Table => {
                    print_service(&s);
                    Ok(())
                }
            }
        }
        CatalogCommand::List {
            entity_kind: Some(entity_kind),
            namespace,
            ..
        } if !entity_kind.eq_ignore_ascii_case("component") => {
            let mut entities = Vec::new();
            let mut page = pb::ListEntitiesRequest {
                kind: entity_kind,
                namespace: namespace.unwrap_or_default(),
                page_size: 1000,
                ..Default::default()
            };
            loop {
                let r = client.at(0).list_entities(page.clone()).await?;
                entities.extend(r.entities);
                if r.next_page_token.is_empty() {
                    break;
                }
                page.page_token = r.next_page_token;
            }
            match out {
                Output::Json | Output::Jsonl => output::json(&entities),
                Output::Table => {
                    let rows: Vec<Vec<String>> = entities
                        .iter()
                        .map(|e| {
                            let doc: serde_json::Value =
                                serde_json::from_str(&e.document_json).unwrap_or_default();
                            let text = |p: &str| {
                                doc.pointer(p)
                                    .and_then(|v| v.as_str())
                                    .unwrap_or_default()
                                    .to_owned()
                            };
                            vec![
                                format!("{}:{}/{}", e.kind, e.namespace, e.name),
                                text("/spec/owner"),
                                text("/spec/type"),
                                text("/spec/lifecycle"),
                            ]
                        })
                        .collect();
                    output::table(&["REF", "OWNER", "TYPE", "LIFECYCLE"], &rows);
                    Ok(())
                }
            }
        }
        CatalogCommand::List {
            owner,
            system,
            lifecycle,
            kind,
            tag,
            all,
            ..
        } => {
            let (lifecycle, lifecycle_text) =
                lifecycle.as_deref().map(lifecycle_arg).unwrap_or_default();
            let (kind, type_text) = kind.as_deref().map(type_arg).unwrap_or_default();
            let services = client
                .at(0)
                .list_all_services(pb::ListServicesRequest {
                    owner: owner.unwrap_or_default(),
                    system: system.unwrap_or_default(),
                    lifecycle,
                    lifecycle_name: lifecycle_text,
                    r#type: kind,
                    type_name: type_text,
                    tag: tag.unwrap_or_default(),
                    include_retired: all,
                    page_size: 1000,
                    ..Default::default()
                })
                .await?;
            match out {
                Output::Json | Output::Jsonl => output::json(&services),
                Output::Table => {
                    let rows: Vec<Vec<String>> = services
                        .iter()
                        .map(|s| {
                            let spec = s.spec.clone().unwrap_or_default();
                            vec![
                                s.name.clone(),
                                s.owner.clone(),
                                type_name(spec.r#type, &spec.type_name),
                                if s.retired {
                                    "retired".into()
                                } else {
                                    lifecycle_name(spec.lifecycle, &spec.lifecycle_name)
                                },
                                spec.system,
                                s.dependencies.len().to_string(),
                                s.slos.len().to_string(),
                            ]
                        })
                        .collect();
                    output::table(
                        &[
                            "NAME",
                            "OWNER",
                            "TYPE",
                            "LIFECYCLE",
                            "SYSTEM",
                            "DEPS",
                            "SLOS",
                        ],
                        &rows,
                    );
                    Ok(())
                }
            }
        }
        CatalogCommand::Graph {
            name,
            direction,
            depth,
        } => {
            let g = client
                .at(0)
                .dependency_graph(pb::GetDependencyGraphRequest {
                    service: name,
                    direction: match direction {
                        DirectionArg::Upstream => pb::GraphDirection::Upstream,
                        DirectionArg::Downstream => pb::GraphDirection::Downstream,
                        DirectionArg::Both => pb::GraphDirection::Both,
                    }
                    .into(),
                    depth,
                    ..Default::default()
                })
                .await?;
            match out {
                Output::Json | Output::Jsonl => output::json(&g),
                Output::Table => {
                    let rows: Vec<Vec<String>> = g
                        .nodes
                        .iter()
                        .map(|n| {
                            vec![
                                n.distance.to_string(),
                                n.name.clone(),
                                n.owner.clone(),
                                if n.retired {
                                    "retired".into()
                                } else {
                                    lifecycle_name(n.lifecycle, &n.lifecycle_name)
                                },
                            ]
                        })
                        .collect();
                    output::table(&["HOPS", "SERVICE", "OWNER", "LIFECYCLE"], &rows);
                    println!();
                    for e in &g.edges {
                        println!("{} -> {}", e.from, e.to);
                    }
                    Ok(())
                }
            }
        }
        CatalogCommand::Health { team } => {
            let h = client
                .at(0)
                .catalog_health(&team.unwrap_or_default())
                .await?;
            match out {
                Output::Json | Output::Jsonl => output::json(&h),
                Output::Table => {
                    let row = |f: &pb::HealthFigures| {
                        vec![
                            if f.team.is_empty() {
                                "(all)".into()
                            } else {
                                f.team.clone()
                            },
                            f.services.to_string(),
                            format!("{} ({:.0}%)", f.without_docs, f.without_docs_percent),
                            format!("{} ({:.0}%)", f.without_slo, f.without_slo_percent),
                            format!("{} ({:.0}%)", f.orphaned, f.orphaned_percent),
                            f.deprecated.to_string(),
                            f.deprecated_depended_upon.to_string(),
                            f.entities.to_string(),
                            f.dangling_references.to_string(),
                        ]
                    };
                    let mut rows: Vec<Vec<String>> = h.teams.iter().map(row).collect();
                    rows.extend(h.overall.as_ref().map(row));
                    output::table(
                        &[
                            "TEAM",
                            "SERVICES",
                            "NO DOCS",
                            "NO SLO",
                            "ORPHANED",
                            "DEPRECATED",
                            "DEPRECATED+USED",
                            "ENTITIES",
                            "DANGLING REFS",
                        ],
                        &rows,
                    );
                    if !h.namespaces.is_empty() {
                        println!();
                        let rows: Vec<Vec<String>> = h
                            .namespaces
                            .iter()
                            .map(|n| {
                                vec![
                                    n.namespace.clone(),
                                    n.entities.to_string(),
                                    n.entities_without_owner.to_string(),
                                    n.dangling_references.to_string(),
                                ]
                            })
                            .collect();
                        output::table(
                            &["NAMESPACE", "ENTITIES", "NO OWNER", "DANGLING REFS"],
                            &rows,
                        );
                    }
                    Ok(())
                }
            }
        }
        CatalogCommand::Import { file, dry_run } => {
            let gathered = super::locations::gather(&file)?;
            for target in &gathered.not_followed {
                eprintln!("not followed (only files are): Location target {target}");
            }
            if gathered.parts.len() > 1 {
                eprintln!(
                    "importing {} files ({} documents) as one",
                    gathered.parts.len(),
                    gathered.parts.iter().map(|p| p.documents).sum::<usize>()
                );
            }
            // Streamed: any size (a single message holds at most 16 MiB).
            let bar = (gathered.yaml.len() > 4 * paved_sdk::IMPORT_CHUNK
                && std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .then(|| {
                let bar = indicatif::ProgressBar::new(gathered.yaml.len() as u64);
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} sent, then checked and imported as one",
                ) {
                    bar.set_style(style);
                }
                bar
            });
            let sent = bar.clone().map(|bar| {
                std::sync::Arc::new(move |n: u64| bar.set_position(n))
                    as std::sync::Arc<dyn Fn(u64) + Send + Sync>
            });
            let r = client
                .import_backstage_stream("", &gathered.yaml, dry_run, sent)
                .await
                .map_err(|e| explain_import(e, &gathered));
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            let r = r?;
            match out {
                Output::Json | Output::Jsonl => output::json(&r),
                Output::Table => {
                    println!(
                        "{}{} entities: {} unchanged, {} commands, {} events{}",
                        if dry_run { "dry run: " } else { "" },
                        r.entities,
                        r.unchanged,
                        r.commands,
                        r.events,
                        if r.sequence > 0 {
                            format!(", up to sequence {}", r.sequence)
                        } else {
                            String::new()
                        }
                    );
                    Ok(())
                }
            }
        }
        CatalogCommand::Export { include_retired } => {
            // Streamed in chunks of whole documents, printed as they come.
            let mut stream = client
                .at(0)
                .export_backstage_stream(include_retired)
                .await?;
            let counter = std::io::IsTerminal::is_terminal(&std::io::stderr())
                .then(output::spinner)
                .transpose()?;
            let (mut yaml, mut entities) = (String::new(), 0u32);
            let mut stdout = std::io::stdout().lock();
            while let Some(chunk) = stream.message().await.map_err(paved_sdk::Error::Status)? {
                entities += chunk.entities;
                if let Some(c) = &counter {
                    c.set_message(format!("{entities} entities exported"));
                }
                match out {
                    Output::Table => std::io::Write::write_all(&mut stdout, chunk.yaml.as_bytes())?,
                    _ => yaml.push_str(&chunk.yaml),
                }
            }
            if let Some(c) = counter {
                c.finish_and_clear();
            }
            match out {
                Output::Table => Ok(()),
                _ => output::json(&pb::ExportBackstageResponse { yaml, entities }),
            }
        }
        CatalogCommand::Transfer { name, to } => {
            let r = client
                .transfer_service_ownership(pb::TransferServiceOwnershipRequest {
                    expected_version: if_version,
                    name: name.clone(),
                    new_owner: to,
                    ..Default::default()
                })
                .await?;
            done(out, &format!("transferred {name}"), &r)
        }
        CatalogCommand::Deprecate { name, reason } => {
            let r = client
                .deprecate_service(pb::DeprecateServiceRequest {
                    expected_version: if_version,
                    name: name.clone(),
                    reason,
                    ..Default::default()
                })
                .await?;
            done(out, &format!("deprecated {name}"), &r)
        }
        CatalogCommand::Retire { name, reason } => {
            let r = client
                .retire_service(pb::RetireServiceRequest {
                    expected_version: if_version,
                    name: name.clone(),
                    reason,
                    ..Default::default()
                })
                .await?;
            done(out, &format!("retired {name}"), &r)
        }
        CatalogCommand::Depend {
            name,
            on,
            criticality,
        } => {
            let r = client
                .add_dependency(pb::AddDependencyRequest {
                    expected_version: if_version,
                    service: name.clone(),
                    depends_on: on.clone(),
                    criticality: match criticality {
                        None => pb::Criticality::Unspecified,
                        Some(CriticalityArg::Low) => pb::Criticality::Low,
                        Some(CriticalityArg::Medium) => pb::Criticality::Medium,
                        Some(CriticalityArg::High) => pb::Criticality::High,
                    }
                    .into(),
                    ..Default::default()
                })
                .await?;
            done(out, &format!("{name} depends on {on}"), &r)
        }
        CatalogCommand::Undepend { name, on } => {
            let r = client
                .remove_dependency(pb::RemoveDependencyRequest {
                    expected_version: if_version,
                    service: name.clone(),
                    depends_on: on.clone(),
                    ..Default::default()
                })
                .await?;
            done(out, &format!("{name} no longer depends on {on}"), &r)
        }
        CatalogCommand::Slo {
            name,
            slo_name,
            availability,
            latency_ms,
            percentile,
            window_days,
        } => {
            let objective = match (availability, latency_ms) {
                (Some(target_percent), _) => {
                    pb::slo::Objective::Availability(pb::AvailabilityObjective { target_percent })
                }
                (None, Some(threshold_ms)) => pb::slo::Objective::Latency(pb::LatencyObjective {
                    percentile: percentile.unwrap_or(99.0),
                    threshold_ms,
                }),
                (None, None) => anyhow::bail!("give --availability or --latency-ms"),
            };
            let r = client
                .set_slo(pb::SetSloRequest {
                    expected_version: if_version,
                    service: name.clone(),
                    slo: Some(pb::Slo {
                        name: slo_name,
                        objective: Some(objective),
                        window_days,
                    }),
                    ..Default::default()
                })
                .await?;
            done(out, &format!("SLO set on {name}"), &r)
        }
        CatalogCommand::System {
            name,
            owner,
            display_name,
            description,
        } => {
            let r = client
                .create_system(pb::CreateSystemRequest {
                    expected_version: if_version,
                    name: name.clone(),
                    owner,
                    display_name,
                    description,
                    ..Default::default()
                })
                .await?;
            done(out, &format!("created system {name}"), &r)
        }
    }
}

/// Adds the field violations to an error's message.
/// A refused call as a person reads it: the field and what is wrong with it
/// (each, when several), or the server's sentence; never a gRPC code name.
pub(crate) fn explain(e: paved_sdk::Error) -> anyhow::Error {
    let violations = e.field_violations();
    match violations.as_slice() {
        [] => anyhow::anyhow!("{e}"),
        [(field, why)] => anyhow::anyhow!("{field}: {why}"),
        many => {
            let lines: Vec<String> = many.iter().map(|(f, d)| format!("  {f}: {d}")).collect();
            anyhow::anyhow!("{} problems:\n{}", many.len(), lines.join("\n"))
        }
    }
}

/// As [`explain`], each `documents[i]` also named by its file and its
/// place in that file.
fn explain_import(e: paved_sdk::Error, gathered: &super::locations::Gathered) -> anyhow::Error {
    let violations = e.field_violations();
    if violations.is_empty() || gathered.parts.len() < 2 {
        return explain(e);
    }
    let lines: Vec<String> = violations
        .iter()
        .map(|(field, why)| {
            let at = field
                .strip_prefix("documents[")
                .and_then(|rest| rest.split_once(']'))
                .and_then(|(i, _)| i.parse::<usize>().ok())
                .and_then(|i| gathered.locate(i))
                .map(|(path, k)| format!(" ({} document {k})", path.display()))
                .unwrap_or_default();
            format!("  {field}{at}: {why}")
        })
        .collect();
    anyhow::anyhow!("{} problems:\n{}", lines.len(), lines.join("\n"))
}

pub(super) fn print_service(s: &pb::Service) {
    let spec = s.spec.clone().unwrap_or_default();
    let deps = |d: &[pb::Dependency]| {
        d.iter()
            .map(|d| d.service.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let slos = s
        .slos
        .iter()
        .map(|slo| match &slo.objective {
            Some(pb::slo::Objective::Availability(a)) => {
                format!(
                    "{}: {}% over {}d",
                    slo.name, a.target_percent, slo.window_days
                )
            }
            Some(pb::slo::Objective::Latency(l)) => format!(
                "{}: p{} < {}ms over {}d",
                slo.name, l.percentile, l.threshold_ms, slo.window_days
            ),
            None => slo.name.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    output::fields(&[
        ("name", s.name.clone()),
        ("owner", s.owner.clone()),
        ("type", type_name(spec.r#type, &spec.type_name)),
        (
            "lifecycle",
            if s.retired {
                format!("retired ({})", s.retired_reason)
            } else {
                lifecycle_name(spec.lifecycle, &spec.lifecycle_name)
            },
        ),
        ("system", spec.system),
        ("description", spec.description),
        (
            "tier",
            if spec.tier == 0 {
                String::new()
            } else {
                spec.tier.to_string()
            },
        ),
        ("repository", spec.repository_url),
        ("docs", spec.docs_url),
        ("tags", spec.tags.join(", ")),
        ("depends on", deps(&s.dependencies)),
        ("used by", deps(&s.dependents)),
        ("slos", slos),
        (
            "missing",
            if s.missing.is_empty() {
                String::new()
            } else {
                format!("{} (not in the catalog yet)", s.missing.join(", "))
            },
        ),
        ("sequence", s.sequence.to_string()),
    ]);
}

#[derive(clap::Args, Debug)]
pub struct TeamArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Change only if the team is still at this version (the `sequence` that
    /// `get` shows; 0: it must not exist yet).
    #[arg(long, global = true, value_name = "SEQUENCE")]
    if_version: Option<u64>,
    #[command(subcommand)]
    command: TeamCommand,
}

#[derive(clap::Subcommand, Debug)]
enum TeamCommand {
    /// Create a team (admins).
    Create {
        /// Team name (a DNS label, e.g. payments).
        name: String,
        /// Human-readable name, e.g. "Payments".
        #[arg(long, default_value = "")]
        display_name: String,
        /// The team's e-mail address.
        #[arg(long, default_value = "")]
        email: String,
        /// Chat channel, e.g. #payments or a Slack channel id.
        #[arg(long, default_value = "")]
        chat: String,
        /// Parent team ("" for none).
        #[arg(long, default_value = "")]
        parent: String,
        /// Repeatable.
        #[arg(long = "member")]
        members: Vec<String>,
    },
    /// Replace a team's profile.
    Update {
        /// The team to change.
        name: String,
        /// Human-readable name, e.g. "Payments" ("" clears it).
        #[arg(long, default_value = "")]
        display_name: String,
        /// The team's e-mail address ("" clears it).
        #[arg(long, default_value = "")]
        email: String,
        /// Chat channel, e.g. #payments or a Slack channel id ("" clears it).
        #[arg(long, default_value = "")]
        chat: String,
    },
    /// Show one team with its profile, parent, children and members.
    Get {
        /// Team name.
        name: String,
    },
    /// List teams.
    List {
        /// Include retired teams.
        #[arg(long)]
        all: bool,
    },
    /// Add a member to a team.
    AddMember {
        /// The team.
        team: String,
        /// Member id, e.g. a user name or e-mail address.
        member: String,
    },
    /// Remove a member from a team.
    RemoveMember {
        /// The team.
        team: String,
        /// Member id, as added.
        member: String,
    },
    /// Set ("" to clear) a team's parent (admins).
    SetParent {
        /// The team.
        team: String,
        /// The parent team ("" for none).
        parent: String,
    },
    /// Retire a team (admins).
    Retire {
        /// The team to retire.
        name: String,
        /// Why, for the audit trail (1..=1024 characters).
        #[arg(long)]
        reason: String,
    },
}

pub async fn team(a: TeamArgs) -> anyhow::Result<()> {
    let out = a.client.output;
    let if_version = a.if_version;
    let client = a.client.connect().await?;
    match a.command {
        TeamCommand::Create {
            name,
            display_name,
            email,
            chat,
            parent,
            members,
        } => {
            let r = client
                .create_team(pb::CreateTeamRequest {
                    expected_version: if_version,
                    name: name.clone(),
                    profile: Some(pb::TeamProfile {
                        display_name,
                        email,
                        chat_channel: chat,
                    }),
                    parent,
                    members,
                    ..Default::default()
                })
                .await
                .map_err(explain)?;
            done(out, &format!("created team {name}"), &r)
        }
        TeamCommand::Update {
            name,
            display_name,
            email,
            chat,
        } => {
            let r = client
                .update_team_profile(pb::UpdateTeamProfileRequest {
                    expected_version: if_version,
                    name: name.clone(),
                    profile: Some(pb::TeamProfile {
                        display_name,
                        email,
                        chat_channel: chat,
                    }),
                    ..Default::default()
                })
                .await
                .map_err(explain)?;
            done(out, &format!("updated team {name}"), &r)
        }
        TeamCommand::Get { name } => {
            let t = client.get_team(&name).await?;
            match out {
                Output::Json | Output::Jsonl => output::json(&t),
                Output::Table => {
                    print_team(&t);
                    Ok(())
                }
            }
        }
        TeamCommand::List { all } => {
            let mut teams = Vec::new();
            let mut page = pb::ListTeamsRequest {
                include_retired: all,
                page_size: 1000,
                ..Default::default()
            };
            loop {
                let r = client.at(0).list_teams(page.clone()).await?;
                teams.extend(r.teams);
                if r.next_page_token.is_empty() {
                    break;
                }
                page.page_token = r.next_page_token;
            }
            match out {
                Output::Json | Output::Jsonl => output::json(&teams),
                Output::Table => {
                    let rows: Vec<Vec<String>> = teams
                        .iter()
                        .map(|t| {
                            vec![
                                t.name.clone(),
                                t.profile.clone().unwrap_or_default().display_name,
                                t.parent.clone(),
                                t.members.len().to_string(),
                                t.services.to_string(),
                                if t.retired {
                                    "retired".into()
                                } else {
                                    String::new()
                                },
                            ]
                        })
                        .collect();
                    output::table(
                        &["NAME", "DISPLAY NAME", "PARENT", "MEMBERS", "SERVICES", ""],
                        &rows,
                    );
                    Ok(())
                }
            }
        }
        TeamCommand::AddMember { team, member } => {
            let r = client
                .add_team_member(pb::AddTeamMemberRequest {
                    expected_version: if_version,
                    team: team.clone(),
                    member: member.clone(),
                    ..Default::default()
                })
                .await?;
            done(out, &format!("added {member} to {team}"), &r)
        }
        TeamCommand::RemoveMember { team, member } => {
            let r = client
                .remove_team_member(pb::RemoveTeamMemberRequest {
                    expected_version: if_version,
                    team: team.clone(),
                    member: member.clone(),
                    ..Default::default()
                })
                .await?;
            done(out, &format!("removed {member} from {team}"), &r)
        }
        TeamCommand::SetParent { team, parent } => {
            let r = client
                .set_team_parent(pb::SetTeamParentRequest {
                    expected_version: if_version,
                    team: team.clone(),
                    parent,
                    ..Default::default()
                })
                .await?;
            done(out, &format!("set the parent of {team}"), &r)
        }
        TeamCommand::Retire { name, reason } => {
            let r = client
                .retire_team(pb::RetireTeamRequest {
                    expected_version: if_version,
                    name: name.clone(),
                    reason,
                    ..Default::default()
                })
                .await?;
            done(out, &format!("retired team {name}"), &r)
        }
    }
}

/// Is this a ref to an entity of a kind other than Component?
fn is_entity_ref(name: &str) -> bool {
    name.split_once(':')
        .is_some_and(|(kind, _)| !kind.eq_ignore_ascii_case("component"))
}

fn print_entity(e: &pb::Entity) {
    output::fields(&[
        ("ref", format!("{}:{}/{}", e.kind, e.namespace, e.name)),
        ("sequence", e.sequence.to_string()),
    ]);
    let rows = |rels: &[pb::EntityRelation]| -> Vec<Vec<String>> {
        rels.iter()
            .map(|r| {
                vec![
                    r.r#type.clone(),
                    r.target.clone(),
                    if r.missing {
                        "missing".into()
                    } else {
                        String::new()
                    },
                ]
            })
            .collect()
    };
    let mut relations = rows(&e.relations);
    relations.extend(rows(&e.incoming));
    if !relations.is_empty() {
        println!();
        output::table(&["RELATION", "ENTITY", ""], &relations);
    }
    println!();
    match serde_json::from_str::<serde_json::Value>(&e.document_json) {
        Ok(doc) => println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default()),
        Err(_) => println!("{}", e.document_json),
    }
}

/// `group:NAME` or `system:NAME` with no stored descriptor: the team or
/// system itself.
async fn typed_fallback(client: &paved_sdk::Client, out: Output, name: &str) -> anyhow::Result<()> {
    let (kind, rest) = name.split_once(':').unwrap_or(("", name));
    let rest = rest.strip_prefix("default/").unwrap_or(rest);
    if kind.eq_ignore_ascii_case("group") {
        let t = client.get_team(rest).await?;
        return match out {
            Output::Json | Output::Jsonl => output::json(&t),
            Output::Table => {
                print_team(&t);
                Ok(())
            }
        };
    }
    if kind.eq_ignore_ascii_case("system") {
        let y = client.get_system(rest).await?;
        return match out {
            Output::Json | Output::Jsonl => output::json(&y),
            Output::Table => {
                output::fields(&[
                    ("system", y.name.clone()),
                    ("owner", y.owner.clone()),
                    ("title", y.display_name.clone()),
                    ("description", y.description.clone()),
                    ("services", y.services.join(", ")),
                    ("sequence", y.sequence.to_string()),
                ]);
                Ok(())
            }
        };
    }
    anyhow::bail!("not a team or system")
}

fn print_team(t: &pb::Team) {
    let p = t.profile.clone().unwrap_or_default();
    output::fields(&[
        ("name", t.name.clone()),
        ("display name", p.display_name),
        ("email", p.email),
        ("chat", p.chat_channel),
        ("parent", t.parent.clone()),
        ("children", t.children.join(", ")),
        ("members", t.members.join(", ")),
        ("services", t.services.to_string()),
        (
            "retired",
            if t.retired {
                t.retired_reason.clone()
            } else {
                "no".into()
            },
        ),
        ("sequence", t.sequence.to_string()),
    ]);
}
