//! Given / when / then tests of the catalog rules. Assertions are on
//! rejection variants, never on message text.

use super::*;
use crate::aggregate::{Aggregate, AggregateKind};
use crate::principal::Principal;
use crate::rejection::{Precondition, Rejection};
use crate::scenario::{Scenario, invalid_fields, n, precondition};

impl<A: Aggregate> Scenario<A> {
    fn with_team(mut self, name: &str, retired: bool, parent: Option<&str>) -> Self {
        let team = team(name, parent, retired);
        self.refs.insert_team(n(name), Some(team));
        self
    }

    fn with_system(mut self, name: &str, owner: &str) -> Self {
        self.refs.insert_system(
            n(name),
            Some(System {
                name: n(name),
                owner: n(owner),
                display_name: String::new(),
                description: String::new(),
                retired: None,
            }),
        );
        self
    }

    fn with_service(mut self, name: &str, retired: bool) -> Self {
        let mut s: Option<Service> = None;
        s.evolve(&registered(name, "payments"));
        if retired {
            s.evolve(&ServiceEvent::Retired {
                reason: "gone".into(),
            });
        }
        self.refs.insert_service(n(name), s);
        self
    }

    fn missing(mut self, kind: AggregateKind, name: &str) -> Self {
        match kind {
            AggregateKind::Team => self.refs.insert_team(n(name), None),
            AggregateKind::System => self.refs.insert_system(n(name), None),
            AggregateKind::Service => self.refs.insert_service(n(name), None),
            _ => unreachable!("only catalog entities are referenced"),
        }
        self
    }
}

fn team(name: &str, parent: Option<&str>, retired: bool) -> Team {
    Team {
        name: n(name),
        profile: TeamProfile::default(),
        parent: parent.map(n),
        members: Default::default(),
        retired: retired.then(|| "reorg".to_string()),
    }
}

fn spec() -> ServiceSpec {
    ServiceSpec::new(ServiceType::Service, Lifecycle::Production)
}

fn registered(name: &str, owner: &str) -> ServiceEvent {
    ServiceEvent::Registered {
        name: n(name),
        owner: n(owner),
        spec: spec(),
    }
}

fn created(name: &str) -> TeamEvent {
    TeamEvent::Created {
        name: n(name),
        profile: TeamProfile::default(),
        parent: None,
    }
}

// ---- teams ----

#[test]
fn creating_a_team_records_it_with_its_members() {
    let events = Scenario::<Option<Team>>::new("payments")
        .when(TeamCommand::Create {
            profile: TeamProfile {
                display_name: "Payments".into(),
                email: "payments@example.com".into(),
                chat_channel: "#payments".into(),
            },
            parent: None,
            members: vec!["bob".into(), "alice".into(), "bob".into()],
        })
        .unwrap();
    assert_eq!(events.len(), 3);
    assert!(matches!(&events[0], TeamEvent::Created { name, .. } if name.as_str() == "payments"));
    assert_eq!(
        events[1..],
        [
            TeamEvent::MemberAdded {
                member: "alice".into()
            },
            TeamEvent::MemberAdded {
                member: "bob".into()
            }
        ]
    );
}

#[test]
fn creating_an_existing_team_is_refused() {
    let r = Scenario::<Option<Team>>::new("payments")
        .given([created("payments")])
        .when(TeamCommand::Create {
            profile: TeamProfile::default(),
            parent: None,
            members: vec![],
        });
    assert!(matches!(r, Err(Rejection::AlreadyExists(_))));
}

#[test]
fn team_profile_fields_are_validated_together() {
    let r = Scenario::<Option<Team>>::new("payments").when(TeamCommand::Create {
        profile: TeamProfile {
            display_name: "x".repeat(300),
            email: "not-an-email".into(),
            chat_channel: "ok".into(),
        },
        parent: None,
        members: vec!["has space".into()],
    });
    assert_eq!(
        invalid_fields(r),
        ["profile.display_name", "profile.email", "members[0]"]
    );
}

#[test]
fn only_admins_create_teams() {
    let r = Scenario::<Option<Team>>::new("payments")
        .by(Principal::member("bob", n("payments")))
        .when(TeamCommand::Create {
            profile: TeamProfile::default(),
            parent: None,
            members: vec![],
        });
    assert!(matches!(r, Err(Rejection::PermissionDenied(_))));
}

