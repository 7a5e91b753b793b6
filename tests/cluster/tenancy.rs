//! Many users on one cluster: access keys made by an admin, what each may
//! do to a bucket through every door (blobctl, S3 with the AWS CLI and
//! boto3, the mount, the edge), admin routes closed to other keys, key
//! rotation and deletion, bucket quotas with exact usage, and per-key rate
//! limits that leave other keys alone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use blob_tests::{random_bytes, sha256_hex, EdgeSpec, Mount, TestCluster};

use crate::cli::blobctl;
use crate::s3::{s3_cmd, venv_python};
use crate::{blobctl_bin, bounded, start};

/// A key made with `blobctl admin key create`, and a config file using it.
struct Key {
    access: String,
    secret: String,
    config: PathBuf,
}

/// `base` with its access and secret keys replaced, written beside it.
fn config_as(base: &Path, name: &str, access: &str, secret: &str) -> PathBuf {
    let text = std::fs::read_to_string(base).expect("reading config");
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("access_key") {
                format!("access_key = \"{access}\"")
            } else if l.starts_with("secret_key") {
                format!("secret_key = \"{secret}\"")
            } else {
                l.to_string()
            }
        })
        .collect();
    let path = base.with_file_name(format!("client-{name}.toml"));
    std::fs::write(&path, out.join("\n") + "\n").expect("writing config");
    path
}

fn ok(config: &Path, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let (code, out, err) = blobctl(config, args, stdin);
    assert_eq!(code, 0, "blobctl {args:?} failed: {err}");
    out
}

/// Runs blobctl expecting a refusal whose message has `needle`.
fn refused(config: &Path, args: &[&str], stdin: Option<&[u8]>, needle: &str) {
    let (code, out, err) = blobctl(config, args, stdin);
    assert_ne!(
        code,
        0,
        "blobctl {args:?} should have been refused: {}",
        String::from_utf8_lossy(&out)
    );
    assert!(err.contains(needle), "blobctl {args:?}: {err}");
}

