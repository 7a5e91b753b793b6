//! Reads: GetObject (whole or a range, with conditional headers and
//! response-header overrides) and HeadObject. The body streams from the
//! datanodes a few chunks at a time, within a read window reserved in the
//! gateway's byte budget.

use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result};

use super::args::{check_bucket, check_key};
use std::ops::Range as Span;

use blob_client::{decode_part_sizes, FileInfo, PART_SIZES};
use blob_common::proto::multipart::MAX_PARTS;

use super::attrs::{
    checksums_of, etag_of, expires_of, strong, timestamp, user_meta, CACHE_CONTROL,
    CONTENT_DISPOSITION, CONTENT_ENCODING, CONTENT_LANGUAGE, CONTENT_TYPE,
};
use super::conditions::check_conditions;
use super::tagging::tags_of;
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
        $out.expires = expires_of(&$file);
    };
    ($out:ident, $file:ident, $headers:expr) => {
        fill_headers!($out, $file);
        $out.version_id = $file.version_id.clone();
        let d = crate::sse::describe(&$file.meta, $headers);
        $out.server_side_encryption = d.sse;
        $out.sse_customer_algorithm = d.customer_algorithm;
        $out.sse_customer_key_md5 = d.customer_key_md5;
    };
}

/// Sets the kept checksums of the whole object when the client asked for
/// them (`x-amz-checksum-mode: ENABLED`) and reads all of it.
macro_rules! fill_checksums {
    ($out:ident, $file:ident, $mode:expr, $whole:expr) => {
        let enabled = $mode
            .as_ref()
            .is_some_and(|m: &ChecksumMode| m.as_str().eq_ignore_ascii_case("enabled"));
        if let Some(c) = checksums_of(&$file).filter(|_| enabled && $whole) {
            $out.checksum_crc32 = c.checksum_crc32;
            $out.checksum_crc32c = c.checksum_crc32c;
            $out.checksum_crc64nvme = c.checksum_crc64nvme;
            $out.checksum_sha1 = c.checksum_sha1;
            $out.checksum_sha256 = c.checksum_sha256;
            $out.checksum_type = c.checksum_type;
        }
    };
}

/// What a GET or HEAD answers for: the bytes, and for a range or a part,
/// its `Content-Range` (a 206); for a part of a multipart object, the
/// object's part count (`x-amz-mp-parts-count`).
struct Selected {
    span: Span<u64>,
    content_range: Option<String>,
    parts_count: Option<i32>,
}

