//! Traces as an SRE with Tempo or Jaeger gets them, read from a real OTLP
//! receiver (`TraceService/Export`, opentelemetry-proto's server) that the
//! process exports to: one trace per command from the caller through the
//! log into every projection and the Argo CD deployer, in OpenTelemetry's
//! conventions, and nothing that undoes a survey's anonymity.
//!
//! Each test installs the global subscriber of its process (nextest runs
//! every test in a process of its own).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use paved::Roles;
use paved::telemetry::{LogFormat, Options, Telemetry};
use paved_sdk::pb;
use paved_workers::ProjectionWorker;
use paved_workers::projections::CatalogProjection;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, eventually, fixtures, spawn_app, spawn_with};

const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const PRODUCER: i32 = 4;
const CONSUMER: i32 = 5;
/// `Status.code` ERROR.
const ERROR: i32 = 2;

/// The spans the receiver got, with their service's name.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                spans.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
}

/// A receiver on a free port and this process's telemetry exporting to it.
async fn export_to_receiver() -> (Receiver, Telemetry) {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let service = TraceServiceServer::new(receiver.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    let telemetry = paved::telemetry::init_with(Options {
        format: LogFormat::Pretty,
        otlp_endpoint: Some(url),
        sdk_disabled: false,
    });
    assert!(telemetry.exporting());
    (receiver, telemetry)
}

impl Receiver {
    /// The spans of trace `trace_id` (hex) once `ready` holds of them.
    async fn trace(
        &self,
        telemetry: &Telemetry,
        trace_id: &str,
        what: &str,
        ready: impl Fn(&[Span]) -> bool,
    ) -> Vec<Span> {
        eventually(Duration::from_secs(20), what, || {
            telemetry.flush().unwrap();
            let spans: Vec<Span> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .map(|(_, s)| s.clone())
                .filter(|s| hex(&s.trace_id) == trace_id)
                .collect();
            let done = ready(&spans);
            async move { done.then_some(spans) }
        })
        .await
    }

    fn all(&self) -> Vec<Span> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .map(|(_, s)| s.clone())
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// A raw CreateTeam with `traceparent` (and `tracestate`) set.
async fn create_team(app: &TestApp, name: &str, traceparent: &str, tracestate: &str) -> u64 {
    let mut team = fixtures::team(name);
    team.request_id = format!("create-{name}");
    let mut request = tonic::Request::new(team);
    let md = request.metadata_mut();
    md.insert(
        "authorization",
        format!("Bearer {}", app.admin_token).parse().unwrap(),
    );
    md.insert("traceparent", traceparent.parse().unwrap());
    if !tracestate.is_empty() {
        md.insert("tracestate", tracestate.parse().unwrap());
    }
    app.client
        .catalog()
        .create_team(request)
        .await
        .unwrap()
        .into_inner()
        .sequence
}

async fn stored(app: &TestApp, sequence: u64) -> paved_eventlog::codec::Commit {
    let m = app.log.get(sequence).await.unwrap().unwrap();
    let commit = paved_eventlog::codec::decode_commit(&m.payload).unwrap();
    let header = m.headers.get("traceparent").map(|v| v.as_str().to_owned());
    assert_eq!(
        header.unwrap_or_default(),
        commit.traceparent,
        "the headers carry the commit's trace context"
    );
    commit
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_one_trace_from_the_caller_into_every_projection() {
    let (receiver, telemetry) = export_to_receiver().await;
    let app = spawn_app().await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";
    let sequence = create_team(
        &app,
        "payments",
        &format!("00-{trace}-{caller}-01"),
        "vendor=abc",
    )
    .await;
    let prefix = app.settings.subject_prefix.clone();
    let apply_name = format!("process {prefix}.catalog.team");
    let spans = receiver
        .trace(
            &telemetry,
            trace,
            "the command's spans, through the projections",
            |spans| {
                let applied: Vec<String> = named(spans, &apply_name)
                    .iter()
                    .filter_map(|s| attr(s, "paved.projection"))
                    .collect();
                ["catalog", "audit", "surveys"]
                    .iter()
                    .all(|p| applied.iter().any(|a| a == p))
            },
        )
        .await;
    // The SERVER span continues the caller's span, in the RPC conventions.
    let server = named(&spans, "paved.v1.CatalogService/CreateTeam");
    assert_eq!(server.len(), 1, "{spans:#?}");
    let server = server[0];
    assert_eq!(server.kind, SERVER);
    assert_eq!(hex(&server.parent_span_id), caller);
    assert_eq!(attr(server, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        attr(server, "rpc.service").as_deref(),
        Some("paved.v1.CatalogService")
    );
    assert_eq!(attr(server, "rpc.method").as_deref(), Some("CreateTeam"));
    assert_eq!(attr(server, "rpc.grpc.status_code").as_deref(), Some("0"));
    // The PRODUCER span is what the commit and the headers name.
    let producer: Vec<&Span> = spans.iter().filter(|s| s.kind == PRODUCER).collect();
    assert_eq!(producer.len(), 1, "{spans:#?}");
    let producer = producer[0];
    assert_eq!(producer.name, format!("send {prefix}.catalog.team"));
    assert_eq!(attr(producer, "messaging.system").as_deref(), Some("nats"));
    assert_eq!(
        attr(producer, "messaging.nats.stream.sequence"),
        Some(sequence.to_string())
    );
    let commit = stored(&app, sequence).await;
    assert_eq!(
        commit.traceparent,
        format!("00-{trace}-{}-01", hex(&producer.span_id))
    );
    assert_eq!(
        commit.tracestate, "vendor=abc",
        "the caller's tracestate is kept"
    );
    // execute records what it did.
    let execute = named(&spans, "execute");
    assert_eq!(
        attr(execute[0], "paved.command.outcome").as_deref(),
        Some("applied")
    );
    // Every projection applied it in this trace, as a child of the producer.
    for p in named(&spans, &apply_name) {
        assert_eq!(p.kind, CONSUMER);
        assert_eq!(p.parent_span_id, producer.span_id);
        assert_eq!(
            attr(p, "messaging.nats.stream.sequence"),
            Some(sequence.to_string())
        );
    }
    // The batches link to the producer.
    let batches: Vec<Span> = receiver
        .all()
        .into_iter()
        .filter(|s| s.name.starts_with(&format!("process {prefix}.")) && s.name.ends_with(".>"))
        .filter(|s| s.links.iter().any(|l| l.span_id == producer.span_id))
        .collect();
    assert!(batches.len() >= 2, "catalog and audit batches link to it");
    assert!(batches.iter().all(|b| b.kind == CONSUMER));
    // A client's mistake is not the server's error.
    let mut again = fixtures::team("payments");
    again.request_id = "another-request".into();
    let mut bad = tonic::Request::new(again);
    bad.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", app.admin_token).parse().unwrap(),
    );
    let bad_trace = "5bf92f3577b34da6a3ce929d0e0e4736";
    bad.metadata_mut().insert(
        "traceparent",
        format!("00-{bad_trace}-{caller}-01").parse().unwrap(),
    );
    let code = app
        .client
        .catalog()
        .create_team(bad)
        .await
        .unwrap_err()
        .code();
    assert_eq!(code, tonic::Code::AlreadyExists);
    let refused = receiver
        .trace(&telemetry, bad_trace, "the refused call's span", |s| {
            !named(s, "paved.v1.CatalogService/CreateTeam").is_empty()
        })
        .await;
    let server = named(&refused, "paved.v1.CatalogService/CreateTeam")[0];
    assert_eq!(attr(server, "rpc.grpc.status_code").as_deref(), Some("6"));
    assert_ne!(server.status.as_ref().map_or(0, |s| s.code), ERROR);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_links_every_command_in_it() {
    let (receiver, telemetry) = export_to_receiver().await;
    // The API alone: the commands wait in the log, then one batch takes them.
    let app = spawn_with(Roles::API).await;
    let traces: Vec<String> = (0..4).map(|i| format!("{:032x}", 0xabc0 + i)).collect();
    for (i, t) in traces.iter().enumerate() {
        create_team(
            &app,
            &format!("team-{i}"),
            &format!("00-{t}-00f067aa0ba902b7-01"),
            "",
        )
        .await;
    }
    let worker = ProjectionWorker::new(CatalogProjection, app.pool.clone(), app.log.clone());
    let stop = CancellationToken::new();
    let task = tokio::spawn(worker.run(stop.clone()));
    let producers: Vec<Vec<u8>> = {
        let mut out = Vec::new();
        for t in &traces {
            let spans = receiver
                .trace(&telemetry, t, "the producer span", |s| {
                    s.iter().any(|s| s.kind == PRODUCER)
                })
                .await;
            out.push(
                spans
                    .iter()
                    .find(|s| s.kind == PRODUCER)
                    .unwrap()
                    .span_id
                    .clone(),
            );
        }
        out
    };
    let catalog_batch = format!("process {}.catalog.>", app.settings.subject_prefix);
    let batch = eventually(Duration::from_secs(20), "one batch of the four", || {
        telemetry.flush().unwrap();
        let found = receiver.all().into_iter().find(|s| {
            s.name == catalog_batch
                && producers
                    .iter()
                    .all(|p| s.links.iter().any(|l| &l.span_id == p))
        });
        async move { found }
    })
    .await;
    assert_eq!(batch.kind, CONSUMER);
    assert!(
        batch.parent_span_id.is_empty(),
        "a batch is a trace of its own"
    );
    assert_eq!(
        attr(&batch, "messaging.batch.message_count").as_deref(),
        Some("4")
    );
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_sampled_exports_nothing_and_a_bad_traceparent_is_not_stored() {
    let (receiver, telemetry) = export_to_receiver().await;
    let app = spawn_app().await;
    let quiet = "6bf92f3577b34da6a3ce929d0e0e4736";
    let sequence = create_team(
        &app,
        "quiet",
        &format!("00-{quiet}-00f067aa0ba902b7-00"),
        "",
    )
    .await;
    let commit = stored(&app, sequence).await;
    assert!(
        commit.traceparent.starts_with(&format!("00-{quiet}-"))
            && commit.traceparent.ends_with("-00"),
        "the caller's trace and flags are stored: {}",
        commit.traceparent
    );
    // A sampled command after it, to know the exporter has sent what it had.
    let loud = "7bf92f3577b34da6a3ce929d0e0e4736";
    create_team(&app, "loud", &format!("00-{loud}-00f067aa0ba902b7-01"), "").await;
    receiver
        .trace(&telemetry, loud, "the sampled command's spans", |s| {
            s.iter().any(|s| s.kind == PRODUCER)
        })
        .await;
    app.client.at(sequence + 1).get_team("loud").await.unwrap();
    telemetry.flush().unwrap();
    assert!(
        receiver.all().iter().all(|s| hex(&s.trace_id) != quiet),
        "nothing of the unsampled trace is exported"
    );
    // A malformed traceparent is not what the log keeps (it can never be edited).
    let sequence = create_team(&app, "odd", "00-not-a-trace-context-01", "k=v").await;
    let commit = stored(&app, sequence).await;
    assert!(
        !commit.traceparent.contains("not-a-trace"),
        "{}",
        commit.traceparent
    );
    assert!(paved_eventlog::trace::valid_traceparent(
        &commit.traceparent
    ));
    assert!(commit.tracestate.is_empty());
    // A tracestate that is too long is dropped, the traceparent kept.
    let t = "8bf92f3577b34da6a3ce929d0e0e4736";
    let sequence = create_team(
        &app,
        "long",
        &format!("00-{t}-00f067aa0ba902b7-01"),
        &format!("k={}", "v".repeat(600)),
    )
    .await;
    let commit = stored(&app, sequence).await;
    assert!(commit.traceparent.contains(t));
    assert!(commit.tracestate.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survey_response_cannot_be_joined_to_its_commit_through_traces() {
    let (receiver, telemetry) = export_to_receiver().await;
    let app = spawn_app().await;
    let c = &app.client;
    c.create_team(fixtures::team("payments")).await.unwrap();
    let now = chrono::Utc::now();
    let survey = c
        .create_survey(pb::CreateSurveyRequest {
            request_id: "s1".into(),
            id: "q4-pulse".into(),
            definition: Some(pb::SurveyDefinition {
                title: "Q4 pulse".into(),
                comment_question: "What should we fix?".into(),
                opens_at: Some(paved_eventlog::codec::timestamp(
                    now - chrono::Duration::minutes(1),
                )),
                closes_at: Some(paved_eventlog::codec::timestamp(
                    now + chrono::Duration::hours(1),
                )),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    c.at(survey.sequence).get_survey("q4-pulse").await.unwrap();
    let trace = "9bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = tonic::Request::new(pb::SubmitResponseRequest {
        request_id: "answer-1".into(),
        survey: "q4-pulse".into(),
        nps: 9,
        comment: "good".into(),
        ..Default::default()
    });
    let md = request.metadata_mut();
    md.insert(
        "authorization",
        format!("Bearer {}", app.admin_token).parse().unwrap(),
    );
    md.insert(
        "traceparent",
        format!("00-{trace}-00f067aa0ba902b7-01").parse().unwrap(),
    );
    let done = c
        .surveys()
        .submit_response(request)
        .await
        .unwrap()
        .into_inner();
    let commit = stored(&app, done.sequence).await;
    assert!(commit.traceparent.is_empty() && commit.tracestate.is_empty());
    let spans = receiver
        .trace(&telemetry, trace, "the request's spans", |s| {
            !named(s, "paved.v1.SurveyService/SubmitResponse").is_empty()
                && !named(s, "execute").is_empty()
        })
        .await;
    assert!(
        spans.iter().all(|s| s.kind != PRODUCER),
        "no producer span in the caller's trace"
    );
    // Let the projections take it, then look at every exported span.
    c.at(done.sequence).get_survey("q4-pulse").await.unwrap();
    telemetry.flush().unwrap();
    let sequence = done.sequence.to_string();
    for s in receiver.all() {
        for kv in &s.attributes {
            let v = text(kv.value.as_ref().and_then(|v| v.value.as_ref()));
            assert!(
                !v.contains(&commit.command_id),
                "span {:?} names the response: {}={v}",
                s.name,
                kv.key
            );
            // (thread and source-code attributes are small numbers of their own.)
            let about_the_code = kv.key.starts_with("thread.") || kv.key.starts_with("code.");
            if hex(&s.trace_id) == trace && !about_the_code {
                assert_ne!(
                    v, sequence,
                    "span {:?} names its sequence ({})",
                    s.name, kv.key
                );
            }
        }
    }
    // Tokens never appear in spans.
    for s in receiver.all() {
        for kv in &s.attributes {
            let v = text(kv.value.as_ref().and_then(|v| v.value.as_ref()));
            assert!(!v.contains(&app.admin_token), "{}", kv.key);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_carries_its_trace_to_argo_cd_and_back() {
    let (receiver, telemetry) = export_to_receiver().await;
    let (app, argo) = crate::argocd::setup_with(10, |_| {}).await;
    argo.add_app("ledger-production", |_| {});
    let trace = "abf92f3577b34da6a3ce929d0e0e4736";
    let mut request = tonic::Request::new(pb::RequestDeploymentRequest {
        request_id: "deploy-1".into(),
        service: "ledger".into(),
        environment: "production".into(),
        revision: "4f2a9c1".into(),
        ..Default::default()
    });
    let md = request.metadata_mut();
    md.insert(
        "authorization",
        format!("Bearer {}", app.admin_token).parse().unwrap(),
    );
    md.insert(
        "traceparent",
        format!("00-{trace}-00f067aa0ba902b7-01").parse().unwrap(),
    );
    let id = app
        .client
        .delivery()
        .request_deployment(request)
        .await
        .unwrap()
        .into_inner()
        .id;
    crate::argocd::finished(&app, &id).await;
    let spans = receiver
        .trace(&telemetry, trace, "the deployment's spans", |s| {
            s.iter().filter(|s| s.kind == PRODUCER).count() >= 3
        })
        .await;
    // The request, the deployer, its HTTP calls and the steps it recorded.
    let deploy = named(&spans, "deploy");
    assert_eq!(
        deploy.len(),
        1,
        "{:?}",
        spans.iter().map(|s| (&s.name, s.kind)).collect::<Vec<_>>()
    );
    let calls: Vec<&Span> = spans.iter().filter(|s| s.kind == CLIENT).collect();
    assert!(
        calls
            .iter()
            .any(|s| s.name == "POST /api/v1/applications/{name}/sync"),
        "{calls:#?}"
    );
    for call in &calls {
        assert_eq!(
            attr(call, "http.request.method")
                .as_deref()
                .map(|m| m == "GET" || m == "POST"),
            Some(true)
        );
        assert!(attr(call, "http.response.status_code").is_some());
    }
    // Argo CD got the trace with every call.
    let seen = argo.with(|i| i.traceparents.clone());
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|t| t.contains(trace)), "{seen:?}");
    let steps = spans.iter().filter(|s| s.kind == PRODUCER).count();
    assert!(steps >= 3, "requested, started and finished: {steps}");
    // /metrics: the latency histograms point at this trace (OpenMetrics exemplars).
    let metrics = app.scrape().await;
    let exemplar = format!("# {{trace_id=\"{trace}\"}}");
    let bucket_of = |name: &str, with: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains(with) && l.contains(&exemplar))
            .map(str::to_owned)
    };
    assert!(
        bucket_of(
            "paved_rpc_server_duration_seconds_bucket",
            "rpc_method=\"RequestDeployment\""
        )
        .is_some(),
        "{metrics}"
    );
    assert!(
        bucket_of(
            "paved_argocd_client_duration_seconds_bucket",
            "url_template="
        )
        .is_some(),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(
            |l| l.starts_with("paved_projection_apply_duration_seconds_bucket")
                && l.contains("projection=\"delivery\"")
                && l.contains("# {trace_id=\"")
        ),
        "{metrics}"
    );
    let exported = metrics
        .lines()
        .find_map(|l| l.strip_prefix("paved_trace_export_spans_total "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(exported.is_some_and(|n| n > 0), "{metrics}");
    // Every series the latency dashboard queries is there.
    let queried = crate::helpers::dashboard_series("paved-latency.json");
    assert!(queried.len() >= 6, "{queried:?}");
    for name in queried {
        assert!(
            crate::helpers::has_series(&metrics, &name),
            "the dashboard queries {name}, which /metrics does not have"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_is_counted_and_loses_nothing_else() {
    // A port nothing listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let telemetry = paved::telemetry::init_with(Options {
        format: LogFormat::Pretty,
        otlp_endpoint: Some(url),
        sdk_disabled: false,
    });
    assert!(telemetry.exporting());
    let app = spawn_app().await;
    let done = app
        .client
        .create_team(fixtures::team("payments"))
        .await
        .unwrap();
    // The command and its projection work as ever.
    app.client
        .at(done.sequence)
        .get_team("payments")
        .await
        .unwrap();
    let metrics = eventually(Duration::from_secs(20), "the failed export", || {
        let _ = telemetry.flush();
        async {
            let m = app.scrape().await;
            m.lines()
                .find_map(|l| l.strip_prefix("paved_trace_export_failures_total "))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .filter(|n| *n > 0)
                .map(|_| m)
        }
    })
    .await;
    assert!(
        metrics.contains("paved_trace_export_spans_total 0"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("paved_trace_export_dropped_spans_total 0\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_sdk_disabled_a_commit_keeps_the_callers_checked_trace_context() {
    // What OTEL_SDK_DISABLED=true asks for.
    let telemetry = paved::telemetry::init_with(Options {
        format: LogFormat::Pretty,
        otlp_endpoint: Some("http://127.0.0.1:1".into()),
        sdk_disabled: true,
    });
    assert!(!telemetry.exporting(), "the SDK disabled exports nothing");
    let app = spawn_app().await;
    let caller = "00-9cf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let sequence = create_team(&app, "plain", caller, "vendor=1").await;
    let commit = stored(&app, sequence).await;
    assert_eq!(commit.traceparent, caller);
    assert_eq!(commit.tracestate, "vendor=1");
    // Still checked: an invalid one is not kept.
    let sequence = create_team(&app, "odd", "00-not-a-trace-context-01", "").await;
    assert!(stored(&app, sequence).await.traceparent.is_empty());
}
