//! The quota service: what the HTTP layer asks of the server (submit, end,
//! state, events, the service's callbacks), the same calls in both modes.
//! In upstream mode a submit is reserved here and created through the
//! service's client (`upstream`); otherwise the store decides and the
//! simulated worker ends the task later. Every submit comes to one
//! [`Submitted`], which the handlers only translate into HTTP.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use quota_widget::core::wire::{Cancelled, ServerState, SubmitRequest};
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::error::{QuotaError, StoreError};
use crate::hub::Message;
use crate::limits::StreamGuard;
use crate::now_ms;
use crate::outcome::{CallbackError, Submitted};
use crate::sse;
use crate::storage::Storage;
use crate::store::{parse_task_id, secret_hash, AccountId, AccountSpec, Ended, PackageSpec, SubmitOutcome, TaskEnd};
use crate::upstream::Upstream;
use crate::worker::Worker;

/// One per server; cheap to clone (handles only).
#[derive(Clone)]
pub struct Service {
    store: Arc<dyn Storage>,
    /// `None` with `--no-worker` and in upstream mode.
    worker: Option<Worker>,
    /// Upstream mode (`--upstream`): submits go to the service.
    upstream: Option<Arc<Upstream>>,
    /// Requests that may wait per account (`--max-queued`).
    max_queued: u32,
    ping_every: Duration,
    /// Turns true on shutdown; open event streams end on it.
    shutdown: watch::Receiver<bool>,
    /// Accounts by their token's hash, as found in the store: a token names
    /// its account for good (accounts are never deleted or given another
    /// token), so each is looked up once, not on every request.
    tokens: Arc<Mutex<HashMap<String, AccountId>>>,
}

/// Tokens remembered at most; past it the memory starts over.
const TOKENS_KEPT: usize = 100_000;

impl Service {
    pub fn new(
        store: Arc<dyn Storage>,
        worker: Option<Worker>,
        upstream: Option<Arc<Upstream>>,
        max_queued: u32,
        ping_every: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Service { store, worker, upstream, max_queued, ping_every, shutdown, tokens: Arc::default() }
    }

    /// Upstream mode's client, if the server fronts a service.
    pub fn upstream(&self) -> Option<&Arc<Upstream>> {
        self.upstream.as_ref()
    }

    /// R1-R3: reserves slots and units for the request, or refuses it; sent
    /// with `queue`, a request whose slots are busy waits (R8). In upstream
    /// mode, `params` are the service's own task fields; without an
    /// upstream there is nothing to pass them to.
    pub async fn submit(
        &self,
        account: AccountId,
        req: &SubmitRequest,
        params: Option<Map<String, Value>>,
    ) -> Result<Submitted, QuotaError> {
        if let Some(up) = &self.upstream {
            if up.account() != account {
                return Err(QuotaError::Forbidden("in upstream mode only the service's account can submit".into()));
            }
            return up.submit(req, params.unwrap_or_default()).await;
        }
        if params.is_some() {
            return Err(QuotaError::BadRequest(
                "params are passed to an upstream service: this server runs without one".into(),
            ));
        }
        Ok(match self.store.submit(account, req, self.max_queued, now_ms()).await? {
            SubmitOutcome::Accepted { accepted, repeat } => {
                // A queued request runs once a change starts it.
                if !repeat && accepted.place.is_none() {
                    self.run(account, parse_task_id(&accepted.task_id).into_iter().collect());
                }
                Submitted::Accepted { accepted, repeat }
            }
            SubmitOutcome::Refused { refusal, .. } => Submitted::Refused { refusal, retry_after_s: None },
        })
    }

    /// Ends a running task once: success deducts, failure releases (R3).
    pub async fn end(&self, account: AccountId, task_id: i64, end: &TaskEnd) -> Result<Ended, QuotaError> {
        let ended = self.store.finish(account, task_id, end, now_ms()).await?;
        self.run(account, ended.started.clone());
        Ok(ended)
    }

