//! The client of the upstream generation service's HTTP API, as
//! `docs/kling.md` describes it: bearer tokens minted from the access and
//! secret keys, the `{code, message, request_id, data}` envelope, resource
//! packs, and task creation and query. It only speaks HTTP: what the answers
//! mean for the quota is decided in `upstream/mod.rs` and the core.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use quota_widget::core::wire::{Millis, Units};
use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;

/// A key that never reaches a log: its `Debug` and `Display` print nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// Lifetime of a bearer token, as the service's clients mint them.
const TOKEN_LIFETIME_S: u64 = 1800;
/// A token is renewed this long before it expires, so that a request never
/// leaves with a token that expires on the way.
const TOKEN_RENEW_S: u64 = 300;
/// `nbf` is set this far in the past, for clocks a little ahead of ours.
const TOKEN_SKEW_S: u64 = 5;
/// The service answers `/account/costs` about once a second at most.
const COSTS_SPACING: Duration = Duration::from_secs(1);

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    exp: u64,
    nbf: u64,
}

struct Token {
    value: String,
    renew_at_s: u64,
}

/// Why a call did not give an answer with code 0.
#[derive(Clone, Debug, thiserror::Error)]
pub enum KlingError {
    /// The service answered with a non-zero code (a refusal, a bad request,
    /// bad credentials).
    #[error("the service answered code {code}: {message}")]
    Refused { code: i64, message: String, status: u16 },
    /// No answer, a timeout, or a server error (5xx, codes 5000-5002): the
    /// request may or may not have been applied.
    #[error("the service is unavailable: {0}")]
    Unavailable(String),
    /// An answer that does not have the documented shape.
    #[error("unexpected answer from the service: {0}")]
    Protocol(String),
}

impl KlingError {
    pub fn code(&self) -> Option<i64> {
        match self {
            KlingError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Codes of the service that the server acts on.
pub mod code {
    pub const AUTH_FIRST: i64 = 1000;
    pub const AUTH_LAST: i64 = 1004;
    pub const ARREARS: i64 = 1101;
    pub const PACKS_EXHAUSTED: i64 = 1102;
    pub const BAD_PARAMS_FIRST: i64 = 1200;
    pub const BAD_PARAMS_LAST: i64 = 1203;
    pub const RATE_LIMITED: i64 = 1302;
    pub const OVER_CONCURRENCY: i64 = 1303;
    pub const SERVER_FIRST: i64 = 5000;
    pub const SERVER_LAST: i64 = 5002;
}

#[derive(Deserialize)]
struct Envelope {
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    data: Option<Value>,
}

/// A resource pack as `GET /account/costs` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct ResourcePack {
    pub resource_pack_id: String,
    pub resource_pack_name: String,
    #[serde(default)]
    pub resource_pack_type: String,
    pub total_quantity: Units,
    pub remaining_quantity: Units,
    #[serde(default)]
    pub purchase_time: Millis,
    pub effective_time: Millis,
    pub invalid_time: Millis,
    /// `toBeOnline`, `online`, `expired` or `runOut`.
    pub status: String,
}

#[derive(Deserialize)]
struct Costs {
    #[serde(default)]
    resource_pack_subscribe_infos: Vec<ResourcePack>,
}

/// Which family of work a task belongs to: each has its own create and
/// query path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Images,
    Text2Video,
    Image2Video,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::Images, Family::Text2Video, Family::Image2Video];

    pub fn path(self) -> &'static str {
        match self {
            Family::Images => "/v1/images/generations",
            Family::Text2Video => "/v1/videos/text2video",
            Family::Image2Video => "/v1/videos/image2video",
        }
    }

    /// The name kept in the store.
    pub fn name(self) -> &'static str {
        match self {
            Family::Images => "images",
            Family::Text2Video => "text2video",
            Family::Image2Video => "image2video",
        }
    }

    pub fn from_name(s: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == s)
    }

    /// The family of a submit: images for the `image` kind; for `video`, an
    /// image-to-video task when the dashboard passes an `image`.
    pub fn for_submit(kind: &str, params: &Map<String, Value>) -> Option<Family> {
        match kind {
            "image" => Some(Family::Images),
            "video" if params.contains_key("image") => Some(Family::Image2Video),
            "video" => Some(Family::Text2Video),
            _ => None,
        }
    }
}

