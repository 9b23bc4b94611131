//! Given / when / then tests of provisioning: the state machine, the
//! approval policy, quotas, and the renderer's files (golden, and each
//! manifest read back into its `k8s-openapi` type).

use super::render::{self, Rendered};
use super::*;
use crate::catalog::{
    Lifecycle, Service, ServiceEvent, ServiceSpec, ServiceType, Team, TeamProfile,
};
use crate::principal::Principal;
use crate::scenario::{Scenario, invalid_fields, n, precondition};

impl Scenario<Tenancy> {
    fn tenancy(team: &str) -> Self {
        let mut s = Self::new(team);
        s.refs.insert_team(
            n(team),
            Some(Team {
                name: n(team),
                profile: TeamProfile::default(),
                parent: None,
                members: Default::default(),
                retired: None,
            }),
        );
        s
    }

    fn with_team_service(mut self, name: &str, owner: &str) -> Self {
        let mut s: Option<Service> = None;
        s.evolve(&ServiceEvent::Registered {
            name: n(name),
            owner: n(owner),
            spec: ServiceSpec::new(ServiceType::Service, Lifecycle::Production),
        });
        self.refs.insert_service(n(name), s);
        self
    }

    /// Applies the command and folds its events in; panics if refused.
    fn then(mut self, command: ProvisioningCommand) -> Self {
        let events = self.when(command).expect("accepted");
        for e in &events {
            self.state.evolve(e);
        }
        self
    }

    fn then_as(self, who: Principal, command: ProvisioningCommand) -> Self {
        let back = self.principal.clone();
        let mut s = self.by(who).then(command);
        s.principal = back;
        s
    }

    /// The command's answer when `who` gives it.
    fn when_by(
        &self,
        who: Principal,
        command: ProvisioningCommand,
    ) -> Result<Vec<ProvisioningEvent>, Rejection> {
        let ctx = crate::aggregate::Context {
            id: &self.id,
            principal: &who,
            now: self.now,
            refs: &self.refs,
        };
        self.state.decide(&command, &ctx)
    }

    fn state_of(&self, number: u64) -> RequestState {
        self.state.requests[&number].state
    }
}

fn alice() -> Principal {
    Principal::member("alice", n("payments"))
}
fn bob() -> Principal {
    Principal::member("bob", n("payments"))
}
fn worker() -> Principal {
    Principal::admin("worker:gitops")
}

fn namespace(env: &str, size: &str) -> ResourceSpec {
    ResourceSpec {
        kind: ResourceKind::Namespace,
        environment: n(env),
        service: None,
        size: size.into(),
    }
}

fn database(kind: ResourceKind, env: &str, service: &str) -> ResourceSpec {
    ResourceSpec {
        kind,
        environment: n(env),
        service: Some(n(service)),
        size: "small".into(),
    }
}

fn request(spec: ResourceSpec, action: Action) -> ProvisioningCommand {
    request_with(spec, action, Rules::default())
}

fn request_with(spec: ResourceSpec, action: Action, rules: Rules) -> ProvisioningCommand {
    ProvisioningCommand::Request {
        team: n("payments"),
        spec,
        action,
        rules: Box::new(rules),
    }
}

fn plan_of(files: &[(&str, Option<&str>)]) -> Plan {
    Plan {
        base: "a".repeat(40),
        files: files
            .iter()
            .map(|(p, c)| PlannedFile {
                path: (*p).into(),
                content: c.map(str::to_owned),
            })
            .collect(),
        diff: "--- a\n+++ b\n".into(),
        drift: Vec::new(),
    }
}

fn plan(number: u64, plan: Plan) -> ProvisioningCommand {
    ProvisioningCommand::Plan {
        number,
        plan,
        policy: Policy::default(),
    }
}

fn approve(number: u64) -> ProvisioningCommand {
    ProvisioningCommand::Approve {
        number,
        reason: "looks right".into(),
    }
}

/// Requested by alice, planned, approved by bob, applied: request 1.
fn live_namespace(env: &str) -> Scenario<Tenancy> {
    Scenario::tenancy("payments")
        .by(alice())
        .then(request(namespace(env, "small"), Action::Create))
        .then_as(
            worker(),
            plan(1, plan_of(&[("namespaces/x/ns.yaml", Some("a"))])),
        )
        .then_as(bob(), approve(1))
        .then_as(worker(), ProvisioningCommand::StartApply { number: 1 })
        .then_as(
            worker(),
            ProvisioningCommand::RecordApplied {
                number: 1,
                commit: "b".repeat(40),
            },
        )
}

