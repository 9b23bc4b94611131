//! The DORA figures, computed from delivery facts (pure: the caller loads
//! the facts; nothing here reads a clock).
//!
//! Rules (also in the README):
//! - Only deployments to `production` that finished count.
//! - **Deployment frequency**: successful production deployments that
//!   finished in the window, per day.
//! - **Lead time for changes**: per change, from its commit time to the
//!   finish of the successful production deployment that shipped it
//!   (median and p90 over changes shipped in the window). A deployment ships
//!   the commits it lists; one that lists none ships every change of its
//!   service merged (else committed) before it finished and not shipped yet.
//! - **Change failure rate**: production deployments in the window that
//!   failed, were rolled back (a later deployment names them in
//!   `rollback_of`) or caused an incident, over all production deployments
//!   that finished in the window. An incident caused a deployment when it is
//!   explicitly linked to it; an incident without links is attributed to the
//!   last successful production deployment of one of its services that
//!   finished before the incident started, within the attribution window
//!   (marked *heuristic*).
//! - **Time to restore**: incidents resolved in the window, from start to
//!   resolution (median and p90). An incident still open is not counted.
//! - **Rework rate** (DORA 2024): production deployments in the window that
//!   fix a previous failure: rollbacks, and deployments whose previous
//!   production deployment of the same service was a change failure.
//! - Levels: [`THRESHOLDS`], from the 2023 Accelerate State of DevOps report.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};

/// A finished production deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentFact {
    pub id: String,
    pub service: String,
    pub succeeded: bool,
    pub finished_at: DateTime<Utc>,
    pub rollback_of: Option<String>,
}

/// A change that reached production.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeFact {
    pub service: String,
    pub committed_at: DateTime<Utc>,
    pub deployed_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentFact {
    pub id: String,
    pub services: Vec<String>,
    pub started_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Explicitly linked deployments.
    pub caused_by: Vec<String>,
}

/// A half-open time window `[from, to)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Window {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.from <= t && t < self.to
    }

    pub fn days(&self) -> f64 {
        (self.to - self.from).num_seconds() as f64 / 86_400.0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Low,
    Medium,
    High,
    Elite,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Elite => "elite",
        }
    }
}

/// The performance levels' boundaries, from the 2023 Accelerate State of
/// DevOps report (DORA, Google Cloud), table "Software delivery
/// performance levels": elite / high / medium / low.
pub struct Thresholds {
    /// Deployments per day at least: on demand (several a day) / daily to
    /// weekly / weekly to monthly.
    pub frequency_per_day: [f64; 3],
    /// Lead time less than: one day / one week / one month.
    pub lead_time: [Duration; 3],
    /// Change failure rate at most: 5% / 10% / 15%.
    pub change_failure_rate: [f64; 3],
    /// Time to restore less than: one hour / one day / one week.
    pub time_to_restore: [Duration; 3],
}

pub const THRESHOLDS: Thresholds = Thresholds {
    frequency_per_day: [1.0, 1.0 / 7.0, 1.0 / 30.0],
    lead_time: [Duration::days(1), Duration::weeks(1), Duration::days(30)],
    change_failure_rate: [0.05, 0.10, 0.15],
    time_to_restore: [Duration::hours(1), Duration::days(1), Duration::weeks(1)],
};

fn level_at_least(value: f64, bounds: [f64; 3]) -> Level {
    match bounds.iter().position(|b| value >= *b) {
        Some(0) => Level::Elite,
        Some(1) => Level::High,
        Some(2) => Level::Medium,
        _ => Level::Low,
    }
}

fn level_below(value: Duration, bounds: [Duration; 3]) -> Level {
    match bounds.iter().position(|b| value < *b) {
        Some(0) => Level::Elite,
        Some(1) => Level::High,
        Some(2) => Level::Medium,
        _ => Level::Low,
    }
}

/// Median and p90 of some durations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spread {
    pub count: usize,
    pub median: Duration,
    pub p90: Duration,
}

