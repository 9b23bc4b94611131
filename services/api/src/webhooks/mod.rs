//! Webhooks (HTTP, `PAVED_WEBHOOK_LISTEN`): what happened outside Paved,
//! recorded as delivery events.
//!
//! - `POST /webhooks/github`: GitHub's `pull_request` (closed and merged)
//!   and `push` (to the default branch) events, verified with
//!   `X-Hub-Signature-256` (HMAC-SHA256 of the body with
//!   `PAVED_GITHUB_WEBHOOK_SECRET`, compared in constant time). Each merged
//!   PR's merge commit and each pushed commit becomes a change of the
//!   services whose `github.com/project-slug` annotation or repository URL
//!   names the repository: in a monorepo, of each service whose directory
//!   (`backstage.io/source-location`, or a `tree/<branch>/<path>` repository
//!   URL) the commit's added, modified or removed files touch; a merged PR,
//!   which lists no files, is noted and given to the services its merge
//!   commit's push names. A PR's change counts from the PR's creation (its first
//!   commit is not in the payload); a pushed commit from its commit time;
//!   a PR's account replaces a push's, whichever came first. Commits are
//!   judged one by one (the refused ones skipped with their reason, the
//!   answer 200); history (a push creating the branch, commits over 30
//!   days old) is marked backfill. JSON or form-encoded (`payload=`).
//!   Redeliveries (same `X-GitHub-Delivery`) record nothing new.
//! - `POST /webhooks/argocd`: Argo CD notifications (`on-deployed`,
//!   `on-sync-failed`; template in the README) with `Authorization: Bearer
//!   <PAVED_ARGOCD_WEBHOOK_TOKEN>`: deployments made outside Paved, recorded
//!   with source `argocd-notification`; the ones Paved itself ran (same
//!   application and revision, started by Paved) are skipped.
//!
//! - `POST /webhooks/pagerduty`, `POST /webhooks/alertmanager`: see
//!   [`incident_sources`].
//! - `POST /webhooks/incidents`: a generic incident-tool webhook, signed
//!   like GitHub's (`X-Paved-Signature-256: sha256=<HMAC-SHA256 of the body
//!   with PAVED_INCIDENT_WEBHOOK_SECRET>`), with a JSON body
//!   `{"action": "opened"|"linked"|"resolved", "incident": "<id>", "title",
//!   "services": [...], "severity", "startedAt", "resolvedAt", "deployment"}`.
//!   Each action is recorded once per incident, however often it is sent.
//!
//! Answers: 401 for a bad or missing signature or token (nothing recorded),
//! 400 with the reason for a malformed payload, 200 with what was recorded
//! or ignored, 503 when the endpoint's secret is not configured. Each
//! delivery is noted in the [`DeliveryLog`] (log line, metrics, recent list).

mod deliveries;
mod incident_sources;

use std::borrow::Cow;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use paved_domain::catalog::{repository_identity, touches};
use paved_domain::delivery::{
    Change, ChangeCommand, ChangeSpec, Deployment, DeploymentCommand, Outcome, PullRequestAccount,
    Target, is_backfill,
};
use paved_domain::{Aggregate, Name, Principal, Rejection};
use paved_eventlog::log::header_safe;
use paved_eventlog::{CommandMeta, ExecuteError, Executor};
use serde::Deserialize;
use sha2::Sha256;
use sqlx::PgPool;

use crate::delivery::derived_id;
use crate::error;

pub use deliveries::{Delivery, DeliveryLog, Outcome as DeliveryOutcome, RECENT, Skipped};
pub use incident_sources::pagerduty_signature_ok;

/// What the webhooks check senders with (each unset: its endpoint answers 503).
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    /// `X-Hub-Signature-256` of `/webhooks/github`.
    pub github: Option<String>,
    /// Bearer token of `/webhooks/argocd`.
    pub argocd_token: Option<String>,
    /// `X-Paved-Signature-256` of `/webhooks/incidents`.
    pub incident: Option<String>,
    /// `X-PagerDuty-Signature` of `/webhooks/pagerduty`: every secret in use
    /// (two while one is rotated).
    pub pagerduty: Vec<String>,
    /// Bearer token of `/webhooks/alertmanager`.
    pub alertmanager_token: Option<String>,
}

