//! Names shared by the projections (writers) and the API (readers) in
//! PostgreSQL. The tables themselves are defined by `migrations/`.

/// The catalog projection: teams, systems, services, dependencies, SLOs.
pub const CATALOG: &str = "catalog";

/// The surveys projection: surveys, anonymous responses, micro-survey offers.
pub const SURVEYS: &str = "surveys";

/// The audit projection: one `audit_index` row per event of the log.
pub const AUDIT: &str = "audit";

/// The delivery projection: deployments, changes, incidents.
pub const DELIVERY: &str = "delivery";

/// The provisioning projection: requests and resources of each team's tenancy.
pub const PROVISIONING: &str = "provisioning";

/// The templates projection: template versions, tasks and their steps.
pub const TEMPLATES: &str = "templates";

/// The plugins projection: marketplace versions and installations.
pub const PLUGINS: &str = "plugins";

/// Most partitions a read model can be split into.
pub const MAX_PARTITIONS: u32 = 16;

/// One share of a partitioned read model: the rows of the keys (for
/// delivery, the service) that hash to `index` of `count`. Each share has a
/// worker, a lease and a checkpoint of its own; every share reads the whole
/// context and applies only what it owns, so the shares write disjoint rows
/// and, together, exactly what one unpartitioned worker writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Partition {
    pub index: u32,
    pub count: u32,
}

impl Partition {
    /// The whole read model, unpartitioned.
    pub const WHOLE: Self = Self { index: 0, count: 1 };

    /// Every share of a read model split `count` ways (`count` >= 1).
    pub fn all(count: u32) -> Vec<Self> {
        (0..count.max(1))
            .map(|index| Self {
                index,
                count: count.max(1),
            })
            .collect()
    }

    /// The share's row in [`CHECKPOINTS_TABLE`]: the projection's own name
    /// when whole, `<projection>-<index>of<count>` otherwise.
    pub fn checkpoint_name(&self, projection: &str) -> String {
        if self.count <= 1 {
            projection.to_owned()
        } else {
            format!("{projection}-{}of{}", self.index, self.count)
        }
    }

    /// Does this share own `key`? The first eight bytes of its SHA-256,
    /// modulo `count`: stable across versions, machines and restarts.
    pub fn owns(&self, key: &str) -> bool {
        if self.count <= 1 {
            return true;
        }
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(key.as_bytes());
        let head = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        head % u64::from(self.count) == u64::from(self.index)
    }
}

/// The table holding each projection's checkpoint: `projection`,
/// `last_sequence` (the last stream sequence applied), `epoch` (the fencing
/// epoch of the active worker), `filter_subject` (what it reads), `consumer`
/// (the current session's JetStream consumer) and `updated_at`.
pub const CHECKPOINTS_TABLE: &str = "projection_checkpoints";

/// `NOTIFY` channel a projection signals after each committed batch; the
/// payload is `<projection>:<last_sequence>`.
pub const CHECKPOINT_CHANNEL: &str = "paved_checkpoint";

/// The JSON shape of one element of `catalog_services.slos`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SloDoc {
    pub name: String,
    pub window_days: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<AvailabilityDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyDoc>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AvailabilityDoc {
    pub target_percent: f64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencyDoc {
    pub percentile: f64,
    pub threshold_ms: u32,
}

/// The JSON shape of one element of `catalog_services.links`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinkDoc {
    pub url: String,
    #[serde(default)]
    pub title: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_belongs_to_exactly_one_share_and_whole_owns_all() {
        for count in 1..=MAX_PARTITIONS {
            let shares = Partition::all(count);
            for key in (0..500).map(|i| format!("service-{i}")) {
                let owners = shares.iter().filter(|p| p.owns(&key)).count();
                assert_eq!(owners, 1, "{key} split {count} ways");
            }
        }
        assert!(Partition::WHOLE.owns("anything"));
    }

    #[test]
    fn shares_spread_keys_and_stay_where_they_were() {
        let shares = Partition::all(4);
        let per_share: Vec<usize> = shares
            .iter()
            .map(|p| (0..4000).filter(|i| p.owns(&format!("svc-{i}"))).count())
            .collect();
        assert!(
            per_share.iter().all(|n| (800..1200).contains(n)),
            "{per_share:?}"
        );
        // Which share holds which rows is stored state: the hash (the first
        // 8 bytes of SHA-256, big-endian, modulo the count) must never change.
        let owner = |key: &str| shares.iter().position(|p| p.owns(key)).unwrap();
        assert_eq!(
            ["ledger", "payments-api", "search", "checkout"].map(owner),
            [3, 0, 3, 1]
        );
    }

    #[test]
    fn checkpoint_rows_are_named_by_share() {
        assert_eq!(Partition::WHOLE.checkpoint_name(DELIVERY), "delivery");
        let names: Vec<String> = Partition::all(2)
            .iter()
            .map(|p| p.checkpoint_name(DELIVERY))
            .collect();
        assert_eq!(names, ["delivery-0of2", "delivery-1of2"]);
    }
}
