//! The API document: generated from the handlers and the wire types, and
//! committed as `docs/openapi.json`. This test fails when the two differ;
//! `scripts/openapi` (or `QW_UPDATE_OPENAPI=1` on this test) rewrites the
//! committed copy.

use std::path::Path;

use quota_server::openapi::openapi_json;

fn committed_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

#[test]
fn the_committed_document_is_the_generated_one() {
    let generated = format!("{}\n", serde_json::to_string_pretty(&openapi_json()).expect("serializes"));
    let path = committed_path();
    if std::env::var_os("QW_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("docs/openapi.json written");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json differs from the document the server generates: run scripts/openapi and commit it"
    );
}

#[test]
fn every_endpoint_of_the_api_is_described() {
    let doc = openapi_json();
    let paths = doc["paths"].as_object().expect("paths");
    let expected = [
        ("/healthz", "get"),
        ("/api/session", "post"),
        ("/api/session", "delete"),
        ("/api/session", "get"),
        ("/api/state", "get"),
        ("/api/events", "get"),
        ("/api/generations", "post"),
        ("/api/generations/{task_id}", "delete"),
        ("/api/upstream/callback/{secret}", "post"),
        ("/api/openapi.json", "get"),
        ("/api/dev/accounts", "post"),
        ("/api/dev/packages", "post"),
        ("/api/dev/limits/{kind}", "put"),
        ("/api/dev/tasks/{task_id}/succeed", "post"),
        ("/api/dev/tasks/{task_id}/fail", "post"),
        ("/api/dev/raw-event", "post"),
    ];
    for (path, method) in expected {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} is not described");
    }
    assert_eq!(paths.values().map(|p| p.as_object().map_or(0, |o| o.len())).sum::<usize>(), expected.len());
    assert_eq!(doc["openapi"], "3.1.0");
    // The statuses and headers of the submit, as docs/api.md explains them.
    let submit = &paths["/api/generations"]["post"]["responses"];
    for status in ["200", "201", "400", "401", "402", "403", "429", "500", "502", "503"] {
        assert!(submit.get(status).is_some(), "POST /api/generations has no {status}");
    }
    assert!(submit["429"]["headers"].get("Retry-After").is_some());
    assert!(paths["/api/state"]["get"]["responses"]["200"]["headers"].get("ETag").is_some());
    assert!(paths["/api/state"]["get"]["responses"]["304"].is_object());
    let link = &submit["201"]["links"]["FailTask"];
    assert_eq!(link["operationId"], "fail", "links in OpenAPI's spelling: {link}");
    // The queue: a submit may wait, and its id leads to the cancel.
    let link = &submit["201"]["links"]["CancelRequest"];
    assert_eq!((&link["operationId"], &link["parameters"]["task_id"]), (&"cancel".into(), &"$response.body#/task_id".into()));
    let cancel = &paths["/api/generations/{task_id}"]["delete"];
    assert_eq!(cancel["operationId"], "cancel");
    for status in ["200", "401", "403", "404", "409", "429", "500"] {
        assert!(cancel["responses"].get(status).is_some(), "DELETE /api/generations/{{task_id}} has no {status}");
    }
    let state = &doc["components"]["schemas"]["ServerState"];
    assert!(state["properties"].get("queued").is_some(), "the state lists the queue");
    let required: Vec<&str> = state["required"].as_array().expect("required").iter().filter_map(|v| v.as_str()).collect();
    assert!(!required.contains(&"queued"), "a state without the queue (an older server's) is valid: {required:?}");
    let request = &doc["components"]["schemas"]["SubmitRequest"];
    assert_eq!(request["properties"]["queue"]["type"], "boolean");
}

/// The server serves the same document it commits.
#[tokio::test]
async fn the_server_serves_it() {
    let config = <quota_server::Config as clap::Parser>::parse_from(["quota-server", "--db", ":memory:", "--no-worker"]);
    let app = quota_server::build(&config).await.expect("build");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = app.router.clone();
    let serving = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let res = reqwest::get(format!("http://{addr}/api/openapi.json")).await.expect("get");
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().expect("ascii").starts_with("application/json"));
    let served: serde_json::Value = res.json().await.expect("json");
    assert_eq!(served, openapi_json());
    app.shutdown();
    serving.abort();
}
