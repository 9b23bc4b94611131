//! Golden history: commits written by the first schema version, kept in the
//! repository, must keep decoding and folding to the same states with
//! today's code (like Temporal's replay tests). Regenerate only on purpose:
//! `PAVED_WRITE_GOLDEN=1 cargo test -p paved-eventlog --test golden`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use paved_domain::catalog::{
    Criticality, Lifecycle, Link, Objective, Service, ServiceEvent, ServiceSpec, ServiceType, Slo,
    SpecField, System, SystemEvent, Team, TeamEvent, TeamProfile,
};
use paved_domain::surveys::{Answers, Audience, ResponseContent, Survey, SurveyEvent, SurveySpec};
use paved_domain::{Aggregate, AggregateKind, Event, Name};
use paved_eventlog::codec::{Commit, SealError, check_seal, decode_commit, encode_commit};
use sha2::{Digest, Sha256};

fn n(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/history-v1.bin")
}

/// The history the fixture was written from: every event type at least once.
fn history() -> Vec<Commit> {
    let t0: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut spec = ServiceSpec::new(ServiceType::Service, Lifecycle::Production);
    spec.description = "Takes the money".into();
    spec.tags = vec!["rust".into()];
    spec.labels = BTreeMap::from([("tier".into(), "1".into())]);
    spec.annotations = BTreeMap::from([("argocd/app-name".into(), "payments".into())]);
    spec.links = vec![Link {
        url: "https://docs.example.com".into(),
        title: "Docs".into(),
    }];
    spec.tier = Some(1);
    spec.system = Some(n("billing"));
    let mut updated = spec.clone();
    updated.description = "Takes and returns the money".into();
    let events: Vec<(AggregateKind, &str, Vec<Event>)> = vec![
        (
            AggregateKind::Team,
            "platform",
            vec![
                TeamEvent::Created {
                    name: n("platform"),
                    profile: TeamProfile::default(),
                    parent: None,
                }
                .into(),
            ],
        ),
        (
            AggregateKind::Team,
            "payments",
            vec![
                TeamEvent::Created {
                    name: n("payments"),
                    profile: TeamProfile {
                        display_name: "Payments".into(),
                        email: "pay@example.com".into(),
                        chat_channel: "#pay".into(),
                    },
                    parent: None,
                }
                .into(),
                TeamEvent::MemberAdded {
                    member: "alice".into(),
                }
                .into(),
                TeamEvent::MemberAdded {
                    member: "bob".into(),
                }
                .into(),
            ],
        ),
        (
            AggregateKind::Team,
            "payments",
            vec![
                TeamEvent::ProfileUpdated {
                    profile: TeamProfile {
                        display_name: "Payments team".into(),
                        email: "pay@example.com".into(),
                        chat_channel: "#payments".into(),
                    },
                }
                .into(),
            ],
        ),
        (
            AggregateKind::Team,
            "payments",
            vec![
                TeamEvent::ParentChanged {
                    parent: Some(n("platform")),
                }
                .into(),
            ],
        ),
        (
            AggregateKind::Team,
            "payments",
            vec![
                TeamEvent::MemberRemoved {
                    member: "bob".into(),
                }
                .into(),
            ],
        ),
        (
            AggregateKind::System,
            "billing",
            vec![
                SystemEvent::Created {
                    name: n("billing"),
                    owner: n("payments"),
                    display_name: "Billing".into(),
                    description: "Money".into(),
                }
                .into(),
            ],
        ),
        (
            AggregateKind::System,
            "billing",
            vec![
                SystemEvent::Updated {
                    display_name: "Billing system".into(),
                    description: "Money in, money out".into(),
                }
                .into(),
            ],
        ),
        (
            AggregateKind::System,
            "billing",
            vec![
                SystemEvent::OwnershipTransferred {
                    from: n("payments"),
                    to: n("platform"),
                }
                .into(),
            ],
        ),
        (
            AggregateKind::Service,
            "ledger",
            vec![
                ServiceEvent::Registered {
                    name: n("ledger"),
                    owner: n("payments"),
                    spec: ServiceSpec::new(ServiceType::Library, Lifecycle::Experimental),
                }
                .into(),
            ],
        ),
        (
            AggregateKind::Service,
            "payments-api",
            vec![
                ServiceEvent::Registered {
                    name: n("payments-api"),
                    owner: n("payments"),
                    spec,
                }
                .into(),
            ],
        ),
        (
            AggregateKind::Service,
            "payments-api",
            vec![
                ServiceEvent::Updated {
                    spec: updated,
                    fields: vec![SpecField::Description],
                }
                .into(),
            ],
        ),
        (
            AggregateKind::Service,
            "payments-api",
            vec![
                ServiceEvent::DependencyAdded {
                    on: n("ledger"),
                    criticality: Some(Criticality::High),
                }
                .into(),
            ],
        ),
        (
            AggregateKind::Service,
            "payments-api",
            vec![
                ServiceEvent::SloSet {
                    slo: Slo {
                        name: n("availability"),
                        objective: Objective::Availability {
                            target_percent: 99.9,
                        },
                        window_days: 28,
                    },
                }
                .into(),
            ],
        ),
        (
            AggregateKind::Service,
            "payments-api",
            vec![
                ServiceEvent::SloSet {
                    slo: Slo {
                        name: n("latency"),
                        objective: Objective::Latency {
                            percentile: 99.0,
                            threshold_ms: 300,
                        },
                        window_days: 7,
                    },
                }
                .into(),
            ],
        ),
        (
            AggregateKind::Service,
            "payments-api",
            vec![ServiceEvent::SloRemoved { name: n("latency") }.into()],
        ),
        (
            AggregateKind::Service,
            "payments-api",
            vec![
                ServiceEvent::OwnershipTransferred {
                    from: n("payments"),
                    to: n("platform"),
                }
                .into(),
            ],
        ),
        (
            AggregateKind::Service,
            "ledger",
            vec![
                ServiceEvent::Deprecated {
                    reason: "use ledger-v2".into(),
                }
                .into(),
            ],
        ),
        (
            AggregateKind::Service,
            "payments-api",
            vec![ServiceEvent::DependencyRemoved { on: n("ledger") }.into()],
        ),
        (
            AggregateKind::Service,
            "ledger",
            vec![
                ServiceEvent::Retired {
                    reason: "replaced".into(),
                }
                .into(),
            ],
        ),
        (
            AggregateKind::System,
            "billing",
            vec![
                SystemEvent::Retired {
                    reason: "merged".into(),
                }
                .into(),
            ],
        ),
        (
            AggregateKind::Team,
            "platform",
            vec![
                TeamEvent::Retired {
                    reason: "reorg".into(),
                }
                .into(),
            ],
        ),
        (
            AggregateKind::Survey,
            "devex",
            vec![
                SurveyEvent::Created {
                    id: n("devex"),
                    spec: SurveySpec {
                        title: "Developer experience".into(),
                        nps_question: "Recommend?".into(),
                        comment_question: Some("Why?".into()),
                        scale_questions: vec!["Easy to deploy".into()],
                        audience: Audience::Teams([n("payments")].into()),
                        opens_at: t0,
                        closes_at: t0 + Duration::days(14),
                        trigger: Some("ServiceRegistered".into()),
                    },
                }
                .into(),
            ],
        ),
        (
            AggregateKind::Survey,
            "devex",
            vec![
                // The first schema version stored responses in the clear.
                SurveyEvent::ResponseSubmitted {
                    pseudonym: "p1".into(),
                    content: ResponseContent::Plain {
                        team: Some(n("payments")),
                        answers: Answers {
                            nps: 9,
                            comment: "good".into(),
                            scales: vec![4],
                        },
                    },
                    replaces: false,
                }
                .into(),
            ],
        ),
        (
            AggregateKind::Survey,
            "devex",
            vec![
                SurveyEvent::Closed {
                    at: t0 + Duration::days(3),
                }
                .into(),
            ],
        ),
    ];
    events
        .into_iter()
        .enumerate()
        .map(|(i, (kind, id, events))| Commit {
            kind,
            aggregate_id: n(id),
            command_id: format!("golden-{i}"),
            principal: if i % 2 == 0 {
                "admin".into()
            } else {
                "alice".into()
            },
            occurred_at: t0 + Duration::minutes(i as i64),
            correlation_id: format!("corr-{}", i / 3),
            causation_id: String::new(),
            traceparent: String::new(),
            tracestate: String::new(),
            reason: String::new(),
            events,
            prev_hash: Vec::new(),
            hash: Vec::new(),
            command_fingerprint: Vec::new(),
        })
        .collect()
}

