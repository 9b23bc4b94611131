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
        .deprecate_service(pb::RetireRequest {
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
        .add_team_member(pb::TeamMemberRequest {
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
