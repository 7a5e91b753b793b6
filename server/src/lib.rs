//! What every HTTP service of the blob store (namenode, datanode, edge,
//! S3 gateway) shares, kept out of `blob-common` so that clients do not
//! compile a web framework:
//!
//! - [`http`]: request ids and one tracing span per request, chunk
//!   answers with ranges and cache headers, the metrics answer;
//! - [`ApiError`]: an error answer (status, code, message) sent as the
//!   JSON [`blob_common::error::ErrorBody`];
//! - [`limits`]: connection caps, the in-memory byte budget and per-route
//!   body limits;
//! - [`tls`]: TLS on a listener (rustls), when a certificate is configured.

mod error;
pub mod http;
pub mod limits;
pub mod tls;

pub use error::ApiError;
