//! Bad input over every mutating RPC: INVALID_ARGUMENT naming the field
//! (google.rpc.BadRequest), and nothing appended.

use futures::FutureExt;
use futures::future::BoxFuture;
use paved_sdk::{Error, pb};
use tonic::Code;

use crate::helpers::{fixtures, spawn_app};

type Case<'a> = (&'static str, &'static str, BoxFuture<'a, Result<(), Error>>);

fn ok<'a, T: Send + 'a>(f: BoxFuture<'a, Result<T, Error>>) -> BoxFuture<'a, Result<(), Error>> {
    f.map(|r| r.map(|_| ())).boxed()
}

#[tokio::test]
async fn every_mutating_rpc_refuses_bad_input_and_appends_nothing() {
    let app = spawn_app().await;
    let c = &app.client;
    c.create_team(fixtures::team("payments")).await.unwrap();
    c.register_service(fixtures::service("ledger", "payments"))
        .await
        .unwrap();
    c.create_system(pb::CreateSystemRequest {
        name: "billing".into(),
        owner: "payments".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let before = app.last_sequence().await;

    let bad_spec = |f: fn(&mut pb::ServiceSpec)| {
        let mut s = fixtures::service("fx", "payments");
        f(s.spec.as_mut().unwrap());
        s
    };
    let cases: Vec<Case<'_>> =
        vec![
        (
            "team name",
            "name",
            ok(c.create_team(fixtures::team("Payments_2")).boxed()),
        ),
        (
            "team email",
            "profile.email",
            ok(c.create_team(pb::CreateTeamRequest {
                profile: Some(pb::TeamProfile {
                    email: "nope".into(),
                    ..Default::default()
                }),
                ..fixtures::team("ops")
            })
            .boxed()),
        ),
        (
            "team parent",
            "parent",
            ok(c.create_team(pb::CreateTeamRequest {
                parent: "Bad Parent".into(),
                ..fixtures::team("ops")
            })
            .boxed()),
        ),
        (
            "profile missing",
            "profile",
            ok(c.update_team_profile(pb::UpdateTeamProfileRequest {
                name: "payments".into(),
                ..Default::default()
            })
            .boxed()),
        ),
        (
            "member blank",
            "member",
            ok(c.add_team_member(pb::AddTeamMemberRequest {
                team: "payments".into(),
                member: "".into(),
                ..Default::default()
            })
            .boxed()),
        ),
        (
            "member spaces",
            "member",
            ok(c.remove_team_member(pb::RemoveTeamMemberRequest {
                team: "payments".into(),
                member: "a b".into(),
                ..Default::default()
            })
            .boxed()),
        ),
        (
            "own parent",
            "parent",
            ok(c.set_team_parent(pb::SetTeamParentRequest {
                team: "payments".into(),
                parent: "payments".into(),
                ..Default::default()
            })
            .boxed()),
        ),
        (
            "retire reason",
            "reason",
            ok(c.retire_team(pb::RetireTeamRequest {
                name: "payments".into(),
                reason: "".into(),
                ..Default::default()
            })
            .boxed()),
        ),
        (
            "system owner",
            "owner",
            ok(c.create_system(pb::CreateSystemRequest {
                name: "x".into(),
                owner: "".into(),
                ..Default::default()
            })
            .boxed()),
        ),
        (
            "system text",
            "display_name",
            ok(c.update_system(pb::UpdateSystemRequest {
                name: "billing".into(),
                display_name: "x".repeat(300),
                ..Default::default()
            })
            .boxed()),
        ),
        (
            "system new owner",
            "new_owner",
            ok(c.transfer_system_ownership(pb::TransferSystemOwnershipRequest {
                name: "billing".into(),
                new_owner: "-x".into(),
                ..Default::default()
            })
            .boxed()),
        ),
        (
            "system reason",
            "reason",
            ok(c.retire_system(pb::RetireSystemRequest {
                name: "billing".into(),
                ..Default::default()
            })
            .boxed()),
        ),
        (
            "spec missing",
            "spec",
            ok(c.register_service(pb::RegisterServiceRequest {
                name: "fx".into(),
                owner: "payments".into(),
                ..Default::default()
            })
            .boxed()),
        ),
        (
            "type unspecified",
            "spec.type",
            ok(c.register_service(bad_spec(|s| s.r#type = 0)).boxed()),
        ),
        (
            "unknown enum",
            "spec.lifecycle",
            ok(c.register_service(bad_spec(|s| s.lifecycle = 42)).boxed()),
        ),
        (
            "docs url",
            "spec.docs_url",
            ok(c.register_service(bad_spec(|s| s.docs_url = "docs".into()))
                .boxed()),
        ),
        (
            "tier",
            "spec.tier",
            ok(c.register_service(bad_spec(|s| s.tier = 9)).boxed()),
        ),
        (
            "tag",
            "spec.tags[0]",
            ok(
                c.register_service(bad_spec(|s| s.tags = vec!["Not A Tag".into()]))
                    .boxed(),
            ),
        ),
        (
            "system name",
            "spec.system",
            ok(
                c.register_service(bad_spec(|s| s.system = "Billing".into()))
                    .boxed(),
            ),
        ),
        (
            "empty mask",
            "update_mask",
            ok(c.update_service(pb::UpdateServiceRequest {
                name: "ledger".into(),
                spec: Some(fixtures::spec()),
                ..Default::default()
            })
            .boxed()),
        ),
        (
            "unknown mask path",
            "update_mask.paths[0]",
            ok(c.update_service(pb::UpdateServiceRequest {
                name: "ledger".into(),
                spec: Some(fixtures::spec()),
                update_mask: Some(paved_proto::wkt::FieldMask {
                    paths: vec!["owner".into()],
                }),
                ..Default::default()
            })
            .boxed()),
        ),
        (
            "transfer",
            "new_owner",
            ok(c.transfer_service_ownership(pb::TransferServiceOwnershipRequest {
                name: "ledger".into(),
                ..Default::default()
            })
            .boxed()),
        ),
        (
            "deprecate reason",
            "reason",
            ok(c.deprecate_service(pb::DeprecateServiceRequest {
                name: "ledger".into(),
                ..Default::default()
            })
            .boxed()),
        ),
        (
            "retire reason",
            "reason",
            ok(c.retire_service(pb::RetireServiceRequest {
                name: "ledger".into(),
                reason: "\u{7}".into(),
                ..Default::default()
            })
            .boxed()),
        ),
        (
            "self dependency",
            "depends_on",
            ok(c.add_dependency(pb::AddDependencyRequest {
                service: "ledger".into(),
                depends_on: "ledger".into(),
                ..Default::default()
            })
            .boxed()),
        ),
        (
            "criticality",
            "criticality",
            ok(c.add_dependency(pb::AddDependencyRequest {
                service: "ledger".into(),
                depends_on: "fx".into(),
                criticality: 7,
                ..Default::default()
            })
            .boxed()),
        ),
        (
            "remove dependency",
            "depends_on",
            ok(c.remove_dependency(pb::RemoveDependencyRequest {
                service: "ledger".into(),
                depends_on: "".into(),
                ..Default::default()
            })
            .boxed()),
        ),
        (
            "slo target",
            "slo.availability.target_percent",
            ok(c.set_slo(pb::SetSloRequest {
                service: "ledger".into(),
                slo: Some(pb::Slo {
                    name: "availability".into(),
                    objective: Some(pb::slo::Objective::Availability(
                        pb::AvailabilityObjective {
                            target_percent: 100.0,
                        },
                    )),
                    window_days: 28,
                }),
                ..Default::default()
            })
            .boxed()),
        ),
        (
            "slo objective",
            "slo.objective",
            ok(c.set_slo(pb::SetSloRequest {
                service: "ledger".into(),
                slo: Some(pb::Slo {
                    name: "x".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .boxed()),
        ),
        (
            "remove slo",
            "slo_name",
            ok(c.remove_slo(pb::RemoveSloRequest {
                service: "ledger".into(),
                slo_name: "".into(),
                ..Default::default()
            })
            .boxed()),
        ),
        (
            "request id",
            "request_id",
            ok(c.create_team(pb::CreateTeamRequest {
                request_id: "has space".into(),
                ..fixtures::team("ops")
            })
            .boxed()),
        ),
        (
            "import yaml",
            "documents[0].kind",
            c.import_backstage(pb::ImportBackstageRequest {
                // Any kind is stored, but a kind is a letter and letters or digits.
                yaml: "apiVersion: backstage.io/v1alpha1\nkind: Not-A-Kind\nmetadata:\n  name: x\n"
                    .into(),
                ..Default::default()
            })
            .map(|r| r.map(|_| ()))
            .boxed(),
        ),
    ];
    for (label, field, call) in cases {
        let e = call.await.expect_err(label);
        assert_eq!(e.code(), Code::InvalidArgument, "{label}: {e}");
        let fields: Vec<String> = e.field_violations().into_iter().map(|(f, _)| f).collect();
        assert!(
            fields.iter().any(|f| f == field),
            "{label}: expected a violation of {field}, got {fields:?}"
        );
    }
    assert_eq!(app.last_sequence().await, before, "nothing was appended");
}

#[tokio::test]
async fn all_violations_of_a_request_are_reported_together() {
    let app = spawn_app().await;
    let e = app
        .client
        .register_service(pb::RegisterServiceRequest {
            name: "Bad".into(),
            owner: "".into(),
            spec: Some(pb::ServiceSpec {
                r#type: 0,
                lifecycle: 99,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let fields: Vec<String> = e.field_violations().into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["name", "owner", "spec.type", "spec.lifecycle"]);
}

#[tokio::test]
async fn a_request_with_thousands_of_violations_gets_a_status_that_fits() {
    let app = crate::helpers::spawn_app().await;
    // 2,000 components, each wrong in two ways, with long echoed names.
    let mut yaml = String::new();
    for i in 0..2000 {
        yaml.push_str(&format!(
            "---\napiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: {}-{i}\nspec:\n  type: service\n  lifecycle: nonsense\n  owner: group:nobody\n",
            "x".repeat(200)
        ));
    }
    let e = app
        .client
        .import_backstage(paved_sdk::pb::ImportBackstageRequest {
            yaml,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    let paved_sdk::Error::Status(s) = &e else {
        panic!("{e}")
    };
    let size = s.message().len() + s.details().len();
    assert!(
        size <= 8 * 1024 / 4 * 3,
        "{size} bytes of message and details"
    );
    assert!(s.message().contains("more"), "{}", s.message());
    let violations = e.field_violations();
    assert_eq!(violations.len(), 21, "20 and a count of the rest");
    assert!(violations[20].1.contains("more violations"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_yaml_is_refused_in_linear_time_and_stalls_nothing() {
    let app = crate::helpers::spawn_app().await;
    for nested in ["{a: ".repeat(50_000), "[".repeat(200_000)] {
        let e = app
            .client
            .import_backstage(paved_sdk::pb::ImportBackstageRequest {
                yaml: nested,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        // Refused by the linear pre-check, before the parser (which took 6 s
        // over the unclosed `{a: ` alone) saw it.
        let (field, why) = &e.field_violations()[0];
        assert_eq!(field, "yaml");
        assert!(why.contains("nest deeper"), "{why}");
    }
    // Brackets in quoted scalars and comments are not nesting.
    let yaml = format!(
        "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: payments\n  description: \"{}\" # {}\nspec:\n  type: team\n  children: []\n",
        "[".repeat(100),
        "{".repeat(100)
    );
    app.client
        .import_backstage(paved_sdk::pb::ImportBackstageRequest {
            yaml,
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn one_error_edge_no_internal_text_no_debug_text_and_the_documented_codes() {
    let app = crate::helpers::spawn_app().await;
    let c = &app.client;
    // Over the 16 MiB request limit: RESOURCE_EXHAUSTED, as documented.
    let e = c
        .import_backstage(paved_sdk::pb::ImportBackstageRequest {
            yaml: "#".repeat(17 * 1024 * 1024),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");
    assert!(e.to_string().contains("16 MiB"), "{e}");
    // A NUL in a filter is the client's mistake, and PostgreSQL's text stays in the log.
    let mut s = c
        .read_events(paved_sdk::pb::ReadEventsRequest {
            filter: Some(paved_sdk::pb::EventFilter {
                principal: "ali\0ce".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    let e = match &mut s {
        Ok(stream) => stream.message().await.unwrap_err().into(),
        Err(e) => paved_sdk::Error::Status(tonic::Status::new(e.code(), e.to_string())),
    };
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert!(
        !e.to_string().contains("0x00") && !e.to_string().contains("UTF8"),
        "{e}"
    );
    let e = c
        .at(0)
        .list_services(paved_sdk::pb::ListServicesRequest {
            tag: "x\0".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    // Names read as names, not as Rust's debug text.
    let e = c
        .request_rollback(paved_sdk::pb::RequestRollbackRequest {
            deployment: "d-nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(!e.to_string().contains("Name("), "{e}");
}