#[test]
fn a_request_goes_from_requested_through_plan_and_approval_to_applied_and_verified() {
    let s = Scenario::tenancy("payments")
        .by(alice())
        .then(request(namespace("staging", "small"), Action::Create));
    assert_eq!(s.state_of(1), RequestState::Requested);
    assert_eq!(
        s.state.resources["namespace-staging"].status,
        ResourceStatus::Pending
    );
    let s = s.then_as(
        worker(),
        plan(1, plan_of(&[("namespaces/p/ns.yaml", Some("x"))])),
    );
    assert_eq!(s.state_of(1), RequestState::Planned);
    let s = s.then_as(bob(), approve(1));
    assert_eq!(s.state_of(1), RequestState::Approved);
    let s = s.then_as(worker(), ProvisioningCommand::StartApply { number: 1 });
    // A restarted writer starting again changes nothing.
    assert!(
        s.when_by(worker(), ProvisioningCommand::StartApply { number: 1 })
            .unwrap()
            .is_empty()
    );
    let s = Scenario {
        principal: alice(),
        ..s
    };
    let applied = ProvisioningCommand::RecordApplied {
        number: 1,
        commit: "c".repeat(40),
    };
    let s = s.then_as(worker(), applied.clone());
    assert_eq!(s.state_of(1), RequestState::Applied);
    let s = s.by(worker());
    assert!(
        s.when(applied).unwrap().is_empty(),
        "one outcome per commit"
    );
    assert!(matches!(
        s.when(ProvisioningCommand::RecordApplied {
            number: 1,
            commit: "d".repeat(40)
        }),
        Err(Rejection::Precondition(Precondition::State { .. }))
    ));
    let s = s.then(ProvisioningCommand::Verify { number: 1 });
    assert_eq!(s.state_of(1), RequestState::Verified);
    let r = &s.state.resources["namespace-staging"];
    assert_eq!(r.status, ResourceStatus::Live);
    assert_eq!(r.open, None);
    assert_eq!(r.commit.as_deref(), Some("c".repeat(40).as_str()));
}

#[test]
fn only_the_writer_records_plans_and_outcomes() {
    let s = Scenario::tenancy("payments")
        .by(alice())
        .then(request(namespace("staging", "small"), Action::Create));
    for command in [
        plan(1, plan_of(&[("a.yaml", Some("x"))])),
        ProvisioningCommand::StartApply { number: 1 },
        ProvisioningCommand::Fail {
            number: 1,
            reason: "no".into(),
        },
    ] {
        assert!(matches!(
            s.when(command),
            Err(Rejection::PermissionDenied(_))
        ));
    }
}

/// Who may approve a plan, for every kind of approver and every kind of caller.
#[test]
fn the_approval_policy_matrix() {
    let other_team = Principal::member("carol", n("search"));
    let reader = Principal::reader("dave");
    let admin = Principal::admin("erin");
    let cases: &[(Approver, bool, Principal, bool)] = &[
        // (approver, self_approval, who, allowed)
        (Approver::Team, false, bob(), true),
        (Approver::Team, false, alice(), false), // the requester
        (Approver::Team, true, alice(), true),
        (Approver::Team, false, other_team.clone(), false),
        (Approver::Team, false, reader.clone(), false),
        (Approver::Team, false, admin.clone(), true),
        (Approver::Admin, false, bob(), false),
        (Approver::Admin, false, other_team, false),
        (Approver::Admin, false, reader, false),
        (Approver::Admin, false, admin, true),
    ];
    for (approver, self_approval, who, allowed) in cases {
        let policy = Policy {
            rules: Vec::new(),
            default: *approver,
            max_deletions_without_admin: 10,
            self_approval: *self_approval,
        };
        let s = Scenario::tenancy("payments")
            .by(alice())
            .then(request(namespace("staging", "small"), Action::Create))
            .then_as(
                worker(),
                ProvisioningCommand::Plan {
                    number: 1,
                    plan: plan_of(&[("a.yaml", Some("x"))]),
                    policy,
                },
            )
            .by(who.clone());
        let got = s.when(approve(1));
        assert_eq!(
            got.is_ok(),
            *allowed,
            "{approver:?} (self approval {self_approval}) by {}: {got:?}",
            who.name
        );
        if !allowed {
            assert!(matches!(got, Err(Rejection::PermissionDenied(_))));
        }
    }
}

