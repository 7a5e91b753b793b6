//! The datanode registry: who is alive, and where new replicas go.
//!
//! Liveness is derived from the time of the last heartbeat, with `now` a
//! parameter so the state machine is tested without a clock: silent for
//! `stale_after` a node gets no new replicas and is read last; silent for
//! `dead_after` it is dead and its replicas no longer count.
//!
//! Silence is measured on the namenode's own monotonic clock, and only
//! while the namenode was there to listen: when [`Nodes::tick`] finds that
//! the namenode itself was stopped or not scheduled for a while (SIGSTOP, a
//! VM pause, a starved machine), the gap is not held against any datanode.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use blob_common::proto::heartbeat::Heartbeat;
use blob_common::NodeId;
use rand::Rng;

use crate::db::AdminState;
use crate::error::Error;

/// How a node is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Liveness {
    /// Heartbeating.
    Live,
    /// Silent for a while: read last, no new replicas.
    Stale,
    /// Silent too long, or never heard from since start.
    Dead,
}

/// What the namenode knows of one datanode.
#[derive(Debug, Clone)]
pub struct NodeState {
    /// Base URL.
    pub url: String,
    /// Last heartbeat, if any since start.
    pub last_seen: Option<Instant>,
    /// Its content.
    pub heartbeat: Option<Heartbeat>,
    /// Whether a full chunk report arrived since this namenode started.
    pub reported: bool,
    /// When a full report was last asked for.
    pub report_asked: Option<Instant>,
    /// What the operator asked of it.
    pub admin: AdminState,
}

/// The registry.
#[derive(Debug)]
pub struct Nodes {
    nodes: HashMap<NodeId, NodeState>,
    stale_after: Duration,
    dead_after: Duration,
    started: Instant,
    /// The last time the namenode looked at its clock ([`Nodes::tick`]).
    last_tick: Instant,
    /// A gap between ticks longer than this was a pause of the namenode.
    pause_after: Duration,
}

impl Nodes {
    /// An empty registry with the given intervals.
    pub fn new(stale_after: Duration, dead_after: Duration) -> Self {
        let now = Instant::now();
        Self {
            nodes: HashMap::new(),
            stale_after,
            dead_after,
            started: now,
            last_tick: now,
            pause_after: (stale_after / 2).max(Duration::from_millis(50)),
        }
    }

    /// How long a gap between two [`Nodes::tick`]s must be to count as a
    /// pause of the namenode.
    pub fn pause_after(&self) -> Duration {
        self.pause_after
    }

    /// Notes that the namenode is running at `now`. If it was not (the gap
    /// since the last tick is longer than `pause_after`), every node's
    /// silence is shortened by the gap, capped at `now`: a node heard just
    /// before the pause is as alive as it was, and nobody is declared dead
    /// for heartbeats the namenode was not there to receive. Returns the
    /// gap when it was a pause.
    pub fn tick(&mut self, now: Instant) -> Option<Duration> {
        let gap = now.saturating_duration_since(self.last_tick);
        self.last_tick = self.last_tick.max(now);
        if gap <= self.pause_after {
            return None;
        }
        for s in self.nodes.values_mut() {
            if let Some(t) = s.last_seen {
                s.last_seen = Some((t + gap).min(now));
            }
        }
        self.started = (self.started + gap).min(now);
        Some(gap)
    }

    /// Adds a node known from the metadata store (not heard from yet).
    pub fn add_known(&mut self, id: NodeId, url: String, admin: AdminState) {
        self.nodes.entry(id).or_insert(NodeState {
            url,
            last_seen: None,
            heartbeat: None,
            reported: false,
            report_asked: None,
            admin,
        });
    }

    /// Records a heartbeat. Returns true when the node is new or moved (its
    /// record must be persisted). A node coming back from the dead is asked
    /// for a full report again, since its chunks may have changed.
    pub fn heartbeat(&mut self, hb: Heartbeat, now: Instant) -> bool {
        let back = self
            .nodes
            .get(&hb.node)
            .is_some_and(|s| s.last_seen.is_some() && self.liveness(s, now) == Liveness::Dead);
        let changed = self.nodes.get(&hb.node).is_none_or(|s| s.url != hb.url);
        let st = self.nodes.entry(hb.node).or_insert(NodeState {
            url: hb.url.clone(),
            last_seen: None,
            heartbeat: None,
            reported: false,
            report_asked: None,
            admin: AdminState::Normal,
        });
        if back {
            st.reported = false;
            st.report_asked = None;
        }
        st.url = hb.url.clone();
        st.last_seen = Some(now);
        st.heartbeat = Some(hb);
        changed
    }