/// The bytes of `file` a request selects with its `Range` header or its
/// `partNumber` (not both, as in S3): a part of a multipart object by the
/// sizes its parts had; part 1 of any other object is all of it.
fn select(file: &FileInfo, range: Option<&Range>, part: Option<i32>) -> S3Result<Selected> {
    let size = file.size;
    let parts = file.meta.get(PART_SIZES).and_then(|s| decode_part_sizes(s));
    let parts_count = parts
        .as_ref()
        .filter(|_| part.is_some())
        .map(|p| p.len() as i32);
    let span = match (range, part) {
        (None, None) => {
            return Ok(Selected {
                span: 0..size,
                content_range: None,
                parts_count,
            })
        }
        (Some(_), Some(_)) => {
            return Err(s3(
                S3ErrorCode::InvalidRequest,
                "Cannot specify both Range header and partNumber query parameter",
            ))
        }
        (Some(r), None) => r.check(size).map_err(|_| {
            s3(
                S3ErrorCode::InvalidRange,
                "The requested range is not satisfiable",
            )
        })?,
        (None, Some(n)) => {
            if !(1..=MAX_PARTS as i32).contains(&n) {
                return Err(s3(
                    S3ErrorCode::InvalidArgument,
                    format!("Part number must be an integer between 1 and {MAX_PARTS}, inclusive"),
                ));
            }
            // An object of several parts written before their sizes
            // were kept has no part 1 that is all of it.
            let multipart = etag_of(file).contains('-');
            let sizes = match &parts {
                Some(sizes) => sizes.clone(),
                None if !multipart => vec![size],
                None => Vec::new(),
            };
            let Some(len) = sizes.get(n as usize - 1) else {
                let mut e = s3(
                    S3ErrorCode::Custom("InvalidPartNumber".into()),
                    "The requested partnumber is not satisfiable",
                );
                e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
                return Err(e);
            };
            let start: u64 = sizes[..n as usize - 1].iter().sum();
            start..start + len
        }
    };
    let content_range = if span.is_empty() {
        // Only part 1 of an empty object: nothing to give a range of.
        None
    } else {
        Some(format!("bytes {}-{}/{size}", span.start, span.end - 1))
    };
    Ok(Selected {
        span,
        content_range,
        parts_count,
    })
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
    let locs = match &i.version_id {
        // One version: not what the location cache keeps.
        Some(v) => std::sync::Arc::new(
            client
                .locations_of_version(&i.bucket, &i.key, v)
                .await
                .map_err(from_client)?,
        ),
        None => gw
            .locations
            .get(&client, &i.bucket, &i.key)
            .await
            .map_err(from_client)?,
    };
    let file = locs.file.clone();
    crate::sse::check_read(&file.meta, &req.headers, false)?;
    check_conditions(
        &file,
        i.if_match.as_ref(),
        i.if_none_match.as_ref(),
        i.if_modified_since.as_ref(),
        i.if_unmodified_since.as_ref(),
    )?;
    let Selected {
        span: range,
        content_range,
        parts_count,
    } = select(&file, i.range.as_ref(), i.part_number)?;
    let partial = content_range.is_some();
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
    fill_headers!(out, file, &req.headers);
    fill_checksums!(
        out,
        file,
        i.checksum_mode,
        range.end - range.start == file.size
    );
    let tags = tags_of(&file).len();
    out.tag_count = (tags > 0).then_some(tags as i32);
    out.parts_count = parts_count;
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
    if partial {
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
    let file = client
        .stat_version(&i.bucket, &i.key, i.version_id.as_deref())
        .await
        .map_err(from_client)?;
    crate::sse::check_read(&file.meta, &req.headers, false)?;
    check_conditions(
        &file,
        i.if_match.as_ref(),
        i.if_none_match.as_ref(),
        i.if_modified_since.as_ref(),
        i.if_unmodified_since.as_ref(),
    )?;
    let Selected {
        span,
        content_range,
        parts_count,
    } = select(&file, i.range.as_ref(), i.part_number)?;
    let partial = content_range.is_some();
    let mut out = HeadObjectOutput {
        content_length: Some((span.end - span.start) as i64),
        content_range,
        accept_ranges: Some("bytes".into()),
        ..Default::default()
    };
    fill_headers!(out, file, &req.headers);
    fill_checksums!(
        out,
        file,
        i.checksum_mode,
        span.end - span.start == file.size
    );
    out.parts_count = parts_count;
    let mut resp = S3Response::new(out);
    if partial {
        resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
    }
    Ok(resp)
}

/// GetObjectAttributes: the attributes asked for (ETag, Checksum,
/// ObjectParts, ObjectSize, StorageClass), without the body. Parts are
/// listed from the sizes kept at completion, `max-parts` at a time.
pub(crate) async fn get_object_attributes(
    gw: &Gateway,
    req: S3Request<GetObjectAttributesInput>,
) -> S3Result<S3Response<GetObjectAttributesOutput>> {
    let client = gw.client(&req).await?;
    let i = &req.input;
    check_bucket(&i.bucket)?;
    check_key(&i.key)?;
    let file = client.stat(&i.bucket, &i.key).await.map_err(from_client)?;
    crate::sse::check_read(&file.meta, &req.headers, false)?;
    // One header, `ETag,ObjectSize`, may arrive as one element.
    let wants = |name: &str| {
        i.object_attributes
            .iter()
            .flat_map(|a| a.as_str().split(','))
            .any(|a| a.trim().eq_ignore_ascii_case(name))
    };
    let mut out = GetObjectAttributesOutput {
        last_modified: Some(timestamp(file.created_ms)),
        ..Default::default()
    };
    if wants(ObjectAttributes::ETAG) {
        // Unquoted here, unlike the ETag header.
        out.e_tag = Some(ETag::Strong(etag_of(&file)));
    }
    if wants(ObjectAttributes::OBJECT_SIZE) {
        out.object_size = Some(file.size as i64);
    }
    if wants(ObjectAttributes::STORAGE_CLASS) {
        out.storage_class = Some(StorageClass::from_static(StorageClass::STANDARD));
    }
    if wants(ObjectAttributes::CHECKSUM) {
        out.checksum = checksums_of(&file);
    }
    let sizes = file.meta.get(PART_SIZES).and_then(|s| decode_part_sizes(s));
    if let Some(sizes) = sizes.filter(|_| wants(ObjectAttributes::OBJECT_PARTS)) {
        let max = i.max_parts.unwrap_or(1000).clamp(1, 1000) as usize;
        let after = i.part_number_marker.unwrap_or(0).max(0) as usize;
        let parts: Vec<ObjectPart> = sizes
            .iter()
            .enumerate()
            .skip(after)
            .take(max)
            .map(|(n, size)| ObjectPart {
                part_number: Some(n as i32 + 1),
                size: Some(*size as i64),
                ..Default::default()
            })
            .collect();
        let last = parts.last().and_then(|p| p.part_number);
        let truncated = after + parts.len() < sizes.len();
        out.object_parts = Some(GetObjectAttributesParts {
            total_parts_count: Some(sizes.len() as i32),
            part_number_marker: i.part_number_marker,
            next_part_number_marker: last.filter(|_| truncated),
            max_parts: Some(max as i32),
            is_truncated: Some(truncated),
            parts: Some(parts),
        });
    }
    Ok(S3Response::new(out))
}
