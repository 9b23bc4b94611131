//! The catalog projection: `catalog_teams`, `catalog_systems`,
//! `catalog_services`, `catalog_dependencies`, `catalog_repositories`
//! (repository claims), and `catalog_entities` with
//! `catalog_entity_relations` (entities of other kinds, stored as given),
//! from `paved.catalog.>`.
//!
//! A batch is applied as a fold: the rows the batch touches are loaded into
//! their domain states (one query per table), every event is folded in with
//! the domain's own `evolve`, and the touched rows are written back with one
//! bulk upsert per table. A few statements per batch instead of one per
//! event is what lets a rebuild run at tens of thousands of events a second.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use paved_domain::catalog::{
    Criticality, EntityEvent, Lifecycle, Link, Objective, RepositoryEvent, Service, ServiceSpec,
    ServiceType, Slo, System, Team, TeamProfile, entity_owner, relations, service_source,
};
use paved_domain::{Aggregate, AggregateKind, Event, Name};
use paved_eventlog::StoredCommit;
use paved_eventlog::readmodel::{AvailabilityDoc, LatencyDoc, LinkDoc, SloDoc};
use serde_json::Value;
use sqlx::{PgConnection, Row};

use crate::runtime::{Projection, ProjectionError};

#[derive(Clone, Copy, Debug, Default)]
pub struct CatalogProjection;

/// A read-model row: the aggregate's state plus bookkeeping.
struct Entry<T> {
    state: Option<T>,
    /// The row as loaded (`None`: not in the table yet), to write only what changed.
    before: Option<T>,
    created_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    last_sequence: i64,
}

impl<T> Entry<T> {
    fn new() -> Self {
        Self {
            state: None,
            before: None,
            created_at: None,
            updated_at: DateTime::<Utc>::MIN_UTC,
            last_sequence: 0,
        }
    }
}

/// What the catalog projection holds between two writes: every row it
/// touched since the last write, as the domain state it folded (teams,
/// systems, services), or as the last event that decides it (repository
/// claims, entities of other kinds). A live batch is a window of one batch;
/// a rebuild folds many batches into one (see [`Projection::Window`]), so it
/// writes each row once.
#[derive(Default)]
pub struct CatalogWindow {
    teams: HashMap<Name, Entry<Team>>,
    systems: HashMap<Name, Entry<System>>,
    services: HashMap<Name, Entry<Service>>,
    /// The last claim of each repository.
    claims: BTreeMap<String, (Name, DateTime<Utc>, i64)>,
    /// The last GitHub id of each repository, with its sequence.
    github_ids: BTreeMap<String, (i64, i64)>,
    entities: BTreeMap<String, EntityChange>,
}

/// An entity of another kind as the window leaves it.
struct EntityChange {
    /// Its last event (stored or removed).
    last: EntityEvent,
    at: DateTime<Utc>,
    sequence: i64,
    /// When it was first stored since it was last removed in this window
    /// (`None` before it is stored again; an existing row keeps its own).
    created_at: Option<DateTime<Utc>>,
    /// Removed in this window: the row goes before it is stored again.
    removed: bool,
}

fn bad_row(table: &str, e: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::BadRow(format!("{table}: {e}"))
}

fn parse_name(table: &str, s: &str) -> Result<Name, ProjectionError> {
    Name::parse(s).map_err(|e| bad_row(table, format!("{s:?}: {e}")))
}

fn parse_opt_name(table: &str, s: Option<String>) -> Result<Option<Name>, ProjectionError> {
    s.map(|s| parse_name(table, &s)).transpose()
}

