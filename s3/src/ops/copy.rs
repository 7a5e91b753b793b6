//! Server-side copies: CopyObject (a new file sharing the source's
//! chunks, with `x-amz-metadata-directive`) and UploadPartCopy (the whole
//! source shared as a part, or a byte range read and uploaded), both with
//! the `x-amz-copy-source-if-*` conditions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use blob_client::{CopyFile, CopyPart, PartTarget};
use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result};

use super::args::{check_bucket, check_key, parse_upload, part_number};
use super::attrs::{byte_attrs, etag_of, object_meta, strong, timestamp, ETAG};
use super::conditions::check_copy_conditions;
use super::put::MAX_PUT;
use super::tagging::{tag_meta, TAGGING};
use crate::admit;
use crate::body::{self, Digests};
use crate::error::{from_client, s3};
use crate::service::Gateway;

/// CopyObject: a new file sharing the source's chunks (no bytes copied).
pub(crate) async fn copy_object(
    gw: &Gateway,
    req: S3Request<CopyObjectInput>,
) -> S3Result<S3Response<CopyObjectOutput>> {
    let client = gw.client(&req).await?;
    let i = &req.input;
    check_bucket(&i.bucket)?;
    check_key(&i.key)?;
    let (src_bucket, src_key, src_version) = copy_source(&i.copy_source)?;
    check_bucket(&src_bucket)?;
    check_key(&src_key)?;
    let src = client
        .stat_version(&src_bucket, &src_key, src_version.as_deref())
        .await
        .map_err(from_client)?;
    crate::sse::check_read(&src.meta, &req.headers, true)?;
    check_copy_conditions(
        &src,
        i.copy_source_if_match.as_ref(),
        i.copy_source_if_none_match.as_ref(),
        i.copy_source_if_modified_since.as_ref(),
        i.copy_source_if_unmodified_since.as_ref(),
    )?;
    let replace = i
        .metadata_directive
        .as_ref()
        .is_some_and(|d| d.as_str().eq_ignore_ascii_case(MetadataDirective::REPLACE));
    // (Copying an older version over the current one restores it.)
    if src_bucket == i.bucket && src_key == i.key && !replace && src_version.is_none() {
        return Err(s3(
            S3ErrorCode::InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata.",
        ));
    }
    let mut meta = replace.then(|| {
        let mut m = object_meta!(i);
        m.extend(byte_attrs(&src));
        if let Some(t) = src.meta.get(TAGGING) {
            m.insert(TAGGING.into(), t.clone());
        }
        m
    });
    // Tags follow x-amz-tagging-directive, not the metadata directive.
    let replace_tags = i
        .tagging_directive
        .as_ref()
        .is_some_and(|d| d.as_str().eq_ignore_ascii_case(TaggingDirective::REPLACE));
    if replace_tags {
        let m = meta.get_or_insert_with(|| src.meta.clone());
        m.remove(TAGGING);
        tag_meta(i.tagging.as_ref(), m)?;
    }
    let file = match copy_sealing(gw, &client, &req.headers, &i.bucket, &src).await? {
        // Sealed as the source is (or both in clear): share its chunks.
        None => client
            .copy_file(&CopyFile {
                src_bucket,
                src_path: src_key,
                bucket: i.bucket.clone(),
                path: i.key.clone(),
                meta,
                src_version: src_version.clone(),
            })
            .await
            .map_err(from_client)?,
        // Another key or none: the bytes are read, opened and sealed anew.
        Some(sealing) => {
            let mut meta = meta.unwrap_or_else(|| src.meta.clone());
            meta.retain(|k, _| !blob_common::seal::is_seal_meta(k));
            let locs = match &src_version {
                Some(v) => client.locations_of_version(&src_bucket, &src_key, v).await,
                None => client.locations(&src_bucket, &src_key).await,
            }
            .map_err(from_client)?;
            let mut opts = gw.upload_options(meta);
            opts.sealing = sealing;
            opts.condition = None;
            let reader = source_client(&client, &req.headers);
            let range = 0..locs.file.size;
            stream_copy(gw, &reader, &client, locs, range, &i.bucket, &i.key, opts).await?
        }
    };
    let d = crate::sse::describe(&file.meta, &req.headers);
    Ok(S3Response::new(CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(strong(&etag_of(&file))),
            last_modified: Some(timestamp(file.created_ms)),
            ..Default::default()
        }),
        server_side_encryption: d.sse,
        sse_customer_algorithm: d.customer_algorithm,
        sse_customer_key_md5: d.customer_key_md5,
        version_id: file.version_id.clone(),
        copy_source_version_id: src.version_id.clone(),
        ..Default::default()
    }))
}

