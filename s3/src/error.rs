//! From our errors to S3's: codes, statuses and XML bodies. A client's
//! mistake is always a 4xx with S3's code for it; only trouble on our side
//! (namenode or datanodes unreachable, a bug) is a 5xx.

use blob_client::Error as ClientError;
use blob_common::names::NameError;
use s3s::{S3Error, S3ErrorCode};

/// `S3Error` with a message.
pub(crate) fn s3(code: S3ErrorCode, msg: impl Into<String>) -> S3Error {
    S3Error::with_message(code, msg.into())
}

/// The error for a key the store cannot hold.
pub(crate) fn bad_key(key: &str, e: &NameError) -> S3Error {
    if key.len() > blob_common::names::MAX_PATH_LEN {
        s3(
            S3ErrorCode::KeyTooLongError,
            "Your key is too long: at most 1024 bytes.",
        )
    } else {
        s3(S3ErrorCode::InvalidArgument, e.to_string())
    }
}

/// Maps a client-library error to S3's error for the same situation.
pub(crate) fn from_client(e: ClientError) -> S3Error {
    match &e {
        ClientError::Api {
            status,
            code,
            message,
            ..
        } => {
            if code == "QuotaExceeded" {
                let mut err = s3(S3ErrorCode::Custom("QuotaExceeded".into()), message.clone());
                err.set_status_code(http::StatusCode::FORBIDDEN);
                return err;
            }
            let code = match (code.as_str(), *status) {
                ("SlowDown", _) => S3ErrorCode::SlowDown,
                ("NoSuchBucket", _) => S3ErrorCode::NoSuchBucket,
                ("NoSuchFile", _) => S3ErrorCode::NoSuchKey,
                ("BucketAlreadyExists", _) => S3ErrorCode::BucketAlreadyOwnedByYou,
                ("BucketNotEmpty", _) => S3ErrorCode::BucketNotEmpty,
                ("NoSuchUpload", _) => S3ErrorCode::NoSuchUpload,
                ("NoSuchVersion", _) => S3ErrorCode::NoSuchVersion,
                ("MethodNotAllowed", _) => S3ErrorCode::MethodNotAllowed,
                ("InvalidPart", _) => S3ErrorCode::InvalidPart,
                ("InvalidPartOrder", _) => S3ErrorCode::InvalidPartOrder,
                ("EntityTooSmall", _) => S3ErrorCode::EntityTooSmall,
                ("MalformedXML", _) => S3ErrorCode::MalformedXML,
                ("InvalidBucketName", _) => S3ErrorCode::InvalidBucketName,
                ("InvalidPath", _) | ("BadRequest", _) => S3ErrorCode::InvalidArgument,
                ("AccessDenied", _) => S3ErrorCode::AccessDenied,
                ("PreconditionFailed", _) => S3ErrorCode::PreconditionFailed,
                ("ConditionalRequestConflict", _) => S3ErrorCode::ConditionalRequestConflict,
                ("NotEnoughNodes", _) => S3ErrorCode::ServiceUnavailable,
                (_, 404) => S3ErrorCode::NoSuchKey,
                (_, 403) => S3ErrorCode::AccessDenied,
                (_, 503) => S3ErrorCode::ServiceUnavailable,
                (_, s) if (400..500).contains(&s) => S3ErrorCode::InvalidRequest,
                _ => S3ErrorCode::InternalError,
            };
            s3(code, message.clone())
        }
        ClientError::InvalidName(NameError::Bucket { .. }) => {
            s3(S3ErrorCode::InvalidBucketName, e.to_string())
        }
        ClientError::InvalidName(_) => s3(S3ErrorCode::InvalidArgument, e.to_string()),
        ClientError::Refused(why) => s3(S3ErrorCode::BadDigest, why.clone()),
        ClientError::RangeNotSatisfiable { .. } => s3(S3ErrorCode::InvalidRange, e.to_string()),
        ClientError::Io { .. } => body_error(&e),
        ClientError::Changed { .. } => s3(
            S3ErrorCode::ServiceUnavailable,
            "the object changed while it was read; retry",
        ),
        ClientError::Exhausted { .. }
        | ClientError::NoReplica { .. }
        | ClientError::Underreplicated { .. }
        | ClientError::Transport { .. } => s3(S3ErrorCode::ServiceUnavailable, e.to_string()),
        ClientError::KeyRequired { .. } => s3(
            S3ErrorCode::InvalidRequest,
            "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.",
        ),
        ClientError::WrongKey { .. } => s3(
            S3ErrorCode::AccessDenied,
            "Access Denied: the customer key given is not the one the object was encrypted with.",
        ),
        _ => {
            tracing::warn!(error = %e, "internal error");
            s3(S3ErrorCode::InternalError, "internal error")
        }
    }
}

