//! An HTTP error answer in the making: status, stable code and message,
//! sent as the JSON [`ErrorBody`] with the request's id.

use blob_common::error::ErrorBody;

/// An HTTP error in the making: status, code and message. Services convert
/// their own error enums into this at the HTTP edge.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: axum::http::StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Explanation.
    pub message: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: axum::http::StatusCode::from_u16(status)
                .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
        }
    }
}

impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), code = self.code, error = %self.message, "request failed");
        } else {
            tracing::info!(status = self.status.as_u16(), code = self.code, error = %self.message, "request refused");
        }
        let request_id = crate::http::current_request_id().unwrap_or_default();
        let body = ErrorBody {
            code: self.code.to_string(),
            message: self.message,
            request_id,
        };
        (self.status, axum::Json(body)).into_response()
    }
}
