//! Plugin webhooks against a local receiver: Standard Webhooks signatures
//! checked by the reference library, order, retries honouring
//! `Retry-After`, dead letters and their replay, `410 Gone`, and the SSRF
//! guard (no forbidden address ever receives a connection).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use paved::Roles;
use paved_sdk::pb;

use crate::helpers::{TestApp, eventually, fixtures, spawn_configured};

/// What the receiver got: (when, headers, body).
type Received = Arc<Mutex<Vec<(Instant, HeaderMap, String)>>>;
/// What the receiver answers next: a status and a `Retry-After`.
type Script = Arc<Mutex<VecDeque<(StatusCode, Option<&'static str>)>>>;

/// A receiver answering from a script (then 204 for ever).
struct Receiver {
    url: String,
    received: Received,
    script: Script,
}

impl Receiver {
    async fn start() -> Self {
        Self::slow(Duration::ZERO).await
    }

    /// One that takes `delay` to answer each post.
    async fn slow(delay: Duration) -> Self {
        let received: Received = Arc::default();
        let script: Script = Arc::default();
        let (r, s) = (received.clone(), script.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let (r, s) = (r.clone(), s.clone());
                async move {
                    tokio::time::sleep(delay).await;
                    r.lock().unwrap().push((Instant::now(), headers, body));
                    let (status, retry_after) = s
                        .lock()
                        .unwrap()
                        .pop_front()
                        .unwrap_or((StatusCode::NO_CONTENT, None));
                    let mut h = HeaderMap::new();
                    if let Some(v) = retry_after {
                        h.insert("retry-after", v.parse().unwrap());
                    }
                    (status, h, "receiver says so")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Self {
            url: format!("http://{addr}/hook"),
            received,
            script,
        }
    }

    fn answer(&self, answers: &[(StatusCode, Option<&'static str>)]) {
        self.script.lock().unwrap().extend(answers.iter().copied());
    }

    fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// The aggregate ids of what was received, in order.
    fn ids(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, body)| {
                let v: serde_json::Value = serde_json::from_str(body).unwrap();
                v["data"]["aggregateId"].as_str().unwrap().to_owned()
            })
            .collect()
    }
}

/// Paved delivering to loopback (allowed explicitly), retrying fast.
async fn app(retry: &str) -> TestApp {
    let retry: Vec<f64> = retry.split(',').map(|s| s.parse().unwrap()).collect();
    let app = spawn_configured(Roles::ALL, |s| {
        s.plugin_webhook_allow = vec!["127.0.0.0/8".parse().unwrap()];
        s.plugin_webhook_allow_http = true;
        s.plugin_webhook_retry_seconds = retry;
    })
    .await;
    app.client
        .create_team(fixtures::team("platform"))
        .await
        .unwrap();
    app.client
        .create_team(fixtures::team("payments"))
        .await
        .unwrap();
    app
}

/// Publishes `plugin` posting ServiceRegistered to `url`, installs it;
/// returns the webhook secret.
async fn install_webhook(app: &TestApp, plugin: &str, url: &str) -> String {
    app.client
        .publish_plugin(pb::PublishPluginRequest {
            plugin: plugin.into(),
            manifest: Some(pb::PluginManifest {
                version: "1.0.0".into(),
                publisher: "platform".into(),
                title: "Chat".into(),
                scopes: vec!["events:read:catalog".into()],
                event_types: vec!["ServiceRegistered".into()],
                webhook_url: url.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    app.client
        .install_plugin(pb::InstallPluginRequest {
            installation: plugin.into(),
            plugin: plugin.into(),
            version: "1.0.0".into(),
            scopes: vec!["events:read:catalog".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .webhook_secret
}

async fn register(app: &TestApp, name: &str) -> u64 {
    app.client
        .register_service(fixtures::service(name, "payments"))
        .await
        .unwrap()
        .sequence
}

async fn installation(app: &TestApp, name: &str) -> pb::PluginInstallation {
    let mut plugins = app.client.plugins();
    plugins
        .list_installations(pb::ListInstallationsRequest {
            plugin: name.into(),
            min_sequence: app.last_sequence().await,
        })
        .await
        .unwrap()
        .into_inner()
        .installations
        .remove(0)
}

/// Every event of installation `name`, from the log.
async fn installation_events(app: &TestApp, name: &str) -> Vec<pb::EventRecord> {
    let mut s = app
        .client
        .read_events(pb::ReadEventsRequest {
            filter: Some(pb::EventFilter {
                aggregate_type: "installation".into(),
                aggregate_id: name.into(),
                ..Default::default()
            }),
            omit_json: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(r) = s.message().await.unwrap() {
        out.push(r);
    }
    out
}

async fn dead_letters(app: &TestApp, name: &str) -> Vec<pb::DeadLetter> {
    let mut plugins = app.client.plugins();
    plugins
        .list_dead_letters(pb::ListDeadLettersRequest {
            installation: name.into(),
            min_sequence: app.last_sequence().await,
        })
        .await
        .unwrap()
        .into_inner()
        .dead_letters
}

#[tokio::test]
async fn posts_are_signed_in_order_retried_after_retry_after_and_dead_lettered_then_replayed() {
    let app = app("0.1,0.1").await;
    let receiver = Receiver::start().await;
    let secret = install_webhook(&app, "chat", &receiver.url).await;
    assert!(secret.starts_with("whsec_"));
    // The first post is refused with Retry-After: 1 s.
    receiver.answer(&[(StatusCode::SERVICE_UNAVAILABLE, Some("1"))]);
    register(&app, "a-api").await;
    register(&app, "b-api").await;
    let c = register(&app, "c-api").await;
    eventually(Duration::from_secs(20), "a, a again, b and c", || async {
        (receiver.count() >= 4).then_some(())
    })
    .await;
    assert_eq!(receiver.ids(), ["a-api", "a-api", "b-api", "c-api"]);
    let got = receiver.received.lock().unwrap().clone();
    // The retry waited for Retry-After (1 s), not the 0.1 s schedule.
    assert!(got[1].0 - got[0].0 >= Duration::from_millis(950));
    // Every post verifies with the reference library; a retry keeps its id.
    let verifier = standardwebhooks::Webhook::new(&secret).unwrap();
    for (_, headers, body) in &got {
        verifier
            .verify(body.as_bytes(), headers)
            .expect("signature verifies");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["type"], "ServiceRegistered");
        assert!(v["timestamp"].is_string());
    }
    assert_eq!(got[0].1["webhook-id"], got[1].1["webhook-id"]);
    assert_ne!(got[1].1["webhook-id"], got[2].1["webhook-id"]);
    let wrong = standardwebhooks::Webhook::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    assert!(wrong.verify(got[0].2.as_bytes(), &got[0].1).is_err());
    let inst = eventually(Duration::from_secs(10), "the cursor at c", || async {
        let i = installation(&app, "chat").await;
        (i.cursor >= c).then_some(i)
    })
    .await;
    assert_eq!(inst.failing_sequence, 0);

    // d fails every attempt (1 + 2 retries): a dead letter; e goes on.
    receiver.answer(&[(StatusCode::INTERNAL_SERVER_ERROR, None); 3]);
    let d = register(&app, "d-api").await;
    let e = register(&app, "e-api").await;
    eventually(Duration::from_secs(20), "e delivered", || async {
        (installation(&app, "chat").await.cursor >= e).then_some(())
    })
    .await;
    assert_eq!(&receiver.ids()[4..], ["d-api", "d-api", "d-api", "e-api"]);
    let dead = dead_letters(&app, "chat").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].sequence, dead[0].attempts, dead[0].status),
        (d, 3, 500)
    );
    assert!(dead[0].error.contains("receiver says so"));

    // A member may not replay; an admin does, once, with the same id.
    let member = app
        .client_as(paved_domain::Principal::member(
            "ada",
            paved_domain::Name::parse("payments").unwrap(),
        ))
        .await;
    let replay = pb::ReplayDeadLetterRequest {
        installation: "chat".into(),
        sequence: d,
        ..Default::default()
    };
    assert_eq!(
        member
            .replay_dead_letter(replay.clone())
            .await
            .unwrap_err()
            .code(),
        tonic::Code::PermissionDenied
    );
    let mut missing = replay.clone();
    missing.sequence = e;
    assert_eq!(
        app.client
            .replay_dead_letter(missing)
            .await
            .unwrap_err()
            .code(),
        tonic::Code::NotFound
    );
    app.client.replay_dead_letter(replay).await.unwrap();
    let dead = eventually(Duration::from_secs(10), "the replay delivered", || async {
        let d = dead_letters(&app, "chat").await;
        d[0].delivered.then_some(d)
    })
    .await;
    assert!(!dead[0].replay_pending);
    assert_eq!(receiver.ids().last().unwrap(), "d-api");
    let got = receiver.received.lock().unwrap().clone();
    assert_eq!(got[4].1["webhook-id"], got.last().unwrap().1["webhook-id"]);

    // What the plugin was sent and answered is in the log.
    let types: Vec<String> = installation_events(&app, "chat")
        .await
        .into_iter()
        .map(|r| r.event_type)
        .collect();
    for t in [
        "WebhookAttemptFailed",
        "WebhookDeadLettered",
        "WebhookReplayRequested",
        "WebhookReplayed",
        "PluginEventsAcknowledged",
    ] {
        assert!(types.iter().any(|x| x == t), "{t} in {types:?}");
    }
}

#[tokio::test]
async fn gone_disables_the_endpoint_until_an_upgrade_and_rotation_signs_with_both_secrets() {
    let app = app("0.1").await;
    let receiver = Receiver::start().await;
    let old = install_webhook(&app, "chat", &receiver.url).await;
    receiver.answer(&[(StatusCode::GONE, None)]);
    register(&app, "a-api").await;
    let inst = eventually(Duration::from_secs(10), "disabled", || async {
        let i = installation(&app, "chat").await;
        (!i.disabled_reason.is_empty()).then_some(i)
    })
    .await;
    assert!(
        inst.disabled_reason.contains("410"),
        "{}",
        inst.disabled_reason
    );
    register(&app, "b-api").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.count(), 1, "nothing more while disabled");

    // A rotation with an overlap: posts carry both signatures.
    let rotated = app
        .client
        .rotate_plugin_token(pb::RotatePluginTokenRequest {
            installation: "chat".into(),
            overlap_seconds: 3600,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_ne!(rotated.webhook_secret, old);
    // An upgrade (to the same version) enables it again: a-api, then b-api.
    app.client
        .upgrade_installation(pb::UpgradeInstallationRequest {
            installation: "chat".into(),
            version: "1.0.0".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "a and b", || async {
        (receiver.count() >= 3).then_some(())
    })
    .await;
    assert_eq!(receiver.ids(), ["a-api", "a-api", "b-api"]);
    let got = receiver.received.lock().unwrap().clone();
    let last = &got[2];
    let signatures = last.1["webhook-signature"].to_str().unwrap();
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    for secret in [&old, &rotated.webhook_secret] {
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(last.2.as_bytes(), &last.1)
            .expect("both secrets verify during the overlap");
    }
}

#[tokio::test]
async fn no_forbidden_address_ever_receives_a_connection() {
    // No allow-list: loopback and private addresses are refused.
    let app = spawn_configured(Roles::ALL, |s| {
        s.plugin_webhook_retry_seconds = vec![3600.0];
    })
    .await;
    app.client
        .create_team(fixtures::team("platform"))
        .await
        .unwrap();
    app.client
        .create_team(fixtures::team("payments"))
        .await
        .unwrap();
    // A listener that counts connections, on loopback.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(Mutex::new(0usize));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            *counted.lock().unwrap() += 1;
        }
    });
    let urls = [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        format!("http://2130706433:{port}/hook"),
        format!("http://0x7f.0.0.1:{port}/hook"),
        format!("http://0177.0.0.1:{port}/hook"),
        format!("http://127.1:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://0.0.0.0:{port}/hook"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.1/hook".to_string(),
        "http://[fd00:ec2::254]/hook".to_string(),
    ];
    for (i, url) in urls.iter().enumerate() {
        install_webhook(&app, &format!("probe-{i}"), url).await;
    }
    let a = register(&app, "a-api").await;
    for (i, url) in urls.iter().enumerate() {
        let inst = eventually(Duration::from_secs(15), "a refused attempt", || async {
            let i = installation(&app, &format!("probe-{i}")).await;
            (i.failing_attempts > 0).then_some(i)
        })
        .await;
        assert!(inst.cursor < a, "{url}: a-api not delivered");
        assert_eq!(inst.failing_sequence, a);
    }
    // Each failure says why, without a connection.
    let mut s = app
        .client
        .read_events(pb::ReadEventsRequest {
            filter: Some(pb::EventFilter {
                event_types: vec!["WebhookAttemptFailed".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut why = Vec::new();
    while let Some(r) = s.message().await.unwrap() {
        why.push(r.json);
    }
    assert_eq!(why.len(), urls.len());
    assert!(why.iter().all(|j| j.contains("forbidden")), "{why:?}");
    assert_eq!(*connections.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_crash_while_posting_loses_nothing_and_resends_only_what_was_not_recorded() {
    let mut app = app("0.1").await;
    let receiver = Receiver::slow(Duration::from_millis(150)).await;
    let secret = install_webhook(&app, "chat", &receiver.url).await;
    let names: Vec<String> = (0..8).map(|i| format!("svc-{i}")).collect();
    let mut last = 0;
    for name in &names {
        last = register(&app, name).await;
    }
    for seen in [2, 4, 6] {
        eventually(Duration::from_secs(20), "posts arriving", || async {
            (receiver.count() >= seen).then_some(())
        })
        .await;
        app.crash_and_restart().await;
    }
    eventually(
        Duration::from_secs(30),
        "the cursor at the last",
        || async { (installation(&app, "chat").await.cursor >= last).then_some(()) },
    )
    .await;
    // Every service arrived, first in log order; a repeat is the same post.
    let ids = receiver.ids();
    let mut first_seen: Vec<String> = Vec::new();
    for id in &ids {
        if !first_seen.contains(id) {
            first_seen.push(id.clone());
        }
    }
    assert_eq!(first_seen, names, "{ids:?}");
    let got = receiver.received.lock().unwrap().clone();
    let verifier = standardwebhooks::Webhook::new(&secret).unwrap();
    let mut by_id = std::collections::BTreeMap::new();
    for (_, headers, body) in &got {
        verifier.verify(body.as_bytes(), headers).unwrap();
        let id = headers["webhook-id"].to_str().unwrap().to_owned();
        let previous = by_id.insert(id, body.clone());
        assert!(
            previous.is_none_or(|p| &p == body),
            "a repeat is the same post"
        );
    }
    assert_eq!(by_id.len(), names.len());
}

#[tokio::test]
async fn crashes_of_postgres_and_nats_while_posting_lose_nothing_and_record_each_outcome_once() {
    use crate::private::{PrivateNats, PrivatePostgres};
    let pg = Arc::new(PrivatePostgres::start());
    let mut nats = PrivateNats::start("");
    let (db, url) = (pg.url("paved"), nats.url());
    let app = spawn_configured(Roles::ALL, |s| {
        s.database_url = db;
        s.nats_url = url;
        s.plugin_webhook_allow = vec!["127.0.0.0/8".parse().unwrap()];
        s.plugin_webhook_allow_http = true;
        s.plugin_webhook_retry_seconds = vec![0.2; 20];
    })
    .await;
    for team in ["platform", "payments"] {
        app.client.create_team(fixtures::team(team)).await.unwrap();
    }
    let receiver = Receiver::slow(Duration::from_millis(40)).await;
    let secret = install_webhook(&app, "chat", &receiver.url).await;
    let names: Vec<String> = (0..10).map(|i| format!("svc-{i}")).collect();
    // Registered while the crashes happen, each retried under its own
    // request id until it is taken.
    let client = app.client.clone();
    let registered = tokio::spawn({
        let names = names.clone();
        async move {
            let mut last = 0;
            for name in names {
                let mut r = fixtures::service(&name, "payments");
                r.request_id = format!("fault-{name}");
                last = loop {
                    match client.register_service(r.clone()).await {
                        Ok(done) => break done.sequence,
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                };
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            last
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.crash_for_a_moment().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    nats.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    nats.start_again();
    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.crash_for_a_moment().await;
    let last = registered.await.unwrap();
    eventually(
        Duration::from_secs(120),
        "the cursor at the last",
        || async {
            let mut plugins = app.client.plugins();
            let i = plugins
                .list_installations(pb::ListInstallationsRequest {
                    plugin: "chat".into(),
                    min_sequence: 0,
                })
                .await
                .ok()?
                .into_inner()
                .installations
                .pop()?;
            (i.cursor >= last).then_some(())
        },
    )
    .await;
    // Every service arrived, first in log order; a repeat is the same post.
    let got = receiver.received.lock().unwrap().clone();
    let verifier = standardwebhooks::Webhook::new(&secret).unwrap();
    let mut first_seen: Vec<String> = Vec::new();
    let mut by_id = std::collections::BTreeMap::new();
    for (_, headers, body) in &got {
        verifier.verify(body.as_bytes(), headers).unwrap();
        let id = headers["webhook-id"].to_str().unwrap().to_owned();
        let previous = by_id.insert(id, body.clone());
        assert!(
            previous.is_none_or(|p| &p == body),
            "a repeat is the same post"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        let service = v["data"]["aggregateId"].as_str().unwrap().to_owned();
        if !first_seen.contains(&service) {
            first_seen.push(service);
        }
    }
    assert_eq!(first_seen, names);
    // The receiver never refused: no failed attempt, no dead letter, and
    // each acknowledgement recorded once (ids derive from the sequence).
    let mut acks = Vec::new();
    for r in installation_events(&app, "chat").await {
        assert!(
            !r.event_type.starts_with("Webhook"),
            "{}: the receiver never failed",
            r.event_type
        );
        if r.event_type == "PluginEventsAcknowledged" {
            acks.push(r.command_id);
        }
    }
    let unique: std::collections::BTreeSet<&String> = acks.iter().collect();
    assert_eq!(unique.len(), acks.len(), "{acks:?}");
}
