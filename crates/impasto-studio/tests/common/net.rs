//! A real server on 127.0.0.1 and a plain HTTP client for it.

use std::net::SocketAddr;

use axum::body::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use impasto_studio::Studio;

pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

/// Serves the studio on a free port of 127.0.0.1 (in the background of the current runtime).
pub async fn serve(studio: &Studio) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = studio.router(addr.port());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET, returning the status and the whole body.
pub async fn fetch(client: &HttpClient, addr: SocketAddr, path: &str) -> (u16, Bytes) {
    let request = hyper::Request::get(format!("http://{addr}{path}"))
        .body(Empty::new())
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}