impl Secrets {
    fn cleaned(self) -> Self {
        let some = |s: Option<String>| s.filter(|s| !s.is_empty());
        Self {
            github: some(self.github),
            argocd_token: some(self.argocd_token),
            incident: some(self.incident),
            pagerduty: self
                .pagerduty
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect(),
            alertmanager_token: some(self.alertmanager_token),
        }
    }
}

#[derive(Clone)]
pub struct Webhooks {
    executor: Executor,
    pool: PgPool,
    secrets: Secrets,
    /// Bodies read at once by `/webhooks/github` (each up to [`GITHUB_MAX_BODY`]).
    github_bodies: Arc<tokio::sync::Semaphore>,
    deliveries: DeliveryLog,
}

/// GitHub sends webhook payloads of up to 25 MB (it drops larger ones).
pub const GITHUB_MAX_BODY: usize = 25 * 1024 * 1024;
/// GitHub bodies read at once: bounds their memory (8 × 25 MB) whatever
/// arrives before the signature is checked.
pub const GITHUB_CONCURRENT_BODIES: usize = 8;
/// The other webhooks' bodies (Argo CD notifications, incidents) are small.
pub const MAX_BODY: usize = 1024 * 1024;

impl Webhooks {
    pub fn new(
        executor: Executor,
        pool: PgPool,
        secrets: Secrets,
        deliveries: DeliveryLog,
    ) -> Self {
        Self {
            executor,
            pool,
            secrets: secrets.cleaned(),
            github_bodies: Arc::new(tokio::sync::Semaphore::new(GITHUB_CONCURRENT_BODIES)),
            deliveries,
        }
    }

    pub fn router(self) -> Router {
        Router::new()
            .route(
                "/webhooks/github",
                post(github).layer(axum::extract::DefaultBodyLimit::disable()),
            )
            .route("/webhooks/argocd", post(argocd))
            .route("/webhooks/incidents", post(incidents))
            .route("/webhooks/pagerduty", post(incident_sources::pagerduty))
            .route(
                "/webhooks/alertmanager",
                post(incident_sources::alertmanager),
            )
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
            .with_state(self)
    }
}