/// Continuous percentile (p in 0..=1) of sorted values, as SQL's
/// `PERCENTILE_CONT` and the Four Keys dashboards compute it: linear
/// interpolation between the two nearest ranks (the median of an even count
/// is the mean of the two middle values).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let position = p.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (position.floor() as usize, position.ceil() as usize);
    let fraction = position - lo as f64;
    let (a, b) = (sorted[lo].num_milliseconds(), sorted[hi].num_milliseconds());
    Duration::milliseconds(a + ((b - a) as f64 * fraction).round() as i64)
}

fn spread(mut values: Vec<Duration>) -> Option<Spread> {
    if values.is_empty() {
        return None;
    }
    values.sort();
    Some(Spread {
        count: values.len(),
        median: percentile(&values, 0.5),
        p90: percentile(&values, 0.9),
    })
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dora {
    pub window: Window,
    /// Successful production deployments finished in the window.
    pub deployments: usize,
    /// All finished production deployments in the window (the CFR denominator).
    pub finished_deployments: usize,
    pub deployments_per_day: f64,
    pub lead_time: Option<Spread>,
    pub change_failures: usize,
    /// Of which attributed only by the heuristic.
    pub heuristic_failures: usize,
    pub change_failure_rate: Option<f64>,
    pub time_to_restore: Option<Spread>,
    pub open_incidents: usize,
    pub rework_deployments: usize,
    pub rework_rate: Option<f64>,
    pub frequency_level: Level,
    pub lead_time_level: Option<Level>,
    pub change_failure_level: Option<Level>,
    pub time_to_restore_level: Option<Level>,
}

/// Why a deployment counts as a change failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    Failed,
    RolledBack,
    Incident { heuristic: bool },
}

/// Deployments by finish time, then id: equal times give one order
/// whatever order the facts came in.
fn finish_order(a: &DeploymentFact, b: &DeploymentFact) -> std::cmp::Ordering {
    (a.finished_at, &a.id).cmp(&(b.finished_at, &b.id))
}

/// Which deployments are change failures: `deployments` must include the
/// ones before the window that incidents and rework look back at.
pub fn failures(
    deployments: &[DeploymentFact],
    incidents: &[IncidentFact],
    attribution: Duration,
) -> HashMap<String, Failure> {
    let mut out = HashMap::new();
    let rolled_back: HashSet<&str> = deployments
        .iter()
        .filter_map(|d| d.rollback_of.as_deref())
        .collect();
    for d in deployments {
        if !d.succeeded {
            out.insert(d.id.clone(), Failure::Failed);
        } else if rolled_back.contains(d.id.as_str()) {
            out.insert(d.id.clone(), Failure::RolledBack);
        }
    }
    // Successful deployments per service, by finish time.
    let mut by_service: HashMap<&str, Vec<&DeploymentFact>> = HashMap::new();
    for d in deployments.iter().filter(|d| d.succeeded) {
        by_service.entry(d.service.as_str()).or_default().push(d);
    }
    for list in by_service.values_mut() {
        list.sort_by(|a, b| finish_order(a, b));
    }
    // Explicit links first: a deployment an incident names is not a
    // heuristic failure because another incident, unlinked, came first.
    for i in incidents {
        for d in &i.caused_by {
            out.entry(d.clone())
                .or_insert(Failure::Incident { heuristic: false });
        }
    }
    for i in incidents.iter().filter(|i| i.caused_by.is_empty()) {
        // Heuristic: the latest successful deployment of an affected service
        // before the start, within the attribution window.
        let suspect = i
            .services
            .iter()
            .filter_map(|s| by_service.get(s.as_str()))
            .filter_map(|list| {
                list.iter()
                    .rev()
                    .find(|d| d.finished_at <= i.started_at)
                    .filter(|d| i.started_at - d.finished_at <= attribution)
            })
            .max_by(|a, b| finish_order(a, b));
        if let Some(d) = suspect {
            out.entry(d.id.clone())
                .or_insert(Failure::Incident { heuristic: true });
        }
    }
    out
}

/// The DORA figures for `window`.
pub fn compute(
    deployments: &[DeploymentFact],
    changes: &[ChangeFact],
    incidents: &[IncidentFact],
    window: Window,
    attribution: Duration,
) -> Dora {
    let failed = failures(deployments, incidents, attribution);
    compute_from(&failed, deployments, changes, incidents, window)
}

