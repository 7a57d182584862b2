//! The HTTP boundary: routes, authentication, JSON bodies, and the mapping of
//! typed errors to status codes and `ApiError` bodies.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use quota_widget::core::wire::{codes, ApiError, Cancelled, ServerState, SubmitAccepted, SubmitRequest};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{QuotaError, Refusal, StoreError};
use crate::limits::{Limits, StreamRefusal};
use crate::ids::AccountId;
use crate::outcome::Submitted;
use crate::service::Service;
use crate::outcome::CallbackError;
use crate::answers::{Common, Fault, TooLarge};


/// The session cookie: `HttpOnly` keeps it from scripts, `SameSite=Strict`
/// keeps other sites from riding it (no CSRF token needed).
pub const SESSION_COOKIE: &str = "qw_session";

pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; \
frame-ancestors 'none'";

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    /// Everything the handlers ask, in either mode.
    pub service: Service,
    /// Request rate and event stream caps of this instance.
    pub limits: Arc<Limits>,
    pub sessions: SessionSettings,
}

/// How sign-ins last and when their cookie is `Secure`.
#[derive(Clone, Copy, Debug)]
pub struct SessionSettings {
    pub ttl_ms: i64,
    /// `Secure` on every cookie.
    pub secure: bool,
    /// `Secure` when the proxy says the request came over HTTPS.
    pub trust_proxy: bool,
}

impl SessionSettings {
    fn secure_for(&self, headers: &HeaderMap) -> bool {
        self.secure
            || (self.trust_proxy
                && headers
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|p| p.split(',').next().is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))))
    }

    fn cookie(&self, headers: &HeaderMap, value: &str, max_age_s: i64) -> Option<HeaderValue> {
        let secure = if self.secure_for(headers) { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_s}{secure}"
        ))
        .ok()
    }
}

/// An error answer: status, `ApiError` body, and `Retry-After` for 1303.
#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub body: ApiError,
}

impl HttpError {
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        HttpError {
            status,
            body: ApiError {
                code,
                message: message.into(),
            },
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            codes::UNAUTHORIZED,
            "missing or unknown credentials",
        )
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, "not found")
    }

    pub fn refused(refusal: &Refusal) -> Self {
        let status = match refusal.code() {
            codes::OVER_CONCURRENCY | codes::RATE_LIMITED => StatusCode::TOO_MANY_REQUESTS,
            codes::UNITS_EXHAUSTED | codes::ACCOUNT_IN_ARREARS => StatusCode::PAYMENT_REQUIRED,
            codes::NO_PERMISSION => StatusCode::FORBIDDEN,
            codes::UPSTREAM_UNAVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, refusal.code(), refusal.message())
    }
}

impl HttpError {
    /// The account's request rate is used up for `wait` (code 1302).
    pub fn rate_limited(wait: Duration) -> Response {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut res = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            codes::RATE_LIMITED,
            "too many requests for this account: try again shortly",
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }

    /// A body over the size limit, or unreadable.
    fn body(e: &axum::extract::rejection::BytesRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(StatusCode::PAYLOAD_TOO_LARGE, codes::BAD_REQUEST, "the request body is too large")
        } else {
            Self::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, e.body_text())
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut res = (status, Json(self.body)).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            // The service tells clients to wait at least 1 s before a retry.
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        res
    }
}

impl From<QuotaError> for HttpError {
    fn from(e: QuotaError) -> Self {
        match e {
            QuotaError::Unauthorized => Self::unauthorized(),
            QuotaError::BadRequest(m) => Self::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, m),
            QuotaError::Forbidden(m) => Self::new(StatusCode::FORBIDDEN, codes::NO_PERMISSION, m),
            e @ QuotaError::TaskNotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, e.to_string())
            }
            e @ (QuotaError::TaskEnded(_) | QuotaError::NotQueued(_)) => {
                Self::new(StatusCode::CONFLICT, codes::BAD_REQUEST, e.to_string())
            }
            e @ QuotaError::AccountExists => {
                Self::new(StatusCode::CONFLICT, codes::BAD_REQUEST, e.to_string())
            }
            QuotaError::Store(e) => e.into(),
        }
    }
}

impl From<CallbackError> for HttpError {
    fn from(e: CallbackError) -> Self {
        match e {
            CallbackError::NotFound => Self::not_found(),
            CallbackError::Malformed(m) => Self::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, m),
            e @ CallbackError::UnknownTask => Self::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, e.to_string()),
            e @ CallbackError::Unconfirmed(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, codes::UPSTREAM_UNAVAILABLE, e.to_string())
            }
            e @ CallbackError::Contradicted => Self::new(StatusCode::CONFLICT, codes::BAD_REQUEST, e.to_string()),
            CallbackError::Quota(e) => e.into(),
        }
    }
}

impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> Self {
        // The detail goes to the log, not to the client.
        eprintln!("quota-server: {e}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL_ERROR,
            "internal error",
        )
    }
}

/// A JSON body whose every rejection (bad JSON, wrong shape, too large) is an
/// `ApiError` 1200 rather than axum's plain-text answer. The content type is
/// not checked: a body that parses is accepted.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| HttpError::body(&e))?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Like `JsonBody` but an empty body or `null` means `T::default()`
/// (optional bodies of the dev endpoints).
pub struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| HttpError::body(&e))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        parse_json::<Option<T>>(&bytes).map(|body| OptionalJsonBody(body.unwrap_or_default()))
    }
}

/// A raw body, its rejections (too large) as `ApiError`s.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state).await.map(RawBody).map_err(|e| HttpError::body(&e))
    }
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HttpError> {
    serde_json::from_slice(bytes).map_err(|e| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            codes::BAD_REQUEST,
            format!("invalid JSON body: {e}"),
        )
    })
}

/// How a request says who it is.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential {
    /// `Authorization: Bearer <token>`: scripts, tests, other servers.
    Token(String),
    /// The session cookie set by a sign-in: the dashboard and its stream.
    Session(String),
}

/// The credential of a request: `Authorization: Bearer` first, else the
/// session cookie.
pub fn request_credential(headers: &HeaderMap) -> Option<Credential> {
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = auth.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| Credential::Token(token.trim().to_string()));
    }
    session_cookie(headers).map(Credential::Session)
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == SESSION_COOKIE).then(|| value.to_string())
        })
}

/// The account a request's credential (token or session cookie) names, if
/// any: what both the `Account` extractor and `GET /api/session` ask.
async fn credential_account(state: &AppState, headers: &HeaderMap) -> Result<Option<AccountId>, HttpError> {
    Ok(match request_credential(headers) {
        Some(Credential::Token(token)) => state.service.account_by_token(&token).await?,
        Some(Credential::Session(id)) => state.service.session_account(&id).await?,
        None => None,
    })
}

/// The authenticated account of a request.
pub struct Account(pub AccountId);

impl FromRequestParts<AppState> for Account {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let account = credential_account(state, &parts.headers)
            .await
            .map_err(IntoResponse::into_response)?
            .ok_or_else(|| HttpError::unauthorized().into_response())?;
        // Every authenticated request counts against the account's rate.
        state.limits.request(account).map_err(HttpError::rate_limited)?;
        Ok(Account(account))
    }
}

/// The API's routes, each with its OpenAPI description: the document
/// (`openapi`) is collected from these very registrations, and `routes`
/// serves them.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(login, logout, session_status))
        .routes(routes!(get_state))
        .routes(routes!(events))
        .routes(routes!(submit))
        .routes(routes!(cancel))
        .routes(routes!(upstream_callback))
}

/// `GET /healthz`: whether the server is up.
#[utoipa::path(get, path = "/healthz", tag = "meta", security(()),
    responses((status = 200, description = "The server is up.", body = String, content_type = "text/plain", example = "ok")))]
async fn healthz() -> &'static str {
    "ok"
}

/// The body of a sign-in.
#[derive(Deserialize, ToSchema)]
pub(crate) struct LoginBody {
    /// An account's token.
    token: String,
}

/// Signs in: sets the session cookie that authenticates the page's requests
/// and its event stream.
#[utoipa::path(post, path = "/api/session", tag = "session", security(()),
    request_body = LoginBody,
    responses(
        (status = 204, description = "Signed in.",
            headers(("Set-Cookie" = String, description = "`qw_session=<session id>; HttpOnly; SameSite=Strict; Path=/; Max-Age=<ttl>`, and `Secure` over HTTPS: a random id, never the token"))),
        (status = 400, description = "A malformed body (code 1200).", body = ApiError),
        (status = 401, description = "No account has that token (code 1000).", body = ApiError),
        TooLarge,
        Fault,
    ))]
async fn login(
    State(st): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Response, HttpError> {
    let Some(account) = st.service.account_by_token(&body.token).await? else {
        return Err(HttpError::unauthorized());
    };
    let ttl = st.sessions.ttl_ms;
    // The cookie carries a random session id, never the token.
    let id = st.service.sign_in(account, ttl).await?;
    let value = st.sessions.cookie(&headers, &id, ttl / 1000).ok_or_else(HttpError::unauthorized)?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, value)]).into_response())
}

