//! `paved.v1.SurveyService`: anonymous developer surveys.
//!
//! Anonymity is built at this edge: a response is stored under a pseudonym,
//! HMAC-SHA256(server secret, survey id, principal), which keeps one answer
//! per person per survey but cannot be linked across surveys, or back to a
//! person, without the secret; its team and answers are sealed with the
//! survey's key before they reach the log ([`SurveyKeys`]), so a log reader
//! sees neither. The commit of a response records the principal
//! `anonymous`, a command id derived the same way from the request id, no
//! correlation or causation ids and no trace context: the one exception to
//! "every event says who" (invariant 6), written down in the README. Only
//! the results, with their thresholds, come back out; comments in a random
//! order.

use chrono::Utc;
use paved_domain::surveys::results::{self, NO_TEAM, Response};
use paved_domain::surveys::{Answers, Response as SurveyResponse, Survey, SurveyCommand};
use paved_domain::validate::Violations;
use paved_domain::{Name, Principal, Role};
use paved_eventlog::codec::{survey_spec_from_proto, time_from_proto, timestamp};
use paved_eventlog::readmodel::SURVEYS;
use paved_eventlog::{CommandMeta, Executed, Executor, SurveyKeys, TraceContext};
use paved_proto::v1 as pb;
use pb::survey_service_server::SurveyService;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use tonic::{Request, Response as GrpcResponse, Status};

use crate::auth::Authenticator;
use crate::error;
use crate::freshness::Freshness;
use crate::metrics::CommandCounters;
use crate::request::{begin, recorded};

/// The principal recorded in the commit of every survey response.
pub const ANONYMOUS: &str = "anonymous";

/// The survey API. Cheap to clone.
#[derive(Clone)]
pub struct SurveyApi {
    executor: Executor,
    pool: PgPool,
    auth: Authenticator,
    freshness: Freshness,
    counters: CommandCounters,
    keys: SurveyKeys,
    min_group: u32,
}

/// The survey secret generated for development and kept in `api_secrets`
/// (created on first use). Only for dev mode: with the secret beside the
/// responses, whoever reads the database can link them to people.
pub async fn generated_survey_secret(pool: &PgPool) -> Result<Vec<u8>, sqlx::Error> {
    let fresh = crate::auth::generate_token();
    let secret: String = sqlx::query_scalar(
        "INSERT INTO api_secrets (name, value) VALUES ('survey', $1)
         ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING value",
    )
    .bind(fresh)
    .fetch_one(pool)
    .await?;
    Ok(secret.into_bytes())
}

type Reply<T> = Result<GrpcResponse<T>, Status>;

impl SurveyApi {
    pub fn new(
        executor: Executor,
        pool: PgPool,
        auth: Authenticator,
        freshness: Freshness,
        counters: CommandCounters,
        keys: SurveyKeys,
        min_group: u32,
    ) -> Self {
        Self {
            executor,
            pool,
            auth,
            freshness,
            counters,
            keys,
            min_group: min_group.max(results::MIN_GROUP_FLOOR),
        }
    }

    /// The respondent's pseudonym for one survey.
    pub fn pseudonym(&self, survey: &str, principal: &str) -> String {
        self.keys.pseudonym(survey, principal)
    }

    /// The respondent's team: the one their token acts for, else the first
    /// live catalog team listing them as a member.
    async fn team_of(&self, p: &Principal) -> Result<Option<Name>, Status> {
        if let Role::Member { team } = &p.role {
            return Ok(Some(team.clone()));
        }
        let team: Option<String> = sqlx::query_scalar(
            "SELECT name FROM catalog_teams WHERE retired_reason IS NULL AND members ? $1
              ORDER BY name LIMIT 1",
        )
        .bind(&p.name)
        .fetch_optional(&self.pool)
        .await
        .map_err(error::database)?;
        Ok(team.and_then(|t| Name::parse(&t).ok()))
    }

    async fn run(
        &self,
        v: Violations,
        id: Option<Name>,
        command: Option<SurveyCommand>,
        meta: &CommandMeta,
    ) -> Result<Executed, Status> {
        let done = crate::request::execute::<Option<Survey>>(
            &self.executor,
            &self.counters,
            v,
            id,
            command,
            meta,
        )
        .await?;
        Ok(done)
    }

    async fn reader<T>(
        &self,
        request: &Request<T>,
        min_sequence: u64,
    ) -> Result<Principal, Status> {
        let p = self.auth.authenticate(request).await?;
        self.freshness.wait_for(SURVEYS, min_sequence).await?;
        Ok(p)
    }

