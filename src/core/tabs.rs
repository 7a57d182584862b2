//! Every tab of a browser in step over one connection, as the pure part:
//! the messages tabs post to each other, how a tab takes them, which state
//! wins, how another tab's holds count here and when they end, and who lets
//! a submit go. The browser shell elects the leader (Web Locks) and carries
//! the messages (a BroadcastChannel); `docs/tabs.md` describes the protocol
//! for it.
//!
//! One tab leads: it holds the connection, relays every state and link
//! change, and arbitrates holds. The others follow and open no connection.
//! A follower's submit asks the leader, whose [`Quota`] counts every tab's
//! holds, and the request leaves the browser only on the leader's grant: of
//! two tabs that click for the last free slot in the same frame, one is
//! granted and the other is refused with the reason.
//!
//! Rules kept here, whatever the channel drops, repeats or reorders:
//! - a state from another tab goes through the same reader and checks as a
//!   server state, and R4 (revision order) decides which state wins;
//! - a hold is counted once per tab, keyed by its request id: repeats and
//!   echoes of one's own hold are ignored, and an ended hold is remembered
//!   until its expiry so that a late copy cannot bring it back;
//! - a hold carries its expiry, so it ends in every tab by then even when
//!   the message that ends it is lost;
//! - with no leader, or a leader just elected, nothing is granted (R5).

use serde::Serialize;

use super::fmt::Fmt;
use super::text::Msg;
use super::words::say;
use super::machine::{Applied, Blocked, Hold, HoldEnd, Link, Quota, SubmitError};
use super::parse::{at, field, ms_at, MAX_SAFE, one_of, opt_bool_at, str_at, u32_at, u64_at, units_at, Source, R};
use super::validate::MAX_TEXT;
use super::wire::{Millis, ServerState, Units};

/// A tab's name on the channel: chosen at random by the shell, unique
/// within the browser.
pub type TabId = String;

/// Tunables of the tabs protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TabConfig {
    /// How long a follower waits for the leader's answer to a submit
    /// before it gives up (the request is then not sent).
    pub ask_timeout_ms: Millis,
    /// How long a new leader grants nothing, so that the holds granted by
    /// the previous one reach it first.
    pub settle_ms: Millis,
}

impl Default for TabConfig {
    fn default() -> Self {
        TabConfig { ask_timeout_ms: 2_000, settle_ms: 250 }
    }
}

/// Who sent a leader's message, in which term, in which order, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stamp {
    pub leader: TabId,
    /// Grows with every change of leader: a message from an older leader
    /// does not move the link shown.
    pub epoch: u64,
    /// Counts the leader's messages within its epoch.
    pub seq: u64,
    /// The leader's clock when it sent the message.
    pub at: Millis,
}

/// A hold as the tabs share it: a [`Hold`] with the tab it belongs to and
/// the local time it ends at the latest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SharedHold {
    /// The client request id.
    pub id: String,
    /// The tab whose submit it is.
    pub origin: TabId,
    pub kind: String,
    pub count: u32,
    pub slots: u32,
    pub cost: Units,
    pub begun_at: Millis,
    pub expires_at: Millis,
}

/// A server state as the leader received it: the server's JSON text, which
/// a follower reads like a server state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StateText {
    /// The state's revision, so that an older one is dropped unread.
    pub revision: u64,
    pub text: String,
}

/// A message between the tabs of one browser: a plain object on the
/// channel, `t` naming its type (see [`TabMsg::read`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum TabMsg {
    /// A tab opened, changed visibility or saw a new leader: it says
    /// whether it is visible and which holds it counts, and asks the leader
    /// for a snapshot.
    Hello { from: TabId, visible: bool, holds: Vec<SharedHold> },
    /// The leader's whole picture: its link, every hold it counts and its
    /// state. Also how a new leader announces itself.
    Snapshot { stamp: Stamp, link: Link, holds: Vec<SharedHold>, state: Option<StateText> },
    /// A newer state from the server.
    State { stamp: Stamp, state: StateText },
    /// The leader's link changed.
    Link { stamp: Stamp, link: Link },
    /// The server confirmed that state `revision` is current (a ping, a 304).
    Current { stamp: Stamp, revision: u64 },
    /// A tab goes away, or a leader stops leading (`epoch` is then its
    /// epoch, else 0).
    Bye { from: TabId, epoch: u64 },
    /// A follower asks to submit `count` items of `kind`; with `queue`, it
    /// may wait in the server's queue when the slots are busy (R8). Absent
    /// on the channel: false (as a tab of the release before the queue
    /// asks), and written only when true.
    Ask {
        from: TabId,
        id: String,
        kind: String,
        count: u32,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        queue: bool,
    },
    /// The leader granted a hold (a follower's or its own): every tab counts
    /// it, and its origin sends the request.
    Grant { stamp: Stamp, hold: SharedHold },
    /// The leader refused a follower's ask, with the reason in words.
    Denied { stamp: Stamp, to: TabId, id: String, reason: String },
    /// A hold's origin ended it (refused, failed, or never sent).
    Ended { id: String, end: HoldEnd },
}

/// What the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TabCmd {
    /// Post this message on the channel, as serde writes it.
    Post(TabMsg),
    /// Send the submit request of this hold now: it is granted.
    Send(Hold),
    /// Do not send the submit request `id`: its hold ended, and the
    /// attempt list says why.
    Cancel { id: String, reason: String },
    /// Release the leadership lock: a visible tab waits to lead.
    Yield,
}

