//! Token checks: 1000 without a header, 1004 for any bad token, 401 both.

use serde_json::json;

use crate::common::{good_token, token, Sim, ACCESS_KEY, ALL_TIME, SECRET_KEY};

#[tokio::test]
async fn refuses_missing_and_bad_tokens() {
    let sim = Sim::start().await;
    let url = format!("{}/v1/images/generations/nothing", sim.base);

    let missing = sim.send(sim.http.get(&url)).await;
    missing.assert_error(401, 1000);

    let bad = [
        ("wrong secret", token(ACCESS_KEY, "another-secret", 1800, -5)),
        ("wrong iss", token("another-access-key", SECRET_KEY, 1800, -5)),
        ("expired", token(ACCESS_KEY, SECRET_KEY, -60, -1800)),
        ("nbf in the future", token(ACCESS_KEY, SECRET_KEY, 1800, 60)),
        ("malformed", "not-a-jwt".to_owned()),
    ];
    for (why, bad_token) in bad {
        let answer = sim.send(sim.http.get(&url).bearer_auth(bad_token)).await;
        assert_eq!(answer.status.as_u16(), 401, "{why}: {:?}", answer.body);
        assert_eq!(answer.code(), 1004, "{why}: {:?}", answer.body);
    }
    let not_bearer = sim
        .send(sim.http.get(&url).header("authorization", format!("Token {}", good_token())))
        .await;
    not_bearer.assert_error(401, 1004);

    // Every API path is guarded, creates included.
    let create = sim
        .send(
            sim.http
                .post(format!("{}/v1/videos/text2video", sim.base))
                .json(&json!({"prompt": "p"})),
        )
        .await;
    create.assert_error(401, 1000);
    let costs = sim.send(sim.http.get(format!("{}/account/costs?{ALL_TIME}", sim.base))).await;
    costs.assert_error(401, 1000);
    assert_eq!(sim.ledger().await["creates"], 0);
}

#[tokio::test]
async fn accepts_a_valid_token_with_small_skew() {
    let sim = Sim::start().await;
    let answer = sim.get(&format!("/account/costs?{ALL_TIME}")).await;
    answer.ok();
    let first_id = answer.body["request_id"].clone();

    // A client clock 2 s ahead (nbf just in the future) is tolerated.
    let skewed = token(ACCESS_KEY, SECRET_KEY, 1800, 2);
    let answer = sim
        .send(
            sim.http
                .post(format!("{}/v1/images/generations", sim.base))
                .bearer_auth(skewed)
                .json(&json!({"prompt": "a cat"})),
        )
        .await;
    answer.ok();
    assert_ne!(answer.body["request_id"], first_id, "request ids are unique");
}

#[tokio::test]
async fn control_paths_and_unknown_paths_need_no_token() {
    let sim = Sim::start().await;
    let ledger = sim.send(sim.http.get(format!("{}/sim/ledger", sim.base))).await;
    ledger.ok();
    let unknown = sim.send(sim.http.get(format!("{}/v2/whatever", sim.base))).await;
    unknown.assert_error(404, 1200);
}
