//! Reads of the catalog projection's tables, answered as `paved.v1` messages.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use paved_domain::Name;
use paved_domain::catalog::{Criticality, Lifecycle, ServiceType};
use paved_domain::validate::Violations;
use paved_eventlog::codec::{
    criticality_to_proto, lifecycle_from_proto, lifecycle_to_proto, service_type_from_proto,
    service_type_to_proto,
};
use paved_eventlog::readmodel::{LinkDoc, SloDoc};
use paved_proto::v1 as pb;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgPool, Postgres, QueryBuilder, Row};
use tonic::Status;

use crate::error;

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;
pub const DEFAULT_GRAPH_DEPTH: u32 = 3;
pub const MAX_GRAPH_DEPTH: u32 = 20;

fn ts(t: DateTime<Utc>) -> Option<paved_proto::wkt::Timestamp> {
    Some(paved_proto::wkt::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    })
}

fn name_arg(field: &str, value: &str) -> Result<Name, Status> {
    Name::parse(value).map_err(|e| error::invalid_field(field, e.to_string()))
}

fn optional_name_arg(field: &str, value: &str) -> Result<Option<Name>, Status> {
    if value.is_empty() {
        Ok(None)
    } else {
        name_arg(field, value).map(Some)
    }
}

fn page_size(size: u32) -> Result<i64, Status> {
    match size {
        0 => Ok(DEFAULT_PAGE_SIZE as i64),
        1..=MAX_PAGE_SIZE => Ok(size as i64),
        _ => Err(error::invalid_field(
            "page_size",
            format!("must be at most {MAX_PAGE_SIZE}"),
        )),
    }
}

/// Page tokens are the last name of the previous page.
fn page_token(token: &str) -> Result<Option<Name>, Status> {
    optional_name_arg("page_token", token)
}

fn db(e: sqlx::Error) -> Status {
    error::database(e)
}

fn json<T: serde::de::DeserializeOwned + Default>(row: &PgRow, column: &str) -> Result<T, Status> {
    let v: Value = row.try_get(column).map_err(db)?;
    serde_json::from_value(v).map_err(|e| error::internal(&e))
}

// ---- teams ----

fn team_from_row(r: &PgRow) -> Result<pb::Team, Status> {
    Ok(pb::Team {
        name: r.try_get("name").map_err(db)?,
        profile: Some(pb::TeamProfile {
            display_name: r.try_get("display_name").map_err(db)?,
            email: r.try_get("email").map_err(db)?,
            chat_channel: r.try_get("chat_channel").map_err(db)?,
        }),
        parent: r
            .try_get::<Option<String>, _>("parent")
            .map_err(db)?
            .unwrap_or_default(),
        children: Vec::new(),
        members: json::<Vec<String>>(r, "members")?,
        retired: r
            .try_get::<Option<String>, _>("retired_reason")
            .map_err(db)?
            .is_some(),
        retired_reason: r
            .try_get::<Option<String>, _>("retired_reason")
            .map_err(db)?
            .unwrap_or_default(),
        services: r.try_get::<i64, _>("services").map_err(db)? as u32,
        created_at: ts(r.try_get("created_at").map_err(db)?),
        updated_at: ts(r.try_get("updated_at").map_err(db)?),
        sequence: r.try_get::<i64, _>("last_sequence").map_err(db)? as u64,
    })
}

const TEAM_COLUMNS: &str = "t.name, t.display_name, t.email, t.chat_channel, t.parent, t.members,
    t.retired_reason, t.created_at, t.updated_at, t.last_sequence,
    (SELECT count(*) FROM catalog_services s WHERE s.owner = t.name AND s.retired_reason IS NULL) AS services";

pub async fn get_team(pool: &PgPool, name: &str) -> Result<pb::Team, Status> {
    let name = name_arg("name", name)?;
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {TEAM_COLUMNS} FROM catalog_teams t WHERE t.name = $1"
    )))
    .bind(name.as_str())
    .fetch_optional(pool)
    .await
    .map_err(db)?
    .ok_or_else(|| error::not_found("team", name.as_str()))?;
    let mut team = team_from_row(&row)?;
    team.children =
        sqlx::query_scalar("SELECT name FROM catalog_teams WHERE parent = $1 ORDER BY name")
            .bind(name.as_str())
            .fetch_all(pool)
            .await
            .map_err(db)?;
    Ok(team)
}

