//! Repository claims: which services may name a source repository, and
//! which directory of it. Uniqueness across teams comes from invariant 2, as
//! for names: each repository has an aggregate of its own (id from a digest
//! of its identity) whose state names, per source path, the services holding
//! it, and a service may name a repository (and path) only while it holds
//! that claim.
//!
//! One path of one repository belongs to one team: any number of that
//! team's services may share it (a repository with several services and no
//! paths declared), another team's service may not while one of the
//! holders still names it. Different paths of a monorepo may belong to
//! different teams (paths are compared as given: `services` and
//! `services/payments` are two paths).
//!
//! A claim is taken first, then the service's command (which checks it)
//! runs. A holder that never came to exist (its registration failed or the
//! process crashed between the two) stands for [`CLAIM_GRACE`], then anyone
//! may take the path; so may anyone once every holder is retired or names
//! another repository or path by now.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::ServiceSpec;
use crate::aggregate::{Aggregate, AggregateKind, AggregateRef, Context, References};
use crate::event::Event;
use crate::name::Name;
use crate::rejection::{Precondition, Rejection};

/// The annotation Backstage uses for a service's GitHub repository.
pub const GITHUB_SLUG_ANNOTATION: &str = "github.com/project-slug";
/// The annotation Backstage uses for where a component's source lives
/// (`url:https://github.com/acme/mono/tree/main/services/payments/`).
pub const SOURCE_LOCATION_ANNOTATION: &str = "backstage.io/source-location";
/// How long a claim stands for a holder that does not exist yet.
pub const CLAIM_GRACE: Duration = Duration::minutes(5);

/// A repository's identity: host, then the path, lowercase, without
/// scheme, user, port, `.git` or trailing slashes; for github.com just
/// `owner/name` (GitHub treats both case-insensitively). `https://`,
/// `http://`, `ssh://`, `git://` and scp-like `git@host:owner/name` forms of
/// one repository give one identity. `None` for what names no repository.
pub fn repository_identity(url: &str) -> Option<String> {
    let url = url.trim();
    let rest = match url.split_once("://") {
        Some((scheme, rest))
            if matches!(
                scheme.to_ascii_lowercase().as_str(),
                "https" | "http" | "ssh" | "git"
            ) =>
        {
            rest
        }
        Some(_) => return None,
        // scp-like: [user@]host:path
        None => {
            let (host, path) = url.split_once(':')?;
            if host.contains('/') || path.starts_with('/') {
                return None;
            }
            return identity_of(host, path);
        }
    };
    let (authority, path) = rest.split_once('/')?;
    identity_of(authority, path)
}

fn identity_of(authority: &str, path: &str) -> Option<String> {
    let host = authority.rsplit('@').next()?;
    let host = host.split(':').next()?.to_ascii_lowercase();
    if host.is_empty() || !host.contains('.') && host != "localhost" {
        return None;
    }
    let path = path.split(['?', '#']).next()?;
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if host == "github.com" || host == "www.github.com" {
        // github.com/owner/name/tree/main/... is still owner/name.
        segments.truncate(2);
    }
    if let Some(last) = segments.last_mut() {
        *last = last.strip_suffix(".git").unwrap_or(last);
    }
    if segments.len() < 2 || segments.iter().any(|s| s.is_empty()) {
        return None;
    }
    let host = host.strip_prefix("www.").unwrap_or(&host);
    Some(format!("{host}/{}", segments.join("/")).to_ascii_lowercase())
}

/// The repository a service names: its `github.com/project-slug`
/// annotation, else its repository URL.
pub fn service_repository(spec: &ServiceSpec) -> Option<String> {
    if let Some(slug) = spec.annotations.get(GITHUB_SLUG_ANNOTATION)
        && let Some(id) = repository_identity(&format!("https://github.com/{}", slug.trim()))
    {
        return Some(id);
    }
    repository_identity(&spec.repository_url)
}

/// Where a service's source lives: its repository, and the directory in it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourceLocation {
    /// See [`repository_identity`].
    pub identity: String,
    /// A directory of the repository (`services/payments`, no leading or
    /// trailing slash), or "" for the whole repository.
    pub path: String,
}

impl std::fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "repository {}", self.identity)
        } else {
            write!(f, "repository {} path {}", self.identity, self.path)
        }
    }
}