#[test]
fn the_policy_picks_the_first_matching_rule_and_big_deletions_need_an_admin() {
    let policy = Policy {
        rules: vec![
            policy::Rule {
                kind: Some(ResourceKind::Postgres),
                environment: Some("production".into()),
                action: None,
                approval: Approver::Admin,
            },
            policy::Rule {
                kind: None,
                environment: Some("staging".into()),
                action: None,
                approval: Approver::Automatic,
            },
        ],
        default: Approver::Team,
        max_deletions_without_admin: 2,
        self_approval: false,
    };
    let who =
        |spec: &ResourceSpec, action, deletions| policy.approval(spec, action, deletions).approver;
    let pg_prod = database(ResourceKind::Postgres, "production", "api");
    let redis_prod = database(ResourceKind::Redis, "production", "api");
    let ns_staging = namespace("staging", "small");
    assert_eq!(who(&pg_prod, Action::Create, 0), Approver::Admin);
    assert_eq!(who(&redis_prod, Action::Create, 0), Approver::Team);
    assert_eq!(who(&ns_staging, Action::Create, 0), Approver::Automatic);
    assert_eq!(
        who(&ns_staging, Action::Decommission, 2),
        Approver::Automatic
    );
    assert_eq!(
        who(&ns_staging, Action::Decommission, 3),
        Approver::Admin,
        "more deletions than allowed need an admin, whatever the rules say"
    );
}

#[test]
fn an_automatic_plan_is_approved_as_it_is_recorded() {
    let policy = Policy {
        default: Approver::Automatic,
        ..Policy::default()
    };
    let s = Scenario::tenancy("payments")
        .by(alice())
        .then(request(namespace("staging", "small"), Action::Create))
        .then_as(
            worker(),
            ProvisioningCommand::Plan {
                number: 1,
                plan: plan_of(&[("a.yaml", Some("x"))]),
                policy,
            },
        );
    assert_eq!(s.state_of(1), RequestState::Approved);
    assert_eq!(
        s.state.requests[&1].approved_by.as_deref(),
        Some("worker:gitops")
    );
}

#[test]
fn who_may_request_and_what() {
    let s = Scenario::tenancy("payments").with_team_service("payments-api", "payments");
    let other = s.when_by(
        Principal::member("carol", n("search")),
        request(namespace("staging", "small"), Action::Create),
    );
    assert!(matches!(other, Err(Rejection::PermissionDenied(_))));
    let reader = Scenario::tenancy("payments")
        .by(Principal::reader("dave"))
        .when(request(namespace("staging", "small"), Action::Create));
    assert!(matches!(reader, Err(Rejection::PermissionDenied(_))));
    let s = s.by(alice());
    assert_eq!(
        invalid_fields(s.when(request(namespace("staging", "huge"), Action::Create))),
        ["size"]
    );
    let mut with_service = namespace("staging", "small");
    with_service.service = Some(n("payments-api"));
    assert_eq!(
        invalid_fields(s.when(request(with_service, Action::Create))),
        ["service"]
    );
    let wrong_team = ProvisioningCommand::Request {
        team: n("search"),
        spec: namespace("staging", "small"),
        action: Action::Create,
        rules: Box::default(),
    };
    assert_eq!(invalid_fields(s.when(wrong_team)), ["team"]);
    // A database needs the team's namespace first, and a service of the team.
    let pg = database(ResourceKind::Postgres, "staging", "payments-api");
    assert!(matches!(
        precondition(s.when(request(pg.clone(), Action::Create))),
        Precondition::BadReference { field, .. } if field == "environment"
    ));
    let s = s.then(request(namespace("staging", "small"), Action::Create));
    assert!(s.when(request(pg, Action::Create)).is_ok());
    let s = s.with_team_service("ledger", "accounting");
    let theirs = database(ResourceKind::Postgres, "staging", "ledger");
    assert!(matches!(
        precondition(s.when(request(theirs, Action::Create))),
        Precondition::BadReference { field, .. } if field == "service"
    ));
    let missing = database(ResourceKind::Postgres, "staging", "ghost");
    let mut s = s;
    s.refs.insert_service(n("ghost"), None);
    assert!(matches!(
        precondition(s.when(request(missing, Action::Create))),
        Precondition::BadReference { field, why, .. } if field == "service" && why.is_empty()
    ));
}