pub async fn list_teams(
    pool: &PgPool,
    r: &pb::ListTeamsRequest,
) -> Result<pb::ListTeamsResponse, Status> {
    let limit = page_size(r.page_size)?;
    let after = page_token(&r.page_token)?;
    let parent = optional_name_arg("parent", &r.parent)?;
    let mut q = QueryBuilder::<Postgres>::new(format!(
        "SELECT {TEAM_COLUMNS} FROM catalog_teams t WHERE true"
    ));
    if !r.include_retired {
        q.push(" AND t.retired_reason IS NULL");
    }
    if let Some(p) = &parent {
        q.push(" AND t.parent = ").push_bind(p.to_string());
    }
    if let Some(a) = &after {
        q.push(" AND t.name > ").push_bind(a.to_string());
    }
    q.push(" ORDER BY t.name LIMIT ").push_bind(limit + 1);
    let rows = q.build().fetch_all(pool).await.map_err(db)?;
    let mut teams = rows
        .iter()
        .map(team_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next = next_page(&mut teams, limit, |t| t.name.clone());
    let names: Vec<String> = teams.iter().map(|t| t.name.clone()).collect();
    let children: Vec<(String, String)> = sqlx::query_as(
        "SELECT parent, name FROM catalog_teams WHERE parent = ANY($1) ORDER BY name",
    )
    .bind(&names)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    let mut by_parent: HashMap<String, Vec<String>> = HashMap::new();
    for (parent, child) in children {
        by_parent.entry(parent).or_default().push(child);
    }
    for t in &mut teams {
        t.children = by_parent.remove(&t.name).unwrap_or_default();
    }
    Ok(pb::ListTeamsResponse {
        teams,
        next_page_token: next,
    })
}

/// Trims the look-ahead row and returns the next page token.
fn next_page<T>(items: &mut Vec<T>, limit: i64, name: impl Fn(&T) -> String) -> String {
    if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(name).unwrap_or_default()
    } else {
        String::new()
    }
}

// ---- systems ----

const SYSTEM_COLUMNS: &str = "y.name, y.owner, y.display_name, y.description, y.retired_reason,
    y.created_at, y.updated_at, y.last_sequence,
    COALESCE((SELECT jsonb_agg(s.name ORDER BY s.name) FROM catalog_services s
               WHERE s.system = y.name AND s.retired_reason IS NULL), '[]'::jsonb) AS services";

fn system_from_row(r: &PgRow) -> Result<pb::System, Status> {
    let retired: Option<String> = r.try_get("retired_reason").map_err(db)?;
    Ok(pb::System {
        name: r.try_get("name").map_err(db)?,
        owner: r.try_get("owner").map_err(db)?,
        display_name: r.try_get("display_name").map_err(db)?,
        description: r.try_get("description").map_err(db)?,
        services: json(r, "services")?,
        retired: retired.is_some(),
        retired_reason: retired.unwrap_or_default(),
        created_at: ts(r.try_get("created_at").map_err(db)?),
        updated_at: ts(r.try_get("updated_at").map_err(db)?),
        sequence: r.try_get::<i64, _>("last_sequence").map_err(db)? as u64,
    })
}

pub async fn get_system(pool: &PgPool, name: &str) -> Result<pb::System, Status> {
    let name = name_arg("name", name)?;
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {SYSTEM_COLUMNS} FROM catalog_systems y WHERE y.name = $1"
    )))
    .bind(name.as_str())
    .fetch_optional(pool)
    .await
    .map_err(db)?
    .ok_or_else(|| error::not_found("system", name.as_str()))?;
    system_from_row(&row)
}

