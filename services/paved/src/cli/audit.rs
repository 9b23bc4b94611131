//! Auditor verbs over the log, through `EventLogService`: `paved audit log`,
//! `paved audit export` (JSON Lines) and `paved audit at` (the state at a
//! time, rebuilt in memory with the domain's own code; read models untouched).
//!
//! The export format, one line per event: an `EventRecord` in the proto3
//! JSON mapping (`sequence`, `index`, `context`, `aggregateType`,
//! `aggregateId`, `commandId`, `principal`, `occurredAt` RFC 3339,
//! `correlationId`, `causationId`, `reason`, `traceparent`, `eventType`,
//! `event` (the typed event) and `json`). Fields are only ever added.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use paved_domain::catalog::{Service, System, Team};
use paved_domain::{Aggregate, Event, Name};
use paved_eventlog::audit;
use paved_eventlog::codec::{self, timestamp};
use paved_sdk::pb;

use super::catalog::ClientArgs;
use super::output::{self, Output};
use crate::settings::Settings;

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(clap::Args, Debug, Default)]
struct Range {
    /// From this time (RFC 3339, e.g. 2026-03-01T00:00:00Z).
    #[arg(long)]
    since: Option<DateTime<Utc>>,
    /// Up to this time.
    #[arg(long)]
    until: Option<DateTime<Utc>>,
    /// From this stream sequence.
    #[arg(long, default_value_t = 0)]
    from_seq: u64,
    /// Up to this stream sequence.
    #[arg(long, default_value_t = 0)]
    to_seq: u64,
}

#[derive(clap::Args, Debug, Default)]
struct Filters {
    /// Events of one service.
    #[arg(long, conflicts_with_all = ["team", "aggregate"])]
    service: Option<String>,
    /// Events of one team.
    #[arg(long, conflicts_with = "aggregate")]
    team: Option<String>,
    /// TYPE/ID, e.g. system/billing or survey/devex-q4 (or just TYPE).
    #[arg(long)]
    aggregate: Option<String>,
    /// Who did it (principal).
    #[arg(long)]
    actor: Option<String>,
    /// Event type; repeatable.
    #[arg(long = "type")]
    types: Vec<String>,
    /// Correlation id.
    #[arg(long)]
    correlation: Option<String>,
}