/// Why a submit among tabs did not leave, when no rule of the quota says
/// why: its texts are the message table's ([`Tabs::word`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Not granted: the lead is changing hands ([`Msg::TabHandover`]).
    Handover,
    /// A follower's ask got no answer in time ([`Msg::TabNoAnswer`]).
    NoAnswer,
    /// The leader already counts a hold with this request id
    /// ([`Msg::TabDuplicate`]).
    Duplicate,
}

impl Why {
    const MSGS: [Msg; 3] = [Msg::TabHandover, Msg::TabNoAnswer, Msg::TabDuplicate];

    pub fn msg(self) -> Msg {
        Self::MSGS[self as usize]
    }
}

/// Another tab's hold counted here.
#[derive(Clone, Debug)]
struct Remote {
    id: String,
    origin: TabId,
    /// Local time it stops counting here at the latest.
    expires_at: Millis,
}

/// One of this tab's own holds.
#[derive(Clone, Debug)]
struct Own {
    id: String,
    expires_at: Millis,
    /// While a follower waits for the leader's answer: when it gives up.
    asked: Option<Millis>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Follower,
    Leader { epoch: u64, since: Millis },
}

/// Most request ids remembered as ended; each is forgotten at its hold's
/// expiry anyway.
const MAX_ENDED: usize = 512;

/// Reads a server state from its JSON text: in the browser `JSON.parse`
/// and [`super::parse::read_state`], as for the server's own states.
pub type ReadState<'a> = &'a dyn Fn(&str) -> Result<ServerState, String>;

/// This tab's part in the browser's group of tabs. Works beside the tab's
/// [`Quota`], which every method takes: the holds of other tabs are counted
/// in it like its own.
#[derive(Clone, Debug)]
pub struct Tabs {
    id: TabId,
    config: TabConfig,
    visible: bool,
    role: Role,
    /// The last sequence number used as leader.
    seq: u64,
    /// The leader followed: (epoch, id).
    followed: Option<(u64, TabId)>,
    /// The last leader known gone: only a newer one is followed.
    floor: (u64, TabId),
    /// The highest epoch heard of.
    top_epoch: u64,
    /// Sequence number of the followed leader's link shown.
    link_seq: u64,
    remote: Vec<Remote>,
    own: Vec<Own>,
    /// Request ids of holds that ended, until when to remember them.
    ended: Vec<(String, Millis)>,
    /// Other tabs' visibility, as they said it since this tab last led.
    peers: Vec<(TabId, bool)>,
    /// The text of the state shown, to pass on in snapshots.
    state_text: Option<StateText>,
    /// The leader's own connection, which shows as live only once the
    /// leader has settled: until then it grants nothing, so no tab's gate
    /// may look open (R5).
    conn: Link,
    /// The texts of [`Why`], in the page's language once worded.
    why: Vec<String>,
}

impl Tabs {
    pub fn new(id: TabId, config: TabConfig, visible: bool) -> Tabs {
        Tabs {
            id,
            config,
            visible,
            role: Role::Follower,
            seq: 0,
            followed: None,
            floor: (0, String::new()),
            top_epoch: 0,
            link_seq: 0,
            remote: Vec::new(),
            own: Vec::new(),
            ended: Vec::new(),
            peers: Vec::new(),
            state_text: None,
            conn: Link::Connecting,
            why: Vec::new(),
        }
    }

    /// Words this tab's refusals ([`Why`]) with `f`'s message table; English
    /// until then.
    pub fn word(&mut self, f: &dyn Fmt) {
        self.why.clear();
        for m in Why::MSGS {
            self.why.push(say(f, m, None, &[]));
        }
    }

