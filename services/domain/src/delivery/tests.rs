//! Given / when / then tests of the delivery rules: the deployment state
//! machine, changes and incidents, and who may do what. Assertions are on
//! rejection variants, never on message text.

use chrono::Duration;

use super::*;
use crate::catalog::{Lifecycle, ServiceEvent, ServiceSpec, ServiceType};
use crate::principal::Principal;
use crate::scenario::{Scenario, invalid_fields, n, precondition};

impl<A: Aggregate> Scenario<A> {
    /// Service `name` owned by `owner`, live or retired.
    fn with_owned_service(self, name: &str, owner: &str, retired: bool) -> Self {
        self.with_service_in(name, owner, retired, "")
    }

    /// Service `name` whose repository URL is `repository`.
    fn with_service_in(mut self, name: &str, owner: &str, retired: bool, repository: &str) -> Self {
        let mut spec = ServiceSpec::new(ServiceType::Service, Lifecycle::Production);
        spec.repository_url = repository.into();
        let mut s: Option<Service> = None;
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
        self.refs.insert_service(n(name), s);
        self
    }

    fn without_service(mut self, name: &str) -> Self {
        self.refs.insert_service(n(name), None);
        self
    }

    /// Deployment `id` of `service`, requested through Paved.
    fn with_deployment(mut self, id: &str, service: &str) -> Self {
        let mut d: Option<Deployment> = None;
        d.evolve(&requested(id, service, self.now));
        self.refs.insert_deployment(n(id), d);
        self
    }

    fn without_deployment(mut self, id: &str) -> Self {
        self.refs.insert_deployment(n(id), None);
        self
    }
}

fn member(name: &str, team: &str) -> Principal {
    Principal::member(name, n(team))
}

fn target(service: &str) -> Target {
    Target {
        service: n(service),
        environment: n("production"),
        revision: "v2".into(),
        commits: Vec::new(),
        rollback_of: None,
    }
}

fn requested(id: &str, service: &str, at: DateTime<Utc>) -> DeploymentEvent {
    DeploymentEvent::Requested {
        id: n(id),
        target: target(service),
        requested_at: at,
    }
}

fn outcome(succeeded: bool, at: DateTime<Utc>) -> Outcome {
    Outcome {
        succeeded,
        finished_at: at,
        ..Default::default()
    }
}

fn started() -> DeploymentEvent {
    DeploymentEvent::Started {
        application: "ledger-production".into(),
        started_at: Utc::now(),
    }
}

fn start() -> DeploymentCommand {
    DeploymentCommand::Start {
        application: "ledger-production".into(),
        started_at: Utc::now(),
    }
}

fn denied<T: std::fmt::Debug>(r: Result<T, Rejection>) {
    assert!(
        matches!(r, Err(Rejection::PermissionDenied(_))),
        "expected permission denied, got {r:?}"
    );
}

// ---- deployments ----

#[test]
fn a_member_of_the_owning_team_requests_a_deployment() {
    let s = Scenario::<Option<Deployment>>::new("d-1")
        .with_owned_service("ledger", "payments", false)
        .by(member("alice", "payments"));
    let events = s
        .when(DeploymentCommand::Request(target("ledger")))
        .unwrap();
    assert!(matches!(&events[..], [DeploymentEvent::Requested { id, .. }] if id.as_str() == "d-1"));
}

#[test]
fn another_team_is_refused_before_anything_about_the_service_is_said() {
    for retired in [false, true] {
        let s = Scenario::<Option<Deployment>>::new("d-1")
            .with_owned_service("ledger", "payments", retired)
            .by(member("mallory", "growth"));
        denied(s.when(DeploymentCommand::Request(target("ledger"))));
    }
    // Its own team hears that the service is retired.
    let s = Scenario::<Option<Deployment>>::new("d-1")
        .with_owned_service("ledger", "payments", true)
        .by(member("alice", "payments"));
    assert!(matches!(
        precondition(s.when(DeploymentCommand::Request(target("ledger")))),
        Precondition::RetiredReference(_)
    ));
}