/// The repository a service names ([`service_repository`]) and the
/// directory of it its source lives in: the path after `tree/<branch>/` or
/// `blob/<branch>/` in its `backstage.io/source-location` (`url:` form)
/// when that names the same repository, else in its repository URL; the
/// whole repository when neither has one. A branch name with a `/` in it
/// cannot be told from the path and reads as its first segment.
pub fn service_source(spec: &ServiceSpec) -> Option<SourceLocation> {
    let identity = service_repository(spec)?;
    let path = spec
        .annotations
        .get(SOURCE_LOCATION_ANNOTATION)
        .and_then(|l| l.trim().strip_prefix("url:"))
        .filter(|url| repository_identity(url).as_deref() == Some(identity.as_str()))
        .and_then(tree_path)
        .or_else(|| {
            (repository_identity(&spec.repository_url).as_deref() == Some(identity.as_str()))
                .then(|| tree_path(&spec.repository_url))
                .flatten()
        })
        .unwrap_or_default();
    Some(SourceLocation { identity, path })
}

/// The directory a browse URL points at: what follows `tree|blob/<branch>/`
/// (GitHub, Gitea; GitLab's `/-/tree/`), without `.` segments; `None` when
/// there is none or it climbs out with `..`.
fn tree_path(url: &str) -> Option<String> {
    let rest = url.trim().split_once("://")?.1;
    let rest = rest.split(['?', '#']).next()?;
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    // host, owner, name at least, then tree|blob, then the branch.
    let at = segments
        .iter()
        .skip(3)
        .position(|s| *s == "tree" || *s == "blob")?
        + 3;
    let path: Vec<&str> = segments
        .get(at + 2..)?
        .iter()
        .copied()
        .filter(|s| *s != ".")
        .collect();
    if path.contains(&"..") || path.is_empty() {
        return None;
    }
    Some(path.join("/"))
}

