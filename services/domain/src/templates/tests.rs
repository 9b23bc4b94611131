//! The shipped golden paths: each template checks, its skeleton renders
//! to its golden files, and what it renders is what its tools accept
//! (manifests read back into their Kubernetes types, the workflow has the
//! seed's stages in order, the descriptor is a Component with TechDocs).

use std::path::PathBuf;

use super::*;
use crate::scenario::{assert_golden, read_tree};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn template(name: &str) -> (Value, Template) {
    let text = std::fs::read_to_string(repo_root().join(format!("templates/{name}/template.yaml")))
        .unwrap();
    let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
    let t = check_template(&doc).unwrap_or_else(|v| panic!("{name}: {v:?}"));
    (doc, t)
}

fn values() -> Value {
    serde_json::json!({
        "name": "payments-api",
        "description": "Takes payments.",
        "owner": "payments",
        "repoUrl": parse_repo_url("github.com?owner=acme&repo=payments-api"),
    })
}

/// The golden paths in `templates/`.
const SHIPPED: &[&str] = &["rest-api", "rust-service", "web-app", "worker"];

/// A shipped template rendered as its fetch step says, with payments-api's parameters.
fn render_shipped(name: &str) -> Vec<(String, String)> {
    let (_, t) = template(name);
    let given: serde_json::Map<String, Value> = serde_json::from_value(serde_json::json!({
        "name": "payments-api",
        "description": "Takes payments.",
        "owner": "payments",
        "repoUrl": "github.com?owner=acme&repo=payments-api",
    }))
    .unwrap();
    let params = parameters(&t, &given).unwrap();
    let fetch = t
        .steps
        .iter()
        .find(|s| s.action == "fetch:template")
        .unwrap();
    let input = render_input(&fetch.input, &serde_json::json!({ "parameters": params })).unwrap();
    let verbatim: Vec<String> = input["copyWithoutTemplating"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| g.as_str().unwrap().to_owned())
        .collect();
    let skeleton = read_tree(&repo_root().join(format!("templates/{name}/skeleton")));
    render_skeleton(&skeleton, &input["values"], &verbatim).unwrap()
}

#[test]
fn every_shipped_template_renders_to_its_golden_files() {
    for name in SHIPPED {
        let rendered = render_shipped(name);
        assert_golden(&format!("templates/{name}"), &rendered);
        let file = |p: &str| &rendered.iter().find(|(q, _)| q == p).unwrap().1;
        // The workflow is copied as it is: GitHub's own ${{ }} expressions stay.
        assert!(
            file(".github/workflows/ci.yaml").contains("${{ github.sha }}"),
            "{name}"
        );
        assert!(
            rendered
                .iter()
                .any(|(_, c)| c.contains("Hello from payments-api")),
            "{name}"
        );
        assert!(
            !rendered.iter().any(|(_, c)| c.contains("${{ values")),
            "{name}"
        );
    }
}

