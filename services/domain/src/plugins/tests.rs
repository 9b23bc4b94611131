//! Given / when / then for the marketplace and installations.

use super::installation::*;
use super::marketplace::*;
use crate::catalog::{Team, TeamProfile};
use crate::principal::Principal;
use crate::rejection::{Precondition, Rejection};
use crate::scenario::{Scenario, invalid_fields, n, precondition};
use crate::scope::{Area, Scope};

fn team(name: &str) -> Team {
    Team {
        name: n(name),
        profile: TeamProfile::default(),
        parent: None,
        members: Default::default(),
        retired: None,
    }
}

fn manifest(version: &str) -> Manifest {
    Manifest {
        version: version.into(),
        publisher: n("platform"),
        title: "Backstage".into(),
        description: "Shows Paved's catalog in Backstage.".into(),
        homepage: "https://example.com/backstage".into(),
        scopes: vec![Scope::Read(Area::Catalog), Scope::Events("catalog")],
        event_types: vec!["ServiceRegistered".into()],
        delivery: Delivery::Pull,
    }
}

fn market() -> Scenario<PluginListing> {
    let mut s = Scenario::<PluginListing>::new("backstage");
    s.refs.insert_team(n("platform"), Some(team("platform")));
    s.refs.insert_team(n("payments"), Some(team("payments")));
    s
}

#[test]
fn a_publishing_teams_member_publishes_and_the_same_version_again_changes_nothing() {
    let s = market().by(Principal::member("ada", n("platform")));
    let events = s.when(PluginCommand::Publish(manifest("1.0.0"))).unwrap();
    assert_eq!(events, vec![PluginEvent::Published(manifest("1.0.0"))]);
    let s = s.given(events);
    assert_eq!(
        s.when(PluginCommand::Publish(manifest("1.0.0"))).unwrap(),
        vec![]
    );
    let mut other = manifest("1.0.0");
    other.description = "Something else.".into();
    assert!(matches!(
        s.when(PluginCommand::Publish(other)),
        Err(Rejection::AlreadyExists(_))
    ));
}

#[test]
fn another_team_or_a_reader_may_not_publish_and_bad_manifests_are_refused_by_field() {
    let s = market().by(Principal::member("eve", n("payments")));
    assert!(matches!(
        s.when(PluginCommand::Publish(manifest("1.0.0"))),
        Err(Rejection::PermissionDenied(_))
    ));
    let s = market().by(Principal::reader("rob"));
    assert!(matches!(
        s.when(PluginCommand::Publish(manifest("1.0.0"))),
        Err(Rejection::PermissionDenied(_))
    ));
    let mut bad = manifest("one");
    bad.scopes = vec![Scope::Respond];
    bad.event_types = vec!["NoSuchEvent".into()];
    bad.delivery = Delivery::Webhook {
        url: "ftp://x".into(),
    };
    let fields = invalid_fields(market().when(PluginCommand::Publish(bad)));
    assert_eq!(
        fields,
        [
            "manifest.version",
            "manifest.scopes[0]",
            "manifest.event_types[0]",
            "manifest.webhook_url"
        ]
    );
    let mut unknown = manifest("1.0.0");
    unknown.publisher = n("ghosts");
    assert!(matches!(
        precondition(market().when(PluginCommand::Publish(unknown))),
        Precondition::BadReference { .. }
    ));
}

#[test]
fn a_yanked_version_cannot_be_installed_and_a_deprecated_one_can() {
    let listing = market()
        .given([
            PluginEvent::Published(manifest("1.0.0")),
            PluginEvent::Published(manifest("1.1.0")),
        ])
        .given(
            market()
                .given([
                    PluginEvent::Published(manifest("1.0.0")),
                    PluginEvent::Published(manifest("1.1.0")),
                ])
                .when(PluginCommand::Yank {
                    version: "1.0.0".into(),
                    reason: "leaks tokens".into(),
                })
                .unwrap(),
        );
    let deprecate = listing
        .when(PluginCommand::Deprecate {
            version: "1.1.0".into(),
            reason: "use 2".into(),
        })
        .unwrap();
    let listing = listing.given(deprecate);
    assert_eq!(listing.state.latest().unwrap().manifest.version, "1.1.0");

    let mut s = Scenario::<Installation>::new("backstage");
    s.refs.insert_plugin(n("backstage"), listing.state.clone());
    let grant = |version: &str| Grant {
        plugin: n("backstage"),
        version: version.into(),
        scopes: vec![Scope::Read(Area::Catalog)],
        team: None,
    };
    assert!(matches!(
        precondition(s.when(InstallationCommand::Install(grant("1.0.0")))),
        Precondition::State { .. }
    ));
    assert_eq!(
        s.when(InstallationCommand::Install(grant("1.1.0")))
            .unwrap(),
        vec![InstallationEvent::Installed(grant("1.1.0"))]
    );
}

