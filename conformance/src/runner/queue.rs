//! The queue (optional): a request sent with `queue` while every slot of
//! its kind is busy waits on the server, its units reserved, no slot held,
//! and `DELETE /api/generations/{id}` cancels it. A backend without the
//! queue refuses such a request with 1303, as any over-slots request: the
//! check is then skipped, and the run still passes.

// The parts of one `impl Run`, split by check: they share the parent's imports.
use super::*;

impl<F: FnMut(&CheckResult)> Run<'_, F> {
    pub(super) async fn queue(&mut self, kind: &str) -> Result<String, (Status, String)> {
        let fail = |m: String| (Status::Fail, m);
        let (mut fillers, mut moved) = (0, 0);
        loop {
            let before = self.state().await.map_err(fail)?;
            let mark = self.mark();
            let (Some(pool), Some(cap)) = (state::pool(&before, kind), state::capacity(&before, kind)) else {
                return Err(fail(format!("the pool \"{kind}\" is gone from the state")));
            };
            let (limit, rule, cost) = (pool.limit, pool.slot_rule, pool.unit_cost);
            let free = cap.free_slots();
            let short = || {
                (
                    Status::Skip,
                    format!(
                        "needs every slot of {kind} busy and units for one more request ({} available, {free} of {limit} slots free): an account with more units shows this check",
                        cap.available_units()
                    ),
                )
            };
            if free > 0 {
                // Busy every slot first, within the units.
                let fill = match rule {
                    SlotRule::PerItem => free.min(MAX_COUNT),
                    SlotRule::PerTask => 1,
                };
                if fillers >= MAX_FILLERS || cap.available_units() < cost.times(fill).saturating_add(cost) {
                    return Err(short());
                }
                if let Err(e) = self.start_task(kind, fill, true).await {
                    return Err((Status::Skip, format!("could not busy the {free} free slots of {kind}: {e}")));
                }
                fillers += 1;
                continue;
            }
            if limit == 0 || cap.available_units() < cost {
                return Err(short());
            }
            let ahead = before.queued.iter().filter(|q| q.kind == kind).count();
            let mut req = self.request(kind, 1);
            req.queue = true;
            let crid = req.client_request_id.clone();
            let reply = self.post(&req).await.map_err(fail)?;
            let after = self.state().await.map_err(fail)?;
            self.adopt(&reply, &crid, true, mark, Some(&after));
            let account_moved = state::moved(&before, &after, &crid);
            if reply.status == 429 {
                return match reply.api_error() {
                    Ok(e) if e.code == codes::OVER_CONCURRENCY => {
                        let mut problems = Vec::new();
                        let ours = |c: &Option<String>| c.as_deref() == Some(crid.as_str());
                        if after.running.iter().any(|t| ours(&t.client_request_id))
                            || after.queued.iter().any(|q| ours(&q.client_request_id))
                        {
                            problems.push("the refused request is held".to_owned());
                        }
                        if let Err(e) = self.ledger_since(mark) {
                            problems.push(format!("a refusal must charge nothing: {e}"));
                        }
                        if problems.is_empty() {
                            Err((
                                Status::Skip,
                                format!(
                                    "this backend does not queue: 1 {kind} sent with queue while {limit} of {limit} slots were busy → 429 code 1303 ({}); the widget shows that refusal",
                                    e.message
                                ),
                            ))
                        } else {
                            Err(fail(problems.join("; ")))
                        }
                    }
                    Ok(e) => Err(fail(format!("1 {kind} sent with queue → 429 with code {}, want 201 or 1303", e.code))),
                    Err(e) => Err(fail(format!("1 {kind} sent with queue → 429: {e}"))),
                };
            }
            if reply.status != 201 {
                return Err(fail(format!(
                    "1 {kind} sent with queue while every slot was busy was answered {}, want 201 (queued) or 429 code 1303 (no queue)",
                    reply.describe()
                )));
            }
            let acc: SubmitAccepted = serde_json::from_slice(&reply.body)
                .map_err(|e| fail(format!("the 201 is not a SubmitAccepted ({e}): {}", snippet(&reply.body))))?;
            let Some(place) = acc.place else {
                if account_moved && moved < MAX_MOVED {
                    // A slot freed meanwhile and it started: try again.
                    moved += 1;
                    continue;
                }
                return Err(fail(format!(
                    "1 {kind} sent with queue while {limit} of {limit} slots were busy started at once ({}): over the limit",
                    acc.task_id
                )));
            };
            let mut problems = Vec::new();
            let want_place = ahead + 1;
            if place as usize != want_place {
                problems.push(format!("place {place}, want {want_place} ({ahead} of its kind waited before it)"));
            }
            if (acc.slots, acc.reserved_units) != (rule.slots_for(1), cost) {
                problems.push(format!("slots {} and reserved_units {}, want {} and {cost}", acc.slots, acc.reserved_units, rule.slots_for(1)));
            }
            match after.queued.iter().find(|q| q.id == acc.task_id) {
                Some(q) if account_moved || (q.kind.as_str(), q.count, q.reserved_units, q.place) == (kind, 1, cost, place) => {}
                Some(q) => problems.push(format!(
                    "the state lists it as {} ×{}, {} units, place {}; want {kind} ×1, {cost} units, place {place}",
                    q.kind, q.count, q.reserved_units, q.place
                )),
                None if account_moved => {}
                None => problems.push(format!("the state read after the 201 does not list {} in queued", acc.task_id)),
            }
            if after.running.iter().any(|t| t.id == acc.task_id) && !account_moved {
                problems.push("it holds a slot while it waits".to_owned());
            }
            if !account_moved {
                let was = cap.available_units();
                let now = state::capacity(&after, kind).map(|c| c.available_units()).unwrap_or_default();
                if was.checked_sub(cost) != Some(now) {
                    problems.push(format!("available units went from {was} to {now}: a queued request reserves its {cost} at once (R2)"));
                }
            }
            let cancelled = self.cancel(&acc, cost).await;
            match cancelled {
                Ok(()) => {}
                Err(_) if account_moved => {
                    moved += 1;
                    if moved >= MAX_MOVED {
                        return Err((Status::Skip, "other tasks kept starting or ending under the check (is the account busy?)".into()));
                    }
                    continue;
                }
                Err(e) => problems.push(e),
            }
            if let Err(e) = self.ledger_since(mark) {
                problems.push(format!("a wait and a cancel must charge nothing: {e}"));
            }
            if !problems.is_empty() {
                return Err(fail(problems.join("; ")));
            }
            return Ok(format!(
                "1 {kind} sent with queue while {limit} of {limit} slots were busy → 201, place {place}, {cost} units reserved, no slot held; DELETE → 200, {cost} units released, nothing charged, the same answer twice"
            ));
        }
    }

    /// Cancels the checker's queued request and checks the answer and the
    /// state after it.
    async fn cancel(&mut self, acc: &SubmitAccepted, cost: Units) -> Result<(), String> {
        let path = fill_template("/api/generations/{task_id}", &acc.task_id);
        let reply = self.api.send(Method::DELETE, &path, Auth::Account, &[], None).await?;
        if reply.status != 200 {
            return Err(format!("DELETE {path} of the queued request was answered {}, want 200", reply.describe()));
        }
        let answer: Cancelled = serde_json::from_slice(&reply.body)
            .map_err(|e| format!("the cancel's answer is not a Cancelled ({e}): {}", snippet(&reply.body)))?;
        let mut problems = Vec::new();
        if (answer.task_id.as_str(), answer.units_released) != (acc.task_id.as_str(), cost) {
            problems.push(format!("the cancel answered {} and {} units released, want {} and {cost}", answer.task_id, answer.units_released, acc.task_id));
        }
        let after = self.state().await?;
        if after.revision < answer.revision {
            problems.push(format!("the state read after the cancel has revision {}, below its answer's {}", after.revision, answer.revision));
        }
        if after.queued.iter().any(|q| q.id == acc.task_id) || after.running.iter().any(|t| t.id == acc.task_id) {
            problems.push(format!("{} is still queued or running after its cancel", acc.task_id));
        }
        if let Some(t) = after.finished.iter().find(|t| t.id == acc.task_id) {
            if t.outcome != Outcome::Refused || !t.units_charged.is_zero() {
                problems.push(format!("the cancelled request is listed as {} charged {}", outcome_name(t.outcome), t.units_charged));
            }
        }
        let again = self.api.send(Method::DELETE, &path, Auth::Account, &[], None).await?;
        match serde_json::from_slice::<Cancelled>(&again.body) {
            Ok(a) if again.status == 200 && a == answer => {}
            _ => problems.push(format!("a second DELETE answered {}, want 200 with the first answer", again.describe())),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}
