//! Planning an import: the commands that make the catalog match the file,
//! in dependency order, and the checks that refuse a file before anything is
//! appended (its repositories, its entities, a rehearsal of every step).

use super::*;

/// One command of the plan.
pub(super) enum Step {
    Team(Name, TeamCommand),
    System(Name, SystemCommand),
    Service(Name, ServiceCommand),
    Entity(Name, EntityCommand),
}

impl Step {
    pub(super) fn label(&self) -> String {
        match self {
            Step::Team(n, c) => format!("team/{n}/{}", team_step(c)),
            Step::System(n, c) => format!(
                "system/{n}/{}",
                match c {
                    SystemCommand::Create { .. } => "create",
                    SystemCommand::Update { .. } => "update",
                    SystemCommand::TransferOwnership { .. } => "owner",
                    SystemCommand::Retire { .. } => "retire",
                }
            ),
            Step::Service(n, c) => format!(
                "service/{n}/{}",
                match c {
                    ServiceCommand::Register { .. } => "register".to_owned(),
                    ServiceCommand::Update { .. } => "update".to_owned(),
                    ServiceCommand::TransferOwnership { .. } => "owner".to_owned(),
                    ServiceCommand::Deprecate { .. } => "deprecate".to_owned(),
                    ServiceCommand::AddDependency { on, .. } => format!("dep+{on}"),
                    ServiceCommand::RemoveDependency { on } => format!("dep-{on}"),
                    other => format!("{other:?}").chars().take(16).collect(),
                }
            ),
            Step::Entity(n, c) => format!(
                "entity/{n}/{}",
                match c {
                    EntityCommand::Store { .. } => "store",
                    EntityCommand::Remove => "remove",
                }
            ),
        }
    }
}

pub(super) fn team_step(c: &TeamCommand) -> String {
    match c {
        TeamCommand::Create { .. } => "create".to_owned(),
        TeamCommand::UpdateProfile { .. } => "profile".to_owned(),
        TeamCommand::AddMember { member } => format!("member+{member}"),
        TeamCommand::RemoveMember { member } => format!("member-{member}"),
        TeamCommand::SetParent { .. } => "parent".to_owned(),
        TeamCommand::Retire { .. } => "retire".to_owned(),
    }
}

/// The memberships the file's User documents declare (`spec.memberOf`,
/// users and groups of the default namespace): added to the members of
/// the file's own groups, and returned for the teams the file does not
/// describe. Backstage reads a membership from either side; so does Paved.
pub(super) fn memberships(docs: &mut Documents) -> Vec<(Name, String)> {
    let mut elsewhere = Vec::new();
    for user in docs
        .entities
        .iter()
        .filter(|e| e.document["kind"].as_str() == Some("User"))
    {
        let namespace = user.document["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        let Some(name) = user.document["metadata"]["name"].as_str() else {
            continue;
        };
        if namespace != "default" {
            continue;
        }
        let mut v = Violations::new();
        for r in relations(&user.document, namespace, &mut v) {
            let Some(team) = (r.kind == "memberOf").then(|| r.target.team()).flatten() else {
                continue;
            };
            match docs.groups.iter_mut().find(|g| g.name == team) {
                Some(g) => {
                    g.members.insert(name.to_owned());
                }
                None => elsewhere.push((team, name.to_owned())),
            }
        }
    }
    elsewhere
}

/// The teams each default-namespace User of the file names in `memberOf`.
fn member_of(document: &serde_json::Value) -> Vec<Name> {
    let namespace = document["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    if namespace != "default" {
        return Vec::new();
    }
    let mut v = Violations::new();
    relations(document, namespace, &mut v)
        .into_iter()
        .filter(|r| r.kind == "memberOf")
        .filter_map(|r| r.target.team())
        .collect()
}

