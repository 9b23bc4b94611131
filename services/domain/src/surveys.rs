//! Developer surveys: an NPS question, optional free text and 1–5 scales,
//! for everyone or some teams, open for a while. Responses are anonymous:
//! the response event holds a pseudonym (a keyed hash of the person and the
//! survey, computed at the edge with a server secret) and the response's
//! content (team and answers) sealed with the survey's key, never who
//! answered nor anything a log reader can read. One response per pseudonym;
//! answering again changes the answer.
//!
//! Sealing is done by the caller (it holds the key); `decide` validates the
//! plain answers that travel beside the sealed bytes in the command, and the
//! event keeps only the sealed bytes. A command's `Debug` (its canonical
//! form, fingerprinted into the log) shows the sealed bytes only.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::aggregate::{Aggregate, AggregateKind, AggregateRef, Context, References};
use crate::catalog::{live_team, require_admin};
use crate::event::Event;
use crate::name::Name;
use crate::rejection::{Precondition, Rejection};
use crate::validate::Violations;

pub const MAX_SCALE_QUESTIONS: usize = 10;
pub const MAX_QUESTION: usize = 300;
pub const MAX_TITLE: usize = 200;
pub const MAX_COMMENT: usize = 2000;
pub const DEFAULT_NPS_QUESTION: &str =
    "How likely are you to recommend the platform to a colleague? (0-10)";

/// Who a survey is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    Everyone,
    Teams(BTreeSet<Name>),
}

/// What a survey asks and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SurveySpec {
    pub title: String,
    pub nps_question: String,
    /// The free-text question, if any.
    pub comment_question: Option<String>,
    /// Extra questions answered on a 1–5 scale.
    pub scale_questions: Vec<String>,
    pub audience: Audience,
    pub opens_at: DateTime<Utc>,
    pub closes_at: DateTime<Utc>,
    /// An event type (e.g. `ServiceRegistered`): the survey is offered to
    /// whoever causes such an event (a micro-survey after a golden path).
    pub trigger: Option<String>,
}

impl SurveySpec {
    fn validate(&self, now: DateTime<Utc>) -> Result<(), Rejection> {
        let mut v = Violations::new();
        if self.title.trim().is_empty() {
            v.push("title", "is required");
        }
        v.line("title", &self.title, MAX_TITLE);
        v.line("nps_question", &self.nps_question, MAX_QUESTION);
        if let Some(q) = &self.comment_question {
            v.line("comment_question", q, MAX_QUESTION);
        }
        if self.scale_questions.len() > MAX_SCALE_QUESTIONS {
            v.push(
                "scale_questions",
                format!("at most {MAX_SCALE_QUESTIONS} questions"),
            );
        }
        for (i, q) in self.scale_questions.iter().enumerate() {
            if q.trim().is_empty() {
                v.push(format!("scale_questions[{i}]"), "is empty");
            }
            v.line(&format!("scale_questions[{i}]"), q, MAX_QUESTION);
        }
        if let Audience::Teams(teams) = &self.audience
            && teams.is_empty()
        {
            v.push("audience", "name at least one team, or none for everyone");
        }
        if self.closes_at <= self.opens_at {
            v.push("closes_at", "must be after opens_at");
        } else if self.closes_at <= now {
            v.push("closes_at", "must be in the future");
        }
        if let Some(t) = &self.trigger
            && !Event::TYPE_NAMES.contains(&t.as_str())
        {
            v.push("trigger", format!("{t:?} is not an event type"));
        }
        v.finish()
    }
}

/// One person's answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answers {
    /// 0..=10.
    pub nps: u8,
    pub comment: String,
    /// One 1..=5 score per scale question, or none at all.
    pub scales: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Survey {
    pub id: Name,
    pub spec: SurveySpec,
    pub closed_at: Option<DateTime<Utc>>,
    /// Pseudonyms that answered (for nothing but the one-response rule).
    pub respondents: BTreeSet<String>,
}

/// A response as the respondent gave it, and the same sealed with the
/// survey's key (what the log keeps).
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub team: Option<Name>,
    pub answers: Answers,
    pub sealed: Vec<u8>,
}

/// Only the sealed bytes: the plain answers must reach neither logs nor the
/// command's fingerprint (a hash of few possible answers is no secret).
impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("sealed", &Hex(&self.sealed))
            .finish_non_exhaustive()
    }
}