#[test]
fn what_every_shipped_template_renders_is_what_its_tools_accept() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Service;
    for name in SHIPPED {
        let (_, t) = template(name);
        let rendered = render_shipped(name);
        let file = |p: &str| {
            rendered
                .iter()
                .find(|(q, _)| q == p)
                .unwrap_or_else(|| panic!("{name}: no {p}"))
                .1
                .clone()
        };
        let d: Deployment = serde_yaml_ng::from_str(&file("deploy/base/deployment.yaml")).unwrap();
        let c = &d.spec.unwrap().template.spec.unwrap().containers[0];
        assert!(c.readiness_probe.is_some() && c.liveness_probe.is_some());
        assert!(c.resources.as_ref().unwrap().limits.is_some());
        let _: Service = serde_yaml_ng::from_str(&file("deploy/base/service.yaml")).unwrap();
        for env in ["staging", "production"] {
            let k: Value =
                serde_yaml_ng::from_str(&file(&format!("deploy/{env}/kustomization.yaml")))
                    .unwrap();
            assert_eq!(k["namespace"], format!("payments-{env}"));
        }
        // The seed's stages, each after the one before.
        let w: Value = serde_yaml_ng::from_str(&file(".github/workflows/ci.yaml")).unwrap();
        let stages = [
            "lint",
            "unit-test",
            "build-image",
            "security-scan",
            "push",
            "update-argocd-manifest",
        ];
        for pair in stages.windows(2) {
            assert_eq!(w["jobs"][pair[1]]["needs"], pair[0], "{name} {pair:?}");
        }
        assert!(
            serde_json::to_string(&w["jobs"]["security-scan"])
                .unwrap()
                .contains("aquasecurity/trivy-action")
        );
        let info: Value = serde_yaml_ng::from_str(&file("catalog-info.yaml")).unwrap();
        assert_eq!(info["kind"], "Component");
        assert_eq!(info["metadata"]["name"], "payments-api");
        assert_eq!(
            info["metadata"]["annotations"]["backstage.io/techdocs-ref"],
            "dir:."
        );
        assert_eq!(info["spec"]["owner"], "group:default/payments");
        let mkdocs: Value = serde_yaml_ng::from_str(&file("mkdocs.yml")).unwrap();
        assert_eq!(mkdocs["nav"][0]["Home"], "index.md");
        assert!(file("docs/index.md").starts_with("# payments-api"));
        assert!(file("README.md").starts_with("# payments-api"));
        assert!(file("Dockerfile").contains("EXPOSE 8080"));
        assert!(t.steps.iter().any(|s| s.action == "paved:provision"));
    }
}

#[test]
fn an_unknown_action_or_a_repeated_step_is_refused_by_field() {
    let (mut doc, _) = template("rust-service");
    doc["spec"]["steps"][1]["action"] = "shell:exec".into();
    doc["spec"]["steps"][2]["id"] = "fetch".into();
    doc["apiVersion"] = "scaffolder.backstage.io/v1beta2".into();
    let fields: Vec<String> = check_template(&doc)
        .unwrap_err()
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(
        fields,
        ["apiVersion", "spec.steps[1].action", "spec.steps[2].id"]
    );
}

#[test]
fn a_value_the_skeleton_needs_and_does_not_get_is_an_error_naming_the_file() {
    let files = vec![("README.md".to_owned(), "# ${{ values.nmae }}\n".to_owned())];
    let e = render_skeleton(&files, &values(), &[]).unwrap_err();
    assert_eq!(e.path, "README.md");
}

#[test]
fn paths_render_and_globs_match_like_backstages() {
    let files = vec![(
        "${{ values.name }}/x.txt".to_owned(),
        "${{ values.repoUrl.owner }}".to_owned(),
    )];
    let out = render_skeleton(&files, &values(), &[]).unwrap();
    assert_eq!(out, [("payments-api/x.txt".to_owned(), "acme".to_owned())]);
    assert!(glob(".github/workflows/*", ".github/workflows/ci.yaml"));
    assert!(!glob(".github/workflows/*", ".github/workflows/a/ci.yaml"));
    assert!(glob("**/*.yaml", "deploy/base/service.yaml"));
    assert!(glob("docs/**", "docs/index.md"));
    assert!(!glob("*.md", "docs/index.md"));
}

#[test]
fn step_inputs_take_the_parameters_and_defaults_fill_what_is_not_given() {
    let (_, t) = template("rust-service");
    let given: serde_json::Map<String, Value> = serde_json::from_value(serde_json::json!({
        "name": "payments-api",
        "owner": "payments",
        "repoUrl": "github.com?owner=acme&repo=payments-api",
    }))
    .unwrap();
    let params = parameters(&t, &given).unwrap();
    assert_eq!(params["description"], "A Rust service.");
    let fetch = &t.steps[0];
    let input = render_input(&fetch.input, &serde_json::json!({ "parameters": params })).unwrap();
    // A whole expression keeps its type: parseRepoUrl gives an object.
    assert_eq!(input["values"]["repoUrl"]["owner"], "acme");
    assert_eq!(input["values"]["name"], "payments-api");
    assert_eq!(input["url"], "./skeleton");
    // Missing and mistyped parameters are named.
    let mut bad = given.clone();
    bad.remove("owner");
    bad.insert("name".into(), Value::from(7));
    let fields: Vec<String> = parameters(&t, &bad)
        .unwrap_err()
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["parameters.name", "parameters.owner"]);
}