/// The memberships the file's User documents no longer declare: teams the
/// user's stored descriptor named in `memberOf` and the new one does not,
/// for teams the file does not describe (the file's own groups list their
/// members whole). Backstage drops such a relation; Paved removes the
/// member, so a membership read from `memberOf` also ends there.
pub(super) async fn leavings(
    executor: &Executor,
    docs: &Documents,
) -> Result<Vec<(Name, String)>, Status> {
    let users: Vec<&EntityDoc> = docs
        .entities
        .iter()
        .filter(|e| e.document["kind"].as_str() == Some("User"))
        .collect();
    let stored: HashMap<Name, Option<Entity>> =
        states(executor, users.iter().map(|u| u.id.clone()).collect()).await?;
    let mut out = Vec::new();
    for user in users {
        let Some(name) = user.document["metadata"]["name"].as_str() else {
            continue;
        };
        let Some(Some(before)) = stored.get(&user.id) else {
            continue;
        };
        let now = member_of(&user.document);
        for team in member_of(&before.document) {
            if !now.contains(&team) && !docs.groups.iter().any(|g| g.name == team) {
                out.push((team, name.to_owned()));
            }
        }
    }
    Ok(out)
}

/// Runs the import's steps, phase by phase, over an in-memory copy of the
/// catalog ([`dry_run::CatalogCopy`]): the domain's refusals, each on the
/// document of the entity it is about.
pub(super) async fn rehearse(
    mut copy: CatalogCopy<'_>,
    docs: &Documents,
    phases: &[Vec<Step>],
    meta: &CommandMeta,
) -> Result<Vec<FieldViolation>, Status> {
    let mut index: HashMap<String, usize> = HashMap::new();
    for g in &docs.groups {
        index.insert(format!("team/{}", g.name), g.index);
    }
    for y in &docs.systems {
        index.insert(format!("system/{}", y.name), y.index);
    }
    for c in &docs.components {
        index.insert(format!("service/{}", c.name), c.index);
    }
    let mut refused = Vec::new();
    for step in phases.iter().flatten() {
        let outcome = match step {
            Step::Team(n, c) => copy.run::<Option<Team>>(n, c, meta).await?,
            Step::System(n, c) => copy.run::<Option<System>>(n, c, meta).await?,
            Step::Service(n, c) => {
                let current: Option<Service> = copy.state(n).await?;
                match crate::catalog::claim_command(current.as_ref(), n, c) {
                    Some((claim, command)) => {
                        match copy
                            .run::<Option<RepositoryClaim>>(&claim, &command, meta)
                            .await?
                        {
                            Ok(()) => copy.run::<Option<Service>>(n, c, meta).await?,
                            Err(r) => Err(r),
                        }
                    }
                    None => copy.run::<Option<Service>>(n, c, meta).await?,
                }
            }
            // Checked on their own (`plan_entities`): nothing refers to them.
            Step::Entity(..) => Ok(()),
        };
        if let Err(r) = outcome {
            let label = step.label();
            let target = label.rsplit_once('/').map_or(label.as_str(), |(t, _)| t);
            let field = index
                .get(target)
                .map_or_else(|| "documents".to_owned(), |i| format!("documents[{i}]"));
            refused.push(FieldViolation::new(field, format!("{label}: {r}")));
        }
    }
    Ok(refused)
}