struct Hex<'a>(&'a [u8]);

impl std::fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What a response event carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseContent {
    /// Team and answers sealed with the survey's key.
    Sealed(Vec<u8>),
    /// In the clear: responses recorded before sealing existed.
    Plain {
        team: Option<Name>,
        answers: Answers,
    },
}

impl Survey {
    /// Why it does not take answers at `now`, if it does not.
    pub fn not_open(&self, now: DateTime<Utc>) -> Option<&'static str> {
        if self.closed_at.is_some() {
            Some("closed early")
        } else if now < self.spec.opens_at {
            Some("not open yet")
        } else if now >= self.spec.closes_at {
            Some("closed")
        } else {
            None
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SurveyCommand {
    Create(SurveySpec),
    /// Close before `closes_at`.
    Close,
    /// Submit or change the answers of `pseudonym`.
    Respond {
        pseudonym: String,
        response: Response,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SurveyEvent {
    Created {
        id: Name,
        spec: SurveySpec,
    },
    Closed {
        at: DateTime<Utc>,
    },
    /// No principal: the pseudonym stands for the person (see module docs).
    ResponseSubmitted {
        pseudonym: String,
        content: ResponseContent,
        /// The pseudonym had answered before: this replaces that answer.
        replaces: bool,
    },
}

impl SurveyEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            SurveyEvent::Created { .. } => "SurveyCreated",
            SurveyEvent::Closed { .. } => "SurveyClosed",
            SurveyEvent::ResponseSubmitted { .. } => "SurveyResponseSubmitted",
        }
    }
}

impl Aggregate for Option<Survey> {
    const KIND: AggregateKind = AggregateKind::Survey;
    type Command = SurveyCommand;
    type Event = SurveyEvent;

    fn references(&self, command: &SurveyCommand, _loaded: &References) -> Vec<AggregateRef> {
        match command {
            SurveyCommand::Create(SurveySpec {
                audience: Audience::Teams(teams),
                ..
            }) => teams.iter().map(AggregateRef::team).collect(),
            _ => Vec::new(),
        }
    }

    fn decide(
        &self,
        command: &SurveyCommand,
        ctx: &Context<'_>,
    ) -> Result<Vec<SurveyEvent>, Rejection> {
        let me = ctx.id.to_string();
        match (self, command) {
            (_, SurveyCommand::Create(spec)) => {
                require_admin(ctx, "create surveys")?;
                spec.validate(ctx.now)?;
                if self.is_some() {
                    return Err(Rejection::AlreadyExists(format!("survey {me:?}")));
                }
                if let Audience::Teams(teams) = &spec.audience {
                    for t in teams {
                        live_team(ctx.refs, t)?;
                    }
                }
                Ok(vec![SurveyEvent::Created {
                    id: ctx.id.clone(),
                    spec: spec.clone(),
                }])
            }
            (None, _) => Err(Rejection::NotFound(format!("survey {me:?}"))),
            (Some(survey), SurveyCommand::Close) => {
                require_admin(ctx, "close surveys")?;
                if let Some(why) = survey.not_open(ctx.now).filter(|w| *w != "not open yet") {
                    return Err(Rejection::Precondition(Precondition::SurveyNotOpen {
                        survey: me,
                        why,
                    }));
                }
                Ok(vec![SurveyEvent::Closed { at: ctx.now }])
            }
            (
                Some(survey),
                SurveyCommand::Respond {
                    pseudonym,
                    response,
                },
            ) => {
                let (team, answers) = (&response.team, &response.answers);
                let mut v = Violations::new();
                if answers.nps > 10 {
                    v.push("nps", "must be 0..=10");
                }
                if !answers.scales.is_empty()
                    && answers.scales.len() != survey.spec.scale_questions.len()
                {
                    v.push(
                        "scales",
                        format!(
                            "answer all {} scale questions, or none",
                            survey.spec.scale_questions.len()
                        ),
                    );
                }
                for (i, s) in answers.scales.iter().enumerate() {
                    if !(1..=5).contains(s) {
                        v.push(format!("scales[{i}]"), "must be 1..=5");
                    }
                }
                if survey.spec.comment_question.is_none() && !answers.comment.is_empty() {
                    v.push("comment", "this survey asks no free-text question");
                }
                v.text("comment", &answers.comment, MAX_COMMENT);
                if pseudonym.is_empty() || pseudonym.len() > 128 {
                    v.push("pseudonym", "is missing");
                }
                if response.sealed.is_empty() {
                    v.push("sealed", "the response is not sealed");
                }
                v.finish()?;
                if let Some(why) = survey.not_open(ctx.now) {
                    return Err(Rejection::Precondition(Precondition::SurveyNotOpen {
                        survey: me,
                        why,
                    }));
                }
                if let Audience::Teams(teams) = &survey.spec.audience
                    && !team.as_ref().is_some_and(|t| teams.contains(t))
                {
                    return Err(Rejection::Precondition(Precondition::NotInAudience {
                        survey: me,
                        team: team.as_ref().map(Name::to_string).unwrap_or_default(),
                    }));
                }
                let replaces = survey.respondents.contains(pseudonym);
                Ok(vec![SurveyEvent::ResponseSubmitted {
                    pseudonym: pseudonym.clone(),
                    content: ResponseContent::Sealed(response.sealed.clone()),
                    replaces,
                }])
            }
        }
    }

