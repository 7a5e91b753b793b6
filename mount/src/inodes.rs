//! The mount's inode table and its short-lived metadata cache.
//!
//! The store has paths, FUSE has inode numbers: an inode is handed out the
//! first time the kernel looks a path up and dropped when the kernel forgets
//! it (lookup counting), so the table holds what the kernel holds and no
//! more. Directories are implicit in the store (a path with files below it)
//! or explicit as an empty marker file `DIR/` (what `mkdir` writes, as S3
//! tools do).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Inode number of the bucket's root directory.
pub(crate) const ROOT: u64 = 1;

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A file of `size` bytes committed at `mtime_ms`.
    File { size: u64, mtime_ms: u64 },
    /// A directory.
    Dir,
}

struct Entry {
    path: String,
    lookups: u64,
}

/// Inode number ↔ path, with the kernel's lookup counts.
pub(crate) struct Inodes {
    by_ino: HashMap<u64, Entry>,
    by_path: HashMap<String, u64>,
    next: u64,
}

impl Inodes {
    pub(crate) fn new() -> Self {
        let mut t = Self {
            by_ino: HashMap::new(),
            by_path: HashMap::new(),
            next: ROOT + 1,
        };
        t.by_ino.insert(
            ROOT,
            Entry {
                path: String::new(),
                lookups: 1,
            },
        );
        t.by_path.insert(String::new(), ROOT);
        t
    }

    /// The path of inode `ino` ("" for the root).
    pub(crate) fn path(&self, ino: u64) -> Option<String> {
        self.by_ino.get(&ino).map(|e| e.path.clone())
    }

    /// The inode of `path`, counting one more kernel lookup of it.
    pub(crate) fn remember(&mut self, path: &str) -> u64 {
        if let Some(&ino) = self.by_path.get(path) {
            if let Some(e) = self.by_ino.get_mut(&ino) {
                e.lookups += 1;
                return ino;
            }
        }
        let ino = self.next;
        self.next += 1;
        self.by_ino.insert(
            ino,
            Entry {
                path: path.to_string(),
                lookups: 1,
            },
        );
        self.by_path.insert(path.to_string(), ino);
        ino
    }

    /// The inode of `path` if the kernel holds one (for directory
    /// listings, which must not count as lookups).
    pub(crate) fn peek(&self, path: &str) -> Option<u64> {
        self.by_path.get(path).copied()
    }

    /// The kernel dropped `n` lookups of `ino`.
    pub(crate) fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let Some(e) = self.by_ino.get_mut(&ino) else {
            return;
        };
        e.lookups = e.lookups.saturating_sub(n);
        if e.lookups == 0 {
            if let Some(e) = self.by_ino.remove(&ino) {
                if self.by_path.get(&e.path) == Some(&ino) {
                    self.by_path.remove(&e.path);
                }
            }
        }
    }

    /// `from` (and, for a directory, everything below it) is now `to`.
    pub(crate) fn rename(&mut self, from: &str, to: &str) {
        let below = format!("{from}/");
        let moved: Vec<(u64, String)> = self
            .by_ino
            .iter()
            .filter(|(_, e)| e.path == from || e.path.starts_with(&below))
            .map(|(&ino, e)| (ino, format!("{to}{}", &e.path[from.len()..])))
            .collect();
        for (ino, new_path) in moved {
            if let Some(e) = self.by_ino.get_mut(&ino) {
                if self.by_path.get(&e.path) == Some(&ino) {
                    self.by_path.remove(&e.path);
                }
                e.path = new_path.clone();
                self.by_path.insert(new_path, ino);
            }
        }
    }

    /// Inodes held (for tests and logs).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_ino.len()
    }
}

/// `parent/name` as a store path ("" is the root).
pub(crate) fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// The directory holding `path`.
pub(crate) fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

