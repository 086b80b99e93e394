//! The layer cache: what building a layer once taught, so that the next build need not
//! read it again.
//!
//! A store layer is a pure function of its store paths and the packing policy, so a key
//! computed from those alone (see `buildimage_layer::LayerEntries::key`) names its bytes
//! before they are read. The cache maps that key to the layer's diff id and size, and a
//! diff id and compressor to the compressed blob's digest and size (compression is
//! deterministic), plus where the blob was last stored (for a registry's cross-repository
//! mount). It holds no layer bytes: entries are a few hundred bytes each.
//!
//! Entries are files written under a temporary name and renamed into place, so concurrent
//! builds see a whole entry or none; each ends with a SHA-256 of its text, and an entry
//! that does not match it is ignored and removed. The cache is an optimisation: a cache
//! that cannot be read or written makes a build slower, never wrong or failed.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use data_encoding::HEXLOWER;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::compress::Compressor;
use crate::error::{Error, Result};

/// The folder of this version of the cache's entries, under the cache folder.
const VERSION_DIR: &str = "v1";

/// Changes whenever compressed bytes of the same layer would change (block sizes, levels,
/// library behaviour we rely on): blob entries of another version are never read.
// 2: gzip as 1 MiB members deflated by libdeflate, zstd as 8 MiB frames.
const COMPRESSION_VERSION: u32 = 2;

/// Bytes the cache may take by default before its oldest entries are removed.
pub const DEFAULT_LIMIT: u64 = 64 << 20;

/// Bytes an entry is counted as: a file system block.
const ENTRY_BYTES: u64 = 4096;

/// What the cache knows of a layer by its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerEntry {
    /// SHA-256 of the uncompressed tar.
    #[serde(with = "hex32")]
    pub diff_id: [u8; 32],
    /// Its size in bytes.
    pub size: u64,
}

/// What the cache knows of a layer compressed by one compressor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobEntry {
    /// `sha256:<hex>` of the compressed blob.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Where it was stored (`host/repository` of a registry), most recent last.
    pub locations: Vec<String>,
}

/// Locations kept per blob: enough to find a repository to mount from.
const MAX_LOCATIONS: usize = 8;

/// The layer cache in a folder.
#[derive(Debug, Clone)]
pub struct LayerCache {
    dir: PathBuf,
    limit: u64,
}

impl LayerCache {
    /// The cache in `dir` (created when missing), keeping about `limit` bytes.
    pub fn open(dir: &Path, limit: u64) -> Result<Self> {
        let root = dir.join(VERSION_DIR);
        for sub in ["layers", "blobs"] {
            let path = root.join(sub);
            fs::create_dir_all(&path)
                .map_err(|e| Error::io("create the cache folder", &path, e))?;
        }
        Ok(LayerCache { dir: root, limit })
    }