    fn evolve(&mut self, event: &SurveyEvent) {
        match (self.as_mut(), event) {
            (_, SurveyEvent::Created { id, spec }) => {
                *self = Some(Survey {
                    id: id.clone(),
                    spec: spec.clone(),
                    closed_at: None,
                    respondents: BTreeSet::new(),
                });
            }
            (Some(s), SurveyEvent::Closed { at }) => s.closed_at = Some(*at),
            (Some(s), SurveyEvent::ResponseSubmitted { pseudonym, .. }) => {
                s.respondents.insert(pseudonym.clone());
            }
            (None, _) => {}
        }
    }

    fn select(event: &Event) -> Option<&SurveyEvent> {
        match event {
            Event::Survey(e) => Some(e),
            _ => None,
        }
    }
}

/// Survey results: NPS and mean maths, and which groups are too small to show.
pub mod results {
    use std::collections::BTreeMap;

    /// The smallest minimum group size the configuration may set.
    pub const MIN_GROUP_FLOOR: u32 = 3;
    /// The default minimum group size (k).
    pub const DEFAULT_MIN_GROUP: u32 = 5;
    /// The group of respondents who belong to no team.
    pub const NO_TEAM: &str = "(no team)";

    /// One stored response (anonymous).
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Response {
        pub team: Option<String>,
        pub nps: u8,
        pub comment: String,
        pub scales: Vec<u8>,
    }

    /// The figures of a group of responses; all zero and no comments when hidden.
    #[derive(Clone, Debug, Default, PartialEq)]
    pub struct Group {
        /// The team, "" for everyone, or [`NO_TEAM`].
        pub name: String,
        pub hidden: bool,
        pub responses: u32,
        pub promoters: u32,
        pub passives: u32,
        pub detractors: u32,
        /// % promoters (9–10) − % detractors (0–6), −100..=100.
        pub nps: f64,
        /// Mean score, 0..=10 (the seed's "3.2/10").
        pub mean: f64,
        /// Responses per score 0..=10.
        pub distribution: [u32; 11],
        pub scale_means: Vec<f64>,
        pub comments: Vec<String>,
    }

    /// The figures of `responses`, with `scales` scale questions.
    pub fn summarize(name: &str, responses: &[&Response], scales: usize) -> Group {
        let mut g = Group {
            name: name.to_owned(),
            responses: responses.len() as u32,
            scale_means: vec![0.0; scales],
            ..Group::default()
        };
        let mut scale_n = vec![0u32; scales];
        let mut sum = 0u32;
        for r in responses {
            let score = r.nps.min(10);
            g.distribution[score as usize] += 1;
            sum += u32::from(score);
            match score {
                9..=10 => g.promoters += 1,
                7..=8 => g.passives += 1,
                _ => g.detractors += 1,
            }
            for (i, s) in r.scales.iter().take(scales).enumerate() {
                g.scale_means[i] += f64::from(*s);
                scale_n[i] += 1;
            }
            if !r.comment.trim().is_empty() {
                g.comments.push(r.comment.clone());
            }
        }
        if g.responses > 0 {
            let n = f64::from(g.responses);
            g.nps = (f64::from(g.promoters) - f64::from(g.detractors)) * 100.0 / n;
            g.mean = f64::from(sum) / n;
        }
        for (m, n) in g.scale_means.iter_mut().zip(scale_n) {
            if n > 0 {
                *m /= f64::from(n);
            }
        }
        g
    }