    /// The text this tab gives for `why`.
    pub fn text(&self, why: Why) -> &str {
        self.why.get(why as usize).map_or(why.msg().en(), |t| t)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader { .. })
    }

    /// The leader this tab follows, or itself when it leads.
    pub fn leader(&self) -> Option<&str> {
        match self.role {
            Role::Leader { .. } => Some(&self.id),
            Role::Follower => self.followed.as_ref().map(|(_, id)| id.as_str()),
        }
    }

    /// The revision to resume the server's stream from (`Last-Event-ID`)
    /// when this tab takes the lead.
    pub fn resume_from(&self, q: &Quota) -> Option<u64> {
        q.revision()
    }

    /// Whether the hold `id` of another tab is counted here.
    pub fn counts_remote(&self, id: &str) -> bool {
        self.remote.iter().any(|r| r.id == id)
    }

    /// The tab opened: it follows whoever leads and asks for a snapshot,
    /// which brings the state without a request to the server.
    pub fn start(&mut self, q: &mut Quota) -> Vec<TabCmd> {
        q.set_link(Link::Connecting);
        vec![TabCmd::Post(self.hello(q))]
    }

    /// The shell took the leadership lock: this tab leads from now on. It
    /// should then connect, resuming from [`Tabs::resume_from`].
    pub fn lead(&mut self, q: &mut Quota, now: Millis) -> Vec<TabCmd> {
        let mut out = Vec::new();
        self.sync(q, now);
        // Asks to the previous leader are void: it may be gone.
        self.fail_asks(q, now, Why::Handover, |_| true, &mut out);
        // Later than any leader heard of, and than any that led before now.
        // Never past what a message carries (a hostile message may claim
        // the largest epoch: the tabs then still follow this leader).
        let epoch = self.top_epoch.saturating_add(1).max(now.max(0) as u64).min(MAX_SAFE);
        self.top_epoch = epoch;
        self.role = Role::Leader { epoch, since: now };
        self.followed = None;
        self.seq = 0;
        self.peers.clear();
        self.conn = Link::Connecting;
        q.set_link(Link::Connecting);
        let snapshot = self.snapshot(q, epoch, now);
        out.push(TabCmd::Post(snapshot));
        out
    }

    /// This tab stops leading, or goes away (`pagehide`): the others learn
    /// that no tab is live until the next leader speaks. The shell closes
    /// the connection and releases the lock.
    pub fn leave(&mut self, q: &mut Quota) -> Vec<TabCmd> {
        let epoch = match self.role {
            Role::Leader { epoch, .. } => {
                self.floor = (epoch, self.id.clone());
                epoch
            }
            Role::Follower => 0,
        };
        self.role = Role::Follower;
        self.followed = None;
        q.set_link(Link::Reconnecting { attempt: 0 });
        vec![TabCmd::Post(TabMsg::Bye { from: self.id.clone(), epoch })]
    }

    /// The tab was shown or hidden. A hidden leader gives way to a visible
    /// tab; a follower tells the leader (and resyncs from its snapshot).
    pub fn set_visible(&mut self, q: &mut Quota, visible: bool) -> Vec<TabCmd> {
        self.visible = visible;
        if !self.is_leader() {
            return vec![TabCmd::Post(self.hello(q))];
        }
        if !visible && self.peers.iter().any(|(_, v)| *v) {
            let mut out = self.leave(q);
            out.push(TabCmd::Yield);
            return out;
        }
        vec![]
    }

    /// The leader's connection brought a state (`text`, read by `read`).
    /// It is applied here and, when newer, relayed.
    pub fn server_state(&mut self, q: &mut Quota, text: &str, now: Millis, read: ReadState) -> Vec<TabCmd> {
        let state = match read(text) {
            Ok(s) => s,
            Err(e) => {
                q.report_error(e);
                return vec![];
            }
        };
        let revision = state.revision;
        match q.apply_state(state, now) {
            Ok(Applied::Newer) => {
                let state = StateText { revision, text: text.to_owned() };
                self.state_text = Some(state.clone());
                match self.stamp(now) {
                    Some(stamp) => vec![TabCmd::Post(TabMsg::State { stamp, state })],
                    None => vec![],
                }
            }
            Ok(Applied::Duplicate) => self.relay_current(q, now),
            _ => vec![],
        }
    }

    /// The leader's connection confirmed the state shown (a ping, a 304).
    pub fn server_current(&mut self, q: &mut Quota, now: Millis) -> Vec<TabCmd> {
        q.confirm_current(now);
        self.relay_current(q, now)
    }

    /// The leader's link changed. Live shows (here and in every tab) only
    /// once the leader has settled; [`Tabs::tick`] shows it then.
    pub fn server_link(&mut self, q: &mut Quota, link: Link, now: Millis) -> Vec<TabCmd> {
        self.conn = link;
        let shown = match link {
            Link::Live if self.settling(now) => Link::Connecting,
            _ => link,
        };
        q.set_link(shown);
        match self.stamp(now) {
            Some(stamp) => vec![TabCmd::Post(TabMsg::Link { stamp, link: shown })],
            None => vec![],
        }
    }

    /// Until when a new leader grants nothing, if it leads and that is
    /// still ahead.
    fn settles_at(&self, now: Millis) -> Option<Millis> {
        match self.role {
            Role::Leader { since, .. } => Some(since + self.config.settle_ms).filter(|t| now < *t),
            Role::Follower => None,
        }
    }

    fn settling(&self, now: Millis) -> bool {
        self.settles_at(now).is_some()
    }

    fn relay_current(&mut self, q: &Quota, now: Millis) -> Vec<TabCmd> {
        match (q.revision(), self.stamp(now)) {
            (Some(revision), Some(stamp)) => vec![TabCmd::Post(TabMsg::Current { stamp, revision })],
            _ => vec![],
        }
    }

    /// Begins a submit of the tab's current request with request id `id`.
    /// A leader decides at once (a `Send` among the commands); a follower
    /// holds locally (R7) and asks the leader, and a `Send` or a `Cancel`
    /// follows later.
    pub fn submit(&mut self, q: &mut Quota, id: String, now: Millis) -> Result<Vec<TabCmd>, SubmitError> {
        self.sync(q, now);
        self.expire_remote(q, now);
        let mut out = Vec::new();
        match self.role {
            Role::Leader { epoch, .. } => {
                if self.settling(now) {
                    return Err(SubmitError::Blocked(Blocked::Connecting));
                }
                let hold = q.begin_submit(id, now)?;
                let expires_at = hold.begun_at + q.config().hold_timeout_ms;
                self.own.push(Own { id: hold.id.clone(), expires_at, asked: None });
                let shared = share(&hold, &self.id, expires_at);
                let stamp = self.next_stamp(epoch, now);
                out.push(TabCmd::Post(TabMsg::Grant { stamp, hold: shared }));
                out.push(TabCmd::Send(hold));
            }
            Role::Follower => {
                if self.followed.is_none() {
                    return Err(SubmitError::Blocked(Blocked::Reconnecting));
                }
                let hold = q.begin_submit(id, now)?;
                let expires_at = hold.begun_at + q.config().hold_timeout_ms;
                let asked = Some(now + self.config.ask_timeout_ms);
                self.own.push(Own { id: hold.id.clone(), expires_at, asked });
                let ask = TabMsg::Ask { from: self.id.clone(), id: hold.id, kind: hold.kind, count: hold.count, queue: q.queue() };
                out.push(TabCmd::Post(ask));
            }
        }
        Ok(out)
    }

    /// The dashboard's word on one of this tab's submits (refused, failed):
    /// the hold ends here and in every other tab.
    pub fn end_hold(&mut self, q: &mut Quota, id: &str, end: HoldEnd, reason: Option<String>, now: Millis) -> Vec<TabCmd> {
        q.end_hold(id, end, reason, now);
        let Some(i) = self.own.iter().position(|o| o.id == id) else { return vec![] };
        let own = self.own.remove(i);
        self.remember_ended(own.id, own.expires_at);
        if end == HoldEnd::Confirmed {
            return vec![];
        }
        vec![TabCmd::Post(TabMsg::Ended { id: id.to_owned(), end })]
    }

    /// Moves the clock: other tabs' holds past their expiry and asks left
    /// unanswered end, then the quota's own timeouts run. Call this rather
    /// than [`Quota::tick`], so that another tab's hold ends here silently.
    pub fn tick(&mut self, q: &mut Quota, now: Millis) -> Vec<TabCmd> {
        let mut out = Vec::new();
        self.sync(q, now);
        self.expire_remote(q, now);
        self.fail_asks(q, now, Why::NoAnswer, |o| o.asked.is_some_and(|t| t <= now), &mut out);
        // Settled: a live connection shows as live now.
        if self.is_leader() && self.conn == Link::Live && q.link() == Link::Connecting && !self.settling(now) {
            out.extend(self.server_link(q, Link::Live, now));
        }
        q.tick(now);
        self.sync(q, now);
        self.ended.retain(|(_, until)| *until > now);
        out
    }

    /// The earliest local time at which [`Tabs::tick`] would change
    /// something.
    pub fn next_deadline(&self, q: &Quota) -> Option<Millis> {
        let remote = self.remote.iter().map(|r| r.expires_at);
        let asks = self.own.iter().filter_map(|o| o.asked);
        let settled = match self.role {
            Role::Leader { since, .. } if self.conn == Link::Live && q.link() == Link::Connecting => Some(since + self.config.settle_ms),
            _ => None,
        };
        remote.chain(asks).chain(settled).chain(q.next_deadline()).min()
    }

    /// Takes a message from the channel. A malformed one changes nothing
    /// and is reported like a bad server state.
    pub fn receive<S: Source>(&mut self, q: &mut Quota, msg: &S, now: Millis, read: ReadState, f: &dyn Fmt) -> Vec<TabCmd> {
        match TabMsg::read(msg) {
            Ok(msg) => self.receive_msg(q, msg, now, read, f),
            Err(e) => {
                q.report_error(e.to_string());
                vec![]
            }
        }
    }

    /// Takes a decoded message. `read` reads a relayed state; `f` words a
    /// refusal this tab decides as leader.
    pub fn receive_msg(&mut self, q: &mut Quota, msg: TabMsg, now: Millis, read: ReadState, f: &dyn Fmt) -> Vec<TabCmd> {
        let mut out = Vec::new();
        self.sync(q, now);
        self.expire_remote(q, now);
        match msg {
            TabMsg::Hello { from, visible, holds } => {
                if from == self.id {
                    return out;
                }
                match self.peers.iter_mut().find(|(p, _)| *p == from) {
                    Some(p) => p.1 = visible,
                    None => self.peers.push((from, visible)),
                }
                for h in &holds {
                    self.take_hold(q, h, now);
                }
                if let Role::Leader { epoch, .. } = self.role {
                    let snapshot = self.snapshot(q, epoch, now);
                    out.push(TabCmd::Post(snapshot));
                    if visible && !self.visible {
                        out.extend(self.leave(q));
                        out.push(TabCmd::Yield);
                    }
                }
            }
            TabMsg::Snapshot { stamp, link, holds, state } => {
                let ours = self.adopt(q, &stamp, now, &mut out);
                for h in &holds {
                    self.take_hold(q, h, now);
                }
                if ours {
                    self.show_link(q, stamp.seq, link);
                }
                if let Some(state) = state {
                    self.apply_relayed(q, state, stamp.at.min(now), read);
                }
            }
            TabMsg::State { stamp, state } => {
                self.adopt(q, &stamp, now, &mut out);
                // A state is a fact about the server, whoever relays it: R4
                // orders it.
                self.apply_relayed(q, state, stamp.at.min(now), read);
            }
            TabMsg::Link { stamp, link } => {
                if self.adopt(q, &stamp, now, &mut out) {
                    self.show_link(q, stamp.seq, link);
                }
            }
            TabMsg::Current { stamp, revision } => {
                self.adopt(q, &stamp, now, &mut out);
                let at = stamp.at.min(now);
                // Only the very revision shown may be confirmed: an older
                // state must not look fresh.
                if q.revision() == Some(revision) && at > q.confirmed_at {
                    q.confirm_current(at);
                }
            }
            TabMsg::Bye { from, epoch } => {
                self.peers.retain(|(p, _)| *p != from);
                if self.followed.as_ref() == Some(&(epoch, from.clone())) {
                    self.followed = None;
                    self.floor = self.floor.clone().max((epoch, from));
                    q.set_link(Link::Reconnecting { attempt: 0 });
                    self.fail_asks(q, now, Why::Handover, |_| true, &mut out);
                }
            }
            TabMsg::Ask { from, id, kind, count, queue } => self.decide(q, from, id, (&kind, count, queue), now, f, &mut out),
            TabMsg::Grant { stamp, hold } => {
                // The answer first: a grant counts, whichever leader made it.
                if hold.origin == self.id {
                    match self.own.iter_mut().find(|o| o.id == hold.id) {
                        Some(own) => {
                            if own.asked.take().is_some() {
                                match q.holds().iter().find(|h| h.id == hold.id) {
                                    Some(h) => out.push(TabCmd::Send(h.clone())),
                                    // Its hold ended here meanwhile: never sent.
                                    None => out.push(TabCmd::Post(TabMsg::Ended { id: hold.id.clone(), end: HoldEnd::Failed })),
                                }
                            }
                        }
                        // Granted after this tab gave up: it is never sent.
                        None => out.push(TabCmd::Post(TabMsg::Ended { id: hold.id.clone(), end: HoldEnd::Failed })),
                    }
                } else {
                    self.take_hold(q, &hold, now);
                }
                self.adopt(q, &stamp, now, &mut out);
            }
            TabMsg::Denied { stamp, to, id, reason } => {
                if to == self.id {
                    if let Some(i) = self.own.iter().position(|o| o.id == id && o.asked.is_some()) {
                        let own = self.own.remove(i);
                        self.remember_ended(own.id, own.expires_at);
                        q.end_hold(&id, HoldEnd::Refused, Some(reason.clone()), now);
                        out.push(TabCmd::Cancel { id, reason });
                    }
                }
                self.adopt(q, &stamp, now, &mut out);
            }
            TabMsg::Ended { id, end: _ } => {
                if let Some(i) = self.remote.iter().position(|r| r.id == id) {
                    let r = self.remote.remove(i);
                    q.drop_hold(&r.id);
                    self.remember_ended(r.id, r.expires_at);
                } else if !self.own.iter().any(|o| o.id == id) {
                    // Not seen yet (the channel reordered): its grant must
                    // not count it when it comes.
                    let until = now + q.config().hold_timeout_ms;
                    self.remember_ended(id, until);
                }
            }
        }
        out
    }

    /// The leader's answer to an ask: the same gate as its own submits,
    /// over a quota that counts every tab's holds.
    #[allow(clippy::too_many_arguments)]
    fn decide(&mut self, q: &mut Quota, from: TabId, id: String, request: (&str, u32, bool), now: Millis, f: &dyn Fmt, out: &mut Vec<TabCmd>) {
        let Role::Leader { epoch, since } = self.role else { return };
        if from == self.id {
            return;
        }
        let deny = |this: &mut Tabs, id: String, reason: String, out: &mut Vec<TabCmd>| {
            let stamp = this.next_stamp(epoch, now);
            out.push(TabCmd::Post(TabMsg::Denied { stamp, to: from.clone(), id, reason }));
        };
        if now < since + self.config.settle_ms {
            return deny(self, id, self.text(Why::Handover).to_owned(), out);
        }
        if let Some(h) = q.holds().iter().find(|h| h.id == id) {
            // A repeated ask: the same answer again. Any other hold with
            // this id is someone else's.
            match self.remote.iter().find(|r| r.id == id && r.origin == from) {
                Some(r) => {
                    let hold = share(h, &from, r.expires_at);
                    let stamp = self.next_stamp(epoch, now);
                    out.push(TabCmd::Post(TabMsg::Grant { stamp, hold }));
                }
                None => deny(self, id, self.text(Why::Duplicate).to_owned(), out),
            }
            return;
        }
        if self.is_ended(&id) || shows_request(q, &id) {
            // That hold already ended: its asker waits no more.
            return;
        }
        match q.begin_submit_for(id.clone(), request, now) {
            Ok(hold) => {
                let expires_at = hold.begun_at + q.config().hold_timeout_ms;
                self.remote.push(Remote { id, origin: from.clone(), expires_at });
                let stamp = self.next_stamp(epoch, now);
                out.push(TabCmd::Post(TabMsg::Grant { stamp, hold: share(&hold, &from, expires_at) }));
            }
            Err(SubmitError::Blocked(b)) => deny(self, id, b.message(f), out),
            Err(SubmitError::DuplicateId(_)) => deny(self, id, self.text(Why::Duplicate).to_owned(), out),
        }
    }

    /// Whether a message stamped `s` comes from the leader this tab follows,
    /// switching to `s.leader` when it is a newer one. A leader follows no
    /// one: with Web Locks there is one at a time, and an older leader's
    /// message is late.
    fn adopt(&mut self, q: &mut Quota, s: &Stamp, now: Millis, out: &mut Vec<TabCmd>) -> bool {
        self.top_epoch = self.top_epoch.max(s.epoch);
        if s.leader == self.id || self.is_leader() {
            return false;
        }
        let key = (s.epoch, s.leader.clone());
        match &self.followed {
            Some(cur) if *cur == key => return true,
            Some(cur) if *cur > key => return false,
            None if key <= self.floor => return false,
            _ => {}
        }
        // A new leader: nothing is live until it says so, asks to the one
        // before are void, and it learns this tab's holds and visibility.
        self.followed = Some(key);
        self.link_seq = 0;
        q.set_link(Link::Connecting);
        self.fail_asks(q, now, Why::Handover, |_| true, out);
        out.push(TabCmd::Post(self.hello(q)));
        true
    }

    fn show_link(&mut self, q: &mut Quota, seq: u64, link: Link) {
        // The channel may reorder: an older link must not replace a newer.
        if seq > self.link_seq {
            self.link_seq = seq;
            q.set_link(link);
        }
    }

    /// Applies a state relayed by another tab, as of local time `at`: the
    /// same reader and checks as a server state, and R4 orders it.
    fn apply_relayed(&mut self, q: &mut Quota, state: StateText, at: Millis, read: ReadState) {
        match q.revision() {
            Some(r) if state.revision < r => return,
            Some(r) if state.revision == r => {
                if self.state_text.as_ref().map(|s| s.revision) != Some(r) {
                    self.state_text = Some(state);
                }
                return;
            }
            _ => {}
        }
        let parsed = match read(&state.text) {
            Ok(s) => s,
            Err(e) => return q.report_error(e),
        };
        if parsed.revision != state.revision {
            return q.report_error(format!(
                "malformed tab message: a relayed state has revision {}, not the {} its message says",
                parsed.revision, state.revision
            ));
        }
        if let Ok(Applied::Newer) = q.apply_state(parsed, at) {
            self.state_text = Some(state);
        }
    }

    /// Counts another tab's hold here, unless it is this tab's own, already
    /// counted, ended, shown by the server, or expired.
    fn take_hold(&mut self, q: &mut Quota, h: &SharedHold, now: Millis) {
        if h.origin == self.id || q.holds().iter().any(|x| x.id == h.id) || self.is_ended(&h.id) || shows_request(q, &h.id) {
            return;
        }
        // Never longer than this tab's own timeout either, so that the
        // quota's timeout, which would word it as this tab's, never comes
        // first.
        let begun_at = h.begun_at.min(now);
        let expires_at = h.expires_at.min(begun_at + q.config().hold_timeout_ms);
        if expires_at <= now {
            return;
        }
        let hold = Hold { id: h.id.clone(), kind: h.kind.clone(), count: h.count, slots: h.slots, cost: h.cost, begun_at };
        if q.add_remote_hold(hold) {
            self.remote.push(Remote { id: h.id.clone(), origin: h.origin.clone(), expires_at });
        }
    }

    /// Forgets holds the quota no longer counts (a state confirmed them,
    /// or they timed out), remembering them as ended.
    fn sync(&mut self, q: &Quota, now: Millis) {
        let held = |id: &str| q.holds().iter().any(|h| h.id == id);
        let mut gone = Vec::new();
        self.remote.retain(|r| held(&r.id) || {
            gone.push((r.id.clone(), r.expires_at));
            false
        });
        // An ask stays until answered or timed out, so that its end is told.
        self.own.retain(|o| held(&o.id) || o.asked.is_some() || {
            gone.push((o.id.clone(), o.expires_at));
            false
        });
        for (id, until) in gone {
            self.remember_ended(id, until);
        }
        self.ended.retain(|(_, until)| *until > now);
    }

    fn expire_remote(&mut self, q: &mut Quota, now: Millis) {
        let mut i = 0;
        while i < self.remote.len() {
            if self.remote[i].expires_at <= now {
                let r = self.remote.remove(i);
                q.drop_hold(&r.id);
                self.remember_ended(r.id, r.expires_at);
            } else {
                i += 1;
            }
        }
    }

    /// Ends the asks that `which` picks, unsent: the hold ends here, the
    /// shell cancels the submit, and a grant that may have been made is
    /// released everywhere.
    fn fail_asks(&mut self, q: &mut Quota, now: Millis, why: Why, which: impl Fn(&Own) -> bool, out: &mut Vec<TabCmd>) {
        let reason = self.text(why).to_owned();
        let mut i = 0;
        while i < self.own.len() {
            if self.own[i].asked.is_some() && which(&self.own[i]) {
                let own = self.own.remove(i);
                q.end_hold(&own.id, HoldEnd::Failed, Some(reason.clone()), now);
                out.push(TabCmd::Post(TabMsg::Ended { id: own.id.clone(), end: HoldEnd::Failed }));
                out.push(TabCmd::Cancel { id: own.id.clone(), reason: reason.clone() });
                self.remember_ended(own.id, own.expires_at);
            } else {
                i += 1;
            }
        }
    }

    fn remember_ended(&mut self, id: String, until: Millis) {
        if let Some(e) = self.ended.iter_mut().find(|(x, _)| *x == id) {
            e.1 = e.1.max(until);
            return;
        }
        if self.ended.len() >= MAX_ENDED {
            self.ended.remove(0);
        }
        self.ended.push((id, until));
    }

    fn is_ended(&self, id: &str) -> bool {
        self.ended.iter().any(|(x, _)| x == id)
    }

    /// The next stamp, if this tab leads.
    fn stamp(&mut self, now: Millis) -> Option<Stamp> {
        let Role::Leader { epoch, .. } = self.role else { return None };
        Some(self.next_stamp(epoch, now))
    }

    fn next_stamp(&mut self, epoch: u64, now: Millis) -> Stamp {
        self.seq += 1;
        Stamp { leader: self.id.clone(), epoch, seq: self.seq, at: now }
    }

    /// Every hold counted here that a leader has granted, as shared.
    fn shared_holds(&self, q: &Quota) -> Vec<SharedHold> {
        let timeout = q.config().hold_timeout_ms;
        q.holds()
            .iter()
            .filter_map(|h| {
                if let Some(r) = self.remote.iter().find(|r| r.id == h.id) {
                    return Some(share(h, &r.origin, r.expires_at));
                }
                // A hold still asking is not granted: no leader counts it.
                let own = self.own.iter().find(|o| o.id == h.id);
                match own {
                    Some(o) if o.asked.is_some() => None,
                    _ => Some(share(h, &self.id, h.begun_at + timeout)),
                }
            })
            .collect()
    }

    fn hello(&self, q: &Quota) -> TabMsg {
        TabMsg::Hello { from: self.id.clone(), visible: self.visible, holds: self.shared_holds(q) }
    }

    fn snapshot(&mut self, q: &Quota, epoch: u64, now: Millis) -> TabMsg {
        let stamp = self.next_stamp(epoch, now);
        // The text only of the state shown: a follower must get no other.
        let state = self.state_text.clone().filter(|s| Some(s.revision) == q.revision());
        TabMsg::Snapshot { stamp, link: q.link(), holds: self.shared_holds(q), state }
    }
}