fn create_key(admin: &Path, name: &str) -> Key {
    let out = ok(admin, &["admin", "key", "create", name, "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("key JSON");
    assert_eq!(v["name"], name);
    let access = v["access_key"].as_str().expect("access_key").to_string();
    let secret = v["secret_key"].as_str().expect("secret_key").to_string();
    let config = config_as(admin, name, &access, &secret);
    Key {
        access,
        secret,
        config,
    }
}

/// Gives `key` a second secret (`admin key rotate`): the key as that secret
/// signs, with its own blobctl configuration named `name`.
fn rotate(admin: &Path, key: &Key, name: &str) -> Key {
    let out = ok(
        admin,
        &["admin", "key", "rotate", &key.access, "--json"],
        None,
    );
    let v: serde_json::Value = serde_json::from_slice(&out).expect("rotate JSON");
    let secret = v["secret_key"].as_str().expect("secret_key").to_string();
    assert_ne!(secret, key.secret, "rotation made a new secret");
    Key {
        access: key.access.clone(),
        config: config_as(admin, name, &key.access, &secret),
        secret,
    }
}

/// Runs tests/s3/tenancy.py at `stage` as alice and bob.
fn tenancy_py(c: &TestCluster, alice: &Key, bob: &Key, stage: &str, bucket: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("s3")
        .join("tenancy.py");
    let out = s3_cmd(c, venv_python())
        .arg(script)
        .env("STAGE", stage)
        .env("BUCKET", bucket)
        .env("ALICE_KEY", &alice.access)
        .env("ALICE_SECRET", &alice.secret)
        .env("BOB_KEY", &bob.access)
        .env("BOB_SECRET", &bob.secret)
        .output()
        .expect("running tenancy.py");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && text.contains(" 0 failed"),
        "tenancy.py {stage}: {text}"
    );
}

/// The AWS CLI as `key`: its exit status and stderr.
fn aws_as(c: &TestCluster, key: &Key, args: &[&str]) -> (bool, String) {
    let out = s3_cmd(c, "aws")
        .env("AWS_ACCESS_KEY_ID", &key.access)
        .env("AWS_SECRET_ACCESS_KEY", &key.secret)
        .args(args)
        .output()
        .expect("running aws");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_see_and_change_only_the_buckets_they_are_allowed() {
    bounded(async {
        let c = start(
            TestCluster::builder()
                .fsync(false)
                .s3(true)
                .edge(EdgeSpec::new("z1")),
        )
        .await;
        let admin = c.client_config().expect("config");
        let alice = create_key(&admin, "alice");
        let bob = create_key(&admin, "bob");
        let listed = String::from_utf8(ok(&admin, &["admin", "key", "list"], None)).expect("utf8");
        assert!(
            listed.contains(&alice.access) && listed.contains(&bob.access),
            "{listed}"
        );
        assert!(!listed.contains(&alice.secret), "a listing shows no secret");

        ok(&alice.config, &["mb", "alice-b"], None);
        ok(&bob.config, &["mb", "bob-b"], None);
        let secret = random_bytes(3 << 20 | 77, 61);
        ok(
            &alice.config,
            &["upload", "-", "alice-b/secret.bin"],
            Some(&secret),
        );
        let info = ok(
            &admin,
            &["admin", "bucket", "info", "alice-b", "--json"],
            None,
        );
        let info: serde_json::Value = serde_json::from_slice(&info).expect("json");
        assert_eq!(info["owner"], alice.access.as_str());

        // Denied through blobctl, the edge, S3 and the mount; nothing changes.
        let denied = "may not";
        let bob_edge = config_as(
            &c.client_config_in("z1").expect("config"),
            "bob-z1",
            &bob.access,
            &bob.secret,
        );
        let bob_cannot_read = || {
            refused(&bob.config, &["ls", "alice-b"], None, denied);
            refused(&bob.config, &["cat", "alice-b/secret.bin"], None, denied);
            refused(&bob_edge, &["cat", "alice-b/secret.bin"], None, denied);
            refused(
                &bob.config,
                &["cp", "alice-b/secret.bin", "bob-b/stolen"],
                None,
                denied,
            );
        };
        let bob_cannot_write = || {
            refused(
                &bob.config,
                &["upload", "-", "alice-b/bob.bin"],
                Some(b"bob was here"),
                denied,
            );
            refused(&bob.config, &["rm", "alice-b/secret.bin"], None, denied);
            refused(&bob.config, &["rb", "alice-b"], None, denied);
        };
        bob_cannot_read();
        bob_cannot_write();
        let mine = String::from_utf8(ok(&bob.config, &["ls"], None)).expect("utf8");
        assert!(
            mine.contains("bob-b") && !mine.contains("alice-b"),
            "{mine}"
        );
        tenancy_py(&c, &alice, &bob, "denied", "alice-b");
        let (done, err) = aws_as(&c, &bob, &["s3", "ls", "s3://alice-b"]);
        assert!(!done && err.contains("AccessDenied"), "{err}");
        let (done, err) = aws_as(&c, &bob, &["s3", "cp", "s3://alice-b/secret.bin", "-"]);
        assert!(!done && err.contains("403"), "{err}");
        match Mount::start(&blobctl_bin(), &bob.config, "alice-b", &[]) {
            Ok(m) => {
                let listing = std::fs::read_dir(m.dir());
                assert!(
                    matches!(&listing, Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied),
                    "listing alice-b through bob's mount: {listing:?}"
                );
                let read = std::fs::read(m.path("secret.bin"));
                assert!(read.is_err(), "bob read alice's file through the mount");
            }
            Err(e) => {
                let msg = format!("{e:#}");
                assert!(
                    msg.contains(denied) || msg.contains("AccessDenied"),
                    "{msg}"
                );
            }
        }
        let got = ok(&alice.config, &["cat", "alice-b/secret.bin"], None);
        assert_eq!(sha256_hex(&got), sha256_hex(&secret));
        // A key holding a newline and a terminal escape prints escaped in
        // human output and as it is in JSON.
        let odd = "odd/line\nbreak\x1b[31mred.txt";
        ok(
            &alice.config,
            &["upload", "-", &format!("alice-b/{odd}")],
            Some(b"odd"),
        );
        let human =
            String::from_utf8(ok(&alice.config, &["ls", "-r", "alice-b"], None)).expect("utf8");
        assert!(
            human.contains("odd/line\\nbreak\\x1b[31mred.txt"),
            "{human}"
        );
        assert!(!human.contains('\x1b'), "{human:?}");
        let json = ok(&alice.config, &["ls", "-r", "--json", "alice-b"], None);
        let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert!(
            v["files"]
                .as_array()
                .expect("files")
                .iter()
                .any(|f| f["path"] == odd),
            "{v}"
        );
        ok(&alice.config, &["rm", &format!("alice-b/{odd}")], None);
        let alice_edge = config_as(
            &c.client_config_in("z1").expect("config"),
            "alice-z1",
            &alice.access,
            &alice.secret,
        );
        let got = ok(&alice_edge, &["cat", "alice-b/secret.bin"], None);
        assert_eq!(sha256_hex(&got), sha256_hex(&secret));

        // Read only: bob reads everywhere and still writes nowhere.
        ok(
            &admin,
            &[
                "admin",
                "bucket",
                "allow",
                "alice-b",
                "--key",
                &bob.access,
                "--read",
            ],
            None,
        );
        for cfg in [&bob.config, &bob_edge] {
            let got = ok(cfg, &["cat", "alice-b/secret.bin"], None);
            assert_eq!(sha256_hex(&got), sha256_hex(&secret));
        }
        let listing = String::from_utf8(ok(&bob.config, &["ls", "alice-b"], None)).expect("utf8");
        assert!(listing.contains("secret.bin"), "{listing}");
        bob_cannot_write();
        tenancy_py(&c, &alice, &bob, "read", "alice-b");
        {
            let m = Mount::start(&blobctl_bin(), &bob.config, "alice-b", &[]).expect("mount");
            let got = std::fs::read(m.path("secret.bin")).expect("read through the mount");
            assert_eq!(sha256_hex(&got), sha256_hex(&secret));
            // The mount commits on fsync (and close, whose error Rust drops).
            let wrote = std::fs::File::create(m.path("bob.bin")).and_then(|mut f| {
                use std::io::Write;
                f.write_all(b"bob was here")?;
                f.sync_all()
            });
            match wrote {
                Err(e) => assert_eq!(
                    e.kind(),
                    std::io::ErrorKind::PermissionDenied,
                    "writing through a read-only grant: {e}"
                ),
                Ok(()) => panic!("bob wrote through a read-only grant"),
            }
        }
        let listing = String::from_utf8(ok(&alice.config, &["ls", "alice-b"], None)).expect("utf8");
        assert!(!listing.contains("bob.bin"), "{listing}");

        // Denied again.
        ok(
            &admin,
            &["admin", "bucket", "deny", "alice-b", "--key", &bob.access],
            None,
        );
        bob_cannot_read();
        tenancy_py(&c, &alice, &bob, "denied", "alice-b");

        // A key that is not an admin calls no admin route.
        for args in [
            &["admin", "status"][..],
            &["admin", "key", "list"],
            &["admin", "key", "create", "mallory"],
            &["admin", "bucket", "info", "alice-b"],
            &[
                "admin",
                "bucket",
                "allow",
                "alice-b",
                "--key",
                &bob.access,
                "--read",
            ],
            &["admin", "fsck"],
        ] {
            refused(&alice.config, args, None, "admin key");
        }

        // Rotation: both secrets work until the old one is retired.
        let bob_new = rotate(&admin, &bob, "bob-new").config;
        ok(&bob.config, &["ls", "bob-b"], None);
        ok(&bob_new, &["ls", "bob-b"], None);
        ok(
            &admin,
            &["admin", "key", "rotate", &bob.access, "--retire-old"],
            None,
        );
        refused(&bob.config, &["ls", "bob-b"], None, "Signature");
        ok(&bob_new, &["ls", "bob-b"], None);
        ok(&admin, &["admin", "key", "delete", &bob.access], None);
        refused(&bob_new, &["ls", "bob-b"], None, "InvalidAccessKeyId");
    })
    .await;
}

fn usage(admin: &Path, bucket: &str) -> (u64, u64) {
    let out = ok(admin, &["admin", "bucket", "info", bucket, "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    (
        v["usage"]["bytes"].as_u64().expect("bytes"),
        v["usage"]["objects"].as_u64().expect("objects"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quotas_refuse_before_data_moves_and_rate_limits_touch_one_key() {
    bounded(async {
        let c = start(TestCluster::builder().fsync(false).s3(true)).await;
        let admin = c.client_config().expect("config");
        let alice = create_key(&admin, "alice");
        let bob = create_key(&admin, "bob");
        ok(&alice.config, &["mb", "quota-b"], None);
        ok(
            &admin,
            &[
                "admin",
                "bucket",
                "quota",
                "quota-b",
                "--max-bytes",
                "10MiB",
            ],
            None,
        );
        const MIB: u64 = 1 << 20;

        // 20 MiB into 10 MiB: refused, nothing stored, through blobctl and S3.
        let big = random_bytes(20 << 20, 3);
        refused(
            &alice.config,
            &["upload", "-", "quota-b/big.bin"],
            Some(&big),
            "QuotaExceeded",
        );
        assert_eq!(usage(&admin, "quota-b"), (0, 0));
        tenancy_py(&c, &alice, &bob, "quota", "quota-b");
        assert_eq!(usage(&admin, "quota-b"), (0, 0));
        let listing = String::from_utf8(ok(&alice.config, &["ls", "quota-b"], None)).expect("utf8");
        assert!(listing.trim().is_empty(), "{listing}");

        // Usage follows writes, overwrites, copies, deletes and multipart.
        let up = |path: &str, n: u64, seed: u64| {
            ok(
                &alice.config,
                &["upload", "-", &format!("quota-b/{path}")],
                Some(&random_bytes(n as usize, seed)),
            );
        };
        up("a", 4 * MIB, 4);
        assert_eq!(usage(&admin, "quota-b"), (4 * MIB, 1));
        up("a", 6 * MIB, 5);
        assert_eq!(usage(&admin, "quota-b"), (6 * MIB, 1));
        refused(
            &alice.config,
            &["cp", "quota-b/a", "quota-b/a-copy"],
            None,
            "QuotaExceeded",
        );
        assert_eq!(usage(&admin, "quota-b"), (6 * MIB, 1));
        up("b", 3 * MIB, 6);
        assert_eq!(usage(&admin, "quota-b"), (9 * MIB, 2));
        ok(&alice.config, &["rm", "quota-b/a"], None);
        assert_eq!(usage(&admin, "quota-b"), (3 * MIB, 1));
        ok(&alice.config, &["cp", "quota-b/b", "quota-b/b-copy"], None);
        assert_eq!(usage(&admin, "quota-b"), (6 * MIB, 2));
        let dir = tempfile::tempdir().expect("tempdir");
        let part = dir.path().join("part");
        std::fs::write(
            &part,
            random_bytes(blob_tests::TEST_MIN_PART_SIZE as usize, 7),
        )
        .expect("write part");
        let aws = |args: &[&str]| -> serde_json::Value {
            let out = s3_cmd(&c, "aws")
                .env("AWS_ACCESS_KEY_ID", &alice.access)
                .env("AWS_SECRET_ACCESS_KEY", &alice.secret)
                .arg("s3api")
                .args(args)
                .args(["--output", "json"])
                .output()
                .expect("aws");
            assert!(
                out.status.success(),
                "aws {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
        };
        let mp = aws(&[
            "create-multipart-upload",
            "--bucket",
            "quota-b",
            "--key",
            "mp",
        ]);
        let id = mp["UploadId"].as_str().expect("upload id").to_string();
        let body = part.to_str().expect("utf-8 path").to_string();
        let mut parts = Vec::new();
        for n in ["1", "2"] {
            let r = aws(&[
                "upload-part",
                "--bucket",
                "quota-b",
                "--key",
                "mp",
                "--upload-id",
                &id,
                "--part-number",
                n,
                "--body",
                &body,
            ]);
            parts.push(
                serde_json::json!({"ETag": r["ETag"], "PartNumber": n.parse::<u32>().expect("n")}),
            );
        }
        let layout = serde_json::json!({ "Parts": parts }).to_string();
        aws(&[
            "complete-multipart-upload",
            "--bucket",
            "quota-b",
            "--key",
            "mp",
            "--upload-id",
            &id,
            "--multipart-upload",
            &layout,
        ]);
        assert_eq!(
            usage(&admin, "quota-b"),
            (6 * MIB + 2 * blob_tests::TEST_MIN_PART_SIZE, 3)
        );

        // Rate limits: bob at 50 requests/s is refused past them with
        // SlowDown; alice, unlimited, at the same time sees no error.
        ok(
            &admin,
            &["admin", "key", "limit", &bob.access, "--rps", "50"],
            None,
        );
        let caller = |k: &Key| {
            blob_rpc::Namenode::builder(
                &c.endpoint(),
                blob_rpc::Credentials::new(k.access.clone(), k.secret.clone().into_bytes()),
            )
            .retry(blob_rpc::RetryPolicy::NONE)
            .build()
            .expect("namenode client")
        };
        let hammer = |nn: blob_rpc::Namenode| async move {
            let nn = std::sync::Arc::new(nn);
            let until = Instant::now() + Duration::from_secs(2);
            let mut tasks = Vec::new();
            for _ in 0..8 {
                let nn = nn.clone();
                tasks.push(tokio::spawn(async move {
                    let (mut ok, mut slow, mut other) = (0u64, 0u64, Vec::new());
                    while Instant::now() < until {
                        match nn.get(&["buckets"]).ok().await {
                            Ok(()) => ok += 1,
                            Err(e) if e.code() == Some("SlowDown") => slow += 1,
                            Err(e) => other.push(e.to_string()),
                        }
                    }
                    (ok, slow, other)
                }));
            }
            let mut total = (0u64, 0u64, Vec::new());
            for t in tasks {
                let (a, b, mut e) = t.await.expect("task");
                total.0 += a;
                total.1 += b;
                total.2.append(&mut e);
            }
            total
        };
        let (b, a) = tokio::join!(hammer(caller(&bob)), hammer(caller(&alice)));
        eprintln!(
            "rate limit: bob {} admitted, {} SlowDown; alice {} admitted, {} errors",
            b.0,
            b.1,
            a.0,
            a.2.len() as u64 + a.1
        );
        assert!(b.2.is_empty(), "bob's other errors: {:?}", b.2);
        assert!(b.1 > 0, "bob was never slowed down");
        // 2 s at 50/s plus a burst of 50, with slack for timing.
        assert!(b.0 <= 50 * 2 + 50 + 25, "bob got {} requests through", b.0);
        assert_eq!((a.1, a.2.len()), (0, 0), "alice saw errors: {:?}", a.2);
        assert!(a.0 > b.0, "alice {} vs bob {}", a.0, b.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_service_identity_calls_only_its_own_routes() {
    use blob_common::auth::ServiceRole::{self, Datanode, Edge, Gateway};
    use blob_common::presign::Keyring;
    bounded(async {
        let c = start(TestCluster::builder().fsync(false).s3(true)).await;
        let admin = c.client_config().expect("config");
        ok(&admin, &["mb", "svc"], None);
        ok(&admin, &["upload", "-", "svc/f"], Some(b"service routes"));
        let full = c.keyring().expect("keyring");
        let file_of = |role: ServiceRole| {
            let path = c.root().join(format!("{}.secret", role.name()));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            Keyring::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        // Each service's file holds its own secret and no other role's; a
        // gateway holds no URL key either.
        for role in [Datanode, Edge, Gateway] {
            let ring = file_of(role);
            assert_eq!(ring.service_secret(role), full.service_secret(role));
            for other in [Datanode, Edge, Gateway].into_iter().filter(|r| *r != role) {
                assert_eq!(
                    ring.service_secret(other),
                    None,
                    "{role:?} holds {other:?}'s secret"
                );
            }
        }
        assert_eq!(file_of(Gateway).secret(full.current_kid()), None);

        let as_role = |role: ServiceRole| {
            blob_rpc::Namenode::builder(
                &c.endpoint(),
                blob_rpc::Credentials::service(&file_of(role), role),
            )
            .retry(blob_rpc::RetryPolicy::NONE)
            .build()
            .expect("namenode client")
        };
        // The cluster secret itself signs URLs, not calls.
        let cluster = blob_rpc::Namenode::builder(
            &c.endpoint(),
            blob_rpc::Credentials::new(
                format!(
                    "{}{}",
                    blob_common::auth::CLUSTER_KEY_PREFIX,
                    full.current_kid()
                ),
                full.secret(full.current_kid())
                    .expect("current key")
                    .to_vec(),
            ),
        )
        .retry(blob_rpc::RetryPolicy::NONE)
        .build()
        .expect("namenode client");
        let (dn, edge, gw) = (as_role(Datanode), as_role(Edge), as_role(Gateway));
        use blob_rpc::Method;
        let file = [("bucket", "svc"), ("path", "f")];
        let key_lookup = ["service", "keys", c.access_key.as_str()];
        // What, as whom, method, path, query, the status wanted.
        type Case<'a> = (
            &'a str,
            &'a blob_rpc::Namenode,
            Method,
            &'a [&'a str],
            &'a [(&'a str, &'a str)],
            u16,
        );
        let cases: [Case; 14] = [
            (
                "datanode lists buckets",
                &dn,
                Method::GET,
                &["buckets"],
                &[],
                403,
            ),
            (
                "datanode reads a file",
                &dn,
                Method::GET,
                &["file", "locations"],
                &file,
                403,
            ),
            (
                "datanode calls admin",
                &dn,
                Method::GET,
                &["admin", "status"],
                &[],
                403,
            ),
            (
                "datanode reads a key",
                &dn,
                Method::GET,
                &key_lookup,
                &[],
                403,
            ),
            (
                "edge reads a key",
                &edge,
                Method::GET,
                &key_lookup,
                &[],
                403,
            ),
            (
                "edge lists buckets",
                &edge,
                Method::GET,
                &["buckets"],
                &[],
                403,
            ),
            (
                "edge calls admin",
                &edge,
                Method::GET,
                &["admin", "keys"],
                &[],
                403,
            ),
            (
                "edge locates a file to warm",
                &edge,
                Method::GET,
                &["file", "locations"],
                &file,
                200,
            ),
            (
                "gateway lists buckets",
                &gw,
                Method::GET,
                &["buckets"],
                &[],
                403,
            ),
            (
                "gateway reads a file",
                &gw,
                Method::GET,
                &["file", "locations"],
                &file,
                403,
            ),
            (
                "gateway makes a key",
                &gw,
                Method::POST,
                &["admin", "keys"],
                &[],
                403,
            ),
            (
                "gateway sends a heartbeat",
                &gw,
                Method::POST,
                &["datanodes", "heartbeat"],
                &[],
                403,
            ),
            (
                "the cluster secret reads a key",
                &cluster,
                Method::GET,
                &key_lookup,
                &[],
                403,
            ),
            (
                "the cluster secret lists nodes",
                &cluster,
                Method::GET,
                &["admin", "nodes"],
                &[],
                403,
            ),
        ];
        let mut refusals = 0u64;
        for (what, nn, method, path, query, want) in cases {
            let mut call = nn.call(method.clone(), path).query(query);
            // Refused by role before any body is parsed.
            if method == Method::POST {
                call = call.body(&serde_json::json!({"name": "x"}));
            }
            let got = match call.ok().await {
                Ok(()) => 200,
                Err(e) => e.status().unwrap_or(0),
            };
            assert_eq!(got, want, "{what}");
            refusals += u64::from(got == 403);
        }
        eprintln!("service identities: {refusals} calls outside their roles refused");
        // And the services that hold them still work: an S3 read goes
        // through the gateway's key grant.
        let out = s3_cmd(&c, "aws")
            .args(["s3", "cp", "s3://svc/f", "-"])
            .output()
            .expect("aws");
        assert_eq!(out.stdout, b"service routes");

        // The gateway never obtains a user's secret: what it gets for carol
        // (mid-rotation, so with two secrets) is the signing keys of one
        // SigV4 scope and a session that acts as her.
        let carol = create_key(&admin, "carol");
        let carol_new = rotate(&admin, &carol, "carol-new");
        let today = blob_common::auth::sigv4_date(blob_common::now_secs());
        let scope = [
            ("date", today.as_str()),
            ("region", "us-east-1"),
            ("service", "s3"),
        ];
        let grant_of = ["service", "keys", carol.access.as_str()];
        let raw = gw
            .get(&grant_of)
            .query(&scope)
            .bytes()
            .await
            .expect("grant");
        let text = String::from_utf8_lossy(&raw);
        for secret in [&carol.secret, &carol_new.secret] {
            assert!(
                !text.contains(secret.as_str()),
                "a grant holds a secret: {text}"
            );
        }
        let grant: blob_common::proto::keys::GatewayGrant =
            serde_json::from_slice(&raw).expect("grant JSON");
        let derived = |s: &str| {
            hex::encode(blob_common::auth::sigv4_signing_key(
                s,
                &today,
                "us-east-1",
                "s3",
            ))
        };
        assert_eq!(
            grant.signing_keys,
            vec![derived(&carol_new.secret), derived(&carol.secret)],
            "the grant holds each secret's signing key for that scope, newest first"
        );
        // A scope far from today is refused: no key for next year.
        let stale = gw
            .get(&grant_of)
            .query(&[
                ("date", "20000101"),
                ("region", "us-east-1"),
                ("service", "s3"),
            ])
            .ok()
            .await;
        assert_eq!(stale.err().and_then(|e| e.status()), Some(400));
        // Both of carol's secrets sign S3 requests until the old one retires.
        for (who, bucket) in [(&carol, "carol-old"), (&carol_new, "carol-new")] {
            let (made, err) = aws_as(&c, who, &["s3", "mb", &format!("s3://{bucket}")]);
            assert!(made, "S3 with one of carol's two secrets: {err}");
        }
        // SigV2 (the aws cli's presigned URLs), which needs the secret
        // itself, is checked by the namenode: with either secret too.
        let body = c.root().join("carol.txt");
        std::fs::write(&body, b"signed by carol").expect("writing");
        let (put, err) = aws_as(
            &c,
            &carol,
            &["s3", "cp", &body.to_string_lossy(), "s3://carol-old/v2.txt"],
        );
        assert!(put, "{err}");
        for who in [&carol, &carol_new] {
            let out = s3_cmd(&c, "aws")
                .env("AWS_ACCESS_KEY_ID", &who.access)
                .env("AWS_SECRET_ACCESS_KEY", &who.secret)
                .args(["s3", "presign", "s3://carol-old/v2.txt"])
                .output()
                .expect("aws presign");
            let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert!(url.contains("Signature="), "a presigned URL: {url}");
            let got = std::process::Command::new("curl")
                .args(["-sf", &url])
                .output()
                .expect("curl");
            assert_eq!(got.stdout, b"signed by carol", "{url}");
            let forged = url.replace("Signature=", "Signature=AAAA");
            let refused = std::process::Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &forged])
                .output()
                .expect("curl");
            assert_eq!(refused.stdout, b"403", "{forged}");
        }
        // The session acts as carol, with carol's rights only.
        let session = blob_rpc::Namenode::builder(
            &c.endpoint(),
            blob_rpc::Credentials::new(grant.session_key.clone(), grant.session_secret.clone()),
        )
        .retry(blob_rpc::RetryPolicy::NONE)
        .build()
        .expect("namenode client");
        let status = |r: Result<(), blob_rpc::Error>| match r {
            Ok(()) => 200,
            Err(e) => e.status().unwrap_or(0),
        };
        let buckets: blob_common::proto::namenode::ListBuckets = session
            .get(&["buckets"])
            .decode()
            .await
            .expect("carol's buckets");
        let mut names: Vec<_> = buckets.buckets.iter().map(|b| b.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["carol-new", "carol-old"],
            "the session sees carol's buckets"
        );
        assert_eq!(status(session.get(&["admin", "keys"]).ok().await), 403);
        assert_eq!(
            status(session.get(&["file", "locations"]).query(&file).ok().await),
            403,
            "carol may not read the admin's bucket"
        );
        // A session whose expiry is pushed later no longer verifies.
        let (expires, _) =
            blob_common::auth::parse_session_key(&grant.session_key).expect("a session key");
        let forged = blob_rpc::Namenode::builder(
            &c.endpoint(),
            blob_rpc::Credentials::new(
                blob_common::auth::session_access_key(&carol.access, expires + 86_400 * 365),
                grant.session_secret.clone(),
            ),
        )
        .retry(blob_rpc::RetryPolicy::NONE)
        .build()
        .expect("namenode client");
        assert_eq!(status(forged.get(&["buckets"]).ok().await), 403);
        // A secret made while the gateway holds carol's keys signs at once:
        // a signature that matches no cached key has the grant asked again.
        let (listed, err) = aws_as(&c, &carol_new, &["s3", "ls", "s3://carol-old/"]);
        assert!(listed, "{err}");
        ok(
            &admin,
            &["admin", "key", "rotate", &carol.access, "--retire-old"],
            None,
        );
        let carol_third = rotate(&admin, &carol_new, "carol-third");
        let (listed, err) = aws_as(&c, &carol_third, &["s3", "ls", "s3://carol-old/"]);
        assert!(listed, "a secret rotated a moment ago, through S3: {err}");
        // Deleting carol ends her sessions at once.
        ok(&admin, &["admin", "key", "delete", &carol.access], None);
        assert_eq!(status(session.get(&["buckets"]).ok().await), 403);
        eprintln!(
            "gateway grant: {} signing keys, no secret; session refused after delete",
            grant.signing_keys.len()
        );
    })
    .await;
}
