//! The session: one owner of the quota and of this tab's part among its
//! peers. Without peers it is the quota itself, and gives no commands; with
//! peers, every input goes through the tabs protocol and its commands queue
//! for the shell.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::*;
use quota_widget::core::parse::read_state;
use quota_widget::core::tabs::{TabCmd, TabConfig, TabMsg, Tabs};
use quota_widget::core::wire::*;
use quota_widget::core::*;

/// The server state reader, as the browser shell has it.
fn read(text: &str) -> Result<ServerState, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|_| "malformed quota state: not valid JSON".to_owned())?;
    read_state(&J(v)).map_err(|e| e.to_string())
}

/// A state body as the connection brings it: JSON text.
struct Text(String);

impl Body for Text {
    fn read(self) -> Result<ServerState, String> {
        read(&self.0)
    }
    fn text(&self) -> String {
        self.0.clone()
    }
}

fn body(s: &ServerState) -> Text {
    Text(serde_json::to_string(s).unwrap())
}

fn cmds<P: Peers>(s: &mut Session<P>) -> Vec<P::Cmd> {
    std::iter::from_fn(|| s.next_cmd()).collect()
}

#[test]
fn alone_it_is_the_quota_and_gives_no_commands() {
    let mut s: Session<Alone> = Session::new(Quota::new(Config::default()));
    assert!(!s.shares() && !s.leads());
    assert_eq!(s.submit("r0".into(), T0), Err(SubmitError::Blocked(Blocked::NoState)), "no state: fail closed (R5)");
    s.server_link(Link::Live, T0);
    s.server_state(body(&state(3)), T0, &read).unwrap();
    assert_eq!(s.quota.revision(), Some(3));
    assert_eq!(s.resume_from(), Some(3));
    let hold = s.submit("r1".into(), T0).unwrap();
    assert_eq!(hold.id, "r1");
    assert_eq!(s.quota.holds().len(), 1, "the submit holds (R7)");
    assert!(s.end_hold("r1", HoldEnd::Failed, Some("offline".into()), T0 + 1));
    assert!(!s.end_hold("r1", HoldEnd::Failed, None, T0 + 2), "ended once");
    assert!(s.quota.holds().is_empty());
    // A bad body is the error to report; the last good state stays.
    let err = s.server_state(Text("{".into()), T0 + 3, &read).unwrap_err();
    assert!(err.contains("not valid JSON"), "{err}");
    assert_eq!(s.quota.error(), Some(err.as_str()));
    assert_eq!(s.quota.revision(), Some(3));
    // An older revision changes nothing (R4).
    s.server_state(body(&state(2)), T0 + 4, &read).unwrap();
    assert_eq!(s.quota.revision(), Some(3));
    s.tick(T0 + 5);
    assert!(cmds(&mut s).is_empty());
}

#[test]
fn with_peers_every_input_goes_through_the_tabs_protocol() {
    let mut s: Session<Tabs> = Session::new(Quota::new(Config::default()));
    s.join(Tabs::new("a".into(), TabConfig::default(), true));
    assert!(s.shares() && !s.leads());
    assert!(matches!(&cmds(&mut s)[..], [TabCmd::Post(TabMsg::Hello { .. })]), "it asks for a snapshot");
    // A follower with no leader grants itself nothing (R5).
    assert_eq!(s.submit("r0".into(), T0), Err(SubmitError::Blocked(Blocked::Reconnecting)));

    // It leads: it says so, connects, and once settled grants at once.
    let settled = T0 + TabConfig::default().settle_ms;
    s.lead(T0);
    assert!(s.leads());
    assert!(matches!(&cmds(&mut s)[..], [TabCmd::Post(TabMsg::Snapshot { .. })]));
    s.server_link(Link::Live, T0);
    s.server_state(body(&state(3)), T0, &read).unwrap();
    let relayed = cmds(&mut s);
    assert!(relayed.iter().any(|c| matches!(c, TabCmd::Post(TabMsg::State { state, .. }) if state.revision == 3)), "{relayed:?}");
    s.tick(settled);
    cmds(&mut s);
    let hold = s.submit("r1".into(), settled).unwrap();
    let granted = cmds(&mut s);
    assert!(matches!(&granted[..], [TabCmd::Post(TabMsg::Grant { .. }), TabCmd::Send(h)] if *h == hold), "{granted:?}");
    // Its end reaches every tab.
    assert!(s.end_hold("r1", HoldEnd::Refused, Some("busy".into()), settled + 1));
    assert!(matches!(&cmds(&mut s)[..], [TabCmd::Post(TabMsg::Ended { id, .. })] if id == "r1"));

    // A malformed message from the channel is the error to report.
    let err = s.receive(&J(serde_json::json!({"t": "shout"})), settled + 2, &read, &PlainFmt).unwrap_err();
    assert!(err.starts_with("malformed tab message: t must be one of"), "{err}");
    assert!(cmds(&mut s).is_empty());

    // It steps away: the others learn at once.
    s.leave();
    assert!(!s.leads());
    assert!(matches!(&cmds(&mut s)[..], [TabCmd::Post(TabMsg::Bye { .. })]));
}
