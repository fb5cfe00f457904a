//! The studio in a real browser: Debian's chromium, driven through chromedriver (WebDriver) by
//! fantoccini. Uploads a photo and a painting, runs a 96 px job of 30 iterations while watching
//! the live image and the chart, takes a screenshot, cancels a second job, and downloads the
//! first result. Fails (does not skip) when chromium or chromedriver is missing.

mod common;
#[path = "common/net.rs"]
mod net;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use impasto::image_io;
use impasto_studio::{Config, Studio, WeightsSource};

/// chromedriver, stopped (by its own pid) when the test ends however it ends.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/lib/chromium")]) {
        for name in names {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn start_driver() -> (Driver, PathBuf) {
    let missing = "the browser test needs Debian's chromium and chromium-driver: \
                   apt-get install chromium chromium-driver";
    let driver = find_program(&["chromedriver"]).expect(missing);
    let browser = find_program(&["chromium", "chromium-browser", "google-chrome"]).expect(missing);
    let port = free_port();
    let child = Command::new(&driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", driver.display()));
    let d = Driver {
        child,
        port,
        _profile: tempfile::tempdir().unwrap(),
    };
    let begun = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            begun.elapsed() < Duration::from_secs(30),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (d, browser)
}

async fn browser(driver: &Driver, binary: &Path) -> Client {
    let profile = driver._profile.path().display().to_string();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": binary,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1400,1200", format!("--user-data-dir={profile}"),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a chromium session through chromedriver")
}

/// The photo and painting: the shared sample images where this checkout has them, else made up.
fn images(dir: &Path) -> (PathBuf, PathBuf) {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/images");
    let (photo, painting) = (shared.join("tubingen.jpg"), shared.join("starry_night.jpg"));
    if photo.is_file() && painting.is_file() {
        // Chromedriver takes only canonical paths for file inputs (no `..`).
        return (
            photo.canonicalize().unwrap(),
            painting.canonicalize().unwrap(),
        );
    }
    let photo = dir.join("photo.png");
    let painting = dir.join("painting.png");
    image_io::save(&common::picture(320, 240, 0), &photo).unwrap();
    image_io::save(&common::picture(256, 256, 5), &painting).unwrap();
    (photo, painting)
}

async fn js(c: &Client, script: &str) -> serde_json::Value {
    c.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("{script}: {e}"))
}

async fn text(c: &Client, css: &str) -> String {
    js(
        c,
        &format!("return document.querySelector({css:?}).textContent"),
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_string()
}

/// Waits (a hang guard of a few minutes, not a timing assertion) until the script returns true.
async fn until(c: &Client, what: &str, script: &str) {
    let begun = Instant::now();
    while js(c, script).await != serde_json::Value::Bool(true) {
        assert!(
            begun.elapsed() < Duration::from_secs(300),
            "waited 5 minutes for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_paints_a_photo_in_the_browser() {
    let (driver, binary) = start_driver();
    let data = tempfile::tempdir().unwrap();
    // The real VGG19 weights (fetched on first use), so the screenshot shows a real painting.
    let studio = Studio::open(Config {
        weights: WeightsSource::Installed,
        instant: false,
        preview_every: 3,
        ..Config::new(data.path().to_path_buf())
    })
    .unwrap();
    let addr = net::serve(&studio).await;
    let c = browser(&driver, &binary).await;
    c.goto(&format!("http://127.0.0.1:{}/", addr.port()))
        .await
        .unwrap();
    until(
        &c,
        "the page to load",
        "return document.body.dataset.ready === '1'",
    )
    .await;

    let (photo, painting) = images(data.path());
    let input = c.find(Locator::Css("#photo-input")).await.unwrap();
    input.send_keys(&photo.display().to_string()).await.unwrap();
    let input = c.find(Locator::Css("#style-input")).await.unwrap();
    input
        .send_keys(&painting.display().to_string())
        .await
        .unwrap();
    until(
        &c,
        "the uploads",
        "return document.querySelectorAll('#chosen-photo .thumb').length === 1 && \
         document.querySelectorAll('#chosen-styles .thumb').length === 1 && \
         document.querySelectorAll('#library .thumb').length === 2",
    )
    .await;

    // A bad value is answered beside its field, and nothing starts.
    js(
        &c,
        "document.querySelector('#size').value = 100000; return true",
    )
    .await;
    c.find(Locator::Css("#start"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "the size error",
        "return document.querySelector('.err[data-for=size]').textContent.length > 0",
    )
    .await;

    js(
        &c,
        "document.querySelector('#size').value = 96; \
            document.querySelector('#iterations').value = 30; return true",
    )
    .await;
    c.find(Locator::Css("#start"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // Watch it form: distinct live images and a growing chart, until done.
    let mut sources = Vec::<String>::new();
    let mut points = Vec::<u64>::new();
    let begun = Instant::now();
    loop {
        let state = js(
            &c,
            "return [document.querySelector('#live').getAttribute('src') || '', \
                     Number(document.querySelector('#chart').dataset.points), \
                     document.querySelector('#status').textContent]",
        )
        .await;
        let src = state[0].as_str().unwrap().to_string();
        if !src.is_empty() && sources.last() != Some(&src) {
            sources.push(src);
        }
        points.push(state[1].as_u64().unwrap());
        let status = state[2].as_str().unwrap().to_string();
        assert!(
            !status.starts_with("failed"),
            "{}",
            text(&c, "#job-error").await
        );
        if status == "done" {
            break;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(600),
            "the job did not finish: {status}"
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let previews = sources.iter().filter(|s| s.contains("preview.png")).count();
    assert!(
        previews >= 3,
        "the live image changed at least twice: {sources:?}"
    );
    let first_seen = points.iter().copied().find(|p| *p > 0).unwrap();
    let last = *points.last().unwrap();
    assert!(last > first_seen, "the chart grew: {points:?}");
    assert_eq!(last, 31, "iterations 0 to 30");
    assert!(text(&c, "#command")
        .await
        .starts_with("impasto transfer --content "));
    until(
        &c,
        "the download link",
        "return !document.querySelector('#download-result').hidden",
    )
    .await;

    // From the top, where the result and its chart are (the clicks above scrolled the page).
    js(&c, "window.scrollTo(0, 0); return true").await;
    let shot = c.screenshot().await.unwrap();
    let shot_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("studio.png");
    std::fs::write(&shot_path, &shot).unwrap();
    assert!(shot.starts_with(b"\x89PNG"));

    // Download the result as the link gives it.
    let href = js(
        &c,
        "return document.querySelector('#download-result').getAttribute('href')",
    )
    .await;
    let (status, png) = net::fetch(&net::client(), addr, href.as_str().unwrap()).await;
    assert_eq!(status, 200);
    let original = image_io::load(&photo).unwrap();
    let expected = image_io::fit_long_side(original.width, original.height, 96);
    assert_eq!(common::png_size(&png), expected);

    // A second, long job, cancelled while it runs; its best image is kept.
    js(
        &c,
        "document.querySelector('#iterations').value = 5000; return true",
    )
    .await;
    c.find(Locator::Css("#start"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "the second job to run",
        "return document.querySelector('#status').textContent === 'running' && \
           Number(document.querySelector('#chart').dataset.points) > 2",
    )
    .await;
    c.find(Locator::Css("#cancel"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "the cancel",
        "return document.querySelector('#status').textContent === 'cancelled'",
    )
    .await;
    until(
        &c,
        "the gallery",
        "return document.querySelectorAll('#gallery .card').length === 2 && \
           document.querySelectorAll('#gallery .card button.start-from').length === 2",
    )
    .await;
    assert_eq!(
        js(&c, "return document.querySelectorAll('#queue li').length").await,
        0
    );

    c.close().await.unwrap();
    drop(studio);
}
