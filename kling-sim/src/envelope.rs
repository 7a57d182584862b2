//! The service's answer envelope and its error codes.
//!
//! Every answer, success or failure, is
//! `{"code", "message", "request_id", "data"}` with `code` 0 for success; the
//! HTTP status follows the code as the service's own clients observe it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::clock::now_ms;

/// A code of the service's envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 1000: no `Authorization` header.
    AuthMissing,
    /// 1004: the token is malformed, badly signed, of another key, expired
    /// or not yet valid.
    TokenInvalid,
    /// 1101: the account is in arrears.
    Arrears,
    /// 1102: the resource packs cannot pay (exhausted or expired).
    PacksExhausted,
    /// 1200: invalid request parameters.
    InvalidParameters,
    /// 1201: a parameter's value is refused (here: a reused
    /// `external_task_id`).
    InvalidParameterValue,
    /// 1302: too many requests per unit of time.
    RateLimited,
    /// 1303: "parallel task over resource pack limit".
    ConcurrencyLimit,
    /// 5000: server error.
    Internal,
}

impl Code {
    pub fn number(self) -> u32 {
        match self {
            Code::AuthMissing => 1000,
            Code::TokenInvalid => 1004,
            Code::Arrears => 1101,
            Code::PacksExhausted => 1102,
            Code::InvalidParameters => 1200,
            Code::InvalidParameterValue => 1201,
            Code::RateLimited => 1302,
            Code::ConcurrencyLimit => 1303,
            Code::Internal => 5000,
        }
    }

    /// The HTTP status the service answers with for this code.
    pub fn status(self) -> StatusCode {
        match self {
            Code::AuthMissing | Code::TokenInvalid => StatusCode::UNAUTHORIZED,
            Code::Arrears | Code::PacksExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::InvalidParameters | Code::InvalidParameterValue => StatusCode::BAD_REQUEST,
            Code::RateLimited | Code::ConcurrencyLimit => StatusCode::TOO_MANY_REQUESTS,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the answer tells the client when to come back: the service's
    /// clients are told to wait at least a second after 1302 and 1303.
    fn retry_after(self) -> bool {
        matches!(self, Code::RateLimited | Code::ConcurrencyLimit)
    }
}

/// A refused request, answered as an envelope with `data: null`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code:?}, HTTP {status})")]
pub struct ApiError {
    pub code: Code,
    /// Usually `code.status()`; a few answers (unknown task: 404) differ.
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            status: code.status(),
            message: message.into(),
        }
    }

    /// Invalid parameters (1200), the message naming the field.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::InvalidParameters, message)
    }

    /// Overrides the HTTP status.
    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = envelope(self.status, self.code.number(), &self.message, None::<()>);
        if self.code.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A successful answer: code 0 with `data`.
pub fn ok<T: Serialize>(data: T) -> Response {
    envelope(StatusCode::OK, 0, "SUCCEED", Some(data))
}

/// The envelope; `data` is written in its own field order (a
/// `serde_json::Value` would sort the keys, which reads worse in logs).
#[derive(Serialize)]
struct Envelope<'a, T> {
    code: u32,
    message: &'a str,
    request_id: String,
    data: Option<T>,
}

fn envelope<T: Serialize>(status: StatusCode, code: u32, message: &str, data: Option<T>) -> Response {
    let body = Envelope {
        code,
        message,
        request_id: next_request_id(),
        data,
    };
    (status, Json(body)).into_response()
}

/// A request id unique within the process and, through the start time in
/// it, across runs: clients log it, so two runs should not collide.
fn next_request_id() -> String {
    static START: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let start = *START.get_or_init(now_ms);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("ksim-{start:x}-{n:06}")
}
