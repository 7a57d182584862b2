//! The simulated account: packs, tasks, limits and the rules that tie them.
//!
//! All state sits behind one mutex, held only for short synchronous steps
//! (never across an `.await`), so every rule (the concurrency check, the
//! balance check, the insertion of the task) runs as one atomic step, as the
//! service must do it for parallel creates to be refused correctly.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::auth::Verifier;
use crate::clock::now_ms;
use crate::config::{Config, MsRange};
use crate::envelope::{ApiError, Code};
use crate::lifecycle::{self, Transition};
use crate::packs::{self, Pack, PackInfo, PackSpec};
use crate::requests::{CreateRequest, Prices};
use crate::task::{
    CreatedView, Family, Fate, Kind, Outcome, Status, Task, TaskView, GENERATION_ERROR_MESSAGE,
    MODERATION_MESSAGE,
};
use crate::units::Units;

/// `/account/costs` answers at most once per this interval.
const COSTS_INTERVAL: Duration = Duration::from_millis(1000);

/// Settings that can change at run time (`POST /sim/settings`).
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub lag_ms: u64,
    pub fail_rate: f64,
    pub moderation_share: f64,
    pub callbacks: bool,
    pub arrears: bool,
    #[serde(serialize_with = "serialize_display")]
    pub task_ms: MsRange,
}

fn serialize_display<S: serde::Serializer>(value: &MsRange, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// A partial change of the settings; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    pub lag_ms: Option<u64>,
    pub fail_rate: Option<f64>,
    pub moderation_share: Option<f64>,
    pub callbacks: Option<bool>,
    pub arrears: Option<bool>,
    pub task_ms: Option<String>,
}

/// A fate given in advance by `POST /sim/script`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedFate {
    pub outcome: Outcome,
    /// The failure reason; a generation error's message if absent.
    #[serde(default)]
    pub reason: Option<String>,
    /// Milliseconds from creation to the end; drawn from `task_ms` if absent.
    #[serde(default)]
    pub ms: Option<u64>,
}

/// Slots held by another client of the account until `until` (ms).
#[derive(Debug, Clone)]
struct Occupation {
    kind: Kind,
    slots: u32,
    until: u64,
}

/// One deduction from the account, for the ledger.
#[derive(Debug, Clone, Serialize)]
pub struct Deduction {
    pub at: u64,
    pub units: Units,
    /// The task charged, or `None` for a spend by another client.
    pub task_id: Option<String>,
}

/// Which packs `/account/costs` is asked about.
#[derive(Debug, Clone)]
pub struct CostsQuery {
    pub start_time: u64,
    pub end_time: u64,
    pub pack_name: Option<String>,
}

/// `data` of `/account/costs`.
#[derive(Debug, Clone, Serialize)]
pub struct CostsData {
    pub code: u32,
    pub msg: String,
    pub resource_pack_subscribe_infos: Vec<PackInfo>,
}

/// The truth, for tests' assertions (`GET /sim/ledger`).
#[derive(Debug, Clone, Serialize)]
pub struct Ledger {
    pub packs: Vec<LedgerPack>,
    pub tasks: Vec<LedgerTask>,
    pub creates: u64,
    pub costs_requests: u64,
    /// Calls to `/account/costs` refused for coming within a second of the
    /// one before (1302).
    pub costs_refused: u64,
    /// Creates refused for want of parallel slots (1303).
    pub over_concurrency: u64,
    /// The most slots the account's own tasks held at once, per kind
    /// (another client's `/sim/occupy` slots not counted).
    pub max_running: MaxRunning,
    pub deductions: Vec<Deduction>,
}

/// The most slots held at once by the account's tasks, per kind.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MaxRunning {
    pub image: u32,
    pub video: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct LedgerPack {
    pub id: String,
    pub name: String,
    pub true_remaining: Units,
    pub reported_remaining: Units,
}

#[derive(Debug, Clone, Serialize)]
pub struct LedgerTask {
    pub task_id: String,
    pub external_task_id: Option<String>,
    pub kind: Kind,
    /// The create path's family (`images/generations`, `videos/text2video`, ...).
    pub family: &'static str,
    pub status: Status,
    pub price: Units,
    pub deducted: Units,
    /// Where its callbacks go, as the client asked.
    pub callback_url: Option<String>,
}

