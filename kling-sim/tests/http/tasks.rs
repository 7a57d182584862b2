//! Creating and querying tasks, their lifecycle and what they deduct.

use kling_sim::{Config, Units};
use serde_json::{json, Value};

use crate::common::{ledger_pack, units, Sim};

#[tokio::test]
async fn creates_and_finds_a_task_by_either_id() {
    let sim = Sim::start().await;
    sim.script(json!([{"outcome": "succeed"}])).await;
    let created = sim
        .create_images(json!({
            "model_name": "kling-v1", "prompt": "a cat", "n": 3,
            "external_task_id": "req-1", "aspect_ratio": "16:9"
        }))
        .await;
    let id = created["task_id"].as_str().expect("a task id").to_owned();
    assert_eq!(created["task_status"], "submitted");
    assert_eq!(created["task_info"]["external_task_id"], "req-1");
    assert!(created["created_at"].is_u64());
    assert_eq!(created["created_at"], created["updated_at"]);

    let by_id = sim.get(&format!("/v1/images/generations/{id}")).await.ok().clone();
    let by_external = sim.get("/v1/images/generations/req-1").await.ok().clone();
    assert_eq!(by_id["task_id"], id);
    assert_eq!(by_external["task_id"], id);
    assert_eq!(by_id["task_status_msg"], "");
    assert_eq!(by_id["task_result"], json!({}));
    assert!(by_id.get("final_unit_deduction").is_none(), "{by_id}");

    sim.wait_for("images/generations", &id, "processing").await;
    let done = sim.wait_for("images/generations", "req-1", "succeed").await;
    assert_eq!(done["final_unit_deduction"], "0.75");
    assert_eq!(done["task_status_msg"], "");
    let images = done["task_result"]["images"].as_array().expect("images");
    let indexes: Vec<_> = images.iter().map(|i| i["index"].as_u64()).collect();
    assert_eq!(indexes, [Some(0), Some(1), Some(2)]);
    assert!(images.iter().all(|i| i["url"].is_string()));
    assert!(done["updated_at"].as_u64() > done["created_at"].as_u64());

    let ledger = sim.ledger().await;
    assert_eq!(ledger["tasks"][0]["price"], "0.75");
    assert_eq!(ledger["tasks"][0]["deducted"], "0.75");
    assert_eq!(ledger["tasks"][0]["kind"], "image");
    assert_eq!(ledger_pack(&ledger, "Trial pack")["true_remaining"], "65.75");
    assert_eq!(ledger["deductions"][0]["units"], "0.75");
    assert_eq!(ledger["deductions"][0]["task_id"], id);
}

#[tokio::test]
async fn unknown_tasks_and_other_families_are_not_found() {
    let sim = Sim::start().await;
    let created = sim.create_images(json!({"prompt": "p", "external_task_id": "img"})).await;
    let id = created["task_id"].as_str().expect("a task id");
    for path in [
        "/v1/images/generations/nope".to_owned(),
        format!("/v1/videos/text2video/{id}"),
        "/v1/videos/image2video/img".to_owned(),
    ] {
        let answer = sim.get(&path).await;
        answer.assert_error(404, 1200);
        assert_eq!(answer.message(), "task not found");
    }
}

#[tokio::test]
async fn a_reused_external_id_is_refused_without_a_new_task() {
    let sim = Sim::start().await;
    let body = json!({"prompt": "p", "external_task_id": "same"});
    sim.create_images(body.clone()).await;
    let again = sim.post("/v1/images/generations", body).await;
    again.assert_error(400, 1201);
    assert_eq!(again.message(), "external_task_id already exists");
    // Unique per account, across families too.
    let video = sim
        .post("/v1/videos/text2video", json!({"prompt": "p", "external_task_id": "same"}))
        .await;
    video.assert_error(400, 1201);
    assert_eq!(sim.ledger().await["creates"], 1);
}

#[tokio::test]
async fn refuses_bad_bodies_naming_the_field() {
    let sim = Sim::start().await;
    let cases = [
        ("/v1/images/generations", json!({}), "prompt"),
        ("/v1/images/generations", json!({"prompt": "p", "n": 10}), "n"),
        ("/v1/images/generations", json!({"prompt": "p", "callback_url": "nope"}), "callback_url"),
        ("/v1/videos/text2video", json!({"prompt": "p", "duration": "7"}), "duration"),
        ("/v1/videos/text2video", json!({"prompt": "p", "mode": "fast"}), "mode"),
        ("/v1/videos/image2video", json!({"prompt": "p"}), "image"),
    ];
    for (path, body, field) in cases {
        let answer = sim.post(path, body).await;
        answer.assert_error(400, 1200);
        assert!(answer.message().contains(field), "{field}: {}", answer.message());
    }
    let not_json = sim
        .send(
            sim.http
                .post(format!("{}/v1/images/generations", sim.base))
                .bearer_auth(crate::common::good_token())
                .body("{prompt"),
        )
        .await;
    not_json.assert_error(400, 1200);
    assert_eq!(sim.ledger().await["creates"], 0);
}

#[tokio::test]
async fn videos_are_priced_by_duration_and_mode() {
    let sim = Sim::start().await;
    sim.script(json!([{"outcome": "succeed"}, {"outcome": "succeed"}])).await;
    let long_pro = sim
        .post("/v1/videos/text2video", json!({"prompt": "p", "duration": "10", "mode": "pro"}))
        .await;
    let id = long_pro.ok()["task_id"].as_str().expect("a task id").to_owned();
    let done = sim.wait_for("videos/text2video", &id, "succeed").await;
    assert_eq!(done["final_unit_deduction"], "6");
    let video = &done["task_result"]["videos"][0];
    assert_eq!(video["duration"], "10");
    assert!(video["id"].is_string() && video["url"].is_string());

    let from_image = sim
        .post("/v1/videos/image2video", json!({"image": "https://example.invalid/a.png"}))
        .await;
    let id = from_image.ok()["task_id"].as_str().expect("a task id").to_owned();
    let done = sim.wait_for("videos/image2video", &id, "succeed").await;
    assert_eq!(done["final_unit_deduction"], "1.5");
    assert_eq!(done["task_result"]["videos"][0]["duration"], "5");
}