#[test]
fn a_resource_has_one_open_request_and_exists_once() {
    let s = Scenario::tenancy("payments")
        .by(alice())
        .then(request(namespace("staging", "small"), Action::Create));
    assert!(matches!(
        precondition(s.when(request(namespace("staging", "medium"), Action::Change))),
        Precondition::State { .. }
    ));
    let s = live_namespace("staging").by(alice());
    assert!(matches!(
        s.when(request(namespace("staging", "small"), Action::Create)),
        Err(Rejection::AlreadyExists(_))
    ));
    assert!(matches!(
        s.when(request(
            namespace("production", "small"),
            Action::Decommission
        )),
        Err(Rejection::NotFound(_))
    ));
    assert!(
        s.when(request(namespace("staging", "medium"), Action::Change))
            .is_ok()
    );
}

#[test]
fn quotas_count_pending_and_live_resources_and_free_what_is_abandoned() {
    let rules = Rules {
        quotas: Quotas {
            databases_per_environment: 1,
            cpu_millis: 10_000,
            memory_mib: 65_536,
        },
        ..Rules::default()
    };
    let s = Scenario::tenancy("payments")
        .with_team_service("payments-api", "payments")
        .with_team_service("ledger-api", "payments")
        .by(alice())
        .then(request_with(
            namespace("staging", "medium"),
            Action::Create,
            rules.clone(),
        ))
        .then(request_with(
            database(ResourceKind::Postgres, "staging", "payments-api"),
            Action::Create,
            rules.clone(),
        ));
    // The second database of staging is over the limit, while the first is only pending.
    let second = request_with(
        database(ResourceKind::Redis, "staging", "ledger-api"),
        Action::Create,
        rules.clone(),
    );
    assert!(matches!(
        precondition(s.when(second.clone())),
        Precondition::Quota { .. }
    ));
    // 8,000m of medium + 2,000m of small fits 10,000m; large does not.
    assert!(
        s.when(request_with(
            namespace("production", "small"),
            Action::Create,
            rules.clone()
        ))
        .is_ok()
    );
    assert!(matches!(
        precondition(s.when(request_with(
            namespace("production", "large"),
            Action::Create,
            rules.clone()
        ))),
        Precondition::Quota { .. }
    ));
    // Rejecting the pending database frees its place.
    let s = s.then_as(
        bob(),
        ProvisioningCommand::Reject {
            number: 2,
            reason: "use the shared one".into(),
        },
    );
    assert_eq!(
        s.state.resources["postgres-staging-payments-api"].status,
        ResourceStatus::Abandoned
    );
    assert!(s.when(second).is_ok());
}

#[test]
fn a_plan_of_a_creation_never_deletes_and_an_empty_one_is_refused() {
    let s = Scenario::tenancy("payments")
        .by(alice())
        .then(request(namespace("staging", "small"), Action::Create))
        .by(worker());
    assert_eq!(
        invalid_fields(s.when(plan(1, plan_of(&[("a.yaml", Some("x")), ("b.yaml", None)])))),
        ["plan.files[1]"]
    );
    assert!(matches!(
        precondition(s.when(plan(1, plan_of(&[])))),
        Precondition::State { .. }
    ));
    assert_eq!(
        invalid_fields(s.when(plan(
            1,
            plan_of(&[
                ("../etc/passwd", Some("x")),
                ("/abs", Some("x")),
                (".git/config", Some("x"))
            ])
        ))),
        [
            "plan.files[0].path",
            "plan.files[1].path",
            "plan.files[2].path"
        ]
    );
}