/// Answers about paths, each good for `ttl` (negative answers too), so a
/// burst of `stat`s costs one namenode call per path.
pub(crate) struct MetaCache {
    ttl: Duration,
    map: HashMap<String, (Instant, Option<Kind>)>,
}

/// Entries kept before stale ones are swept.
const SWEEP_AT: usize = 65_536;

impl MetaCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            map: HashMap::new(),
        }
    }

    /// `Some(answer)` while a fresh answer is cached.
    pub(crate) fn get(&self, path: &str) -> Option<Option<Kind>> {
        match self.map.get(path) {
            Some((at, kind)) if at.elapsed() < self.ttl => Some(*kind),
            _ => None,
        }
    }

    pub(crate) fn put(&mut self, path: &str, kind: Option<Kind>) {
        if self.ttl.is_zero() {
            return;
        }
        if self.map.len() >= SWEEP_AT {
            let ttl = self.ttl;
            self.map.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        self.map.insert(path.to_string(), (Instant::now(), kind));
    }

    /// Forgets `path`, what is below it, and the answers about its parent
    /// directories (whose existence may hang on it).
    pub(crate) fn invalidate(&mut self, path: &str) {
        let below = format!("{path}/");
        self.map.retain(|p, _| {
            p != path && !p.starts_with(&below) && !path.starts_with(&format!("{p}/"))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_counted_and_forgotten() {
        let mut t = Inodes::new();
        let a = t.remember("a");
        assert_eq!(t.remember("a"), a);
        assert_eq!(t.path(a).as_deref(), Some("a"));
        t.forget(a, 1);
        assert_eq!(t.peek("a"), Some(a));
        t.forget(a, 1);
        assert_eq!(t.peek("a"), None);
        assert_eq!(t.path(a), None);
        t.forget(ROOT, 100);
        assert_eq!(t.path(ROOT).as_deref(), Some(""));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn rename_moves_a_directory_and_what_is_below() {
        let mut t = Inodes::new();
        let d = t.remember("d");
        let f = t.remember("d/f");
        let g = t.remember("d/e/g");
        let other = t.remember("dd/f");
        t.rename("d", "x/y");
        assert_eq!(t.path(d).as_deref(), Some("x/y"));
        assert_eq!(t.path(f).as_deref(), Some("x/y/f"));
        assert_eq!(t.path(g).as_deref(), Some("x/y/e/g"));
        assert_eq!(t.path(other).as_deref(), Some("dd/f"));
        assert_eq!(t.peek("d/f"), None);
        assert_eq!(t.peek("x/y/f"), Some(f));
    }

    #[test]
    fn a_replaced_target_keeps_its_inode_until_forgotten() {
        let mut t = Inodes::new();
        let a = t.remember("a.tmp");
        let b = t.remember("a");
        t.rename("a.tmp", "a");
        assert_eq!(t.peek("a"), Some(a));
        // The kernel forgets the replaced inode: the path stays with `a`.
        t.forget(b, 1);
        assert_eq!(t.peek("a"), Some(a));
    }

    #[test]
    fn paths_join_and_split() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("a/b", "c"), "a/b/c");
        assert_eq!(parent_of("a/b/c"), "a/b");
        assert_eq!(parent_of("a"), "");
    }

    #[test]
    fn cache_answers_expire_and_invalidate_upwards_and_downwards() {
        let mut c = MetaCache::new(Duration::from_secs(60));
        c.put("a", Some(Kind::Dir));
        c.put("a/b", Some(Kind::Dir));
        c.put("a/b/c", None);
        c.put("a/bc", None);
        c.put("z", None);
        c.invalidate("a/b");
        assert_eq!(c.get("a"), None);
        assert_eq!(c.get("a/b"), None);
        assert_eq!(c.get("a/b/c"), None);
        assert_eq!(c.get("a/bc"), Some(None));
        assert_eq!(c.get("z"), Some(None));
        let zero = MetaCache::new(Duration::ZERO);
        assert_eq!(zero.get("a"), None);
    }
}
