//! `GET /api/events`: the account's state pushed as server-sent events.
//!
//! Events:
//! - `event: state`, `id: <revision>`, `data: <ServerState JSON on one line>`
//! - `event: ping`, `data: <current revision>` every `--ping-ms`; a named
//!   event rather than an SSE comment because `EventSource` hides comments and
//!   the widget uses pings to know that the link is alive.
//!
//! Every stream opens with an event: the current state, or, when the client
//! already has it, a ping naming it. Proxies that hold a response's headers
//! until its first body byte (Vite's and other Node dev-server proxies do)
//! would otherwise keep a resumed stream looking unopened until the first
//! timed ping, seconds later.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, Stream};
use quota_widget::core::wire::ServerState;
use tokio::sync::{broadcast, watch};
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};

use crate::error::StoreError;
use crate::hub::{self, Message};
use crate::limits::StreamGuard;
use crate::now_ms;
use crate::storage::Storage;
use crate::ids::AccountId;

/// Everything one open stream needs between two events.
struct Conn {
    store: Arc<dyn Storage>,
    /// The stream's place under the instance's caps, given back on drop.
    _place: StreamGuard,
    account: AccountId,
    rx: broadcast::Receiver<Message>,
    ping: Interval,
    shutdown: watch::Receiver<bool>,
    /// Highest revision this stream has sent (or the client said it has):
    /// broadcast states at or below it are skipped, so a state is never sent
    /// twice and never goes backwards.
    sent: u64,
    queue: VecDeque<Bytes>,
}

fn ping_event(revision: u64) -> Bytes {
    hub::event("ping", None, &revision.to_string())
}

/// A state read for this stream alone (its first, or after it lagged).
fn state_event(state: &ServerState) -> Option<Bytes> {
    match Message::state(state)? {
        Message::State { frame, .. } => Some(frame),
        Message::Raw(_) => None,
    }
}

impl Conn {
    /// Queues the current state unless the stream has already sent it.
    async fn queue_current_state(&mut self) -> Result<(), StoreError> {
        let state = self.store.state(self.account, now_ms()).await?;
        if state.revision > self.sent {
            if let Some(frame) = state_event(&state) {
                self.sent = state.revision;
                self.queue.push_back(frame);
            }
        }
        Ok(())
    }

    /// The next event's bytes. A broadcast one is the bytes every stream of
    /// the account shares: nothing is serialized or copied per stream.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Some(ev);
            }
            tokio::select! {
                _ = self.shutdown.changed() => return None,
                _ = self.ping.tick() => {
                    let rev = self.store.revision(self.account).await.ok()?;
                    // A change this stream was never told of (a notification
                    // between instances lost, a listener reconnecting): the
                    // state goes out in the ping's place, so a stream is never
                    // more than one ping behind the store.
                    if rev > self.sent {
                        self.queue_current_state().await.ok()?;
                        if let Some(ev) = self.queue.pop_front() {
                            return Some(ev);
                        }
                    }
                    return Some(ping_event(rev));
                }
                msg = self.rx.recv() => match msg {
                    Ok(Message::State { revision, frame }) => {
                        if revision > self.sent {
                            self.sent = revision;
                            return Some(frame);
                        }
                    }
                    Ok(Message::Raw(frame)) => return Some(frame),
                    // Missed messages are superseded by the current state.
                    Err(broadcast::error::RecvError::Lagged(_)) => self.queue_current_state().await.ok()?,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }
}

/// Opens the stream: the events' bytes, to be sent as `text/event-stream`.
/// `last_event_id` is the `Last-Event-ID` the client sent on reconnect: if
/// it equals the current revision, the stream opens with a ping instead of
/// the state.
pub async fn open(
    store: Arc<dyn Storage>,
    account: AccountId,
    place: StreamGuard,
    last_event_id: Option<u64>,
    ping_every: Duration,
    shutdown: watch::Receiver<bool>,
) -> Result<impl Stream<Item = Result<Bytes, Infallible>>, StoreError> {
    // Subscribe before reading the state, so a change landing in between is
    // not lost (the revision filter drops it if the snapshot already has it).
    let rx = store.hub().subscribe(account);
    let mut ping = interval_at(Instant::now() + ping_every, ping_every);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let state = store.state(account, now_ms()).await?;
    let mut conn = Conn {
        store,
        _place: place,
        account,
        rx,
        ping,
        shutdown,
        sent: state.revision,
        queue: VecDeque::new(),
    };
    // A client at the current revision needs no state, but gets a ping at
    // once: the first bytes, which let a proxy pass the headers on, and the
    // word that what it shows is current. One that is behind, or ahead (the
    // store was reset, e.g. `:memory:` restarted), gets the state.
    if last_event_id == Some(state.revision) {
        conn.queue.push_back(ping_event(state.revision));
    } else if let Some(frame) = state_event(&state) {
        conn.queue.push_back(frame);
    }
    Ok(stream::unfold(conn, |mut conn| async move {
        let ev = conn.next().await?;
        Some((Ok::<_, Infallible>(ev), conn))
    }))
}
