//! The plugin marketplace through the SDK: publishing and finding plugins,
//! installing them with a grant, the scope table on every call a plugin
//! makes, its durable cursor, and its tokens' rotation and revocation.

use std::time::Duration;

use paved_domain::{Name, Principal};
use paved_sdk::{Client, pb};
use tonic::Code;

use crate::helpers::{TestApp, fixtures, spawn_app};

fn n(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn manifest(version: &str, scopes: &[&str]) -> pb::PluginManifest {
    pb::PluginManifest {
        version: version.into(),
        publisher: "platform".into(),
        title: "Backstage entity provider".into(),
        description: "Shows Paved's catalog in Backstage's.".into(),
        homepage: "https://example.com/backstage".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        event_types: vec![],
        webhook_url: String::new(),
    }
}

fn publish(plugin: &str, m: pb::PluginManifest) -> pb::PublishPluginRequest {
    pb::PublishPluginRequest {
        plugin: plugin.into(),
        manifest: Some(m),
        ..Default::default()
    }
}

async fn with_teams(app: &TestApp) {
    for team in ["platform", "payments", "search"] {
        app.client.create_team(fixtures::team(team)).await.unwrap();
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, paved_sdk::Error>) -> Code {
    r.expect_err("refused").code()
}

fn fields(e: paved_sdk::Error) -> Vec<String> {
    e.field_violations().into_iter().map(|(f, _)| f).collect()
}

/// Installs `plugin` 1.0.0 as `installation` with `scopes`; returns a client
/// holding its token.
async fn install(
    app: &TestApp,
    installation: &str,
    plugin: &str,
    scopes: &[&str],
    team: &str,
) -> (Client, pb::InstallPluginResponse) {
    let r = app
        .client
        .install_plugin(pb::InstallPluginRequest {
            installation: installation.into(),
            plugin: plugin.into(),
            version: "1.0.0".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            team: team.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let client = Client::connect(app.url.clone(), &r.token).await.unwrap();
    (client, r)
}

#[tokio::test]
async fn teams_publish_plugins_that_everyone_finds_and_only_the_publisher_changes() {
    let app = spawn_app().await;
    with_teams(&app).await;
    let platform = app.client_as(Principal::member("ada", n("platform"))).await;
    let payments = app.client_as(Principal::member("bob", n("payments"))).await;
    let reader = app.client_as(Principal::reader("rita")).await;

    let all = ["catalog:read", "events:read:catalog"];
    platform
        .publish_plugin(publish("backstage", manifest("1.0.0", &all)))
        .await
        .unwrap();
    let done = platform
        .publish_plugin(publish("backstage", manifest("1.2.0-rc.1", &all)))
        .await
        .unwrap();
    platform
        .publish_plugin(publish("backstage", manifest("1.1.0", &all)))
        .await
        .unwrap();
    // The same version again: nothing; with another manifest: refused.
    let again = platform
        .publish_plugin(publish("backstage", manifest("1.0.0", &all)))
        .await
        .unwrap();
    assert_eq!(again.events, 0);
    let mut changed = manifest("1.0.0", &all);
    changed.description = "Something else".into();
    assert_eq!(
        code(platform.publish_plugin(publish("backstage", changed)).await),
        Code::AlreadyExists
    );
    // Another team, a reader: refused, nothing appended.
    let before = app.last_sequence().await;
    assert_eq!(
        code(
            payments
                .publish_plugin(publish("backstage", manifest("2.0.0", &all)))
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            reader
                .publish_plugin(publish("chat", manifest("1.0.0", &all)))
                .await
        ),
        Code::PermissionDenied
    );
    // Bad input, every field at once.
    let mut bad = manifest("v1", &["catalog:read", "root", "surveys:respond"]);
    bad.event_types = vec!["NoSuchEvent".into()];
    bad.webhook_url = "gopher://x".into();
    bad.title = "x".repeat(10_000);
    let e = platform
        .publish_plugin(publish("Bad_Name", bad))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let f = fields(e);
    for field in ["plugin", "manifest.scopes[1]"] {
        assert!(f.contains(&field.to_string()), "{field} in {f:?}");
    }
    // The domain's own checks, once the edge's pass.
    let mut bad = manifest("v1", &["surveys:respond"]);
    bad.event_types = vec!["NoSuchEvent".into()];
    bad.webhook_url = "gopher://x".into();
    let f = fields(
        platform
            .publish_plugin(publish("chat", bad))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        f,
        [
            "manifest.version",
            "manifest.scopes[0]",
            "manifest.event_types[0]",
            "manifest.webhook_url"
        ]
    );
    // A publisher that does not exist.
    let mut ghost = manifest("1.0.0", &all);
    ghost.publisher = "ghosts".into();
    assert_eq!(
        code(platform.publish_plugin(publish("chat", ghost)).await),
        Code::FailedPrecondition
    );
    // The same request id with another body is not a retry.
    let mut req = publish("chat", manifest("1.0.0", &all));
    req.request_id = "publish-chat".into();
    platform.publish_plugin(req.clone()).await.unwrap();
    req.manifest = Some(manifest("1.0.1", &all));
    assert!(platform.publish_plugin(req).await.is_err());
    assert_eq!(app.last_sequence().await, before + 1);

    // Everyone finds them; the latest is the highest release.
    let mut plugins = reader.plugins();
    let list = plugins
        .list_plugins(pb::ListPluginsRequest {
            min_sequence: app.last_sequence().await,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .plugins;
    let latest: Vec<(String, String)> = list
        .iter()
        .map(|p| {
            (
                p.plugin.clone(),
                p.manifest.as_ref().unwrap().version.clone(),
            )
        })
        .collect();
    assert_eq!(
        latest,
        [
            ("backstage".to_string(), "1.2.0-rc.1".to_string()),
            ("chat".to_string(), "1.0.0".to_string())
        ]
    );
    let found = plugins
        .list_plugins(pb::ListPluginsRequest {
            query: "backstage".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .plugins;
    assert_eq!(found.len(), 2, "title and description both say Backstage");
    let versions: Vec<String> = plugins
        .get_plugin(pb::GetPluginRequest {
            plugin: "backstage".into(),
            min_sequence: done.sequence,
        })
        .await
        .unwrap()
        .into_inner()
        .versions
        .into_iter()
        .map(|v| v.manifest.unwrap().version)
        .collect();
    assert_eq!(versions, ["1.2.0-rc.1", "1.1.0", "1.0.0"]);
    assert_eq!(
        plugins
            .get_plugin(pb::GetPluginRequest {
                plugin: "nothing".into(),
                min_sequence: 0
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    // Yanked: gone from the list's latest, and not installable.
    let yanked = platform
        .yank_plugin_version(pb::YankPluginVersionRequest {
            plugin: "backstage".into(),
            version: "1.2.0-rc.1".into(),
            reason: "breaks deltas".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        code(
            payments
                .deprecate_plugin_version(pb::DeprecatePluginVersionRequest {
                    plugin: "backstage".into(),
                    version: "1.0.0".into(),
                    reason: "old".into(),
                    ..Default::default()
                })
                .await
        ),
        Code::PermissionDenied
    );
    let list = plugins
        .list_plugins(pb::ListPluginsRequest {
            min_sequence: yanked.sequence,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .plugins;
    assert_eq!(list[0].manifest.as_ref().unwrap().version, "1.1.0");
    let e = app
        .client
        .install_plugin(pb::InstallPluginRequest {
            installation: "portal".into(),
            plugin: "backstage".into(),
            version: "1.2.0-rc.1".into(),
            scopes: vec!["catalog:read".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn a_plugin_calls_only_what_it_was_granted_and_never_reads_survey_answers() {
    let app = spawn_app().await;
    with_teams(&app).await;
    let asks = [
        "catalog:read",
        "catalog:write",
        "events:read:catalog",
        "events:read:surveys",
        "delivery:read",
    ];
    app.client
        .publish_plugin(publish("backstage", manifest("1.0.0", &asks)))
        .await
        .unwrap();
    // Admins install; a member may not; a grant beyond the ask is refused.
    let member = app.client_as(Principal::member("ada", n("platform"))).await;
    let try_install = |client: Client, scopes: Vec<&'static str>| async move {
        client
            .install_plugin(pb::InstallPluginRequest {
                installation: "portal".into(),
                plugin: "backstage".into(),
                version: "1.0.0".into(),
                scopes: scopes.into_iter().map(String::from).collect(),
                team: "payments".into(),
                ..Default::default()
            })
            .await
    };
    assert_eq!(
        code(try_install(member, vec!["catalog:read"]).await),
        Code::PermissionDenied
    );
    let e = try_install(
        app.client.clone(),
        vec!["catalog:read", "metrics:read", "nope"],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(fields(e), ["scopes[2]"]);
    let e = try_install(app.client.clone(), vec!["metrics:read"])
        .await
        .unwrap_err();
    assert_eq!(fields(e), ["scopes[0]"], "not asked for by the version");
    let e = app
        .client
        .install_plugin(pb::InstallPluginRequest {
            installation: "x".into(),
            plugin: "nothing".into(),
            version: "1.0.0".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    let (plugin, installed) = install(
        &app,
        "portal",
        "backstage",
        &[
            "catalog:read",
            "catalog:write",
            "events:read:catalog",
            "events:read:surveys",
        ],
        "payments",
    )
    .await;
    assert!(installed.token.starts_with("pvp_"));
    let inst = installed.installation.unwrap();
    assert_eq!(inst.status, "installed");
    assert_eq!(inst.team, "payments");

    // Granted: catalog reads, and writes as a member of payments.
    app.client
        .register_service(fixtures::service("search-api", "search"))
        .await
        .unwrap();
    let mine = plugin
        .register_service(fixtures::service("payments-api", "payments"))
        .await
        .unwrap();
    plugin
        .at(mine.sequence)
        .get_service("payments-api")
        .await
        .unwrap();
    assert_eq!(
        code(
            plugin
                .register_service(fixtures::service("search-web", "search"))
                .await
        ),
        Code::PermissionDenied,
        "search's service is not the plugin's team's"
    );
    // Not granted: delivery, metrics, templates, provisioning, plugins, surveys.
    let mut delivery = plugin.delivery();
    assert_eq!(
        delivery
            .list_deployments(pb::ListDeploymentsRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let mut templates = plugin.templates();
    assert_eq!(
        templates
            .list_templates(pb::ListTemplatesRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let mut plugins = plugin.plugins();
    assert_eq!(
        plugins
            .list_installations(pb::ListInstallationsRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let mut surveys = plugin.surveys();
    assert_eq!(
        surveys
            .list_surveys(pb::ListSurveysRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            plugin
                .submit_response(pb::SubmitResponseRequest {
                    survey: "q4".into(),
                    nps: 9,
                    ..Default::default()
                })
                .await
        ),
        Code::PermissionDenied,
        "surveys:respond is never a plugin's"
    );

    // Survey answers in the log: a person with events:read:surveys sees the
    // (sealed) responses; the plugin, granted the same, never does.
    app.client
        .create_survey(pb::CreateSurveyRequest {
            id: "q4".into(),
            definition: Some(pb::SurveyDefinition {
                title: "Developer experience".into(),
                opens_at: Some(paved_eventlog::codec::timestamp(
                    chrono::Utc::now() - chrono::Duration::minutes(1),
                )),
                closes_at: Some(paved_eventlog::codec::timestamp(
                    chrono::Utc::now() + chrono::Duration::hours(1),
                )),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let dev = app.client_as(Principal::member("dev", n("payments"))).await;
    dev.submit_response(pb::SubmitResponseRequest {
        survey: "q4".into(),
        nps: 9,
        ..Default::default()
    })
    .await
    .unwrap();
    let read = |client: Client| async move {
        let mut s = client
            .read_events(pb::ReadEventsRequest {
                omit_json: true,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut out = Vec::new();
        while let Some(r) = s.message().await.unwrap() {
            out.push((r.context, r.event_type));
        }
        out
    };
    let seen = read(plugin.clone()).await;
    assert!(
        seen.iter().all(|(c, _)| c == "catalog" || c == "surveys"),
        "{seen:?}"
    );
    assert!(seen.iter().any(|(_, t)| t == "ServiceRegistered"));
    assert!(
        !seen.iter().any(|(_, t)| t == "SurveyResponseSubmitted"),
        "{seen:?}"
    );
    let admin_sees = read(app.client.clone()).await;
    assert!(admin_sees.iter().any(|(c, _)| c == "plugins"));
    assert!(
        admin_sees
            .iter()
            .any(|(_, t)| t == "SurveyResponseSubmitted")
    );

    // A person's token is not a plugin's.
    assert_eq!(
        code(app.client.subscribe_plugin_events(true).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(app.client.acknowledge_plugin_events(1).await),
        Code::PermissionDenied
    );
}

/// Reads `n` records from a subscription.
async fn take(
    stream: &mut tonic::Streaming<pb::SubscribePluginEventsResponse>,
    n: usize,
) -> Vec<pb::EventRecord> {
    let mut out = Vec::new();
    while out.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("the stream goes on");
        out.push(next.record.unwrap());
    }
    out
}

#[tokio::test]
async fn a_plugin_resumes_after_its_last_acknowledgement_without_loss() {
    let app = spawn_app().await;
    with_teams(&app).await;
    let mut m = manifest("1.0.0", &["events:read:catalog"]);
    m.event_types = vec!["ServiceRegistered".into()];
    app.client
        .publish_plugin(publish("indexer", m))
        .await
        .unwrap();
    app.client
        .register_service(fixtures::service("before-install", "payments"))
        .await
        .unwrap();
    let (plugin, _) = install(&app, "indexer", "indexer", &["events:read:catalog"], "").await;
    for i in 0..10 {
        app.client
            .register_service(fixtures::service(&format!("svc-{i}"), "payments"))
            .await
            .unwrap();
        // Not subscribed to: another type, another context.
        app.client
            .add_team_member(pb::AddTeamMemberRequest {
                team: "payments".into(),
                member: format!("dev{i}@example.com"),
                ..Default::default()
            })
            .await
            .ok();
    }
    let mut stream = plugin.subscribe_plugin_events(true).await.unwrap();
    let first = take(&mut stream, 6).await;
    let names: Vec<&str> = first.iter().map(|r| r.aggregate_id.as_str()).collect();
    assert_eq!(
        names,
        ["svc-0", "svc-1", "svc-2", "svc-3", "svc-4", "svc-5"]
    );
    assert!(first.iter().all(|r| r.event_type == "ServiceRegistered"));
    // Processed the first four, then the plugin crashes.
    let acked = plugin
        .acknowledge_plugin_events(first[3].sequence)
        .await
        .unwrap();
    assert_eq!(acked.cursor, first[3].sequence);
    drop(stream);
    // Another installation acknowledging the same sequence right after (the
    // default request id must not collide across installations).
    let (other, _) = install(&app, "indexer-2", "indexer", &["events:read:catalog"], "").await;
    let theirs = other
        .acknowledge_plugin_events(first[3].sequence)
        .await
        .unwrap();
    assert_eq!(theirs.cursor, first[3].sequence);
    // An older acknowledgement changes nothing; one past the log is refused.
    let again = plugin
        .acknowledge_plugin_events(first[1].sequence)
        .await
        .unwrap();
    assert_eq!(again.cursor, first[3].sequence);
    assert_eq!(
        code(
            plugin
                .acknowledge_plugin_events(again.log_sequence + 1000)
                .await
        ),
        Code::InvalidArgument
    );
    // Back: from svc-4 (sent before, never acknowledged) on, then live.
    let mut stream = plugin.subscribe_plugin_events(false).await.unwrap();
    let resumed = take(&mut stream, 6).await;
    let names: Vec<&str> = resumed.iter().map(|r| r.aggregate_id.as_str()).collect();
    assert_eq!(
        names,
        ["svc-4", "svc-5", "svc-6", "svc-7", "svc-8", "svc-9"]
    );
    assert!(resumed[0].json.contains("svc-4"));
    app.client
        .register_service(fixtures::service("live", "payments"))
        .await
        .unwrap();
    let live = take(&mut stream, 1).await;
    assert_eq!(live[0].aggregate_id, "live");
    // The cursor is the log's: an audit can see what the plugin confirmed.
    let mut installs = app.client.plugins();
    let listed = installs
        .list_installations(pb::ListInstallationsRequest {
            plugin: "indexer".into(),
            min_sequence: app.last_sequence().await,
        })
        .await
        .unwrap()
        .into_inner()
        .installations;
    assert_eq!(listed[0].cursor, first[3].sequence);
}

async fn works(client: &Client) -> bool {
    match client
        .at(0)
        .list_teams(pb::ListTeamsRequest::default())
        .await
    {
        Ok(_) => true,
        Err(e) if e.code() == Code::Unauthenticated => false,
        Err(e) => panic!("unexpected {e}"),
    }
}

#[tokio::test]
async fn tokens_rotate_with_an_overlap_and_all_stop_at_uninstall() {
    let app = spawn_app().await;
    with_teams(&app).await;
    app.client
        .publish_plugin(publish(
            "chat",
            manifest("1.0.0", &["catalog:read", "events:read:catalog"]),
        ))
        .await
        .unwrap();
    let mut req = pb::InstallPluginRequest {
        request_id: "install-chat".into(),
        installation: "chat".into(),
        plugin: "chat".into(),
        version: "1.0.0".into(),
        scopes: vec!["catalog:read".into(), "events:read:catalog".into()],
        ..Default::default()
    };
    let first = app.client.install_plugin(req.clone()).await.unwrap();
    // A retry of the same request (its answer lost): a new token in the
    // place of the first.
    let retried = app.client.install_plugin(req.clone()).await.unwrap();
    assert_eq!(retried.sequence, first.sequence);
    assert_ne!(retried.token, first.token);
    let lost = Client::connect(app.url.clone(), &first.token)
        .await
        .unwrap();
    let t1 = Client::connect(app.url.clone(), &retried.token)
        .await
        .unwrap();
    assert!(!works(&lost).await);
    assert!(works(&t1).await);
    // Installing again under a new request id: ALREADY_EXISTS (rotate instead).
    req.request_id = "install-chat-2".into();
    assert_eq!(
        code(app.client.install_plugin(req).await),
        Code::AlreadyExists
    );

    // Rotation with an overlap: both work; without: the old stops at once.
    let rotate = |overlap: u32| pb::RotatePluginTokenRequest {
        installation: "chat".into(),
        overlap_seconds: overlap,
        ..Default::default()
    };
    let member = app.client_as(Principal::member("ada", n("platform"))).await;
    assert_eq!(
        code(member.rotate_plugin_token(rotate(0)).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(app.client.rotate_plugin_token(rotate(40 * 24 * 3600)).await),
        Code::InvalidArgument
    );
    let r2 = app.client.rotate_plugin_token(rotate(3600)).await.unwrap();
    let t2 = Client::connect(app.url.clone(), &r2.token).await.unwrap();
    assert!(works(&t1).await && works(&t2).await);
    let r3 = app.client.rotate_plugin_token(rotate(0)).await.unwrap();
    // Each rotation is in the log (who, when, the overlap), never a secret.
    let mut s = app
        .client
        .read_events(pb::ReadEventsRequest {
            filter: Some(pb::EventFilter {
                aggregate_type: "installation".into(),
                aggregate_id: "chat".into(),
                event_types: vec!["PluginTokenRotated".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut rotations = Vec::new();
    while let Some(r) = s.message().await.unwrap() {
        assert!(!r.json.contains(&r3.token) && !r.json.contains("whsec_"));
        rotations.push((r.principal, r.json));
    }
    assert_eq!(rotations.len(), 2, "{rotations:?}");
    assert_eq!(rotations[0].0, "admin");
    let t3 = Client::connect(app.url.clone(), &r3.token).await.unwrap();
    assert!(!works(&t1).await && !works(&t2).await);
    assert!(works(&t3).await);

    // Uninstall: the live subscription ends and every token stops at once.
    let mut stream = t3.subscribe_plugin_events(true).await.unwrap();
    let e = app
        .client
        .uninstall_plugin(pb::UninstallPluginRequest {
            installation: "chat".into(),
            reason: String::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(fields(e), ["reason"]);
    app.client
        .uninstall_plugin(pb::UninstallPluginRequest {
            installation: "chat".into(),
            reason: "replaced by chat-v2".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!works(&t3).await);
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status.code()),
            }
        }
    })
    .await
    .expect("the subscription ends");
    assert_eq!(ended, Some(Code::PermissionDenied));
    assert_eq!(
        code(app.client.rotate_plugin_token(rotate(0)).await),
        Code::FailedPrecondition
    );
}