/// How a CopyObject's destination must be sealed when the source's chunks
/// cannot simply be shared: `None` when they can (the same SSE-C key, an
/// SSE-S3 source where SSE-S3 is asked for or nothing is, or both in
/// clear), else `Some(how)`, `Some(None)` being in clear.
async fn copy_sealing(
    gw: &Gateway,
    client: &blob_client::Client,
    headers: &http::HeaderMap,
    bucket: &str,
    src: &blob_client::FileInfo,
) -> S3Result<Option<Option<blob_client::sse::Sealing>>> {
    use blob_client::sse::sse_mode;
    use blob_common::seal::{SSE_C, SSE_S3};
    let src_mode = sse_mode(&src.meta);
    if let Some(key) = crate::sse::request_key(headers, false) {
        let same = src_mode == Some(SSE_C) && key.is_key_of(&src.meta);
        return Ok((!same).then(|| Some(blob_client::sse::Sealing::customer(&key))));
    }
    match src_mode {
        Some(SSE_S3) => Ok(None),
        Some(_) | None => {
            let wanted = crate::sse::sealing_for_write(gw, client, headers, bucket).await?;
            match (src_mode, wanted) {
                (None, None) => Ok(None),
                (_, wanted) => Ok(Some(wanted)),
            }
        }
    }
}

/// The handle a copy reads its source with: with the source's customer
/// key when the request gives one.
fn source_client(client: &blob_client::Client, headers: &http::HeaderMap) -> blob_client::Client {
    match crate::sse::request_key(headers, true) {
        Some(key) => client.with_customer_key(key),
        None => client.clone(),
    }
}

/// Reads `range` of the file `locs` describes with `reader` and uploads it
/// with `writer` as `opts` say, within the gateway's byte budget.
#[allow(clippy::too_many_arguments)]
async fn stream_copy(
    gw: &Gateway,
    reader: &blob_client::Client,
    writer: &blob_client::Client,
    locs: blob_client::FileLocations,
    range: std::ops::Range<u64>,
    bucket: &str,
    key: &str,
    opts: blob_client::UploadOptions,
) -> S3Result<blob_client::FileInfo> {
    // The read's window, and the upload's below, are reserved apart.
    let held = gw.reserve_read(&locs, range.start, range.end).await?;
    let stream = body::range_stream(
        reader.clone(),
        Arc::new(locs),
        (range.start, range.end),
        gw.cfg.parallel,
        held,
    )
    .await
    .map_err(from_client)?;
    let upload_held = gw
        .budget
        .admit(admit::upload_window(
            gw.cfg.parallel,
            gw.cfg.chunk_size,
            Some(range.end - range.start),
        ))
        .await
        .map_err(admit::slow_down)?;
    let digests = Arc::new(Mutex::new(Digests::new(&[])));
    let input = body::hashed(stream, digests.clone(), MAX_PUT);
    let mut opts = opts;
    if opts.part.is_some() {
        let d2 = digests.clone();
        opts.before_commit = Some(Arc::new(move |_| {
            let md5 = d2.lock().unwrap_or_else(|p| p.into_inner()).md5();
            let md5 = md5.ok_or("the source was not read to its end")?;
            Ok(BTreeMap::from([(ETAG.to_string(), hex::encode(md5))]))
        }));
    }
    let out = writer
        .upload(input, bucket, key, &opts)
        .await
        .map_err(from_client)?;
    drop(upload_held);
    Ok(out.file)
}

