//! How the widget keeps in step with the server, as a state machine with
//! no I/O: the browser shell (`src/sync.rs`) feeds it what happened (a
//! fetch answered, the stream opened or failed, a timer fired, the tab was
//! hidden) and carries out the commands it returns.
//!
//! The plan: fetch the state (with `If-None-Match`) on every (re)connect,
//! then follow the server-sent-event stream; reconnect with exponential
//! backoff and jitter; pause while the tab is hidden and resync when it
//! shows; after three streams in a row that fail before delivering
//! anything, poll instead.

use super::backoff::backoff_ms;
use super::machine::Link;

/// What happened. `B` is a state body, which the machine only passes on:
/// text on the host, a JavaScript string in the browser (so that it goes
/// to `JSON.parse` without a copy into wasm and back).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncInput<B = String> {
    /// The answer to fetch `seq`.
    Fetched { seq: u32, result: FetchResult<B> },
    StreamOpened,
    /// A `state` event's data.
    StreamState(B),
    /// A `ping` event: the server is there and the state is current.
    StreamPing,
    /// The stream failed or closed.
    StreamFailed,
    /// The timer set by `SetTimer` fired.
    Timer,
    /// The tab was shown (true) or hidden (false).
    Visible(bool),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchResult<B = String> {
    /// 200 with a body and maybe an ETag.
    State { body: B, etag: Option<String> },
    /// 304: the state shown is current.
    NotModified,
    /// The server answered, but not with a state: its HTTP status (401,
    /// 404, ...), which [`super::words::refused`] words.
    Refused(u16),
    /// No answer (network down, server restarting, 5xx).
    Unreachable,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncCmd<B = String> {
    Fetch { seq: u32, etag: Option<String> },
    OpenStream,
    CloseStream,
    /// Replace any pending timer with one firing in `ms`.
    SetTimer(u32),
    ClearTimer,
    /// For the quota core:
    State(B),
    Current,
    Link(Link),
    /// The server refused the state with this HTTP status.
    Refused(u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Paused,
    Fetching,
    Streaming { delivered: bool },
    Polling,
    Backoff,
}

#[derive(Clone, Debug)]
pub struct SyncMachine {
    phase: Phase,
    use_events: bool,
    poll_ms: u32,
    /// Failed connection attempts since the last good fetch.
    attempt: u32,
    /// Streams in a row that failed before delivering anything.
    dead_streams: u32,
    etag: Option<String>,
    /// Sequence number of the fetch whose answer is awaited; answers to
    /// older fetches are ignored.
    seq: u32,
}

/// Streams that fail before delivering anything, in a row, before the
/// machine polls instead.
pub const DEAD_STREAMS_BEFORE_POLLING: u32 = 3;

impl SyncMachine {
    pub fn new(use_events: bool, poll_ms: u32) -> Self {
        SyncMachine {
            phase: Phase::Idle,
            use_events,
            poll_ms,
            attempt: 0,
            dead_streams: 0,
            etag: None,
            seq: 0,
        }
    }

    /// Starts syncing. `hidden`: whether the tab is hidden now.
    pub fn start<B>(&mut self, hidden: bool) -> Vec<SyncCmd<B>> {
        if hidden {
            self.phase = Phase::Paused;
            return vec![SyncCmd::Link(Link::Paused)];
        }
        self.connect()
    }

    /// Whether the machine polls rather than streams.
    pub fn polling(&self) -> bool {
        !self.use_events || self.dead_streams >= DEAD_STREAMS_BEFORE_POLLING
    }

    fn connect<B>(&mut self) -> Vec<SyncCmd<B>> {
        self.phase = Phase::Fetching;
        self.seq = self.seq.wrapping_add(1);
        let link = if self.attempt == 0 { Link::Connecting } else { Link::Reconnecting { attempt: self.attempt } };
        vec![SyncCmd::Link(link), SyncCmd::Fetch { seq: self.seq, etag: self.etag.clone() }]
    }

    fn lost<B>(&mut self, random: f64, mut out: Vec<SyncCmd<B>>) -> Vec<SyncCmd<B>> {
        self.attempt = self.attempt.saturating_add(1);
        self.phase = Phase::Backoff;
        out.push(SyncCmd::Link(Link::Reconnecting { attempt: self.attempt }));
        out.push(SyncCmd::SetTimer(backoff_ms(self.attempt, random)));
        out
    }

    /// Takes one input; `random` in [0, 1) jitters the backoff.
    pub fn handle<B>(&mut self, input: SyncInput<B>, random: f64) -> Vec<SyncCmd<B>> {
        use SyncInput::*;
        match (self.phase, input) {
            (Phase::Idle, _) => vec![],
            (Phase::Paused, Visible(true)) => {
                self.attempt = 0;
                self.connect()
            }
            (Phase::Paused, _) => vec![],
            (phase, Visible(false)) => {
                self.phase = Phase::Paused;
                let mut out = vec![];
                if matches!(phase, Phase::Streaming { .. }) {
                    out.push(SyncCmd::CloseStream);
                }
                // A fetch in flight is answered into the void: `seq` moves on.
                self.seq = self.seq.wrapping_add(1);
                out.push(SyncCmd::ClearTimer);
                out.push(SyncCmd::Link(Link::Paused));
                out
            }
            (Phase::Backoff, Visible(true)) => {
                // Shown again during a wait: resync now.
                let mut out = vec![SyncCmd::ClearTimer];
                out.extend(self.connect());
                out
            }
            (_, Visible(true)) => vec![],
            (Phase::Fetching, Fetched { seq, result }) if seq == self.seq => match result {
                FetchResult::State { .. } | FetchResult::NotModified => {
                    let mut out = match result {
                        FetchResult::State { body, etag } => {
                            self.etag = etag;
                            vec![SyncCmd::State(body)]
                        }
                        _ => vec![SyncCmd::Current],
                    };
                    self.attempt = 0;
                    if self.polling() {
                        self.phase = Phase::Polling;
                        out.insert(0, SyncCmd::Link(Link::Live));
                        out.push(SyncCmd::SetTimer(self.poll_ms));
                    } else {
                        self.phase = Phase::Streaming { delivered: false };
                        out.push(SyncCmd::OpenStream);
                    }
                    out
                }
                FetchResult::Refused(status) => self.lost(random, vec![SyncCmd::Refused(status)]),
                FetchResult::Unreachable => self.lost(random, vec![]),
            },
            (_, Fetched { .. }) => vec![],
            (Phase::Streaming { .. }, StreamOpened) => vec![SyncCmd::Link(Link::Live)],
            (Phase::Streaming { .. }, StreamState(body)) => {
                self.phase = Phase::Streaming { delivered: true };
                self.dead_streams = 0;
                vec![SyncCmd::Link(Link::Live), SyncCmd::State(body)]
            }
            (Phase::Streaming { .. }, StreamPing) => {
                self.phase = Phase::Streaming { delivered: true };
                self.dead_streams = 0;
                vec![SyncCmd::Link(Link::Live), SyncCmd::Current]
            }
            (Phase::Streaming { delivered }, StreamFailed) => {
                if !delivered {
                    self.dead_streams += 1;
                }
                self.lost(random, vec![SyncCmd::CloseStream])
            }
            (_, StreamOpened | StreamState(_) | StreamPing | StreamFailed) => vec![],
            (Phase::Polling | Phase::Backoff, Timer) => self.connect(),
            (_, Timer) => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{FetchResult, SyncMachine, DEAD_STREAMS_BEFORE_POLLING};
    // Bodies are text here.
    type SyncInput = super::SyncInput<String>;
    use super::SyncCmd::*;

    fn fetched(m: &SyncMachine, result: FetchResult) -> SyncInput {
        SyncInput::Fetched { seq: m.seq, result }
    }

    fn state(body: &str) -> FetchResult {
        FetchResult::State { body: body.into(), etag: Some("\"1\"".into()) }
    }

    #[test]
    fn connects_fetches_then_streams() {
        let mut m = SyncMachine::new(true, 5000);
        assert_eq!(m.start::<String>(false), vec![Link(super::Link::Connecting), Fetch { seq: 1, etag: None }]);
        let out = m.handle(fetched(&m, state("{s1}")), 0.0);
        assert_eq!(out, vec![State("{s1}".into()), OpenStream]);
        assert_eq!(m.handle(SyncInput::StreamOpened, 0.0), vec![Link(super::Link::Live)]);
        assert_eq!(m.handle(SyncInput::StreamState("{s2}".into()), 0.0), vec![Link(super::Link::Live), State("{s2}".into())]);
        assert_eq!(m.handle(SyncInput::StreamPing, 0.0), vec![Link(super::Link::Live), Current]);
    }

    #[test]
    fn a_lost_stream_backs_off_resyncs_and_resets_after_success() {
        let mut m = SyncMachine::new(true, 5000);
        m.start::<String>(false);
        m.handle(fetched(&m, state("a")), 0.0);
        m.handle(SyncInput::StreamPing, 0.0);
        let out = m.handle(SyncInput::StreamFailed, 0.0);
        assert_eq!(out, vec![CloseStream, Link(super::Link::Reconnecting { attempt: 1 }), SetTimer(1000)]);
        let out = m.handle(SyncInput::Timer, 0.0);
        assert_eq!(out[0], Link(super::Link::Reconnecting { attempt: 1 }));
        assert!(matches!(out[1], Fetch { etag: Some(_), .. }), "resync asks with the ETag");
        // The server is still down: waits grow, with jitter.
        assert_eq!(m.handle(fetched(&m, FetchResult::Unreachable), 1.0).last(), Some(&SetTimer(3000)));
        m.handle(SyncInput::Timer, 0.0);
        assert_eq!(m.handle(fetched(&m, FetchResult::Unreachable), 0.0).last(), Some(&SetTimer(4000)));
        m.handle(SyncInput::Timer, 0.0);
        assert_eq!(m.handle(fetched(&m, FetchResult::NotModified), 0.0), vec![Current, OpenStream]);
        // Back: the next outage starts again at one second.
        m.handle(SyncInput::StreamPing, 0.0);
        assert_eq!(m.handle(SyncInput::StreamFailed, 0.0).last(), Some(&SetTimer(1000)));
    }

    #[test]
    fn falls_back_to_polling_when_streams_never_deliver() {
        let mut m = SyncMachine::new(true, 2000);
        m.start::<String>(false);
        for _ in 0..DEAD_STREAMS_BEFORE_POLLING {
            assert_eq!(m.handle(fetched(&m, state("a")), 0.0).last(), Some(&OpenStream));
            m.handle(SyncInput::StreamFailed, 0.0);
            m.handle(SyncInput::Timer, 0.0);
        }
        assert!(m.polling());
        assert_eq!(m.handle(fetched(&m, state("b")), 0.0), vec![Link(super::Link::Live), State("b".into()), SetTimer(2000)]);
        let out = m.handle(SyncInput::Timer, 0.0);
        assert!(matches!(out[1], Fetch { .. }));
        assert_eq!(m.handle(fetched(&m, FetchResult::NotModified), 0.0), vec![Link(super::Link::Live), Current, SetTimer(2000)]);
    }

    #[test]
    fn pauses_while_hidden_and_resyncs_when_shown() {
        let mut m = SyncMachine::new(true, 5000);
        m.start::<String>(false);
        m.handle(fetched(&m, state("a")), 0.0);
        let out = m.handle(SyncInput::Visible(false), 0.0);
        assert_eq!(out, vec![CloseStream, ClearTimer, Link(super::Link::Paused)]);
        assert_eq!(m.handle(SyncInput::Timer, 0.0), vec![]);
        assert_eq!(m.handle(SyncInput::StreamState("late".into()), 0.0), vec![]);
        let out = m.handle(SyncInput::Visible(true), 0.0);
        assert!(matches!(out[..], [Link(super::Link::Connecting), Fetch { .. }]));
    }

    #[test]
    fn answers_to_old_fetches_are_ignored() {
        let mut m = SyncMachine::new(true, 5000);
        m.start::<String>(false);
        let old = m.seq;
        m.handle(SyncInput::Visible(false), 0.0);
        m.handle(SyncInput::Visible(true), 0.0);
        let stale = SyncInput::Fetched { seq: old, result: state("old") };
        assert_eq!(m.handle(stale, 0.0), vec![]);
        assert_eq!(m.handle(fetched(&m, state("new")), 0.0), vec![State("new".into()), OpenStream]);
    }

    #[test]
    fn shown_during_a_backoff_wait_reconnects_at_once() {
        let mut m = SyncMachine::new(true, 5000);
        m.start::<String>(false);
        m.handle(fetched(&m, FetchResult::Unreachable), 0.0);
        let out = m.handle(SyncInput::Visible(true), 0.0);
        assert_eq!(out[0], ClearTimer);
        assert!(matches!(out[2], Fetch { .. }));
    }

    #[test]
    fn a_refused_session_is_an_error_and_a_retry() {
        let mut m = SyncMachine::new(true, 5000);
        m.start::<String>(false);
        let out = m.handle(fetched(&m, FetchResult::Refused(401)), 0.0);
        assert_eq!(out[0], Refused(401));
        assert_eq!(out[1], Link(super::Link::Reconnecting { attempt: 1 }));
    }

    #[test]
    fn starts_paused_in_a_hidden_tab() {
        let mut m = SyncMachine::new(true, 5000);
        assert_eq!(m.start::<String>(true), vec![Link(super::Link::Paused)]);
        assert!(matches!(m.handle(SyncInput::Visible(true), 0.0)[1], Fetch { .. }));
    }
}
