//! The answers that many endpoints share, described once for the API
//! document (`openapi`): the handlers of `http` and `dev` name them in
//! their `#[utoipa::path]` responses.

use quota_widget::core::wire::ApiError;
use utoipa::IntoResponses;

/// Answers any endpoint may give.
#[derive(IntoResponses)]
#[allow(dead_code)] // Only its description is used.
pub enum Fault {
    /// A fault of the server (code 1500); the detail goes to its log only.
    #[response(status = 500)]
    Internal(#[to_schema] ApiError),
}

/// The answer to a body over `--max-body-bytes`.
#[derive(IntoResponses)]
#[allow(dead_code)] // Only its description is used.
pub enum TooLarge {
    /// The request body is over the size limit (code 1200).
    #[response(status = 413)]
    PayloadTooLarge(#[to_schema] ApiError),
}

/// Answers of every endpoint that needs credentials.
#[derive(IntoResponses)]
#[allow(dead_code)] // Only its description is used.
pub enum Common {
    /// Missing or unknown credentials (code 1000).
    #[response(status = 401)]
    Unauthorized(#[to_schema] ApiError),
    /// The account's request rate on this instance is used up (code 1302),
    /// or for the event stream, its streams are at their cap.
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds to wait before a retry.")))]
    TooManyRequests(#[to_schema] ApiError),
    /// A fault of the server (code 1500); the detail goes to its log only.
    #[response(status = 500)]
    Internal(#[to_schema] ApiError),
}
