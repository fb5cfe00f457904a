//! The HTTP interface: the page and its assets, uploads, jobs, their live events and their
//! files. Every id in a path is parsed as an [`Id`] before anything else happens.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use impasto::image_io::Limits;

use crate::api_error::ApiError;
use crate::guard::{self, Allowed};
use crate::hub::{Event, Hub};
use crate::id::Id;
use crate::params::JobParams;
use crate::store::{now, JobFile, JobRecord, Status};
use crate::{assets, uploads};

/// What the handlers share.
pub struct AppState {
    /// The jobs.
    pub hub: Arc<Hub>,
    /// Largest upload in bytes.
    pub max_upload_bytes: usize,
    /// Decoder limits for uploads.
    pub limits: Limits,
    /// Largest `size` a job may ask for.
    pub max_size: u32,
}

type Shared = State<Arc<AppState>>;

/// The whole application, behind the Host/Origin guard.
pub fn router(state: Arc<AppState>, allowed: Allowed) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/app.js", get(assets::script))
        .route("/app.css", get(assets::style))
        .route("/api/defaults", get(defaults))
        .route("/api/uploads", get(list_uploads).post(upload))
        .route("/api/uploads/{id}/thumb.png", get(upload_thumb))
        .route("/api/uploads/{id}/image", get(upload_image))
        .route("/api/jobs", get(list_jobs).post(create_job))
        .route("/api/jobs/{id}", get(job))
        .route("/api/jobs/{id}/cancel", post(cancel_job))
        .route("/api/jobs/{id}/events", get(job_events))
        .route("/api/jobs/{id}/{file}", get(job_file))
        .route("/api/events", get(list_events))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such page") })
        .with_state(state)
        .layer(middleware::from_fn_with_state(allowed, guard::check))
}

fn parse_id(text: &str) -> Result<Id, ApiError> {
    // The text is not echoed: whatever a request put there stays out of the answer.
    Id::parse(text).ok_or_else(|| ApiError::field("id", "not an id (32 hex digits)"))
}

async fn defaults(State(s): Shared) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "params": JobParams::default(),
        "limits": {
            "max_size": s.max_size,
            "max_upload_bytes": s.max_upload_bytes,
            "max_upload_pixels": s.limits.max_pixels,
        },
    }))
}

async fn list_uploads(State(s): Shared) -> Json<Vec<crate::store::Upload>> {
    Json(s.hub.store().uploads())
}

#[derive(Deserialize)]
struct UploadQuery {
    name: Option<String>,
}

