//! Check 5, the event stream (its framing, a change, pings, a resume with
//! the header and with the query), and the summary of check 4 over
//! everything read.

// The parts of one `impl Run`, split by check: they share the parent's imports.
use super::*;

/// An open event stream and what it delivered.
pub(super) struct Watch {
    pub(super) name: &'static str,
    pub(super) es: EventStream,
    pub(super) last_state: Option<u64>,
    pub(super) states: usize,
    pub(super) pings: Vec<Instant>,
    /// Framing faults: missing ids, malformed states, pings without a revision.
    pub(super) problems: Vec<String>,
    pub(super) bad_pings: Vec<String>,
    pub(super) ended: Option<String>,
    /// An event already read (to time it) and not yet handed out.
    pending: Option<Seen>,
}

/// One event, classified.
pub(super) enum Seen {
    State(Instant, ServerState),
    Ping,
    /// A state event that could not be read (already noted as a problem).
    Bad,
    Other(String),
    End,
}

impl Watch {
    pub(super) fn new(name: &'static str, es: EventStream) -> Watch {
        Watch {
            name,
            es,
            last_state: None,
            states: 0,
            pings: Vec::new(),
            problems: Vec::new(),
            bad_pings: Vec::new(),
            ended: None,
            pending: None,
        }
    }

    pub(super) fn problem(&mut self, p: String) {
        if self.problems.len() < 4 && !self.problems.contains(&p) {
            self.problems.push(p);
        }
    }

    /// The next event, waiting until `deadline` at most (events already
    /// received are returned even past it); `None` on timeout or after the
    /// end.
    pub(super) async fn next(&mut self, deadline: Instant, revisions: &mut Revisions) -> Option<Seen> {
        if let Some(seen) = self.pending.take() {
            return Some(seen);
        }
        if self.ended.is_some() {
            return None;
        }
        match self.es.next_until(deadline).await? {
            Item::End { why, .. } => {
                self.ended = Some(why);
                Some(Seen::End)
            }
            Item::Event { at, event } => Some(match event.event.as_str() {
                "state" => self.state_event(at, &event.id, &event.data, revisions),
                "ping" => {
                    match event.data.trim().parse::<u64>() {
                        Ok(rev) => {
                            if let Some(last) = self.last_state.filter(|last| rev < *last) {
                                revisions.problem(format!(
                                    "{}: a ping said revision {rev} after the state of revision {last}",
                                    self.name
                                ));
                            }
                        }
                        Err(_) => {
                            let p = format!("{}: ping data {:?} is not a revision", self.name, event.data);
                            if !self.bad_pings.contains(&p) {
                                self.bad_pings.push(p);
                            }
                        }
                    }
                    self.pings.push(at);
                    Seen::Ping
                }
                other => Seen::Other(other.to_owned()),
            }),
        }
    }

    pub(super) fn state_event(&mut self, at: Instant, id: &Option<String>, data: &str, revisions: &mut Revisions) -> Seen {
        let s = match state::read(data.as_bytes()) {
            Ok(s) => s,
            Err(e) => {
                self.problem(format!("{}: a state event the widget would reject: {e}", self.name));
                return Seen::Bad;
            }
        };
        match id.as_deref().map(str::trim) {
            None => self.problem(format!("{}: the state event of revision {} has no id", self.name, s.revision)),
            Some(id) if id.parse::<u64>() != Ok(s.revision) => self.problem(format!(
                "{}: a state event has id {id:?} but revision {}; the id must be the revision",
                self.name, s.revision
            )),
            Some(_) => {}
        }
        if let Some(last) = self.last_state.filter(|last| s.revision <= *last) {
            revisions.problem(format!(
                "{}: revision {} was sent after revision {last} (never back, never twice on one stream)",
                self.name, s.revision
            ));
        }
        self.last_state = Some(self.last_state.map_or(s.revision, |l| l.max(s.revision)));
        self.states += 1;
        revisions.events += 1;
        revisions.content(&s, format!("{} event", self.name));
        Seen::State(at, s)
    }
}

/// How soon a stream opened at the current revision must send its first
/// event. Proxies that hold a response's head until its first body byte
/// (Node's, so Vite's dev server) show the stream as unopened until then:
/// a tab taking over the stream of other tabs would wait that long.
pub(super) const FIRST_EVENT_WITHIN: Duration = Duration::from_secs(1);