fn share(h: &Hold, origin: &str, expires_at: Millis) -> SharedHold {
    SharedHold {
        id: h.id.clone(),
        origin: origin.to_owned(),
        kind: h.kind.clone(),
        count: h.count,
        slots: h.slots,
        cost: h.cost,
        begun_at: h.begun_at,
        expires_at,
    }
}

/// Whether the state shown has a task for request `id`: then the server's
/// figures count it, and a hold for it would count it twice.
fn shows_request(q: &Quota, id: &str) -> bool {
    q.state().is_some_and(|s| s.shows_request(id))
}

/// What another tab's holds need from the quota.
impl Quota {
    /// Counts another tab's hold exactly like one of this tab's own (R1,
    /// R2), without the gate: the leader already judged it. False if a hold
    /// with that id is counted already.
    pub(crate) fn add_remote_hold(&mut self, hold: Hold) -> bool {
        if self.holds.iter().any(|h| h.id == hold.id) {
            return false;
        }
        self.holds.push(hold);
        true
    }

    /// Stops counting a hold with no announcement and no attempt listed:
    /// another tab's hold, whose story that tab tells.
    pub(crate) fn drop_hold(&mut self, id: &str) -> Option<Hold> {
        let i = self.holds.iter().position(|h| h.id == id)?;
        Some(self.holds.remove(i))
    }