#[test]
fn members_change_their_own_team_only() {
    let s = Scenario::<Option<Team>>::new("payments").given([created("payments")]);
    let add = TeamCommand::AddMember {
        member: "carol".into(),
    };
    let s = s.by(Principal::member("bob", n("payments")));
    assert!(s.when(add.clone()).is_ok());
    let s = s.by(Principal::member("eve", n("search")));
    assert!(matches!(
        s.when(add.clone()),
        Err(Rejection::PermissionDenied(_))
    ));
    let s = s.by(Principal::reader("rita"));
    assert!(matches!(s.when(add), Err(Rejection::PermissionDenied(_))));
}

#[test]
fn adding_a_member_twice_is_refused_and_removing_a_stranger_is_not_found() {
    let s = Scenario::<Option<Team>>::new("payments").given([
        created("payments"),
        TeamEvent::MemberAdded {
            member: "bob".into(),
        },
    ]);
    assert!(matches!(
        s.when(TeamCommand::AddMember {
            member: "bob".into()
        }),
        Err(Rejection::AlreadyExists(_))
    ));
    assert!(matches!(
        s.when(TeamCommand::RemoveMember {
            member: "zed".into()
        }),
        Err(Rejection::NotFound(_))
    ));
    assert_eq!(
        s.when(TeamCommand::RemoveMember {
            member: "bob".into()
        })
        .unwrap(),
        [TeamEvent::MemberRemoved {
            member: "bob".into()
        }]
    );
}

#[test]
fn an_unchanged_profile_appends_nothing() {
    let s = Scenario::<Option<Team>>::new("payments").given([created("payments")]);
    assert_eq!(
        s.when(TeamCommand::UpdateProfile {
            profile: TeamProfile::default()
        })
        .unwrap(),
        []
    );
}

#[test]
fn a_parent_must_exist_be_live_and_not_close_a_cycle() {
    let s = Scenario::<Option<Team>>::new("payments")
        .given([created("payments")])
        .missing(AggregateKind::Team, "ghost")
        .with_team("old", true, None)
        .with_team("platform", false, Some("engineering"))
        .with_team("engineering", false, Some("payments"));
    let set = |p: &str| TeamCommand::SetParent { parent: Some(n(p)) };
    // A parent not in the catalog yet (admins set parents): taken, as
    // Backstage takes it, and shown as missing until it arrives.
    assert_eq!(
        s.when(set("ghost")).unwrap(),
        [TeamEvent::ParentChanged {
            parent: Some(n("ghost"))
        }]
    );
    assert!(matches!(
        precondition(s.when(set("old"))),
        Precondition::RetiredReference(_)
    ));
    assert!(matches!(
        precondition(s.when(set("platform"))),
        Precondition::ParentCycle { .. }
    ));
    assert_eq!(invalid_fields(s.when(set("payments"))), ["parent"]);
}

#[test]
fn parent_references_walk_up_the_loaded_chain() {
    let state: Option<Team> = None;
    let cmd = TeamCommand::SetParent {
        parent: Some(n("a")),
    };
    let mut refs = References::default();
    assert_eq!(state.references(&cmd, &refs), [AggregateRef::team(&n("a"))]);
    refs.insert_team(n("a"), Some(team("a", Some("b"), false)));
    assert_eq!(state.references(&cmd, &refs), [AggregateRef::team(&n("b"))]);
    refs.insert_team(n("b"), Some(team("b", None, false)));
    assert!(state.references(&cmd, &refs).is_empty());
}

#[test]
fn a_retired_team_refuses_every_change() {
    let s = Scenario::<Option<Team>>::new("payments").given([
        created("payments"),
        TeamEvent::Retired {
            reason: "merged".into(),
        },
    ]);
    for cmd in [
        TeamCommand::AddMember {
            member: "bob".into(),
        },
        TeamCommand::UpdateProfile {
            profile: TeamProfile::default(),
        },
        TeamCommand::Retire {
            reason: "again".into(),
        },
    ] {
        assert!(matches!(
            precondition(s.when(cmd)),
            Precondition::Retired(_)
        ));
    }
}

#[test]
fn retiring_needs_a_reason() {
    let s = Scenario::<Option<Team>>::new("payments").given([created("payments")]);
    assert_eq!(
        invalid_fields(s.when(TeamCommand::Retire { reason: " ".into() })),
        ["reason"]
    );
}