/// The figures for `window` and, with `with_daily`, its daily series,
/// deciding which deployments are change failures once for both.
pub fn compute_with_daily(
    deployments: &[DeploymentFact],
    changes: &[ChangeFact],
    incidents: &[IncidentFact],
    window: Window,
    attribution: Duration,
    with_daily: bool,
) -> (Dora, Vec<Day>) {
    let failed = failures(deployments, incidents, attribution);
    let days = if with_daily {
        daily_from(&failed, deployments, changes, incidents, window)
    } else {
        Vec::new()
    };
    (
        compute_from(&failed, deployments, changes, incidents, window),
        days,
    )
}

fn compute_from(
    failed: &HashMap<String, Failure>,
    deployments: &[DeploymentFact],
    changes: &[ChangeFact],
    incidents: &[IncidentFact],
    window: Window,
) -> Dora {
    let in_window: Vec<&DeploymentFact> = deployments
        .iter()
        .filter(|d| window.contains(d.finished_at))
        .collect();
    let successful = in_window.iter().filter(|d| d.succeeded).count();
    let change_failures: Vec<&Failure> =
        in_window.iter().filter_map(|d| failed.get(&d.id)).collect();
    let heuristic_failures = change_failures
        .iter()
        .filter(|f| matches!(f, Failure::Incident { heuristic: true }))
        .count();

    // Rework: rollbacks, and the deployment after a change failure.
    let mut sorted: Vec<&DeploymentFact> = deployments.iter().collect();
    sorted.sort_by(|a, b| finish_order(a, b));
    let mut previous: HashMap<&str, &DeploymentFact> = HashMap::new();
    let mut rework = 0;
    for d in sorted {
        let after_failure = previous
            .get(d.service.as_str())
            .is_some_and(|p| failed.contains_key(&p.id));
        if window.contains(d.finished_at) && (d.rollback_of.is_some() || after_failure) {
            rework += 1;
        }
        previous.insert(d.service.as_str(), d);
    }

    let lead_time = spread(
        changes
            .iter()
            .filter(|c| window.contains(c.deployed_at))
            .map(|c| (c.deployed_at - c.committed_at).max(Duration::zero()))
            .collect(),
    );
    let time_to_restore = spread(
        incidents
            .iter()
            .filter_map(|i| i.resolved_at.map(|r| (i.started_at, r)))
            .filter(|(_, r)| window.contains(*r))
            .map(|(s, r)| r - s)
            .collect(),
    );
    let open_incidents = incidents
        .iter()
        .filter(|i| i.started_at < window.to && i.resolved_at.is_none_or(|r| r >= window.to))
        .count();
    let finished = in_window.len();
    let rate = |n: usize| (finished > 0).then(|| n as f64 / finished as f64);
    let deployments_per_day = successful as f64 / window.days().max(1e-9);
    let change_failure_rate = rate(change_failures.len());
    Dora {
        window,
        deployments: successful,
        finished_deployments: finished,
        deployments_per_day,
        lead_time,
        change_failures: change_failures.len(),
        heuristic_failures,
        change_failure_rate,
        time_to_restore,
        open_incidents,
        rework_deployments: rework,
        rework_rate: rate(rework),
        frequency_level: level_at_least(deployments_per_day, THRESHOLDS.frequency_per_day),
        lead_time_level: lead_time.map(|s| level_below(s.median, THRESHOLDS.lead_time)),
        change_failure_level: change_failure_rate.map(|r| {
            match THRESHOLDS.change_failure_rate.iter().position(|b| r <= *b) {
                Some(0) => Level::Elite,
                Some(1) => Level::High,
                Some(2) => Level::Medium,
                _ => Level::Low,
            }
        }),
        time_to_restore_level: time_to_restore
            .map(|s| level_below(s.median, THRESHOLDS.time_to_restore)),
    }
}

/// One day of the daily series.
#[derive(Clone, Debug, PartialEq)]
pub struct Day {
    pub date: NaiveDate,
    pub deployments: usize,
    pub change_failures: usize,
    pub lead_time_median: Option<Duration>,
    pub restores: usize,
}

