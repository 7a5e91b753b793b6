//! `admin key` and `admin bucket` (admin keys only): access keys, what each
//! may do to which bucket, bucket usage and quotas, and key rate limits.

use std::io::Write;

use anyhow::Context;
use blob_client::{
    BucketDetails, Client, CreateKey, GrantChange, KeyDetails, KeyLimits, Permissions, Quota,
};

use crate::cli::{BucketAdminCommand, KeyCommand, PermissionArgs};
use crate::render::{escape, format_date, human, note, render_table};

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(value)?).context("writing to stdout")
}

fn print_text(text: &str) -> anyhow::Result<()> {
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing to stdout")
}

/// What a permission set reads as: `read,write`, `owner`, `-`.
fn permissions_text(p: &Permissions) -> String {
    let names: Vec<&str> = [(p.read, "read"), (p.write, "write"), (p.owner, "owner")]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(",")
    }
}

fn limits_text(l: &KeyLimits) -> String {
    match (l.rps, l.bandwidth) {
        (None, None) => "unlimited".into(),
        (rps, bw) => [
            rps.map(|r| format!("{r} req/s")),
            bw.map(|b| format!("{}/s", human(b))),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", "),
    }
}

/// A `0` given for a limit means none.
fn nonzero<T: PartialEq + Default>(v: Option<T>) -> Option<T> {
    v.filter(|v| *v != T::default())
}

pub(crate) async fn key(client: &Client, command: KeyCommand, quiet: bool) -> anyhow::Result<()> {
    match command {
        KeyCommand::Create { name, admin, json } => {
            let k = client
                .create_key(&CreateKey {
                    name: name.clone(),
                    admin,
                })
                .await
                .with_context(|| format!("creating key {name:?}"))?;
            if json {
                print_json(&k)?;
            } else {
                print_text(&format!(
                    "name:       {}\naccess_key: {}\nsecret_key: {}\n",
                    escape(&k.name),
                    k.access_key,
                    k.secret_key
                ))?;
                note(
                    quiet,
                    format_args!("the secret is shown only now: keep it somewhere safe"),
                );
            }
        }
        KeyCommand::List { json } => {
            let keys = client.list_keys().await.context("listing keys")?;
            if json {
                return print_json(&keys);
            }
            let rows: Vec<Vec<String>> = keys
                .keys
                .iter()
                .map(|k| {
                    vec![
                        k.access_key.clone(),
                        escape(&k.name),
                        if k.admin { "admin" } else { "-" }.into(),
                        k.secrets.to_string(),
                        limits_text(&k.limits),
                        format_date(k.created_ms),
                    ]
                })
                .collect();
            print_text(&render_table(
                &["ACCESS KEY", "NAME", "ROLE", "SECRETS", "LIMITS", "CREATED"],
                &[false, false, false, true, false, false],
                &rows,
            ))?;
        }
        KeyCommand::Info {
            key: access_key,
            json,
        } => {
            let d = client
                .key_info(&access_key)
                .await
                .with_context(|| format!("looking up key {access_key}"))?;
            if json {
                return print_json(&d);
            }
            print_text(&render_key(&d))?;
        }
        KeyCommand::Delete { key: access_key } => {
            client
                .delete_key(&access_key)
                .await
                .with_context(|| format!("deleting key {access_key}"))?;
            note(quiet, format_args!("deleted key {access_key}"));
        }
        KeyCommand::Rotate {
            key: access_key,
            retire_old,
            json,
        } => {
            if retire_old {
                let d = client
                    .retire_old_secret(&access_key)
                    .await
                    .with_context(|| format!("retiring the old secret of {access_key}"))?;
                if json {
                    return print_json(&d);
                }
                note(
                    quiet,
                    format_args!("{access_key} now signs with its newest secret only"),
                );
            } else {
                let k = client
                    .rotate_key(&access_key)
                    .await
                    .with_context(|| format!("rotating key {access_key}"))?;
                if json {
                    return print_json(&k);
                }
                print_text(&format!(
                    "access_key: {}\nsecret_key: {}\n",
                    k.access_key, k.secret_key
                ))?;
                note(
                    quiet,
                    format_args!(
                        "both secrets work until `blobctl admin key rotate {access_key} --retire-old`"
                    ),
                );
            }
        }
        KeyCommand::Limit {
            key: access_key,
            rps,
            bandwidth,
            json,
        } => {
            let limits = KeyLimits {
                rps: nonzero(rps),
                bandwidth: nonzero(bandwidth),
            };
            let d = client
                .set_key_limits(&access_key, &limits)
                .await
                .with_context(|| format!("limiting key {access_key}"))?;
            if json {
                return print_json(&d);
            }
            note(
                quiet,
                format_args!("{access_key}: {}", limits_text(&d.key.limits)),
            );
        }
    }
    Ok(())
}