impl Projection for CatalogProjection {
    const NAME: &'static str = paved_eventlog::readmodel::CATALOG;
    const CONTEXT: Option<&'static str> = Some("catalog");
    const TABLES: &'static [&'static str] = &[
        "catalog_teams",
        "catalog_systems",
        "catalog_services",
        "catalog_dependencies",
        "catalog_repositories",
        "catalog_entities",
        "catalog_entity_relations",
    ];

    type Window = CatalogWindow;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[StoredCommit],
    ) -> Result<(), ProjectionError> {
        let mut window = CatalogWindow::default();
        self.fold_into(conn, &mut window, batch).await?;
        self.write_window(conn, &mut window).await
    }

    async fn fold_into(
        &self,
        conn: &mut PgConnection,
        window: &mut CatalogWindow,
        batch: &[StoredCommit],
    ) -> Result<(), ProjectionError> {
        // The rows the window does not hold yet come from the tables.
        let mut ids: BTreeMap<AggregateKind, BTreeSet<String>> = BTreeMap::new();
        for c in batch {
            let id = &c.commit.aggregate_id;
            let held = match c.commit.kind {
                AggregateKind::Team => window.teams.contains_key(id),
                AggregateKind::System => window.systems.contains_key(id),
                AggregateKind::Service => window.services.contains_key(id),
                _ => true,
            };
            if !held {
                ids.entry(c.commit.kind).or_default().insert(id.to_string());
            }
        }
        let ids_of = |k| ids.get(&k).map(|s| s.iter().cloned().collect::<Vec<_>>());
        if let Some(names) = ids_of(AggregateKind::Team) {
            window.teams.extend(load_teams(conn, &names).await?);
        }
        if let Some(names) = ids_of(AggregateKind::System) {
            window.systems.extend(load_systems(conn, &names).await?);
        }
        if let Some(names) = ids_of(AggregateKind::Service) {
            window.services.extend(load_services(conn, &names).await?);
        }
        for stored in batch {
            let c = &stored.commit;
            let seq = stored.sequence as i64;
            match c.kind {
                AggregateKind::Team => fold(
                    window
                        .teams
                        .entry(c.aggregate_id.clone())
                        .or_insert_with(Entry::new),
                    stored,
                    seq,
                ),
                AggregateKind::System => fold(
                    window
                        .systems
                        .entry(c.aggregate_id.clone())
                        .or_insert_with(Entry::new),
                    stored,
                    seq,
                ),
                AggregateKind::Service => fold(
                    window
                        .services
                        .entry(c.aggregate_id.clone())
                        .or_insert_with(Entry::new),
                    stored,
                    seq,
                ),
                // Claims and entities: the events that decide their rows.
                _ => fold_last(window, stored),
            }
        }
        Ok(())
    }

    fn window_rows(w: &CatalogWindow) -> usize {
        w.teams.len()
            + w.systems.len()
            + w.services.len()
            + w.claims.len()
            + w.github_ids.len()
            + w.entities.len()
    }

    async fn write_window(
        &self,
        conn: &mut PgConnection,
        window: &mut CatalogWindow,
    ) -> Result<(), ProjectionError> {
        let w = std::mem::take(window);
        let teams: Vec<_> = w.teams.values().collect();
        for chunk in teams.chunks(WRITE_CHUNK) {
            write_teams(conn, chunk).await?;
        }
        let systems: Vec<_> = w.systems.values().collect();
        for chunk in systems.chunks(WRITE_CHUNK) {
            write_systems(conn, chunk).await?;
        }
        let services: Vec<_> = w.services.values().collect();
        for chunk in services.chunks(WRITE_CHUNK) {
            write_services(conn, chunk).await?;
        }
        write_claims(conn, &w.claims, &w.github_ids).await?;
        let entities: Vec<_> = w.entities.iter().collect();
        for chunk in entities.chunks(WRITE_CHUNK) {
            write_entities(conn, chunk).await?;
        }
        Ok(())
    }
}

/// Rows a statement writes at most (a rebuild's window holds up to
/// [`crate::runtime::REBUILD_WINDOW_ROWS`]).
const WRITE_CHUNK: usize = 5_000;

