//! Every text the widget shows comes from the message table: a page that
//! replaces every message (here each by its name in brackets, `[name]`)
//! sees no word of the widget's own outside them. The scenarios take the
//! view through every part it words: each reason a submit is blocked,
//! packages in every status, attempts of every outcome and reason, the
//! freshness line, error lines (a bad state, the server refusing the
//! session), announcements, the refusals among tabs and the kinds' names.
//! A text written in code, not in `src/core/text.rs`, fails here; a message
//! that a shipped language table lacks fails `tests/locales.rs`.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::*;
use quota_widget::core::submit::Reply;
use quota_widget::core::tabs::{TabConfig, Why};
use quota_widget::core::wire::*;
use quota_widget::core::words::{kind_name, refused};
use quota_widget::core::*;

/// Words the data may bring into a text (package names, the server's
/// reasons, a kind the page does not name, a state reader's detail): not
/// the widget's own.
const DATA: &[&str] = &["Starter", "content moderation", "mystery", "Mystery", "nope", "malformed quota state: not valid JSON"];

/// What is left of `text` once the table's `[name]`s, the data's words,
/// numbers, dates and punctuation are taken out: letters here are the
/// widget's own words.
fn own_words(text: &str) -> String {
    let mut rest = String::new();
    let mut inside = false;
    for c in text.chars() {
        match c {
            '[' => inside = true,
            ']' => inside = false,
            c if !inside => rest.push(c),
            _ => {}
        }
    }
    for d in DATA {
        rest = rest.replace(d, " ");
    }
    rest.chars().filter(|c| c.is_alphabetic()).collect()
}

fn texts(vm: &ViewModel) -> Vec<String> {
    let mut out = vec![vm.reason.clone(), vm.freshness.clone(), vm.error_text.clone()];
    if let Some(u) = &vm.units {
        out.extend([u.remaining_text.clone(), u.detail_text.clone()]);
    }
    out.extend(vm.meters.iter().flat_map(|m| [m.label.clone(), m.text.clone()]));
    out.extend(vm.packages.iter().flat_map(|p| [p.units_text.clone(), p.status_text.clone()]));
    out.extend(vm.cost.iter().map(|c| c.text.clone()));
    out.extend(vm.attempts.iter().map(|a| a.text.clone()));
    out
}

/// Checks every text of the view now; gives how many texts it saw.
fn check(viewer: &mut Viewer<Keyed>, q: &mut Quota, now: Millis, scene: &str) -> usize {
    let vm = viewer.view(q, now);
    let mut all = texts(&vm);
    all.extend(q.take_announcements(viewer.fmt()));
    for t in &all {
        assert_eq!(own_words(t), "", "{scene}: {t:?} has words that are not from the message table");
    }
    all.iter().filter(|t| !t.is_empty()).count()
}

fn with(f: impl FnOnce(&mut ServerState)) -> ServerState {
    let mut s = state(2);
    f(&mut s);
    s
}