/// The entities of other kinds to store: the domain's own `decide` run on
/// each against the catalog as it is now, so what it refuses is found
/// before anything is appended (pushed to `problems` by document).
pub(super) async fn plan_entities(
    executor: &Executor,
    docs: &Documents,
    meta: &CommandMeta,
    problems: &mut Vec<FieldViolation>,
) -> Result<(Vec<Step>, u32), Status> {
    // By position in `docs.entities`: what it would store.
    type Item = (usize, Name, EntityCommand);
    let all: Vec<&EntityDoc> = docs.entities.iter().chain(&docs.companions).collect();
    let items: Vec<(usize, Name, EntityCommand, bool)> = all
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let command = EntityCommand::Store {
                document: d.document.clone(),
            };
            (i, d.id.clone(), command, d.optional)
        })
        .collect();
    // The teams the documents name as owners, read once.
    let owners: Vec<Name> = all
        .iter()
        .filter_map(|d| {
            let r = entity_ref(&d.document).ok()?;
            entity_owner(&d.document, &r.namespace)?.team()
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let owners: HashMap<Name, Option<Team>> = states(executor, owners).await?;
    let owners = &owners;
    let decided: Vec<(Item, Result<bool, Rejection>)> = futures::stream::iter(items)
        .map(|(i, id, command, optional)| async move {
            let state = executor
                .state::<Option<Entity>>(&id)
                .await
                .map_err(exec_err)?
                .state;
            if optional && state.is_none() {
                return Ok::<_, Status>(((i, id, command), Ok(false)));
            }
            let mut refs = References::default();
            for r in state.references(&command, &refs) {
                let team = match owners.get(&r.id) {
                    Some(t) => t.clone(),
                    // The owner the stored entity names now.
                    None => {
                        executor
                            .state::<Option<Team>>(&r.id)
                            .await
                            .map_err(exec_err)?
                            .state
                    }
                };
                refs.insert_team(r.id, team);
            }
            let ctx = Context {
                id: &id,
                principal: &meta.principal,
                now: meta.now,
                refs: &refs,
            };
            let changes = state.decide(&command, &ctx).map(|e| !e.is_empty());
            Ok::<_, Status>(((i, id, command), changes))
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    let (mut steps, mut unchanged) = (Vec::new(), 0);
    for ((i, id, command), changes) in decided {
        let (index, label) = (all[i].index, &all[i].label);
        match changes {
            Ok(true) => steps.push(Step::Entity(id, command)),
            // A descriptor beside a typed entity counts with that entity.
            Ok(false) if i < docs.entities.len() => unchanged += 1,
            Ok(false) => {}
            Err(Rejection::Invalid(violations)) => {
                problems.extend(violations.into_iter().map(|fv| {
                    FieldViolation::new(
                        format!("documents[{index}].{}", fv.field),
                        format!("{label}: {}", fv.description),
                    )
                }))
            }
            Err(other) => problems.push(FieldViolation::new(
                format!("documents[{index}]"),
                format!("{label}: {other}"),
            )),
        }
    }
    Ok((steps, unchanged))
}

/// Components naming a repository path whose claim another team's service
/// holds (the claim aggregate's own `decide`, run on the states as they
/// are now), or that another team's component of the file names too.
pub(super) async fn repository_conflicts(
    copy: &mut CatalogCopy<'_>,
    docs: &Documents,
    services: &HashMap<Name, Option<Service>>,
    meta: &CommandMeta,
) -> Result<Vec<FieldViolation>, Status> {
    let mut out = Vec::new();
    let mut in_file: BTreeMap<SourceLocation, (Name, Name)> = BTreeMap::new();
    for c in &docs.components {
        let command = ServiceCommand::Register {
            owner: c.owner.clone(),
            spec: c.spec.clone(),
        };
        let current = services.get(&c.name).and_then(Option::as_ref);
        let wanted = match current {
            // What an update of it would claim.
            Some(cur) => repository_to_claim(
                Some(cur),
                &ServiceCommand::Update {
                    spec: c.spec.clone(),
                    fields: SpecField::ALL.to_vec(),
                },
            ),
            None => repository_to_claim(None, &command),
        };
        let Some(location) = wanted else { continue };
        let owner = current.map_or(&c.owner, |cur| &cur.owner).clone();
        // Two teams' components of this file naming one path.
        match in_file.get(&location) {
            Some((team, other)) if team != &owner => {
                out.push(FieldViolation::new(
                    format!("components.{}.metadata.annotations", c.name),
                    format!(
                        "{location} is named by component {other} of team {team} in this file too: \
                         a repository path belongs to one team"
                    ),
                ));
                continue;
            }
            Some(_) => {}
            None => {
                in_file.insert(location.clone(), (owner.clone(), c.name.clone()));
            }
        }
        let claim_command = RepositoryCommand::Claim {
            identity: location.identity.clone(),
            path: location.path,
            service: c.name.clone(),
            owner,
        };
        // The claim's own decision on the catalog as it is now (the copy
        // keeps what it read for the rehearsal).
        let decided = copy
            .decide::<Option<RepositoryClaim>>(&claim_id(&location.identity), &claim_command, meta)
            .await?;
        if let Err(Rejection::AlreadyExists(what)) = decided {
            out.push(FieldViolation::new(
                format!("components.{}.metadata.annotations", c.name),
                format!("{what} already exists: a repository path belongs to one team"),
            ));
        }
    }
    Ok(out)
}

pub(super) fn referenced_teams(docs: &Documents) -> Vec<Name> {
    let mut names = BTreeSet::new();
    for g in &docs.groups {
        names.insert(g.name.clone());
        names.extend(g.parent.clone());
    }
    names.extend(docs.systems.iter().map(|s| s.owner.clone()));
    names.extend(docs.components.iter().map(|c| c.owner.clone()));
    names.into_iter().collect()
}

pub(super) fn referenced_systems(docs: &Documents) -> Vec<Name> {
    let mut names: BTreeSet<Name> = docs.systems.iter().map(|s| s.name.clone()).collect();
    names.extend(docs.components.iter().filter_map(|c| c.spec.system.clone()));
    names.into_iter().collect()
}

pub(super) fn referenced_services(docs: &Documents) -> Vec<Name> {
    let mut names: BTreeSet<Name> = docs.components.iter().map(|c| c.name.clone()).collect();
    for c in &docs.components {
        names.extend(c.depends_on.iter().cloned());
    }
    names.into_iter().collect()
}

/// Works out the commands, phase by phase, and checks up front what would
/// otherwise fail half-way: references to missing or retired entities,
/// retired entities in the file, and permissions.
pub(super) fn plan(
    docs: &Documents,
    teams: &HashMap<Name, Option<Team>>,
    systems: &HashMap<Name, Option<System>>,
    services: &HashMap<Name, Option<Service>>,
    principal: &Principal,
) -> Result<(Vec<Vec<Step>>, u32), Status> {
    let mut v = Violations::new();
    let in_file_groups: BTreeSet<&Name> = docs.groups.iter().map(|g| &g.name).collect();
    let in_file_systems: BTreeSet<&Name> = docs.systems.iter().map(|s| &s.name).collect();
    let in_file_components: BTreeSet<&Name> = docs.components.iter().map(|c| &c.name).collect();
    // A reference may name what is not in the catalog yet: Backstage takes
    // it and it shows as missing until it arrives, so import order does not
    // matter. As in the domain: a team or system not there yet only from
    // admins, a dependency from anyone; a retired one never. `None`: fine.
    let team_ref = |n: &Name| -> Option<String> {
        if in_file_groups.contains(n) {
            return None;
        }
        match teams.get(n).and_then(Option::as_ref) {
            Some(t) if t.retired.is_some() => Some(format!("team {:?} is retired", n.as_str())),
            Some(_) => None,
            None if principal.is_admin() => None,
            None => Some(format!(
                "team {:?} does not exist (only admins name a team that is not in the catalog yet)",
                n.as_str()
            )),
        }
    };
    let system_ref = |n: &Name| -> Option<String> {
        if in_file_systems.contains(n) {
            return None;
        }
        match systems.get(n).and_then(Option::as_ref) {
            Some(s) if s.retired.is_some() => Some(format!("system {:?} is retired", n.as_str())),
            Some(_) => None,
            None if principal.is_admin() => None,
            None => Some(format!(
                "system {:?} does not exist (only admins name a system that is not in the catalog yet)",
                n.as_str()
            )),
        }
    };
    let service_ref = |n: &Name| -> Option<String> {
        if in_file_components.contains(n) {
            return None;
        }
        match services.get(n).and_then(Option::as_ref) {
            Some(s) if s.retired.is_some() => {
                Some(format!("component {:?} is retired", n.as_str()))
            }
            _ => None,
        }
    };
    let mut unchanged = 0u32;

    // Groups, parents before children.
    let mut depth: HashMap<&Name, usize> = HashMap::new();
    let by_name: HashMap<&Name, &GroupDoc> = docs.groups.iter().map(|g| (&g.name, g)).collect();
    for g in &docs.groups {
        let mut d = 0;
        let mut cur = g.parent.as_ref();
        while let Some(p) = cur.filter(|p| by_name.contains_key(p)) {
            d += 1;
            if d > docs.groups.len() {
                v.push(
                    format!("groups.{}.spec.parent", g.name),
                    "the file's group parents form a cycle",
                );
                break;
            }
            cur = by_name[p].parent.as_ref();
        }
        depth.insert(&g.name, d);
    }
    let max_depth = depth.values().copied().max().unwrap_or(0);
    let mut phases: Vec<Vec<Step>> = (0..=max_depth).map(|_| Vec::new()).collect();
    for g in &docs.groups {
        if let Some(p) = &g.parent
            && let Some(why) = team_ref(p)
        {
            v.push(format!("groups.{}.spec.parent", g.name), why);
        }
        let steps = &mut phases[depth[&g.name]];
        let before = steps.len();
        match teams.get(&g.name).and_then(Option::as_ref) {
            None => {
                if !principal.is_admin() {
                    v.push(format!("groups.{}", g.name), "only admins create teams");
                }
                steps.push(Step::Team(
                    g.name.clone(),
                    TeamCommand::Create {
                        profile: g.profile.clone(),
                        parent: g.parent.clone(),
                        members: g.members.iter().cloned().collect(),
                    },
                ));
            }
            Some(t) if t.retired.is_some() => {
                v.push(format!("groups.{}", g.name), "this team is retired");
            }
            Some(t) => {
                if t.profile != g.profile {
                    steps.push(Step::Team(
                        g.name.clone(),
                        TeamCommand::UpdateProfile {
                            profile: g.profile.clone(),
                        },
                    ));
                }
                if t.parent != g.parent {
                    steps.push(Step::Team(
                        g.name.clone(),
                        TeamCommand::SetParent {
                            parent: g.parent.clone(),
                        },
                    ));
                }
                for m in g.members.difference(&t.members) {
                    steps.push(Step::Team(
                        g.name.clone(),
                        TeamCommand::AddMember { member: m.clone() },
                    ));
                }
                for m in t.members.difference(&g.members) {
                    steps.push(Step::Team(
                        g.name.clone(),
                        TeamCommand::RemoveMember { member: m.clone() },
                    ));
                }
                let needs_admin = t.parent != g.parent;
                if steps.len() > before
                    && (!principal.acts_for(&g.name) || (needs_admin && !principal.is_admin()))
                {
                    v.push(
                        format!("groups.{}", g.name),
                        format!("{} may not change this team", principal.name),
                    );
                }
            }
        }
        if steps.len() == before {
            unchanged += 1;
        }
    }

    // Systems.
    let mut system_steps = Vec::new();
    for s in &docs.systems {
        if let Some(why) = team_ref(&s.owner) {
            v.push(format!("systems.{}.spec.owner", s.name), why);
        }
        if !principal.acts_for(&s.owner) {
            v.push(
                format!("systems.{}", s.name),
                format!(
                    "{} may not change systems of team {:?}",
                    principal.name,
                    s.owner.as_str()
                ),
            );
        }
        let before = system_steps.len();
        match systems.get(&s.name).and_then(Option::as_ref) {
            None => system_steps.push(Step::System(
                s.name.clone(),
                SystemCommand::Create {
                    owner: s.owner.clone(),
                    display_name: s.display_name.clone(),
                    description: s.description.clone(),
                },
            )),
            Some(cur) if cur.retired.is_some() => {
                v.push(format!("systems.{}", s.name), "this system is retired");
            }
            Some(cur) => {
                if !principal.acts_for(&cur.owner) {
                    v.push(
                        format!("systems.{}", s.name),
                        format!("{} may not change this system", principal.name),
                    );
                }
                if cur.display_name != s.display_name || cur.description != s.description {
                    system_steps.push(Step::System(
                        s.name.clone(),
                        SystemCommand::Update {
                            display_name: s.display_name.clone(),
                            description: s.description.clone(),
                        },
                    ));
                }
                if cur.owner != s.owner {
                    system_steps.push(Step::System(
                        s.name.clone(),
                        SystemCommand::TransferOwnership {
                            to: s.owner.clone(),
                        },
                    ));
                }
            }
        }
        if system_steps.len() == before {
            unchanged += 1;
        }
    }
    phases.push(system_steps);

    // Components, then their dependencies.
    let mut component_steps = Vec::new();
    let mut dependency_steps = Vec::new();
    for c in &docs.components {
        if let Some(why) = team_ref(&c.owner) {
            v.push(format!("components.{}.spec.owner", c.name), why);
        }
        if let Some(s) = &c.spec.system
            && let Some(why) = system_ref(s)
        {
            v.push(format!("components.{}.spec.system", c.name), why);
        }
        // Joining a system: the domain's one rule, checked up front.
        if let Some(s) = &c.spec.system {
            let joins = services
                .get(&c.name)
                .and_then(Option::as_ref)
                .is_none_or(|cur| cur.spec.system.as_ref() != Some(s));
            let owner = docs
                .systems
                .iter()
                .find(|d| &d.name == s)
                .map(|d| d.owner.clone())
                .or_else(|| {
                    systems
                        .get(s)
                        .and_then(Option::as_ref)
                        .map(|x| x.owner.clone())
                });
            if joins
                && let Some(owner) = owner
                && let Err(Rejection::PermissionDenied(why)) = may_join_system(principal, s, &owner)
            {
                v.push(format!("components.{}.spec.system", c.name), why);
            }
        }
        for d in &c.depends_on {
            if d == &c.name {
                v.push(
                    format!("components.{}.spec.dependsOn", c.name),
                    "a service cannot depend on itself",
                );
            } else if let Some(why) = service_ref(d) {
                v.push(format!("components.{}.spec.dependsOn", c.name), why);
            }
        }
        if !principal.acts_for(&c.owner) {
            v.push(
                format!("components.{}", c.name),
                format!(
                    "{} may not change services of team {:?}",
                    principal.name,
                    c.owner.as_str()
                ),
            );
        }
        let before = component_steps.len() + dependency_steps.len();
        let current = services.get(&c.name).and_then(Option::as_ref);
        let (current_deps, current_deprecation) = match current {
            None => {
                component_steps.push(Step::Service(
                    c.name.clone(),
                    ServiceCommand::Register {
                        owner: c.owner.clone(),
                        spec: c.spec.clone(),
                    },
                ));
                (BTreeSet::new(), None)
            }
            Some(cur) if cur.retired.is_some() => {
                v.push(format!("components.{}", c.name), "this service is retired");
                continue;
            }
            Some(cur) => {
                if !principal.acts_for(&cur.owner) {
                    v.push(
                        format!("components.{}", c.name),
                        format!("{} may not change this service", principal.name),
                    );
                }
                let fields: Vec<SpecField> = SpecField::ALL
                    .into_iter()
                    .filter(|f| f.differs(&cur.spec, &c.spec))
                    .collect();
                if !fields.is_empty() {
                    component_steps.push(Step::Service(
                        c.name.clone(),
                        ServiceCommand::Update {
                            spec: c.spec.clone(),
                            fields,
                        },
                    ));
                }
                if cur.owner != c.owner {
                    component_steps.push(Step::Service(
                        c.name.clone(),
                        ServiceCommand::TransferOwnership {
                            to: c.owner.clone(),
                        },
                    ));
                }
                (
                    cur.dependencies.keys().cloned().collect(),
                    cur.deprecation.clone(),
                )
            }
        };
        if let Some(reason) = &c.deprecation
            && current_deprecation.as_ref() != Some(reason)
        {
            dependency_steps.push(Step::Service(
                c.name.clone(),
                ServiceCommand::Deprecate {
                    reason: reason.clone(),
                },
            ));
        }
        for d in c.depends_on.difference(&current_deps) {
            dependency_steps.push(Step::Service(
                c.name.clone(),
                ServiceCommand::AddDependency {
                    on: d.clone(),
                    criticality: None,
                },
            ));
        }
        for d in current_deps.difference(&c.depends_on) {
            dependency_steps.push(Step::Service(
                c.name.clone(),
                ServiceCommand::RemoveDependency { on: d.clone() },
            ));
        }
        if component_steps.len() + dependency_steps.len() == before {
            unchanged += 1;
        }
    }
    phases.push(component_steps);
    // Dependency and deprecation steps of one service must not race each other.
    phases.extend(serialize_per_aggregate(dependency_steps));
    if !v.is_empty() {
        return Err(error::invalid(v.into_vec()));
    }
    phases.retain(|p| !p.is_empty());
    Ok((phases, unchanged))
}

/// Splits steps into phases so that no phase holds two steps for the same
/// aggregate (they would only conflict and retry).
pub(super) fn serialize_per_aggregate(steps: Vec<Step>) -> Vec<Vec<Step>> {
    let mut phases: Vec<Vec<Step>> = Vec::new();
    let mut count: HashMap<String, usize> = HashMap::new();
    for step in steps {
        let key = match &step {
            Step::Team(n, _) => format!("t/{n}"),
            Step::System(n, _) => format!("y/{n}"),
            Step::Service(n, _) => format!("s/{n}"),
            Step::Entity(n, _) => format!("e/{n}"),
        };
        let i = count.entry(key).or_insert(0);
        if phases.len() <= *i {
            phases.push(Vec::new());
        }
        phases[*i].push(step);
        *i += 1;
    }
    phases
}
