//! What a provisioning plan needs before it is applied (the approval
//! policy), how much a team may hold (quotas), and the sizes of each tier:
//! the domain's half of `PAVED_PROVISIONING_CONFIG`.
//!
//! ```yaml
//! policy:
//!   rules:                       # the first rule that matches decides
//!     - { kind: postgres, environment: production, approval: admin }
//!     - { environment: staging, approval: automatic }
//!   default: team                # no rule matched: another member of the team
//!   max_deletions_without_admin: 5
//!   self_approval: false
//! quotas:
//!   databases_per_environment: 3 # postgres and redis together
//!   cpu_millis: 16000            # the requests.cpu of all its namespaces
//!   memory_mib: 32768
//! tiers:
//!   small: { cpu_millis: 2000, memory_mib: 4096, pods: 20 }
//! sizes:
//!   small: { postgres_instance_class: db.t4g.small, storage_gib: 20, redis_node_type: cache.t4g.small }
//! render: { ... }                # see render::RenderSettings
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::render::{DatabaseSize, RenderSettings, default_sizes};
use super::{Action, ResourceKind, ResourceSpec};

/// Who must approve a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approver {
    /// Nobody: the plan is approved as it is made.
    Automatic,
    /// A member of the owning team (or an admin).
    Team,
    /// An admin.
    Admin,
}

impl Approver {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Automatic => "automatic",
            Self::Team => "team",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Automatic, Self::Team, Self::Admin]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// The approval a plan needs: who, and whether the requester may be that person.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Approval {
    pub approver: Approver,
    pub self_approval: bool,
}

/// One rule: every field given must match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub kind: Option<ResourceKind>,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub action: Option<Action>,
    pub approval: Approver,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    pub rules: Vec<Rule>,
    /// What a plan needs when no rule matches.
    pub default: Approver,
    /// A plan deleting more files than this needs an admin, whatever the rules say.
    pub max_deletions_without_admin: u32,
    /// May the requester approve their own request?
    pub self_approval: bool,
}

impl Default for Policy {
    /// Production needs an admin; everything else another member of the team.
    fn default() -> Self {
        Self {
            rules: vec![Rule {
                kind: None,
                environment: Some("production".into()),
                action: None,
                approval: Approver::Admin,
            }],
            default: Approver::Team,
            max_deletions_without_admin: 10,
            self_approval: false,
        }
    }
}

impl Policy {
    /// The approval a plan of `spec` that deletes `deletions` files needs.
    pub fn approval(&self, spec: &ResourceSpec, action: Action, deletions: usize) -> Approval {
        let matched = self
            .rules
            .iter()
            .find(|r| {
                r.kind.is_none_or(|k| k == spec.kind)
                    && r.environment
                        .as_deref()
                        .is_none_or(|e| e == spec.environment.as_str())
                    && r.action.is_none_or(|a| a == action)
            })
            .map_or(self.default, |r| r.approval);
        let approver = if deletions > self.max_deletions_without_admin as usize {
            Approver::Admin
        } else {
            matched
        };
        Approval {
            approver,
            self_approval: self.self_approval,
        }
    }
}

/// How much one team may hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quotas {
    /// Databases (PostgreSQL and Redis together) per environment.
    pub databases_per_environment: u32,
    /// The sum of `requests.cpu` over the team's namespaces, in millicores.
    pub cpu_millis: u64,
    /// The sum of `requests.memory` over the team's namespaces, in MiB.
    pub memory_mib: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            databases_per_environment: 5,
            cpu_millis: 32_000,
            memory_mib: 65_536,
        }
    }
}

/// The resources of one namespace tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub cpu_millis: u64,
    pub memory_mib: u64,
    pub pods: u32,
}

/// The tiers a namespace may have, by name.
pub fn default_tiers() -> BTreeMap<String, Tier> {
    BTreeMap::from([
        (
            "small".to_owned(),
            Tier {
                cpu_millis: 2_000,
                memory_mib: 4_096,
                pods: 20,
            },
        ),
        (
            "medium".to_owned(),
            Tier {
                cpu_millis: 8_000,
                memory_mib: 16_384,
                pods: 50,
            },
        ),
        (
            "large".to_owned(),
            Tier {
                cpu_millis: 16_000,
                memory_mib: 32_768,
                pods: 100,
            },
        ),
    ])
}

/// The rules requests are decided and rendered by: the domain's half of
/// `PAVED_PROVISIONING_CONFIG` (the policy, the quotas, the namespace tiers,
/// the database sizes and how files are rendered).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    pub policy: Policy,
    pub quotas: Quotas,
    /// Namespace tiers, by name.
    pub tiers: BTreeMap<String, Tier>,
    /// Database sizes, by name.
    pub sizes: BTreeMap<String, DatabaseSize>,
    pub render: RenderSettings,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            quotas: Quotas::default(),
            tiers: default_tiers(),
            sizes: default_sizes(),
            render: RenderSettings::default(),
        }
    }
}

impl ResourceKind {
    /// Is it a database (counted by `databases_per_environment`)?
    pub fn is_database(self) -> bool {
        matches!(self, Self::Postgres | Self::Redis)
    }
}