pub async fn list_systems(
    pool: &PgPool,
    r: &pb::ListSystemsRequest,
) -> Result<pb::ListSystemsResponse, Status> {
    let limit = page_size(r.page_size)?;
    let after = page_token(&r.page_token)?;
    let owner = optional_name_arg("owner", &r.owner)?;
    let mut q = QueryBuilder::<Postgres>::new(format!(
        "SELECT {SYSTEM_COLUMNS} FROM catalog_systems y WHERE true"
    ));
    if !r.include_retired {
        q.push(" AND y.retired_reason IS NULL");
    }
    if let Some(o) = &owner {
        q.push(" AND y.owner = ").push_bind(o.to_string());
    }
    if let Some(a) = &after {
        q.push(" AND y.name > ").push_bind(a.to_string());
    }
    q.push(" ORDER BY y.name LIMIT ").push_bind(limit + 1);
    let rows = q.build().fetch_all(pool).await.map_err(db)?;
    let mut systems = rows
        .iter()
        .map(system_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next = next_page(&mut systems, limit, |s| s.name.clone());
    Ok(pb::ListSystemsResponse {
        systems,
        next_page_token: next,
    })
}

// ---- services ----

/// The refs service `s` names that are not in the catalog (yet), a row
/// `m` each: its owner team, its system, the services it depends on. What
/// `Service.missing` shows and catalog health counts.
macro_rules! service_missing_refs {
    () => {
        "SELECT 'group:default/' || s.owner AS m
          WHERE NOT EXISTS (SELECT 1 FROM catalog_teams t WHERE t.name = s.owner)
         UNION ALL
         SELECT 'system:default/' || s.system
          WHERE s.system IS NOT NULL AND s.system <> ''
            AND NOT EXISTS (SELECT 1 FROM catalog_systems y WHERE y.name = s.system)
         UNION ALL
         SELECT 'component:default/' || d.depends_on FROM catalog_dependencies d
          WHERE d.service = s.name
            AND NOT EXISTS (SELECT 1 FROM catalog_services x WHERE x.name = d.depends_on)"
    };
}

/// A service row with its edges both ways, in one round trip.
const SERVICE_COLUMNS: &str = concat!(
    "s.name, s.owner, s.type, s.lifecycle, s.system, s.description, s.tier,
    s.repository_url, s.docs_url, s.tags, s.labels, s.annotations, s.links, s.slos,
    s.deprecation_reason, s.retired_reason, s.created_at, s.updated_at, s.last_sequence,
    COALESCE((SELECT jsonb_agg(jsonb_build_array(d.depends_on, d.criticality) ORDER BY d.depends_on)
                FROM catalog_dependencies d WHERE d.service = s.name), '[]'::jsonb) AS upstream,
    COALESCE((SELECT jsonb_agg(jsonb_build_array(d.service, d.criticality) ORDER BY d.service)
                FROM catalog_dependencies d WHERE d.depends_on = s.name), '[]'::jsonb) AS downstream,
    ARRAY(SELECT m FROM (",
    service_missing_refs!(),
    ") missing ORDER BY m) AS missing"
);

fn edges(r: &PgRow, column: &str) -> Result<Vec<pb::Dependency>, Status> {
    let pairs: Vec<(String, Option<String>)> = json(r, column)?;
    Ok(pairs
        .into_iter()
        .map(|(service, c)| pb::Dependency {
            service,
            criticality: criticality(c),
        })
        .collect())
}

fn service_from_row(r: &PgRow) -> Result<pb::Service, Status> {
    let kind: String = r.try_get("type").map_err(db)?;
    let lifecycle: String = r.try_get("lifecycle").map_err(db)?;
    let tier: Option<i16> = r.try_get("tier").map_err(db)?;
    let links: Vec<LinkDoc> = json(r, "links")?;
    let slos: Vec<SloDoc> = json(r, "slos")?;
    let retired: Option<String> = r.try_get("retired_reason").map_err(db)?;
    let (kind, type_name) = ServiceType::parse(&kind)
        .map(|t| service_type_to_proto(&t))
        .unwrap_or_default();
    let (lifecycle, lifecycle_name) = Lifecycle::parse(&lifecycle)
        .map(|l| lifecycle_to_proto(&l))
        .unwrap_or_default();
    let spec = pb::ServiceSpec {
        r#type: kind.into(),
        type_name,
        lifecycle: lifecycle.into(),
        lifecycle_name,
        system: r
            .try_get::<Option<String>, _>("system")
            .map_err(db)?
            .unwrap_or_default(),
        description: r.try_get("description").map_err(db)?,
        tier: tier.map(|t| t as u32).unwrap_or(0),
        repository_url: r.try_get("repository_url").map_err(db)?,
        docs_url: r.try_get("docs_url").map_err(db)?,
        tags: json(r, "tags")?,
        labels: json(r, "labels")?,
        annotations: json(r, "annotations")?,
        links: links
            .into_iter()
            .map(|l| pb::Link {
                url: l.url,
                title: l.title,
            })
            .collect(),
    };
    Ok(pb::Service {
        name: r.try_get("name").map_err(db)?,
        owner: r.try_get("owner").map_err(db)?,
        spec: Some(spec),
        deprecation_reason: r
            .try_get::<Option<String>, _>("deprecation_reason")
            .map_err(db)?
            .unwrap_or_default(),
        retired: retired.is_some(),
        retired_reason: retired.unwrap_or_default(),
        dependencies: edges(r, "upstream")?,
        missing: r.try_get("missing").map_err(db)?,
        dependents: edges(r, "downstream")?,
        slos: slos.into_iter().map(slo_to_proto).collect(),
        created_at: ts(r.try_get("created_at").map_err(db)?),
        updated_at: ts(r.try_get("updated_at").map_err(db)?),
        sequence: r.try_get::<i64, _>("last_sequence").map_err(db)? as u64,
    })
}

fn slo_to_proto(d: SloDoc) -> pb::Slo {
    let objective = match (d.availability, d.latency) {
        (Some(a), _) => Some(pb::slo::Objective::Availability(
            pb::AvailabilityObjective {
                target_percent: a.target_percent,
            },
        )),
        (None, Some(l)) => Some(pb::slo::Objective::Latency(pb::LatencyObjective {
            percentile: l.percentile,
            threshold_ms: l.threshold_ms,
        })),
        (None, None) => None,
    };
    pb::Slo {
        name: d.name,
        objective,
        window_days: d.window_days,
    }
}

fn criticality(c: Option<String>) -> i32 {
    criticality_to_proto(c.as_deref().and_then(Criticality::parse)) as i32
}

pub async fn get_service(pool: &PgPool, name: &str) -> Result<pb::Service, Status> {
    let name = name_arg("name", name)?;
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {SERVICE_COLUMNS} FROM catalog_services s WHERE s.name = $1"
    )))
    .bind(name.as_str())
    .fetch_optional(pool)
    .await
    .map_err(db)?
    .ok_or_else(|| error::not_found("service", name.as_str()))?;
    service_from_row(&row)
}

