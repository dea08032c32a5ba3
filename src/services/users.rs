//! User profiles: the owner's full view, the public profile others see, and profile changes
//! (display name, phone, avatar, password). Server-owned fields (role, rating, KYC status,
//! e-mail verification, suspension) are never writable here.

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db;
use crate::domain::account::{DisplayName, HttpsUrl, Password, Phone};
use crate::domain::ids::UserId;
use crate::domain::FieldError;
use crate::error::AppError;
use crate::models::users::{self, ProfileChanges, UserRow};
use crate::services::auth::{self, session_cache, AuthUser};
use crate::state::AppState;

/// The account as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub phone: Option<String>,
    pub avatar_url: Option<String>,
    /// `user` or `admin`.
    pub role: String,
    /// `none`, `pending`, `verified` or `rejected`.
    pub kyc_status: String,
    pub email_verified: bool,
    /// Mean of received ratings (1–5), absent until the first one.
    pub rating: Option<f64>,
    pub rating_count: i32,
    pub completed_deliveries: i32,
    pub suspended: bool,
    pub created_at: DateTime<Utc>,
}

/// What any signed-in user may see of another.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicProfile {
    pub id: Uuid,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub rating: Option<f64>,
    pub rating_count: i32,
    pub completed_deliveries: i32,
    pub kyc_verified: bool,
    pub member_since: DateTime<Utc>,
}

fn rating(row: &UserRow) -> Option<f64> {
    (row.rating_count > 0).then(|| {
        let mean = f64::from(row.rating_sum) / f64::from(row.rating_count);
        (mean * 100.0).round() / 100.0
    })
}

impl From<&UserRow> for UserView {
    fn from(row: &UserRow) -> Self {
        Self {
            id: row.id,
            email: row.email.clone(),
            display_name: row.display_name.clone(),
            phone: row.phone.clone(),
            avatar_url: row.avatar_url.clone(),
            role: row.role.clone(),
            kyc_status: row.kyc_status.clone(),
            email_verified: row.email_verified,
            rating: rating(row),
            rating_count: row.rating_count,
            completed_deliveries: row.completed_deliveries,
            suspended: row.suspended_at.is_some(),
            created_at: row.created_at,
        }
    }
}

impl From<&UserRow> for PublicProfile {
    fn from(row: &UserRow) -> Self {
        Self {
            id: row.id,
            display_name: row.display_name.clone(),
            avatar_url: row.avatar_url.clone(),
            rating: rating(row),
            rating_count: row.rating_count,
            completed_deliveries: row.completed_deliveries,
            kyc_verified: row.kyc_status == "verified",
            member_since: row.created_at,
        }
    }
}

/// A validated profile change. `None` leaves a field alone; `Some(None)` clears it.
#[derive(Debug, Default)]
pub struct ProfileUpdate {
    pub display_name: Option<DisplayName>,
    pub phone: Option<Option<Phone>>,
    pub avatar_url: Option<Option<HttpsUrl>>,
    pub password: Option<PasswordChange>,
}

#[derive(Debug)]
pub struct PasswordChange {
    pub current: String,
    pub new: Password,
}

pub async fn me(state: &AppState, auth: AuthUser) -> Result<UserView, AppError> {
    let mut conn = db::conn(&state.db).await?;
    let user = users::find(&mut conn, auth.user_id.0)
        .await?
        .ok_or_else(AppError::not_found)?;
    Ok(UserView::from(&user))
}

pub async fn public_profile(state: &AppState, id: UserId) -> Result<PublicProfile, AppError> {
    let mut conn = db::conn(&state.db).await?;
    let user = users::find(&mut conn, id.0)
        .await?
        .ok_or_else(AppError::not_found)?;
    Ok(PublicProfile::from(&user))
}

/// Applies a profile change; a password change needs the current password and signs out every
/// other session of the user.
pub async fn update_me(
    state: &AppState,
    auth: AuthUser,
    update: ProfileUpdate,
) -> Result<UserView, AppError> {
    let new_hash = match &update.password {
        Some(change) => {
            let current = {
                let mut conn = db::conn(&state.db).await?;
                users::find(&mut conn, auth.user_id.0)
                    .await?
                    .ok_or_else(AppError::not_found)?
            };
            // The current password is guarded like a login: failures count towards the
            // lockout, and while locked even the right one is refused.
            let matches = state
                .passwords
                .verify(&change.current, &current.password_hash)
                .await?;
            let locked = current.locked_until.is_some_and(|t| t > chrono::Utc::now());
            if !matches || locked {
                if !matches {
                    let auth = &state.settings.auth;
                    let mut conn = db::conn(&state.db).await?;
                    users::record_failed_login(
                        &mut conn,
                        current.id,
                        i32::try_from(auth.max_failed_logins).unwrap_or(i32::MAX),
                        i64::try_from(auth.lockout_secs).unwrap_or(i64::MAX),
                    )
                    .await?;
                }
                return Err(AppError::validation(vec![FieldError::new(
                    "current_password",
                    "is incorrect",
                )]));
            }
            Some(state.passwords.hash(change.new.expose()).await?)
        }
        None => None,
    };
    let changes = ProfileChanges {
        display_name: update.display_name.as_ref().map(DisplayName::as_str),
        phone: update.phone.as_ref().map(|p| p.as_ref().map(Phone::as_str)),
        avatar_url: update
            .avatar_url
            .as_ref()
            .map(|u| u.as_ref().map(HttpsUrl::as_str)),
    };
    let mut conn = db::conn(&state.db).await?;
    let (user, revoked, notes) = conn
        .transaction(async |conn| {
            let user = if changes.display_name.is_some()
                || changes.phone.is_some()
                || changes.avatar_url.is_some()
            {
                users::update_profile(conn, auth.user_id.0, &changes).await?
            } else {
                users::find(conn, auth.user_id.0)
                    .await?
                    .ok_or_else(AppError::not_found)?
            };
            let (revoked, notes) = match &new_hash {
                Some(hash) => {
                    users::set_password_hash(conn, auth.user_id.0, hash).await?;
                    let revoked = auth::revoke_other_sessions(
                        conn,
                        auth.user_id,
                        auth.session_id,
                        "password_changed",
                    )
                    .await?;
                    let note = crate::services::notifications::Note {
                        user: auth.user_id.0,
                        kind: "password_changed",
                        data: serde_json::json!({}),
                    };
                    let notes = crate::services::notifications::write(conn, state, &[note]).await?;
                    (revoked, notes)
                }
                None => (Vec::new(), Vec::new()),
            };
            Ok::<_, AppError>((user, revoked, notes))
        })
        .await?;
    drop(conn);
    crate::services::notifications::publish(state, notes).await;
    session_cache::mark_revoked(state, user.id, &revoked).await;
    if new_hash.is_some() {
        tracing::info!(user_id = %user.id, revoked = revoked.len(), "password changed");
    }
    Ok(UserView::from(&user))
}

/// Refuses suspended accounts; call in the transaction that publishes something. Returns the
/// user's row.
pub async fn ensure_may_publish(
    conn: &mut diesel_async::AsyncPgConnection,
    user: UserId,
) -> Result<UserRow, AppError> {
    let row = users::find(conn, user.0)
        .await?
        .ok_or_else(AppError::not_found)?;
    if row.suspended_at.is_some() {
        return Err(AppError::forbidden(
            "account_suspended",
            "This account is suspended and cannot publish.",
        ));
    }
    Ok(row)
}
