//! Access tokens (JWT, HS256 only), refresh tokens and API keys.
//!
//! - Access tokens are short-lived JWTs; the algorithm is pinned, so `none`
//!   and any other algorithm are refused, and none lives longer than
//!   `auth.access_ttl_secs` from its `iat`, whatever its `exp` says. Each
//!   names its user's token version (`tv`) and its session (`sid`, the
//!   refresh-token family): the guard refuses it once the user's version
//!   moved (role, status or password changed) or the session was logged
//!   out. Logout puts the token's `jti` and its session on a deny list in
//!   the hot-state store for as long as a token of it can live.
//! - Refresh tokens and API keys are 256-bit random strings, stored only as
//!   SHA-256 hashes. Refresh tokens rotate on use; reuse of a rotated token
//!   revokes its whole family.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use qb_core::model::{Role, User};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const REFRESH_PREFIX: &str = "qbr_";
pub const API_KEY_PREFIX: &str = "qbk_";
/// Deny-list namespace in the hot-state store.
pub const DENY_NS: &str = "auth.denied_jti";

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// User id.
    pub sub: String,
    pub name: String,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// Always `access`.
    pub typ: String,
    /// The user's token version at issue (`User::token_version`): a change
    /// of role, status or password moves it and ends the token.
    pub tv: i64,
    /// The session (the refresh-token family) the token belongs to: a
    /// logout ends every token of the session.
    pub sid: String,
}

/// Keys and lifetimes.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_ttl: i64,
    pub refresh_ttl: i64,
}

impl TokenKeys {
    pub fn new(secret: &[u8], access_ttl: u64, refresh_ttl: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl: access_ttl as i64,
            refresh_ttl: refresh_ttl as i64,
        }
    }

    /// Issues an access token for `user` in session `sid`; returns it with
    /// its claims.
    pub fn issue(&self, user: &User, sid: &str) -> Result<(String, Claims), String> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user.id.to_string(),
            name: user.username.clone(),
            role: user.role,
            iat: now,
            exp: now + self.access_ttl,
            jti: uuid::Uuid::new_v4().to_string(),
            typ: "access".into(),
            tv: user.token_version,
            sid: sid.into(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map(|t| (t, claims))
            .map_err(|e| e.to_string())
    }

    /// Verifies signature, algorithm and expiry, and the server's maximum
    /// lifetime (`access_ttl` from `iat`) whatever `exp` says.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        self.verify_at(token, Utc::now().timestamp())
    }

    fn verify_at(&self, token: &str, now: i64) -> Result<Claims, String> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "token expired".to_string(),
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    "token signature invalid".to_string()
                }
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                    "token algorithm not accepted".to_string()
                }
                _ => "token invalid".to_string(),
            })?;
        if data.claims.typ != "access" {
            return Err("not an access token".into());
        }
        let c = data.claims;
        let leeway = self.validation.leeway as i64;
        if c.iat > now + leeway {
            return Err("token issued in the future".into());
        }
        if c.exp - c.iat > self.access_ttl || now - c.iat > self.access_ttl + leeway {
            return Err("token expired (older than the server's maximum lifetime)".into());
        }
        Ok(c)
    }
}

/// The deny-list key of a logged-out session (`DENY_NS`).
pub fn session_key(sid: &str) -> String {
    format!("session:{sid}")
}

/// A new random secret with a prefix, e.g. `qbk_...`.
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// How a token is stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann() -> User {
        User {
            id: 7,
            username: "ann".into(),
            role: Role::Trader,
            disabled: false,
            feed: false,
            created_at: Utc::now(),
            token_version: 3,
        }
    }

    #[test]
    fn the_server_caps_a_token_s_lifetime_whatever_exp_says() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let keys = TokenKeys::new(secret, 60, 3600);
        let (_, mut claims) = keys.issue(&ann(), "s").unwrap();
        let sign = |c: &Claims| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                c,
                &EncodingKey::from_secret(secret),
            )
            .unwrap()
        };
        let now = claims.iat;
        // Signed with the right key, but valid for a day: refused.
        claims.exp = now + 86_400;
        assert!(
            keys.verify_at(&sign(&claims), now)
                .unwrap_err()
                .contains("maximum lifetime")
        );
        // Within the lifetime: accepted; past it (even with a later exp): refused.
        claims.exp = now + 60;
        assert!(keys.verify_at(&sign(&claims), now + 30).is_ok());
        assert!(keys.verify_at(&sign(&claims), now + 66).is_err());
        // Issued in the future: refused.
        claims.iat = now + 120;
        claims.exp = now + 180;
        assert!(
            keys.verify_at(&sign(&claims), now)
                .unwrap_err()
                .contains("future")
        );
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef", 60, 3600);
        let (token, claims) = keys.issue(&ann(), "session-1").unwrap();
        assert_eq!((claims.tv, claims.sid.as_str()), (3, "session-1"));
        assert_eq!(keys.verify(&token).unwrap(), claims);
        let other = TokenKeys::new(b"another-secret-another-secret-xx", 60, 3600);
        assert_eq!(other.verify(&token).unwrap_err(), "token signature invalid");
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let mut payload = URL_SAFE_NO_PAD.decode(&parts[1]).unwrap();
        let s = String::from_utf8(payload.clone())
            .unwrap()
            .replace("trader", "admin");
        payload = s.into_bytes();
        parts[1] = URL_SAFE_NO_PAD.encode(payload);
        assert!(keys.verify(&parts.join(".")).is_err());
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
            token.split('.').nth(1).unwrap()
        );
        assert!(keys.verify(&none).is_err());
        let k = random_token(API_KEY_PREFIX);
        assert!(k.starts_with("qbk_") && k.len() == 4 + 43);
        assert_eq!(token_hash(&k).len(), 64);
    }
}