// ---- published versions and tasks ----

use super::library::{TemplateCommand, TemplateEvent, TemplateLibrary};
use super::task::{StepStatus, Task, TaskCommand, TaskEvent, TaskStatus, task_id};
use crate::Aggregate;
use crate::catalog::{Team, TeamProfile};
use crate::principal::Principal;
use crate::rejection::Rejection;
use crate::scenario::{Scenario, invalid_fields, n, precondition};

fn team(name: &str) -> Option<Team> {
    Some(Team {
        name: n(name),
        profile: TeamProfile::default(),
        parent: None,
        members: Default::default(),
        retired: None,
    })
}

/// A shipped template's document and files, as `paved template publish` sends them.
fn package(name: &str) -> (Value, Vec<(String, String)>) {
    let (doc, _) = template(name);
    let files = read_tree(&repo_root().join(format!("templates/{name}/skeleton")))
        .into_iter()
        .map(|(p, c)| (format!("skeleton/{p}"), c))
        .collect();
    (doc, files)
}

fn library(name: &str) -> Scenario<TemplateLibrary> {
    let mut s = Scenario::new(name);
    s.refs.insert_team(n("platform"), team("platform"));
    s.refs.insert_team(n("payments"), team("payments"));
    s
}

fn publish(doc: &Value, files: &[(String, String)]) -> TemplateCommand {
    TemplateCommand::Publish {
        document: doc.clone(),
        files: files.to_vec(),
    }
}

