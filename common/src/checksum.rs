//! Every checksum the store uses, in one place: the chunk SHA-256 (its id),
//! the CRC32C of each 64 KiB block (so a range read verifies only the blocks
//! it touches), and S3 ETags (MD5; multipart: MD5 of the part MD5s, `-N`).

use md5::{Digest as _, Md5};

/// Size of a checksummed block inside a chunk.
pub const BLOCK_SIZE: usize = 64 * 1024;

/// CRC32C of one block.
pub fn block_crc(block: &[u8]) -> u32 {
    crc32c::crc32c(block)
}

/// Number of blocks a chunk of `len` bytes has.
pub fn block_count(len: u64) -> u64 {
    len.div_ceil(BLOCK_SIZE as u64)
}

/// Computes block CRCs incrementally over a stream of arbitrary slices.
#[derive(Debug, Default, Clone)]
pub struct BlockCrcs {
    crcs: Vec<u32>,
    current: u32,
    filled: usize,
}

impl BlockCrcs {
    /// Feeds the next bytes of the chunk.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = (BLOCK_SIZE - self.filled).min(data.len());
            self.current = crc32c::crc32c_append(self.current, &data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled == BLOCK_SIZE {
                self.crcs.push(self.current);
                self.current = 0;
                self.filled = 0;
            }
        }
    }

    /// The CRC of every block, the last one possibly short.
    pub fn finish(mut self) -> Vec<u32> {
        if self.filled > 0 {
            self.crcs.push(self.current);
        }
        self.crcs
    }
}

/// MD5 of a body as a lowercase hex string: a single-part S3 ETag.
pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// The S3 ETag of a multipart object from the raw MD5s of its parts.
pub fn multipart_etag(part_md5s: &[[u8; 16]]) -> String {
    let mut h = Md5::new();
    for p in part_md5s {
        h.update(p);
    }
    format!("{}-{}", hex::encode(h.finalize()), part_md5s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_crcs_match_whole_block_crcs_whatever_the_slicing() {
        let data: Vec<u8> = (0..(BLOCK_SIZE * 2 + 17)).map(|i| (i * 7) as u8).collect();
        let expected: Vec<u32> = data.chunks(BLOCK_SIZE).map(block_crc).collect();
        for step in [1usize, 1000, 4096, BLOCK_SIZE, BLOCK_SIZE + 3] {
            let mut c = BlockCrcs::default();
            for piece in data.chunks(step) {
                c.update(piece);
            }
            assert_eq!(c.finish(), expected, "step {step}");
        }
        assert_eq!(block_count(0), 0);
        assert_eq!(block_count(1), 1);
        assert_eq!(block_count(BLOCK_SIZE as u64), 1);
        assert_eq!(block_count(BLOCK_SIZE as u64 + 1), 2);
    }

    #[test]
    fn etags_follow_s3() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        let a: [u8; 16] = Md5::digest(b"a").into();
        let b: [u8; 16] = Md5::digest(b"b").into();
        let tag = multipart_etag(&[a, b]);
        assert!(tag.ends_with("-2"));
        assert_eq!(tag.len(), 32 + 2);
    }
}
