//! Secrets Paved needs at start, and where they come from.

use anyhow::Context as _;
use paved_eventlog::SurveyKeys;
use sqlx::PgPool;

use crate::settings::Settings;

/// The shortest survey secret accepted.
pub const MIN_SURVEY_SECRET: usize = 16;

/// The survey secret: `PAVED_SURVEY_SECRET`, else `PAVED_SURVEY_SECRET_FILE`;
/// with neither, dev mode generates one into the database (with a warning:
/// the answers' key then sits beside the answers) and any other mode refuses.
pub async fn survey_keys(settings: &Settings, pool: &PgPool) -> anyhow::Result<SurveyKeys> {
    let configured = match (&settings.survey_secret, &settings.survey_secret_file) {
        (Some(s), _) if !s.is_empty() => Some(s.clone()),
        (_, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| {
                    format!("cannot read PAVED_SURVEY_SECRET_FILE {}", path.display())
                })?
                .trim()
                .to_owned(),
        ),
        _ => None,
    };
    match configured {
        Some(s) => {
            anyhow::ensure!(
                s.len() >= MIN_SURVEY_SECRET,
                "the survey secret must be at least {MIN_SURVEY_SECRET} bytes (e.g. `openssl rand -hex 32`)"
            );
            Ok(SurveyKeys::new(s.into_bytes()))
        }
        None if settings.dev => {
            tracing::warn!(
                "no PAVED_SURVEY_SECRET: using a survey secret generated into the database \
                 (dev mode only). Anyone who can read the database can then read survey \
                 answers and link them to people; set PAVED_SURVEY_SECRET or \
                 PAVED_SURVEY_SECRET_FILE in production"
            );
            Ok(SurveyKeys::new(
                paved_api::surveys::generated_survey_secret(pool).await?,
            ))
        }
        None => anyhow::bail!(
            "survey responses need a secret kept outside the database: set PAVED_SURVEY_SECRET \
             or PAVED_SURVEY_SECRET_FILE (only dev mode, PAVED_DEV=true, generates one)"
        ),
    }
}