/// Signs out: the session ends on the server and the browser drops the
/// cookie. Needs no credentials.
#[utoipa::path(delete, path = "/api/session", tag = "session", security(()),
    responses(
        (status = 204, description = "Signed out.",
            headers(("Set-Cookie" = String, description = "`qw_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`"))),
        Fault,
    ))]
async fn logout(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, HttpError> {
    // A copy of the cookie is worth nothing after sign-out.
    if let Some(id) = session_cookie(&headers) {
        st.service.sign_out(&id).await?;
    }
    Ok(match st.sessions.cookie(&headers, "", 0) {
        Some(v) => (StatusCode::NO_CONTENT, [(header::SET_COOKIE, v)]).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// Whether the request is signed in, and as which account.
#[derive(Serialize, ToSchema)]
pub(crate) struct SessionStatus {
    signed_in: bool,
    /// Only when signed in: a stable, non-secret identifier of the account
    /// (the store's id of it, never the token or anything derived from it).
    /// The widget scopes its cross-tab channel with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = "42")]
    account: Option<String>,
}

/// Whether this browser is signed in: `200` either way, so that a page can
/// ask at start without an error in its console. Needs no credentials.
#[utoipa::path(get, path = "/api/session", tag = "session", security(()),
    responses(
        (status = 200, description = "Signed in or not; when signed in, `account` names the account.", body = SessionStatus),
        Fault,
    ))]
async fn session_status(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, HttpError> {
    let account = credential_account(&st, &headers).await?;
    Ok(Json(SessionStatus {
        signed_in: account.is_some(),
        account: account.map(|id| id.to_string()),
    })
    .into_response())
}

fn etag(revision: u64) -> String {
    format!("\"{revision}\"")
}

/// True if an `If-None-Match` list names `tag` (weak or strong) or is `*`.
fn none_match(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.trim_start_matches("W/") == tag)
}

/// The account's quota state.
#[utoipa::path(get, path = "/api/state", tag = "quota",
    params(("If-None-Match" = Option<String>, Header,
        description = "An `ETag` of an earlier answer (weak forms, lists and `*` accepted): 304 if the state is still that one.")),
    responses(
        (status = 200, description = "The state.", body = ServerState, headers(
            ("ETag" = String, description = "`\"<revision>\"`"),
            ("Cache-Control" = String, description = "`no-cache`"))),
        (status = 304, description = "Unchanged since the `ETag` named; no body.", headers(
            ("ETag" = String, description = "`\"<revision>\"`"),
            ("Cache-Control" = String, description = "`no-cache`"))),
        Common,
    ))]
async fn get_state(
    State(st): State<AppState>,
    Account(account): Account,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let state = st.service.state(account).await?;
    let tag = etag(state.revision);
    let tag_value = HeaderValue::from_str(&tag).map_err(|_| HttpError::not_found())?;
    let caching = [
        (header::ETAG, tag_value),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    if none_match(&headers, &tag) {
        return Ok((StatusCode::NOT_MODIFIED, caching).into_response());
    }
    Ok((caching, Json(state)).into_response())
}

/// The account's event stream (`text/event-stream`). Two named events:
/// `state` (`id:` the revision, `data:` the whole `ServerState` as JSON on
/// one line), sent after every change in revision order, and `ping` (`data:`
/// the current revision) every `--ping-ms`. On connect the current state
/// comes first unless `Last-Event-ID` (or the `last_event_id` query
/// parameter, for a new `EventSource`, which cannot set the header) names it
/// already; then a ping naming it comes first, at once, so that a proxy
/// holding the headers until the first body byte passes the stream on.
/// OpenAPI cannot describe the events' own schema; `docs/api.md` does.
#[utoipa::path(get, path = "/api/events", tag = "quota",
    params(
        ("Last-Event-ID" = Option<String>, Header,
            description = "The revision the client has (the last `id:` it saw): only newer states are sent. \
Wins over `last_event_id` when it is a valid revision; an unreadable value is ignored."),
        ("last_event_id" = Option<u64>, Query,
            description = "The same as `Last-Event-ID`, for a new `EventSource` (which cannot set that header) \
resuming from the revision its page already shows: decimal digits only. The header, when present and valid, wins \
(a browser's own reconnect sends it with the newest id). Any other value is a 400 (code 1200).")),
    responses(
        (status = 200, description = "The stream, open until the client or the server closes it.",
            content_type = "text/event-stream", body = String,
            headers(
                ("Cache-Control" = String, description = "`no-cache, no-transform`: proxies must not compress or hold back the stream"),
                ("X-Accel-Buffering" = String, description = "`no`: proxies must not buffer the stream")),
            example = "event: state\nid: 7\ndata: {\"revision\":7,...}\n\nevent: ping\ndata: 7\n\n"),
        (status = 400, description = "A malformed `last_event_id` (code 1200).", body = ApiError),
        (status = 503, description = "This instance holds its most event streams (code 1500): poll `GET /api/state` instead.", body = ApiError,
            headers(("Retry-After" = u64, description = "Seconds to wait before a retry."))),
        Common,
    ))]
