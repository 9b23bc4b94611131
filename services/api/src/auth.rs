//! Bearer-token authentication. People's tokens live hashed (SHA-256) in
//! `api_tokens`, each with a principal and a role; plugin tokens in
//! `plugin_tokens`, each tied to an installation whose grant (read from the
//! plugins read model at every call) says what it may do. A token itself is
//! never stored or logged. The result is a [`Caller`]: the principal the
//! domain sees and the scopes [`crate::access`] checks.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use paved_domain::{Name, Principal, Role, Scope};
use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use tonic::{Request, Status};
use tonic_types::StatusExt;

/// Tokens start with this, so they are easy to spot in a leaked file.
pub const TOKEN_PREFIX: &str = "pvd_";
/// Plugin tokens start with this.
pub const PLUGIN_TOKEN_PREFIX: &str = "pvp_";

/// Who calls, as authenticated: the principal the domain sees and, for a
/// plugin, the installation's grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    /// `Some` for a plugin token: its installation and granted scopes.
    pub plugin: Option<PluginGrant>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginGrant {
    pub installation: Name,
    pub scopes: BTreeSet<Scope>,
}

impl Caller {
    /// May the caller use `scope`? A person by their role, a plugin by its grant.
    pub fn allows(&self, scope: Scope) -> bool {
        match &self.plugin {
            Some(g) => g.scopes.contains(&scope),
            None => self.principal.role.allows(scope),
        }
    }

    /// The log's contexts the caller may read events of (`events:read:<context>`).
    pub fn event_contexts(&self) -> BTreeSet<&'static str> {
        paved_domain::scope::EVENT_CONTEXTS
            .into_iter()
            .filter(|c| self.allows(Scope::Events(c)))
            .collect()
    }
}
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

/// Issues a token for `installation` under `request_key`
/// (`<installation>/<request id>`): a retry of the same request replaces
/// the token it issued before (whose answer may never have arrived).
pub async fn issue_plugin_token(
    pool: &PgPool,
    installation: &Name,
    request_key: &str,
) -> Result<String, sqlx::Error> {
    let bytes: [u8; 32] = rand::rng().random();
    let token = format!("{PLUGIN_TOKEN_PREFIX}{}", hex::encode(bytes));
    sqlx::query(
        "INSERT INTO plugin_tokens (token_sha256, installation, request_key) VALUES ($1, $2, $3)
         ON CONFLICT (request_key) DO UPDATE SET token_sha256 = EXCLUDED.token_sha256,
                created_at = now()
          WHERE plugin_tokens.installation = EXCLUDED.installation",
    )
    .bind(hash_token(&token))
    .bind(installation.as_str())
    .bind(request_key)
    .execute(pool)
    .await?;
    Ok(token)
}

/// A rotation: the installation's other tokens stop after `overlap` (or at
/// once), then a new one is issued. Returns it and when the others stop.
pub async fn rotate_plugin_token(
    pool: &PgPool,
    installation: &Name,
    request_key: &str,
    overlap: Duration,
) -> Result<(String, chrono::DateTime<chrono::Utc>), sqlx::Error> {
    let until = chrono::Utc::now() + chrono::Duration::from_std(overlap).unwrap_or_default();
    sqlx::query(
        "UPDATE plugin_tokens SET expires_at = LEAST(COALESCE(expires_at, $2), $2)
          WHERE installation = $1 AND request_key <> $3 AND revoked_at IS NULL",
    )
    .bind(installation.as_str())
    .bind(until)
    .bind(request_key)
    .execute(pool)
    .await?;
    let token = issue_plugin_token(pool, installation, request_key).await?;
    Ok((token, until))
}

/// Issues a webhook secret (`whsec_` and 32 random bytes in base64, as
/// Standard Webhooks has it) for `installation` under `request_key`; a
/// retry replaces the one it issued before.
pub async fn issue_webhook_secret(
    pool: &PgPool,
    installation: &Name,
    request_key: &str,
) -> Result<String, sqlx::Error> {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::rng().random();
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    );
    sqlx::query(
        "INSERT INTO plugin_webhook_secrets (installation, secret, request_key) VALUES ($1, $2, $3)
         ON CONFLICT (request_key) DO UPDATE SET secret = EXCLUDED.secret, created_at = now()
          WHERE plugin_webhook_secrets.installation = EXCLUDED.installation",
    )
    .bind(installation.as_str())
    .bind(&secret)
    .bind(request_key)
    .execute(pool)
    .await?;
    Ok(secret)
}

