//! FUSE callbacks on open files: `open`, `create`, `read`, `write`,
//! `flush`, `fsync` and `release` (which commits a written file).

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fuser::{
    Errno, FileHandle, FopenFlags, Generation, INodeNo, LockOwner, OpenAccMode, OpenFlags,
    ReplyCreate, ReplyData, ReplyEmpty, ReplyOpen, ReplyWrite, Request,
};

use crate::inodes::Kind;
use crate::read::Reader;
use crate::state::*;
use crate::write::Opened;
use fuser::Filesystem;

// Each callback takes only the fuser arguments it uses.
impl BlobFs {
    pub(crate) fn on_open(&self, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let s = self.shared.clone();
        let write = !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY);
        let truncate = flags.0 & libc::O_TRUNC != 0;
        if write && s.opts.read_only {
            return reply.error(Errno::EROFS);
        }
        self.spawn(
            "open",
            self.timeout(),
            async move {
                let path = s.path_of(ino.0)?;
                if write {
                    let opened = match s.resolve(&path).await? {
                        Some(Kind::Dir) => return Err(Errno::EISDIR),
                        None => Opened::New,
                        Some(Kind::File { .. }) if truncate => Opened::Truncated,
                        // Kept as it is: its committed version is the base.
                        Some(Kind::File { .. }) => {
                            match s.client.locations(&s.bucket, &path).await {
                                Ok(l) => {
                                    crate::write::refuse_sealed_base(&path, &l)?;
                                    Opened::Existing(Arc::new(l))
                                }
                                // Being created here, nothing committed yet.
                                Err(e) if e.is_not_found() => Opened::New,
                                Err(e) => return Err(errno("open", &path, &e)),
                            }
                        }
                    };
                    let w = s.new_writer(&path, opened);
                    return Ok(s.add_handle(Handle::Write(w)));
                }
                if let Some(w) = s.writer(&path) {
                    if w.readable().await {
                        return Ok(s.add_handle(Handle::Live(w)));
                    }
                }
                let reader = match s.client.locations(&s.bucket, &path).await {
                    Ok(l) => Reader::new(Arc::new(l)),
                    // A new file not committed yet reads as empty.
                    Err(e) if e.is_not_found() && s.writer(&path).is_some() => {
                        return Ok(
                            s.add_handle(Handle::Read(Arc::new(Reader::empty(&s.bucket, &path))))
                        )
                    }
                    Err(e) => return Err(errno("open", &path, &e)),
                };
                s.cache(
                    &path,
                    Some(Kind::File {
                        size: reader.size(),
                        mtime_ms: reader.mtime_ms(),
                    }),
                );
                Ok(s.add_handle(Handle::Read(Arc::new(reader))))
            },
            move |r| match r {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
                Err(e) => reply.error(e),
            },
        );
    }

    pub(crate) fn on_create(&self, parent: INodeNo, name: &OsStr, reply: ReplyCreate) {
        let s = self.shared.clone();
        let path = match s.path_to_change(parent.0, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        if blob_common::names::validate_path(&path).is_err() {
            return reply.error(Errno::EINVAL);
        }
        let w = s.new_writer(&path, Opened::New);
        s.invalidate(&path);
        let fh = s.add_handle(Handle::Write(w));
        let ino = s.remember(&path);
        let attr = s.attr(
            ino,
            Kind::File {
                size: 0,
                mtime_ms: blob_common::now_ms(),
            },
        );
        reply.created(
            &Duration::ZERO,
            &attr,
            Generation(0),
            FileHandle(fh),
            FopenFlags::FOPEN_DIRECT_IO,
        );
    }

    pub(crate) fn on_read(&self, fh: FileHandle, offset: u64, size: u32, reply: ReplyData) {
        let s = self.shared.clone();
        let Some(reader) = s.handle_reader(fh.0) else {
            // A file being written here: what was written so far.
            let Some(w) = s.handle_written(fh.0) else {
                return reply.error(Errno::EBADF);
            };
            return self.spawn(
                "read",
                self.timeout(),
                async move {
                    w.read(offset, u64::from(size))
                        .await
                        .map_err(|e| write_errno("read", &w.path(), e))
                },
                move |r: Result<Bytes, Errno>| match r {
                    Ok(b) => reply.data(&b),
                    Err(e) => reply.error(e),
                },
            );
        };
        // A sequential reader's next bytes are usually fetched already:
        // answered right here, without a task.
        if let Some(b) = reader.read_ready(
            &self.rt,
            &s.client,
            &s.chunks,
            s.opts.readahead_chunks,
            offset,
            u64::from(size),
        ) {
            return reply.data(&b);
        }
        self.spawn(
            "read",
            self.timeout(),
            async move {
                let t = std::time::Instant::now();
                let r = reader
                    .read(
                        &s.client,
                        &s.chunks,
                        s.opts.readahead_chunks,
                        offset,
                        u64::from(size),
                    )
                    .await
                    .map_err(|e| errno("read", &reader.path(), &e));
                tracing::trace!(offset, size, us = t.elapsed().as_micros() as u64, "read");
                r
            },
            move |r: Result<Bytes, Errno>| match r {
                Ok(b) => reply.data(&b),
                Err(e) => reply.error(e),
            },
        );
    }

    pub(crate) fn on_write(&self, fh: FileHandle, offset: u64, data: &[u8], reply: ReplyWrite) {
        let s = self.shared.clone();
        let Some(w) = s.handle_writer(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let data = Bytes::copy_from_slice(data);
        let len = data.len() as u32;
        self.spawn(
            "write",
            self.commit_timeout(),
            async move {
                w.write(offset, data)
                    .await
                    .map_err(|e| write_errno("write", &w.path(), e))
            },
            move |r| match r {
                Ok(()) => reply.written(len),
                Err(e) => reply.error(e),
            },
        );
    }

    pub(crate) fn on_flush(&self, fh: FileHandle, reply: ReplyEmpty) {
        let s = self.shared.clone();
        let Some(w) = s.handle_writer(fh.0) else {
            return reply.ok();
        };
        self.spawn(
            "flush",
            self.commit_timeout_for(&w),
            async move { s.commit(&w).await },
            empty_reply(reply),
        );
    }

    pub(crate) fn on_fsync(&self, req: &Request, ino: INodeNo, fh: FileHandle, reply: ReplyEmpty) {
        self.flush(req, ino, fh, LockOwner(0), reply);
    }

    pub(crate) fn on_release(&self, fh: FileHandle, reply: ReplyEmpty) {
        let s = self.shared.clone();
        let handle = s
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
        let Some(Handle::Write(w)) = handle else {
            return reply.ok();
        };
        self.spawn(
            "release",
            self.commit_timeout_for(&w),
            async move {
                let res = s.commit(&w).await;
                let path = w.path();
                let mut ws = s.writers.lock().unwrap_or_else(|p| p.into_inner());
                if ws.get(&path).is_some_and(|cur| Arc::ptr_eq(cur, &w)) {
                    ws.remove(&path);
                }
                res
            },
            empty_reply(reply),
        );
    }
}