/// A webhook's answer: its status and JSON body (`recorded`, `ignored`,
/// `error`, `skipped`), before it is noted in the [`DeliveryLog`].
pub struct Answer {
    status: StatusCode,
    body: serde_json::Value,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

fn answer(status: StatusCode, body: serde_json::Value) -> Answer {
    Answer { status, body }
}

fn refuse(status: StatusCode, reason: impl Into<String>) -> Answer {
    answer(status, serde_json::json!({ "error": reason.into() }))
}

fn ignore(reason: impl Into<String>) -> Answer {
    answer(
        StatusCode::OK,
        serde_json::json!({ "ignored": reason.into() }),
    )
}

impl Webhooks {
    /// Notes how a delivery ended (log line, metrics, recent list) and answers it.
    fn noted(&self, source: &'static str, event: &str, id: &str, a: Answer) -> Response {
        let text = |key: &str| a.body[key].as_str().unwrap_or_default().to_owned();
        let outcome = match a.status.as_u16() {
            401 => deliveries::Outcome::BadSignature,
            500.. => deliveries::Outcome::Failed,
            400.. => deliveries::Outcome::Refused,
            _ if a.body.get("ignored").is_some() => deliveries::Outcome::Ignored,
            _ => deliveries::Outcome::Recorded,
        };
        let skipped = a.body["skipped"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|s| deliveries::Skipped {
                        sha: s["sha"].as_str().unwrap_or_default().to_owned(),
                        kind: s["rule"].as_str().unwrap_or_default().to_owned(),
                        reason: s["reason"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.deliveries.note(deliveries::Delivery {
            received_at: Utc::now(),
            source,
            event: event.chars().take(100).collect(),
            id: id.chars().take(100).collect(),
            outcome,
            reason: if outcome == deliveries::Outcome::Ignored {
                text("ignored")
            } else {
                text("error")
            },
            http_status: a.status.as_u16(),
            recorded: a.body["recorded"].as_u64().unwrap_or(0) as u32,
            skipped,
        });
        a.into_response()
    }
}

/// A failure mapped once, as the gRPC API maps it (internal detail logged,
/// never answered), then to HTTP by [`error::http_status`].
fn failed(status: tonic::Status) -> Answer {
    let code = StatusCode::from_u16(error::http_status(status.code()))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    refuse(code, status.message())
}

/// Does `X-Hub-Signature-256` sign `body` with `secret`? (constant time)
pub fn github_signature_ok(secret: &str, header: Option<&str>, body: &[u8]) -> bool {
    let Some(sig) = header.and_then(|h| h.strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(sig) = hex::decode(sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Does `Authorization: Bearer` carry `token` (the setting `var`)? The
/// refusal otherwise: 503 while it is not set, 401 when it does not match.
fn bearer(headers: &HeaderMap, token: Option<&str>, var: &str) -> Result<(), Answer> {
    let Some(token) = token else {
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{var} is not set"),
        ));
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if constant_time_eq(given.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(refuse(
            StatusCode::UNAUTHORIZED,
            format!("Authorization: Bearer <{var}> is missing or wrong"),
        ))
    }
}

/// The text at `pointer` in a JSON body (what a delivery is noted by), or "".
fn text_at(body: &[u8], pointer: &str) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer(pointer)
                .and_then(|t| t.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // HMAC both sides with a fixed key: equal-length digests compared in constant time.
    let digest = |x: &[u8]| {
        let mut m = Hmac::<Sha256>::new_from_slice(b"paved-compare").expect("any key length");
        m.update(x);
        m.finalize().into_bytes()
    };
    let mut m = Hmac::<Sha256>::new_from_slice(b"paved-compare").expect("any key length");
    m.update(a);
    m.verify(&digest(b)).is_ok()
}

#[derive(Deserialize)]
struct Repository {
    /// GitHub's numeric id: stays when the repository is renamed.
    id: Option<u64>,
    /// When the push was made: Unix seconds in push events, RFC 3339 in others.
    #[serde(default)]
    pushed_at: Option<serde_json::Value>,
    full_name: String,
    #[serde(default)]
    html_url: String,
    #[serde(default)]
    default_branch: String,
}

#[derive(Deserialize)]
struct User {
    #[serde(default)]
    login: String,
}

#[derive(Deserialize)]
struct Branch {
    #[serde(rename = "ref")]
    git_ref: String,
}

#[derive(Deserialize)]
struct PullRequest {
    number: u64,
    /// The branch it was merged into.
    base: Option<Branch>,
    #[serde(default)]
    html_url: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    merged: bool,
    merged_at: Option<DateTime<Utc>>,
    merge_commit_sha: Option<String>,
    created_at: DateTime<Utc>,
    user: Option<User>,
}

#[derive(Deserialize)]
struct PullRequestEvent {
    action: String,
    pull_request: PullRequest,
    repository: Repository,
}

#[derive(Deserialize)]
struct CommitAuthor {
    #[serde(default)]
    name: String,
    #[serde(default)]
    username: Option<String>,
}

#[derive(Deserialize)]
struct PushCommit {
    id: String,
    #[serde(default)]
    message: String,
    timestamp: DateTime<Utc>,
    #[serde(default)]
    distinct: Option<bool>,
    author: Option<CommitAuthor>,
    #[serde(default)]
    url: String,
    /// The paths it added, modified and removed (GitHub lists all three).
    added: Option<Vec<String>>,
    modified: Option<Vec<String>>,
    removed: Option<Vec<String>>,
}

impl PushCommit {
    /// The paths it touches; `None` when the payload does not list them.
    fn files(&self) -> Option<Vec<&str>> {
        if self.added.is_none() && self.modified.is_none() && self.removed.is_none() {
            return None;
        }
        let lists = [&self.added, &self.modified, &self.removed];
        Some(
            lists
                .into_iter()
                .flatten()
                .flatten()
                .map(String::as_str)
                .collect(),
        )
    }
}

#[derive(Deserialize)]
struct PushEvent {
    #[serde(rename = "ref")]
    git_ref: String,
    /// The push created the branch (a first push, an imported history).
    #[serde(default)]
    created: bool,
    #[serde(default)]
    commits: Vec<PushCommit>,
    head_commit: Option<PushCommit>,
    repository: Repository,
}

/// A service a repository's events are about, and the directory of the
/// repository its source lives in ("" for all of it).
struct RepoService {
    service: Name,
    path: String,
}

impl Webhooks {
    /// The live services that name this repository (their slug annotation
    /// or repository URL, normalised: see `repository_identity`), else — a
    /// renamed repository — those naming the repository whose claim holds
    /// GitHub's numeric id from an earlier delivery. Several in a monorepo,
    /// each with the directory its source lives in.
    async fn services_of(&self, repo: &Repository) -> Result<Vec<RepoService>, sqlx::Error> {
        let identity = repository_identity(&repo.html_url)
            .or_else(|| repository_identity(&format!("https://github.com/{}", repo.full_name)));
        let targets = |rows: Vec<(String, String)>| {
            rows.into_iter()
                .filter_map(|(name, path)| {
                    Some(RepoService {
                        service: Name::parse(&name).ok()?,
                        path,
                    })
                })
                .collect::<Vec<_>>()
        };
        if let Some(identity) = &identity {
            let found: Vec<(String, String, bool, Option<i64>)> = sqlx::query_as(
                "SELECT s.name, s.source_path, r.identity IS NOT NULL, r.github_id
                   FROM catalog_services s
                   LEFT JOIN catalog_repositories r ON r.identity = s.repository
                  WHERE s.retired_reason IS NULL AND s.repository = $1
                  ORDER BY s.name",
            )
            .bind(identity)
            .fetch_all(&self.pool)
            .await?;
            if let Some((_, _, claimed, known)) = found.first() {
                if let Some(id) = repo.id
                    && *claimed
                    && *known != Some(id as i64)
                {
                    self.remember_github_id(identity, id).await;
                }
                return Ok(targets(
                    found.into_iter().map(|(n, p, _, _)| (n, p)).collect(),
                ));
            }
        }
        let Some(id) = repo.id else {
            return Ok(Vec::new());
        };
        let renamed: Vec<(String, String)> = sqlx::query_as(
            "SELECT s.name, s.source_path FROM catalog_services s
              WHERE s.retired_reason IS NULL
                AND s.repository = (SELECT identity FROM catalog_repositories
                                     WHERE github_id = $1 ORDER BY claimed_at DESC LIMIT 1)
              ORDER BY s.name",
        )
        .bind(id as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(targets(renamed))
    }

    /// Records GitHub's id of the claimed repository `identity` (once; a
    /// failure only costs the mapping after a rename, so it is logged).
    async fn remember_github_id(&self, identity: &str, github_id: u64) {
        use paved_domain::catalog::{RepositoryClaim, RepositoryCommand, claim_id};
        let meta = CommandMeta::new(
            format!("github-repository-id:{}:{github_id}", claim_id(identity)),
            Principal::admin("webhook:github"),
        );
        if let Err(e) = self
            .executor
            .execute::<Option<RepositoryClaim>>(
                &claim_id(identity),
                &RepositoryCommand::RecordGithubId { github_id },
                &meta,
            )
            .await
        {
            tracing::warn!(repository = identity, github_id, error = %e, "cannot record GitHub's repository id");
        }
    }

    /// The services a repository's events are about; `Err` is the answer
    /// when there is none.
    async fn services_for(&self, repo: &Repository) -> Result<Vec<RepoService>, Answer> {
        match self.services_of(repo).await {
            Ok(t) if t.is_empty() => Err(ignore(format!(
                "no service has repository {}",
                repo.full_name
            ))),
            Ok(t) => Ok(t),
            Err(err) => Err(failed(error::database(err))),
        }
    }

    /// Executes a command as `principal`; the events it appended now (0
    /// for a redelivery), or why not.
    async fn run<A: Aggregate>(
        &self,
        principal: &str,
        request_id: String,
        id: &Name,
        command: &A::Command,
    ) -> Result<u32, RunError> {
        let meta = CommandMeta::new(request_id, Principal::admin(principal));
        match self.executor.execute::<A>(id, command, &meta).await {
            Ok(done) if done.replayed => Ok(0),
            Ok(done) => Ok(done.events),
            Err(ExecuteError::Rejected(r)) => Err(RunError::Rejected(r)),
            Err(e) => Err(RunError::Failed(error::execute(e))),
        }
    }

    async fn change(
        &self,
        request_id: String,
        sha: &str,
        command: ChangeCommand,
    ) -> Result<u32, RunError> {
        let Ok(id) = Name::parse(&sha.to_ascii_lowercase()) else {
            return Err(RunError::Rejected(Rejection::invalid(
                "sha",
                format!("{sha:?} is not a commit SHA"),
            )));
        };
        self.run::<Option<Change>>("webhook:github", request_id, &id, &command)
            .await
    }
}

/// Why a command did not run.
enum RunError {
    /// The domain refused it: the sender's mistake.
    Rejected(Rejection),
    /// Paved could not run it now.
    Failed(tonic::Status),
}

impl From<RunError> for Answer {
    fn from(e: RunError) -> Self {
        match e {
            // A payload the domain refuses is the sender's mistake: 400.
            RunError::Rejected(r) => refuse(StatusCode::BAD_REQUEST, r.to_string()),
            RunError::Failed(status) => failed(status),
        }
    }
}

async fn github(
    State(hooks): State<Webhooks>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (event, delivery) = (header("x-github-event"), header("x-github-delivery"));
    let a = github_answer(&hooks, &headers, body, &event, &delivery).await;
    hooks.noted("github", &event, &delivery, a)
}

/// The JSON of a GitHub delivery: the body (`application/json`) or its
/// `payload` field (`application/x-www-form-urlencoded`), the two content
/// types a GitHub webhook may be set to.
fn github_json<'b>(headers: &HeaderMap, body: &'b [u8]) -> Result<Cow<'b, [u8]>, Answer> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/x-www-form-urlencoded" => form_urlencoded::parse(body)
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| Cow::Owned(v.into_owned().into_bytes()))
            .ok_or_else(|| {
                refuse(
                    StatusCode::BAD_REQUEST,
                    "a form-encoded delivery must carry the JSON in its payload field",
                )
            }),
        "application/json" | "" => Ok(Cow::Borrowed(body)),
        other => Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type {other:?}: expected application/json or application/x-www-form-urlencoded"
            ),
        )),
    }
}

