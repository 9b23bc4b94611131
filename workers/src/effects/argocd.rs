//! A client for the parts of Argo CD's REST API Paved uses (argoproj/argo-cd
//! `assets/swagger.json`, served by the API server's grpc-gateway):
//!
//! - `GET  /api/v1/applications/{name}`: `status.operationState` (`phase`,
//!   `message`, `startedAt`, `finishedAt`, `operation.info`,
//!   `operation.sync.revision`, `syncResult.revision`), `status.sync.status`,
//!   `status.health.status`, `status.history[]`.
//! - `POST /api/v1/applications/{name}/sync` with `revision` and `infos`
//!   (`paved-deployment=<id>` marks the operation as ours).
//! - `POST /api/v1/applications/{name}/rollback` with a history `id`.
//!
//! Errors come back as `{"error","code","message"}` (gRPC codes over HTTP):
//! a sync while another operation runs is HTTP 400, code 9, "another
//! operation is already in progress".

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

/// The `operation.info` entry naming the Paved deployment an operation is for.
pub const INFO_NAME: &str = "paved-deployment";

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ArgoError {
    /// Argo CD has no queue: another sync or rollback is running.
    #[error("another operation is already in progress")]
    InProgress,
    /// Unknown application, or the token may not see it (Argo CD answers
    /// 403 for both unless a project is given).
    #[error("application {0:?} not found or not permitted")]
    NotFound(String),
    #[error("Argo CD refused the token: {0}")]
    Unauthenticated(String),
    /// Connection refused, timeout, 5xx: worth retrying.
    #[error("Argo CD unreachable: {0}")]
    Unavailable(String),
    #[error("Argo CD said {status}: {message}")]
    Refused { status: u16, message: String },
}

