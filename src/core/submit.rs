//! What the answer to a submit request means for its hold: the contract of
//! `docs/api.md` (statuses, error codes, `Retry-After`) in one place. The
//! browser shell sends the request and reports what came back as a
//! [`Reply`]; [`settle`] says how the hold ends and why, in words.

use serde::Serialize;
#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

use super::fmt::Fmt;
use super::machine::HoldEnd;
use super::text::Msg;
use super::words::say;
use super::wire::Millis;

/// Longest wait a `Retry-After` can impose on the gate: a wrong header must
/// not lock the button for a day.
pub const MAX_RETRY_AFTER_MS: Millis = 10 * 60 * 1000;

/// What came back from the dashboard's request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// An HTTP answer. `json` says whether its body parsed as JSON; `code`
    /// is the body's error code (`{"code": 1303, "message": ...}`).
    Http { status: u16, retry_after: Option<&'a str>, json: bool, code: Option<u32> },
    /// The request never got an answer: the request function threw or its
    /// promise rejected (offline, DNS, CORS, a reset connection).
    Threw,
    /// No answer within `after_ms`.
    TimedOut { after_ms: Millis },
}

/// The outcome of a submit, as the dashboard sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The server took the request; its state will show the task.
    Accepted,
    /// The server refused it: nothing ran, nothing was charged.
    Refused,
    /// The session is gone (401): sign in again.
    SignedOut,
    /// No usable answer (network, timeout, server error, unreadable body):
    /// nothing was charged.
    Failed,
}

/// How a hold ends, decided from a [`Reply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    pub verdict: Verdict,
    /// How the hold ends now; `None` when the server's next state ends it
    /// (an accepted request is confirmed by the state that shows it).
    pub end: Option<HoldEnd>,
    /// Why it did not start, for people; `None` when accepted.
    pub reason: Option<String>,
    /// How long the server asked to wait before the next submit.
    pub retry_after_ms: Option<Millis>,
}

/// `Retry-After` in delta-seconds ("1", " 30 "), capped at
/// [`MAX_RETRY_AFTER_MS`]. The HTTP-date form is not used by the quota API
/// and is ignored, as is anything unreadable.
pub fn retry_after_ms(header: Option<&str>) -> Option<Millis> {
    let h = header?.trim();
    if h.is_empty() || h.len() > 9 || !h.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds: Millis = h.parse().ok()?;
    Some((seconds * 1000).min(MAX_RETRY_AFTER_MS))
}

