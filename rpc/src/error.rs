//! The one error type of a namenode call, and the reading of any service's
//! error answer (the JSON [`ErrorBody`], or whatever text came instead).
//!
//! URLs in errors never carry their query string: pre-signed URLs are
//! credentials.

use blob_common::error::ErrorBody;
use blob_common::REQUEST_ID;
use reqwest::{StatusCode, Url};

/// Longest error text kept when an answer is not an [`ErrorBody`].
const MAX_ERROR_TEXT: usize = 512;

/// Everything that can go wrong in a namenode call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The namenode answered with an error status (usually with an
    /// [`ErrorBody`]).
    #[error("{code} (HTTP {status}): {message}{}", request_id_suffix(request_id))]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable machine-readable code, e.g. `NoSuchBucket`.
        code: String,
        /// Human-readable explanation from the server.
        message: String,
        /// The request's id, for finding it in the server's logs.
        request_id: String,
    },
    /// The request could not be sent or its answer not received
    /// (connection refused or reset, timeout, truncated body).
    #[error("request to {url} failed: {}", chain(source))]
    Transport {
        /// The URL, without its query string.
        url: String,
        /// The underlying error (its URL removed).
        #[source]
        source: reqwest::Error,
    },
    /// The answer does not follow the protocol (malformed JSON), or the
    /// request could not be encoded.
    #[error("unexpected answer from {url}: {detail}")]
    Protocol {
        /// The URL, without its query string.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// The namenode address is not a usable URL.
    #[error("namenode URL {url:?}: {detail}")]
    InvalidUrl {
        /// The address as configured.
        url: String,
        /// Why it was refused.
        detail: String,
    },
}

impl Error {
    /// The HTTP status of an [`Error::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's error code, if this is an [`Error::Api`].
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// True for a 404: no such bucket, file, key or upload session.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// True when the namenode could not be reached at all (connection
    /// refused, or no connection within the timeout): the request never
    /// arrived, so any call may be sent again.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Error::Transport { source, .. }
            if source.is_connect() || (source.is_timeout() && !source.is_body()))
    }

    /// A transport error; the URL is stripped of its query and removed
    /// from the source error too.
    pub fn transport(url: &Url, source: reqwest::Error) -> Self {
        Error::Transport {
            url: redact_url(url),
            source: source.without_url(),
        }
    }

    /// A protocol error for `url`.
    pub fn protocol(url: &Url, detail: impl Into<String>) -> Self {
        Error::Protocol {
            url: redact_url(url),
            detail: detail.into(),
        }
    }
}

fn request_id_suffix(id: &str) -> String {
    if id.is_empty() {
        String::new()
    } else {
        format!(" (request id {id})")
    }
}

/// An error with its causes, `a: b: c`: reqwest keeps the useful part
/// (e.g. "connection refused") in the source chain.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// Reads an error answer of any of our services into [`Error::Api`]: its
/// [`ErrorBody`] when there is one, else its text (cut to a sane length),
/// else a code made from the status. `request_id` is the id sent, used
/// when the answer names none.
pub async fn from_response(resp: reqwest::Response, url: &Url, request_id: &str) -> Error {
    let status = resp.status();
    let header_id = resp
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.bytes().await.unwrap_or_default();
    let fallback_id = header_id.unwrap_or_else(|| request_id.to_string());
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(b) => Error::Api {
            status: status.as_u16(),
            code: b.code,
            message: b.message,
            request_id: if b.request_id.is_empty() {
                fallback_id
            } else {
                b.request_id
            },
        },
        Err(_) => {
            let mut message = String::from_utf8_lossy(&body).trim().to_string();
            if message.len() > MAX_ERROR_TEXT {
                let mut cut = MAX_ERROR_TEXT;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
            }
            if message.is_empty() {
                message = format!("{} answered without details", redact_url(url));
            }
            Error::Api {
                status: status.as_u16(),
                code: default_code(status).to_string(),
                message,
                request_id: fallback_id,
            }
        }
    }
}

/// A code for an error answer without an [`ErrorBody`] (e.g. a HEAD).
fn default_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        404 => "NotFound",
        403 => "AccessDenied",
        401 => "Unauthorized",
        409 => "Conflict",
        s if s >= 500 => "ServerError",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

/// A URL fit for logs and messages: scheme, host, port and path, no query,
/// no fragment, no user info.
pub fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    // Both fail only for URLs that cannot have credentials; nothing to strip then.
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// [`redact_url`] for a URL still in text form.
pub fn redact_str(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => redact_url(&u),
        Err(_) => url.split('?').next().unwrap_or_default().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_signature() {
        assert_eq!(
            redact_str("http://u:p@127.0.0.1:9001/v1/chunks/ab?t=tok&s=sig#x"),
            "http://127.0.0.1:9001/v1/chunks/ab"
        );
        assert_eq!(redact_str("not a url?s=sig"), "not a url");
    }

    #[test]
    fn api_errors_show_code_status_and_request_id() {
        let e = Error::Api {
            status: 409,
            code: "BucketNotEmpty".into(),
            message: "m".into(),
            request_id: "ab12".into(),
        };
        assert_eq!(
            e.to_string(),
            "BucketNotEmpty (HTTP 409): m (request id ab12)"
        );
        assert_eq!(e.status(), Some(409));
        assert!(!e.is_not_found());
    }
}