fn write(commits: &[Commit]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in commits {
        let bytes = encode_commit(c);
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

fn read(mut bytes: &[u8]) -> Vec<Commit> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        out.push(decode_commit(&bytes[4..4 + len]).expect("a stored v1 commit decodes"));
        bytes = &bytes[4 + len..];
    }
    out
}

#[derive(Default)]
struct States {
    teams: BTreeMap<Name, Option<Team>>,
    systems: BTreeMap<Name, Option<System>>,
    services: BTreeMap<Name, Option<Service>>,
    surveys: BTreeMap<Name, Option<Survey>>,
}

fn fold<A: Aggregate>(map: &mut BTreeMap<Name, A>, c: &Commit) {
    let state = map.entry(c.aggregate_id.clone()).or_default();
    for e in &c.events {
        if let Some(e) = A::select(e) {
            state.evolve(e);
        }
    }
}

fn digest(commits: &[Commit]) -> String {
    let mut s = States::default();
    for c in commits {
        match c.kind {
            AggregateKind::Team => fold(&mut s.teams, c),
            AggregateKind::System => fold(&mut s.systems, c),
            AggregateKind::Service => fold(&mut s.services, c),
            AggregateKind::Survey => fold(&mut s.surveys, c),
            // Not in the first schema version.
            _ => {}
        }
    }
    let text = format!(
        "{:?}\n{:?}\n{:?}\n{:?}",
        s.teams, s.systems, s.services, s.surveys
    );
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[test]
fn the_first_schema_versions_history_still_replays_to_the_same_state() {
    if std::env::var_os("PAVED_WRITE_GOLDEN").is_some() {
        std::fs::write(fixture(), write(&history())).unwrap();
    }
    let stored = std::fs::read(fixture()).expect("tests/fixtures/history-v1.bin");
    let commits = read(&stored);
    assert_eq!(commits.len(), 24);
    let types: std::collections::BTreeSet<&str> = commits
        .iter()
        .flat_map(|c| c.events.iter().map(Event::type_name))
        .collect();
    // The first schema version's event types (later ones append to the list).
    assert_eq!(
        types,
        Event::TYPE_NAMES[..22].iter().copied().collect(),
        "every event type of the first version is in the fixture"
    );
    // Decoding is lossless: today's encoder writes the same bytes.
    assert_eq!(write(&commits), stored);
    assert_eq!(digest(&commits), GOLDEN_DIGEST);
}

#[test]
fn sealed_commits_chain_per_aggregate_and_any_changed_byte_breaks_the_seal() {
    // The v1 fixture predates hash chains: its commits carry none.
    let stored = std::fs::read(fixture()).expect("tests/fixtures/history-v1.bin");
    assert!(read(&stored).iter().all(|c| c.hash.is_empty()));

    let mut last: BTreeMap<(AggregateKind, Name), Vec<u8>> = BTreeMap::new();
    for (i, mut c) in history().into_iter().enumerate() {
        // Half of them with a command fingerprint: field 16, stored after the hash.
        if i % 2 == 0 {
            c.command_fingerprint = vec![i as u8; 16];
        }
        let prev = last.entry((c.kind, c.aggregate_id.clone())).or_default();
        c.seal(prev);
        assert!(c.hash_ok());
        let bytes = encode_commit(&c);
        let seal = check_seal(&bytes).expect("a sealed commit checks");
        assert_eq!(
            &seal.prev_hash, prev,
            "chained to the aggregate's previous commit"
        );
        assert_eq!(seal.hash, c.hash);
        prev.clone_from(&c.hash);
        // Flipping any one bit of the stored bytes is caught (or no longer decodes).
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            match check_seal(&bad) {
                Err(SealError::Mismatch | SealError::Protobuf(_) | SealError::Unsealed) => {}
                Ok(s) => panic!("flipped byte {i} of {} passed: {s:?}", bytes.len()),
            }
        }
        // Bytes appended after the hash (an unknown field) are caught too.
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0x98, 0x06, 0x01]); // field 99 = 1
        assert!(check_seal(&longer).is_err());
        // So is a second hash record, even one carrying the right hash.
        let mut twice = bytes.clone();
        twice.extend_from_slice(&[15 << 3 | 2, 32]);
        twice.extend_from_slice(&c.hash);
        assert!(check_seal(&twice).is_err());
        // And a fingerprint changed after sealing.
        let mut other = c.clone();
        other.command_fingerprint = vec![0xee; 16];
        assert!(matches!(
            check_seal(&encode_commit(&other)),
            Err(SealError::Mismatch)
        ));
    }
}

