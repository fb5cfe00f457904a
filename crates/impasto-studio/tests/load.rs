//! Many watchers on one job while other requests come in, on a real socket of 127.0.0.1:
//! nothing fails and no watcher misses an event. The `#[ignore]`d bench beside it measures the
//! job's time watched against unwatched (no timing is asserted anywhere):
//!
//! ```text
//! cargo test --release -p impasto-studio --test load -- --ignored --nocapture
//! ```

mod common;
#[path = "common/net.rs"]
mod net;

use std::net::SocketAddr;
use std::time::Instant;

use http_body_util::{BodyExt, Empty};
use impasto_studio::store::Status;
use impasto_studio::Studio;
use serde_json::json;

/// Watches a job's event stream to its end; returns the events.
async fn watch(client: net::HttpClient, addr: SocketAddr, id: String) -> Vec<serde_json::Value> {
    let request = hyper::Request::get(format!("http://{addr}/api/jobs/{id}/events"))
        .body(Empty::new())
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut text = String::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// Checks one watcher saw iterations 0..=last, each once, after its snapshot, and the end.
fn check_complete(events: &[serde_json::Value], last: u64) {
    assert_eq!(events[0]["type"], "snapshot");
    let mut next = events[0]["losses"].as_array().unwrap().len() as u64;
    for e in &events[1..] {
        if e["type"] == "snapshot" {
            // Fell behind and was sent the whole state again.
            next = e["losses"].as_array().unwrap().len() as u64;
        } else if e["type"] == "progress" {
            assert_eq!(e["loss"]["iteration"], next, "an event lost or repeated");
            next += 1;
        }
    }
    assert_eq!(next, last + 1);
    let end = events.last().unwrap();
    assert_eq!(end["type"], "status");
    assert_eq!(end["job"]["status"], "done");
}

/// Submits a job behind a blocker, connects `watchers`, lets it run while `requests` other
/// requests are made, and returns the job's optimisation time.
async fn run_watched(
    studio: &Studio,
    addr: SocketAddr,
    images: &(String, String),
    size: u32,
    iterations: u32,
    watchers: usize,
    requests: usize,
) -> f64 {
    let client = net::client();
    // In-process requests for the set-up; the watchers and the load go through the socket.
    let app = studio.router(common::PORT);
    let (photo, painting) = images;
    let blocker = common::start(
        &app,
        json!({"content": photo, "styles": [painting], "size": 32, "iterations": 100000, "optimizer": "adam"}),
    )
    .await;
    let job = common::start(
        &app,
        json!({"content": photo, "styles": [painting], "size": size, "iterations": iterations, "optimizer": "adam"}),
    )
    .await;
    let id = job.id.to_string();
    // Every watcher connects while the job waits, so each must see all of it.
    let watching: Vec<_> = (0..watchers)
        .map(|_| tokio::spawn(watch(client.clone(), addr, id.clone())))
        .collect();
    if watchers > 0 {
        common::wait_for(studio, &id, "the watchers", |_| {
            studio.hub().watchers(job.id) == watchers
        });
    }
    common::wait_running(studio, &blocker.id.to_string());
    common::post(&app, &format!("/api/jobs/{}/cancel", blocker.id), "").await;
    common::wait_for(studio, &id, "the job to start", |j| {
        j.status != Status::Queued
    });

    let uris = [
        "/".to_string(),
        "/app.js".into(),
        "/api/defaults".into(),
        "/api/uploads".into(),
        "/api/jobs".into(),
        format!("/api/uploads/{photo}/thumb.png"),
        format!("/api/uploads/{painting}/image"),
        format!("/api/jobs/{}", blocker.id),
        format!("/api/jobs/{}/result.png", blocker.id),
        format!("/api/jobs/{}/losses.csv", blocker.id),
    ];
    let others: Vec<_> = (0..requests)
        .map(|i| {
            let client = client.clone();
            let uri = uris[i % uris.len()].clone();
            tokio::spawn(async move {
                let (status, _) = net::fetch(&client, addr, &uri).await;
                assert_eq!(status, 200, "{uri}");
            })
        })
        .collect();
    for o in others {
        o.await.unwrap();
    }
    for w in watching {
        check_complete(&w.await.unwrap(), iterations as u64);
    }
    let done = common::wait_final(studio, &id);
    assert_eq!(done.status, Status::Done);
    done.elapsed_s
}

async fn uploaded(studio: &Studio) -> (String, String) {
    common::two_images(&studio.router(common::PORT)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_watchers_and_two_hundred_requests_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let studio = Studio::open(common::config(dir.path())).unwrap();
    let addr = net::serve(&studio).await;
    let images = uploaded(&studio).await;
    run_watched(&studio, addr, &images, 32, 40, 50, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a bench: run with --release -- --ignored --nocapture"]
async fn bench_job_time_watched_and_unwatched() {
    let dir = tempfile::tempdir().unwrap();
    let studio = Studio::open(impasto_studio::Config {
        max_size: 512,
        ..common::config(dir.path())
    })
    .unwrap();
    let addr = net::serve(&studio).await;
    let images = uploaded(&studio).await;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let (size, iterations) = (128, 60);
    println!("CPU: {cpu}; random VGG19 weights, {size} px, {iterations} Adam iterations, preview every 2");
    let (mut alone, mut watched) = (Vec::new(), Vec::new());
    for round in 0..3 {
        let began = Instant::now();
        let a = run_watched(&studio, addr, &images, size, iterations, 0, 0).await;
        let b = run_watched(&studio, addr, &images, size, iterations, 50, 200).await;
        println!(
            "round {round}: unwatched {a:.2} s, watched by 50 with 200 requests {b:.2} s ({:.0} s)",
            began.elapsed().as_secs_f64()
        );
        alone.push(a);
        watched.push(b);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, b) = (median(&mut alone), median(&mut watched));
    println!(
        "median: unwatched {a:.2} s, watched {b:.2} s: {:+.1}%",
        100.0 * (b / a - 1.0)
    );
}