fn installed() -> Scenario<Installation> {
    let listing = market().given([
        PluginEvent::Published(manifest("1.0.0")),
        PluginEvent::Published({
            let mut m = manifest("2.0.0");
            m.scopes.push(Scope::Write(Area::Catalog));
            m
        }),
    ]);
    let mut s = Scenario::<Installation>::new("backstage");
    s.refs.insert_plugin(n("backstage"), listing.state);
    s.refs.insert_team(n("platform"), Some(team("platform")));
    s.given([InstallationEvent::Installed(Grant {
        plugin: n("backstage"),
        version: "1.0.0".into(),
        scopes: vec![Scope::Read(Area::Catalog)],
        team: None,
    })])
}

#[test]
fn only_admins_install_and_a_grant_is_a_subset_of_what_the_version_asks() {
    let mut s = Scenario::<Installation>::new("backstage");
    s.refs.insert_plugin(
        n("backstage"),
        market()
            .given([PluginEvent::Published(manifest("1.0.0"))])
            .state,
    );
    let grant = Grant {
        plugin: n("backstage"),
        version: "1.0.0".into(),
        scopes: vec![Scope::Write(Area::Catalog)],
        team: None,
    };
    assert_eq!(
        invalid_fields(s.when(InstallationCommand::Install(grant.clone()))),
        ["scopes[0]"]
    );
    let s = s.by(Principal::member("ada", n("platform")));
    assert!(matches!(
        s.when(InstallationCommand::Install(grant)),
        Err(Rejection::PermissionDenied(_))
    ));
    let missing = Scenario::<Installation>::new("x").when(InstallationCommand::Install(Grant {
        plugin: n("nothing"),
        version: "1.0.0".into(),
        scopes: vec![],
        team: None,
    }));
    assert!(matches!(
        precondition(missing),
        Precondition::BadReference { .. }
    ));
}

#[test]
fn an_upgrade_keeps_the_grant_unless_given_a_new_one() {
    let s = installed();
    let kept = s
        .when(InstallationCommand::Upgrade {
            version: "2.0.0".into(),
            scopes: None,
        })
        .unwrap();
    assert_eq!(
        kept,
        vec![InstallationEvent::Upgraded {
            version: "2.0.0".into(),
            scopes: vec![Scope::Read(Area::Catalog)]
        }]
    );
    let wider = s
        .when(InstallationCommand::Upgrade {
            version: "2.0.0".into(),
            scopes: Some(vec![
                Scope::Write(Area::Catalog),
                Scope::Read(Area::Catalog),
            ]),
        })
        .unwrap();
    assert_eq!(
        wider,
        vec![InstallationEvent::Upgraded {
            version: "2.0.0".into(),
            scopes: vec![Scope::Read(Area::Catalog), Scope::Write(Area::Catalog)]
        }]
    );
    // 1.0.0 does not ask for catalog:write.
    assert_eq!(
        invalid_fields(s.when(InstallationCommand::Upgrade {
            version: "1.0.0".into(),
            scopes: Some(vec![Scope::Write(Area::Catalog)]),
        })),
        ["scopes[0]"]
    );
}

#[test]
fn the_cursor_moves_forward_only_by_the_plugins_own_token_and_stops_at_uninstall() {
    let s = installed().by(Principal::reader("plugin:backstage"));
    let ack = |n| InstallationCommand::Acknowledge { sequence: n };
    let events = s.when(ack(10)).unwrap();
    assert_eq!(
        events,
        vec![InstallationEvent::Acknowledged { sequence: 10 }]
    );
    let s = s.given(events);
    assert_eq!(s.state.cursor, 10);
    assert_eq!(s.when(ack(7)).unwrap(), vec![]);
    assert_eq!(s.when(ack(10)).unwrap(), vec![]);
    let other = installed().by(Principal::reader("plugin:other"));
    assert!(matches!(
        other.when(ack(11)),
        Err(Rejection::PermissionDenied(_))
    ));
    let admin = installed().by(Principal::admin("root"));
    assert!(matches!(
        admin.when(ack(11)),
        Err(Rejection::PermissionDenied(_))
    ));

    let gone = installed()
        .given([InstallationEvent::Uninstalled {
            reason: "replaced".into(),
        }])
        .by(Principal::reader("plugin:backstage"));
    assert!(matches!(
        precondition(gone.when(ack(12))),
        Precondition::State { .. }
    ));
    let gone = gone.by(Principal::admin("root"));
    assert_eq!(
        gone.when(InstallationCommand::Uninstall {
            reason: "again".into()
        })
        .unwrap(),
        vec![]
    );
    assert!(matches!(
        precondition(gone.when(InstallationCommand::Upgrade {
            version: "2.0.0".into(),
            scopes: None
        })),
        Precondition::State { .. }
    ));
}

