//! Requests AWS accepts that `s3s` refuses as sent, made acceptable before
//! (or after) `s3s` sees them:
//!
//! - A SigV4 request signed with a `Date` header and no `x-amz-date`
//!   (allowed by SigV4): the signing time is taken from `Date` and given
//!   to `s3s` as `x-amz-date`. That header is not among the signed ones,
//!   so the signature is unchanged.
//! - A GET or HEAD with a `Range` header that does not parse: RFC 9110
//!   and S3 ignore it and answer with the whole object; `s3s` refuses the
//!   request while decoding its input, after the signature was checked.
//!   The first pass records who signed ([`Signer`]); the request is then
//!   served again without the `Range` header, as that signer
//!   ([`Authenticated`]), with its (already checked) signature removed.
//! - A PUT whose body comes with `Transfer-Encoding: chunked` and no
//!   `Content-Length` (and is not aws-chunked): `s3s` wants the length to
//!   check a SigV4 signature. The first pass checks the signature with
//!   an empty body standing in and stops at the access check
//!   ([`ProbeOnly`]); the second streams the real body as the signer. A
//!   signed payload hash is then checked by the gateway against the body
//!   ([`Authenticated::payload_sha256`]) before the commit.

use std::sync::{Arc, OnceLock};

use http::header::{AUTHORIZATION, DATE, RANGE};
use http::{HeaderMap, HeaderValue, Method};
use s3s::dto::{Timestamp, TimestampFormat};

/// Filled by the access check with the access key whose signature
/// `s3s` verified, on requests that may need a second pass.
#[derive(Debug, Clone, Default)]
pub(crate) struct Signer(pub(crate) Arc<OnceLock<String>>);

/// Set only by the gateway itself on a second pass: the request was
/// signed by `access_key`, whose signature `s3s` verified in the first
/// pass, with `region` in its credential scope and the original `query`
/// (for the checks `s3s` leaves to the gateway).
#[derive(Debug, Clone)]
pub(crate) struct Authenticated {
    pub(crate) access_key: String,
    pub(crate) region: Option<String>,
    pub(crate) query: Option<String>,
    /// The body's SHA-256 the signature covered (`x-amz-content-sha256`
    /// as hex), which `s3s` did not check in the first pass.
    pub(crate) payload_sha256: Option<String>,
}

/// Marks a first pass that only authenticates: the access check records
/// the signer and stops the request there.
#[derive(Debug, Clone)]
pub(crate) struct ProbeOnly;

/// Why a request may need a second pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// A read whose `Range` does not parse: served without it.
    IgnoreRange,
    /// A streamed body of unknown length: authenticated first.
    UnknownLength,
}

/// Whether `s3s` would refuse a request that S3 accepts, and why.
pub(crate) fn second_pass_needed(method: &Method, headers: &HeaderMap) -> Option<Pass> {
    if has_invalid_range(method, headers) {
        return Some(Pass::IgnoreRange);
    }
    let chunked = headers
        .get(http::header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let streaming = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("STREAMING-"));
    (*method == Method::PUT
        && chunked
        && !headers.contains_key(http::header::CONTENT_LENGTH)
        && !streaming)
        .then_some(Pass::UnknownLength)
}

/// The region of a SigV4 credential scope (`AK/date/region/s3/aws4_request`),
/// from the `Authorization` header or the `X-Amz-Credential` parameter.
fn signed_region(uri: &http::Uri, headers: &HeaderMap) -> Option<String> {
    let from_header = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("Credential=").nth(1))
        .map(|c| c.split([',', ' ']).next().unwrap_or_default().to_string());
    let credential = from_header.or_else(|| {
        uri.query()?
            .split('&')
            .find_map(|kv| kv.strip_prefix("X-Amz-Credential="))
            .map(|c| {
                percent_encoding::percent_decode_str(c)
                    .decode_utf8_lossy()
                    .into_owned()
            })
    })?;
    credential.split('/').nth(2).map(str::to_string)
}