/// Folds a commit's repository claims and entity events into the window:
/// the last of each decides its row.
fn fold_last(window: &mut CatalogWindow, stored: &StoredCommit) {
    let seq = stored.sequence as i64;
    let at = stored.commit.occurred_at;
    for e in &stored.commit.events {
        match e {
            Event::Repository(RepositoryEvent::Claimed {
                identity,
                service,
                claimed_at,
                ..
            }) => {
                window
                    .claims
                    .insert(identity.clone(), (service.clone(), *claimed_at, seq));
            }
            Event::Repository(RepositoryEvent::GithubIdRecorded {
                identity,
                github_id,
            }) => {
                window
                    .github_ids
                    .insert(identity.clone(), (*github_id as i64, seq));
            }
            Event::Entity(e) => {
                let id = stored.commit.aggregate_id.to_string();
                let before = window.entities.get(&id);
                let (created_at, removed) = match e {
                    EntityEvent::Stored { .. } => (
                        before.and_then(|c| c.created_at).or(Some(at)),
                        before.is_some_and(|c| c.removed),
                    ),
                    EntityEvent::Removed { .. } => (None, true),
                };
                let change = EntityChange {
                    last: e.clone(),
                    at,
                    sequence: seq,
                    created_at,
                    removed,
                };
                window.entities.insert(id, change);
            }
            _ => {}
        }
    }
}

// ---- entities of other kinds ----

/// Entities of other kinds as the window leaves them, with the relations
/// their descriptors name. A removal in the window deletes the row first, so
/// one stored again is created anew when it was stored again; an existing
/// row keeps its `created_at`.
async fn write_entities(
    conn: &mut PgConnection,
    changes: &[(&String, &EntityChange)],
) -> Result<(), ProjectionError> {
    if changes.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = changes.iter().map(|(id, _)| id.as_str()).collect();
    // Stored again or removed: the old relations go, the new ones come.
    sqlx::query("DELETE FROM catalog_entity_relations WHERE source = ANY($1)")
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    let removed: Vec<&str> = changes
        .iter()
        .filter(|(_, c)| c.removed)
        .map(|(id, _)| id.as_str())
        .collect();
    if !removed.is_empty() {
        sqlx::query("DELETE FROM catalog_entities WHERE id = ANY($1)")
            .bind(&removed)
            .execute(&mut *conn)
            .await?;
    }
    let mut c = EntityColumns::default();
    for (id, change) in changes {
        let EntityEvent::Stored {
            entity_ref,
            document,
        } = &change.last
        else {
            continue;
        };
        c.id.push(id.to_string());
        c.ref_key.push(entity_ref.key());
        c.kind.push(entity_ref.kind.clone());
        c.namespace.push(entity_ref.namespace.clone());
        c.name.push(entity_ref.name.clone());
        c.owner
            .push(entity_owner(document, &entity_ref.namespace).map(|o| o.key()));
        c.document.push(document.clone());
        c.created_at.push(change.created_at.unwrap_or(change.at));
        c.at.push(change.at);
        c.seq.push(change.sequence);
        // Checked when stored: what is named here parsed then.
        let mut ignored = paved_domain::validate::Violations::new();
        for r in relations(document, &entity_ref.namespace, &mut ignored) {
            c.rel_source.push(id.to_string());
            c.rel_type.push(r.kind);
            c.rel_target.push(r.target.key());
        }
    }
    if c.id.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO catalog_entities (id, ref_key, kind, namespace, name, owner, document,
                created_at, updated_at, last_sequence)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::text[], $7::jsonb[], $8::timestamptz[], $9::timestamptz[],
                              $10::bigint[])
         ON CONFLICT (id) DO UPDATE SET
           kind = EXCLUDED.kind, namespace = EXCLUDED.namespace, name = EXCLUDED.name,
           owner = EXCLUDED.owner, document = EXCLUDED.document,
           updated_at = EXCLUDED.updated_at, last_sequence = EXCLUDED.last_sequence",
    )
    .bind(&c.id)
    .bind(&c.ref_key)
    .bind(&c.kind)
    .bind(&c.namespace)
    .bind(&c.name)
    .bind(&c.owner)
    .bind(&c.document)
    .bind(&c.created_at)
    .bind(&c.at)
    .bind(&c.seq)
    .execute(&mut *conn)
    .await?;
    if !c.rel_source.is_empty() {
        sqlx::query(
            "INSERT INTO catalog_entity_relations (source, type, target)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING",
        )
        .bind(&c.rel_source)
        .bind(&c.rel_type)
        .bind(&c.rel_target)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[derive(Default)]
struct EntityColumns {
    id: Vec<String>,
    ref_key: Vec<String>,
    kind: Vec<String>,
    namespace: Vec<String>,
    name: Vec<String>,
    owner: Vec<Option<String>>,
    document: Vec<Value>,
    created_at: Vec<DateTime<Utc>>,
    at: Vec<DateTime<Utc>>,
    seq: Vec<i64>,
    rel_source: Vec<String>,
    rel_type: Vec<&'static str>,
    rel_target: Vec<String>,
}

/// Folds one commit into a row with the domain's own `evolve`.
fn fold<A>(entry: &mut Entry<A>, stored: &StoredCommit, seq: i64)
where
    Option<A>: Aggregate,
{
    for event in &stored.commit.events {
        if let Some(e) = <Option<A> as Aggregate>::select(event) {
            entry.state.evolve(e);
        }
    }
    let at = stored.commit.occurred_at;
    entry.created_at.get_or_insert(at);
    entry.updated_at = at;
    entry.last_sequence = seq;
}

// ---- teams ----

async fn load_teams(
    conn: &mut PgConnection,
    names: &[String],
) -> Result<HashMap<Name, Entry<Team>>, ProjectionError> {
    const T: &str = "catalog_teams";
    let rows = sqlx::query(
        "SELECT name, display_name, email, chat_channel, parent, members, retired_reason,
                created_at, updated_at, last_sequence
           FROM catalog_teams WHERE name = ANY($1)",
    )
    .bind(names)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let name = parse_name(T, r.try_get("name")?)?;
        let members: Value = r.try_get("members")?;
        let members =
            serde_json::from_value::<BTreeSet<String>>(members).map_err(|e| bad_row(T, e))?;
        let team = Team {
            name: name.clone(),
            profile: TeamProfile {
                display_name: r.try_get("display_name")?,
                email: r.try_get("email")?,
                chat_channel: r.try_get("chat_channel")?,
            },
            parent: parse_opt_name(T, r.try_get("parent")?)?,
            members,
            retired: r.try_get("retired_reason")?,
        };
        out.insert(
            name,
            Entry {
                before: None,
                state: Some(team),
                created_at: Some(r.try_get("created_at")?),
                updated_at: r.try_get("updated_at")?,
                last_sequence: r.try_get("last_sequence")?,
            },
        );
    }
    Ok(out)
}

