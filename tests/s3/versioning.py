"""Bucket versioning through S3: version ids on PUT, COPY, multipart and
DELETE, delete markers, reads of old versions (whole and ranges, with
identical SHA-256), ListObjectVersions with paging, deletes of single
versions and Suspended versioning, each with AWS's status, error code and
headers. Prints one line per check and exits non-zero when any failed."""

import hashlib
import os
import sys
import time

from boto3_suite import MIN_PART, check, data, eq, error_code, s3

import boto3_suite as suite

B = "versioned"
MIB = 1 << 20


def sha(b):
    return hashlib.sha256(b).hexdigest()


def body(resp):
    return resp["Body"].read()


def configuration():
    s3.create_bucket(Bucket=B)
    eq(s3.get_bucket_versioning(Bucket=B).get("Status"), None)
    s3.put_object(Bucket=B, Key="before", Body=b"written before versioning")
    eq(error_code(lambda: s3.put_bucket_versioning(
        Bucket=B, VersioningConfiguration={"Status": "Sideways"}))[1], 400)
    s3.put_bucket_versioning(Bucket=B, VersioningConfiguration={"Status": "Enabled"})
    eq(s3.get_bucket_versioning(Bucket=B)["Status"], "Enabled")


def overwrite_and_recover():
    v = []
    bodies = [data(3 * MIB + 17, 60 + n) for n in range(3)]
    for b in bodies:
        r = s3.put_object(Bucket=B, Key="master.mov", Body=b)
        assert r.get("VersionId") and r["VersionId"] != "null", r
        v.append(r["VersionId"])
    eq(len(set(v)), 3)
    head = s3.head_object(Bucket=B, Key="master.mov")
    eq(head["VersionId"], v[2])
    # Long enough for the cluster's GC to run (its grace is short in the
    # test): no chunk an old version needs may go.
    time.sleep(float(os.environ.get("GC_WAIT_SECS", "0")))
    # Every version reads back byte for byte; a range of an old one too.
    for vid, b in zip(v, bodies):
        got = s3.get_object(Bucket=B, Key="master.mov", VersionId=vid)
        eq((got["VersionId"], sha(body(got))), (vid, sha(b)))
    r = s3.get_object(Bucket=B, Key="master.mov", VersionId=v[0], Range="bytes=1000-1999999")
    eq(body(r), bodies[0][1000:2000000])
    eq(s3.head_object(Bucket=B, Key="master.mov", VersionId=v[1])["ContentLength"], len(bodies[1]))
    eq(error_code(lambda: s3.get_object(Bucket=B, Key="master.mov", VersionId="0" * 32))[0],
       "NoSuchVersion")
    # The object written before versioning is the "null" version.
    eq(body(s3.get_object(Bucket=B, Key="before", VersionId="null")), b"written before versioning")
    # An overwritten master is recovered by copying the old version back.
    r = s3.copy_object(Bucket=B, Key="master.mov",
                       CopySource={"Bucket": B, "Key": "master.mov", "VersionId": v[0]})
    eq(r["CopySourceVersionId"], v[0])
    assert r["VersionId"] not in v
    eq(sha(body(s3.get_object(Bucket=B, Key="master.mov"))), sha(bodies[0]))


def delete_markers():
    s3.put_object(Bucket=B, Key="gone.txt", Body=b"one")
    r = s3.delete_object(Bucket=B, Key="gone.txt")
    eq(r["DeleteMarker"], True)
    marker = r["VersionId"]
    eq(error_code(lambda: s3.get_object(Bucket=B, Key="gone.txt"))[1], 404)
    eq(error_code(lambda: s3.head_object(Bucket=B, Key="gone.txt", VersionId=marker))[1], 405)
    listed = s3.list_objects_v2(Bucket=B, Prefix="gone").get("KeyCount")
    eq(listed, 0)
    vs = s3.list_object_versions(Bucket=B, Prefix="gone.txt")
    eq([(m["VersionId"], m["IsLatest"]) for m in vs["DeleteMarkers"]], [(marker, True)])
    eq([(x["IsLatest"], x["Size"]) for x in vs["Versions"]], [(False, 3)])
    # Removing the marker brings the object back.
    r = s3.delete_object(Bucket=B, Key="gone.txt", VersionId=marker)
    eq((r.get("DeleteMarker"), r["VersionId"]), (True, marker))
    eq(body(s3.get_object(Bucket=B, Key="gone.txt")), b"one")
    # Removing a version for good; the one below becomes current.
    s3.put_object(Bucket=B, Key="gone.txt", Body=b"two")
    top = s3.head_object(Bucket=B, Key="gone.txt")["VersionId"]
    s3.delete_object(Bucket=B, Key="gone.txt", VersionId=top)
    eq(body(s3.get_object(Bucket=B, Key="gone.txt")), b"one")
    # DeleteObjects with and without versions.
    r = s3.delete_objects(Bucket=B, Delete={"Objects": [{"Key": "gone.txt"}]})
    eq(r["Deleted"][0]["DeleteMarker"], True)
    assert r["Deleted"][0]["DeleteMarkerVersionId"]