pub async fn list_services(
    pool: &PgPool,
    r: &pb::ListServicesRequest,
) -> Result<pb::ListServicesResponse, Status> {
    let limit = page_size(r.page_size)?;
    let after = page_token(&r.page_token)?;
    let owner = optional_name_arg("owner", &r.owner)?;
    let system = optional_name_arg("system", &r.system)?;
    let mut v = Violations::new();
    let lifecycle = match (r.lifecycle, r.lifecycle_name.as_str()) {
        (0, "") => None,
        (raw, name) => {
            lifecycle_from_proto(&mut v, "lifecycle", raw, name).map(|l| l.as_str().to_owned())
        }
    };
    let kind = match (r.r#type, r.type_name.as_str()) {
        (0, "") => None,
        (raw, name) => {
            service_type_from_proto(&mut v, "type", raw, name).map(|t| t.as_str().to_owned())
        }
    };
    if !v.is_empty() {
        return Err(error::invalid(v.into_vec()));
    }
    let mut q = QueryBuilder::<Postgres>::new(format!(
        "SELECT {SERVICE_COLUMNS} FROM catalog_services s WHERE true"
    ));
    if !r.include_retired {
        q.push(" AND s.retired_reason IS NULL");
    }
    if let Some(o) = &owner {
        q.push(" AND s.owner = ").push_bind(o.to_string());
    }
    if let Some(s) = &system {
        q.push(" AND s.system = ").push_bind(s.to_string());
    }
    if let Some(l) = lifecycle {
        q.push(" AND s.lifecycle = ").push_bind(l);
    }
    if let Some(k) = kind {
        q.push(" AND s.type = ").push_bind(k);
    }
    if !r.tag.is_empty() {
        q.push(" AND s.tags ? ").push_bind(r.tag.clone());
    }
    if let Some(a) = &after {
        q.push(" AND s.name > ").push_bind(a.to_string());
    }
    q.push(" ORDER BY s.name LIMIT ").push_bind(limit + 1);
    let rows = q.build().fetch_all(pool).await.map_err(db)?;
    let mut services = rows
        .iter()
        .map(service_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next = next_page(&mut services, limit, |s| s.name.clone());
    Ok(pb::ListServicesResponse {
        services,
        next_page_token: next,
    })
}

// ---- dependency graph ----

pub async fn dependency_graph(
    pool: &PgPool,
    r: &pb::GetDependencyGraphRequest,
) -> Result<pb::DependencyGraph, Status> {
    let root = name_arg("service", &r.service)?;
    let depth = match r.depth {
        0 => DEFAULT_GRAPH_DEPTH,
        1..=MAX_GRAPH_DEPTH => r.depth,
        _ => {
            return Err(error::invalid_field(
                "depth",
                format!("must be 1..={MAX_GRAPH_DEPTH}"),
            ));
        }
    };
    let (up, down) = match pb::GraphDirection::try_from(r.direction) {
        Ok(pb::GraphDirection::Upstream) => (true, false),
        Ok(pb::GraphDirection::Downstream) => (false, true),
        Ok(pb::GraphDirection::Both | pb::GraphDirection::Unspecified) => (true, true),
        Err(_) => {
            return Err(error::invalid_field(
                "direction",
                format!("unknown enum value {}", r.direction),
            ));
        }
    };
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM catalog_services WHERE name = $1)")
            .bind(root.as_str())
            .fetch_one(pool)
            .await
            .map_err(db)?;
    if !exists {
        return Err(error::not_found("service", root.as_str()));
    }
    let mut distance: BTreeMap<String, i32> = BTreeMap::from([(root.to_string(), 0)]);
    let mut edges: BTreeSet<(String, String, Option<String>)> = BTreeSet::new();
    for (enabled, sign, from_col, to_col) in [
        (up, -1, "service", "depends_on"),
        (down, 1, "depends_on", "service"),
    ] {
        if !enabled {
            continue;
        }
        let mut frontier = vec![root.to_string()];
        for hop in 1..=depth as i32 {
            if frontier.is_empty() {
                break;
            }
            let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {from_col}, {to_col}, criticality FROM catalog_dependencies WHERE {from_col} = ANY($1)"
            )))
            .bind(&frontier)
            .fetch_all(pool)
            .await
            .map_err(db)?;
            let mut next = Vec::new();
            for (from, to, crit) in rows {
                // Edges are stored as (service, depends_on).
                let edge = if sign < 0 {
                    (from.clone(), to.clone(), crit)
                } else {
                    (to.clone(), from.clone(), crit)
                };
                edges.insert(edge);
                if !distance.contains_key(&to) {
                    distance.insert(to.clone(), sign * hop);
                    next.push(to);
                }
            }
            frontier = next;
        }
    }
    let names: Vec<String> = distance.keys().cloned().collect();
    let info: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT name, owner, lifecycle, retired_reason FROM catalog_services WHERE name = ANY($1)",
    )
    .bind(&names)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    let mut nodes: Vec<pb::GraphNode> = info
        .into_iter()
        .map(|(name, owner, lifecycle, retired)| {
            let (lifecycle, lifecycle_name) = Lifecycle::parse(&lifecycle)
                .map(|l| lifecycle_to_proto(&l))
                .unwrap_or_default();
            pb::GraphNode {
                distance: distance.get(&name).copied().unwrap_or(0),
                name,
                owner,
                lifecycle: lifecycle.into(),
                lifecycle_name,
                retired: retired.is_some(),
                missing: false,
            }
        })
        .collect();
    // Dependencies on services not in the catalog (yet): nodes marked missing.
    for name in names {
        if !nodes.iter().any(|n| n.name == name) {
            nodes.push(pb::GraphNode {
                distance: distance.get(&name).copied().unwrap_or(0),
                name,
                missing: true,
                ..Default::default()
            });
        }
    }
    nodes.sort_by(|a, b| {
        a.distance
            .cmp(&b.distance)
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(pb::DependencyGraph {
        root: root.to_string(),
        nodes,
        edges: edges
            .into_iter()
            .map(|(from, to, crit)| pb::GraphEdge {
                from,
                to,
                criticality: criticality(crit),
            })
            .collect(),
    })
}

// ---- catalog health ----

pub async fn catalog_health(pool: &PgPool, team: &str) -> Result<pb::CatalogHealth, Status> {
    let team = optional_name_arg("team", team)?;
    let rows: Vec<(String, i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "WITH live AS (
            SELECT s.name, s.owner, s.docs_url, s.slos, s.lifecycle,
                   (t.name IS NULL OR t.retired_reason IS NOT NULL) AS orphaned
              FROM catalog_services s LEFT JOIN catalog_teams t ON t.name = s.owner
             WHERE s.retired_reason IS NULL)
         SELECT owners.team,
                count(l.name),
                count(l.name) FILTER (WHERE l.docs_url = ''),
                count(l.name) FILTER (WHERE l.slos = '[]'::jsonb),
                count(l.name) FILTER (WHERE l.orphaned),
                count(l.name) FILTER (WHERE l.lifecycle = 'deprecated'),
                count(l.name) FILTER (WHERE l.lifecycle = 'deprecated' AND EXISTS (
                    SELECT 1 FROM catalog_dependencies d JOIN live c ON c.name = d.service
                     WHERE d.depends_on = l.name))
           FROM (SELECT name AS team FROM catalog_teams WHERE retired_reason IS NULL
                 UNION SELECT owner FROM live) owners
           LEFT JOIN live l ON l.owner = owners.team
          GROUP BY owners.team
          ORDER BY owners.team",
    )
    .fetch_all(pool)
    .await
    .map_err(db)?;
    let figures = |team: String, n: [i64; 6]| {
        let pct = |x: i64| {
            if n[0] == 0 {
                0.0
            } else {
                (x as f64) * 100.0 / (n[0] as f64)
            }
        };
        pb::HealthFigures {
            team,
            services: n[0] as u32,
            without_docs: n[1] as u32,
            without_slo: n[2] as u32,
            orphaned: n[3] as u32,
            deprecated: n[4] as u32,
            deprecated_depended_upon: n[5] as u32,
            without_docs_percent: pct(n[1]),
            without_slo_percent: pct(n[2]),
            orphaned_percent: pct(n[3]),
            ..Default::default()
        }
    };
    let mut total = [0i64; 6];
    let mut teams = Vec::new();
    for (name, a, b, c, d, e, f) in rows {
        let n = [a, b, c, d, e, f];
        for (t, x) in total.iter_mut().zip(n) {
            *t += x;
        }
        if team.as_ref().is_none_or(|t| t.as_str() == name) {
            teams.push(figures(name, n));
        }
    }
    if let Some(t) = &team
        && teams.is_empty()
    {
        return Err(error::not_found("team", t.as_str()));
    }
    let mut overall = figures(String::new(), total);
    // References of teams, systems and services to what is not in the
    // catalog (yet), by the team they belong to: the same references
    // `Service.missing` and a graph's missing nodes show.
    let typed: Vec<(String, i64)> = sqlx::query_as(concat!(
        "SELECT team, count(*) FROM (
            SELECT s.owner AS team FROM catalog_services s, LATERAL (",
        service_missing_refs!(),
        ") missing WHERE s.retired_reason IS NULL
            UNION ALL
            SELECT y.owner FROM catalog_systems y
             WHERE y.retired_reason IS NULL
               AND NOT EXISTS (SELECT 1 FROM catalog_teams t WHERE t.name = y.owner)
            UNION ALL
            SELECT t.name FROM catalog_teams t
             WHERE t.retired_reason IS NULL AND t.parent IS NOT NULL AND t.parent <> ''
               AND NOT EXISTS (SELECT 1 FROM catalog_teams p WHERE p.name = t.parent)
         ) refs GROUP BY team"
    ))
    .fetch_all(pool)
    .await
    .map_err(db)?;
    for (name, n) in typed {
        overall.dangling_references += n as u32;
        if let Some(t) = teams.iter_mut().find(|f| f.team == name) {
            t.dangling_references += n as u32;
        }
    }
    // Stored entities, by namespace and owner.
    let rows: Vec<(String, Option<String>, i64, i64, i64)> =
        sqlx::query_as(AssertSqlSafe(format!(
            "WITH dangling AS (
            SELECT r.source, count(*) AS n FROM catalog_entity_relations r
             WHERE NOT {}
             GROUP BY r.source)
         SELECT e.namespace, e.owner,
                count(*) FILTER (WHERE lower(e.kind) NOT IN ('group', 'system', 'component')),
                count(*) FILTER (WHERE lower(e.kind) NOT IN ('group', 'system', 'component')
                    AND (e.owner IS NULL OR (
                        NOT EXISTS (SELECT 1 FROM catalog_entities k WHERE k.ref_key = e.owner)
                        AND NOT EXISTS (SELECT 1 FROM catalog_teams k
                                         WHERE 'group:default/' || k.name = e.owner)))),
                coalesce(sum(d.n), 0)::bigint
           FROM catalog_entities e LEFT JOIN dangling d ON d.source = e.id
          GROUP BY e.namespace, e.owner
          ORDER BY e.namespace",
            in_catalog("r.target")
        )))
        .fetch_all(pool)
        .await
        .map_err(db)?;
    let mut namespaces: Vec<pb::NamespaceHealth> = Vec::new();
    for (namespace, owner, entities, unowned, dangling) in rows {
        let (entities, unowned, dangling) = (entities as u32, unowned as u32, dangling as u32);
        overall.entities += entities;
        overall.entities_without_owner += unowned;
        overall.dangling_references += dangling;
        if let Some(t) = owner
            .as_deref()
            .and_then(|o| o.strip_prefix("group:default/"))
            .and_then(|name| teams.iter_mut().find(|f| f.team == name))
        {
            t.entities += entities;
            t.dangling_references += dangling;
        }
        match namespaces.last_mut() {
            Some(n) if n.namespace == namespace => {
                n.entities += entities;
                n.entities_without_owner += unowned;
                n.dangling_references += dangling;
            }
            _ => namespaces.push(pb::NamespaceHealth {
                namespace,
                entities,
                entities_without_owner: unowned,
                dangling_references: dangling,
            }),
        }
    }
    Ok(pb::CatalogHealth {
        overall: Some(overall),
        teams,
        namespaces,
    })
}