/// Does a commit touching `files` count for a service whose source lives
/// at `path` ("" is the whole repository)?
pub fn touches<'f>(path: &str, mut files: impl Iterator<Item = &'f str>) -> bool {
    path.is_empty()
        || files.any(|f| {
            f.strip_prefix(path)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
}

/// The claim aggregate's id for a repository identity.
pub fn claim_id(identity: &str) -> Name {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(identity.as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    // `repo-` and 24 hex digits: always a valid name.
    Name::parse(&format!("repo-{hex}")).expect("a DNS label")
}

/// The reference to the claim of a repository identity.
pub fn claim_ref(identity: &str) -> AggregateRef {
    AggregateRef {
        kind: AggregateKind::Repository,
        id: claim_id(identity),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositoryClaim {
    pub identity: String,
    /// Per source path ("" for the whole repository), the services that
    /// took it, all of one team (a takeover by another team starts over).
    pub paths: BTreeMap<String, Vec<Holder>>,
    /// GitHub's numeric id of the repository, once a webhook named it: a
    /// renamed repository keeps mapping to its services.
    pub github_id: Option<u64>,
}

/// A service holding a path of a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub service: Name,
    /// Its owner when it took the claim (`None` in claims recorded before
    /// paths existed): what stands for it while it does not exist yet.
    pub owner: Option<Name>,
    pub claimed_at: DateTime<Utc>,
}

impl RepositoryClaim {
    /// Does `service` hold `path`?
    pub fn holds(&self, path: &str, service: &Name) -> bool {
        self.paths
            .get(path)
            .is_some_and(|h| h.iter().any(|h| &h.service == service))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepositoryCommand {
    /// `service` of team `owner` takes `path` of the repository `identity`.
    Claim {
        identity: String,
        path: String,
        service: Name,
        owner: Name,
    },
    /// GitHub says the claimed repository has the numeric id `github_id`.
    RecordGithubId { github_id: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepositoryEvent {
    Claimed {
        identity: String,
        /// "" for the whole repository.
        path: String,
        service: Name,
        /// `None` in claims recorded before paths existed.
        owner: Option<Name>,
        claimed_at: DateTime<Utc>,
        /// Beside the path's holders, of the same team (else it takes the
        /// path over; every claim recorded before paths existed did).
        joins: bool,
    },
    GithubIdRecorded {
        identity: String,
        github_id: u64,
    },
}

impl RepositoryEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Claimed { .. } => "RepositoryClaimed",
            Self::GithubIdRecorded { .. } => "RepositoryGithubIdRecorded",
        }
    }
}

impl From<RepositoryEvent> for Event {
    fn from(e: RepositoryEvent) -> Self {
        Event::Repository(e)
    }
}

/// The team a holder of `location` stands for, if it still stands in the
/// way of another team: it exists, is live and names that location, or it
/// does not exist yet and took the claim less than [`CLAIM_GRACE`] ago.
fn stands(
    holder: &Holder,
    location: &SourceLocation,
    refs: &References,
    now: DateTime<Utc>,
) -> Option<Option<Name>> {
    match refs.service(&holder.service) {
        // Not there (yet): its registration may be on its way.
        None => (now < holder.claimed_at + CLAIM_GRACE).then(|| holder.owner.clone()),
        Some(s) => (s.retired.is_none() && service_source(&s.spec).as_ref() == Some(location))
            .then(|| Some(s.owner.clone())),
    }
}

/// Does `service` hold the claim on `location`? What the service aggregate
/// checks before it names a repository.
pub fn holds(
    refs: &References,
    location: &SourceLocation,
    service: &Name,
) -> Result<(), Rejection> {
    match refs.repository(&claim_id(&location.identity)) {
        Some(c) if c.holds(&location.path, service) => Ok(()),
        Some(c) => Err(Rejection::AlreadyExists(
            match c.paths.get(&location.path) {
                Some(h) if !h.is_empty() => format!("{location} (service {} has it)", h[0].service),
                _ => format!("{location} (not claimed by service {service})"),
            },
        )),
        None => Err(Rejection::Precondition(Precondition::MissingReference(
            claim_ref(&location.identity),
        ))),
    }
}

impl Aggregate for Option<RepositoryClaim> {
    const KIND: AggregateKind = AggregateKind::Repository;
    type Command = RepositoryCommand;
    type Event = RepositoryEvent;

    fn references(&self, command: &RepositoryCommand, _: &References) -> Vec<AggregateRef> {
        let (RepositoryCommand::Claim { path, service, .. }, Some(c)) = (command, self) else {
            return Vec::new();
        };
        c.paths
            .get(path)
            .into_iter()
            .flatten()
            .filter(|h| &h.service != service)
            .map(|h| AggregateRef::service(&h.service))
            .collect()
    }

    fn decide(
        &self,
        command: &RepositoryCommand,
        ctx: &Context<'_>,
    ) -> Result<Vec<RepositoryEvent>, Rejection> {
        if !ctx.principal.may_write() {
            return Err(Rejection::PermissionDenied(format!(
                "{} may not claim repositories: read-only",
                ctx.principal.name
            )));
        }
        let (identity, path, service, owner) = match (command, self) {
            (
                RepositoryCommand::Claim {
                    identity,
                    path,
                    service,
                    owner,
                },
                _,
            ) => (identity, path, service, owner),
            (RepositoryCommand::RecordGithubId { github_id }, Some(c)) => {
                return Ok(if c.github_id == Some(*github_id) {
                    Vec::new()
                } else {
                    vec![RepositoryEvent::GithubIdRecorded {
                        identity: c.identity.clone(),
                        github_id: *github_id,
                    }]
                });
            }
            (RepositoryCommand::RecordGithubId { .. }, None) => {
                return Err(Rejection::NotFound(format!("repository claim {}", ctx.id)));
            }
        };
        if &claim_id(identity) != ctx.id {
            return Err(Rejection::invalid(
                "repository",
                "the claim's id does not match the repository",
            ));
        }
        let location = SourceLocation {
            identity: identity.clone(),
            path: path.clone(),
        };
        let holders = self
            .as_ref()
            .and_then(|c| c.paths.get(path))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut joins = false;
        for h in holders.iter().filter(|h| &h.service != service) {
            match stands(h, &location, ctx.refs, ctx.now) {
                None => {}
                Some(Some(team)) if &team == owner => joins = true,
                Some(team) => {
                    return Err(Rejection::AlreadyExists(format!(
                        "{location} (service {} of team {} has it)",
                        h.service,
                        team.as_ref().map_or("unknown", |t| t.as_str())
                    )));
                }
            }
        }
        if holders.iter().any(|h| &h.service == service) {
            return Ok(Vec::new());
        }
        Ok(vec![RepositoryEvent::Claimed {
            identity: identity.clone(),
            path: path.clone(),
            service: service.clone(),
            owner: Some(owner.clone()),
            claimed_at: ctx.now,
            joins,
        }])
    }

    fn evolve(&mut self, event: &RepositoryEvent) {
        match event {
            RepositoryEvent::Claimed {
                identity,
                path,
                service,
                owner,
                claimed_at,
                joins,
            } => {
                // The repository is the same whoever holds it, so is its GitHub id.
                let claim = self.get_or_insert_with(|| RepositoryClaim {
                    identity: identity.clone(),
                    paths: BTreeMap::new(),
                    github_id: None,
                });
                let holders = claim.paths.entry(path.clone()).or_default();
                if !joins {
                    holders.clear();
                }
                holders.retain(|h| &h.service != service);
                holders.push(Holder {
                    service: service.clone(),
                    owner: owner.clone(),
                    claimed_at: *claimed_at,
                });
            }
            RepositoryEvent::GithubIdRecorded { github_id, .. } => {
                if let Some(c) = self {
                    c.github_id = Some(*github_id);
                }
            }
        }
    }

    fn select(event: &Event) -> Option<&RepositoryEvent> {
        match event {
            Event::Repository(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Lifecycle, Service, ServiceEvent, ServiceType};
    use crate::principal::Principal;
    use crate::scenario::{Scenario, n};

    #[test]
    fn one_repository_has_one_identity_in_every_spelling() {
        let id = Some("github.com/acme/payments-api".to_owned());
        for url in [
            "https://github.com/acme/payments-api",
            "https://github.com/Acme/Payments-API.git",
            "https://github.com/acme/payments-api/",
            "http://www.github.com/acme/payments-api",
            "https://github.com/acme/payments-api/tree/main/services/api",
            "ssh://git@github.com/acme/payments-api.git",
            "ssh://git@github.com:22/acme/payments-api",
            "git@github.com:acme/payments-api.git",
            "git://github.com/acme/payments-api",
            " https://user@github.com/acme/payments-api ",
        ] {
            assert_eq!(repository_identity(url), id, "{url}");
        }
        // Names ending in the letters of ".git" are not cut (rtrim was).
        assert_eq!(
            repository_identity("https://github.com/acme/digit").as_deref(),
            Some("github.com/acme/digit")
        );
        assert_eq!(
            repository_identity("https://gitlab.example.com/group/sub/app.git").as_deref(),
            Some("gitlab.example.com/group/sub/app")
        );
        for not in [
            "",
            "payments-api",
            "https://github.com/acme",
            "ftp://x.org/a/b",
            "/srv/git/a/b",
        ] {
            assert_eq!(repository_identity(not), None, "{not}");
        }
    }

    #[test]
    fn the_slug_annotation_wins_over_the_url() {
        let mut spec = ServiceSpec::new(ServiceType::Service, Lifecycle::Production);
        spec.repository_url = "https://github.com/acme/old".into();
        assert_eq!(
            service_repository(&spec).as_deref(),
            Some("github.com/acme/old")
        );
        spec.annotations
            .insert(GITHUB_SLUG_ANNOTATION.into(), "Acme/New".into());
        assert_eq!(
            service_repository(&spec).as_deref(),
            Some("github.com/acme/new")
        );
    }

    #[test]
    fn a_service_lives_in_the_directory_its_source_location_or_url_points_at() {
        let mut spec = ServiceSpec::new(ServiceType::Service, Lifecycle::Production);
        let at = |spec: &ServiceSpec| service_source(spec).map(|l| l.path);
        assert_eq!(at(&spec), None);
        spec.repository_url = "https://github.com/acme/mono".into();
        assert_eq!(at(&spec).as_deref(), Some(""));
        spec.repository_url = "https://github.com/acme/mono/tree/main/services/payments/".into();
        assert_eq!(at(&spec).as_deref(), Some("services/payments"));
        spec.repository_url = "https://gitlab.example.com/acme/mono/-/tree/main/./api".into();
        assert_eq!(at(&spec).as_deref(), Some("api"));
        // Backstage's annotation wins when it names the same repository.
        spec.repository_url = "https://github.com/acme/mono".into();
        spec.annotations.insert(
            SOURCE_LOCATION_ANNOTATION.into(),
            "url:https://github.com/Acme/Mono/tree/main/services/ledger/".into(),
        );
        assert_eq!(at(&spec).as_deref(), Some("services/ledger"));
        spec.annotations.insert(
            SOURCE_LOCATION_ANNOTATION.into(),
            "url:https://github.com/acme/other/tree/main/services/ledger/".into(),
        );
        assert_eq!(at(&spec).as_deref(), Some(""));
        // Backstage's root form, and a path that climbs out: the whole repository.
        for root in [
            "url:https://github.com/acme/mono/tree/main/",
            "url:https://github.com/acme/mono/tree/main/../x",
        ] {
            spec.annotations
                .insert(SOURCE_LOCATION_ANNOTATION.into(), root.into());
            assert_eq!(at(&spec).as_deref(), Some(""), "{root}");
        }
    }

    #[test]
    fn a_commit_counts_for_the_services_whose_directory_it_touches() {
        let files = ["services/payments/src/main.rs", "README.md"];
        assert!(touches("", std::iter::empty()));
        assert!(touches("services/payments", files.into_iter()));
        assert!(touches("README.md", files.into_iter()));
        assert!(!touches("services/pay", files.into_iter()));
        assert!(!touches("services/ledger", files.into_iter()));
    }

    fn service(name: &str, owner: &str, repo: &str, retired: bool) -> Option<Service> {
        let mut spec = ServiceSpec::new(ServiceType::Service, Lifecycle::Production);
        spec.repository_url = repo.into();
        let mut s = None;
        s.evolve(&ServiceEvent::Registered {
            name: n(name),
            owner: n(owner),
            spec,
        });
        if retired {
            s.evolve(&ServiceEvent::Retired {
                reason: "gone".into(),
            });
        }
        s
    }

    const REPO: &str = "github.com/acme/payments-api";
    const URL: &str = "https://github.com/acme/payments-api";

    fn claim(service: &str, owner: &str, path: &str) -> RepositoryCommand {
        RepositoryCommand::Claim {
            identity: REPO.into(),
            path: path.into(),
            service: n(service),
            owner: n(owner),
        }
    }

    fn scenario() -> Scenario<Option<RepositoryClaim>> {
        Scenario::new(claim_id(REPO).as_str())
    }

    /// What `when` appended, folded into the scenario.
    fn then(
        s: Scenario<Option<RepositoryClaim>>,
        command: RepositoryCommand,
    ) -> Scenario<Option<RepositoryClaim>> {
        let events = s.when(command).unwrap();
        s.given(events)
    }

    #[test]
    fn one_teams_services_share_a_path_and_another_team_cannot_take_it() {
        let s = then(scenario(), claim("payments-api", "payments", ""));
        // The holder again: nothing new.
        assert!(
            s.when(claim("payments-api", "payments", ""))
                .unwrap()
                .is_empty()
        );
        let mut s = s;
        s.refs.insert_service(
            n("payments-api"),
            service("payments-api", "payments", URL, false),
        );
        // Another service of the same team joins.
        let events = s.when(claim("payments-worker", "payments", "")).unwrap();
        assert!(matches!(
            &events[..],
            [RepositoryEvent::Claimed { joins: true, .. }]
        ));
        let s = s.given(events);
        let holders: Vec<&str> = s.state.as_ref().unwrap().paths[""]
            .iter()
            .map(|h| h.service.as_str())
            .collect();
        assert_eq!(holders, ["payments-api", "payments-worker"]);
        // Another team's service does not.
        let mut s = s.by(Principal::member("mallory", n("growth")));
        s.refs.insert_service(
            n("payments-worker"),
            service("payments-worker", "payments", URL, false),
        );
        assert!(matches!(
            s.when(claim("fake", "growth", "")),
            Err(Rejection::AlreadyExists(what)) if what.contains("team payments")
        ));
    }

    #[test]
    fn the_paths_of_a_monorepo_belong_to_their_own_teams() {
        let s = then(
            scenario(),
            claim("payments-api", "payments", "services/payments"),
        );
        let mut s = then(s, claim("ledger", "ledger", "services/ledger"));
        let tree = |p: &str| format!("{URL}/tree/main/{p}");
        s.refs.insert_service(
            n("payments-api"),
            service(
                "payments-api",
                "payments",
                &tree("services/payments"),
                false,
            ),
        );
        s.refs.insert_service(
            n("ledger"),
            service("ledger", "ledger", &tree("services/ledger"), false),
        );
        let claim_state = s.state.clone().unwrap();
        assert!(claim_state.holds("services/payments", &n("payments-api")));
        assert!(claim_state.holds("services/ledger", &n("ledger")));
        assert!(!claim_state.holds("services/ledger", &n("payments-api")));
        assert!(matches!(
            s.when(claim("evil", "growth", "services/ledger")),
            Err(Rejection::AlreadyExists(_))
        ));
        // The service aggregate's check follows the path.
        let mut refs = References::default();
        refs.insert_repository(claim_id(REPO), Some(claim_state));
        let at = |p: &str| SourceLocation {
            identity: REPO.into(),
            path: p.into(),
        };
        assert!(holds(&refs, &at("services/ledger"), &n("ledger")).is_ok());
        assert!(matches!(
            holds(&refs, &at("services/ledger"), &n("payments-api")),
            Err(Rejection::AlreadyExists(_))
        ));
        assert!(matches!(
            holds(&refs, &at(""), &n("payments-api")),
            Err(Rejection::AlreadyExists(_))
        ));
    }

    #[test]
    fn a_path_is_free_again_once_its_holders_retired_moved_or_never_came() {
        let at = Utc::now() - Duration::minutes(1);
        // Retired, or naming another repository by now.
        for holder in [
            service("old", "payments", URL, true),
            service(
                "old",
                "payments",
                "https://github.com/acme/elsewhere",
                false,
            ),
        ] {
            let mut s = scenario();
            s.now = at;
            let mut s = then(s, claim("old", "payments", ""));
            s.now = Utc::now();
            s.refs.insert_service(n("old"), holder);
            let events = s.when(claim("new", "growth", "")).unwrap();
            assert!(matches!(
                &events[..],
                [RepositoryEvent::Claimed { service, joins: false, .. }] if service.as_str() == "new"
            ));
            // A takeover: the old holder is gone from the path.
            let s = s.given(events);
            assert!(!s.state.unwrap().holds("", &n("old")));
        }
        // Never registered: the claim stands for the grace period, then not.
        let mut s = scenario();
        s.now = at;
        let mut s = then(s, claim("ghost", "payments", ""));
        s.refs.insert_service(n("ghost"), None);
        s.now = at + Duration::seconds(1);
        assert!(matches!(
            s.when(claim("new", "growth", "")),
            Err(Rejection::AlreadyExists(_))
        ));
        // Its own team may join it meanwhile.
        assert!(s.when(claim("sibling", "payments", "")).is_ok());
        s.now = at + CLAIM_GRACE + Duration::seconds(1);
        assert!(s.when(claim("new", "growth", "")).is_ok());
    }

    #[test]
    fn a_claim_recorded_before_paths_existed_reads_as_the_whole_repository() {
        let now = Utc::now();
        let old = |service: &str| RepositoryEvent::Claimed {
            identity: REPO.into(),
            path: String::new(),
            service: n(service),
            owner: None,
            claimed_at: now,
            joins: false,
        };
        // Each old claim replaced the one before.
        let s = scenario().given([old("first"), old("second")]);
        let c = s.state.clone().unwrap();
        assert!(c.holds("", &n("second")) && !c.holds("", &n("first")));
    }

    #[test]
    fn a_claim_remembers_its_github_id_once_and_keeps_it_for_the_next_holder() {
        let record = RepositoryCommand::RecordGithubId { github_id: 1296269 };
        assert!(matches!(
            scenario().when(record.clone()),
            Err(Rejection::NotFound(_))
        ));
        let s = then(scenario(), claim("ledger", "ledger", ""));
        let events = s.when(record.clone()).unwrap();
        assert!(matches!(
            events[..],
            [RepositoryEvent::GithubIdRecorded {
                github_id: 1296269,
                ..
            }]
        ));
        let s = s.given(events);
        assert!(s.when(record).unwrap().is_empty());
        let s = then(s, claim("ledger-v2", "ledger", "api"));
        assert_eq!(s.state.unwrap().github_id, Some(1296269));
    }

    #[test]
    fn readers_claim_nothing_and_a_claim_lives_at_its_repositorys_id() {
        let s = scenario().by(Principal::reader("auditor"));
        assert!(matches!(
            s.when(claim("x", "payments", "")),
            Err(Rejection::PermissionDenied(_))
        ));
        let s = Scenario::<Option<RepositoryClaim>>::new("repo-000000000000000000000000");
        assert!(matches!(
            s.when(claim("x", "payments", "")),
            Err(Rejection::Invalid(_))
        ));
    }
}
