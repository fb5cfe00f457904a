//! Helpers shared by the studio's tests: a studio on a temporary data folder with random
//! weights, requests through the router in process, and test images.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use impasto::image_io::{self, Image, Limits};
use impasto_studio::id::Id;
use impasto_studio::store::{JobRecord, Status};
use impasto_studio::{Config, Studio, WeightsSource};
use tower::ServiceExt;

/// The port the in-process router believes it listens on.
pub const PORT: u16 = 8080;
pub const HOST: &str = "127.0.0.1:8080";

/// Small limits so the bad cases are cheap to make.
pub fn config(dir: &Path) -> Config {
    Config {
        weights: WeightsSource::Random,
        instant: false,
        max_upload_bytes: 300_000,
        upload_limits: Limits {
            max_pixels: 200_000,
            max_side: 2048,
        },
        max_size: 256,
        preview_every: 2,
        ..Config::new(dir.to_path_buf())
    }
}

pub fn open(dir: &Path) -> (Studio, Router) {
    open_with(config(dir))
}

/// A studio with `config` (e.g. [`config`] with one setting changed) and its router.
pub fn open_with(config: Config) -> (Studio, Router) {
    let studio = Studio::open(config).unwrap();
    let router = studio.router(PORT);
    (studio, router)
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    /// The `field` of a JSON error.
    pub fn field(&self) -> Option<String> {
        self.json()["field"].as_str().map(str::to_string)
    }
}

pub async fn send(router: &Router, request: Request<Body>) -> Reply {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

pub fn request(method: Method, uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", HOST)
        .body(body.into())
        .unwrap()
}

pub async fn get(router: &Router, uri: &str) -> Reply {
    send(router, request(Method::GET, uri, Body::empty())).await
}

pub async fn post(router: &Router, uri: &str, body: impl Into<Body>) -> Reply {
    send(router, request(Method::POST, uri, body)).await
}

/// A smooth test picture with some structure.
pub fn picture(width: usize, height: usize, seed: usize) -> Image {
    let rgb = (0..width * height * 3)
        .map(|i| {
            let (p, c) = (i / 3, i % 3);
            let (x, y) = (p % width, p / width);
            ((x * (c + 1) * 7 + y * (3 - c) * 5 + seed * 40 + (x * y) % 17) % 256) as f32
        })
        .collect();
    Image::new(width, height, rgb, None).unwrap()
}

/// The picture encoded as PNG (or JPEG for a `.jpg` name).
pub fn encoded(image: &Image, name: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    image_io::save(image, &path).unwrap();
    std::fs::read(path).unwrap()
}

pub async fn upload(router: &Router, bytes: Vec<u8>, name: &str) -> String {
    let r = post(router, &format!("/api/uploads?name={name}"), bytes).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()["id"].as_str().unwrap().to_string()
}

/// A photo and a painting uploaded.
pub async fn two_images(router: &Router) -> (String, String) {
    let photo = upload(
        router,
        encoded(&picture(48, 36, 0), "photo.png"),
        "photo.png",
    )
    .await;
    let painting = upload(
        router,
        encoded(&picture(40, 40, 3), "painting.jpg"),
        "painting.jpg",
    )
    .await;
    (photo, painting)
}

pub async fn start(router: &Router, body: serde_json::Value) -> JobRecord {
    let r = post(router, "/api/jobs", body.to_string()).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    serde_json::from_slice(&r.body).unwrap()
}

/// Waits (at most two minutes, a hang guard, not a timing assertion) until `done` holds.
pub fn wait_for(
    studio: &Studio,
    id: &str,
    what: &str,
    done: impl Fn(&JobRecord) -> bool,
) -> JobRecord {
    let id = Id::parse(id).unwrap();
    let begun = Instant::now();
    loop {
        let job = studio.hub().get(id).unwrap();
        if done(&job) {
            return job;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(120),
            "waited two minutes for {what}: {job:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn wait_final(studio: &Studio, id: &str) -> JobRecord {
    wait_for(studio, id, "the job to end", |j| j.status.is_final())
}

pub fn wait_running(studio: &Studio, id: &str) -> JobRecord {
    wait_for(studio, id, "the job to run with a preview", |j| {
        j.status == Status::Running && j.preview_version >= 2
    })
}

/// Decodes a PNG reply's size.
pub fn png_size(bytes: &[u8]) -> (usize, usize) {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.png");
    std::fs::write(&path, bytes).unwrap();
    let image = image_io::load(&path).unwrap();
    (image.width, image.height)
}
