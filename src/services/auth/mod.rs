//! Accounts and device sessions: register, login (with lockout), rotating refresh tokens with
//! reuse detection, logout, session listing and revocation, and authenticating a request.

pub mod passwords;
pub mod session_cache;
pub mod tokens;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db;
use crate::domain::account::{DisplayName, Email, Password, Phone};
use crate::domain::ids::{SessionId, UserId};
use crate::error::AppError;
use crate::models::{sessions, users};
use crate::services::users::UserView;
use crate::state::AppState;

use self::tokens::{AccessClaims, TokenKeys};

/// The authenticated caller of a request: a user in one device session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    pub user_id: UserId,
    pub session_id: SessionId,
}

/// Where a request comes from, for the device session.
#[derive(Debug, Clone, Default)]
pub struct Device {
    pub ip: String,
    pub user_agent: String,
    /// The optional client-sent `X-Device-Id`.
    pub device_id: Option<String>,
}

impl Device {
    /// `sha256(user agent \n device id)`, hex.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.user_agent.as_bytes());
        h.update(b"\n");
        h.update(self.device_id.as_deref().unwrap_or("").as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

pub struct Registration {
    pub email: Email,
    pub password: Password,
    pub display_name: DisplayName,
    pub phone: Option<Phone>,
}

/// A successful sign-in: the user and a fresh token pair.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthResult {
    pub user: UserView,
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub session_id: Uuid,
}

/// One device session as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    pub user_agent: String,
    pub ip: String,
    pub device_fingerprint: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The session of the request that lists them.
    pub current: bool,
}

fn invalid_credentials() -> AppError {
    AppError::unauthorized("invalid_credentials", "Email or password is incorrect.")
}

fn unix(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp()).unwrap_or(0)
}

fn secs(n: u64) -> ChronoDuration {
    ChronoDuration::seconds(i64::try_from(n).unwrap_or(i64::MAX / 1_000))
}

/// Sessions that were revoked inside a transaction, to be reported to the cache after commit.
type Revoked = Vec<Uuid>;

/// Opens a device session with its first refresh token: the previous session of the same
/// device (same fingerprint, when the client identifies its device with `X-Device-Id`) is
/// replaced, and sessions beyond the per-user limit (oldest first) are revoked. Without a
/// device id, two devices with the same user agent are not told apart, so nothing is replaced.
async fn open_session(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    user_id: Uuid,
    device: &Device,
    now: DateTime<Utc>,
) -> Result<(sessions::SessionRow, String, Revoked), AppError> {
    let auth = &state.settings.auth;
    let fingerprint = device.fingerprint();
    let mut revoked = Vec::new();
    if device.device_id.is_some() {
        let same_device = sessions::active_on_device(conn, user_id, &fingerprint).await?;
        revoked = sessions::revoke(conn, &same_device, "replaced_by_new_login").await?;
    }

    let session = sessions::insert(
        conn,
        &sessions::NewSession {
            id: SessionId::new().0,
            user_id,
            user_agent: &device.user_agent,
            ip: &device.ip,
            device_fingerprint: &fingerprint,
            expires_at: now + secs(auth.session_max_age_secs),
        },
    )
    .await?;
    let token = TokenKeys::new_refresh_token();
    let hash = TokenKeys::hash_refresh(&token);
    sessions::insert_token(
        conn,
        &sessions::NewRefreshToken {
            id: Uuid::now_v7(),
            session_id: session.id,
            token_hash: &hash,
            expires_at: (now + secs(auth.refresh_ttl_secs)).min(session.expires_at),
        },
    )
    .await?;

    let beyond =
        sessions::active_beyond(conn, user_id, i64::from(auth.max_sessions_per_user)).await?;
    revoked.extend(sessions::revoke(conn, &beyond, "session_limit").await?);
    Ok((session, token, revoked))
}

