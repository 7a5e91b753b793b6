"""The S3 gateway over TLS: boto3 verifying the gateway's certificate
against AWS_CA_BUNDLE (the cluster's CA) puts, lists, reads whole and by
range and copies; a multipart upload; and a client trusting only the
default CAs is refused with a certificate error before any request. Run
by tests/cluster/tls.rs. Prints one line per check and exits non-zero
when any failed."""

import hashlib
import os
import sys

import boto3
import botocore.config
from botocore.exceptions import SSLError

from boto3_suite import MIN_PART, check, data, eq, s3

import boto3_suite as suite

B = "tls-boto"


def sha(b):
    return hashlib.sha256(b).hexdigest()


def round_trip():
    assert os.environ["AWS_ENDPOINT_URL"].startswith("https://"), os.environ["AWS_ENDPOINT_URL"]
    assert os.environ.get("AWS_CA_BUNDLE"), "AWS_CA_BUNDLE is not set"
    s3.create_bucket(Bucket=B)
    body = data(9 << 20, 7)
    s3.put_object(Bucket=B, Key="clip.bin", Body=body)
    eq([o["Key"] for o in s3.list_objects_v2(Bucket=B)["Contents"]], ["clip.bin"])
    eq(sha(s3.get_object(Bucket=B, Key="clip.bin")["Body"].read()), sha(body))
    r = s3.get_object(Bucket=B, Key="clip.bin", Range="bytes=8388600-8388700")
    eq(r["Body"].read(), body[8388600:8388701])
    s3.copy_object(Bucket=B, Key="copy.bin", CopySource={"Bucket": B, "Key": "clip.bin"})
    eq(sha(s3.get_object(Bucket=B, Key="copy.bin")["Body"].read()), sha(body))


def multipart():
    parts = [data(max(MIN_PART, 64 << 10), 20 + i) for i in range(3)]
    up = s3.create_multipart_upload(Bucket=B, Key="multi.bin")["UploadId"]
    done = []
    for n, p in enumerate(parts, 1):
        r = s3.upload_part(Bucket=B, Key="multi.bin", UploadId=up, PartNumber=n, Body=p)
        done.append({"PartNumber": n, "ETag": r["ETag"]})
    s3.complete_multipart_upload(Bucket=B, Key="multi.bin", UploadId=up,
                                 MultipartUpload={"Parts": done})
    got = s3.get_object(Bucket=B, Key="multi.bin")["Body"].read()
    eq(sha(got), sha(b"".join(parts)))


def untrusted_client_is_refused():
    # verify=True: the default CAs only, not AWS_CA_BUNDLE.
    plain = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], verify=True,
                         config=botocore.config.Config(retries={"max_attempts": 1}))
    try:
        plain.list_buckets()
    except SSLError as e:
        assert "certificate" in str(e).lower(), e
        return
    raise AssertionError("a client without the cluster's CA was answered")


if __name__ == "__main__":
    check("put, list, get, range and copy over https", round_trip)
    check("multipart upload over https", multipart)
    check("a client without the CA is refused", untrusted_client_is_refused)
    print(f"tls: {suite.passed} passed, {suite.failed} failed")
    sys.exit(1 if suite.failed else 0)