/// A webhook secret's rotation: the others stop at `until`, a new one is issued.
pub async fn rotate_webhook_secret(
    pool: &PgPool,
    installation: &Name,
    request_key: &str,
    until: chrono::DateTime<chrono::Utc>,
) -> Result<String, sqlx::Error> {
    sqlx::query(
        "UPDATE plugin_webhook_secrets SET expires_at = LEAST(COALESCE(expires_at, $2), $2)
          WHERE installation = $1 AND request_key <> $3 AND revoked_at IS NULL",
    )
    .bind(installation.as_str())
    .bind(until)
    .bind(request_key)
    .execute(pool)
    .await?;
    issue_webhook_secret(pool, installation, request_key).await
}

/// Revokes every token of an installation; returns how many.
pub async fn revoke_plugin_tokens(pool: &PgPool, installation: &Name) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE plugin_tokens SET revoked_at = now() WHERE installation = $1 AND revoked_at IS NULL",
    )
    .bind(installation.as_str())
    .execute(pool)
    .await?;
    Ok(r.rows_affected())
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

/// Has any token ever been issued (revoked ones included)? Dev mode prints
/// an admin token only into a token table that was never used: revoking
/// every admin token must not make the next start print a fresh one.
pub async fn any_token_issued(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM api_tokens)")
        .fetch_one(pool)
        .await
}

/// Valid tokens remembered (the least recently used go first).
pub const CACHE_CAPACITY: usize = 10_000;
/// Unknown tokens remembered, apart from the valid ones so that a flood of
/// random tokens cannot push them out.
pub const NEGATIVE_CAPACITY: usize = 10_000;
/// How long an unknown token is remembered as unknown.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(2);
/// Failed authentications one peer may have in [`FAILURE_WINDOW`] before
/// it is refused with `RESOURCE_EXHAUSTED` for the rest of the window.
pub const MAX_FAILURES: u32 = 20;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(10);
/// Peers whose failures are tracked at once.
const PEERS: usize = 10_000;

/// Token hash → (caller, when it was looked up). People only: a plugin's
/// token is read at every call, so an uninstall or a narrower grant holds
/// at once.
type TokenCache = LruCache<String, (Caller, Instant)>;

/// Resolves bearer tokens to principals, with short-lived bounded caches,
/// and throttles peers that keep presenting bad tokens.
#[derive(Clone)]
pub struct Authenticator {
    pool: PgPool,
    cache: Arc<Mutex<TokenCache>>,
    unknown: Arc<Mutex<LruCache<String, Instant>>>,
    /// Peer IP → (failures in the window, when the window started).
    failures: Arc<Mutex<LruCache<IpAddr, (u32, Instant)>>>,
}