fn issue(
    state: &AppState,
    user: &users::UserRow,
    session: Uuid,
    refresh_token: String,
    now: DateTime<Utc>,
) -> Result<AuthResult, AppError> {
    let access_token = state
        .tokens
        .issue_access(UserId(user.id), SessionId(session), unix(now))?;
    Ok(AuthResult {
        user: UserView::from(user),
        access_token,
        refresh_token,
        expires_in: state.tokens.access_ttl_secs(),
        session_id: session,
    })
}

pub async fn register(
    state: &AppState,
    reg: Registration,
    device: Device,
) -> Result<AuthResult, AppError> {
    let email_taken =
        || AppError::conflict("email_taken", "An account with this email already exists.");
    {
        let mut conn = db::conn(&state.db).await?;
        if users::find_by_email(&mut conn, reg.email.as_str())
            .await?
            .is_some()
        {
            return Err(email_taken());
        }
    }
    let hash = state.passwords.hash(reg.password.expose()).await?;
    let now = Utc::now();
    let mut conn = db::conn(&state.db).await?;
    let (user, session, token, revoked) = conn
        .transaction(async |conn| {
            let new = users::NewUser {
                id: UserId::new().0,
                email: reg.email.as_str(),
                password_hash: &hash,
                display_name: reg.display_name.as_str(),
                phone: reg.phone.as_ref().map(Phone::as_str),
            };
            let user = users::insert(conn, &new).await.map_err(|e| match e {
                diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _,
                ) => email_taken(),
                other => AppError::from(other),
            })?;
            let (session, token, revoked) =
                open_session(conn, state, user.id, &device, now).await?;
            Ok::<_, AppError>((user, session, token, revoked))
        })
        .await?;
    session_cache::mark_revoked(state, user.id, &revoked).await;
    tracing::info!(user_id = %user.id, session_id = %session.id, "registered");
    issue(state, &user, session.id, token, now)
}

pub async fn login(
    state: &AppState,
    email: &str,
    password: &str,
    device: Device,
) -> Result<AuthResult, AppError> {
    let user = match Email::parse(email) {
        Ok(email) => {
            let mut conn = db::conn(&state.db).await?;
            users::find_by_email(&mut conn, email.as_str()).await?
        }
        Err(_) => None,
    };
    let Some(user) = user else {
        state.passwords.verify_dummy(password).await?;
        return Err(invalid_credentials());
    };
    // Always verify, locked or not, so every refusal takes the same time.
    let matches = state
        .passwords
        .verify(password, &user.password_hash)
        .await?;
    let now = Utc::now();
    let mut conn = db::conn(&state.db).await?;
    if user.locked_until.is_some_and(|t| t > now) {
        tracing::info!(user_id = %user.id, "login refused: account locked");
        return Err(invalid_credentials());
    }
    if !matches {
        let auth = &state.settings.auth;
        let max = i32::try_from(auth.max_failed_logins).unwrap_or(i32::MAX);
        let lockout = i64::try_from(auth.lockout_secs).unwrap_or(i64::MAX);
        users::record_failed_login(&mut conn, user.id, max, lockout).await?;
        return Err(invalid_credentials());
    }
    let (session, token, revoked, notes) = conn
        .transaction(async |conn| {
            // Re-checked under the row lock: attempts that were already hashing when the
            // account got locked, or when the password changed, must not get in.
            let current = users::find_for_update(conn, user.id)
                .await?
                .ok_or_else(invalid_credentials)?;
            if current.locked_until.is_some_and(|t| t > now)
                || current.password_hash != user.password_hash
            {
                return Err(invalid_credentials());
            }
            if current.suspended_at.is_some() {
                return Err(AppError::forbidden(
                    "account_suspended",
                    "This account is suspended.",
                ));
            }
            users::clear_failed_logins(conn, user.id).await?;
            // A device never seen on this account: tell the owner (mandatory message).
            let notes = if sessions::device_known(conn, user.id, &device.fingerprint()).await? {
                Vec::new()
            } else {
                let note = crate::services::notifications::Note {
                    user: user.id,
                    kind: "new_login",
                    // The device as it named itself, shortened; no address is kept.
                    data: serde_json::json!({
                        "device": device.user_agent.chars().take(80).collect::<String>(),
                    }),
                };
                crate::services::notifications::write(conn, state, &[note]).await?
            };
            let (session, token, revoked) =
                open_session(conn, state, user.id, &device, now).await?;
            Ok((session, token, revoked, notes))
        })
        .await?;
    crate::services::notifications::publish(state, notes).await;
    session_cache::mark_revoked(state, user.id, &revoked).await;
    tracing::info!(user_id = %user.id, session_id = %session.id, "logged in");
    issue(state, &user, session.id, token, now)
}

