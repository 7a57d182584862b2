//! Upstream mode (`--upstream kling`, docs/kling.md): the server stands
//! between the dashboard and the generation service. A submit is reserved
//! locally first (R1-R3, one transaction, as in the default mode), then
//! created upstream; task ends come by callback (confirmed by a query) and
//! by polling; packages come from the service's `/account/costs` and are
//! reconciled with the charges seen here by the core's ledger.
//!
//! The queue: a request sent with `queue` is created upstream only once
//! the local count lets it start (when it is submitted, or when a change
//! starts it from the queue: [`Upstream::launch`]). The service's 1303 for
//! it (slots taken by tasks started elsewhere) puts it back at its place in
//! the queue and holds its kind for the backoff; when the backoff passes
//! the queue moves again ([`Upstream::wake_after`], and each polling
//! round). A person is never shown a refusal that waiting would avoid.
//!
//! On either store. With several instances on one PostgreSQL database,
//! every instance takes submits and callbacks, and one instance at a time
//! (the store's `lead`) reads the packs and polls the running tasks: the
//! service is asked for its packs at most once a second across them all, and
//! when that instance stops another takes over within a few seconds.

pub mod kling;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use quota_widget::core::backoff::backoff_ms;
use quota_widget::core::wire::{codes, Millis, SubmitAccepted, SubmitRequest, Units};
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{QuotaError, Refusal};
use crate::now_ms;
use crate::outcome::{CallbackError, Submitted};
use crate::storage::Storage;
use crate::store::{
    parse_task_id, AccountId, AccountSpec, MirrorPack, SubmitOutcome, TaskEnd, TaskKey, UpstreamFields, UpstreamTask,
};
use kling::{Client, Family, KlingError, Status, TaskData};

/// Fields of a create call that the server sets itself.
const RESERVED_FIELDS: [&str; 3] = ["n", "callback_url", "external_task_id"];
/// Largest generation-fields object a submit may carry (serialized).
const MAX_PARAMS_BYTES: usize = 16 * 1024;
/// Packs are asked for by purchase time over this window before now.
const COSTS_WINDOW_MS: Millis = 400 * 86_400_000;
/// Pause between two task queries of one polling round.
const QUERY_SPACING: Duration = Duration::from_millis(200);
/// How often an instance that does not sync tries to take over.
const LEAD_RETRY: Duration = Duration::from_secs(1);
/// After taking over, the wait before the first read of the packs: the
/// instance before may have read them just before it stopped, and the
/// service answers one read a second.
const TAKEOVER_WAIT: Duration = Duration::from_millis(1_200);

/// What upstream mode needs from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub base_url: String,
    pub access_key: kling::Secret,
    pub secret_key: kling::Secret,
    /// The local account the dashboard signs in to.
    pub account_token: String,
    /// Where the service can reach this server; `None`: no callbacks,
    /// polling only.
    pub public_url: Option<String>,
    pub sync_every: Duration,
    pub poll_every: Duration,
    /// A task with no end from the service after this long ends as failed,
    /// not charged.
    pub deadline: Duration,
    pub timeout: Duration,
    /// Per kind: slot limit and estimated cost per item.
    pub image: (u32, Units),
    pub video: (u32, Units),
}

/// After the service's own 1303: no create of that kind before `until`.
#[derive(Clone, Copy, Debug)]
struct Busy {
    until: Instant,
    attempt: u32,
}

pub struct Upstream {
    client: Client,
    db: Arc<dyn Storage>,
    account: AccountId,
    secret: String,
    settings: Settings,
    busy: Mutex<HashMap<String, Busy>>,
    /// Requests that may wait per account (`--max-queued`).
    max_queued: u32,
}

/// What a create call upstream came to.
enum Created {
    /// The service took it: it runs.
    Running,
    /// The service's 1303 for a request sent with `queue`: it waits again,
    /// at this place.
    Waiting(u32),
    Refused { refusal: Refusal, retry_after_s: Option<u64> },
    /// Failed, not charged.
    Failed { message: String },
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("account", &self.account).finish_non_exhaustive()
    }
}

