//! The event log's guarantees, against real JetStream.

use paved_domain::catalog::{Team, TeamCommand, TeamProfile};
use paved_domain::{Name, Principal, Rejection};
use paved_eventlog::{CommandMeta, ExecuteError, Executor};
use paved_sdk::pb;
use tonic::Code;

use crate::helpers::{fixtures, spawn_app};

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn create(members: &[&str]) -> TeamCommand {
    TeamCommand::Create {
        profile: TeamProfile::default(),
        parent: None,
        members: members.iter().map(|m| m.to_string()).collect(),
    }
}

#[tokio::test]
async fn two_writers_on_one_aggregate_one_wins_the_other_re_decides() {
    let app = spawn_app().await;
    // Two API replicas: separate logs handles and separate caches.
    let a = Executor::new(app.open_log().await, 100);
    let b = Executor::new(app.open_log().await, 100);
    let admin = Principal::admin("root");
    let team = name("payments");
    a.execute::<Option<Team>>(&team, &create(&[]), &CommandMeta::new("c1", admin.clone()))
        .await
        .unwrap();
    // Both caches now hold version 1.
    b.state::<Option<Team>>(&team).await.unwrap();

    // a appends first; b still believes version 1, loses the race, reloads,
    // re-decides, and the rule (no duplicate member) now says no.
    let add = TeamCommand::AddMember {
        member: "carol".into(),
    };
    a.execute::<Option<Team>>(&team, &add, &CommandMeta::new("c2", admin.clone()))
        .await
        .unwrap();
    let before = app.last_sequence().await;
    let lost = b
        .execute::<Option<Team>>(&team, &add, &CommandMeta::new("c3", admin.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(lost, ExecuteError::Rejected(Rejection::AlreadyExists(_))),
        "{lost:?}"
    );
    assert_eq!(
        app.last_sequence().await,
        before,
        "the loser appended nothing"
    );

    // Concurrent writers on one aggregate: every command lands exactly once.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let ex = if i % 2 == 0 { a.clone() } else { b.clone() };
        let admin = admin.clone();
        let team = team.clone();
        tasks.push(tokio::spawn(async move {
            let cmd = TeamCommand::AddMember {
                member: format!("m{i}"),
            };
            ex.execute::<Option<Team>>(&team, &cmd, &CommandMeta::new(format!("m{i}"), admin))
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            // Under heavy contention a command may exhaust its retries; the
            // client retries it with the same id (the SDK does).
            Err(ExecuteError::Conflict { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let state = a.state::<Option<Team>>(&team).await.unwrap();
    let members = state.state.unwrap().members;
    assert_eq!(
        members.len(),
        1 + ok,
        "carol plus every command that succeeded"
    );
    assert_eq!(state.version, app.last_sequence().await);
}

#[tokio::test]
async fn the_same_request_id_three_times_is_one_commit_and_the_same_answer() {
    let app = spawn_app().await;
    let c = &app.client;
    let mut req = fixtures::team("payments");
    req.request_id = "create-payments-1".into();
    let first = c.create_team(req.clone()).await.unwrap();
    let after_first = app.last_sequence().await;
    let second = c.create_team(req.clone()).await.unwrap();
    let third = c.create_team(req.clone()).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(first, third);
    assert_eq!(app.last_sequence().await, after_first, "one commit only");

    // After the duplicate window (simulated: a fresh replica whose cache is
    // cold still answers from the aggregate's recent command ids).
    let meta = CommandMeta::new("create-search-1", Principal::admin("admin"));
    let made = Executor::new(app.open_log().await, 10)
        .execute::<Option<Team>>(&name("search"), &create(&[]), &meta)
        .await
        .unwrap();
    let after_made = app.last_sequence().await;
    let cold = Executor::new(app.open_log().await, 10);
    let again = cold
        .execute::<Option<Team>>(&name("search"), &create(&[]), &meta)
        .await
        .unwrap();
    assert_eq!(again.sequence, made.sequence);
    assert!(again.replayed);
    // The id is bound to that command: another one under it is refused.
    let other = cold
        .execute::<Option<Team>>(&name("search"), &create(&["mallory"]), &meta)
        .await;
    assert!(
        matches!(other, Err(ExecuteError::RequestIdReused(_))),
        "{other:?}"
    );
    assert_eq!(app.last_sequence().await, after_made);
}

#[tokio::test]
async fn a_request_id_reused_for_another_command_is_refused() {
    let app = spawn_app().await;
    let c = &app.client;
    let mut a = fixtures::team("payments");
    a.request_id = "same-id".into();
    c.create_team(a).await.unwrap();
    let mut b = fixtures::team("search");
    b.request_id = "same-id".into();
    let e = c.create_team(b).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.field_violations()[0].0, "request_id");
}

#[tokio::test]
async fn the_stream_refuses_delete_and_purge() {
    let app = spawn_app().await;
    let seq = app
        .client
        .create_team(fixtures::team("payments"))
        .await
        .unwrap()
        .sequence;
    let stream = app.log.stream();
    assert!(stream.delete_message(seq).await.is_err(), "delete refused");
    assert!(stream.purge().await.is_err(), "purge refused");
    assert_eq!(app.last_sequence().await, seq);
    let info = stream.get_info().await.unwrap();
    assert!(info.config.deny_delete && info.config.deny_purge);
    assert_eq!(info.state.messages, 1);
}

#[tokio::test]
async fn every_commit_says_who_when_and_why() {
    let app = spawn_app().await;
    let mut req = fixtures::team("payments");
    req.request_id = "req-42".into();
    let mut request = tonic::Request::new(req);
    let md = request.metadata_mut();
    md.insert(
        "authorization",
        format!("Bearer {}", app.admin_token).parse().unwrap(),
    );
    md.insert("x-correlation-id", "onboarding-7".parse().unwrap());
    md.insert("x-paved-reason", "new team".parse().unwrap());
    md.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let done = app
        .client
        .catalog()
        .create_team(request)
        .await
        .unwrap()
        .into_inner();
    let stored = app.log.get(done.sequence).await.unwrap().unwrap();
    let commit = paved_eventlog::codec::decode_commit(&stored.payload).unwrap();
    assert_eq!(commit.command_id, "req-42");
    assert_eq!(commit.principal, "admin");
    assert_eq!(commit.correlation_id, "onboarding-7");
    assert_eq!(commit.reason, "new team");
    assert!(
        commit
            .traceparent
            .contains("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert!(
        stored.headers.get("traceparent").is_some(),
        "trace context travels in the NATS headers too"
    );
    assert_eq!(
        stored.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some("req-42")
    );
}

#[tokio::test]
async fn a_replica_with_a_cold_cache_sees_existing_aggregates() {
    let app = spawn_app().await;
    let c = &app.client;
    c.create_team(fixtures::team("payments")).await.unwrap();
    c.register_service(fixtures::service("ledger", "payments"))
        .await
        .unwrap();
    // A second replica has never seen these aggregates: it must not take
    // them for new (NOT_FOUND for a change, a second creation for a create).
    let cold = Executor::new(app.open_log().await, 100);
    let admin = Principal::admin("root");
    let deprecate = paved_domain::catalog::ServiceCommand::Deprecate {
        reason: "v2".into(),
    };
    let done = cold
        .execute::<Option<paved_domain::catalog::Service>>(
            &name("ledger"),
            &deprecate,
            &CommandMeta::new("d1", admin.clone()),
        )
        .await
        .unwrap();
    assert_eq!(done.events, 1);
    let again = Executor::new(app.open_log().await, 100)
        .execute::<Option<Team>>(
            &name("payments"),
            &create(&[]),
            &CommandMeta::new("c9", admin),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(again, ExecuteError::Rejected(Rejection::AlreadyExists(_))),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_stream_made_before_checkpoints_gains_their_subject_and_keeps_its_messages() {
    use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};
    let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let config = paved_eventlog::LogConfig {
        stream: format!("OLD_{}", id.to_uppercase()),
        subject_prefix: format!("o{id}"),
        ..Default::default()
    };
    let nats = async_nats::connect(crate::helpers::nats_url())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(nats.clone());
    // As an earlier version created it: commits' subjects only.
    js.create_stream(Config {
        name: config.stream.clone(),
        subjects: vec![format!("{}.>", config.subject_prefix)],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        discard: DiscardPolicy::New,
        duplicate_window: paved_eventlog::log::MIN_DUPLICATE_WINDOW,
        deny_delete: true,
        deny_purge: true,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .unwrap();
    js.publish(
        format!("{}.catalog.team.x", config.subject_prefix),
        "old".into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let log = paved_eventlog::EventLog::open(nats, config.clone())
        .await
        .unwrap();
    let mut stream = js.get_stream(&config.stream).await.unwrap();
    let subjects = stream.info().await.unwrap().config.subjects.clone();
    let last = log.last_sequence().await.unwrap();
    js.delete_stream(&config.stream).await.ok();
    assert_eq!(
        subjects,
        [
            format!("{}.>", config.subject_prefix),
            log.checkpoint_subject()
        ]
    );
    assert_eq!(last, 1, "nothing lost");
}

/// Sends `a` twice and then `b` under the same request id: the retry is the
/// same answer, the other body is refused on `request_id`, nothing is appended.
macro_rules! bound {
    ($app:expr, $method:ident, $a:expr, $b:expr) => {{
        let c = &$app.client;
        let (mut a, mut b) = ($a, $b);
        a.request_id = concat!("bound-", stringify!($method)).into();
        b.request_id = a.request_id.clone();
        let first = c.$method(a.clone()).await.unwrap();
        let last = $app.last_sequence().await;
        assert_eq!(c.$method(a).await.unwrap(), first, stringify!($method));
        let e = c.$method(b).await.unwrap_err();
        assert_eq!(
            e.code(),
            Code::InvalidArgument,
            "{}: {e:?}",
            stringify!($method)
        );
        assert_eq!(e.field_violations()[0].0, "request_id", stringify!($method));
        assert_eq!(
            $app.last_sequence().await,
            last,
            "{} appended",
            stringify!($method)
        );
    }};
}

#[tokio::test]
async fn every_mutating_rpc_binds_its_request_id_to_one_command() {
    let app = spawn_app().await;
    let c = &app.client;
    c.create_team(fixtures::team("payments")).await.unwrap();
    c.register_service(fixtures::service("ledger", "payments"))
        .await
        .unwrap();
    let profile = |d: &str| {
        Some(pb::TeamProfile {
            display_name: d.into(),
            email: "p@example.com".into(),
            chat_channel: "#p".into(),
        })
    };
    bound!(
        app,
        update_team_profile,
        pb::UpdateTeamProfileRequest {
            name: "payments".into(),
            profile: profile("Payments"),
            ..Default::default()
        },
        pb::UpdateTeamProfileRequest {
            name: "payments".into(),
            profile: profile("Pay"),
            ..Default::default()
        }
    );
    let member = |m: &str| pb::AddTeamMemberRequest {
        team: "payments".into(),
        member: m.into(),
        ..Default::default()
    };
    bound!(app, add_team_member, member("alice"), member("mallory"));
    bound!(
        app,
        register_service,
        fixtures::service("fx", "payments"),
        pb::RegisterServiceRequest {
            spec: Some(pb::ServiceSpec {
                description: "other".into(),
                ..fixtures::spec()
            }),
            ..fixtures::service("fx", "payments")
        }
    );
    let describe = |d: &str| pb::UpdateServiceRequest {
        name: "ledger".into(),
        spec: Some(pb::ServiceSpec {
            description: d.into(),
            ..Default::default()
        }),
        update_mask: Some(paved_proto::wkt::FieldMask {
            paths: vec!["description".into()],
        }),
        ..Default::default()
    };
    bound!(
        app,
        update_service,
        describe("books"),
        describe("cooks the books")
    );
    let slo = |target: f64| pb::SetSloRequest {
        service: "ledger".into(),
        slo: Some(pb::Slo {
            name: "availability".into(),
            window_days: 30,
            objective: Some(pb::slo::Objective::Availability(
                pb::AvailabilityObjective {
                    target_percent: target,
                },
            )),
        }),
        ..Default::default()
    };
    bound!(app, set_slo, slo(99.9), slo(90.0));
    let depend = |on: &str| pb::AddDependencyRequest {
        service: "ledger".into(),
        depends_on: on.into(),
        ..Default::default()
    };
    bound!(app, add_dependency, depend("fx"), depend("ledger-db"));
    let sha = "a".repeat(40);
    let committed = Some(paved_eventlog::codec::timestamp(chrono::Utc::now()));
    let change = |title: &str| pb::RecordChangeRequest {
        sha: sha.clone(),
        service: "ledger".into(),
        committed_at: committed,
        title: title.into(),
        ..Default::default()
    };
    bound!(app, record_change, change("fix"), change("other"));
    let started = Some(paved_eventlog::codec::timestamp(chrono::Utc::now()));
    let incident = |title: &str| pb::OpenIncidentRequest {
        started_at: started,
        title: title.into(),
        services: vec!["ledger".into()],
        severity: "sev2".into(),
        ..Default::default()
    };
    bound!(app, open_incident, incident("down"), incident("up"));
}

#[tokio::test]
async fn the_next_message_on_a_wildcard_filter_is_found_by_direct_get() {
    let app = spawn_app().await;
    let done = app
        .client
        .create_team(fixtures::team("payments"))
        .await
        .unwrap();
    let prefix = &app.settings.subject_prefix;
    let log = &app.log;
    assert_eq!(
        log.next_matching(&format!("{prefix}.catalog.>"), 1)
            .await
            .unwrap(),
        Some(done.sequence)
    );
    assert_eq!(
        log.next_matching(&format!("{prefix}.delivery.>"), 1)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        log.next_matching(&format!("{prefix}.catalog.>"), done.sequence + 1)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_retry_older_than_what_the_entity_remembers_is_refused_not_applied_again() {
    let app = spawn_app().await;
    let c = &app.client;
    c.create_team(fixtures::team("payments")).await.unwrap();
    let member = |m: String, id: String| pb::AddTeamMemberRequest {
        request_id: id,
        team: "payments".into(),
        member: m,
        ..Default::default()
    };
    // The first change, then more than the 128 the team remembers.
    c.add_team_member(member("alice".into(), "add-alice".into()))
        .await
        .unwrap();
    c.remove_team_member(pb::RemoveTeamMemberRequest {
        request_id: "remove-alice".into(),
        team: "payments".into(),
        member: "alice".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    for i in 0..130 {
        c.add_team_member(member(format!("m{i}"), format!("add-m{i}")))
            .await
            .unwrap();
    }
    let last = app.last_sequence().await;
    // "add-alice" again, first sent ten minutes ago (past the stream's
    // duplicate window): applying it would bring alice back.
    let ten_minutes_ago = (chrono::Utc::now() - chrono::Duration::minutes(10)).timestamp_millis();
    let channel = tonic::transport::Endpoint::from_shared(app.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raw = pb::catalog_service_client::CatalogServiceClient::new(channel);
    let send = |id: &str, sent_at: i64| {
        let mut r = tonic::Request::new(member("alice".into(), id.into()));
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", app.admin_token).parse().unwrap(),
        );
        r.metadata_mut()
            .insert("x-paved-sent-at-ms", sent_at.to_string().parse().unwrap());
        r
    };
    let e = raw
        .add_team_member(send("add-alice", ten_minutes_ago))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert_eq!(app.last_sequence().await, last, "nothing applied");
    // A new request, sent now, goes through.
    raw.add_team_member(send(
        "add-alice-again",
        chrono::Utc::now().timestamp_millis(),
    ))
    .await
    .unwrap();
    assert_eq!(app.last_sequence().await, last + 1);
}

#[tokio::test]
async fn a_weak_stream_is_refused_untouched_with_every_problem_named() {
    use async_nats::jetstream::stream::Config;
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let name = format!("WEAK_{}", id.to_uppercase());
    let prefix = format!("w{id}");
    let nats = async_nats::connect(crate::helpers::nats_url())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(nats.clone());
    js.create_stream(Config {
        name: name.clone(),
        subjects: vec![format!("{prefix}.>")],
        max_messages: 1000,
        max_bytes: 1 << 20,
        no_ack: true,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let r = paved_eventlog::EventLog::open(
        nats,
        paved_eventlog::LogConfig {
            stream: name.clone(),
            subject_prefix: prefix.clone(),
            ..Default::default()
        },
    )
    .await;
    let Err(paved_eventlog::LogError::WeakStream { problems, .. }) = r else {
        panic!("accepted a weak stream")
    };
    let all = problems.join("\n");
    for named in [
        "deny_delete",
        "deny_purge",
        "max_messages is 1000",
        "max_bytes is 1048576",
        "no_ack",
    ] {
        assert!(all.contains(named), "{named} not in:\n{all}");
    }
    // Refused, and left as it was: the checkpoint subject was not added.
    let mut stream = js.get_stream(&name).await.unwrap();
    let subjects = stream.info().await.unwrap().config.subjects.clone();
    assert_eq!(subjects, [format!("{prefix}.>")]);
    js.delete_stream(&name).await.unwrap();
}
