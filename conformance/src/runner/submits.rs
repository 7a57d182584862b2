//! Checks 6 and 7: an accepted submit, its repeat, and the refusals
//! (malformed, over units, over slots), each of which must hold and
//! charge nothing.

// The parts of one `impl Run`, split by check: they share the parent's imports.
use super::*;

/// A refusal provoked once.
pub(super) enum Attempt {
    Pass(String),
    Fail(String),
    /// Other tasks started or ended meanwhile: the figures prove nothing.
    Moved,
}

impl<F: FnMut(&CheckResult)> Run<'_, F> {
    pub(super) async fn submit(&mut self, kind: &str) -> Option<Accepted> {
        match self.submit_inner(kind).await {
            Ok((detail, accepted)) => {
                self.record(Check::Submit, Status::Ok, detail);
                Some(accepted)
            }
            Err((status, detail)) => {
                self.record(Check::Submit, status, detail);
                None
            }
        }
    }

    pub(super) async fn submit_inner(&mut self, kind: &str) -> Result<(String, Accepted), (Status, String)> {
        let fail = |m: String| (Status::Fail, m);
        let before = self.state().await.map_err(fail)?;
        let mark = self.mark();
        self.base_mark = Some(mark);
        let pool = state::pool(&before, kind).ok_or_else(|| fail(format!("the account has no pool \"{kind}\" any more")))?;
        let (slots, cost) = (pool.slot_rule.slots_for(1), pool.unit_cost);
        if let Some(cap) = state::capacity(&before, kind) {
            if let Err(short) = cap.admit(slots, cost) {
                return Err((Status::Skip, format!("cannot submit: {}", shortfall(&short, 1, kind))));
            }
        }
        let req = self.request(kind, 1);
        let reply = self.post(&req).await.map_err(fail)?;
        let answered_at = Instant::now();
        self.adopt(&reply, &req.client_request_id, false, mark, None);
        if reply.status != 201 {
            return Err(fail(format!(
                "1 {kind} (fits: {} slots free, {} units available) was answered {}, want 201",
                pool.limit.saturating_sub(pool.in_use),
                state::capacity(&before, kind).map(|c| c.available_units()).unwrap_or_default(),
                reply.describe()
            )));
        }
        let acc: SubmitAccepted = serde_json::from_slice(&reply.body)
            .map_err(|e| fail(format!("the 201 is not a SubmitAccepted ({e}): {}", snippet(&reply.body))))?;
        let mut problems = Vec::new();
        if acc.client_request_id != req.client_request_id {
            problems.push(format!(
                "client_request_id {:?}, want the request's {:?}",
                acc.client_request_id, req.client_request_id
            ));
        }
        if acc.slots != slots {
            problems.push(format!("slots {}, want {slots} ({:?} pool, 1 item)", acc.slots, pool.slot_rule));
        }
        if acc.reserved_units != cost {
            problems.push(format!("reserved_units {}, want {cost} (unit_cost × 1)", acc.reserved_units));
        }
        if acc.revision <= before.revision {
            problems.push(format!(
                "revision {}, want above the state's {} (the first revision that shows the task)",
                acc.revision, before.revision
            ));
        }
        let after = self.state().await.map_err(fail)?;
        if after.revision < acc.revision {
            problems.push(format!(
                "the state read after the 201 has revision {}, below the answer's {}",
                after.revision, acc.revision
            ));
        }
        let task = &acc.task_id;
        if let Some(t) = after.running.iter().find(|t| &t.id == task) {
            if t.kind != kind || t.slots != slots || t.reserved_units != cost {
                problems.push(format!(
                    "{task} runs as {} slots of {} reserving {}, want {slots} of {kind} reserving {cost}",
                    t.slots, t.kind, t.reserved_units
                ));
            }
            if t.client_request_id.as_deref() != Some(&req.client_request_id) {
                problems.push(format!("{task} runs without the request's client_request_id (the widget ends its hold by it)"));
            }
        } else if let Some(t) = after.finished.iter().find(|t| &t.id == task) {
            if t.outcome == Outcome::Refused {
                problems.push(format!("{task} was accepted (201) but is listed as refused"));
            }
        } else {
            problems.push(format!("the state of revision {} does not show {task}", after.revision));
        }
        if let Err(e) = self.ledger_since(mark) {
            problems.push(format!("a hold must not deduct: {e}"));
        }
        if !problems.is_empty() {
            return Err(fail(format!("201 {task}: {}", problems.join("; "))));
        }
        Ok((
            format!(
                "1 {kind} → 201 {task}: {}, {cost} units reserved, revision {} → {}; shown running, nothing deducted",
                plural(slots as usize, "slot", "slots"),
                before.revision,
                acc.revision
            ),
            Accepted { req, acc, answered_at },
        ))
    }

    pub(super) async fn idempotency(&mut self, t1: &Accepted) -> Result<String, (Status, String)> {
        let fail = |m: String| (Status::Fail, m);
        let before = self.state().await.map_err(fail)?;
        let mark = self.mark();
        let crid = t1.req.client_request_id.clone();
        let reply = self.post(&t1.req).await.map_err(fail)?;
        let mut problems = Vec::new();
        if reply.status != 200 {
            problems.push(format!("the repeat of {crid} was answered {}, want 200", reply.describe()));
        }
        if reply.is_success() {
            match serde_json::from_slice::<SubmitAccepted>(&reply.body) {
                Ok(acc) if acc == t1.acc => {}
                Ok(acc) => problems.push(format!(
                    "the repeat answered {}, want the first answer {}",
                    compact(&acc),
                    compact(&t1.acc)
                )),
                Err(e) => problems.push(format!("the repeat's answer is not a SubmitAccepted ({e})")),
            }
        }
        let after = self.state().await.map_err(fail)?;
        self.adopt(&reply, &crid, false, mark, Some(&after));
        let started = state::new_running(&before, &after);
        if !started.is_empty() {
            problems.push(format!("the repeat started {} as well", started.join(", ")));
        }
        if let Err(e) = self.ledger_since(mark) {
            problems.push(e);
        }
        if !problems.is_empty() {
            return Err(fail(problems.join("; ")));
        }
        Ok(format!(
            "the repeat of {crid} → 200 with the same SubmitAccepted ({}); nothing more held or reserved",
            t1.acc.task_id
        ))
    }

    pub(super) async fn bad_request(&mut self, kind: &str) -> Result<String, (Status, String)> {
        let fail = |m: String| (Status::Fail, m);
        let before = self.state().await.map_err(fail)?;
        let mark = self.mark();
        let crid = self.new_request_id();
        let kind_json = serde_json::Value::from(kind).to_string();
        let cases = [
            ("a body cut short (not JSON)", format!("{{\"kind\": {kind_json}, \"count\": 1,")),
            (
                "count \"one\"",
                serde_json::json!({"kind": kind, "count": "one", "client_request_id": crid}).to_string(),
            ),
        ];
        let mut problems = Vec::new();
        for (what, body) in cases {
            let reply = self
                .api
                .send(Method::POST, "/api/generations", Auth::Account, &[], Some(body.into_bytes()))
                .await
                .map_err(fail)?;
            if reply.status != 400 {
                problems.push(format!("{what} was answered {}, want 400 code 1200", reply.describe()));
                self.adopt(&reply, &crid, false, mark, None);
                continue;
            }
            match reply.api_error() {
                Ok(e) if e.code == codes::BAD_REQUEST => {}
                Ok(e) => problems.push(format!("{what}: 400 with code {}, want 1200", e.code)),
                Err(e) => problems.push(format!("{what}: {e}")),
            }
        }
        let after = self.state().await.map_err(fail)?;
        self.adopt_new(&before, &after, mark);
        let started = state::new_running(&before, &after);
        if !started.is_empty() {
            problems.push(format!("a malformed submit started {}", started.join(", ")));
        }
        if let Err(e) = self.ledger_since(mark) {
            problems.push(e);
        }
        if !problems.is_empty() {
            return Err(fail(problems.join("; ")));
        }
        Ok("a body cut short and count \"one\" → 400 (code 1200); nothing held or charged".into())
    }

    /// Takes the tasks that appeared between two states as the checker's,
    /// so that they are ended at the end.
    pub(super) fn adopt_new(&mut self, before: &ServerState, after: &ServerState, mark: usize) {
        for id in state::new_running(before, after) {
            if self.ours.iter().all(|o| o.task_id != id) {
                self.ours.push(Ours {
                    task_id: id.to_owned(),
                    filler: false,
                    before_mark: mark,
                });
            }
        }
    }

    /// Sends a request that must be refused with `want` (status, code) and
    /// checks that the refusal charged and held nothing.
    pub(super) async fn try_refusal(
        &mut self,
        before: &ServerState,
        mark: usize,
        kind: &str,
        count: u32,
        want: (u16, u32),
        why: &str,
    ) -> Attempt {
        let req = self.request(kind, count);
        let crid = req.client_request_id.clone();
        let reply = match self.post(&req).await {
            Ok(r) => r,
            Err(e) => return Attempt::Fail(e),
        };
        let after = match self.state().await {
            Ok(s) => s,
            Err(e) => return Attempt::Fail(format!("after the refusal: {e}")),
        };
        self.adopt(&reply, &crid, true, mark, Some(&after));
        let moved = state::moved(before, &after, &crid);
        let what = format!("{count} {kind} ({why})");
        let (status, code) = want;
        if reply.status != status {
            if moved {
                return Attempt::Moved;
            }
            return Attempt::Fail(format!("{what} was answered {}, want {status} code {code}", reply.describe()));
        }
        let mut problems = Vec::new();
        match reply.api_error() {
            Ok(e) if e.code == code => {}
            Ok(e) => problems.push(format!("{what}: {status} with code {}, want {code}", e.code)),
            Err(e) => problems.push(format!("{what}: {e}")),
        }
        let mut retry = String::new();
        if status == 429 {
            match reply.header("retry-after") {
                Some(v) if retry_after_ok(&v) => retry = format!(", Retry-After: {v}"),
                Some(v) => problems.push(format!("Retry-After {v:?} is neither seconds nor an HTTP date")),
                None => problems.push("no Retry-After header: the client cannot tell when to try again".into()),
            }
        }
        if let Some(t) = after.running.iter().find(|t| t.client_request_id.as_deref() == Some(&crid)) {
            problems.push(format!("the refused request holds the running task {}", t.id));
        }
        if let Some(t) = after.finished.iter().find(|t| t.client_request_id.as_deref() == Some(&crid)) {
            if t.outcome != Outcome::Refused {
                problems.push(format!("the refused request is listed as {} ({})", outcome_name(t.outcome), t.id));
            }
        }
        if let Err(e) = self.ledger_since(mark) {
            problems.push(format!("a refusal must charge nothing: {e}"));
        }
        if !problems.is_empty() {
            return Attempt::Fail(problems.join("; "));
        }
        Attempt::Pass(format!("{what} → {status} code {code}{retry}; nothing held or charged"))
    }

    pub(super) async fn over_units(&mut self, kind: &str) -> Result<String, (Status, String)> {
        for _ in 0..MAX_MOVED {
            let before = self.state().await.map_err(|e| (Status::Fail, e))?;
            let mark = self.mark();
            let Some((k, count, why)) = units_probe(&before, kind) else {
                let available = state::capacity(&before, kind).map(|c| c.available_units()).unwrap_or_default();
                return Err((
                    Status::Skip,
                    format!(
                        "{available} units available: no request within the free slots (at most {MAX_COUNT} items) costs more; an account with fewer units shows this check"
                    ),
                ));
            };
            match self.try_refusal(&before, mark, &k, count, (402, codes::UNITS_EXHAUSTED), &why).await {
                Attempt::Pass(d) => return Ok(d),
                Attempt::Fail(d) => return Err((Status::Fail, d)),
                Attempt::Moved => {}
            }
        }
        Err((Status::Skip, "other tasks kept starting or ending under the check (is the account busy?)".into()))
    }

    pub(super) async fn over_slots(&mut self, kind: &str) -> Result<String, (Status, String)> {
        let (mut fillers, mut moved) = (0, 0);
        loop {
            let before = self.state().await.map_err(|e| (Status::Fail, e))?;
            let mark = self.mark();
            let (Some(pool), Some(cap)) = (state::pool(&before, kind), state::capacity(&before, kind)) else {
                return Err((Status::Fail, format!("the pool \"{kind}\" is gone from the state")));
            };
            let free = cap.free_slots();
            let count = match pool.slot_rule {
                SlotRule::PerItem if free < MAX_COUNT => Some(free + 1),
                SlotRule::PerTask if free == 0 => Some(1),
                _ => None,
            };
            let Some(count) = count else {
                // One request cannot ask for more than the free slots: fill
                // some first.
                if fillers >= MAX_FILLERS {
                    return Err((
                        Status::Skip,
                        format!("{free} slots of {kind} still free after {MAX_FILLERS} filler tasks"),
                    ));
                }
                let fill = match pool.slot_rule {
                    SlotRule::PerItem => (free - (MAX_COUNT - 1)).min(MAX_COUNT),
                    SlotRule::PerTask => 1,
                };
                if let Err(e) = self.start_task(kind, fill, true).await {
                    return Err((Status::Skip, format!("could not fill the {free} free slots of {kind}: {e}")));
                }
                fillers += 1;
                continue;
            };
            let cost = pool.unit_cost.times(count);
            let also = if cap.available_units() < cost { "; over units too: slots are checked first" } else { "" };
            let why = format!("{free} of {} slots free{also}", pool.limit);
            match self.try_refusal(&before, mark, kind, count, (429, codes::OVER_CONCURRENCY), &why).await {
                Attempt::Pass(d) if fillers > 0 => return Ok(format!("{d} (after {fillers} filler tasks)")),
                Attempt::Pass(d) => return Ok(d),
                Attempt::Fail(d) => return Err((Status::Fail, d)),
                Attempt::Moved => {
                    moved += 1;
                    if moved >= MAX_MOVED {
                        return Err((
                            Status::Skip,
                            "other tasks kept starting or ending under the check (is the account busy?)".into(),
                        ));
                    }
                }
            }
        }
    }

    /// Ends the over-slots check's fillers, so that later checks have slots.
    pub(super) async fn end_fillers(&mut self) {
        let Some(url) = self.cfg.fail_url.clone() else { return };
        let fillers: Vec<String> = self.ours.iter().filter(|o| o.filler).map(|o| o.task_id.clone()).collect();
        if fillers.is_empty() {
            return;
        }
        let running = match self.state().await {
            Ok(s) => s.running.iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
            Err(_) => return,
        };
        for id in fillers.iter().filter(|id| running.contains(id)) {
            match self.end_task(&url, id).await {
                Ok(r) if r.is_success() => {}
                Ok(r) => self.notes.push(format!("could not end the filler {id}: --fail-url answered {}", r.describe())),
                Err(e) => self.notes.push(format!("could not end the filler {id}: {e}")),
            }
        }
    }
}

/// The request that is over units but within the free slots, preferring
/// `kind`: (kind, count, why).
fn units_probe(s: &ServerState, kind: &str) -> Option<(String, u32, String)> {
    let kinds = std::iter::once(kind).chain(s.pools.iter().map(|p| p.kind.as_str()).filter(|k| *k != kind));
    for k in kinds {
        let (Some(pool), Some(cap)) = (state::pool(s, k), state::capacity(s, k)) else { continue };
        for count in 1..=MAX_COUNT {
            let cost = pool.unit_cost.times(count);
            match cap.admit(pool.slot_rule.slots_for(count), cost) {
                Ok(()) => {}
                Err(Shortfall::Units { available }) => {
                    return Some((k.to_owned(), count, format!("costs {cost} with {available} units available")));
                }
                Err(Shortfall::Slots { .. }) => break,
            }
        }
    }
    None
}
