//! Reads: GetObject (whole or a range, with conditional headers and
//! response-header overrides) and HeadObject. The body streams from the
//! datanodes a few chunks at a time, within a read window reserved in the
//! gateway's byte budget.

use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result};

use super::args::{check_bucket, check_key};
use super::attrs::{
    etag_of, strong, timestamp, user_meta, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_ENCODING,
    CONTENT_LANGUAGE, CONTENT_TYPE,
};
use super::conditions::check_conditions;
use crate::body;
use crate::error::{from_client, s3};
use crate::service::Gateway;

/// Sets the stored-object headers that GetObject and HeadObject answer
/// alike (their output types are distinct but share these field names).
macro_rules! fill_headers {
    ($out:ident, $file:ident) => {
        $out.e_tag = Some(strong(&etag_of(&$file)));
        $out.last_modified = Some(timestamp($file.created_ms));
        $out.content_type = Some(
            $file
                .meta
                .get(CONTENT_TYPE)
                .cloned()
                .unwrap_or_else(|| "binary/octet-stream".into()),
        );
        $out.metadata = user_meta(&$file);
        $out.content_disposition = $file.meta.get(CONTENT_DISPOSITION).cloned();
        $out.content_encoding = $file.meta.get(CONTENT_ENCODING).cloned();
        $out.content_language = $file.meta.get(CONTENT_LANGUAGE).cloned();
        $out.cache_control = $file.meta.get(CACHE_CONTROL).cloned();
    };
}

/// GetObject: the object or a range of it, streamed from the datanodes (or an edge).
pub(crate) async fn get_object(
    gw: &Gateway,
    req: S3Request<GetObjectInput>,
) -> S3Result<S3Response<GetObjectOutput>> {
    let client = gw.client(&req).await?;
    let i = &req.input;
    check_bucket(&i.bucket)?;
    check_key(&i.key)?;
    let locs = gw
        .locations
        .get(&client, &i.bucket, &i.key)
        .await
        .map_err(from_client)?;
    let file = locs.file.clone();
    check_conditions(
        &file,
        i.if_match.as_ref(),
        i.if_none_match.as_ref(),
        i.if_modified_since.as_ref(),
        i.if_unmodified_since.as_ref(),
    )?;
    let size = file.size;
    let (range, content_range) = match &i.range {
        Some(r) => {
            let r = r.check(size).map_err(|_| {
                s3(
                    S3ErrorCode::InvalidRange,
                    "The requested range is not satisfiable",
                )
            })?;
            let cr = format!("bytes {}-{}/{size}", r.start, r.end - 1);
            (r, Some(cr))
        }
        None => (0..size, None),
    };
    let held = gw.reserve_read(&locs, range.start, range.end).await?;
    let stream = body::range_stream(
        client,
        locs,
        (range.start, range.end),
        gw.cfg.parallel,
        held,
    )
    .await
    .map_err(from_client)?;
    let mut out = GetObjectOutput {
        body: Some(StreamingBlob::wrap(stream)),
        content_length: Some((range.end - range.start) as i64),
        content_range,
        accept_ranges: Some("bytes".into()),
        ..Default::default()
    };
    fill_headers!(out, file);
    if let Some(v) = &i.response_content_type {
        out.content_type = Some(v.clone());
    }
    if let Some(v) = &i.response_content_disposition {
        out.content_disposition = Some(v.clone());
    }
    if let Some(v) = &i.response_cache_control {
        out.cache_control = Some(v.clone());
    }
    if let Some(v) = &i.response_content_encoding {
        out.content_encoding = Some(v.clone());
    }
    let mut resp = S3Response::new(out);
    if i.range.is_some() {
        resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
    }
    Ok(resp)
}

/// HeadObject: an object's attributes, without its body.
pub(crate) async fn head_object(
    gw: &Gateway,
    req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let client = gw.client(&req).await?;
    let i = &req.input;
    check_bucket(&i.bucket)?;
    check_key(&i.key)?;
    let file = client.stat(&i.bucket, &i.key).await.map_err(from_client)?;
    check_conditions(
        &file,
        i.if_match.as_ref(),
        i.if_none_match.as_ref(),
        i.if_modified_since.as_ref(),
        i.if_unmodified_since.as_ref(),
    )?;
    let mut len = file.size;
    let mut content_range = None;
    if let Some(r) = &i.range {
        let r = r.check(file.size).map_err(|_| {
            s3(
                S3ErrorCode::InvalidRange,
                "The requested range is not satisfiable",
            )
        })?;
        content_range = Some(format!("bytes {}-{}/{}", r.start, r.end - 1, file.size));
        len = r.end - r.start;
    }
    let mut out = HeadObjectOutput {
        content_length: Some(len as i64),
        content_range,
        accept_ranges: Some("bytes".into()),
        ..Default::default()
    };
    fill_headers!(out, file);
    if let Some(n) = etag_of(&file)
        .split_once('-')
        .and_then(|(_, n)| n.parse().ok())
    {
        out.parts_count = Some(n);
    }
    Ok(S3Response::new(out))
}
