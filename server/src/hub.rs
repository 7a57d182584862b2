//! Per-account broadcast of changes to the open event streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{BufMut, Bytes, BytesMut};
use quota_widget::core::wire::ServerState;
use tokio::sync::broadcast;

use crate::ids::AccountId;

/// Messages buffered per account before a slow stream counts as lagging (it
/// then gets the current state instead of the missed messages).
const CHANNEL_CAPACITY: usize = 64;

/// What an account's streams receive: events already written out as the
/// bytes of the stream, once for every subscriber, so that a stream only
/// hands them to its socket (a clone of `Bytes` is a reference count).
#[derive(Clone, Debug)]
pub enum Message {
    /// A new state: its `state` event, with the revision as its id.
    State { revision: u64, frame: Bytes },
    /// A `state` event whose data is sent as-is (dev endpoint, for tests of
    /// a malformed state); it has no id and changes nothing in the store.
    Raw(Bytes),
}

impl Message {
    /// The state's event, serialized once (`None` if it cannot be, which a
    /// `ServerState`, of strings and integers, never is).
    pub fn state(state: &ServerState) -> Option<Message> {
        let json = serde_json::to_string(state).ok()?;
        Some(Message::State { revision: state.revision, frame: event("state", Some(state.revision), &json) })
    }

    /// A `state` event with this data and no id.
    pub fn raw(data: &str) -> Message {
        Message::Raw(event("state", None, data))
    }
}

/// One server-sent event as it goes on the wire: `event:`, `id:`, the data
/// (one `data:` line per line of it, none if it is empty), a blank line.
pub fn event(name: &str, id: Option<u64>, data: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(name.len() + data.len() + 40);
    buf.put_slice(b"event: ");
    buf.put_slice(name.as_bytes());
    buf.put_u8(b'\n');
    if let Some(id) = id {
        buf.put_slice(b"id: ");
        buf.put_slice(id.to_string().as_bytes());
        buf.put_u8(b'\n');
    }
    if !data.is_empty() {
        buf.put_slice(b"data: ");
        // A line break in the data (\n or \r) starts another data line.
        let bytes = data.as_bytes();
        let mut from = 0;
        for (i, b) in bytes.iter().enumerate() {
            if matches!(b, b'\n' | b'\r') {
                buf.put_slice(&bytes[from..=i]);
                buf.put_slice(b"data: ");
                from = i + 1;
            }
        }
        buf.put_slice(&bytes[from..]);
        buf.put_u8(b'\n');
    }
    buf.put_u8(b'\n');
    buf.freeze()
}

#[derive(Clone, Default)]
pub struct Hub {
    channels: Arc<Mutex<HashMap<AccountId, broadcast::Sender<Message>>>>,
}

impl Hub {
    pub fn subscribe(&self, account: AccountId) -> broadcast::Receiver<Message> {
        // A poisoned map is still a valid map: the panic happened elsewhere.
        let mut map = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(account)
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    /// True if some stream listens to this account, so that the store can
    /// skip building a state nobody will read.
    pub fn has_subscribers(&self, account: AccountId) -> bool {
        let map = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&account).is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// The accounts that have open streams here.
    pub fn accounts(&self) -> Vec<AccountId> {
        let map = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter().filter(|(_, tx)| tx.receiver_count() > 0).map(|(a, _)| *a).collect()
    }

    /// Sends to the account's streams; returns how many received it.
    pub fn send(&self, account: AccountId, msg: Message) -> usize {
        let mut map = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tx) = map.get(&account) else {
            return 0;
        };
        match tx.send(msg) {
            Ok(n) => n,
            Err(_) => {
                // Every stream of this account has closed: drop the channel.
                map.remove(&account);
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::response::sse::{Event, Sse};
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;

    use super::*;

    /// The bytes axum's own SSE response writes for one event.
    async fn axum_writes(ev: Event) -> Bytes {
        let body = Sse::new(futures_util::stream::iter([Ok::<_, Infallible>(ev)])).into_response().into_body();
        body.collect().await.expect("body").to_bytes()
    }

    #[tokio::test]
    async fn events_are_written_as_axum_writes_them() {
        for data in ["", "{\"revision\":3}", "a\nb", "a\r\nb", "a\rb\n", "\n", "é ✓"] {
            let with_id = Event::default().event("state").id("3").data(data);
            assert_eq!(event("state", Some(3), data), axum_writes(with_id).await, "{data:?} with an id");
            let without = Event::default().event("ping").data(data);
            assert_eq!(event("ping", None, data), axum_writes(without).await, "{data:?} without an id");
        }
    }

    #[test]
    fn a_state_is_its_event() {
        let state = ServerState {
            revision: 7,
            server_time_ms: 1_000,
            pools: Vec::new(),
            packages: Vec::new(),
            running: Vec::new(),
            finished: Vec::new(),
            queued: Vec::new(),
            packages_synced_at_ms: None,
        };
        let Some(Message::State { revision, frame }) = Message::state(&state) else { panic!("a state message") };
        assert_eq!(revision, 7);
        let json = serde_json::to_string(&state).expect("json");
        assert_eq!(frame, Bytes::from(format!("event: state\nid: 7\ndata: {json}\n\n")));
    }
}