async fn github_answer(
    hooks: &Webhooks,
    headers: &HeaderMap,
    body: axum::body::Body,
    event: &str,
    delivery: &str,
) -> Answer {
    let Some(secret) = hooks.secrets.github.as_deref() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "PAVED_GITHUB_WEBHOOK_SECRET is not set",
        );
    };
    // A place among the bodies being read, then the body (up to GitHub's 25 MB).
    let Ok(_reading) = hooks.github_bodies.acquire().await else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    let body = match axum::body::to_bytes(body, GITHUB_MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the payload is over GitHub's 25 MB limit, or was cut off",
            );
        }
    };
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if !github_signature_ok(secret, signature, &body) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "X-Hub-Signature-256 is missing or does not match",
        );
    }
    let json = match github_json(headers, &body) {
        Ok(j) => j,
        Err(a) => return a,
    };
    match event {
        "pull_request" => match serde_json::from_slice(&json) {
            Ok(e) => hooks.pull_request(delivery, e).await,
            Err(err) => refuse(
                StatusCode::BAD_REQUEST,
                format!("pull_request payload: {err}"),
            ),
        },
        "push" => match serde_json::from_slice(&json) {
            Ok(e) => hooks.push(delivery, e).await,
            Err(err) => refuse(StatusCode::BAD_REQUEST, format!("push payload: {err}")),
        },
        "ping" => answer(StatusCode::OK, serde_json::json!({ "pong": true })),
        other => ignore(format!("event {other:?} is not used")),
    }
}