/// `POST /api/uploads?name=photo.jpg` with the file as the body.
async fn upload(
    State(s): Shared,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<crate::store::Upload>), ApiError> {
    let limit = s.max_upload_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the file is larger than {} MB", limit / (1 << 20)),
        )
        .on("file")
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;
    let name = q.name.unwrap_or_default();
    let state = s.clone();
    let upload = tokio::task::spawn_blocking(move || {
        uploads::accept(state.hub.store(), &bytes, &name, &state.limits)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok((StatusCode::CREATED, Json(upload)))
}

async fn upload_thumb(State(s): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    s.hub
        .store()
        .upload(id)
        .ok_or_else(|| ApiError::not_found("upload"))?;
    file(&s.hub.store().upload_thumb(id), "image/png", None).await
}

async fn upload_image(State(s): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let upload = s
        .hub
        .store()
        .upload(id)
        .ok_or_else(|| ApiError::not_found("upload"))?;
    let mime = match upload.format.as_str() {
        "jpeg" => "image/jpeg",
        "png" => "image/png",
        _ => "image/tiff",
    };
    file(&s.hub.store().upload_file(&upload), mime, None).await
}

async fn list_jobs(State(s): Shared) -> Json<Vec<JobRecord>> {
    Json(s.hub.list())
}

async fn job(State(s): Shared, Path(id): Path<String>) -> Result<Json<JobRecord>, ApiError> {
    let id = parse_id(&id)?;
    s.hub
        .get(id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("job"))
}

/// Most bytes of a job request.
const MAX_JOB_REQUEST: usize = 64 * 1024;

async fn create_job(
    State(s): Shared,
    body: Body,
) -> Result<(StatusCode, Json<JobRecord>), ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_JOB_REQUEST)
        .await
        .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "the job request is too long"))?;
    let params = JobParams::from_json(&bytes)?;
    let resolved = params.resolve(s.max_size)?;
    let store = s.hub.store();
    let content = store
        .upload(resolved.content)
        .ok_or_else(|| ApiError::field("content", "no such upload"))?;
    let styles = resolved
        .styles
        .iter()
        .map(|id| {
            store
                .upload(*id)
                .ok_or_else(|| ApiError::field("styles", "no such upload"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let init_file = match resolved.start_from {
        Some(from) => {
            let has = s.hub.get(from).is_some_and(|j| j.has_result);
            if !has {
                return Err(ApiError::field(
                    "start_from",
                    "that job has no result to start from",
                ));
            }
            Some(store.job_file(from, JobFile::Result))
        }
        None => None,
    };
    let id = Id::random();
    let style_paths: Vec<_> = styles.iter().map(|u| store.upload_file(u)).collect();
    let style_refs: Vec<&std::path::Path> = style_paths.iter().map(|p| p.as_path()).collect();
    let output = format!("impasto-{}.png", &id.to_string()[..8]);
    let command = params.command_line(
        &store.upload_file(&content),
        &style_refs,
        std::path::Path::new(&output),
        init_file.as_deref(),
    );
    let record = JobRecord {
        id,
        created: now(),
        status: Status::Queued,
        position: None,
        title: format!(
            "{} in the style of {}",
            content.name,
            styles
                .iter()
                .map(|u| u.name.as_str())
                .collect::<Vec<_>>()
                .join(" + ")
        ),
        params,
        error: None,
        started: None,
        finished: None,
        total_iterations: resolved.schedule.total_iterations(),
        iterations_done: 0,
        elapsed_s: 0.0,
        best_loss: None,
        best_iteration: None,
        preview_version: 0,
        has_result: false,
        has_instant: false,
        result_size: None,
        command,
    };
    let record = s.hub.submit(record).map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(record)))
}

async fn cancel_job(State(s): Shared, Path(id): Path<String>) -> Result<Json<JobRecord>, ApiError> {
    let id = parse_id(&id)?;
    s.hub
        .cancel(id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("job"))
}

/// `preview.png`, `instant.png`, `result.png` (`?bits=` is not needed: the job's bit depth),
/// `losses.csv`.
async fn job_file(
    State(s): Shared,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let job = s.hub.get(id).ok_or_else(|| ApiError::not_found("job"))?;
    let (which, mime) = match name.as_str() {
        "preview.png" => (JobFile::Preview, "image/png"),
        "instant.png" => (JobFile::Instant, "image/png"),
        "result.png" => (JobFile::Result, "image/png"),
        "losses.csv" => (JobFile::Losses, "text/csv"),
        _ => return Err(ApiError::new(StatusCode::NOT_FOUND, "no such file").on("file")),
    };
    let short = &id.to_string()[..8];
    let download = match which {
        JobFile::Result => Some(format!("impasto-{short}.png")),
        JobFile::Losses => Some(format!("impasto-{short}-losses.csv")),
        _ => None,
    };
    let _ = job;
    file(&s.hub.store().job_file(id, which), mime, download).await
}

/// A file of the data folder as a response; 404 when it is not there (yet).
async fn file(
    path: &std::path::Path,
    mime: &str,
    download: Option<String>,
) -> Result<Response, ApiError> {
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "not written yet"))
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let mut response = (StatusCode::OK, bytes).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(mime).expect("ascii"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(name) = download {
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(response)
}

fn sse_event(event: &Event) -> Result<SseEvent, Infallible> {
    Ok(SseEvent::default().data(serde_json::to_string(event).unwrap_or_default()))
}

enum Phase {
    Send(Event, bool),
    Live,
    Done,
}

/// Server-sent events of one job: a snapshot, then every change, ending after the final status.
async fn job_events(
    State(s): Shared,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let id = parse_id(&id)?;
    let watch = s.hub.watch(id).ok_or_else(|| ApiError::not_found("job"))?;
    let hub = s.hub.clone();
    let start = (
        Phase::Send(watch.snapshot, watch.finished),
        watch.events,
        hub,
    );
    let events = stream::unfold(start, move |(phase, mut rx, hub)| async move {
        let mut phase = phase;
        loop {
            match phase {
                Phase::Done => return None,
                Phase::Send(event, finished) => {
                    let next = if finished { Phase::Done } else { Phase::Live };
                    return Some((sse_event(&event), (next, rx, hub)));
                }
                Phase::Live => match rx.recv().await {
                    Ok(event) => {
                        let last = matches!(&event, Event::Status { job } if job.status.is_final());
                        let next = if last { Phase::Done } else { Phase::Live };
                        return Some((sse_event(&event), (next, rx, hub)));
                    }
                    // Fell behind: the whole state again (the page replaces what it had).
                    Err(RecvError::Lagged(_)) => {
                        let (event, finished) = hub.snapshot(id)?;
                        phase = Phase::Send(event, finished);
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Server-sent events of every job's status changes (the queue and the gallery).
async fn list_events(State(s): Shared) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = s.hub.subscribe_list();
    let events = stream::unfold(rx, |mut rx| async move {
        let data = match rx.recv().await {
            Ok(job) => serde_json::json!({ "type": "job", "job": job }),
            Err(RecvError::Lagged(_)) => serde_json::json!({ "type": "resync" }),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(SseEvent::default().data(data.to_string())), rx))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