/// The simulated account and its service.
pub struct Sim {
    verifier: Verifier,
    prices: Prices,
    image_limit: u32,
    video_limit: u32,
    http: reqwest::Client,
    shutdown: watch::Receiver<bool>,
    state: Mutex<State>,
}

struct State {
    settings: Settings,
    packs: Vec<Pack>,
    packs_added: u64,
    tasks: Vec<Task>,
    by_id: HashMap<String, usize>,
    by_external: HashMap<String, usize>,
    /// Open callback queues of running tasks that have a `callback_url`.
    callbacks: HashMap<String, mpsc::UnboundedSender<TaskView>>,
    rng: StdRng,
    script: VecDeque<ScriptedFate>,
    occupations: Vec<Occupation>,
    costs_requests: u64,
    costs_refused: u64,
    over_concurrency: u64,
    max_running: MaxRunning,
    last_costs: Option<Instant>,
    deductions: Vec<Deduction>,
}

impl Sim {
    /// Builds the account from the configuration and its packs.
    pub fn new(
        config: &Config,
        packs: Vec<Pack>,
        http: reqwest::Client,
        shutdown: watch::Receiver<bool>,
    ) -> Sim {
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => rand::make_rng(),
        };
        let packs_added = packs.len() as u64;
        Sim {
            verifier: Verifier::new(&config.access_key, &config.secret_key),
            prices: Prices {
                image: config.image_price,
                video: config.video_price,
            },
            image_limit: config.image_concurrency,
            video_limit: config.video_concurrency,
            http,
            shutdown,
            state: Mutex::new(State {
                settings: Settings {
                    lag_ms: config.lag_ms,
                    fail_rate: config.fail_rate,
                    moderation_share: config.moderation_share,
                    callbacks: !config.no_callbacks,
                    arrears: false,
                    task_ms: config.task_ms,
                },
                packs,
                packs_added,
                tasks: Vec::new(),
                by_id: HashMap::new(),
                by_external: HashMap::new(),
                callbacks: HashMap::new(),
                rng,
                script: VecDeque::new(),
                occupations: Vec::new(),
                costs_requests: 0,
                costs_refused: 0,
                over_concurrency: 0,
                max_running: MaxRunning::default(),
                last_costs: None,
                deductions: Vec::new(),
            }),
        }
    }

    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// A receiver that turns true (or closes) when the simulator stops.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// The state, even if a panic elsewhere poisoned the lock: every step
    /// leaves the state consistent before anything can panic, and a
    /// simulator that keeps answering is more useful to a test than one that
    /// cascades panics.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn limit(&self, kind: Kind) -> u32 {
        match kind {
            Kind::Image => self.image_limit,
            Kind::Video => self.video_limit,
        }
    }

    /// `GET /account/costs`: the packs bought within the window, with the
    /// lagging figures. At most one answer per second (1302 otherwise).
    pub fn costs(&self, query: &CostsQuery) -> Result<CostsData, ApiError> {
        let mut state = self.state();
        state.costs_requests += 1;
        let now_instant = Instant::now();
        if let Some(last) = state.last_costs {
            if now_instant.duration_since(last) < COSTS_INTERVAL {
                state.costs_refused += 1;
                return Err(ApiError::new(
                    Code::RateLimited,
                    "too many requests: /account/costs allows 1 query per second",
                ));
            }
        }
        state.last_costs = Some(now_instant);
        let now = now_ms();
        let lag = state.settings.lag_ms;
        let infos = state
            .packs
            .iter()
            .filter(|p| (query.start_time..=query.end_time).contains(&p.purchase_time))
            .filter(|p| query.pack_name.as_ref().is_none_or(|name| *name == p.name))
            .map(|p| p.info(now, lag))
            .collect();
        Ok(CostsData {
            code: 0,
            msg: String::new(),
            resource_pack_subscribe_infos: infos,
        })
    }

    /// Creates a task, after the service's checks in its order: a reused
    /// `external_task_id` (1201), arrears (1101), parallel slots (1303),
    /// units (1102).
    pub fn create(self: &Arc<Self>, request: CreateRequest) -> Result<CreatedView, ApiError> {
        let price = request
            .work
            .price(self.prices)
            .ok_or_else(|| ApiError::new(Code::Internal, "price overflows"))?;
        let kind = request.family.kind();
        let slots = request.work.slots();
        let now = now_ms();

        let mut state = self.state();
        if let Some(external) = &request.external_task_id {
            if state.by_external.contains_key(external) {
                return Err(ApiError::new(
                    Code::InvalidParameterValue,
                    "external_task_id already exists",
                ));
            }
        }
        if state.settings.arrears {
            return Err(ApiError::new(Code::Arrears, "account is in arrears"));
        }
        let running = state.running_slots(kind, now);
        let limit = self.limit(kind);
        if running.saturating_add(slots) > limit {
            state.over_concurrency += 1;
            return Err(ApiError::new(
                Code::ConcurrencyLimit,
                format!(
                    "parallel task over resource pack limit ({running} of {limit} {kind:?} slots in use, {slots} asked)"
                ),
            ));
        }
        let available = packs::spendable(&state.packs, now).saturating_sub(state.reserved());
        if available < price {
            return Err(ApiError::new(
                Code::PacksExhausted,
                format!("resource pack exhausted: {price} units needed, {available} available"),
            ));
        }

        let fate = state.next_fate();
        let id = state.next_task_id();
        let task = Task {
            id: id.clone(),
            external_id: request.external_task_id,
            family: request.family,
            output: request.work.output(),
            slots,
            price,
            status: Status::Submitted,
            status_msg: String::new(),
            deducted: Units::ZERO,
            created_at: now,
            updated_at: now,
            fate: fate.clone(),
            callback_url: request.callback_url,
        };
        let view = task.created_view();
        let index = state.tasks.len();
        state.by_id.insert(id.clone(), index);
        if let Some(external) = &task.external_id {
            state.by_external.insert(external.clone(), index);
        }
        if let Some(url) = &task.callback_url {
            let sender = lifecycle::spawn_callbacks(self.http.clone(), url.clone(), self.shutdown_signal());
            state.callbacks.insert(id.clone(), sender);
        }
        state.tasks.push(task);
        let held = state.own_slots(kind);
        let max = match kind {
            Kind::Image => &mut state.max_running.image,
            Kind::Video => &mut state.max_running.video,
        };
        *max = (*max).max(held);
        drop(state);

        let sim = Arc::clone(self);
        lifecycle::spawn_driver(
            move |task_id, step| {
                sim.transition(task_id, step);
            },
            self.shutdown_signal(),
            id,
            fate.duration_ms,
        );
        Ok(view)
    }

    /// A task of `family` by its id or its `external_task_id`.
    pub fn query(&self, family: Family, id: &str) -> Result<TaskView, ApiError> {
        let state = self.state();
        state
            .find(id)
            .filter(|task| task.family == family)
            .map(Task::view)
            .ok_or_else(task_not_found)
    }

    /// Moves a task on; does nothing if it already ended (or, for
    /// `Processing`, already left `submitted`). Returns whether it changed.
    pub fn transition(&self, task_id: &str, transition: Transition) -> bool {
        let now = now_ms();
        let mut state = self.state();
        let Some(&index) = state.by_id.get(task_id) else {
            return false;
        };
        let State {
            tasks,
            packs,
            deductions,
            ..
        } = &mut *state;
        let Some(task) = tasks.get_mut(index) else {
            return false;
        };
        let ending = match transition {
            Transition::Processing if task.status == Status::Submitted => {
                task.status = Status::Processing;
                task.updated_at = now;
                None
            }
            Transition::Processing => return false,
            _ if !task.status.is_running() => return false,
            Transition::Natural => Some((task.fate.outcome, task.fate.reason.clone())),
            Transition::Forced { outcome, reason } => Some((
                outcome,
                reason.unwrap_or_else(|| GENERATION_ERROR_MESSAGE.to_owned()),
            )),
        };
        if let Some((outcome, reason)) = ending {
            task.updated_at = now;
            match outcome {
                Outcome::Succeed => {
                    // Creation checked the balance, but another client may
                    // have spent since: take what exists rather than fail.
                    let taken = packs::deduct(packs, task.price, now);
                    task.deducted = taken;
                    task.status = Status::Succeed;
                    task.status_msg = String::new();
                    deductions.push(Deduction {
                        at: now,
                        units: taken,
                        task_id: Some(task.id.clone()),
                    });
                }
                Outcome::Failed => {
                    task.status = Status::Failed;
                    task.status_msg = reason;
                }
            }
        }
        let view = task.view();
        let ended = !view.task_status.is_running();
        state.notify(task_id, view, ended);
        true
    }

    /// `POST /sim/end/{task_id}`: ends a running task now.
    pub fn end_now(&self, task_id: &str, outcome: Outcome, reason: Option<String>) -> Result<TaskView, ApiError> {
        let known = self.state().by_id.contains_key(task_id);
        if !known {
            return Err(task_not_found());
        }
        if !self.transition(task_id, Transition::Forced { outcome, reason }) {
            return Err(ApiError::invalid("task already ended").with_status(axum::http::StatusCode::CONFLICT));
        }
        let state = self.state();
        state.find(task_id).map(Task::view).ok_or_else(task_not_found)
    }

    /// `POST /sim/spend`: another client of the account spends units now.
    /// Refused (1102) if the packs that can pay hold less; nothing is taken
    /// then.
    pub fn spend(&self, units: Units) -> Result<Units, ApiError> {
        let now = now_ms();
        let mut state = self.state();
        let available = packs::spendable(&state.packs, now);
        if available < units {
            return Err(ApiError::new(
                Code::PacksExhausted,
                format!("cannot spend {units} units: {available} available"),
            ));
        }
        let taken = packs::deduct(&mut state.packs, units, now);
        state.deductions.push(Deduction {
            at: now,
            units: taken,
            task_id: None,
        });
        Ok(taken)
    }

    /// `POST /sim/occupy`: another client holds `slots` of `kind` for `ms`.
    /// Returns when they free up (epoch ms).
    pub fn occupy(&self, kind: Kind, slots: u32, ms: u64) -> u64 {
        let until = now_ms().saturating_add(ms);
        self.state().occupations.push(Occupation { kind, slots, until });
        until
    }

    /// `POST /sim/settings`: applies a partial change, all or nothing.
    pub fn update_settings(&self, patch: SettingsPatch) -> Result<Settings, ApiError> {
        let share = |name: &str, value: Option<f64>| match value {
            Some(v) if !(0.0..=1.0).contains(&v) => {
                Err(ApiError::invalid(format!("{name} must be a number from 0 to 1")))
            }
            other => Ok(other),
        };
        let fail_rate = share("fail_rate", patch.fail_rate)?;
        let moderation_share = share("moderation_share", patch.moderation_share)?;
        let task_ms = patch
            .task_ms
            .map(|text| text.parse::<MsRange>())
            .transpose()
            .map_err(|e| ApiError::invalid(format!("task_ms: {e}")))?;
        let mut state = self.state();
        let settings = &mut state.settings;
        if let Some(v) = patch.lag_ms {
            settings.lag_ms = v;
        }
        if let Some(v) = fail_rate {
            settings.fail_rate = v;
        }
        if let Some(v) = moderation_share {
            settings.moderation_share = v;
        }
        if let Some(v) = patch.callbacks {
            settings.callbacks = v;
        }
        if let Some(v) = patch.arrears {
            settings.arrears = v;
        }
        if let Some(v) = task_ms {
            settings.task_ms = v;
        }
        Ok(settings.clone())
    }

    /// `POST /sim/script`: queues fates for the next created tasks. Returns
    /// how many are queued now.
    pub fn script(&self, fates: Vec<ScriptedFate>) -> usize {
        let mut state = self.state();
        state.script.extend(fates);
        state.script.len()
    }

    /// `POST /sim/packs`: adds a pack, its relative times counted from now.
    pub fn add_pack(&self, spec: PackSpec) -> Result<PackInfo, ApiError> {
        let now = now_ms();
        let mut state = self.state();
        let id = pack_id(state.packs_added + 1);
        let pack = spec.build(id, now).map_err(|e| ApiError::invalid(e.to_string()))?;
        if state.packs.iter().any(|p| p.id == pack.id) {
            return Err(ApiError::new(
                Code::InvalidParameterValue,
                format!("pack id {:?} already exists", pack.id),
            ));
        }
        state.packs_added += 1;
        let info = pack.info(now, state.settings.lag_ms);
        state.packs.push(pack);
        Ok(info)
    }

    /// `GET /sim/ledger`.
    pub fn ledger(&self) -> Ledger {
        let now = now_ms();
        let state = self.state();
        let lag = state.settings.lag_ms;
        Ledger {
            packs: state
                .packs
                .iter()
                .map(|p| LedgerPack {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    true_remaining: p.remaining,
                    reported_remaining: p.reported_remaining(now, lag),
                })
                .collect(),
            tasks: state
                .tasks
                .iter()
                .map(|t| LedgerTask {
                    task_id: t.id.clone(),
                    external_task_id: t.external_id.clone(),
                    kind: t.family.kind(),
                    family: t.family.path(),
                    status: t.status,
                    price: t.price,
                    deducted: t.deducted,
                    callback_url: t.callback_url.clone(),
                })
                .collect(),
            creates: state.tasks.len() as u64,
            costs_requests: state.costs_requests,
            costs_refused: state.costs_refused,
            over_concurrency: state.over_concurrency,
            max_running: state.max_running,
            deductions: state.deductions.clone(),
        }
    }
}

