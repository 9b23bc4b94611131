//! The surveys projection: `survey_surveys`, `survey_responses` and
//! `survey_offers`. It reads the whole log (`paved.>`): survey events for the
//! first two tables, and every other event to offer micro-surveys to the
//! principal who caused an event a survey is triggered by.
//!
//! Responses arrive sealed (see [`paved_eventlog::survey_keys`]): the
//! projection holds the survey secret and opens them. One that does not
//! open (another secret) stops the projection, like a message that does not
//! decode; it is never skipped.

use chrono::{DateTime, Utc};
use paved_domain::Event;
use paved_domain::surveys::{Audience, ResponseContent, SurveyEvent};
use paved_eventlog::{StoredCommit, SurveyKeys};
use sqlx::PgConnection;

use crate::runtime::{Projection, ProjectionError};

#[derive(Clone, Debug)]
pub struct SurveysProjection {
    keys: SurveyKeys,
}

impl SurveysProjection {
    pub fn new(keys: SurveyKeys) -> Self {
        Self { keys }
    }
}

/// Principals that are not people and are never offered surveys.
fn is_person(principal: &str) -> bool {
    !principal.is_empty() && principal != "anonymous" && !principal.starts_with("worker:")
}

/// `(survey, event type, opens_at, closes_at, closed_at)` as stored.
type TriggerRow = (
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

struct Trigger {
    survey: String,
    event_type: String,
    opens_at: DateTime<Utc>,
    closes_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
}

impl Trigger {
    fn open_at(&self, t: DateTime<Utc>) -> bool {
        self.closed_at.is_none_or(|c| t < c) && self.opens_at <= t && t < self.closes_at
    }
}

impl Projection for SurveysProjection {
    type Window = ();
    const NAME: &'static str = paved_eventlog::readmodel::SURVEYS;
    const CONTEXT: Option<&'static str> = None;
    const TABLES: &'static [&'static str] =
        &["survey_surveys", "survey_responses", "survey_offers"];

    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[StoredCommit],
    ) -> Result<(), ProjectionError> {
        let rows: Vec<TriggerRow> = sqlx::query_as(
            "SELECT id, trigger, opens_at, closes_at, closed_at FROM survey_surveys
                  WHERE trigger IS NOT NULL",
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut triggers: Vec<Trigger> = rows
            .into_iter()
            .map(
                |(survey, event_type, opens_at, closes_at, closed_at)| Trigger {
                    survey,
                    event_type,
                    opens_at,
                    closes_at,
                    closed_at,
                },
            )
            .collect();
        for stored in batch {
            let c = &stored.commit;
            let seq = stored.sequence as i64;
            for event in &c.events {
                if let Event::Survey(e) = event {
                    apply_survey_event(
                        conn,
                        &self.keys,
                        c.aggregate_id.as_str(),
                        e,
                        c.occurred_at,
                        seq,
                        &mut triggers,
                    )
                    .await?;
                }
                if !is_person(&c.principal) {
                    continue;
                }
                let kind = event.type_name();
                for t in triggers
                    .iter()
                    .filter(|t| t.event_type == kind && t.open_at(c.occurred_at))
                {
                    sqlx::query(
                        "INSERT INTO survey_offers (survey, principal, offered_at, event_sequence)
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    )
                    .bind(&t.survey)
                    .bind(&c.principal)
                    .bind(c.occurred_at)
                    .bind(seq)
                    .execute(&mut *conn)
                    .await?;
                }
            }
        }
        Ok(())
    }
}

async fn apply_survey_event(
    conn: &mut PgConnection,
    keys: &SurveyKeys,
    survey: &str,
    e: &SurveyEvent,
    at: DateTime<Utc>,
    seq: i64,
    triggers: &mut Vec<Trigger>,
) -> Result<(), ProjectionError> {
    match e {
        SurveyEvent::Created { id, spec } => {
            let audience: Vec<String> = match &spec.audience {
                Audience::Everyone => Vec::new(),
                Audience::Teams(t) => t.iter().map(|t| t.to_string()).collect(),
            };
            sqlx::query(
                "INSERT INTO survey_surveys (id, title, nps_question, comment_question,
                        scale_questions, audience, opens_at, closes_at, trigger, created_at, last_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(id.as_str())
            .bind(&spec.title)
            .bind(&spec.nps_question)
            .bind(&spec.comment_question)
            .bind(serde_json::json!(spec.scale_questions))
            .bind(serde_json::json!(audience))
            .bind(spec.opens_at)
            .bind(spec.closes_at)
            .bind(&spec.trigger)
            .bind(at)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
            if let Some(t) = &spec.trigger {
                triggers.push(Trigger {
                    survey: id.to_string(),
                    event_type: t.clone(),
                    opens_at: spec.opens_at,
                    closes_at: spec.closes_at,
                    closed_at: None,
                });
            }
        }
        SurveyEvent::Closed { at: closed } => {
            sqlx::query(
                "UPDATE survey_surveys SET closed_at = $2, last_sequence = $3 WHERE id = $1",
            )
            .bind(survey)
            .bind(closed)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
            for t in triggers.iter_mut().filter(|t| t.survey == survey) {
                t.closed_at = Some(*closed);
            }
        }
        SurveyEvent::ResponseSubmitted {
            pseudonym, content, ..
        } => {
            let (team, answers) = match content {
                ResponseContent::Sealed(sealed) => {
                    keys.open(survey, sealed)
                        .map_err(|source| ProjectionError::Sealed {
                            sequence: seq as u64,
                            source,
                        })?
                }
                ResponseContent::Plain { team, answers } => (team.clone(), answers.clone()),
            };
            sqlx::query(
                "INSERT INTO survey_responses (survey, pseudonym, team, nps, comment, scales)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (survey, pseudonym) DO UPDATE SET
                   team = EXCLUDED.team, nps = EXCLUDED.nps, comment = EXCLUDED.comment,
                   scales = EXCLUDED.scales",
            )
            .bind(survey)
            .bind(pseudonym)
            .bind(team.as_ref().map(|t| t.to_string()))
            .bind(i16::from(answers.nps))
            .bind(&answers.comment)
            .bind(serde_json::json!(answers.scales))
            .execute(&mut *conn)
            .await?;
            sqlx::query("UPDATE survey_surveys SET last_sequence = $2 WHERE id = $1")
                .bind(survey)
                .bind(seq)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}