#[test]
fn a_template_is_published_by_its_owners_with_its_files_and_the_same_twice_is_nothing() {
    let (doc, files) = package("rest-api");
    let s = library("rest-api").by(Principal::member("pat", n("platform")));
    let events = s.when(publish(&doc, &files)).unwrap();
    let [TemplateEvent::Published(v1)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(v1.version, 1);
    assert_eq!(v1.files.len(), files.len());
    let s = s.given(events.clone());
    // The same document and files again: nothing.
    assert_eq!(s.when(publish(&doc, &files)).unwrap(), []);
    // A changed file: version 2.
    let mut changed = files.clone();
    changed[0].1.push_str("\n# changed\n");
    let events = s.when(publish(&doc, &changed)).unwrap();
    let [TemplateEvent::Published(v2)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(v2.version, 2);
    assert_ne!(v2.digest, v1.digest);
    let s = s.given(events);
    assert_eq!(s.state.latest().unwrap().version, 2);
    assert_eq!(s.state.version(1).unwrap().files, v1.files);

    // Another team's member, a reader: refused.
    for who in [
        Principal::member("mallory", n("payments")),
        Principal::reader("rita"),
    ] {
        assert!(matches!(
            library("rest-api").by(who).when(publish(&doc, &files)),
            Err(Rejection::PermissionDenied(_))
        ));
    }
}

#[test]
fn a_template_without_its_skeleton_or_with_unsafe_paths_is_refused_by_field() {
    let (doc, files) = package("worker");
    let s = library("worker");
    // No files where the fetch step reads.
    assert_eq!(
        invalid_fields(s.when(publish(&doc, &[]))),
        ["spec.steps[0].input.url"]
    );
    let mut bad = files.clone();
    bad.push(("../escape".into(), "x".into()));
    bad.push(("/etc/passwd".into(), "x".into()));
    bad.push(("skeleton/.git/config".into(), "x".into()));
    bad.push((
        "skeleton/big".into(),
        "x".repeat(library::MAX_FILE_BYTES + 1),
    ));
    let n_files = files.len();
    assert_eq!(
        invalid_fields(s.when(publish(&doc, &bad))),
        [
            format!("files[{n_files}].path"),
            format!("files[{}].path", n_files + 1),
            format!("files[{}].path", n_files + 2),
            format!("files[{}].content", n_files + 3),
        ]
    );
    // Published under another name, an owner not in the catalog.
    assert_eq!(
        invalid_fields(library("other").when(publish(&doc, &files))),
        ["metadata.name"]
    );
    let mut orphan = doc.clone();
    orphan["spec"]["owner"] = "group:default/nobody".into();
    assert!(matches!(
        precondition(s.when(publish(&orphan, &files))),
        crate::Precondition::BadReference { .. }
    ));
    // A fetch step reading outside the template.
    let mut remote = doc.clone();
    remote["spec"]["steps"][0]["input"]["url"] = "https://example.com/skeleton".into();
    assert_eq!(
        invalid_fields(s.when(publish(&remote, &files))),
        ["spec.steps[0].input.url"]
    );
}

fn published(name: &str) -> super::library::TemplateVersion {
    let (doc, files) = package(name);
    let events = library(name).when(publish(&doc, &files)).unwrap();
    let TemplateEvent::Published(v) = events.into_iter().next().unwrap();
    v
}

fn tasks() -> Scenario<Option<Task>> {
    let mut s = Scenario::new("rest-api-0123456789ab");
    s.refs.insert_team(n("payments"), team("payments"));
    s.refs.insert_team(n("ledger"), team("ledger"));
    s.by(Principal::member("alice", n("payments")))
}

fn params(pairs: &[(&str, &str)]) -> serde_json::Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
        .collect()
}

fn create(
    v: &super::library::TemplateVersion,
    team: &str,
    p: serde_json::Map<String, Value>,
) -> TaskCommand {
    TaskCommand::Create {
        team: n(team),
        template: n("rest-api"),
        version: v.version,
        document: v.document.clone(),
        parameters: p,
    }
}

fn good_params() -> serde_json::Map<String, Value> {
    params(&[
        ("name", "payments-api"),
        ("owner", "payments"),
        ("repoUrl", "github.com?owner=acme&repo=payments-api"),
    ])
}

#[test]
fn a_task_is_created_for_its_team_with_parameters_its_forms_accept() {
    let v = published("rest-api");
    let s = tasks();
    let events = s.when(create(&v, "payments", good_params())).unwrap();
    let [
        TaskEvent::Created {
            steps, parameters, ..
        },
    ] = events.as_slice()
    else {
        panic!("{events:?}")
    };
    let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["fetch", "publish", "namespace", "register", "argocd"]);
    // The form's default is filled in.
    assert_eq!(parameters["description"], "A REST API.");

    // The form's pattern and bounds, a missing field: each by its path.
    let mut bad = good_params();
    bad.insert("name".into(), "Payments_API".into());
    bad.insert("description".into(), Value::String("x".repeat(300)));
    bad.remove("repoUrl");
    assert_eq!(
        invalid_fields(s.when(create(&v, "payments", bad))),
        [
            "parameters.description",
            "parameters.name",
            "parameters.repoUrl"
        ]
    );
    // The owner named in the form is the task's team.
    let mut other = good_params();
    other.insert("owner".into(), "ledger".into());
    assert_eq!(
        invalid_fields(s.when(create(&v, "payments", other))),
        ["parameters.owner"]
    );
    // Another team's member, a reader; a team not in the catalog.
    assert!(matches!(
        s.when(create(
            &v,
            "ledger",
            params(&[
                ("name", "x"),
                ("owner", "ledger"),
                ("repoUrl", "github.com?owner=a&repo=x")
            ])
        )),
        Err(Rejection::PermissionDenied(_))
    ));
    assert!(matches!(
        tasks()
            .by(Principal::reader("rita"))
            .when(create(&v, "payments", good_params())),
        Err(Rejection::PermissionDenied(_))
    ));
    let mut ghost = good_params();
    ghost.insert("owner".into(), "ghosts".into());
    assert!(matches!(
        precondition(
            tasks()
                .by(Principal::admin("root"))
                .when(create(&v, "ghosts", ghost))
        ),
        crate::Precondition::BadReference { .. }
    ));
    // The same task again.
    let s = s.given(events);
    assert!(matches!(
        s.when(create(&v, "payments", good_params())),
        Err(Rejection::AlreadyExists(_))
    ));
}