/// The id given to the `n`th pack (from 1) that has none of its own.
pub fn pack_id(n: u64) -> String {
    format!("ksim-pack-{n}")
}

/// The answer to a query for an unknown task. The real service's code for
/// this case is unconfirmed; 404 with 1200 is the simulator's choice.
fn task_not_found() -> ApiError {
    ApiError::invalid("task not found").with_status(axum::http::StatusCode::NOT_FOUND)
}

impl State {
    fn find(&self, id: &str) -> Option<&Task> {
        self.by_id
            .get(id)
            .or_else(|| self.by_external.get(id))
            .and_then(|&i| self.tasks.get(i))
    }

    /// Slots of `kind` held now by the account's running tasks.
    fn own_slots(&self, kind: Kind) -> u32 {
        self.tasks
            .iter()
            .filter(|t| t.status.is_running() && t.family.kind() == kind)
            .map(|t| t.slots)
            .fold(0, u32::saturating_add)
    }

    /// Slots of `kind` held now by running tasks and by other clients.
    fn running_slots(&mut self, kind: Kind, now: u64) -> u32 {
        self.occupations.retain(|o| o.until > now);
        let tasks = self.own_slots(kind);
        let others: u32 = self
            .occupations
            .iter()
            .filter(|o| o.kind == kind)
            .map(|o| o.slots)
            .fold(0, u32::saturating_add);
        tasks.saturating_add(others)
    }