/// Every service (with its edges), for exports.
pub async fn list_all_services(
    pool: &PgPool,
    include_retired: bool,
) -> Result<Vec<pb::Service>, Status> {
    let filter = if include_retired {
        ""
    } else {
        " WHERE s.retired_reason IS NULL"
    };
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {SERVICE_COLUMNS} FROM catalog_services s{filter} ORDER BY s.name"
    )))
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter().map(service_from_row).collect()
}

/// Every team, for exports.
pub async fn list_all_teams(pool: &PgPool, include_retired: bool) -> Result<Vec<pb::Team>, Status> {
    let mut out = Vec::new();
    let mut page = pb::ListTeamsRequest {
        include_retired,
        page_size: MAX_PAGE_SIZE,
        ..Default::default()
    };
    loop {
        let r = list_teams(pool, &page).await?;
        out.extend(r.teams);
        if r.next_page_token.is_empty() {
            return Ok(out);
        }
        page.page_token = r.next_page_token;
    }
}

/// Every system, for exports.
pub async fn list_all_systems(
    pool: &PgPool,
    include_retired: bool,
) -> Result<Vec<pb::System>, Status> {
    let mut out = Vec::new();
    let mut page = pb::ListSystemsRequest {
        include_retired,
        page_size: MAX_PAGE_SIZE,
        ..Default::default()
    };
    loop {
        let r = list_systems(pool, &page).await?;
        out.extend(r.systems);
        if r.next_page_token.is_empty() {
            return Ok(out);
        }
        page.page_token = r.next_page_token;
    }
}

