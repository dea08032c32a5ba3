//! `/api/users/*`: the caller's own account and other users' public profiles.

use actix_web::web;
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use crate::domain::account::{DisplayName, HttpsUrl, Password, Phone};
use crate::domain::ids::UserId;
use crate::domain::FieldError;
use crate::error::{AppError, FieldErrors, Problem};
use crate::services::auth::AuthUser;
use crate::services::users::{self, PasswordChange, ProfileUpdate, PublicProfile, UserView};
use crate::state::AppState;

/// Absent → `None` (leave alone); `null` → `Some(None)` (clear); a value → `Some(Some(v))`.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Changes to the caller's profile. Only these fields exist: sending any other (role, rating,
/// kyc_status, email_verified, …) is a 400.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    pub display_name: Option<String>,
    /// `null` removes the phone number.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    /// An https URL; `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub avatar_url: Option<Option<String>>,
    /// Required with `new_password`.
    pub current_password: Option<String>,
    /// Changing the password signs out every other session.
    pub new_password: Option<String>,
}

impl UpdateMeRequest {
    fn parse(self) -> Result<ProfileUpdate, AppError> {
        let mut errors = FieldErrors::default();
        let display_name = errors.check(
            self.display_name
                .as_deref()
                .map(DisplayName::parse)
                .transpose(),
        );
        let phone = errors.check(
            self.phone
                .map(|p| p.as_deref().map(Phone::parse).transpose())
                .transpose(),
        );
        let avatar_url = errors.check(
            self.avatar_url
                .map(|u| {
                    u.as_deref()
                        .map(|u| HttpsUrl::parse(u, "avatar_url"))
                        .transpose()
                })
                .transpose(),
        );
        let password = match (self.current_password, self.new_password) {
            (None, None) => Some(None),
            (Some(current), Some(new)) => errors
                .check(Password::parse(&new, "new_password"))
                .map(|new| Some(PasswordChange { current, new })),
            (None, Some(_)) => {
                errors.push(FieldError::new(
                    "current_password",
                    "is required to change the password",
                ));
                None
            }
            (Some(_), None) => {
                errors.push(FieldError::new(
                    "new_password",
                    "is required with current_password",
                ));
                None
            }
        };
        match (display_name, phone, avatar_url, password) {
            (Some(display_name), Some(phone), Some(avatar_url), Some(password))
                if errors.is_empty() =>
            {
                Ok(ProfileUpdate {
                    display_name,
                    phone,
                    avatar_url,
                    password,
                })
            }
            _ => Err(errors.into_error()),
        }
    }
}

/// The caller's account.
#[utoipa::path(get, path = "/api/users/me", tag = "users", security(("bearer" = [])), responses(
    (status = 200, description = "The caller's account", body = UserView),
    (status = 401, description = "Not signed in", body = Problem),
))]
pub async fn get_me(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<web::Json<UserView>, AppError> {
    Ok(web::Json(users::me(&state, user).await?))
}

/// Changes the caller's profile (and optionally the password).
#[utoipa::path(patch, path = "/api/users/me", tag = "users", security(("bearer" = [])),
    request_body = UpdateMeRequest, responses(
        (status = 200, description = "Updated account", body = UserView),
        (status = 400, description = "Unknown or server-owned field", body = Problem),
        (status = 422, description = "Invalid fields", body = Problem),
    ))]
pub async fn update_me(
    state: web::Data<AppState>,
    user: AuthUser,
    body: web::Json<UpdateMeRequest>,
) -> Result<web::Json<UserView>, AppError> {
    let update = body.into_inner().parse()?;
    Ok(web::Json(users::update_me(&state, user, update).await?))
}

/// Another user's public profile.
#[utoipa::path(get, path = "/api/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "Public profile", body = PublicProfile),
        (status = 404, description = "No such user", body = Problem),
    ))]
pub async fn get_user(
    state: web::Data<AppState>,
    _caller: AuthUser,
    id: web::Path<UserId>,
) -> Result<web::Json<PublicProfile>, AppError> {
    Ok(web::Json(
        users::public_profile(&state, id.into_inner()).await?,
    ))
}
