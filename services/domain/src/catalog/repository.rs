//! Repository claims: a source repository belongs to at most one live
//! service. Uniqueness across services comes from invariant 2, as for names:
//! each repository has an aggregate of its own (id from a digest of its
//! identity) whose state names the service holding it, and a service may
//! name a repository only while it holds its claim.
//!
//! A claim is taken first, then the service's command (which checks it)
//! runs. A claim whose holder never came to exist (its registration failed
//! or the process crashed between the two) stands for [`CLAIM_GRACE`], then
//! anyone may take it; so does the claim of a retired service, or of one
//! that names another repository by now.

use chrono::{DateTime, Duration, Utc};

use super::ServiceSpec;
use crate::aggregate::{Aggregate, AggregateKind, AggregateRef, Context, References};
use crate::event::Event;
use crate::name::Name;
use crate::rejection::{Precondition, Rejection};

/// The annotation Backstage uses for a service's GitHub repository.
pub const GITHUB_SLUG_ANNOTATION: &str = "github.com/project-slug";
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
    pub service: Name,
    pub claimed_at: DateTime<Utc>,
    /// GitHub's numeric id of the repository, once a webhook named it: a
    /// renamed repository keeps mapping to its service.
    pub github_id: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepositoryCommand {
    /// `service` takes the repository `identity`.
    Claim { identity: String, service: Name },
    /// GitHub says the claimed repository has the numeric id `github_id`.
    RecordGithubId { github_id: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepositoryEvent {
    Claimed {
        identity: String,
        service: Name,
        claimed_at: DateTime<Utc>,
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

/// Does `holder` still stand in the way of another service taking the claim?
fn stands(claim: &RepositoryClaim, refs: &References, now: DateTime<Utc>) -> bool {
    match refs.service(&claim.service) {
        // Not there (yet): its registration may be on its way.
        None => now < claim.claimed_at + CLAIM_GRACE,
        Some(s) => {
            s.retired.is_none() && service_repository(&s.spec).as_deref() == Some(&claim.identity)
        }
    }
}

/// Does `service` hold the claim on `identity`? What the service aggregate
/// checks before it names a repository.
pub fn holds(refs: &References, identity: &str, service: &Name) -> Result<(), Rejection> {
    match refs.repository(&claim_id(identity)) {
        Some(c) if &c.service == service => Ok(()),
        Some(c) => Err(Rejection::AlreadyExists(format!(
            "repository {identity} (service {} has it)",
            c.service
        ))),
        None => Err(Rejection::Precondition(Precondition::MissingReference(
            claim_ref(identity),
        ))),
    }
}

impl Aggregate for Option<RepositoryClaim> {
    const KIND: AggregateKind = AggregateKind::Repository;
    type Command = RepositoryCommand;
    type Event = RepositoryEvent;

    fn references(&self, command: &RepositoryCommand, _: &References) -> Vec<AggregateRef> {
        let RepositoryCommand::Claim { service, .. } = command else {
            return Vec::new();
        };
        match self {
            Some(c) if &c.service != service => vec![AggregateRef::service(&c.service)],
            _ => Vec::new(),
        }
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
        let (identity, service) = match (command, self) {
            (RepositoryCommand::Claim { identity, service }, _) => (identity, service),
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
        match self {
            Some(c) if &c.service == service => Ok(Vec::new()),
            Some(c) if stands(c, ctx.refs, ctx.now) => Err(Rejection::AlreadyExists(format!(
                "repository {identity} (service {} has it)",
                c.service
            ))),
            _ => Ok(vec![RepositoryEvent::Claimed {
                identity: identity.clone(),
                service: service.clone(),
                claimed_at: ctx.now,
            }]),
        }
    }

    fn evolve(&mut self, event: &RepositoryEvent) {
        match event {
            RepositoryEvent::Claimed {
                identity,
                service,
                claimed_at,
            } => {
                // A new holder: the repository is the same, so is its GitHub id.
                let github_id = self.as_ref().and_then(|c| c.github_id);
                *self = Some(RepositoryClaim {
                    identity: identity.clone(),
                    service: service.clone(),
                    claimed_at: *claimed_at,
                    github_id,
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

    fn service(name: &str, repo: &str, retired: bool) -> Option<Service> {
        let mut spec = ServiceSpec::new(ServiceType::Service, Lifecycle::Production);
        spec.repository_url = repo.into();
        let mut s = None;
        s.evolve(&ServiceEvent::Registered {
            name: n(name),
            owner: n("payments"),
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

    fn claim(service: &str) -> RepositoryCommand {
        RepositoryCommand::Claim {
            identity: REPO.into(),
            service: n(service),
        }
    }

    fn claimed(by: &str, at: DateTime<Utc>) -> RepositoryEvent {
        RepositoryEvent::Claimed {
            identity: REPO.into(),
            service: n(by),
            claimed_at: at,
        }
    }

    fn scenario() -> Scenario<Option<RepositoryClaim>> {
        Scenario::new(claim_id(REPO).as_str())
    }

    #[test]
    fn a_repository_held_by_a_live_service_cannot_be_claimed_by_another() {
        let s = scenario();
        let now = s.now;
        let first = s.when(claim("payments-api")).unwrap();
        let mut s = s.given(first);
        // The holder again: nothing new.
        assert!(s.when(claim("payments-api")).unwrap().is_empty());
        s.refs.insert_service(
            n("payments-api"),
            service(
                "payments-api",
                "https://github.com/acme/payments-api",
                false,
            ),
        );
        let s = s.by(Principal::member("mallory", n("growth")));
        assert!(matches!(
            s.when(claim("fake")),
            Err(Rejection::AlreadyExists(_))
        ));
        let _ = now;
    }

    #[test]
    fn a_claim_is_free_again_once_its_holder_retired_moved_or_never_came() {
        let at = Utc::now() - Duration::minutes(1);
        // Retired, or naming another repository by now.
        for holder in [
            service("old", "https://github.com/acme/payments-api", true),
            service("old", "https://github.com/acme/elsewhere", false),
        ] {
            let mut s = scenario().given([claimed("old", at)]);
            s.refs.insert_service(n("old"), holder);
            assert!(matches!(
                &s.when(claim("new")).unwrap()[..],
                [RepositoryEvent::Claimed { service, .. }] if service.as_str() == "new"
            ));
        }
        // Never registered: the claim stands for the grace period, then not.
        let mut s = scenario().given([claimed("ghost", at)]);
        s.refs.insert_service(n("ghost"), None);
        assert!(matches!(
            s.when(claim("new")),
            Err(Rejection::AlreadyExists(_))
        ));
        s.now = at + CLAIM_GRACE + Duration::seconds(1);
        assert!(s.when(claim("new")).is_ok());
    }

    #[test]
    fn a_claim_remembers_its_github_id_once_and_keeps_it_for_the_next_holder() {
        let now = Utc::now();
        let record = RepositoryCommand::RecordGithubId { github_id: 1296269 };
        assert!(matches!(
            scenario().when(record.clone()),
            Err(Rejection::NotFound(_))
        ));
        let s = scenario().given([claimed("ledger", now)]);
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
        let s = s.given([claimed("ledger-v2", now)]);
        assert_eq!(s.state.unwrap().github_id, Some(1296269));
    }

    #[test]
    fn readers_claim_nothing_and_a_claim_lives_at_its_repositorys_id() {
        let s = scenario().by(Principal::reader("auditor"));
        assert!(matches!(
            s.when(claim("x")),
            Err(Rejection::PermissionDenied(_))
        ));
        let s = Scenario::<Option<RepositoryClaim>>::new("repo-000000000000000000000000");
        assert!(matches!(s.when(claim("x")), Err(Rejection::Invalid(_))));
    }
}
