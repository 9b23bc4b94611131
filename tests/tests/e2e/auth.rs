//! The auth matrix: who may call what; refusals append nothing.

use paved_domain::{Name, Principal};
use paved_sdk::{Client, pb};
use tonic::Code;

use crate::helpers::{fixtures, spawn_app};

#[tokio::test]
async fn missing_or_bad_tokens_are_unauthenticated_and_append_nothing() {
    let app = spawn_app().await;
    let before = app.last_sequence().await;

    let channel = tonic::transport::Endpoint::from_shared(app.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raw = pb::catalog_service_client::CatalogServiceClient::new(channel);
    let no_token = raw
        .create_team(fixtures::team("payments"))
        .await
        .unwrap_err();
    assert_eq!(no_token.code(), Code::Unauthenticated);

    let forged = Client::connect(app.url.clone(), "pvd_0000").await.unwrap();
    let e = forged
        .create_team(fixtures::team("payments"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = forged.get_team("payments").await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "reads need a token too");

    assert_eq!(app.last_sequence().await, before);
}

#[tokio::test]
async fn revoked_tokens_stop_working() {
    let app = spawn_app().await;
    let principal = Principal::reader("auditor");
    let token = paved_api::auth::create_token(&app.pool, &principal)
        .await
        .unwrap();
    paved_api::auth::revoke_tokens(&app.pool, "auditor")
        .await
        .unwrap();
    let c = Client::connect(app.url.clone(), &token).await.unwrap();
    assert_eq!(
        c.get_team("x").await.unwrap_err().code(),
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn readers_read_and_members_change_only_what_their_team_owns() {
    let app = spawn_app().await;
    let admin = &app.client;
    admin.create_team(fixtures::team("payments")).await.unwrap();
    admin.create_team(fixtures::team("search")).await.unwrap();
    let seq = admin
        .register_service(fixtures::service("indexer", "search"))
        .await
        .unwrap()
        .sequence;

    let reader = app.client_as(Principal::reader("rita")).await;
    let member = app
        .client_as(Principal::member("bob", Name::parse("payments").unwrap()))
        .await;
    let before = app.last_sequence().await;

    // Readers read, and nothing else.
    assert_eq!(
        reader.at(seq).get_service("indexer").await.unwrap().owner,
        "search"
    );
    let e = reader
        .register_service(fixtures::service("x", "payments"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Members: not for another team, not team creation, not others' services.
    let e = member
        .register_service(fixtures::service("x", "search"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = member
        .create_team(fixtures::team("rogue"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = member
        .deprecate_service(pb::DeprecateServiceRequest {
            name: "indexer".into(),
            reason: "mine now".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(app.last_sequence().await, before, "refusals append nothing");

    // ...but for their own team, yes, and the principal is recorded.
    let done = member
        .register_service(fixtures::service("checkout", "payments"))
        .await
        .unwrap();
    let e = member
        .add_team_member(pb::AddTeamMemberRequest {
            team: "payments".into(),
            member: "carol".into(),
            ..Default::default()
        })
        .await;
    assert!(e.is_ok());
    let stored = app.log.get(done.sequence).await.unwrap().unwrap();
    let commit = paved_eventlog::codec::decode_commit(&stored.payload).unwrap();
    assert_eq!(commit.principal, "bob");
}

#[tokio::test]
async fn unknown_tokens_take_bounded_memory() {
    let app = crate::helpers::spawn_app().await;
    let auth = paved_api::Authenticator::new(app.pool.clone());
    // No peer address (as in-process): nothing throttles, the caches bound.
    for i in 0..(paved_api::auth::NEGATIVE_CAPACITY + 2_000) {
        let mut r = tonic::Request::new(());
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer pvd_bogus{i}").parse().unwrap(),
        );
        assert_eq!(
            auth.authenticate(&r).await.unwrap_err().code(),
            Code::Unauthenticated
        );
    }
    let (valid, unknown) = auth.cached_tokens();
    assert_eq!(valid, 0);
    assert_eq!(unknown, paved_api::auth::NEGATIVE_CAPACITY);
    // A valid token still works, and is remembered.
    let mut r = tonic::Request::new(());
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", app.admin_token).parse().unwrap(),
    );
    auth.authenticate(&r).await.unwrap();
    assert_eq!(auth.cached_tokens().0, 1);
}

#[tokio::test]
async fn a_peer_guessing_tokens_is_slowed_down_with_retry_info() {
    use tonic_types::StatusExt;
    let app = crate::helpers::spawn_app().await;
    let guesser = paved_sdk::Client::connect(app.url.clone(), "pvd_guess")
        .await
        .unwrap()
        .with_retry(paved_sdk::RetryPolicy {
            max_retries: 0,
            ..Default::default()
        });
    let mut codes = Vec::new();
    for _ in 0..(paved_api::auth::MAX_FAILURES + 5) {
        codes.push(guesser.at(0).get_team("x").await.unwrap_err());
    }
    let unauthenticated = codes
        .iter()
        .filter(|e| e.code() == Code::Unauthenticated)
        .count();
    assert_eq!(unauthenticated, paved_api::auth::MAX_FAILURES as usize);
    let last = codes.last().unwrap();
    assert_eq!(last.code(), Code::ResourceExhausted, "{last}");
    let paved_sdk::Error::Status(s) = last else {
        panic!()
    };
    assert!(
        s.get_details_retry_info()
            .and_then(|r| r.retry_delay)
            .is_some()
    );
}

#[tokio::test]
async fn operator_verbs_never_create_what_they_should_find() {
    let app = crate::helpers::spawn_app().await;
    // A mistyped database: refused by name, and not created.
    let typo = format!("{}_typo", app.settings.database_url);
    let e = paved::secrets::existing_database(&typo).await.unwrap_err();
    assert!(format!("{e:#}").contains("does not exist"), "{e:#}");
    let e = paved::secrets::existing_database(&typo).await.unwrap_err();
    assert!(
        format!("{e:#}").contains("does not exist"),
        "still not there: {e:#}"
    );
    // A mistyped stream: refused by name, and not created.
    let mut settings = app.settings.clone();
    settings.stream = format!("{}_TYPO", settings.stream);
    let e = paved::secrets::existing_log(&settings).await.err().unwrap();
    assert!(format!("{e:#}").contains("does not exist"), "{e:#}");
    let nats = async_nats::connect(crate::helpers::nats_url())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(nats);
    assert!(
        js.get_stream(&settings.stream).await.is_err(),
        "no stream was made"
    );
    // And no key is made up: a quarantine needs the real one.
    let e = paved::operations::quarantine(&settings, 1, &[], "x", "alice")
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("does not exist"), "{e:#}");
}

#[tokio::test]
async fn a_member_token_is_made_only_for_a_team_that_exists() {
    let app = crate::helpers::spawn_app().await;
    let member = |team: &str| paved_domain::Principal {
        name: "dana".into(),
        role: paved_domain::Role::Member {
            team: paved_domain::Name::parse(team).unwrap(),
        },
    };
    let db = &app.settings.database_url;
    let e = paved::operations::create_token(db, &member("no-such-team"))
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("no such team"), "{e:#}");
    let none: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens WHERE principal = 'dana'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(none, 0, "no token was stored for the mistyped team");
    // Once the team is in the catalog the same call gives a token that works.
    let created = app
        .client
        .create_team(crate::helpers::fixtures::team("payments"))
        .await
        .unwrap();
    // The check reads the catalog: once the team is in it.
    app.client
        .at(created.sequence)
        .get_team("payments")
        .await
        .unwrap();
    let token = paved::operations::create_token(db, &member("payments"))
        .await
        .unwrap();
    let dana = paved_sdk::Client::connect(app.url.clone(), &token)
        .await
        .unwrap();
    assert_eq!(dana.get_team("payments").await.unwrap().name, "payments");
}

#[tokio::test]
async fn dev_mode_prints_an_admin_token_only_into_a_new_token_table() {
    let mut app = crate::helpers::spawn_app().await;
    // Every admin token revoked...
    paved_api::auth::revoke_tokens(&app.pool, "admin")
        .await
        .unwrap();
    app.stop().await.unwrap();
    // ...and a restart in dev mode prints none.
    let again = paved::Application::build(app.settings.clone(), paved::Roles::API)
        .await
        .unwrap();
    assert!(again.admin_token().is_none());
}
