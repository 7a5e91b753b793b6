//! Which edge cache a reader's URLs point at.
//!
//! Edges are configured on the namenode (`--edge ZONE=URL`, repeatable, or
//! `[[edges]]` in the config file); their order is the preference order.
//! A reader names its zone (`?zone=` on the locations call):
//! 1. an edge configured for that zone is picked;
//! 2. otherwise the nearest one: the longest common prefix of the zone
//!    names (`eu-west-1b` is nearer `eu-west-1a` than `eu-central-1a`,
//!    and both nearer than `us-east-1a`), the first configured on a tie;
//! 3. a reader that names no zone gets the first configured edge;
//! 4. with no edges configured, readers go to the datanodes directly.
//!
//! The edge's URL always comes first and the datanodes' after it, so a
//! dead edge costs a reader one refused connection per chunk, never a
//! failed read.

use crate::EdgeConfig;

/// The edge for a reader in `zone`, per the rules above.
pub(crate) fn pick<'a>(edges: &'a [EdgeConfig], zone: Option<&str>) -> Option<&'a EdgeConfig> {
    let zone = match zone.map(str::trim) {
        Some(z) if !z.is_empty() => z,
        _ => return edges.first(),
    };
    if let Some(e) = edges.iter().find(|e| e.zone == zone) {
        return Some(e);
    }
    let mut best: Option<(&EdgeConfig, usize)> = None;
    for e in edges {
        let shared = common_prefix(&e.zone, zone);
        if best.is_none_or(|(_, n)| shared > n) {
            best = Some((e, shared));
        }
    }
    best.map(|(e, _)| e)
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

/// Parses `ZONE=URL` (the `--edge` flag).
pub fn parse_edge(s: &str) -> Result<EdgeConfig, String> {
    let (zone, url) = s.split_once('=').ok_or_else(|| {
        format!("invalid edge {s:?}: expected ZONE=URL, e.g. eu-1=http://10.0.0.5:9880")
    })?;
    let e = EdgeConfig {
        zone: zone.trim().to_string(),
        url: url.trim().trim_end_matches('/').to_string(),
    };
    e.validate()?;
    Ok(e)
}

impl EdgeConfig {
    /// Checks the zone (a plain word) and the URL (`http(s)://host[:port]`).
    pub fn validate(&self) -> Result<(), String> {
        if self.zone.is_empty()
            || self.zone.len() > 64
            || !self
                .zone
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "invalid edge zone {:?}: 1 to 64 letters, digits, '-', '_' or '.'",
                self.zone
            ));
        }
        let rest = self
            .url
            .strip_prefix("http://")
            .or_else(|| self.url.strip_prefix("https://"));
        match rest {
            Some(host) if !host.is_empty() && !host.contains(['?', '#', ' ']) => Ok(()),
            _ => Err(format!(
                "invalid edge URL {:?}: expected http://host:port",
                self.url
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(zones: &[&str]) -> Vec<EdgeConfig> {
        zones
            .iter()
            .map(|z| EdgeConfig {
                zone: z.to_string(),
                url: format!("http://{z}:1"),
            })
            .collect()
    }

    fn zone_of(e: Option<&EdgeConfig>) -> Option<&str> {
        e.map(|e| e.zone.as_str())
    }

    #[test]
    fn own_zone_then_nearest_then_first() {
        let e = edges(&["us-east-1a", "eu-west-1a", "eu-central-1a"]);
        assert_eq!(zone_of(pick(&e, Some("eu-west-1a"))), Some("eu-west-1a"));
        assert_eq!(zone_of(pick(&e, Some("eu-west-1b"))), Some("eu-west-1a"));
        assert_eq!(
            zone_of(pick(&e, Some("eu-central-2"))),
            Some("eu-central-1a")
        );
        assert_eq!(zone_of(pick(&e, Some("eu-north-1"))), Some("eu-west-1a"));
        // Nothing shared: the first configured.
        assert_eq!(zone_of(pick(&e, Some("ap-south-1"))), Some("us-east-1a"));
        assert_eq!(zone_of(pick(&e, None)), Some("us-east-1a"));
        assert_eq!(zone_of(pick(&e, Some(" "))), Some("us-east-1a"));
        assert_eq!(zone_of(pick(&[], Some("eu-west-1a"))), None);
        assert_eq!(zone_of(pick(&[], None)), None);
    }

    #[test]
    fn edge_flags_parse() {
        let e = parse_edge("eu-1=http://127.0.0.1:9880/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.zone, "eu-1");
        assert_eq!(e.url, "http://127.0.0.1:9880");
        for bad in [
            "eu-1",
            "=http://x:1",
            "eu 1=http://x:1",
            "eu=ftp://x",
            "eu=http://",
        ] {
            assert!(parse_edge(bad).is_err(), "{bad}");
        }
    }
}
