//! The Backstage entity provider (`sdk/backstage-catalog-module-paved`), the
//! first marketplace plugin, against a real Paved: published from its own
//! manifest and installed like any plugin, then run inside a stock Backstage
//! backend (`@backstage/backend-defaults` + `@backstage/plugin-catalog-backend`
//! from npm, on the machine's PostgreSQL). Backstage's catalog API must show
//! Paved's entities with their relations and owners, then a change and a
//! retirement made in Paved, and the installation's cursor must follow.
//! In `e2e` only: the NATS server under Paved is not what this test is
//! about, and one build of the module at a time is enough.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use paved_sdk::pb;
use serde_json::Value;

use crate::helpers::{PG_URL, TestApp, eventually, fixtures, remove_database, spawn_app};

fn module_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sdk/backstage-catalog-module-paved")
}

/// The module's npm dependencies (`npm ci`, on first use; `.ci/run` does it
/// in the open first), then its build from the current protos.
fn build_module() {
    let dir = module_dir();
    // What was installed: a copy of the lock file it was installed from.
    let lock = std::fs::read(dir.join("package-lock.json")).unwrap();
    let mark = dir.join("node_modules/.paved-lock");
    if std::fs::read(&mark).ok().as_ref() != Some(&lock) {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "cannot install the module's npm dependencies (cd {} && npm ci)",
            dir.display()
        );
        std::fs::write(&mark, &lock).unwrap();
    }
    let build = Command::new("npm")
        .args(["run", "--silent", "build"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "npm run build failed:\n{}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    let unit = Command::new("npm")
        .args(["test", "--silent"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        unit.status.success(),
        "the module's unit tests failed:\n{}",
        String::from_utf8_lossy(&unit.stdout)
    );
}

/// A stock Backstage backend with the module, on its own port and database
/// prefix; killed (and its databases dropped) when dropped.
struct Backstage {
    url: String,
    token: String,
    prefix: String,
    config: PathBuf,
    log: PathBuf,
    http: reqwest::Client,
    process: tokio::process::Child,
}

impl Backstage {
    async fn start(paved: &TestApp, plugin_token: &str) -> Backstage {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let token = format!("backstage-test-{id}");
        let prefix = format!("paved_bs_{id}_");
        let dir = std::env::temp_dir().join(format!("paved-backstage-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("app-config.yaml");
        std::fs::write(
            &config,
            format!(
                "backend:
  baseUrl: http://127.0.0.1:{port}
  listen: {{ host: 127.0.0.1, port: {port} }}
  database:
    client: pg
    connection: {PG_URL}
    prefix: {prefix}
  auth:
    externalAccess:
      - type: static
        options: {{ token: {token}, subject: paved-e2e }}
catalog:
  locations: []
  # Backstage's own stitching loop (1 s by default) bounds how fast a
  # mutation shows; docs/plugins.md recommends the same.
  stitchingStrategy:
    pollingInterval: {{ milliseconds: 100 }}
paved:
  url: {url}
  token: {plugin_token}
",
                url = paved.url
            ),
        )
        .unwrap();
        let log = dir.join("backstage.log");
        let process = Self::spawn(&config, &log);
        Backstage {
            url: format!("http://127.0.0.1:{port}"),
            token,
            prefix,
            config,
            log,
            http: reqwest::Client::new(),
            process,
        }
    }

    fn spawn(config: &Path, log: &Path) -> tokio::process::Child {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        tokio::process::Command::new("node")
            .arg("dist/dev/backend.js")
            .arg("--config")
            .arg(config)
            .current_dir(module_dir())
            .env("NODE_ENV", "development")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    /// Stops the backend and waits for its exit.
    async fn stop(&mut self) {
        self.process.kill().await.unwrap();
    }

    /// Starts it again on the same database.
    fn start_again(&mut self) {
        self.process = Self::spawn(&self.config, &self.log);
    }

    /// An entity from Backstage's catalog API (`None`: 404).
    async fn entity(&self, kind: &str, name: &str) -> Option<Value> {
        let r = self
            .http
            .get(format!(
                "{}/api/catalog/entities/by-name/{kind}/default/{name}",
                self.url
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .ok()?;
        match r.status() {
            reqwest::StatusCode::OK => r.json().await.ok(),
            _ => None,
        }
    }

    /// Waits until `check` holds for the entity (or its absence), failing
    /// with Backstage's log. Returns how long it took.
    async fn until(
        &mut self,
        what: &str,
        kind: &str,
        name: &str,
        check: impl Fn(Option<&Value>) -> bool,
    ) -> Duration {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(120);
        loop {
            let e = self.entity(kind, name).await;
            if check(e.as_ref()) {
                return started.elapsed();
            }
            if let Ok(Some(status)) = self.process.try_wait() {
                panic!("Backstage exited ({status}):\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen in Backstage within 120 s; last answer {e:#?}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every entity Backstage has from this Paved: key and spec.
    async fn provided(&self, paved_url: &str) -> Vec<(String, Value)> {
        let all: Vec<Value> = self
            .http
            .get(format!("{}/api/catalog/entities", self.url))
            .query(&[(
                "filter",
                format!("metadata.annotations.backstage.io/managed-by-location=paved:{paved_url}"),
            )])
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        all.iter().map(|e| (key(e), e["spec"].clone())).collect()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Backstage {
    fn drop(&mut self) {
        self.process.start_kill().ok();
        // Its databases (one per Backstage plugin, named by the prefix), on
        // a thread and runtime of their own, as TestApp drops its own.
        let prefix = self.prefix.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let Ok(admin) = sqlx::PgPool::connect(&format!("{PG_URL}/postgres")).await else {
                    return;
                };
                let names: Vec<String> = sqlx::query_scalar(
                    "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
                )
                .bind(&prefix)
                .fetch_all(&admin)
                .await
                .unwrap_or_default();
                for db in names {
                    remove_database(&db).await;
                }
            })
        })
        .join();
    }
}

/// `kind:namespace/name`, lowercase.
fn key(e: &Value) -> String {
    format!(
        "{}:{}/{}",
        e["kind"].as_str().unwrap_or_default(),
        e["metadata"]["namespace"].as_str().unwrap_or("default"),
        e["metadata"]["name"].as_str().unwrap_or_default()
    )
    .to_lowercase()
}

/// The targets of an entity's relations of one type of an entity's relations, as Backstage's catalog API
/// gives them.
fn relations(e: &Value, relation: &str) -> Vec<String> {
    let mut r: Vec<String> = e["relations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["type"] == relation)
        .map(|r| r["targetRef"].as_str().unwrap_or_default().to_owned())
        .collect();
    r.sort();
    r
}

#[tokio::test]
async fn backstage_shows_the_paved_catalog_and_follows_its_changes() {
    build_module();
    let mut app = spawn_app().await;
    for team in ["platform", "payments"] {
        app.client.create_team(fixtures::team(team)).await.unwrap();
    }
    app.client
        .create_system(pb::CreateSystemRequest {
            name: "payments".into(),
            owner: "payments".into(),
            display_name: "Payments".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut in_system = fixtures::service("payments-api", "payments");
    in_system.spec.as_mut().unwrap().system = "payments".into();
    app.client.register_service(in_system).await.unwrap();
    app.client
        .register_service(fixtures::service("ledger", "payments"))
        .await
        .unwrap();
    app.client
        .add_dependency(pb::AddDependencyRequest {
            service: "payments-api".into(),
            depends_on: "ledger".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // Through the marketplace, like any plugin.
    let publish =
        paved::cli::read_plugin_manifest(&module_dir().join("paved-plugin.yaml")).unwrap();
    let (plugin, manifest) = (publish.plugin.clone(), publish.manifest.clone().unwrap());
    let package: Value =
        serde_json::from_str(&std::fs::read_to_string(module_dir().join("package.json")).unwrap())
            .unwrap();
    assert_eq!(
        manifest.version, package["version"],
        "paved-plugin.yaml and package.json name the same version"
    );
    app.client.publish_plugin(publish).await.unwrap();
    let installed = app
        .client
        .install_plugin(pb::InstallPluginRequest {
            installation: "backstage".into(),
            plugin,
            version: manifest.version.clone(),
            scopes: manifest.scopes.clone(),
            ..Default::default()
        })
        .await
        .unwrap();

    let mut backstage = Backstage::start(&app, &installed.token).await;
    let took = backstage
        .until("payments-api", "component", "payments-api", |e| {
            e.is_some_and(|e| !relations(e, "ownedBy").is_empty())
        })
        .await;
    eprintln!("the full mutation reached Backstage's catalog API after {took:?}");

    // Entities, relations and ownership as Paved has them.
    let api = backstage.entity("component", "payments-api").await.unwrap();
    assert_eq!(api["spec"]["owner"], "payments");
    assert_eq!(relations(&api, "ownedBy"), ["group:default/payments"]);
    assert_eq!(relations(&api, "partOf"), ["system:default/payments"]);
    assert_eq!(relations(&api, "dependsOn"), ["component:default/ledger"]);
    assert_eq!(
        api["metadata"]["annotations"]["backstage.io/managed-by-location"],
        format!("paved:{}", app.url)
    );
    backstage
        .until("ledger's incoming relation", "component", "ledger", |e| {
            e.is_some_and(|e| relations(e, "dependencyOf") == ["component:default/payments-api"])
        })
        .await;
    let system = backstage.entity("system", "payments").await.unwrap();
    assert_eq!(system["metadata"]["title"], "Payments");
    assert_eq!(relations(&system, "ownedBy"), ["group:default/payments"]);
    backstage
        .until("the group's ownership", "group", "payments", |e| {
            e.is_some_and(|e| {
                relations(e, "ownerOf")
                    == [
                        "component:default/ledger",
                        "component:default/payments-api",
                        "system:default/payments",
                    ]
            })
        })
        .await;
    let group = backstage.entity("group", "payments").await.unwrap();
    assert_eq!(group["spec"]["profile"]["email"], "payments@example.com");

    // Exactly Paved's export, entity by entity: kind, name, owner, spec.
    let exported = app
        .client
        .at(app.last_sequence().await)
        .export_backstage(false)
        .await
        .unwrap();
    let mut paved: Vec<(String, Value)> = serde_yaml_ng::Deserializer::from_str(&exported.yaml)
        .map(|d| {
            let e: Value = serde::Deserialize::deserialize(d).unwrap();
            (key(&e), e["spec"].clone())
        })
        .collect();
    paved.sort_by(|a, b| a.0.cmp(&b.0));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut shown = backstage.provided(&app.url).await;
        shown.sort_by(|a, b| a.0.cmp(&b.0));
        if shown == paved || Instant::now() > deadline {
            assert_eq!(shown, paved, "Backstage's entities from Paved");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A change in Paved: the new owner, in Backstage within seconds.
    let moved = app
        .client
        .transfer_service_ownership(pb::TransferServiceOwnershipRequest {
            name: "payments-api".into(),
            new_owner: "platform".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let took = backstage
        .until("the transfer", "component", "payments-api", |e| {
            e.is_some_and(|e| relations(e, "ownedBy") == ["group:default/platform"])
        })
        .await;
    eprintln!("an ownership transfer reached Backstage's catalog API after {took:?}");

    // A retirement: the entity leaves Backstage's catalog.
    let retired = app
        .client
        .retire_service(pb::RetireServiceRequest {
            name: "ledger".into(),
            reason: "merged into payments-api".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(retired.sequence > moved.sequence);
    let took = backstage
        .until("the retirement", "component", "ledger", |e| e.is_none())
        .await;
    eprintln!("a retirement reached Backstage's catalog API after {took:?}");
    assert!(
        backstage
            .entity("component", "payments-api")
            .await
            .is_some()
    );

    // Paved stops (its streams end) and comes back at the same address: the
    // provider starts over with a full mutation, and the next change arrives.
    app.settings.listen = app.url.trim_start_matches("http://").parse().unwrap();
    app.stop().await.unwrap();
    app.crash_and_restart().await;
    app.client
        .transfer_service_ownership(pb::TransferServiceOwnershipRequest {
            name: "payments-api".into(),
            new_owner: "payments".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let took = backstage
        .until(
            "a transfer after Paved's restart",
            "component",
            "payments-api",
            |e| e.is_some_and(|e| relations(e, "ownedBy") == ["group:default/payments"]),
        )
        .await;
    eprintln!("after Paved's restart, a transfer reached Backstage's catalog API after {took:?}");

    // A change while Backstage is down arrives when it is back.
    backstage.stop().await;
    let deprecated = app
        .client
        .deprecate_service(pb::DeprecateServiceRequest {
            name: "payments-api".into(),
            reason: "payments-api v2".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    backstage.start_again();
    backstage
        .until(
            "the deprecation made while Backstage was down",
            "component",
            "payments-api",
            |e| e.is_some_and(|e| e["spec"]["lifecycle"] == "deprecated"),
        )
        .await;

    // The provider acknowledged what it applied: the installation's durable
    // cursor stands at the last change or later.
    let plugins = app.client.plugins();
    eventually(Duration::from_secs(10), "the installation's cursor", || {
        let mut plugins = plugins.clone();
        async move {
            let list = plugins
                .list_installations(pb::ListInstallationsRequest::default())
                .await
                .unwrap()
                .into_inner();
            let i = list
                .installations
                .iter()
                .find(|i| i.name == "backstage")
                .unwrap();
            (i.cursor >= deprecated.sequence).then_some(())
        }
    })
    .await;
}