async fn write_teams(
    conn: &mut PgConnection,
    teams: &[&Entry<Team>],
) -> Result<(), ProjectionError> {
    let mut cols = TeamColumns::default();
    for e in teams {
        let (Some(t), Some(created_at)) = (&e.state, e.created_at) else {
            continue;
        };
        cols.name.push(t.name.to_string());
        cols.display_name.push(t.profile.display_name.clone());
        cols.email.push(t.profile.email.clone());
        cols.chat_channel.push(t.profile.chat_channel.clone());
        cols.parent.push(t.parent.as_ref().map(Name::to_string));
        cols.members.push(serde_json::json!(t.members));
        cols.retired.push(t.retired.clone());
        cols.created_at.push(created_at);
        cols.updated_at.push(e.updated_at);
        cols.last_sequence.push(e.last_sequence);
    }
    if cols.name.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO catalog_teams (name, display_name, email, chat_channel, parent, members,
                                    retired_reason, created_at, updated_at, last_sequence)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::jsonb[], $7::text[], $8::timestamptz[], $9::timestamptz[], $10::bigint[])
         ON CONFLICT (name) DO UPDATE SET
           display_name = EXCLUDED.display_name, email = EXCLUDED.email,
           chat_channel = EXCLUDED.chat_channel, parent = EXCLUDED.parent,
           members = EXCLUDED.members, retired_reason = EXCLUDED.retired_reason,
           updated_at = EXCLUDED.updated_at, last_sequence = EXCLUDED.last_sequence",
    )
    .bind(cols.name)
    .bind(cols.display_name)
    .bind(cols.email)
    .bind(cols.chat_channel)
    .bind(cols.parent)
    .bind(cols.members)
    .bind(cols.retired)
    .bind(cols.created_at)
    .bind(cols.updated_at)
    .bind(cols.last_sequence)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Default)]
