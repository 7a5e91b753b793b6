"""Encryption at rest through S3: SSE-S3 and SSE-C on PUT, GET, HEAD,
ranges, multipart uploads, copies and bucket default encryption, each with
AWS's status, error code and headers. Writes the plaintexts it stored to
OUT_DIR (plain.bin, sse-s3.bin, sse-c.bin, sse-mp.bin) so that the caller
(tests/cluster/s3.rs) can grep the cluster's disks for them. Prints one
line per check and exits non-zero when any failed."""

import base64
import hashlib
import os
import sys

from boto3_suite import MIN_PART, check, data, eq, error_code, s3

import boto3_suite as suite

B = "sse"
OUT = os.environ["OUT_DIR"]
KEY = os.urandom(32)
OTHER = os.urandom(32)
SSEC = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": KEY}
WRONG = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": OTHER}
MD5 = base64.b64encode(hashlib.md5(KEY).digest()).decode()
SRC_SSEC = {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": KEY}
MIB = 1 << 20


def keep(name, body):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(body)


def body_of(resp):
    return resp["Body"].read()


def sse_s3():
    s3.create_bucket(Bucket=B)
    plain = data(3 * MIB + 123, 11)
    keep("plain.bin", plain)
    s3.put_object(Bucket=B, Key="plain", Body=plain)
    eq(s3.head_object(Bucket=B, Key="plain").get("ServerSideEncryption"), None)
    body = data(9 * MIB + 7, 12)  # two chunks, the second short
    keep("sse-s3.bin", body)
    put = s3.put_object(Bucket=B, Key="s3", Body=body, ServerSideEncryption="AES256")
    eq(put["ServerSideEncryption"], "AES256")
    eq(put["ETag"].strip('"'), hashlib.md5(body).hexdigest())
    got = s3.get_object(Bucket=B, Key="s3")
    eq(got["ServerSideEncryption"], "AES256")
    eq(got["ContentLength"], len(body))
    eq(hashlib.sha256(body_of(got)).hexdigest(), hashlib.sha256(body).hexdigest())
    head = s3.head_object(Bucket=B, Key="s3")
    eq((head["ServerSideEncryption"], head["ContentLength"]), ("AES256", len(body)))
    # Ranges inside a block, across blocks and across the chunk boundary.
    for a, b in [(0, 0), (100, 70_000), (8 * MIB - 5, 8 * MIB + 65_600), (len(body) - 3, len(body) - 1)]:
        r = s3.get_object(Bucket=B, Key="s3", Range=f"bytes={a}-{b}")
        eq(body_of(r), body[a:b + 1])
        eq(r["ContentRange"], f"bytes {a}-{b}/{len(body)}")
    listed = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=B)["Contents"]}
    eq(listed["s3"], len(body))


def sse_c():
    body = data(5 * MIB + 999, 13)
    keep("sse-c.bin", body)
    put = s3.put_object(Bucket=B, Key="c", Body=body, **SSEC)
    eq((put["SSECustomerAlgorithm"], put["SSECustomerKeyMD5"]), ("AES256", MD5))
    eq(put.get("ServerSideEncryption"), None)
    eq(error_code(lambda: s3.get_object(Bucket=B, Key="c")), ("InvalidRequest", 400))
    eq(error_code(lambda: s3.head_object(Bucket=B, Key="c"))[1], 400)
    eq(error_code(lambda: s3.get_object(Bucket=B, Key="c", **WRONG)), ("AccessDenied", 403))
    eq(error_code(lambda: s3.head_object(Bucket=B, Key="c", **WRONG))[1], 403)
    got = s3.get_object(Bucket=B, Key="c", **SSEC)
    eq((got["SSECustomerAlgorithm"], got["SSECustomerKeyMD5"]), ("AES256", MD5))
    eq(body_of(got), body)
    head = s3.head_object(Bucket=B, Key="c", **SSEC)
    eq(head["ContentLength"], len(body))
    r = s3.get_object(Bucket=B, Key="c", Range="bytes=65000-200000", **SSEC)
    eq(body_of(r), body[65000:200001])
    # A key on an object stored without one is refused.
    eq(error_code(lambda: s3.get_object(Bucket=B, Key="plain", **SSEC)), ("InvalidRequest", 400))
    # No boto3 handler encodes the key for this call: sent as S3 wants it.
    attrs = s3.get_object_attributes(Bucket=B, Key="c", ObjectAttributes=["ObjectSize"],
                                     SSECustomerAlgorithm="AES256",
                                     SSECustomerKey=base64.b64encode(KEY).decode(),
                                     SSECustomerKeyMD5=MD5)
    eq(attrs["ObjectSize"], len(body))
    eq(error_code(lambda: s3.get_object_attributes(Bucket=B, Key="c",
                                                   ObjectAttributes=["ObjectSize"]))[1], 400)


