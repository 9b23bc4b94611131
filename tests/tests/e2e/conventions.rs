//! What clients in other languages and tools expect: reflection in both
//! versions, RFC 7235 auth schemes, proto3 JSON as the spec writes it,
//! honest read errors and counters.

use paved_sdk::pb;
use tonic::Code;

use crate::helpers::{fixtures, spawn_app};

#[tokio::test]
async fn reflection_answers_in_v1alpha_with_the_files_dependencies() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    let app = spawn_app().await;
    let channel = tonic::transport::Endpoint::from_shared(app.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let ask = |m: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    };
    let requests = futures::stream::iter(vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(
            "paved.v1.CatalogService".into(),
        )),
        ask(MessageRequest::FileContainingSymbol(
            "paved.v1.NoSuchThing".into(),
        )),
        ask(MessageRequest::FileByFilename(
            "paved/v1/types.proto".into(),
        )),
    ]);
    let mut answers = client
        .server_reflection_info(requests)
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("no service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for s in [
        "paved.v1.CatalogService",
        "paved.v1.SurveyService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == s), "{s} in {names:?}");
    }
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("no file descriptors")
    };
    // The file and what it imports (types.proto, the well-known types).
    let names: Vec<String> = files
        .file_descriptor_proto
        .iter()
        .map(|b| {
            use prost::Message;
            prost_types::FileDescriptorProto::decode(b.as_slice())
                .unwrap()
                .name
                .unwrap_or_default()
        })
        .collect();
    for f in [
        "paved/v1/catalog.proto",
        "paved/v1/types.proto",
        "google/protobuf/timestamp.proto",
    ] {
        assert!(names.iter().any(|n| n == f), "{f} in {names:?}");
    }
    assert_eq!(
        names[0], "paved/v1/catalog.proto",
        "the file asked for comes first"
    );
    // An unknown symbol is an error answer, and the stream goes on.
    let Some(MessageResponse::ErrorResponse(e)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("no error response")
    };
    assert_eq!(e.error_code, Code::NotFound as i32);
    let Some(MessageResponse::FileDescriptorResponse(_)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("the stream ended after an error")
    };
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let channel = tonic::transport::Endpoint::from_shared(app.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut c = pb::catalog_service_client::CatalogServiceClient::new(channel);
        let mut r = tonic::Request::new(pb::ListTeamsRequest::default());
        r.metadata_mut().insert(
            "authorization",
            format!("{scheme} {}", app.admin_token).parse().unwrap(),
        );
        c.list_teams(r)
            .await
            .unwrap_or_else(|e| panic!("{scheme}: {e}"));
    }
}

#[tokio::test]
async fn a_min_sequence_past_the_end_of_the_log_is_out_of_range_at_once() {
    let app = spawn_app().await;
    let done = app
        .client
        .create_team(fixtures::team("payments"))
        .await
        .unwrap();
    // OUT_OF_RANGE, not the UNAVAILABLE that ends a wait.
    let e = app
        .client
        .at(done.sequence + 1000)
        .get_team("payments")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e}");
}

#[tokio::test]
async fn json_writes_timestamps_with_z_and_zero_values() {
    let app = spawn_app().await;
    let done = app
        .client
        .create_team(fixtures::team("payments"))
        .await
        .unwrap();
    let team = app
        .client
        .at(done.sequence)
        .get_team("payments")
        .await
        .unwrap();
    let json = serde_json::to_value(&team).unwrap();
    let created = json["createdAt"].as_str().unwrap();
    assert!(created.ends_with('Z'), "{created}");
    // Zero values are there, not left out.
    assert_eq!(json["services"], serde_json::json!(0));
    assert_eq!(json["retired"], serde_json::json!(false));
    // And so in the records ReadEvents renders.
    let mut s = app
        .client
        .read_events(pb::ReadEventsRequest::default())
        .await
        .unwrap();
    let r = s.message().await.unwrap().unwrap();
    let record = serde_json::to_value(&r).unwrap();
    assert!(
        record["occurredAt"].as_str().unwrap().ends_with('Z'),
        "{record}"
    );
}

#[tokio::test]
async fn a_replayed_request_id_is_counted_as_replayed() {
    let app = spawn_app().await;
    let mut r = fixtures::team("payments");
    r.request_id = "count-me".into();
    app.client.create_team(r.clone()).await.unwrap();
    app.client.create_team(r).await.unwrap();
    let body = app.scrape().await;
    let line = |o: &str| {
        body.lines()
            .find(|l| l.starts_with(&format!("paved_commands_total{{outcome=\"{o}\"}}")))
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
    };
    assert_eq!(line("applied").as_deref(), Some("1"), "{body}");
    assert_eq!(line("replayed").as_deref(), Some("1"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_idle_webhook_connections_is_capped_and_the_api_keeps_answering() {
    use tokio::io::AsyncReadExt;
    let app = spawn_app().await;
    let cap = paved::connections::Limits::WEBHOOKS.max_connections;
    let addr = app.webhook_addr.unwrap();
    let mut held = Vec::new();
    for _ in 0..cap + 100 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // The ones over the cap are closed by the server at once.
    let mut closed = 0;
    for s in held.iter_mut().rev().take(100) {
        let mut b = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut b)).await
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 100, "connections over the cap are closed");
    // Meanwhile the gRPC API answers as usual.

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
    // And once the idle ones go, webhooks are served again.
    drop(held);
    let status = crate::helpers::eventually(
        std::time::Duration::from_secs(10),
        "a webhook answer",
        || async {
            reqwest::Client::new()
                .post(format!("http://{addr}/webhooks/github"))
                .body("{}")
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16())
        },
    )
    .await;
    assert_eq!(status, 503, "served (no secret configured)");
}

#[tokio::test]
async fn an_idle_connection_is_closed_by_the_server() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut limited = paved::connections::LimitedListener::new(
        listener,
        paved::connections::Limits {
            max_connections: 1,
            idle: std::time::Duration::from_millis(200),
            lifetime: None,
        },
        "test",
    );
    let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut conn, _) = limited.next().await;
    let started = std::time::Instant::now();
    let mut b = [0u8; 8];
    let e = conn.read(&mut b).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
}
