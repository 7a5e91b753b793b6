//! [`Layout`]: where each byte of a staged file is: in a chunk of the
//! version the open started from (kept by id, never copied while
//! unchanged), or in the staging file at the same offset. A write into a
//! stored chunk first copies that one chunk into the staging file; the
//! commit re-cuts only the local runs into chunks, so unchanged chunks keep
//! their ids.

use blob_common::ChunkId;

/// A chunk of the version a staged file started from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BaseChunk {
    pub(crate) id: ChunkId,
    pub(crate) offset: u64,
    pub(crate) size: u64,
    /// Its bytes are in the staging file (it was written into).
    pub(crate) local: bool,
}

/// Where the bytes of a staged file are: `base` chunks cover
/// `0..base_end` (each either still stored or copied into the staging
/// file), and `base_end..size` is in the staging file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) base: Vec<BaseChunk>,
    base_end: u64,
    size: u64,
}

/// A part of the file at commit: a stored chunk kept by id, or a range of
/// the staging file to cut into a new chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece {
    Stored {
        index: usize,
        id: ChunkId,
        size: u64,
    },
    Local {
        offset: u64,
        size: u64,
    },
}

/// Part of a read: from base chunk `index` (`range` within it), or from
/// the staging file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Stored {
        index: usize,
        range: std::ops::Range<u64>,
    },
    Local {
        offset: u64,
        len: u64,
    },
}

impl Layout {
    /// A file whose bytes are all local (`size` of them).
    pub(crate) fn local(size: u64) -> Self {
        Self {
            base: Vec::new(),
            base_end: 0,
            size,
        }
    }