/// UploadPartCopy: a whole single-part source shares its chunks; a range (or a multipart source) is read and uploaded as the part.
pub(crate) async fn upload_part_copy(
    gw: &Gateway,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let client = gw.client(&req).await?;
    let i = &req.input;
    check_bucket(&i.bucket)?;
    check_key(&i.key)?;
    let number = part_number(i.part_number)?;
    let upload = parse_upload(&i.upload_id)?;
    let (src_bucket, src_key, src_version) = copy_source(&i.copy_source)?;
    check_bucket(&src_bucket)?;
    check_key(&src_key)?;
    let locs = match &src_version {
        Some(v) => client.locations_of_version(&src_bucket, &src_key, v).await,
        None => client.locations(&src_bucket, &src_key).await,
    }
    .map_err(from_client)?;
    let src = locs.file.clone();
    crate::sse::check_read(&src.meta, &req.headers, true)?;
    check_copy_conditions(
        &src,
        i.copy_source_if_match.as_ref(),
        i.copy_source_if_none_match.as_ref(),
        i.copy_source_if_modified_since.as_ref(),
        i.copy_source_if_unmodified_since.as_ref(),
    )?;
    let range = match &i.copy_source_range {
        Some(r) => parse_copy_range(r, src.size)?,
        None => 0..src.size,
    };
    if range.end - range.start > MAX_PUT {
        return Err(s3(S3ErrorCode::EntityTooLarge, "a part is at most 5 GiB"));
    }
    // The whole of a single-part object: share its chunks.
    // (Shared chunks are those of the current version.)
    if range == (0..src.size) && src_version.is_none() {
        match client
            .copy_part(
                &upload,
                &CopyPart {
                    number,
                    src_bucket: src_bucket.clone(),
                    src_path: src_key.clone(),
                },
            )
            .await
        {
            Ok(p) => {
                return Ok(S3Response::new(UploadPartCopyOutput {
                    copy_part_result: Some(CopyPartResult {
                        e_tag: Some(strong(&p.etag)),
                        last_modified: Some(timestamp(p.created_ms)),
                        ..Default::default()
                    }),
                    ..Default::default()
                }))
            }
            Err(e) if e.code() == Some("NotCopyable") => {}
            Err(e) => return Err(from_client(e)),
        }
    }
    // Otherwise read the range and upload it as the part (chunks the
    // bucket already holds are not sent again), sealed as the upload is.
    let (_, sealing) =
        super::multipart::part_sealing(&client, &upload, &i.bucket, &i.key, &req.headers).await?;
    let mut opts = gw.upload_options(BTreeMap::new());
    opts.part = Some(PartTarget { upload, number });
    opts.sealing = sealing;
    let reader = source_client(&client, &req.headers);
    let file = stream_copy(gw, &reader, &client, locs, range, &i.bucket, &i.key, opts).await?;
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(strong(&etag_of(&file))),
            last_modified: Some(timestamp(file.created_ms)),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

/// The bucket, key and version (if any) of `x-amz-copy-source`.
fn copy_source(src: &CopySource) -> S3Result<(String, String, Option<String>)> {
    match src {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => Ok((
            bucket.to_string(),
            key.to_string(),
            version_id.as_deref().map(str::to_string),
        )),
        _ => Err(s3(
            S3ErrorCode::InvalidArgument,
            "copy from an access point is not supported",
        )),
    }
}

/// `bytes=first-last` of `x-amz-copy-source-range`, within the source.
fn parse_copy_range(r: &str, size: u64) -> S3Result<std::ops::Range<u64>> {
    let bad = || {
        s3(S3ErrorCode::InvalidArgument, "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy")
    };
    let (a, b) = r
        .trim()
        .strip_prefix("bytes=")
        .and_then(|s| s.split_once('-'))
        .ok_or_else(bad)?;
    let first: u64 = a.parse().map_err(|_| bad())?;
    let last: u64 = b.parse().map_err(|_| bad())?;
    if first > last || last >= size {
        return Err(s3(
            S3ErrorCode::InvalidRange,
            "The requested range is not satisfiable",
        ));
    }
    Ok(first..last + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges_parse_and_check() {
        assert_eq!(parse_copy_range("bytes=0-9", 10).ok(), Some(0..10));
        assert!(parse_copy_range("bytes=0-10", 10).is_err());
        assert!(parse_copy_range("0-1", 10).is_err());
        assert!(parse_copy_range("bytes=5-1", 10).is_err());
    }
}
