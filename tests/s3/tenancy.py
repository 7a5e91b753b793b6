"""Two keys through S3: bob may not list, read, write, delete or copy from
alice's bucket until an admin allows it, and sees only the buckets he may
use. Keys come from ALICE_KEY/ALICE_SECRET and BOB_KEY/BOB_SECRET; STAGE
is `denied` (no grant), `read` (bob may read) or `quota` (QuotaExceeded on
an upload past the bucket's quota). Prints one line per check and exits
non-zero when any failed."""

import os
import sys

import boto3

from boto3_suite import ENDPOINT, check, data, eq, error_code

import boto3_suite as suite

B = os.environ.get("BUCKET", "alice-b")
STAGE = os.environ["STAGE"]


def client(who):
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=os.environ[f"{who}_KEY"],
        aws_secret_access_key=os.environ[f"{who}_SECRET"],
    )


alice = client("ALICE")
bob = client("BOB")
DENIED = ("AccessDenied", 403)


def bob_is_denied():
    eq(error_code(lambda: bob.list_objects_v2(Bucket=B)), DENIED)
    eq(error_code(lambda: bob.get_object(Bucket=B, Key="secret.bin")), DENIED)
    eq(error_code(lambda: bob.head_object(Bucket=B, Key="secret.bin"))[1], 403)
    eq(error_code(lambda: bob.put_object(Bucket=B, Key="bob.bin", Body=b"x")), DENIED)
    eq(error_code(lambda: bob.delete_object(Bucket=B, Key="secret.bin")), DENIED)
    eq(error_code(lambda: bob.copy_object(Bucket="bob-b", Key="stolen",
                                          CopySource={"Bucket": B, "Key": "secret.bin"})), DENIED)
    eq(error_code(lambda: bob.create_multipart_upload(Bucket=B, Key="mp")), DENIED)
    eq(error_code(lambda: bob.delete_bucket(Bucket=B)), DENIED)
    names = [b["Name"] for b in bob.list_buckets()["Buckets"]]
    assert B not in names and "bob-b" in names, names
    # Nothing bob tried changed alice's bucket.
    keys = [o["Key"] for o in alice.list_objects_v2(Bucket=B).get("Contents", [])]
    assert "bob.bin" not in keys and "secret.bin" in keys, keys


def bob_reads_only():
    body = alice.get_object(Bucket=B, Key="secret.bin")["Body"].read()
    eq(bob.get_object(Bucket=B, Key="secret.bin")["Body"].read(), body)
    keys = [o["Key"] for o in bob.list_objects_v2(Bucket=B).get("Contents", [])]
    assert "secret.bin" in keys, keys
    assert B in [b["Name"] for b in bob.list_buckets()["Buckets"]]
    eq(error_code(lambda: bob.put_object(Bucket=B, Key="bob.bin", Body=b"x")), DENIED)
    eq(error_code(lambda: bob.delete_object(Bucket=B, Key="secret.bin")), DENIED)
    eq(error_code(lambda: bob.delete_bucket(Bucket=B)), DENIED)
    # Reading from alice into his own bucket is a read there and a write here.
    bob.copy_object(Bucket="bob-b", Key="copied", CopySource={"Bucket": B, "Key": "secret.bin"})
    eq(bob.get_object(Bucket="bob-b", Key="copied")["Body"].read(), body)


def quota_refused():
    before = [o["Key"] for o in alice.list_objects_v2(Bucket=B).get("Contents", [])]
    eq(error_code(lambda: alice.put_object(Bucket=B, Key="too-big", Body=data(20 << 20, 5))),
       ("QuotaExceeded", 403))
    after = [o["Key"] for o in alice.list_objects_v2(Bucket=B).get("Contents", [])]
    eq(after, before)


if __name__ == "__main__":
    stages = {
        "denied": [("bob is denied everything on alice's bucket", bob_is_denied)],
        "read": [("bob reads but cannot write after allow --read", bob_reads_only)],
        "quota": [("an upload past the quota is refused and stores nothing", quota_refused)],
    }
    for name, fn in stages[STAGE]:
        check(name, fn)
    print(f"tenancy: {suite.passed} passed, {suite.failed} failed")
    sys.exit(1 if suite.failed else 0)
