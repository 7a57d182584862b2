//! `/account/costs`: shape, statuses, the window, 1 query per second, lag.

use std::time::Duration;

use kling_sim::Config;
use serde_json::{json, Value};

use crate::common::{ledger_pack, Sim, ALL_TIME};

fn pack<'a>(data: &'a Value, name: &str) -> &'a Value {
    data["resource_pack_subscribe_infos"]
        .as_array()
        .and_then(|packs| packs.iter().find(|p| p["resource_pack_name"] == name))
        .unwrap_or_else(|| panic!("pack {name} in {data}"))
}

#[tokio::test]
async fn reports_the_packs_with_their_statuses() {
    let sim = Sim::start().await;
    let answer = sim.get(&format!("/account/costs?{ALL_TIME}")).await;
    let data = answer.ok();
    assert_eq!(data["code"], 0);
    assert_eq!(data["msg"], "");
    let infos = data["resource_pack_subscribe_infos"].as_array().expect("a list");
    assert_eq!(infos.len(), 4);
    for info in infos {
        for field in ["resource_pack_id", "resource_pack_name", "resource_pack_type", "status"] {
            assert!(info[field].is_string(), "{field} in {info}");
        }
        for field in ["total_quantity", "remaining_quantity"] {
            assert!(info[field].is_number(), "{field} in {info}");
        }
        for field in ["purchase_time", "effective_time", "invalid_time"] {
            assert!(info[field].is_u64(), "{field} in {info}");
        }
    }
    let trial = pack(data, "Trial pack");
    assert_eq!(trial["resource_pack_type"], "decreasing_total");
    assert_eq!(trial["total_quantity"].as_f64(), Some(66.5));
    assert_eq!(trial["status"], "online");
    assert_eq!(pack(data, "Video pack")["status"], "online");
    assert_eq!(pack(data, "Next month")["status"], "toBeOnline");
    let old = pack(data, "Old pack");
    assert_eq!(old["status"], "expired");
    assert_eq!(old["remaining_quantity"].as_f64(), Some(12.5));
    // Written as the decimal itself, not a long float.
    let text = answer.body.to_string();
    assert!(text.contains("\"remaining_quantity\":12.5"), "{text}");
}

#[tokio::test]
async fn selects_by_purchase_window_and_name() {
    let sim = Sim::start().await;
    let now = jsonwebtoken::get_current_timestamp() * 1000;
    // Purchases: Trial and Next month a day ago, Video two days ago, Old 40
    // days ago. A window from 36 hours ago to now holds the first two.
    let start = now - 36 * 3600 * 1000;
    let data = sim
        .get(&format!("/account/costs?start_time={start}&end_time={now}"))
        .await
        .ok()
        .clone();
    let names: Vec<_> = data["resource_pack_subscribe_infos"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| p["resource_pack_name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, ["Trial pack", "Next month"]);

    let sim = Sim::start().await;
    let data = sim
        .get(&format!("/account/costs?{ALL_TIME}&resource_pack_name=Video%20pack"))
        .await
        .ok()
        .clone();
    let infos = data["resource_pack_subscribe_infos"].as_array().expect("a list");
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0]["resource_pack_name"], "Video pack");
}

#[tokio::test]
async fn requires_integer_times() {
    let sim = Sim::start().await;
    for query in ["", "?start_time=0", "?end_time=5", "?start_time=x&end_time=5"] {
        let answer = sim.get(&format!("/account/costs{query}")).await;
        answer.assert_error(400, 1200);
    }
}

#[tokio::test]
async fn allows_one_query_per_second() {
    let sim = Sim::start().await;
    let path = format!("/account/costs?{ALL_TIME}");
    sim.get(&path).await.ok();
    let again = sim.get(&path).await;
    again.assert_error(429, 1302);
    assert_eq!(again.retry_after.as_deref(), Some("1"));
    tokio::time::sleep(Duration::from_millis(1050)).await;
    sim.get(&path).await.ok();
    let ledger = sim.ledger().await;
    assert_eq!((ledger["costs_requests"].as_u64(), ledger["costs_refused"].as_u64()), (Some(3), Some(1)));
}

#[tokio::test]
async fn reports_deductions_only_after_the_lag() {
    let sim = Sim::start().await;
    sim.settings(json!({"lag_ms": 1500})).await;
    let spent = sim.control("/sim/spend", json!({"units": "1.5"})).await;
    assert_eq!(spent.ok()["deducted"], "1.5");

    let path = format!("/account/costs?{ALL_TIME}");
    let before = sim.get(&path).await.ok().clone();
    // The Trial pack expires first, so it paid.
    assert_eq!(pack(&before, "Trial pack")["remaining_quantity"].as_f64(), Some(66.5));
    let ledger = sim.ledger().await;
    let trial = ledger_pack(&ledger, "Trial pack");
    assert_eq!(trial["true_remaining"], "65");
    assert_eq!(trial["reported_remaining"], "66.5");

    tokio::time::sleep(Duration::from_millis(1600)).await;
    let after = sim.get(&path).await.ok().clone();
    assert_eq!(pack(&after, "Trial pack")["remaining_quantity"].as_f64(), Some(65.0));
    assert_eq!(ledger_pack(&sim.ledger().await, "Trial pack")["reported_remaining"], "65");
}

#[tokio::test]
async fn a_used_up_pack_runs_out_once_the_figure_shows_it() {
    let dir = std::env::temp_dir().join(format!("kling-sim-packs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("packs.json");
    std::fs::write(
        &file,
        r#"[{"name": "Small", "total": "2", "remaining": 0.5, "purchase_offset_ms": -1000},
            {"name": "Later", "total": 10, "purchase_time": 1000, "effective_offset_ms": 60000}]"#,
    )
    .expect("packs file written");
    let config = Config {
        packs: Some(file),
        lag_ms: 800,
        ..Config::for_tests()
    };
    let sim = Sim::with(config).await;
    sim.control("/sim/spend", json!({"units": 0.5})).await.ok();

    let path = format!("/account/costs?{ALL_TIME}");
    let data = sim.get(&path).await.ok().clone();
    let small = pack(&data, "Small");
    assert_eq!(small["status"], "online");
    assert_eq!(small["remaining_quantity"].as_f64(), Some(0.5));
    assert_eq!(small["total_quantity"].as_f64(), Some(2.0));
    let later = pack(&data, "Later");
    assert_eq!(later["status"], "toBeOnline");
    assert_eq!(later["purchase_time"], 1000);

    tokio::time::sleep(Duration::from_millis(1050)).await;
    let data = sim.get(&path).await.ok().clone();
    assert_eq!(pack(&data, "Small")["status"], "runOut");
    assert_eq!(pack(&data, "Small")["remaining_quantity"].as_f64(), Some(0.0));

    // Nothing left that can pay: a spend is refused.
    let refused = sim.control("/sim/spend", json!({"units": "0.001"})).await;
    refused.assert_error(429, 1102);
    let _ = std::fs::remove_dir_all(&dir);
}