#[test]
fn changing_an_unknown_team_is_not_found() {
    let s = Scenario::<Option<Team>>::new("payments");
    assert!(matches!(
        s.when(TeamCommand::AddMember {
            member: "bob".into()
        }),
        Err(Rejection::NotFound(_))
    ));
}

// ---- systems ----

#[test]
fn a_system_needs_a_live_owner_the_principal_acts_for() {
    let create = || SystemCommand::Create {
        owner: n("payments"),
        display_name: "Payments".into(),
        description: String::new(),
    };
    let s = Scenario::<Option<System>>::new("billing").with_team("payments", false, None);
    assert!(s.when(create()).is_ok());
    let s = s.by(Principal::member("eve", n("search")));
    assert!(matches!(
        s.when(create()),
        Err(Rejection::PermissionDenied(_))
    ));
    let s = Scenario::<Option<System>>::new("billing").with_team("payments", true, None);
    assert!(matches!(
        precondition(s.when(create())),
        Precondition::RetiredReference(_)
    ));
}

// ---- services ----

fn register(owner: &str) -> ServiceCommand {
    ServiceCommand::Register {
        owner: n(owner),
        spec: spec(),
    }
}

#[test]
fn registering_needs_a_live_owner_team_or_an_admin_while_it_is_not_there_yet() {
    let s = Scenario::<Option<Service>>::new("payments-api")
        .with_team("payments", false, None)
        .with_team("old", true, None)
        .missing(AggregateKind::Team, "ghost");
    assert_eq!(
        s.when(register("payments")).unwrap(),
        [registered("payments-api", "payments")]
    );
    // An owner not in the catalog yet, as Backstage takes it: admins only.
    assert_eq!(
        s.when(register("ghost")).unwrap(),
        [registered("payments-api", "ghost")]
    );
    let member = s.by(Principal::member("gus", n("ghost")));
    assert!(matches!(
        precondition(member.when(register("ghost"))),
        Precondition::MissingReference(_)
    ));
    let s = Scenario::<Option<Service>>::new("payments-api")
        .with_team("payments", false, None)
        .with_team("old", true, None);
    assert!(matches!(
        precondition(s.when(register("old"))),
        Precondition::RetiredReference(_)
    ));
}

#[test]
fn registering_an_existing_or_retired_name_is_already_exists() {
    let s = Scenario::<Option<Service>>::new("payments-api")
        .with_team("payments", false, None)
        .given([
            registered("payments-api", "payments"),
            ServiceEvent::Retired {
                reason: "gone".into(),
            },
        ]);
    assert!(matches!(
        s.when(register("payments")),
        Err(Rejection::AlreadyExists(_))
    ));
}

#[test]
fn members_register_services_for_their_own_team_only() {
    let s = Scenario::<Option<Service>>::new("payments-api")
        .with_team("payments", false, None)
        .by(Principal::member("eve", n("search")));
    assert!(matches!(
        s.when(register("payments")),
        Err(Rejection::PermissionDenied(_))
    ));
}

#[test]
fn the_system_of_a_service_must_exist_unless_an_admin_names_it_ahead() {
    let mut sp = spec();
    sp.system = Some(n("billing"));
    let s = Scenario::<Option<Service>>::new("payments-api")
        .with_team("payments", false, None)
        .missing(AggregateKind::System, "billing");
    let member = Scenario::<Option<Service>>::new("payments-api")
        .with_team("payments", false, None)
        .missing(AggregateKind::System, "billing")
        .by(Principal::member("pat", n("payments")));
    assert!(matches!(
        precondition(member.when(ServiceCommand::Register {
            owner: n("payments"),
            spec: sp.clone()
        })),
        Precondition::MissingReference(_)
    ));
    assert!(
        s.when(ServiceCommand::Register {
            owner: n("payments"),
            spec: sp.clone()
        })
        .is_ok(),
        "an admin may name a system that is not there yet"
    );
    let s = s.with_system("billing", "payments");
    assert!(
        s.when(ServiceCommand::Register {
            owner: n("payments"),
            spec: sp
        })
        .is_ok()
    );
}

#[test]
fn spec_fields_are_validated() {
    let mut sp = spec();
    sp.docs_url = "docs".into();
    sp.tier = Some(9);
    sp.tags = vec!["Bad Tag".into()];
    sp.labels.insert("bad key!".into(), "v".into());
    let s = Scenario::<Option<Service>>::new("payments-api").with_team("payments", false, None);
    assert_eq!(
        invalid_fields(s.when(ServiceCommand::Register {
            owner: n("payments"),
            spec: sp
        })),
        [
            "spec.tier",
            "spec.docs_url",
            "spec.tags[0]",
            "spec.labels[bad key!]"
        ]
    );
}