/// What `reply` means for a hold of work of kind `kind`, in words by `f`.
pub fn settle(f: &dyn Fmt, kind: &str, reply: &Reply) -> Settled {
    use Verdict::*;
    let (status, retry, json, code) = match *reply {
        Reply::Http { status, retry_after, json, code } => (status, retry_after_ms(retry_after), json, code),
        _ => (0, None, false, None),
    };
    let (verdict, m) = match (reply, status) {
        (Reply::Threw, _) => (Failed, Msg::ReasonNetwork),
        (Reply::TimedOut { .. }, _) => (Failed, Msg::ReasonTimeout),
        (_, 200..=299) => return Settled { verdict: Accepted, end: None, reason: None, retry_after_ms: None },
        (_, 401) => (SignedOut, Msg::ReasonSignedOut),
        // A refusal is the server's own answer, so its body is the
        // contract's ApiError; a 4xx page from a proxy is not a refusal
        // that can be explained.
        (_, 400..=499) if json => (
            Refused,
            match code {
                Some(1101) => Msg::Reason1101,
                Some(1102) => Msg::Reason1102,
                Some(1103) => Msg::Reason1103,
                Some(1200) => Msg::Reason1200,
                Some(1301) => Msg::Reason1301,
                Some(1302) => Msg::Reason1302,
                Some(1303) => Msg::Reason1303,
                _ => Msg::ReasonRefused,
            },
        ),
        (_, 400..=499) => (Failed, Msg::ReasonNotJson),
        _ if json && code == Some(5001) => (Failed, Msg::Reason5001),
        _ => (Failed, Msg::ReasonServer),
    };
    let seconds = match *reply {
        Reply::TimedOut { after_ms } => ((after_ms + 999) / 1000).max(0) as u64,
        _ => 0,
    };
    let reason = say(
        f,
        m,
        None,
        &[("kind", &super::words::kind_name(f, kind)), ("status", &f.number(u64::from(status))), ("seconds", &f.number(seconds))],
    );
    Settled {
        verdict,
        end: Some(if verdict == Failed { HoldEnd::Failed } else { HoldEnd::Refused }),
        reason: Some(reason),
        // A wait is asked for by refusals and by a service that is busy.
        retry_after_ms: if verdict == SignedOut { None } else { retry },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::PlainFmt;

    fn http(status: u16, retry_after: Option<&str>, json: bool, code: Option<u32>) -> Settled {
        settle(&PlainFmt, "image", &Reply::Http { status, retry_after, json, code })
    }

    #[test]
    fn success_waits_for_the_servers_state() {
        for status in [200, 201, 202, 204] {
            let s = http(status, None, false, None);
            assert_eq!((s.verdict, s.end, s.reason), (Verdict::Accepted, None, None));
        }
    }

    #[test]
    fn refusals_are_worded_from_their_codes() {
        let s = http(429, Some("1"), true, Some(1303));
        assert_eq!(s.verdict, Verdict::Refused);
        assert_eq!(s.end, Some(HoldEnd::Refused));
        assert_eq!(s.reason.as_deref(), Some("all image slots are busy"));
        assert_eq!(s.retry_after_ms, Some(1000));
        assert_eq!(http(402, None, true, Some(1102)).reason.as_deref(), Some("not enough units"));
        assert_eq!(http(400, None, true, Some(1301)).reason.as_deref(), Some("refused by the content policy"));
        assert_eq!(http(429, Some("3"), true, Some(1302)).reason.as_deref(), Some("too many requests"));
        assert_eq!(http(409, None, true, Some(4242)).reason.as_deref(), Some("refused by the server (HTTP 409)"));
        assert_eq!(http(409, None, true, None).verdict, Verdict::Refused);
    }

    #[test]
    fn a_401_is_signed_out() {
        let s = http(401, None, true, Some(1000));
        assert_eq!((s.verdict, s.end), (Verdict::SignedOut, Some(HoldEnd::Refused)));
        assert_eq!(s.reason.as_deref(), Some("signed out: sign in again"));
    }

    #[test]
    fn server_errors_proxies_and_the_network_are_failures_with_their_true_reason() {
        // A proxy's HTML 502: a failure, said as it is, not "no answer".
        let s = http(502, None, false, None);
        assert_eq!((s.verdict, s.end), (Verdict::Failed, Some(HoldEnd::Failed)));
        assert_eq!(s.reason.as_deref(), Some("server error (HTTP 502)"));
        assert_eq!(http(500, None, true, Some(1500)).reason.as_deref(), Some("server error (HTTP 500)"));
        let s = http(503, Some("5"), true, Some(5001));
        assert_eq!(s.reason.as_deref(), Some("the generation service is unavailable"));
        assert_eq!(s.retry_after_ms, Some(5000));
        // A 4xx without the contract's JSON body is not a refusal we can explain.
        let s = http(404, None, false, None);
        assert_eq!(s.verdict, Verdict::Failed);
        assert_eq!(s.reason.as_deref(), Some("the server's answer could not be read (HTTP 404)"));
        let s = settle(&PlainFmt, "image", &Reply::Threw);
        assert_eq!((s.verdict, s.reason.as_deref()), (Verdict::Failed, Some("the request did not reach the server")));
        let s = settle(&PlainFmt, "image", &Reply::TimedOut { after_ms: 19_500 });
        assert_eq!((s.verdict, s.reason.as_deref()), (Verdict::Failed, Some("no answer within 20 s")));
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        assert_eq!(retry_after_ms(Some("1")), Some(1000));
        assert_eq!(retry_after_ms(Some(" 30 ")), Some(30_000));
        assert_eq!(retry_after_ms(Some("0")), Some(0));
        assert_eq!(retry_after_ms(Some("999999")), Some(MAX_RETRY_AFTER_MS));
        for bad in ["", "-1", "1.5", "soon", "Wed, 21 Oct 2015 07:28:00 GMT", "99999999999999999999"] {
            assert_eq!(retry_after_ms(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(retry_after_ms(None), None);
    }
}
