"""Drives the S3 gateway with boto3 at its defaults (flexible checksums on).

Run by tests/cluster/s3.rs with AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY and AWS_REGION set for a test cluster, and
MIN_PART_SIZE set to the gateway's multipart minimum. Prints one line per
check and exits non-zero when any failed.
"""

import concurrent.futures
import datetime
import hashlib
import os
import sys
import time
import urllib.error
import urllib.request

import boto3
import botocore.config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["AWS_ENDPOINT_URL"]
MIN_PART = int(os.environ.get("MIN_PART_SIZE", str(5 << 20)))
s3 = boto3.client("s3", endpoint_url=ENDPOINT)
passed, failed = 0, 0


def check(name, fn):
    global passed, failed
    try:
        fn()
        passed += 1
        print(f"ok   {name}", flush=True)
    except Exception as e:  # noqa: BLE001 - report every failure and go on
        failed += 1
        print(f"FAIL {name}: {e!r}", flush=True)


def error_code(fn):
    try:
        fn()
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("expected an error")


def eq(a, b):
    if a != b:
        raise AssertionError(f"{a!r} != {b!r}")


def data(n, seed=1):
    out = bytearray()
    x = seed
    while len(out) < n:
        x = hashlib.sha256(x.to_bytes(8, "little") if isinstance(x, int) else x).digest()
        out += x
    return bytes(out[:n])


B = "boto-suite"
CHUNK = 8 << 20  # the gateway's chunk size (its default)


def buckets():
    s3.create_bucket(Bucket=B)
    s3.head_bucket(Bucket=B)
    assert B in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    loc = s3.get_bucket_location(Bucket=B).get("LocationConstraint")
    assert loc in (None, "", "us-east-1"), loc
    # us-east-1 answers a CreateBucket of a bucket one owns with 200.
    eq(s3.create_bucket(Bucket=B)["ResponseMetadata"]["HTTPStatusCode"], 200)
    eq(error_code(lambda: s3.head_bucket(Bucket="no-such-bucket-x"))[1], 404)


def put_get_metadata():
    body = data(300_000)
    r = s3.put_object(Bucket=B, Key="meta/obj.bin", Body=body, ContentType="video/mp4",
                      ContentDisposition="attachment; filename=x.mp4", CacheControl="max-age=60",
                      ContentEncoding="identity", Metadata={"Camera": "A7", "take": "3"})
    eq(r["ETag"].strip('"'), hashlib.md5(body).hexdigest())
    g = s3.get_object(Bucket=B, Key="meta/obj.bin")
    eq(g["Body"].read(), body)
    eq(g["ContentType"], "video/mp4")
    eq(g["ContentDisposition"], "attachment; filename=x.mp4")
    eq(g["CacheControl"], "max-age=60")
    eq(g["Metadata"], {"camera": "A7", "take": "3"})
    h = s3.head_object(Bucket=B, Key="meta/obj.bin")
    eq(h["ContentLength"], len(body))
    eq(h["ETag"], r["ETag"])


def ranges():
    body = data(100_000, 2)
    s3.put_object(Bucket=B, Key="range.bin", Body=body)
    eq(s3.get_object(Bucket=B, Key="range.bin", Range="bytes=10-19")["Body"].read(), body[10:20])
    eq(s3.get_object(Bucket=B, Key="range.bin", Range="bytes=-5")["Body"].read(), body[-5:])
    eq(s3.get_object(Bucket=B, Key="range.bin", Range="bytes=99990-")["Body"].read(), body[99990:])
    g = s3.get_object(Bucket=B, Key="range.bin", Range="bytes=5-")
    eq(g["ContentRange"], "bytes 5-99999/100000")
    eq(error_code(lambda: s3.get_object(Bucket=B, Key="range.bin", Range="bytes=200000-")),
       ("InvalidRange", 416))


def conditionals():
    body = b"conditional body"
    etag = s3.put_object(Bucket=B, Key="cond", Body=body)["ETag"]
    eq(s3.get_object(Bucket=B, Key="cond", IfMatch=etag)["Body"].read(), body)
    eq(error_code(lambda: s3.get_object(Bucket=B, Key="cond", IfMatch='"0000"'))[1], 412)
    eq(error_code(lambda: s3.get_object(Bucket=B, Key="cond", IfNoneMatch=etag))[1], 304)
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    past = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    eq(error_code(lambda: s3.get_object(Bucket=B, Key="cond", IfModifiedSince=future))[1], 304)
    eq(error_code(lambda: s3.get_object(Bucket=B, Key="cond", IfUnmodifiedSince=past))[1], 412)
    eq(s3.get_object(Bucket=B, Key="cond", IfModifiedSince=past)["Body"].read(), body)


