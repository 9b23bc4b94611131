//! Bearer-token authentication. Tokens live hashed (SHA-256) in `api_tokens`,
//! each with a principal and a role; a token itself is never stored or logged.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use paved_domain::{Name, Principal, Role};
use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use tonic::{Request, Status};

/// Tokens start with this, so they are easy to spot in a leaked file.
pub const TOKEN_PREFIX: &str = "pvd_";
/// How long a looked-up token is trusted before it is read again (revocation delay).
pub const CACHE_TTL: Duration = Duration::from_secs(10);

/// SHA-256 of a token, hex-encoded, as stored.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token: the prefix and 32 random bytes in hex.
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// Stores a new token for `principal` and returns it (the only time it is visible).
pub async fn create_token(pool: &PgPool, principal: &Principal) -> Result<String, sqlx::Error> {
    let token = generate_token();
    let team = match &principal.role {
        Role::Member { team } => Some(team.to_string()),
        _ => None,
    };
    sqlx::query(
        "INSERT INTO api_tokens (token_sha256, principal, role, team) VALUES ($1, $2, $3, $4)",
    )
    .bind(hash_token(&token))
    .bind(&principal.name)
    .bind(principal.role.as_str())
    .bind(team)
    .execute(pool)
    .await?;
    Ok(token)
}

/// Revokes every token of `principal`; returns how many.
pub async fn revoke_tokens(pool: &PgPool, principal: &str) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE api_tokens SET revoked_at = now() WHERE principal = $1 AND revoked_at IS NULL",
    )
    .bind(principal)
    .execute(pool)
    .await?;
    Ok(r.rows_affected())
}

/// Number of active tokens.
pub async fn count_tokens(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL")
        .fetch_one(pool)
        .await
}

/// Token hash → (principal, or `None` for an unknown token; when it was looked up).
type TokenCache = HashMap<String, (Option<Principal>, Instant)>;

/// Resolves bearer tokens to principals, with a short-lived cache.
#[derive(Clone)]
pub struct Authenticator {
    pool: PgPool,
    cache: Arc<RwLock<TokenCache>>,
}

impl Authenticator {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            cache: Arc::default(),
        }
    }

    /// The principal behind the request's `authorization: Bearer <token>`.
    pub async fn authenticate<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <token>"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(bearer)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Status::unauthenticated("authorization must be: Bearer <token>"))?;
        let hash = hash_token(token);
        if let Some(hit) = self.cached(&hash) {
            return hit.ok_or_else(bad_token);
        }
        let principal = self.lookup(&hash).await?;
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash, (principal.clone(), Instant::now()));
        principal.ok_or_else(bad_token)
    }

    /// Like [`Self::authenticate`], and the principal must be allowed to write.
    pub async fn authenticate_writer<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        let p = self.authenticate(request).await?;
        if p.may_write() {
            Ok(p)
        } else {
            Err(Status::permission_denied(format!(
                "{} is a reader and may not change anything",
                p.name
            )))
        }
    }

    fn cached(&self, hash: &str) -> Option<Option<Principal>> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        cache
            .get(hash)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(p, _)| p.clone())
    }

    async fn lookup(&self, hash: &str) -> Result<Option<Principal>, Status> {
        let row = sqlx::query(
            "SELECT principal, role, team FROM api_tokens WHERE token_sha256 = $1 AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(crate::error::database)?;
        let Some(row) = row else { return Ok(None) };
        let name: String = row.get("principal");
        let role: String = row.get("role");
        let team: Option<String> = row.get("team");
        let role = match (role.as_str(), team) {
            ("admin", _) => Role::Admin,
            ("reader", _) => Role::Reader,
            ("member", Some(team)) => match Name::parse(&team) {
                Ok(team) => Role::Member { team },
                Err(_) => return Ok(None),
            },
            _ => return Ok(None),
        };
        Ok(Some(Principal { name, role }))
    }
}

fn bad_token() -> Status {
    Status::unauthenticated("unknown or revoked token")
}

/// The token of an `Authorization` value: the scheme is case-insensitive
/// (RFC 7235 §2.1), then one or more spaces.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}