    async fn survey_rows(&self, filter: &str, bind: Option<&str>) -> Result<Vec<PgRow>, Status> {
        let sql = format!(
            "SELECT s.id, s.title, s.nps_question, s.comment_question, s.scale_questions,
                    s.audience, s.opens_at, s.closes_at, s.closed_at, s.trigger, s.last_sequence,
                    (SELECT count(*) FROM survey_responses r WHERE r.survey = s.id) AS responses
               FROM survey_surveys s {filter} ORDER BY s.opens_at, s.id"
        );
        let q = sqlx::query(sqlx::AssertSqlSafe(sql));
        let q = match bind {
            Some(b) => q.bind(b.to_owned()),
            None => q,
        };
        q.fetch_all(&self.pool).await.map_err(error::database)
    }

    /// Per-team and overall results of one survey.
    pub async fn results(&self, id: &str) -> Result<pb::SurveyResults, Status> {
        survey_results(&self.pool, id, self.min_group).await
    }
}

fn survey_from_row(r: &PgRow) -> Result<pb::Survey, Status> {
    let db = error::database;
    let audience: serde_json::Value = r.try_get("audience").map_err(db)?;
    let scales: serde_json::Value = r.try_get("scale_questions").map_err(db)?;
    let opens_at: chrono::DateTime<Utc> = r.try_get("opens_at").map_err(db)?;
    let closes_at: chrono::DateTime<Utc> = r.try_get("closes_at").map_err(db)?;
    let closed_at: Option<chrono::DateTime<Utc>> = r.try_get("closed_at").map_err(db)?;
    let now = Utc::now();
    Ok(pb::Survey {
        id: r.try_get("id").map_err(db)?,
        definition: Some(pb::SurveyDefinition {
            title: r.try_get("title").map_err(db)?,
            nps_question: r.try_get("nps_question").map_err(db)?,
            comment_question: r
                .try_get::<Option<String>, _>("comment_question")
                .map_err(db)?
                .unwrap_or_default(),
            scale_questions: serde_json::from_value(scales).unwrap_or_default(),
            audience: serde_json::from_value(audience).unwrap_or_default(),
            opens_at: Some(timestamp(opens_at)),
            closes_at: Some(timestamp(closes_at)),
            trigger: r
                .try_get::<Option<String>, _>("trigger")
                .map_err(db)?
                .unwrap_or_default(),
        }),
        open: closed_at.is_none() && opens_at <= now && now < closes_at,
        closed_at: closed_at.map(timestamp),
        responses: r.try_get::<i64, _>("responses").map_err(db)? as u32,
        sequence: r.try_get::<i64, _>("last_sequence").map_err(db)? as u64,
        offered: false,
    })
}

/// Comments in a random order: their order must not say who wrote which.
fn shuffled(mut comments: Vec<String>) -> Vec<String> {
    use rand::seq::SliceRandom;
    comments.shuffle(&mut rand::rng());
    comments
}

fn group_to_proto(g: results::Group, audience: u32) -> pb::GroupResults {
    let rate = if g.hidden || audience == 0 {
        0.0
    } else {
        f64::from(g.responses) * 100.0 / f64::from(audience)
    };
    pb::GroupResults {
        group: g.name,
        hidden: g.hidden,
        responses: g.responses,
        nps: g.nps,
        promoters: g.promoters,
        passives: g.passives,
        detractors: g.detractors,
        mean: g.mean,
        response_rate: rate,
        audience_size: if g.hidden { 0 } else { audience },
        distribution: if g.hidden {
            Vec::new()
        } else {
            g.distribution.to_vec()
        },
        scale_means: g.scale_means,
        comments: shuffled(g.comments),
    }
}

