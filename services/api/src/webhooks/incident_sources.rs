//! Incidents from the tools the seed names: PagerDuty (v3 webhooks) and
//! Prometheus' Alertmanager (webhook receiver), beside the generic
//! `/webhooks/incidents`.
//!
//! - `POST /webhooks/pagerduty`: `incident.triggered`, `.acknowledged`
//!   and `.resolved`, signed `X-PagerDuty-Signature: v1=<HMAC-SHA256 of
//!   the body>` with any of `PAVED_PAGERDUTY_WEBHOOK_SECRETS` (several
//!   signatures and several secrets while one is rotated). The incident is
//!   `pd-<incident id>`; it is about the catalog service whose
//!   `pagerduty.com/service-id` annotation (Backstage's PagerDuty plugin)
//!   names the PagerDuty service, else the one named like that service's
//!   summary. Severity from the priority (P1 → sev1 … P4, P5 → sev4), else
//!   the urgency (high → sev2, low → sev3).
//! - `POST /webhooks/alertmanager` with `Authorization: Bearer
//!   <PAVED_ALERTMANAGER_WEBHOOK_TOKEN>` (Alertmanager's `http_config`):
//!   each alert of a `firing` or `resolved` group is an incident
//!   `am-<fingerprint>-<startsAt>` about the catalog services its `service`
//!   label names (comma-separated); severity from the `severity` label
//!   (critical → sev1, error or high → sev2, warning → sev3, info → sev4).
//!   Alerts without a `service` label are skipped with the reason.
//!
//! Whatever order and however often the events come (PagerDuty and
//! Alertmanager both resend), an incident is opened once and resolved once:
//! a resolution of an incident not seen yet opens it first.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use paved_domain::delivery::{Incident, IncidentCommand};
use paved_domain::{Name, Rejection};
use serde::Deserialize;
use sha2::Sha256;

use super::{Answer, Judged, RunError, Webhooks, answer, bearer, failed, ignore, refuse, text_at};

/// Does `X-PagerDuty-Signature` (`v1=<hex>`, comma-separated) hold a
/// signature of `body` with one of `secrets`? (constant time)
pub fn pagerduty_signature_ok(secrets: &[String], header: Option<&str>, body: &[u8]) -> bool {
    let Some(header) = header else {
        return false;
    };
    let signatures: Vec<Vec<u8>> = header
        .split(',')
        .filter_map(|s| s.trim().strip_prefix("v1="))
        .filter_map(|h| hex::decode(h).ok())
        .collect();
    secrets.iter().any(|secret| {
        signatures.iter().any(|sig| {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
            mac.update(body);
            mac.verify_slice(sig).is_ok()
        })
    })
}

/// An incident to open (if it is not yet) and perhaps resolve.
struct Seen {
    id: Name,
    title: String,
    services: Vec<Name>,
    severity: &'static str,
    started_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
}

impl Webhooks {
    /// Opens the incident unless it is open already, then resolves it when
    /// it says so; the events appended now.
    ///
    /// `key` tells this event from the others about the incident (the
    /// sender's event id, or a digest of what it says), so a resend replays
    /// and another event asks again.
    async fn track(&self, principal: &str, key: &str, seen: Seen) -> Result<u32, RunError> {
        let open = IncidentCommand::Open {
            // The tools' titles may span lines (an annotation's template):
            // the first line, control characters as spaces.
            title: seen
                .title
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(500)
                .collect(),
            services: seen.services,
            severity: seen.severity.to_owned(),
            started_at: seen.started_at,
            caused_by: None,
        };
        let mut recorded = match self
            .run::<Option<Incident>>(
                principal,
                format!("{principal}:open:{}:{key}", seen.id),
                &seen.id,
                &open,
            )
            .await
        {
            Ok(n) => n,
            // Opened by an earlier event (a resend, acknowledged after triggered).
            Err(RunError::Rejected(Rejection::AlreadyExists(_))) => 0,
            Err(e) => return Err(e),
        };
        if let Some(resolved_at) = seen.resolved_at {
            let resolve = IncidentCommand::Resolve { resolved_at };
            recorded += self
                .run::<Option<Incident>>(
                    principal,
                    format!("{principal}:resolve:{}:{key}", seen.id),
                    &seen.id,
                    &resolve,
                )
                .await?;
        }
        Ok(recorded)
    }

