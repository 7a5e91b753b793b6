//! Multipart uploads: create, upload a part, complete, abort, and the
//! listings of parts and of uploads in progress. Sessions and parts live at
//! the namenode; a part's body goes through the same upload as a PUT
//! ([`super::put::put_body`]). UploadPartCopy is in [`super::copy`].

use std::collections::BTreeMap;

use blob_client::{
    Client, CompleteMultipart, CompletePart, CreateMultipart, FileInfo, ListMultipartQuery,
    ListPartsQuery, PartTarget,
};
use blob_common::checksum::multipart_etag;
use blob_common::UploadId;
use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result};

use super::args::{check_bucket, check_key, parse_upload, part_number, url_encode};
use super::attrs::{etag_of, object_meta, strong, timestamp};
use super::conditions::write_condition;
use super::put::{declared, declared_checksums, put_body};
use super::tagging::tag_meta;
use crate::error::{from_client, s3};
use crate::service::Gateway;

/// CreateMultipartUpload: opens a multipart upload at the namenode.
pub(crate) async fn create_multipart_upload(
    gw: &Gateway,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let client = gw.client(&req).await?;
    let i = &req.input;
    check_bucket(&i.bucket)?;
    check_key(&i.key)?;
    let mut meta = object_meta!(i);
    tag_meta(i.tagging.as_ref(), &mut meta)?;
    // The data key is chosen now; every part is sealed with it.
    let sealing = crate::sse::sealing_for_write(gw, &client, &req.headers, &i.bucket).await?;
    if let Some(s) = &sealing {
        meta.extend(s.meta().clone());
    }
    let described = crate::sse::describe(&meta, &req.headers);
    let info = client
        .create_multipart(&CreateMultipart {
            bucket: i.bucket.clone(),
            path: i.key.clone(),
            meta,
        })
        .await
        .map_err(from_client)?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(i.bucket.clone()),
        key: Some(i.key.clone()),
        upload_id: Some(info.upload.to_string()),
        server_side_encryption: described.sse,
        sse_customer_algorithm: described.customer_algorithm,
        sse_customer_key_md5: described.customer_key_md5,
        ..Default::default()
    }))
}

/// UploadPart: streams the body into one part.
pub(crate) async fn upload_part(
    gw: &Gateway,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let client = gw.client(&req).await?;
    let mut req = req;
    let blob = req.input.body.take();
    let i = &req.input;
    check_bucket(&i.bucket)?;
    check_key(&i.key)?;
    let number = part_number(i.part_number)?;
    let upload = parse_upload(&i.upload_id)?;
    let decl = declared(
        i.content_length,
        i.content_md5.clone(),
        declared_checksums!(i),
    );
    let (bucket, key) = (i.bucket.clone(), i.key.clone());
    let (mp, sealing) = part_sealing(&client, &upload, &bucket, &key, &req.headers).await?;
    let mut decl = decl;
    decl.sealing = sealing;
    let target = PartTarget { upload, number };
    let (_, etag) = put_body(
        gw,
        &client,
        &req,
        blob,
        &bucket,
        &key,
        BTreeMap::new(),
        Some(target),
        decl,
    )
    .await?;
    let d = crate::sse::describe(&mp.meta, &req.headers);
    Ok(S3Response::new(UploadPartOutput {
        e_tag: Some(strong(&etag)),
        server_side_encryption: d.sse,
        sse_customer_algorithm: d.customer_algorithm,
        sse_customer_key_md5: d.customer_key_md5,
        ..Default::default()
    }))
}

/// The multipart upload a part goes into, and how the part is sealed: as
/// its upload is, with the upload's SSE-S3 key or with the customer key
/// each part of an SSE-C upload must carry (checked as a read is).
pub(super) async fn part_sealing(
    client: &Client,
    upload: &UploadId,
    bucket: &str,
    key: &str,
    headers: &http::HeaderMap,
) -> S3Result<(
    blob_client::MultipartInfo,
    Option<blob_client::sse::Sealing>,
)> {
    let q = ListPartsQuery {
        after: None,
        limit: Some(1),
    };
    let mp = client
        .list_parts(upload, &q)
        .await
        .map_err(from_client)?
        .upload;
    crate::sse::check_read(&mp.meta, headers, false)?;
    let sealing = client
        .sealing_of(bucket, key, &mp.meta)
        .await
        .map_err(from_client)?;
    Ok((mp, sealing))
}