/// The results of one survey, small groups hidden (see [`results::results`]).
pub async fn survey_results(pool: &PgPool, id: &str, k: u32) -> Result<pb::SurveyResults, Status> {
    let db = error::database;
    let row: Option<(String, serde_json::Value, serde_json::Value)> =
        sqlx::query_as("SELECT title, scale_questions, audience FROM survey_surveys WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(db)?;
    let Some((title, scale_questions, audience)) = row else {
        return Err(error::not_found("survey", id));
    };
    let scales = scale_questions.as_array().map_or(0, Vec::len);
    let audience: Vec<String> = serde_json::from_value(audience).unwrap_or_default();
    let rows: Vec<(Option<String>, i16, String, serde_json::Value)> =
        sqlx::query_as("SELECT team, nps, comment, scales FROM survey_responses WHERE survey = $1")
            .bind(id)
            .fetch_all(pool)
            .await
            .map_err(db)?;
    let responses: Vec<Response> = rows
        .into_iter()
        .map(|(team, nps, comment, s)| Response {
            team,
            nps: nps.clamp(0, 10) as u8,
            comment,
            scales: serde_json::from_value(s).unwrap_or_default(),
        })
        .collect();
    // Team sizes from the catalog: the audience a response rate is measured against.
    let sizes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT name, jsonb_array_length(members)::bigint FROM catalog_teams WHERE retired_reason IS NULL",
    )
    .fetch_all(pool)
    .await
    .map_err(db)?;
    let everyone: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT m) FROM catalog_teams t, jsonb_array_elements_text(t.members) m
          WHERE t.retired_reason IS NULL AND ($1::text[] = '{}' OR t.name = ANY($1))",
    )
    .bind(&audience)
    .fetch_one(pool)
    .await
    .map_err(db)?;
    let (overall, teams) = results::results(&responses, scales, k);
    let size_of = |team: &str| {
        sizes
            .iter()
            .find(|(n, _)| n == team)
            .map_or(0, |(_, s)| *s as u32)
    };
    Ok(pb::SurveyResults {
        survey: id.to_owned(),
        title,
        min_group_size: k,
        overall: Some(group_to_proto(overall, everyone as u32)),
        teams: teams
            .into_iter()
            .map(|g| {
                let size = if g.name == NO_TEAM {
                    0
                } else {
                    size_of(&g.name)
                };
                group_to_proto(g, size)
            })
            .collect(),
    })
}