/// Per-day figures over `window` (UTC days), for charts.
fn daily_from(
    failed: &HashMap<String, Failure>,
    deployments: &[DeploymentFact],
    changes: &[ChangeFact],
    incidents: &[IncidentFact],
    window: Window,
) -> Vec<Day> {
    let mut days: BTreeMap<NaiveDate, (usize, usize, Vec<Duration>, usize)> = BTreeMap::new();
    let mut d = window.from.date_naive();
    while d < window.to.date_naive()
        || (d == window.to.date_naive() && window.to.time() != chrono::NaiveTime::MIN)
    {
        days.insert(d, Default::default());
        d = d.succ_opt().expect("a date before 9999");
    }
    for dep in deployments
        .iter()
        .filter(|x| window.contains(x.finished_at))
    {
        let e = days.entry(dep.finished_at.date_naive()).or_default();
        if dep.succeeded {
            e.0 += 1;
        }
        if failed.contains_key(&dep.id) {
            e.1 += 1;
        }
    }
    for c in changes.iter().filter(|c| window.contains(c.deployed_at)) {
        days.entry(c.deployed_at.date_naive())
            .or_default()
            .2
            .push((c.deployed_at - c.committed_at).max(Duration::zero()));
    }
    for i in incidents {
        if let Some(r) = i.resolved_at.filter(|r| window.contains(*r)) {
            days.entry(r.date_naive()).or_default().3 += 1;
        }
    }
    days.into_iter()
        .map(
            |(date, (deployments, change_failures, leads, restores))| Day {
                date,
                deployments,
                change_failures,
                lead_time_median: spread(leads).map(|s| s.median),
                restores,
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn dep(
        id: &str,
        service: &str,
        ok: bool,
        at: &str,
        rollback_of: Option<&str>,
    ) -> DeploymentFact {
        DeploymentFact {
            id: id.into(),
            service: service.into(),
            succeeded: ok,
            finished_at: t(at),
            rollback_of: rollback_of.map(Into::into),
        }
    }

    fn inc(id: &str, service: &str, start: &str, end: Option<&str>, link: &[&str]) -> IncidentFact {
        IncidentFact {
            id: id.into(),
            services: vec![service.into()],
            started_at: t(start),
            resolved_at: end.map(t),
            caused_by: link.iter().map(|s| (*s).into()).collect(),
        }
    }

    fn change(committed: &str, deployed: &str) -> ChangeFact {
        ChangeFact {
            service: "a".into(),
            committed_at: t(committed),
            deployed_at: t(deployed),
        }
    }

    fn window() -> Window {
        Window {
            from: t("2026-01-01T00:00:00Z"),
            to: t("2026-01-11T00:00:00Z"),
        }
    }

    /// Worked by hand in the comments: every rule at least once.
    #[test]
    fn a_fixed_history_gives_the_hand_computed_figures() {
        let deployments = [
            dep("d0", "a", true, "2025-12-31T12:00:00Z", None), // before the window
            dep("d1", "a", true, "2026-01-02T10:00:00Z", None),
            dep("d2", "a", false, "2026-01-03T10:00:00Z", None), // failed
            dep("d3", "a", true, "2026-01-03T12:00:00Z", None),  // rework: after d2
            dep("d4", "b", true, "2026-01-04T09:00:00Z", None),  // i1, heuristic
            dep("d5", "b", true, "2026-01-06T09:00:00Z", None), // rolled back by d6; rework after d4
            dep("d6", "b", true, "2026-01-06T10:00:00Z", Some("d5")), // rework: a rollback
            dep("d7", "a", true, "2026-01-08T10:00:00Z", None), // i2 links it
            dep("d8", "c", true, "2026-01-10T10:00:00Z", None),
        ];
        let incidents = [
            inc(
                "i1",
                "b",
                "2026-01-04T11:00:00Z",
                Some("2026-01-04T13:00:00Z"),
                &[],
            ),
            inc(
                "i2",
                "a",
                "2026-01-09T00:00:00Z",
                Some("2026-01-09T00:30:00Z"),
                &["d7"],
            ),
            // No deployment of c before it within a day: attributed to none.
            inc(
                "i5",
                "c",
                "2026-01-09T00:00:00Z",
                Some("2026-01-09T06:00:00Z"),
                &[],
            ),
            // Cut by the window's start: counted where it was resolved.
            inc(
                "i6",
                "c",
                "2025-12-31T20:00:00Z",
                Some("2026-01-01T02:00:00Z"),
                &[],
            ),
            // Still open; 10 h after d8 on the same service: attributed to d8.
            inc("i7", "c", "2026-01-10T20:00:00Z", None, &[]),
        ];
        let changes = [
            change("2026-01-01T10:00:00Z", "2026-01-02T10:00:00Z"), // 24 h
            change("2026-01-03T06:00:00Z", "2026-01-03T12:00:00Z"), // 6 h
            change("2026-01-06T08:00:00Z", "2026-01-06T09:00:00Z"), // 1 h
            change("2025-12-30T08:00:00Z", "2025-12-31T12:00:00Z"), // outside
        ];
        let d = compute(
            &deployments,
            &changes,
            &incidents,
            window(),
            Duration::hours(24),
        );
        assert_eq!(d.finished_deployments, 8);
        assert_eq!(d.deployments, 7);
        assert!((d.deployments_per_day - 0.7).abs() < 1e-9);
        assert_eq!(d.frequency_level, Level::High);
        // d2 failed, d4 and d8 heuristic, d5 rolled back, d7 linked: 5 of 8.
        assert_eq!((d.change_failures, d.heuristic_failures), (5, 2));
        assert_eq!(d.change_failure_rate, Some(0.625));
        assert_eq!(d.change_failure_level, Some(Level::Low));
        // d3, d5, d6.
        assert_eq!(d.rework_deployments, 3);
        assert_eq!(d.rework_rate, Some(0.375));
        // 1 h, 6 h, 24 h: median 6 h; p90 at rank 0.9 × 2 = 1.8, so
        // 6 h + 0.8 × (24 h − 6 h) = 20.4 h (continuous, as PERCENTILE_CONT).
        let lead = d.lead_time.unwrap();
        assert_eq!(
            (lead.count, lead.median, lead.p90),
            (3, Duration::hours(6), Duration::minutes(1224))
        );
        assert_eq!(d.lead_time_level, Some(Level::Elite));
        // 30 min, 2 h, 6 h, 6 h: the median of an even count is the mean of
        // the two middle values, (2 h + 6 h) / 2 = 4 h; p90 at 2.7 is 6 h.
        let ttr = d.time_to_restore.unwrap();
        assert_eq!(
            (ttr.count, ttr.median, ttr.p90),
            (4, Duration::hours(4), Duration::hours(6))
        );
        assert_eq!(d.time_to_restore_level, Some(Level::High));
        assert_eq!(d.open_incidents, 1);

        let (_, days) = compute_with_daily(
            &deployments,
            &changes,
            &incidents,
            window(),
            Duration::hours(24),
            true,
        );
        assert_eq!(days.len(), 10);
        let jan3 = &days[2];
        assert_eq!((jan3.deployments, jan3.change_failures), (1, 1));
        assert_eq!(jan3.lead_time_median, Some(Duration::hours(6)));
        assert_eq!(days.iter().map(|d| d.deployments).sum::<usize>(), 7);
        assert_eq!(days.iter().map(|d| d.restores).sum::<usize>(), 4);
    }

    #[test]
    fn explicit_links_win_over_the_heuristic_and_windows_bound_attribution() {
        let deployments = [
            dep("x1", "a", true, "2026-01-02T00:00:00Z", None),
            dep("x2", "a", true, "2026-01-05T00:00:00Z", None),
        ];
        // Linked to x1 explicitly although x2 is the latest before it.
        let linked = [inc("i", "a", "2026-01-05T01:00:00Z", None, &["x1"])];
        let f = failures(&deployments, &linked, Duration::hours(24));
        assert_eq!(f.len(), 1);
        assert_eq!(f["x1"], Failure::Incident { heuristic: false });
        // Unlinked, two days after x2: outside a 24 h window, inside 72 h.
        let late = [inc("j", "a", "2026-01-07T00:00:00Z", None, &[])];
        assert!(failures(&deployments, &late, Duration::hours(24)).is_empty());
        assert_eq!(
            failures(&deployments, &late, Duration::hours(72))["x2"],
            Failure::Incident { heuristic: true }
        );
    }

    #[test]
    fn the_figures_do_not_depend_on_the_order_the_facts_come_in() {
        // x2 and x3 finish at the same time; an unlinked incident comes
        // before the one that links x3, in one order and the other.
        let deployments = [
            dep("x1", "a", true, "2026-01-02T00:00:00Z", None),
            dep("x2", "a", true, "2026-01-05T00:00:00Z", None),
            dep("x3", "a", true, "2026-01-05T00:00:00Z", None),
            dep("x4", "a", true, "2026-01-06T00:00:00Z", None),
        ];
        let incidents = [
            inc("u", "a", "2026-01-05T01:00:00Z", None, &[]),
            inc("l", "a", "2026-01-05T02:00:00Z", None, &["x3"]),
        ];
        let attribution = Duration::hours(24);
        let expected = failures(&deployments, &incidents, attribution);
        // The heuristic picks the last of equal times by id: x3, which the
        // other incident links explicitly.
        assert_eq!(
            expected,
            HashMap::from([("x3".to_owned(), Failure::Incident { heuristic: false })])
        );
        let reference = compute(&deployments, &[], &incidents, window(), attribution);
        assert_eq!(reference.rework_deployments, 1, "x4 after x3");
        let mut shuffled_deployments = deployments.to_vec();
        let mut shuffled_incidents = incidents.to_vec();
        for round in 0..8 {
            shuffled_deployments.rotate_left(1);
            if round % 2 == 1 {
                shuffled_incidents.reverse();
            }
            assert_eq!(
                failures(&shuffled_deployments, &shuffled_incidents, attribution),
                expected,
                "round {round}"
            );
            assert_eq!(
                compute(
                    &shuffled_deployments,
                    &[],
                    &shuffled_incidents,
                    window(),
                    attribution
                ),
                reference,
                "round {round}"
            );
        }
    }

    #[test]
    fn no_deployments_gives_no_rates_and_the_lowest_frequency() {
        let d = compute(&[], &[], &[], window(), Duration::hours(24));
        assert_eq!(d.deployments, 0);
        assert_eq!(d.change_failure_rate, None);
        assert_eq!(d.rework_rate, None);
        assert_eq!(d.lead_time, None);
        assert_eq!(d.time_to_restore, None);
        assert_eq!(d.frequency_level, Level::Low);
        assert_eq!(d.lead_time_level, None);
    }

    #[test]
    fn levels_follow_the_thresholds_at_their_edges() {
        assert_eq!(
            level_at_least(1.0, THRESHOLDS.frequency_per_day),
            Level::Elite
        );
        assert_eq!(
            level_at_least(0.99, THRESHOLDS.frequency_per_day),
            Level::High
        );
        assert_eq!(
            level_at_least(1.0 / 30.0, THRESHOLDS.frequency_per_day),
            Level::Medium
        );
        assert_eq!(
            level_at_least(0.01, THRESHOLDS.frequency_per_day),
            Level::Low
        );
        assert_eq!(
            level_below(Duration::minutes(59), THRESHOLDS.time_to_restore),
            Level::Elite
        );
        assert_eq!(
            level_below(Duration::hours(1), THRESHOLDS.time_to_restore),
            Level::High
        );
        assert_eq!(
            level_below(Duration::days(40), THRESHOLDS.lead_time),
            Level::Low
        );
    }

    #[test]
    fn percentiles_are_continuous() {
        let h = Duration::hours;
        let even = [h(1), h(2), h(3), h(4)];
        assert_eq!(
            percentile(&even, 0.5),
            Duration::minutes(150),
            "(2 h + 3 h) / 2"
        );
        assert_eq!(percentile(&[h(7)], 0.5), h(7));
        assert_eq!(percentile(&[h(1), h(3), h(9)], 0.5), h(3));
        // p90 of 1..=10 h: rank 8.1, 9 h + 0.1 h.
        let ten: Vec<_> = (1..=10).map(h).collect();
        assert_eq!(percentile(&ten, 0.9), Duration::minutes(546));
    }
}
