//! The control API (`/sim/*`), for tests and the demo: act as another client
//! of the account, change settings, script fates, read the truth.
//!
//! These paths need no token. That is safe only because the simulator binds
//! where it is told and nowhere else (loopback by default): never bind it to
//! an address others can reach.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::envelope::{ok, ApiError};
use crate::packs::PackSpec;
use crate::sim::{ScriptedFate, SettingsPatch, Sim};
use crate::task::{Kind, Outcome};
use crate::units::Units;

/// The control routes.
pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/sim/spend", post(spend))
        .route("/sim/occupy", post(occupy))
        .route("/sim/settings", post(settings))
        .route("/sim/script", post(script))
        .route("/sim/end/{task_id}", post(end))
        .route("/sim/ledger", get(ledger))
        .route("/sim/packs", post(add_pack))
}

/// Reads a JSON body into `T`, refusing with 1200 and serde's message (which
/// names the field) rather than axum's plain-text rejection.
fn read<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("bad request body: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpendBody {
    units: Units,
}

#[derive(Serialize)]
struct Spent {
    deducted: Units,
}

async fn spend(State(sim): State<Arc<Sim>>, body: Bytes) -> Result<Response, ApiError> {
    let SpendBody { units } = read(&body)?;
    let deducted = sim.spend(units)?;
    Ok(ok(Spent { deducted }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OccupyBody {
    kind: Kind,
    slots: u32,
    ms: u64,
}

#[derive(Serialize)]
struct Occupied {
    until: u64,
}

async fn occupy(State(sim): State<Arc<Sim>>, body: Bytes) -> Result<Response, ApiError> {
    let OccupyBody { kind, slots, ms } = read(&body)?;
    if slots == 0 {
        return Err(ApiError::invalid("slots must be at least 1"));
    }
    Ok(ok(Occupied {
        until: sim.occupy(kind, slots, ms),
    }))
}

async fn settings(State(sim): State<Arc<Sim>>, body: Bytes) -> Result<Response, ApiError> {
    let patch: SettingsPatch = read(&body)?;
    sim.update_settings(patch).map(ok)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptBody {
    outcomes: Vec<ScriptedFate>,
}

#[derive(Serialize)]
struct Scripted {
    queued: usize,
}

async fn script(State(sim): State<Arc<Sim>>, body: Bytes) -> Result<Response, ApiError> {
    let ScriptBody { outcomes } = read(&body)?;
    Ok(ok(Scripted {
        queued: sim.script(outcomes),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndBody {
    outcome: Outcome,
    #[serde(default)]
    reason: Option<String>,
}

async fn end(
    State(sim): State<Arc<Sim>>,
    task_id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Path(task_id) = task_id.map_err(|e| ApiError::invalid(format!("bad task id: {e}")))?;
    let EndBody { outcome, reason } = read(&body)?;
    sim.end_now(&task_id, outcome, reason).map(ok)
}

async fn ledger(State(sim): State<Arc<Sim>>) -> Response {
    ok(sim.ledger())
}

async fn add_pack(State(sim): State<Arc<Sim>>, body: Bytes) -> Result<Response, ApiError> {
    let spec: PackSpec = read(&body)?;
    sim.add_pack(spec).map(ok)
}
