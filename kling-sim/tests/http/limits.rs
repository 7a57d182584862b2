//! The account's limits on creation: parallel slots (1303), units (1102),
//! arrears (1101), and the order in which they are checked.

use std::time::Duration;

use kling_sim::Config;
use serde_json::json;

use crate::common::Sim;

/// Scripts `count` tasks that run until ended.
async fn long_tasks(sim: &Sim, count: usize) {
    let outcomes = vec![json!({"outcome": "succeed", "ms": 600_000}); count];
    sim.script(json!(outcomes)).await;
}

#[tokio::test]
async fn image_slots_are_counted_per_image() {
    let sim = Sim::start().await;
    long_tasks(&sim, 3).await;
    let three = sim.create_images(json!({"prompt": "p", "n": 3})).await;

    let two = sim.post("/v1/images/generations", json!({"prompt": "p", "n": 2})).await;
    two.assert_error(429, 1303);
    assert_eq!(two.retry_after.as_deref(), Some("1"));
    assert!(two.message().contains("parallel task over resource pack limit"));

    // The fourth slot is free; videos have their own limit.
    sim.create_images(json!({"prompt": "p", "n": 1})).await;
    sim.post("/v1/videos/text2video", json!({"prompt": "p"})).await.ok();

    // Ending a task frees its slots.
    let id = three["task_id"].as_str().expect("id");
    sim.control(&format!("/sim/end/{id}"), json!({"outcome": "failed"})).await.ok();
    sim.script(json!([{"outcome": "succeed"}])).await;
    sim.create_images(json!({"prompt": "p", "n": 3})).await;
    let ledger = sim.ledger().await;
    assert_eq!(ledger["creates"], 4);
    // The most the account's tasks held at once, and the refusal counted.
    assert_eq!((ledger["max_running"]["image"].as_u64(), ledger["max_running"]["video"].as_u64()), (Some(4), Some(1)));
    assert_eq!(ledger["over_concurrency"], 1);
}

#[tokio::test]
async fn slots_held_by_another_client_count() {
    let sim = Sim::start().await;
    let occupied = sim.control("/sim/occupy", json!({"kind": "video", "slots": 1, "ms": 700})).await;
    assert!(occupied.ok()["until"].is_u64());

    // Both video families share the video limit (1).
    for (path, body) in [
        ("/v1/videos/text2video", json!({"prompt": "p"})),
        ("/v1/videos/image2video", json!({"image": "https://example.invalid/a.png"})),
    ] {
        let answer = sim.post(path, body).await;
        answer.assert_error(429, 1303);
        assert_eq!(answer.retry_after.as_deref(), Some("1"));
    }
    sim.control("/sim/occupy", json!({"kind": "image", "slots": 4, "ms": 700})).await.ok();
    sim.post("/v1/images/generations", json!({"prompt": "p"})).await.assert_error(429, 1303);

    // Once the other client lets go, the slots are free again.
    tokio::time::sleep(Duration::from_millis(750)).await;
    sim.post("/v1/videos/text2video", json!({"prompt": "p"})).await.ok();
    sim.create_images(json!({"prompt": "p", "n": 4})).await;
    let ledger = sim.ledger().await;
    assert_eq!(ledger["creates"], 2);
    // Another client's slots are not the account's own tasks'.
    assert_eq!((ledger["max_running"]["image"].as_u64(), ledger["over_concurrency"].as_u64()), (Some(4), Some(3)));
}

#[tokio::test]
async fn units_short_are_refused() {
    let sim = Sim::start().await;
    // Trial 66.5 + Video 300 can pay; leave 1 unit.
    sim.control("/sim/spend", json!({"units": "365.5"})).await.ok();
    long_tasks(&sim, 2).await;
    let video = sim.post("/v1/videos/text2video", json!({"prompt": "p"})).await;
    video.assert_error(429, 1102);
    assert!(video.retry_after.is_none());

    // 4 images at 0.25 take exactly the unit left...
    sim.create_images(json!({"prompt": "p", "n": 4})).await;
    sim.control("/sim/occupy", json!({"kind": "image", "slots": 0, "ms": 1})).await.assert_error(400, 1200);
    // ...and a running task's price is reserved: nothing is left for another.
    let config_free_slot = sim.control("/sim/settings", json!({"task_ms": "100..200"})).await;
    config_free_slot.ok();
    let answer = sim.post("/v1/videos/image2video", json!({"image": "x"})).await;
    answer.assert_error(429, 1102);
    assert_eq!(sim.ledger().await["creates"], 1);
}

#[tokio::test]
async fn arrears_come_first() {
    let sim = Sim::start().await;
    sim.create_images(json!({"prompt": "p", "external_task_id": "taken"})).await;
    sim.settings(json!({"arrears": true})).await;
    let answer = sim.post("/v1/images/generations", json!({"prompt": "p"})).await;
    answer.assert_error(429, 1101);
    // A reused external id is still reported as such.
    let reused = sim
        .post("/v1/images/generations", json!({"prompt": "p", "external_task_id": "taken"}))
        .await;
    reused.assert_error(400, 1201);
    // Arrears before concurrency: even with every slot taken.
    sim.control("/sim/occupy", json!({"kind": "image", "slots": 4, "ms": 60_000})).await.ok();
    sim.post("/v1/images/generations", json!({"prompt": "p"})).await.assert_error(429, 1101);

    sim.settings(json!({"arrears": false})).await;
    sim.post("/v1/images/generations", json!({"prompt": "p"})).await.assert_error(429, 1303);
    assert_eq!(sim.ledger().await["creates"], 1);
}

#[tokio::test]
async fn concurrency_is_checked_before_units() {
    let config = Config {
        video_concurrency: 1,
        ..Config::for_tests()
    };
    let sim = Sim::with(config).await;
    sim.control("/sim/spend", json!({"units": 366.5})).await.ok();
    sim.control("/sim/occupy", json!({"kind": "video", "slots": 1, "ms": 60_000})).await.ok();
    sim.post("/v1/videos/text2video", json!({"prompt": "p"})).await.assert_error(429, 1303);
    sim.post("/v1/images/generations", json!({"prompt": "p"})).await.assert_error(429, 1102);
}
