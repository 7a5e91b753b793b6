//! Chunk ids of local files, as the store would cut them, for `sync`: a
//! file is the same as a store file when it has the same size and the same
//! SHA-256 per chunk at the store file's chunk size. The store side comes
//! from metadata; the local side is hashed here, once, and kept in a small
//! cache per tree (`~/.cache/blobctl/sync/<tree>.json`) keyed by path, size
//! and modification time, so an unchanged tree is not read again.
//!
//! An entry whose file changed within the last second before it was hashed
//! is not kept: a second write in the same timestamp tick could otherwise
//! hide behind it.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use blob_common::ChunkId;
use serde::{Deserialize, Serialize};

/// Size and modification time of a local file, as the cache keys it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stamp {
    /// Bytes.
    pub(crate) size: u64,
    /// Modification time, ns since the epoch.
    pub(crate) mtime_ns: u128,
}

impl Stamp {
    pub(crate) fn of(meta: &std::fs::Metadata) -> Stamp {
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Stamp {
            size: meta.len(),
            mtime_ns,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    stamp: Stamp,
    chunk_size: u64,
    /// Lowercase hex chunk ids, in order.
    chunks: Vec<String>,
}

/// The cached chunk ids of one local tree, by path relative to its root.
#[derive(Debug, Default)]
pub(crate) struct HashCache {
    file: Option<PathBuf>,
    old: HashMap<String, Entry>,
    /// What this run saw: only these are written back, so entries of
    /// files gone from the tree drop out.
    new: HashMap<String, Entry>,
}

/// The cache file of the tree at `root`: one per absolute path.
fn cache_file(root: &Path) -> Option<PathBuf> {
    let abs = std::fs::canonicalize(root).ok()?;
    let id = ChunkId::of(abs.to_string_lossy().as_bytes()).to_string();
    Some(
        dirs::cache_dir()?
            .join("blobctl")
            .join("sync")
            .join(format!("{}.json", &id[..16])),
    )
}

impl HashCache {
    /// The cache of the tree at `root`; empty when there is none yet or it
    /// cannot be read (it is only a cache).
    pub(crate) fn open(root: &Path) -> HashCache {
        let file = cache_file(root);
        let old = file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        HashCache {
            file,
            old,
            new: HashMap::new(),
        }
    }

    /// The chunk ids of `rel` at `chunk_size`, when cached for this stamp.
    pub(crate) fn get(&mut self, rel: &str, stamp: Stamp, chunk_size: u64) -> Option<Vec<ChunkId>> {
        let e = self
            .new
            .get(rel)
            .or_else(|| self.old.get(rel))
            .filter(|e| e.stamp == stamp && e.chunk_size == chunk_size)?
            .clone();
        let ids = e
            .chunks
            .iter()
            .map(|c| c.parse().ok())
            .collect::<Option<Vec<ChunkId>>>()?;
        self.new.insert(rel.to_string(), e);
        Some(ids)
    }

    /// Remembers the chunk ids of `rel` as it was at `stamp`, unless it was
    /// modified too recently to trust the stamp.
    pub(crate) fn put(&mut self, rel: &str, stamp: Stamp, chunk_size: u64, chunks: &[ChunkId]) {
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        if stamp.mtime_ns + 1_000_000_000 > now_ns {
            return;
        }
        self.new.insert(
            rel.to_string(),
            Entry {
                stamp,
                chunk_size,
                chunks: chunks.iter().map(ToString::to_string).collect(),
            },
        );
    }

    /// Remembers the chunk ids of a file this run itself just wrote and
    /// renamed into place (a download), whose content is known exactly.
    pub(crate) fn put_written(
        &mut self,
        rel: &str,
        stamp: Stamp,
        chunk_size: u64,
        chunks: &[ChunkId],
    ) {
        self.new.insert(
            rel.to_string(),
            Entry {
                stamp,
                chunk_size,
                chunks: chunks.iter().map(ToString::to_string).collect(),
            },
        );
    }

    /// Writes the cache (a temporary file renamed into place); failures
    /// only cost a re-hash next time, so they are not errors.
    pub(crate) fn save(&self) {
        let Some(file) = &self.file else {
            return;
        };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = file.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, serde_json::to_vec(&self.new)?)?;
            std::fs::rename(&tmp, file)
        };
        let _ = write();
    }
}