    /// The catalog service of a PagerDuty service: its
    /// `pagerduty.com/service-id` annotation, else its name.
    async fn service_of_pagerduty(
        &self,
        service: &PagerDutyReference,
    ) -> Result<Option<Name>, sqlx::Error> {
        let by_name = service
            .summary
            .trim()
            .to_ascii_lowercase()
            .replace([' ', '_'], "-");
        let name: Option<String> = sqlx::query_scalar(
            "SELECT name FROM catalog_services
              WHERE retired_reason IS NULL
                AND (annotations ->> 'pagerduty.com/service-id' = $1 OR name = $2)
              ORDER BY annotations ->> 'pagerduty.com/service-id' = $1 DESC NULLS LAST, name
              LIMIT 1",
        )
        .bind(&service.id)
        .bind(&by_name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(name.and_then(|n| Name::parse(&n).ok()))
    }
}

#[derive(Deserialize)]
struct PagerDutyWebhook {
    event: PagerDutyEvent,
}

#[derive(Deserialize)]
struct PagerDutyEvent {
    id: String,
    event_type: String,
    occurred_at: DateTime<Utc>,
    data: serde_json::Value,
}

#[derive(Deserialize, Default)]
struct PagerDutyReference {
    #[serde(default)]
    id: String,
    #[serde(default)]
    summary: String,
}

#[derive(Deserialize)]
struct PagerDutyIncident {
    id: String,
    #[serde(default)]
    title: String,
    created_at: DateTime<Utc>,
    #[serde(default)]
    service: PagerDutyReference,
    #[serde(default)]
    urgency: String,
    priority: Option<PagerDutyReference>,
}

fn pagerduty_severity(i: &PagerDutyIncident) -> &'static str {
    match i.priority.as_ref().map(|p| p.summary.to_ascii_uppercase()) {
        Some(p) if p == "P1" => "sev1",
        Some(p) if p == "P2" => "sev2",
        Some(p) if p == "P3" => "sev3",
        Some(p) if p == "P4" || p == "P5" => "sev4",
        _ if i.urgency == "high" => "sev2",
        _ => "sev3",
    }
}

/// An incident id Paved accepts (a DNS label) from `prefix` and an outside id.
fn incident_id(prefix: &str, outside: &str) -> Option<Name> {
    let id: String = outside
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    Name::parse(format!("{prefix}-{}", id.trim_matches('-')).as_str()).ok()
}

pub(super) async fn pagerduty(
    State(hooks): State<Webhooks>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let a = pagerduty_answer(&hooks, &headers, &body).await;
    let (event, id) = (
        text_at(&body, "/event/event_type"),
        text_at(&body, "/event/id"),
    );
    hooks.noted("pagerduty", &event, &id, a)
}