fn bounded<K: std::hash::Hash + Eq, V>(n: usize) -> Arc<Mutex<LruCache<K, V>>> {
    Arc::new(Mutex::new(LruCache::new(
        NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN),
    )))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Authenticator {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            cache: bounded(CACHE_CAPACITY),
            unknown: bounded(NEGATIVE_CAPACITY),
            failures: bounded(PEERS),
        }
    }

    /// `RESOURCE_EXHAUSTED` with a `RetryInfo` while `peer` is over its
    /// failure budget.
    fn throttled(&self, peer: Option<IpAddr>) -> Result<(), Status> {
        let Some(peer) = peer else { return Ok(()) };
        let mut failures = lock(&self.failures);
        let Some((n, since)) = failures.get(&peer).copied() else {
            return Ok(());
        };
        let left = FAILURE_WINDOW.saturating_sub(since.elapsed());
        if n < MAX_FAILURES || left.is_zero() {
            return Ok(());
        }
        Err(Status::with_error_details(
            tonic::Code::ResourceExhausted,
            format!(
                "too many failed authentications from {peer}: retry in {}s",
                left.as_secs() + 1
            ),
            tonic_types::ErrorDetails::with_retry_info(Some(left)),
        ))
    }

    fn failed(&self, peer: Option<IpAddr>) {
        let Some(peer) = peer else { return };
        let mut failures = lock(&self.failures);
        let now = Instant::now();
        match failures.get_mut(&peer) {
            Some((n, since)) if since.elapsed() < FAILURE_WINDOW => *n += 1,
            Some(entry) => *entry = (1, now),
            None => {
                failures.put(peer, (1, now));
            }
        }
    }

    /// The principal behind the request's `authorization: Bearer <token>`
    /// (already authenticated by [`crate::access::AccessLayer`] when the
    /// request passed it).
    pub async fn authenticate<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        Ok(self.caller(request).await?.principal)
    }

    /// The [`Caller`] of a request: the one the access layer found, or
    /// looked up now.
    pub async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        if let Some(caller) = request.extensions().get::<Caller>() {
            return Ok(caller.clone());
        }
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap_or_default());
        self.authenticate_header(header, request.remote_addr().map(|a| a.ip()))
            .await
    }

    /// The caller an `authorization` header value names, throttling `peer`
    /// while it keeps presenting bad tokens.
    pub async fn authenticate_header(
        &self,
        header: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<Caller, Status> {
        self.throttled(peer)?;
        let result = self.resolve(header).await;
        if matches!(&result, Err(s) if s.code() == tonic::Code::Unauthenticated) {
            self.failed(peer);
        }
        result
    }

    async fn resolve(&self, header: Option<&str>) -> Result<Caller, Status> {
        let header = header
            .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <token>"))?;
        let token = bearer(header)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Status::unauthenticated("authorization must be: Bearer <token>"))?;
        let hash = hash_token(token);
        if token.starts_with(PLUGIN_TOKEN_PREFIX) {
            return self.lookup_plugin(&hash).await?.ok_or_else(bad_token);
        }
        if let Some(hit) = self.cached(&hash) {
            return hit.ok_or_else(bad_token);
        }
        match self.lookup(&hash).await? {
            Some(principal) => {
                let caller = Caller {
                    principal,
                    plugin: None,
                };
                lock(&self.cache).put(hash, (caller.clone(), Instant::now()));
                Ok(caller)
            }
            None => {
                lock(&self.unknown).put(hash, Instant::now());
                Err(bad_token())
            }
        }
    }

    /// A plugin token's caller: its installation must stand, the token be
    /// neither revoked nor past its overlap. The principal is
    /// `plugin:<installation>`, a member of the team it acts for (or a
    /// reader when it acts for none).
    async fn lookup_plugin(&self, hash: &str) -> Result<Option<Caller>, Status> {
        #[derive(sqlx::FromRow)]
        struct Row {
            name: String,
            scopes: Vec<String>,
            team: String,
        }
        let row: Option<Row> = sqlx::query_as(
            "SELECT i.name, i.scopes, i.team
               FROM plugin_tokens t JOIN plugin_installations i ON i.name = t.installation
              WHERE t.token_sha256 = $1 AND t.revoked_at IS NULL
                AND (t.expires_at IS NULL OR t.expires_at > now())
                AND i.status = 'installed'",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(crate::error::database)?;
        let Some(row) = row else { return Ok(None) };
        let Ok(installation) = Name::parse(&row.name) else {
            return Ok(None);
        };
        let role = match Name::parse(&row.team) {
            Ok(team) => Role::Member { team },
            Err(_) => Role::Reader,
        };
        Ok(Some(Caller {
            principal: Principal {
                name: paved_domain::plugins::principal_name(&installation),
                role,
            },
            plugin: Some(PluginGrant {
                installation,
                scopes: row.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
            }),
        }))
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

    /// `Some(Some(p))`: a valid token seen lately; `Some(None)`: an unknown
    /// one seen lately; `None`: look it up.
    fn cached(&self, hash: &str) -> Option<Option<Caller>> {
        if let Some((p, at)) = lock(&self.cache).get(hash)
            && at.elapsed() < CACHE_TTL
        {
            return Some(Some(p.clone()));
        }
        lock(&self.unknown)
            .get(hash)
            .filter(|at| at.elapsed() < NEGATIVE_TTL)
            .map(|_| None)
    }

    /// Tokens remembered right now (valid, unknown): bounded by the capacities.
    pub fn cached_tokens(&self) -> (usize, usize) {
        (lock(&self.cache).len(), lock(&self.unknown).len())
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