/// CompleteMultipartUpload: joins the listed parts into the object.
pub(crate) async fn complete_multipart_upload(
    gw: &Gateway,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let client = gw.client(&req).await?;
    let i = &req.input;
    check_bucket(&i.bucket)?;
    check_key(&i.key)?;
    let upload = parse_upload(&i.upload_id)?;
    let parts = i
        .multipart_upload
        .as_ref()
        .and_then(|m| m.parts.clone())
        .unwrap_or_default();
    if parts.is_empty() {
        return Err(s3(
            S3ErrorCode::MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema.",
        ));
    }
    let mut list = Vec::with_capacity(parts.len());
    for p in parts {
        let number = part_number(p.part_number.unwrap_or(0))?;
        let etag = p.e_tag.map(|e| e.value().to_string()).unwrap_or_default();
        list.push(CompletePart { number, etag });
    }
    let condition = write_condition(i.if_match.as_ref(), i.if_none_match.as_ref())?;
    let complete = CompleteMultipart {
        parts: list,
        min_part_size: gw.cfg.min_part_size,
        condition,
    };
    let file = match client.complete_multipart(&upload, &complete).await {
        Ok(file) => file,
        Err(e) if e.is_not_found() => {
            match completed_before(&client, &i.bucket, &i.key, &upload, &complete.parts).await {
                Some(file) => file,
                None => return Err(from_client(e)),
            }
        }
        Err(e) => return Err(from_client(e)),
    };
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        bucket: Some(i.bucket.clone()),
        key: Some(i.key.clone()),
        e_tag: Some(strong(&etag_of(&file))),
        location: Some(format!("/{}/{}", i.bucket, url_encode(&i.key))),
        server_side_encryption: crate::sse::describe(&file.meta, &req.headers).sse,
        version_id: file.version_id.clone(),
        ..Default::default()
    }))
}

/// The object a complete of `upload` with `parts` already made, when it is
/// still the current version of `bucket/key`: a client whose first
/// Complete succeeded but whose answer was lost retries it, and S3 answers
/// the retry as it answered the first.
async fn completed_before(
    client: &Client,
    bucket: &str,
    key: &str,
    upload: &UploadId,
    parts: &[CompletePart],
) -> Option<FileInfo> {
    let file = client.stat(bucket, key).await.ok()?;
    if &file.version != upload {
        return None;
    }
    let md5s = parts
        .iter()
        .map(|p| {
            let bytes = hex::decode(p.etag.trim_matches('"')).ok()?;
            <[u8; 16]>::try_from(bytes).ok()
        })
        .collect::<Option<Vec<_>>>()?;
    (etag_of(&file) == multipart_etag(&md5s)).then_some(file)
}

/// AbortMultipartUpload.
pub(crate) async fn abort_multipart_upload(
    gw: &Gateway,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let client = gw.client(&req).await?;
    check_bucket(&req.input.bucket)?;
    let upload = parse_upload(&req.input.upload_id)?;
    client.abort_multipart(&upload).await.map_err(from_client)?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

/// ListParts: the parts uploaded so far.
pub(crate) async fn list_parts(
    gw: &Gateway,
    req: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    let client = gw.client(&req).await?;
    let i = &req.input;
    check_bucket(&i.bucket)?;
    let upload = parse_upload(&i.upload_id)?;
    let max = i.max_parts.unwrap_or(1000).clamp(1, 1000);
    let after = i.part_number_marker.and_then(|m| u32::try_from(m).ok());
    let l = client
        .list_parts(
            &upload,
            &ListPartsQuery {
                after,
                limit: Some(max as usize),
            },
        )
        .await
        .map_err(from_client)?;
    let next = l.parts.last().map(|p| p.number as i32);
    let parts = l
        .parts
        .into_iter()
        .map(|p| Part {
            e_tag: Some(strong(&p.etag)),
            last_modified: Some(timestamp(p.created_ms)),
            part_number: Some(p.number as i32),
            size: Some(p.size as i64),
            ..Default::default()
        })
        .collect();
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(i.bucket.clone()),
        key: Some(i.key.clone()),
        upload_id: Some(i.upload_id.clone()),
        max_parts: Some(max),
        part_number_marker: i.part_number_marker,
        next_part_number_marker: next,
        is_truncated: Some(l.truncated),
        parts: Some(parts),
        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
        ..Default::default()
    }))
}