    /// The default cache folder: `$XDG_CACHE_HOME/buildimage`, else `~/.cache/buildimage`.
    pub fn default_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("buildimage"))
    }

    /// The layer of `key`, if known.
    pub fn layer(&self, key: &[u8; 32]) -> Option<LayerEntry> {
        Self::read(&self.layer_path(key))
    }

    /// Records the layer of `key`.
    pub fn put_layer(&self, key: &[u8; 32], diff_id: &[u8; 32], size: u64) {
        let entry = LayerEntry {
            diff_id: *diff_id,
            size,
        };
        Self::write(&self.layer_path(key), &entry);
    }

    /// The blob of the layer `diff_id` compressed by `compressor`, if known.
    pub fn blob(&self, diff_id: &[u8; 32], compressor: Compressor) -> Option<BlobEntry> {
        Self::read(&self.blob_path(diff_id, compressor))
    }

    /// Records the blob of the layer `diff_id` compressed by `compressor`.
    pub fn put_blob(&self, diff_id: &[u8; 32], compressor: Compressor, entry: &BlobEntry) {
        let mut entry = entry.clone();
        let excess = entry.locations.len().saturating_sub(MAX_LOCATIONS);
        entry.locations.drain(..excess);
        Self::write(&self.blob_path(diff_id, compressor), &entry);
    }

    fn layer_path(&self, key: &[u8; 32]) -> PathBuf {
        self.dir.join("layers").join(HEXLOWER.encode(key))
    }

    fn blob_path(&self, diff_id: &[u8; 32], compressor: Compressor) -> PathBuf {
        self.dir.join("blobs").join(format!(
            "{}-{}-{COMPRESSION_VERSION}",
            HEXLOWER.encode(diff_id),
            compressor.as_str()
        ))
    }

    /// Reads an entry: its JSON, a newline, the hex SHA-256 of the JSON. A damaged entry
    /// is removed.
    fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
        let text = fs::read(path).ok()?;
        let parsed = parse_entry(&text);
        if parsed.is_none() {
            let _ = fs::remove_file(path);
        }
        parsed
    }

    fn write<T: Serialize>(path: &Path, entry: &T) {
        let json = serde_json::to_vec(entry).expect("an entry always prints");
        let mut text = json.clone();
        text.push(b'\n');
        text.extend_from_slice(HEXLOWER.encode(&Sha256::digest(&json)).as_bytes());
        text.push(b'\n');
        let Some(dir) = path.parent() else { return };
        let written = tempfile::Builder::new()
            .prefix(".entry.")
            .tempfile_in(dir)
            .and_then(|mut temp| {
                temp.write_all(&text)?;
                temp.persist(path).map_err(|e| e.error)?;
                Ok(())
            });
        // A cache that cannot be written costs the next build time, nothing else.
        let _ = written;
    }

    /// Removes the oldest entries while the cache holds more than its limit; returns how
    /// many were removed.
    pub fn trim(&self) -> usize {
        self.gc(self.limit)
    }

    /// Removes the oldest entries (by modification time) until the cache holds at most
    /// `limit` bytes; returns how many were removed.
    pub fn gc(&self, limit: u64) -> usize {
        let mut entries: Vec<(SystemTime, PathBuf)> = Vec::new();
        for sub in ["layers", "blobs"] {
            let Ok(dir) = fs::read_dir(self.dir.join(sub)) else {
                continue;
            };
            for item in dir.flatten() {
                let time = item
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                entries.push((time, item.path()));
            }
        }
        let keep = usize::try_from(limit / ENTRY_BYTES).unwrap_or(usize::MAX);
        if entries.len() <= keep {
            return 0;
        }
        entries.sort();
        let excess = entries.len() - keep;
        entries
            .iter()
            .take(excess)
            .filter(|(_, path)| fs::remove_file(path).is_ok())
            .count()
    }

    /// How many entries the cache holds, without reading them.
    pub fn len(&self) -> usize {
        ["layers", "blobs"]
            .iter()
            .filter_map(|sub| fs::read_dir(self.dir.join(sub)).ok())
            .map(Iterator::count)
            .sum()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether more entries than the limit allows are held (cheap: counts names).
    pub fn over_limit(&self) -> bool {
        self.len() as u64 * ENTRY_BYTES > self.limit
    }
}

/// An entry's value, if its text is whole and its check sum matches.
fn parse_entry<T: for<'de> Deserialize<'de>>(text: &[u8]) -> Option<T> {
    let text = text.strip_suffix(b"\n")?;
    let split = text.iter().rposition(|&b| b == b'\n')?;
    let (json, check) = (&text[..split], &text[split + 1..]);
    if check != HEXLOWER.encode(&Sha256::digest(json)).as_bytes() {
        return None;
    }
    serde_json::from_slice(json).ok()
}

/// A 32-byte digest as 64 lower-case hex digits.
mod hex32 {
    use data_encoding::HEXLOWER;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&HEXLOWER.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = HEXLOWER
            .decode(text.as_bytes())
            .map_err(|e| D::Error::custom(e.to_string()))?;
        bytes
            .try_into()
            .map_err(|_| D::Error::custom("expected 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_damaged_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(dir.path(), DEFAULT_LIMIT).unwrap();
        let key = [7; 32];
        assert_eq!(cache.layer(&key), None);
        cache.put_layer(&key, &[9; 32], 10_240);
        assert_eq!(
            cache.layer(&key),
            Some(LayerEntry {
                diff_id: [9; 32],
                size: 10_240
            })
        );
        let path = cache.layer_path(&key);
        let mut text = fs::read(&path).unwrap();
        text[12] ^= 1;
        fs::write(&path, text).unwrap();
        assert_eq!(cache.layer(&key), None);
        assert!(!path.exists(), "a damaged entry is removed");

        let blob = BlobEntry {
            digest: format!("sha256:{}", "ab".repeat(32)),
            size: 99,
            locations: vec!["127.0.0.1:5000/a".into()],
        };
        cache.put_blob(&[9; 32], Compressor::Gz, &blob);
        assert_eq!(cache.blob(&[9; 32], Compressor::Gz), Some(blob));
        assert_eq!(cache.blob(&[9; 32], Compressor::Zstd), None);
    }

    #[test]
    fn gc_removes_the_oldest_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(dir.path(), 2 * ENTRY_BYTES).unwrap();
        for i in 0..5u8 {
            cache.put_layer(&[i; 32], &[i; 32], u64::from(i));
        }
        assert!(cache.over_limit());
        assert_eq!(cache.trim(), 3);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.gc(0), 2);
        assert!(cache.is_empty());
    }
}
