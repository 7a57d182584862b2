//! The widget's plain options: the names tsify declares for TypeScript
//! (the serde names of `core::QuotaOptions`) are the names the reader reads, and
//! a wrong value is an error that names the option.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::J;
use quota_widget::core::QuotaOptions;
use serde_json::json;

fn every_option() -> QuotaOptions {
    QuotaOptions {
        endpoint: Some("/api".into()),
        kind: Some("video".into()),
        count: Some(3),
        locale: Some("zh-CN".into()),
        stale_after_ms: Some(45_000),
        hold_timeout_ms: Some(9_000),
        expiring_soon_days: Some(3),
        low_units: Some(50),
        poll_ms: Some(2_500),
        events: Some(false),
        tabs: Some(false),
        queue: Some(true),
        account: Some("acct-1".into()),
        request_id_field: Some("rid".into()),
    }
}

#[test]
fn every_option_reads_back_under_its_declared_name() {
    let all = every_option();
    let written = serde_json::to_value(&all).unwrap();
    assert_eq!(QuotaOptions::read(&J(written.clone())), Ok(all), "{written}");
    // Every field is written under a name, and each name is read: an option
    // left out of the object reads as absent.
    let names: Vec<String> = written.as_object().unwrap().keys().cloned().collect();
    assert_eq!(names.len(), 14);
    for name in &names {
        let mut one = written.clone();
        one.as_object_mut().unwrap().remove(name);
        assert_ne!(QuotaOptions::read(&J(one)).unwrap(), every_option(), "{name} is not read");
    }
}

#[test]
fn absent_and_null_options_take_their_defaults() {
    assert_eq!(QuotaOptions::read(&J(json!({}))), Ok(QuotaOptions::default()));
    assert_eq!(QuotaOptions::read(&J(json!({"count": null, "endpoint": null, "tabs": null}))), Ok(QuotaOptions::default()));
    // The elements and message tables are the shell's: the core ignores them.
    assert_eq!(QuotaOptions::read(&J(json!({"host": "#w", "messages": ["x"]}))), Ok(QuotaOptions::default()));
}

#[test]
fn a_wrong_option_is_an_error_that_names_it() {
    let cases = [
        (json!("/api"), "options must be an object"),
        (json!({"count": -1}), "options.count must be a whole number from 0 to 4294967295"),
        (json!({"count": 1.5}), "options.count must be a whole number"),
        (json!({"count": "2"}), "options.count must be a whole number"),
        (json!({"pollMs": 4294967296.0}), "options.pollMs must be a whole number"),
        (json!({"endpoint": 7}), "options.endpoint must be a string or null"),
        (json!({"events": "no"}), "options.events must be true or false"),
        (json!({"queue": "yes"}), "options.queue must be true or false"),
        (json!({"tabs": 0}), "options.tabs must be true or false"),
    ];
    for (input, want) in cases {
        let e = QuotaOptions::read(&J(input.clone())).unwrap_err();
        assert!(e.starts_with(want), "{input}: {e:?} should say {want:?}");
    }
}