#[test]
fn a_deployment_of_a_missing_service_or_twice_is_refused() {
    let s = Scenario::<Option<Deployment>>::new("d-1").without_service("ledger");
    assert!(matches!(
        precondition(s.when(DeploymentCommand::Request(target("ledger")))),
        Precondition::MissingReference(_)
    ));
    let s = Scenario::<Option<Deployment>>::new("d-1")
        .with_owned_service("ledger", "payments", false)
        .given([requested("d-1", "ledger", Utc::now())]);
    assert!(matches!(
        s.when(DeploymentCommand::Request(target("ledger"))),
        Err(Rejection::AlreadyExists(_))
    ));
}

#[test]
fn a_deployment_goes_requested_started_finished_and_only_admins_move_it() {
    let s =
        Scenario::<Option<Deployment>>::new("d-1").given([requested("d-1", "ledger", Utc::now())]);
    denied(s.by(member("alice", "payments")).when(start()));
    let s =
        Scenario::<Option<Deployment>>::new("d-1").given([requested("d-1", "ledger", Utc::now())]);
    assert!(matches!(
        &s.when(start()).unwrap()[..],
        [DeploymentEvent::Started { .. }]
    ));
    // Started again (a retried worker step): nothing new.
    let s = s.given([started()]);
    assert!(s.when(start()).unwrap().is_empty());
    let done = s
        .when(DeploymentCommand::Finish(outcome(true, Utc::now())))
        .unwrap();
    assert!(matches!(&done[..], [DeploymentEvent::Succeeded(_)]));
    let s = s.given(done);
    assert_eq!(
        s.state.as_ref().unwrap().status,
        DeploymentStatus::Succeeded
    );
    // The same outcome again is a no-op; another one, or a start, is refused.
    assert!(
        s.when(DeploymentCommand::Finish(outcome(true, Utc::now())))
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        precondition(s.when(DeploymentCommand::Finish(outcome(false, Utc::now())))),
        Precondition::Finished(_)
    ));
    assert!(matches!(
        precondition(s.when(start())),
        Precondition::Finished(_)
    ));
}

#[test]
fn a_step_of_a_deployment_that_does_not_exist_is_not_found() {
    let s = Scenario::<Option<Deployment>>::new("d-9");
    assert!(matches!(s.when(start()), Err(Rejection::NotFound(_))));
    assert!(matches!(
        s.when(DeploymentCommand::Finish(outcome(true, Utc::now()))),
        Err(Rejection::NotFound(_))
    ));
}

#[test]
fn a_recorded_deployment_has_real_times() {
    let s =
        Scenario::<Option<Deployment>>::new("d-1").with_owned_service("ledger", "payments", false);
    let now = s.now;
    let record = |started: DateTime<Utc>, finished: DateTime<Utc>| DeploymentCommand::Record {
        target: target("ledger"),
        source: "pipeline".into(),
        started_at: started,
        outcome: outcome(true, finished),
    };
    let events = s.when(record(now - Duration::minutes(5), now)).unwrap();
    assert!(matches!(&events[..], [DeploymentEvent::Recorded { .. }]));
    assert_eq!(
        invalid_fields(s.when(record(now, now - Duration::minutes(1)))),
        ["outcome.finished_at"]
    );
    let later = now + Duration::hours(1);
    assert_eq!(
        invalid_fields(s.when(record(later, later))),
        ["outcome.finished_at", "started_at"]
    );
}

// ---- changes ----

fn change(service: &str, committed: DateTime<Utc>, merged: Option<DateTime<Utc>>) -> ChangeCommand {
    ChangeCommand::Record(ChangeSpec {
        service: n(service),
        authored_at: None,
        committed_at: committed,
        merged_at: merged,
        pr_number: 0,
        pr_url: String::new(),
        author: String::new(),
        title: "fix".into(),
        backfill: false,
    })
}

/// The merged pull request behind `SHA`, as GitHub's `pull_request` event tells it.
fn pull_request(service: &str, created: DateTime<Utc>, merged: DateTime<Utc>) -> ChangeCommand {
    ChangeCommand::Record(ChangeSpec {
        service: n(service),
        authored_at: Some(created),
        committed_at: created,
        merged_at: Some(merged),
        pr_number: 42,
        pr_url: "https://github.com/acme/ledger/pull/42".into(),
        author: "ana".into(),
        title: "Faster ledger".into(),
        backfill: false,
    })
}

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

