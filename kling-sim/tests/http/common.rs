//! A running simulator with a client that signs its requests.

use std::time::{Duration, Instant};

use jsonwebtoken::{encode, EncodingKey, Header};
use kling_sim::{Config, Running, Units};
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};

pub const ACCESS_KEY: &str = "sim-access-key";
pub const SECRET_KEY: &str = "sim-secret-key";

/// A window wide enough for every pack.
pub const ALL_TIME: &str = "start_time=0&end_time=9999999999999";

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    exp: i64,
    nbf: i64,
}

/// A token as the service's clients mint it, with `exp` and `nbf` moved by
/// the given seconds from now.
pub fn token(iss: &str, secret: &str, exp_in: i64, nbf_in: i64) -> String {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let claims = Claims {
        iss,
        exp: now + exp_in,
        nbf: now + nbf_in,
    };
    encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("token encodes")
}

/// A valid token of the default account.
pub fn good_token() -> String {
    token(ACCESS_KEY, SECRET_KEY, 1800, -5)
}

/// An answer: status, `Retry-After`, and the JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub retry_after: Option<String>,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> i64 {
        self.body["code"].as_i64().expect("envelope has a code")
    }

    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    pub fn message(&self) -> &str {
        self.body["message"].as_str().expect("envelope has a message")
    }

    /// Asserts a refusal: HTTP status, code, and `data: null`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: i64) {
        assert_eq!(self.status.as_u16(), status, "{:?}", self.body);
        assert_eq!(self.code(), code, "{:?}", self.body);
        assert!(self.data().is_null(), "{:?}", self.body);
        assert!(self.body["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    }

    /// Asserts success and returns `data`.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{:?}", self.body);
        assert_eq!(self.code(), 0, "{:?}", self.body);
        self.data()
    }
}

/// A simulator and a client of it.
pub struct Sim {
    /// Held so that the simulator runs as long as its client: dropping it
    /// stops the simulator.
    _running: Running,
    pub base: String,
    pub http: reqwest::Client,
}

impl Sim {
    pub async fn start() -> Sim {
        Sim::with(Config::for_tests()).await
    }

    pub async fn with(config: Config) -> Sim {
        let running = kling_sim::spawn(config).await.expect("simulator starts");
        let base = running.base_url();
        Sim {
            _running: running,
            base,
            http: reqwest::Client::new(),
        }
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("request is answered");
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.json().await.expect("answer is JSON");
        Answer {
            status,
            retry_after,
            body,
        }
    }

    /// GET with a valid token.
    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.http.get(format!("{}{path}", self.base)).bearer_auth(good_token()))
            .await
    }

    /// POST JSON with a valid token.
    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .bearer_auth(good_token())
                .json(&body),
        )
        .await
    }

    /// POST to a control path (no token).
    pub async fn control(&self, path: &str, body: Value) -> Answer {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    pub async fn ledger(&self) -> Value {
        let answer = self.send(self.http.get(format!("{}/sim/ledger", self.base))).await;
        answer.ok().clone()
    }

    pub async fn script(&self, outcomes: Value) {
        self.control("/sim/script", json!({ "outcomes": outcomes })).await.ok();
    }

    pub async fn settings(&self, patch: Value) {
        self.control("/sim/settings", patch).await.ok();
    }

    /// Creates an image task and returns its `data`.
    pub async fn create_images(&self, body: Value) -> Value {
        self.post("/v1/images/generations", body).await.ok().clone()
    }

    /// Polls a task until its status is `want` (5 s at most); returns `data`.
    pub async fn wait_for(&self, family: &str, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let answer = self.get(&format!("/v1/{family}/{id}")).await;
            let data = answer.ok().clone();
            if data["task_status"] == want {
                return data;
            }
            assert!(Instant::now() < deadline, "task {id} never became {want}: {data}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// A decimal string of the wire, read exactly.
pub fn units(value: &Value) -> Units {
    Units::parse(value.as_str().expect("a decimal string")).expect("a decimal")
}

/// The ledger entry of the pack named `name`.
pub fn ledger_pack<'a>(ledger: &'a Value, name: &str) -> &'a Value {
    ledger["packs"]
        .as_array()
        .and_then(|packs| packs.iter().find(|p| p["name"] == name))
        .expect("pack in the ledger")
}
