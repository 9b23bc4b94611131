//! Backstage descriptor import and export.

use paved_sdk::pb;
use tonic::Code;

use crate::helpers::spawn_app;

/// The seed's organisation shape: 5 teams (one nested), 2 systems, 22 components.
fn techflow_yaml() -> String {
    let mut y = String::new();
    let teams = [
        "platform",
        "payments",
        "workflows",
        "integrations",
        "growth",
    ];
    for t in teams {
        y.push_str(&format!(
            "---\napiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: {t}\n  annotations:\n    paved.dev/chat-channel: '#{t}'\nspec:\n  type: team\n  profile:\n    displayName: {T}\n    email: {t}@techflow.example\n{parent}  children: []\n  members: [user:default/{t}-lead, {t}-dev]\n",
            T = t.to_uppercase(),
            parent = if t == "platform" { "" } else { "  parent: group:default/platform\n" },
        ));
    }
    for (s, owner) in [("billing", "payments"), ("automation", "workflows")] {
        y.push_str(&format!(
            "---\napiVersion: backstage.io/v1alpha1\nkind: System\nmetadata:\n  name: {s}\n  title: {s} system\n  description: Everything {s}\nspec:\n  owner: {owner}\n"
        ));
    }
    for i in 0..22 {
        let owner = teams[i % 5];
        let system = match owner {
            "payments" => "  system: billing\n",
            "workflows" => "  system: automation\n",
            _ => "",
        };
        let deps = if i == 0 {
            String::new()
        } else {
            format!(
                "  dependsOn:\n    - component:default/svc-{:02}\n    - resource:default/db-{i}\n",
                i / 2
            )
        };
        y.push_str(&format!(
            "---\napiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: svc-{i:02}\n  description: Service number {i}\n  tags: [rust, tier-{tier}]\n  links:\n    - url: https://docs.techflow.example/svc-{i:02}\n      title: Docs\n  annotations:\n    github.com/project-slug: techflow/svc-{i:02}\n    backstage.io/techdocs-ref: dir:.\nspec:\n  type: {kind}\n  lifecycle: {lifecycle}\n  owner: group:{owner}\n{system}{deps}",
            tier = i % 3 + 1,
            kind = if i % 7 == 0 { "website" } else { "service" },
            lifecycle = if i % 11 == 10 { "deprecated" } else { "production" },
        ));
    }
    y
}

#[tokio::test]
async fn import_then_export_then_import_again_appends_nothing() {
    let app = spawn_app().await;
    let c = &app.client;
    let yaml = techflow_yaml();

    let dry = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: yaml.clone(),
            dry_run: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dry.entities, 29);
    assert_eq!(app.last_sequence().await, 0, "a dry run appends nothing");

    let first = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: yaml.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first.entities, 29);
    assert_eq!(first.unchanged, 0);
    assert_eq!(first.commands, dry.commands);
    // The entities' commits, then the import's receipt.
    assert_eq!(first.sequence + 1, app.last_sequence().await);

    let r = c.at(first.sequence);
    let services = r.list_all_services(Default::default()).await.unwrap();
    assert_eq!(services.len(), 22);
    let svc3 = r.get_service("svc-03").await.unwrap();
    let spec = svc3.spec.unwrap();
    assert_eq!(svc3.owner, "integrations");
    assert_eq!(spec.repository_url, "https://github.com/techflow/svc-03");
    assert_eq!(spec.docs_url, "https://docs.techflow.example/svc-03");
    assert_eq!(svc3.dependencies.len(), 1, "resource refs are not modelled");
    assert_eq!(svc3.dependencies[0].service, "svc-01");
    let payments = r.get_team("payments").await.unwrap();
    assert_eq!(payments.parent, "platform");
    assert_eq!(payments.members, ["payments-dev", "payments-lead"]);
    assert_eq!(payments.profile.unwrap().chat_channel, "#payments");

    // The same file again: nothing to do.
    let again = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: yaml.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((again.commands, again.events, again.unchanged), (0, 0, 29));

    // Export, and import the export: still nothing to do.
    let exported = r.export_backstage(false).await.unwrap();
    assert_eq!(exported.entities, 29);
    let before = app.last_sequence().await;
    let round_trip = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: exported.yaml.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(round_trip.commands, 0, "export → import is a fixed point");
    assert_eq!(app.last_sequence().await, before);
}

