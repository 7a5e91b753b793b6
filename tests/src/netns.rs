//! Network partitions: a datanode in its own network namespace, joined to
//! the host by a veth pair whose host end can be taken down and up again
//! ([`TestCluster::cut_link`], [`TestCluster::restore_link`]). Needs root
//! and `ip`.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::TestCluster;

/// A network namespace joined to the host by a veth pair.
#[derive(Debug)]
pub(crate) struct Netns {
    /// The namespace's name (`ip netns exec NAME`).
    pub(crate) name: String,
    host_if: String,
    /// The host end's address.
    pub(crate) host_ip: String,
    /// The namespace end's address.
    pub(crate) ns_ip: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Netns {
    /// Creates a namespace and its veth pair, addressed and up.
    pub(crate) fn create() -> Result<Netns> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Unique per process and per cluster; a /30 subnet of 10.231/16 each.
        let tag = (std::process::id() % 4000) * 16 + n % 16;
        let name = format!("blobt{tag}");
        let (a, b) = ((tag * 4) / 256 % 256, (tag * 4) % 256);
        let net = Netns {
            name: name.clone(),
            host_if: format!("bth{tag}"),
            host_ip: format!("10.231.{a}.{}", b + 1),
            ns_ip: format!("10.231.{a}.{}", b + 2),
        };
        let ns_if = format!("btn{tag}");
        let _ = ip(&["netns", "del", &name]);
        ip(&["netns", "add", &name])?;
        ip(&[
            "link",
            "add",
            &net.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ])?;
        ip(&["link", "set", &ns_if, "netns", &name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", net.host_ip),
            "dev",
            &net.host_if,
        ])?;
        ip(&["link", "set", &net.host_if, "up"])?;
        ip(&[
            "netns",
            "exec",
            &name,
            "ip",
            "addr",
            "add",
            &format!("{}/30", net.ns_ip),
            "dev",
            &ns_if,
        ])?;
        ip(&["netns", "exec", &name, "ip", "link", "set", &ns_if, "up"])?;
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"])?;
        Ok(net)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}

impl TestCluster {
    /// Cuts the namespaced datanode's network link (a partition).
    pub fn cut_link(&self) -> Result<()> {
        tracing::info!("--- cut the link");
        let n = self
            .netns
            .as_ref()
            .context("the cluster has no namespaced datanode")?;
        ip(&["link", "set", &n.host_if, "down"])
    }

    /// Restores the namespaced datanode's link.
    pub fn restore_link(&self) -> Result<()> {
        tracing::info!("--- restore the link");
        let n = self
            .netns
            .as_ref()
            .context("the cluster has no namespaced datanode")?;
        ip(&["link", "set", &n.host_if, "up"])
    }
}
