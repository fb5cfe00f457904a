//! Keeping other web sites out. A page elsewhere can make the person's browser send requests to
//! 127.0.0.1, so:
//! - every request's `Host` must be the server's own: `localhost`, an IP address, or the name
//!   given with `--host`, with the server's port. A DNS-rebinding attack reaches the server
//!   under the attacker's domain name, which this refuses.
//! - a state-changing request (anything but GET and HEAD) that carries an `Origin` must come
//!   from the server's own origin; browsers always send `Origin` on cross-site POSTs, so a
//!   foreign page cannot start, cancel or upload. Requests without one (curl, scripts) pass.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api_error::ApiError;

/// Who may talk to the server.
#[derive(Clone, Debug)]
pub struct Allowed {
    /// The `--host` name, lowercase.
    pub host: String,
    /// The port the server listens on.
    pub port: u16,
}

impl Allowed {
    /// Whether a `Host` header names this server.
    pub fn host_ok(&self, value: &str) -> bool {
        let (name, port) = split_host(value);
        let port_ok = match port {
            Some(p) => p.parse::<u16>().ok() == Some(self.port),
            None => self.port == 80,
        };
        let name = name.to_ascii_lowercase();
        let name_ok = name == "localhost"
            || name == self.host
            || name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok();
        port_ok && name_ok
    }

    /// Whether an `Origin` header is this server's (`http://` + an allowed host).
    pub fn origin_ok(&self, value: &str) -> bool {
        value
            .strip_prefix("http://")
            .is_some_and(|rest| !rest.contains('/') && self.host_ok(rest))
    }
}

/// `name:port` → (`name`, `port`); IPv6 literals keep their brackets.
fn split_host(value: &str) -> (&str, Option<&str>) {
    if value.starts_with('[') {
        return match value.find(']') {
            Some(end) => {
                let port = value[end + 1..].strip_prefix(':');
                (&value[..=end], port)
            }
            None => (value, None),
        };
    }
    match value.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (value, None),
    }
}

/// The middleware.
pub async fn check(State(allowed): State<Allowed>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    match host {
        Some(h) if allowed.host_ok(&h) => {}
        _ => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "this server answers only to its own address (Host header refused)",
            )
            .into_response()
        }
    }
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD);
    if changes_state {
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            let ok = origin.to_str().is_ok_and(|o| allowed.origin_ok(o));
            if !ok {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "requests from other sites are refused (Origin header)",
                )
                .into_response();
            }
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_names_pass_and_others_do_not() {
        let a = Allowed {
            host: "127.0.0.1".into(),
            port: 8080,
        };
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
            "10.0.0.2:8080",
        ] {
            assert!(a.host_ok(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "127.0.0.1:8081",
            "localhost",
            "127.0.0.1.nip.io:8080",
            "",
        ] {
            assert!(!a.host_ok(bad), "{bad}");
        }
        assert!(a.origin_ok("http://localhost:8080"));
        assert!(!a.origin_ok("https://localhost:8080"));
        assert!(!a.origin_ok("http://evil.example:8080"));
        assert!(!a.origin_ok("null"));
        let named = Allowed {
            host: "studio.lan".into(),
            port: 80,
        };
        assert!(named.host_ok("studio.lan") && named.host_ok("studio.lan:80"));
    }
}
