//! Client verbs for developer surveys: `paved survey …`.

use chrono::{DateTime, Duration, Utc};
use paved_eventlog::codec::{time_from_proto, timestamp};
use paved_sdk::pb;

use super::catalog::ClientArgs;
use super::output::{self, Output};

#[derive(clap::Args, Debug)]
pub struct SurveyArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: SurveyCommand,
}

#[derive(clap::Subcommand, Debug)]
enum SurveyCommand {
    /// Create a survey (admins).
    Create {
        /// DNS-label id, e.g. devex-2026-q4.
        id: String,
        /// Title shown to respondents.
        #[arg(long)]
        title: String,
        /// The 0-10 question (default: would you recommend the platform).
        #[arg(long, default_value = "")]
        question: String,
        /// A free-text question.
        #[arg(long, default_value = "")]
        comment_question: String,
        /// A 1-5 scale question; repeatable.
        #[arg(long = "scale")]
        scales: Vec<String>,
        /// A team in the audience; repeatable; none means everyone.
        #[arg(long = "team")]
        teams: Vec<String>,
        /// When it opens (RFC 3339); default now.
        #[arg(long)]
        opens: Option<DateTime<Utc>>,
        /// How long it stays open: 30m, 12h, 7d.
        #[arg(long = "for", default_value = "7d", value_parser = duration)]
        open_for: Duration,
        /// Offer it to whoever causes this event type (a micro-survey).
        #[arg(long, default_value = "")]
        trigger: String,
    },
    /// List surveys.
    List {
        /// Only surveys open now.
        #[arg(long)]
        open: bool,
    },
    /// Open surveys you have not answered yet.
    Mine,
    /// Close a survey before its end (admins).
    Close {
        /// The survey's id.
        id: String,
    },
    /// Answer a survey (anonymously); answering again changes your answer.
    Answer {
        /// The survey's id.
        id: String,
        /// 0-10.
        #[arg(long)]
        score: u32,
        /// Answer to the free-text question.
        #[arg(long, default_value = "")]
        comment: String,
        /// 1-5, one per scale question, in order; repeatable.
        #[arg(long = "scale")]
        scales: Vec<u32>,
    },
    /// Results: NPS, mean, response rate, per team, with a chart.
    Results {
        /// The survey's id.
        id: String,
    },
    /// NPS and mean across successive surveys.
    Trend {
        /// Include micro-surveys (those with a --trigger).
        #[arg(long)]
        include_triggered: bool,
    },
}

fn duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n
        .parse()
        .map_err(|_| format!("{s:?}: use 30m, 12h or 7d"))?;
    match unit {
        "m" => Ok(Duration::minutes(n)),
        "h" => Ok(Duration::hours(n)),
        "d" => Ok(Duration::days(n)),
        _ => Err(format!("{s:?}: use 30m, 12h or 7d")),
    }
}