fn live_service() -> Scenario<Option<Service>> {
    Scenario::<Option<Service>>::new("payments-api")
        .given([registered("payments-api", "payments")])
        .with_team("payments", false, None)
}

#[test]
fn an_update_records_only_the_fields_that_changed() {
    let mut sp = spec();
    sp.description = "Takes money".into();
    let events = live_service()
        .when(ServiceCommand::Update {
            spec: sp,
            fields: vec![SpecField::Description, SpecField::Lifecycle],
        })
        .unwrap();
    assert!(
        matches!(&events[..], [ServiceEvent::Updated { fields, .. }] if fields == &[SpecField::Description])
    );
}

#[test]
fn an_update_that_changes_nothing_appends_nothing() {
    assert_eq!(
        live_service()
            .when(ServiceCommand::Update {
                spec: spec(),
                fields: vec![SpecField::Tags]
            })
            .unwrap(),
        []
    );
}

#[test]
fn an_empty_update_mask_is_invalid() {
    assert_eq!(
        invalid_fields(live_service().when(ServiceCommand::Update {
            spec: spec(),
            fields: vec![]
        })),
        ["update_mask"]
    );
}

#[test]
fn dependency_rules() {
    let s = live_service()
        .with_service("ledger", false)
        .with_service("fax", true)
        .missing(AggregateKind::Service, "ghost");
    let add = |on: &str| ServiceCommand::AddDependency {
        on: n(on),
        criticality: Some(Criticality::High),
    };
    assert!(s.when(add("ledger")).is_ok());
    assert_eq!(invalid_fields(s.when(add("payments-api"))), ["depends_on"]);
    // A service not in the catalog yet: taken (shown as missing until it arrives).
    assert!(s.when(add("ghost")).is_ok());
    assert!(matches!(
        precondition(s.when(add("fax"))),
        Precondition::RetiredReference(_)
    ));
    let s = s.given([ServiceEvent::DependencyAdded {
        on: n("ledger"),
        criticality: None,
    }]);
    assert!(matches!(
        s.when(add("ledger")),
        Err(Rejection::AlreadyExists(_))
    ));
    assert!(matches!(
        s.when(ServiceCommand::RemoveDependency { on: n("fax") }),
        Err(Rejection::NotFound(_))
    ));
}

#[test]
fn slo_targets_must_be_sane() {
    let s = live_service();
    let slo = |objective, window_days| ServiceCommand::SetSlo {
        slo: Slo {
            name: n("availability"),
            objective,
            window_days,
        },
    };
    assert!(
        s.when(slo(
            Objective::Availability {
                target_percent: 99.9
            },
            28
        ))
        .is_ok()
    );
    for bad in [0.0, 100.0, -1.0, f64::NAN, 150.0] {
        assert_eq!(
            invalid_fields(s.when(slo(
                Objective::Availability {
                    target_percent: bad
                },
                28
            ))),
            ["slo.availability.target_percent"]
        );
    }
    assert_eq!(
        invalid_fields(s.when(slo(
            Objective::Latency {
                percentile: 99.0,
                threshold_ms: 0
            },
            0
        ))),
        ["slo.latency.threshold_ms", "slo.window_days"]
    );
}

#[test]
fn a_retired_service_refuses_every_change() {
    let s = live_service().given([ServiceEvent::Retired {
        reason: "gone".into(),
    }]);
    for cmd in [
        ServiceCommand::Deprecate { reason: "x".into() },
        ServiceCommand::Retire { reason: "x".into() },
        ServiceCommand::TransferOwnership { to: n("payments") },
        ServiceCommand::RemoveSlo { name: n("x") },
    ] {
        assert!(matches!(
            precondition(s.when(cmd)),
            Precondition::Retired(_)
        ));
    }
}

#[test]
fn members_change_only_services_their_team_owns() {
    let s = live_service().by(Principal::member("eve", n("search")));
    assert!(matches!(
        s.when(ServiceCommand::Deprecate {
            reason: "old".into()
        }),
        Err(Rejection::PermissionDenied(_))
    ));
    let s = s.by(Principal::member("bob", n("payments")));
    assert!(
        s.when(ServiceCommand::Deprecate {
            reason: "old".into()
        })
        .is_ok()
    );
}

