//! Runs one parsed command: builds the [`Client`] from the layered
//! configuration, then hands off to the module of the command's family.

use std::process::ExitCode;

use std::io::Write;

use anyhow::Context;
use blob_client::sse::{CustomerKey, Encrypt};
use blob_client::{Client, UploadOptions};
use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::config::{default_config_path, load_config, ConfigLayer, TimeoutSetting};

pub(crate) mod access;
pub(crate) mod admin;
pub(crate) mod buckets;
pub(crate) mod copy;
pub(crate) mod edge;
pub(crate) mod filter;
pub(crate) mod hashes;
pub(crate) mod mount;
pub(crate) mod objects;
pub(crate) mod sync;
pub(crate) mod transfer;
pub(crate) mod tree;

/// Runs `cli`'s command; returns the exit status it calls for (errors are
/// mapped by the caller).
pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Completions { shell } = cli.command {
        // Needs no configuration: it only describes the command line.
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "blobctl", &mut script);
        std::io::stdout()
            .lock()
            .write_all(&script)
            .context("writing to stdout")?;
        return Ok(ExitCode::SUCCESS);
    }
    let flags = ConfigLayer {
        endpoint: cli.endpoint.clone(),
        access_key: cli.access_key.clone(),
        secret_key: cli.secret_key.clone(),
        zone: cli.zone.clone(),
        no_edge: cli.no_edge.then_some(true),
        timeout: cli.timeout.map(|d| TimeoutSetting::Secs(d.as_secs_f64())),
        ca_file: cli.ca_file.clone(),
    };
    let cfg = load_config(
        flags,
        cli.config.clone(),
        &|k| std::env::var(k).ok(),
        default_config_path(),
    )?;
    let client = Client::new(cfg).context("configuring the client")?;
    let (client, encrypt) = encryption(client, &cli)?;
    let quiet = cli.quiet;
    match cli.command {
        Command::Mb { bucket } => buckets::mb(&client, &bucket, quiet).await?,
        Command::Rb { bucket } => buckets::rb(&client, &bucket, quiet).await?,
        Command::Ls {
            target,
            recursive,
            human_readable,
            long,
            json,
            help: _,
        } => {
            let o = objects::LsOptions {
                recursive,
                human: human_readable,
                long,
                json,
            };
            objects::ls(&client, target.as_deref(), o).await?;
        }
        Command::Du {
            target,
            summarize,
            human_readable,
            json,
            help: _,
        } => objects::du(&client, &target, summarize, human_readable, json).await?,
        Command::Find {
            target,
            name,
            newer,
            json,
        } => return objects::find(&client, &target, name.as_deref(), newer, json).await,
        Command::Stat { target, json } => objects::stat(&client, &target, json).await?,
        Command::Rm {
            target,
            recursive: false,
            ..
        } => objects::rm(&client, &target, quiet).await?,
        Command::Rm {
            target,
            recursive: true,
            force,
            parallel,
        } => {
            objects::rm_recursive(&client, &target, force, usize::from(parallel), quiet).await?;
        }
        Command::Mv { from, to, parallel } => {
            let o = copy::MvOptions {
                parallel: usize::from(parallel),
                quiet,
            };
            copy::mv(&client, &from, &to, &o).await?;
        }
        Command::Upload {
            local,
            target,
            chunk_size,
            parallel,
            replication,
        } => {
            let opts = UploadOptions {
                chunk_size,
                parallel: usize::from(parallel),
                replication,
                encrypt: encrypt.clone(),
                ..UploadOptions::default()
            };
            transfer::upload(&client, &local, &target, opts, quiet).await?;
        }
        Command::Download {
            target,
            local,
            parallel,
        } => transfer::download(&client, &target, &local, usize::from(parallel), quiet).await?,
        Command::Cp {
            src,
            dst,
            recursive,
            parallel,
            chunk_size,
            replication,
            dry_run,
            json,
            filters,
            exclude: _,
            include: _,
        } => {
            let o = copy::CpOptions {
                dry_run,
                recursive,
                run: tree_run(parallel, chunk_size, replication, quiet || json, &encrypt),
                filters: filter::Filters::new(&filters)?,
                json,
            };
            copy::cp(&client, &src, &dst, o).await?;
        }
        Command::Sync {
            src,
            dst,
            delete,
            dry_run,
            parallel,
            chunk_size,
            replication,
            json,
            filters,
            exclude: _,
            include: _,
        } => {
            let o = sync::SyncOptions {
                delete,
                dry_run,
                run: tree_run(parallel, chunk_size, replication, quiet || json, &encrypt),
                filters: filter::Filters::new(&filters)?,
                json,
            };
            sync::sync(&client, &src, &dst, o).await?;
        }
        Command::Cat { target } => transfer::download(&client, &target, "-", 8, true).await?,
        Command::Mount(m) => mount::mount(client, &m, encrypt).await?,
        Command::Admin { command } => return admin::admin(&client, command, quiet).await,
        Command::Completions { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// How a tree command runs its files.
fn tree_run(
    parallel: u16,
    chunk_size: u64,
    replication: Option<u8>,
    quiet: bool,
    encrypt: &Option<Encrypt>,
) -> tree::RunOptions {
    tree::RunOptions {
        parallel: usize::from(parallel),
        upload: UploadOptions {
            chunk_size,
            // Files run in parallel too: fewer chunks each.
            parallel: 4,
            replication,
            encrypt: encrypt.clone(),
            ..UploadOptions::default()
        },
        quiet,
    }
}

/// `--sse` and `--sse-c-key-file`: how uploads are encrypted, and the
/// customer key reads of SSE-C files use.
fn encryption(client: Client, cli: &Cli) -> anyhow::Result<(Client, Option<Encrypt>)> {
    if let Some(path) = &cli.sse_c_key_file {
        let data = std::fs::read(path)
            .with_context(|| format!("reading the SSE-C key file {}", path.display()))?;
        let key = CustomerKey::from_file_contents(&data).with_context(|| {
            format!(
                "{} does not hold a 256-bit key (32 raw bytes, or 64 hex digits, or base64)",
                path.display()
            )
        })?;
        return Ok((
            client.with_customer_key(key.clone()),
            Some(Encrypt::Customer(key)),
        ));
    }
    Ok((client, cli.sse.as_ref().map(|_| Encrypt::S3)))
}