def multipart():
    part = max(MIN_PART, 5 * MIB)
    body = data(2 * part + 4321, 14)
    keep("sse-mp.bin", body)
    pieces = [body[:part], body[part:2 * part], body[2 * part:]]
    for key, extra in [("mp-s3", {"ServerSideEncryption": "AES256"}), ("mp-c", SSEC)]:
        up = s3.create_multipart_upload(Bucket=B, Key=key, **extra)
        uid = up["UploadId"]
        part_extra = SSEC if key == "mp-c" else {}
        if key == "mp-c":
            eq(up["SSECustomerKeyMD5"], MD5)
            # Every part of an SSE-C upload must carry the key.
            eq(error_code(lambda: s3.upload_part(Bucket=B, Key=key, UploadId=uid, PartNumber=1,
                                                 Body=pieces[0]))[1], 400)
            eq(error_code(lambda: s3.upload_part(Bucket=B, Key=key, UploadId=uid, PartNumber=1,
                                                 Body=pieces[0], **WRONG))[1], 403)
        else:
            eq(up["ServerSideEncryption"], "AES256")
        parts = []
        for n, p in enumerate(pieces, 1):
            r = s3.upload_part(Bucket=B, Key=key, UploadId=uid, PartNumber=n, Body=p, **part_extra)
            parts.append({"PartNumber": n, "ETag": r["ETag"]})
        s3.complete_multipart_upload(Bucket=B, Key=key, UploadId=uid,
                                     MultipartUpload={"Parts": parts})
        eq(body_of(s3.get_object(Bucket=B, Key=key, **part_extra)), body)
        a, b = part - 10, part + 10
        eq(body_of(s3.get_object(Bucket=B, Key=key, Range=f"bytes={a}-{b}", **part_extra)),
           body[a:b + 1])
        second = s3.get_object(Bucket=B, Key=key, PartNumber=2, **part_extra)
        eq((second["ContentLength"], second["PartsCount"]), (part, 3))
        eq(body_of(second), pieces[1])
    eq(error_code(lambda: s3.get_object(Bucket=B, Key="mp-c"))[1], 400)


