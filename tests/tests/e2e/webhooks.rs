//! GitHub and Argo CD notification webhooks: signatures, payloads, replays.

use hmac::{Hmac, Mac};
use paved::Roles;
use paved_sdk::pb;
use sha2::Sha256;

use crate::helpers::{TestApp, fixtures, spawn_configured};

const SECRET: &str = "It's a Secret to Everybody";
const ARGO_TOKEN: &str = "argo-notifications-token";
const INCIDENT_SECRET: &str = "pager-secret";
const PD_OLD: &str = "pagerduty-secret-2025";
const PD_NEW: &str = "pagerduty-secret-2026";
const AM_TOKEN: &str = "alertmanager-token";

async fn app() -> TestApp {
    let app = spawn_configured(Roles::ALL, |s| {
        s.github_webhook_secret = Some(SECRET.into());
        s.argocd_webhook_token = Some(ARGO_TOKEN.into());
        s.incident_webhook_secret = Some(INCIDENT_SECRET.into());
        s.pagerduty_webhook_secrets = vec![PD_OLD.into(), PD_NEW.into()];
        s.alertmanager_webhook_token = Some(AM_TOKEN.into());
    })
    .await;
    app.client
        .create_team(fixtures::team("payments"))
        .await
        .unwrap();
    let mut ledger = fixtures::service("ledger", "payments");
    let spec = ledger.spec.as_mut().unwrap();
    spec.annotations
        .insert("github.com/project-slug".into(), "acme/ledger".into());
    spec.annotations
        .insert("pagerduty.com/service-id".into(), "PF9KMXH".into());
    let done = app.client.register_service(ledger).await.unwrap();
    // Webhooks read the catalog: wait until it has the service.
    app.client
        .at(done.sequence)
        .get_service("ledger")
        .await
        .unwrap();
    app
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post(
    app: &TestApp,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, serde_json::Value) {
    let mut r = reqwest::Client::new()
        .post(format!("http://{}{path}", app.webhook_addr.unwrap()))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

fn merged_pr(sha: &str) -> String {
    serde_json::json!({
        "action": "closed",
        "number": 42,
        "pull_request": {
            "number": 42,
            "html_url": "https://github.com/acme/ledger/pull/42",
            "title": "Faster ledger reconciliation",
            "merged": true,
            "merged_at": "2026-11-20T15:00:00Z",
            "merge_commit_sha": sha,
            "created_at": "2026-11-19T09:00:00Z",
            "user": { "login": "octocat" }
        },
        "repository": {
            "full_name": "acme/ledger",
            "html_url": "https://github.com/acme/ledger",
            "default_branch": "main"
        }
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_signatures_are_checked_and_a_replayed_delivery_records_once() {
    let app = app().await;
    let body = merged_pr(&"a1".repeat(20));
    let gh = |sig: Option<String>, delivery: &str| {
        let mut h = vec![
            ("x-github-event", "pull_request".to_owned()),
            ("x-github-delivery", delivery.to_owned()),
        ];
        if let Some(s) = sig {
            h.push(("x-hub-signature-256", s));
        }
        h
    };
    let before = app.last_sequence().await;
    let other_body = merged_pr(&"b2".repeat(20));
    let good = sign(SECRET, body.as_bytes());
    let refused = [
        ("no signature", None),
        ("wrong secret", Some(sign("guess", body.as_bytes()))),
        (
            "signature of another body",
            Some(sign(SECRET, other_body.as_bytes())),
        ),
        ("sha1 prefix", Some(good.replace("sha256=", "sha1="))),
        ("not hex", Some("sha256=zz".to_owned())),
        ("truncated", Some(good[..good.len() - 2].to_owned())),
    ];
    for (label, sig) in refused {
        let (status, _) = post(&app, "/webhooks/github", &gh(sig, "d-1"), &body).await;
        assert_eq!(status, 401, "{label}");
    }
    assert_eq!(app.last_sequence().await, before, "refusals record nothing");

    let (status, answer) = post(
        &app,
        "/webhooks/github",
        &gh(Some(good.clone()), "d-1"),
        &body,
    )
    .await;
    assert_eq!(
        (status, answer["recorded"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    let after = app.last_sequence().await;
    // GitHub redelivers the same delivery: nothing new.
    let (status, answer) = post(&app, "/webhooks/github", &gh(Some(good), "d-1"), &body).await;
    assert_eq!(
        (status, answer["recorded"].as_u64()),
        (200, Some(0)),
        "{answer}"
    );
    assert_eq!(app.last_sequence().await, after);

    // Signed but malformed: 400 with the reason.
    let bad = r#"{"action": "closed", "pull_request": {"number": "x"}}"#;
    let (status, answer) = post(
        &app,
        "/webhooks/github",
        &gh(Some(sign(SECRET, bad.as_bytes())), "d-2"),
        bad,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("pull_request payload"),
        "{answer}"
    );

    // A push to the default branch: one change per commit; another branch: nothing.
    let push = |git_ref: &str| {
        serde_json::json!({
            "ref": git_ref,
            "commits": [
                {"id": "c3".repeat(20), "message": "Fix rounding\n\nDetails", "timestamp": "2026-11-21T10:00:00Z",
                 "author": {"name": "Mona", "username": "mona"}, "url": "https://github.com/acme/ledger/commit/c3"},
                {"id": "d4".repeat(20), "message": "Bump deps", "timestamp": "2026-11-21T10:05:00Z",
                 "author": {"name": "Mona", "username": "mona"}, "url": "https://github.com/acme/ledger/commit/d4"}
            ],
            "head_commit": {"id": "d4".repeat(20), "message": "Bump deps", "timestamp": "2026-11-21T10:05:00Z"},
            "repository": {"full_name": "acme/ledger", "html_url": "https://github.com/acme/ledger", "default_branch": "main"}
        })
        .to_string()
    };
    let on = |body: &str, delivery: &str| {
        vec![
            ("x-github-event", "push".to_owned()),
            ("x-github-delivery", delivery.to_owned()),
            ("x-hub-signature-256", sign(SECRET, body.as_bytes())),
        ]
    };
    let main = push("refs/heads/main");
    let (status, answer) = post(&app, "/webhooks/github", &on(&main, "d-3"), &main).await;
    assert_eq!(
        (status, answer["recorded"].as_u64()),
        (200, Some(2)),
        "{answer}"
    );
    let feature = push("refs/heads/feature");
    let (status, answer) = post(&app, "/webhooks/github", &on(&feature, "d-4"), &feature).await;
    assert_eq!(status, 200);
    assert!(answer["ignored"].is_string(), "{answer}");

    // Once the delivery projection has caught up with the log:
    let seq = app.last_sequence().await;
    app.client
        .at(seq)
        .list_deployments(pb::ListDeploymentsRequest::default())
        .await
        .unwrap();
    let changes: Vec<(String, String, String, i64)> =
        sqlx::query_as("SELECT sha, service, author, pr_number FROM delivery_changes ORDER BY sha")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let expected = [
        (
            "a1".repeat(20),
            "ledger".to_owned(),
            "octocat".to_owned(),
            42,
        ),
        ("c3".repeat(20), "ledger".to_owned(), "mona".to_owned(), 0),
        ("d4".repeat(20), "ledger".to_owned(), "mona".to_owned(), 0),
    ];
    assert_eq!(changes, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cd_notifications_record_deployments_made_outside_paved() {
    let app = app().await;
    let note = |trigger: &str, revision: &str| {
        serde_json::json!({
            "trigger": trigger,
            "app": "ledger-production",
            "revision": revision,
            "phase": if trigger == "on-deployed" { "Succeeded" } else { "Failed" },
            "health": "Healthy",
            "message": "successfully synced",
            "startedAt": "2026-11-21T11:00:00Z",
            "finishedAt": "2026-11-21T11:02:00Z"
        })
        .to_string()
    };
    let bearer = |t: &str| vec![("authorization", format!("Bearer {t}"))];
    let body = note("on-deployed", "9f8e7d6");
    let (status, _) = post(&app, "/webhooks/argocd", &bearer("wrong"), &body).await;
    assert_eq!(status, 401);
    let (status, _) = post(&app, "/webhooks/argocd", &[], &body).await;
    assert_eq!(status, 401);
    let (status, answer) = post(&app, "/webhooks/argocd", &bearer(ARGO_TOKEN), &body).await;
    assert_eq!(
        (status, answer["recorded"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    let (status, answer) = post(&app, "/webhooks/argocd", &bearer(ARGO_TOKEN), &body).await;
    assert_eq!(
        (status, answer["recorded"].as_u64()),
        (200, Some(0)),
        "a replay: {answer}"
    );
    let failed = note("on-sync-failed", "1a2b3c4");
    let (status, _) = post(&app, "/webhooks/argocd", &bearer(ARGO_TOKEN), &failed).await;
    assert_eq!(status, 200);
    let (status, answer) = post(
        &app,
        "/webhooks/argocd",
        &bearer(ARGO_TOKEN),
        "{\"app\": 1}",
    )
    .await;
    assert_eq!(status, 400, "{answer}");

    let seq = app.last_sequence().await;
    let listed = app
        .client
        .at(seq)
        .list_deployments(pb::ListDeploymentsRequest {
            service: "ledger".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut seen: Vec<(&str, &str, &str, bool)> = listed
        .iter()
        .map(|d| {
            let t = d.target.as_ref().unwrap();
            (
                t.environment.as_str(),
                t.revision.as_str(),
                d.source.as_str(),
                d.outcome.as_ref().unwrap().succeeded,
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("production", "1a2b3c4", "argocd-notification", false),
            ("production", "9f8e7d6", "argocd-notification", true),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_tools_open_and_resolve_incidents_through_the_signed_webhook() {
    let app = app().await;
    let signed = |body: &str| {
        vec![(
            "x-paved-signature-256",
            sign(INCIDENT_SECRET, body.as_bytes()),
        )]
    };
    let opened = serde_json::json!({
        "action": "opened",
        "incident": "inc-ledger-1",
        "title": "ledger 5xx",
        "services": ["ledger"],
        "severity": "sev1",
        "startedAt": "2026-11-21T12:00:00Z"
    })
    .to_string();
    let before = app.last_sequence().await;
    let (status, _) = post(&app, "/webhooks/incidents", &[], &opened).await;
    assert_eq!(status, 401);
    let wrong = vec![("x-paved-signature-256", sign("nope", opened.as_bytes()))];
    let (status, _) = post(&app, "/webhooks/incidents", &wrong, &opened).await;
    assert_eq!(status, 401);
    assert_eq!(app.last_sequence().await, before);

    let (status, answer) = post(&app, "/webhooks/incidents", &signed(&opened), &opened).await;
    assert_eq!(
        (status, answer["recorded"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    let (status, answer) = post(&app, "/webhooks/incidents", &signed(&opened), &opened).await;
    assert_eq!(
        (status, answer["recorded"].as_u64()),
        (200, Some(0)),
        "sent twice: {answer}"
    );
    let resolved = serde_json::json!({
        "action": "resolved",
        "incident": "inc-ledger-1",
        "resolvedAt": "2026-11-21T12:45:00Z"
    })
    .to_string();
    let (status, answer) = post(&app, "/webhooks/incidents", &signed(&resolved), &resolved).await;
    assert_eq!(
        (status, answer["recorded"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    let bogus = r#"{"action": "escalated", "incident": "inc-ledger-1"}"#;
    let (status, answer) = post(&app, "/webhooks/incidents", &signed(bogus), bogus).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("escalated"),
        "{answer}"
    );
    let unknown = serde_json::json!({
        "action": "opened", "incident": "inc-2", "services": ["nope"],
        "severity": "sev1", "title": "x", "startedAt": "2026-11-21T12:00:00Z"
    })
    .to_string();
    let (status, answer) = post(&app, "/webhooks/incidents", &signed(&unknown), &unknown).await;
    assert_eq!(status, 400, "{answer}");

    let seq = app.last_sequence().await;
    let dora = app
        .client
        .at(seq)
        .dora(pb::GetDoraRequest {
            service: "ledger".into(),
            window_days: 30,
            ..Default::default()
        })
        .await
        .unwrap();
    let ttr = dora.time_to_restore.unwrap();
    assert_eq!((ttr.count, ttr.median_hours), (1, 0.75));
}

fn with_repository(mut r: pb::RegisterServiceRequest, url: &str) -> pb::RegisterServiceRequest {
    r.spec.as_mut().unwrap().repository_url = url.into();
    r
}

#[tokio::test]
async fn a_repository_belongs_to_one_live_service_and_its_pushes_to_that_one() {
    let app = app().await;
    let c = &app.client;
    c.create_team(fixtures::team("growth")).await.unwrap();
    let alice = app
        .client_as(paved_domain::Principal::member(
            "alice",
            paved_domain::Name::parse("payments").unwrap(),
        ))
        .await;
    let mallory = app
        .client_as(paved_domain::Principal::member(
            "mallory",
            paved_domain::Name::parse("growth").unwrap(),
        ))
        .await;
    // The README's own example: a repository name that rtrim('.git') mangled.
    let api = alice
        .register_service(with_repository(
            fixtures::service("payments-api", "payments"),
            "https://github.com/acme/payments-api",
        ))
        .await
        .unwrap();
    let before = app.last_sequence().await;
    // Another team claims it, in any spelling, by URL or by slug: refused, naming the holder.
    for url in [
        "https://github.com/acme/payments-api",
        "git@github.com:ACME/payments-api.git",
        "ssh://git@github.com/acme/Payments-Api",
    ] {
        let e = mallory
            .register_service(with_repository(
                fixtures::service("fake-pay", "growth"),
                url,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::AlreadyExists, "{url}: {e:?}");
        assert!(e.to_string().contains("payments-api"), "{e}");
    }
    let mut by_slug = fixtures::service("fake-pay", "growth");
    by_slug
        .spec
        .as_mut()
        .unwrap()
        .annotations
        .insert("github.com/project-slug".into(), "acme/payments-api".into());
    let e = mallory.register_service(by_slug).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists);
    mallory
        .register_service(fixtures::service("ads", "growth"))
        .await
        .unwrap();
    let e = mallory
        .update_service(pb::UpdateServiceRequest {
            name: "ads".into(),
            spec: Some(pb::ServiceSpec {
                repository_url: "https://github.com/acme/payments-api.git".into(),
                ..Default::default()
            }),
            update_mask: Some(paved_proto::wkt::FieldMask {
                paths: vec!["repository_url".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists);
    // Nothing of those refusals is in the log (the one registration of ads is).
    assert_eq!(app.last_sequence().await, before + 1);

    // A signed push for the repository is recorded as payments-api's change.
    c.at(api.sequence)
        .get_service("payments-api")
        .await
        .unwrap();
    let body = serde_json::json!({
        "ref": "refs/heads/main",
        "commits": [{"id": "e5".repeat(20), "message": "Pay faster", "timestamp": "2026-11-21T10:00:00Z",
                     "author": {"name": "Alice", "username": "alice"}, "url": "https://github.com/acme/payments-api/commit/e5"}],
        "head_commit": {"id": "e5".repeat(20), "message": "Pay faster", "timestamp": "2026-11-21T10:00:00Z"},
        "repository": {"full_name": "acme/payments-api", "html_url": "https://github.com/acme/payments-api", "default_branch": "main"}
    })
    .to_string();
    let headers = vec![
        ("x-github-event", "push".to_owned()),
        ("x-github-delivery", "claim-1".to_owned()),
        ("x-hub-signature-256", sign(SECRET, body.as_bytes())),
    ];
    let (status, answer) = post(&app, "/webhooks/github", &headers, &body).await;
    assert_eq!(
        (status, answer["recorded"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    let change: String =
        crate::helpers::eventually(std::time::Duration::from_secs(10), "the change", || async {
            sqlx::query_scalar("SELECT service FROM delivery_changes WHERE sha = $1")
                .bind("e5".repeat(20))
                .fetch_optional(&app.pool)
                .await
                .ok()
                .flatten()
        })
        .await;
    assert_eq!(change, "payments-api");

    // Once its holder is retired, the repository is free for another service.
    c.retire_service(pb::RetireServiceRequest {
        name: "payments-api".into(),
        reason: "rewritten".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    alice
        .register_service(with_repository(
            fixtures::service("payments-api-v2", "payments"),
            "https://github.com/acme/payments-api",
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_line_break_where_a_header_goes_is_a_bad_request_not_a_panic() {
    let app = app().await;
    let before = app.last_sequence().await;
    let bearer = vec![("authorization", format!("Bearer {ARGO_TOKEN}"))];
    for (app_name, revision) in [
        ("ledger-production\nX-Evil: 1", "9f8e7d6"),
        ("ledger-production", "9f8\r\ne7d6"),
    ] {
        let body = serde_json::json!({
            "trigger": "on-deployed", "app": app_name, "revision": revision,
            "service": "ledger", "environment": "production",
            "startedAt": "2026-11-21T11:00:00Z", "finishedAt": "2026-11-21T11:02:00Z"
        })
        .to_string();
        let (status, answer) = post(&app, "/webhooks/argocd", &bearer, &body).await;
        assert_eq!(status, 400, "{answer}");
    }
    let body = serde_json::json!({
        "action": "opened", "incident": "inc-1", "title": "down", "services": ["ledger"],
        "severity": "sev1", "startedAt": "2026-11-21T12:00:00Z", "deployment": "d-1\nX: y"
    })
    .to_string();
    let signed = vec![(
        "x-paved-signature-256",
        sign(INCIDENT_SECRET, body.as_bytes()),
    )];
    let (status, answer) = post(&app, "/webhooks/incidents", &signed, &body).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(app.last_sequence().await, before);
    // The write path itself refuses such an id, whoever sends it.
    let r = paved_eventlog::Executor::new(app.open_log().await, 10)
        .execute::<Option<paved_domain::catalog::Team>>(
            &paved_domain::Name::parse("growth").unwrap(),
            &paved_domain::catalog::TeamCommand::Create {
                profile: Default::default(),
                parent: None,
                members: vec![],
            },
            &paved_eventlog::CommandMeta::new("bad\nid", paved_domain::Principal::admin("root")),
        )
        .await;
    assert!(
        matches!(r, Err(paved_eventlog::ExecuteError::RequestIdInvalid(_))),
        "{r:?}"
    );
    // And everything still answers.
    app.client.at(0).get_service("ledger").await.unwrap();
}

#[tokio::test]
async fn a_github_push_of_20_mb_is_taken_and_one_over_25_mb_is_refused() {
    let app = app().await;
    // GitHub sends up to 25 MB: a push lists up to 2,048 commits, each with
    // its files. 2,048 commits with about 10 KB of file names each.
    let commits: Vec<serde_json::Value> = (0..2048u32)
        .map(|i| {
            let id = format!("{i:08x}{}", "f6".repeat(16));
            serde_json::json!({
                "id": id, "message": format!("Generated {i}"), "timestamp": ago(chrono::Duration::hours(1)),
                "distinct": true, "author": {"name": "Mona", "username": "mona"},
                "url": format!("https://github.com/acme/ledger/commit/{id}"),
                "added": (0..360).map(|f| format!("src/gen/{i:04}/file_{f:04}.rs")).collect::<Vec<_>>(),
                "removed": [], "modified": []
            })
        })
        .collect();
    let body = serde_json::json!({
        "ref": "refs/heads/main",
        "created": false,
        "head_commit": commits.last(),
        "commits": commits,
        "repository": {"full_name": "acme/ledger", "html_url": "https://github.com/acme/ledger", "default_branch": "main"}
    })
    .to_string();
    assert!(body.len() > 20 * 1024 * 1024, "{} bytes", body.len());
    assert!(body.len() < 25 * 1024 * 1024, "{} bytes", body.len());
    let headers = github_headers("push", "big-1", &body);
    let (status, answer) = post(&app, "/webhooks/github", &headers, &body).await;
    assert_eq!(
        (status, answer["recorded"].as_u64()),
        (200, Some(2048)),
        "{}",
        answer.to_string().chars().take(500).collect::<String>()
    );
    // Over GitHub's own limit: refused as JSON, before anything is read into a command.
    let huge = format!("{body}{}", " ".repeat(5 * 1024 * 1024));
    let (status, answer) = post(
        &app,
        "/webhooks/github",
        &github_headers("push", "big-2", &huge),
        &huge,
    )
    .await;
    assert_eq!(status, 413);
    assert!(
        answer["error"].as_str().unwrap().contains("25 MB"),
        "{answer}"
    );
}

/// GitHub's `push` of `commits` (id, message, timestamp) to `acme/ledger`.
fn push_of(git_ref: &str, created: bool, commits: &[(String, &str, String)]) -> String {
    let commits: Vec<serde_json::Value> = commits
        .iter()
        .map(|(id, message, at)| {
            serde_json::json!({
                "id": id, "message": message, "timestamp": at, "distinct": true,
                "author": {"name": "Mona", "email": "mona@example.com", "username": "mona"},
                "url": format!("https://github.com/acme/ledger/commit/{id}"),
                "added": [], "removed": [], "modified": ["src/lib.rs"]
            })
        })
        .collect();
    serde_json::json!({
        "ref": git_ref,
        "before": "0".repeat(40),
        "after": commits.last().map(|c| c["id"].clone()).unwrap_or_default(),
        "created": created,
        "deleted": false,
        "forced": false,
        "head_commit": commits.last(),
        "commits": commits,
        "repository": {"id": 1296269, "full_name": "acme/ledger", "html_url": "https://github.com/acme/ledger",
                       "default_branch": "main", "pushed_at": chrono::Utc::now().timestamp()},
        "pusher": {"name": "mona", "email": "mona@example.com"}
    })
    .to_string()
}

fn github_headers(event: &str, delivery: &str, body: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-github-event", event.to_owned()),
        ("x-github-delivery", delivery.to_owned()),
        ("x-hub-signature-256", sign(SECRET, body.as_bytes())),
    ]
}

fn ago(d: chrono::Duration) -> String {
    (chrono::Utc::now() - d).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The `delivery_changes` row of `sha` once the projection has it.
async fn change_row(app: &TestApp, sha: &str) -> (String, String, i64, String, String, bool) {
    crate::helpers::eventually(std::time::Duration::from_secs(10), "the change", || async {
        sqlx::query_as(
            "SELECT to_char(committed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                    to_char(merged_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                    pr_number, pr_url, author || ' / ' || title, backfill
               FROM delivery_changes WHERE sha = $1",
        )
        .bind(sha)
        .fetch_optional(&app.pool)
        .await
        .unwrap()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_commit_in_a_push_loses_no_other_and_a_redelivery_answers_the_same() {
    let app = app().await;
    let (a, b, c, d) = (
        "a7".repeat(20),
        "b7".repeat(20),
        "c7".repeat(20),
        "d7".repeat(20),
    );
    let body = push_of(
        "refs/heads/main",
        false,
        &[
            (a.clone(), "Good one", ago(chrono::Duration::hours(3))),
            // A tab in the title line, a clock an hour ahead: refused by the domain.
            (b.clone(), "Bad\ttitle", ago(chrono::Duration::hours(2))),
            (
                c.clone(),
                "From the future",
                ago(chrono::Duration::hours(-1)),
            ),
            (d.clone(), "Good too", ago(chrono::Duration::hours(1))),
        ],
    );
    let headers = github_headers("push", "bad-middle", &body);
    let (status, first) = post(&app, "/webhooks/github", &headers, &body).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["recorded"], 2, "{first}");
    let skipped: Vec<(&str, &str)> = first["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["sha"].as_str().unwrap(), s["rule"].as_str().unwrap()))
        .collect();
    assert_eq!(skipped, [(b.as_str(), "invalid"), (c.as_str(), "invalid")]);
    assert!(
        first["skipped"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("committed_at"),
        "{first}"
    );
    // GitHub's redelivery: the same answer, nothing recorded twice.
    let (status, again) = post(&app, "/webhooks/github", &headers, &body).await;
    assert_eq!(status, 200);
    assert_eq!(again["recorded"], 0);
    assert_eq!(again["skipped"], first["skipped"]);
    change_row(&app, &a).await;
    change_row(&app, &d).await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_changes")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 2);

    // A push for a repository no service names: ignored, and an operator sees why.
    let stray = push_of("refs/heads/main", false, &[])
        .replace("acme/ledger", "acme/unknown")
        .replace("1296269", "4242");
    let (status, ignored) = post(
        &app,
        "/webhooks/github",
        &github_headers("push", "stray", &stray),
        &stray,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        ignored["ignored"]
            .as_str()
            .unwrap()
            .contains("acme/unknown")
    );
    let (status, _) = post(
        &app,
        "/webhooks/github",
        &github_headers("push", "forged", &stray)
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    if k == "x-hub-signature-256" {
                        sign("wrong", b"")
                    } else {
                        v
                    },
                )
            })
            .collect::<Vec<_>>(),
        &stray,
    )
    .await;
    assert_eq!(status, 401);
    let recent = app
        .client
        .webhook_deliveries(pb::ListWebhookDeliveriesRequest {
            source: "github".into(),
            limit: 10,
        })
        .await
        .unwrap();
    let seen: Vec<(&str, &str)> = recent
        .iter()
        .map(|d| (d.delivery_id.as_str(), d.outcome.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("forged", "bad_signature"),
            ("stray", "ignored"),
            ("bad-middle", "recorded"),
            ("bad-middle", "recorded")
        ]
    );
    assert!(
        recent[1]
            .reason
            .contains("no service has repository acme/unknown")
    );
    assert_eq!(recent[3].recorded, 2);
    assert_eq!(recent[3].skipped.len(), 2);
    assert_eq!(recent[3].skipped[0].sha, b);
    // Only admins see them: they name every team's repositories.
    let member = app
        .client_as(paved_domain::Principal::member(
            "alice",
            paved_domain::Name::parse("payments").unwrap(),
        ))
        .await;
    let e = member
        .webhook_deliveries(pb::ListWebhookDeliveriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let e = app
        .client
        .webhook_deliveries(pb::ListWebhookDeliveriesRequest {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    // And /metrics counts them.
    let metrics = app.scrape().await;
    for line in [
        "paved_webhook_deliveries_total{source=\"github\",outcome=\"recorded\"} 2",
        "paved_webhook_deliveries_total{source=\"github\",outcome=\"ignored\"} 1",
        "paved_webhook_deliveries_total{source=\"github\",outcome=\"bad_signature\"} 1",
        "paved_webhook_changes_skipped_total{source=\"github\",reason=\"invalid\"} 4",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_and_its_pull_request_end_the_same_in_either_order() {
    let app = app().await;
    // One clock reading for both orders: the rows are compared to the second.
    let (created, merged) = (
        ago(chrono::Duration::days(2)),
        ago(chrono::Duration::hours(1)),
    );
    let pr = |sha: &str, number: u64| {
        serde_json::json!({
            "action": "closed",
            "number": number,
            "pull_request": {
                "number": number,
                "html_url": format!("https://github.com/acme/ledger/pull/{number}"),
                "title": "Faster ledger reconciliation",
                "merged": true,
                "merged_at": merged,
                "merge_commit_sha": sha,
                "created_at": created,
                "user": { "login": "octocat" },
                "base": { "ref": "main" },
                "head": { "ref": "faster" }
            },
            "repository": {"id": 1296269, "full_name": "acme/ledger", "html_url": "https://github.com/acme/ledger", "default_branch": "main"}
        })
        .to_string()
    };
    let push = |sha: &str| {
        push_of(
            "refs/heads/main",
            false,
            &[(
                sha.to_owned(),
                "Merge pull request from acme/faster",
                merged.clone(),
            )],
        )
    };
    let (first, second) = ("e8".repeat(20), "f8".repeat(20));
    // Push first, then the pull request.
    for (event, body) in [("push", push(&first)), ("pull_request", pr(&first, 7))] {
        let (status, a) = post(
            &app,
            "/webhooks/github",
            &github_headers(event, &format!("{event}-1"), &body),
            &body,
        )
        .await;
        assert_eq!((status, a["recorded"].as_u64()), (200, Some(1)), "{a}");
    }
    // The pull request first, then the push (which adds nothing).
    for (event, body, n) in [
        ("pull_request", pr(&second, 7), 1),
        ("push", push(&second), 0),
    ] {
        let (status, a) = post(
            &app,
            "/webhooks/github",
            &github_headers(event, &format!("{event}-2"), &body),
            &body,
        )
        .await;
        assert_eq!((status, a["recorded"].as_u64()), (200, Some(n)), "{a}");
    }
    let seq = app.last_sequence().await;
    app.client
        .at(seq)
        .list_deployments(pb::ListDeploymentsRequest::default())
        .await
        .unwrap();
    let a = change_row(&app, &first).await;
    let b = change_row(&app, &second).await;
    assert_eq!(a, b);
    // From the pull request's creation, with its number and URL.
    assert_eq!(
        (a.2, a.3.as_str()),
        (7, "https://github.com/acme/ledger/pull/7")
    );
    assert_eq!(a.4, "octocat / Faster ledger reconciliation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_encoded_deliveries_other_branches_and_imported_history_are_handled_as_github_means() {
    let app = app().await;
    // Content type application/x-www-form-urlencoded: the JSON in `payload`, signed as sent.
    let sha = "a9".repeat(20);
    let json = push_of(
        "refs/heads/main",
        false,
        &[(sha.clone(), "Formed", ago(chrono::Duration::hours(1)))],
    );
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &json)
        .finish();
    let resp = reqwest::Client::new()
        .post(format!(
            "http://{}/webhooks/github",
            app.webhook_addr.unwrap()
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-github-event", "push")
        .header("x-github-delivery", "form-1")
        .header("x-hub-signature-256", sign(SECRET, form.as_bytes()))
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(answer["recorded"], 1, "{answer}");
    assert!(
        !change_row(&app, &sha).await.5,
        "recent work is not backfill"
    );
    // Another content type is refused, naming the two GitHub offers.
    let resp = reqwest::Client::new()
        .post(format!(
            "http://{}/webhooks/github",
            app.webhook_addr.unwrap()
        ))
        .header("content-type", "text/xml")
        .header("x-github-event", "push")
        .header("x-hub-signature-256", sign(SECRET, json.as_bytes()))
        .body(json.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);

    // A pull request merged into a release branch: like a push to it, ignored.
    let into_release = merged_pr(&"b9".repeat(20)).replace(
        "\"merged\":true",
        "\"merged\":true,\"base\":{\"ref\":\"release-1.2\"}",
    );
    assert!(into_release.contains("release-1.2"));
    let (status, answer) = post(
        &app,
        "/webhooks/github",
        &github_headers("pull_request", "rel-1", &into_release),
        &into_release,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        answer["ignored"].as_str().unwrap().contains("release-1.2"),
        "{answer}"
    );

    // Imported history: a push that creates the branch, and commits years old.
    let (new_branch, old) = ("c9".repeat(20), "d9".repeat(20));
    let created = push_of(
        "refs/heads/main",
        true,
        &[(
            new_branch.clone(),
            "Initial import",
            ago(chrono::Duration::hours(2)),
        )],
    );
    let aged = push_of(
        "refs/heads/main",
        false,
        &[(old.clone(), "From 2019", ago(chrono::Duration::days(2000)))],
    );
    for (i, body) in [created, aged].iter().enumerate() {
        let (status, a) = post(
            &app,
            "/webhooks/github",
            &github_headers("push", &format!("hist-{i}"), body),
            body,
        )
        .await;
        assert_eq!((status, a["recorded"].as_u64()), (200, Some(1)), "{a}");
    }
    assert!(change_row(&app, &new_branch).await.5);
    assert!(change_row(&app, &old).await.5);
    // A push redelivered long after it was made is judged by when it was
    // pushed (repository.pushed_at), not by when it arrives again.
    let late = "e9".repeat(20);
    let pushed = chrono::Utc::now() - chrono::Duration::days(40);
    let mut redelivered: serde_json::Value = serde_json::from_str(&push_of(
        "refs/heads/main",
        false,
        &[(
            late.clone(),
            "Made 40 days ago",
            (pushed - chrono::Duration::hours(1)).to_rfc3339(),
        )],
    ))
    .unwrap();
    redelivered["repository"]["pushed_at"] = pushed.timestamp().into();
    let redelivered = redelivered.to_string();
    let (status, a) = post(
        &app,
        "/webhooks/github",
        &github_headers("push", "hist-late", &redelivered),
        &redelivered,
    )
    .await;
    assert_eq!((status, a["recorded"].as_u64()), (200, Some(1)), "{a}");
    assert!(!change_row(&app, &late).await.5, "an hour old when pushed");
    // Shipped by a production deployment, backfill is left out of lead time.
    let done = app
        .client
        .record_deployment(pb::RecordDeploymentRequest {
            target: Some(pb::DeploymentTarget {
                service: "ledger".into(),
                environment: "production".into(),
                revision: old.clone(),
                commits: vec![sha.clone(), new_branch.clone(), old.clone()],
                ..Default::default()
            }),
            source: "pipeline".into(),
            started_at: Some(paved_eventlog::codec::timestamp(
                chrono::Utc::now() - chrono::Duration::minutes(10),
            )),
            outcome: Some(pb::DeploymentOutcome {
                succeeded: true,
                revision: old.clone(),
                finished_at: Some(paved_eventlog::codec::timestamp(
                    chrono::Utc::now() - chrono::Duration::minutes(5),
                )),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let dora = app
        .client
        .at(done.sequence)
        .dora(pb::GetDoraRequest {
            service: "ledger".into(),
            window_days: 30,
            ..Default::default()
        })
        .await
        .unwrap();
    let lead = dora.lead_time.unwrap();
    assert_eq!(lead.count, 1, "{lead:?}");
    assert!(lead.median_hours < 2.0, "{lead:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_prometheus_gets_openmetrics() {
    let app = app().await;
    // Something in every family: a change shipped to production, an incident
    // opened and resolved, webhook deliveries.
    let sha = "aa".repeat(20);
    let body = push_of(
        "refs/heads/main",
        false,
        &[(sha.clone(), "Ship it", ago(chrono::Duration::hours(5)))],
    );
    let (status, _) = post(
        &app,
        "/webhooks/github",
        &github_headers("push", "m-1", &body),
        &body,
    )
    .await;
    assert_eq!(status, 200);
    change_row(&app, &sha).await;
    let now = chrono::Utc::now();
    let stamp = |d: chrono::Duration| Some(paved_eventlog::codec::timestamp(now - d));
    app.client
        .record_deployment(pb::RecordDeploymentRequest {
            target: Some(pb::DeploymentTarget {
                service: "ledger".into(),
                environment: "production".into(),
                revision: sha.clone(),
                commits: vec![sha.clone()],
                ..Default::default()
            }),
            source: "pipeline".into(),
            started_at: stamp(chrono::Duration::hours(2)),
            outcome: Some(pb::DeploymentOutcome {
                succeeded: true,
                revision: sha.clone(),
                finished_at: stamp(chrono::Duration::hours(1)),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    for (action, extra) in [
        (
            "opened",
            serde_json::json!({"startedAt": ago(chrono::Duration::minutes(50)), "services": ["ledger"], "severity": "sev2", "title": "Ledger slow"}),
        ),
        (
            "resolved",
            serde_json::json!({"resolvedAt": ago(chrono::Duration::minutes(20))}),
        ),
    ] {
        let mut hook = serde_json::json!({"action": action, "incident": "inc-7"});
        hook.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let hook = hook.to_string();
        let headers = vec![(
            "x-paved-signature-256",
            sign(INCIDENT_SECRET, hook.as_bytes()),
        )];
        let (status, answer) = post(&app, "/webhooks/incidents", &headers, &hook).await;
        assert_eq!(status, 200, "{answer}");
    }
    let seq = app.last_sequence().await;
    app.client
        .at(seq)
        .list_deployments(pb::ListDeploymentsRequest::default())
        .await
        .unwrap();

    // curl, promtool: the classic text format, which promtool's linter accepts.
    let response = app.scrape_as(None).await;
    let (head, text) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    for family in [
        "paved_dora_lead_time_median_seconds{scope=\"service\",name=\"ledger\"}",
        "paved_dora_time_to_restore_median_seconds{scope=\"organisation\",name=\"all\"}",
        "# TYPE paved_commands_total counter",
        "# TYPE paved_webhook_deliveries_total counter",
        "# TYPE paved_rpc_server_duration_seconds histogram",
    ] {
        assert!(text.contains(family), "{family} in\n{text}");
    }
    assert!(!text.contains("quantile="), "{text}");
    // Every series the DORA dashboard queries is there.
    for name in crate::helpers::dashboard_series("paved-dora.json") {
        assert!(
            crate::helpers::has_series(text, &name),
            "the DORA dashboard queries {name}, which /metrics does not have"
        );
    }
    assert!(
        !text.contains("# EOF") && !text.contains("trace_id"),
        "{text}"
    );
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; .ci/run installs it)");
    use std::io::Write as _;
    let mut child = promtool;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );

    // Prometheus asks for OpenMetrics: counters by family, units, # EOF.
    let response = app.scrape().await;
    let (head, om) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert!(om.contains("# TYPE paved_commands counter"), "{om}");
    assert!(
        om.contains("# UNIT paved_dora_lead_time_median_seconds seconds"),
        "{om}"
    );
    // (Exemplars need the OpenTelemetry layer: see telemetry.rs.)
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
}

/// A PagerDuty v3 webhook event, shaped as PagerDuty documents it.
fn pagerduty_event(
    event_id: &str,
    event_type: &str,
    incident: &str,
    service: (&str, &str),
    occurred: &str,
) -> String {
    serde_json::json!({
        "event": {
            "id": event_id,
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": occurred,
            "agent": {"html_url": "https://acme.pagerduty.com/users/PLH1HKV", "id": "PLH1HKV", "self": "https://api.pagerduty.com/users/PLH1HKV", "summary": "Tenex Engineer", "type": "user_reference"},
            "client": null,
            "data": {
                "id": incident,
                "type": "incident",
                "self": format!("https://api.pagerduty.com/incidents/{incident}"),
                "html_url": format!("https://acme.pagerduty.com/incidents/{incident}"),
                "number": 2,
                "status": event_type.trim_start_matches("incident."),
                "incident_key": "d3640fbd41094207a1c11e58e46b1662",
                "created_at": ago(chrono::Duration::minutes(90)),
                "title": "Ledger latency over 2 s",
                "service": {"html_url": "https://acme.pagerduty.com/services/PF9KMXH", "id": service.0, "self": "https://api.pagerduty.com/services/PF9KMXH", "summary": service.1, "type": "service_reference"},
                "assignees": [],
                "escalation_policy": {"id": "PUS0KTE", "summary": "Default", "type": "escalation_policy_reference"},
                "teams": [],
                "priority": {"id": "PSO75BM", "summary": "P1", "type": "priority_reference"},
                "urgency": "high",
                "conference_bridge": null,
                "resolve_reason": null
            }
        }
    })
    .to_string()
}

fn pagerduty_sign(secrets: &[&str], body: &str) -> String {
    secrets
        .iter()
        .map(|s| {
            let mut mac = Hmac::<Sha256>::new_from_slice(s.as_bytes()).unwrap();
            mac.update(body.as_bytes());
            format!("v1={}", hex::encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(",")
}

async fn incident_row(app: &TestApp, id: &str) -> Option<(Vec<String>, String, bool)> {
    sqlx::query_as(
        "SELECT services, severity, resolved_at IS NOT NULL FROM delivery_incidents WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&app.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_incidents_open_and_resolve_once_whatever_is_resent_and_in_any_order() {
    let app = app().await;
    let pd = |body: &str, signature: String| {
        let body = body.to_owned();
        let app = &app;
        async move {
            post(
                app,
                "/webhooks/pagerduty",
                &[("x-pagerduty-signature", signature)],
                &body,
            )
            .await
        }
    };
    let triggered = pagerduty_event(
        "01DEN3G9",
        "incident.triggered",
        "PGR0VU2",
        ("PF9KMXH", "Ledger API"),
        &ago(chrono::Duration::minutes(90)),
    );
    let (status, a) = pd(&triggered, pagerduty_sign(&[PD_OLD], &triggered)).await;
    assert_eq!((status, a["recorded"].as_u64()), (200, Some(1)), "{a}");
    // PagerDuty resends; acknowledges: nothing new.
    let (status, a) = pd(&triggered, pagerduty_sign(&[PD_OLD], &triggered)).await;
    assert_eq!((status, a["recorded"].as_u64()), (200, Some(0)), "{a}");
    let acked = pagerduty_event(
        "01DEN3H1",
        "incident.acknowledged",
        "PGR0VU2",
        ("PF9KMXH", "Ledger API"),
        &ago(chrono::Duration::minutes(80)),
    );
    let (status, a) = pd(&acked, pagerduty_sign(&[PD_OLD], &acked)).await;
    assert_eq!((status, a["recorded"].as_u64()), (200, Some(0)), "{a}");
    // Rotating the secret: signed with both, or with the new one only.
    let resolved = pagerduty_event(
        "01DEN3J7",
        "incident.resolved",
        "PGR0VU2",
        ("PF9KMXH", "Ledger API"),
        &ago(chrono::Duration::minutes(30)),
    );
    let (status, a) = pd(&resolved, pagerduty_sign(&[PD_OLD, PD_NEW], &resolved)).await;
    assert_eq!((status, a["recorded"].as_u64()), (200, Some(1)), "{a}");
    let (status, a) = pd(&resolved, pagerduty_sign(&[PD_NEW], &resolved)).await;
    assert_eq!((status, a["recorded"].as_u64()), (200, Some(0)), "{a}");
    // A secret that is not configured, or no signature: 401, nothing recorded.
    let (status, _) = pd(&resolved, pagerduty_sign(&["guess"], &resolved)).await;
    assert_eq!(status, 401);
    let (status, _) = pd(&resolved, String::new()).await;
    assert_eq!(status, 401);
    // The resolution of an incident never seen opens and resolves it.
    let late = pagerduty_event(
        "01DEN4A2",
        "incident.resolved",
        "Q1ZZ8C2",
        ("PX0OTHR", "ledger"),
        &ago(chrono::Duration::minutes(10)),
    );
    let (status, a) = pd(&late, pagerduty_sign(&[PD_NEW], &late)).await;
    assert_eq!((status, a["recorded"].as_u64()), (200, Some(2)), "{a}");
    // A PagerDuty service no catalog service names: ignored, with the reason.
    let stray = pagerduty_event(
        "01DEN4B3",
        "incident.triggered",
        "Q2AAAA1",
        ("PZZZZZZ", "Billing"),
        &ago(chrono::Duration::minutes(5)),
    );
    let (status, a) = pd(&stray, pagerduty_sign(&[PD_NEW], &stray)).await;
    assert_eq!(status, 200);
    assert!(a["ignored"].as_str().unwrap().contains("PZZZZZZ"), "{a}");
    let seq = app.last_sequence().await;
    app.client
        .at(seq)
        .list_deployments(pb::ListDeploymentsRequest::default())
        .await
        .unwrap();
    assert_eq!(
        incident_row(&app, "pd-pgr0vu2").await,
        Some((vec!["ledger".to_owned()], "sev1".to_owned(), true))
    );
    assert_eq!(
        incident_row(&app, "pd-q1zz8c2").await,
        Some((vec!["ledger".to_owned()], "sev1".to_owned(), true))
    );
    assert_eq!(incident_row(&app, "pd-q2aaaa1").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_alerts_open_and_resolve_incidents_of_the_services_they_label() {
    let app = app().await;
    let starts = ago(chrono::Duration::minutes(40));
    let group = |status: &str, ends: &str| {
        serde_json::json!({
            "version": "4",
            "groupKey": "{}:{alertname=\"LedgerErrors\"}",
            "truncatedAlerts": 0,
            "status": status,
            "receiver": "paved",
            "groupLabels": {"alertname": "LedgerErrors"},
            "commonLabels": {"alertname": "LedgerErrors"},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager.example.com:9093",
            "alerts": [
                {"status": status, "labels": {"alertname": "LedgerErrors", "service": "ledger", "severity": "critical"},
                 "annotations": {"summary": "Ledger 5xx over 5%\tfor 10 min\nSee the runbook"}, "startsAt": starts, "endsAt": ends,
                 "generatorURL": "http://prometheus.example.com:9090/graph?g0.expr=...", "fingerprint": "c0ffee1234abcd00"},
                {"status": status, "labels": {"alertname": "DiskFull", "instance": "db-1"},
                 "annotations": {}, "startsAt": starts, "endsAt": ends,
                 "generatorURL": "http://prometheus.example.com:9090/graph", "fingerprint": "deadbeef00000001"}
            ]
        })
        .to_string()
    };
    let bearer = |t: &str| vec![("authorization", format!("Bearer {t}"))];
    let firing = group("firing", "0001-01-01T00:00:00Z");
    let (status, a) = post(&app, "/webhooks/alertmanager", &bearer(AM_TOKEN), &firing).await;
    assert_eq!((status, a["recorded"].as_u64()), (200, Some(1)), "{a}");
    assert_eq!(a["skipped"][0]["sha"], "deadbeef00000001", "{a}");
    // Alertmanager repeats a firing group: nothing new.
    let (status, a) = post(&app, "/webhooks/alertmanager", &bearer(AM_TOKEN), &firing).await;
    assert_eq!((status, a["recorded"].as_u64()), (200, Some(0)), "{a}");
    let (status, _) = post(&app, "/webhooks/alertmanager", &bearer("wrong"), &firing).await;
    assert_eq!(status, 401);
    let resolved = group("resolved", &ago(chrono::Duration::minutes(5)));
    let (status, a) = post(&app, "/webhooks/alertmanager", &bearer(AM_TOKEN), &resolved).await;
    assert_eq!((status, a["recorded"].as_u64()), (200, Some(1)), "{a}");
    let (status, a) = post(&app, "/webhooks/alertmanager", &bearer(AM_TOKEN), &resolved).await;
    assert_eq!((status, a["recorded"].as_u64()), (200, Some(0)), "{a}");
    let seq = app.last_sequence().await;
    app.client
        .at(seq)
        .list_deployments(pb::ListDeploymentsRequest::default())
        .await
        .unwrap();
    let ts = chrono::DateTime::parse_from_rfc3339(&starts)
        .unwrap()
        .timestamp();
    assert_eq!(
        incident_row(&app, &format!("am-c0ffee1234abcd00-{ts}")).await,
        Some((vec!["ledger".to_owned()], "sev1".to_owned(), true))
    );
    // The operator's list has them.
    let recent = app
        .client
        .webhook_deliveries(pb::ListWebhookDeliveriesRequest {
            source: "alertmanager".into(),
            limit: 10,
        })
        .await
        .unwrap();
    let outcomes: Vec<&str> = recent.iter().map(|d| d.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        [
            "recorded",
            "recorded",
            "bad_signature",
            "recorded",
            "recorded"
        ]
    );
    assert_eq!(recent[4].skipped.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_repository_keeps_mapping_to_its_service_by_githubs_id() {
    let app = app().await;
    let (before, after) = ("ab".repeat(20), "cd".repeat(20));
    let body = push_of(
        "refs/heads/main",
        false,
        &[(
            before.clone(),
            "Before the rename",
            ago(chrono::Duration::hours(2)),
        )],
    );
    let (status, a) = post(
        &app,
        "/webhooks/github",
        &github_headers("push", "r-1", &body),
        &body,
    )
    .await;
    assert_eq!((status, a["recorded"].as_u64()), (200, Some(1)), "{a}");
    // The claim now holds GitHub's id.
    let id: i64 =
        crate::helpers::eventually(std::time::Duration::from_secs(10), "the id", || async {
            sqlx::query_scalar::<_, Option<i64>>(
            "SELECT github_id FROM catalog_repositories WHERE identity = 'github.com/acme/ledger'",
        )
        .fetch_optional(&app.pool)
        .await
        .unwrap()
        .flatten()
        })
        .await;
    assert_eq!(id, 1296269);
    // acme/ledger is renamed acme/ledger-core on GitHub; the catalog still says acme/ledger.
    let renamed = push_of(
        "refs/heads/main",
        false,
        &[(
            after.clone(),
            "After the rename",
            ago(chrono::Duration::hours(1)),
        )],
    )
    .replace("acme/ledger", "acme/ledger-core");
    assert!(renamed.contains("\"id\":1296269"));
    let (status, a) = post(
        &app,
        "/webhooks/github",
        &github_headers("push", "r-2", &renamed),
        &renamed,
    )
    .await;
    assert_eq!((status, a["recorded"].as_u64()), (200, Some(1)), "{a}");
    let service: String =
        crate::helpers::eventually(std::time::Duration::from_secs(10), "the change", || async {
            sqlx::query_scalar("SELECT service FROM delivery_changes WHERE sha = $1")
                .bind(&after)
                .fetch_optional(&app.pool)
                .await
                .unwrap()
        })
        .await;
    assert_eq!(service, "ledger");
    // Another repository of that new name but another id is not ledger's.
    let other = renamed.replace("1296269", "999");
    let (status, a) = post(
        &app,
        "/webhooks/github",
        &github_headers("push", "r-3", &other),
        &other,
    )
    .await;
    assert_eq!(status, 200);
    assert!(a["ignored"].is_string(), "{a}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_incident_payloads_and_listing_requests_are_refused_and_record_nothing() {
    let app = app().await;
    let before = app.last_sequence().await;
    // Deeply nested, huge, or not what the vendor sends: refused, nothing recorded.
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (status, a) = post(
        &app,
        "/webhooks/pagerduty",
        &[("x-pagerduty-signature", pagerduty_sign(&[PD_NEW], &nested))],
        &nested,
    )
    .await;
    assert_eq!(status, 400, "{a}");
    let (status, _) = post(
        &app,
        "/webhooks/alertmanager",
        &[("authorization", format!("Bearer {AM_TOKEN}"))],
        &nested,
    )
    .await;
    assert_eq!(status, 400);
    let huge = format!(
        "{{\"status\":\"firing\",\"alerts\":[],\"pad\":\"{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let resp = reqwest::Client::new()
        .post(format!(
            "http://{}/webhooks/alertmanager",
            app.webhook_addr.unwrap()
        ))
        .header("authorization", format!("Bearer {AM_TOKEN}"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let many: Vec<serde_json::Value> = (0..1001)
        .map(|i| serde_json::json!({"status": "firing", "labels": {"service": "ledger"}, "startsAt": ago(chrono::Duration::minutes(1)), "fingerprint": format!("{i:016x}")}))
        .collect();
    let many = serde_json::json!({"status": "firing", "alerts": many}).to_string();
    let (status, a) = post(
        &app,
        "/webhooks/alertmanager",
        &[("authorization", format!("Bearer {AM_TOKEN}"))],
        &many,
    )
    .await;
    assert_eq!(status, 400, "{a}");
    assert!(a["error"].as_str().unwrap().contains("at most 1000"), "{a}");
    // An alert naming a service that does not exist: skipped with the reason.
    let ghost = serde_json::json!({"status": "firing", "alerts": [
        {"status": "firing", "labels": {"service": "ghost"}, "startsAt": ago(chrono::Duration::minutes(1)), "fingerprint": "00000000000000aa"}
    ]})
    .to_string();
    let (status, a) = post(
        &app,
        "/webhooks/alertmanager",
        &[("authorization", format!("Bearer {AM_TOKEN}"))],
        &ghost,
    )
    .await;
    assert_eq!((status, a["recorded"].as_u64()), (200, Some(0)), "{a}");
    assert_eq!(a["skipped"][0]["rule"], "precondition", "{a}");
    assert_eq!(app.last_sequence().await, before, "nothing appended");

    // The listing: readers are refused like members, a source that does not exist is invalid.
    let reader = app
        .client_as(paved_domain::Principal::reader("auditor"))
        .await;
    let e = reader
        .webhook_deliveries(pb::ListWebhookDeliveriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let e = app
        .client
        .webhook_deliveries(pb::ListWebhookDeliveriesRequest {
            source: "gitlab".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.to_string().contains("source"), "{e}");
}

/// A push of `commits` (SHA, files touched) to acme/mono's main branch.
fn mono_push(commits: &[(String, &[&str])]) -> String {
    let at = ago(chrono::Duration::minutes(30));
    let commits: Vec<serde_json::Value> = commits
        .iter()
        .map(|(id, files)| {
            serde_json::json!({
                "id": id, "message": "Touch", "timestamp": at, "distinct": true,
                "author": {"name": "Mona", "email": "mona@example.com", "username": "mona"},
                "url": format!("https://github.com/acme/mono/commit/{id}"),
                "added": [], "removed": [], "modified": files
            })
        })
        .collect();
    serde_json::json!({
        "ref": "refs/heads/main", "before": "0".repeat(40), "created": false,
        "head_commit": commits.last(), "commits": commits,
        "repository": {"id": 4242, "full_name": "acme/mono", "html_url": "https://github.com/acme/mono",
                       "default_branch": "main", "pushed_at": chrono::Utc::now().timestamp()}
    })
    .to_string()
}

fn mono_pr(sha: &str, number: u64) -> String {
    serde_json::json!({
        "action": "closed", "number": number,
        "pull_request": {
            "number": number, "html_url": format!("https://github.com/acme/mono/pull/{number}"),
            "title": "Across services", "merged": true, "merged_at": ago(chrono::Duration::minutes(30)),
            "merge_commit_sha": sha, "created_at": ago(chrono::Duration::days(1)),
            "user": {"login": "octocat"}, "base": {"ref": "main"}, "head": {"ref": "across"}
        },
        "repository": {"id": 4242, "full_name": "acme/mono", "html_url": "https://github.com/acme/mono", "default_branch": "main"}
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monorepo_commit_counts_for_each_service_whose_directory_it_touches() {
    let app = app().await;
    let c = &app.client;
    c.create_team(fixtures::team("treasury")).await.unwrap();
    c.create_team(fixtures::team("growth")).await.unwrap();
    let as_member = |name: &str, team: &str| {
        app.client_as(paved_domain::Principal::member(
            name,
            paved_domain::Name::parse(team).unwrap(),
        ))
    };
    let (alice, tess, mallory) = (
        as_member("alice", "payments").await,
        as_member("tess", "treasury").await,
        as_member("mallory", "growth").await,
    );
    const MONO: &str = "https://github.com/acme/mono";
    // A directory by repository URL; two services of one team share it.
    for name in ["pay-api", "pay-worker"] {
        alice
            .register_service(with_repository(
                fixtures::service(name, "payments"),
                &format!("{MONO}/tree/main/services/pay"),
            ))
            .await
            .unwrap();
    }
    // A directory by Backstage's annotation, for another team.
    let mut fx = with_repository(fixtures::service("fx", "treasury"), MONO);
    fx.spec.as_mut().unwrap().annotations.insert(
        "backstage.io/source-location".into(),
        format!("url:{MONO}/tree/main/services/fx/"),
    );
    let done = tess.register_service(fx).await.unwrap();
    // A third team cannot take a directory another team holds.
    let before = app.last_sequence().await;
    let e = mallory
        .register_service(with_repository(
            fixtures::service("fake-pay", "growth"),
            &format!("{MONO}/tree/main/services/pay"),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e:?}");
    assert!(e.to_string().contains("team payments"), "{e}");
    assert_eq!(app.last_sequence().await, before);
    c.at(done.sequence).get_service("fx").await.unwrap();

    let sha = |n: u8| format!("{n:02x}").repeat(20);
    // The merge commit of a pull request touching both directories: the
    // pull request first (it lists no files), its push after.
    let body = mono_pr(&sha(0xa4), 9);
    let (status, a) = post(
        &app,
        "/webhooks/github",
        &github_headers("pull_request", "mono-pr-9", &body),
        &body,
    )
    .await;
    assert_eq!(status, 200, "{a}");
    let body = mono_push(&[
        (sha(0xa1), &["services/pay/src/main.rs"]),
        (
            sha(0xa2),
            &["services/fx/rates.go", "services/pay/README.md"],
        ),
        (sha(0xa3), &["docs/index.md", "services/payments-old/x"]),
        (
            sha(0xa4),
            &["services/fx/rates.go", "services/pay/src/main.rs"],
        ),
    ]);
    let headers = github_headers("push", "mono-push-1", &body);
    let (status, a) = post(&app, "/webhooks/github", &headers, &body).await;
    assert_eq!((status, a["recorded"].as_u64()), (200, Some(8)), "{a}");
    // The commit touching no service's directory is listed, not recorded.
    let skipped = a["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{a}");
    assert_eq!(
        (skipped[0]["sha"].as_str(), skipped[0]["rule"].as_str()),
        (Some(sha(0xa3).as_str()), Some("outside_services"))
    );
    // A redelivery answers the same and records nothing.
    let (status, again) = post(&app, "/webhooks/github", &headers, &body).await;
    assert_eq!((status, again["recorded"].as_u64()), (200, Some(0)));
    assert_eq!(again["skipped"], a["skipped"]);
    // The other order: the pull request after the push links it to both.
    let body = mono_pr(&sha(0xa2), 8);
    let (status, a) = post(
        &app,
        "/webhooks/github",
        &github_headers("pull_request", "mono-pr-8", &body),
        &body,
    )
    .await;
    // Noted, and linked to the three services the push recorded it for.
    assert_eq!((status, a["recorded"].as_u64()), (200, Some(4)), "{a}");

    // One fx deployment ships fx's changes only.
    let now = chrono::Utc::now();
    let deployed = tess
        .record_deployment(pb::RecordDeploymentRequest {
            request_id: "fx-deploy-1".into(),
            target: Some(pb::DeploymentTarget {
                service: "fx".into(),
                environment: "production".into(),
                revision: "fx-1".into(),
                ..Default::default()
            }),
            source: "pipeline".into(),
            started_at: Some(paved_proto::wkt::Timestamp {
                seconds: now.timestamp() - 60,
                nanos: 0,
            }),
            outcome: Some(pb::DeploymentOutcome {
                succeeded: true,
                finished_at: Some(paved_proto::wkt::Timestamp {
                    seconds: now.timestamp(),
                    nanos: 0,
                }),
                ..Default::default()
            }),
            expected_version: None,
        })
        .await
        .unwrap();
    c.at(deployed.sequence)
        .list_deployments(pb::ListDeploymentsRequest::default())
        .await
        .unwrap();
    let rows: Vec<(String, String, i64, bool)> = sqlx::query_as(
        "SELECT sha, service, pr_number, deployment IS NOT NULL FROM delivery_changes
          WHERE sha LIKE 'a%' ORDER BY sha, service",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let rows: Vec<(String, &str, i64, bool)> = rows
        .iter()
        .map(|(s, svc, pr, shipped)| (s[..2].to_owned(), svc.as_str(), *pr, *shipped))
        .collect();
    let row = |s: &str, svc: &'static str, pr: i64, shipped: bool| (s.to_owned(), svc, pr, shipped);
    assert_eq!(
        rows,
        [
            row("a1", "pay-api", 0, false),
            row("a1", "pay-worker", 0, false),
            row("a2", "fx", 8, true),
            row("a2", "pay-api", 8, false),
            row("a2", "pay-worker", 8, false),
            row("a4", "fx", 9, true),
            row("a4", "pay-api", 9, false),
            row("a4", "pay-worker", 9, false),
        ]
    );

    // No directory declared: a change of each service of the repository.
    let mut worker = fixtures::service("ledger-worker", "payments");
    worker
        .spec
        .as_mut()
        .unwrap()
        .annotations
        .insert("github.com/project-slug".into(), "acme/ledger".into());
    let done = alice.register_service(worker).await.unwrap();
    c.at(done.sequence)
        .get_service("ledger-worker")
        .await
        .unwrap();
    let body = push_of(
        "refs/heads/main",
        false,
        &[(sha(0xb1), "Both", ago(chrono::Duration::minutes(5)))],
    );
    let (status, a) = post(
        &app,
        "/webhooks/github",
        &github_headers("push", "ledger-push-1", &body),
        &body,
    )
    .await;
    assert_eq!((status, a["recorded"].as_u64()), (200, Some(2)), "{a}");
}