#[test]
fn deprecation_sets_the_lifecycle_and_an_update_back_clears_it() {
    let mut state: Option<Service> = None;
    state.evolve(&registered("a", "payments"));
    state.evolve(&ServiceEvent::Deprecated {
        reason: "v2".into(),
    });
    let s = state.as_ref().unwrap();
    assert_eq!(s.spec.lifecycle, Lifecycle::Deprecated);
    assert_eq!(s.deprecation.as_deref(), Some("v2"));
    state.evolve(&ServiceEvent::Updated {
        spec: spec(),
        fields: vec![SpecField::Lifecycle],
    });
    assert_eq!(state.as_ref().unwrap().deprecation, None);
}

mod properties {
    //! Any sequence of commands the domain accepts keeps the invariants.
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Add(usize),
        Remove(usize),
        Slo(usize, f64),
        Deprecate,
        Retire,
        Transfer(usize),
    }

    const SERVICES: [&str; 4] = ["a", "b", "c", "d"];
    const TEAMS: [&str; 3] = ["payments", "search", "old"];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..SERVICES.len()).prop_map(Op::Add),
            (0..SERVICES.len()).prop_map(Op::Remove),
            (0..3usize, -10.0..110.0f64).prop_map(|(i, t)| Op::Slo(i, t)),
            Just(Op::Deprecate),
            Just(Op::Retire),
            (0..TEAMS.len()).prop_map(Op::Transfer),
        ]
    }

    proptest! {
        #[test]
        fn accepted_commands_keep_the_invariants(ops in proptest::collection::vec(op(), 0..40)) {
            let mut s = Scenario::<Option<Service>>::new("a")
                .given([registered("a", "payments")])
                .with_team("payments", false, None)
                .with_team("search", false, None)
                .with_team("old", true, None)
                .with_service("b", false)
                .with_service("c", false)
                .with_service("d", true);
            for op in ops {
                let cmd = match op {
                    Op::Add(i) => ServiceCommand::AddDependency { on: n(SERVICES[i]), criticality: None },
                    Op::Remove(i) => ServiceCommand::RemoveDependency { on: n(SERVICES[i]) },
                    Op::Slo(i, t) => ServiceCommand::SetSlo { slo: Slo {
                        name: n(["x", "y", "z"][i]),
                        objective: Objective::Availability { target_percent: t },
                        window_days: 28,
                    }},
                    Op::Deprecate => ServiceCommand::Deprecate { reason: "old".into() },
                    Op::Retire => ServiceCommand::Retire { reason: "gone".into() },
                    Op::Transfer(i) => ServiceCommand::TransferOwnership { to: n(TEAMS[i]) },
                };
                let before = s.state.clone();
                match s.when(cmd) {
                    Ok(events) => {
                        prop_assert!(before.as_ref().is_some_and(|b| b.retired.is_none()),
                            "a retired service accepted a command");
                        s = s.given(events);
                    }
                    Err(_) => prop_assert_eq!(&before, &s.state),
                }
                let svc = s.state.as_ref().unwrap();
                prop_assert!(!svc.dependencies.contains_key(&n("a")), "self-dependency");
                for dep in svc.dependencies.keys() {
                    prop_assert!(dep.as_str() != "d", "dependency on a retired service");
                }
                for slo in svc.slos.values() {
                    if let Objective::Availability { target_percent } = slo.objective {
                        prop_assert!(target_percent > 0.0 && target_percent < 100.0);
                    }
                }
                prop_assert!(svc.owner.as_str() != "old", "owned by a retired team");
                prop_assert!(svc.dependencies.len() <= service::MAX_DEPENDENCIES);
            }
        }
    }
}