    /// Begins a submit of `count` items of `kind`, which may wait in the
    /// queue with `queue`, for another tab: the gate and hold of
    /// [`Quota::begin_submit`], with this tab's own request left as it was.
    pub(crate) fn begin_submit_for(&mut self, id: String, (kind, count, queue): (&str, u32, bool), now: Millis) -> Result<Hold, SubmitError> {
        let own_kind = std::mem::replace(&mut self.kind, kind.to_owned());
        let own_count = std::mem::replace(&mut self.count, count);
        let own_queue = std::mem::replace(&mut self.queue, queue);
        let result = self.begin_submit(id, now);
        self.kind = own_kind;
        self.count = own_count;
        self.queue = own_queue;
        result
    }
}

// ---------------------------------------------------------------------------
// The form of a message on the channel.

/// The protocol's version, in the channel's name: tabs of another version
/// never meet (qw1 carried messages as text; qw2 as plain objects).
pub const PROTOCOL: &str = "qw2";

/// The name of the lock and the channel that the tabs of one endpoint and
/// account share: the protocol and a hash of both, so that tabs of another
/// account, another server or another version of the protocol never meet,
/// and no identifier is spelled out in a name other scripts can list. The
/// hash is FNV-1a (64 bits): a name, not a secret.
pub fn scope(endpoint: &str, account: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in endpoint.bytes().chain([0]).chain(account.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    // 16 hexadecimal digits, by hand: `{:016x}` would link the formatter's
    // padding and hexadecimal code for this one name.
    let mut name = format!("quota-widget/{PROTOCOL}/");
    for i in (0..16).rev() {
        name.push(char::from(b"0123456789abcdef"[((h >> (4 * i)) & 15) as usize]));
    }
    name
}
/// Longest state text taken, in bytes (a busy state is a few hundred kB).
pub const MAX_MESSAGE: usize = 4 << 20;
/// Most holds in one hello or snapshot.
pub const MAX_HOLDS: usize = 256;
/// Longest refusal reason, in bytes.
pub const MAX_REASON: usize = 1000;

/// Why a value is not a tab message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TabMsgError(pub String);

impl std::fmt::Display for TabMsgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed tab message: {}", self.0)
    }
}