/// The category of a change left out (the metric's `reason` label).
fn rule_of(r: &Rejection) -> &'static str {
    match r {
        Rejection::Invalid(_) => "invalid",
        Rejection::NotFound(_) => "not_found",
        Rejection::AlreadyExists(_) => "other_service",
        Rejection::Precondition(_) => "precondition",
        Rejection::PermissionDenied(_) => "denied",
    }
}

/// Changes of one delivery, judged one by one: the good ones recorded, the
/// others skipped with their reason, so one bad commit loses no other and
/// a redelivery answers the same.
#[derive(Default)]
pub(super) struct Judged {
    pub(super) recorded: u32,
    skipped: Vec<serde_json::Value>,
}

impl Judged {
    async fn record(
        &mut self,
        hooks: &Webhooks,
        request_id: String,
        sha: &str,
        command: ChangeCommand,
    ) -> Result<(), Answer> {
        match hooks.change(request_id, sha, command).await {
            Ok(n) => self.recorded += n,
            Err(RunError::Rejected(r)) => self.skip(sha, rule_of(&r), r.to_string()),
            Err(RunError::Failed(status)) => return Err(failed(status)),
        }
        Ok(())
    }

    /// `id` (a commit, an alert) left out by `rule`, saying why.
    pub(super) fn skip(&mut self, id: &str, rule: &str, reason: String) {
        self.skipped
            .push(serde_json::json!({ "sha": id, "rule": rule, "reason": reason }));
    }

