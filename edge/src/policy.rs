//! Eviction policies, one implementation with exact byte accounting.
//!
//! A [`Policy`] tracks which chunks a tier holds and their sizes; the tier
//! keeps the bytes. Every request goes through [`Policy::access`] first
//! (a hit refreshes the chunk's place; TinyLFU also counts misses), and a
//! filled chunk is offered with [`Policy::insert`], which answers with the
//! victims to drop *before* the chunk is stored, or refuses it. So the
//! capacity is never exceeded, not even for a moment.
//!
//! | policy | next victim | admission |
//! |---|---|---|
//! | `fifo` | the oldest inserted | always |
//! | `lru` | the least recently used | always |
//! | `lfu` | the least frequently used (ties: least recent) | always |
//! | `tinylfu` | the least recently used | only if the newcomer was asked for more often than every victim (TinyLFU: a count-min sketch of recent requests, halved every `10 × chunks held` requests) |
//!
//! TinyLFU is scan resistant: a burst of one-off reads cannot push out
//! chunks that are read again and again, because a one-off chunk is never
//! more frequent than what it would evict.
//!
//! Why not a cache crate: `moka` offers TinyLFU and LRU but not LFU or
//! FIFO, and evicts in batched maintenance, so its weighted size may pass
//! the capacity until maintenance runs and the victims are only known
//! later through a listener; the disk tier needs the victims (files to
//! delete) synchronously before it writes. The `lru` crate has LRU only.
//! This module keeps one ordered index (`BTreeMap`) whose key encodes each
//! policy's order, which makes every policy exact and deterministic.

use std::collections::{BTreeMap, HashMap};

use blob_common::ChunkId;
use serde::{Deserialize, Serialize};

/// Which eviction policy a tier uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// Least recently used.
    Lru,
    /// Least frequently used (ties: least recently used).
    Lfu,
    /// First in, first out.
    Fifo,
    /// LRU eviction with TinyLFU admission (scan resistant).
    #[default]
    Tinylfu,
}

impl PolicyKind {
    /// Every policy, for tests and benchmarks.
    pub const ALL: [PolicyKind; 4] = [
        PolicyKind::Lru,
        PolicyKind::Lfu,
        PolicyKind::Fifo,
        PolicyKind::Tinylfu,
    ];

    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Lru => "lru",
            PolicyKind::Lfu => "lfu",
            PolicyKind::Fifo => "fifo",
            PolicyKind::Tinylfu => "tinylfu",
        }
    }
}

impl std::fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for PolicyKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PolicyKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown eviction policy {s:?}: use lru, lfu, fifo or tinylfu"))
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    size: u64,
    /// Its key in `order`.
    key: (u64, u64),
    /// Hits since insertion, plus one (LFU).
    freq: u64,
}

/// The chunks one tier holds, in eviction order, within a byte capacity.
#[derive(Debug)]
pub struct Policy {
    kind: PolicyKind,
    capacity: u64,
    used: u64,
    /// Logical time: bumped by every access and insert.
    clock: u64,
    entries: HashMap<ChunkId, Entry>,
    /// Eviction order: the first key is the next victim.
    order: BTreeMap<(u64, u64), ChunkId>,
    sketch: Option<Sketch>,
}

impl Policy {
    /// An empty tier of `capacity` bytes.
    pub fn new(kind: PolicyKind, capacity: u64) -> Self {
        Self {
            kind,
            capacity,
            used: 0,
            clock: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            sketch: (kind == PolicyKind::Tinylfu).then(|| Sketch::for_capacity(capacity)),
        }
    }

