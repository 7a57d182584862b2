//! Checks 1 to 3: credentials, the state's shape, and revalidation with
//! the ETag.

// The parts of one `impl Run`, split by check: they share the parent's imports.
use super::*;
use crate::Credentials;

impl<F: FnMut(&CheckResult)> Run<'_, F> {
    pub(super) async fn auth(&mut self) -> Option<Reply> {
        let mut problems = Vec::new();
        match self.api.send(Method::GET, "/api/state", Auth::Without, &[], None).await {
            Ok(r) => problems.extend(expect_401(&r, "GET /api/state without credentials")),
            Err(e) => problems.push(e),
        }
        if matches!(self.cfg.credentials, Credentials::Bearer(_)) {
            match self.api.send(Method::GET, "/api/state", Auth::Unknown, &[], None).await {
                Ok(r) => problems.extend(expect_401(&r, "GET /api/state with an unknown token")),
                Err(e) => problems.push(e),
            }
        }
        match self.api.events(Auth::Without, None).await {
            Ok(Opened::Refused(r)) => problems.extend(expect_401(&r, "GET /api/events without credentials")),
            Ok(Opened::Stream(_)) => {
                problems.push("GET /api/events without credentials answered 200 and opened a stream, want 401".into())
            }
            Err(e) => problems.push(e),
        }
        let reply = match self.api.send(Method::GET, "/api/state", Auth::Account, &[], None).await {
            Ok(r) if r.status == 200 => Some(r),
            Ok(r) => {
                problems.push(format!("GET /api/state with the credentials answered {}, want 200", r.describe()));
                None
            }
            Err(e) => {
                problems.push(e);
                None
            }
        };
        if problems.is_empty() {
            let unknown = if matches!(self.cfg.credentials, Credentials::Bearer(_)) { ", an unknown token" } else { "" };
            self.record(
                Check::Auth,
                Status::Ok,
                format!("no credentials{unknown} → 401 (code 1000) on /api/state and /api/events; the account's → 200"),
            );
        } else {
            self.record(Check::Auth, Status::Fail, problems.join("; "));
        }
        reply
    }

    pub(super) fn shape(&mut self, reply: &Reply) -> Option<ServerState> {
        match state::read(&reply.body) {
            Ok(s) => {
                self.observe(&s);
                let spendable = quota_widget::core::rules::remaining(&s);
                self.record(
                    Check::StateShape,
                    Status::Ok,
                    format!(
                        "{}, {} ({spendable} units spendable), {} running, {} finished, revision {}",
                        plural(s.pools.len(), "pool", "pools"),
                        plural(s.packages.len(), "package", "packages"),
                        s.running.len(),
                        s.finished.len(),
                        s.revision
                    ),
                );
                Some(s)
            }
            Err(e) => {
                self.record(Check::StateShape, Status::Fail, e);
                None
            }
        }
    }

    pub(super) async fn etag(&mut self) {
        let outcome = self.etag_inner().await;
        self.record_outcome(Check::Etag, outcome);
    }

    pub(super) async fn etag_inner(&mut self) -> Result<String, (Status, String)> {
        let fail = |m: String| (Status::Fail, m);
        // A state that changes between the two requests proves nothing:
        // try again a few times.
        for _ in 0..3 {
            let r = self.api.send(Method::GET, "/api/state", Auth::Account, &[], None).await.map_err(fail)?;
            if r.status != 200 {
                return Err(fail(format!("GET /api/state answered {}", r.describe())));
            }
            let s = state::read(&r.body).map_err(|e| fail(format!("GET /api/state: {e}")))?;
            self.observe(&s);
            let want = format!("\"{}\"", s.revision);
            let Some(tag) = r.header("etag") else {
                return Err(fail(format!("the state of revision {} has no ETag, want ETag: {want}", s.revision)));
            };
            if tag != want && tag != format!("W/{want}") {
                return Err(fail(format!("ETag is {tag}, want {want} (the revision)")));
            }
            let r2 = self
                .api
                .send(Method::GET, "/api/state", Auth::Account, &[("if-none-match", &tag)], None)
                .await
                .map_err(fail)?;
            match r2.status {
                304 => {
                    if !r2.body.is_empty() {
                        return Err(fail(format!("If-None-Match {tag} answered 304 with a body: {}", snippet(&r2.body))));
                    }
                    match r2.header("etag") {
                        Some(t) if t == tag => {}
                        Some(t) => return Err(fail(format!("If-None-Match {tag} answered 304 with ETag {t}, want {tag}"))),
                        None => return Err(fail(format!("If-None-Match {tag} answered 304 without the ETag"))),
                    }
                }
                200 => {
                    let now = state::read(&r2.body).map_err(|e| fail(format!("GET /api/state: {e}")))?;
                    self.observe(&now);
                    if now.revision != s.revision {
                        continue;
                    }
                    return Err(fail(format!("If-None-Match {tag} answered 200, want 304")));
                }
                _ => return Err(fail(format!("If-None-Match {tag} answered {}, want 304", r2.describe()))),
            }
            let stale = match s.revision.checked_sub(1) {
                Some(r) => format!("\"{r}\""),
                None => "\"qw-conformance-stale\"".to_owned(),
            };
            let r3 = self
                .api
                .send(Method::GET, "/api/state", Auth::Account, &[("if-none-match", &stale)], None)
                .await
                .map_err(fail)?;
            if r3.status != 200 {
                return Err(fail(format!("a stale If-None-Match {stale} answered {}, want 200", r3.status)));
            }
            let now = state::read(&r3.body).map_err(|e| fail(format!("GET /api/state: {e}")))?;
            self.observe(&now);
            return Ok(format!("ETag {tag}; If-None-Match {tag} → 304 with no body; a stale {stale} → 200"));
        }
        Err((Status::Skip, "the revision changed under every attempt (is the account busy?)".into()))
    }
}