    pub(super) fn answer(self) -> Answer {
        let mut body = serde_json::json!({ "recorded": self.recorded });
        if !self.skipped.is_empty() {
            body["skipped"] = serde_json::Value::Array(self.skipped);
        }
        answer(StatusCode::OK, body)
    }
}

impl Webhooks {
    /// A merged pull request into the default branch: its merge commit, as
    /// a change that counts from the pull request's creation.
    async fn pull_request(&self, delivery: &str, e: PullRequestEvent) -> Answer {
        let pr = &e.pull_request;
        if e.action != "closed" || !pr.merged {
            return ignore("not a merged pull request");
        }
        let default = &e.repository.default_branch;
        if let Some(base) = &pr.base
            && !default.is_empty()
            && &base.git_ref != default
        {
            // As a push to that branch would be.
            return ignore(format!(
                "merged into {}, not the default branch {default}",
                base.git_ref
            ));
        }
        let Some(sha) = pr.merge_commit_sha.as_deref() else {
            return refuse(
                StatusCode::BAD_REQUEST,
                "pull_request.merge_commit_sha is missing",
            );
        };
        let targets = match self.services_for(&e.repository).await {
            Ok(t) => t,
            Err(answer) => return answer,
        };
        let account = PullRequestAccount {
            number: pr.number,
            url: pr.html_url.clone(),
            created_at: pr.created_at,
            merged_at: pr.merged_at,
            author: pr
                .user
                .as_ref()
                .map(|u| u.login.clone())
                .unwrap_or_default(),
            title: one_line(&pr.title),
        };
        let mut judged = Judged::default();
        // Services of the whole repository: the merge commit is theirs.
        for t in targets.iter().filter(|t| t.path.is_empty()) {
            let command = ChangeCommand::Record(account.for_service(&t.service));
            let request_id = format!("github:{delivery}:{sha}:{}", t.service);
            if let Err(a) = judged.record(self, request_id, sha, command).await {
                return a;
            }
        }
        // Services of a directory: which ones it touches only the push tells
        // (a pull request event lists no files), before or after this.
        if targets.iter().any(|t| !t.path.is_empty()) {
            let command = ChangeCommand::NotePullRequest(account);
            let request_id = format!("github:{delivery}:{sha}:pull-request");
            if let Err(a) = judged.record(self, request_id, sha, command).await {
                return a;
            }
        }
        judged.answer()
    }

    /// A push to the default branch: each distinct commit, judged alone.
    async fn push(&self, delivery: &str, e: PushEvent) -> Answer {
        let default = format!("refs/heads/{}", e.repository.default_branch);
        if e.git_ref != default {
            return ignore(format!("{} is not the default branch", e.git_ref));
        }
        let targets = match self.services_for(&e.repository).await {
            Ok(t) => t,
            Err(answer) => return answer,
        };
        let merged_at = e.head_commit.as_ref().map(|c| c.timestamp);
        // Backfill is judged against the push's own time, so a redelivery
        // days later says the same (its request ids must mean the same).
        let pushed_at = match &e.repository.pushed_at {
            Some(serde_json::Value::Number(n)) => n
                .as_i64()
                .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0)),
            Some(serde_json::Value::String(t)) => DateTime::parse_from_rfc3339(t)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            _ => None,
        };
        let now = pushed_at.unwrap_or_else(Utc::now);
        let mut judged = Judged::default();
        for c in e.commits.iter().filter(|c| c.distinct != Some(false)) {
            let files = c.files();
            let mut touched: Vec<&RepoService> = Vec::new();
            for t in &targets {
                if files
                    .as_ref()
                    .is_none_or(|f| touches(&t.path, f.iter().copied()))
                {
                    touched.push(t);
                }
            }
            if touched.is_empty() {
                judged.skip(
                    &c.id,
                    "outside_services",
                    format!(
                        "touches no service's directory in {}",
                        e.repository.full_name
                    ),
                );
                continue;
            }
            for t in touched {
                let spec = ChangeSpec {
                    service: t.service.clone(),
                    authored_at: None,
                    committed_at: c.timestamp,
                    merged_at: merged_at.map(|m| m.max(c.timestamp)),
                    pr_number: 0,
                    pr_url: c.url.clone(),
                    author: c
                        .author
                        .as_ref()
                        .map(|a| a.username.clone().unwrap_or_else(|| a.name.clone()))
                        .unwrap_or_default(),
                    title: one_line(&c.message),
                    backfill: is_backfill(c.timestamp, now, e.created),
                };
                let request_id = format!("github:{delivery}:{}:{}", c.id, t.service);
                let command = ChangeCommand::Record(spec);
                if let Err(a) = judged.record(self, request_id, &c.id, command).await {
                    return a;
                }
            }
        }
        judged.answer()
    }
}