fn when(t: Option<&paved_proto::wkt::Timestamp>) -> String {
    time_from_proto(t)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

fn print_surveys(out: Output, surveys: &[pb::Survey]) -> anyhow::Result<()> {
    match out {
        Output::Json | Output::Jsonl => output::json(&surveys),
        Output::Table => {
            let rows: Vec<Vec<String>> = surveys
                .iter()
                .map(|s| {
                    let d = s.definition.clone().unwrap_or_default();
                    vec![
                        s.id.clone(),
                        d.title,
                        if s.open {
                            "open".into()
                        } else {
                            "closed".into()
                        },
                        when(d.opens_at.as_ref()),
                        when(d.closes_at.as_ref()),
                        s.responses.to_string(),
                        if d.audience.is_empty() {
                            "everyone".into()
                        } else {
                            d.audience.join(",")
                        },
                        d.trigger,
                    ]
                })
                .collect();
            output::table(
                &[
                    "ID",
                    "TITLE",
                    "STATE",
                    "OPENS",
                    "CLOSES",
                    "RESPONSES",
                    "AUDIENCE",
                    "TRIGGER",
                ],
                &rows,
            );
            Ok(())
        }
    }
}

/// `#####     ` scaled to `width` for `n` of `max`.
fn bar(n: u32, max: u32, width: usize) -> String {
    let filled = if max == 0 {
        0
    } else {
        (n as usize * width).div_ceil(max as usize)
    };
    format!(
        "{}{}",
        "#".repeat(filled),
        " ".repeat(width - filled.min(width))
    )
}

fn print_results(r: &pb::SurveyResults, scale_questions: &[String]) {
    println!(
        "{} ({}); groups under {} responses are hidden",
        r.title, r.survey, r.min_group_size
    );
    let o = r.overall.clone().unwrap_or_default();
    if o.hidden {
        println!("\nnot enough responses to show anything yet");
        return;
    }
    println!(
        "\nNPS {:+.0}  mean {:.1}/10  responses {}  response rate {:.0}% of {}",
        o.nps, o.mean, o.responses, o.response_rate, o.audience_size
    );
    println!(
        "promoters {}  passives {}  detractors {}\n",
        o.promoters, o.passives, o.detractors
    );
    let max = o.distribution.iter().copied().max().unwrap_or(0);
    for (score, n) in o.distribution.iter().enumerate() {
        println!("{score:>3} | {} {n}", bar(*n, max, 40));
    }
    // One line per 1-5 scale question: its mean over the answers to it.
    if !scale_questions.is_empty() {
        println!();
        let width = scale_questions
            .iter()
            .map(|q| q.chars().count())
            .max()
            .unwrap_or(0);
        for (i, q) in scale_questions.iter().enumerate() {
            match o.scale_means.get(i) {
                Some(m) if *m > 0.0 => {
                    println!("{q:<width$}  {m:.1}/5  {}", bar((*m * 10.0) as u32, 50, 20))
                }
                _ => println!("{q:<width$}  no answers"),
            }
        }
    }
    println!();
    let rows: Vec<Vec<String>> = r
        .teams
        .iter()
        .map(|g| {
            if g.hidden {
                vec![
                    g.group.clone(),
                    "hidden".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]
            } else {
                vec![
                    g.group.clone(),
                    g.responses.to_string(),
                    format!("{:+.0}", g.nps),
                    format!("{:.1}", g.mean),
                    if g.audience_size > 0 {
                        format!("{:.0}%", g.response_rate)
                    } else {
                        String::new()
                    },
                ]
            }
        })
        .collect();
    output::table(&["TEAM", "RESPONSES", "NPS", "MEAN", "RATE"], &rows);
    if !o.comments.is_empty() {
        println!("\ncomments:");
        for c in &o.comments {
            println!("  - {c}");
        }
    }
}

pub async fn survey(a: SurveyArgs) -> anyhow::Result<()> {
    let out = a.client.output;
    let client = a.client.connect().await?;
    match a.command {
        SurveyCommand::Create {
            id,
            title,
            question,
            comment_question,
            scales,
            teams,
            opens,
            open_for,
            trigger,
        } => {
            let opens = opens.unwrap_or_else(Utc::now);
            let r = client
                .create_survey(pb::CreateSurveyRequest {
                    id: id.clone(),
                    definition: Some(pb::SurveyDefinition {
                        title,
                        nps_question: question,
                        comment_question,
                        scale_questions: scales,
                        audience: teams,
                        opens_at: Some(timestamp(opens)),
                        closes_at: Some(timestamp(opens + open_for)),
                        trigger,
                    }),
                    ..Default::default()
                })
                .await
                .map_err(super::catalog::explain)?;
            report(out, &format!("created survey {id}"), &r)
        }
        SurveyCommand::List { open } => {
            let surveys = client.at(0).list_surveys(open).await?;
            print_surveys(out, &surveys)
        }
        SurveyCommand::Mine => {
            let surveys = client.at(0).my_surveys().await?;
            print_surveys(out, &surveys)
        }
        SurveyCommand::Close { id } => {
            let r = client
                .close_survey(pb::CloseSurveyRequest {
                    id: id.clone(),
                    ..Default::default()
                })
                .await?;
            report(out, &format!("closed survey {id}"), &r)
        }
        SurveyCommand::Answer {
            id,
            score,
            comment,
            scales,
        } => {
            let r = client
                .submit_response(pb::SubmitResponseRequest {
                    survey: id.clone(),
                    nps: score,
                    comment,
                    scales,
                    ..Default::default()
                })
                .await
                .map_err(super::catalog::explain)?;
            report(out, &format!("answered {id} (anonymously)"), &r)
        }
        SurveyCommand::Results { id } => {
            let r = client.at(0).survey_results(&id).await?;
            match out {
                Output::Json | Output::Jsonl => output::json(&r),
                Output::Table => {
                    let survey = client.at(0).get_survey(&id).await?;
                    let questions = survey
                        .definition
                        .map(|d| d.scale_questions)
                        .unwrap_or_default();
                    print_results(&r, &questions);
                    Ok(())
                }
            }
        }
        SurveyCommand::Trend { include_triggered } => {
            let t = client.at(0).survey_trend(include_triggered).await?;
            match out {
                Output::Json | Output::Jsonl => output::json(&t),
                Output::Table => {
                    let rows: Vec<Vec<String>> = t
                        .points
                        .iter()
                        .map(|p| {
                            vec![
                                when(p.opens_at.as_ref()),
                                p.survey.clone(),
                                p.responses.to_string(),
                                if p.hidden {
                                    "hidden".into()
                                } else {
                                    format!("{:+.0}", p.nps)
                                },
                                if p.hidden {
                                    String::new()
                                } else {
                                    format!("{:.1}", p.mean)
                                },
                                if p.hidden {
                                    String::new()
                                } else {
                                    bar((p.mean * 10.0) as u32, 100, 20)
                                },
                            ]
                        })
                        .collect();
                    output::table(
                        &["OPENS", "SURVEY", "RESPONSES", "NPS", "MEAN", "MEAN /10"],
                        &rows,
                    );
                    Ok(())
                }
            }
        }
    }
}

fn report(out: Output, what: &str, r: &impl output::Answer) -> anyhow::Result<()> {
    match out {
        Output::Json | Output::Jsonl => output::json(r),
        Output::Table => {
            println!("{what}: sequence {}", r.recorded().0);
            Ok(())
        }
    }
}