def copies():
    c_body = open(os.path.join(OUT, "sse-c.bin"), "rb").read()
    s3_body = open(os.path.join(OUT, "sse-s3.bin"), "rb").read()
    # SSE-C source: its key is needed, the right one.
    eq(error_code(lambda: s3.copy_object(Bucket=B, Key="x", CopySource={"Bucket": B, "Key": "c"}))[1],
       400)
    eq(error_code(lambda: s3.copy_object(
        Bucket=B, Key="x", CopySource={"Bucket": B, "Key": "c"},
        CopySourceSSECustomerAlgorithm="AES256", CopySourceSSECustomerKey=OTHER))[1], 403)
    # SSE-C → SSE-S3, SSE-C → another customer key, SSE-C → clear.
    r = s3.copy_object(Bucket=B, Key="c-to-s3", CopySource={"Bucket": B, "Key": "c"},
                       ServerSideEncryption="AES256", **SRC_SSEC)
    eq(r["ServerSideEncryption"], "AES256")
    eq(body_of(s3.get_object(Bucket=B, Key="c-to-s3")), c_body)
    s3.copy_object(Bucket=B, Key="c-to-c2", CopySource={"Bucket": B, "Key": "c"}, **SRC_SSEC,
                   **WRONG)
    eq(error_code(lambda: s3.get_object(Bucket=B, Key="c-to-c2", **SSEC))[1], 403)
    eq(body_of(s3.get_object(Bucket=B, Key="c-to-c2", **WRONG)), c_body)
    # (Decrypting into a clear copy: another object, whose plaintext the
    # caller does not look for on disk.)
    other = data(300_000, 16)
    s3.put_object(Bucket=B, Key="c-other", Body=other, **SSEC)
    s3.copy_object(Bucket=B, Key="c-to-plain", CopySource={"Bucket": B, "Key": "c-other"},
                   **SRC_SSEC)
    eq(s3.head_object(Bucket=B, Key="c-to-plain").get("ServerSideEncryption"), None)
    eq(body_of(s3.get_object(Bucket=B, Key="c-to-plain")), other)
    # Clear → SSE-C; SSE-S3 → SSE-S3 (shares the chunks); SSE-S3 → SSE-C.
    s3.copy_object(Bucket=B, Key="plain-to-c", CopySource={"Bucket": B, "Key": "plain"}, **SSEC)
    eq(error_code(lambda: s3.get_object(Bucket=B, Key="plain-to-c"))[1], 400)
    eq(body_of(s3.get_object(Bucket=B, Key="plain-to-c", **SSEC)),
       open(os.path.join(OUT, "plain.bin"), "rb").read())
    r = s3.copy_object(Bucket=B, Key="s3-copy", CopySource={"Bucket": B, "Key": "s3"})
    eq(r["ServerSideEncryption"], "AES256")
    eq(body_of(s3.get_object(Bucket=B, Key="s3-copy")), s3_body)
    s3.copy_object(Bucket=B, Key="s3-to-c", CopySource={"Bucket": B, "Key": "s3"}, **SSEC)
    eq(body_of(s3.get_object(Bucket=B, Key="s3-to-c", **SSEC)), s3_body)
    # Replacing metadata in place keeps the encryption.
    s3.copy_object(Bucket=B, Key="c", CopySource={"Bucket": B, "Key": "c"},
                   MetadataDirective="REPLACE", Metadata={"note": "x"}, **SRC_SSEC, **SSEC)
    head = s3.head_object(Bucket=B, Key="c", **SSEC)
    eq(head["Metadata"], {"note": "x"})
    eq(body_of(s3.get_object(Bucket=B, Key="c", **SSEC)), c_body)
    # A part copied from an SSE-C source into an SSE-S3 upload.
    uid = s3.create_multipart_upload(Bucket=B, Key="mp-copy", ServerSideEncryption="AES256")["UploadId"]
    r = s3.upload_part_copy(Bucket=B, Key="mp-copy", UploadId=uid, PartNumber=1,
                            CopySource={"Bucket": B, "Key": "c"}, **SRC_SSEC)
    s3.complete_multipart_upload(Bucket=B, Key="mp-copy", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": r["CopyPartResult"]["ETag"]}]})
    got = s3.get_object(Bucket=B, Key="mp-copy")
    eq(got["ServerSideEncryption"], "AES256")
    eq(body_of(got), c_body)


def bucket_default():
    b = "sse-default"
    s3.create_bucket(Bucket=b)
    eq(error_code(lambda: s3.get_bucket_encryption(Bucket=b)),
       ("ServerSideEncryptionConfigurationNotFoundError", 404))
    eq(error_code(lambda: s3.put_bucket_encryption(Bucket=b, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]}))[1], 501)
    s3.put_bucket_encryption(Bucket=b, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    rules = s3.get_bucket_encryption(Bucket=b)["ServerSideEncryptionConfiguration"]["Rules"]
    eq(rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"], "AES256")
    body = data(100_000, 15)
    eq(s3.put_object(Bucket=b, Key="k", Body=body)["ServerSideEncryption"], "AES256")
    got = s3.get_object(Bucket=b, Key="k")
    eq((got["ServerSideEncryption"], body_of(got)), ("AES256", body))
    # An SSE-C request still uses its own key.
    s3.put_object(Bucket=b, Key="own", Body=body, **SSEC)
    eq(error_code(lambda: s3.get_object(Bucket=b, Key="own"))[1], 400)
    s3.delete_bucket_encryption(Bucket=b)
    eq(error_code(lambda: s3.get_bucket_encryption(Bucket=b))[1], 404)
    eq(s3.put_object(Bucket=b, Key="after", Body=body).get("ServerSideEncryption"), None)
    for k in ("k", "own", "after"):
        s3.delete_object(Bucket=b, Key=k)
    s3.delete_bucket(Bucket=b)


def kms_refused():
    eq(error_code(lambda: s3.put_object(Bucket=B, Key="kms", Body=b"secret",
                                        ServerSideEncryption="aws:kms")), ("NotImplemented", 501))
    eq(error_code(lambda: s3.head_object(Bucket=B, Key="kms"))[1], 404)


if __name__ == "__main__":
    for name, fn in [("SSE-S3 put, get, head, ranges, listing", sse_s3),
                     ("SSE-C put, get, head, wrong and missing keys", sse_c),
                     ("multipart uploads with SSE-S3 and SSE-C", multipart),
                     ("copies between encryption modes", copies),
                     ("bucket default encryption", bucket_default),
                     ("SSE-KMS refused", kms_refused)]:
        check(name, fn)
    print(f"sse: {suite.passed} passed, {suite.failed} failed")
    sys.exit(1 if suite.failed else 0)