    fn hide(g: &mut Group) {
        *g = Group {
            name: std::mem::take(&mut g.name),
            hidden: true,
            scale_means: vec![0.0; g.scale_means.len()],
            ..Group::default()
        };
    }

    /// The whole survey and its per-team breakdown, with every group of
    /// fewer than `k` responses hidden, and more groups hidden where the
    /// overall figures minus the shown groups would give a hidden group
    /// away: at least two groups and at least `k` responses stay hidden
    /// together, or none. Hidden groups' comments appear nowhere.
    pub fn results(responses: &[Response], scales: usize, k: u32) -> (Group, Vec<Group>) {
        let k = k.max(MIN_GROUP_FLOOR);
        let mut by_team: BTreeMap<&str, Vec<&Response>> = BTreeMap::new();
        for r in responses {
            by_team
                .entry(r.team.as_deref().unwrap_or(NO_TEAM))
                .or_default()
                .push(r);
        }
        let mut teams: Vec<Group> = by_team
            .iter()
            .map(|(name, rs)| summarize(name, rs, scales))
            .collect();
        let all: Vec<&Response> = responses.iter().collect();
        let mut overall = summarize("", &all, scales);

        let mut hidden: Vec<bool> = teams.iter().map(|g| g.responses < k).collect();
        loop {
            let count = hidden.iter().filter(|h| **h).count();
            let total: u32 = teams
                .iter()
                .zip(&hidden)
                .filter(|(_, h)| **h)
                .map(|(g, _)| g.responses)
                .sum();
            if count == 0 || (count >= 2 && total >= k) {
                break;
            }
            // Hide the smallest group still shown.
            let next = teams
                .iter()
                .enumerate()
                .filter(|(i, _)| !hidden[*i])
                .min_by_key(|(_, g)| g.responses)
                .map(|(i, _)| i);
            match next {
                Some(i) => hidden[i] = true,
                None => break,
            }
        }
        // Comments of hidden groups are left out of the overall list too.
        overall.comments = teams
            .iter()
            .zip(&hidden)
            .filter(|(_, h)| !**h)
            .flat_map(|(g, _)| g.comments.clone())
            .collect();
        for (g, h) in teams.iter_mut().zip(&hidden) {
            if *h {
                hide(g);
            }
        }
        if overall.responses < k {
            hide(&mut overall);
        }
        (overall, teams)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn r(team: &str, nps: u8) -> Response {
            Response {
                team: (!team.is_empty()).then(|| team.to_owned()),
                nps,
                comment: format!("{team} says {nps}"),
                scales: vec![],
            }
        }

        #[test]
        fn nps_and_mean_on_a_fixed_dataset() {
            // 4 promoters, 3 passives, 3 detractors.
            let scores = [10, 9, 9, 10, 8, 7, 7, 6, 0, 3];
            let rs: Vec<Response> = scores.iter().map(|s| r("a", *s)).collect();
            let all: Vec<&Response> = rs.iter().collect();
            let g = summarize("", &all, 0);
            assert_eq!((g.promoters, g.passives, g.detractors), (4, 3, 3));
            assert!((g.nps - 10.0).abs() < 1e-9, "40% - 30%");
            assert!((g.mean - 6.9).abs() < 1e-9);
            assert_eq!(g.distribution[7], 2);
            assert_eq!(g.distribution.iter().sum::<u32>(), 10);
        }

        #[test]
        fn the_seeds_baseline_mean() {
            // 3.2/10: the seed's "NPS" is a mean score.
            let rs: Vec<Response> = [2, 3, 4, 3, 4].iter().map(|s| r("a", *s)).collect();
            let all: Vec<&Response> = rs.iter().collect();
            let g = summarize("", &all, 0);
            assert!((g.mean - 3.2).abs() < 1e-9);
            assert!((g.nps + 100.0).abs() < 1e-9);
        }

        #[test]
        fn a_small_group_is_hidden_with_its_comments() {
            let mut rs: Vec<Response> = (0..6).map(|_| r("big", 9)).collect();
            rs.extend((0..5).map(|_| r("other", 7)));
            rs.extend((0..2).map(|_| r("tiny", 0)));
            let (overall, teams) = results(&rs, 0, 5);
            assert!(!overall.hidden);
            let tiny = teams.iter().find(|g| g.name == "tiny").unwrap();
            assert!(tiny.hidden && tiny.comments.is_empty() && tiny.responses == 0);
            assert!(!overall.comments.iter().any(|c| c.starts_with("tiny")));
        }

        #[test]
        fn subtraction_cannot_reveal_a_hidden_group() {
            // Overall − big − other would be exactly "tiny": so one more group hides.
            let mut rs: Vec<Response> = (0..8).map(|_| r("big", 9)).collect();
            rs.extend((0..6).map(|_| r("other", 7)));
            rs.extend((0..2).map(|_| r("tiny", 0)));
            let (overall, teams) = results(&rs, 0, 5);
            let shown: Vec<&str> = teams
                .iter()
                .filter(|g| !g.hidden)
                .map(|g| g.name.as_str())
                .collect();
            assert_eq!(shown, ["big"], "the smallest shown group hides with it");
            let hidden_total: u32 = rs.len() as u32 - 8;
            assert!(hidden_total >= 5);
            assert!(!overall.hidden);
        }

        #[test]
        fn two_small_groups_summing_below_k_pull_a_third() {
            let mut rs: Vec<Response> = (0..9).map(|_| r("big", 9)).collect();
            rs.extend((0..6).map(|_| r("mid", 7)));
            rs.extend((0..1).map(|_| r("x", 0)));
            rs.extend((0..2).map(|_| r("y", 0)));
            let (_, teams) = results(&rs, 0, 5);
            let hidden: Vec<&str> = teams
                .iter()
                .filter(|g| g.hidden)
                .map(|g| g.name.as_str())
                .collect();
            assert_eq!(hidden, ["mid", "x", "y"]);
        }

        #[test]
        fn too_few_responses_hide_everything() {
            let rs: Vec<Response> = (0..4).map(|_| r("a", 9)).collect();
            let (overall, teams) = results(&rs, 0, 5);
            assert!(overall.hidden && teams.iter().all(|g| g.hidden));
            assert!(overall.comments.is_empty());
        }

        #[test]
        fn k_never_goes_below_three() {
            let rs: Vec<Response> = (0..2).map(|_| r("a", 9)).collect();
            let (overall, _) = results(&rs, 0, 1);
            assert!(overall.hidden);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Team, TeamProfile};
    use crate::principal::Principal;
    use chrono::Duration;

    fn n(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn spec(audience: Audience) -> SurveySpec {
        SurveySpec {
            title: "Q4 developer experience".into(),
            nps_question: DEFAULT_NPS_QUESTION.into(),
            comment_question: Some("What should we fix first?".into()),
            scale_questions: vec!["Deploys are easy".into()],
            audience,
            opens_at: now() - Duration::hours(1),
            closes_at: now() + Duration::days(7),
            trigger: None,
        }
    }

    fn refs() -> References {
        let mut r = References::default();
        for t in ["payments", "search"] {
            r.insert_team(
                n(t),
                Some(Team {
                    name: n(t),
                    profile: TeamProfile::default(),
                    parent: None,
                    members: Default::default(),
                    retired: None,
                }),
            );
        }
        r
    }

    fn decide(
        state: &Option<Survey>,
        cmd: SurveyCommand,
        who: &Principal,
        at: DateTime<Utc>,
    ) -> Result<Vec<SurveyEvent>, Rejection> {
        let refs = refs();
        let id = n("q4");
        state.decide(
            &cmd,
            &Context {
                id: &id,
                principal: who,
                now: at,
                refs: &refs,
            },
        )
    }

    fn given(events: Vec<SurveyEvent>) -> Option<Survey> {
        let mut s = None;
        for e in &events {
            s.evolve(e);
        }
        s
    }

    fn created(audience: Audience) -> SurveyEvent {
        SurveyEvent::Created {
            id: n("q4"),
            spec: spec(audience),
        }
    }

    fn respond(pseudonym: &str, team: Option<&str>, nps: u8) -> SurveyCommand {
        SurveyCommand::Respond {
            pseudonym: pseudonym.into(),
            response: Response {
                team: team.map(n),
                answers: Answers {
                    nps,
                    comment: String::new(),
                    scales: vec![],
                },
                sealed: vec![0xaa, nps],
            },
        }
    }

    fn admin() -> Principal {
        Principal::admin("root")
    }

    #[test]
    fn only_admins_create_and_times_must_make_sense() {
        let member = Principal::member("bob", n("payments"));
        assert!(matches!(
            decide(
                &None,
                SurveyCommand::Create(spec(Audience::Everyone)),
                &member,
                now()
            ),
            Err(Rejection::PermissionDenied(_))
        ));
        let mut bad = spec(Audience::Everyone);
        bad.closes_at = bad.opens_at;
        bad.trigger = Some("NoSuchEvent".into());
        match decide(&None, SurveyCommand::Create(bad), &admin(), now()) {
            Err(Rejection::Invalid(v)) => {
                let fields: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
                assert_eq!(fields, ["closes_at", "trigger"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_first_answer_and_a_changed_answer() {
        let s = given(vec![created(Audience::Everyone)]);
        let e = decide(&s, respond("p1", None, 9), &admin(), now()).unwrap();
        assert!(matches!(
            &e[..],
            [SurveyEvent::ResponseSubmitted {
                replaces: false,
                ..
            }]
        ));
        let s = given(vec![created(Audience::Everyone), e[0].clone()]);
        let e = decide(&s, respond("p1", None, 3), &admin(), now()).unwrap();
        assert!(matches!(
            &e[..],
            [SurveyEvent::ResponseSubmitted { replaces: true, .. }]
        ));
    }

    #[test]
    fn the_event_and_the_commands_canonical_form_hold_only_the_sealed_bytes() {
        let s = given(vec![created(Audience::Everyone)]);
        let cmd = SurveyCommand::Respond {
            pseudonym: "p1".into(),
            response: Response {
                team: Some(n("payments")),
                answers: Answers {
                    nps: 7,
                    comment: "secret words".into(),
                    scales: vec![],
                },
                sealed: vec![0xde, 0xad],
            },
        };
        let shown = format!("{cmd:?}");
        assert!(!shown.contains("secret") && !shown.contains("payments") && !shown.contains("nps"));
        assert!(shown.contains("dead"));
        let e = decide(&s, cmd, &admin(), now()).unwrap();
        assert!(matches!(
            &e[..],
            [SurveyEvent::ResponseSubmitted { content: ResponseContent::Sealed(b), .. }] if b == &[0xde, 0xad]
        ));
    }

    #[test]
    fn scores_out_of_range_are_invalid() {
        let s = given(vec![created(Audience::Everyone)]);
        let cmd = SurveyCommand::Respond {
            pseudonym: "p".into(),
            response: Response {
                team: None,
                answers: Answers {
                    nps: 11,
                    comment: String::new(),
                    scales: vec![6],
                },
                sealed: vec![1],
            },
        };
        match decide(&s, cmd, &admin(), now()) {
            Err(Rejection::Invalid(v)) => {
                let fields: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
                assert_eq!(fields, ["nps", "scales[0]"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn closed_unknown_and_outside_the_audience_are_refused() {
        assert!(matches!(
            decide(&None, respond("p", None, 5), &admin(), now()),
            Err(Rejection::NotFound(_))
        ));
        let s = given(vec![created(Audience::Everyone)]);
        assert!(matches!(
            decide(
                &s,
                respond("p", None, 5),
                &admin(),
                now() + Duration::days(8)
            ),
            Err(Rejection::Precondition(Precondition::SurveyNotOpen { .. }))
        ));
        let s = given(vec![
            created(Audience::Everyone),
            SurveyEvent::Closed { at: now() },
        ]);
        assert!(matches!(
            decide(&s, respond("p", None, 5), &admin(), now()),
            Err(Rejection::Precondition(Precondition::SurveyNotOpen { .. }))
        ));
        let s = given(vec![created(Audience::Teams([n("payments")].into()))]);
        assert!(matches!(
            decide(&s, respond("p", Some("search"), 5), &admin(), now()),
            Err(Rejection::Precondition(Precondition::NotInAudience { .. }))
        ));
        assert!(decide(&s, respond("p", Some("payments"), 5), &admin(), now()).is_ok());
    }
}