#[tokio::test]
async fn a_changed_file_applies_only_the_differences() {
    let app = spawn_app().await;
    let c = &app.client;
    let yaml = techflow_yaml();
    c.import_backstage(pb::ImportBackstageRequest {
        yaml: yaml.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let changed = yaml
        .replace(
            "description: Service number 4\n",
            "description: Rewritten\n",
        )
        .replace(
            "members: [user:default/growth-lead, growth-dev]",
            "members: [growth-dev]",
        );
    let r = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: changed,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        r.commands, 4,
        "one service update, one member removal, and their two descriptors"
    );
    assert_eq!(r.unchanged, 27);
    let svc = c.at(r.sequence).get_service("svc-04").await.unwrap();
    assert_eq!(svc.spec.unwrap().description, "Rewritten");
}

#[tokio::test]
async fn import_errors_name_the_document_and_the_field_and_apply_nothing() {
    let app = spawn_app().await;
    let yaml = "\
apiVersion: backstage.io/v1alpha1
kind: Group
metadata:
  name: payments
spec:
  type: team
  children: []
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: checkout
spec:
  type: service
  owner: payments
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: ledger
spec:
  type: ''
  lifecycle: production
  owner: payments
";
    let e = app
        .client
        .import_backstage(pb::ImportBackstageRequest {
            yaml: yaml.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let v = e.field_violations();
    let fields: Vec<&str> = v.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        ["documents[1].spec.lifecycle", "documents[2].spec.type"]
    );
    assert!(
        v[1].1.contains("ledger"),
        "the description names the entity: {}",
        v[1].1
    );
    assert_eq!(app.last_sequence().await, 0);
}

#[tokio::test]
async fn references_to_what_is_not_there_yet_are_taken_and_shown_missing_so_import_order_does_not_matter()
 {
    let app = spawn_app().await;
    let c = &app.client;
    // Components before their team, system and dependency, as Backstage
    // takes them (an admin imports: nobody else acts for a missing team).
    let components = "\
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: ledger
spec:
  type: service
  lifecycle: production
  owner: ghosts
  system: books
  dependsOn: [component:journal]
";
    let first = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: components.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let ledger = c.at(first.sequence).get_service("ledger").await.unwrap();
    assert_eq!(ledger.owner, "ghosts");
    assert_eq!(
        ledger.missing,
        [
            "component:default/journal",
            "group:default/ghosts",
            "system:default/books"
        ]
    );
    let graph = c
        .at(first.sequence)
        .dependency_graph(pb::GetDependencyGraphRequest {
            service: "ledger".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let journal = graph.nodes.iter().find(|n| n.name == "journal").unwrap();
    assert!(journal.missing);
    // A member may not name a team or system that is not there.
    c.create_team(crate::helpers::fixtures::team("payments"))
        .await
        .unwrap();
    let pat = app
        .client_as(paved_domain::Principal::member(
            "pat",
            paved_domain::Name::parse("payments").unwrap(),
        ))
        .await;
    let before = app.last_sequence().await;
    let e = pat
        .import_backstage(pb::ImportBackstageRequest {
            yaml: components
                .replace("name: ledger", "name: till")
                .replace("owner: ghosts", "owner: payments"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.to_string().contains("only admins name a system"), "{e}");
    assert_eq!(app.last_sequence().await, before);
    // The rest arrives later; nothing is missing any more.
    let rest = "\
apiVersion: backstage.io/v1alpha1
kind: Group
metadata:
  name: ghosts
spec:
  type: team
  children: []
---
apiVersion: backstage.io/v1alpha1
kind: System
metadata:
  name: books
spec:
  owner: ghosts
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: journal
spec:
  type: service
  lifecycle: production
  owner: ghosts
";
    let second = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: rest.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let ledger = c.at(second.sequence).get_service("ledger").await.unwrap();
    assert!(ledger.missing.is_empty(), "{:?}", ledger.missing);
    assert_eq!(ledger.spec.unwrap().system, "books");
    // Both files again, in either order: nothing to do.
    for yaml in [components, rest] {
        let again = c
            .import_backstage(pb::ImportBackstageRequest {
                yaml: yaml.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(again.commands, 0);
    }
}

#[tokio::test]
async fn an_import_retried_under_its_request_id_answers_the_original_and_another_file_is_refused() {
    let app = spawn_app().await;
    let c = &app.client;
    let yaml = techflow_yaml();
    let request = pb::ImportBackstageRequest {
        request_id: "import-techflow-1".into(),
        yaml: yaml.clone(),
        ..Default::default()
    };
    let first = c.import_backstage(request.clone()).await.unwrap();
    assert!(first.commands > 0 && first.sequence > 0);
    let after = app.last_sequence().await;
    // The retry is the original answer, sequence included, and appends nothing.
    let again = c.import_backstage(request.clone()).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(app.last_sequence().await, after);
    // Another file under that id is refused, and nothing of it is applied.
    let other = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: yaml.replace("description: Service number 4\n", "description: Sneaky\n"),
            ..request.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::InvalidArgument);
    assert_eq!(other.field_violations()[0].0, "request_id");
    assert_eq!(app.last_sequence().await, after);
    let svc = c.at(after).get_service("svc-04").await.unwrap();
    assert_eq!(svc.spec.unwrap().description, "Service number 4");
    // The receipt is in the log, where auditors see it.
    let receipt = crate::helpers::eventually(
        std::time::Duration::from_secs(10),
        "the receipt in the audit index",
        || async {
            let types: Vec<String> = sqlx::query_scalar(
                "SELECT event_type FROM audit_index WHERE aggregate_type = 'import'",
            )
            .fetch_all(&app.pool)
            .await
            .ok()?;
            (!types.is_empty()).then_some(types)
        },
    )
    .await;
    assert_eq!(receipt, ["BackstageImportRecorded"]);
}

#[tokio::test]
async fn an_import_naming_a_repository_another_service_holds_is_refused_up_front() {
    let app = spawn_app().await;
    let c = &app.client;
    c.create_team(crate::helpers::fixtures::team("other"))
        .await
        .unwrap();
    let mut intruder = crate::helpers::fixtures::service("intruder", "other");
    intruder.spec.as_mut().unwrap().repository_url =
        "https://github.com/TechFlow/svc-03.git".into();
    c.register_service(intruder).await.unwrap();
    let before = app.last_sequence().await;
    let e = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: techflow_yaml(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let fields: Vec<String> = e.field_violations().into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["components.svc-03.metadata.annotations"]);
    assert_eq!(
        app.last_sequence().await,
        before,
        "nothing of the import applied"
    );
}

#[tokio::test]
async fn a_monorepos_components_import_by_directory_and_two_teams_cannot_share_one() {
    let app = spawn_app().await;
    let c = &app.client;
    let group = |t: &str| {
        format!(
            "---\napiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: {t}\nspec:\n  type: team\n  children: []\n"
        )
    };
    let component = |name: &str, owner: &str, dir: &str| {
        format!(
            "---\napiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\n  annotations:\n    backstage.io/source-location: url:https://github.com/acme/mono/tree/main/{dir}/\nspec:\n  type: service\n  lifecycle: production\n  owner: group:{owner}\n"
        )
    };
    let file = |components: &[(&str, &str, &str)]| {
        let mut y = group("pay") + &group("fx");
        for (name, owner, dir) in components {
            y.push_str(&component(name, owner, dir));
        }
        y
    };
    // Two teams naming one directory in one file: refused before anything runs.
    let before = app.last_sequence().await;
    let e = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: file(&[
                ("pay-api", "pay", "services/pay"),
                ("fx", "fx", "services/pay"),
            ]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let fields: Vec<String> = e.field_violations().into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["components.fx.metadata.annotations"]);
    assert_eq!(app.last_sequence().await, before, "nothing applied");
    // Their own directories, and two services of one team in one: imported.
    c.import_backstage(pb::ImportBackstageRequest {
        yaml: file(&[
            ("pay-api", "pay", "services/pay"),
            ("pay-worker", "pay", "services/pay"),
            ("fx", "fx", "services/fx"),
        ]),
        ..Default::default()
    })
    .await
    .unwrap();
    let seq = app.last_sequence().await;
    c.at(seq).get_service("fx").await.unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, source_path FROM catalog_services WHERE repository = 'github.com/acme/mono'
          ORDER BY name",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let rows: Vec<(&str, &str)> = rows.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        rows,
        [
            ("fx", "services/fx"),
            ("pay-api", "services/pay"),
            ("pay-worker", "services/pay")
        ]
    );
}

const MIXED: &str = include_str!("fixtures/mixed-kinds.yaml");

/// The documents of a multi-document YAML file, as JSON values.
fn documents(yaml: &str) -> Vec<serde_json::Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

#[tokio::test]
async fn a_file_of_mixed_kinds_imports_whole_and_comes_back_out_as_it_came() {
    let app = spawn_app().await;
    let c = &app.client;
    let first = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: MIXED.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((first.entities, first.unchanged), (9, 0));
    // Every document is stored as it came, and the export gives each back
    // field by field (uppercase, dotted names and another namespace
    // included; references to entities not in the catalog, such as
    // group:ops/sre and system artist-engagement, kept).
    let exported = c.at(first.sequence).export_backstage(false).await.unwrap();
    assert_eq!(exported.entities, 9);
    let out = documents(&exported.yaml);
    let given = documents(MIXED);
    // Every document, those that became a team or a service too.
    assert_eq!(out.len(), given.len());
    for doc in &given {
        let back = out
            .iter()
            .find(|o| o["kind"] == doc["kind"] && o["metadata"]["name"] == doc["metadata"]["name"])
            .unwrap_or_else(|| panic!("{} is exported", doc["metadata"]["name"]));
        assert_eq!(back, doc);
    }
    let relations: Vec<(String, String)> = sqlx::query_as(
        "SELECT type, target FROM catalog_entity_relations r JOIN catalog_entities e ON e.id = r.source
          WHERE e.name = 'breanna.davison' ORDER BY type, target",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let relations: Vec<(&str, &str)> = relations
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        relations,
        [
            ("memberOf", "group:default/artists"),
            ("memberOf", "group:ops/sre")
        ]
    );
    // Read back by ref, in any case, with what it names (the system is not
    // in the catalog yet: missing) and what names it.
    let r = c.at(first.sequence);
    let api = r.get_entity("API:ops/artistlookup").await.unwrap();
    assert_eq!(
        (api.kind.as_str(), api.name.as_str()),
        ("API", "ArtistLookup")
    );
    let shown = |rels: &[pb::EntityRelation]| -> Vec<String> {
        rels.iter()
            .map(|r| {
                format!(
                    "{} {}{}",
                    r.r#type,
                    r.target,
                    if r.missing { " (missing)" } else { "" }
                )
            })
            .collect()
    };
    assert_eq!(
        shown(&api.relations),
        [
            "ownedBy group:default/artists",
            "partOf system:ops/artist-engagement (missing)"
        ]
    );
    let db = r.get_entity("resource:artists-db").await.unwrap();
    assert_eq!(
        shown(&db.relations),
        [
            "dependencyOf component:default/artist-web",
            "ownedBy group:default/artists",
            "partOf system:default/artist-engagement (missing)"
        ]
    );
    assert_eq!(
        shown(&db.incoming),
        ["dependencyOf api:ops/artist_lookup.v2"]
    );
    let e = r.get_entity("api:ops/nope").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = r.get_entity("not a ref").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let apis = r
        .list_entities(pb::ListEntitiesRequest {
            kind: "api".into(),
            namespace: "ops".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(apis.entities.len(), 1);
    let rest = r
        .list_entities(pb::ListEntitiesRequest {
            kind: "api".into(),
            namespace: "ops".into(),
            page_token: apis.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap();
    let names: Vec<&str> = apis
        .entities
        .iter()
        .chain(&rest.entities)
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, ["artist_lookup.v2", "ArtistLookup"]);
    assert!(rest.next_page_token.is_empty());

    // Catalog health counts them, by team and namespace: what has no owner
    // in the catalog, and references to what is not there (yet).
    let health = r.catalog_health("").await.unwrap();
    let overall = health.overall.unwrap();
    assert_eq!(
        (
            overall.entities,
            overall.entities_without_owner,
            overall.dangling_references
        ),
        (7, 3, 5)
    );
    let artists = health.teams.iter().find(|t| t.team == "artists").unwrap();
    assert_eq!((artists.entities, artists.dangling_references), (4, 3));
    let by_namespace: Vec<(&str, u32, u32, u32)> = health
        .namespaces
        .iter()
        .map(|n| {
            (
                n.namespace.as_str(),
                n.entities,
                n.entities_without_owner,
                n.dangling_references,
            )
        })
        .collect();
    assert_eq!(by_namespace, [("default", 5, 2, 3), ("ops", 2, 1, 2)]);

    // The same file again, and the export: nothing to do.
    let before = app.last_sequence().await;
    for yaml in [MIXED.to_owned(), exported.yaml] {
        let again = c
            .import_backstage(pb::ImportBackstageRequest {
                yaml,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(again.commands, 0);
    }
    assert_eq!(app.last_sequence().await, before);
}

#[tokio::test]
async fn a_bad_document_of_any_kind_refuses_the_whole_file_and_owners_decide_who_may() {
    let app = spawn_app().await;
    let c = &app.client;
    // A bad ref in the last document: nothing of the file is appended.
    let bad = format!(
        "{MIXED}---\napiVersion: backstage.io/v1alpha1\nkind: API\nmetadata:\n  name: broken\nspec:\n  owner: group:artists\n  consumesApis: [\"not a ref\"]\n---\napiVersion: example.com/v1\nkind: Thing\nmetadata:\n  name: -bad-\n---\napiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: web2\nspec:\n  type: website\n  lifecycle: production\n  owner: group:artists\n  providesApis: [\"not a ref\"]\n"
    );
    let e = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: bad,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let fields: Vec<String> = e.field_violations().into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            // What Backstage's API kind requires (type, lifecycle,
            // definition), the first missing one named.
            "documents[9].spec.type",
            "documents[9].spec.consumesApis[0]",
            "documents[10].metadata.name",
            // A component's field Paved does not model is checked too.
            "documents[11].spec.providesApis[0]"
        ]
    );
    assert_eq!(app.last_sequence().await, 0, "nothing applied");

    // A member stores what their team owns, not another team's, and not
    // what an owner outside the catalog owns.
    for team in ["payments", "growth"] {
        c.create_team(crate::helpers::fixtures::team(team))
            .await
            .unwrap();
    }
    let api = |name: &str, owner: &str| {
        format!(
            "apiVersion: backstage.io/v1alpha1\nkind: API\nmetadata:\n  name: {name}\nspec:\n  type: openapi\n  lifecycle: production\n  owner: {owner}\n  definition: x\n"
        )
    };
    let payments = app
        .client_as(paved_domain::Principal::member(
            "ana",
            paved_domain::Name::parse("payments").unwrap(),
        ))
        .await;
    payments
        .import_backstage(pb::ImportBackstageRequest {
            yaml: api("pay-api", "payments"),
            ..Default::default()
        })
        .await
        .unwrap();
    let before = app.last_sequence().await;
    for owner in ["growth", "nobody-yet"] {
        let e = payments
            .import_backstage(pb::ImportBackstageRequest {
                yaml: api("other-api", owner),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{owner}: {e:?}");
        assert!(e.to_string().contains("may not change"), "{owner}: {e}");
    }
    assert_eq!(app.last_sequence().await, before);
}

/// A group document.
fn group_doc(name: &str, parent: Option<&str>, members: &[String]) -> String {
    let parent = parent.map_or(String::new(), |p| format!("  parent: {p}\n"));
    format!(
        "---\napiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: {name}\nspec:\n  type: team\n{parent}  children: []\n  members: [{}]\n",
        members.join(", ")
    )
}

#[tokio::test]
async fn a_failure_only_the_domain_finds_in_the_middle_of_a_big_file_appends_nothing() {
    let app = spawn_app().await;
    let c = &app.client;
    // Teams a ← b in the catalog already.
    c.create_team(crate::helpers::fixtures::team("a"))
        .await
        .unwrap();
    let mut b = crate::helpers::fixtures::team("b");
    b.parent = "a".into();
    c.create_team(b).await.unwrap();
    let before = app.last_sequence().await;
    let component = |name: &str, deps: &[String]| {
        let deps = if deps.is_empty() {
            String::new()
        } else {
            format!("  dependsOn: [{}]\n", deps.join(", "))
        };
        format!(
            "---\napiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: service\n  lifecycle: production\n  owner: group:a\n{deps}"
        )
    };
    let good = |n: usize| -> String {
        (0..n)
            .map(|i| component(&format!("fine-{i}"), &[]))
            .collect()
    };
    let many: Vec<String> = (0..1001).map(|i| format!("user-{i}")).collect();
    let deps: Vec<String> = (0..257).map(|i| format!("component:fine-{i}")).collect();
    let cases = [
        // a's parent b, whose parent is a: a cycle with the catalog's teams.
        (
            "a parent cycle",
            format!("{}{}", good(50), group_doc("a", Some("b"), &[])),
        ),
        (
            "over 1,000 members",
            format!("{}{}", good(50), group_doc("big", None, &many)),
        ),
        (
            "over 256 dependencies",
            format!("{}{}", good(300), component("hub", &deps)),
        ),
    ];
    for (what, yaml) in cases {
        let e = c
            .import_backstage(pb::ImportBackstageRequest {
                yaml,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
        assert_eq!(app.last_sequence().await, before, "{what}: nothing applied");
        let fields: Vec<String> = e.field_violations().into_iter().map(|(f, _)| f).collect();
        assert!(
            fields.iter().all(|f| f.starts_with("documents[")),
            "{what}: {fields:?}"
        );
    }
    // The good part alone imports.
    let done = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: good(50),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(done.entities, 50);
}

#[tokio::test]
async fn what_paved_does_not_model_survives_a_change_made_through_paved() {
    let app = spawn_app().await;
    let c = &app.client;
    let yaml = "\
apiVersion: backstage.io/v1alpha1
kind: Group
metadata:
  name: artists
spec:
  type: business-unit
  profile:
    displayName: Artists
    picture: https://avatars.example.com/artists.png
  children: []
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: artist-web
  title: Artist Web
  description: The artists' site
  links:
    - url: https://dashboard.example.com/artist-web
      title: Dashboard
      icon: dashboard
      type: admin-dashboard
spec:
  type: website
  lifecycle: production
  owner: group:artists
  providesApis: [api:artist-api]
  subcomponentOf: component:artist-portal
  dependsOn: [resource:artists-db]
";
    let first = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: yaml.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // The descriptor's relations are the catalog's too.
    let web = c
        .at(first.sequence)
        .get_entity("component:artist-web")
        .await
        .unwrap();
    let relations: Vec<String> = web
        .relations
        .iter()
        .map(|r| format!("{} {}", r.r#type, r.target))
        .collect();
    assert_eq!(
        relations,
        [
            "dependsOn resource:default/artists-db",
            "ownedBy group:default/artists",
            "partOf component:default/artist-portal",
            "providesApi api:default/artist-api"
        ]
    );
    // Changed through Paved: the export says what Paved says, and keeps the rest.
    let done = c
        .update_service(pb::UpdateServiceRequest {
            name: "artist-web".into(),
            spec: Some(pb::ServiceSpec {
                description: "Where fans find artists".into(),
                ..Default::default()
            }),
            update_mask: Some(paved_proto::wkt::FieldMask {
                paths: vec!["description".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let exported = c.at(done.sequence).export_backstage(false).await.unwrap();
    let out = documents(&exported.yaml);
    let web = out
        .iter()
        .find(|d| d["metadata"]["name"] == "artist-web")
        .unwrap();
    let given = documents(yaml);
    assert_eq!(web["metadata"]["description"], "Where fans find artists");
    for pointer in [
        "/metadata/title",
        "/metadata/links",
        "/spec/providesApis",
        "/spec/subcomponentOf",
        "/spec/type",
    ] {
        assert_eq!(web.pointer(pointer), given[1].pointer(pointer), "{pointer}");
    }
    assert_eq!(
        web["spec"]["dependsOn"],
        serde_json::json!(["resource:artists-db"])
    );
    // The group did not change: given back as it came.
    let group = out.iter().find(|d| d["kind"] == "Group").unwrap();
    assert_eq!(group, &given[0]);
    // And the export imports as a fixed point.
    let before = app.last_sequence().await;
    let again = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: exported.yaml,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (again.commands, app.last_sequence().await),
        (1, before + 2),
        "only the descriptor catches up with the change (and the receipt)"
    );
}

#[tokio::test]
async fn a_users_member_of_and_a_groups_members_are_one_membership() {
    let app = spawn_app().await;
    let c = &app.client;
    c.create_team(crate::helpers::fixtures::team("payments"))
        .await
        .unwrap();
    let yaml = "\
apiVersion: backstage.io/v1alpha1
kind: Group
metadata:
  name: crew
spec:
  type: team
  children: []
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata:
  name: ana
spec:
  memberOf: [crew, group:default/payments, group:ops/elsewhere]
";
    let first = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: yaml.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let r = c.at(first.sequence);
    // The file's own group and a team the file does not describe.
    for team in ["crew", "payments"] {
        let t = r.get_team(team).await.unwrap();
        assert_eq!(t.members, ["ana"], "{team}");
    }
    let ana = r.get_entity("user:ana").await.unwrap();
    let member_of: Vec<(&str, bool)> = ana
        .relations
        .iter()
        .map(|r| (r.target.as_str(), r.missing))
        .collect();
    assert_eq!(
        member_of,
        [
            ("group:default/crew", false),
            ("group:default/payments", false),
            ("group:ops/elsewhere", true)
        ]
    );
    // Again: nothing to do.
    let again = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: yaml.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(again.commands, 0);
    // A member cannot join anyone to payments this way: a User has no
    // owner, so only admins store users (and the join would need to act
    // for payments too).
    c.create_team(crate::helpers::fixtures::team("growth"))
        .await
        .unwrap();
    let mallory = app
        .client_as(paved_domain::Principal::member(
            "mallory",
            paved_domain::Name::parse("growth").unwrap(),
        ))
        .await;
    let before = app.last_sequence().await;
    let e = mallory
        .import_backstage(pb::ImportBackstageRequest {
            yaml: "apiVersion: backstage.io/v1alpha1\nkind: User\nmetadata:\n  name: mallory\nspec:\n  memberOf: [payments]\n".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.to_string().contains("its owner is not a team"), "{e}");
    assert_eq!(app.last_sequence().await, before);
    assert_eq!(c.get_team("payments").await.unwrap().members, ["ana"]);

    // ana leaves payments: her memberOf no longer names it, so the
    // membership read from it ends (the file's own crew lists her still).
    let left = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: yaml.replace(", group:default/payments", ""),
            ..Default::default()
        })
        .await
        .unwrap();
    let r = c.at(left.sequence);
    assert_eq!(
        r.get_team("payments").await.unwrap().members,
        Vec::<String>::new()
    );
    assert_eq!(r.get_team("crew").await.unwrap().members, ["ana"]);
    // A member added through the API, not by ana's descriptor, stays.
    let added = c
        .add_team_member(pb::AddTeamMemberRequest {
            team: "payments".into(),
            member: "bo".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let again = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: yaml.replace(", group:default/payments", ""),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(again.commands, 0, "{again:?}");
    assert_eq!(
        c.at(added.sequence)
            .get_team("payments")
            .await
            .unwrap()
            .members,
        ["bo"]
    );
}

#[tokio::test]
async fn a_groups_children_and_its_childrens_parent_are_one_relation() {
    let app = spawn_app().await;
    let c = &app.client;
    let group = |name: &str, extra: &str| {
        format!(
            "---\napiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: {name}\nspec:\n  type: team\n{extra}"
        )
    };
    // Stated on the parent only: the child takes it.
    let yaml = group("platform", "  children: [group:default/payments, growth]\n")
        + &group("payments", "  children: []\n")
        + &group("growth", "  children: []\n");
    let done = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml,
            ..Default::default()
        })
        .await
        .unwrap();
    for team in ["payments", "growth"] {
        let t = c.at(done.sequence).get_team(team).await.unwrap();
        assert_eq!(t.parent, "platform", "{team}");
    }
    // Two parents for one group: refused, naming the child's document.
    let before = app.last_sequence().await;
    let yaml = group("ops", "  children: [payments]\n")
        + &group("payments", "  parent: platform\n  children: []\n");
    let e = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let fields: Vec<String> = e.field_violations().into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["documents[1].spec.parent"]);
    assert_eq!(app.last_sequence().await, before);
}

#[tokio::test]
async fn the_shipped_golden_path_imports_as_a_template_entity() {
    let app = spawn_app().await;
    app.client
        .create_team(crate::helpers::fixtures::team("platform"))
        .await
        .unwrap();
    let yaml = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../templates/rust-service/template.yaml"),
    )
    .unwrap();
    let done = app
        .client
        .import_backstage(pb::ImportBackstageRequest {
            yaml,
            ..Default::default()
        })
        .await
        .unwrap();
    let t = app
        .client
        .at(done.sequence)
        .get_entity("template:default/rust-service")
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&t.document_json).unwrap();
    assert_eq!(doc["apiVersion"], "scaffolder.backstage.io/v1beta3");
    assert_eq!(doc["spec"]["steps"][0]["action"], "fetch:template");
    assert!(
        t.relations
            .iter()
            .any(|r| r.r#type == "ownedBy" && r.target == "group:default/platform"),
        "{:?}",
        t.relations
    );
}

/// A catalog of `n` components of one team, each with a long description:
/// about 4.4 KB a document.
fn big_catalog(n: usize) -> String {
    let mut y = String::from(
        "---\napiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: bulk\nspec:\n  type: team\n  children: []\n",
    );
    let words = "the quick brown fox jumps over the lazy dog ".repeat(100);
    for i in 0..n {
        y.push_str(&format!(
            "---\napiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: bulk-{i:05}\n  description: {}\nspec:\n  type: service\n  lifecycle: production\n  owner: group:default/bulk\n",
            &words[..4000]
        ));
    }
    y
}

#[tokio::test]
async fn a_catalog_over_one_message_goes_out_and_back_in_through_the_streams() {
    let app = spawn_app().await;
    let c = &app.client;
    let yaml = big_catalog(4_400);
    assert!(yaml.len() > 17 * 1024 * 1024, "{}", yaml.len());
    // One message cannot hold it.
    let e = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: yaml.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let before = app.last_sequence().await;
    // A reader may not; bytes that are not UTF-8 are refused with their offset.
    let reader = app.client_as(paved_domain::Principal::reader("rita")).await;
    let e = reader
        .import_backstage_stream("", &yaml[..1000], false, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(app.last_sequence().await, before, "nothing appended");

    // Streamed: one import, whole, with the bytes counted as they go.
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = sent.clone();
    let r = c
        .import_backstage_stream(
            "big-import",
            &yaml,
            false,
            Some(std::sync::Arc::new(move |n| {
                seen.store(n, std::sync::atomic::Ordering::Relaxed)
            })),
        )
        .await
        .unwrap();
    assert_eq!(r.entities, 4_401);
    assert_eq!(r.bytes, yaml.len() as u64);
    assert_eq!(
        sent.load(std::sync::atomic::Ordering::Relaxed),
        yaml.len() as u64
    );
    // The same request again: the original answer, nothing appended.
    let last = app.last_sequence().await;
    let again = c
        .import_backstage_stream("big-import", &yaml, false, None)
        .await
        .unwrap();
    assert_eq!((again.sequence, again.commands), (r.sequence, r.commands));

    // Out again in chunks of whole documents, each under a message's size.
    let mut stream = c
        .at(r.sequence)
        .export_backstage_stream(false)
        .await
        .unwrap();
    let (mut exported, mut entities, mut chunks) = (String::new(), 0, 0);
    while let Some(chunk) = stream.message().await.unwrap() {
        assert!(chunk.yaml.starts_with("---\n"));
        assert!(chunk.yaml.len() < 2 * 1024 * 1024);
        entities += chunk.entities;
        chunks += 1;
        exported.push_str(&chunk.yaml);
    }
    assert_eq!(entities, 4_401);
    assert!(chunks > 16, "{chunks}");
    assert_eq!(documents(&exported).len(), 4_401);
    // And back in: nothing changes.
    let back = c
        .import_backstage_stream("", &exported, false, None)
        .await
        .unwrap();
    assert_eq!(back.commands, 0, "{back:?}");
    assert_eq!(back.unchanged, 4_401);
    // Nothing in the catalog (the audit checkpointer may have signed the
    // log meanwhile: this test is slow enough for its interval).
    let catalog = format!("{}.catalog.>", app.settings.subject_prefix);
    assert_eq!(
        app.log.next_matching(&catalog, last + 1).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn a_streamed_import_refuses_broken_bytes_and_a_changed_request_id_by_field() {
    let app = spawn_app().await;
    let mut catalog = app.client.catalog();
    let before = app.last_sequence().await;
    let send = |chunks: Vec<pb::ImportBackstageStreamRequest>| {
        let mut catalog = catalog.clone();
        async move {
            catalog
                .import_backstage_stream(tonic::codegen::tokio_stream::iter(chunks))
                .await
        }
    };
    let chunk = |id: &str, bytes: &[u8]| pb::ImportBackstageStreamRequest {
        request_id: id.into(),
        dry_run: false,
        yaml_chunk: bytes.to_vec(),
    };
    // A character split across two chunks is fine; a broken one is not.
    let yaml = "---\napiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: caf\u{e9}s\n  description: caf\u{e9}\nspec:\n  type: team\n  children: []\n";
    let at = yaml.find('\u{e9}').unwrap() + 1;
    let e = send(vec![
        chunk("bad-utf8", &yaml.as_bytes()[..at]),
        chunk("", b"\xff\xfe"),
    ])
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains(&format!("offset {}", at - 1)),
        "{}",
        e.message()
    );
    let e = send(vec![chunk("one", b"---\n"), chunk("two", b"kind: Group\n")])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("request_id"), "{}", e.message());
    let e = send(vec![chunk("", b"---\n")]).await.unwrap_err();
    assert!(e.message().contains("request_id"), "{}", e.message());
    assert_eq!(app.last_sequence().await, before, "nothing appended");
    // Split inside a character, then whole: imported (a name with é is refused
    // by the group rules, so use the description only).
    let fine = yaml.replace("name: caf\u{e9}s", "name: cafes");
    let at = fine.find('\u{e9}').unwrap() + 1;
    let r = send(vec![
        chunk("split", &fine.as_bytes()[..at]),
        chunk("", &fine.as_bytes()[at..]),
    ])
    .await
    .unwrap()
    .into_inner();
    assert_eq!(r.entities, 1);
    catalog
        .get_team(pb::GetTeamRequest {
            name: "cafes".into(),
            min_sequence: r.sequence,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn groups_systems_and_components_paved_cannot_hold_are_stored_as_backstage_has_them() {
    let app = spawn_app().await;
    let c = &app.client;
    c.create_team(crate::helpers::fixtures::team("payments"))
        .await
        .unwrap();
    // Names Backstage allows and DNS labels do not, another namespace, an
    // owner that is a user, a system of another namespace: Backstage takes
    // them all, and so does Paved, as entities stored as they came.
    let yaml = "\
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: Checkout_Service
spec:
  type: service
  lifecycle: production
  owner: payments
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: artist-lookup
  namespace: ops
spec:
  type: service
  lifecycle: production
  owner: group:default/payments
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: ledger
spec:
  type: service
  lifecycle: production
  owner: user:alice
  system: system:ops/billing
---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata:
  name: Search.Team
spec:
  type: team
  children: []
---
apiVersion: backstage.io/v1alpha1
kind: System
metadata:
  name: billing
  namespace: ops
spec:
  owner: group:default/payments
";
    let r = c
        .import_backstage(pb::ImportBackstageRequest {
            yaml: yaml.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.entities, 5);
    let at = c.at(r.sequence);
    for (entity, kind) in [
        ("component:Checkout_Service", "Component"),
        ("component:ops/artist-lookup", "Component"),
        ("component:ledger", "Component"),
        ("group:Search.Team", "Group"),
        ("system:ops/billing", "System"),
    ] {
        let e = at.get_entity(entity).await.unwrap();
        assert_eq!(e.kind, kind, "{entity}");
    }
    // They are not services: no DORA, provisioning or golden paths for them.
    assert_eq!(
        at.get_service("ledger").await.unwrap_err().code(),
        Code::NotFound
    );
    // Their relations are there, the missing ones marked.
    let ledger = at.get_entity("component:ledger").await.unwrap();
    let relations: Vec<(&str, &str, bool)> = ledger
        .relations
        .iter()
        .map(|r| (r.r#type.as_str(), r.target.as_str(), r.missing))
        .collect();
    assert!(
        relations.contains(&("ownedBy", "user:default/alice", true)),
        "{relations:?}"
    );
    assert!(
        relations.contains(&("partOf", "system:ops/billing", false)),
        "{relations:?}"
    );
    // And they come back out as they came.
    let out = at.export_backstage(false).await.unwrap();
    let exported = documents(&out.yaml);
    for name in [
        "Checkout_Service",
        "artist-lookup",
        "ledger",
        "Search.Team",
        "billing",
    ] {
        assert!(
            exported.iter().any(|d| d["metadata"]["name"] == name),
            "{name} in the export"
        );
    }
    // A member of payments may change what payments owns; not a user's component.
    let member = app
        .client_as(paved_domain::Principal::member(
            "pat",
            paved_domain::Name::parse("payments").unwrap(),
        ))
        .await;
    member
        .import_backstage(pb::ImportBackstageRequest {
            yaml: yaml
                .split("---")
                .next()
                .unwrap()
                .replace("lifecycle: production", "lifecycle: deprecated"),
            ..Default::default()
        })
        .await
        .unwrap();
    let e = member
        .import_backstage(pb::ImportBackstageRequest {
            yaml: yaml
                .split("---")
                .nth(2)
                .unwrap()
                .replace("lifecycle: production", "lifecycle: deprecated"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("its owner is not a team"), "{e}");
}
