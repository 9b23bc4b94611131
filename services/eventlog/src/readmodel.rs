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

/// Every projection, in the order `paved replay --all` rebuilds them.
pub const PROJECTIONS: &[&str] = &[CATALOG, SURVEYS, AUDIT, DELIVERY];

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
