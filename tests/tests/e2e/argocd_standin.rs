//! An Argo CD stand-in: the subset of the API server's REST API Paved uses,
//! shaped as argoproj/argo-cd's `assets/swagger.json` and its grpc-gateway
//! errors (`{"error","code","message"}`), with the controller's behaviour
//! reduced to timers: a sync is picked up after 50 ms (`operation` set,
//! `operationState` absent until then), runs `Running` for a while, then ends
//! `Succeeded` (history entry, health `Progressing` → `Healthy`) or `Failed`.
//! Knobs script the awkward cases: down (503), a slow answer to the sync
//! call, someone else's operation in progress, an auto-sync replacing ours.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use paved_workers::effects::argocd::{
    AppStatus, Application, ErrorBody, HistoryEntry, Info, Initiator, Metadata, Operation,
    OperationState, RollbackRequest, Status as ArgoStatus, SyncOperation, SyncRequest, SyncResult,
};

pub const TOKEN: &str = "argocd-test-token";
const PICKUP: Duration = Duration::from_millis(50);

struct Op {
    state: OperationState,
    asked_at: Instant,
    ends_at: Instant,
    outcome: &'static str,
}

pub struct App {
    pub history: Vec<HistoryEntry>,
    op: Option<Op>,
    /// How long a sync runs.
    pub sync_duration: Duration,
    /// How a sync ends: "Succeeded" or "Failed".
    pub outcome: &'static str,
    /// Health after a successful sync.
    pub healthy: &'static str,
    /// Right after our sync succeeds, an automated sync replaces it.
    pub auto_sync_after: bool,
    synced_revision: String,
}

impl Default for App {
    fn default() -> Self {
        Self {
            history: Vec::new(),
            op: None,
            sync_duration: Duration::from_millis(300),
            outcome: "Succeeded",
            healthy: "Healthy",
            auto_sync_after: false,
            synced_revision: String::new(),
        }
    }
}

#[derive(Default)]
pub struct Inner {
    pub apps: HashMap<String, App>,
    /// Sync and rollback calls accepted: (app, paved-deployment info or "").
    pub started: Vec<(String, String)>,
    /// Calls refused because another operation was in progress.
    pub conflicts: u32,
    /// Answer 503 to everything until then.
    pub down_until: Option<Instant>,
    /// Hold the answer to accepted syncs this long (the operation starts at once).
    pub sync_answer_delay: Duration,
    /// The `traceparent` of every call (empty when it had none).
    pub traceparents: Vec<String>,
}

#[derive(Clone)]
pub struct StandIn {
    pub url: String,
    pub inner: Arc<Mutex<Inner>>,
}

fn error(status: StatusCode, code: i32, message: &str) -> Response {
    (
        status,
        Json(ErrorBody {
            error: message.to_owned(),
            code,
            message: message.to_owned(),
        }),
    )
        .into_response()
}

impl Inner {
    /// Advances an app's operation to where the clock says it is.
    fn settle(app: &mut App) {
        let now = Instant::now();
        let Some(op) = app.op.as_mut() else { return };
        if op.state.phase != "Running" || now < op.ends_at {
            return;
        }
        let finished = Utc::now();
        op.state.phase = op.outcome.to_owned();
        op.state.finished_at = Some(finished);
        let revision = op.state.revision().to_owned();
        if op.outcome == "Succeeded" {
            op.state.message = "successfully synced (all tasks run)".into();
            op.state.sync_result = Some(SyncResult {
                revision: revision.clone(),
            });
            let id = app.history.last().map_or(0, |h| h.id) + 1;
            app.history.push(HistoryEntry {
                id,
                revision: revision.clone(),
                deployed_at: Some(finished),
                deploy_started_at: Some(op.state.started_at),
            });
            app.synced_revision = revision;
            if app.auto_sync_after && !op.state.operation.initiated_by.automated {
                // An auto-sync takes over the operation state (argo-cd #5592).
                app.op = Some(Op {
                    state: OperationState {
                        operation: Operation {
                            sync: Some(SyncOperation {
                                revision: "HEAD".into(),
                            }),
                            initiated_by: Initiator {
                                username: String::new(),
                                automated: true,
                            },
                            info: Vec::new(),
                        },
                        phase: "Running".into(),
                        started_at: Utc::now(),
                        ..OperationState::default()
                    },
                    asked_at: now,
                    ends_at: now + Duration::from_secs(30),
                    outcome: "Failed",
                });
            }
        } else {
            op.state.message = "one or more objects failed to apply".into();
        }
    }

    fn view(name: &str, app: &mut App) -> Application {
        Self::settle(app);
        let now = Instant::now();
        let (operation, operation_state, health) = match &app.op {
            Some(op) if now < op.asked_at + PICKUP => {
                (Some(op.state.operation.clone()), None, "Progressing")
            }
            Some(op) if op.state.phase == "Running" => (
                Some(op.state.operation.clone()),
                Some(op.state.clone()),
                "Progressing",
            ),
            Some(op) => (
                None,
                Some(op.state.clone()),
                if op.state.phase == "Succeeded" || op.state.operation.initiated_by.automated {
                    app.healthy
                } else {
                    "Degraded"
                },
            ),
            None => (None, None, "Healthy"),
        };
        Application {
            metadata: Metadata { name: name.into() },
            status: AppStatus {
                sync: ArgoStatus {
                    status: "Synced".into(),
                    revision: app.synced_revision.clone(),
                    message: String::new(),
                },
                health: ArgoStatus {
                    status: health.into(),
                    ..Default::default()
                },
                operation_state,
                history: app.history.clone(),
            },
            operation,
        }
    }

