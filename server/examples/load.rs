//! Load figures of quota-server, printed (never asserted): run by
//! `scripts/load`, which also starts a throwaway PostgreSQL.
//!
//! - reserve-and-settle per second: clients that submit a one-image task
//!   and end it (the dev endpoint), in a loop, for a few seconds, on SQLite
//!   with one instance and on PostgreSQL with one and with three;
//! - event fan-out: N open streams of one account (spread over the
//!   instances), a change made, the time until each stream has it (p50,
//!   p99, max), at 1,000 and 5,000 streams;
//! - memory per stream: the servers' resident memory before and after
//!   opening the streams, divided by their number.
//!
//! `cargo run --release -p quota-server --example load -- --pg-dir DIR [--pin]`
//!
//! `--pin` runs each instance on a core of its own (`taskset`), as far as
//! the cores go; the generator and PostgreSQL share them all.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

struct Server {
    child: Child,
    url: String,
}

/// With `--pin`, each instance runs on one core of its own where there are
/// enough (`taskset`): instance k on core k modulo the cores.
fn command(bin: &str, instance: usize) -> Command {
    if !std::env::args().any(|a| a == "--pin") {
        return Command::new(bin);
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut c = Command::new("taskset");
    c.args(["-c", &(instance % cores).to_string(), bin]);
    c
}

impl Server {
    fn start(bin: &str, db: &str) -> Server {
        Server::start_on(bin, db, 0)
    }

    fn start_on(bin: &str, db: &str, instance: usize) -> Server {
        let mut child = command(bin, instance)
            .args(["--addr", "127.0.0.1:0", "--db", db, "--dev", "--no-worker", "--rate-limit", "0"])
            .args(["--max-streams-per-account", "100000", "--max-streams", "100000", "--ping-ms", "60000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("quota-server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("listening line");
        let url = line.trim().strip_prefix("quota-server listening on ").expect("listening line").to_owned();
        Server { child, url }
    }

    /// Resident memory, in kB (Linux).
    fn rss_kb(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
            .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

async fn fresh_pg(base_dir: &str, name: &str) -> String {
    let (client, conn) = tokio_postgres::connect(&format!("host={base_dir} user=postgres dbname=postgres"), tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL answers");
    tokio::spawn(conn);
    // Two statements: a multi-statement string runs as one transaction,
    // where DROP DATABASE cannot.
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.expect("drop database");
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
    format!("postgresql:///{name}?host={base_dir}&user=postgres")
}

async fn account(http: &reqwest::Client, server: &Server, token: &str) {
    let res = http
        .post(format!("{}/api/dev/accounts", server.url))
        .json(&json!({ "token": token, "image_limit": 10000, "video_limit": 1,
                       "packages": [{ "name": "load", "total": 100_000_000, "expires_in_ms": 86_400_000 }] }))
        .send()
        .await
        .expect("account");
    assert_eq!(res.status(), 201, "account {token}");
}

/// Clients submitting and settling for `secs` seconds; returns per second.
async fn reserve_and_settle(servers: &[Server], clients: usize, secs: u64) -> f64 {
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build().expect("client");
    // One account per client: the figure is the store's, not one row lock's.
    for c in 0..clients {
        account(&http, &servers[c % servers.len()], &format!("load{c}")).await;
    }
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let workers = (0..clients).map(|c| {
        let http = http.clone();
        let done = Arc::clone(&done);
        let base = servers[c % servers.len()].url.clone();
        async move {
            let token = format!("load{c}");
            let mut n = 0u64;
            while Instant::now() < until {
                n += 1;
                let res = http
                    .post(format!("{base}/api/generations"))
                    .bearer_auth(&token)
                    .json(&json!({ "kind": "image", "count": 1, "client_request_id": format!("c{c}-{n}") }))
                    .send()
                    .await
                    .expect("submit");
                assert_eq!(res.status(), 201);
                let body: serde_json::Value = res.json().await.expect("json");
                let task = body["task_id"].as_str().expect("task id").to_owned();
                let res = http
                    .post(format!("{base}/api/dev/tasks/{task}/succeed"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("settle");
                assert_eq!(res.status(), 200);
                done.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let started = Instant::now();
    futures_util::future::join_all(workers).await;
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Opens `n` streams of one account over the servers, makes one change,
/// and returns the delivery delays (sorted) and the memory per stream (kB).
async fn fan_out(servers: &[Server], n: usize) -> (Vec<Duration>, f64) {
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    account(&http, &servers[0], "fan").await;
    let rss_before: u64 = servers.iter().map(Server::rss_kb).sum();
    let mut streams = Vec::with_capacity(n);
    for i in 0..n {
        let res = http
            .get(format!("{}/api/events", servers[i % servers.len()].url))
            .bearer_auth("fan")
            .send()
            .await
            .expect("stream");
        assert_eq!(res.status(), 200);
        let mut body = res.bytes_stream();
        // The first state, so that the stream is live before the change.
        let mut seen = String::new();
        while !seen.contains("\n\n") {
            let chunk = body.next().await.expect("open").expect("chunk");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        streams.push(body);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after: u64 = servers.iter().map(Server::rss_kb).sum();
    let started = Instant::now();
    let res = http
        .post(format!("{}/api/generations", servers[0].url))
        .bearer_auth("fan")
        .json(&json!({ "kind": "image", "count": 1, "client_request_id": "fan-1" }))
        .send()
        .await
        .expect("submit");
    assert_eq!(res.status(), 201);
    let waits = streams.into_iter().map(|mut body| async move {
        loop {
            let chunk = body.next().await.expect("open").expect("chunk");
            if String::from_utf8_lossy(&chunk).contains("fan-1") {
                return started.elapsed();
            }
        }
    });
    let mut delays = futures_util::future::join_all(waits).await;
    delays.sort();
    (delays, (rss_after.saturating_sub(rss_before)) as f64 / n as f64)
}

fn pct(d: &[Duration], p: usize) -> String {
    format!("{:.1} ms", d[(d.len() - 1) * p / 100].as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let bin = arg("--bin").unwrap_or_else(|| "target/release/quota-server".into());
    let pg_dir = arg("--pg-dir").expect("--pg-dir: the socket directory of a PostgreSQL (scripts/load starts one)");
    let secs: u64 = arg("--secs").and_then(|s| s.parse().ok()).unwrap_or(5);
    let clients: usize = arg("--clients").and_then(|s| s.parse().ok()).unwrap_or(16);
    let dir = std::env::temp_dir().join(format!("qw-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");

    println!("reserve-and-settle ({clients} clients, {secs} s, one account each):");
    {
        let db = dir.join("load.sqlite3");
        let servers = [Server::start(&bin, db.to_str().expect("utf-8"))];
        let rate = reserve_and_settle(&servers, clients, secs).await;
        println!("  SQLite, 1 instance:      {rate:>7.0} /s");
    }
    for instances in [1, 3] {
        let db = fresh_pg(&pg_dir, &format!("qw_load_rs{instances}")).await;
        let servers: Vec<Server> = (0..instances).map(|k| Server::start_on(&bin, &db, k)).collect();
        let rate = reserve_and_settle(&servers, clients, secs).await;
        println!("  PostgreSQL, {instances} instance{}: {rate:>7.0} /s", if instances == 1 { " " } else { "s" });
    }

    println!("event fan-out (one change, every stream of the account):");
    for n in [1000, 5000] {
        let db = dir.join(format!("fan{n}.sqlite3"));
        let servers = [Server::start(&bin, db.to_str().expect("utf-8"))];
        let (d, kb) = fan_out(&servers, n).await;
        println!(
            "  SQLite, 1 instance, {n} streams: p50 {}, p99 {}, max {}; {kb:.1} kB per stream",
            pct(&d, 50),
            pct(&d, 99),
            pct(&d, 100)
        );
        let db = fresh_pg(&pg_dir, &format!("qw_load_fan{n}")).await;
        let servers: Vec<Server> = (0..3).map(|k| Server::start_on(&bin, &db, k)).collect();
        let (d, kb) = fan_out(&servers, n).await;
        println!(
            "  PostgreSQL, 3 instances, {n} streams: p50 {}, p99 {}, max {}; {kb:.1} kB per stream",
            pct(&d, 50),
            pct(&d, 99),
            pct(&d, 100)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