#[test]
fn a_change_merged_before_it_was_committed_is_invalid() {
    let s = Scenario::<Option<Change>>::new(SHA).with_owned_service("ledger", "payments", false);
    let now = s.now;
    assert_eq!(
        invalid_fields(s.when(change("ledger", now, Some(now - Duration::hours(1))))),
        ["merged_at"]
    );
    assert!(
        s.when(change("ledger", now - Duration::hours(1), Some(now)))
            .is_ok()
    );
}

#[test]
fn a_change_is_recorded_once_for_one_service_by_its_team() {
    let s = Scenario::<Option<Change>>::new(SHA)
        .with_owned_service("ledger", "payments", false)
        .with_owned_service("fx", "payments", false);
    let now = s.now;
    let events = s.when(change("ledger", now, None)).unwrap();
    denied(
        Scenario::<Option<Change>>::new(SHA)
            .with_owned_service("ledger", "payments", false)
            .by(member("mallory", "growth"))
            .when(change("ledger", now, None)),
    );
    let s = s.given(events);
    assert!(s.when(change("ledger", now, None)).unwrap().is_empty());
    assert!(matches!(
        s.when(change("fx", now, None)),
        Err(Rejection::AlreadyExists(_))
    ));
}

#[test]
fn a_push_and_its_pull_request_end_the_same_whichever_comes_first() {
    let s = Scenario::<Option<Change>>::new(SHA).with_owned_service("ledger", "payments", false);
    let now = s.now;
    let created = now - Duration::days(2);
    let push = change(
        "ledger",
        now - Duration::minutes(1),
        Some(now - Duration::minutes(1)),
    );
    let pr = pull_request("ledger", created, now - Duration::minutes(1));
    // The push first: the pull request then replaces its account.
    let pushed = s.when(push.clone()).unwrap();
    let s1 = Scenario::<Option<Change>>::new(SHA)
        .with_owned_service("ledger", "payments", false)
        .given(pushed);
    let linked = s1.when(pr.clone()).unwrap();
    assert!(matches!(
        linked[..],
        [ChangeEvent::PullRequestLinked { .. }]
    ));
    let s1 = s1.given(linked);
    // Linked once: the same pull request again, or the push again, adds nothing.
    assert!(s1.when(pr.clone()).unwrap().is_empty());
    assert!(s1.when(push.clone()).unwrap().is_empty());
    // The pull request first: the push adds nothing.
    let s2 = Scenario::<Option<Change>>::new(SHA).with_owned_service("ledger", "payments", false);
    let recorded = s2.when(pr).unwrap();
    let s2 = s2.given(recorded);
    assert!(s2.when(push).unwrap().is_empty());
    assert_eq!(s1.state, s2.state);
    let c = &s1.state.unwrap().services[&n("ledger")];
    assert_eq!((c.committed_at, c.pr_number), (created, 42));
}

const MONO: &str = "https://github.com/acme/mono/tree/main/services";

#[test]
fn a_monorepo_commit_is_a_change_of_each_service_it_touches_and_a_fork_is_refused() {
    let s = Scenario::<Option<Change>>::new(SHA)
        .with_service_in("ledger", "payments", false, &format!("{MONO}/ledger"))
        .with_service_in("fx", "treasury", false, &format!("{MONO}/fx"))
        .with_service_in("fork", "growth", false, "https://github.com/mallory/mono");
    let now = s.now;
    let events = s.when(change("ledger", now, None)).unwrap();
    // The same commit for a service of the same repository: a change of its own.
    let s = s.given(events).by(member("tess", "treasury"));
    let events = s.when(change("fx", now, None)).unwrap();
    assert!(
        matches!(&events[..], [ChangeEvent::Recorded { spec, .. }] if spec.service.as_str() == "fx")
    );
    let s = s.given(events);
    assert_eq!(s.state.as_ref().unwrap().services.len(), 2);
    // Another repository's service (a fork): refused, naming the first one.
    assert!(matches!(
        s.by(member("mallory", "growth")).when(change("fork", now, None)),
        Err(Rejection::AlreadyExists(what)) if what.contains("another repository")
    ));
}

