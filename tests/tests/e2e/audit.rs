//! Tamper evidence: hash chains and signed checkpoints catch every
//! alteration of the log before its last checkpoint.

use std::time::Duration;

use paved::Roles;
use paved_eventlog::audit::{self, SigningKey, Tamper, TrustedKeys, Verifier};
use paved_eventlog::{EventLog, LogConfig};
use paved_sdk::pb;
use paved_workers::checkpoint::{self, Checkpointer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::helpers::{TestApp, eventually, fixtures, spawn_configured, spawn_with};

/// Commands on a few aggregates, several commits each.
async fn history(app: &TestApp, round: usize) {
    let c = &app.client;
    if round == 0 {
        c.create_team(fixtures::team("payments")).await.unwrap();
    }
    for i in 0..4 {
        let name = format!("svc-{round}-{i}");
        c.register_service(fixtures::service(&name, "payments"))
            .await
            .unwrap();
        c.update_service(pb::UpdateServiceRequest {
            name: name.clone(),
            spec: Some(pb::ServiceSpec {
                description: format!("round {round}"),
                ..Default::default()
            }),
            update_mask: Some(paved_proto::wkt::FieldMask {
                paths: vec!["description".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    }
}

async fn trusted(app: &TestApp) -> (SigningKey, TrustedKeys) {
    let key = checkpoint::signing_key(&app.pool, None).await.unwrap();
    let mut keys = TrustedKeys::default();
    keys.add(key.verifying_key());
    (key, keys)
}

/// Every message of the stream, in order: (subject, payload).
async fn messages(log: &EventLog) -> Vec<(String, Vec<u8>)> {
    let last = log.last_sequence().await.unwrap();
    let mut out = Vec::new();
    for seq in 1..=last {
        let m = log.get(seq).await.unwrap().expect("no gaps");
        out.push((m.subject, m.payload.to_vec()));
    }
    out
}

/// Verifies messages as if copied into a fresh stream (sequences 1..).
/// Verifies `msgs` as stored at sequences 1.. three ways: holding every
/// leaf until its checkpoint (the reference), with the checkpoints' ranges
/// read first (as `verify_log` does), and lean; the second must say what
/// the reference says, and the lean one must find something exactly when
/// the reference does (`verify_log` then verifies again in full).
fn verify_copy(prefix: &str, keys: &TrustedKeys, msgs: &[(String, Vec<u8>)]) -> audit::Report {
    let run = |v: Verifier| {
        let mut v = v;
        for (i, (subject, payload)) in msgs.iter().enumerate() {
            v.observe(i as u64 + 1, subject, payload);
        }
        v.finish()
    };
    let reference = run(Verifier::new(prefix, keys.clone(), 1));
    let checkpoints = audit::checkpoint_subject(prefix);
    let ranges: Option<Vec<(u64, u64)>> = msgs
        .iter()
        .filter(|(subject, _)| *subject == checkpoints)
        .map(|(_, payload)| {
            audit::decode_checkpoint(payload)
                .ok()
                .map(|cp| (cp.from_sequence, cp.to_sequence))
        })
        .collect();
    // As verify_log plans: not at all when a checkpoint does not decode.
    let plan = |v: Verifier| match &ranges {
        Some(r) => v.with_ranges(r.clone()),
        None => v,
    };
    let planned = run(plan(Verifier::new(prefix, keys.clone(), 1)));
    assert_eq!(
        format!("{planned:?}"),
        format!("{reference:?}"),
        "{ranges:?}"
    );
    let lean = run(plan(Verifier::new(prefix, keys.clone(), 1)).lean());
    assert_eq!(lean.problems == 0, reference.problems == 0);
    if reference.problems == 0 {
        assert_eq!(format!("{lean:?}"), format!("{reference:?}"));
    }
    reference
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_catches_every_alteration_before_the_last_checkpoint() {
    let app = spawn_with(Roles::ALL).await;
    let (key, keys) = trusted(&app).await;
    let checkpointer = Checkpointer::new(app.log.clone(), key, Duration::from_secs(3600));
    for round in 0..3 {
        history(&app, round).await;
        let to = checkpointer.once().await.unwrap().expect("a checkpoint");
        assert!(checkpointer.once().await.unwrap().is_none(), "nothing new");
        assert_eq!(to, app.last_sequence().await - 1);
    }

    // The untouched log verifies, straight from the stream.
    let report = audit::verify_log(&app.log, keys.clone(), 1, |_, _| {})
        .await
        .unwrap();
    let last = app.last_sequence().await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(
        (report.messages, report.checkpoints, report.covered_to),
        (last, 3, last - 1)
    );
    // Readers of commits never see the checkpoints.
    let mut read = app.client.read_events(Default::default()).await.unwrap();
    let mut records = 0;
    while let Some(r) = read.message().await.unwrap() {
        assert!(!r.event_type.is_empty());
        records += 1;
    }
    assert_eq!(records, 1 + 3 * 8);

    let prefix = app.settings.subject_prefix.clone();
    let original = messages(&app.log).await;
    let n = original.len();
    // Alterations anywhere before the last checkpoint (the last message).
    let protected = n - 1;
    let mut rng = StdRng::seed_from_u64(6962);
    let mut kinds = std::collections::BTreeMap::new();
    for trial in 0..400 {
        let mut msgs = original.clone();
        let (what, allowed): (&str, &[Tamper]) = match trial % 4 {
            0 => {
                let i = rng.random_range(0..n);
                let b = rng.random_range(0..msgs[i].1.len());
                msgs[i].1[b] ^= 1 << rng.random_range(0..8);
                ("modified", &[Tamper::Modified])
            }
            1 => {
                msgs.remove(rng.random_range(0..protected));
                ("missing", &[Tamper::Missing, Tamper::RangeAltered])
            }
            2 => {
                let copy = msgs[rng.random_range(0..n)].clone();
                msgs.insert(rng.random_range(0..protected), copy);
                (
                    "inserted",
                    &[Tamper::Inserted, Tamper::RangeAltered, Tamper::Reordered],
                )
            }
            _ => {
                let i = rng.random_range(0..protected - 1);
                let j = rng.random_range(i + 1..n);
                msgs.swap(i, j);
                (
                    "reordered",
                    &[
                        Tamper::Reordered,
                        Tamper::Missing,
                        Tamper::Inserted,
                        Tamper::RangeAltered,
                    ],
                )
            }
        };
        let report = verify_copy(&prefix, &keys, &msgs);
        let finding = report
            .finding
            .unwrap_or_else(|| panic!("trial {trial}: {what} message not detected"));
        assert!(
            allowed.contains(&finding.tamper),
            "trial {trial}: {what} reported as {finding:?}"
        );
        *kinds.entry((what, finding.tamper.to_string())).or_insert(0) += 1;
    }
    eprintln!("detections: {kinds:?}");

    // The same holds through a real copied stream: a commit changed in place.
    let copy = LogConfig {
        stream: format!("{}_COPY", app.settings.stream),
        subject_prefix: format!("{prefix}c"),
        ..LogConfig::default()
    };
    let nats = async_nats::connect(crate::helpers::nats_url())
        .await
        .unwrap();
    let copied = EventLog::open(nats, copy.clone()).await.unwrap();
    let victim = 5;
    for (i, (subject, payload)) in original.iter().enumerate() {
        let subject = subject.replacen(&prefix, &copy.subject_prefix, 1);
        let mut payload = payload.clone();
        if i == victim {
            let at = payload.len() / 2;
            payload[at] ^= 0x20;
        }
        copied
            .jetstream()
            .publish(subject, payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let report = audit::verify_log(&copied, keys.clone(), 1, |_, _| {})
        .await
        .unwrap();
    copied.jetstream().delete_stream(&copy.stream).await.ok();
    let finding = report.finding.expect("the change is caught");
    assert_eq!(
        (finding.sequence, finding.tamper),
        (victim as u64 + 1, Tamper::Modified)
    );

    // A commit removed from a live stream leaves a gap in the sequences.
    let mut v = Verifier::new(&prefix, keys.clone(), 1);
    for (i, (subject, payload)) in original.iter().enumerate() {
        if i != 7 {
            v.observe(i as u64 + 1, subject, payload);
        }
    }
    let finding = v.finish().finding.expect("the gap is caught");
    assert_eq!((finding.sequence, finding.tamper), (8, Tamper::Missing));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_checkpoint_and_rotated_keys_keep_verifying() {
    let app = spawn_configured(Roles::ALL, |s| s.audit_checkpoint_ms = 100).await;
    let (_, old_keys) = trusted(&app).await;
    history(&app, 0).await;
    let last_commit = app.last_sequence().await;
    eventually(
        Duration::from_secs(10),
        "a checkpoint covers the log",
        || {
            let (log, keys) = (app.log.clone(), old_keys.clone());
            async move {
                let r = audit::verify_log(&log, keys, 1, |_, _| {}).await.unwrap();
                assert!(r.ok(), "{r:?}");
                (r.covered_to >= last_commit).then_some(())
            }
        },
    )
    .await;

    // Rotation: a new key signs from now on; the old one stays trusted.
    let new_key = SigningKey::from_seed([7; 32]);
    history(&app, 1).await;
    let rotated = Checkpointer::new(app.log.clone(), new_key.clone(), Duration::from_secs(3600));
    // (The app's own checkpointer may get there first with the old key.)
    let _ = rotated.once().await;
    let covered = app.last_sequence().await;
    let mut both = old_keys.clone();
    both.add(new_key.verifying_key());
    eventually(
        Duration::from_secs(10),
        "the new checkpoint verifies",
        || {
            let (log, keys) = (app.log.clone(), both.clone());
            async move {
                let r = audit::verify_log(&log, keys, 1, |_, _| {}).await.unwrap();
                assert!(r.ok(), "{r:?}");
                (r.covered_to >= covered - 1).then_some(())
            }
        },
    )
    .await;
    // Without the old key its checkpoints do not verify.
    let mut only_new = TrustedKeys::default();
    only_new.add(new_key.verifying_key());
    let r = audit::verify_log(&app.log, only_new, 1, |_, _| {})
        .await
        .unwrap();
    let finding = r.finding.expect("the old key is no longer trusted");
    assert_eq!(finding.tamper, Tamper::Modified);
    assert!(finding.detail.contains("not trusted"), "{}", finding.detail);
}

/// ReadEvents through the raw tonic client, with the read-source header.
async fn read_raw(app: &TestApp, filter: pb::EventFilter) -> (String, Vec<pb::EventRecord>) {
    let mut client = pb::event_log_service_client::EventLogServiceClient::connect(app.url.clone())
        .await
        .unwrap();
    let mut request = tonic::Request::new(pb::ReadEventsRequest {
        filter: Some(filter),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", app.admin_token).parse().unwrap(),
    );
    let response = client.read_events(request).await.unwrap();
    let source = response
        .metadata()
        .get(paved_api::events::READ_SOURCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut stream = response.into_inner();
    let mut out = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        out.push(r.record.unwrap());
    }
    (source, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_reads_use_the_audit_index_then_the_stream_after_it() {
    use paved_workers::projections::AuditProjection;
    use paved_workers::runtime;
    // No workers: the index is only as far as the test builds it.
    let app = spawn_with(Roles::API).await;
    history(&app, 0).await;
    let filter = pb::EventFilter {
        aggregate_type: "service".into(),
        aggregate_id: "svc-0-1".into(),
        ..Default::default()
    };
    let (source, before) = read_raw(&app, filter.clone()).await;
    assert_eq!(source, "stream", "no index yet");
    assert_eq!(before.len(), 2);

    runtime::rebuild(
        &[AuditProjection],
        &app.pool,
        &app.log,
        &Default::default(),
        |_| {},
    )
    .await
    .unwrap();
    let indexed = app.last_sequence().await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_index")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1 + 4 * 2, "one row per event");

    // More history after the index: the read joins index and stream.
    app.client
        .deprecate_service(pb::DeprecateServiceRequest {
            name: "svc-0-1".into(),
            reason: "replaced by svc-0-2".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (source, after) = read_raw(&app, filter.clone()).await;
    assert_eq!(source, format!("index<={indexed},stream>{indexed}"));
    assert_eq!(after.len(), 3);
    assert_eq!(after[..2], before[..]);
    assert_eq!(after[2].event_type, "ServiceDeprecated");

    // Every filter kind agrees with a full scan of the stream.
    let filters = [
        pb::EventFilter {
            aggregate_type: "service".into(),
            ..Default::default()
        },
        pb::EventFilter {
            event_types: vec!["ServiceUpdated".into()],
            ..Default::default()
        },
        pb::EventFilter {
            principal: "admin".into(),
            aggregate_type: "team".into(),
            ..Default::default()
        },
    ];
    for f in filters {
        let (source, indexed_records) = read_raw(&app, f.clone()).await;
        assert!(source.starts_with("index<="), "{source}");
        let scanned: Vec<pb::EventRecord> = read_raw(&app, pb::EventFilter::default())
            .await
            .1
            .into_iter()
            .filter(|r| {
                (f.aggregate_type.is_empty() || r.aggregate_type == f.aggregate_type)
                    && (f.principal.is_empty() || r.principal == f.principal)
                    && (f.event_types.is_empty() || f.event_types.contains(&r.event_type))
            })
            .collect();
        assert_eq!(indexed_records, scanned, "{f:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_shows_each_changed_field_with_who_and_which_request() {
    use paved::cli::audit::{DiffKind, field_changes};
    let app = spawn_with(Roles::API).await;
    history(&app, 0).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t1 = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    app.client
        .update_service(pb::UpdateServiceRequest {
            request_id: "change-owner-desc-1".into(),
            name: "svc-0-2".into(),
            spec: Some(pb::ServiceSpec {
                description: "now with FX".into(),
                tags: vec!["fx".into()],
                ..Default::default()
            }),
            update_mask: Some(paved_proto::wkt::FieldMask {
                paths: vec!["description".into(), "tags".into()],
            }),
            expected_version: None,
        })
        .await
        .unwrap();
    let t2 = chrono::Utc::now();
    let changes = field_changes(&app.client, DiffKind::Service, "svc-0-2", t1, t2)
        .await
        .unwrap();
    let fields: Vec<(&str, &serde_json::Value, &serde_json::Value)> = changes
        .iter()
        .map(|c| (c.field.as_str(), &c.before, &c.after))
        .collect();
    assert_eq!(
        fields,
        [
            (
                "spec.description",
                &serde_json::json!("round 0"),
                &serde_json::json!("now with FX")
            ),
            (
                "spec.tags",
                // Zero values are written out: no tags is [], not absent.
                &serde_json::json!([]),
                &serde_json::json!(["fx"])
            ),
        ]
    );
    assert!(changes.iter().all(|c| c.principal == "admin"
        && c.request_id == "change-owner-desc-1"
        && c.event_type == "ServiceUpdated"));
    // Nothing changed before t1 shows; an empty window is empty.
    let none = field_changes(
        &app.client,
        DiffKind::Service,
        "svc-0-2",
        t2,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert!(none.is_empty(), "{none:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_follow_their_interval_under_steady_load() {
    let app = spawn_with(Roles::API).await;
    let (key, _) = trusted(&app).await;
    app.client
        .create_team(fixtures::team("payments"))
        .await
        .unwrap();
    let interval = Duration::from_millis(250);
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(Checkpointer::new(app.log.clone(), key, interval).run(stop.clone()));
    // Commands arrive all the time: there is always something new to cover.
    let started = std::time::Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(2) {
        app.client
            .register_service(fixtures::service(&format!("svc-{i}"), "payments"))
            .await
            .unwrap();
        i += 1;
    }
    stop.cancel();
    task.await.unwrap();
    let subject = app.log.checkpoint_subject();
    let mut n = 0u64;
    app.log
        .scan(1, app.last_sequence().await, |_, s, _| {
            if s == subject {
                n += 1;
            }
        })
        .await
        .unwrap();
    // One per interval (8 in 2 s) plus the last one at shutdown, with slack
    // for a slow machine; back to back it was one per command batch.
    assert!(n <= 12, "{n} checkpoints over {i} commands in 2 s");
    assert!(n >= 2, "{n} checkpoints");
}