struct TeamColumns {
    name: Vec<String>,
    display_name: Vec<String>,
    email: Vec<String>,
    chat_channel: Vec<String>,
    parent: Vec<Option<String>>,
    members: Vec<Value>,
    retired: Vec<Option<String>>,
    created_at: Vec<DateTime<Utc>>,
    updated_at: Vec<DateTime<Utc>>,
    last_sequence: Vec<i64>,
}

// ---- systems ----

async fn load_systems(
    conn: &mut PgConnection,
    names: &[String],
) -> Result<HashMap<Name, Entry<System>>, ProjectionError> {
    const T: &str = "catalog_systems";
    let rows = sqlx::query(
        "SELECT name, owner, display_name, description, retired_reason,
                created_at, updated_at, last_sequence
           FROM catalog_systems WHERE name = ANY($1)",
    )
    .bind(names)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let name = parse_name(T, r.try_get("name")?)?;
        let system = System {
            name: name.clone(),
            owner: parse_name(T, r.try_get("owner")?)?,
            display_name: r.try_get("display_name")?,
            description: r.try_get("description")?,
            retired: r.try_get("retired_reason")?,
        };
        out.insert(
            name,
            Entry {
                before: None,
                state: Some(system),
                created_at: Some(r.try_get("created_at")?),
                updated_at: r.try_get("updated_at")?,
                last_sequence: r.try_get("last_sequence")?,
            },
        );
    }
    Ok(out)
}

async fn write_systems(
    conn: &mut PgConnection,
    systems: &[&Entry<System>],
) -> Result<(), ProjectionError> {
    let (mut name, mut owner, mut display, mut desc, mut retired) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut created, mut updated, mut seq) = (vec![], vec![], vec![]);
    for e in systems {
        let (Some(s), Some(created_at)) = (&e.state, e.created_at) else {
            continue;
        };
        name.push(s.name.to_string());
        owner.push(s.owner.to_string());
        display.push(s.display_name.clone());
        desc.push(s.description.clone());
        retired.push(s.retired.clone());
        created.push(created_at);
        updated.push(e.updated_at);
        seq.push(e.last_sequence);
    }
    if name.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO catalog_systems (name, owner, display_name, description, retired_reason,
                                      created_at, updated_at, last_sequence)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::timestamptz[], $7::timestamptz[], $8::bigint[])
         ON CONFLICT (name) DO UPDATE SET
           owner = EXCLUDED.owner, display_name = EXCLUDED.display_name,
           description = EXCLUDED.description, retired_reason = EXCLUDED.retired_reason,
           updated_at = EXCLUDED.updated_at, last_sequence = EXCLUDED.last_sequence",
    )
    .bind(name)
    .bind(owner)
    .bind(display)
    .bind(desc)
    .bind(retired)
    .bind(created)
    .bind(updated)
    .bind(seq)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

// ---- services ----