fn attempt(sequence: u64, status: u32) -> Attempt {
    Attempt {
        sequence,
        status,
        error: "busy".into(),
    }
}

#[test]
fn webhook_reports_come_from_the_worker_and_count_attempts_to_the_dead_letters() {
    let worker = installed().by(Principal::reader(WEBHOOK_WORKER));
    let at = worker.now;
    let failed = |seq, retry| InstallationCommand::Failed {
        attempt: attempt(seq, 503),
        retry_at: retry,
    };
    // Only the worker reports.
    let admin = installed().by(Principal::admin("root"));
    assert!(matches!(
        admin.when(failed(5, Some(at))),
        Err(Rejection::PermissionDenied(_))
    ));
    let first = worker.when(failed(5, Some(at))).unwrap();
    assert!(matches!(
        first[..],
        [InstallationEvent::WebhookAttemptFailed { number: 1, .. }]
    ));
    let worker = worker.given(first);
    let second = worker.when(failed(5, Some(at))).unwrap();
    assert!(matches!(
        second[..],
        [InstallationEvent::WebhookAttemptFailed { number: 2, .. }]
    ));
    let worker = worker.given(second);
    // The last attempt: a dead letter, and the cursor moves past it.
    let dead = worker.when(failed(5, None)).unwrap();
    assert!(matches!(
        dead[..],
        [
            InstallationEvent::WebhookDeadLettered { attempts: 3, .. },
            InstallationEvent::Acknowledged { sequence: 5 }
        ]
    ));
    let worker = worker.given(dead);
    assert_eq!(worker.state.cursor, 5);
    assert!(worker.state.failing.is_none());
    // A report about what is behind the cursor changes nothing.
    assert_eq!(worker.when(failed(4, Some(at))).unwrap(), vec![]);
    // Replays: admins ask, once at a time; the worker's outcome is kept.
    let admin = worker.by(Principal::admin("root"));
    assert!(matches!(
        admin.when(InstallationCommand::Replay { sequence: 9 }),
        Err(Rejection::NotFound(_))
    ));
    let asked = admin
        .when(InstallationCommand::Replay { sequence: 5 })
        .unwrap();
    let admin = admin.given(asked);
    assert_eq!(
        admin
            .when(InstallationCommand::Replay { sequence: 5 })
            .unwrap(),
        vec![]
    );
    let worker = admin.by(Principal::reader(WEBHOOK_WORKER));
    let replayed = worker
        .when(InstallationCommand::Replayed {
            attempt: attempt(5, 200),
            delivered: true,
        })
        .unwrap();
    let worker = worker.given(replayed);
    let d = &worker.state.dead_letters[&5];
    assert!(d.delivered && !d.replay_pending && d.replays == 1);
}

#[test]
fn gone_disables_until_an_upgrade_even_to_the_same_version() {
    let worker = installed().by(Principal::reader(WEBHOOK_WORKER));
    let off = worker
        .when(InstallationCommand::Disable {
            attempt: attempt(7, 410),
        })
        .unwrap();
    let s = worker.given(off).by(Principal::admin("root"));
    assert!(s.state.disabled.is_some());
    let on = s
        .when(InstallationCommand::Upgrade {
            version: "1.0.0".into(),
            scopes: None,
        })
        .unwrap();
    let s = s.given(on);
    assert!(s.state.disabled.is_none());
    assert_eq!(
        s.when(InstallationCommand::Upgrade {
            version: "1.0.0".into(),
            scopes: None,
        })
        .unwrap(),
        vec![],
        "enabled and the same: nothing"
    );
}

#[test]
fn a_rotation_is_an_admins_event_with_a_bounded_overlap() {
    let s = installed();
    assert_eq!(
        s.when(InstallationCommand::RotateToken {
            overlap_seconds: 60
        })
        .unwrap(),
        vec![InstallationEvent::TokenRotated {
            overlap_seconds: 60
        }]
    );
    assert_eq!(
        invalid_fields(s.when(InstallationCommand::RotateToken {
            overlap_seconds: MAX_OVERLAP_SECONDS + 1
        })),
        ["overlap_seconds"]
    );
    let member = installed().by(Principal::member("ada", n("platform")));
    assert!(matches!(
        member.when(InstallationCommand::RotateToken { overlap_seconds: 0 }),
        Err(Rejection::PermissionDenied(_))
    ));
}