/// Where a task is, as the service says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Submitted,
    Processing,
    Succeeded,
    Failed,
}

/// A task as the create and query answers and the callbacks carry it.
#[derive(Clone, Debug, Deserialize)]
pub struct TaskData {
    pub task_id: String,
    pub task_status: String,
    #[serde(default)]
    pub task_status_msg: Option<String>,
    #[serde(default)]
    pub task_info: Option<TaskInfo>,
    /// Decimal text: the units finally charged (on success).
    #[serde(default)]
    pub final_unit_deduction: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct TaskInfo {
    #[serde(default)]
    pub external_task_id: Option<String>,
}

impl TaskData {
    pub fn status(&self) -> Result<Status, KlingError> {
        match self.task_status.as_str() {
            "submitted" => Ok(Status::Submitted),
            "processing" => Ok(Status::Processing),
            "succeed" => Ok(Status::Succeeded),
            "failed" => Ok(Status::Failed),
            other => Err(KlingError::Protocol(format!("unknown task_status {other:?}"))),
        }
    }

    pub fn external_task_id(&self) -> Option<&str> {
        self.task_info.as_ref()?.external_task_id.as_deref()
    }

    /// The deduction the service reports, if it reports a readable one.
    pub fn deduction(&self) -> Option<Units> {
        self.final_unit_deduction.as_deref()?.parse().ok()
    }
}

/// Seconds since the Unix epoch.
fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    access_key: Secret,
    secret_key: Secret,
    token: Mutex<Option<Token>>,
    /// When `/account/costs` was last asked.
    costs_last: tokio::sync::Mutex<Option<Instant>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Client {
    /// `base_url` is the service's root (`https://api.klingai.com`); every
    /// request times out after `timeout`.
    pub fn new(
        base_url: &str,
        access_key: Secret,
        secret_key: Secret,
        timeout: Duration,
    ) -> Result<Client, KlingError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("quota-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| KlingError::Unavailable(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            access_key,
            secret_key,
            token: Mutex::new(None),
            costs_last: tokio::sync::Mutex::new(None),
        })
    }

    /// A bearer token, minted again when the current one nears its expiry.
    fn bearer(&self) -> Result<String, KlingError> {
        let now = now_s();
        let mut slot = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = slot.as_ref().filter(|t| now < t.renew_at_s) {
            return Ok(t.value.clone());
        }
        let claims = Claims {
            iss: self.access_key.expose(),
            exp: now + TOKEN_LIFETIME_S,
            nbf: now.saturating_sub(TOKEN_SKEW_S),
        };
        let value = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(self.secret_key.expose().as_bytes()),
        )
        .map_err(|e| KlingError::Protocol(format!("cannot sign a token: {e}")))?;
        *slot = Some(Token {
            value: value.clone(),
            renew_at_s: now + TOKEN_LIFETIME_S - TOKEN_RENEW_S,
        });
        Ok(value)
    }

    /// Sends, reads the envelope, and returns `data` as `T` when code is 0.
    async fn call<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, KlingError> {
        let res = req
            .bearer_auth(self.bearer()?)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| KlingError::Unavailable(transport(&e)))?;
        let status = res.status();
        let body = res
            .bytes()
            .await
            .map_err(|e| KlingError::Unavailable(transport(&e)))?;
        let envelope: Envelope = match serde_json::from_slice(&body) {
            Ok(e) => e,
            Err(_) if status.is_server_error() => {
                return Err(KlingError::Unavailable(format!("HTTP {status}")))
            }
            Err(e) => {
                return Err(KlingError::Protocol(format!(
                    "HTTP {status}, body is not the service's envelope: {e}"
                )))
            }
        };
        if envelope.code != 0 {
            let c = envelope.code;
            if (code::SERVER_FIRST..=code::SERVER_LAST).contains(&c) || status.is_server_error() {
                return Err(KlingError::Unavailable(format!(
                    "code {c}: {}",
                    envelope.message
                )));
            }
            return Err(KlingError::Refused {
                code: c,
                message: envelope.message,
                status: status.as_u16(),
            });
        }
        if status != StatusCode::OK {
            return Err(KlingError::Protocol(format!("HTTP {status} with code 0")));
        }
        let data = envelope.data.unwrap_or(Value::Null);
        serde_json::from_value(data).map_err(|e| KlingError::Protocol(format!("data: {e}")))
    }

    /// The account's resource packs bought between `start_ms` and `end_ms`.
    /// Calls are spaced at least a second apart, as the service asks.
    pub async fn costs(&self, start_ms: Millis, end_ms: Millis) -> Result<Vec<ResourcePack>, KlingError> {
        // Held across the call, and the spacing counted from its answer: a
        // slow first request cannot bring the next one closer than that.
        let mut last = self.costs_last.lock().await;
        if let Some(at) = *last {
            tokio::time::sleep_until(at + COSTS_SPACING).await;
        }
        let req = self.http.get(format!(
            "{}/account/costs?start_time={start_ms}&end_time={end_ms}",
            self.base
        ));
        let answer = self.call::<Costs>(req).await;
        *last = Some(Instant::now());
        Ok(answer?.resource_pack_subscribe_infos)
    }

    /// Creates a task of `family` with `body` (the dashboard's fields plus
    /// `callback_url` and `external_task_id`).
    pub async fn create(&self, family: Family, body: &Map<String, Value>) -> Result<TaskData, KlingError> {
        let req = self.http.post(format!("{}{}", self.base, family.path())).json(body);
        self.call(req).await
    }

    /// A task by its id or by the client's `external_task_id`.
    pub async fn query(&self, family: Family, id: &str) -> Result<TaskData, KlingError> {
        let mut url = reqwest::Url::parse(&format!("{}{}", self.base, family.path()))
            .map_err(|e| KlingError::Protocol(format!("bad base URL: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| KlingError::Protocol("the base URL cannot take a path".into()))?
            .push(id);
        self.call(self.http.get(url)).await
    }
}

/// A transport error without the request's headers (which carry the token):
/// reqwest's message names the URL and the cause only.
fn transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("top-secret");
        assert!(!format!("{s:?}").contains("top-secret"));
    }

    #[test]
    fn tokens_carry_the_claims_and_are_reused() {
        let c = Client::new(
            "http://127.0.0.1:1/",
            Secret::new("ak"),
            Secret::new("sk"),
            Duration::from_secs(1),
        )
        .expect("client");
        let t = c.bearer().expect("token");
        assert_eq!(c.bearer().expect("token"), t, "reused until renewal");
        let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
        v.set_issuer(&["ak"]);
        v.set_required_spec_claims(&["exp", "nbf", "iss"]);
        let data = jsonwebtoken::decode::<Value>(&t, &jsonwebtoken::DecodingKey::from_secret(b"sk"), &v)
            .expect("valid");
        let exp = data.claims["exp"].as_u64().expect("exp");
        let nbf = data.claims["nbf"].as_u64().expect("nbf");
        assert_eq!(exp - nbf, TOKEN_LIFETIME_S + TOKEN_SKEW_S);
        assert_eq!(c.base, "http://127.0.0.1:1");
    }

    #[test]
    fn families_by_kind() {
        let mut p = Map::new();
        assert_eq!(Family::for_submit("image", &p), Some(Family::Images));
        assert_eq!(Family::for_submit("video", &p), Some(Family::Text2Video));
        p.insert("image".into(), Value::String("https://x/y.png".into()));
        assert_eq!(Family::for_submit("video", &p), Some(Family::Image2Video));
        assert_eq!(Family::for_submit("audio", &p), None);
        for f in Family::ALL {
            assert_eq!(Family::from_name(f.name()), Some(f));
        }
    }
}