async fn events(
    State(st): State<AppState>,
    Account(account): Account,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    // Checked before a stream place is taken: a malformed request holds none.
    let from_query = match query {
        Ok(Query(q)) => q.last_event_id.as_deref().map(parse_revision).transpose()?,
        Err(e) => return Err(HttpError::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, e.body_text())),
    };
    let place = st.limits.open_stream(account).map_err(|refusal| match refusal {
        StreamRefusal::Account(max) => HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            codes::RATE_LIMITED,
            format!("this account has {max} event streams open here, the most allowed: poll GET /api/state instead"),
        ),
        StreamRefusal::Instance(max) => HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::INTERNAL_ERROR,
            format!("this server holds {max} event streams, its most: poll GET /api/state instead"),
        ),
    })?;
    let last_event_id = headers
        .get(HeaderName::from_static("last-event-id"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        // The header wins: a browser's own reconnect sends the newest id.
        .or(from_query);
    let events = st.service.events(account, place, last_event_id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            // no-transform: a compressing proxy (Next.js's, a CDN's) must pass
            // the stream on as it comes, not gzip and hold it back.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-transform")),
            // Tells nginx-style proxies not to buffer the stream.
            (
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Body::from_stream(events),
    )
        .into_response())
}

/// The query of `GET /api/events`.
#[derive(Deserialize)]
struct EventsQuery {
    /// Kept as text: an unreadable value is answered with an `ApiError`.
    last_event_id: Option<String>,
}

/// A `last_event_id`: a revision in decimal digits (no sign, no spaces).
fn parse_revision(value: &str) -> Result<u64, HttpError> {
    value
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| value.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| {
            HttpError::new(
                StatusCode::BAD_REQUEST,
                codes::BAD_REQUEST,
                format!(
                    "last_event_id must be a revision (decimal digits, at most {}), got {:?}",
                    u64::MAX,
                    // Enough of it to recognise, not an echo of any length.
                    value.chars().take(32).collect::<String>()
                ),
            )
        })
}

/// A submit: the wire's request, plus in upstream mode the generation fields
/// to pass to the service (model, mode, duration, image ...).
#[derive(Deserialize, ToSchema)]
pub(crate) struct SubmitBody {
    #[serde(flatten)]
    request: SubmitRequest,
    /// Upstream mode only: the service's own task fields, passed through
    /// (at most 16 KiB of JSON). A server without an upstream refuses it.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    params: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Starts a generation: checks free slots (R1), then available units (R2),
/// and reserves both in one step, or refuses and records the refusal. Sent
/// with `"queue": true`, a request whose slots are busy waits in the
/// server's queue instead (R8): accepted with its `place`, its units
/// reserved at once, started in order as soon as its slots are free.
#[utoipa::path(post, path = "/api/generations", tag = "quota",
    request_body = SubmitBody,
    responses(
        (status = 201, description = "Accepted: the task holds its slots and reserves its units until it ends; or, sent with `queue` while its slots are busy, it waits (`place`: its place in its kind's queue, 1 next), holding no slot and reserving its units.", body = SubmitAccepted),
        (status = 200, description = "A repeat of an accepted `client_request_id`: the first answer (with its `place` now if it still waits), nothing more reserved.", body = SubmitAccepted),
        (status = 400, description = "A malformed request (code 1200), `params` without an upstream, or in upstream mode the service's 1301 or 12xx.", body = ApiError),
        (status = 402, description = "Not enough available units (code 1102), or upstream the account in arrears (1101).", body = ApiError),
        (status = 403, description = "Upstream mode: no permission (1103), or an account other than the service's.", body = ApiError),
        (status = 429, description = "Not enough free slots (code 1303) for a request sent without `queue`; sent with it, the queue at its longest (`--max-queued`) or more slots asked than the kind's limit (1303, the message says which); the account's request rate used up (1302), or upstream the service's 1302.", body = ApiError,
            headers(("Retry-After" = u64, description = "Seconds to wait before a retry (at least 1)."))),
        (status = 502, description = "Upstream mode: the service did not take the task (code 5001); nothing charged.", body = ApiError),
        (status = 503, description = "Upstream mode: the packages are not loaded from the service yet (code 5001).", body = ApiError,
            headers(("Retry-After" = u64, description = "Seconds to wait before a retry."))),
        (status = 401, description = "Missing or unknown credentials (code 1000).", body = ApiError),
        (status = 500, description = "A fault of the server (code 1500); the detail goes to its log only.", body = ApiError),
        TooLarge,
    ))]
