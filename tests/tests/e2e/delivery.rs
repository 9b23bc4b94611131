//! Delivery and DORA through the API: recorded deployments, changes and
//! incidents on a fixed history, checked against figures worked by hand.

use chrono::{DateTime, Duration, Utc};
use paved_domain::Principal;
use paved_eventlog::codec::timestamp;
use paved_sdk::{Client, pb};
use tonic::Code;

use crate::helpers::{fixtures, spawn_app};

fn sha(n: u32) -> String {
    format!("{n:040x}")
}

struct History {
    t0: DateTime<Utc>,
    last: u64,
}

#[allow(clippy::too_many_arguments)]
async fn record(
    c: &Client,
    id: &str,
    service: &str,
    env: &str,
    ok: bool,
    started: DateTime<Utc>,
    finished: DateTime<Utc>,
    rollback_of: &str,
) -> pb::RecordDeploymentResponse {
    c.record_deployment(pb::RecordDeploymentRequest {
        request_id: id.into(),
        target: Some(pb::DeploymentTarget {
            service: service.into(),
            environment: env.into(),
            revision: format!("rev-{id}"),
            commits: vec![],
            rollback_of: rollback_of.into(),
        }),
        source: "pipeline".into(),
        started_at: Some(timestamp(started)),
        outcome: Some(pb::DeploymentOutcome {
            succeeded: ok,
            finished_at: Some(timestamp(finished)),
            ..Default::default()
        }),
        expected_version: None,
    })
    .await
    .unwrap()
}

async fn change(
    c: &Client,
    n: u32,
    service: &str,
    committed: DateTime<Utc>,
    merged: Option<DateTime<Utc>>,
) {
    c.record_change(pb::RecordChangeRequest {
        sha: sha(n),
        service: service.into(),
        committed_at: Some(timestamp(committed)),
        merged_at: merged.map(timestamp),
        pr_number: u64::from(n),
        ..Default::default()
    })
    .await
    .unwrap();
}