#[test]
fn every_text_of_the_view_comes_from_the_table() {
    let mut viewer = Viewer::new(Keyed::new());
    // The same table as the view's, for what the shells word beside it.
    let k = Keyed::new();
    let f = &k;
    let mut q = Quota::new(Config::default());
    let mut seen = 0;
    seen += check(&mut viewer, &mut q, T0, "no state");
    q.set_link(Link::Connecting);
    seen += check(&mut viewer, &mut q, T0, "connecting");
    q.set_link(Link::Reconnecting { attempt: 2 });
    seen += check(&mut viewer, &mut q, T0, "reconnecting");
    // The server refused the session, then a state arrives.
    q.report_error(refused(f, 401));
    seen += check(&mut viewer, &mut q, T0, "signed out");
    q.report_error(refused(f, 404));
    seen += check(&mut viewer, &mut q, T0, "refused state");
    q.set_link(Link::Live);
    let s = with(|s| {
        s.packages = vec![
            Package { name: "Starter".into(), ..package("p1", 100, 40, 3) },
            Package { name: "Starter".into(), status: PackageStatus::Pending, effective_at_ms: T0 + 86_400_000, ..package("p2", 100, 100, 30) },
            Package { name: "Starter".into(), ..package("p3", 100, 0, 30) },
            Package { name: "Starter".into(), status: PackageStatus::Expired, ..package("p4", 100, 10, -1) },
            Package { name: "Starter".into(), ..package("p5", 1000, 1000, 300) },
        ];
        s.pools.push(pool("audio", 2, 1, 3, SlotRule::PerTask));
        s.pools.push(pool("mystery", 1, 0, 1, SlotRule::PerTask));
        s.pools[0].in_use = 4;
        s.running = vec![running("t1", "image", 1, 2, None)];
        s.finished = vec![
            finished("t2", "image", Outcome::Succeeded, 2, None),
            finished("t3", "video", Outcome::Failed, 0, None),
            finished("t4", "audio", Outcome::Failed, 0, None),
        ];
        s.packages_synced_at_ms = Some(T0);
    });
    q.apply_state(s.clone(), T0).unwrap();
    seen += check(&mut viewer, &mut q, T0, "live, with packages, pools and attempts");
    // A task ends and units run low: announcements.
    let mut next = s;
    next.revision = 3;
    next.running.clear();
    next.pools[0].in_use = 3;
    next.packages.iter_mut().for_each(|p| p.remaining = units(1).min(p.remaining));
    q.apply_state(next, T0).unwrap();
    let said = q.take_announcements(f);
    assert!(said.len() >= 2, "a slot freed and units low: {said:?}");
    for t in &said {
        assert_eq!(own_words(t), "", "announced: {t:?} has words that are not from the message table");
    }
    seen += said.len();
    let mut next = q.state().unwrap().clone();
    next.revision = 4;
    next.packages.iter_mut().for_each(|p| p.remaining = p.total);
    // A request waits on the server: the note says what it holds.
    next.queued = vec![QueuedRequest {
        id: "w1".into(),
        kind: "image".into(),
        count: 1,
        reserved_units: units(2),
        place: 1,
        client_request_id: None,
        queued_at_ms: T0,
    }];
    q.apply_state(next.clone(), T0).unwrap();
    seen += check(&mut viewer, &mut q, T0, "a request waits");
    next.revision = 5;
    next.queued.clear();
    q.apply_state(next, T0).unwrap();
    // A bad state after a good one: the error line over the last good figures.
    q.report_error("malformed quota state: not valid JSON".into());
    seen += check(&mut viewer, &mut q, T0 + 1, "error kept");
    q.set_link(Link::Paused);
    seen += check(&mut viewer, &mut q, T0 + 2, "paused");
    q.set_link(Link::Live);
    seen += check(&mut viewer, &mut q, T0 + 90_000, "stale");
    q.confirm_current(T0 + 90_000);
    // Every blocking reason.
    for (kind, count, scene) in [("image", 0, "empty"), ("nope", 1, "unknown kind"), ("image", 9, "over limit"), ("image", 4, "slots"), ("video", 1, "slots"), ("audio", 1, "named kind")] {
        q.set_request(kind, count);
        seen += check(&mut viewer, &mut q, T0 + 90_000, scene);
    }
    q.set_request("image", 1);
    // Submits and how they end, each reason.
    let replies = [
        Reply::Threw,
        Reply::TimedOut { after_ms: 15_000 },
        Reply::Http { status: 401, retry_after: None, json: false, code: None },
        Reply::Http { status: 502, retry_after: None, json: false, code: None },
        Reply::Http { status: 500, retry_after: None, json: true, code: None },
        Reply::Http { status: 429, retry_after: Some("5"), json: true, code: Some(1302) },
        Reply::Http { status: 409, retry_after: None, json: false, code: None },
        Reply::Http { status: 403, retry_after: None, json: true, code: Some(9999) },
    ];
    let codes = [1101, 1102, 1103, 1200, 1301, 1303, 5001];
    let mut all: Vec<Reply> = replies.to_vec();
    all.extend(codes.iter().map(|&c| Reply::Http { status: 400, retry_after: None, json: true, code: Some(c) }));
    let mut now = T0 + 90_000;
    for (i, reply) in all.iter().enumerate() {
        now += 1;
        q.confirm_current(now);
        let hold = q.begin_submit(format!("r{i}"), now).unwrap();
        seen += check(&mut viewer, &mut q, now, "sending");
        let settled = settle(f, &hold.kind, reply);
        if let Some(end) = settled.end {
            q.end_hold(&hold.id, end, settled.reason, now);
        } else {
            q.end_hold(&hold.id, HoldEnd::Failed, None, now);
        }
        if let Some(ms) = settled.retry_after_ms {
            q.wait_until(now + ms, "[reason_1302]".into());
            seen += check(&mut viewer, &mut q, now, "waiting");
            now += ms;
            q.tick(now);
            q.confirm_current(now);
        }
        seen += check(&mut viewer, &mut q, now, "settled");
    }
    // The refusals among tabs.
    let mut tabs = Tabs::new("a".into(), TabConfig::default(), true);
    tabs.word(f);
    for why in [Why::Handover, Why::NoAnswer, Why::Duplicate] {
        assert_eq!(own_words(tabs.text(why)), "");
        assert_eq!(tabs.text(why), keyed(why.msg()));
    }
    // The kinds: built in, the page's own, and one nobody names.
    assert_eq!(kind_name(f, "image"), keyed(Msg::KindImage));
    assert_eq!(kind_name(f, "video"), keyed(Msg::KindVideo));
    assert_eq!(kind_name(f, "audio"), "[kind_audio]");
    assert_eq!(kind_name(f, "mystery"), "mystery");
    assert_eq!(kind_name(&PlainFmt, "image"), "image", "English names built in");
    assert!(seen > 100, "the scenarios showed {seen} texts");
}

#[test]
fn a_page_s_table_takes_message_names_and_kind_names_only() {
    let mut t = Table::default();
    t.add("heading_packages", "资源包".into()).unwrap();
    t.add("kind_image", "图片".into()).unwrap();
    t.add("kind_audio", "音频".into()).unwrap();
    t.add("kind_audio", "音频片段".into()).unwrap();
    assert_eq!(t.template(Msg::HeadingPackages), Some("资源包"));
    assert_eq!(t.template(Msg::KindImage), Some("图片"), "a built-in kind is a message");
    assert_eq!(t.kind("audio"), Some("音频片段"), "the last name wins");
    assert_eq!(t.kind("image"), None);
    assert_eq!(t.add("headings", "x".into()), Err("no message is named \"headings\"".into()));
    assert_eq!(t.add("kind_", "x".into()), Err("no message is named \"kind_\"".into()));
}

#[test]
fn the_server_refusing_the_state_is_worded_by_the_table() {
    assert_eq!(refused(&PlainFmt, 401), "the quota server did not accept this session (HTTP 401); sign in again");
    assert_eq!(refused(&PlainFmt, 403), "the quota server did not accept this session (HTTP 403); sign in again");
    assert_eq!(refused(&PlainFmt, 404), "the quota server answered HTTP 404 for the state");
    let k = Keyed::new();
    assert_eq!(refused(&k, 401), "[error_session] 401");
}
