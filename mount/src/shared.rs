//! [`Shared`]'s operations, used by the FUSE callbacks: paths and inodes,
//! the handle table, attributes, name resolution through the metadata
//! cache, directory pages, emptied directories, `statfs`, truncation of
//! closed files and commits.

use std::ffi::OsStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use blob_client::{ListFilesQuery, UploadOptions};
use fuser::{Errno, FileAttr, FileType, INodeNo};

use crate::inodes::{join, parent_of, Kind};
use crate::read::Reader;
use crate::state::*;
use crate::write::{Opened, Writer};

impl Shared {
    pub(crate) fn path_of(&self, ino: u64) -> Result<String, Errno> {
        self.inodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .path(ino)
            .ok_or(Errno::ENOENT)
    }

    pub(crate) fn child_path(&self, parent: u64, name: &OsStr) -> Result<String, Errno> {
        let parent = self.path_of(parent)?;
        let path = join(&parent, name_str(name)?);
        if path.len() > blob_common::names::MAX_PATH_LEN {
            return Err(Errno::ENAMETOOLONG);
        }
        Ok(path)
    }

    /// The path of `parent/name` for an operation that changes it:
    /// `EROFS` on a read-only mount.
    pub(crate) fn path_to_change(&self, parent: u64, name: &OsStr) -> Result<String, Errno> {
        if self.opts.read_only {
            return Err(Errno::EROFS);
        }
        self.child_path(parent, name)
    }

    pub(crate) fn remember(&self, path: &str) -> u64 {
        self.inodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remember(path)
    }

    pub(crate) fn writer(&self, path: &str) -> Option<Arc<Writer>> {
        self.writers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .cloned()
    }

    pub(crate) fn handle_reader(&self, fh: u64) -> Option<Arc<Reader>> {
        match self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
        {
            Some(Handle::Read(r)) => Some(r.clone()),
            _ => None,
        }
    }

    pub(crate) fn handle_writer(&self, fh: u64) -> Option<Arc<Writer>> {
        match self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
        {
            Some(Handle::Write(w)) => Some(w.clone()),
            _ => None,
        }
    }

    /// The writer behind a handle that reads through one (opened for
    /// writing, or for reading while written here).
    pub(crate) fn handle_written(&self, fh: u64) -> Option<Arc<Writer>> {
        match self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
        {
            Some(Handle::Write(w) | Handle::Live(w)) => Some(w.clone()),
            _ => None,
        }
    }