impl std::error::Error for TabMsgError {}

// A message crosses the channel as a plain object, which the browser copies
// (structured clone): written by serde (serde-wasm-bindgen in the widget,
// like every value the widget hands to JavaScript), read by the same
// `parse::Source` reader as a server state, naming the field at fault:
//
//   { "t": "grant", "stamp": { "leader", "epoch", "seq", "at" }, "hold": { ... } }
//
// The state inside a snapshot or state message travels as the server's
// JSON text, read by the server state's own reader and checks. Any script of
// the page's origin can post on the channel, so every field is checked as
// strictly as a server state's.

fn text_at<S: Source>(v: &S, path: &str, key: &'static str, max: usize) -> R<String> {
    let t = str_at(v, path, key)?;
    if t.is_empty() {
        return Err(format!("{} is empty", at(path, key)));
    }
    if t.len() > max {
        return Err(format!("{} is longer than {max} bytes", at(path, key)));
    }
    Ok(t)
}

/// The member `key`, which must be an object.
fn object_at<S: Source>(v: &S, path: &str, key: &'static str) -> R<S> {
    let o = field(v, path, key)?;
    if !o.is_object() {
        return Err(format!("{} must be an object", at(path, key)));
    }
    Ok(o)
}

fn stamp_at<S: Source>(v: &S, path: &str) -> R<Stamp> {
    let p = &at(path, "stamp");
    let s = object_at(v, path, "stamp")?;
    Ok(Stamp { leader: text_at(&s, p, "leader", MAX_TEXT)?, epoch: u64_at(&s, p, "epoch")?, seq: u64_at(&s, p, "seq")?, at: ms_at(&s, p, "at")? })
}

