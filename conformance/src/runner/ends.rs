//! Check 8: what the end of a task does to the units, through the end
//! URLs or by waiting; and the cleanup of the checker's tasks.

// The parts of one `impl Run`, split by check: they share the parent's imports.
use super::*;

impl<F: FnMut(&CheckResult)> Run<'_, F> {
    /// The failure and success checks: through the end URLs given, by
    /// waiting for the others.
    pub(super) async fn outcomes(&mut self, kind: &str) {
        if let Some(url) = self.cfg.fail_url.clone() {
            let outcome = self.end_through(&url, Outcome::Failed, kind).await;
            self.record_outcome(Check::Failure, outcome);
        }
        if let Some(url) = self.cfg.succeed_url.clone() {
            let outcome = self.end_through(&url, Outcome::Succeeded, kind).await;
            self.record_outcome(Check::Success, outcome);
        }
        let (want_fail, want_success) = (self.cfg.fail_url.is_none(), self.cfg.succeed_url.is_none());
        if want_fail || want_success {
            self.natural(kind, want_fail, want_success).await;
        }
    }

    /// Ends one of the checker's tasks (or a new one) through an end URL
    /// and checks what that did to the packages.
    pub(super) async fn end_through(&mut self, template: &str, outcome: Outcome, kind: &str) -> Result<String, (Status, String)> {
        let flag = if outcome == Outcome::Failed { "--fail-url" } else { "--succeed-url" };
        for _ in 0..MAX_MOVED {
            if let Some(detail) = self.end_once(template, outcome, kind, flag).await? {
                return Ok(detail);
            }
        }
        Err((Status::Skip, format!("the checker's tasks kept ending by themselves before {flag} could end them")))
    }

    /// One try of [`Self::end_through`]; `None` when the task ended by
    /// itself before the end URL got to it (a backend with a worker).
    async fn end_once(
        &mut self,
        template: &str,
        outcome: Outcome,
        kind: &str,
        flag: &str,
    ) -> Result<Option<String>, (Status, String)> {
        let fail = |m: String| (Status::Fail, m);
        let s = self.state().await.map_err(fail)?;
        let running = self.ours.iter().find(|o| !o.filler && s.running.iter().any(|t| t.id == o.task_id)).cloned();
        let (task, submit_mark) = match running {
            Some(o) => (o.task_id, o.before_mark),
            None => {
                let id = self
                    .start_task(kind, 1, false)
                    .await
                    .map_err(|e| (Status::Skip, format!("no task of the checker runs, and a new one could not start: {e}")))?;
                let mark = self.ours.iter().find(|o| o.task_id == id).map_or(self.mark(), |o| o.before_mark);
                (id, mark)
            }
        };
        // The ledger of a failure runs from before the task's submit (its
        // units must be exactly as then); that of a success from just
        // before its end (the deduction must be exactly its charge).
        let _ = self.state().await.map_err(fail)?;
        let end_mark = self.mark();
        let reply = self.end_task(template, &task).await.map_err(fail)?;
        if !reply.is_success() {
            let now = self.state().await.map_err(fail)?;
            if now.running.iter().all(|t| t.id != task) {
                return Ok(None);
            }
            return Err(fail(format!(
                "could not end {task} through {flag}: POST {} answered {}",
                fill_template(template, &task),
                reply.describe()
            )));
        }
        let after = self.wait_ended(&task).await.map_err(fail)?;
        let Some(f) = after.finished.iter().find(|t| t.id == task).cloned() else {
            return Err(fail(format!("{task} no longer runs but is not listed in finished (revision {})", after.revision)));
        };
        if f.outcome != outcome {
            return Err(fail(format!(
                "{task} ended {} through {flag}, want {}",
                outcome_name(f.outcome),
                outcome_name(outcome)
            )));
        }
        let left = |s: &ServerState| state::units_left(s);
        match outcome {
            Outcome::Failed => {
                if !f.units_charged.is_zero() {
                    return Err(fail(format!("the failed {task} has units_charged {}, want 0", f.units_charged)));
                }
                self.ledger_since(submit_mark)
                    .map_err(|e| fail(format!("the failed {task} changed the units since its submit: {e}")))?;
                Ok(Some(format!(
                    "{task} failed through {flag}: units_charged 0; the packages hold {} units, as before its submit",
                    left(&after)
                )))
            }
            _ => {
                let was = self.reads.get(end_mark).map(left).unwrap_or_default();
                self.ledger_since(end_mark).map_err(|e| fail(format!("{task} succeeded: {e}")))?;
                // Once: a second end must not deduct again.
                let again_mark = self.mark();
                let again = self.end_task(template, &task).await.map_err(fail)?;
                let _ = self.state().await.map_err(fail)?;
                self.ledger_since(again_mark).map_err(|e| {
                    fail(format!("a second POST to {flag} for the ended {task} (answered {}) changed the units: {e}", again.status))
                })?;
                Ok(Some(format!(
                    "{task} succeeded through {flag}: charged {} (reserved {}), packages {was} → {} units; a second end ({}) deducted nothing",
                    f.units_charged,
                    self.reserved_of(&task).map_or("?".to_owned(), |u| u.to_string()),
                    left(&after),
                    again.status
                )))
            }
        }
    }

    /// What the checker's task reserved, from the states read.
    pub(super) fn reserved_of(&self, task: &str) -> Option<Units> {
        self.reads.iter().rev().find_map(|s| s.running.iter().find(|t| t.id == task).map(|t| t.reserved_units))
    }

    /// Without end URLs: waits for the checker's tasks to end by themselves.
    pub(super) async fn natural(&mut self, kind: &str, want_fail: bool, want_success: bool) {
        let checks: Vec<Check> = [(want_fail, Check::Failure), (want_success, Check::Success)]
            .into_iter()
            .filter_map(|(w, c)| w.then_some(c))
            .collect();
        let Some(base) = self.base_mark else {
            for c in checks {
                self.record(c, Status::Skip, "no task of the checker was accepted (see submit)");
            }
            return;
        };
        let s = match self.state().await {
            Ok(s) => s,
            Err(e) => {
                for c in checks {
                    self.record(c, Status::Fail, e.clone());
                }
                return;
            }
        };
        if !self.ours.iter().any(|o| s.running.iter().any(|t| t.id == o.task_id)) {
            if let Err(e) = self.start_task(kind, 1, false).await {
                for c in checks {
                    self.record(c, Status::Skip, format!("no task of the checker runs, and a new one could not start: {e}"));
                }
                return;
            }
        }
        let started = Instant::now();
        let deadline = started + self.cfg.task_wait;
        let mut extra = 0;
        let (mut failed, mut succeeded) = (None, None);
        let last = loop {
            let last = match self.state().await {
                Ok(s) => s,
                Err(e) => {
                    for c in checks {
                        self.record(c, Status::Fail, e.clone());
                    }
                    return;
                }
            };
            for o in &self.ours {
                if let Some(t) = last.finished.iter().find(|t| t.id == o.task_id) {
                    match t.outcome {
                        Outcome::Failed if failed.is_none() => failed = Some(t.clone()),
                        Outcome::Succeeded if succeeded.is_none() => succeeded = Some(t.clone()),
                        _ => {}
                    }
                }
            }
            let done = (!want_fail || failed.is_some()) && (!want_success || succeeded.is_some());
            if done || Instant::now() >= deadline {
                break last;
            }
            if !self.ours.iter().any(|o| last.running.iter().any(|t| t.id == o.task_id)) {
                // All ended, none the way a check waits for: try another.
                if extra >= MAX_EXTRA_TASKS || self.start_task(kind, 1, false).await.is_err() {
                    break last;
                }
                extra += 1;
                continue;
            }
            tokio::time::sleep(POLL_NATURAL).await;
        };
        let ledger = self.ledger_since(base);
        let count = |o: Outcome| {
            self.ours.iter().filter(|x| last.finished.iter().any(|t| t.id == x.task_id && t.outcome == o)).count()
        };
        let still = self.ours.iter().filter(|o| last.running.iter().any(|t| t.id == o.task_id)).count();
        let waited = format!(
            "{}: {} succeeded, {} failed, {} refused, {still} still running after {} of waiting",
            plural(self.ours.len(), "task of the checker", "tasks of the checker"),
            count(Outcome::Succeeded),
            count(Outcome::Failed),
            count(Outcome::Refused),
            secs(started.elapsed())
        );
        if want_fail {
            let outcome = match &failed {
                Some(t) if !t.units_charged.is_zero() => {
                    Err((Status::Fail, format!("the failed {} has units_charged {}, want 0", t.id, t.units_charged)))
                }
                Some(t) => match &ledger {
                    Ok(_) => Ok(format!("{} failed on its own: units_charged 0, and no units were deducted for it", t.id)),
                    Err(e) => Err((Status::Fail, format!("{} failed on its own, and the units do not add up: {e}", t.id))),
                },
                None => Err((Status::Skip, format!("none failed on its own ({waited}); --fail-url ends one as failed"))),
            };
            self.record_outcome(Check::Failure, outcome);
        }
        if want_success {
            let outcome = match &succeeded {
                Some(t) => match &ledger {
                    Ok(_) => Ok(format!("{} succeeded on its own: charged {}, deducted exactly once", t.id, t.units_charged)),
                    Err(e) => Err((Status::Fail, format!("{} succeeded on its own, and the units do not add up: {e}", t.id))),
                },
                None => Err((Status::Skip, format!("none succeeded on its own ({waited}); --succeed-url ends one"))),
            };
            self.record_outcome(Check::Success, outcome);
        }
    }

    /// Ends the checker's tasks that still run, through --fail-url (which
    /// charges nothing) or else --succeed-url.
    pub(super) async fn cleanup(&mut self) {
        if self.ours.is_empty() {
            return;
        }
        let s = match self.state().await {
            Ok(s) => s,
            Err(e) => {
                self.notes.push(format!("could not see which tasks of the checker still run: {e}"));
                return;
            }
        };
        let running: Vec<String> = self
            .ours
            .iter()
            .filter(|o| s.running.iter().any(|t| t.id == o.task_id))
            .map(|o| o.task_id.clone())
            .collect();
        if running.is_empty() {
            return;
        }
        let (url, flag) = match (&self.cfg.fail_url, &self.cfg.succeed_url) {
            (Some(u), _) => (u.clone(), "--fail-url"),
            (None, Some(u)) => (u.clone(), "--succeed-url"),
            (None, None) => {
                self.notes.push(format!(
                    "left running (no --fail-url or --succeed-url to end them): {}",
                    running.join(", ")
                ));
                return;
            }
        };
        let mut ended = Vec::new();
        for id in running {
            match self.end_task(&url, &id).await {
                Ok(r) if r.is_success() => ended.push(id),
                Ok(r) => self.notes.push(format!("could not end {id} through {flag}: {}", r.describe())),
                Err(e) => self.notes.push(format!("could not end {id} through {flag}: {e}")),
            }
        }
        if !ended.is_empty() {
            self.notes.push(format!("ended the checker's tasks {} through {flag}", ended.join(", ")));
        }
    }
}
