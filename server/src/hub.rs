//! Per-account broadcast of changes to the open event streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;

use crate::store::AccountId;

/// Messages buffered per account before a slow stream counts as lagging (it
/// then gets the current state instead of the missed messages).
const CHANNEL_CAPACITY: usize = 64;

/// What an account's streams receive.
#[derive(Clone, Debug)]
pub enum Message {
    /// A new state, already serialized once for every subscriber.
    State { revision: u64, json: Arc<str> },
    /// Sent as-is as the data of a `state` event (dev endpoint, for tests of
    /// a malformed state); it has no id and changes nothing in the store.
    Raw(Arc<str>),
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
