//! The on-disk format of a chunk file, shared by the datanode's store and
//! the edge's disk tier: the chunk's bytes, then one CRC32C (u32 LE) per
//! 64 KiB block ([`crate::checksum::BLOCK_SIZE`]), then a 16-byte footer:
//! [`MAGIC`] and the data length (u64 LE).
//!
//! One file means one fsync and one rename per chunk; the block CRCs let a
//! range read verify only the blocks it touches, and a streamed read verify
//! each frame before it is handed on. Every function here does blocking
//! I/O on a file its caller opened.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::checksum::{block_count, block_crc, BLOCK_SIZE};

/// Magic bytes opening a chunk file's footer.
pub const MAGIC: &[u8; 8] = b"BLOBCHK1";
/// Length of the footer: magic + data length.
pub const FOOTER_LEN: u64 = 16;
/// Size of the frames a streaming read hands out (a whole number of
/// blocks).
pub const READ_FRAME: usize = 16 * BLOCK_SIZE;

/// Size on disk of a chunk file holding `data_len` bytes.
pub fn file_len(data_len: u64) -> u64 {
    data_len + 4 * block_count(data_len) + FOOTER_LEN
}

/// What follows the data in a chunk file: the block CRCs and the footer.
pub fn trailer(crcs: &[u32], data_len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(crcs.len() * 4 + FOOTER_LEN as usize);
    for c in crcs {
        out.extend_from_slice(&c.to_le_bytes());
    }
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&data_len.to_le_bytes());
    out
}

/// Why reading a chunk file failed: the disk, or the file's own checks.
#[derive(Debug)]
pub enum ReadFailure {
    /// The disk failed.
    Io(io::Error),
    /// The file is not what its footer and CRCs say.
    Corrupt(String),
}

impl From<io::Error> for ReadFailure {
    fn from(e: io::Error) -> Self {
        // A file shorter than its footer claims reads as UnexpectedEof.
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ReadFailure::Corrupt("file is shorter than its footer says".into())
        } else {
            ReadFailure::Io(e)
        }
    }
}

impl std::fmt::Display for ReadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadFailure::Io(e) => write!(f, "{e}"),
            ReadFailure::Corrupt(why) => write!(f, "corrupt: {why}"),
        }
    }
}

/// Checks the footer of a chunk file of `file_size` bytes; returns the
/// data length it records.
pub fn read_footer(file: &File, file_size: u64) -> Result<u64, ReadFailure> {
    if file_size < FOOTER_LEN {
        return Err(ReadFailure::Corrupt(format!(
            "file of {file_size} bytes has no footer"
        )));
    }
    let mut footer = [0u8; FOOTER_LEN as usize];
    file.read_exact_at(&mut footer, file_size - FOOTER_LEN)?;
    if &footer[..8] != MAGIC {
        return Err(ReadFailure::Corrupt("footer magic missing".into()));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&footer[8..]);
    let len = u64::from_le_bytes(len);
    if len > file_size || file_len(len) != file_size {
        return Err(ReadFailure::Corrupt(format!(
            "footer says {len} data bytes, file has {file_size} bytes"
        )));
    }
    Ok(len)
}

/// Reads `[start, end)` of the data of a chunk file whose data is `len`
/// bytes (`start < end <= len`), verifying the CRC of every block touched.
pub fn read_verified(file: &File, len: u64, start: u64, end: u64) -> Result<Vec<u8>, ReadFailure> {
    let bs = BLOCK_SIZE as u64;
    let first = start / bs;
    let last = (end - 1) / bs;
    let nblocks = (last - first + 1) as usize;
    let mut crcs = vec![0u8; 4 * nblocks];
    file.read_exact_at(&mut crcs, len + 4 * first)?;
    let data_start = first * bs;
    let data_end = ((last + 1) * bs).min(len);
    let mut data = vec![0u8; (data_end - data_start) as usize];
    file.read_exact_at(&mut data, data_start)?;
    for (i, (block, crc)) in data
        .chunks(BLOCK_SIZE)
        .zip(crcs.chunks_exact(4))
        .enumerate()
    {
        let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let got = block_crc(block);
        if got != want {
            return Err(ReadFailure::Corrupt(format!(
                "block {} CRC32C {got:08x}, expected {want:08x}",
                first + i as u64
            )));
        }
    }
    let from = (start - data_start) as usize;
    let to = (end - data_start) as usize;
    data.truncate(to);
    data.drain(..from);
    Ok(data)
}

/// The end of the frame that starts at `pos` in a read ending at `end`:
/// frames are aligned to [`READ_FRAME`], so each reads whole blocks.
pub fn frame_end(pos: u64, end: u64) -> u64 {
    let frame = READ_FRAME as u64;
    ((pos / frame + 1) * frame).min(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(data: &[u8]) -> (tempfile::NamedTempFile, u64) {
        let mut f = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
        let crcs: Vec<u32> = data.chunks(BLOCK_SIZE).map(block_crc).collect();
        f.write_all(data).unwrap_or_else(|e| panic!("{e}"));
        f.write_all(&trailer(&crcs, data.len() as u64))
            .unwrap_or_else(|e| panic!("{e}"));
        let size = f.as_file().metadata().map(|m| m.len()).unwrap_or(0);
        (f, size)
    }

    #[test]
    fn ranges_verify_and_a_flipped_byte_fails_its_block() {
        let data: Vec<u8> = (0..BLOCK_SIZE * 2 + 100).map(|i| (i * 31) as u8).collect();
        let (f, size) = write(&data);
        assert_eq!(size, file_len(data.len() as u64));
        let len = read_footer(f.as_file(), size).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(len, data.len() as u64);
        let got = read_verified(f.as_file(), len, 10, BLOCK_SIZE as u64 + 5)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, &data[10..BLOCK_SIZE + 5]);
        // Flip one byte of the second block.
        f.as_file()
            .write_all_at(&[data[BLOCK_SIZE + 1] ^ 1], BLOCK_SIZE as u64 + 1)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(read_verified(f.as_file(), len, 0, 10).is_ok());
        assert!(matches!(
            read_verified(f.as_file(), len, 0, len),
            Err(ReadFailure::Corrupt(_))
        ));
    }

    #[test]
    fn a_file_without_a_footer_is_corrupt() {
        let mut f = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
        f.write_all(&[0u8; 100]).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            read_footer(f.as_file(), 100),
            Err(ReadFailure::Corrupt(_))
        ));
        assert_eq!(frame_end(0, 10), 10);
        assert_eq!(frame_end(5, READ_FRAME as u64 * 3), READ_FRAME as u64);
    }
}