    /// The policy.
    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes held.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Chunks held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `id` is held.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.entries.contains_key(id)
    }

    /// The size of `id`, if held.
    pub fn size_of(&self, id: &ChunkId) -> Option<u64> {
        self.entries.get(id).map(|e| e.size)
    }

    /// Every chunk held, next victim first.
    pub fn ids(&self) -> Vec<ChunkId> {
        self.order.values().copied().collect()
    }

    /// A request for `id`. Returns whether it is held; a hit moves it in
    /// the eviction order (not for FIFO), and TinyLFU counts every request.
    pub fn access(&mut self, id: &ChunkId) -> bool {
        self.clock += 1;
        let held = self.entries.len();
        if let Some(s) = &mut self.sketch {
            s.increment(id, held);
        }
        let Some(e) = self.entries.get_mut(id) else {
            return false;
        };
        let new_key = match self.kind {
            PolicyKind::Fifo => return true,
            PolicyKind::Lru | PolicyKind::Tinylfu => (0, self.clock),
            PolicyKind::Lfu => {
                e.freq += 1;
                (e.freq, self.clock)
            }
        };
        self.order.remove(&e.key);
        e.key = new_key;
        self.order.insert(new_key, *id);
        true
    }

    /// The victims inserting `id` of `size` bytes would evict, or `None`
    /// when it would not be admitted.
    fn plan(&self, id: &ChunkId, size: u64, force: bool) -> Option<Vec<ChunkId>> {
        if self.entries.contains_key(id) {
            return Some(Vec::new());
        }
        if size > self.capacity {
            return None;
        }
        let mut victims = Vec::new();
        let mut freed = 0u64;
        for victim in self.order.values() {
            if self.used - freed + size <= self.capacity {
                break;
            }
            freed += self.entries.get(victim).map_or(0, |e| e.size);
            victims.push(*victim);
        }
        if let (Some(s), false) = (&self.sketch, force) {
            let candidate = s.estimate(id);
            if victims.iter().any(|v| s.estimate(v) >= candidate) {
                return None;
            }
        }
        Some(victims)
    }

    /// Whether [`Policy::insert`] would admit `id` now (changes nothing).
    pub fn would_admit(&self, id: &ChunkId, size: u64) -> bool {
        self.plan(id, size, false).is_some()
    }

    /// Offers `id` of `size` bytes. Returns the victims, already removed,
    /// whose bytes the tier must drop; `None` when the chunk is not
    /// admitted (larger than the tier, or, for TinyLFU unless `force`, not
    /// asked for more often than what it would evict). A chunk already
    /// held is left as it is.
    pub fn insert(&mut self, id: ChunkId, size: u64, force: bool) -> Option<Vec<(ChunkId, u64)>> {
        let victims = self.plan(&id, size, force)?;
        if self.entries.contains_key(&id) {
            return Some(Vec::new());
        }
        let evicted: Vec<(ChunkId, u64)> = victims
            .into_iter()
            .filter_map(|v| self.remove(&v).map(|s| (v, s)))
            .collect();
        self.clock += 1;
        let key = match self.kind {
            PolicyKind::Lfu => (1, self.clock),
            _ => (0, self.clock),
        };
        self.entries.insert(id, Entry { size, key, freq: 1 });
        self.order.insert(key, id);
        self.used += size;
        debug_assert!(self.used <= self.capacity);
        Some(evicted)
    }

    /// Forgets `id` (its bytes turned out bad, or its file vanished).
    /// Returns its size if it was held.
    pub fn remove(&mut self, id: &ChunkId) -> Option<u64> {
        let e = self.entries.remove(id)?;
        self.order.remove(&e.key);
        self.used -= e.size;
        Some(e.size)
    }
}

/// A count-min sketch of request frequencies (4 rows of counters
/// saturating at 15), halved every `10 × entries held` requests so that
/// old popularity fades (TinyLFU's reset). Chunk ids are SHA-256 digests,
/// so four disjoint 8-byte slices of the id serve as four independent
/// hashes.
#[derive(Debug)]
struct Sketch {
    rows: [Vec<u8>; 4],
    mask: u64,
    seen: u64,
}

impl Sketch {
    /// Sized for the most chunks a tier of `capacity` bytes may hold
    /// (counted at 64 KiB, the smallest chunk size), four counters per
    /// chunk and row.
    fn for_capacity(capacity: u64) -> Self {
        let entries = (capacity / (64 << 10)).clamp(16, 1 << 20);
        let width = (entries * 4).next_power_of_two();
        let row = || vec![0u8; width as usize];
        Self {
            rows: [row(), row(), row(), row()],
            mask: width - 1,
            seen: 0,
        }
    }

    fn index(&self, id: &ChunkId, row: usize) -> usize {
        let b = id.as_bytes();
        let mut word = [0u8; 8];
        word.copy_from_slice(&b[row * 8..row * 8 + 8]);
        (u64::from_le_bytes(word) & self.mask) as usize
    }

    /// Counts a request; `held` is the number of chunks the tier holds
    /// (the reset period is ten times that, at least 160).
    fn increment(&mut self, id: &ChunkId, held: usize) {
        for r in 0..4 {
            let i = self.index(id, r);
            let c = &mut self.rows[r][i];
            *c = (*c + 1).min(15);
        }
        self.seen += 1;
        if self.seen >= 10 * (held.max(16) as u64) {
            for row in &mut self.rows {
                for c in row.iter_mut() {
                    *c /= 2;
                }
            }
            self.seen /= 2;
        }
    }