    /// Sets a node's administrative state; false if the node is unknown.
    pub fn set_admin(&mut self, id: &NodeId, admin: AdminState) -> bool {
        match self.nodes.get_mut(id) {
            Some(s) => {
                s.admin = admin;
                true
            }
            None => false,
        }
    }

    /// Whether to ask the node for a full report now (none arrived since
    /// start, and none was asked for in the last 30 s).
    pub fn should_ask_report(&mut self, id: &NodeId, now: Instant) -> bool {
        let Some(s) = self.nodes.get_mut(id) else {
            return false;
        };
        if s.reported
            || s.report_asked
                .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(30))
        {
            return false;
        }
        s.report_asked = Some(now);
        true
    }

    /// Marks that a full report arrived.
    pub fn mark_reported(&mut self, id: &NodeId) {
        if let Some(s) = self.nodes.get_mut(id) {
            s.reported = true;
        }
    }

    /// A node's state.
    pub fn get(&self, id: &NodeId) -> Option<&NodeState> {
        self.nodes.get(id)
    }

    /// Every node with its liveness.
    pub fn all(&self, now: Instant) -> Vec<(NodeId, &NodeState, Liveness)> {
        let mut v: Vec<_> = self
            .nodes
            .iter()
            .map(|(id, s)| (*id, s, self.liveness(s, now)))
            .collect();
        v.sort_by_key(|(id, ..)| *id);
        v
    }

    /// A node's liveness at `now`.
    pub fn liveness(&self, s: &NodeState, now: Instant) -> Liveness {
        match s.last_seen {
            None => Liveness::Dead,
            Some(t) => {
                let silent = now.saturating_duration_since(t);
                if silent >= self.dead_after {
                    Liveness::Dead
                } else if silent >= self.stale_after {
                    Liveness::Stale
                } else {
                    Liveness::Live
                }
            }
        }
    }

    fn writable(&self, s: &NodeState, now: Instant) -> bool {
        self.liveness(s, now) == Liveness::Live
            && s.admin == AdminState::Normal
            && !s.heartbeat.as_ref().is_some_and(|h| h.read_only)
    }

    /// Chooses `n` distinct writable nodes outside `exclude`, weighted by
    /// free space (weighted sampling without replacement).
    pub fn place(
        &self,
        n: usize,
        exclude: &[NodeId],
        now: Instant,
        rng: &mut impl Rng,
    ) -> Result<Vec<(NodeId, String)>, Error> {
        let mut candidates: Vec<(f64, NodeId, &str)> = self
            .nodes
            .iter()
            .filter(|(id, s)| !exclude.contains(id) && self.writable(s, now))
            .map(|(id, s)| {
                let free = s.heartbeat.as_ref().map_or(1, |h| h.available.max(1)) as f64;
                // Efraimidis–Spirakis: the n largest u^(1/w) are a weighted
                // sample without replacement; ln keeps it in range.
                let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
                (u.ln() / free, *id, s.url.as_str())
            })
            .collect();
        if candidates.len() < n {
            let full = self
                .nodes
                .values()
                .filter(|s| {
                    // Full nodes the caller excluded (they refused a write)
                    // count too: they are why there is no room.
                    self.liveness(s, now) == Liveness::Live
                        && s.heartbeat.as_ref().is_some_and(|h| h.read_only)
                })
                .count();
            if full > 0 {
                return Err(Error::ClusterFull {
                    want: n,
                    writable: candidates.len(),
                    full,
                });
            }
            return Err(Error::NotEnoughNodes {
                want: n,
                live: candidates.len(),
            });
        }
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        Ok(candidates
            .into_iter()
            .take(n)
            .map(|(_, id, url)| (id, url.to_string()))
            .collect())
    }

    /// Orders a chunk's replicas for reading: live nodes first (least loaded
    /// first), then stale, then dead or unknown. Unknown ids are dropped.
    pub fn read_order(&self, replicas: &[NodeId], now: Instant) -> Vec<(NodeId, String)> {
        let mut v: Vec<_> = replicas
            .iter()
            .filter_map(|id| {
                let s = self.nodes.get(id)?;
                let load = s.heartbeat.as_ref().map_or(u64::MAX, |h| h.load);
                let draining = s.admin != AdminState::Normal;
                Some((self.liveness(s, now), draining, load, *id, s.url.clone()))
            })
            .collect();
        v.sort_by_key(|(l, draining, load, ..)| (*l, *draining, *load));
        v.into_iter().map(|(.., id, url)| (id, url)).collect()
    }

    /// Whether a replica on this node counts towards a chunk's replication:
    /// the node is not dead and not being drained.
    pub fn is_counted(&self, id: &NodeId, now: Instant) -> bool {
        self.nodes.get(id).is_some_and(|s| {
            self.liveness(s, now) != Liveness::Dead && s.admin == AdminState::Normal
        })
    }

    /// Whether this node can serve as the source of a replica copy (it is
    /// live, whatever its administrative state).
    pub fn is_source(&self, id: &NodeId, now: Instant) -> bool {
        self.nodes
            .get(id)
            .is_some_and(|s| self.liveness(s, now) == Liveness::Live)
    }

    /// Nodes that are dead or being drained: their replicas need copies.
    pub fn needing_evacuation(&self, now: Instant) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, s)| {
                // A node not heard from since this namenode started is given
                // the dead interval to show up before its replicas are copied.
                let known_dead = s.last_seen.is_some()
                    || now.saturating_duration_since(self.started) >= self.dead_after;
                (known_dead && self.liveness(s, now) == Liveness::Dead)
                    || s.admin == AdminState::Decommissioning
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether every replica holder is heard from (safe to trim excess).
    pub fn all_live(&self, ids: &[NodeId], now: Instant) -> bool {
        ids.iter().all(|id| {
            self.nodes
                .get(id)
                .is_some_and(|s| self.liveness(s, now) == Liveness::Live)
        })
    }

    /// Number of writable nodes outside `exclude`.
    pub fn writable_excluding(&self, exclude: &[NodeId], now: Instant) -> usize {
        self.nodes
            .iter()
            .filter(|(id, s)| !exclude.contains(id) && self.writable(s, now))
            .count()
    }

    /// Number of writable nodes.
    pub fn writable_count(&self, now: Instant) -> usize {
        self.nodes
            .values()
            .filter(|s| self.writable(s, now))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(n: u8, available: u64) -> Heartbeat {
        Heartbeat {
            node: NodeId([n; 8]),
            url: format!("http://127.0.0.1:{n}"),
            capacity: 100,
            used: 0,
            available,
            chunk_count: 0,
            load: n as u64,
            read_only: false,
        }
    }

    #[test]
    fn a_pause_of_the_namenode_is_not_held_against_datanodes() {
        let t0 = Instant::now();
        let mut n = Nodes::new(Duration::from_secs(10), Duration::from_secs(60));
        n.tick(t0);
        n.heartbeat(hb(1, 100), t0);
        n.heartbeat(hb(2, 100), t0);
        // Node 3 falls silent while the namenode runs.
        n.heartbeat(hb(3, 100), t0);
        let t1 = t0 + Duration::from_secs(1);
        n.tick(t1);
        n.heartbeat(hb(1, 100), t1);
        n.heartbeat(hb(2, 100), t1);
        let t2 = t1 + Duration::from_secs(61);
        for t in (1..=61).map(|s| t1 + Duration::from_secs(s)) {
            n.tick(t);
        }
        let dead3 = n.get(&NodeId([3; 8])).map(|s| n.liveness(s, t2));
        assert_eq!(
            dead3,
            Some(Liveness::Dead),
            "a node silent while the namenode ran dies"
        );
        // Now the namenode itself stops for three dead intervals.
        let t3 = t2 + Duration::from_secs(180);
        n.heartbeat(hb(1, 100), t2);
        n.heartbeat(hb(2, 100), t2);
        assert_eq!(n.tick(t3), Some(Duration::from_secs(180)));
        for id in [1u8, 2] {
            let l = n.get(&NodeId([id; 8])).map(|s| n.liveness(s, t3));
            assert_eq!(l, Some(Liveness::Live), "node {id} after the pause");
        }
        // Silence after the pause counts again.
        let t4 = t3 + Duration::from_secs(61);
        for t in (1..=61).map(|s| t3 + Duration::from_secs(s)) {
            assert_eq!(n.tick(t), None);
        }
        let l = n.get(&NodeId([1; 8])).map(|s| n.liveness(s, t4));
        assert_eq!(l, Some(Liveness::Dead));
        // Short gaps are ordinary scheduling, not pauses.
        assert_eq!(n.tick(t4 + Duration::from_secs(1)), None);
    }

    #[test]
    fn liveness_follows_silence() {
        let t0 = Instant::now();
        let mut nodes = Nodes::new(Duration::from_secs(10), Duration::from_secs(60));
        nodes.heartbeat(hb(1, 10), t0);
        let s = nodes.get(&NodeId([1; 8])).cloned().expect("registered");
        assert_eq!(
            nodes.liveness(&s, t0 + Duration::from_secs(9)),
            Liveness::Live
        );
        assert_eq!(
            nodes.liveness(&s, t0 + Duration::from_secs(10)),
            Liveness::Stale
        );
        assert_eq!(
            nodes.liveness(&s, t0 + Duration::from_secs(60)),
            Liveness::Dead
        );
        nodes.add_known(NodeId([2; 8]), "http://x".into(), AdminState::Normal);
        let s = nodes.get(&NodeId([2; 8])).cloned().expect("known");
        assert_eq!(nodes.liveness(&s, t0), Liveness::Dead);
    }

    #[test]
    fn placement_picks_distinct_live_writable_nodes() {
        let t0 = Instant::now();
        let mut nodes = Nodes::new(Duration::from_secs(10), Duration::from_secs(60));
        for n in 1..=4 {
            nodes.heartbeat(hb(n, 1000), t0);
        }
        let mut ro = hb(5, 1000);
        ro.read_only = true;
        nodes.heartbeat(ro, t0);
        nodes.heartbeat(hb(6, 1000), t0 - Duration::from_secs(20)); // stale
        let mut rng = rand::thread_rng();
        for _ in 0..200 {
            let got = nodes
                .place(3, &[NodeId([1; 8])], t0, &mut rng)
                .expect("enough nodes");
            let mut ids: Vec<_> = got.iter().map(|(id, _)| id.0[0]).collect();
            ids.sort();
            assert_eq!(ids, vec![2, 3, 4]);
        }
        // Node 5 is live but full: the answer says the cluster is full.
        assert!(matches!(
            nodes.place(4, &[NodeId([1; 8])], t0, &mut rng),
            Err(Error::ClusterFull {
                want: 4,
                writable: 3,
                full: 1
            })
        ));
        // Excluded by the caller (it refused a write), it still explains why.
        assert!(matches!(
            nodes.place(4, &[NodeId([1; 8]), NodeId([5; 8])], t0, &mut rng),
            Err(Error::ClusterFull {
                want: 4,
                writable: 3,
                full: 1
            })
        ));
        // With no full node, too few live nodes is said as such.
        let mut few = Nodes::new(Duration::from_secs(10), Duration::from_secs(60));
        for n in 1..=3 {
            few.heartbeat(hb(n, 1000), t0);
        }
        assert!(matches!(
            few.place(4, &[], t0, &mut rng),
            Err(Error::NotEnoughNodes { want: 4, live: 3 })
        ));
    }

    #[test]
    fn placement_is_weighted_by_free_space() {
        let t0 = Instant::now();
        let mut nodes = Nodes::new(Duration::from_secs(10), Duration::from_secs(60));
        nodes.heartbeat(hb(1, 9_000), t0);
        nodes.heartbeat(hb(2, 1_000), t0);
        let mut rng = rand::thread_rng();
        let firsts = (0..2000)
            .filter(|_| nodes.place(1, &[], t0, &mut rng).expect("placed")[0].0 == NodeId([1; 8]))
            .count();
        // Expected 90%; allow generous noise.
        assert!(
            (1600..=1950).contains(&firsts),
            "node 1 chosen {firsts}/2000"
        );
    }

    #[test]
    fn reads_prefer_live_then_least_loaded() {
        let t0 = Instant::now();
        let mut nodes = Nodes::new(Duration::from_secs(10), Duration::from_secs(60));
        nodes.heartbeat(hb(3, 1), t0);
        nodes.heartbeat(hb(1, 1), t0 - Duration::from_secs(15));
        nodes.heartbeat(hb(2, 1), t0);
        let order: Vec<u8> = nodes
            .read_order(
                &[
                    NodeId([1; 8]),
                    NodeId([3; 8]),
                    NodeId([2; 8]),
                    NodeId([9; 8]),
                ],
                t0,
            )
            .iter()
            .map(|(id, _)| id.0[0])
            .collect();
        assert_eq!(order, vec![2, 3, 1]);
    }
}
