//! Errors answered to the page: a status and a JSON body `{"error": "...", "field": "size"}`,
//! the field naming the form control the message belongs beside (absent when none does).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// A 4xx (or, for the server's own faults, 5xx) answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, in words for the person at the page.
    pub message: String,
    /// The request field (a form control's name) the error concerns.
    pub field: Option<String>,
}

impl ApiError {
    /// A 400 about one field.
    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message).on(field)
    }

    /// Any status, no field.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
        }
    }

    /// 404 for an id that names nothing in the data folder.
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, format!("no such {what}"))
    }

    /// The same error, about `field`.
    pub fn on(mut self, field: &str) -> ApiError {
        self.field = Some(field.to_string());
        self
    }

    /// A 500 for a fault on the server's side (a disk error), logged.
    pub fn internal(err: impl std::fmt::Display) -> ApiError {
        tracing::error!("{err}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self.field {
            Some(f) => serde_json::json!({ "error": self.message, "field": f }),
            None => serde_json::json!({ "error": self.message }),
        };
        (self.status, Json(body)).into_response()
    }
}