async fn load_services(
    conn: &mut PgConnection,
    names: &[String],
) -> Result<HashMap<Name, Entry<Service>>, ProjectionError> {
    const T: &str = "catalog_services";
    let rows = sqlx::query(
        "SELECT name, owner, type, lifecycle, system, description, tier, repository_url,
                docs_url, tags, labels, annotations, links, slos, deprecation_reason,
                retired_reason, created_at, updated_at, last_sequence
           FROM catalog_services WHERE name = ANY($1)",
    )
    .bind(names)
    .fetch_all(&mut *conn)
    .await?;
    let deps = sqlx::query(
        "SELECT service, depends_on, criticality FROM catalog_dependencies WHERE service = ANY($1)",
    )
    .bind(names)
    .fetch_all(&mut *conn)
    .await?;
    let mut dependencies: HashMap<String, BTreeMap<Name, Option<Criticality>>> = HashMap::new();
    for d in deps {
        let service: String = d.try_get("service")?;
        let on = parse_name("catalog_dependencies", d.try_get("depends_on")?)?;
        let criticality: Option<String> = d.try_get("criticality")?;
        let criticality = criticality
            .map(|c| Criticality::parse(&c).ok_or_else(|| bad_row("catalog_dependencies", c)))
            .transpose()?;
        dependencies
            .entry(service)
            .or_default()
            .insert(on, criticality);
    }
    let json = |v: Value| -> Result<_, ProjectionError> { Ok(v) };
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let raw_name: String = r.try_get("name")?;
        let name = parse_name(T, &raw_name)?;
        let kind: String = r.try_get("type")?;
        let lifecycle: String = r.try_get("lifecycle")?;
        let tier: Option<i16> = r.try_get("tier")?;
        let links: Vec<LinkDoc> =
            serde_json::from_value(json(r.try_get("links")?)?).map_err(|e| bad_row(T, e))?;
        let slos: Vec<SloDoc> =
            serde_json::from_value(json(r.try_get("slos")?)?).map_err(|e| bad_row(T, e))?;
        let spec = ServiceSpec {
            kind: ServiceType::parse(&kind).ok_or_else(|| bad_row(T, &kind))?,
            lifecycle: Lifecycle::parse(&lifecycle).ok_or_else(|| bad_row(T, &lifecycle))?,
            system: parse_opt_name(T, r.try_get("system")?)?,
            description: r.try_get("description")?,
            tier: tier.map(|t| t as u8),
            repository_url: r.try_get("repository_url")?,
            docs_url: r.try_get("docs_url")?,
            tags: serde_json::from_value(r.try_get("tags")?).map_err(|e| bad_row(T, e))?,
            labels: serde_json::from_value(r.try_get("labels")?).map_err(|e| bad_row(T, e))?,
            annotations: serde_json::from_value(r.try_get("annotations")?)
                .map_err(|e| bad_row(T, e))?,
            links: links
                .into_iter()
                .map(|l| Link {
                    url: l.url,
                    title: l.title,
                })
                .collect(),
        };
        let slos = slos
            .into_iter()
            .map(|d| slo_from_doc(d).ok_or_else(|| bad_row(T, "malformed slo")))
            .map(|s| s.map(|s| (s.name.clone(), s)))
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        let service = Service {
            name: name.clone(),
            owner: parse_name(T, r.try_get("owner")?)?,
            spec,
            deprecation: r.try_get("deprecation_reason")?,
            retired: r.try_get("retired_reason")?,
            dependencies: dependencies.remove(&raw_name).unwrap_or_default(),
            slos,
        };
        out.insert(
            name,
            Entry {
                before: Some(service.clone()),
                state: Some(service),
                created_at: Some(r.try_get("created_at")?),
                updated_at: r.try_get("updated_at")?,
                last_sequence: r.try_get("last_sequence")?,
            },
        );
    }
    Ok(out)
}

pub fn slo_to_doc(s: &Slo) -> SloDoc {
    let (availability, latency) = match s.objective {
        Objective::Availability { target_percent } => {
            (Some(AvailabilityDoc { target_percent }), None)
        }
        Objective::Latency {
            percentile,
            threshold_ms,
        } => (
            None,
            Some(LatencyDoc {
                percentile,
                threshold_ms,
            }),
        ),
    };
    SloDoc {
        name: s.name.to_string(),
        window_days: s.window_days,
        availability,
        latency,
    }
}

fn slo_from_doc(d: SloDoc) -> Option<Slo> {
    let objective = match (d.availability, d.latency) {
        (Some(a), None) => Objective::Availability {
            target_percent: a.target_percent,
        },
        (None, Some(l)) => Objective::Latency {
            percentile: l.percentile,
            threshold_ms: l.threshold_ms,
        },
        _ => return None,
    };
    Some(Slo {
        name: Name::parse(&d.name).ok()?,
        objective,
        window_days: d.window_days,
    })
}

