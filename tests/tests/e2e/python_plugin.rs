//! The example webhook plugin in Python (`sdk/python-chat-plugin`), built
//! from the protos, against a real Paved: its own unit tests, then a
//! deployment recorded in Paved becomes a line in a chat, the plugin having
//! verified Paved's signature with the reference Standard Webhooks library
//! and read the deployment back over gRPC with its token.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paved::Roles;
use paved_sdk::pb;
use tokio::io::AsyncBufReadExt;

use crate::helpers::{eventually, fixtures, spawn_configured};

fn plugin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sdk/python-chat-plugin")
}

/// The workspace's `.venv-plugins` with the plugin's requirements,
/// installed on first use (one test process at a time; `.ci/run` does it
/// in the open first). Returns its python.
fn plugin_python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv-plugins");
    let python = venv.join("bin/python");
    let requirements = std::fs::read_to_string(plugin_dir().join("requirements.txt")).unwrap();
    let done = venv.join(format!(
        "paved-installed-{:x}",
        requirements
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
    ));
    if done.exists() {
        return python;
    }
    let lock = std::env::temp_dir().join("paved-venv-plugins.lock");
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while std::fs::create_dir(&lock).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "waiting for another test to install .venv-plugins"
        );
        std::thread::sleep(Duration::from_millis(200));
        if done.exists() {
            return python;
        }
    }
    let installed = (|| {
        if !python.exists() {
            Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .ok()?
                .success()
                .then_some(())?;
        }
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "-r"])
            .arg(plugin_dir().join("requirements.txt"))
            .status()
            .ok()?
            .success()
            .then_some(())?;
        std::fs::write(&done, "").ok()
    })();
    std::fs::remove_dir(&lock).ok();
    assert!(
        installed.is_some(),
        "cannot install the Python plugin's requirements into {} \
         (python3 -m venv .venv-plugins && .venv-plugins/bin/pip install -r sdk/python-chat-plugin/requirements.txt)",
        venv.display()
    );
    python
}

#[tokio::test]
async fn the_python_chat_plugin_posts_a_recorded_deployment_to_the_chat() {
    let python = plugin_python();
    // Its modules, generated from the protos for this test alone.
    let generated = tempdir();
    let ok = Command::new(&python)
        .arg("generate.py")
        .arg(&generated)
        .current_dir(plugin_dir())
        .status()
        .unwrap()
        .success();
    assert!(ok, "generate.py failed");
    // The plugin's own unit tests.
    let unit = Command::new(&python)
        .args(["-B", "-m", "unittest", "-v"])
        .env("PAVED_PB", &generated)
        .current_dir(plugin_dir())
        .output()
        .unwrap();
    assert!(
        unit.status.success(),
        "the plugin's unit tests failed:\n{}",
        String::from_utf8_lossy(&unit.stderr)
    );

    let app = spawn_configured(Roles::ALL, |s| {
        s.plugin_webhook_allow = vec!["127.0.0.0/8".parse().unwrap()];
        s.plugin_webhook_allow_http = true;
    })
    .await;
    for team in ["platform", "payments"] {
        app.client.create_team(fixtures::team(team)).await.unwrap();
    }
    app.client
        .register_service(fixtures::service("payments-api", "payments"))
        .await
        .unwrap();
    // The chat: an incoming webhook keeping each line.
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = lines.clone();
    let chat = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let kept = kept.clone();
            async move {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                kept.lock()
                    .unwrap()
                    .push(v["text"].as_str().unwrap().to_owned());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let chat_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, chat).await.ok() });
    // The plugin's port, chosen now (its manifest names it).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    app.client
        .publish_plugin(pb::PublishPluginRequest {
            plugin: "chat".into(),
            manifest: Some(pb::PluginManifest {
                version: "1.0.0".into(),
                publisher: "platform".into(),
                title: "Chat notifier".into(),
                scopes: vec!["events:read:delivery".into(), "delivery:read".into()],
                event_types: vec![
                    "DeploymentRecorded".into(),
                    "DeploymentSucceeded".into(),
                    "DeploymentFailed".into(),
                ],
                webhook_url: format!("http://127.0.0.1:{port}/paved"),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let installed = app
        .client
        .install_plugin(pb::InstallPluginRequest {
            installation: "chat".into(),
            plugin: "chat".into(),
            version: "1.0.0".into(),
            scopes: vec!["events:read:delivery".into(), "delivery:read".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut plugin = tokio::process::Command::new(&python)
        .args(["-B", "chat_plugin.py"])
        .current_dir(plugin_dir())
        .env("PAVED_PB", &generated)
        .env("PAVED_WEBHOOK_SECRET", &installed.webhook_secret)
        .env("PAVED_TOKEN", &installed.token)
        .env("PAVED_SERVER", app.url.trim_start_matches("http://"))
        .env("CHAT_WEBHOOK_URL", &chat_url)
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = tokio::io::BufReader::new(plugin.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), out.next_line())
        .await
        .expect("the plugin starts")
        .unwrap()
        .unwrap_or_default();
    assert!(first.contains("listening"), "{first}");

    app.client
        .record_deployment(pb::RecordDeploymentRequest {
            target: Some(pb::DeploymentTarget {
                service: "payments-api".into(),
                environment: "production".into(),
                revision: "abc123".into(),
                ..Default::default()
            }),
            source: "pipeline".into(),
            started_at: Some(paved_eventlog::codec::timestamp(
                chrono::Utc::now() - chrono::Duration::minutes(3),
            )),
            outcome: Some(pb::DeploymentOutcome {
                succeeded: true,
                finished_at: Some(paved_eventlog::codec::timestamp(chrono::Utc::now())),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let said = eventually(Duration::from_secs(30), "a line in the chat", || async {
        lines.lock().unwrap().first().cloned()
    })
    .await;
    assert_eq!(said, "✅ payments-api abc123 → production: succeeded");
    plugin.kill().await.ok();
    std::fs::remove_dir_all(&generated).ok();
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("paved-pb-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
