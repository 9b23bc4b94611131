//! Secrets Paved needs, and where they come from; and what operator verbs
//! open. `serve` creates what is missing (the database, the stream, a
//! generated audit key); an operator verb (`token`, `replay`, `audit`,
//! `projection`) only opens what exists and names what it did not find, so
//! a mistyped URL or stream never yields a new empty database, stream or key.

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

/// The database of `url`, which must exist and be migrated.
pub async fn existing_database(url: &str) -> anyhow::Result<PgPool> {
    use sqlx::ConnectOptions;
    use std::str::FromStr;
    let options = sqlx::postgres::PgConnectOptions::from_str(url)?;
    let name = options.get_database().unwrap_or("postgres").to_owned();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_with(options.disable_statement_logging())
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.code().as_deref() == Some(INVALID_CATALOG_NAME) => {
                anyhow::anyhow!(
                    "database {name:?} does not exist (is PAVED_DATABASE_URL right? `paved serve` creates it)"
                )
            }
            _ => anyhow::Error::new(e).context(format!("cannot connect to database {name:?}")),
        })?;
    let migrated = paved_eventlog::checkpoints::schema_present(&pool).await?;
    anyhow::ensure!(
        migrated,
        "database {name:?} holds no Paved schema (is PAVED_DATABASE_URL right? `paved migrate` creates it)"
    );
    Ok(pool)
}

/// SQLSTATE `invalid_catalog_name`: the database does not exist.
const INVALID_CATALOG_NAME: &str = "3D000";

/// The log's stream, which must exist.
pub async fn existing_log(settings: &Settings) -> anyhow::Result<paved_eventlog::EventLog> {
    let nats = settings.connect_nats().await?;
    Ok(paved_eventlog::EventLog::open_existing(nats, settings.log_config()).await?)
}

/// The audit signing key: `PAVED_AUDIT_SIGNING_KEY`, else the one `serve`
/// generated into `api_secrets`. Never generated here.
pub async fn existing_signing_key(
    settings: &Settings,
    pool: Option<&PgPool>,
) -> anyhow::Result<paved_eventlog::audit::SigningKey> {
    if let Some(seed) = settings
        .audit_signing_key
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        return Ok(paved_eventlog::audit::SigningKey::from_hex(seed)?);
    }
    let pool = match pool {
        Some(p) => p.clone(),
        None => existing_database(&settings.database_url)
            .await
            .context("no PAVED_AUDIT_SIGNING_KEY, and no database holding a generated one")?,
    };
    let seed: Option<String> =
        sqlx::query_scalar("SELECT value FROM api_secrets WHERE name = 'audit_signing_key'")
            .fetch_optional(&pool)
            .await?;
    let seed = seed.context(
        "no PAVED_AUDIT_SIGNING_KEY, and the database holds no generated one (has `paved serve` run on it?)",
    )?;
    Ok(paved_eventlog::audit::SigningKey::from_hex(&seed)?)
}

/// The keys whose signatures (checkpoints, quarantines) are trusted: the
/// signing key's, `PAVED_AUDIT_TRUSTED_KEYS`, and `extra`.
pub fn trusted_keys(
    settings: &Settings,
    signing: Option<&paved_eventlog::audit::SigningKey>,
    extra: &[String],
) -> anyhow::Result<paved_eventlog::audit::TrustedKeys> {
    let mut keys = paved_eventlog::audit::TrustedKeys::default();
    for k in settings
        .audit_trusted_keys
        .iter()
        .chain(extra)
        .filter(|k| !k.trim().is_empty())
    {
        keys.add_hex(k)?;
    }
    if let Some(k) = signing {
        keys.add(k.verifying_key());
    }
    Ok(keys)
}

/// The survey secret for an operator verb: configured, or the one `serve`
/// generated into the database in dev mode. Never generated here: a new
/// secret would open none of the sealed responses.
pub async fn existing_survey_keys(
    settings: &Settings,
    pool: &PgPool,
) -> anyhow::Result<SurveyKeys> {
    if settings
        .survey_secret
        .as_deref()
        .is_some_and(|s| !s.is_empty())
        || settings.survey_secret_file.is_some()
    {
        return survey_keys(settings, pool).await;
    }
    let secret: Option<String> =
        sqlx::query_scalar("SELECT value FROM api_secrets WHERE name = 'survey'")
            .fetch_optional(pool)
            .await?;
    let secret = secret.context(
        "no PAVED_SURVEY_SECRET, and the database holds no generated one: give the secret `paved serve` runs with",
    )?;
    Ok(SurveyKeys::new(secret.into_bytes()))
}