#[tonic::async_trait]
impl SurveyService for SurveyApi {
    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "CreateSurvey"),
        err(level = "info")
    )]
    async fn create_survey(
        &self,
        request: Request<pb::CreateSurveyRequest>,
    ) -> Reply<pb::CreateSurveyResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("id", &r.id);
        let spec = survey_spec_from_proto(&mut v, "definition.", r.definition.as_ref());
        let done = self
            .run(v, id, spec.map(SurveyCommand::Create), &meta)
            .await?;
        Ok(GrpcResponse::new(recorded(done)))
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "CloseSurvey"),
        err(level = "info")
    )]
    async fn close_survey(
        &self,
        request: Request<pb::CloseSurveyRequest>,
    ) -> Reply<pb::CloseSurveyResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("id", &r.id);
        let done = self.run(v, id, Some(SurveyCommand::Close), &meta).await?;
        Ok(GrpcResponse::new(recorded(done)))
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "SubmitResponse"),
        err(level = "info")
    )]
    async fn submit_response(
        &self,
        request: Request<pb::SubmitResponseRequest>,
    ) -> Reply<pb::SubmitResponseResponse> {
        let (meta, r, mut v) = begin(&self.auth, request).await?;
        let id = v.name("survey", &r.survey);
        let nps = u8::try_from(r.nps).unwrap_or(u8::MAX);
        let scales: Vec<u8> = r
            .scales
            .iter()
            .map(|s| u8::try_from(*s).unwrap_or(u8::MAX))
            .collect();
        let team = self.team_of(&meta.principal).await?;
        let who = meta.principal.name.clone();
        // The commit must not point back at the person (see module docs).
        let command_id = format!(
            "response-{}",
            self.keys.keyed(&["request", &who, &meta.command_id])
        );
        let anonymous = CommandMeta {
            command_id: command_id.clone(),
            principal: Principal {
                name: ANONYMOUS.to_owned(),
                role: meta.principal.role.clone(),
            },
            correlation_id: String::new(),
            causation_id: String::new(),
            reason: String::new(),
            trace: TraceContext::default(),
            now: meta.now,
            expected_version: None,
            sent_at: meta.sent_at,
            untraced: true,
        };
        let command = id.as_ref().map(|id| {
            let answers = Answers {
                nps,
                comment: r.comment,
                scales,
            };
            let sealed = self
                .keys
                .seal(id.as_str(), &command_id, team.as_ref(), &answers);
            SurveyCommand::Respond {
                pseudonym: self.pseudonym(id.as_str(), &who),
                response: SurveyResponse {
                    team,
                    answers,
                    sealed,
                },
            }
        });
        let done = self.run(v, id, command, &anonymous).await?;
        Ok(GrpcResponse::new(recorded(done)))
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "GetSurvey"),
        err(level = "info")
    )]
    async fn get_survey(
        &self,
        request: Request<pb::GetSurveyRequest>,
    ) -> Reply<pb::GetSurveyResponse> {
        self.reader(&request, request.get_ref().min_sequence)
            .await?;
        let rows = self
            .survey_rows("WHERE s.id = $1", Some(&request.get_ref().id))
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| error::not_found("survey", &request.get_ref().id))?;
        survey_from_row(row).map(|survey| {
            GrpcResponse::new(pb::GetSurveyResponse {
                survey: Some(survey),
            })
        })
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "ListSurveys"),
        err(level = "info")
    )]
    async fn list_surveys(
        &self,
        request: Request<pb::ListSurveysRequest>,
    ) -> Reply<pb::ListSurveysResponse> {
        self.reader(&request, request.get_ref().min_sequence)
            .await?;
        let mut surveys = self
            .survey_rows("", None)
            .await?
            .iter()
            .map(survey_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if request.get_ref().open_only {
            surveys.retain(|s| s.open);
        }
        Ok(GrpcResponse::new(pb::ListSurveysResponse { surveys }))
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "ListMySurveys"),
        err(level = "info")
    )]
    async fn list_my_surveys(
        &self,
        request: Request<pb::ListMySurveysRequest>,
    ) -> Reply<pb::ListMySurveysResponse> {
        let me = self
            .reader(&request, request.get_ref().min_sequence)
            .await?;
        let team = self.team_of(&me).await?.map(|t| t.to_string());
        let offered: Vec<String> =
            sqlx::query_scalar("SELECT survey FROM survey_offers WHERE principal = $1")
                .bind(&me.name)
                .fetch_all(&self.pool)
                .await
                .map_err(error::database)?;
        let mut out = Vec::new();
        for row in self.survey_rows("", None).await? {
            let mut s = survey_from_row(&row)?;
            let def = s.definition.clone().unwrap_or_default();
            s.offered = offered.contains(&s.id);
            let for_me = if def.trigger.is_empty() {
                def.audience.is_empty() || team.as_ref().is_some_and(|t| def.audience.contains(t))
            } else {
                s.offered
            };
            if !s.open || !for_me {
                continue;
            }
            let answered: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM survey_responses WHERE survey = $1 AND pseudonym = $2)",
            )
            .bind(&s.id)
            .bind(self.pseudonym(&s.id, &me.name))
            .fetch_one(&self.pool)
            .await
            .map_err(error::database)?;
            if !answered {
                out.push(s);
            }
        }
        Ok(GrpcResponse::new(pb::ListMySurveysResponse {
            surveys: out,
        }))
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "GetSurveyResults"),
        err(level = "info")
    )]
    async fn get_survey_results(
        &self,
        request: Request<pb::GetSurveyResultsRequest>,
    ) -> Reply<pb::GetSurveyResultsResponse> {
        self.reader(&request, request.get_ref().min_sequence)
            .await?;
        let results = self.results(&request.get_ref().id).await?;
        Ok(GrpcResponse::new(pb::GetSurveyResultsResponse {
            results: Some(results),
        }))
    }

    #[tracing::instrument(
        name = "handle",
        skip_all,
        fields(rpc = "GetSurveyTrend"),
        err(level = "info")
    )]
    async fn get_survey_trend(
        &self,
        request: Request<pb::GetSurveyTrendRequest>,
    ) -> Reply<pb::GetSurveyTrendResponse> {
        self.reader(&request, request.get_ref().min_sequence)
            .await?;
        let mut points = Vec::new();
        for row in self.survey_rows("", None).await? {
            let s = survey_from_row(&row)?;
            let def = s.definition.unwrap_or_default();
            if !def.trigger.is_empty() && !request.get_ref().include_triggered {
                continue;
            }
            let r = self.results(&s.id).await?;
            let o = r.overall.unwrap_or_default();
            points.push(pb::TrendPoint {
                survey: s.id,
                title: def.title,
                opens_at: def.opens_at,
                responses: o.responses,
                hidden: o.hidden,
                nps: o.nps,
                mean: o.mean,
            });
        }
        points.sort_by_key(|p| time_from_proto(p.opens_at.as_ref()));
        Ok(GrpcResponse::new(pb::GetSurveyTrendResponse {
            trend: Some(pb::SurveyTrend { points }),
        }))
    }
}