/// A title: the first line, at most 500 characters.
fn one_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(500)
        .collect()
}

/// The body of Paved's Argo CD notification template (README).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArgoNotification {
    /// `on-deployed` or `on-sync-failed`.
    trigger: String,
    app: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    environment: String,
    revision: String,
    #[serde(default)]
    phase: String,
    #[serde(default)]
    health: String,
    #[serde(default)]
    message: String,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
}

impl Webhooks {
    /// Service and environment of an Argo CD application: as given, else
    /// as Paved last deployed it, else `<service>-<environment>`.
    async fn target_of(&self, n: &ArgoNotification) -> Result<Option<(Name, Name)>, sqlx::Error> {
        if let (Ok(s), Ok(e)) = (Name::parse(&n.service), Name::parse(&n.environment)) {
            return Ok(Some((s, e)));
        }
        let known: Option<(String, String)> = sqlx::query_as(
            "SELECT service, environment FROM delivery_deployments WHERE application = $1
              ORDER BY requested_at DESC LIMIT 1",
        )
        .bind(&n.app)
        .fetch_optional(&self.pool)
        .await?;
        if let Some((s, e)) = known {
            return Ok(Name::parse(&s).ok().zip(Name::parse(&e).ok()));
        }
        let Some((service, env)) = n.app.rsplit_once('-') else {
            return Ok(None);
        };
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM catalog_services WHERE name = $1)")
                .bind(service)
                .fetch_one(&self.pool)
                .await?;
        Ok(exists
            .then(|| Name::parse(service).ok().zip(Name::parse(env).ok()))
            .flatten())
    }

    /// Did Paved itself run this operation?
    async fn ran_by_paved(&self, n: &ArgoNotification) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM delivery_deployments
                 WHERE source = 'paved' AND application = $1
                   AND (revision = $2 OR deployed_revision = $2)
                   AND started_at <= $4 AND coalesce(finished_at, $4) >= $3 - interval '1 minute')",
        )
        .bind(&n.app)
        .bind(&n.revision)
        .bind(n.started_at)
        .bind(n.finished_at)
        .fetch_one(&self.pool)
        .await
    }
}

async fn argocd(State(hooks): State<Webhooks>, headers: HeaderMap, body: Bytes) -> Response {
    let a = argocd_answer(&hooks, &headers, &body).await;
    hooks.noted("argocd", &text_at(&body, "/trigger"), "", a)
}

