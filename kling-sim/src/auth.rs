//! Bearer-token authentication, as the service does it: an HS256 JWT signed
//! with the account's secret key, whose `iss` is the account's access key. The HTTP layer's middleware
//! (`api::require_token`) asks the simulator's [`Verifier`].

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::de::IgnoredAny;

use crate::envelope::{ApiError, Code};

/// Clock skew tolerated on `exp` and `nbf`. Clients mint `nbf = now - 5`, so
/// a few seconds cover a client clock slightly ahead of ours.
const LEEWAY_SECONDS: u64 = 5;

/// Checks tokens against one account's keys.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    pub fn new(access_key: &str, secret_key: &str) -> Verifier {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        // `nbf` is checked when present; the service's clients always send it.
        validation.validate_nbf = true;
        validation.set_issuer(&[access_key]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        Verifier {
            key: DecodingKey::from_secret(secret_key.as_bytes()),
            validation,
        }
    }

    /// Checks the value of an `Authorization` header.
    pub fn check(&self, header: Option<&str>) -> Result<(), ApiError> {
        let header = header.ok_or_else(|| {
            ApiError::new(Code::AuthMissing, "Authorization header is missing")
        })?;
        let token = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::new(Code::TokenInvalid, "Authorization must be \"Bearer <token>\"")
            })?;
        // The claims are checked by `jsonwebtoken` (exp, nbf, iss); nothing
        // else in them matters here.
        jsonwebtoken::decode::<IgnoredAny>(token, &self.key, &self.validation)
            .map(drop)
            .map_err(|e| ApiError::new(Code::TokenInvalid, describe(e.kind())))
    }
}

fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "token expired".to_owned(),
        ErrorKind::ImmatureSignature => "token not yet valid (nbf)".to_owned(),
        ErrorKind::InvalidIssuer => "token issuer is not the access key".to_owned(),
        ErrorKind::InvalidSignature => "token signature is invalid".to_owned(),
        ErrorKind::InvalidAlgorithm => "token algorithm must be HS256".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => format!("token lacks the {claim} claim"),
        other => format!("token is invalid: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde::Serialize;

    #[derive(Serialize)]
    struct Mint<'a> {
        iss: &'a str,
        exp: u64,
        nbf: u64,
    }

    fn token(iss: &str, secret: &str, exp_delta: i64, nbf_delta: i64) -> String {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let claims = Mint {
            iss,
            exp: (now + exp_delta) as u64,
            nbf: (now + nbf_delta) as u64,
        };
        encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes()))
            .expect("token encodes")
    }

    fn code(result: Result<(), ApiError>) -> Option<u32> {
        result.err().map(|e| e.code.number())
    }

    #[test]
    fn checks_tokens() {
        let v = Verifier::new("ak", "sk");
        let bearer = |t: String| format!("Bearer {t}");
        assert_eq!(code(v.check(Some(&bearer(token("ak", "sk", 1800, -5))))), None);
        assert_eq!(code(v.check(None)), Some(1000));
        assert_eq!(code(v.check(Some("Basic abc"))), Some(1004));
        assert_eq!(code(v.check(Some("Bearer not.a.jwt"))), Some(1004));
        assert_eq!(code(v.check(Some(&bearer(token("ak", "other", 1800, -5))))), Some(1004));
        assert_eq!(code(v.check(Some(&bearer(token("other", "sk", 1800, -5))))), Some(1004));
        assert_eq!(code(v.check(Some(&bearer(token("ak", "sk", -60, -120))))), Some(1004));
        assert_eq!(code(v.check(Some(&bearer(token("ak", "sk", 1800, 60))))), Some(1004));
        // Within the leeway.
        assert_eq!(code(v.check(Some(&bearer(token("ak", "sk", -2, -60))))), None);
        assert_eq!(code(v.check(Some(&bearer(token("ak", "sk", 1800, 2))))), None);
    }
}
