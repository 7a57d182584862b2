//! One owner of what the widget knows: the quota (the rules R1-R7, in
//! [`Quota`]) and, when the tabs of a browser share one connection, this
//! tab's part among them ([`Tabs`]). The browser shells hand it their inputs
//! with the clock and carry out the commands it queues; none of them
//! decides whether a submit may go, which state wins or when a hold ends.
//!
//! Whether tabs share is a value here, not a branch in the shells: without
//! peers the queue stays empty. The type of the peers is a parameter, so
//! that a host that never shares ([`Alone`], which has no values: tests,
//! tools) carries none of the tabs protocol.

use super::fmt::Fmt;
use super::machine::{Hold, HoldEnd, Link, Quota, SubmitError};
use super::parse::Source;
use super::tabs::{ReadState, TabCmd, Tabs};
use super::wire::{Millis, ServerState};

/// A state as the connection brought it: read for this tab, and as text
/// for a leading tab to relay.
pub trait Body {
    /// The state, or why it is not one (the error shown).
    fn read(self) -> Result<ServerState, String>;
    /// The state's text as it came, to pass on to other tabs.
    fn text(&self) -> String;
}

/// A state already read, as a page that pushes its own states has it: no
/// connection, so no text to share.
impl Body for Result<ServerState, String> {
    fn read(self) -> Result<ServerState, String> {
        self
    }
    fn text(&self) -> String {
        String::new()
    }
}

/// This tab's part among the tabs that share a connection: [`Tabs`], or
/// [`Alone`] for a host that never shares.
pub trait Peers {
    /// A command for the shell: [`TabCmd`], or none at all.
    type Cmd;
    fn tabs(&self) -> &Tabs;
    fn tabs_mut(&mut self) -> &mut Tabs;
    fn cmds(out: Vec<TabCmd>) -> Vec<Self::Cmd>;
}

impl Peers for Tabs {
    type Cmd = TabCmd;
    fn tabs(&self) -> &Tabs {
        self
    }
    fn tabs_mut(&mut self) -> &mut Tabs {
        self
    }
    fn cmds(out: Vec<TabCmd>) -> Vec<TabCmd> {
        out
    }
}

/// No peers: a host that never shares. It has no values, so every path
/// through the peers is dead code that the compiler drops.
#[derive(Debug)]
pub enum Alone {}

impl Peers for Alone {
    type Cmd = Alone;
    fn tabs(&self) -> &Tabs {
        match *self {}
    }
    fn tabs_mut(&mut self) -> &mut Tabs {
        match *self {}
    }
    fn cmds(_: Vec<TabCmd>) -> Vec<Alone> {
        Vec::new()
    }
}

/// The quota and this tab's part among its peers, behind one set of
/// inputs. The commands it gives queue here until the shell takes them
/// ([`Session::next_cmd`]).
#[derive(Debug)]
pub struct Session<P: Peers> {
    pub quota: Quota,
    peers: Option<P>,
    /// Few at a time, taken in order.
    out: Vec<P::Cmd>,
}

impl<P: Peers> Session<P> {
    pub fn new(quota: Quota) -> Self {
        Session { quota, peers: None, out: Vec::new() }
    }

    /// Joins the tabs of this browser: follows whoever leads, and asks for
    /// a snapshot.
    pub fn join(&mut self, mut peers: P) {
        let out = peers.tabs_mut().start(&mut self.quota);
        self.peers = Some(peers);
        self.queue(out);
    }

    /// The next command for the shell to carry out.
    pub fn next_cmd(&mut self) -> Option<P::Cmd> {
        (!self.out.is_empty()).then(|| self.out.remove(0))
    }

    fn queue(&mut self, cmds: Vec<TabCmd>) {
        self.out.extend(P::cmds(cmds));
    }

    /// Whether this tab shares a connection with other tabs.
    pub fn shares(&self) -> bool {
        self.peers.is_some()
    }

    /// Whether this tab holds the shared connection.
    pub fn leads(&self) -> bool {
        self.peers.as_ref().is_some_and(|p| p.tabs().is_leader())
    }

    /// The revision to resume the server's stream from when this tab takes
    /// the lead.
    pub fn resume_from(&self) -> Option<u64> {
        match &self.peers {
            Some(p) => p.tabs().resume_from(&self.quota),
            None => self.quota.revision(),
        }
    }

    /// Begins a submit of the current request with request id `id`: the
    /// hold (R7), and with peers what they must be told (a leader grants at
    /// once; a follower asks, and the word comes later).
    pub fn submit(&mut self, id: String, now: Millis) -> Result<Hold, SubmitError> {
        let out = match &mut self.peers {
            Some(p) => p.tabs_mut().submit(&mut self.quota, id.clone(), now)?,
            None => return self.quota.begin_submit(id, now),
        };
        self.queue(out);
        match self.quota.holds().iter().find(|h| h.id == id) {
            Some(h) => Ok(h.clone()),
            None => Err(SubmitError::DuplicateId(id)),
        }
    }