def copies():
    body = data(50_000, 3)
    etag = s3.put_object(Bucket=B, Key="src", Body=body, Metadata={"a": "1"})["ETag"]
    r = s3.copy_object(Bucket=B, Key="dst", CopySource={"Bucket": B, "Key": "src"})
    eq(r["CopyObjectResult"]["ETag"], etag)
    g = s3.get_object(Bucket=B, Key="dst")
    eq(g["Body"].read(), body)
    eq(g["Metadata"], {"a": "1"})
    s3.copy_object(Bucket=B, Key="dst2", CopySource={"Bucket": B, "Key": "src"},
                   MetadataDirective="REPLACE", Metadata={"b": "2"}, ContentType="text/plain")
    h = s3.head_object(Bucket=B, Key="dst2")
    eq(h["Metadata"], {"b": "2"})
    eq(h["ContentType"], "text/plain")


def listings():
    keys = [f"list/{d}/{i}" for d in ("a", "b", "c") for i in range(3)] + ["list/top1", "list/top2"]
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda k: s3.put_object(Bucket=B, Key=k, Body=k.encode()), keys))
    r = s3.list_objects_v2(Bucket=B, Prefix="list/", Delimiter="/")
    eq([p["Prefix"] for p in r["CommonPrefixes"]], ["list/a/", "list/b/", "list/c/"])
    eq([o["Key"] for o in r["Contents"]], ["list/top1", "list/top2"])
    seen = []
    for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=B, Prefix="list/", PaginationConfig={"PageSize": 2}):
        assert page["KeyCount"] <= 2
        seen += [o["Key"] for o in page.get("Contents", [])]
    eq(seen, sorted(keys))
    seen = []
    for page in s3.get_paginator("list_objects").paginate(
            Bucket=B, Prefix="list/", PaginationConfig={"PageSize": 3}):
        seen += [o["Key"] for o in page.get("Contents", [])]
    eq(seen, sorted(keys))
    r = s3.list_objects_v2(Bucket=B, Prefix="list/", StartAfter="list/b/9")
    eq(r["Contents"][0]["Key"], "list/c/0")
    s3.put_object(Bucket=B, Key="enc/a b+c", Body=b"x")
    r = s3.list_objects_v2(Bucket=B, Prefix="enc/", EncodingType="url")
    # boto3 decodes only when it asked for the encoding itself.
    eq([o["Key"] for o in r["Contents"]], ["enc/a%20b%2Bc"])


def delete_objects():
    keys = [f"del/{i}" for i in range(20)]
    for k in keys:
        s3.put_object(Bucket=B, Key=k, Body=b"d")
    r = s3.delete_objects(Bucket=B, Delete={"Objects": [{"Key": k} for k in keys]})
    eq(len(r["Deleted"]), 20)
    eq(s3.list_objects_v2(Bucket=B, Prefix="del/")["KeyCount"], 0)
    s3.delete_object(Bucket=B, Key="del/none")  # missing key: still 204


def multipart_listing():
    """ListMultipartUploads rolls keys up by delimiter and pages by max-uploads,
    a common prefix counting as one entry."""
    keys = ["mpu/a/1", "mpu/a/2", "mpu/b/1", "mpu/c", "other/x"]
    ids = {k: s3.create_multipart_upload(Bucket=B, Key=k)["UploadId"] for k in keys}
    r = s3.list_multipart_uploads(Bucket=B, Prefix="mpu/", Delimiter="/")
    eq([p["Prefix"] for p in r.get("CommonPrefixes", [])], ["mpu/a/", "mpu/b/"])
    eq([u["Key"] for u in r.get("Uploads", [])], ["mpu/c"])
    eq(r["IsTruncated"], False)
    seen, marker = [], None
    while True:
        kw = {"KeyMarker": marker} if marker else {}
        r = s3.list_multipart_uploads(Bucket=B, Prefix="mpu/", Delimiter="/", MaxUploads=1, **kw)
        page = [p["Prefix"] for p in r.get("CommonPrefixes", [])] + \
               [u["Key"] for u in r.get("Uploads", [])]
        eq(len(page), 1)
        seen += page
        if not r["IsTruncated"]:
            break
        marker = r["NextKeyMarker"]
    eq(seen, ["mpu/a/", "mpu/b/", "mpu/c"])
    r = s3.list_multipart_uploads(Bucket=B, Prefix="mpu/")
    eq([u["Key"] for u in r["Uploads"]], ["mpu/a/1", "mpu/a/2", "mpu/b/1", "mpu/c"])
    for k, uid in ids.items():
        s3.abort_multipart_upload(Bucket=B, Key=k, UploadId=uid)
    eq(s3.list_multipart_uploads(Bucket=B, Prefix="mpu/").get("Uploads", []), [])