impl ArgoError {
    pub fn retryable(&self) -> bool {
        matches!(self, Self::InProgress | Self::Unavailable(_))
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Info {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct SyncOperation {
    #[serde(default)]
    pub revision: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Initiator {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub automated: bool,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncOperation>,
    #[serde(default)]
    pub initiated_by: Initiator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub info: Vec<Info>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct SyncResult {
    #[serde(default)]
    pub revision: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OperationState {
    #[serde(default)]
    pub operation: Operation,
    /// Running, Terminating, Failed, Error, Succeeded.
    pub phase: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_result: Option<SyncResult>,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

impl OperationState {
    pub fn completed(&self) -> bool {
        matches!(self.phase.as_str(), "Succeeded" | "Failed" | "Error")
    }

    /// The Paved deployment this operation was started for, if any.
    pub fn paved_deployment(&self) -> Option<&str> {
        self.operation
            .info
            .iter()
            .find(|i| i.name == INFO_NAME)
            .map(|i| i.value.as_str())
    }

    pub fn revision(&self) -> &str {
        self.sync_result
            .as_ref()
            .map(|r| r.revision.as_str())
            .filter(|r| !r.is_empty())
            .or(self.operation.sync.as_ref().map(|s| s.revision.as_str()))
            .unwrap_or_default()
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Status {
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revision: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub id: i64,
    #[serde(default)]
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_started_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    #[serde(default)]
    pub sync: Status,
    #[serde(default)]
    pub health: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_state: Option<OperationState>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Metadata {
    pub name: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Application {
    pub metadata: Metadata,
    #[serde(default)]
    pub status: AppStatus,
    /// Set while an operation is requested or running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
}

/// `applicationApplicationSyncRequest` (the fields Paved sets).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncRequest {
    #[serde(default)]
    pub revision: String,
    #[serde(default)]
    pub prune: bool,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub infos: Vec<Info>,
}

/// `applicationApplicationRollbackRequest`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RollbackRequest {
    pub id: i64,
    #[serde(default)]
    pub prune: bool,
    #[serde(default)]
    pub dry_run: bool,
}

/// grpc-gateway's error body.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ErrorBody {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub code: i32,
    #[serde(default)]
    pub message: String,
}

/// One Argo CD API server.
#[derive(Clone)]
pub struct ArgoCd {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl std::fmt::Debug for ArgoCd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("ArgoCd").field("base", &self.base).finish()
    }
}

impl ArgoCd {
    pub fn new(base: &str, token: String, timeout: Duration) -> Result<Self, ArgoError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("paved/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ArgoError::Unavailable(e.to_string()))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    fn url(&self, app: &str, action: &str) -> String {
        format!("{}/api/v1/applications/{app}{action}", self.base)
    }

    /// One call, as a CLIENT span in OpenTelemetry's HTTP conventions that
    /// passes its trace on to Argo CD (`traceparent`). `route` is the path
    /// template the span is named by.
    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        app: &str,
        route: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ArgoError> {
        let mut request = request
            .bearer_auth(&self.token)
            .build()
            .map_err(|e| ArgoError::Unavailable(without_url(&e)))?;
        let method = request.method().as_str().to_owned();
        let url = request.url().clone();
        let span = tracing::info_span!(
            "http",
            otel.name = %format!("{method} {route}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = %method,
            url.full = %url,
            url.template = route,
            server.address = url.host_str().unwrap_or_default(),
            server.port = url.port_or_known_default(),
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let trace = paved_eventlog::trace::context_of(&span, &Default::default());
        for (name, value) in [
            ("traceparent", trace.traceparent),
            ("tracestate", trace.tracestate),
        ] {
            if let Ok(v) = reqwest::header::HeaderValue::from_str(&value)
                && !value.is_empty()
            {
                request.headers_mut().insert(name, v);
            }
        }
        let started = std::time::Instant::now();
        let sent = self.http.execute(request).instrument(span.clone()).await;
        let code = sent.as_ref().map_or(0, |r| r.status().as_u16()).to_string();
        paved_eventlog::latency::ARGOCD_CLIENT.observe(
            &[
                ("http_request_method", &method),
                ("url_template", route),
                ("http_response_status_code", &code),
            ],
            started.elapsed(),
            &span,
        );
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                span.record("otel.status_code", "ERROR");
                span.record(
                    "error.type",
                    if e.is_timeout() {
                        "timeout"
                    } else {
                        "connection"
                    },
                );
                return Err(ArgoError::Unavailable(without_url(&e)));
            }
        };
        let status = response.status();
        span.record("http.response.status_code", status.as_u16());
        if status.as_u16() >= 400 {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", status.as_u16());
        }
        if status.is_success() {
            return response.json().await.map_err(|e| {
                ArgoError::Unavailable(format!("unreadable answer: {}", without_url(&e)))
            });
        }
        let body: ErrorBody = response.json().await.unwrap_or_default();
        let message = if body.message.is_empty() {
            body.error
        } else {
            body.message
        };
        Err(match status.as_u16() {
            _ if message.contains("another operation is already in progress") => {
                ArgoError::InProgress
            }
            401 => ArgoError::Unauthenticated(message),
            403 | 404 => ArgoError::NotFound(app.to_owned()),
            s if s >= 500 => ArgoError::Unavailable(format!("HTTP {s}: {message}")),
            s => ArgoError::Refused { status: s, message },
        })
    }

    pub async fn application(&self, app: &str) -> Result<Application, ArgoError> {
        self.send(
            app,
            "/api/v1/applications/{name}",
            self.http.get(self.url(app, "")),
        )
        .await
    }

    /// Syncs `app` to `revision`, marking the operation with the deployment id.
    pub async fn sync(
        &self,
        app: &str,
        revision: &str,
        deployment: &str,
    ) -> Result<Application, ArgoError> {
        let body = SyncRequest {
            revision: revision.to_owned(),
            prune: false,
            dry_run: false,
            infos: vec![Info {
                name: INFO_NAME.to_owned(),
                value: deployment.to_owned(),
            }],
        };
        self.send(
            app,
            "/api/v1/applications/{name}/sync",
            self.http.post(self.url(app, "/sync")).json(&body),
        )
        .await
    }

    /// Rolls `app` back to the history entry `id`.
    pub async fn rollback(&self, app: &str, id: i64) -> Result<Application, ArgoError> {
        let body = RollbackRequest {
            id,
            prune: false,
            dry_run: false,
        };
        self.send(
            app,
            "/api/v1/applications/{name}/rollback",
            self.http.post(self.url(app, "/rollback")).json(&body),
        )
        .await
    }
}

/// reqwest's errors name the URL; keep messages short and free of paths.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_decode() {
        "bad body"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}