async fn argocd_answer(hooks: &Webhooks, headers: &HeaderMap, body: &[u8]) -> Answer {
    if let Err(a) = bearer(
        headers,
        hooks.secrets.argocd_token.as_deref(),
        "PAVED_ARGOCD_WEBHOOK_TOKEN",
    ) {
        return a;
    }
    let n: ArgoNotification = match serde_json::from_slice(body) {
        Ok(n) => n,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("notification: {e}")),
    };
    // These become part of the request id, a message header.
    for (field, value) in [("app", &n.app), ("revision", &n.revision)] {
        if value.is_empty() || !header_safe(value) || value.len() > 253 {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("{field}: 1..=253 visible ASCII characters, no line breaks"),
            );
        }
    }
    let succeeded = match n.trigger.as_str() {
        "on-deployed" => true,
        "on-sync-failed" => false,
        other => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("trigger {other:?}: expected on-deployed or on-sync-failed"),
            );
        }
    };
    match hooks.ran_by_paved(&n).await {
        Ok(true) => return ignore("a deployment Paved ran"),
        Ok(false) => {}
        Err(e) => return failed(error::database(e)),
    }
    let (service, environment) = match hooks.target_of(&n).await {
        Ok(Some(t)) => t,
        Ok(None) => return ignore(format!("no service for application {}", n.app)),
        Err(e) => return failed(error::database(e)),
    };
    let request_id = format!(
        "argocd-notification:{}:{}:{}",
        n.app,
        n.revision,
        n.finished_at.timestamp()
    );
    let id = derived_id("d", &request_id);
    let command = DeploymentCommand::Record {
        target: Target {
            service,
            environment,
            revision: n.revision.clone(),
            commits: Vec::new(),
            rollback_of: None,
        },
        source: "argocd-notification".to_owned(),
        started_at: n.started_at,
        outcome: Outcome {
            succeeded,
            revision: n.revision.clone(),
            phase: n.phase.clone(),
            health: n.health.clone(),
            message: n.message.chars().take(2000).collect(),
            finished_at: n.finished_at,
        },
    };
    match hooks
        .run::<Option<Deployment>>("webhook:argocd", request_id, &id, &command)
        .await
    {
        Ok(recorded) => answer(
            StatusCode::OK,
            serde_json::json!({ "recorded": recorded, "deployment": id.as_str() }),
        ),
        Err(e) => e.into(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IncidentHook {
    action: String,
    incident: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    severity: String,
    started_at: Option<DateTime<Utc>>,
    resolved_at: Option<DateTime<Utc>>,
    #[serde(default)]
    deployment: String,
}

async fn incidents(State(hooks): State<Webhooks>, headers: HeaderMap, body: Bytes) -> Response {
    let a = incidents_answer(&hooks, &headers, &body).await;
    hooks.noted("incidents", &text_at(&body, "/action"), "", a)
}

async fn incidents_answer(hooks: &Webhooks, headers: &HeaderMap, body: &[u8]) -> Answer {
    use paved_domain::delivery::{Incident, IncidentCommand};
    let Some(secret) = hooks.secrets.incident.as_deref() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "PAVED_INCIDENT_WEBHOOK_SECRET is not set",
        );
    };
    let signature = headers
        .get("x-paved-signature-256")
        .and_then(|v| v.to_str().ok());
    if !github_signature_ok(secret, signature, body) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "X-Paved-Signature-256 is missing or does not match",
        );
    }
    let h: IncidentHook = match serde_json::from_slice(body) {
        Ok(h) => h,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("incident payload: {e}")),
    };
    if !header_safe(&h.deployment) || h.deployment.len() > 253 {
        return refuse(
            StatusCode::BAD_REQUEST,
            "deployment: at most 253 visible ASCII characters, no line breaks",
        );
    }
    let Ok(id) = Name::parse(&h.incident) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "incident: must be a DNS label (a-z, 0-9, -)",
        );
    };
    let name = |field: &str, v: &str| Name::parse(v).map_err(|e| format!("{field}: {e}"));
    let command = match h.action.as_str() {
        "opened" => {
            let Some(started_at) = h.started_at else {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "startedAt is required to open an incident",
                );
            };
            let mut services = Vec::new();
            for (i, s) in h.services.iter().enumerate() {
                match name(&format!("services[{i}]"), s) {
                    Ok(n) => services.push(n),
                    Err(r) => return refuse(StatusCode::BAD_REQUEST, r),
                }
            }
            let caused_by = match h.deployment.as_str() {
                "" => None,
                d => match name("deployment", d) {
                    Ok(n) => Some(n),
                    Err(r) => return refuse(StatusCode::BAD_REQUEST, r),
                },
            };
            IncidentCommand::Open {
                title: h.title.clone(),
                services,
                severity: h.severity.clone(),
                started_at,
                caused_by,
            }
        }
        "linked" => match name("deployment", &h.deployment) {
            Ok(deployment) => IncidentCommand::Link { deployment },
            Err(r) => return refuse(StatusCode::BAD_REQUEST, r),
        },
        "resolved" => match h.resolved_at {
            Some(resolved_at) => IncidentCommand::Resolve { resolved_at },
            None => return refuse(StatusCode::BAD_REQUEST, "resolvedAt is required to resolve"),
        },
        other => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("action {other:?}: expected opened, linked or resolved"),
            );
        }
    };
    let request_id = format!("incident-webhook:{}:{id}:{}", h.action, h.deployment);
    match hooks
        .run::<Option<Incident>>("webhook:incidents", request_id, &id, &command)
        .await
    {
        Ok(recorded) => answer(StatusCode::OK, serde_json::json!({ "recorded": recorded })),
        Err(e) => e.into(),
    }
}