#[test]
fn a_decommission_only_deletes_and_frees_the_resource() {
    let s = live_namespace("staging")
        .by(alice())
        .then(request(namespace("staging", "small"), Action::Decommission))
        .by(worker());
    assert_eq!(
        invalid_fields(s.when(plan(2, plan_of(&[("a.yaml", Some("x"))])))),
        ["plan.files[0]"]
    );
    let s = s
        .then(plan(2, plan_of(&[("namespaces/x/ns.yaml", None)])))
        .then_as(bob(), approve(2))
        .then(ProvisioningCommand::StartApply { number: 2 })
        .then(ProvisioningCommand::RecordApplied {
            number: 2,
            commit: "e".repeat(40),
        });
    assert_eq!(
        s.state.resources["namespace-staging"].status,
        ResourceStatus::Decommissioned
    );
    assert!(
        s.by(alice())
            .when(request(namespace("staging", "small"), Action::Create))
            .is_ok()
    );
}

#[test]
fn a_failure_ends_the_request_and_the_requester_may_withdraw() {
    let s = Scenario::tenancy("payments")
        .by(alice())
        .then(request(namespace("staging", "small"), Action::Create));
    let withdrawn = Scenario {
        state: s.state.clone(),
        refs: s.refs.clone(),
        id: s.id.clone(),
        principal: alice(),
        now: s.now,
    }
    .then(ProvisioningCommand::Reject {
        number: 1,
        reason: "asked too early".into(),
    });
    assert_eq!(withdrawn.state_of(1), RequestState::Rejected);
    let s = s.then_as(
        worker(),
        ProvisioningCommand::Fail {
            number: 1,
            reason: "the render is empty".into(),
        },
    );
    assert_eq!(s.state_of(1), RequestState::Failed);
    assert!(matches!(
        s.when_by(bob(), approve(1)),
        Err(Rejection::Precondition(Precondition::State { .. }))
    ));
    assert!(
        s.by(worker())
            .when(ProvisioningCommand::Fail {
                number: 1,
                reason: "again".into()
            })
            .unwrap()
            .is_empty()
    );
}

#[test]
fn request_ids_are_team_slash_number() {
    assert_eq!(request_id("payments", 3), "payments/3");
    assert_eq!(parse_request_id("payments/3"), Some((n("payments"), 3)));
    for bad in [
        "payments",
        "payments/0",
        "payments/x",
        "Pay/1",
        "/1",
        "a/1/2",
    ] {
        assert_eq!(parse_request_id(bad), None, "{bad}");
    }
}

// ---- the renderer ----

/// The catalog's view of team payments: one service with a repository.
fn context() -> render::TeamContext {
    render::TeamContext {
        repositories: [(
            "payments-api".to_owned(),
            "https://github.com/acme/payments-api".to_owned(),
        )]
        .into(),
    }
}

#[test]
fn an_argo_cd_application_renders_into_the_teams_project_and_namespace() {
    let spec = ResourceSpec {
        kind: ResourceKind::ArgoApp,
        environment: n("production"),
        service: Some(n("payments-api")),
        size: String::new(),
    };
    let r = render::render("payments", &spec, &Rules::default(), &context()).unwrap();
    assert_eq!(r.dir, "argocd/production/payments/payments-api");
    assert_golden("argocd-app-production", &r);
    let app: render::argo::Application = serde_yaml_ng::from_str(&r.files[0].1).unwrap();
    assert_eq!(app.spec.project, "payments-production");
    assert_eq!(app.spec.destination.namespace, "payments-production");
    assert_eq!(
        app.spec.source.repo_url,
        "https://github.com/acme/payments-api"
    );
    assert_eq!(app.spec.source.path, "deploy/production");
    // A service without a repository has nothing to sync: no files, an error.
    assert!(matches!(
        render::render("payments", &spec, &Rules::default(), &Default::default()),
        Err(render::RenderError::NoRepository(_))
    ));
}

/// Compares the rendered files with `tests/golden/provisioning/<case>/`.
fn assert_golden(case: &str, rendered: &Rendered) {
    crate::scenario::assert_golden(&format!("provisioning/{case}"), &rendered.files);
}

#[test]
fn a_team_namespace_renders_to_its_golden_files_for_each_tier() {
    let rules = Rules::default();
    for tier in ["small", "large"] {
        let r =
            render::render("payments", &namespace("staging", tier), &rules, &context()).unwrap();
        assert_eq!(r.dir, "namespaces/payments-staging");
        assert_golden(&format!("namespace-{tier}"), &r);
        // The same inputs give the same bytes.
        assert_eq!(
            r,
            render::render("payments", &namespace("staging", tier), &rules, &context()).unwrap()
        );
    }
}