/// Adds `x-amz-date` from `Date` to a header-signed SigV4 request that has
/// only the latter.
pub(crate) fn date_as_amz_date(headers: &mut HeaderMap) {
    let sigv4 = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 "));
    if !sigv4 || headers.contains_key("x-amz-date") {
        return;
    }
    let Some(date) = headers.get(DATE).and_then(|v| v.to_str().ok()) else {
        return;
    };
    let Ok(t) = Timestamp::parse(TimestampFormat::HttpDate, date.trim()) else {
        return;
    };
    let t = time::OffsetDateTime::from(t);
    let amz = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if let Ok(v) = HeaderValue::from_str(&amz) {
        headers.insert("x-amz-date", v);
    }
}

/// Whether a request carries a `Range` that S3 would ignore: a GET or
/// HEAD whose `Range` does not parse.
fn has_invalid_range(method: &Method, headers: &HeaderMap) -> bool {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return false;
    }
    let Some(v) = headers.get(RANGE) else {
        return false;
    };
    v.to_str()
        .map_or(true, |s| s3s::dto::Range::parse(s).is_err())
}

/// The second pass of a request `s3s` refused (or only authenticated) in
/// the first: the same method, path and headers, without the signature
/// (header or query), which `s3s` already checked, and for
/// [`Pass::IgnoreRange`] without the `Range`.
pub(crate) fn second_pass(
    pass: Pass,
    method: Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    signer: String,
    body: s3s::Body,
) -> http::Request<s3s::Body> {
    let region = signed_region(uri, headers);
    let payload_sha256 = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase);
    let mut headers = headers.clone();
    if pass == Pass::IgnoreRange {
        headers.remove(RANGE);
    }
    headers.remove(AUTHORIZATION);
    let query: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|kv| {
            let name = kv.split('=').next().unwrap_or_default();
            !(name.is_empty()
                || name.starts_with("X-Amz-")
                || matches!(name, "AWSAccessKeyId" | "Signature" | "Expires"))
        })
        .collect();
    let path_and_query = if query.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{}", uri.path(), query.join("&"))
    };
    let mut parts = http::Request::new(s3s::Body::empty()).into_parts().0;
    parts.method = method;
    parts.uri = path_and_query.parse().unwrap_or_else(|_| uri.clone());
    parts.headers = headers;
    parts.extensions.insert(Authenticated {
        access_key: signer,
        region,
        query: uri.query().map(str::to_string),
        payload_sha256,
    });
    http::Request::from_parts(parts, body)
}

/// Whether a request is GetObjectAttributes (`GET ?attributes`).
pub(crate) fn is_get_attributes(method: &Method, uri: &http::Uri) -> bool {
    *method == Method::GET
        && uri.query().is_some_and(|q| {
            q.split('&')
                .any(|kv| kv == "attributes" || kv == "attributes=")
        })
}

