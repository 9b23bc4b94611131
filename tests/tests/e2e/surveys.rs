//! Developer surveys: anonymous responses, NPS maths, hidden small groups.

use chrono::{Duration, Utc};
use paved_domain::{Name, Principal};
use paved_eventlog::codec::{decode_commit, timestamp};
use paved_sdk::{Client, pb};
use tonic::Code;

use crate::helpers::{TestApp, fixtures, spawn_app};

fn definition(audience: &[&str], trigger: &str) -> pb::SurveyDefinition {
    pb::SurveyDefinition {
        title: "Developer experience".into(),
        comment_question: "What should the platform team fix first?".into(),
        scale_questions: vec!["Deploying is easy".into()],
        audience: audience.iter().map(|s| s.to_string()).collect(),
        opens_at: Some(timestamp(Utc::now() - Duration::minutes(1))),
        closes_at: Some(timestamp(Utc::now() + Duration::hours(1))),
        trigger: trigger.into(),
        ..Default::default()
    }
}

async fn create(app: &TestApp, id: &str, def: pb::SurveyDefinition) -> u64 {
    app.client
        .create_survey(pb::CreateSurveyRequest {
            id: id.into(),
            definition: Some(def),
            ..Default::default()
        })
        .await
        .unwrap()
        .sequence
}

async fn member(app: &TestApp, name: &str, team: &str) -> Client {
    app.client_as(Principal::member(name, Name::parse(team).unwrap()))
        .await
}

async fn answer(
    c: &Client,
    survey: &str,
    nps: u32,
    comment: &str,
) -> Result<u64, paved_sdk::Error> {
    c.submit_response(pb::SubmitResponseRequest {
        survey: survey.into(),
        nps,
        comment: comment.into(),
        scales: vec![4],
        ..Default::default()
    })
    .await
    .map(|r| r.sequence)
}