impl<F: FnMut(&CheckResult)> Run<'_, F> {
    /// Opens the stream and reads its first event, which must be the
    /// current state.
    pub(super) async fn open_stream(&mut self) -> Option<Watch> {
        let current = match self.state().await {
            Ok(s) => s.revision,
            Err(e) => {
                self.event_problems.push(e);
                return None;
            }
        };
        let es = match self.api.events(Auth::Account, None).await {
            Ok(Opened::Stream(es)) => es,
            Ok(Opened::Refused(r)) => {
                self.event_problems.push(format!("GET /api/events answered {}, want 200", r.describe()));
                return None;
            }
            Err(e) => {
                self.event_problems.push(e);
                return None;
            }
        };
        let content_type = es.headers.get("content-type").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if !content_type.as_deref().is_some_and(|c| c.trim().to_ascii_lowercase().starts_with("text/event-stream")) {
            self.event_problems.push(format!(
                "GET /api/events has Content-Type {}, want text/event-stream",
                content_type.as_deref().unwrap_or("(none)")
            ));
        }
        let mut w = Watch::new("stream", es);
        let deadline = Instant::now() + self.cfg.event_timeout;
        match w.next(deadline, &mut self.revisions).await {
            Some(Seen::State(_, s)) if s.revision < current => self.event_problems.push(format!(
                "the first state event has revision {}, older than the current {current}",
                s.revision
            )),
            Some(Seen::State(..)) | Some(Seen::Bad) => {}
            Some(Seen::Ping) => self.event_problems.push("the first event was a ping, want the current state".into()),
            Some(Seen::Other(name)) => {
                self.event_problems.push(format!("the first event was {name:?}, want the current state"))
            }
            Some(Seen::End) | None if w.ended.is_some() => self.event_problems.push(format!(
                "the stream ended before its first event: {}",
                w.ended.as_deref().unwrap_or_default()
            )),
            Some(Seen::End) | None => self.event_problems.push(format!(
                "no event within {} of connecting, want the current state first",
                secs(self.cfg.event_timeout)
            )),
        }
        Some(w)
    }

    pub(super) async fn events_change(&mut self, w: &mut Watch, t1: &Accepted) -> Result<String, (Status, String)> {
        let task = &t1.acc.task_id;
        let deadline = Instant::now() + self.cfg.event_timeout;
        loop {
            match w.next(deadline, &mut self.revisions).await {
                Some(Seen::State(at, s))
                    if s.revision >= t1.acc.revision
                        && (s.running.iter().any(|t| &t.id == task) || s.finished.iter().any(|t| &t.id == task)) =>
                {
                    let after = at.saturating_duration_since(t1.answered_at);
                    return Ok(format!(
                        "state event id {} showed {task} {} ms after the submit was answered",
                        s.revision,
                        after.as_millis()
                    ));
                }
                Some(Seen::End) => {
                    return Err((
                        Status::Fail,
                        format!("the stream ended before showing {task}: {}", w.ended.as_deref().unwrap_or_default()),
                    ))
                }
                Some(_) => {}
                None => {
                    let last = w.last_state.map_or("none".to_owned(), |r| format!("revision {r}"));
                    return Err((
                        Status::Fail,
                        format!(
                            "no state event showed {task} (accepted at revision {}) within {}; last state event: {last}",
                            t1.acc.revision,
                            secs(self.cfg.event_timeout)
                        ),
                    ));
                }
            }
        }
    }

    /// Reconnects as `EventSource` does, with the last id it saw.
    pub(super) async fn open_resumed(&mut self, w: &Watch) -> Result<(Watch, u64), (Status, String)> {
        let Some(r) = w.last_state else {
            return Err((Status::Skip, "the stream sent no state to resume from (see events)".into()));
        };
        match self.api.events(Auth::Account, Some(r)).await {
            Ok(Opened::Stream(es)) => Ok((Watch::new("resumed stream", es), r)),
            Ok(Opened::Refused(reply)) => Err((
                Status::Fail,
                format!("reconnecting with Last-Event-ID: {r} answered {}, want 200", reply.describe()),
            )),
            Err(e) => Err((Status::Fail, format!("reconnecting with Last-Event-ID: {r}: {e}"))),
        }
    }

    /// A fresh stream as a tab taking over the others' stream opens it (a
    /// new `EventSource` cannot set headers): `?last_event_id=` naming the
    /// current revision, read just before. Its first event is awaited here,
    /// for at most [`FIRST_EVENT_WITHIN`], and timed; it is handed out again
    /// by the stream's next read. `Ok` carries how long it took (`None`:
    /// nothing came in time).
    pub(super) async fn open_by_query(&mut self) -> Result<(Watch, u64, Option<Duration>), (Status, String)> {
        let r = self.state().await.map_err(|e| (Status::Fail, e))?.revision;
        let t0 = Instant::now();
        match self.api.events_by_query(Auth::Account, r).await {
            Ok(Opened::Stream(es)) => {
                let mut w = Watch::new("stream by query", es);
                let first = w.next(t0 + FIRST_EVENT_WITHIN, &mut self.revisions).await;
                let took = match first {
                    Some(Seen::End) | None => None,
                    Some(_) => Some(t0.elapsed()),
                };
                w.pending = first;
                Ok((w, r, took))
            }
            Ok(Opened::Refused(reply)) => Err((
                Status::Fail,
                format!("GET /api/events?last_event_id={r} answered {}, want 200", reply.describe()),
            )),
            Err(e) => Err((Status::Fail, e)),
        }
    }

    /// After the run's changes: the resumed stream must not have resent
    /// revision `r` (or older) and must have brought the newer states.
    pub(super) async fn resume(&mut self, w: &mut Watch, r: u64) -> Result<String, (Status, String)> {
        self.caught_up(w, r, &format!("Last-Event-ID: {r}"), "reconnecting with").await
    }

    /// The same for the stream opened with `?last_event_id=r`, whose first
    /// event must have come at once (`first`: how long it took); then a new
    /// stream naming a revision older than the current one must start with
    /// the current state.
    pub(super) async fn resume_by_query(&mut self, w: &mut Watch, r: u64, first: Option<Duration>) -> Result<String, (Status, String)> {
        let resumed = self.caught_up(w, r, &format!("?last_event_id={r}"), "opening the stream with").await?;
        let Some(first) = first else {
            return Err((
                Status::Fail,
                format!(
                    "opening the stream with ?last_event_id={r} (the current revision), nothing came for {}: \
                     send a ping naming it at once, or a proxy that holds the head until the first byte \
                     (Vite's dev server, for one) keeps the stream unopened until then",
                    secs(FIRST_EVENT_WITHIN)
                ),
            ));
        };
        let resumed = format!("{resumed}, the first event {} ms after opening", first.as_millis());
        let latest = self.state().await.map_err(|e| (Status::Fail, e))?.revision;
        // The revision the first stream named if the run changed anything
        // since (it always does when it could submit), else the one before.
        let older = match latest.checked_sub(1) {
            Some(_) if r < latest => r,
            Some(before) => before,
            None => return Ok(format!("{resumed}; no revision older than the current 0 to name")),
        };
        let opening = format!("opening the stream with ?last_event_id={older} at revision {latest}");
        let mut w = match self.api.events_by_query(Auth::Account, older).await {
            Ok(Opened::Stream(es)) => Watch::new("stream by older query", es),
            Ok(Opened::Refused(reply)) => {
                return Err((Status::Fail, format!("{opening} answered {}, want 200", reply.describe())))
            }
            Err(e) => return Err((Status::Fail, format!("{opening}: {e}"))),
        };
        let first = w.next(Instant::now() + self.cfg.event_timeout, &mut self.revisions).await;
        // Its framing counts for `events`, as every stream's does.
        self.event_problems.extend(w.problems.iter().chain(&w.bad_pings).cloned());
        match first {
            Some(Seen::State(_, s)) if s.revision >= latest => Ok(format!(
                "{resumed}; ?last_event_id={older} at revision {latest} → state {} first",
                s.revision
            )),
            Some(Seen::State(_, s)) => Err((
                Status::Fail,
                format!("{opening}: the first state event has revision {}, want the current state", s.revision),
            )),
            Some(Seen::Bad) => Err((
                Status::Fail,
                format!("{opening}: the first state event is one the widget would reject (see events)"),
            )),
            Some(Seen::Ping) => Err((
                Status::Fail,
                format!("{opening}: the first event was a ping, want the current state (only states newer than {older})"),
            )),
            Some(Seen::Other(name)) => {
                Err((Status::Fail, format!("{opening}: the first event was {name:?}, want the current state")))
            }
            Some(Seen::End) | None => {
                let why = match &w.ended {
                    Some(e) => format!("the stream ended before its first event ({e})"),
                    None => format!("no event within {} of connecting", secs(self.cfg.event_timeout)),
                };
                Err((Status::Fail, format!("{opening}: {why}, want the current state first")))
            }
        }
    }

    /// Reads a stream opened (`how`, with `label`) as of revision `r` until
    /// it has brought the current state: it must not have sent revision `r`
    /// or older, and must have brought every newer state up to the current.
    async fn caught_up(&mut self, w: &mut Watch, r: u64, label: &str, how: &str) -> Result<String, (Status, String)> {
        let latest = self.state().await.map_err(|e| (Status::Fail, e))?.revision;
        let deadline = Instant::now() + self.cfg.event_timeout;
        let (mut resent, mut newer) = (Vec::new(), Vec::new());
        loop {
            let caught_up = latest <= r || newer.last().is_some_and(|n| *n >= latest);
            // Once caught up, only take what has already arrived.
            let until = if caught_up { Instant::now() } else { deadline };
            match w.next(until, &mut self.revisions).await {
                Some(Seen::State(_, s)) if s.revision <= r => resent.push(s.revision),
                Some(Seen::State(_, s)) => newer.push(s.revision),
                Some(Seen::End) | None => break,
                Some(_) => {}
            }
        }
        if !resent.is_empty() {
            return Err((
                Status::Fail,
                format!("{how} {label} was answered with revision {} again; want only newer states", join(&resent)),
            ));
        }
        if latest > r && newer.last().is_none_or(|n| *n < latest) {
            let ended = w.ended.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
            return Err((
                Status::Fail,
                format!(
                    "after {how} {label}, the states up to revision {latest} did not arrive within {}{ended}",
                    secs(self.cfg.event_timeout)
                ),
            ));
        }
        Ok(match (newer.first(), newer.last()) {
            (Some(a), Some(b)) => format!(
                "{label} → nothing resent; {} arrived (revisions {a}..{b})",
                plural(newer.len(), "newer state", "newer states")
            ),
            _ => format!("{label} → nothing resent (nothing changed since)"),
        })
    }

    pub(super) async fn pings(&mut self, w: &mut Watch) -> Result<String, (Status, String)> {
        let limit = self.cfg.ping_timeout;
        let deadline = w.es.opened + limit;
        while w.pings.is_empty() {
            match w.next(deadline, &mut self.revisions).await {
                Some(Seen::End) | None => break,
                Some(_) => {}
            }
        }
        // Take what else has arrived, for the gaps.
        while let Some(seen) = w.next(Instant::now(), &mut self.revisions).await {
            if matches!(seen, Seen::End) {
                break;
            }
        }
        if let Some(p) = w.bad_pings.first() {
            return Err((Status::Fail, p.clone()));
        }
        let Some(first) = w.pings.first() else {
            let why = match &w.ended {
                Some(e) => format!("the stream ended without a ping ({e})"),
                None => format!("no ping within {} of connecting", secs(limit)),
            };
            return Err((Status::Fail, format!("{why}; the widget counts a silent link as stale (R5)")));
        };
        let mut worst = first.saturating_duration_since(w.es.opened);
        for pair in w.pings.windows(2) {
            worst = worst.max(pair[1].saturating_duration_since(pair[0]));
        }
        if w.ended.is_none() {
            if let Some(last) = w.pings.last() {
                worst = worst.max(last.elapsed());
            }
        }
        if worst > limit {
            return Err((
                Status::Fail,
                format!("{} without a ping on the stream (limit {})", secs(worst), secs(limit)),
            ));
        }
        Ok(format!(
            "{}, the first {} after connecting, never more than {} apart (limit {})",
            plural(w.pings.len(), "ping", "pings"),
            secs(first.saturating_duration_since(w.es.opened)),
            secs(worst),
            secs(limit)
        ))
    }

    /// `a` is the first stream; `others` the further ones still open.
    pub(super) fn events_summary(&mut self, a: Option<&Watch>, others: &[&Watch]) {
        let mut problems = self.event_problems.clone();
        for w in a.into_iter().chain(others.iter().copied()) {
            problems.extend(w.problems.iter().cloned());
            problems.extend(w.bad_pings.iter().cloned());
        }
        if a.is_none() && problems.is_empty() {
            problems.push("the stream could not be opened".into());
        }
        if !problems.is_empty() {
            self.record(Check::Events, Status::Fail, problems.join("; "));
            return;
        }
        let (states, pings) = a.into_iter().chain(others.iter().copied()).fold((0, 0), |(s, p), w| (s + w.states, p + w.pings.len()));
        self.record(
            Check::Events,
            Status::Ok,
            format!(
                "text/event-stream, the current state first; {}, each with id = its revision; {} with a revision",
                plural(states, "state event", "state events"),
                plural(pings, "ping", "pings")
            ),
        );
    }

    pub(super) fn revisions_summary(&mut self) {
        if !self.revisions.problems.is_empty() {
            let detail = self.revisions.problems.join("; ");
            self.record(Check::Revisions, Status::Fail, detail);
            return;
        }
        let r = &self.revisions;
        let detail = format!(
            "{} reads and {} state events, revisions {} → {}: never back, a new revision for every change",
            r.gets,
            r.events,
            r.lowest.unwrap_or(0),
            r.highest.unwrap_or(0)
        );
        self.record(Check::Revisions, Status::Ok, detail);
    }
}
