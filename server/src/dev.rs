//! Development endpoints (`--dev` only): create accounts, grant packages,
//! change limits, end tasks by hand, and inject a raw stream event. The
//! end-to-end tests drive the widget through every state with them.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use quota_widget::core::wire::{Outcome, Units};
use serde::{Deserialize, Serialize};

use crate::error::QuotaError;
use crate::http::{Account, AppState, HttpError, JsonBody, OptionalJsonBody};
use crate::hub::Message;
use crate::now_ms;
use crate::store::{parse_task_id, task_wire_id, AccountSpec, PackageSpec, TaskEnd};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/dev/accounts", post(create_account))
        .route("/api/dev/packages", post(grant_package))
        .route("/api/dev/limits/{kind}", put(set_limit))
        .route("/api/dev/tasks/{task_id}/succeed", post(succeed))
        .route("/api/dev/tasks/{task_id}/fail", post(fail))
        .route("/api/dev/raw-event", post(raw_event))
}

const DAY_MS: i64 = 86_400_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageBody {
    #[serde(default = "default_package_name")]
    pub name: String,
    pub total: Units,
    #[serde(default = "default_expires_in")]
    pub expires_in_ms: i64,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountBody {
    token: String,
    image_limit: Option<u32>,
    video_limit: Option<u32>,
    packages: Option<Vec<PackageBody>>,
}

async fn create_account(
    State(st): State<AppState>,
    JsonBody(body): JsonBody<AccountBody>,
) -> Result<Response, HttpError> {
    // Absent fields take the demo account's figures.
    let demo = AccountSpec::demo();
    let spec = AccountSpec {
        image_limit: body.image_limit.unwrap_or(demo.image_limit),
        video_limit: body.video_limit.unwrap_or(demo.video_limit),
        packages: match body.packages {
            Some(p) => p.into_iter().map(PackageSpec::from).collect(),
            None => demo.packages,
        },
    };
    let now = now_ms();
    let account = st.store.create_account(&body.token, &spec, now)?;
    let state = st.store.state(account, now)?;
    Ok((StatusCode::CREATED, Json(state)).into_response())
}

#[derive(Serialize)]
struct Granted {
    package_id: String,
    revision: u64,
}

async fn grant_package(
    State(st): State<AppState>,
    Account(account): Account,
    JsonBody(body): JsonBody<PackageBody>,
) -> Result<Response, HttpError> {
    let (package_id, revision) = st.store.grant_package(account, &body.into(), now_ms())?;
    Ok((
        StatusCode::CREATED,
        Json(Granted {
            package_id,
            revision,
        }),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitBody {
    limit: u32,
}

#[derive(Serialize)]
struct Revision {
    revision: u64,
}

async fn set_limit(
    State(st): State<AppState>,
    Account(account): Account,
    Path(kind): Path<String>,
    JsonBody(body): JsonBody<LimitBody>,
) -> Result<Json<Revision>, HttpError> {
    let revision = st.store.set_limit(account, &kind, body.limit, now_ms())?;
    Ok(Json(Revision { revision }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SucceedBody {
    units: Option<Units>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FailBody {
    reason: Option<String>,
}

#[derive(Serialize)]
struct TaskEnded {
    task_id: String,
    outcome: Outcome,
    units_charged: Units,
    revision: u64,
}

fn end_task(
    st: &AppState,
    account: i64,
    task_id: &str,
    end: &TaskEnd,
) -> Result<Json<TaskEnded>, HttpError> {
    let id = parse_task_id(task_id).ok_or_else(|| QuotaError::TaskNotFound(task_id.to_string()))?;
    let ended = st.store.finish(account, id, end, now_ms())?;
    Ok(Json(TaskEnded {
        task_id: task_wire_id(id),
        outcome: ended.outcome,
        units_charged: ended.units_charged,
        revision: ended.revision,
    }))
}

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
    )
}

async fn fail(
    State(st): State<AppState>,
    Account(account): Account,
    Path(task_id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<FailBody>,
) -> Result<Json<TaskEnded>, HttpError> {
    let reason = body.reason.unwrap_or_else(|| "generation error".into());
    end_task(&st, account, &task_id, &TaskEnd::Fail { reason })
}

#[derive(Serialize)]
struct Delivered {
    /// Open streams of the account that received the event.
    receivers: usize,
}

async fn raw_event(
    State(st): State<AppState>,
    Account(account): Account,
    body: Bytes,
) -> Result<Json<Delivered>, HttpError> {
    let data = String::from_utf8(body.to_vec())
        .map_err(|_| HttpError::from(QuotaError::BadRequest("raw event must be UTF-8".into())))?;
    let receivers = st.store.hub().send(account, Message::Raw(data.into()));
    Ok(Json(Delivered { receivers }))
}