/// The state digest of the fixture, recorded when it was written.
///
/// Re-recorded on purpose (the stored bytes are unchanged each time): when a
/// survey's state stopped keeping each respondent's team (only pseudonyms,
/// for the one-response rule) as responses became sealed; and when `Name`'s
/// `Debug` became the plain string (`"payments"`, not `Name("payments")`).
const GOLDEN_DIGEST: &str = "fc1d84b03a264078d940d23f2148c2cf1f6b2ed9f003ccfa0c48c6296ee1b925";

#[test]
fn events_added_since_the_first_version_decode_to_what_was_encoded() {
    use paved_domain::catalog::{EntityEvent, EntityRef, RepositoryEvent};
    use paved_domain::delivery::{ChangeEvent, PullRequestAccount};
    let at: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-12-01T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let free = ServiceSpec::new(
        ServiceType::Other("documentation".into()),
        Lifecycle::Other("beta".into()),
    );
    let cases: Vec<(AggregateKind, &str, Event)> = vec![
        (
            AggregateKind::Service,
            "handbook",
            ServiceEvent::Registered {
                name: n("handbook"),
                owner: n("payments"),
                spec: free,
            }
            .into(),
        ),
        (
            AggregateKind::Entity,
            "api-artistlookup-0123456789",
            EntityEvent::Stored {
                entity_ref: EntityRef {
                    kind: "API".into(),
                    namespace: "ops".into(),
                    name: "ArtistLookup".into(),
                },
                document: serde_json::json!({"apiVersion": "backstage.io/v1alpha1", "kind": "API",
                    "metadata": {"name": "ArtistLookup", "namespace": "ops"},
                    "spec": {"owner": "group:artists", "definition": "openapi: 3.0.0"}}),
            }
            .into(),
        ),
        (
            AggregateKind::Change,
            "0123456789abcdef0123456789abcdef01234567",
            ChangeEvent::PullRequestNoted {
                sha: n("0123456789abcdef0123456789abcdef01234567"),
                pull_request: PullRequestAccount {
                    number: 7,
                    url: "https://github.com/acme/mono/pull/7".into(),
                    created_at: at,
                    merged_at: Some(at + Duration::hours(1)),
                    author: "octocat".into(),
                    title: "Both".into(),
                },
            }
            .into(),
        ),
        (
            AggregateKind::Repository,
            "repo-000000000000000000000000",
            RepositoryEvent::Claimed {
                identity: "github.com/acme/mono".into(),
                path: "services/pay".into(),
                service: n("pay-api"),
                owner: Some(n("payments")),
                claimed_at: at,
                joins: true,
            }
            .into(),
        ),
    ];
    use paved_domain::provisioning::{
        Action, Approval, Approver, Plan, PlannedFile, ProvisioningEvent as P, ResourceKind,
        ResourceSpec,
    };
    let spec = ResourceSpec {
        kind: ResourceKind::Postgres,
        environment: n("production"),
        service: Some(n("payments-api")),
        size: "small".into(),
    };
    let provisioning = [
        P::Requested {
            number: 1,
            spec,
            action: Action::Create,
            requested_by: "alice".into(),
        },
        P::Planned {
            number: 1,
            plan: Plan {
                base: "0123456789abcdef0123456789abcdef01234567".into(),
                files: vec![
                    PlannedFile {
                        path: "terraform/a/main.tf.json".into(),
                        content: Some("{}\n".into()),
                    },
                    PlannedFile {
                        path: "terraform/a/old.tf.json".into(),
                        content: None,
                    },
                    PlannedFile {
                        path: "terraform/a/empty.tf.json".into(),
                        content: Some(String::new()),
                    },
                ],
                diff: "--- a\n+++ b\n".into(),
                drift: vec!["terraform/a/main.tf.json".into()],
            },
            approval: Approval {
                approver: Approver::Admin,
                self_approval: false,
            },
        },
        P::Approved {
            number: 1,
            by: "erin".into(),
            reason: "ok".into(),
            automatic: false,
        },
        P::Rejected {
            number: 2,
            by: "bob".into(),
            reason: "no".into(),
        },
        P::ApplyStarted { number: 1 },
        P::Applied {
            number: 1,
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
        },
        P::Verified { number: 1 },
        P::Failed {
            number: 3,
            reason: "render failed".into(),
        },
    ];
    use paved_domain::templates::library::{TemplateEvent, TemplateVersion};
    use paved_domain::templates::task::{StepDef, TaskEvent, Upgrade};
    let template = TemplateEvent::Published(TemplateVersion {
        version: 2,
        document: serde_json::json!({"apiVersion": "scaffolder.backstage.io/v1beta3",
            "kind": "Template", "metadata": {"name": "rest-api"}, "spec": {"owner": "platform", "steps": []}}),
        files: vec![
            ("skeleton/README.md".into(), "# ${{ values.name }}\n".into()),
            ("skeleton/empty".into(), String::new()),
        ],
        digest: "ab".repeat(32),
    });
    let parameters: serde_json::Map<String, serde_json::Value> = serde_json::from_value(
        serde_json::json!({"name": "payments-api", "replicas": 3, "db": true}),
    )
    .unwrap();
    let task = vec![
        TaskEvent::Created {
            template: n("rest-api"),
            version: 2,
            team: n("payments"),
            parameters: parameters.clone(),
            steps: vec![StepDef {
                id: "fetch".into(),
                name: "Render".into(),
                action: "fetch:template".into(),
            }],
            upgrade: None,
        },
        TaskEvent::Created {
            template: n("rest-api"),
            version: 3,
            team: n("payments"),
            parameters,
            steps: vec![],
            upgrade: Some(Upgrade {
                service: n("payments-api"),
                from_version: 2,
            }),
        },
        TaskEvent::StepStarted {
            step: "fetch".into(),
            attempt: 2,
        },
        TaskEvent::StepFinished {
            step: "fetch".into(),
            output: serde_json::json!({"files": ["a", "b"]}),
            log: "rendered 2 files".into(),
        },
        TaskEvent::StepFinished {
            step: "log".into(),
            output: serde_json::Value::Null,
            log: String::new(),
        },
        TaskEvent::StepSkipped {
            step: "db".into(),
            why: "if: false".into(),
        },
        TaskEvent::StepFailed {
            step: "publish".into(),
            reason: "refused".into(),
            log: "git push: refused".into(),
        },
        TaskEvent::Retried {
            step: "publish".into(),
        },
        TaskEvent::Completed {
            output: serde_json::json!({"links": [{"url": "x"}]}),
        },
    ];
    use paved_domain::Scope;
    use paved_domain::plugins::installation::{Attempt, Grant, InstallationEvent};
    use paved_domain::plugins::marketplace::{Delivery, Manifest, PluginEvent};
    use paved_domain::scope::Area;
    let manifest = |delivery| Manifest {
        version: "1.2.3-rc.1+build.5".into(),
        publisher: n("platform"),
        title: "Chat".into(),
        description: "Posts deployments.".into(),
        homepage: "https://example.com".into(),
        scopes: vec![Scope::Read(Area::Delivery), Scope::Events("delivery")],
        event_types: vec!["DeploymentSucceeded".into()],
        delivery,
    };
    let plugin = vec![
        PluginEvent::Published(manifest(Delivery::Pull)),
        PluginEvent::Published(manifest(Delivery::Webhook {
            url: "https://chat.example.com/hook".into(),
        })),
        PluginEvent::Deprecated {
            version: "1.0.0".into(),
            reason: "old".into(),
        },
        PluginEvent::Yanked {
            version: "1.0.1".into(),
            reason: "broken".into(),
        },
    ];
    let installation = vec![
        InstallationEvent::Installed(Grant {
            plugin: n("chat"),
            version: "1.2.3".into(),
            scopes: vec![Scope::Read(Area::Delivery)],
            team: Some(n("payments")),
        }),
        InstallationEvent::Installed(Grant {
            plugin: n("chat"),
            version: "1.2.3".into(),
            scopes: vec![],
            team: None,
        }),
        InstallationEvent::Upgraded {
            version: "2.0.0".into(),
            scopes: vec![Scope::Write(Area::Catalog), Scope::Events("ops")],
        },
        InstallationEvent::Acknowledged { sequence: 42 },
        InstallationEvent::WebhookAttemptFailed {
            attempt: Attempt {
                sequence: 43,
                status: 503,
                error: "busy".into(),
            },
            number: 2,
            retry_at: at,
        },
        InstallationEvent::WebhookDeadLettered {
            attempt: Attempt {
                sequence: 43,
                status: 0,
                error: "connection refused".into(),
            },
            attempts: 8,
        },
        InstallationEvent::WebhookEndpointDisabled {
            attempt: Attempt {
                sequence: 44,
                status: 410,
                error: String::new(),
            },
        },
        InstallationEvent::WebhookReplayRequested { sequence: 43 },
        InstallationEvent::TokenRotated {
            overlap_seconds: 3600,
        },
        InstallationEvent::WebhookReplayed {
            attempt: Attempt {
                sequence: 43,
                status: 200,
                error: String::new(),
            },
            delivered: true,
        },
        InstallationEvent::Uninstalled {
            reason: "replaced".into(),
        },
    ];
    let cases = cases
        .into_iter()
        .chain(
            plugin
                .into_iter()
                .map(|e| (AggregateKind::Plugin, "chat", e.into())),
        )
        .chain(
            installation
                .into_iter()
                .map(|e| (AggregateKind::Installation, "chat-payments", e.into())),
        )
        .chain(
            provisioning
                .into_iter()
                .map(|e| (AggregateKind::Tenancy, "payments", e.into())),
        )
        .chain(std::iter::once((
            AggregateKind::Template,
            "rest-api",
            template.into(),
        )))
        .chain(
            task.into_iter()
                .map(|e| (AggregateKind::Task, "rest-api-0123456789ab", e.into())),
        );
    for (kind, id, event) in cases {
        let c = Commit {
            kind,
            aggregate_id: n(id),
            command_id: "new-kinds".into(),
            principal: "admin".into(),
            occurred_at: at,
            correlation_id: String::new(),
            causation_id: String::new(),
            traceparent: String::new(),
            tracestate: String::new(),
            reason: String::new(),
            events: vec![event.clone()],
            prev_hash: Vec::new(),
            hash: Vec::new(),
            command_fingerprint: Vec::new(),
        };
        let bytes = encode_commit(&c);
        let back = decode_commit(&bytes).expect("decodes");
        assert_eq!(back.events, [event], "{id}");
        assert_eq!(encode_commit(&back), bytes, "{id}: canonical");
    }
}