#[tokio::test]
async fn a_failure_deducts_nothing() {
    let sim = Sim::start().await;
    sim.script(json!([
        {"outcome": "failed", "reason": "content moderation: nope"},
        {"outcome": "failed"}
    ]))
    .await;
    let first = sim.create_images(json!({"prompt": "p", "n": 2})).await;
    let second = sim.create_images(json!({"prompt": "p"})).await;
    let first = sim
        .wait_for("images/generations", first["task_id"].as_str().expect("id"), "failed")
        .await;
    assert_eq!(first["task_status_msg"], "content moderation: nope");
    assert!(first.get("final_unit_deduction").is_none(), "{first}");
    assert_eq!(first["task_result"], json!({}));
    let second = sim
        .wait_for("images/generations", second["task_id"].as_str().expect("id"), "failed")
        .await;
    assert_eq!(second["task_status_msg"], kling_sim::GENERATION_ERROR_MESSAGE);

    let ledger = sim.ledger().await;
    assert_eq!(ledger["deductions"], json!([]));
    assert_eq!(ledger_pack(&ledger, "Trial pack")["true_remaining"], "66.5");
    assert!(ledger["tasks"].as_array().expect("tasks").iter().all(|t| t["deducted"] == "0"));
}

#[tokio::test]
async fn tenths_add_up_exactly() {
    let config = Config {
        image_price: Units::parse("0.1").expect("a price"),
        image_concurrency: 10,
        ..Config::for_tests()
    };
    let sim = Sim::with(config).await;
    sim.script(Value::Array(vec![json!({"outcome": "succeed", "ms": 250}); 10])).await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        let created = sim.create_images(json!({"prompt": "p"})).await;
        ids.push(created["task_id"].as_str().expect("id").to_owned());
    }
    for id in &ids {
        let done = sim.wait_for("images/generations", id, "succeed").await;
        assert_eq!(done["final_unit_deduction"], "0.1");
    }
    let ledger = sim.ledger().await;
    let deductions = ledger["deductions"].as_array().expect("deductions");
    assert_eq!(deductions.len(), 10);
    let total = deductions
        .iter()
        .fold(Units::ZERO, |acc, d| acc.saturating_add(units(&d["units"])));
    assert_eq!(total.to_string(), "1");
    assert_eq!(ledger_pack(&ledger, "Trial pack")["true_remaining"], "65.5");
}

#[tokio::test]
async fn a_scripted_task_runs_until_ended() {
    let sim = Sim::start().await;
    sim.script(json!([{"outcome": "failed", "ms": 3_600_000}, {"outcome": "succeed", "ms": u64::MAX}]))
        .await;
    let first = sim.create_images(json!({"prompt": "p"})).await;
    let second = sim.create_images(json!({"prompt": "p"})).await;
    let first = first["task_id"].as_str().expect("id");
    let second = second["task_id"].as_str().expect("id");
    sim.wait_for("images/generations", second, "processing").await;

    let ended = sim.control(&format!("/sim/end/{first}"), json!({"outcome": "succeed"})).await;
    assert_eq!(ended.ok()["task_status"], "succeed");
    assert_eq!(ended.data()["final_unit_deduction"], "0.25");
    let ended = sim
        .control(&format!("/sim/end/{second}"), json!({"outcome": "failed", "reason": "stopped"}))
        .await;
    assert_eq!(ended.ok()["task_status_msg"], "stopped");

    let again = sim.control(&format!("/sim/end/{first}"), json!({"outcome": "failed"})).await;
    again.assert_error(409, 1200);
    let unknown = sim.control("/sim/end/nope", json!({"outcome": "failed"})).await;
    unknown.assert_error(404, 1200);
    let ledger = sim.ledger().await;
    assert_eq!(ledger["tasks"][0]["status"], "succeed");
    assert_eq!(ledger["tasks"][1]["status"], "failed");
}

#[tokio::test]
async fn a_seed_replays_the_same_fates() {
    let config = || Config {
        fail_rate: 0.5,
        task_ms: kling_sim::MsRange { min: 50, max: 100 },
        image_concurrency: 20,
        ..Config::for_tests()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let sim = Sim::with(config()).await;
        let mut ids = Vec::new();
        for _ in 0..12 {
            ids.push(sim.create_images(json!({"prompt": "p"})).await["task_id"].clone());
        }
        let mut fates = Vec::new();
        for id in &ids {
            let id = id.as_str().expect("id");
            let mut data = sim.get(&format!("/v1/images/generations/{id}")).await.ok().clone();
            while data["task_status"] == "submitted" || data["task_status"] == "processing" {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                data = sim.get(&format!("/v1/images/generations/{id}")).await.ok().clone();
            }
            fates.push((data["task_status"].clone(), data["task_status_msg"].clone()));
        }
        runs.push((ids, fates));
    }
    assert_eq!(runs[0], runs[1]);
    let statuses: Vec<_> = runs[0].1.iter().map(|(s, _)| s.clone()).collect();
    assert!(statuses.contains(&json!("succeed")) && statuses.contains(&json!("failed")), "{statuses:?}");
}
