//! Token material: access JWTs (HS256 pinned, `kid` rotation, `typ: at+jwt`, iss/aud/exp/nbf
//! checked with a small leeway) and opaque refresh tokens (random, stored as SHA-256, successors
//! derived with HMAC so a retry of the same rotation can be answered with the same successor
//! without ever storing a token).

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::{AuthSettings, ConfigError, Secret};
use crate::domain::ids::{SessionId, UserId};
use crate::error::AppError;

/// The JWT header `typ` of access tokens (RFC 9068).
pub const ACCESS_TYP: &str = "at+jwt";
const ALGORITHM: Algorithm = Algorithm::HS256;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: Uuid,
    /// The device session the token belongs to.
    pub sid: Uuid,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub jti: Uuid,
}

impl AccessClaims {
    pub fn user_id(&self) -> UserId {
        UserId(self.sub)
    }

    pub fn session_id(&self) -> SessionId {
        SessionId(self.sid)
    }
}

pub struct TokenKeys {
    signing_kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    validation: Validation,
    issuer: String,
    audience: String,
    access_ttl_secs: u64,
    refresh_secret: Secret,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("signing_kid", &self.signing_kid)
            .finish_non_exhaustive()
    }
}

fn invalid_token() -> AppError {
    AppError::unauthorized(
        "invalid_token",
        "The access token is missing, malformed, expired or not valid here.",
    )
}

impl TokenKeys {
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, ConfigError> {
        let keys = settings.jwt_keys()?;
        let mut decoding = HashMap::new();
        let mut encoding = None;
        for key in &keys {
            decoding.insert(
                key.kid.clone(),
                DecodingKey::from_secret(key.secret.expose().as_bytes()),
            );
            if key.kid == settings.jwt_signing_kid {
                encoding = Some(EncodingKey::from_secret(key.secret.expose().as_bytes()));
            }
        }
        let encoding = encoding.ok_or_else(|| {
            ConfigError("`auth.jwt_signing_kid` must name one of `auth.jwt_keys`".to_owned())
        })?;
        let mut validation = Validation::new(ALGORITHM);
        validation.algorithms = vec![ALGORITHM];
        validation.leeway = settings.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Ok(Self {
            signing_kid: settings.jwt_signing_kid.clone(),
            encoding,
            decoding,
            validation,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            access_ttl_secs: settings.access_ttl_secs,
            refresh_secret: settings.refresh_token_secret.clone(),
        })
    }

    pub fn access_ttl_secs(&self) -> u64 {
        self.access_ttl_secs
    }

    /// Signs an access token for `user` in `session`, valid from `now` (Unix seconds).
    pub fn issue_access(
        &self,
        user: UserId,
        session: SessionId,
        now: u64,
    ) -> Result<String, AppError> {
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user.0,
            sid: session.0,
            iat: now,
            nbf: now,
            exp: now + self.access_ttl_secs,
            jti: Uuid::now_v7(),
        };
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.signing_kid.clone());
        header.typ = Some(ACCESS_TYP.to_owned());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(AppError::internal)
    }

    /// Verifies signature (key chosen by `kid`), algorithm, `typ`, issuer, audience, expiry and
    /// not-before. Every failure is the same 401.
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, AppError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid_token())?;
        if header.alg != ALGORITHM || header.typ.as_deref() != Some(ACCESS_TYP) {
            return Err(invalid_token());
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.decoding.get(kid))
            .ok_or_else(invalid_token)?;
        jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| invalid_token())
    }

    /// A fresh opaque refresh token: 32 random bytes, base64url.
    pub fn new_refresh_token() -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The successor of `token` in its rotation: the same input always gives the same
    /// successor, and nobody without the server secret can compute it.
    pub fn successor_of(&self, token: &str) -> Result<String, AppError> {
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(
            self.refresh_secret.expose().as_bytes(),
        )
        .map_err(|e| AppError::internal(e.to_string()))?;
        mac.update(b"airbar-refresh-rotation\0");
        mac.update(token.as_bytes());
        Ok(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    /// What is stored for a refresh token.
    pub fn hash_refresh(token: &str) -> Vec<u8> {
        Sha256::digest(token.as_bytes()).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(keys: &str, kid: &str) -> AuthSettings {
        AuthSettings {
            issuer: "airbar".into(),
            audience: "airbar-api".into(),
            access_ttl_secs: 900,
            leeway_secs: 30,
            jwt_keys: Secret::new(keys),
            jwt_signing_kid: kid.into(),
            refresh_ttl_secs: 60,
            session_max_age_secs: 120,
            refresh_grace_secs: 5,
            refresh_token_secret: Secret::new("r".repeat(32)),
            session_cache_secs: 60,
            max_sessions_per_user: 20,
            max_failed_logins: 5,
            lockout_secs: 900,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            password_hash_concurrency: 1,
            password_queue_timeout_ms: 1000,
        }
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn an_issued_token_verifies_and_carries_user_and_session() {
        let keys =
            TokenKeys::from_settings(&settings(&format!("a:{}", "x".repeat(32)), "a")).unwrap();
        let (user, session) = (UserId::new(), SessionId::new());
        let token = keys.issue_access(user, session, now()).unwrap();
        let claims = keys.verify_access(&token).unwrap();
        assert_eq!((claims.user_id(), claims.session_id()), (user, session));
    }

    #[test]
    fn a_rotated_key_still_verifies_while_listed_and_a_removed_one_does_not() {
        let old =
            TokenKeys::from_settings(&settings(&format!("a:{}", "x".repeat(32)), "a")).unwrap();
        let token = old
            .issue_access(UserId::new(), SessionId::new(), now())
            .unwrap();
        let both = format!("b:{},a:{}", "y".repeat(32), "x".repeat(32));
        let rotated = TokenKeys::from_settings(&settings(&both, "b")).unwrap();
        assert!(rotated.verify_access(&token).is_ok());
        let only_new =
            TokenKeys::from_settings(&settings(&format!("b:{}", "y".repeat(32)), "b")).unwrap();
        assert!(only_new.verify_access(&token).is_err());
    }

    #[test]
    fn expired_and_not_yet_valid_tokens_are_refused_beyond_the_leeway() {
        let keys =
            TokenKeys::from_settings(&settings(&format!("a:{}", "x".repeat(32)), "a")).unwrap();
        let expired = keys
            .issue_access(UserId::new(), SessionId::new(), now() - 900 - 31)
            .unwrap();
        assert!(keys.verify_access(&expired).is_err());
        let within_leeway = keys
            .issue_access(UserId::new(), SessionId::new(), now() - 900 - 10)
            .unwrap();
        assert!(keys.verify_access(&within_leeway).is_ok());
        let future = keys
            .issue_access(UserId::new(), SessionId::new(), now() + 120)
            .unwrap();
        assert!(keys.verify_access(&future).is_err());
    }

    #[test]
    fn successors_are_deterministic_and_distinct() {
        let keys =
            TokenKeys::from_settings(&settings(&format!("a:{}", "x".repeat(32)), "a")).unwrap();
        let t = TokenKeys::new_refresh_token();
        assert_eq!(
            keys.successor_of(&t).unwrap(),
            keys.successor_of(&t).unwrap()
        );
        assert_ne!(keys.successor_of(&t).unwrap(), t);
        assert_ne!(TokenKeys::new_refresh_token(), t);
        assert_eq!(TokenKeys::hash_refresh(&t).len(), 32);
    }
}
