//! The service's own HTTP API: account costs, task creation and query. Every
//! path here needs a valid token.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::envelope::{ok, ApiError, Code};
use crate::requests::parse_create;
use crate::sim::{CostsQuery, Sim};
use crate::task::Family;

/// The API's routes (without the control paths), behind the token check.
pub fn routes(sim: Arc<Sim>) -> Router<Arc<Sim>> {
    Router::new()
        .route("/account/costs", get(costs))
        .route("/v1/images/generations", post(create_images))
        .route("/v1/images/generations/{id}", get(query_images))
        .route("/v1/videos/text2video", post(create_text2video))
        .route("/v1/videos/text2video/{id}", get(query_text2video))
        .route("/v1/videos/image2video", post(create_image2video))
        .route("/v1/videos/image2video/{id}", get(query_image2video))
        .route_layer(middleware::from_fn_with_state(sim, require_token))
}

/// Answer to paths that do not exist, in the envelope like everything else.
pub async fn not_found() -> Response {
    ApiError::invalid("no such path").with_status(StatusCode::NOT_FOUND).into_response()
}

async fn costs(
    State(sim): State<Arc<Sim>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = query.map_err(|e| ApiError::invalid(format!("bad query string: {e}")))?;
    let time = |name: &str| -> Result<u64, ApiError> {
        params
            .get(name)
            .ok_or_else(|| ApiError::invalid(format!("{name} is required (ms)")))?
            .parse()
            .map_err(|_| ApiError::invalid(format!("{name} must be an integer (ms)")))
    };
    let query = CostsQuery {
        start_time: time("start_time")?,
        end_time: time("end_time")?,
        pack_name: params.get("resource_pack_name").cloned(),
    };
    sim.costs(&query).map(ok)
}

fn create(sim: &Arc<Sim>, family: Family, body: &[u8]) -> Result<Response, ApiError> {
    let request = parse_create(family, body)?;
    sim.create(request).map(ok)
}

fn query(sim: &Sim, family: Family, id: Result<Path<String>, PathRejection>) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::invalid(format!("bad task id: {e}")))?;
    sim.query(family, &id).map(ok)
}

async fn create_images(State(sim): State<Arc<Sim>>, body: Bytes) -> Result<Response, ApiError> {
    create(&sim, Family::Images, &body)
}

async fn create_text2video(State(sim): State<Arc<Sim>>, body: Bytes) -> Result<Response, ApiError> {
    create(&sim, Family::Text2Video, &body)
}

async fn create_image2video(State(sim): State<Arc<Sim>>, body: Bytes) -> Result<Response, ApiError> {
    create(&sim, Family::Image2Video, &body)
}

async fn query_images(
    State(sim): State<Arc<Sim>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    query(&sim, Family::Images, id)
}

async fn query_text2video(
    State(sim): State<Arc<Sim>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    query(&sim, Family::Text2Video, id)
}

async fn query_image2video(
    State(sim): State<Arc<Sim>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    query(&sim, Family::Image2Video, id)
}

/// Middleware refusing requests without a valid token (1000 or 1004, 401).
pub async fn require_token(
    State(sim): State<Arc<Sim>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = match request.headers().get(AUTHORIZATION) {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            ApiError::new(Code::TokenInvalid, "Authorization header is not text")
        })?),
    };
    sim.verifier().check(header)?;
    Ok(next.run(request).await)
}
