"""A browser on another origin fetches an HLS playlist and a segment from
the S3 gateway, allowed by the bucket's CORS rules and refused without them.

Headless Chromium loads a page served from a second origin (another port
on 127.0.0.1). The page fetches the playlist through a pre-signed URL,
then the first segment it lists with a Range header (which needs a
preflight), and writes what it got (or the error) into the page, which
Chromium dumps. Run by tests/cluster/s3.rs with the usual S3 environment
and OUT_DIR, where each page's dump is saved. Prints one line per check
and exits non-zero when any failed.
"""

import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading

import boto3

from boto3_suite import check, data

s3 = boto3.client("s3")
B = "cors-browser"
OUT = os.environ.get("OUT_DIR", ".")
SEGMENT = data(300_000, 7)
PLAYLIST = b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\nseg0.ts\n#EXT-X-ENDLIST\n"

PAGE = """<!doctype html><html><body><pre id="out">pending</pre><script>
const out = document.getElementById("out");
async function hex(buf) {
  const d = await crypto.subtle.digest("SHA-256", buf);
  return [...new Uint8Array(d)].map(b => b.toString(16).padStart(2, "0")).join("");
}
(async () => {
  try {
    const pl = await fetch(%(playlist)r);
    const text = await pl.text();
    const seg = text.split("\\n").find(l => l && !l.startsWith("#"));
    const r = await fetch(%(segment)r, {headers: {"Range": "bytes=0-%(last)d"}});
    const body = await r.arrayBuffer();
    out.textContent = "OK " + seg + " " + r.status + " " + body.byteLength + " " + await hex(body)
      + " etag=" + r.headers.get("ETag");
  } catch (e) {
    out.textContent = "FAILED " + e;
  }
})();
</script></body></html>"""


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(directory):
    handler = lambda *a, **k: Quiet(*a, directory=directory, **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def browse(url, name):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed"
    out = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--virtual-time-budget=15000", "--dump-dom", url],
        capture_output=True, timeout=120, text=True)
    with open(os.path.join(OUT, f"{name}.html"), "w") as f:
        f.write(out.stdout)
    shown = out.stdout.split('<pre id="out">')[-1].split("</pre>")[0]
    print(f"     {name}: {shown}", flush=True)
    return out.stdout


site = os.path.join(OUT, "site")
os.makedirs(site, exist_ok=True)
httpd = serve(site)
origin = f"http://127.0.0.1:{httpd.server_address[1]}"
page = f"{origin}/player.html"
last = 99_999
want = f"OK seg0.ts 206 {last + 1} {hashlib.sha256(SEGMENT[:last + 1]).hexdigest()}"


etag = None


def setup():
    global etag
    s3.create_bucket(Bucket=B)
    s3.put_object(Bucket=B, Key="hls/index.m3u8", Body=PLAYLIST,
                  ContentType="application/vnd.apple.mpegurl")
    put = s3.put_object(Bucket=B, Key="hls/seg0.ts", Body=SEGMENT, ContentType="video/mp2t")
    urls = {k: s3.generate_presigned_url("get_object", Params={"Bucket": B, "Key": f"hls/{k}"},
                                         ExpiresIn=600)
            for k in ("index.m3u8", "seg0.ts")}
    with open(os.path.join(site, "player.html"), "w") as f:
        f.write(PAGE % {"playlist": urls["index.m3u8"], "segment": urls["seg0.ts"], "last": last})
    etag = put["ETag"]


def refused_without_rules():
    assert "FAILED" in browse(page, "without-rules")


def refused_for_other_origins():
    s3.put_bucket_cors(Bucket=B, CORSConfiguration={"CORSRules": [{
        "AllowedOrigins": ["https://player.example.com"], "AllowedMethods": ["GET", "HEAD"],
        "AllowedHeaders": ["range"]}]})
    assert "FAILED" in browse(page, "other-origin")


def allowed_by_rules():
    s3.put_bucket_cors(Bucket=B, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": ["https://player.example.com"], "AllowedMethods": ["GET"]},
        {"AllowedOrigins": [origin], "AllowedMethods": ["GET", "HEAD"],
         "AllowedHeaders": ["Range"], "ExposeHeaders": ["ETag", "Content-Range"],
         "MaxAgeSeconds": 60}]})
    got = browse(page, "allowed")
    assert want in got, (want, got)
    # The exposed ETag is readable by the page.
    assert f"etag={etag}" in got, got


def refused_again_once_removed():
    s3.delete_bucket_cors(Bucket=B)
    assert "FAILED" in browse(page, "rules-removed")


def cleanup():
    for k in ("hls/index.m3u8", "hls/seg0.ts"):
        s3.delete_object(Bucket=B, Key=k)
    s3.delete_bucket(Bucket=B)


if __name__ == "__main__":
    import boto3_suite as suite
    try:
        check("setup", setup)
        check("refused without rules", refused_without_rules)
        check("refused for other origins", refused_for_other_origins)
        check("allowed by the bucket's rules", allowed_by_rules)
        check("refused once the rules are removed", refused_again_once_removed)
        check("cleanup", cleanup)
    finally:
        httpd.shutdown()
    print(f"chromium CORS: {suite.passed} passed, {suite.failed} failed")
    sys.exit(1 if suite.failed else 0)
