//! The studio's HTTP interface in process (tower's `oneshot`), with random weights and tiny
//! images: every endpoint, every bad request the issue lists, cancelling, and restarts.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::*;
use http_body_util::BodyExt;
use impasto_studio::params::JobParams;
use impasto_studio::store::Status;
use serde_json::json;

#[tokio::test]
async fn the_page_and_its_assets_are_served_from_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (_studio, app) = open(dir.path());
    let page = get(&app, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("impasto") && html.contains("/app.js"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from elsewhere"
    );
    assert!(page.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));
    for (path, kind) in [("/app.js", "javascript"), ("/app.css", "css")] {
        let r = get(&app, path).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.headers["content-type"].to_str().unwrap().contains(kind));
    }
    let defaults = get(&app, "/api/defaults").await.json();
    let params: JobParams = serde_json::from_value(defaults["params"].clone()).unwrap();
    assert_eq!(params, JobParams::default());
    assert_eq!(defaults["limits"]["max_size"], 256);
    let missing = get(&app, "/nothing/here").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.json()["error"].is_string());
}

#[tokio::test]
async fn uploads_are_kept_typed_by_content_with_thumbnails() {
    let dir = tempfile::tempdir().unwrap();
    let (_studio, app) = open(dir.path());
    let jpeg = encoded(&picture(300, 200, 1), "p.jpg");
    // Named .png and sent as text: the type still comes from the bytes.
    let r = send(
        &app,
        Request::builder()
            .method(Method::POST)
            .uri("/api/uploads?name=..%2F..%2Fnot-really.png")
            .header("host", HOST)
            .header("content-type", "text/plain")
            .body(Body::from(jpeg.clone()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let up = r.json();
    assert_eq!(up["format"], "jpeg");
    assert_eq!(
        (up["width"].as_u64(), up["height"].as_u64()),
        (Some(300), Some(200))
    );
    assert_eq!(
        up["name"], "not-really.png",
        "the name is shown, never a path"
    );
    let id = up["id"].as_str().unwrap();
    assert_eq!(id.len(), 32);

    let list = get(&app, "/api/uploads").await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id);
    let thumb = get(&app, &format!("/api/uploads/{id}/thumb.png")).await;
    assert_eq!(thumb.status, StatusCode::OK);
    assert_eq!(png_size(&thumb.body), (160, 107));
    let original = get(&app, &format!("/api/uploads/{id}/image")).await;
    assert_eq!(original.headers["content-type"], "image/jpeg");
    assert_eq!(original.body.as_ref(), jpeg.as_slice());
    // The file is named by its id only.
    assert!(dir.path().join(format!("uploads/{id}.jpg")).is_file());
}

#[tokio::test]
async fn bad_uploads_get_a_4xx_naming_the_file_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (_studio, app) = open(dir.path());
    let png = encoded(&picture(64, 64, 0), "ok.png");
    let mut truncated = png.clone();
    truncated.truncate(png.len() / 2);
    let huge = encoded(&picture(600, 400, 0), "huge.png"); // 240 000 pixels > 200 000
    let cases: Vec<(&str, Vec<u8>, StatusCode)> = vec![
        ("empty", vec![], StatusCode::BAD_REQUEST),
        (
            "text",
            b"hello, I am not an image".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "html named .png",
            b"<html><script>alert(1)</script>".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "gif",
            b"GIF89a\x01\x00\x01\x00".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        ("truncated png", truncated, StatusCode::UNPROCESSABLE_ENTITY),
        (
            "png header only",
            png[..40].to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("too many pixels", huge, StatusCode::PAYLOAD_TOO_LARGE),
        (
            "too many bytes",
            vec![0xFF; 400_000],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (what, bytes, status) in cases {
        let r = post(&app, "/api/uploads?name=x.png", bytes).await;
        assert_eq!(
            r.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.field().as_deref(), Some("file"), "{what}");
        assert!(!r.json()["error"].as_str().unwrap().is_empty());
    }
    // A body longer than the limit without a Content-Length (streamed) is refused too.
    let chunks = futures_util::stream::iter(
        (0..10).map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![0xFFu8; 50_000]))),
    );
    let r = post(&app, "/api/uploads", Body::from_stream(chunks)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Still up, and nothing was kept (not even a temporary file).
    assert_eq!(get(&app, "/").await.status, StatusCode::OK);
    assert_eq!(get(&app, "/api/uploads").await.json(), json!([]));
    let left: Vec<_> = std::fs::read_dir(dir.path().join("uploads"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_studio, app) = open(dir.path());
    let png = encoded(&picture(32, 32, 0), "ok.png");
    let with = |method: Method, uri: &str, headers: &[(&str, &str)], body: Vec<u8>| {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::from(body)).unwrap()
    };
    // DNS rebinding: the attacker's name resolving to 127.0.0.1.
    for host in [
        "evil.example:8080",
        "127.0.0.1:9999",
        "localhost.evil.example:8080",
        "evil.example",
    ] {
        for uri in ["/", "/api/uploads", "/api/jobs"] {
            let r = send(&app, with(Method::GET, uri, &[("host", host)], vec![])).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{host} {uri}");
            assert!(r.json()["error"].as_str().unwrap().contains("Host"));
        }
    }
    let r = send(&app, with(Method::GET, "/", &[], vec![])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no Host at all");
    for host in ["localhost:8080", "127.0.0.1:8080", "[::1]:8080"] {
        let r = send(&app, with(Method::GET, "/", &[("host", host)], vec![])).await;
        assert_eq!(r.status, StatusCode::OK, "{host}");
    }
    // A page elsewhere posting through the person's browser.
    for origin in [
        "http://evil.example",
        "http://evil.example:8080",
        "null",
        "https://127.0.0.1:8080",
    ] {
        let r = send(
            &app,
            with(
                Method::POST,
                "/api/uploads?name=a.png",
                &[("host", HOST), ("origin", origin)],
                png.clone(),
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{origin}");
        assert!(r.json()["error"].as_str().unwrap().contains("Origin"));
        let r = send(
            &app,
            with(
                Method::POST,
                "/api/jobs",
                &[("host", HOST), ("origin", origin)],
                b"{}".to_vec(),
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{origin}");
    }
    assert_eq!(get(&app, "/api/uploads").await.json(), json!([]));
    // The page's own origin, and tools that send none, may.
    for headers in [
        vec![("host", HOST), ("origin", "http://127.0.0.1:8080")],
        vec![("host", HOST)],
    ] {
        let r = send(
            &app,
            with(
                Method::POST,
                "/api/uploads?name=a.png",
                &headers,
                png.clone(),
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    // Reading with a foreign Origin is harmless (the browser keeps the answer from that page).
    let r = send(
        &app,
        with(
            Method::GET,
            "/api/defaults",
            &[("host", HOST), ("origin", "http://evil.example")],
            vec![],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn paths_in_any_id_position_never_reach_the_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let (studio, app) = open(dir.path());
    let (photo, painting) = two_images(&app).await;
    let job = start(
        &app,
        json!({"content": photo, "styles": [painting], "size": 32, "iterations": 2}),
    )
    .await;
    wait_final(&studio, &job.id.to_string());
    std::fs::write(dir.path().join("secret.txt"), "secret").unwrap();

    let bad_ids = [
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "..",
        "%2E%2E",
        "..%2Fsecret.txt",
        "..%5C..%5Csecret.txt",
        "0123456789abcdef0123456789abcdeg",
        "0123456789abcdef0123456789abcdef%00",
    ];
    for bad in bad_ids {
        for uri in [
            format!("/api/uploads/{bad}/thumb.png"),
            format!("/api/uploads/{bad}/image"),
            format!("/api/jobs/{bad}"),
            format!("/api/jobs/{bad}/events"),
            format!("/api/jobs/{bad}/result.png"),
            format!("/api/jobs/{bad}/losses.csv"),
            format!("/api/jobs/{}/{bad}", job.id),
        ] {
            let r = get(&app, &uri).await;
            assert!(r.status.is_client_error(), "{uri}: {}", r.status);
            assert!(
                !String::from_utf8_lossy(&r.body).contains("secret"),
                "{uri}"
            );
        }
        let r = post(&app, &format!("/api/jobs/{bad}/cancel"), "").await;
        assert!(r.status.is_client_error(), "cancel {bad}");
    }
    // Unencoded ../ segments route nowhere.
    for uri in [
        "/api/jobs/../../secret.txt",
        "/api/uploads/../secret.txt",
        "/../secret.txt",
    ] {
        let r = get(&app, uri).await;
        assert!(r.status.is_client_error(), "{uri}");
    }
    // A well-formed id that names nothing is a 404.
    let nobody = impasto_studio::id::Id::random();
    assert_eq!(
        get(&app, &format!("/api/jobs/{nobody}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, &format!("/api/uploads/{nobody}/image"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // And in the job request's id fields.
    for bad in ["../../secret.txt", "/etc/passwd", "..", ""] {
        for (field, body) in [
            ("content", json!({"content": bad, "styles": [painting]})),
            ("styles", json!({"content": photo, "styles": [bad]})),
            (
                "start_from",
                json!({"content": photo, "styles": [painting], "start_from": bad}),
            ),
        ] {
            let r = post(&app, "/api/jobs", body.to_string()).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{field} = {bad}");
            assert_eq!(r.field().as_deref(), Some(field), "{field} = {bad}");
        }
    }
}

#[tokio::test]
async fn bad_job_requests_name_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let (_studio, app) = open(dir.path());
    let (photo, painting) = two_images(&app).await;
    let nobody = impasto_studio::id::Id::random().to_string();
    let cases = [
        (
            json!({"content": photo, "styles": [painting], "size": "big"}),
            "size",
        ),
        (
            json!({"content": photo, "styles": [painting], "size": 100000}),
            "size",
        ),
        (
            json!({"content": photo, "styles": [painting], "iterations": -3}),
            "iterations",
        ),
        (
            json!({"content": photo, "styles": [painting], "tv_weight": -1}),
            "tv_weight",
        ),
        (
            json!({"content": photo, "styles": [painting], "optimizer": "sgd"}),
            "optimizer",
        ),
        (
            json!({"content": photo, "styles": [painting], "style_layers": ["relu9_1"]}),
            "style_layers",
        ),
        (
            json!({"content": photo, "styles": [painting], "bit_depth": 12}),
            "bit_depth",
        ),
        (json!({"content": nobody, "styles": [painting]}), "content"),
        (json!({"content": photo, "styles": [nobody]}), "styles"),
        (json!({"content": photo, "styles": []}), "styles"),
        (
            json!({"content": photo, "styles": [painting], "start_from": nobody}),
            "start_from",
        ),
    ];
    for (mut body, field) in cases {
        // Within the test server's size limit, so that only the field under test is wrong.
        if body.get("size").is_none() {
            body["size"] = json!(32);
        }
        let r = post(&app, "/api/jobs", body.to_string()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.field().as_deref(), Some(field), "{body}: {:?}", r.json());
    }
    for body in ["", "{", "[1,2]", "{\"colour\": 1}"] {
        let r = post(&app, "/api/jobs", body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(r.json()["error"].is_string());
    }
    let r = post(&app, "/api/jobs", vec![b' '; 100_000]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(get(&app, "/api/jobs").await.json(), json!([]));
}

#[tokio::test]
async fn a_job_runs_to_a_result_with_its_losses_and_command() {
    let dir = tempfile::tempdir().unwrap();
    let (studio, app) = open(dir.path());
    let (photo, painting) = two_images(&app).await;
    let job = start(
        &app,
        json!({"content": photo, "styles": [painting], "size": 32, "iterations": 6, "bit_depth": 16}),
    )
    .await;
    assert_eq!(job.status, Status::Queued);
    assert!(
        job.command.starts_with("impasto transfer --content "),
        "{}",
        job.command
    );
    assert!(
        job.command.contains("--size 32 --iterations 6") && job.command.contains("--bit-depth 16")
    );
    let id = job.id.to_string();
    let done = wait_final(&studio, &id);
    assert_eq!(done.status, Status::Done, "{:?}", done.error);
    assert!(done.has_result && done.iterations_done == 6);
    assert_eq!(done.result_size, Some((32, 24)));

    let r = get(&app, &format!("/api/jobs/{id}")).await;
    assert_eq!(r.json()["status"], "done");
    let result = get(&app, &format!("/api/jobs/{id}/result.png")).await;
    assert_eq!(png_size(&result.body), (32, 24));
    assert_eq!(result.body[24], 16, "a 16-bit PNG, as asked");
    assert!(result.headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("attachment"));
    let preview = get(&app, &format!("/api/jobs/{id}/preview.png")).await;
    assert_eq!(png_size(&preview.body), (32, 24));
    let csv = get(&app, &format!("/api/jobs/{id}/losses.csv")).await;
    let csv = String::from_utf8(csv.body.to_vec()).unwrap();
    assert_eq!(csv.lines().next(), Some(impasto::transfer::LOSS_CSV_HEADER));
    assert_eq!(csv.lines().count(), 1 + 7, "{csv}");
    assert_eq!(
        get(&app, &format!("/api/jobs/{id}/instant.png"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, &format!("/api/jobs/{id}/job.json")).await.status,
        StatusCode::NOT_FOUND
    );

    let list = get(&app, "/api/jobs").await.json();
    assert_eq!(list[0]["id"], id.as_str());
    // Starting from this result.
    let next = start(
        &app,
        json!({"content": photo, "styles": [painting], "size": 32, "iterations": 2, "start_from": id}),
    )
    .await;
    assert!(next.command.contains(&format!(
        "--init {}",
        dir.path()
            .join("jobs")
            .join(&id)
            .join("result.png")
            .display()
    )));
    assert_eq!(
        wait_final(&studio, &next.id.to_string()).status,
        Status::Done
    );
}

/// Opens a job's server-sent event stream: the handler has subscribed once this returns.
async fn subscribe(app: &axum::Router, id: &str) -> axum::response::Response {
    let response = tower::ServiceExt::oneshot(
        app.clone(),
        request(
            Method::GET,
            &format!("/api/jobs/{id}/events"),
            Body::empty(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    response
}

/// Reads an opened event stream to its end.
async fn read_events(response: axum::response::Response) -> Vec<serde_json::Value> {
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

/// Reads a job's server-sent event stream to its end.
async fn events(app: &axum::Router, id: &str) -> Vec<serde_json::Value> {
    read_events(subscribe(app, id).await).await
}

#[tokio::test]
async fn watchers_get_every_iteration_previews_and_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let (studio, app) = open(dir.path());
    let (photo, painting) = two_images(&app).await;
    let job = start(
        &app,
        json!({"content": photo, "styles": [painting], "size": 32, "iterations": 12, "optimizer": "adam"}),
    )
    .await;
    let id = job.id.to_string();
    let seen = events(&app, &id).await;
    assert_eq!(seen[0]["type"], "snapshot");
    let mut next = seen[0]["losses"].as_array().unwrap().len();
    let mut previews = 0;
    for e in &seen[1..] {
        match e["type"].as_str().unwrap() {
            "progress" => {
                assert_eq!(
                    e["loss"]["iteration"], next,
                    "no iteration lost or repeated"
                );
                next += 1;
                assert!(e["it_s"].as_f64().unwrap() >= 0.0 && e["eta_s"].as_f64().unwrap() >= 0.0);
            }
            "preview" => previews += 1,
            _ => {}
        }
    }
    assert_eq!(next, 13, "iterations 0 to 12");
    assert!(previews >= 2, "{previews}");
    let last = seen.last().unwrap();
    assert_eq!(last["type"], "status");
    assert_eq!(last["job"]["status"], "done");
    // A finished job's stream is its snapshot alone, with every loss.
    let again = events(&app, &id).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["losses"].as_array().unwrap().len(), 13);
    assert_eq!(again[0]["job"]["status"], "done");
    drop(studio);
}

#[tokio::test]
async fn queued_and_running_jobs_can_be_cancelled_keeping_the_best_image() {
    let dir = tempfile::tempdir().unwrap();
    let (studio, app) = open(dir.path());
    let (photo, painting) = two_images(&app).await;
    // Adam never converges, so this runs until cancelled.
    let long = json!({"content": photo, "styles": [painting], "size": 32, "iterations": 100000, "optimizer": "adam"});
    let first = start(&app, long.clone()).await;
    let second = start(&app, long.clone()).await;
    let third = start(&app, long).await;
    let (a, b, c) = (
        first.id.to_string(),
        second.id.to_string(),
        third.id.to_string(),
    );
    wait_running(&studio, &a);
    let jobs = get(&app, "/api/jobs").await.json();
    let position = |id: &str| {
        jobs.as_array()
            .unwrap()
            .iter()
            .find(|j| j["id"] == id)
            .unwrap()["position"]
            .clone()
    };
    assert_eq!(
        (position(&a), position(&b), position(&c)),
        (json!(0), json!(1), json!(2))
    );

    // Cancelling a queued job takes it out at once; the one behind moves up.
    let r = post(&app, &format!("/api/jobs/{b}/cancel"), "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "cancelled");
    assert_eq!(
        get(&app, &format!("/api/jobs/{c}")).await.json()["position"],
        1
    );
    assert_eq!(
        get(&app, &format!("/api/jobs/{b}/result.png")).await.status,
        StatusCode::NOT_FOUND
    );

    // The running one stops after its iteration, with its best image.
    let r = post(&app, &format!("/api/jobs/{a}/cancel"), "").await;
    assert_eq!(r.status, StatusCode::OK);
    let ended = wait_final(&studio, &a);
    assert_eq!(ended.status, Status::Cancelled);
    assert!(ended.has_result && ended.iterations_done >= 2);
    let result = get(&app, &format!("/api/jobs/{a}/result.png")).await;
    assert_eq!(png_size(&result.body), (32, 24));

    // The next one runs; cancelling a final job changes nothing.
    wait_running(&studio, &c);
    post(&app, &format!("/api/jobs/{c}/cancel"), "").await;
    wait_final(&studio, &c);
    let r = post(&app, &format!("/api/jobs/{a}/cancel"), "").await;
    assert_eq!(r.json()["status"], "cancelled");
}

#[tokio::test]
async fn a_restart_keeps_everything_and_the_running_job_becomes_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let (studio, app) = open(dir.path());
    let (photo, painting) = two_images(&app).await;
    let done = start(
        &app,
        json!({"content": photo, "styles": [painting], "size": 32, "iterations": 3}),
    )
    .await;
    let done = done.id.to_string();
    wait_final(&studio, &done);
    let long = json!({"content": photo, "styles": [painting], "size": 32, "iterations": 100000, "optimizer": "adam"});
    let running = start(&app, long).await.id.to_string();
    let queued = start(
        &app,
        json!({"content": photo, "styles": [painting], "size": 32, "iterations": 3}),
    )
    .await;
    let queued = queued.id.to_string();
    wait_running(&studio, &running);
    // Ctrl-C: the server stops after the running job's iteration.
    studio.shut_down();

    let (studio, app) = open(dir.path());
    let r = get(&app, &format!("/api/jobs/{running}")).await.json();
    assert_eq!(r["status"], "interrupted");
    assert_eq!(r["has_result"], true);
    assert_eq!(
        png_size(
            &get(&app, &format!("/api/jobs/{running}/result.png"))
                .await
                .body
        ),
        (32, 24)
    );
    assert_eq!(
        get(&app, &format!("/api/jobs/{done}")).await.json()["status"],
        "done"
    );
    assert_eq!(
        get(&app, "/api/uploads")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // The queued job runs after the restart.
    assert_eq!(wait_final(&studio, &queued).status, Status::Done);
    studio.shut_down();

    // A crash (no chance to write anything): job.json still says running, no result yet.
    let job_dir = dir.path().join("jobs").join(&done);
    let meta = job_dir.join("job.json");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    record["status"] = json!("running");
    record["has_result"] = json!(false);
    std::fs::write(&meta, record.to_string()).unwrap();
    std::fs::remove_file(job_dir.join("result.png")).unwrap();
    let (_studio, app) = open(dir.path());
    let r = get(&app, &format!("/api/jobs/{done}")).await.json();
    assert_eq!(r["status"], "interrupted");
    assert_eq!(r["has_result"], true, "the last preview became the result");
    assert_eq!(
        png_size(
            &get(&app, &format!("/api/jobs/{done}/result.png"))
                .await
                .body
        ),
        (32, 24)
    );
    // Its losses were kept too.
    let snapshot = events(&app, &done).await;
    assert_eq!(snapshot[0]["losses"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn the_list_stream_pushes_status_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (studio, app) = open(dir.path());
    let (photo, painting) = two_images(&app).await;
    let response = tower::ServiceExt::oneshot(
        app.clone(),
        request(Method::GET, "/api/events", Body::empty()),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let job = start(
        &app,
        json!({"content": photo, "styles": [painting], "size": 32, "iterations": 2}),
    )
    .await;
    wait_final(&studio, &job.id.to_string());
    let mut text = String::new();
    while !text.contains("\"done\"") {
        let frame = body.frame().await.unwrap().unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(
        text.contains("\"queued\"") && text.contains("\"running\""),
        "{text}"
    );
}

#[tokio::test]
async fn the_instant_painting_comes_first_and_is_kept() {
    // The real instant models (fetched on first use, as `impasto stylize` does); random VGG.
    let dir = tempfile::tempdir().unwrap();
    let (studio, app) = open_with(impasto_studio::Config {
        instant: true,
        ..config(dir.path())
    });
    let (photo, painting) = two_images(&app).await;
    // A long job holds the worker, so the job under test can be watched from before it starts.
    let blocker = start(
        &app,
        json!({"content": photo, "styles": [painting], "size": 32, "iterations": 100000, "optimizer": "adam"}),
    )
    .await;
    wait_running(&studio, &blocker.id.to_string());
    let job = start(
        &app,
        json!({"content": photo, "styles": [painting], "size": 48, "iterations": 8, "optimizer": "adam"}),
    )
    .await;
    let id = job.id.to_string();
    // The handler subscribes before it answers: from here no event of the job can be missed.
    let stream = subscribe(&app, &id).await;
    let cancel = post(&app, &format!("/api/jobs/{}/cancel", blocker.id), "").await;
    assert!(cancel.status.is_success(), "{}", cancel.status);
    let seen = read_events(stream).await;
    assert_eq!(
        seen[0]["job"]["status"], "queued",
        "watched from before it ran"
    );
    let kinds: Vec<&str> = seen.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let instant = kinds.iter().position(|k| *k == "instant");
    let progress = kinds.iter().position(|k| *k == "progress");
    assert!(
        instant.is_some() && instant < progress,
        "the instant painting before the optimiser's first iteration: {kinds:?}"
    );
    let done = wait_final(&studio, &id);
    assert_eq!(done.status, Status::Done, "{:?}", done.error);
    assert!(done.has_instant);
    let instant = get(&app, &format!("/api/jobs/{id}/instant.png")).await;
    assert_eq!(instant.status, StatusCode::OK);
    assert_eq!(png_size(&instant.body), (48, 36), "the job's size");
}