#[derive(Default)]
struct ServiceColumns {
    name: Vec<String>,
    owner: Vec<String>,
    kind: Vec<String>,
    lifecycle: Vec<String>,
    system: Vec<Option<String>>,
    description: Vec<String>,
    tier: Vec<Option<i16>>,
    repository_url: Vec<String>,
    repository: Vec<Option<String>>,
    source_path: Vec<String>,
    docs_url: Vec<String>,
    tags: Vec<Value>,
    labels: Vec<Value>,
    annotations: Vec<Value>,
    links: Vec<Value>,
    slos: Vec<Value>,
    deprecation: Vec<Option<String>>,
    retired: Vec<Option<String>>,
    created_at: Vec<DateTime<Utc>>,
    updated_at: Vec<DateTime<Utc>>,
    last_sequence: Vec<i64>,
}

async fn write_services(
    conn: &mut PgConnection,
    services: &[&Entry<Service>],
) -> Result<(), ProjectionError> {
    let mut c = ServiceColumns::default();
    let (mut dep_service, mut dep_on, mut dep_crit) = (vec![], vec![], vec![]);
    // Existing rows whose dependency set changed: their edges are rewritten.
    let mut dep_delete = Vec::new();
    for e in services {
        let (Some(s), Some(created_at)) = (&e.state, e.created_at) else {
            continue;
        };
        c.name.push(s.name.to_string());
        c.owner.push(s.owner.to_string());
        c.kind.push(s.spec.kind.as_str().to_owned());
        c.lifecycle.push(s.spec.lifecycle.as_str().to_owned());
        c.system.push(s.spec.system.as_ref().map(Name::to_string));
        c.description.push(s.spec.description.clone());
        c.tier.push(s.spec.tier.map(i16::from));
        c.repository_url.push(s.spec.repository_url.clone());
        let source = service_source(&s.spec);
        c.source_path
            .push(source.as_ref().map(|l| l.path.clone()).unwrap_or_default());
        c.repository.push(source.map(|l| l.identity));
        c.docs_url.push(s.spec.docs_url.clone());
        c.tags.push(serde_json::json!(s.spec.tags));
        c.labels.push(serde_json::json!(s.spec.labels));
        c.annotations.push(serde_json::json!(s.spec.annotations));
        let links: Vec<LinkDoc> = s
            .spec
            .links
            .iter()
            .map(|l| LinkDoc {
                url: l.url.clone(),
                title: l.title.clone(),
            })
            .collect();
        c.links.push(serde_json::json!(links));
        let slos: Vec<SloDoc> = s.slos.values().map(slo_to_doc).collect();
        c.slos.push(serde_json::json!(slos));
        c.deprecation.push(s.deprecation.clone());
        c.retired.push(s.retired.clone());
        c.created_at.push(created_at);
        c.updated_at.push(e.updated_at);
        c.last_sequence.push(e.last_sequence);
        let deps_changed = match &e.before {
            None => true,
            Some(b) => {
                let changed = b.dependencies != s.dependencies;
                if changed {
                    dep_delete.push(s.name.to_string());
                }
                changed
            }
        };
        if deps_changed {
            for (on, crit) in &s.dependencies {
                dep_service.push(s.name.to_string());
                dep_on.push(on.to_string());
                dep_crit.push(crit.map(|c| c.as_str().to_owned()));
            }
        }
    }
    if c.name.is_empty() {
        return Ok(());
    }
    if !dep_delete.is_empty() {
        sqlx::query("DELETE FROM catalog_dependencies WHERE service = ANY($1)")
            .bind(&dep_delete)
            .execute(&mut *conn)
            .await?;
    }
    if !dep_service.is_empty() {
        sqlx::query(
            "INSERT INTO catalog_dependencies (service, depends_on, criticality)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])",
        )
        .bind(dep_service)
        .bind(dep_on)
        .bind(dep_crit)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "INSERT INTO catalog_services (name, owner, type, lifecycle, system, description, tier,
                repository_url, docs_url, tags, labels, annotations, links, slos,
                deprecation_reason, retired_reason, created_at, updated_at, last_sequence,
                repository, source_path)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                $6::text[], $7::smallint[], $8::text[], $9::text[], $10::jsonb[], $11::jsonb[],
                $12::jsonb[], $13::jsonb[], $14::jsonb[], $15::text[], $16::text[],
                $17::timestamptz[], $18::timestamptz[], $19::bigint[], $20::text[], $21::text[])
         ON CONFLICT (name) DO UPDATE SET
           owner = EXCLUDED.owner, type = EXCLUDED.type, lifecycle = EXCLUDED.lifecycle,
           system = EXCLUDED.system, description = EXCLUDED.description, tier = EXCLUDED.tier,
           repository_url = EXCLUDED.repository_url, docs_url = EXCLUDED.docs_url,
           tags = EXCLUDED.tags, labels = EXCLUDED.labels, annotations = EXCLUDED.annotations,
           links = EXCLUDED.links, slos = EXCLUDED.slos,
           deprecation_reason = EXCLUDED.deprecation_reason,
           retired_reason = EXCLUDED.retired_reason,
           updated_at = EXCLUDED.updated_at, last_sequence = EXCLUDED.last_sequence,
           repository = EXCLUDED.repository, source_path = EXCLUDED.source_path",
    )
    .bind(c.name)
    .bind(c.owner)
    .bind(c.kind)
    .bind(c.lifecycle)
    .bind(c.system)
    .bind(c.description)
    .bind(c.tier)
    .bind(c.repository_url)
    .bind(c.docs_url)
    .bind(c.tags)
    .bind(c.labels)
    .bind(c.annotations)
    .bind(c.links)
    .bind(c.slos)
    .bind(c.deprecation)
    .bind(c.retired)
    .bind(c.created_at)
    .bind(c.updated_at)
    .bind(c.last_sequence)
    .bind(c.repository)
    .bind(c.source_path)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The window's repository claims (the last per repository) in one
