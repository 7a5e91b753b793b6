//! FUSE callbacks on names: `lookup`, `getattr`, `setattr` (including
//! truncation), `mkdir`, `unlink`, `rmdir` and `rename`.

use std::ffi::OsStr;
use std::time::Duration;

use fuser::{
    Errno, FileHandle, Generation, INodeNo, RenameFlags, ReplyAttr, ReplyEmpty, ReplyEntry,
};

use crate::inodes::Kind;
use crate::state::*;

// Each callback takes only the fuser arguments it uses.
impl BlobFs {
    pub(crate) fn on_lookup(&self, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let s = self.shared.clone();
        let path = match s.child_path(parent.0, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let ttl = s.opts.meta_ttl;
        self.spawn(
            "lookup",
            self.timeout(),
            async move {
                let kind = s.resolve(&path).await?.ok_or(Errno::ENOENT)?;
                let ino = s.remember(&path);
                let writing = s.writer(&path).is_some();
                Ok((s.attr(ino, kind), writing))
            },
            move |r| match r {
                Ok((attr, writing)) => {
                    let ttl = if writing { Duration::ZERO } else { ttl };
                    reply.entry(&ttl, &attr, Generation(0))
                }
                Err(e) => reply.error(e),
            },
        );
    }

    pub(crate) fn on_getattr(&self, ino: INodeNo, reply: ReplyAttr) {
        let s = self.shared.clone();
        let ttl = s.opts.meta_ttl;
        self.spawn(
            "getattr",
            self.timeout(),
            async move {
                let path = s.path_of(ino.0)?;
                let kind = s.resolve(&path).await?.ok_or(Errno::ENOENT)?;
                Ok((s.attr(ino.0, kind), s.writer(&path).is_some()))
            },
            move |r| match r {
                Ok((attr, writing)) => {
                    reply.attr(&if writing { Duration::ZERO } else { ttl }, &attr)
                }
                Err(e) => reply.error(e),
            },
        );
    }

    pub(crate) fn on_setattr(
        &self,
        ino: INodeNo,
        size: Option<u64>,
        fh: Option<FileHandle>,
        reply: ReplyAttr,
    ) {
        // Modes, owners and times are not stored: accepted and ignored, as
        // most object-store mounts do. Only sizes matter.
        let s = self.shared.clone();
        let read_only = s.opts.read_only;
        self.spawn(
            "setattr",
            self.commit_timeout(),
            async move {
                let path = s.path_of(ino.0)?;
                let writer = fh
                    .and_then(|fh| s.handle_writer(fh.0))
                    .or_else(|| s.writer(&path));
                if let Some(size) = size {
                    if read_only {
                        return Err(Errno::EROFS);
                    }
                    match &writer {
                        Some(w) if size != w.size() => w
                            .truncate(size)
                            .await
                            .map_err(|e| write_errno("truncate", &path, e))?,
                        Some(_) => {}
                        None => s.truncate_closed(&path, size).await?,
                    }
                }
                let kind = s.resolve(&path).await?.ok_or(Errno::ENOENT)?;
                Ok(s.attr(ino.0, kind))
            },
            move |r| match r {
                Ok(attr) => reply.attr(&Duration::ZERO, &attr),
                Err(e) => reply.error(e),
            },
        );
    }

    pub(crate) fn on_mkdir(&self, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let s = self.shared.clone();
        let path = match s.path_to_change(parent.0, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let ttl = s.opts.meta_ttl;
        self.spawn(
            "mkdir",
            self.timeout(),
            async move {
                if s.resolve(&path).await?.is_some() {
                    return Err(Errno::EEXIST);
                }
                s.put_empty(&format!("{path}/")).await?;
                s.invalidate(&path);
                s.cache(&path, Some(Kind::Dir));
                let ino = s.remember(&path);
                Ok(s.attr(ino, Kind::Dir))
            },
            move |r| match r {
                Ok(attr) => reply.entry(&ttl, &attr, Generation(0)),
                Err(e) => reply.error(e),
            },
        );
    }

    pub(crate) fn on_unlink(&self, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let s = self.shared.clone();
        let path = match s.path_to_change(parent.0, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        self.spawn(
            "unlink",
            self.timeout(),
            async move {
                let writer = s
                    .writers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&path);
                let was_new = match &writer {
                    Some(w) => {
                        let new = w.is_new();
                        w.discard().await;
                        new
                    }
                    None => false,
                };
                let res = s.client.delete_file(&s.bucket, &path).await;
                s.invalidate(&path);
                s.note_emptied(&path);
                match res {
                    Ok(()) => Ok(()),
                    Err(e) if e.is_not_found() && was_new => Ok(()),
                    Err(e) => Err(errno("unlink", &path, &e)),
                }
            },
            empty_reply(reply),
        );
    }

    pub(crate) fn on_rmdir(&self, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let s = self.shared.clone();
        let path = match s.path_to_change(parent.0, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        self.spawn(
            "rmdir",
            self.timeout(),
            async move {
                match s.resolve(&path).await? {
                    Some(Kind::Dir) => {}
                    Some(Kind::File { .. }) => return Err(Errno::ENOTDIR),
                    // The kernel still knew it: a directory that existed
                    // only through its files, gone with the last of them.
                    None => {
                        s.invalidate(&path);
                        return Ok(());
                    }
                }
                if s.dir_has_entries(&path).await? {
                    return Err(Errno::ENOTEMPTY);
                }
                let res = s.client.delete_file(&s.bucket, &format!("{path}/")).await;
                s.invalidate(&path);
                s.forget_emptied(&path);
                match res {
                    Ok(()) => Ok(()),
                    Err(e) if e.is_not_found() => Ok(()),
                    Err(e) => Err(errno("rmdir", &path, &e)),
                }
            },
            empty_reply(reply),
        );
    }

    pub(crate) fn on_rename(
        &self,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let s = self.shared.clone();
        if s.opts.read_only {
            return reply.error(Errno::EROFS);
        }
        let (from, to) = match (
            s.child_path(parent.0, name),
            s.child_path(newparent.0, newname),
        ) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            return reply.error(Errno::EINVAL);
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        self.spawn(
            "rename",
            self.commit_timeout(),
            async move {
                if from == to {
                    return Ok(());
                }
                if to.starts_with(&format!("{from}/")) {
                    return Err(Errno::EINVAL);
                }
                let src = s.resolve(&from).await?.ok_or(Errno::ENOENT)?;
                let dst = s.resolve(&to).await?;
                if noreplace && dst.is_some() {
                    return Err(Errno::EEXIST);
                }
                match (src, dst) {
                    (Kind::File { .. }, Some(Kind::Dir)) => return Err(Errno::EISDIR),
                    (Kind::Dir, Some(Kind::File { .. })) => return Err(Errno::ENOTDIR),
                    (Kind::Dir, Some(Kind::Dir)) if s.dir_has_entries(&to).await? => {
                        return Err(Errno::ENOTEMPTY)
                    }
                    _ => {}
                }
                match src {
                    Kind::File { .. } => {
                        // A file still being written is committed first, and
                        // goes on being written under its new name.
                        let writer = s.writer(&from);
                        if let Some(w) = &writer {
                            s.commit(w).await?;
                        }
                        s.client
                            .rename(&s.bucket, &from, &to)
                            .await
                            .map_err(|e| errno("rename", &from, &e))?;
                        if let Some(w) = writer {
                            let mut ws = s.writers.lock().unwrap_or_else(|p| p.into_inner());
                            ws.remove(&from);
                            w.set_path(to.clone());
                            ws.insert(to.clone(), w);
                        }
                    }
                    Kind::Dir => {
                        // Not atomic: each file below moves on its own.
                        for p in s.list_below(&from).await? {
                            let new = format!("{to}{}", &p[from.len()..]);
                            s.client
                                .rename(&s.bucket, &p, &new)
                                .await
                                .map_err(|e| errno("rename", &p, &e))?;
                        }
                    }
                }
                s.invalidate(&from);
                s.invalidate(&to);
                s.note_emptied(&from);
                s.forget_emptied(&from);
                s.inodes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .rename(&from, &to);
                Ok(())
            },
            empty_reply(reply),
        );
    }
}
