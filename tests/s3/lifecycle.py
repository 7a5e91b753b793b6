"""Lifecycle expiration through S3: rules set with boto3 are applied by the
namenode's lifecycle pass (run by tests/cluster/s3.rs with a lifecycle day
of LIFECYCLE_DAY_SECS seconds): matching objects disappear, others stay,
old multipart uploads are aborted. Prints one line per check and exits
non-zero when any failed."""

import os
import sys
import time

from botocore.exceptions import ClientError

from boto3_suite import check, data, eq, error_code, s3

import boto3_suite as suite

B = "lifecycle"
DAY = float(os.environ.get("LIFECYCLE_DAY_SECS", "2"))
RULES = [
    {"ID": "proxies", "Status": "Enabled",
     "Filter": {"And": {"Prefix": "tmp/", "Tags": [{"Key": "kind", "Value": "proxy"}]}},
     "Expiration": {"Days": 1}},
    {"ID": "stale-uploads", "Status": "Enabled", "Filter": {"Prefix": "uploads/"},
     "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
    {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}},
]


def missing(key):
    try:
        s3.head_object(Bucket=B, Key=key)
        return False
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def configuration():
    s3.create_bucket(Bucket=B)
    eq(error_code(lambda: s3.get_bucket_lifecycle_configuration(Bucket=B))[0],
       "NoSuchLifecycleConfiguration")
    bad = [
        ({"ID": "t", "Status": "Enabled", "Filter": {"Prefix": ""},
          "Transitions": [{"Days": 1, "StorageClass": "GLACIER"}]}, 501),
        ({"ID": "z", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 0}}, 400),
        ({"ID": "n", "Status": "Enabled", "Filter": {"Prefix": ""}}, 400),
    ]
    for rule, status in bad:
        eq(error_code(lambda: s3.put_bucket_lifecycle_configuration(
            Bucket=B, LifecycleConfiguration={"Rules": [rule]}))[1], status)
    s3.put_bucket_lifecycle_configuration(Bucket=B, LifecycleConfiguration={"Rules": RULES})
    got = s3.get_bucket_lifecycle_configuration(Bucket=B)["Rules"]
    eq([r["ID"] for r in got], ["proxies", "stale-uploads", "off"])
    eq(got[0]["Filter"]["And"]["Tags"], [{"Key": "kind", "Value": "proxy"}])
    eq(got[0]["Expiration"]["Days"], 1)
    eq(got[1]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"], 1)


def expiration():
    s3.put_object(Bucket=B, Key="tmp/proxy.mp4", Body=data(100_000, 1), Tagging="kind=proxy")
    s3.put_object(Bucket=B, Key="tmp/master.mp4", Body=data(100_000, 2), Tagging="kind=master")
    s3.put_object(Bucket=B, Key="keep/proxy.mp4", Body=data(100_000, 3), Tagging="kind=proxy")
    uid = s3.create_multipart_upload(Bucket=B, Key="uploads/big.mov")["UploadId"]
    other = s3.create_multipart_upload(Bucket=B, Key="elsewhere/big.mov")["UploadId"]
    deadline = time.time() + DAY * 8 + 10
    while time.time() < deadline and not missing("tmp/proxy.mp4"):
        time.sleep(0.25)
    assert missing("tmp/proxy.mp4"), "a matching object did not expire"
    # The same pass aborts the old upload under uploads/ and nothing else.
    uploads = lambda: {u["UploadId"] for u in s3.list_multipart_uploads(Bucket=B).get("Uploads", [])}  # noqa: E731
    while time.time() < deadline and uid in uploads():
        time.sleep(0.25)
    eq(uploads(), {other})
    for k in ("tmp/master.mp4", "keep/proxy.mp4"):
        assert not missing(k), k
    eq(s3.get_object(Bucket=B, Key="keep/proxy.mp4")["Body"].read(), data(100_000, 3))
    s3.abort_multipart_upload(Bucket=B, Key="elsewhere/big.mov", UploadId=other)


def removal():
    s3.delete_bucket_lifecycle(Bucket=B)
    eq(error_code(lambda: s3.get_bucket_lifecycle_configuration(Bucket=B))[0],
       "NoSuchLifecycleConfiguration")
    s3.put_object(Bucket=B, Key="tmp/late.mp4", Body=b"late", Tagging="kind=proxy")
    time.sleep(DAY * 2)
    assert not missing("tmp/late.mp4"), "expired without rules"


def noncurrent():
    b = "lifecycle-versions"
    s3.create_bucket(Bucket=b)
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={"Rules": [
        {"ID": "old-takes", "Status": "Enabled", "Filter": {"Prefix": "takes/"},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}]})
    got = s3.get_bucket_lifecycle_configuration(Bucket=b)["Rules"][0]
    eq(got["NoncurrentVersionExpiration"]["NoncurrentDays"], 1)
    eq(error_code(lambda: s3.put_bucket_lifecycle_configuration(
        Bucket=b, LifecycleConfiguration={"Rules": [
            {"ID": "n", "Status": "Enabled", "Filter": {"Prefix": ""},
             "NoncurrentVersionExpiration": {"NoncurrentDays": 1,
                                             "NewerNoncurrentVersions": 2}}]}))[1], 501)
    for key in ("takes/a.mov", "other/a.mov"):
        for n in (1, 2):
            s3.put_object(Bucket=b, Key=key, Body=data(50_000, 10 * n))
    count = lambda key: len(s3.list_object_versions(Bucket=b, Prefix=key).get("Versions", []))  # noqa: E731
    deadline = time.time() + DAY * 8 + 10
    while time.time() < deadline and count("takes/a.mov") > 1:
        time.sleep(0.25)
    eq(count("takes/a.mov"), 1)
    eq(count("other/a.mov"), 2)
    eq(s3.get_object(Bucket=b, Key="takes/a.mov")["Body"].read(), data(50_000, 20))
    vs = s3.list_object_versions(Bucket=b)
    s3.delete_objects(Bucket=b, Delete={"Objects": [
        {"Key": v["Key"], "VersionId": v["VersionId"]} for v in vs["Versions"]]})
    s3.delete_bucket(Bucket=b)


if __name__ == "__main__":
    for name, fn in [("configuration", configuration), ("expiration", expiration),
                     ("rules removed", removal),
                     ("noncurrent versions expire", noncurrent)]:
        check(name, fn)
    print(f"lifecycle: {suite.passed} passed, {suite.failed} failed")
    sys.exit(1 if suite.failed else 0)