/// Applies `command` and folds its events in; panics if refused.
fn then(s: Scenario<Option<Task>>, command: TaskCommand) -> Scenario<Option<Task>> {
    let events = s.when(command).expect("accepted");
    s.given(events)
}

fn as_who(
    s: &Scenario<Option<Task>>,
    who: Principal,
    command: TaskCommand,
) -> Result<Vec<TaskEvent>, Rejection> {
    let ctx = crate::Context {
        id: &s.id,
        principal: &who,
        now: s.now,
        refs: &s.refs,
    };
    s.state.decide(&command, &ctx)
}

#[test]
fn steps_run_in_order_once_each_and_a_failed_task_is_retried_from_its_failed_step() {
    let v = published("rest-api");
    let s = tasks();
    let created = s.when(create(&v, "payments", good_params())).unwrap();
    let mut s = s.given(created).by(Principal::admin("worker:templates"));
    let start = |step: &str| TaskCommand::Start { step: step.into() };
    let finish = |step: &str, out: Value| TaskCommand::Finish {
        step: step.into(),
        output: out,
        log: format!("{step} done"),
    };
    // Only the next step starts; a start repeated is nothing.
    assert!(matches!(
        precondition(s.when(start("publish"))),
        crate::Precondition::State { .. }
    ));
    let e = s.when(start("fetch")).unwrap();
    assert_eq!(
        e,
        [TaskEvent::StepStarted {
            step: "fetch".into(),
            attempt: 1
        }]
    );
    s = s.given(e);
    assert_eq!(s.when(start("fetch")).unwrap(), []);
    // Only the runner records steps.
    let member = Principal::member("alice", n("payments"));
    assert!(matches!(
        as_who(&s, member.clone(), finish("fetch", Value::Null)),
        Err(Rejection::PermissionDenied(_))
    ));
    let out = serde_json::json!({"files": 20});
    let e = s.when(finish("fetch", out.clone())).unwrap();
    s = s.given(e);
    // Finishing it again with the same output: nothing; a finished step does not start again.
    assert_eq!(s.when(finish("fetch", out)).unwrap(), []);
    assert!(s.when(start("fetch")).is_err());
    assert_eq!(
        s.state.as_ref().unwrap().context()["steps"]["fetch"]["output"]["files"],
        20
    );
    // Not complete before every step finished.
    assert!(
        s.when(TaskCommand::Complete {
            output: Value::Null
        })
        .is_err()
    );
    // publish fails: the task fails.
    s = then(s, start("publish"));
    s = then(
        s,
        TaskCommand::Fail {
            step: "publish".into(),
            reason: "the remote refused".into(),
            log: "…".into(),
        },
    );
    let t = s.state.as_ref().unwrap();
    assert_eq!(t.status, TaskStatus::Failed);
    assert!(s.when(start("namespace")).is_err());
    // A reader may not retry; a member of the team may; the failed step runs again.
    assert!(matches!(
        as_who(&s, Principal::reader("rita"), TaskCommand::Retry),
        Err(Rejection::PermissionDenied(_))
    ));
    assert!(matches!(
        as_who(
            &s,
            Principal::member("eve", n("ledger")),
            TaskCommand::Retry
        ),
        Err(Rejection::PermissionDenied(_))
    ));
    let e = as_who(&s, member.clone(), TaskCommand::Retry).unwrap();
    assert_eq!(
        e,
        [TaskEvent::Retried {
            step: "publish".into()
        }]
    );
    s = s.given(e);
    let e = s.when(start("publish")).unwrap();
    assert_eq!(
        e,
        [TaskEvent::StepStarted {
            step: "publish".into(),
            attempt: 2
        }]
    );
    s = s.given(e);
    s = then(s, finish("publish", serde_json::json!({"remoteUrl": "x"})));
    // A step whose `if` does not hold is skipped; the rest finish; the task completes.
    s = then(
        s,
        TaskCommand::Skip {
            step: "namespace".into(),
            why: "if: false".into(),
        },
    );
    for step in ["register", "argocd"] {
        s = then(s, start(step));
        s = then(s, finish(step, Value::Null));
    }
    assert_eq!(
        s.state.as_ref().unwrap().steps[2].status,
        StepStatus::Skipped
    );
    let e = s
        .when(TaskCommand::Complete {
            output: serde_json::json!({"links": []}),
        })
        .unwrap();
    s = s.given(e);
    assert_eq!(s.state.as_ref().unwrap().status, TaskStatus::Completed);
    assert_eq!(
        s.when(TaskCommand::Complete {
            output: Value::Null
        })
        .unwrap(),
        []
    );
    assert!(as_who(&s, member, TaskCommand::Retry).is_err());
}