fn hold<S: Source>(h: &S, p: &str) -> R<SharedHold> {
    if !h.is_object() {
        return Err(format!("{p} must be an object"));
    }
    let hold = SharedHold {
        id: text_at(h, p, "id", MAX_TEXT)?,
        origin: text_at(h, p, "origin", MAX_TEXT)?,
        kind: text_at(h, p, "kind", MAX_TEXT)?,
        count: u32_at(h, p, "count")?,
        slots: u32_at(h, p, "slots")?,
        cost: units_at(h, p, "cost")?,
        begun_at: ms_at(h, p, "begun_at")?,
        expires_at: ms_at(h, p, "expires_at")?,
    };
    if hold.count == 0 {
        return Err(format!("{} must be 1 or more", at(p, "count")));
    }
    if hold.expires_at <= hold.begun_at {
        return Err(format!("{} must be after begun_at", at(p, "expires_at")));
    }
    Ok(hold)
}

fn holds_at<S: Source>(v: &S, path: &str) -> R<Vec<SharedHold>> {
    let p = at(path, "holds");
    let items = field(v, path, "holds")?.items().ok_or_else(|| format!("{p} must be a list"))?;
    if items.len() > MAX_HOLDS {
        return Err(format!("{p} must be at most {MAX_HOLDS}"));
    }
    let mut holds: Vec<SharedHold> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let h = hold(item, &format!("{p}[{i}]"))?;
        if holds.iter().any(|e| e.id == h.id) {
            return Err(format!("{p}[{i}] repeats the id of an earlier one"));
        }
        holds.push(h);
    }
    Ok(holds)
}