/// The stored descriptors of teams, systems and services (Group, System and
/// Component documents as last imported), by lowercase ref.
pub async fn typed_descriptors(pool: &PgPool) -> Result<HashMap<String, Value>, Status> {
    let rows: Vec<(String, Value)> = sqlx::query_as(
        "SELECT ref_key, document FROM catalog_entities
          WHERE lower(kind) IN ('group', 'system', 'component')",
    )
    .fetch_all(pool)
    .await
    .map_err(db)?;
    Ok(rows.into_iter().collect())
}

/// Every stored entity that is not the descriptor of a team, system or
/// service (those are exported with them): the kinds without an aggregate
/// of their own, and groups, systems and components Paved's typed model
/// does not hold; as the descriptor each came as, by kind, namespace and name.
pub async fn list_all_entities(pool: &PgPool) -> Result<Vec<serde_json::Value>, Status> {
    sqlx::query_scalar(
        "SELECT document FROM catalog_entities e
          WHERE NOT (
                (lower(e.kind) = 'group'
                 AND EXISTS (SELECT 1 FROM catalog_teams t WHERE 'group:default/' || t.name = e.ref_key))
             OR (lower(e.kind) = 'system'
                 AND EXISTS (SELECT 1 FROM catalog_systems t WHERE 'system:default/' || t.name = e.ref_key))
             OR (lower(e.kind) = 'component'
                 AND EXISTS (SELECT 1 FROM catalog_services t WHERE 'component:default/' || t.name = e.ref_key)))
          ORDER BY lower(kind), namespace, lower(name), name",
    )
    .fetch_all(pool)
    .await
    .map_err(error::database)
}