#[test]
fn a_monorepos_pull_request_and_its_push_end_the_same_whichever_comes_first() {
    let base = || {
        Scenario::<Option<Change>>::new(SHA)
            .with_service_in("ledger", "payments", false, &format!("{MONO}/ledger"))
            .with_service_in("fx", "treasury", false, &format!("{MONO}/fx"))
    };
    let now = base().now;
    let created = now - Duration::days(2);
    let pr = ChangeCommand::NotePullRequest(PullRequestAccount {
        number: 7,
        url: "https://github.com/acme/mono/pull/7".into(),
        created_at: created,
        merged_at: Some(now - Duration::minutes(1)),
        author: "ana".into(),
        title: "Both".into(),
    });
    let push = |service: &str| change(service, now - Duration::minutes(1), None);
    // The pull request first: the pushes take its account.
    let mut s1 = base();
    for command in [pr.clone(), push("ledger"), push("fx")] {
        let events = s1.when(command).unwrap();
        s1 = s1.given(events);
    }
    // The pushes first: the pull request links both.
    let mut s2 = base();
    for command in [push("ledger"), push("fx")] {
        let events = s2.when(command).unwrap();
        s2 = s2.given(events);
    }
    let linked = s2.when(pr.clone()).unwrap();
    assert_eq!(linked.len(), 3, "noted, then linked to each: {linked:?}");
    let s2 = s2.given(linked);
    assert_eq!(s1.state, s2.state);
    for c in s1.state.as_ref().unwrap().services.values() {
        assert_eq!((c.committed_at, c.pr_number), (created, 7));
    }
    // Again: nothing new. Only admins (the webhook) note pull requests.
    assert!(s1.when(pr.clone()).unwrap().is_empty());
    denied(base().by(member("ana", "payments")).when(pr));
}

#[test]
fn history_arrives_as_backfill() {
    let now = chrono::Utc::now();
    assert!(!is_backfill(now - Duration::days(2), now, false));
    assert!(is_backfill(now - Duration::days(2), now, true));
    assert!(is_backfill(
        now - BACKFILL_AGE - Duration::hours(1),
        now,
        false
    ));
}

// ---- incidents ----

fn open(services: &[&str], caused_by: Option<&str>, at: DateTime<Utc>) -> IncidentCommand {
    IncidentCommand::Open {
        title: "ledger down".into(),
        services: services.iter().map(|s| n(s)).collect(),
        severity: "sev2".into(),
        started_at: at,
        caused_by: caused_by.map(n),
    }
}

fn opened(services: &[&str], at: DateTime<Utc>) -> IncidentEvent {
    IncidentEvent::Opened {
        id: n("inc-1"),
        title: "ledger down".into(),
        services: services.iter().map(|s| n(s)).collect(),
        severity: "sev2".into(),
        started_at: at,
    }
}

fn bad_reference(p: Precondition) -> (String, bool) {
    match p {
        Precondition::BadReference { field, why, .. } => (field, why.is_empty()),
        other => panic!("expected a bad reference, got {other:?}"),
    }
}

#[test]
fn incidents_follow_the_ownership_of_every_service_they_name() {
    let s = Scenario::<Option<Incident>>::new("inc-1")
        .with_owned_service("ledger", "payments", false)
        .with_owned_service("ads", "growth", false);
    let now = s.now;
    assert!(
        s.by(member("alice", "payments"))
            .when(open(&["ledger"], None, now))
            .is_ok()
    );
    let s = Scenario::<Option<Incident>>::new("inc-1")
        .with_owned_service("ledger", "payments", false)
        .with_owned_service("ads", "growth", false)
        .by(member("mallory", "growth"));
    denied(s.when(open(&["ledger"], None, now)));
    denied(s.when(open(&["ads", "ledger"], None, now)));
    // Once open, another team can neither link nor resolve it.
    let s = s
        .given([opened(&["ledger"], now)])
        .with_deployment("d-1", "ledger");
    denied(s.when(IncidentCommand::Link {
        deployment: n("d-1"),
    }));
    denied(s.when(IncidentCommand::Resolve { resolved_at: now }));
}