def multipart_and_listing():
    part = max(MIN_PART, 5 * MIB)
    b = data(2 * part + 5, 70)
    uid = s3.create_multipart_upload(Bucket=B, Key="mp.bin")["UploadId"]
    parts = []
    for n, p in enumerate([b[:part], b[part:2 * part], b[2 * part:]], 1):
        r = s3.upload_part(Bucket=B, Key="mp.bin", UploadId=uid, PartNumber=n, Body=p)
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    r = s3.complete_multipart_upload(Bucket=B, Key="mp.bin", UploadId=uid,
                                     MultipartUpload={"Parts": parts})
    first = r["VersionId"]
    s3.put_object(Bucket=B, Key="mp.bin", Body=b"small")
    eq(sha(body(s3.get_object(Bucket=B, Key="mp.bin", VersionId=first))), sha(b))
    # Paging over every version of a few keys, two at a time.
    for k in ("p/a", "p/b", "p/c"):
        for n in range(3):
            s3.put_object(Bucket=B, Key=k, Body=f"{k} {n}".encode())
    full = s3.list_object_versions(Bucket=B, Prefix="p/")
    everything = [(x["Key"], x["VersionId"], x["IsLatest"]) for x in full["Versions"]]
    eq(len(everything), 9)
    eq([x[2] for x in everything], [True, False, False] * 3)
    paged, kw = [], {}
    while True:
        page = s3.list_object_versions(Bucket=B, Prefix="p/", MaxKeys=2, **kw)
        paged += [(x["Key"], x["VersionId"], x["IsLatest"]) for x in page.get("Versions", [])]
        if not page["IsTruncated"]:
            break
        kw = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}
    eq(paged, everything)


def suspended():
    s3.put_bucket_versioning(Bucket=B, VersioningConfiguration={"Status": "Suspended"})
    eq(s3.get_bucket_versioning(Bucket=B)["Status"], "Suspended")
    before = [x["VersionId"] for x in
              s3.list_object_versions(Bucket=B, Prefix="p/a")["Versions"]]
    s3.put_object(Bucket=B, Key="p/a", Body=b"null 1")
    s3.put_object(Bucket=B, Key="p/a", Body=b"null 2")
    after = [x["VersionId"] for x in s3.list_object_versions(Bucket=B, Prefix="p/a")["Versions"]]
    # One "null" version on top, every versioned one kept below it.
    eq(after, ["null"] + before)
    eq(body(s3.get_object(Bucket=B, Key="p/a", VersionId="null")), b"null 2")


def cleanup():
    # A bucket is empty only when every version and marker is gone.
    eq(error_code(lambda: s3.delete_bucket(Bucket=B))[0], "BucketNotEmpty")
    kw = {}
    while True:
        page = s3.list_object_versions(Bucket=B, **kw)
        gone = [{"Key": x["Key"], "VersionId": x["VersionId"]}
                for x in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if gone:
            r = s3.delete_objects(Bucket=B, Delete={"Objects": gone})
            eq(r.get("Errors", []), [])
        if not page["IsTruncated"]:
            break
    eq(s3.list_object_versions(Bucket=B).get("Versions", []), [])
    s3.delete_bucket(Bucket=B)


if __name__ == "__main__":
    for name, fn in [("configuration", configuration),
                     ("overwritten versions kept and recovered", overwrite_and_recover),
                     ("delete markers", delete_markers),
                     ("multipart versions and paged listings", multipart_and_listing),
                     ("suspended versioning", suspended),
                     ("cleanup", cleanup)]:
        check(name, fn)
    print(f"versioning: {suite.passed} passed, {suite.failed} failed")
    sys.exit(1 if suite.failed else 0)