// ---- entities of other kinds ----

/// SQL: is the lowercase ref `target` (a column) in the catalog, as a
/// stored entity, team, system or service? Else a relation to it dangles.
fn in_catalog(target: &str) -> String {
    format!(
        "(EXISTS (SELECT 1 FROM catalog_entities k WHERE k.ref_key = {target})
          OR EXISTS (SELECT 1 FROM catalog_teams k WHERE 'group:default/' || k.name = {target})
          OR EXISTS (SELECT 1 FROM catalog_systems k WHERE 'system:default/' || k.name = {target})
          OR EXISTS (SELECT 1 FROM catalog_services k
                      WHERE 'component:default/' || k.name = {target}))"
    )
}

fn entity_from_row(r: &PgRow) -> Result<pb::Entity, Status> {
    let document: Value = r.try_get("document").map_err(db)?;
    Ok(pb::Entity {
        kind: r.try_get("kind").map_err(db)?,
        namespace: r.try_get("namespace").map_err(db)?,
        name: r.try_get("name").map_err(db)?,
        document_json: document.to_string(),
        relations: Vec::new(),
        incoming: Vec::new(),
        sequence: r.try_get::<i64, _>("last_sequence").map_err(db)? as u64,
    })
}

pub async fn get_entity(pool: &PgPool, entity_ref: &str) -> Result<pb::Entity, Status> {
    let r = paved_domain::catalog::EntityRef::parse(entity_ref, None, "default")
        .map_err(|e| error::invalid_field("ref", e))?;
    let key = r.key();
    let row = sqlx::query(
        "SELECT id, kind, namespace, name, document, last_sequence FROM catalog_entities
          WHERE ref_key = $1",
    )
    .bind(&key)
    .fetch_optional(pool)
    .await
    .map_err(db)?
    .ok_or_else(|| Status::not_found(format!("entity {entity_ref} not found")))?;
    let id: String = row.try_get("id").map_err(db)?;
    let mut entity = entity_from_row(&row)?;
    let out: Vec<(String, String, bool)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT r.type, r.target, NOT {} FROM catalog_entity_relations r
          WHERE r.source = $1 ORDER BY r.type, r.target",
        in_catalog("r.target")
    )))
    .bind(&id)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    entity.relations = out
        .into_iter()
        .map(|(kind, target, missing)| pb::EntityRelation {
            r#type: kind,
            target,
            missing,
        })
        .collect();
    let incoming: Vec<(String, String)> = sqlx::query_as(
        "SELECT r.type, e.ref_key FROM catalog_entity_relations r
           JOIN catalog_entities e ON e.id = r.source
          WHERE r.target = $1 ORDER BY e.ref_key, r.type",
    )
    .bind(&key)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    entity.incoming = incoming
        .into_iter()
        .map(|(kind, source)| pb::EntityRelation {
            r#type: paved_domain::catalog::inverse(&kind).to_owned(),
            target: source,
            missing: false,
        })
        .collect();
    Ok(entity)
}