def multipart():
    part = max(MIN_PART, 6 * 1024)
    parts = [data(part, 10), data(part, 11), data(1234, 12)]
    m = s3.create_multipart_upload(Bucket=B, Key="mp/obj", ContentType="application/x-test",
                                   Metadata={"k": "v"})
    uid = m["UploadId"]
    assert uid in [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=B)["Uploads"]]
    etags = []
    for i, p in enumerate(parts, 1):
        etags.append(s3.upload_part(Bucket=B, Key="mp/obj", UploadId=uid, PartNumber=i, Body=p)["ETag"])
    # A retry of part 2 with other bytes: the last upload wins.
    parts[1] = data(part, 99)
    etags[1] = s3.upload_part(Bucket=B, Key="mp/obj", UploadId=uid, PartNumber=2, Body=parts[1])["ETag"]
    # Part 4 copies a whole object (metadata only), part 5 a range of it.
    src = data(part, 13)
    s3.put_object(Bucket=B, Key="mp/src", Body=src)
    c = s3.upload_part_copy(Bucket=B, Key="mp/obj", UploadId=uid, PartNumber=4,
                            CopySource={"Bucket": B, "Key": "mp/src"})
    eq(c["CopyPartResult"]["ETag"].strip('"'), hashlib.md5(src).hexdigest())
    c5 = s3.upload_part_copy(Bucket=B, Key="mp/obj", UploadId=uid, PartNumber=5,
                             CopySource={"Bucket": B, "Key": "mp/src"}, CopySourceRange="bytes=100-1099")
    eq(c5["CopyPartResult"]["ETag"].strip('"'), hashlib.md5(src[100:1100]).hexdigest())
    # A range over a chunk boundary whose pieces end off 64-byte blocks.
    big = data(CHUNK + (2 << 20), 14)
    s3.put_object(Bucket=B, Key="mp/big-src", Body=big)
    other = s3.create_multipart_upload(Bucket=B, Key="mp/other")["UploadId"]
    c6 = s3.upload_part_copy(Bucket=B, Key="mp/other", UploadId=other, PartNumber=1,
                             CopySource={"Bucket": B, "Key": "mp/big-src"},
                             CopySourceRange=f"bytes=1-{CHUNK + (1 << 20)}")
    eq(c6["CopyPartResult"]["ETag"].strip('"'),
       hashlib.md5(big[1:CHUNK + (1 << 20) + 1]).hexdigest())
    s3.abort_multipart_upload(Bucket=B, Key="mp/other", UploadId=other)
    listed = s3.list_parts(Bucket=B, Key="mp/obj", UploadId=uid)["Parts"]
    eq([p["PartNumber"] for p in listed], [1, 2, 3, 4, 5])
    eq(listed[1]["ETag"], etags[1])
    # Part 3 is short: it can only be last, so complete 1, 2, 4, 5 ... no:
    # order 1,2,4,5 makes 5 the last; the short part 3 is left out.
    done = [{"PartNumber": 1, "ETag": etags[0]}, {"PartNumber": 2, "ETag": etags[1]},
            {"PartNumber": 4, "ETag": c["CopyPartResult"]["ETag"]},
            {"PartNumber": 5, "ETag": c5["CopyPartResult"]["ETag"]}]
    r = s3.complete_multipart_upload(Bucket=B, Key="mp/obj", UploadId=uid,
                                     MultipartUpload={"Parts": done})
    want = parts[0] + parts[1] + src + src[100:1100]
    md5s = b"".join(hashlib.md5(x).digest() for x in (parts[0], parts[1], src, src[100:1100]))
    eq(r["ETag"].strip('"'), hashlib.md5(md5s).hexdigest() + "-4")
    g = s3.get_object(Bucket=B, Key="mp/obj")
    eq(g["Body"].read(), want)
    eq(g["ContentType"], "application/x-test")
    eq(g["Metadata"], {"k": "v"})
    eq(error_code(lambda: s3.list_parts(Bucket=B, Key="mp/obj", UploadId=uid))[0], "NoSuchUpload")


