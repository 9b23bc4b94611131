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
const SHIPPED: &[&str] = &["rest-api", "rust-service", "worker"];

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