enum Rotation {
    Invalid,
    Reused(Uuid, Uuid),
    Rotated {
        user_id: Uuid,
        session_id: Uuid,
        successor: String,
    },
}

/// Exchanges a refresh token for a new pair. The token row is locked, so concurrent uses of
/// one token queue: the first rotates it, retries within the grace window get the same
/// successor, and any later use (reuse of a rotated token) revokes the whole session.
pub async fn refresh(
    state: &AppState,
    token: &str,
    device: Device,
) -> Result<AuthResult, AppError> {
    let hash = TokenKeys::hash_refresh(token);
    let auth = &state.settings.auth;
    let now = Utc::now();
    let mut conn = db::conn(&state.db).await?;
    let outcome = conn
        .transaction(async |conn| {
            let Some(row) = sessions::find_token_for_update(conn, &hash).await? else {
                return Ok::<_, AppError>(Rotation::Invalid);
            };
            // Locked too, so a refresh cannot slip past a concurrent revocation.
            let Some(session) = sessions::find_for_update(conn, row.session_id).await? else {
                return Ok(Rotation::Invalid);
            };
            if !session.is_active(now) {
                return Ok(Rotation::Invalid);
            }
            // Any use of a rotated token is checked before expiry: an old stolen token still
            // revokes the family.
            if row.rotated_at.is_none() && row.expires_at <= now {
                return Ok(Rotation::Invalid);
            }
            let suspended = users::find(conn, session.user_id)
                .await?
                .is_none_or(|u| u.suspended_at.is_some());
            if suspended {
                return Ok(Rotation::Invalid);
            }
            let rotated = |successor| Rotation::Rotated {
                user_id: session.user_id,
                session_id: session.id,
                successor,
            };
            match row.rotated_at {
                None => {
                    let successor = state.tokens.successor_of(token)?;
                    let next = sessions::insert_token(
                        conn,
                        &sessions::NewRefreshToken {
                            id: Uuid::now_v7(),
                            session_id: session.id,
                            token_hash: &TokenKeys::hash_refresh(&successor),
                            expires_at: (now + secs(auth.refresh_ttl_secs)).min(session.expires_at),
                        },
                    )
                    .await?;
                    sessions::mark_rotated(conn, row.id, next.id, now).await?;
                    sessions::touch(conn, session.id, &device.ip, &device.user_agent).await?;
                    Ok(rotated(successor))
                }
                Some(at) if now - at <= secs(auth.refresh_grace_secs) => {
                    let successor_unused = match row.successor_id {
                        Some(id) => sessions::find_token(conn, id)
                            .await?
                            .is_some_and(|t| t.rotated_at.is_none()),
                        None => false,
                    };
                    if successor_unused {
                        Ok(rotated(state.tokens.successor_of(token)?))
                    } else {
                        sessions::revoke(conn, &[session.id], "refresh_token_reuse").await?;
                        Ok(Rotation::Reused(session.user_id, session.id))
                    }
                }
                Some(_) => {
                    sessions::revoke(conn, &[session.id], "refresh_token_reuse").await?;
                    Ok(Rotation::Reused(session.user_id, session.id))
                }
            }
        })
        .await?;
    match outcome {
        Rotation::Invalid => Err(AppError::unauthorized(
            "invalid_refresh_token",
            "The refresh token is unknown, expired or revoked.",
        )),
        Rotation::Reused(user_id, session_id) => {
            session_cache::mark_revoked(state, user_id, &[session_id]).await;
            tracing::warn!(%session_id, "refresh token reuse: session revoked");
            Err(AppError::unauthorized(
                "refresh_token_reused",
                "This refresh token was already used; the session has been revoked.",
            ))
        }
        Rotation::Rotated {
            user_id,
            session_id,
            successor,
        } => {
            let user = users::find(&mut conn, user_id).await?.ok_or_else(|| {
                AppError::unauthorized(
                    "invalid_refresh_token",
                    "The refresh token is unknown, expired or revoked.",
                )
            })?;
            issue(state, &user, session_id, successor, now)
        }
    }
}