pub async fn list_entities(
    pool: &PgPool,
    r: &pb::ListEntitiesRequest,
) -> Result<pb::ListEntitiesResponse, Status> {
    let limit = page_size(r.page_size)?;
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT ref_key, kind, namespace, name, document, last_sequence FROM catalog_entities
          WHERE true",
    );
    if !r.kind.is_empty() {
        q.push(" AND lower(kind) = ")
            .push_bind(r.kind.to_ascii_lowercase());
    }
    if !r.namespace.is_empty() {
        q.push(" AND namespace = ").push_bind(r.namespace.clone());
    }
    if !r.page_token.is_empty() {
        q.push(" AND ref_key > ").push_bind(r.page_token.clone());
    }
    q.push(" ORDER BY ref_key LIMIT ").push_bind(limit + 1);
    let rows = q.build().fetch_all(pool).await.map_err(db)?;
    let mut keys = Vec::with_capacity(rows.len());
    let mut entities = Vec::with_capacity(rows.len());
    for row in &rows {
        keys.push(row.try_get::<String, _>("ref_key").map_err(db)?);
        entities.push(entity_from_row(row)?);
    }
    let next = if entities.len() as i64 > limit {
        entities.truncate(limit as usize);
        keys[limit as usize - 1].clone()
    } else {
        String::new()
    };
    Ok(pb::ListEntitiesResponse {
        entities,
        next_page_token: next,
    })
}
