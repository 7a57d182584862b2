//! Development endpoints (`--dev` only): create accounts, grant packages,
//! change limits, end tasks by hand, and inject a raw stream event. The
//! end-to-end tests drive the widget through every state with them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use quota_widget::core::wire::{ApiError, Outcome, ServerState, Units};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::QuotaError;
use crate::http::{Account, AppState, HttpError, JsonBody, OptionalJsonBody, RawBody};
use crate::answers::{Common, Fault, TooLarge};
use crate::store::{parse_task_id, task_wire_id, AccountSpec, PackageSpec, TaskEnd};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_account))
        .routes(routes!(grant_package))
        .routes(routes!(set_limit))
        .routes(routes!(succeed))
        .routes(routes!(fail))
        .routes(routes!(raw_event))
}

const DAY_MS: i64 = 86_400_000;

/// A package to grant, its times relative to now.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackageBody {
    #[serde(default = "default_package_name")]
    #[schema(default = "Granted pack")]
    pub name: String,
    pub total: Units,
    /// Milliseconds from now to its expiry (default 30 days).
    #[serde(default = "default_expires_in")]
    #[schema(default = 2_592_000_000_i64)]
    pub expires_in_ms: i64,
    /// Milliseconds from now to when it starts to count (default 0: now).
    #[serde(default)]
    pub effective_in_ms: i64,
}

fn default_package_name() -> String {
    "Granted pack".into()
}

fn default_expires_in() -> i64 {
    30 * DAY_MS
}

impl From<PackageBody> for PackageSpec {
    fn from(b: PackageBody) -> Self {
        PackageSpec {
            name: b.name,
            total: b.total,
            effective_in_ms: b.effective_in_ms,
            expires_in_ms: b.expires_in_ms,
        }
    }
}

/// A new account; absent fields take the demo account's figures.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AccountBody {
    /// Its token: 1 to 128 characters of `A-Z a-z 0-9 - _ . ~`.
    #[schema(pattern = "^[A-Za-z0-9._~-]{1,128}$")]
    token: String,
    #[schema(maximum = 10000)]
    image_limit: Option<u32>,
    #[schema(maximum = 10000)]
    video_limit: Option<u32>,
    packages: Option<Vec<PackageBody>>,
}

/// Creates an account.
#[utoipa::path(post, path = "/api/dev/accounts", tag = "dev", security(()),
    request_body = AccountBody,
    responses(
        (status = 201, description = "Created: its first state.", body = ServerState),
        (status = 400, description = "A malformed body or an invalid token (code 1200).", body = ApiError),
        (status = 409, description = "The token is taken (code 1200).", body = ApiError),
        TooLarge,
        Fault,
    ))]
async fn create_account(
    State(st): State<AppState>,
    JsonBody(body): JsonBody<AccountBody>,
) -> Result<Response, HttpError> {
    // Absent fields take the demo account's figures.
    for limit in [body.image_limit, body.video_limit].into_iter().flatten() {
        check_limit(limit)?;
    }
    let demo = AccountSpec::demo();
    let spec = AccountSpec {
        image_limit: body.image_limit.unwrap_or(demo.image_limit),
        video_limit: body.video_limit.unwrap_or(demo.video_limit),
        packages: match body.packages {
            Some(p) => p.into_iter().map(PackageSpec::from).collect(),
            None => demo.packages,
        },
    };
    let state = st.service.create_account(&body.token, &spec).await?;
    Ok((StatusCode::CREATED, Json(state)).into_response())
}

#[derive(Serialize, ToSchema)]
struct Granted {
    package_id: String,
    revision: u64,
}

/// Grants a package to the signed-in account.
#[utoipa::path(post, path = "/api/dev/packages", tag = "dev",
    request_body = PackageBody,
    responses(
        (status = 201, description = "Granted.", body = Granted),
        (status = 400, description = "A malformed body (code 1200).", body = ApiError),
        Common,
        TooLarge,
    ))]
async fn grant_package(
    State(st): State<AppState>,
    Account(account): Account,
    JsonBody(body): JsonBody<PackageBody>,
) -> Result<Response, HttpError> {
    let (package_id, revision) = st.service.grant_package(account, &body.into()).await?;
    Ok((
        StatusCode::CREATED,
        Json(Granted {
            package_id,
            revision,
        }),
    )
        .into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LimitBody {
    #[schema(maximum = 10000)]
    limit: u32,
}

/// Most slots a pool may have: far above any plan, and small enough that
/// every figure built on it stays exact (and within the document's bounds).
const MAX_LIMIT: u32 = 10_000;

fn check_limit(limit: u32) -> Result<(), HttpError> {
    if limit > MAX_LIMIT {
        return Err(HttpError::from(QuotaError::BadRequest(format!("a limit is at most {MAX_LIMIT}"))));
    }
    Ok(())
}

#[derive(Serialize, ToSchema)]
struct Revision {
    revision: u64,
}

/// Sets a pool's limit (a plan change), creating the pool if absent.
#[utoipa::path(put, path = "/api/dev/limits/{kind}", tag = "dev",
    params(("kind" = String, Path, description = "The kind of work.")),
    request_body = LimitBody,
    responses(
        (status = 200, description = "Set.", body = Revision),
        (status = 400, description = "A malformed body or kind (code 1200).", body = ApiError),
        Common,
        TooLarge,
    ))]
