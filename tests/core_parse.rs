//! Parsing server states from JSON, and the messages for bad ones.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::*;
use quota_widget::core::parse::read_state;
use quota_widget::core::validate::StateError;
use quota_widget::core::wire::*;

/// What the widget does with a body: parse JSON, then read the state.
fn parse_state(text: &str) -> Result<ServerState, StateError> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|_| StateError::Malformed("not valid JSON".into()))?;
    read_state(&J(v))
}

fn full_state() -> ServerState {
    let mut s = state(9);
    s.running.push(running("t1", "image", 2, 8, Some("c1")));
    s.finished.push(finished("t0", "video", Outcome::Failed, 0, Some("c0")));
    s.packages_synced_at_ms = Some(s.server_time_ms - 90_000);
    s.queued.push(QueuedRequest {
        id: "t2".into(),
        kind: "image".into(),
        count: 3,
        reserved_units: units(6),
        place: 1,
        client_request_id: Some("c2".into()),
        queued_at_ms: s.server_time_ms - 5_000,
    });
    s
}

#[test]
fn parses_what_the_server_serializes() {
    let s = full_state();
    let text = serde_json::to_string(&s).unwrap();
    assert_eq!(parse_state(&text).unwrap(), s);
}

#[test]
fn fractional_units_are_read_exactly() {
    let mut v = serde_json::to_value(full_state()).unwrap();
    v["packages"][0]["total"] = 12.5.into();
    v["packages"][0]["remaining"] = 0.3.into();
    v["running"][0]["reserved_units"] = 0.1.into();
    v["pools"][0]["unit_cost"] = 0.25.into();
    let s = parse_state(&v.to_string()).unwrap();
    assert_eq!(s.packages[0].total, Units::from_milli(12_500));
    assert_eq!(s.packages[0].remaining, Units::from_milli(300));
    assert_eq!(s.running[0].reserved_units, Units::from_milli(100));
    assert_eq!(s.pools[0].unit_cost, Units::from_milli(250));
    // And back: the server's serde writes the same decimals, whole ones as integers.
    let text = serde_json::to_string(&s).unwrap();
    assert!(text.contains(r#""total":12.5,"remaining":0.3"#), "{text}");
    assert!(text.contains(r#""unit_cost":0.25"#), "{text}");
    assert!(text.contains(r#""limit":4,"in_use":0,"unit_cost":0.25"#), "{text}");
    assert_eq!(parse_state(&text).unwrap(), s);
}

#[test]
fn optional_fields_may_be_absent_or_null() {
    let mut v = serde_json::to_value(full_state()).unwrap();
    v["running"][0].as_object_mut().unwrap().remove("client_request_id");
    v["finished"][0]["reason"] = serde_json::Value::Null;
    let s = parse_state(&v.to_string()).unwrap();
    assert_eq!(s.running[0].client_request_id, None);
    assert_eq!(s.finished[0].reason, None);
}

fn message(v: serde_json::Value) -> String {
    parse_state(&v.to_string()).unwrap_err().to_string()
}

#[test]
fn bad_states_name_the_field_at_fault() {
    assert_eq!(parse_state("{\"revision\": ").unwrap_err().to_string(), "malformed quota state: not valid JSON");
    assert_eq!(parse_state("[]").unwrap_err().to_string(), "malformed quota state: the state must be an object");
    let base = serde_json::to_value(full_state()).unwrap();

    let mut v = base.clone();
    v.as_object_mut().unwrap().remove("revision");
    assert_eq!(message(v), "malformed quota state: revision is missing");

    let mut v = base.clone();
    v["revision"] = "two".into();
    assert_eq!(message(v), "malformed quota state: revision must be a whole number of 0 or more");

    let mut v = base.clone();
    v["packages"][0]["remaining"] = (-3).into();
    assert_eq!(
        message(v),
        "malformed quota state: packages[0].remaining must be a number of units of 0 or more, with at most 3 decimals"
    );

    let mut v = base.clone();
    v["pools"][1]["slot_rule"] = "per_image".into();
    assert_eq!(message(v), "malformed quota state: pools[1].slot_rule must be one of: per_item, per_task");

    let mut v = base.clone();
    v["pools"][0]["limit"] = 5_000_000_000u64.into();
    assert_eq!(message(v), "malformed quota state: pools[0].limit must be a whole number from 0 to 4294967295");

    let mut v = base.clone();
    v["running"][0]["reserved_units"] = 1.0005.into();
    assert_eq!(
        message(v),
        "malformed quota state: running[0].reserved_units must be a number of units of 0 or more, with at most 3 decimals"
    );

    let mut v = base;
    v["finished"] = serde_json::json!({});
    assert_eq!(message(v), "malformed quota state: finished must be a list");
}

/// The reader in `parse.rs` requires every field the wire types serialize
/// (but the optional ones): a field added to `wire.rs` fails here until the
/// reader learns it.
#[test]
fn the_reader_knows_every_wire_field() {
    fn keys(v: &serde_json::Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }
    let v = serde_json::to_value(full_state()).unwrap();
    // Each shape table is checked through a state missing one field at a
    // time: the message must name exactly that field.
    for (path, obj) in [
        ("", &v),
        ("pools[0].", &v["pools"][0]),
        ("packages[0].", &v["packages"][0]),
        ("running[0].", &v["running"][0]),
        ("finished[0].", &v["finished"][0]),
        ("queued[0].", &v["queued"][0]),
    ] {
        for key in keys(obj) {
            let mut broken = v.clone();
            let target = match path {
                "" => &mut broken,
                "pools[0]." => &mut broken["pools"][0],
                "packages[0]." => &mut broken["packages"][0],
                "running[0]." => &mut broken["running"][0],
                "queued[0]." => &mut broken["queued"][0],
                _ => &mut broken["finished"][0],
            };
            target.as_object_mut().unwrap().remove(&key);
            let optional =
                key == "client_request_id" || key == "reason" || key == "packages_synced_at_ms" || key == "queued";
            let result = parse_state(&broken.to_string());
            if optional {
                assert!(result.is_ok(), "{path}{key} is optional");
            } else {
                assert_eq!(
                    result.unwrap_err().to_string(),
                    format!("malformed quota state: {path}{key} is missing"),
                    "the reader in parse.rs does not know {path}{key}"
                );
            }
        }
    }
}

#[test]
fn the_queue_is_optional_and_read_like_the_other_lists() {
    // A server without the queue sends no `queued`: read as empty.
    let mut v = serde_json::to_value(full_state()).unwrap();
    v.as_object_mut().unwrap().remove("queued");
    assert_eq!(read_state(&J(v.clone())).unwrap().queued, vec![]);
    v["queued"] = serde_json::Value::Null;
    assert_eq!(read_state(&J(v.clone())).unwrap().queued, vec![]);
    // serde's reading agrees (the TypeScript and conformance side).
    let absent: ServerState = serde_json::from_str(&serde_json::to_string(&state(3)).unwrap().replace(r#","queued":[]"#, "")).unwrap();
    assert!(absent.queued.is_empty());
    let mut v = serde_json::to_value(full_state()).unwrap();
    v["queued"][0]["place"] = "first".into();
    assert_eq!(message(v), "malformed quota state: queued[0].place must be a whole number from 0 to 4294967295");
    let mut v = serde_json::to_value(full_state()).unwrap();
    v["queued"] = serde_json::json!({});
    assert_eq!(message(v), "malformed quota state: queued must be a list");
    // A queued request of a kind without a pool breaks the contract.
    let mut s = full_state();
    s.queued[0].kind = "audio".into();
    let e = quota_widget::core::validate::validate(&s).unwrap_err();
    assert_eq!(e, StateError::UnknownKind { task: "t2".into(), kind: "audio".into() });
}

#[test]
fn the_sync_time_is_optional_and_checked() {
    // A server that owns its packages writes no sync time: older servers
    // and the default mode stay valid.
    let text = serde_json::to_string(&state(3)).unwrap();
    assert!(!text.contains("packages_synced_at_ms"));
    assert_eq!(parse_state(&text).unwrap().packages_synced_at_ms, None);
    let mut v: serde_json::Value = serde_json::to_value(full_state()).unwrap();
    v["packages_synced_at_ms"] = serde_json::Value::Null;
    assert_eq!(read_state(&J(v.clone())).unwrap().packages_synced_at_ms, None);
    v["packages_synced_at_ms"] = serde_json::json!("yesterday");
    let e = read_state(&J(v)).unwrap_err().to_string();
    assert!(e.contains("packages_synced_at_ms must be a whole number of milliseconds"), "{e}");
}

#[test]
fn a_repeated_state_reads_as_the_whole_state_does() {
    use quota_widget::core::parse::{read_repeat, CHANGING};
    let last = full_state();
    let mut next = serde_json::to_value(&last).unwrap();
    next["revision"] = 10.into();
    next["server_time_ms"] = (last.server_time_ms + 5_000).into();
    // Only the members that change with every state differ.
    let before = serde_json::to_value(&last).unwrap();
    for (k, v) in next.as_object().unwrap() {
        assert!(CHANGING.contains(&k.as_str()) || before[k] == *v, "{k} differs");
    }
    assert_eq!(read_repeat(&J(next.clone()), &last), read_state(&J(next.clone())), "the same state, read either way");
    // Its revision and time are checked as a whole state's are.
    next["revision"] = "ten".into();
    assert_eq!(read_repeat(&J(next.clone()), &last).unwrap_err().to_string(), read_state(&J(next)).unwrap_err().to_string());
}