async fn submit(
    State(st): State<AppState>,
    Account(account): Account,
    JsonBody(body): JsonBody<SubmitBody>,
) -> Result<Response, HttpError> {
    match st.service.submit(account, &body.request, body.params).await? {
        Submitted::Accepted { accepted, repeat } => {
            let status = if repeat { StatusCode::OK } else { StatusCode::CREATED };
            Ok((status, Json(accepted)).into_response())
        }
        Submitted::Refused { refusal, retry_after_s } => {
            let mut res = HttpError::refused(&refusal).into_response();
            if let Some(v) = retry_after_s.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Ok(res)
        }
        Submitted::Failed { message } => {
            Err(HttpError::new(StatusCode::BAD_GATEWAY, codes::UPSTREAM_UNAVAILABLE, message))
        }
    }
}

/// Cancels a queued request: it leaves the queue, its units are released,
/// nothing is charged, and the requests behind it may start at once. Only
/// a request that still waits can be cancelled; a repeat answers as the
/// first cancel did.
#[utoipa::path(delete, path = "/api/generations/{task_id}", tag = "quota",
    params(("task_id" = String, Path, description = "The request: `task_id` of its submit's answer, or `id` in the state's `queued` list (`task-<n>`).")),
    responses(
        (status = 200, description = "Cancelled (or already, by an earlier call: the same answer): its units released, nothing charged. The state shows it among `finished` as `refused`, with the reason.", body = Cancelled),
        (status = 403, description = "Upstream mode: an account other than the service's (code 1103).", body = ApiError),
        (status = 404, description = "No such request of this account (code 1404).", body = ApiError),
        (status = 409, description = "It has started or ended: only a queued request can be cancelled (code 1200).", body = ApiError),
        Common,
    ))]
async fn cancel(
    State(st): State<AppState>,
    Account(account): Account,
    axum::extract::Path(task_id): axum::extract::Path<String>,
) -> Result<Json<Cancelled>, HttpError> {
    Ok(Json(st.service.cancel(account, &task_id).await?))
}

/// `POST /api/upstream/callback/{secret}`: the service's task callbacks. The
/// secret path keeps strangers out cheaply; the task must be one this server
/// created, and an end counts only once a query of the service confirms it.
#[utoipa::path(post, path = "/api/upstream/callback/{secret}", tag = "upstream", security(()),
    params(("secret" = String, Path, description = "The store's random callback secret (part of the callback URL given to the service).")),
    request_body(content = Object, description = "The service's task object (`task_id`, `task_status`, `task_info.external_task_id`, ...)."),
    responses(
        (status = 200, description = "Taken: `settled`, `noted` (still running) or `already settled`.", body = CallbackAnswer),
        (status = 400, description = "A malformed body (code 1200).", body = ApiError),
        (status = 404, description = "Not upstream mode, a wrong secret, or no task of this server (code 1404).", body = ApiError),
        (status = 409, description = "The service does not confirm the end the callback claims; nothing changed.", body = ApiError),
        (status = 503, description = "The service cannot be asked to confirm now (code 5001); polling settles the task later.", body = ApiError),
        TooLarge,
        Fault,
    ))]
async fn upstream_callback(
    State(st): State<AppState>,
    axum::extract::Path(secret): axum::extract::Path<String>,
    RawBody(body): RawBody,
) -> Result<Response, HttpError> {
    let said = st.service.callback(&secret, &body).await?;
    Ok((StatusCode::OK, Json(CallbackAnswer { code: 0, message: said.to_owned() })).into_response())
}

/// The answer to a callback, in the service's envelope style.
#[derive(serde::Serialize, ToSchema)]
pub(crate) struct CallbackAnswer {
    /// Always 0.
    code: u32,
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_from_bearer_or_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; qw_session=sess-1; c=d"),
        );
        assert_eq!(request_credential(&h), Some(Credential::Session("sess-1".into())));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer tok-2"),
        );
        assert_eq!(request_credential(&h), Some(Credential::Token("tok-2".into())));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(request_credential(&h), None);
    }

    #[test]
    fn if_none_match_forms() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"3\", W/\"7\""),
        );
        assert!(none_match(&h, "\"7\""));
        assert!(none_match(&h, "\"3\""));
        assert!(!none_match(&h, "\"8\""));
    }
}