#[test]
fn a_published_versions_workspace_is_what_the_skeleton_renders() {
    let v = published("rust-service");
    let t = v.template().unwrap();
    let p = parameters(
        &t,
        &params(&[
            ("name", "payments-api"),
            ("owner", "payments"),
            ("description", "Takes payments."),
            ("repoUrl", "github.com?owner=acme&repo=payments-api"),
        ]),
    )
    .unwrap();
    let context = serde_json::json!({ "parameters": p, "steps": {} });
    let files = render_workspace(&t.steps, &v.files, &context).unwrap();
    assert_eq!(files, render_shipped("rust-service"));
    // A path rendered out of the workspace is an error, not a file.
    let escape = Step {
        id: "fetch".into(),
        name: "fetch".into(),
        action: "fetch:plain".into(),
        input: serde_json::json!({"url": "./skeleton", "targetPath": "../.."}),
        condition: None,
    };
    assert!(render_fetch(&escape, &v.files, &context).is_err());
    let named = vec![("skeleton/${{ values.name }}.txt".to_owned(), "x".to_owned())];
    let step = Step {
        input: serde_json::json!({"url": "./skeleton", "values": {"name": "../../etc/x"}}),
        action: "fetch:template".into(),
        ..escape
    };
    assert!(render_fetch(&step, &named, &context).is_err());
}

#[test]
fn conditions_time_saved_and_task_ids_read_as_backstage_and_users_expect() {
    let ctx = serde_json::json!({"parameters": {"db": true, "name": "", "n": 0, "list": [1]}});
    assert!(condition_holds("${{ parameters.db }}", &ctx).unwrap());
    assert!(!condition_holds("${{ parameters.name }}", &ctx).unwrap());
    assert!(!condition_holds("${{ parameters.n }}", &ctx).unwrap());
    assert!(condition_holds("${{ parameters.list }}", &ctx).unwrap());
    assert!(!condition_holds("false", &ctx).unwrap());
    assert!(condition_holds("${{ not parameters.name }}", &ctx).unwrap());
    // What is not given is false, as in Backstage (undefined is falsy).
    assert!(!condition_holds("${{ parameters.missing }}", &ctx).unwrap());
    assert!(condition_holds("${{ parameters.", &ctx).is_err());
    let doc =
        |v: &str| serde_json::json!({"metadata": {"annotations": {TIME_SAVED_ANNOTATION: v}}});
    assert_eq!(time_saved(&doc("PT4H")), Some(4 * 3600));
    assert_eq!(
        time_saved(&doc("P1DT2H30M")),
        Some(86_400 + 2 * 3600 + 1800)
    );
    assert_eq!(time_saved(&doc("PT")), None);
    assert_eq!(time_saved(&doc("4 hours")), None);
    assert_eq!(time_saved(&serde_json::json!({})), None);
    // The same request by the same caller is the same task; not by another.
    let a = task_id("rest-api", "alice", "req-1");
    assert_eq!(a, task_id("rest-api", "alice", "req-1"));
    assert_ne!(a, task_id("rest-api", "bob", "req-1"));
    assert!(a.as_str().starts_with("rest-api-"));
    assert!(task_id(&"x".repeat(80), "a", "b").as_str().len() <= 63);
}