impl Upstream {
    /// Prepares the mirrored account (limits and estimated costs from the
    /// settings) and starts the package sync and the task poller.
    pub async fn start(
        settings: Settings,
        db: Arc<dyn Storage>,
        max_queued: u32,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Upstream>, QuotaError> {
        let client = Client::new(
            &settings.base_url,
            settings.access_key.clone(),
            settings.secret_key.clone(),
            settings.timeout,
        )
        .map_err(|e| QuotaError::BadRequest(e.to_string()))?;
        let now = now_ms();
        let spec = AccountSpec {
            image_limit: settings.image.0,
            video_limit: settings.video.0,
            packages: Vec::new(),
        };
        let (image, video) = (settings.image, settings.video);
        let fresh_secret = format!("{:032x}", rand::random::<u128>());
        let account = db.ensure_account(&settings.account_token, &spec, now).await?;
        let secret = db.ensure_mirror(account, &fresh_secret, now).await?;
        // A raised limit may start queued requests.
        let mut started = db.set_pool(account, "image", image.0, Some(image.1), now).await?.started;
        started.extend(db.set_pool(account, "video", video.0, Some(video.1), now).await?.started);
        let up = Arc::new(Upstream {
            client,
            db,
            account,
            secret,
            settings,
            busy: Mutex::new(HashMap::new()),
            max_queued,
        });
        up.launch(started);
        tokio::spawn(Arc::clone(&up).sync_loop(shutdown.clone()));
        tokio::spawn(Arc::clone(&up).poll_loop(shutdown));
        Ok(up)
    }

    /// Units charged here that the service's figures do not show yet.
    pub async fn pending_charges(&self) -> Result<Units, QuotaError> {
        self.db.pending_charges(self.account).await
    }

    /// Whether this instance reads the packs and polls the tasks now.
    async fn leads(&self) -> bool {
        match self.db.lead(self.account).await {
            Ok(leads) => leads,
            Err(e) => {
                eprintln!("quota-server: cannot tell whether this instance syncs with the service: {e}");
                false
            }
        }
    }

    pub fn account(&self) -> AccountId {
        self.account
    }

    /// True if `secret` is the one of this server's callback URL.
    pub fn callback_secret_is(&self, secret: &str) -> bool {
        // Compared in full whatever the first difference, so that timing
        // does not tell how much of a guess was right.
        secret.len() == self.secret.len()
            && secret.bytes().zip(self.secret.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// The URL the service is given for task callbacks (`None` without `--public-url`).
    pub fn callback_url(&self) -> Option<String> {
        let base = self.settings.public_url.as_deref()?;
        Some(format!("{}/api/upstream/callback/{}", base.trim_end_matches('/'), self.secret))
    }

    fn busy_for(&self, kind: &str) -> Option<Duration> {
        let busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        let b = busy.get(kind)?;
        b.until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())
    }

    /// The service said 1303: wait before the next create of that kind,
    /// longer with each refusal in a row (1 s, 2 s, 4 s ... 30 s, jittered).
    fn back_off(&self, kind: &str) -> Duration {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        let attempt = busy.get(kind).map_or(1, |b| b.attempt.saturating_add(1));
        let wait = Duration::from_millis(u64::from(backoff_ms(attempt, rand::random::<f64>())));
        busy.insert(kind.to_owned(), Busy { until: Instant::now() + wait, attempt });
        wait
    }

    fn not_busy(&self, kind: &str) {
        self.busy.lock().unwrap_or_else(PoisonError::into_inner).remove(kind);
    }

    /// A submit: local reservation (or, sent with `queue` while its slots
    /// are busy, a place in the queue), then the create call upstream.
    pub async fn submit(self: &Arc<Self>, req: &SubmitRequest, params: Map<String, Value>) -> Result<Submitted, QuotaError> {
        let family = Family::for_submit(&req.kind, &params)
            .ok_or_else(|| QuotaError::BadRequest(format!("unknown kind {:?}", req.kind)))?;
        if family != Family::Images && req.count != 1 {
            return Err(QuotaError::BadRequest("a video request makes one video: count must be 1".into()));
        }
        let params_text = serde_json::to_string(&params).map_err(|e| QuotaError::BadRequest(e.to_string()))?;
        if params_text.len() > MAX_PARAMS_BYTES {
            return Err(QuotaError::BadRequest(format!(
                "params must be at most {MAX_PARAMS_BYTES} bytes of JSON"
            )));
        }
        let now = now_ms();
        // Before the first sync the figures here are not the account's: a
        // refusal for missing units would be false. Nothing is recorded.
        let account = self.account;
        if self.db.mirror(account).await?.and_then(|(_, synced_at)| synced_at).is_none() {
            return Ok(Submitted::Refused { refusal: not_synced_refusal(), retry_after_s: Some(1) });
        }
        // The service is busy for this kind: a request that may wait is
        // queued (the store holds the kind as long), another refused.
        if let Some(wait) = self.busy_for(&req.kind).filter(|_| !req.queue) {
            let refusal = busy_refusal();
            self.db.refuse(account, req, &refusal, now).await?;
            return Ok(Submitted::Refused { refusal, retry_after_s: Some(wait.as_secs().max(1)) });
        }
        // The whole create body is kept: a queued request is created later,
        // by whichever change starts it.
        let body = self.create_body(req, family, params);
        let body_text = serde_json::to_string(&body).map_err(|e| QuotaError::BadRequest(e.to_string()))?;
        let fields = UpstreamFields { family: family.name().to_owned(), params: body_text };
        let reserved = self.db.submit_upstream(account, req, Some(fields), self.max_queued, now).await?;
        let accepted = match reserved {
            SubmitOutcome::Refused { refusal, .. } => {
                let retry = (refusal.code() == codes::OVER_CONCURRENCY).then_some(1);
                return Ok(Submitted::Refused { refusal, retry_after_s: retry });
            }
            // A repeated request id never creates a second upstream task,
            // and a queued request is created once it starts.
            SubmitOutcome::Accepted { accepted, repeat } if repeat || accepted.place.is_some() => {
                return Ok(Submitted::Accepted { accepted, repeat })
            }
            SubmitOutcome::Accepted { accepted, .. } => accepted,
        };
        let id = parse_task_id(&accepted.task_id)
            .ok_or_else(|| QuotaError::BadRequest("bad task id".into()))?;
        Ok(match self.create(id, &req.kind, family, &body, &req.client_request_id).await? {
            Created::Running => Submitted::Accepted { accepted, repeat: false },
            Created::Waiting(place) => Submitted::Accepted { accepted: SubmitAccepted { place: Some(place), ..accepted }, repeat: false },
            Created::Refused { refusal, retry_after_s } => Submitted::Refused { refusal, retry_after_s },
            Created::Failed { message } => Submitted::Failed { message },
        })
    }

    /// Creates task `id` upstream (reserved here, running locally) and
    /// applies the service's answer: attached and settled, put back in the
    /// queue or refused on its 1303, refused, or failed, never charged.
    async fn create(
        self: &Arc<Self>,
        id: i64,
        kind: &str,
        family: Family,
        body: &Map<String, Value>,
        external_id: &str,
    ) -> Result<Created, QuotaError> {
        let created = match self.client.create(family, body).await {
            // The external id is taken: a create that reached the service
            // before (a retry after a restart). Find that task.
            Err(e @ KlingError::Refused { code: 1201, .. }) => {
                self.client.query(family, external_id).await.map_err(|_| e)
            }
            // Not known to have reached the service: ask before calling it
            // a failure, so that a task that runs is never lost.
            Err(e @ (KlingError::Unavailable(_) | KlingError::Protocol(_))) => {
                self.client.query(family, external_id).await.map_err(|_| e)
            }
            other => other,
        };
        let (account, now) = (self.account, now_ms());
        match created {
            Ok(data) => {
                self.not_busy(kind);
                self.db.attach_upstream(account, id, &data.task_id, now).await?;
                if let Some(task) = self.db.upstream_task(TaskKey::Local(id)).await? {
                    self.settle(&task, &data).await?;
                }
                Ok(Created::Running)
            }
            Err(KlingError::Refused { code, message, .. }) if (1000..=1004).contains(&code) => {
                eprintln!("quota-server: the upstream service rejected this server's credentials (code {code}: {message}); check the access and secret keys");
                let message = "the generation service rejected the server's credentials".to_owned();
                self.fail(id, &message, now).await?;
                Ok(Created::Failed { message })
            }
            Err(KlingError::Refused { code: kling::code::OVER_CONCURRENCY, .. }) => {
                // Slots taken elsewhere: the kind is held for the backoff,
                // here and for every instance (in the store); a request
                // sent with `queue` waits again in its place.
                let wait = self.back_off(kind);
                let until = now.saturating_add(Millis::try_from(wait.as_millis()).unwrap_or(Millis::MAX));
                let busied = self.db.busy(account, id, &busy_refusal(), until, now).await?;
                self.launch(busied.started);
                self.wake_after(wait);
                Ok(match busied.place {
                    Some(place) => Created::Waiting(place),
                    None => Created::Refused { refusal: busy_refusal(), retry_after_s: Some(wait.as_secs().max(1)) },
                })
            }
            Err(KlingError::Refused { code, message, .. }) => {
                let refusal = upstream_refusal(code, &message);
                let retry = (code == kling::code::RATE_LIMITED).then(|| self.back_off(kind).as_secs().max(1));
                let progress = self.db.end_refused(account, id, &refusal, now).await?;
                self.launch(progress.started);
                Ok(Created::Refused { refusal, retry_after_s: retry })
            }
            Err(e) => {
                eprintln!("quota-server: creating task-{id} upstream failed: {e}");
                let message = format!("the generation service did not take the task ({e})");
                self.fail(id, &message, now).await?;
                Ok(Created::Failed { message })
            }
        }
    }

    /// Creates upstream, one after another, the tasks that a change
    /// started from the queue (they run locally, not yet upstream).
    pub fn launch(self: &Arc<Self>, started: Vec<i64>) {
        if started.is_empty() {
            return;
        }
        let up = Arc::clone(self);
        tokio::spawn(async move {
            for id in started {
                if let Err(e) = up.launch_one(id).await {
                    eprintln!("quota-server: creating task-{id} upstream: {e}");
                }
            }
        });
    }

    async fn launch_one(self: &Arc<Self>, id: i64) -> Result<(), QuotaError> {
        let Some(task) = self.db.upstream_task(TaskKey::Local(id)).await? else { return Ok(()) };
        if task.status != "running" || task.upstream_task_id.is_some() {
            return Ok(());
        }
        let Some(family) = Family::from_name(&task.family) else { return Ok(()) };
        let body: Map<String, Value> = serde_json::from_str(&task.params).unwrap_or_default();
        let created: std::pin::Pin<Box<dyn std::future::Future<Output = Result<Created, QuotaError>> + Send + '_>> =
            Box::pin(self.create(id, &task.kind, family, &body, &task.client_request_id));
        created.await.map(drop)
    }

    /// Once `wait` (a hold) has passed: starts what the queue can start,
    /// and creates it upstream.
    fn wake_after(self: &Arc<Self>, wait: Duration) {
        let up = Arc::clone(self);
        tokio::spawn(async move {
            // Just past the hold's end, which the store judges by its clock.
            tokio::time::sleep(wait + Duration::from_millis(20)).await;
            up.advance().await;
        });
    }

    /// Starts the queued requests that can start now, and creates them.
    async fn advance(self: &Arc<Self>) {
        match self.db.advance(self.account, now_ms()).await {
            Ok(progress) => self.launch(progress.started),
            Err(e) => eprintln!("quota-server: moving the queue: {e}"),
        }
    }

    fn create_body(&self, req: &SubmitRequest, family: Family, params: Map<String, Value>) -> Map<String, Value> {
        let mut body: Map<String, Value> =
            params.into_iter().filter(|(k, _)| !RESERVED_FIELDS.contains(&k.as_str())).collect();
        if let Some(prompt) = req.prompt.as_ref().filter(|p| !p.is_empty()) {
            body.entry("prompt").or_insert_with(|| Value::String(prompt.clone()));
        }
        if family == Family::Images {
            body.insert("n".into(), Value::from(req.count));
        }
        body.insert("external_task_id".into(), Value::String(req.client_request_id.clone()));
        if let Some(url) = self.callback_url() {
            body.insert("callback_url".into(), Value::String(url));
        }
        body
    }

    async fn fail(self: &Arc<Self>, id: i64, reason: &str, now: Millis) -> Result<(), QuotaError> {
        let end = TaskEnd::Fail { reason: reason.to_owned() };
        let account = self.account;
        match self.db.finish(account, id, &end, now).await {
            Ok(ended) => {
                self.launch(ended.started);
                Ok(())
            }
            Err(QuotaError::TaskEnded(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Applies what the service says of a task: an end settles it once
    /// (success charges the reported deduction, else the estimate; failure
    /// charges nothing); a running status changes nothing.
    async fn settle(self: &Arc<Self>, task: &UpstreamTask, data: &TaskData) -> Result<bool, QuotaError> {
        let end = match data.status() {
            Ok(Status::Submitted | Status::Processing) => return Ok(false),
            Ok(Status::Succeeded) => TaskEnd::Succeed { units: Some(data.deduction().unwrap_or(task.reserved)) },
            Ok(Status::Failed) => TaskEnd::Fail {
                reason: data
                    .task_status_msg
                    .as_deref()
                    .filter(|m| !m.trim().is_empty())
                    .unwrap_or("the generation failed")
                    .to_owned(),
            },
            Err(e) => {
                eprintln!("quota-server: task-{}: {e}", task.id);
                return Ok(false);
            }
        };
        let (account, id, now) = (task.account, task.id, now_ms());
        match self.db.finish(account, id, &end, now).await {
            Ok(ended) => {
                // Its slots are free: the queue moved; create what started.
                self.launch(ended.started);
                Ok(true)
            }
            Err(QuotaError::TaskEnded(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A callback: trusted only for a task this server created, and only as
    /// far as a query of the service confirms it.
    pub async fn callback(self: &Arc<Self>, body: &[u8]) -> Result<&'static str, CallbackError> {
        let data: TaskData = serde_json::from_slice(body)
            .map_err(|e| CallbackError::Malformed(format!("invalid callback body: {e}")))?;
        let claimed = data.status().map_err(|e| CallbackError::Malformed(e.to_string()))?;
        let unknown = || CallbackError::UnknownTask;
        let task = self.db.upstream_task(TaskKey::Upstream(data.task_id.clone())).await?.ok_or_else(unknown)?;
        if task.account != self.account
            || data.external_task_id().is_some_and(|x| x != task.client_request_id)
        {
            return Err(unknown());
        }
        if task.status != "running" {
            return Ok("already settled");
        }
        if matches!(claimed, Status::Submitted | Status::Processing) {
            return Ok("noted");
        }
        let family = Family::from_name(&task.family).ok_or_else(unknown)?;
        let upstream_id = task.upstream_task_id.as_deref().unwrap_or(&data.task_id);
        let confirmed = self
            .client
            .query(family, upstream_id)
            .await
            .map_err(|e| CallbackError::Unconfirmed(e.to_string()))?;
        match confirmed.status() {
            Ok(Status::Succeeded | Status::Failed) => {
                self.settle(&task, &confirmed).await?;
                Ok("settled")
            }
            _ => Err(CallbackError::Contradicted),
        }
    }

    /// While this instance syncs: reads the packs, reconciles them, and
    /// again every `sync_every`; after an error, backs off (1 s, 2 s, 4 s
    /// ... 30 s). Otherwise tries to take over every second.
    async fn sync_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut failures = 0u32;
        let mut leading = false;
        loop {
            let wait = if !self.leads().await {
                if leading {
                    eprintln!("quota-server: another instance syncs with the service now");
                }
                leading = false;
                LEAD_RETRY
            } else if !leading {
                leading = true;
                if self.db.shared() {
                    eprintln!("quota-server: this instance syncs with the service now (packs and running tasks)");
                    TAKEOVER_WAIT
                } else {
                    Duration::ZERO
                }
            } else {
                match self.sync_once().await {
                    Ok(()) => {
                        failures = 0;
                        self.settings.sync_every
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        eprintln!("quota-server: package sync failed ({failures} in a row): {e}");
                        Duration::from_millis(u64::from(backoff_ms(failures, rand::random::<f64>())))
                            .min(self.settings.sync_every.max(Duration::from_secs(1)))
                    }
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One sync: the service's packs into the store.
    pub async fn sync_once(&self) -> Result<(), String> {
        let now = now_ms();
        let packs = self
            .client
            .costs(now.saturating_sub(COSTS_WINDOW_MS), now.saturating_add(86_400_000))
            .await
            .map_err(|e| e.to_string())?;
        let packs: Vec<MirrorPack> = packs
            .into_iter()
            .map(|p| MirrorPack {
                upstream_id: p.resource_pack_id,
                name: p.resource_pack_name,
                total: p.total_quantity,
                remaining: p.remaining_quantity,
                effective_at_ms: p.effective_time,
                expires_at_ms: p.invalid_time,
                status: p.status,
            })
            .collect();
        let report = self.db.sync_packages(self.account, packs, now_ms()).await.map_err(|e| e.to_string())?;
        for task in &report.lapsed {
            eprintln!(
                "quota-server: the service's figures never showed the charge of {task} within the window; its figure is shown as it is"
            );
        }
        Ok(())
    }

    async fn poll_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if self.leads().await {
                if let Err(e) = self.poll_once().await {
                    eprintln!("quota-server: polling tasks: {e}");
                }
                // A hold that ended with no wake-up here (set by an
                // instance that stopped, or before a restart).
                self.advance().await;
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(self.settings.poll_every) => {}
            }
        }
    }

    /// One polling round over the running tasks: the fallback for callbacks
    /// that never come, the recovery after a restart, and the deadline.
    pub async fn poll_once(self: &Arc<Self>) -> Result<(), QuotaError> {
        let grace = Millis::try_from(self.settings.timeout.as_millis()).unwrap_or(Millis::MAX).saturating_add(5_000);
        let deadline = Millis::try_from(self.settings.deadline.as_millis()).unwrap_or(Millis::MAX);
        for (i, task) in self.db.upstream_running().await?.into_iter().enumerate() {
            if task.account != self.account {
                continue;
            }
            if i > 0 {
                tokio::time::sleep(QUERY_SPACING).await;
            }
            let now = now_ms();
            let age = now.saturating_sub(task.started_at_ms);
            if age >= deadline {
                eprintln!(
                    "quota-server: task-{} had no end from the service within {} s: ended as failed, not charged",
                    task.id,
                    deadline / 1000
                );
                self.fail(task.id, "no end from the generation service in time (not charged)", now).await?;
                continue;
            }
            let Some(family) = Family::from_name(&task.family) else { continue };
            let answer = match &task.upstream_task_id {
                Some(id) => self.client.query(family, id).await,
                // Its create call may still be on its way: leave it.
                None if age < grace => continue,
                // A create interrupted by a stop: the service knows the
                // task by its external id, or never got it.
                None => self.client.query(family, &task.client_request_id).await,
            };
            match answer {
                Ok(data) => {
                    if task.upstream_task_id.is_none() {
                        self.db.attach_upstream(task.account, task.id, &data.task_id, now_ms()).await?;
                    }
                    self.settle(&task, &data).await?;
                }
                Err(KlingError::Refused { code, message, .. }) if task.upstream_task_id.is_none() => {
                    eprintln!("quota-server: task-{} was never created upstream ({code}: {message}): failed, not charged", task.id);
                    self.fail(task.id, "not created by the generation service (not charged)", now).await?;
                }
                Err(e) => eprintln!("quota-server: querying task-{}: {e}", task.id),
            }
        }
        Ok(())
    }
}

fn busy_refusal() -> Refusal {
    Refusal::Upstream {
        code: codes::OVER_CONCURRENCY,
        message: "the generation service is at this account's parallel task limit (tasks started elsewhere count too); try again in a moment".into(),
    }
}

fn not_synced_refusal() -> Refusal {
    Refusal::Upstream {
        code: codes::UPSTREAM_UNAVAILABLE,
        message: "the account's packages are still being loaded from the generation service; try again in a moment".into(),
    }
}

/// The service's refusal as the person sees it.
fn upstream_refusal(code: i64, message: &str) -> Refusal {
    let code32 = u32::try_from(code).unwrap_or(codes::BAD_REQUEST);
    match code {
        kling::code::OVER_CONCURRENCY => busy_refusal(),
        kling::code::ARREARS => Refusal::Upstream {
            code: code32,
            message: "the generation service reports the account in arrears".into(),
        },
        kling::code::PACKS_EXHAUSTED => Refusal::Upstream {
            code: code32,
            message: "the generation service reports no resource pack with units left".into(),
        },
        _ => Refusal::Upstream {
            code: code32,
            message: if message.trim().is_empty() {
                format!("the generation service refused the task (code {code})")
            } else {
                format!("the generation service refused the task: {}", message.trim())
            },
        },
    }
}