fn link_at<S: Source>(v: &S, path: &str) -> R<Link> {
    let p = &at(path, "link");
    let l = object_at(v, path, "link")?;
    const NAMES: [&str; 5] = ["manual", "connecting", "live", "paused", "reconnecting"];
    Ok(match one_of(&l, p, "state", &NAMES)? {
        0 => Link::Manual,
        1 => Link::Connecting,
        2 => Link::Live,
        3 => Link::Paused,
        _ => Link::Reconnecting { attempt: u32_at(&l, p, "attempt")? },
    })
}

fn state_at<S: Source>(s: &S, p: &str) -> R<StateText> {
    let text = str_at(s, p, "text")?;
    if text.len() > MAX_MESSAGE {
        return Err(format!("{} is longer than {MAX_MESSAGE} bytes", at(p, "text")));
    }
    Ok(StateText { revision: u64_at(s, p, "revision")?, text })
}

/// The message types, as `t` names them.
const TYPES: [&str; 10] = ["hello", "snapshot", "state", "link", "current", "bye", "ask", "grant", "denied", "ended"];

impl TabMsg {
    /// Reads a message from the channel; every fault is an error naming
    /// the field at fault ("grant.hold.cost must be ...").
    pub fn read<S: Source>(v: &S) -> Result<TabMsg, TabMsgError> {
        if !v.is_object() {
            return Err(TabMsgError("it must be an object".to_owned()));
        }
        let t = one_of(v, "", "t", &TYPES).map_err(TabMsgError)?;
        let what = TYPES[t];
        let read = || -> R<TabMsg> {
            let p = what;
            Ok(match t {
                0 => TabMsg::Hello {
                    from: text_at(v, p, "from", MAX_TEXT)?,
                    visible: match field(v, p, "visible")?.boolean() {
                        Some(b) => b,
                        None => return Err(format!("{p}.visible must be true or false")),
                    },
                    holds: holds_at(v, p)?,
                },
                1 => TabMsg::Snapshot {
                    stamp: stamp_at(v, p)?,
                    link: link_at(v, p)?,
                    holds: holds_at(v, p)?,
                    state: match v.get("state") {
                        Some(s) if !s.is_null() => Some(state_at(&object_at(v, p, "state")?, &at(p, "state"))?),
                        _ => None,
                    },
                },
                2 => TabMsg::State { stamp: stamp_at(v, p)?, state: state_at(&object_at(v, p, "state")?, &at(p, "state"))? },
                3 => TabMsg::Link { stamp: stamp_at(v, p)?, link: link_at(v, p)? },
                4 => TabMsg::Current { stamp: stamp_at(v, p)?, revision: u64_at(v, p, "revision")? },
                5 => TabMsg::Bye { from: text_at(v, p, "from", MAX_TEXT)?, epoch: u64_at(v, p, "epoch")? },
                6 => TabMsg::Ask {
                    from: text_at(v, p, "from", MAX_TEXT)?,
                    id: text_at(v, p, "id", MAX_TEXT)?,
                    kind: text_at(v, p, "kind", MAX_TEXT)?,
                    count: u32_at(v, p, "count")?,
                    queue: opt_bool_at(v, p, "queue")?.unwrap_or(false),
                },
                7 => TabMsg::Grant { stamp: stamp_at(v, p)?, hold: hold(&field(v, p, "hold")?, &at(p, "hold"))? },
                8 => TabMsg::Denied {
                    stamp: stamp_at(v, p)?,
                    to: text_at(v, p, "to", MAX_TEXT)?,
                    id: text_at(v, p, "id", MAX_TEXT)?,
                    reason: text_at(v, p, "reason", MAX_REASON)?,
                },
                _ => TabMsg::Ended {
                    id: text_at(v, p, "id", MAX_TEXT)?,
                    end: [HoldEnd::Confirmed, HoldEnd::Refused, HoldEnd::Failed, HoldEnd::TimedOut]
                        [one_of(v, p, "end", &["confirmed", "refused", "failed", "timed_out"])?],
                },
            })
        };
        read().map_err(TabMsgError)
    }
}