#[test]
fn a_service_joins_a_system_only_by_someone_acting_for_the_systems_owner() {
    let mut in_ads = spec();
    in_ads.system = Some(n("ads"));
    let member = Principal::member("alice", n("payments"));
    // Registering into another team's system, or moving there by an update:
    // the same rule, the same refusal.
    let register = Scenario::<Option<Service>>::new("payments-api")
        .with_team("payments", false, None)
        .with_system("ads", "growth")
        .by(member.clone());
    assert!(matches!(
        register.when(ServiceCommand::Register {
            owner: n("payments"),
            spec: in_ads.clone(),
        }),
        Err(Rejection::PermissionDenied(_))
    ));
    let update = live_service()
        .with_system("ads", "growth")
        .by(member.clone());
    assert!(matches!(
        update.when(ServiceCommand::Update {
            spec: in_ads.clone(),
            fields: vec![SpecField::System],
        }),
        Err(Rejection::PermissionDenied(_))
    ));
    // Its own team's system is fine, and an admin may do either.
    let mut in_billing = spec();
    in_billing.system = Some(n("billing"));
    let own = live_service().with_system("billing", "payments").by(member);
    assert!(
        own.when(ServiceCommand::Update {
            spec: in_billing,
            fields: vec![SpecField::System],
        })
        .is_ok()
    );
    let admin = live_service().with_system("ads", "growth");
    assert!(
        admin
            .when(ServiceCommand::Update {
                spec: in_ads,
                fields: vec![SpecField::System],
            })
            .is_ok()
    );
}

#[test]
fn a_service_names_a_repository_only_while_it_holds_its_claim() {
    let mut sp = spec();
    sp.repository_url = "https://github.com/acme/payments-api".into();
    let identity = service_repository(&sp).unwrap();
    let register = || ServiceCommand::Register {
        owner: n("payments"),
        spec: sp.clone(),
    };
    let base =
        || Scenario::<Option<Service>>::new("payments-api").with_team("payments", false, None);
    let claimed_by = |s: &str| {
        Some(RepositoryClaim {
            identity: identity.clone(),
            paths: [(
                String::new(),
                vec![Holder {
                    service: n(s),
                    owner: Some(n("payments")),
                    claimed_at: chrono::Utc::now(),
                }],
            )]
            .into(),
            github_id: None,
        })
    };
    // No claim loaded: the write path takes it first.
    let mut s = base();
    s.refs.insert_repository(claim_id(&identity), None);
    assert!(matches!(
        precondition(s.when(register())),
        Precondition::MissingReference(_)
    ));
    let mut s = base();
    s.refs
        .insert_repository(claim_id(&identity), claimed_by("other"));
    assert!(matches!(
        s.when(register()),
        Err(Rejection::AlreadyExists(_))
    ));
    let mut s = base();
    s.refs
        .insert_repository(claim_id(&identity), claimed_by("payments-api"));
    assert!(s.when(register()).is_ok());
    // Holding the whole repository is not holding a directory of it.
    let mut in_dir = sp.clone();
    in_dir.repository_url = "https://github.com/acme/payments-api/tree/main/api".into();
    let mut s = base();
    s.refs
        .insert_repository(claim_id(&identity), claimed_by("payments-api"));
    assert!(matches!(
        s.when(ServiceCommand::Register {
            owner: n("payments"),
            spec: in_dir,
        }),
        Err(Rejection::AlreadyExists(_))
    ));
    // An update that leaves the repository as it was needs no claim.
    let mut described = sp.clone();
    described.description = "takes money".into();
    let s = Scenario::<Option<Service>>::new("payments-api").given([ServiceEvent::Registered {
        name: n("payments-api"),
        owner: n("payments"),
        spec: sp.clone(),
    }]);
    assert!(
        s.when(ServiceCommand::Update {
            spec: described,
            fields: vec![SpecField::Description],
        })
        .is_ok()
    );
}

#[test]
fn type_and_lifecycle_are_free_strings_with_the_well_known_ones_named() {
    assert_eq!(ServiceType::parse("website"), Some(ServiceType::Website));
    assert_eq!(
        ServiceType::parse("documentation"),
        Some(ServiceType::Other("documentation".into()))
    );
    assert_eq!(Lifecycle::parse("beta").unwrap().as_str(), "beta");
    assert_eq!(ServiceType::parse(""), None);
    let mut sp = spec();
    sp.kind = ServiceType::Other("grpc-service".into());
    sp.lifecycle = Lifecycle::Other("sunset".into());
    let register = |sp: ServiceSpec| ServiceCommand::Register {
        owner: n("payments"),
        spec: sp,
    };
    let s = Scenario::<Option<Service>>::new("payments-api").with_team("payments", false, None);
    assert!(s.when(register(sp.clone())).is_ok());
    sp.kind = ServiceType::Other("has\ttab".into());
    sp.lifecycle = Lifecycle::Other("x".repeat(64));
    assert_eq!(
        invalid_fields(s.when(register(sp))),
        ["spec.type", "spec.lifecycle"]
    );
}