/// The chunk ids of the local file `path` cut at `chunk_size` (none for an
/// empty file), reading it once; blocking.
pub(crate) fn chunk_ids(path: &Path, chunk_size: u64) -> anyhow::Result<Vec<ChunkId>> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; usize::try_from(chunk_size).context("chunk size")?];
    let mut ids = Vec::new();
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = file
                .read(&mut buf[filled..])
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        ids.push(ChunkId::of(&buf[..filled]));
        if filled < buf.len() {
            break;
        }
    }
    Ok(ids)
}

/// The chunk ids of the local file `path` cut into pieces of `sizes`, in
/// order (a store file whose chunks are not all one size, like an S3
/// multipart upload's); bytes past the last piece make one more id, so a
/// longer file never matches. Blocking.
pub(crate) fn chunk_ids_cut(path: &Path, sizes: &[u64]) -> anyhow::Result<Vec<ChunkId>> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut ids = Vec::with_capacity(sizes.len() + 1);
    let mut buf = Vec::new();
    for &size in sizes {
        buf.clear();
        let n = (&mut file)
            .take(size)
            .read_to_end(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        ids.push(ChunkId::of(&buf));
        if (n as u64) < size {
            return Ok(ids);
        }
    }
    let mut rest = [0u8; 1];
    if file
        .read(&mut rest)
        .with_context(|| format!("reading {}", path.display()))?
        > 0
    {
        ids.push(ChunkId::of(&rest));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ids_cut_like_the_store() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..(3 * 65536 + 1)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap_or_else(|e| panic!("{e}"));
        let ids = chunk_ids(&p, 65536).unwrap_or_else(|e| panic!("{e}"));
        let want: Vec<ChunkId> = data.chunks(65536).map(ChunkId::of).collect();
        assert_eq!(ids, want);
        assert_eq!(ids.len(), 4);
        std::fs::write(&p, b"").unwrap_or_else(|e| panic!("{e}"));
        assert!(chunk_ids(&p, 65536)
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty());
        std::fs::write(&p, &data[..131072]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            chunk_ids(&p, 65536).unwrap_or_else(|e| panic!("{e}")).len(),
            2
        );
    }

    #[test]
    fn chunk_ids_cut_where_told() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&p, &data).unwrap_or_else(|e| panic!("{e}"));
        let cuts = [100_000, 50_000, 150_000];
        let want = vec![
            ChunkId::of(&data[..100_000]),
            ChunkId::of(&data[100_000..150_000]),
            ChunkId::of(&data[150_000..]),
        ];
        assert_eq!(
            chunk_ids_cut(&p, &cuts).unwrap_or_else(|e| panic!("{e}")),
            want
        );
        // A longer file gets one more id; a shorter one a short last piece.
        assert_eq!(
            chunk_ids_cut(&p, &cuts[..2])
                .unwrap_or_else(|e| panic!("{e}"))
                .len(),
            3
        );
        let short = chunk_ids_cut(&p, &[100_000, 250_000]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(short[1], ChunkId::of(&data[100_000..]));
    }

    #[test]
    fn the_cache_answers_only_for_the_same_stamp_and_chunk_size() {
        let mut c = HashCache::default();
        let old = Stamp {
            size: 5,
            mtime_ns: 1_000_000_000,
        };
        let ids = vec![ChunkId::of(b"hello")];
        c.put("a", old, 65536, &ids);
        assert_eq!(c.get("a", old, 65536), Some(ids.clone()));
        assert_eq!(c.get("a", old, 131072), None);
        assert_eq!(
            c.get(
                "a",
                Stamp {
                    mtime_ns: 2_000_000_000,
                    ..old
                },
                65536
            ),
            None
        );
        // Modified just now: not trusted.
        let fresh = Stamp {
            size: 5,
            mtime_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        };
        c.put("b", fresh, 65536, &ids);
        assert_eq!(c.get("b", fresh, 65536), None);
    }
}