/// The caller of a request carrying `claims`, if its session is still active.
pub async fn authenticate(state: &AppState, claims: &AccessClaims) -> Result<AuthUser, AppError> {
    let session_id = claims.session_id();
    if !session_cache::is_active(state, session_id).await? {
        return Err(AppError::unauthorized(
            "session_revoked",
            "This session has ended; sign in again.",
        ));
    }
    Ok(AuthUser {
        user_id: claims.user_id(),
        session_id,
    })
}

/// Revokes sessions of `user` (all of `ids` must be theirs and active) and updates the cache.
async fn revoke_own(
    state: &AppState,
    user: UserId,
    ids: &[Uuid],
    reason: &str,
) -> Result<Vec<Uuid>, AppError> {
    let mut conn = db::conn(&state.db).await?;
    let now = Utc::now();
    let mut mine = Vec::with_capacity(ids.len());
    for id in ids {
        if sessions::find(&mut conn, *id)
            .await?
            .is_some_and(|s| s.user_id == user.0 && s.is_active(now))
        {
            mine.push(*id);
        }
    }
    let revoked = sessions::revoke(&mut conn, &mine, reason).await?;
    drop(conn);
    session_cache::mark_revoked(state, user.0, &revoked).await;
    Ok(revoked)
}

pub async fn logout(state: &AppState, auth: AuthUser) -> Result<(), AppError> {
    revoke_own(state, auth.user_id, &[auth.session_id.0], "logout").await?;
    Ok(())
}

pub async fn list_sessions(state: &AppState, auth: AuthUser) -> Result<Vec<SessionView>, AppError> {
    let mut conn = db::conn(&state.db).await?;
    let rows = sessions::list_active(&mut conn, auth.user_id.0, Utc::now()).await?;
    Ok(rows
        .into_iter()
        .map(|s| SessionView {
            current: s.id == auth.session_id.0,
            id: s.id,
            user_agent: s.user_agent,
            ip: s.ip,
            device_fingerprint: s.device_fingerprint,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            expires_at: s.expires_at,
        })
        .collect())
}

/// Revokes one of the caller's sessions; another user's (or an ended) session is a 404.
pub async fn revoke_session(
    state: &AppState,
    auth: AuthUser,
    id: SessionId,
) -> Result<(), AppError> {
    if revoke_own(state, auth.user_id, &[id.0], "revoked_by_user")
        .await?
        .is_empty()
    {
        return Err(AppError::not_found());
    }
    Ok(())
}

/// Revokes every session of `user` but `keep` (after a password change).
pub async fn revoke_other_sessions(
    conn: &mut AsyncPgConnection,
    user: UserId,
    keep: SessionId,
    reason: &str,
) -> Result<Vec<Uuid>, AppError> {
    Ok(sessions::revoke_all_but(conn, user.0, Some(keep.0), reason).await?)
}

/// Deletes sessions (and their tokens) that ended more than a day ago.
pub async fn purge_ended_sessions(state: &AppState) -> Result<usize, AppError> {
    let mut conn = db::conn(&state.db).await?;
    Ok(sessions::purge_ended(&mut conn, Utc::now() - ChronoDuration::days(1)).await?)
}