#[test]
fn databases_render_to_terraform_json_golden_files() {
    let rules = Rules::default();
    for kind in [ResourceKind::Postgres, ResourceKind::Redis] {
        let r = render::render(
            "payments",
            &database(kind, "production", "payments-api"),
            &rules,
            &context(),
        )
        .unwrap();
        assert_eq!(
            r.dir,
            format!("terraform/production/payments/{kind}-payments-api")
        );
        assert_golden(&format!("{kind}-production"), &r);
        for (path, text) in &r.files {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            let call = &v["module"][kind.as_str()];
            assert!(call["source"].is_string(), "{path}");
            let secret = &v["resource"]["kubernetes_secret_v1"]["connection"]["metadata"];
            assert_eq!(secret["namespace"], "payments-production");
            assert_eq!(
                v["output"]["connection_secret"]["value"]["namespace"],
                "payments-production"
            );
        }
    }
}

#[test]
fn every_manifest_reads_back_into_its_kubernetes_type() {
    use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use k8s_openapi::api::rbac::v1::RoleBinding;
    let r = render::render(
        "payments",
        &namespace("production", "medium"),
        &Rules::default(),
        &context(),
    )
    .unwrap();
    assert_eq!(r.files.len(), 10);
    let mut policies = Vec::new();
    for (path, text) in &r.files {
        let head: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).unwrap();
        let kind = head["kind"].as_str().unwrap_or_default().to_owned();
        let ok = match kind.as_str() {
            "Namespace" => serde_yaml_ng::from_str::<Namespace>(text).map(|_| ()),
            "RoleBinding" => serde_yaml_ng::from_str::<RoleBinding>(text).map(|_| ()),
            "ResourceQuota" => serde_yaml_ng::from_str::<ResourceQuota>(text).map(|_| ()),
            "LimitRange" => serde_yaml_ng::from_str::<LimitRange>(text).map(|_| ()),
            "NetworkPolicy" => serde_yaml_ng::from_str::<NetworkPolicy>(text).map(|p| {
                policies.push(p.metadata.name.unwrap_or_default());
            }),
            "AppProject" => serde_yaml_ng::from_str::<render::argo::AppProject>(text).map(|p| {
                assert_eq!(
                    p.spec.source_repos,
                    ["https://github.com/acme/payments-api"]
                );
                assert_eq!(p.spec.destinations[0].namespace, "payments-production");
                assert!(p.spec.cluster_resource_whitelist.is_empty());
            }),
            other => panic!("{path}: unexpected kind {other:?}"),
        };
        ok.unwrap_or_else(|e| panic!("{path} is not a valid {kind}: {e}"));
        assert_eq!(
            head["metadata"]["labels"]["paved.dev/team"], "payments",
            "{path}"
        );
    }
    policies.sort();
    assert_eq!(
        policies,
        [
            "allow-dns",
            "allow-from-ingress",
            "allow-same-namespace",
            "default-deny"
        ]
    );
}

#[test]
fn a_provisioned_resource_is_a_backstage_resource_the_catalog_accepts() {
    use crate::catalog::{Entity, EntityCommand};
    let spec = database(ResourceKind::Postgres, "production", "payments-api");
    let doc = render::resource_entity("payments", &spec, "payments/3", &"a".repeat(40));
    assert_eq!(doc["kind"], "Resource");
    assert_eq!(
        doc["metadata"]["name"],
        "payments-postgres-production-payments-api"
    );
    assert_eq!(doc["spec"]["owner"], "group:default/payments");
    assert_eq!(
        doc["spec"]["dependencyOf"][0],
        "component:default/payments-api"
    );
    // The entity store takes it as any descriptor.
    let r = crate::catalog::entity_ref(&doc).unwrap();
    let s = Scenario::<Option<Entity>>::new(r.id().as_str()).by(Principal::admin("worker:gitops"));
    let events = s.when(EntityCommand::Store { document: doc }).unwrap();
    assert_eq!(events.len(), 1);
    // A long name is cut to 63 characters, stably.
    let long = ResourceSpec {
        service: Some(n(&"s".repeat(60))),
        ..spec
    };
    let name = render::resource_entity_name(&"t".repeat(40), &long);
    assert_eq!(name.len(), 63);
    assert_eq!(name, render::resource_entity_name(&"t".repeat(40), &long));
}