async fn pagerduty_answer(hooks: &Webhooks, headers: &HeaderMap, body: &[u8]) -> Answer {
    if hooks.secrets.pagerduty.is_empty() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "PAVED_PAGERDUTY_WEBHOOK_SECRETS is not set",
        );
    }
    let signature = headers
        .get("x-pagerduty-signature")
        .and_then(|v| v.to_str().ok());
    if !pagerduty_signature_ok(&hooks.secrets.pagerduty, signature, body) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "X-PagerDuty-Signature is missing or matches none of the secrets",
        );
    }
    let w: PagerDutyWebhook = match serde_json::from_slice(body) {
        Ok(w) => w,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("PagerDuty payload: {e}")),
    };
    let e = w.event;
    let resolved = match e.event_type.as_str() {
        "incident.triggered" | "incident.acknowledged" => false,
        "incident.resolved" => true,
        // pagey.ping and the other incident events (annotated, escalated, …).
        other => return ignore(format!("event {other:?} is not used")),
    };
    let incident: PagerDutyIncident = match serde_json::from_value(e.data) {
        Ok(i) => i,
        Err(err) => return refuse(StatusCode::BAD_REQUEST, format!("event.data: {err}")),
    };
    let Some(id) = incident_id("pd", &incident.id) else {
        return refuse(StatusCode::BAD_REQUEST, "event.data.id: not an incident id");
    };
    let service = match hooks.service_of_pagerduty(&incident.service).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return ignore(format!(
                "no service has pagerduty.com/service-id {} or the name of {:?}",
                incident.service.id, incident.service.summary
            ));
        }
        Err(e) => return failed(crate::error::database(e)),
    };
    let title = if incident.title.trim().is_empty() {
        format!("PagerDuty incident {}", incident.id)
    } else {
        incident.title.clone()
    };
    let seen = Seen {
        id,
        title,
        services: vec![service],
        severity: pagerduty_severity(&incident),
        started_at: incident.created_at,
        resolved_at: resolved.then_some(e.occurred_at),
    };
    let event_id: String =
        e.id.chars()
            .filter(char::is_ascii_alphanumeric)
            .take(64)
            .collect();
    match hooks.track("webhook:pagerduty", &event_id, seen).await {
        Ok(recorded) => answer(StatusCode::OK, serde_json::json!({ "recorded": recorded })),
        Err(e) => e.into(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlertGroup {
    status: String,
    #[serde(default)]
    alerts: Vec<Alert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    status: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
    starts_at: DateTime<Utc>,
    ends_at: Option<DateTime<Utc>>,
    #[serde(default)]
    fingerprint: String,
}

fn alert_severity(label: Option<&str>) -> &'static str {
    match label.map(str::to_ascii_lowercase).as_deref() {
        Some("critical" | "page") => "sev1",
        Some("error" | "high") => "sev2",
        Some("info" | "low") => "sev4",
        _ => "sev3",
    }
}

/// A short digest of what an alert says (its resends say the same).
fn digest(parts: &[&str]) -> String {
    use sha2::Digest as _;
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

/// Alertmanager's groups hold at most a few hundred alerts.
const MAX_ALERTS: usize = 1000;

pub(super) async fn alertmanager(
    State(hooks): State<Webhooks>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let a = alertmanager_answer(&hooks, &headers, &body).await;
    hooks.noted("alertmanager", &text_at(&body, "/status"), "", a)
}

async fn alertmanager_answer(hooks: &Webhooks, headers: &HeaderMap, body: &[u8]) -> Answer {
    if let Err(a) = bearer(
        headers,
        hooks.secrets.alertmanager_token.as_deref(),
        "PAVED_ALERTMANAGER_WEBHOOK_TOKEN",
    ) {
        return a;
    }
    let group: AlertGroup = match serde_json::from_slice(body) {
        Ok(g) => g,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("Alertmanager payload: {e}"),
            );
        }
    };
    if !matches!(group.status.as_str(), "firing" | "resolved") {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("status {:?}: expected firing or resolved", group.status),
        );
    }
    if group.alerts.len() > MAX_ALERTS {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("alerts: at most {MAX_ALERTS} in one notification"),
        );
    }
    let mut judged = Judged::default();
    for alert in &group.alerts {
        let fp = alert.fingerprint.as_str();
        let Some(id) = incident_id("am", &format!("{fp}-{}", alert.starts_at.timestamp())) else {
            judged.skip(fp, "invalid", "fingerprint: not hex".into());
            continue;
        };
        let names = alert
            .labels
            .get("service")
            .map(String::as_str)
            .unwrap_or("");
        let mut services = Vec::new();
        for s in names.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match Name::parse(s) {
                Ok(n) => services.push(n),
                Err(e) => judged.skip(fp, "invalid", format!("label service {s:?}: {e}")),
            }
        }
        if services.is_empty() {
            judged.skip(
                fp,
                "invalid",
                "no service label names a catalog service".into(),
            );
            continue;
        }
        let resolved_at = match (alert.status.as_str(), alert.ends_at) {
            ("resolved", Some(end)) => Some(end),
            ("resolved", None) => {
                judged.skip(fp, "invalid", "a resolved alert without endsAt".into());
                continue;
            }
            _ => None,
        };
        let title = alert
            .annotations
            .get("summary")
            .or_else(|| alert.labels.get("alertname"))
            .filter(|t| !t.trim().is_empty())
            .cloned()
            .unwrap_or_else(|| format!("Alertmanager alert {fp}"));
        let seen = Seen {
            id,
            title,
            services,
            severity: alert_severity(alert.labels.get("severity").map(String::as_str)),
            started_at: alert.starts_at,
            resolved_at,
        };
        let key = digest(&[
            &seen.title,
            names,
            seen.severity,
            &resolved_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        ]);
        match hooks.track("webhook:alertmanager", &key, seen).await {
            Ok(n) => judged.recorded += n,
            Err(RunError::Rejected(r)) => judged.skip(fp, super::rule_of(&r), r.to_string()),
            Err(RunError::Failed(status)) => return failed(status),
        }
    }
    judged.answer()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        format!("v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn a_pagerduty_signature_from_any_current_secret_is_accepted() {
        let body = br#"{"event":{}}"#;
        let only_new = ["new-secret".to_owned()];
        let both_secrets = ["old-secret".to_owned(), "new-secret".to_owned()];
        // While a secret is rotated PagerDuty signs with both.
        let both = format!("{},{}", sign("old-secret", body), sign("new-secret", body));
        assert!(pagerduty_signature_ok(&only_new, Some(&both), body));
        assert!(pagerduty_signature_ok(
            &both_secrets,
            Some(&sign("old-secret", body)),
            body
        ));
        assert!(!pagerduty_signature_ok(
            &only_new,
            Some(&sign("old-secret", body)),
            body
        ));
        assert!(!pagerduty_signature_ok(
            &only_new,
            Some(&sign("new-secret", b"other")),
            body
        ));
        assert!(!pagerduty_signature_ok(&only_new, None, body));
    }

    #[test]
    fn outside_ids_become_incident_ids() {
        assert_eq!(incident_id("pd", "PGR0VU2").unwrap().as_str(), "pd-pgr0vu2");
        assert_eq!(
            incident_id("am", "c0ffee1234abcd-1764763200")
                .unwrap()
                .as_str(),
            "am-c0ffee1234abcd-1764763200"
        );
        assert!(incident_id("pd", &"x".repeat(100)).is_none());
    }
}