async fn set_limit(
    State(st): State<AppState>,
    Account(account): Account,
    Path(kind): Path<String>,
    JsonBody(body): JsonBody<LimitBody>,
) -> Result<Json<Revision>, HttpError> {
    check_limit(body.limit)?;
    let revision = st.service.set_limit(account, &kind, body.limit).await?;
    Ok(Json(Revision { revision }))
}

/// How a task succeeds: the units it costs (default: what it reserved).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct SucceedBody {
    units: Option<Units>,
}

/// Why a task fails (default: "generation error").
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct FailBody {
    reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct TaskEnded {
    task_id: String,
    outcome: Outcome,
    units_charged: Units,
    revision: u64,
}

async fn end_task(
    st: &AppState,
    account: i64,
    task_id: &str,
    end: &TaskEnd,
) -> Result<Json<TaskEnded>, HttpError> {
    let id = parse_task_id(task_id).ok_or_else(|| QuotaError::TaskNotFound(task_id.to_string()))?;
    let ended = st.service.end(account, id, end).await?;
    Ok(Json(TaskEnded {
        task_id: task_wire_id(id),
        outcome: ended.outcome,
        units_charged: ended.units_charged,
        revision: ended.revision,
    }))
}

/// Ends a running task as succeeded: deducts its cost, earliest expiry first.
#[utoipa::path(post, path = "/api/dev/tasks/{task_id}/succeed", tag = "dev",
    params(("task_id" = String, Path, description = "`task-<n>`")),
    request_body(content = Option<SucceedBody>, description = "Optional; an empty body takes the defaults."),
    responses(
        (status = 200, description = "Ended.", body = TaskEnded),
        (status = 400, description = "A malformed body (code 1200).", body = ApiError),
        (status = 404, description = "No such task of this account (code 1404).", body = ApiError),
        (status = 409, description = "The task has already ended (code 1200).", body = ApiError),
        Common,
        TooLarge,
    ))]
async fn succeed(
    State(st): State<AppState>,
    Account(account): Account,
    Path(task_id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<SucceedBody>,
) -> Result<Json<TaskEnded>, HttpError> {
    end_task(
        &st,
        account,
        &task_id,
        &TaskEnd::Succeed { units: body.units },
    ).await
}

/// Ends a running task as failed: nothing is charged.
#[utoipa::path(post, path = "/api/dev/tasks/{task_id}/fail", tag = "dev",
    params(("task_id" = String, Path, description = "`task-<n>`")),
    request_body(content = Option<FailBody>, description = "Optional; an empty body takes the defaults."),
    responses(
        (status = 200, description = "Ended.", body = TaskEnded),
        (status = 400, description = "A malformed body (code 1200).", body = ApiError),
        (status = 404, description = "No such task of this account (code 1404).", body = ApiError),
        (status = 409, description = "The task has already ended (code 1200).", body = ApiError),
        Common,
        TooLarge,
    ))]
async fn fail(
    State(st): State<AppState>,
    Account(account): Account,
    Path(task_id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<FailBody>,
) -> Result<Json<TaskEnded>, HttpError> {
    let reason = body.reason.unwrap_or_else(|| "generation error".into());
    end_task(&st, account, &task_id, &TaskEnd::Fail { reason }).await
}

#[derive(Serialize, ToSchema)]
struct Delivered {
    /// Open streams of the account that received the event.
    receivers: usize,
}

/// Sends the body, as it is, as the `data` of a `state` event to the
/// account's open streams: the widget's handling of bad input is tested
/// with it.
#[utoipa::path(post, path = "/api/dev/raw-event", tag = "dev",
    request_body(content = Option<String>, content_type = "text/plain", description = "Any UTF-8 text, empty included."),
    responses(
        (status = 200, description = "Sent.", body = Delivered),
        (status = 400, description = "Not UTF-8 (code 1200).", body = ApiError),
        Common,
        TooLarge,
    ))]
async fn raw_event(
    State(st): State<AppState>,
    Account(account): Account,
    RawBody(body): RawBody,
) -> Result<Json<Delivered>, HttpError> {
    let data = String::from_utf8(body.to_vec())
        .map_err(|_| HttpError::from(QuotaError::BadRequest("raw event must be UTF-8".into())))?;
    let receivers = st.service.send_raw(account, &data);
    Ok(Json(Delivered { receivers }))
}