    /// A writer for `path`, registered as the one whose size `stat` shows.
    pub(crate) fn new_writer(&self, path: &str, opened: Opened) -> Arc<Writer> {
        let w = Arc::new(Writer::new(
            self.client.clone(),
            self.bucket.clone(),
            path.to_string(),
            self.opts.upload.clone(),
            self.staging.clone(),
            opened,
        ));
        self.writers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_string(), w.clone());
        w
    }

    pub(crate) fn add_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, h);
        fh
    }

    pub(crate) fn invalidate(&self, path: &str) {
        self.meta
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .invalidate(path);
    }

    pub(crate) fn cache(&self, path: &str, kind: Option<Kind>) {
        self.meta
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(path, kind);
    }

    pub(crate) fn attr(&self, ino: u64, kind: Kind) -> FileAttr {
        let (size, mtime, ftype, perm, nlink) = match kind {
            Kind::File { size, mtime_ms } => {
                (size, ms_to_time(mtime_ms), FileType::RegularFile, 0o644, 1)
            }
            Kind::Dir => (
                0,
                ms_to_time(self.mounted_ms),
                FileType::Directory,
                0o755,
                2,
            ),
        };
        let perm = if self.opts.read_only {
            perm & 0o555
        } else {
            perm
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind: ftype,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: BLKSIZE,
            flags: 0,
        }
    }

    /// What `path` is: a file open for writing here, a cached answer, or
    /// the namenode's (file first, else a directory if anything is below).
    pub(crate) async fn resolve(&self, path: &str) -> Result<Option<Kind>, Errno> {
        if path.is_empty() {
            return Ok(Some(Kind::Dir));
        }
        if let Some(w) = self.writer(path) {
            return Ok(Some(Kind::File {
                size: w.size(),
                mtime_ms: blob_common::now_ms(),
            }));
        }
        let cached = self
            .meta
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path);
        if let Some(k) = cached {
            if k.is_none() && self.was_emptied(path) {
                return Ok(Some(Kind::Dir));
            }
            return Ok(k);
        }
        let below = ListFilesQuery {
            prefix: Some(format!("{path}/")),
            delimiter: Some("/".into()),
            start_after: None,
            limit: Some(1),
        };
        let (stat, list) = tokio::join!(
            self.client.stat(&self.bucket, path),
            self.client.list_files(&self.bucket, &below)
        );
        let kind = match stat {
            Ok(f) => Some(Kind::File {
                size: f.size,
                mtime_ms: f.created_ms,
            }),
            Err(e) if e.is_not_found() => match list {
                Ok(l) if !l.files.is_empty() || !l.common_prefixes.is_empty() => Some(Kind::Dir),
                Ok(_) => None,
                Err(e) => return Err(errno("lookup", path, &e)),
            },
            Err(e) => return Err(errno("lookup", path, &e)),
        };
        self.cache(path, kind);
        if kind.is_none() && self.was_emptied(path) {
            return Ok(Some(Kind::Dir));
        }
        Ok(kind)
    }

    /// The directories above `path` may have lost their last file.
    pub(crate) fn note_emptied(&self, path: &str) {
        let now = std::time::Instant::now();
        let mut e = self.emptied.lock().unwrap_or_else(|p| p.into_inner());
        e.retain(|_, at| at.elapsed() < EMPTIED_TTL);
        let mut dir = parent_of(path);
        while !dir.is_empty() {
            e.insert(dir.to_string(), now);
            dir = parent_of(dir);
        }
    }

    pub(crate) fn was_emptied(&self, dir: &str) -> bool {
        self.emptied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(dir)
            .is_some_and(|at| at.elapsed() < EMPTIED_TTL)
    }

    /// `dir` was removed: it and what was below it are gone for good.
    pub(crate) fn forget_emptied(&self, dir: &str) {
        let below = format!("{dir}/");
        self.emptied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|p, _| p != dir && !p.starts_with(&below));
    }

    /// Files (and the directory marker) below `path`, any depth.
    pub(crate) async fn list_below(&self, path: &str) -> Result<Vec<String>, Errno> {
        let q = ListFilesQuery {
            prefix: Some(format!("{path}/")),
            ..ListFilesQuery::default()
        };
        let list = self
            .client
            .list_all(&self.bucket, &q)
            .await
            .map_err(|e| errno("list", path, &e))?;
        Ok(list.files.into_iter().map(|f| f.path).collect())
    }

    /// Has `path` (a directory) anything in it besides its marker?
    pub(crate) async fn dir_has_entries(&self, path: &str) -> Result<bool, Errno> {
        let below = format!("{path}/");
        let busy = self
            .writers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .any(|p| p.starts_with(&below));
        if busy {
            return Ok(true);
        }
        let q = ListFilesQuery {
            prefix: Some(below.clone()),
            delimiter: Some("/".into()),
            start_after: Some(below.clone()),
            limit: Some(1),
        };
        let l = self
            .client
            .list_files(&self.bucket, &q)
            .await
            .map_err(|e| errno("rmdir", path, &e))?;
        Ok(!l.files.is_empty() || !l.common_prefixes.is_empty())
    }

    /// Stores an empty file at `path` (a new empty file, a truncation, or a
    /// directory marker).
    pub(crate) async fn put_empty(&self, path: &str) -> Result<blob_client::FileInfo, Errno> {
        let opts = UploadOptions {
            progress: None,
            ..self.opts.upload.clone()
        };
        self.client
            .upload(tokio::io::empty(), &self.bucket, path, &opts)
            .await
            .map(|o| o.file)
            .map_err(|e| errno("create", path, &e))
    }

    pub(crate) async fn statfs(&self) -> StatFs {
        if let Some((at, s)) = *self.statfs.lock().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < Duration::from_secs(5) {
                return s;
            }
        }
        // Node usage needs an admin key; others see a nominal 1 PiB.
        let s = match self.client.list_nodes().await {
            Ok(l) => {
                let live = l.nodes.iter().filter(|n| n.state == "live");
                let (cap, avail) =
                    live.fold((0u64, 0u64), |(c, a), n| (c + n.capacity, a + n.available));
                StatFs {
                    capacity: cap,
                    available: avail,
                }
            }
            Err(_) => StatFs {
                capacity: 1 << 50,
                available: 1 << 50,
            },
        };
        *self.statfs.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((std::time::Instant::now(), s));
        s
    }

    /// The next page of a directory listing after `start_after`.
    pub(crate) async fn list_page(
        &self,
        dir: &str,
        start_after: Option<String>,
    ) -> Result<(Vec<(String, Kind)>, Option<String>), Errno> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let q = ListFilesQuery {
            prefix: (!prefix.is_empty()).then(|| prefix.clone()),
            delimiter: Some("/".into()),
            start_after,
            limit: Some(1000),
        };
        let l = self
            .client
            .list_files(&self.bucket, &q)
            .await
            .map_err(|e| errno("readdir", dir, &e))?;
        let mut out: Vec<(String, Kind)> = Vec::with_capacity(l.files.len());
        for f in &l.files {
            let name = &f.path[prefix.len().min(f.path.len())..];
            if name.is_empty() || !f.path.starts_with(&prefix) {
                continue; // the directory's own marker
            }
            let kind = Kind::File {
                size: f.size,
                mtime_ms: f.created_ms,
            };
            self.cache(&f.path, Some(kind));
            out.push((name.to_string(), kind));
        }
        for p in &l.common_prefixes {
            let name = p
                .strip_prefix(&prefix)
                .unwrap_or(p)
                .trim_end_matches('/')
                .to_string();
            if !name.is_empty() {
                out.push((name, Kind::Dir));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok((out, l.next_start_after))
    }

    /// New files open for writing directly in `dir` (not yet in listings).
    pub(crate) fn new_files_in(&self, dir: &str) -> Vec<(String, Kind)> {
        self.writers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(p, w)| w.is_new() && parent_of(p) == dir)
            .map(|(p, w)| {
                let name = p.rsplit('/').next().unwrap_or(p).to_string();
                (
                    name,
                    Kind::File {
                        size: w.size(),
                        mtime_ms: blob_common::now_ms(),
                    },
                )
            })
            .collect()
    }

    /// `truncate(2)` of a file no handle here writes: a version of `size`
    /// bytes is committed (stored chunks kept where they still fit).
    pub(crate) async fn truncate_closed(&self, path: &str, size: u64) -> Result<(), Errno> {
        let current = match self.resolve(path).await? {
            Some(Kind::File { size, .. }) => size,
            Some(Kind::Dir) => return Err(Errno::EISDIR),
            None => return Err(Errno::ENOENT),
        };
        if size == current {
            return Ok(());
        }
        if size == 0 {
            self.put_empty(path).await?;
            self.invalidate(path);
            return Ok(());
        }
        if self.staging.is_none() {
            tracing::warn!(%path, size, current, "truncation to a size other than 0 with the write cache off: EOPNOTSUPP");
            return Err(Errno::EOPNOTSUPP);
        }
        let locs = self
            .client
            .locations(&self.bucket, path)
            .await
            .map_err(|e| errno("truncate", path, &e))?;
        crate::write::refuse_sealed_base(path, &locs)?;
        let w = Arc::new(Writer::new(
            self.client.clone(),
            self.bucket.clone(),
            path.to_string(),
            self.opts.upload.clone(),
            self.staging.clone(),
            Opened::Existing(Arc::new(locs)),
        ));
        w.truncate(size)
            .await
            .map_err(|e| write_errno("truncate", path, e))?;
        self.commit(&w).await
    }

    /// Commits a writer and updates the caches; `EIO`/`EOPNOTSUPP` on
    /// failure.
    pub(crate) async fn commit(&self, w: &Arc<Writer>) -> Result<(), Errno> {
        let path = w.path();
        match w.commit().await {
            Ok(Some(file)) => {
                self.invalidate(&path);
                self.cache(
                    &path,
                    Some(Kind::File {
                        size: file.size,
                        mtime_ms: file.created_ms,
                    }),
                );
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(write_errno("commit", &path, e)),
        }
    }
}