    /// Cancels a queued request (`task-<n>`): its units released, nothing
    /// charged; the requests behind it may start.
    pub async fn cancel(&self, account: AccountId, task_id: &str) -> Result<Cancelled, QuotaError> {
        if let Some(up) = &self.upstream {
            if up.account() != account {
                return Err(QuotaError::Forbidden("in upstream mode only the service's account can cancel".into()));
            }
        }
        let id = parse_task_id(task_id).ok_or_else(|| QuotaError::TaskNotFound(task_id.chars().take(40).collect()))?;
        let (cancelled, started) = self.store.cancel(account, id, now_ms()).await?;
        self.run(account, started);
        Ok(cancelled)
    }

    /// Runs tasks that just started: the simulated worker's, or upstream
    /// the service's create call. Without either (`--no-worker`) they run
    /// until a dev endpoint ends them.
    fn run(&self, account: AccountId, started: Vec<i64>) {
        if started.is_empty() {
            return;
        }
        if let Some(up) = &self.upstream {
            up.launch(started);
        } else if let Some(worker) = &self.worker {
            for id in started {
                worker.schedule(account, id);
            }
        }
    }

    /// The account's state now.
    pub async fn state(&self, account: AccountId) -> Result<ServerState, StoreError> {
        self.store.state(account, now_ms()).await
    }

    /// The account's event stream, as the bytes to send (`sse`).
    pub async fn events(
        &self,
        account: AccountId,
        place: StreamGuard,
        last_event_id: Option<u64>,
    ) -> Result<impl Stream<Item = Result<Bytes, Infallible>>, StoreError> {
        sse::open(Arc::clone(&self.store), account, place, last_event_id, self.ping_every, self.shutdown.clone()).await
    }

    /// The account a token names.
    pub async fn account_by_token(&self, token: &str) -> Result<Option<AccountId>, StoreError> {
        let hash = secret_hash(token);
        let known = self.tokens.lock().unwrap_or_else(PoisonError::into_inner).get(&hash).copied();
        if known.is_some() {
            return Ok(known);
        }
        let found = self.store.account_by_token(token).await?;
        if let Some(account) = found {
            let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
            if tokens.len() >= TOKENS_KEPT {
                tokens.clear();
            }
            tokens.insert(hash, account);
        }
        Ok(found)
    }

    /// The account of a session that has not expired.
    pub async fn session_account(&self, id: &str) -> Result<Option<AccountId>, StoreError> {
        self.store.session_account(id, now_ms()).await
    }

    /// A new session of the account for `ttl_ms`: its random id.
    pub async fn sign_in(&self, account: AccountId, ttl_ms: i64) -> Result<String, StoreError> {
        let now = now_ms();
        self.store.create_session(account, now, now.saturating_add(ttl_ms)).await
    }

    /// Ends a session (nothing if there is none).
    pub async fn sign_out(&self, id: &str) -> Result<(), StoreError> {
        self.store.delete_session(id).await
    }

    /// Dev: a new account, and its first state.
    pub async fn create_account(&self, token: &str, spec: &AccountSpec) -> Result<ServerState, QuotaError> {
        let now = now_ms();
        let account = self.store.create_account(token, spec, now).await?;
        Ok(self.store.state(account, now).await?)
    }

    /// Dev: grants a package; its wire id and the new revision.
    pub async fn grant_package(&self, account: AccountId, spec: &PackageSpec) -> Result<(String, u64), QuotaError> {
        self.store.grant_package(account, spec, now_ms()).await
    }

    /// Dev: sets a kind's slot limit; the new revision.
    pub async fn set_limit(&self, account: AccountId, kind: &str, limit: u32) -> Result<u64, QuotaError> {
        let progress = self.store.set_limit(account, kind, limit, now_ms()).await?;
        self.run(account, progress.started);
        Ok(progress.revision)
    }

    /// Dev: `data`, as it is, as a `state` event to the account's streams
    /// here; how many received it.
    pub fn send_raw(&self, account: AccountId, data: &str) -> usize {
        self.store.hub().send(account, Message::raw(data))
    }

    /// A callback of the upstream service to the URL with `secret`.
    pub async fn callback(&self, secret: &str, body: &[u8]) -> Result<&'static str, CallbackError> {
        match self.upstream.as_ref().filter(|u| u.callback_secret_is(secret)) {
            Some(up) => up.callback(body).await,
            None => Err(CallbackError::NotFound),
        }
    }
}