    fn estimate(&self, id: &ChunkId) -> u8 {
        (0..4)
            .map(|r| self.rows[r][self.index(id, r)])
            .min()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> ChunkId {
        ChunkId::of(&n.to_le_bytes())
    }

    /// What a tier does for one request: access, and on a miss insert
    /// (as the edge does once the fill is verified).
    fn request(p: &mut Policy, n: u64, size: u64) -> bool {
        let hit = p.access(&id(n));
        if !hit {
            let _ = p.insert(id(n), size, false);
        }
        hit
    }

    /// The same suite for every policy (object_store style).
    fn for_each_policy(f: impl Fn(PolicyKind)) {
        for kind in PolicyKind::ALL {
            f(kind);
        }
    }

    #[test]
    fn capacity_is_never_exceeded() {
        for_each_policy(|kind| {
            let mut p = Policy::new(kind, 10_000);
            let mut x = 12345u64;
            for _ in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let n = x % 200;
                let size = 100 + (n * 37) % 1_900;
                request(&mut p, n, size);
                assert!(
                    p.used() <= p.capacity(),
                    "{kind}: {} > {}",
                    p.used(),
                    p.capacity()
                );
                let sum: u64 = p.ids().iter().filter_map(|i| p.size_of(i)).sum();
                assert_eq!(sum, p.used(), "{kind}");
                assert_eq!(p.ids().len(), p.len(), "{kind}");
            }
        });
    }

    #[test]
    fn too_big_is_refused_and_remove_frees() {
        for_each_policy(|kind| {
            let mut p = Policy::new(kind, 100);
            assert!(p.insert(id(1), 101, true).is_none(), "{kind}");
            assert_eq!(p.insert(id(1), 60, false).map(|v| v.len()), Some(0));
            assert!(p.contains(&id(1)));
            assert_eq!(p.remove(&id(1)), Some(60));
            assert_eq!(p.used(), 0);
            assert!(p.is_empty());
            assert_eq!(p.remove(&id(1)), None);
        });
    }

    #[test]
    fn a_zero_capacity_tier_holds_nothing() {
        for_each_policy(|kind| {
            let mut p = Policy::new(kind, 0);
            assert!(!request(&mut p, 1, 1));
            assert!(!request(&mut p, 1, 1));
            assert!(p.is_empty());
        });
    }

    /// Capacity 3, then: A; B hit hit; C; A hit; D. Each policy evicts a
    /// different chunk, and TinyLFU admits nothing.
    #[test]
    fn each_policy_picks_its_own_victim() {
        for_each_policy(|kind| {
            let mut p = Policy::new(kind, 3);
            for n in [1, 2, 2, 2, 3, 1, 4] {
                request(&mut p, n, 1);
            }
            let held: Vec<bool> = (1..=4).map(|n| p.contains(&id(n))).collect();
            let expected = match kind {
                PolicyKind::Fifo => [false, true, true, true],
                PolicyKind::Lru => [true, false, true, true],
                PolicyKind::Lfu => [true, true, false, true],
                PolicyKind::Tinylfu => [true, true, true, false],
            };
            assert_eq!(held, expected, "{kind}");
            assert_eq!(p.used(), 3);
        });
    }

    #[test]
    fn tinylfu_admits_a_newcomer_once_it_is_popular_and_force_bypasses() {
        let mut p = Policy::new(PolicyKind::Tinylfu, 2);
        for n in [1, 1, 2, 2] {
            request(&mut p, n, 1);
        }
        // 3 is asked for until it beats the LRU victim (1, asked twice).
        assert!(!request(&mut p, 3, 1));
        assert!(!request(&mut p, 3, 1));
        assert!(!p.contains(&id(3)));
        assert!(!request(&mut p, 3, 1));
        assert!(p.contains(&id(3)));
        assert!(!p.contains(&id(1)));
        // A warm-up insert is forced in.
        assert_eq!(p.insert(id(9), 1, true).map(|v| v.len()), Some(1));
        assert!(p.contains(&id(9)));
    }

    #[test]
    fn tinylfu_resists_a_scan() {
        let mut tiny = Policy::new(PolicyKind::Tinylfu, 10);
        let mut lru = Policy::new(PolicyKind::Lru, 10);
        for p in [&mut tiny, &mut lru] {
            for _ in 0..3 {
                for n in 0..5 {
                    request(p, n, 1);
                }
            }
            for n in 1000..1100 {
                request(p, n, 1);
            }
        }
        let hot = |p: &Policy| (0..5).filter(|n| p.contains(&id(*n))).count();
        assert_eq!(hot(&tiny), 5);
        assert_eq!(hot(&lru), 0);
    }

    #[test]
    fn policies_parse() {
        for kind in PolicyKind::ALL {
            assert_eq!(kind.name().parse::<PolicyKind>(), Ok(kind));
        }
        assert_eq!("LRU".parse::<PolicyKind>(), Ok(PolicyKind::Lru));
        assert!("arc".parse::<PolicyKind>().is_err());
    }
}