/// Teams whose members are `<team>-0..n`.
async fn teams(app: &TestApp, sizes: &[(&str, usize)]) {
    for (team, n) in sizes {
        app.client
            .create_team(pb::CreateTeamRequest {
                members: (0..*n).map(|i| format!("{team}-{i}")).collect(),
                ..fixtures::team(team)
            })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn results_follow_the_nps_maths_and_hide_small_groups() {
    let app = spawn_app().await;
    teams(&app, &[("big", 10), ("other", 6), ("tiny", 4)]).await;
    create(&app, "devex-q4", definition(&[], "")).await;
    // big: 8 answers (5 promoters, 2 passives, 1 detractor); other: 6; tiny: 2.
    let mut last = 0;
    for (i, score) in [10, 9, 9, 10, 9, 8, 7, 3].into_iter().enumerate() {
        let c = member(&app, &format!("big-{i}"), "big").await;
        last = answer(&c, "devex-q4", score, &format!("big comment {i}"))
            .await
            .unwrap();
    }
    for i in 0..6 {
        let c = member(&app, &format!("other-{i}"), "other").await;
        last = answer(&c, "devex-q4", 5, "other comment").await.unwrap();
    }
    for i in 0..2 {
        let c = member(&app, &format!("tiny-{i}"), "tiny").await;
        last = answer(&c, "devex-q4", 0, "tiny secret").await.unwrap();
    }
    let r = app
        .client
        .at(last)
        .survey_results("devex-q4")
        .await
        .unwrap();
    assert_eq!(r.min_group_size, 5);
    let o = r.overall.unwrap();
    assert!(!o.hidden);
    assert_eq!(o.responses, 16);
    assert_eq!((o.promoters, o.passives, o.detractors), (5, 2, 9));
    assert!((o.nps - (5.0 - 9.0) * 100.0 / 16.0).abs() < 1e-9);
    let sum: u32 = 10 + 9 + 9 + 10 + 9 + 8 + 7 + 3 + 6 * 5;
    assert!((o.mean - f64::from(sum) / 16.0).abs() < 1e-9);
    assert_eq!(o.audience_size, 20, "everyone: the catalog's 20 people");
    assert!((o.response_rate - 80.0).abs() < 1e-9);
    assert_eq!(o.scale_means, [4.0]);

    let group = |name: &str| r.teams.iter().find(|g| g.group == name).unwrap().clone();
    let big = group("big");
    assert!(!big.hidden);
    assert_eq!(big.responses, 8);
    assert!((big.nps - (5.0 - 1.0) * 100.0 / 8.0).abs() < 1e-9);
    assert!((big.response_rate - 80.0).abs() < 1e-9);
    // tiny has 2 < 5 responses; "other" hides with it, or overall − big −
    // other would give tiny away.
    assert!(group("tiny").hidden);
    assert!(group("other").hidden);
    assert_eq!(group("tiny").responses, 0);
    assert!(
        o.comments
            .iter()
            .all(|c| !c.contains("tiny") && !c.contains("other"))
    );
    assert_eq!(o.comments.len(), 8);

    let trend = app.client.at(last).survey_trend(false).await.unwrap();
    assert_eq!(trend.points.len(), 1);
    assert!((trend.points[0].mean - o.mean).abs() < 1e-9);

    let metrics = app.scrape().await;
    assert!(
        metrics.contains("paved_survey_responses{survey=\"devex-q4\"} 16"),
        "{metrics}"
    );
}

#[tokio::test]
async fn answering_again_changes_the_answer_and_no_commit_names_the_person() {
    let app = spawn_app().await;
    teams(&app, &[("payments", 3)]).await;
    create(&app, "pulse", definition(&[], "")).await;
    let bob = member(&app, "bob-the-builder", "payments").await;
    answer(&bob, "pulse", 3, "slow pipelines").await.unwrap();
    let last = answer(&bob, "pulse", 9, "much better").await.unwrap();
    let s = app.client.at(last).get_survey("pulse").await.unwrap();
    assert_eq!(s.responses, 1, "one response per person");

    // Scan every stored commit: a response never carries who answered.
    let mut responses = 0;
    for seq in 1..=app.last_sequence().await {
        let m = app.log.get(seq).await.unwrap().unwrap();
        let raw = String::from_utf8_lossy(&m.payload);
        let commit = decode_commit(&m.payload).unwrap();
        if commit
            .events
            .iter()
            .any(|e| e.type_name() == "SurveyResponseSubmitted")
        {
            responses += 1;
            assert_eq!(commit.principal, "anonymous");
            assert!(commit.correlation_id.is_empty() && commit.traceparent.is_empty());
            assert!(
                !raw.contains("bob-the-builder"),
                "the payload names the respondent"
            );
            assert!(!commit.command_id.contains("bob"));
            assert!(m.headers.get("traceparent").is_none());
        }
    }
    assert_eq!(responses, 2);
}

#[tokio::test]
async fn bad_answers_are_refused_and_append_nothing() {
    let app = spawn_app().await;
    teams(&app, &[("payments", 2), ("search", 2)]).await;
    create(&app, "payments-only", definition(&["payments"], "")).await;
    create(&app, "short", definition(&[], "")).await;
    app.client
        .close_survey(pb::CloseSurveyRequest {
            id: "short".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let bob = member(&app, "bob", "payments").await;
    let eve = member(&app, "eve", "search").await;
    let before = app.last_sequence().await;

    let e = answer(&bob, "payments-only", 11, "").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.field_violations()[0].0, "nps");
    let e = answer(&bob, "short", 5, "").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "closed");
    let e = answer(&bob, "nope", 5, "").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = answer(&eve, "payments-only", 5, "").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "outside the audience");
    let reader = app.client_as(Principal::reader("rita")).await;
    assert_eq!(
        answer(&reader, "payments-only", 5, "")
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(app.last_sequence().await, before, "nothing appended");

    let e = app
        .client
        .create_survey(pb::CreateSurveyRequest {
            id: "bad".into(),
            definition: Some(pb::SurveyDefinition {
                closes_at: Some(timestamp(Utc::now() - Duration::days(1))),
                ..definition(&["ghosts"], "NoSuchEvent")
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let fields: Vec<String> = e.field_violations().into_iter().map(|(f, _)| f).collect();
    assert!(
        fields.contains(&"closes_at".to_string()) && fields.contains(&"trigger".to_string()),
        "{fields:?}"
    );
}

#[tokio::test]
async fn a_micro_survey_is_offered_to_whoever_caused_its_event() {
    let app = spawn_app().await;
    teams(&app, &[("payments", 2)]).await;
    create(&app, "after-register", definition(&[], "ServiceRegistered")).await;
    let bob = member(&app, "bob", "payments").await;
    let carol = member(&app, "carol", "payments").await;
    let done = bob
        .register_service(fixtures::service("ledger", "payments"))
        .await
        .unwrap();
    // The offer is made by the surveys projection, which reads the whole log.
    let mine = bob.at(done.sequence).my_surveys().await.unwrap();
    let offered: Vec<(&str, bool)> = mine.iter().map(|s| (s.id.as_str(), s.offered)).collect();
    assert_eq!(offered, [("after-register", true)]);
    assert!(
        carol
            .at(done.sequence)
            .my_surveys()
            .await
            .unwrap()
            .is_empty()
    );
    let seq = answer(&bob, "after-register", 9, "").await.unwrap();
    assert!(
        bob.at(seq).my_surveys().await.unwrap().is_empty(),
        "answered"
    );
}

#[tokio::test]
async fn a_response_retried_with_another_answer_under_its_request_id_is_refused() {
    let app = spawn_app().await;
    teams(&app, &[("payments", 1)]).await;
    create(&app, "devex", definition(&[], "")).await;
    let alice = member(&app, "payments-0", "payments").await;
    let respond = |nps: u32| pb::SubmitResponseRequest {
        request_id: "answer-1".into(),
        survey: "devex".into(),
        nps,
        ..Default::default()
    };
    let first = alice.submit_response(respond(9)).await.unwrap();
    let last = app.last_sequence().await;
    assert_eq!(alice.submit_response(respond(9)).await.unwrap(), first);
    let e = alice.submit_response(respond(2)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.field_violations()[0].0, "request_id");
    assert_eq!(app.last_sequence().await, last);
}

/// What every reading path shows of a response: the log's raw bytes, the
/// records of `ReadEvents` and `Subscribe` (what `audit log|export|at` print),
/// and the read-model tables.
#[tokio::test]
async fn no_reader_of_the_log_or_the_database_sees_an_individual_answer() {
    let app = spawn_app().await;
    teams(&app, &[("payments", 5)]).await;
    create(&app, "devex", definition(&[], "")).await;
    let secret_words = "zebra-oracle-7431";
    let mut last = 0;
    for i in 0..5 {
        let c = member(&app, &format!("payments-{i}"), "payments").await;
        last = answer(&c, "devex", 3 + i, &format!("{secret_words} {i}"))
            .await
            .unwrap();
    }
    // The results, above the threshold, still have the figures and the comments.
    let r = app.client.at(last).survey_results("devex").await.unwrap();
    let overall = r.overall.unwrap();
    assert_eq!(overall.responses, 5);
    assert_eq!(overall.comments.len(), 5);
    assert!((overall.mean - 5.0).abs() < 1e-9);

    let is_response = |t: &str| t == "SurveyResponseSubmitted";
    // 1. The raw stream: nothing readable, sealed bytes only.
    let mut sealed = 0;
    for seq in 1..=app.last_sequence().await {
        let m = app.log.get(seq).await.unwrap().unwrap();
        assert!(
            !String::from_utf8_lossy(&m.payload).contains(secret_words),
            "sequence {seq} holds a comment in the clear"
        );
        let commit = decode_commit(&m.payload).unwrap();
        for e in &commit.events {
            if let paved_domain::Event::Survey(
                paved_domain::surveys::SurveyEvent::ResponseSubmitted { content, .. },
            ) = e
            {
                assert!(
                    matches!(content, paved_domain::surveys::ResponseContent::Sealed(b) if !b.is_empty())
                );
                sealed += 1;
            }
        }
    }
    assert_eq!(sealed, 5);
    // 2. ReadEvents (audit log / export / at render these records) and Subscribe.
    let mut records = Vec::new();
    let mut s = app
        .client
        .read_events(pb::ReadEventsRequest::default())
        .await
        .unwrap();
    while let Some(r) = s.message().await.unwrap() {
        records.push(r);
    }
    let mut tail = app
        .client
        .subscribe(pb::SubscribeRequest {
            from_sequence: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    for _ in 0..records.len() {
        records.push(tail.message().await.unwrap().unwrap());
    }
    let responses: Vec<_> = records
        .iter()
        .filter(|r| is_response(&r.event_type))
        .collect();
    assert_eq!(responses.len(), 10);
    for r in responses {
        assert_eq!(r.principal, "anonymous");
        assert!(
            !r.json.contains(secret_words) && !r.json.contains("payments"),
            "{}",
            r.json
        );
        let Some(pb::event::Kind::SurveyResponseSubmitted(e)) =
            r.event.as_ref().and_then(|e| e.kind.as_ref())
        else {
            panic!("{r:?}")
        };
        assert!(e.team.is_empty() && e.nps == 0 && e.comment.is_empty() && e.scales.is_empty());
        assert!(!e.sealed.is_empty());
    }
    // 3. The database: responses name no one and carry no time; the secret
    // is not there; offers say nothing about answers.
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns
          WHERE table_name = 'survey_responses' ORDER BY ordinal_position",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        columns,
        ["survey", "pseudonym", "team", "nps", "comment", "scales"]
    );
    let secrets: Vec<String> = sqlx::query_scalar("SELECT name FROM api_secrets")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(!secrets.contains(&"survey".to_owned()), "{secrets:?}");
    let pseudonyms: Vec<String> =
        sqlx::query_scalar("SELECT pseudonym FROM survey_responses ORDER BY pseudonym")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert!(pseudonyms.iter().all(|p| !p.contains("payments-")));
}

#[tokio::test]
async fn comments_come_back_in_a_random_order() {
    let app = spawn_app().await;
    teams(&app, &[("payments", 6)]).await;
    create(&app, "devex", definition(&[], "")).await;
    let mut last = 0;
    for i in 0..6 {
        let c = member(&app, &format!("payments-{i}"), "payments").await;
        last = answer(&c, "devex", 7, &format!("comment {i}"))
            .await
            .unwrap();
    }
    let mut orders = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let r = app.client.at(last).survey_results("devex").await.unwrap();
        orders.insert(r.overall.unwrap().comments);
    }
    // 720 orders: twenty draws all alike would be a one-in-10^57 chance.
    assert!(orders.len() > 1, "always {orders:?}");
}

#[tokio::test]
async fn without_a_survey_secret_only_dev_mode_starts() {
    let (id, mut settings) = crate::helpers::isolated_settings();
    settings.survey_secret = None;
    settings.dev = false;
    let stream = settings.stream.clone();
    let e = paved::Application::build(settings.clone(), paved::Roles::ALL)
        .await
        .err()
        .expect("refused");
    assert!(format!("{e:#}").contains("PAVED_SURVEY_SECRET"), "{e:#}");
    settings.survey_secret = Some("short".into());
    let e = paved::Application::build(settings, paved::Roles::ALL)
        .await
        .err()
        .expect("refused");
    assert!(format!("{e:#}").contains("at least 16 bytes"), "{e:#}");
    crate::helpers::remove(&stream, &format!("paved_test_{id}")).await;
}