/// ListMultipartUploads, with `delimiter` roll-up into common prefixes.
pub(crate) async fn list_multipart_uploads(
    gw: &Gateway,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let client = gw.client(&req).await?;
    let i = &req.input;
    check_bucket(&i.bucket)?;
    let max = i.max_uploads.unwrap_or(1000).clamp(1, 1000) as usize;
    let prefix = i.prefix.clone().unwrap_or_default();
    let delimiter = i.delimiter.clone().filter(|d| !d.is_empty());
    // A marker that is a common prefix resumes after everything under it.
    let skip = i
        .key_marker
        .clone()
        .filter(|m| delimiter.as_ref().is_some_and(|d| m.ends_with(d.as_str())));
    let mut uploads = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut next: Option<(String, Option<String>)> = None;
    let mut truncated = false;
    let (mut after, mut after_upload) = (i.key_marker.clone(), i.upload_id_marker.clone());
    'pages: loop {
        let page = client
            .list_multipart(&ListMultipartQuery {
                bucket: i.bucket.clone(),
                prefix: i.prefix.clone(),
                after: after.clone(),
                after_upload: after_upload.clone(),
                limit: Some(1000),
            })
            .await
            .map_err(from_client)?;
        if let Some(u) = page.uploads.last() {
            after = Some(u.path.clone());
            after_upload = Some(u.upload.to_string());
        }
        for u in page.uploads {
            if skip
                .as_ref()
                .is_some_and(|p| u.path.starts_with(p.as_str()))
            {
                continue;
            }
            // Keys sort in order, so one common prefix's keys are adjacent.
            let rolled = delimiter.as_ref().and_then(|d| {
                let rest = u.path.get(prefix.len()..)?;
                let at = rest.find(d.as_str())?;
                Some(format!("{prefix}{}", &rest[..at + d.len()]))
            });
            if rolled.is_some() && prefixes.last() == rolled.as_ref() {
                continue;
            }
            if uploads.len() + prefixes.len() == max {
                truncated = true;
                break 'pages;
            }
            match rolled {
                Some(p) => {
                    next = Some((p.clone(), None));
                    prefixes.push(p);
                }
                None => {
                    next = Some((u.path.clone(), Some(u.upload.to_string())));
                    uploads.push(MultipartUpload {
                        initiated: Some(timestamp(u.created_ms)),
                        key: Some(u.path),
                        upload_id: Some(u.upload.to_string()),
                        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                        ..Default::default()
                    });
                }
            }
        }
        if !page.truncated {
            break;
        }
    }
    let (next_key, next_upload) = match next.filter(|_| truncated) {
        Some((k, u)) => (Some(k), u),
        None => (None, None),
    };
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(i.bucket.clone()),
        prefix: i.prefix.clone(),
        delimiter: delimiter.clone(),
        key_marker: i.key_marker.clone(),
        upload_id_marker: i.upload_id_marker.clone(),
        max_uploads: Some(max as i32),
        is_truncated: Some(truncated),
        next_key_marker: next_key,
        next_upload_id_marker: next_upload,
        uploads: Some(uploads),
        common_prefixes: (!prefixes.is_empty()).then(|| {
            prefixes
                .into_iter()
                .map(|p| CommonPrefix { prefix: Some(p) })
                .collect()
        }),
        ..Default::default()
    }))
}