/// A failure while reading a request body: a chunk signature or framing
/// error from the aws-chunked decoder, a body too large, or the client
/// going away.
fn body_error(e: &ClientError) -> S3Error {
    let text = format!("{e:#}");
    let source = std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_default();
    let all = format!("{text} {source}").to_ascii_lowercase();
    if all.contains("md5 thread") {
        tracing::warn!(error = %e, "internal error");
        s3(S3ErrorCode::InternalError, "internal error; retry")
    } else if all.contains("sha256mismatch") {
        let mut err = s3(
            S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        );
        err.set_status_code(http::StatusCode::BAD_REQUEST);
        err
    } else if all.contains("signature") {
        s3(
            S3ErrorCode::SignatureDoesNotMatch,
            "a chunk signature does not match",
        )
    } else if all.contains("entitytoolarge") || all.contains("too large") {
        s3(
            S3ErrorCode::EntityTooLarge,
            "the body is larger than allowed",
        )
    } else {
        s3(
            S3ErrorCode::IncompleteBody,
            format!("reading the request body failed: {source}"),
        )
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An S3 XML error response built by hand (for failures outside `s3s`).
pub(crate) fn xml_response(
    status: u16,
    code: &str,
    message: &str,
    request_id: &str,
) -> http::Response<s3s::Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><RequestId>{}</RequestId></Error>",
        xml_escape(code),
        xml_escape(message),
        xml_escape(request_id)
    );
    let mut resp = http::Response::new(s3s::Body::from(body));
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    resp
}

/// S3's own wording for errors that `s3s` raises without a message (its
/// request parsing and signature checks), so every error body says what
/// went wrong as S3 would.
fn default_message(code: &str) -> &'static str {
    match code {
        "InvalidBucketName" => "The specified bucket is not valid.",
        "NoSuchBucket" => "The specified bucket does not exist.",
        "NoSuchKey" => "The specified key does not exist.",
        "NoSuchUpload" => "The specified multipart upload does not exist.",
        "AccessDenied" => "Access Denied",
        "InvalidAccessKeyId" => {
            "The AWS Access Key Id you provided does not exist in our records."
        }
        "SignatureDoesNotMatch" => {
            "The request signature we calculated does not match the signature you provided."
        }
        "RequestTimeTooSkewed" => {
            "The difference between the request time and the current time is too large."
        }
        "MissingContentLength" => "You must provide the Content-Length HTTP header.",
        "MalformedXML" => "The XML you provided was not well-formed or did not validate against our published schema.",
        "MethodNotAllowed" => "The specified method is not allowed against this resource.",
        "NotImplemented" => "A header you provided implies functionality that is not implemented.",
        "KeyTooLongError" => "Your key is too long.",
        "InvalidRange" => "The requested range is not satisfiable",
        "XAmzContentSHA256Mismatch" => {
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        }
        "EntityTooLarge" => "Your proposed upload exceeds the maximum allowed object size.",
        "InternalError" => "We encountered an internal error. Please try again.",
        _ => "The request is not valid.",
    }
}

/// An XML error body with `<RequestId>` added when it lacks one, and S3's
/// message for its code when it has none.
pub(crate) fn with_request_id(body: &[u8], request_id: &str) -> bytes::Bytes {
    let text = String::from_utf8_lossy(body);
    let Some(end) = text.rfind("</Error>") else {
        return bytes::Bytes::copy_from_slice(body);
    };
    let has_message = text.contains("<Message>") || text.contains("<Message/>");
    let has_id = text.contains("<RequestId>");
    if has_message && has_id {
        return bytes::Bytes::copy_from_slice(body);
    }
    let mut out = String::with_capacity(text.len() + 160);
    out.push_str(&text[..end]);
    if !has_message {
        let code = text
            .split_once("<Code>")
            .and_then(|(_, rest)| rest.split_once("</Code>"))
            .map_or("", |(code, _)| code);
        out.push_str("<Message>");
        out.push_str(&xml_escape(default_message(code)));
        out.push_str("</Message>");
    }
    if !has_id {
        out.push_str("<RequestId>");
        out.push_str(&xml_escape(request_id));
        out.push_str("</RequestId>");
    }
    out.push_str(&text[end..]);
    bytes::Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_goes_into_error_bodies_once() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code></Error>";
        let out = with_request_id(body, "ABC");
        assert!(String::from_utf8_lossy(&out).contains(
            "<Message>The specified key does not exist.</Message><RequestId>ABC</RequestId></Error>"
        ));
        let again = with_request_id(&out, "XYZ");
        assert_eq!(again, out);
        assert_eq!(with_request_id(b"", "A"), bytes::Bytes::new());
    }

    #[test]
    fn namenode_codes_become_s3_codes() {
        let api = |code: &str, status| ClientError::Api {
            status,
            code: code.into(),
            message: "m".into(),
            request_id: String::new(),
        };
        assert_eq!(
            *from_client(api("NoSuchFile", 404)).code(),
            S3ErrorCode::NoSuchKey
        );
        assert_eq!(
            *from_client(api("BucketNotEmpty", 409)).code(),
            S3ErrorCode::BucketNotEmpty
        );
        assert_eq!(
            *from_client(api("InvalidPartOrder", 400)).code(),
            S3ErrorCode::InvalidPartOrder
        );
        assert_eq!(
            *from_client(ClientError::Refused("md5".into())).code(),
            S3ErrorCode::BadDigest
        );
    }
}