async fn incident(
    c: &Client,
    id: &str,
    service: &str,
    started: DateTime<Utc>,
    resolved: Option<DateTime<Utc>>,
    caused_by: &str,
) -> u64 {
    let mut seq = c
        .open_incident(pb::OpenIncidentRequest {
            id: id.into(),
            title: format!("{service} is down"),
            services: vec![service.into()],
            severity: "sev2".into(),
            started_at: Some(timestamp(started)),
            caused_by_deployment: caused_by.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .sequence;
    if let Some(r) = resolved {
        seq = c
            .resolve_incident(pb::ResolveIncidentRequest {
                incident: id.into(),
                resolved_at: Some(timestamp(r)),
                ..Default::default()
            })
            .await
            .unwrap()
            .sequence;
    }
    seq
}

/// The history of the comments in `dora_figures_match_the_hand_computed_ones`.
async fn history(c: &Client) -> History {
    let t0 = (Utc::now() - Duration::days(20))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let h = |d: i64, h: i64| t0 + Duration::days(d) + Duration::hours(h);
    c.create_team(fixtures::team("payments")).await.unwrap();
    c.create_team(fixtures::team("web")).await.unwrap();
    c.create_team(fixtures::team("empty")).await.unwrap();
    for (s, team) in [("ledger", "payments"), ("fx", "payments"), ("site", "web")] {
        c.register_service(fixtures::service(s, team))
            .await
            .unwrap();
    }
    change(c, 1, "ledger", h(1, 0), Some(h(1, 2))).await; // shipped by dA: 6 h
    change(c, 2, "ledger", h(1, 4), None).await; // shipped by dA: 2 h
    change(c, 3, "fx", h(2, 0), None).await; // shipped by dC: 12 h
    change(c, 4, "ledger", h(9, 0), None).await; // never deployed
    record(c, "dA", "ledger", "production", true, h(1, 5), h(1, 6), "").await;
    record(c, "dB", "fx", "production", false, h(2, 9), h(2, 10), "").await;
    record(c, "dC", "fx", "production", true, h(2, 11), h(2, 12), "").await; // rework after dB
    let d_d = record(c, "dD", "ledger", "production", true, h(3, 9), h(3, 10), "").await;
    record(c, "dE", "ledger", "staging", true, h(4, 0), h(4, 1), "").await; // not production
    record(
        c,
        "dF",
        "ledger",
        "production",
        true,
        h(5, 0),
        h(5, 1),
        &d_d.id,
    )
    .await; // rolls dD back
    let d_g = record(c, "dG", "site", "production", true, h(6, 0), h(6, 0), "").await;
    // Unlinked, 2 h after dD: attributed to dD by the heuristic (dD is rolled back anyway).
    incident(c, "i1", "ledger", h(3, 12), Some(h(3, 14)), "").await;
    // Started before the window, resolved inside it: 25 h, counted.
    incident(c, "i2", "fx", h(-1, 0), Some(h(0, 1)), "").await;
    // Explicitly caused by dG: 30 min.
    let last = incident(
        c,
        "i3",
        "site",
        h(6, 1),
        Some(h(6, 1) + Duration::minutes(30)),
        &d_g.id,
    )
    .await;
    History { t0, last }
}

fn window(
    h: &History,
) -> (
    Option<paved_proto::wkt::Timestamp>,
    Option<paved_proto::wkt::Timestamp>,
) {
    (
        Some(timestamp(h.t0)),
        Some(timestamp(h.t0 + Duration::days(10))),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dora_figures_match_the_hand_computed_ones() {
    let app = spawn_app().await;
    let c = &app.client;
    let h = history(c).await;
    let (since, until) = window(&h);
    let at = c.at(h.last);

    let team = at
        .dora(pb::GetDoraRequest {
            team: "payments".into(),
            since,
            until,
            daily: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(team.scope, "team:payments");
    // dA dB dC dD dF finished in production; dB failed.
    assert_eq!((team.finished_deployments, team.deployments), (5, 4));
    assert!((team.deployments_per_day - 0.4).abs() < 1e-9);
    assert_eq!(team.frequency_level, "high");
    // dB failed, dD rolled back (and the incident's suspect).
    assert_eq!(team.change_failures, 2);
    assert_eq!(team.change_failure_rate, Some(0.4));
    assert_eq!(team.change_failure_level, "low");
    // dC after dB's failure, dF a rollback.
    assert_eq!(team.rework_rate, Some(0.4));
    // Continuous percentiles (PERCENTILE_CONT): of 3 lead times the p90 sits
    // at rank 1.8, 6 h + 0.8 × (12 h − 6 h) = 10.8 h.
    let lead = team.lead_time.unwrap();
    assert_eq!(
        (lead.count, lead.median_hours, lead.p90_hours),
        (3, 6.0, 10.8)
    );
    assert_eq!(team.lead_time_level, "elite");
    let ttr = team.time_to_restore.unwrap();
    // Two restores, 2 h and 25 h: the median is their mean, 13.5 h; the p90
    // 2 h + 0.9 × 23 h = 22.7 h.
    assert_eq!(
        (ttr.count, ttr.median_hours, ttr.p90_hours),
        (2, 13.5, 22.7)
    );
    assert_eq!(team.time_to_restore_level, "high");
    assert_eq!(team.days.len(), 10);
    assert_eq!(team.days[2].deployments, 1);
    assert_eq!(team.days[2].change_failures, 1);

    let org = at
        .dora(pb::GetDoraRequest {
            since,
            until,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(org.scope, "organisation");
    assert_eq!((org.finished_deployments, org.change_failures), (6, 3));
    assert_eq!(org.change_failure_rate, Some(0.5));
    let ttr = org.time_to_restore.unwrap();
    // Three restores: the median is the middle one; the p90 2 h + 0.8 × 23 h.
    assert_eq!((ttr.count, ttr.median_hours, ttr.p90_hours), (3, 2.0, 20.4));

    let none = at
        .dora(pb::GetDoraRequest {
            team: "empty".into(),
            since,
            until,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(none.deployments, 0);
    assert_eq!(none.change_failure_rate, None);
    assert_eq!(none.lead_time, None);
    assert_eq!(none.frequency_level, "low");
    assert_eq!(none.lead_time_level, "");

    // What the read model says about one deployment and its shipped changes.
    let d = at
        .get_deployment(paved_api::delivery::derived_id("d", "dA").as_str())
        .await
        .unwrap();
    assert_eq!(
        (d.status.as_str(), d.source.as_str()),
        ("succeeded", "pipeline")
    );
    let shipped: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT sha, deployment FROM delivery_changes ORDER BY sha")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(shipped[0].1.as_deref(), Some(d.id.as_str()));
    assert_eq!(shipped[1].1.as_deref(), Some(d.id.as_str()));
    assert_eq!(
        shipped[3].1, None,
        "a change never deployed ships with nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_delivery_input_is_refused_with_the_field_and_appends_nothing() {
    let app = spawn_app().await;
    let c = &app.client;
    c.create_team(fixtures::team("payments")).await.unwrap();
    c.register_service(fixtures::service("ledger", "payments"))
        .await
        .unwrap();
    let before = app.last_sequence().await;
    let now = Utc::now();

    let field_of = |e: paved_sdk::Error| -> Vec<String> {
        e.field_violations().into_iter().map(|(f, _)| f).collect()
    };
    let e = c
        .record_change(pb::RecordChangeRequest {
            sha: "abc123".into(),
            service: "ledger".into(),
            committed_at: Some(timestamp(now)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(field_of(e), ["sha"]);

    let e = c
        .record_deployment(pb::RecordDeploymentRequest {
            target: Some(pb::DeploymentTarget {
                service: "ledger".into(),
                environment: "production".into(),
                revision: "v1".into(),
                ..Default::default()
            }),
            source: "pipeline".into(),
            started_at: Some(timestamp(now)),
            outcome: Some(pb::DeploymentOutcome {
                succeeded: true,
                finished_at: Some(timestamp(now - Duration::hours(1))),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(field_of(e), ["outcome.finished_at"]);

    let e = c
        .open_incident(pb::OpenIncidentRequest {
            title: "down".into(),
            services: vec!["nope".into()],
            severity: "sev9".into(),
            started_at: Some(timestamp(now)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(field_of(e), ["severity"]);

    // Another team's member may not deploy ledger.
    let mallory = app
        .client_as(Principal::member(
            "mallory",
            paved_domain::Name::parse("web").unwrap(),
        ))
        .await;
    let e = mallory
        .request_deployment(pb::RequestDeploymentRequest {
            service: "ledger".into(),
            environment: "production".into(),
            revision: "v2".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    let e = c
        .dora(pb::GetDoraRequest {
            team: "nobody".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .dora(pb::GetDoraRequest {
            service: "nothing".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .dora(pb::GetDoraRequest {
            team: "payments".into(),
            service: "ledger".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(field_of(e), ["service"]);
    assert_eq!(app.last_sequence().await, before, "nothing was appended");

    // The same recorded deployment twice is one deployment.
    let req = pb::RecordDeploymentRequest {
        request_id: "pipeline-run-77".into(),
        target: Some(pb::DeploymentTarget {
            service: "ledger".into(),
            environment: "production".into(),
            revision: "v1".into(),
            ..Default::default()
        }),
        source: "pipeline".into(),
        started_at: Some(timestamp(now - Duration::minutes(5))),
        outcome: Some(pb::DeploymentOutcome {
            succeeded: true,
            finished_at: Some(timestamp(now)),
            ..Default::default()
        }),
        expected_version: None,
    };
    let first = c.record_deployment(req.clone()).await.unwrap();
    let again = c.record_deployment(req).await.unwrap();
    assert_eq!(
        (first.id.clone(), first.sequence),
        (again.id, again.sequence)
    );
    let listed = c
        .at(first.sequence)
        .list_deployments(pb::ListDeploymentsRequest {
            team: "payments".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_techflow_demo_reproduces_the_seeds_before_and_after() {
    let app = spawn_app().await;
    let t = paved::demo::techflow(&app.client, 42, 32).await.unwrap();
    let (b, a) = (&t.before, &t.after);
    // Shaped like the seed: 1-2 deploys a week per team before, 3-5 a day after.
    let per_team_week = b.deployments_per_day / 5.0 * 7.0;
    assert!((1.0..=2.0).contains(&per_team_week), "{per_team_week}");
    assert!((3.0..=5.0).contains(&(a.deployments_per_day / 5.0)));
    let (lb, la) = (b.lead_time.unwrap(), a.lead_time.unwrap());
    assert!((120.0..=168.0).contains(&lb.median_hours), "{lb:?}");
    assert!((4.0..=6.0).contains(&la.median_hours), "{la:?}");
    let (cb, ca) = (
        b.change_failure_rate.unwrap(),
        a.change_failure_rate.unwrap(),
    );
    assert!(
        (0.22..=0.34).contains(&cb) && (0.05..=0.11).contains(&ca),
        "{cb} {ca}"
    );
    let (rb, ra) = (b.time_to_restore.unwrap(), a.time_to_restore.unwrap());
    assert_eq!((rb.count, ra.count), (16, 4), "4 incidents a month, then 1");
    assert!((4.0..=6.0).contains(&rb.median_hours) && ra.median_hours < 1.0);
    assert_eq!(
        [
            b.frequency_level.as_str(),
            b.lead_time_level.as_str(),
            b.change_failure_level.as_str(),
            a.frequency_level.as_str(),
            a.lead_time_level.as_str(),
            a.time_to_restore_level.as_str()
        ],
        ["high", "high", "low", "elite", "elite", "elite"]
    );
    // Live batches (of whatever sizes) and a replay in big batches agree.
    let (_, checks) = paved_workers::runtime::check(
        &[paved_workers::projections::DeliveryProjection::default()],
        &app.pool,
        &app.log,
        &Default::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(checks.len(), 3);
    assert!(
        checks.iter().all(|c| !c.drifted() && c.live_rows > 0),
        "{checks:?}"
    );
    // The same seed again: nothing new is appended, the figures are the same.
    let last = app.last_sequence().await;
    let again = paved::demo::techflow(&app.client, 42, 32).await.unwrap();
    assert_eq!(app.last_sequence().await, last);
    assert_eq!((&again.before, &again.after), (&t.before, &t.after));
}

/// The `google.rpc.PreconditionFailure` violations of a `FAILED_PRECONDITION`:
/// (kind, subject, description).
fn preconditions(e: &paved_sdk::Error) -> Vec<(String, String, String)> {
    use tonic_types::StatusExt;
    let paved_sdk::Error::Status(s) = e else {
        return Vec::new();
    };
    s.get_details_precondition_failure()
        .map(|p| {
            p.violations
                .into_iter()
                .map(|v| (v.r#type, v.subject, v.description))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn another_team_cannot_touch_incidents_or_rollbacks_and_references_must_exist() {
    let app = spawn_app().await;
    let c = &app.client;
    c.create_team(fixtures::team("payments")).await.unwrap();
    c.create_team(fixtures::team("growth")).await.unwrap();
    c.register_service(fixtures::service("ledger", "payments"))
        .await
        .unwrap();
    c.register_service(fixtures::service("ads", "growth"))
        .await
        .unwrap();
    let now = Utc::now();
    let d1 = record(
        c,
        "d1",
        "ledger",
        "production",
        true,
        now - Duration::hours(3),
        now - Duration::hours(3),
        "",
    )
    .await;
    record(
        c,
        "d2",
        "ledger",
        "production",
        true,
        now - Duration::hours(2),
        now - Duration::hours(2),
        "",
    )
    .await;
    let ads = record(
        c,
        "d-ads",
        "ads",
        "production",
        true,
        now - Duration::hours(2),
        now - Duration::hours(2),
        "",
    )
    .await;
    let pay = app
        .client_as(Principal::member(
            "alice",
            paved_domain::Name::parse("payments").unwrap(),
        ))
        .await;
    let mallory = app
        .client_as(Principal::member(
            "mallory",
            paved_domain::Name::parse("growth").unwrap(),
        ))
        .await;
    let open = |services: Vec<&str>, caused_by: &str| pb::OpenIncidentRequest {
        title: "ledger is down".into(),
        services: services.into_iter().map(Into::into).collect(),
        severity: "sev1".into(),
        started_at: Some(timestamp(now - Duration::minutes(30))),
        caused_by_deployment: caused_by.into(),
        ..Default::default()
    };
    let before = app.last_sequence().await;

    // Another team opens nothing on ledger, alone or beside its own service.
    for services in [vec!["ledger"], vec!["ads", "ledger"]] {
        let e = mallory.open_incident(open(services, "")).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
    }
    // A link to a deployment that does not exist, or of another service, names the field.
    let e = pay
        .open_incident(open(vec!["ledger"], "d-typo"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let p = preconditions(&e);
    assert_eq!(p[0].0, "MISSING_REFERENCE");
    assert!(p[0].2.starts_with("caused_by_deployment"), "{p:?}");
    let e = pay
        .open_incident(open(vec!["ledger"], &ads.id))
        .await
        .unwrap_err();
    assert_eq!(preconditions(&e)[0].0, "BAD_REFERENCE");
    assert_eq!(app.last_sequence().await, before, "nothing appended");

    let inc = pay.open_incident(open(vec!["ledger"], "")).await.unwrap();
    let after_open = app.last_sequence().await;
    let e = mallory
        .link_incident(pb::LinkIncidentRequest {
            incident: inc.id.clone(),
            deployment: d1.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = mallory
        .resolve_incident(pb::ResolveIncidentRequest {
            incident: inc.id.clone(),
            resolved_at: Some(timestamp(now)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = pay
        .link_incident(pb::LinkIncidentRequest {
            incident: inc.id.clone(),
            deployment: "d-typo".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(preconditions(&e)[0].2.starts_with("deployment"));
    // Rolling back another team's deployment is refused before anything about it is said.
    let e = mallory
        .request_rollback(pb::RequestRollbackRequest {
            deployment: d1.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(app.last_sequence().await, after_open, "nothing appended");

    // A change merged before it was committed is invalid.
    let e = c
        .record_change(pb::RecordChangeRequest {
            sha: sha(1),
            service: "ledger".into(),
            committed_at: Some(timestamp(now)),
            merged_at: Some(timestamp(now - Duration::hours(1))),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.field_violations()[0].0, "merged_at");
}
