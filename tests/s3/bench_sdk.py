"""Concurrent boto3 client for tests/src/bin/s3-bench.rs.

Run with AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
AWS_REGION set for the cluster. Each mode prints one JSON object on stdout;
times exclude interpreter start-up and imports.

  upload FILE BUCKET KEY CONCURRENCY      upload_file, 8 MiB parts
  download BUCKET KEY FILE CONCURRENCY    download_file, 8 MiB ranges
  small BUCKET PREFIX N CONCURRENCY SIZE  N PUTs then N GETs of SIZE bytes,
                                          CONCURRENCY threads, one client
"""

import concurrent.futures
import json
import math
import os
import sys
import time

import boto3
import botocore.config
from boto3.s3.transfer import TransferConfig

MIB = 1 << 20


def client(pool):
    cfg = botocore.config.Config(max_pool_connections=pool)
    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], config=cfg)


def transfer_config(conc):
    return TransferConfig(
        max_concurrency=conc,
        multipart_threshold=8 * MIB,
        multipart_chunksize=8 * MIB,
        use_threads=True,
    )


def upload(path, bucket, key, conc):
    s3 = client(conc + 4)
    s3.head_bucket(Bucket=bucket)  # connect and warm up outside the timing
    t = time.perf_counter()
    s3.upload_file(path, bucket, key, Config=transfer_config(conc))
    secs = time.perf_counter() - t
    return {"secs": secs, "bytes": os.path.getsize(path)}


def download(bucket, key, path, conc):
    s3 = client(conc + 4)
    s3.head_bucket(Bucket=bucket)
    t = time.perf_counter()
    s3.download_file(bucket, key, path, Config=transfer_config(conc))
    secs = time.perf_counter() - t
    return {"secs": secs, "bytes": os.path.getsize(path)}


def percentile(sorted_ms, p):
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(p / 100 * len(sorted_ms)))
    return sorted_ms[rank - 1]


def summary(wall, lat):
    lat = sorted(lat)
    return {
        "ops": len(lat),
        "secs": wall,
        "ops_per_sec": len(lat) / wall,
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
    }


def run_all(conc, fn, items):
    lat = []

    def one(item):
        t = time.perf_counter()
        fn(item)
        return (time.perf_counter() - t) * 1000.0

    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=conc) as pool:
        for ms in pool.map(one, items):
            lat.append(ms)
    return summary(time.perf_counter() - t, lat)


def small(bucket, prefix, n, conc, size):
    s3 = client(conc + 4)
    s3.head_bucket(Bucket=bucket)
    bodies = [os.urandom(size) for _ in range(n)]
    keys = [f"{prefix}/{i:05}" for i in range(n)]

    def put(i):
        s3.put_object(Bucket=bucket, Key=keys[i], Body=bodies[i])

    def get(i):
        body = s3.get_object(Bucket=bucket, Key=keys[i])["Body"].read()
        if len(body) != size:
            raise AssertionError(f"{keys[i]}: {len(body)} bytes, expected {size}")

    return {"put": run_all(conc, put, range(n)), "get": run_all(conc, get, range(n))}


def main(argv):
    mode = argv[1]
    if mode == "upload":
        out = upload(argv[2], argv[3], argv[4], int(argv[5]))
    elif mode == "download":
        out = download(argv[2], argv[3], argv[4], int(argv[5]))
    elif mode == "small":
        out = small(argv[2], argv[3], int(argv[4]), int(argv[5]), int(argv[6]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv)