def multipart_errors():
    part = max(MIN_PART, 6 * 1024)
    uid = s3.create_multipart_upload(Bucket=B, Key="mp/bad")["UploadId"]
    e1 = s3.upload_part(Bucket=B, Key="mp/bad", UploadId=uid, PartNumber=1, Body=b"tiny")["ETag"]
    e2 = s3.upload_part(Bucket=B, Key="mp/bad", UploadId=uid, PartNumber=2, Body=data(part))["ETag"]
    c = lambda parts: s3.complete_multipart_upload(Bucket=B, Key="mp/bad", UploadId=uid,
                                                   MultipartUpload={"Parts": parts})
    eq(error_code(lambda: c([{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]))[0],
       "EntityTooSmall")
    eq(error_code(lambda: c([{"PartNumber": 2, "ETag": '"00000000000000000000000000000000"'}]))[0],
       "InvalidPart")
    eq(error_code(lambda: c([{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]))[0],
       "InvalidPartOrder")
    eq(error_code(lambda: s3.head_object(Bucket=B, Key="mp/bad"))[1], 404)
    s3.abort_multipart_upload(Bucket=B, Key="mp/bad", UploadId=uid)
    eq(error_code(lambda: s3.list_parts(Bucket=B, Key="mp/bad", UploadId=uid))[0], "NoSuchUpload")


def thousand_parts():
    part = MIN_PART
    uid = s3.create_multipart_upload(Bucket=B, Key="mp/1000")["UploadId"]
    blobs = [data(part, 1000 + i) for i in range(1000)]

    def up(i):
        return s3.upload_part(Bucket=B, Key="mp/1000", UploadId=uid, PartNumber=i + 1,
                              Body=blobs[i])["ETag"]

    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        etags = list(ex.map(up, range(1000)))
    s3.complete_multipart_upload(
        Bucket=B, Key="mp/1000", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
    got = s3.get_object(Bucket=B, Key="mp/1000")["Body"].read()
    eq(hashlib.sha256(got).hexdigest(), hashlib.sha256(b"".join(blobs)).hexdigest())
    assert s3.head_object(Bucket=B, Key="mp/1000")["ETag"].endswith('-1000"')


def presigned():
    body = data(10_000, 5)
    v4 = boto3.client("s3", endpoint_url=ENDPOINT,
                      config=botocore.config.Config(signature_version="s3v4"))
    url = v4.generate_presigned_url("put_object", Params={"Bucket": B, "Key": "pre/put"}, ExpiresIn=300)
    assert "X-Amz-Signature=" in url, url
    req = urllib.request.Request(url, data=body, method="PUT")
    eq(urllib.request.urlopen(req).status, 200)
    url = v4.generate_presigned_url("get_object", Params={"Bucket": B, "Key": "pre/put"}, ExpiresIn=300)
    eq(urllib.request.urlopen(url).read(), body)
    url = v4.generate_presigned_url("get_object", Params={"Bucket": B, "Key": "pre/put"}, ExpiresIn=1)
    time.sleep(2.5)
    try:
        urllib.request.urlopen(url)
        raise AssertionError("expired URL was accepted")
    except urllib.error.HTTPError as e:
        eq(e.code, 403)
        assert b"AccessDenied" in e.read()


def auth_errors():
    bad = boto3.client("s3", endpoint_url=ENDPOINT,
                       aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key="not-the-secret")
    eq(error_code(lambda: bad.list_buckets())[0], "SignatureDoesNotMatch")
    unknown = boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id="NOSUCHKEY",
                           aws_secret_access_key="x")
    eq(error_code(lambda: unknown.list_buckets())[0], "InvalidAccessKeyId")
    eq(error_code(lambda: s3.get_object(Bucket="no-such-bucket-x", Key="k"))[0], "NoSuchBucket")
    eq(error_code(lambda: s3.get_object(Bucket=B, Key="no/such/key"))[0], "NoSuchKey")
    eq(error_code(lambda: s3.put_object(Bucket=B, Key="k" * 1025, Body=b"x"))[0], "KeyTooLongError")
    eq(error_code(lambda: s3.create_bucket(Bucket="Bad_Name"))[0], "InvalidBucketName")
    eq(error_code(lambda: s3.put_object(Bucket=B, Key="md5", Body=b"abc",
                                        ContentMD5="AAAAAAAAAAAAAAAAAAAAAA=="))[0], "BadDigest")


def signed_put(key, payload, headers):
    """A PUT of `payload` with `headers` (x-amz-content-sha256 among them),
    signed with botocore's SigV4 as given and sent as is."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    url = f"{ENDPOINT}/{B}/{key}"
    headers = dict(headers, **{"content-length": str(len(payload))})
    req = AWSRequest(method="PUT", url=url, data=payload, headers=headers)
    creds = boto3.Session().get_credentials()
    SigV4Auth(creds, "s3", os.environ.get("AWS_REGION", "us-east-1")).add_auth(req)
    prepared = urllib.request.Request(url, data=payload, method="PUT",
                                      headers=dict(req.headers.items()))
    try:
        with urllib.request.urlopen(prepared) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def trailer_put(key, body, algo, value, chunk=64 << 10):
    """A PUT as current SDKs send it over HTTPS: STREAMING-UNSIGNED-PAYLOAD-TRAILER,
    an aws-chunked body and the checksum in a trailer (boto3 over plain HTTP
    sends a header instead, so the request is built and signed here)."""
    framed = bytearray()
    for i in range(0, len(body), chunk):
        piece = body[i:i + chunk]
        framed += b"%x\r\n" % len(piece) + piece + b"\r\n"
    framed += b"0\r\n" + f"{algo}:{value}\r\n\r\n".encode()
    return signed_put(key, bytes(framed), {
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(body)),
        "x-amz-trailer": algo,
    })


def payload_hashes():
    """The signed payload hash (x-amz-content-sha256) is checked: a body
    that does not match it is refused and nothing is stored, whether it
    fits in one chunk (whose id the gateway takes from that hash) or not."""
    for size in (100_000, CHUNK, CHUNK + 1):
        body = data(size, 17)
        other = hashlib.sha256(body + b"!").hexdigest()
        status, text = signed_put(f"payload/bad-{size}", body, {"x-amz-content-sha256": other})
        eq(status, 400)
        assert b"XAmzContentSHA256Mismatch" in text, text
        eq(error_code(lambda: s3.head_object(Bucket=B, Key=f"payload/bad-{size}"))[1], 404)
        right = hashlib.sha256(body).hexdigest()
        status, text = signed_put(f"payload/ok-{size}", body, {"x-amz-content-sha256": right})
        eq(status, 200)
        got = s3.get_object(Bucket=B, Key=f"payload/ok-{size}")
        eq(hashlib.sha256(got["Body"].read()).hexdigest(), right)
        eq(got["ETag"].strip('"'), hashlib.md5(body).hexdigest())


def trailers():
    import base64
    import zlib
    body = data(300_000, 9)
    crc32 = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    sha = base64.b64encode(hashlib.sha256(body).digest()).decode()
    status, text = trailer_put("trailer/crc32", body, "x-amz-checksum-crc32", crc32)
    assert status == 200, (status, text)
    eq(s3.get_object(Bucket=B, Key="trailer/crc32")["Body"].read(), body)
    status, text = trailer_put("trailer/sha256", body, "x-amz-checksum-sha256", sha)
    assert status == 200, (status, text)
    eq(hashlib.sha256(s3.get_object(Bucket=B, Key="trailer/sha256")["Body"].read()).digest(),
       hashlib.sha256(body).digest())
    # A wrong checksum in the trailer: refused, and nothing stored.
    wrong = base64.b64encode((zlib.crc32(body) ^ 1).to_bytes(4, "big")).decode()
    status, text = trailer_put("trailer/bad", body, "x-amz-checksum-crc32", wrong)
    eq(status, 400)
    assert b"BadDigest" in text or b"InvalidRequest" in text, text
    eq(error_code(lambda: s3.head_object(Bucket=B, Key="trailer/bad"))[1], 404)


def cleanup():
    eq(error_code(lambda: s3.delete_bucket(Bucket=B))[0], "BucketNotEmpty")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=B):
        objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objs:
            s3.delete_objects(Bucket=B, Delete={"Objects": objs, "Quiet": True})
    s3.delete_bucket(Bucket=B)
    eq(error_code(lambda: s3.head_bucket(Bucket=B))[1], 404)


if __name__ == "__main__":
    for name, fn in [("buckets", buckets), ("put/get with metadata", put_get_metadata),
                     ("ranges", ranges), ("conditional gets", conditionals), ("copies", copies),
                     ("listings", listings), ("delete objects", delete_objects),
                     ("multipart with retry and part copies", multipart),
                     ("multipart upload listings", multipart_listing),
                     ("multipart errors leave nothing", multipart_errors),
                     ("1000-part upload", thousand_parts), ("pre-signed URLs", presigned),
                     ("error codes", auth_errors),
                     ("aws-chunked bodies with checksum trailers", trailers),
                     ("signed payload hashes", payload_hashes), ("cleanup", cleanup)]:
        check(name, fn)

    print(f"boto3 {boto3.__version__}: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
