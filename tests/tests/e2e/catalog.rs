//! The catalog through the SDK: commands, then reads with `min_sequence`.

use paved_sdk::pb;
use tonic::Code;

use crate::helpers::{fixtures, spawn_app};

#[tokio::test]
async fn a_registered_service_is_visible_with_min_sequence() {
    let app = spawn_app().await;
    let c = &app.client;
    c.create_team(fixtures::team("payments")).await.unwrap();
    let mut req = fixtures::service("payments-api", "payments");
    req.spec.as_mut().unwrap().docs_url = "https://docs.example.com/payments-api".into();
    req.spec.as_mut().unwrap().tags = vec!["rust".into()];
    let done = c.register_service(req).await.unwrap();
    assert_eq!(done.events, 1);

    let s = c
        .at(done.sequence)
        .get_service("payments-api")
        .await
        .unwrap();
    assert_eq!(s.owner, "payments");
    assert_eq!(s.sequence, done.sequence);
    let spec = s.spec.unwrap();
    assert_eq!(spec.docs_url, "https://docs.example.com/payments-api");
    assert_eq!(spec.tags, ["rust"]);
    let team = c.at(done.sequence).get_team("payments").await.unwrap();
    assert_eq!(team.services, 1);
}

#[tokio::test]
async fn dependencies_show_both_ways_and_slos_are_first_class() {
    let app = spawn_app().await;
    let c = &app.client;
    c.create_team(fixtures::team("payments")).await.unwrap();
    for s in ["checkout", "ledger", "fx"] {
        c.register_service(fixtures::service(s, "payments"))
            .await
            .unwrap();
    }
    for (from, to) in [("checkout", "ledger"), ("ledger", "fx")] {
        c.add_dependency(pb::AddDependencyRequest {
            service: from.into(),
            depends_on: to.into(),
            criticality: pb::Criticality::High.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let done = c
        .set_slo(pb::SetSloRequest {
            service: "ledger".into(),
            slo: Some(pb::Slo {
                name: "latency".into(),
                objective: Some(pb::slo::Objective::Latency(pb::LatencyObjective {
                    percentile: 99.0,
                    threshold_ms: 250,
                })),
                window_days: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap();

    let ledger = c.at(done.sequence).get_service("ledger").await.unwrap();
    assert_eq!(ledger.dependencies.len(), 1);
    assert_eq!(ledger.dependencies[0].service, "fx");
    assert_eq!(ledger.dependents.len(), 1);
    assert_eq!(ledger.dependents[0].service, "checkout");
    assert_eq!(ledger.slos.len(), 1);
    assert_eq!(ledger.slos[0].window_days, 28, "0 means the default window");

    let graph = c
        .at(done.sequence)
        .dependency_graph(pb::GetDependencyGraphRequest {
            service: "fx".into(),
            direction: pb::GraphDirection::Downstream.into(),
            depth: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    let nodes: Vec<(&str, i32)> = graph
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.distance))
        .collect();
    assert_eq!(nodes, [("fx", 0), ("ledger", 1), ("checkout", 2)]);
    assert_eq!(graph.edges.len(), 2);

    let depth1 = c
        .at(done.sequence)
        .dependency_graph(pb::GetDependencyGraphRequest {
            service: "checkout".into(),
            direction: pb::GraphDirection::Upstream.into(),
            depth: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(depth1.nodes.len(), 2, "checkout and ledger, not fx");
}

#[tokio::test]
async fn list_filters_and_pages() {
    let app = spawn_app().await;
    let c = &app.client;
    c.create_team(fixtures::team("payments")).await.unwrap();
    c.create_team(fixtures::team("search")).await.unwrap();
    let mut last = 0;
    for i in 0..7 {
        let owner = if i % 2 == 0 { "payments" } else { "search" };
        let mut req = fixtures::service(&format!("svc-{i}"), owner);
        if i < 3 {
            req.spec.as_mut().unwrap().tags = vec!["edge".into()];
        }
        last = c.register_service(req).await.unwrap().sequence;
    }
    let r = c.at(last);
    let payments = r
        .list_all_services(pb::ListServicesRequest {
            owner: "payments".into(),
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let names: Vec<_> = payments.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["svc-0", "svc-2", "svc-4", "svc-6"]);

    let first = r
        .list_services(pb::ListServicesRequest {
            page_size: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first.services.len(), 3);
    assert!(!first.next_page_token.is_empty());

    let tagged = r
        .list_all_services(pb::ListServicesRequest {
            tag: "edge".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(tagged.len(), 3);
}

#[tokio::test]
async fn business_rules_map_to_status_codes() {
    let app = spawn_app().await;
    let c = &app.client;
    c.create_team(fixtures::team("payments")).await.unwrap();
    c.register_service(fixtures::service("ledger", "payments"))
        .await
        .unwrap();

    let again = c
        .register_service(fixtures::service("ledger", "payments"))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);

    // An owner not in the catalog yet is taken from an admin (as Backstage
    // takes it) and shown as missing; a retired one is refused.
    let pending = c
        .register_service(fixtures::service("fx", "ghosts"))
        .await
        .unwrap();
    let fx = c.at(pending.sequence).get_service("fx").await.unwrap();
    assert_eq!(fx.missing, ["group:default/ghosts"]);
    c.create_team(fixtures::team("old")).await.unwrap();
    c.retire_team(pb::RetireTeamRequest {
        name: "old".into(),
        reason: "merged".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let retired_owner = c
        .register_service(fixtures::service("fy", "old"))
        .await
        .unwrap_err();
    assert_eq!(retired_owner.code(), Code::FailedPrecondition);

    let missing = c
        .deprecate_service(pb::DeprecateServiceRequest {
            name: "nope".into(),
            reason: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    c.retire_service(pb::RetireServiceRequest {
        name: "ledger".into(),
        reason: "replaced by ledger-v2".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let after = app.last_sequence().await;
    let retired = c
        .deprecate_service(pb::DeprecateServiceRequest {
            name: "ledger".into(),
            reason: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(retired.code(), Code::FailedPrecondition);
    assert_eq!(app.last_sequence().await, after, "nothing appended");

    let s = c.at(after).get_service("ledger").await.unwrap();
    assert!(s.retired);
    assert_eq!(s.retired_reason, "replaced by ledger-v2");
}

#[tokio::test]
async fn an_update_replaces_only_the_masked_fields() {
    let app = spawn_app().await;
    let c = &app.client;
    c.create_team(fixtures::team("payments")).await.unwrap();
    let mut req = fixtures::service("ledger", "payments");
    req.spec.as_mut().unwrap().description = "Books".into();
    req.spec.as_mut().unwrap().tags = vec!["java".into()];
    c.register_service(req).await.unwrap();
    let done = c
        .update_service(pb::UpdateServiceRequest {
            name: "ledger".into(),
            spec: Some(pb::ServiceSpec {
                description: "Double-entry books".into(),
                tags: vec!["rust".into()],
                ..Default::default()
            }),
            update_mask: Some(paved_proto::wkt::FieldMask {
                paths: vec!["description".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let spec = c
        .at(done.sequence)
        .get_service("ledger")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(spec.description, "Double-entry books");
    assert_eq!(spec.tags, ["java"], "tags were not in the mask");
    assert_eq!(spec.lifecycle, i32::from(pb::Lifecycle::Production));
}

#[tokio::test]
async fn catalog_health_counts_what_the_seed_measured() {
    let app = spawn_app().await;
    let c = &app.client;
    c.create_team(fixtures::team("payments")).await.unwrap();
    c.create_team(fixtures::team("legacy")).await.unwrap();
    let mut documented = fixtures::service("ledger", "payments");
    documented.spec.as_mut().unwrap().docs_url = "https://docs.example.com/ledger".into();
    c.register_service(documented).await.unwrap();
    c.register_service(fixtures::service("old-fx", "payments"))
        .await
        .unwrap();
    c.register_service(fixtures::service("cron", "legacy"))
        .await
        .unwrap();
    c.add_dependency(pb::AddDependencyRequest {
        service: "ledger".into(),
        depends_on: "old-fx".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    c.deprecate_service(pb::DeprecateServiceRequest {
        name: "old-fx".into(),
        reason: "use fx-v2".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let done = c
        .retire_team(pb::RetireTeamRequest {
            name: "legacy".into(),
            reason: "merged into payments".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let h = c.at(done.sequence).catalog_health("").await.unwrap();
    let all = h.overall.unwrap();
    assert_eq!(all.services, 3);
    assert_eq!(all.without_docs, 2);
    assert_eq!(all.without_slo, 3);
    assert_eq!(all.orphaned, 1, "cron's owner is retired");
    assert_eq!(all.deprecated, 1);
    assert_eq!(all.deprecated_depended_upon, 1);
    let payments = h.teams.iter().find(|t| t.team == "payments").unwrap();
    assert_eq!(payments.services, 2);
    assert!((payments.without_docs_percent - 50.0).abs() < 1e-9);
}

#[tokio::test]
async fn a_drained_shutdown_and_a_restart_keep_everything() {
    let mut app = spawn_app().await;
    app.client
        .create_team(fixtures::team("payments"))
        .await
        .unwrap();
    let done = app
        .client
        .register_service(fixtures::service("ledger", "payments"))
        .await
        .unwrap();
    app.client
        .at(done.sequence)
        .get_service("ledger")
        .await
        .unwrap();
    app.stop().await.expect("a clean, drained stop");

    // Same stream, same database: the log and the read models are still there,
    // and no second admin token is minted.
    let again = paved::Application::build(app.settings.clone(), paved::Roles::ALL)
        .await
        .unwrap();
    assert!(again.admin_token().is_none());
    let url = format!("http://127.0.0.1:{}", again.port());
    let stop = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(again.run_until_stopped(stop.clone()));
    let client = paved_sdk::Client::connect(url, &app.admin_token)
        .await
        .unwrap();
    let s = client
        .at(done.sequence)
        .get_service("ledger")
        .await
        .unwrap();
    assert_eq!(s.owner, "payments");
    let next = client
        .register_service(fixtures::service("fx", "payments"))
        .await
        .unwrap();
    assert!(next.sequence > done.sequence);
    client.at(next.sequence).get_service("fx").await.unwrap();
    stop.cancel();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn metrics_are_exposed_for_prometheus() {
    let app = spawn_app().await;
    let done = app
        .client
        .create_team(fixtures::team("payments"))
        .await
        .unwrap();
    app.client
        .at(done.sequence)
        .get_team("payments")
        .await
        .unwrap();
    let _ = app.client.create_team(fixtures::team("payments")).await;
    let body = app.scrape().await;
    assert!(
        body.contains("paved_commands_total{outcome=\"applied\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("paved_commands_total{outcome=\"rejected\"} 1"),
        "{body}"
    );
    assert!(
        body.contains(&format!("paved_log_last_sequence {}", done.sequence)),
        "{body}"
    );
    assert!(
        body.contains("paved_projection_checkpoint{projection=\"catalog\"}"),
        "{body}"
    );
    assert!(
        body.contains("paved_projection_healthy{projection=\"catalog\"} 1"),
        "{body}"
    );
    assert!(body.contains("# EOF"), "OpenMetrics text ends with # EOF");
}

/// Reads the service, adds `tag`, writes it back with the version it read;
/// on a stale version, reads again and retries. Returns how many tries it took.
async fn add_tag(c: &paved_sdk::Client, tag: String) -> usize {
    for attempt in 1.. {
        let svc = c.at(0).get_service("ledger").await.unwrap();
        let mut tags = svc.spec.unwrap().tags;
        tags.push(tag.clone());
        let r = c
            .update_service(pb::UpdateServiceRequest {
                name: "ledger".into(),
                spec: Some(pb::ServiceSpec {
                    tags,
                    ..Default::default()
                }),
                update_mask: Some(paved_proto::wkt::FieldMask {
                    paths: vec!["tags".into()],
                }),
                expected_version: Some(svc.sequence),
                ..Default::default()
            })
            .await;
        match r {
            Ok(done) => {
                // Read our own write before the next client reads.
                c.at(done.sequence).get_service("ledger").await.unwrap();
                return attempt;
            }
            Err(e) if e.code() == Code::Aborted => {
                let current = e
                    .current_version()
                    .expect("the current version in the details");
                assert!(current > svc.sequence, "{current} vs {}", svc.sequence);
            }
            Err(e) => panic!("{e}"),
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_modify_write_with_expected_version_loses_no_change() {
    let app = spawn_app().await;
    let c = &app.client;
    c.create_team(fixtures::team("payments")).await.unwrap();
    let made = c
        .register_service(fixtures::service("ledger", "payments"))
        .await
        .unwrap();
    c.at(made.sequence).get_service("ledger").await.unwrap();
    let mut tasks = Vec::new();
    // 30 writers (a service takes at most 32 tags).
    for i in 0..30 {
        let c = c.clone();
        tasks.push(tokio::spawn(
            async move { add_tag(&c, format!("t{i}")).await },
        ));
    }
    let mut retried = 0;
    for t in tasks {
        retried += usize::from(t.await.unwrap() > 1);
    }
    let last = app.last_sequence().await;
    let tags = c
        .at(last)
        .get_service("ledger")
        .await
        .unwrap()
        .spec
        .unwrap()
        .tags;
    assert_eq!(tags.len(), 30, "every client's change is there: {tags:?}");
    assert!(
        retried > 0,
        "30 concurrent writers met at least one stale read"
    );
}

#[tokio::test]
async fn a_stale_or_wrong_expected_version_is_aborted_and_appends_nothing() {
    let app = spawn_app().await;
    let c = &app.client;
    // 0 means "must not exist yet".
    let team = c
        .create_team(pb::CreateTeamRequest {
            expected_version: Some(0),
            ..fixtures::team("payments")
        })
        .await
        .unwrap();
    let again = c
        .create_team(pb::CreateTeamRequest {
            expected_version: Some(0),
            ..fixtures::team("payments")
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::Aborted);
    assert_eq!(again.current_version(), Some(team.sequence));
    let member = |v: u64, id: &str| pb::AddTeamMemberRequest {
        request_id: id.into(),
        team: "payments".into(),
        member: "alice".into(),
        expected_version: Some(v),
    };
    let added = c
        .add_team_member(member(team.sequence, "add-alice"))
        .await
        .unwrap();
    let last = app.last_sequence().await;
    // A stale version: refused, with the current one, and nothing appended.
    let stale = c
        .add_team_member(pb::AddTeamMemberRequest {
            member: "bob".into(),
            ..member(team.sequence, "add-bob")
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    assert_eq!(stale.current_version(), Some(added.sequence));
    assert_eq!(app.last_sequence().await, last);
    // A retry of the command that went through is its answer, even though
    // its version is stale by now.
    assert_eq!(
        c.add_team_member(member(team.sequence, "add-alice"))
            .await
            .unwrap(),
        added
    );
    // A cold replica (nothing cached) judges against the log.
    let cold = paved_eventlog::Executor::new(app.open_log().await, 10);
    let mut meta =
        paved_eventlog::CommandMeta::new("cold-1", paved_domain::Principal::admin("admin"));
    meta.expected_version = Some(team.sequence);
    let r = cold
        .execute::<Option<paved_domain::catalog::Team>>(
            &paved_domain::Name::parse("payments").unwrap(),
            &paved_domain::catalog::TeamCommand::AddMember {
                member: "carol".into(),
            },
            &meta,
        )
        .await;
    assert!(
        matches!(r, Err(paved_eventlog::ExecuteError::VersionMismatch { current, .. }) if current == added.sequence),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_service_is_never_older_than_the_catalog_it_was_read_from() {
    let app = spawn_app().await;
    let c = &app.client;
    c.create_team(fixtures::team("payments")).await.unwrap();
    let done = c
        .register_service(fixtures::service("ledger", "payments"))
        .await
        .unwrap();
    // Read it often: later reads come from the cache.
    for _ in 0..20 {
        let s = c.at(done.sequence).get_service("ledger").await.unwrap();
        assert_eq!(s.sequence, done.sequence);
    }
    // A change of the service, and one of another entity: both move the catalog on.
    let mut seen = done.sequence;
    for description in ["first", "second", "third"] {
        let updated = c
            .update_service(pb::UpdateServiceRequest {
                name: "ledger".into(),
                spec: Some(pb::ServiceSpec {
                    description: description.into(),
                    ..Default::default()
                }),
                update_mask: Some(paved_proto::wkt::FieldMask {
                    paths: vec!["description".into()],
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(updated.sequence > seen);
        seen = updated.sequence;
        let s = c.at(updated.sequence).get_service("ledger").await.unwrap();
        assert_eq!(s.spec.unwrap().description, description);
        assert_eq!(s.sequence, updated.sequence);
        // Read again without waiting: never an older answer than that one.
        let again = c.at(0).get_service("ledger").await.unwrap();
        assert!(again.sequence >= updated.sequence);
    }
    // A dependency added elsewhere shows in ledger's answer (both edge lists are in it).
    let fx = c
        .register_service(fixtures::service("fx", "payments"))
        .await
        .unwrap();
    c.at(fx.sequence).get_service("ledger").await.unwrap();
    let dep = c
        .add_dependency(pb::AddDependencyRequest {
            service: "fx".into(),
            depends_on: "ledger".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let s = c.at(dep.sequence).get_service("ledger").await.unwrap();
    let dependents: Vec<&str> = s.dependents.iter().map(|d| d.service.as_str()).collect();
    assert_eq!(dependents, ["fx"], "{s:?}");
}

#[tokio::test]
async fn a_type_or_lifecycle_outside_the_enums_is_kept_as_given_and_filtered_by() {
    let app = spawn_app().await;
    let c = &app.client;
    c.create_team(fixtures::team("payments")).await.unwrap();
    let mut docs = fixtures::service("handbook", "payments");
    let spec = docs.spec.as_mut().unwrap();
    (spec.r#type, spec.type_name) = (0, "documentation".into());
    (spec.lifecycle, spec.lifecycle_name) = (0, "beta".into());
    let done = c.register_service(docs).await.unwrap();
    c.register_service(fixtures::service("ledger", "payments"))
        .await
        .unwrap();
    let r = c.at(done.sequence + 1);
    let spec = r.get_service("handbook").await.unwrap().spec.unwrap();
    assert_eq!((spec.r#type, spec.type_name.as_str()), (0, "documentation"));
    assert_eq!((spec.lifecycle, spec.lifecycle_name.as_str()), (0, "beta"));
    // A well-known value keeps the enum, with no text beside it.
    let spec = r.get_service("ledger").await.unwrap().spec.unwrap();
    assert_eq!(
        (spec.r#type, spec.type_name.as_str()),
        (i32::from(pb::ServiceType::Service), "")
    );
    let listed = r
        .list_all_services(pb::ListServicesRequest {
            type_name: "documentation".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let names: Vec<&str> = listed.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["handbook"]);

    // Neither, or an enum and a text that disagree: refused by field.
    let before = app.last_sequence().await;
    for (kind, name, field) in [
        (0, "", "spec.type"),
        (
            i32::from(pb::ServiceType::Website),
            "documentation",
            "spec.type_name",
        ),
        (0, "two\nlines", "spec.type"),
    ] {
        let mut bad = fixtures::service("bad", "payments");
        let spec = bad.spec.as_mut().unwrap();
        (spec.r#type, spec.type_name) = (kind, name.into());
        let e = c.register_service(bad).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{name}: {e:?}");
        let fields: Vec<String> = e.field_violations().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, [field], "{name}");
    }
    assert_eq!(app.last_sequence().await, before);

    // From Backstage and back: the values as they were.
    let yaml = "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: runbooks\nspec:\n  type: documentation\n  lifecycle: sunset\n  owner: group:payments\n";
    let imported = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: yaml.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let exported = c
        .at(imported.sequence)
        .export_backstage(false)
        .await
        .unwrap();
    let runbooks: serde_json::Value = serde_yaml_ng::Deserializer::from_str(&exported.yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .find(|d: &serde_json::Value| d["metadata"]["name"] == "runbooks")
        .unwrap();
    assert_eq!(runbooks["spec"]["type"], "documentation");
    assert_eq!(runbooks["spec"]["lifecycle"], "sunset");
}

#[tokio::test]
async fn catalog_health_counts_what_teams_systems_and_services_name_but_is_not_there() {
    let app = spawn_app().await;
    let c = &app.client;
    // A team whose parent is not there yet.
    c.create_team(pb::CreateTeamRequest {
        parent: "engineering".into(),
        ..fixtures::team("payments")
    })
    .await
    .unwrap();
    // A system and a service of an owner that is not there.
    c.create_system(pb::CreateSystemRequest {
        name: "ghost-system".into(),
        owner: "ghosts".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    c.register_service(fixtures::service("fx", "ghosts"))
        .await
        .unwrap();
    // A service in a system that is not there, depending on a service that
    // is not there yet.
    let mut api = fixtures::service("payments-api", "payments");
    api.spec.as_mut().unwrap().system = "billing".into();
    c.register_service(api).await.unwrap();
    let added = c
        .add_dependency(pb::AddDependencyRequest {
            service: "payments-api".into(),
            depends_on: "ledger".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let dangling = |h: &pb::CatalogHealth, team: &str| {
        h.teams
            .iter()
            .find(|t| t.team == team)
            .map(|t| t.dangling_references)
    };
    let health = c.at(added.sequence).catalog_health("").await.unwrap();
    assert_eq!(health.overall.as_ref().unwrap().dangling_references, 5);
    assert_eq!(dangling(&health, "payments"), Some(3));
    assert_eq!(dangling(&health, "ghosts"), Some(2));
    // What arrives is no longer dangling.
    let ledger = c
        .register_service(fixtures::service("ledger", "payments"))
        .await
        .unwrap();
    let health = c.at(ledger.sequence).catalog_health("").await.unwrap();
    assert_eq!(health.overall.as_ref().unwrap().dangling_references, 4);
    assert_eq!(dangling(&health, "payments"), Some(2));
    let one = c
        .at(ledger.sequence)
        .catalog_health("payments")
        .await
        .unwrap();
    assert_eq!(one.teams.len(), 1);
    assert_eq!(one.teams[0].dangling_references, 2);
}

/// A read that waits for a sequence another projection wrote (a delivery
/// change, which the catalog does not read) is answered, and again without
/// asking the stream (what it said is kept); a catalog write after it is
/// still waited for, and the read fails while the catalog worker is down.
#[tokio::test]
async fn a_read_past_other_projections_writes_is_answered_and_later_writes_are_still_waited_for() {
    use paved_workers::ProjectionWorker;
    use paved_workers::projections::CatalogProjection;
    use tokio_util::sync::CancellationToken;

    let app = crate::helpers::spawn_configured(paved::Roles::API, |s| s.read_wait_ms = 300).await;
    let c = &app.client;
    let worker = |stop: &CancellationToken| {
        let w = ProjectionWorker::new(CatalogProjection, app.pool.clone(), app.log.clone());
        tokio::spawn(w.run(stop.clone()))
    };
    let stop = CancellationToken::new();
    let task = worker(&stop);
    c.create_team(fixtures::team("payments")).await.unwrap();
    let registered = c
        .register_service(fixtures::service("ledger", "payments"))
        .await
        .unwrap();
    c.at(registered.sequence)
        .get_service("ledger")
        .await
        .unwrap();
    let change = c
        .record_change(pb::RecordChangeRequest {
            sha: "0123456789abcdef0123456789abcdef01234567".into(),
            service: "ledger".into(),
            committed_at: Some(paved_eventlog::codec::timestamp(chrono::Utc::now())),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(change.sequence > registered.sequence);
    for _ in 0..2 {
        c.at(change.sequence).get_service("ledger").await.unwrap();
    }
    stop.cancel();
    task.await.unwrap().unwrap();

    // The catalog worker is down: a catalog write after the change is not
    // reached, whatever was learnt about the sequences before it.
    let later = c
        .register_service(fixtures::service("fx", "payments"))
        .await
        .unwrap();
    let e = c.at(later.sequence).get_service("fx").await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    c.at(change.sequence).get_service("ledger").await.unwrap();

    let stop = CancellationToken::new();
    let task = worker(&stop);
    assert_eq!(
        c.at(later.sequence).get_service("fx").await.unwrap().name,
        "fx"
    );
    stop.cancel();
    task.await.unwrap().unwrap();
}
