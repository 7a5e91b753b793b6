//! Chunk locations kept between requests. A client that downloads a large
//! object with ranged GETs (`aws s3 cp`: one request per 8 MiB) would
//! otherwise have the namenode locate and sign every chunk of the object
//! for every range, which grows with the square of the object's size.
//!
//! An entry is used only after the namenode confirms, for the request's
//! own credentials, that it still describes the object's current version
//! (`unless_version`: one light round trip that locates and signs
//! nothing). So a key overwritten or deleted by any writer, through this
//! gateway or not, is never read from old locations, and the namenode
//! still decides who may read what. Entries go when their signed URLs are
//! about to expire, when the object is deleted or overwritten through this
//! gateway, after half a minute (the replicas' order is the namenode's
//! view of the moment), or when the cache is over its capacity (counted in
//! chunks).

use std::sync::Arc;

use blob_client::{Client, FileLocations};
use blob_common::presign::url_expiry;

/// Seconds before its URLs expire that an entry stops being used.
const EXPIRY_MARGIN_SECS: u64 = 60;
/// Seconds an entry is used at most: the replicas' order (live and nearest
/// first) is the namenode's view when the entry was made, so a node that
/// went silent since is not tried first for longer than this.
const MAX_AGE_SECS: u64 = 30;

/// One object's locations and when the first of their URLs expires.
struct Entry {
    locs: Arc<FileLocations>,
    /// When it stops being used (Unix seconds).
    until: u64,
}

#[derive(Clone)]
struct ChunkWeighter;

impl quick_cache::Weighter<(String, String), Arc<Entry>> for ChunkWeighter {
    fn weight(&self, _key: &(String, String), val: &Arc<Entry>) -> u64 {
        val.locs.chunks.len() as u64 + 1
    }
}

/// The gateway's location cache.
pub(crate) struct LocationCache {
    cache: quick_cache::sync::Cache<(String, String), Arc<Entry>, ChunkWeighter>,
}

impl LocationCache {
    /// A cache of at most about `max_chunks` chunk locations (0: none kept).
    pub(crate) fn new(max_chunks: u64) -> Self {
        Self {
            cache: quick_cache::sync::Cache::with_weighter(
                (max_chunks / 8).max(16) as usize,
                max_chunks.max(1),
                ChunkWeighter,
            ),
        }
    }

    /// The current locations of `bucket/key`, as `client` may read them.
    pub(crate) async fn get(
        &self,
        client: &Client,
        bucket: &str,
        key: &str,
    ) -> Result<Arc<FileLocations>, blob_client::Error> {
        let id = (bucket.to_string(), key.to_string());
        let now = blob_common::now_secs();
        let cached = self.cache.get(&id).filter(|e| e.until > now);
        let known = cached.as_ref().map(|e| e.locs.file.version);
        let answer = match client.locations_unless(bucket, key, known).await {
            Ok(a) => a,
            Err(e) => {
                self.cache.remove(&id);
                return Err(e);
            }
        };
        if answer.unchanged {
            if let Some(e) = cached {
                return Ok(e.locs.clone());
            }
            // Answered for a version not asked about: ask in full.
            return self.fetch(client, id, now).await;
        }
        Ok(self.keep(id, answer, now))
    }

    async fn fetch(
        &self,
        client: &Client,
        id: (String, String),
        now: u64,
    ) -> Result<Arc<FileLocations>, blob_client::Error> {
        let answer = client.locations(&id.0, &id.1).await?;
        Ok(self.keep(id, answer, now))
    }

    /// Keeps `locs` while their URLs last.
    fn keep(&self, id: (String, String), locs: FileLocations, now: u64) -> Arc<FileLocations> {
        let locs = Arc::new(locs);
        let expires = locs
            .chunks
            .iter()
            .filter_map(|c| c.replicas.first())
            .map(|r| url_expiry(&r.url).unwrap_or(0))
            .min()
            .unwrap_or(u64::MAX);
        let until = expires
            .saturating_sub(EXPIRY_MARGIN_SECS)
            .min(now + MAX_AGE_SECS);
        if until > now && !locs.chunks.is_empty() {
            self.cache.insert(
                id,
                Arc::new(Entry {
                    locs: locs.clone(),
                    until,
                }),
            );
        } else {
            self.cache.remove(&id);
        }
        locs
    }

    /// Drops what is kept for `bucket/key` (it was overwritten or deleted
    /// through this gateway).
    pub(crate) fn forget(&self, bucket: &str, key: &str) {
        self.cache.remove(&(bucket.to_string(), key.to_string()));
    }
}