    fn running(app: &App) -> bool {
        app.op.as_ref().is_some_and(|o| o.state.phase == "Running")
    }

    #[allow(clippy::result_large_err)]
    fn start(
        &mut self,
        name: &str,
        revision: String,
        info: Vec<Info>,
        username: &str,
    ) -> Result<Application, Response> {
        let app = self
            .apps
            .get_mut(name)
            .ok_or_else(|| error(StatusCode::FORBIDDEN, 7, "permission denied"))?;
        Self::settle(app);
        if Self::running(app) {
            self.conflicts += 1;
            return Err(error(
                StatusCode::BAD_REQUEST,
                9,
                "another operation is already in progress",
            ));
        }
        let now = Instant::now();
        let paved = info
            .iter()
            .find(|i| i.name == "paved-deployment")
            .map(|i| i.value.clone())
            .unwrap_or_default();
        app.op = Some(Op {
            state: OperationState {
                operation: Operation {
                    sync: Some(SyncOperation { revision }),
                    initiated_by: Initiator {
                        username: username.into(),
                        automated: false,
                    },
                    info,
                },
                phase: "Running".into(),
                started_at: Utc::now(),
                ..OperationState::default()
            },
            asked_at: now,
            ends_at: now + PICKUP + app.sync_duration,
            outcome: app.outcome,
        });
        self.started.push((name.to_owned(), paved));
        let mut view = Self::view(name, app);
        view.status.operation_state = None;
        Ok(view)
    }
}

fn authorised(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TOKEN}"))
}

impl StandIn {
    pub async fn start() -> Self {
        let inner: Arc<Mutex<Inner>> = Arc::default();
        let router = Router::new()
            .route("/api/v1/applications/{name}", get(get_app))
            .route("/api/v1/applications/{name}/sync", post(sync))
            .route("/api/v1/applications/{name}/rollback", post(rollback))
            .layer(axum::middleware::from_fn_with_state(
                inner.clone(),
                record_trace,
            ))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, inner }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap())
    }

    pub fn add_app(&self, name: &str, configure: impl FnOnce(&mut App)) {
        let mut app = App::default();
        configure(&mut app);
        self.with(|i| i.apps.insert(name.to_owned(), app));
    }

    /// Someone else's sync, running for `d`.
    pub fn start_external(&self, name: &str, d: Duration) {
        self.with(|i| {
            let app = i.apps.get_mut(name).unwrap();
            let now = Instant::now();
            app.op = Some(Op {
                state: OperationState {
                    operation: Operation {
                        sync: Some(SyncOperation {
                            revision: "main".into(),
                        }),
                        initiated_by: Initiator {
                            username: "alice".into(),
                            automated: false,
                        },
                        info: Vec::new(),
                    },
                    phase: "Running".into(),
                    started_at: Utc::now(),
                    ..OperationState::default()
                },
                asked_at: now - PICKUP,
                ends_at: now + d,
                outcome: "Succeeded",
            });
        });
    }

    /// Paved's calls that started an operation on `app`.
    pub fn started(&self, app: &str) -> Vec<String> {
        self.with(|i| {
            i.started
                .iter()
                .filter(|(a, _)| a == app)
                .map(|(_, d)| d.clone())
                .collect()
        })
    }
}

type Shared = State<Arc<Mutex<Inner>>>;

/// Notes the trace context every call arrives with.
async fn record_trace(
    State(inner): Shared,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let traceparent = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    inner.lock().unwrap().traceparents.push(traceparent);
    next.run(request).await
}

fn down(inner: &Inner) -> bool {
    inner.down_until.is_some_and(|t| Instant::now() < t)
}

async fn get_app(State(inner): Shared, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if !authorised(&headers) {
        return error(StatusCode::UNAUTHORIZED, 16, "no session information");
    }
    let mut inner = inner.lock().unwrap();
    if down(&inner) {
        return error(StatusCode::SERVICE_UNAVAILABLE, 14, "connection refused");
    }
    match inner.apps.get_mut(&name) {
        Some(app) => Json(Inner::view(&name, app)).into_response(),
        None => error(StatusCode::FORBIDDEN, 7, "permission denied"),
    }
}

async fn sync(
    State(shared): Shared,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(body): Json<SyncRequest>,
) -> Response {
    if !authorised(&headers) {
        return error(StatusCode::UNAUTHORIZED, 16, "no session information");
    }
    let (result, delay) = {
        let mut inner = shared.lock().unwrap();
        if down(&inner) {
            return error(StatusCode::SERVICE_UNAVAILABLE, 14, "connection refused");
        }
        let delay = inner.sync_answer_delay;
        (
            inner.start(&name, body.revision, body.infos, "paved"),
            delay,
        )
    };
    match result {
        Ok(view) => {
            tokio::time::sleep(delay).await;
            Json(view).into_response()
        }
        Err(e) => e,
    }
}

async fn rollback(
    State(shared): Shared,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(body): Json<RollbackRequest>,
) -> Response {
    if !authorised(&headers) {
        return error(StatusCode::UNAUTHORIZED, 16, "no session information");
    }
    let mut inner = shared.lock().unwrap();
    if down(&inner) {
        return error(StatusCode::SERVICE_UNAVAILABLE, 14, "connection refused");
    }
    let Some(entry) = inner
        .apps
        .get(&name)
        .and_then(|a| a.history.iter().find(|h| h.id == body.id))
        .cloned()
    else {
        return error(
            StatusCode::BAD_REQUEST,
            3,
            &format!(
                "application {name} does not have deployment with id {}",
                body.id
            ),
        );
    };
    match inner.start(&name, entry.revision, Vec::new(), "paved") {
        Ok(view) => Json(view).into_response(),
        Err(e) => e,
    }
}