impl Filters {
    fn to_proto(&self) -> pb::EventFilter {
        let (aggregate_type, aggregate_id) = match (&self.service, &self.team, &self.aggregate) {
            (Some(s), _, _) => ("service".to_owned(), s.clone()),
            (_, Some(t), _) => ("team".to_owned(), t.clone()),
            (_, _, Some(a)) => match a.split_once('/') {
                Some((t, id)) => (t.to_owned(), id.to_owned()),
                None => (a.clone(), String::new()),
            },
            _ => (String::new(), String::new()),
        };
        pb::EventFilter {
            aggregate_type,
            aggregate_id,
            event_types: self.types.clone(),
            principal: self.actor.clone().unwrap_or_default(),
            correlation_id: self.correlation.clone().unwrap_or_default(),
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum AtKind {
    Service,
    Team,
    System,
    Catalog,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum DiffKind {
    Service,
    Team,
    System,
}

#[derive(clap::Subcommand, Debug)]
enum AuditCommand {
    /// Who did what, when: events matching the filters.
    Log {
        #[command(flatten)]
        range: Range,
        #[command(flatten)]
        filters: Filters,
        /// Most events to show.
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// Every event of a range as JSON Lines on stdout (progress on stderr).
    Export {
        #[command(flatten)]
        range: Range,
        #[command(flatten)]
        filters: Filters,
    },
    /// The state as of TIME, rebuilt by replaying the log up to TIME.
    At {
        /// The time (RFC 3339, e.g. 2026-03-01T00:00:00Z).
        time: DateTime<Utc>,
        /// What to rebuild: a service, team or system, or the whole catalog.
        #[arg(value_enum)]
        kind: AtKind,
        /// The service, team or system (not for catalog).
        name: Option<String>,
    },
    /// What changed between two times, field by field, with who and which
    /// request did it.
    Diff {
        /// The kind of entity: service, team or system.
        #[arg(value_enum)]
        kind: DiffKind,
        /// The service, team or system.
        name: String,
        /// From this time (the state then is the "before").
        #[arg(long)]
        from: DateTime<Utc>,
        /// Up to this time (default: now).
        #[arg(long)]
        to: Option<DateTime<Utc>>,
    },
    /// Prove the log was not edited: check every commit's hash chain and
    /// every signed checkpoint, straight from the stream (exit 1 on a problem).
    Verify {
        /// Start at this stream sequence (the first link of each chain after
        /// it is trusted; checkpoints starting before it are not checked).
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Also trust checkpoints signed by this public key (hex); repeatable.
        #[arg(long = "trusted-key")]
        trusted_keys: Vec<String>,
        #[command(flatten)]
        settings: Box<Settings>,
    },
    /// The checkpoint signing key's id and public key (give it to auditors).
    Keys {
        #[command(flatten)]
        settings: Box<Settings>,
    },
}

fn request(range: &Range, filters: &Filters, limit: u32) -> pb::ReadEventsRequest {
    pb::ReadEventsRequest {
        from_sequence: range.from_seq,
        to_sequence: range.to_seq,
        since: range.since.map(timestamp),
        until: range.until.map(timestamp),
        filter: Some(filters.to_proto()),
        limit,
        omit_json: false,
    }
}

pub async fn audit(a: AuditArgs) -> anyhow::Result<()> {
    let out = a.client.output;
    match a.command {
        AuditCommand::Verify {
            from,
            trusted_keys,
            settings,
        } => return verify(out, from, &trusted_keys, &settings).await,
        AuditCommand::Keys { settings } => return keys(out, &settings).await,
        _ => {}
    }
    let client = a.client.connect().await?;
    match a.command {
        AuditCommand::Verify { .. } | AuditCommand::Keys { .. } => unreachable!("handled above"),
        AuditCommand::Log {
            range,
            filters,
            limit,
        } => {
            let mut stream = client
                .read_events(request(&range, &filters, limit))
                .await
                .map_err(super::catalog::explain)?;
            let mut rows = Vec::new();
            let mut all = Vec::new();
            while let Some(r) = stream.message().await? {
                match out {
                    Output::Jsonl => output::json_line(&r)?,
                    Output::Json => all.push(r),
                    Output::Table => rows.push(vec![
                        r.sequence.to_string(),
                        r.occurred_at
                            .as_ref()
                            .and_then(|t| codec::time_from_proto(Some(t)))
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                            .unwrap_or_default(),
                        r.principal.clone(),
                        format!("{}/{}", r.aggregate_type, r.aggregate_id),
                        r.event_type.clone(),
                        r.command_id.clone(),
                    ]),
                }
            }
            match out {
                Output::Json => output::json(&all),
                Output::Jsonl => Ok(()),
                Output::Table => {
                    output::table(
                        &[
                            "SEQ",
                            "TIME (UTC)",
                            "ACTOR",
                            "AGGREGATE",
                            "EVENT",
                            "REQUEST",
                        ],
                        &rows,
                    );
                    Ok(())
                }
            }
        }
        AuditCommand::Export { range, filters } => {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(indicatif::ProgressStyle::with_template(
                "{spinner} {pos} events exported  {per_sec}  sequence {msg}",
            )?);
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            let mut stream = client
                .read_events(request(&range, &filters, 0))
                .await
                .map_err(super::catalog::explain)?;
            use std::io::Write;
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            while let Some(r) = stream.message().await? {
                serde_json::to_writer(&mut w, &r)?;
                w.write_all(b"\n")?;
                bar.inc(1);
                if r.sequence % 1000 == 0 {
                    bar.set_message(r.sequence.to_string());
                }
            }
            w.flush()?;
            bar.finish_and_clear();
            eprintln!("exported {} events", bar.position());
            Ok(())
        }
        AuditCommand::At { time, kind, name } => at(&client, out, time, kind, name).await,
        AuditCommand::Diff {
            kind,
            name,
            from,
            to,
        } => diff(&client, out, kind, &name, from, to).await,
    }
}

/// Everything in the catalog as of a time.
#[derive(Default)]
pub struct Catalog {
    pub teams: BTreeMap<Name, Option<Team>>,
    pub systems: BTreeMap<Name, Option<System>>,
    pub services: BTreeMap<Name, Option<Service>>,
    sequence: HashMap<Name, u64>,
}

/// The catalog (or one entity of it) as of `time`: the log read up to
/// `time` and folded in memory with the domain's own `evolve`. Returns it
/// with the number of events folded.
pub async fn catalog_at(
    client: &paved_sdk::Client,
    time: DateTime<Utc>,
    aggregate_type: String,
    id: String,
) -> anyhow::Result<(Catalog, u64)> {
    let mut stream = client
        .read_events(pb::ReadEventsRequest {
            until: Some(timestamp(time)),
            filter: Some(pb::EventFilter {
                aggregate_type,
                aggregate_id: id,
                ..Default::default()
            }),
            // Folded from the typed events: no JSON needed.
            omit_json: true,
            ..Default::default()
        })
        .await
        .map_err(super::catalog::explain)?;
    let mut catalog = Catalog::default();
    let mut events = 0u64;
    while let Some(r) = stream.message().await? {
        let Some(e) = r.event.as_ref() else { continue };
        let fold_into = match r.aggregate_type.as_str() {
            "team" | "system" | "service" => r.aggregate_type.as_str(),
            _ => continue,
        };
        let event = codec::event_from_proto(e, r.index as usize)?;
        let id = Name::parse(&r.aggregate_id)?;
        catalog.sequence.insert(id.clone(), r.sequence);
        match fold_into {
            "team" => fold(&mut catalog.teams, id, &event),
            "system" => fold(&mut catalog.systems, id, &event),
            _ => fold(&mut catalog.services, id, &event),
        }
        events += 1;
    }
    Ok((catalog, events))
}

fn fold<A: Aggregate>(map: &mut BTreeMap<Name, A>, id: Name, event: &Event) {
    if let Some(e) = A::select(event) {
        map.entry(id).or_default().evolve(e);
    }
}

async fn at(
    client: &paved_sdk::Client,
    out: Output,
    time: DateTime<Utc>,
    kind: AtKind,
    name: Option<String>,
) -> anyhow::Result<()> {
    let (aggregate_type, id) = match (kind, &name) {
        (AtKind::Catalog, _) => (String::new(), String::new()),
        (k, Some(n)) => (format!("{k:?}").to_lowercase(), n.clone()),
        (k, None) => anyhow::bail!("name the {k:?} to show"),
    };
    let (catalog, events) = catalog_at(client, time, aggregate_type, id).await?;
    eprintln!("replayed {events} events up to {time}");
    let services: Vec<pb::Service> = catalog
        .services
        .iter()
        .filter_map(|(n, s)| {
            s.as_ref()
                .map(|s| service_view(s, &catalog, catalog.sequence.get(n)))
        })
        .collect();
    match kind {
        AtKind::Service => {
            let s = services
                .first()
                .ok_or_else(|| anyhow::anyhow!("no such service at {time}"))?;
            match out {
                Output::Table => super::catalog::print_service(s),
                _ => output::json(s)?,
            }
        }
        AtKind::Team => {
            let t = catalog
                .teams
                .values()
                .flatten()
                .next()
                .ok_or_else(|| anyhow::anyhow!("no such team at {time}"))?;
            let view = serde_json::json!({
                "name": t.name.as_str(),
                "displayName": t.profile.display_name,
                "email": t.profile.email,
                "chatChannel": t.profile.chat_channel,
                "parent": t.parent.as_ref().map(Name::as_str),
                "members": t.members,
                "retired": t.retired,
            });
            output::json(&view)?;
        }
        AtKind::System => {
            let y = catalog
                .systems
                .values()
                .flatten()
                .next()
                .ok_or_else(|| anyhow::anyhow!("no such system at {time}"))?;
            output::json(&serde_json::json!({
                "name": y.name.as_str(),
                "owner": y.owner.as_str(),
                "displayName": y.display_name,
                "description": y.description,
                "retired": y.retired,
            }))?;
        }
        AtKind::Catalog => match out {
            Output::Table => {
                let live_teams = catalog
                    .teams
                    .values()
                    .flatten()
                    .filter(|t| t.retired.is_none())
                    .count();
                println!(
                    "as of {time}: {live_teams} teams, {} systems, {} services",
                    catalog.systems.values().flatten().count(),
                    services.iter().filter(|s| !s.retired).count()
                );
                let rows: Vec<Vec<String>> = services
                    .iter()
                    .map(|s| {
                        vec![
                            s.name.clone(),
                            s.owner.clone(),
                            if s.retired {
                                "retired".into()
                            } else {
                                let spec = s.spec.clone().unwrap_or_default();
                                super::catalog::lifecycle_name(spec.lifecycle, &spec.lifecycle_name)
                            },
                            s.dependencies.len().to_string(),
                        ]
                    })
                    .collect();
                output::table(&["SERVICE", "OWNER", "LIFECYCLE", "DEPS"], &rows);
            }
            _ => output::json(&services)?,
        },
    }
    Ok(())
}

/// A service state in the API's shape (dependents from the same replay).
fn service_view(s: &Service, catalog: &Catalog, sequence: Option<&u64>) -> pb::Service {
    let dependents = catalog
        .services
        .values()
        .flatten()
        .filter_map(|o| {
            o.dependencies.get(&s.name).map(|c| pb::Dependency {
                service: o.name.to_string(),
                criticality: codec::criticality_to_proto(*c).into(),
            })
        })
        .collect();
    pb::Service {
        name: s.name.to_string(),
        owner: s.owner.to_string(),
        spec: Some(codec::spec_to_proto(&s.spec)),
        deprecation_reason: s.deprecation.clone().unwrap_or_default(),
        retired: s.retired.is_some(),
        retired_reason: s.retired.clone().unwrap_or_default(),
        dependencies: s
            .dependencies
            .iter()
            .map(|(n, c)| pb::Dependency {
                service: n.to_string(),
                criticality: codec::criticality_to_proto(*c).into(),
            })
            .collect(),
        dependents,
        slos: s.slos.values().map(codec::slo_to_proto).collect(),
        created_at: None,
        updated_at: None,
        sequence: sequence.copied().unwrap_or(0),
        missing: missing_references(s, catalog),
    }
}

/// What the service names that the replayed catalog does not hold, in the
/// order and spelling of the API's `Service.missing`.
fn missing_references(s: &Service, catalog: &Catalog) -> Vec<String> {
    let mut out = Vec::new();
    if !matches!(catalog.teams.get(&s.owner), Some(Some(_))) {
        out.push(format!("group:default/{}", s.owner));
    }
    if let Some(system) = &s.spec.system
        && !matches!(catalog.systems.get(system), Some(Some(_)))
    {
        out.push(format!("system:default/{system}"));
    }
    for on in s.dependencies.keys() {
        if !matches!(catalog.services.get(on), Some(Some(_))) {
            out.push(format!("component:default/{on}"));
        }
    }
    out.sort();
    out
}

/// The signing key: configured, else the one the server generated.
async fn signing_key(settings: &Settings) -> anyhow::Result<audit::SigningKey> {
    crate::secrets::existing_signing_key(settings, None).await
}

async fn keys(out: Output, settings: &Settings) -> anyhow::Result<()> {
    let key = signing_key(settings).await?;
    let mut trusted = settings.audit_trusted_keys.clone();
    trusted.retain(|k| !k.trim().is_empty());
    match out {
        Output::Table => {
            output::fields(&[
                ("signing key id", key.id().to_owned()),
                ("public key", key.public_hex()),
            ]);
            for k in &trusted {
                output::fields(&[("also trusted", k.clone())]);
            }
            Ok(())
        }
        _ => output::json(&serde_json::json!({
            "keyId": key.id(),
            "publicKey": key.public_hex(),
            "trustedKeys": trusted,
        })),
    }
}

async fn verify(
    out: Output,
    from: u64,
    trusted_keys: &[String],
    settings: &Settings,
) -> anyhow::Result<()> {
    let mut keys = crate::secrets::trusted_keys(settings, None, trusted_keys)?;
    match signing_key(settings).await {
        Ok(key) => keys.add(key.verifying_key()),
        Err(e) if !keys.is_empty() => eprintln!("note: {e:#}; using the given keys only"),
        Err(e) => return Err(e),
    }
    let log = crate::secrets::existing_log(settings).await?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "verify [{bar:40}] {pos}/{len} messages  {per_sec}  ETA {eta}",
        )?
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let started = std::time::Instant::now();
    let report = audit::verify_log(&log, keys, from, |seq, last| {
        bar.set_length(last);
        bar.set_position(seq);
    })
    .await?;
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    match out {
        Output::Table => {
            let mut pairs = vec![
                (
                    "checked",
                    format!(
                        "sequences {}..={}: {} messages ({} commits, {} checkpoints) in {elapsed:.1} s ({:.0}/s)",
                        report.first_sequence,
                        report.last_sequence,
                        report.messages,
                        report.commits,
                        report.checkpoints,
                        report.messages as f64 / elapsed.max(1e-9),
                    ),
                ),
                (
                    "covered by checkpoints",
                    format!("up to {}", report.covered_to),
                ),
            ];
            if let Some(audit::LastCheckpoint {
                sequence: seq,
                root,
            }) = &report.last_checkpoint
            {
                pairs.push(("last checkpoint", format!("sequence {seq}, root {root}")));
            }
            match &report.finding {
                None => pairs.push(("result", "OK: no alteration found".to_owned())),
                Some(f) => {
                    pairs.push(("result", format!("FAILED: {} problem(s)", report.problems)));
                    pairs.push(("first bad sequence", f.sequence.to_string()));
                    pairs.push(("what", format!("{}: {}", f.tamper, f.detail)));
                }
            }
            output::fields(&pairs);
        }
        _ => output::json(&report)?,
    }
    anyhow::ensure!(
        report.ok(),
        "the log was altered at sequence {}",
        report.finding.as_ref().map_or(0, |f| f.sequence)
    );
    Ok(())
}

/// One field that changed (`paved audit diff --output json`).
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldChange {
    #[serde(serialize_with = "paved_proto::json::u64_string")]
    pub sequence: u64,
    pub occurred_at: String,
    pub principal: String,
    pub request_id: String,
    pub correlation_id: String,
    pub event_type: String,
    pub field: String,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

/// The entity's state as JSON (proto3 JSON for services), or `null`.
fn state_json(kind: DiffKind, catalog: &Catalog, name: &Name) -> anyhow::Result<serde_json::Value> {
    Ok(match kind {
        DiffKind::Service => match catalog.services.get(name).and_then(Option::as_ref) {
            Some(s) => {
                let mut v = serde_json::to_value(service_view(s, catalog, None))?;
                if let Some(o) = v.as_object_mut() {
                    o.remove("sequence");
                }
                v
            }
            None => serde_json::Value::Null,
        },
        DiffKind::Team => match catalog.teams.get(name).and_then(Option::as_ref) {
            Some(t) => serde_json::json!({
                "displayName": t.profile.display_name,
                "email": t.profile.email,
                "chatChannel": t.profile.chat_channel,
                "parent": t.parent.as_ref().map(Name::as_str),
                "members": t.members,
                "retired": t.retired,
            }),
            None => serde_json::Value::Null,
        },
        DiffKind::System => match catalog.systems.get(name).and_then(Option::as_ref) {
            Some(y) => serde_json::json!({
                "owner": y.owner.as_str(),
                "displayName": y.display_name,
                "description": y.description,
                "retired": y.retired,
            }),
            None => serde_json::Value::Null,
        },
    })
}

/// `a.b.c` paths of every leaf (arrays are compared whole).
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        v => {
            out.insert(prefix.to_owned(), v.clone());
        }
    }
}

async fn diff(
    client: &paved_sdk::Client,
    out: Output,
    kind: DiffKind,
    name: &str,
    from: DateTime<Utc>,
    to: Option<DateTime<Utc>>,
) -> anyhow::Result<()> {
    let to = to.unwrap_or_else(Utc::now);
    let changes = field_changes(client, kind, name, from, to).await?;
    print_changes(out, kind, name, from, to, &changes)
}

/// The field changes of one entity after `from` up to `to`: the log read up
/// to `to`, folded with the domain's evolve, compared commit by commit.
pub async fn field_changes(
    client: &paved_sdk::Client,
    kind: DiffKind,
    name: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Vec<FieldChange>> {
    anyhow::ensure!(from < to, "--from must be before --to");
    let id = Name::parse(name)?;
    let mut stream = client
        .read_events(pb::ReadEventsRequest {
            until: Some(timestamp(to)),
            filter: Some(pb::EventFilter {
                aggregate_type: format!("{kind:?}").to_lowercase(),
                aggregate_id: name.to_owned(),
                ..Default::default()
            }),
            // Folded from the typed events: no JSON needed.
            omit_json: true,
            ..Default::default()
        })
        .await
        .map_err(super::catalog::explain)?;
    let mut catalog = Catalog::default();
    let mut changes = Vec::new();
    while let Some(r) = stream.message().await? {
        let Some(e) = r.event.as_ref() else { continue };
        let event = codec::event_from_proto(e, r.index as usize)?;
        let at = r
            .occurred_at
            .as_ref()
            .and_then(|t| codec::time_from_proto(Some(t)));
        let before = state_json(kind, &catalog, &id)?;
        match kind {
            DiffKind::Service => fold(&mut catalog.services, id.clone(), &event),
            DiffKind::Team => fold(&mut catalog.teams, id.clone(), &event),
            DiffKind::System => fold(&mut catalog.systems, id.clone(), &event),
        }
        if at.is_none_or(|t| t <= from) {
            continue;
        }
        let after = state_json(kind, &catalog, &id)?;
        let (mut b, mut a) = (BTreeMap::new(), BTreeMap::new());
        flatten("", &before, &mut b);
        flatten("", &after, &mut a);
        let fields: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
        for field in fields {
            let (old, new) = (
                b.get(field).cloned().unwrap_or_default(),
                a.get(field).cloned().unwrap_or_default(),
            );
            if old != new {
                changes.push(FieldChange {
                    sequence: r.sequence,
                    occurred_at: at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    principal: r.principal.clone(),
                    request_id: r.command_id.clone(),
                    correlation_id: r.correlation_id.clone(),
                    event_type: r.event_type.clone(),
                    field: if field.is_empty() {
                        "(all)".into()
                    } else {
                        field.clone()
                    },
                    before: old,
                    after: new,
                });
            }
        }
    }
    Ok(changes)
}

fn print_changes(
    out: Output,
    kind: DiffKind,
    name: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    changes: &[FieldChange],
) -> anyhow::Result<()> {
    match out {
        Output::Table => {
            let cell = |v: &serde_json::Value| match v {
                serde_json::Value::Null => "-".to_owned(),
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            let rows: Vec<Vec<String>> = changes
                .iter()
                .map(|c| {
                    vec![
                        c.sequence.to_string(),
                        c.occurred_at.clone(),
                        c.principal.clone(),
                        c.request_id.clone(),
                        c.field.clone(),
                        cell(&c.before),
                        cell(&c.after),
                    ]
                })
                .collect();
            println!(
                "{kind:?} {name}: {} field changes from {from} to {to}",
                changes.len()
            );
            output::table(
                &[
                    "SEQ", "TIME", "ACTOR", "REQUEST", "FIELD", "BEFORE", "AFTER",
                ],
                &rows,
            );
            Ok(())
        }
        Output::Jsonl => {
            for c in changes {
                output::json_line(c)?;
            }
            Ok(())
        }
        Output::Json => output::json(&changes),
    }
}