/// upsert, then the GitHub ids recorded for them.
async fn write_claims(
    conn: &mut PgConnection,
    claims: &BTreeMap<String, (Name, DateTime<Utc>, i64)>,
    github_ids: &BTreeMap<String, (i64, i64)>,
) -> Result<(), ProjectionError> {
    if !claims.is_empty() {
        upsert_claims(conn, claims).await?;
    }
    if !github_ids.is_empty() {
        let identity: Vec<&str> = github_ids.keys().map(String::as_str).collect();
        let github_id: Vec<i64> = github_ids.values().map(|g| g.0).collect();
        let last_sequence: Vec<i64> = github_ids.values().map(|g| g.1).collect();
        sqlx::query(
            "UPDATE catalog_repositories r SET github_id = n.github_id,
                    last_sequence = greatest(r.last_sequence, n.seq)
               FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) AS n(identity, github_id, seq)
              WHERE r.identity = n.identity",
        )
        .bind(identity)
        .bind(github_id)
        .bind(last_sequence)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn upsert_claims(
    conn: &mut PgConnection,
    claims: &BTreeMap<String, (Name, DateTime<Utc>, i64)>,
) -> Result<(), ProjectionError> {
    let identity: Vec<&str> = claims.keys().map(String::as_str).collect();
    let service: Vec<String> = claims.values().map(|c| c.0.to_string()).collect();
    let claimed_at: Vec<DateTime<Utc>> = claims.values().map(|c| c.1).collect();
    let last_sequence: Vec<i64> = claims.values().map(|c| c.2).collect();
    sqlx::query(
        "INSERT INTO catalog_repositories (identity, service, claimed_at, last_sequence)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::bigint[])
         ON CONFLICT (identity) DO UPDATE SET service = EXCLUDED.service,
           claimed_at = EXCLUDED.claimed_at, last_sequence = EXCLUDED.last_sequence",
    )
    .bind(identity)
    .bind(service)
    .bind(claimed_at)
    .bind(last_sequence)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