    /// Units that running tasks will take if they succeed.
    fn reserved(&self) -> Units {
        self.tasks
            .iter()
            .filter(|t| t.status.is_running())
            .fold(Units::ZERO, |acc, t| acc.saturating_add(t.price))
    }

    /// The next fate: scripted if any is queued, else drawn. A random fate
    /// draws the same three numbers whatever the outcome, so that a seeded
    /// run replays the same sequence.
    fn next_fate(&mut self) -> Fate {
        let settings = self.settings.clone();
        let range = settings.task_ms.min..=settings.task_ms.max;
        if let Some(scripted) = self.script.pop_front() {
            let duration_ms = match scripted.ms {
                Some(ms) => ms,
                None => self.rng.random_range(range),
            };
            return Fate {
                outcome: scripted.outcome,
                reason: match scripted.outcome {
                    Outcome::Succeed => String::new(),
                    Outcome::Failed => scripted
                        .reason
                        .unwrap_or_else(|| GENERATION_ERROR_MESSAGE.to_owned()),
                },
                duration_ms,
            };
        }
        let fails = self.rng.random_bool(settings.fail_rate);
        let moderated = self.rng.random_bool(settings.moderation_share);
        let duration_ms = self.rng.random_range(range);
        let (outcome, reason) = match (fails, moderated) {
            (false, _) => (Outcome::Succeed, ""),
            (true, true) => (Outcome::Failed, MODERATION_MESSAGE),
            (true, false) => (Outcome::Failed, GENERATION_ERROR_MESSAGE),
        };
        Fate {
            outcome,
            reason: reason.to_owned(),
            duration_ms,
        }
    }

    fn next_task_id(&mut self) -> String {
        let n = self.tasks.len() + 1;
        let salt: u32 = self.rng.random();
        format!("ksim-{n:06}-{salt:08x}")
    }

    /// Queues a callback of the task's new state if callbacks are on, and
    /// closes its queue once it ended.
    fn notify(&mut self, task_id: &str, view: TaskView, ended: bool) {
        if self.settings.callbacks {
            if let Some(sender) = self.callbacks.get(task_id) {
                // A closed queue means the simulator is stopping.
                let _ = sender.send(view);
            }
        }
        if ended {
            self.callbacks.remove(task_id);
        }
    }
}