#[test]
fn an_incident_links_only_a_deployment_that_exists_and_deployed_one_of_its_services() {
    let s = Scenario::<Option<Incident>>::new("inc-1")
        .with_owned_service("ledger", "payments", false)
        .with_owned_service("fx", "payments", false)
        .with_deployment("d-fx", "fx")
        .with_deployment("d-1", "ledger")
        .without_deployment("d-typo");
    let now = s.now;
    let opened_with = |d: &str| s.when(open(&["ledger"], Some(d), now));
    assert_eq!(
        bad_reference(precondition(opened_with("d-typo"))),
        ("caused_by_deployment".to_owned(), true)
    );
    assert_eq!(
        bad_reference(precondition(opened_with("d-fx"))),
        ("caused_by_deployment".to_owned(), false)
    );
    let events = opened_with("d-1").unwrap();
    assert!(matches!(
        &events[..],
        [IncidentEvent::Opened { .. }, IncidentEvent::Linked { .. }]
    ));

    let s = s.given([opened(&["ledger"], now)]);
    let link = |d: &str| s.when(IncidentCommand::Link { deployment: n(d) });
    assert_eq!(
        bad_reference(precondition(link("d-typo"))),
        ("deployment".to_owned(), true)
    );
    assert_eq!(
        bad_reference(precondition(link("d-fx"))),
        ("deployment".to_owned(), false)
    );
    let linked = link("d-1").unwrap();
    let s = s.given(linked);
    assert!(
        s.when(IncidentCommand::Link {
            deployment: n("d-1"),
        })
        .unwrap()
        .is_empty()
    );
}

#[test]
fn an_incident_resolves_once_and_not_before_it_started() {
    let s =
        Scenario::<Option<Incident>>::new("inc-1").with_owned_service("ledger", "payments", false);
    let now = s.now;
    let s = s.given([opened(&["ledger"], now - Duration::hours(2))]);
    assert_eq!(
        invalid_fields(s.when(IncidentCommand::Resolve {
            resolved_at: now - Duration::hours(3),
        })),
        ["resolved_at"]
    );
    let done = s
        .when(IncidentCommand::Resolve { resolved_at: now })
        .unwrap();
    let s = s.given(done);
    assert!(
        s.when(IncidentCommand::Resolve { resolved_at: now })
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        precondition(s.when(IncidentCommand::Resolve {
            resolved_at: now - Duration::hours(1),
        })),
        Precondition::Finished(_)
    ));
}

#[test]
fn an_incident_of_a_missing_service_is_refused_and_readers_change_nothing() {
    let s = Scenario::<Option<Incident>>::new("inc-1").without_service("ledger");
    let now = s.now;
    assert!(matches!(
        precondition(s.when(open(&["ledger"], None, now))),
        Precondition::MissingReference(_)
    ));
    let s = Scenario::<Option<Incident>>::new("inc-1")
        .with_owned_service("ledger", "payments", false)
        .by(Principal::reader("auditor"));
    denied(s.when(open(&["ledger"], None, now)));
}

#[test]
fn a_deployment_that_fails_before_it_started_never_started() {
    let s =
        Scenario::<Option<Deployment>>::new("d-1").given([requested("d-1", "ledger", Utc::now())]);
    let failed = s
        .when(DeploymentCommand::Finish(outcome(false, Utc::now())))
        .unwrap();
    let s = s.given(failed);
    assert_eq!(
        s.state.as_ref().unwrap().status,
        DeploymentStatus::NotStarted
    );
    assert!(s.state.as_ref().unwrap().status.finished());
    // One that started and then failed is a failed deployment.
    let s = Scenario::<Option<Deployment>>::new("d-2")
        .given([requested("d-2", "ledger", Utc::now()), started()]);
    let failed = s
        .when(DeploymentCommand::Finish(outcome(false, Utc::now())))
        .unwrap();
    assert_eq!(
        s.given(failed).state.unwrap().status,
        DeploymentStatus::Failed
    );
}