fn render_key(d: &KeyDetails) -> String {
    let k = &d.key;
    let mut text = format!(
        "access_key: {}\nname:       {}\nrole:       {}\nsecrets:    {}\nlimits:     {}\ncreated:    {}\n",
        k.access_key,
        escape(&k.name),
        if k.admin { "admin (every bucket)" } else { "user" },
        k.secrets,
        limits_text(&k.limits),
        format_date(k.created_ms)
    );
    if !d.buckets.is_empty() {
        let rows: Vec<Vec<String>> = d
            .buckets
            .iter()
            .map(|g| vec![g.bucket.clone(), permissions_text(&g.allowed)])
            .collect();
        text.push('\n');
        text.push_str(&render_table(
            &["BUCKET", "PERMISSIONS"],
            &[false, false],
            &rows,
        ));
    }
    text
}

fn render_bucket(d: &BucketDetails) -> String {
    let quota = |v: Option<u64>, f: fn(u64) -> String| v.map_or("unlimited".into(), f);
    let mut text = format!(
        "bucket:  {}\nowner:   {}\ncreated: {}\nusage:   {} in {} objects\nquota:   {} bytes, {} objects\n",
        d.name,
        d.owner.as_deref().unwrap_or("- (admin keys only)"),
        format_date(d.created_ms),
        human(d.usage.bytes),
        d.usage.objects,
        quota(d.quota.max_bytes, human),
        quota(d.quota.max_objects, |n| n.to_string()),
    );
    if !d.grants.is_empty() {
        let rows: Vec<Vec<String>> = d
            .grants
            .iter()
            .map(|g| vec![g.access_key.clone(), permissions_text(&g.allowed)])
            .collect();
        text.push('\n');
        text.push_str(&render_table(
            &["ACCESS KEY", "PERMISSIONS"],
            &[false, false],
            &rows,
        ));
    }
    text
}

pub(crate) async fn bucket(client: &Client, command: BucketAdminCommand) -> anyhow::Result<()> {
    let grant = |key: String, allow: bool, p: PermissionArgs| GrantChange {
        access_key: key,
        allow,
        permissions: Permissions {
            read: p.read,
            write: p.write,
            owner: p.owner,
        },
    };
    let (details, json) = match command {
        BucketAdminCommand::Info { bucket, json } => {
            let d = client
                .bucket_info(&bucket)
                .await
                .with_context(|| format!("looking up bucket {bucket}"))?;
            (d, json)
        }
        BucketAdminCommand::Allow {
            bucket,
            key,
            permissions,
        } => {
            let d = client
                .change_grant(&bucket, &grant(key.clone(), true, permissions))
                .await
                .with_context(|| format!("granting {key} on {bucket}"))?;
            (d, false)
        }
        BucketAdminCommand::Deny {
            bucket,
            key,
            permissions,
        } => {
            let d = client
                .change_grant(&bucket, &grant(key.clone(), false, permissions))
                .await
                .with_context(|| format!("denying {key} on {bucket}"))?;
            (d, false)
        }
        BucketAdminCommand::Quota {
            bucket,
            max_bytes,
            max_objects,
        } => {
            let q = Quota {
                max_bytes: nonzero(max_bytes),
                max_objects: nonzero(max_objects),
            };
            let d = client
                .set_quota(&bucket, &q)
                .await
                .with_context(|| format!("setting the quota of {bucket}"))?;
            (d, false)
        }
    };
    if json {
        return print_json(&details);
    }
    print_text(&render_bucket(&details))
}