    /// Ends one of this tab's holds (refused, failed, never sent), here and
    /// in every tab. Whether there was such a hold.
    pub fn end_hold(&mut self, id: &str, end: HoldEnd, reason: Option<String>, now: Millis) -> bool {
        let found = self.quota.holds().iter().any(|h| h.id == id);
        match &mut self.peers {
            Some(p) => {
                let out = p.tabs_mut().end_hold(&mut self.quota, id, end, reason, now);
                self.queue(out);
            }
            None => {
                self.quota.end_hold(id, end, reason, now);
            }
        }
        found
    }

    /// Moves the clock: staleness, hold timeouts, and another tab's holds
    /// and asks that ran out.
    pub fn tick(&mut self, now: Millis) {
        match &mut self.peers {
            Some(p) => {
                let out = p.tabs_mut().tick(&mut self.quota, now);
                self.queue(out);
            }
            None => self.quota.tick(now),
        }
    }

    /// The earliest time at which [`Session::tick`] would change something.
    pub fn next_deadline(&self) -> Option<Millis> {
        match &self.peers {
            Some(p) => p.tabs().next_deadline(&self.quota),
            None => self.quota.next_deadline(),
        }
    }

    /// A state from this tab's connection: applied, and relayed by a
    /// leading tab. `Err` is a new error to report (the last good state
    /// stays, and the error is shown).
    pub fn server_state<B: Body>(&mut self, body: B, now: Millis, read: ReadState) -> Result<(), String> {
        match &mut self.peers {
            Some(p) => {
                let before = error_mark(&self.quota);
                let out = p.tabs_mut().server_state(&mut self.quota, &body.text(), now, read);
                self.queue(out);
                new_error(&self.quota, before).map_or(Ok(()), Err)
            }
            None => {
                let state = body.read().inspect_err(|e| self.quota.report_error(e.clone()))?;
                self.quota.apply_state(state, now).map(drop).map_err(|e| e.to_string())
            }
        }
    }

    /// The connection confirmed the state shown (a ping, a 304).
    pub fn server_current(&mut self, now: Millis) {
        match &mut self.peers {
            Some(p) => {
                let out = p.tabs_mut().server_current(&mut self.quota, now);
                self.queue(out);
            }
            None => self.quota.confirm_current(now),
        }
    }

    /// The connection's link changed.
    pub fn server_link(&mut self, link: Link, now: Millis) {
        match &mut self.peers {
            Some(p) => {
                let out = p.tabs_mut().server_link(&mut self.quota, link, now);
                self.queue(out);
            }
            None => self.quota.set_link(link),
        }
    }

    /// The server refused the state with HTTP `status` (401: the session
    /// is not accepted): shown until a good state arrives. Returns the
    /// error's text.
    pub fn server_refused(&mut self, status: u16, f: &dyn Fmt) -> String {
        let message = super::words::refused(f, status);
        self.quota.report_error(message.clone());
        message
    }

    /// This tab took the leadership lock: it leads, and should connect,
    /// resuming from [`Session::resume_from`].
    pub fn lead(&mut self, now: Millis) {
        self.with_peers(|t, q| t.lead(q, now))
    }

    /// This tab goes away, or stops leading (`pagehide`, destroy).
    pub fn leave(&mut self) {
        self.with_peers(|t, q| t.leave(q))
    }

    /// The page came back from the back/forward cache: it joins again.
    pub fn rejoin(&mut self) {
        self.with_peers(|t, q| t.start(q))
    }

    /// The tab was shown or hidden.
    pub fn set_visible(&mut self, visible: bool) {
        self.with_peers(|t, q| t.set_visible(q, visible))
    }

    /// A message from another tab. A malformed one changes nothing and is
    /// given back as the error to report.
    pub fn receive<S: Source>(&mut self, msg: &S, now: Millis, read: ReadState, f: &dyn Fmt) -> Result<(), String> {
        let before = error_mark(&self.quota);
        self.with_peers(|t, q| t.receive(q, msg, now, read, f));
        new_error(&self.quota, before).map_or(Ok(()), Err)
    }

    fn with_peers(&mut self, f: impl FnOnce(&mut Tabs, &mut Quota) -> Vec<TabCmd>) {
        if let Some(p) = &mut self.peers {
            let out = f(p.tabs_mut(), &mut self.quota);
            self.queue(out);
        }
    }
}

/// Which error is shown now, to tell a new one from it.
fn error_mark(q: &Quota) -> Option<*const u8> {
    q.error().map(str::as_ptr)
}

/// The error recorded since `before`, if any.
fn new_error(q: &Quota, before: Option<*const u8>) -> Option<String> {
    q.error().filter(|e| Some(e.as_ptr()) != before).map(str::to_owned)
}