/// GetObjectAttributes gives the ETag without quotes (unlike every other
/// answer, which `s3s` serializes for): the quotes are taken off the
/// answer's `<ETag>`.
pub(crate) fn unquote_attributes_etag(xml: &[u8]) -> Option<bytes::Bytes> {
    let text = std::str::from_utf8(xml).ok()?;
    let start = text.find("<ETag>\"")? + "<ETag>".len();
    let end = start + text[start..].find("\"</ETag>")?;
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..start]);
    out.push_str(&text[start + 1..end]);
    out.push_str(&text[end + 1..]);
    Some(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_header_stands_for_x_amz_date_in_sigv4() {
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=K/20261201/us-east-1/s3/aws4_request, SignedHeaders=date;host, Signature=00"),
        );
        h.insert(
            DATE,
            HeaderValue::from_static("Tue, 01 Dec 2026 23:05:09 GMT"),
        );
        date_as_amz_date(&mut h);
        assert_eq!(
            h.get("x-amz-date").map(|v| v.as_bytes()),
            Some(&b"20261201T230509Z"[..])
        );
        // An x-amz-date already there, or no SigV4 header: left alone.
        h.insert("x-amz-date", HeaderValue::from_static("20200101T000000Z"));
        date_as_amz_date(&mut h);
        assert_eq!(
            h.get("x-amz-date").map(|v| v.as_bytes()),
            Some(&b"20200101T000000Z"[..])
        );
        let mut v2 = HeaderMap::new();
        v2.insert(AUTHORIZATION, HeaderValue::from_static("AWS K:c2ln"));
        v2.insert(
            DATE,
            HeaderValue::from_static("Tue, 01 Dec 2026 23:05:09 GMT"),
        );
        date_as_amz_date(&mut v2);
        assert!(!v2.contains_key("x-amz-date"));
    }

    #[test]
    fn only_unparseable_ranges_of_reads_are_ignored() {
        let with = |r: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(RANGE, HeaderValue::from_static(r));
            h
        };
        for bad in [
            "bytes=abc",
            "bytes=5-2",
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=",
        ] {
            assert!(has_invalid_range(&Method::GET, &with(bad)), "{bad}");
            assert!(has_invalid_range(&Method::HEAD, &with(bad)), "{bad}");
            assert!(!has_invalid_range(&Method::PUT, &with(bad)), "{bad}");
        }
        for good in ["bytes=0-1", "bytes=-5", "bytes=7-", "bytes=100-200"] {
            assert!(!has_invalid_range(&Method::GET, &with(good)), "{good}");
        }
        assert!(!has_invalid_range(&Method::GET, &HeaderMap::new()));
    }

    #[test]
    fn attribute_etags_lose_their_quotes() {
        let xml = br#"<GetObjectAttributesResponse><ETag>"abc-2"</ETag><ObjectSize>5</ObjectSize></GetObjectAttributesResponse>"#;
        assert_eq!(
            unquote_attributes_etag(xml).as_deref(),
            Some(&br#"<GetObjectAttributesResponse><ETag>abc-2</ETag><ObjectSize>5</ObjectSize></GetObjectAttributesResponse>"#[..])
        );
        assert_eq!(unquote_attributes_etag(b"<X><Size>1</Size></X>"), None);
        let get = |q: &str| is_get_attributes(&Method::GET, &q.parse().expect("uri"));
        assert!(get("/b/k?attributes"));
        assert!(!get("/b/k?attributesx"));
        assert!(!get("/b/k"));
    }

    #[test]
    fn only_plain_chunked_puts_of_unknown_length_are_authenticated_first() {
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        let te = ("transfer-encoding", "chunked");
        assert_eq!(
            second_pass_needed(&Method::PUT, &with(&[te])),
            Some(Pass::UnknownLength)
        );
        assert_eq!(
            second_pass_needed(&Method::PUT, &with(&[te, ("content-length", "5")])),
            None
        );
        let streaming = ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER");
        assert_eq!(
            second_pass_needed(&Method::PUT, &with(&[te, streaming])),
            None
        );
        assert_eq!(second_pass_needed(&Method::POST, &with(&[te])), None);
        assert_eq!(second_pass_needed(&Method::PUT, &HeaderMap::new()), None);
        assert_eq!(
            second_pass_needed(&Method::GET, &with(&[("range", "bytes=x")])),
            Some(Pass::IgnoreRange)
        );
    }

    #[test]
    fn the_second_pass_drops_range_and_signature_only() {
        let mut h = HeaderMap::new();
        h.insert(RANGE, HeaderValue::from_static("bytes=x"));
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("AWS4-HMAC-SHA256 ..."),
        );
        h.insert("if-match", HeaderValue::from_static("\"e\""));
        let uri: http::Uri = "/b/k?partNumber=2&X-Amz-Signature=00&X-Amz-Date=1&Signature=x\
            &X-Amz-Credential=AK%2F20261201%2Feu-west-1%2Fs3%2Faws4_request"
            .parse()
            .expect("uri");
        let req = second_pass(
            Pass::IgnoreRange,
            Method::GET,
            &uri,
            &h,
            "AK".into(),
            s3s::Body::empty(),
        );
        assert_eq!(req.uri().to_string(), "/b/k?partNumber=2");
        assert!(!req.headers().contains_key(RANGE));
        assert!(!req.headers().contains_key(AUTHORIZATION));
        assert!(req.headers().contains_key("if-match"));
        let a = req.extensions().get::<Authenticated>().expect("signer");
        assert_eq!(a.access_key, "AK");
        // The credential's region and the original query stay for the
        // gateway's own checks.
        assert_eq!(a.region.as_deref(), Some("eu-west-1"));
        assert_eq!(a.query.as_deref(), uri.query());
        let signed = HeaderMap::from_iter([(
            AUTHORIZATION,
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AK/20261201/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
            ),
        )]);
        assert_eq!(
            signed_region(&"/b/k".parse().expect("uri"), &signed).as_deref(),
            Some("us-east-1")
        );
    }
}
