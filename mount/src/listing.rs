//! FUSE callbacks on directories: `opendir`, `readdir` (one page of
//! names at a time) and `releasedir`.

use std::sync::Arc;

use fuser::{
    Errno, FileHandle, FileType, FopenFlags, INodeNo, ReplyDirectory, ReplyEmpty, ReplyOpen,
};

use crate::inodes::{join, parent_of, Kind, ROOT};
use crate::state::*;

impl BlobFs {
    pub(crate) fn on_opendir(&self, ino: INodeNo, reply: ReplyOpen) {
        let s = self.shared.clone();
        let path = match s.path_of(ino.0) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let fh = s.add_handle(Handle::Dir(Arc::new(tokio::sync::Mutex::new(DirList {
            path,
            page_start: FIRST_ENTRY_COOKIE,
            page: Vec::new(),
            next: None,
            started: false,
        }))));
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    pub(crate) fn on_readdir(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let s = self.shared.clone();
        let list = match s
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh.0)
        {
            Some(Handle::Dir(d)) => d.clone(),
            _ => return reply.error(Errno::EBADF),
        };
        self.spawn(
            "readdir",
            self.timeout(),
            async move {
                let mut d = list.lock().await;
                let mut out: Vec<(u64, u64, FileType, String)> = Vec::new();
                let parent_ino = {
                    let inodes = s.inodes.lock().unwrap_or_else(|p| p.into_inner());
                    inodes.peek(parent_of(&d.path)).unwrap_or(ROOT)
                };
                if offset < 1 {
                    out.push((ino.0, 1, FileType::Directory, ".".into()));
                }
                if offset < 2 {
                    out.push((parent_ino, 2, FileType::Directory, "..".into()));
                }
                let mut want = offset.max(FIRST_ENTRY_COOKIE - 1) + 1;
                if want < d.page_start || !d.started {
                    // From the start (first call, or a rewind).
                    let (mut page, next) = s.list_page(&d.path, None).await?;
                    let mut extra = s.new_files_in(&d.path);
                    extra.retain(|(n, _)| page.binary_search_by(|(p, _)| p.cmp(n)).is_err());
                    page.extend(extra);
                    d.page = page;
                    d.next = next;
                    d.page_start = FIRST_ENTRY_COOKIE;
                    d.started = true;
                }
                loop {
                    let page_end = d.page_start + d.page.len() as u64;
                    if want >= page_end {
                        let Some(after) = d.next.take() else {
                            break;
                        };
                        let (page, next) = s.list_page(&d.path, Some(after)).await?;
                        d.page_start = page_end;
                        d.page = page;
                        d.next = next;
                        want = want.max(d.page_start);
                        if d.page.is_empty() && d.next.is_none() {
                            break;
                        }
                        continue;
                    }
                    let inodes = s.inodes.lock().unwrap_or_else(|p| p.into_inner());
                    for (i, (name, kind)) in d.page.iter().enumerate() {
                        let cookie = d.page_start + i as u64;
                        if cookie < want {
                            continue;
                        }
                        let full = join(&d.path, name);
                        let ino = inodes.peek(&full).unwrap_or_else(|| listing_ino(&full));
                        let ftype = match kind {
                            Kind::Dir => FileType::Directory,
                            Kind::File { .. } => FileType::RegularFile,
                        };
                        out.push((ino, cookie + 1, ftype, name.clone()));
                    }
                    break;
                }
                Ok(out)
            },
            move |r| match r {
                Ok(entries) => {
                    for (ino, next, kind, name) in entries {
                        if reply.add(INodeNo(ino), next, kind, &name) {
                            break;
                        }
                    }
                    reply.ok()
                }
                Err(e) => reply.error(e),
            },
        );
    }

    pub(crate) fn on_releasedir(&self, fh: FileHandle, reply: ReplyEmpty) {
        self.shared
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
        reply.ok();
    }
}