    /// The version made of `chunks` (in order), nothing local.
    pub(crate) fn stored(chunks: impl IntoIterator<Item = (ChunkId, u64)>) -> Self {
        let mut base = Vec::new();
        let mut offset = 0;
        for (id, size) in chunks {
            base.push(BaseChunk {
                id,
                offset,
                size,
                local: false,
            });
            offset += size;
        }
        Self {
            base,
            base_end: offset,
            size: offset,
        }
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Stored chunks a write of `offset..end` needs copied into the staging
    /// file first: `(index, whether its old bytes must be fetched)`. A
    /// chunk the write covers whole needs no fetch. Growing the file past a
    /// stored last chunk shorter than `chunk_size` takes that chunk too, so
    /// the file stays cut at `chunk_size` rather than collecting small
    /// chunks append after append.
    pub(crate) fn to_copy(&self, offset: u64, end: u64, chunk_size: u64) -> Vec<(usize, bool)> {
        let mut out = Vec::new();
        if end <= offset {
            return out;
        }
        for (i, c) in self.base.iter().enumerate() {
            let c_end = c.offset + c.size;
            if c_end <= offset {
                continue;
            }
            if c.offset >= end {
                break;
            }
            if !c.local {
                out.push((i, !(offset <= c.offset && end >= c_end)));
            }
        }
        if end > self.base_end {
            if let Some(last) = self.base.last() {
                let i = self.base.len() - 1;
                if !last.local && last.size < chunk_size && out.last().map(|x| x.0) != Some(i) {
                    out.push((i, true));
                }
            }
        }
        out
    }

    /// Base chunk `index` is now in the staging file.
    pub(crate) fn mark_local(&mut self, index: usize) {
        if let Some(c) = self.base.get_mut(index) {
            c.local = true;
        }
    }

    /// The file now reaches at least `end`.
    pub(crate) fn extend(&mut self, end: u64) {
        self.size = self.size.max(end);
    }

    /// The stored chunk cut by a truncation to `len`, if any: it must be
    /// copied into the staging file before [`Layout::truncate`].
    pub(crate) fn cut_by(&self, len: u64) -> Option<usize> {
        self.base
            .iter()
            .position(|c| !c.local && c.offset < len && len < c.offset + c.size)
    }

    /// The file is now `len` bytes long (see [`Layout::cut_by`]).
    pub(crate) fn truncate(&mut self, len: u64) {
        if len >= self.size {
            self.size = len;
            return;
        }
        if len < self.base_end {
            // Chunks from the one holding `len` on go; what is kept of
            // that one is local (copied before), so it joins the tail.
            let keep = self.base.partition_point(|c| c.offset + c.size <= len);
            self.base.truncate(keep);
            self.base_end = self.base.last().map_or(0, |c| c.offset + c.size);
        }
        self.size = len;
    }

    /// The file as chunks for a commit: stored chunks by id, and each run of
    /// local bytes cut into `chunk_size` pieces from its start.
    pub(crate) fn pieces(&self, chunk_size: u64) -> Vec<Piece> {
        let chunk_size = chunk_size.max(1);
        let mut out = Vec::new();
        let mut run: Option<u64> = None;
        let cut = |out: &mut Vec<Piece>, from: u64, to: u64| {
            let mut at = from;
            while at < to {
                let size = chunk_size.min(to - at);
                out.push(Piece::Local { offset: at, size });
                at += size;
            }
        };
        for (index, c) in self.base.iter().enumerate() {
            if c.local {
                run.get_or_insert(c.offset);
                continue;
            }
            if let Some(from) = run.take() {
                cut(&mut out, from, c.offset);
            }
            out.push(Piece::Stored {
                index,
                id: c.id,
                size: c.size,
            });
        }
        let from = run.unwrap_or(self.base_end);
        cut(&mut out, from, self.size);
        out
    }

    /// Where the bytes `offset..offset+len` (cut at the end of the file)
    /// are.
    pub(crate) fn segments(&self, offset: u64, len: u64) -> Vec<Segment> {
        let end = offset.saturating_add(len).min(self.size);
        let mut out: Vec<Segment> = Vec::new();
        if end <= offset {
            return out;
        }
        let local = |out: &mut Vec<Segment>, from: u64, to: u64| {
            if let Some(Segment::Local { offset, len }) = out.last_mut() {
                if *offset + *len == from {
                    *len += to - from;
                    return;
                }
            }
            out.push(Segment::Local {
                offset: from,
                len: to - from,
            });
        };
        for (index, c) in self.base.iter().enumerate() {
            let c_end = c.offset + c.size;
            if c_end <= offset {
                continue;
            }
            if c.offset >= end {
                break;
            }
            let (from, to) = (offset.max(c.offset), end.min(c_end));
            if c.local {
                local(&mut out, from, to);
            } else {
                out.push(Segment::Stored {
                    index,
                    range: from - c.offset..to - c.offset,
                });
            }
        }
        if end > self.base_end {
            local(&mut out, offset.max(self.base_end), end);
        }
        out
    }

    /// Bytes that must be local at commit time (for logs).
    pub(crate) fn local_bytes(&self) -> u64 {
        let base: u64 = self.base.iter().filter(|c| c.local).map(|c| c.size).sum();
        base + (self.size - self.base_end.min(self.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ChunkId {
        ChunkId::of(&[n])
    }

    /// Three stored chunks of 10, 10 and 5 bytes.
    fn three() -> Layout {
        Layout::stored([(id(0), 10), (id(1), 10), (id(2), 5)])
    }

    #[test]
    fn an_edit_in_the_middle_copies_one_chunk_and_keeps_the_others() {
        let mut l = three();
        assert_eq!(l.to_copy(12, 14, 10), vec![(1, true)]);
        l.mark_local(1);
        assert_eq!(
            l.pieces(10),
            vec![
                Piece::Stored {
                    index: 0,
                    id: id(0),
                    size: 10
                },
                Piece::Local {
                    offset: 10,
                    size: 10
                },
                Piece::Stored {
                    index: 2,
                    id: id(2),
                    size: 5
                },
            ]
        );
        assert_eq!(l.local_bytes(), 10);
        assert_eq!(
            l.segments(8, 10),
            vec![
                Segment::Stored {
                    index: 0,
                    range: 8..10
                },
                Segment::Local { offset: 10, len: 8 },
            ]
        );
    }

    #[test]
    fn a_write_covering_a_whole_chunk_needs_no_fetch() {
        let l = three();
        assert_eq!(l.to_copy(10, 20, 10), vec![(1, false)]);
        assert_eq!(
            l.to_copy(5, 25, 10),
            vec![(0, true), (1, false), (2, false)]
        );
        assert_eq!(l.to_copy(5, 5, 10), vec![]);
    }

    #[test]
    fn growing_past_a_short_last_chunk_takes_it_and_recuts() {
        let mut l = three();
        // An append at the end: the short last chunk is fetched.
        assert_eq!(l.to_copy(25, 30, 10), vec![(2, true)]);
        l.mark_local(2);
        l.extend(30);
        assert_eq!(
            &l.pieces(10)[2..],
            &[Piece::Local {
                offset: 20,
                size: 10
            }]
        );
        // A full last chunk stays as it is.
        let mut l = Layout::stored([(id(0), 10), (id(1), 10)]);
        assert_eq!(l.to_copy(20, 33, 10), vec![]);
        l.extend(33);
        assert_eq!(
            &l.pieces(10)[2..],
            &[
                Piece::Local {
                    offset: 20,
                    size: 10
                },
                Piece::Local {
                    offset: 30,
                    size: 3
                }
            ]
        );
        assert_eq!(
            l.segments(15, 100),
            vec![
                Segment::Stored {
                    index: 1,
                    range: 5..10
                },
                Segment::Local {
                    offset: 20,
                    len: 13
                }
            ]
        );
    }

    #[test]
    fn local_runs_are_recut_from_their_start() {
        let mut l = three();
        l.mark_local(0);
        l.mark_local(1);
        l.extend(40);
        // Chunks 0 and 1 and the tail are one run from 0: 0..10, 10..20, 20..25 is
        // chunk 2 (stored) in between, so the run stops there.
        assert_eq!(
            l.pieces(8),
            vec![
                Piece::Local { offset: 0, size: 8 },
                Piece::Local { offset: 8, size: 8 },
                Piece::Local {
                    offset: 16,
                    size: 4
                },
                Piece::Stored {
                    index: 2,
                    id: id(2),
                    size: 5
                },
                Piece::Local {
                    offset: 25,
                    size: 8
                },
                Piece::Local {
                    offset: 33,
                    size: 7
                },
            ]
        );
        assert_eq!(l.local_bytes(), 20 + 15);
    }

    #[test]
    fn truncation_down_keeps_whole_chunks_and_localises_the_cut_one() {
        let mut l = three();
        assert_eq!(l.cut_by(20), None, "a chunk boundary cuts nothing");
        assert_eq!(l.cut_by(15), Some(1));
        l.mark_local(1);
        l.truncate(15);
        assert_eq!(l.size(), 15);
        assert_eq!(
            l.pieces(10),
            vec![
                Piece::Stored {
                    index: 0,
                    id: id(0),
                    size: 10
                },
                Piece::Local {
                    offset: 10,
                    size: 5
                },
            ]
        );
        let mut l = three();
        l.truncate(20);
        assert_eq!(l.pieces(10).len(), 2);
        assert_eq!(l.segments(0, 100).len(), 2);
        l.truncate(0);
        assert_eq!(l.pieces(10), vec![]);
        assert_eq!(l.segments(0, 10), vec![]);
    }

    #[test]
    fn truncation_up_adds_a_local_tail_of_zeros() {
        let mut l = Layout::stored([(id(0), 10)]);
        assert_eq!(l.to_copy(10, 30, 10), vec![]);
        l.truncate(30);
        assert_eq!(l.size(), 30);
        assert_eq!(
            l.pieces(10),
            vec![
                Piece::Stored {
                    index: 0,
                    id: id(0),
                    size: 10
                },
                Piece::Local {
                    offset: 10,
                    size: 10
                },
                Piece::Local {
                    offset: 20,
                    size: 10
                },
            ]
        );
    }

    #[test]
    fn an_all_local_file_is_cut_like_a_stream() {
        let l = Layout::local(25);
        assert_eq!(
            l.pieces(10),
            vec![
                Piece::Local {
                    offset: 0,
                    size: 10
                },
                Piece::Local {
                    offset: 10,
                    size: 10
                },
                Piece::Local {
                    offset: 20,
                    size: 5
                },
            ]
        );
        assert_eq!(Layout::local(0).pieces(10), vec![]);
    }
}
