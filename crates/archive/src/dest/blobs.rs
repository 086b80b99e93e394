//! Images stored as content-addressed blobs: an OCI image layout, a registry. Each layer is
//! compressed on its own, the config and a manifest listing them are blobs too, and the
//! manifest is named last, so an image is visible complete or not at all.
//!
//! [`BlobImage`] is the [`Destination`]; a [`BlobStore`] is where its blobs go. A layer the
//! store already holds is not sent again, and with a [`LayerCache`] a store layer is not
//! even read: its digests are known from its key.
//!
//! The layers of an image are compressed on one pool of workers. A large layer is streamed
//! into its blob, its blocks spread over every worker; a small one (up to
//! [`DEFER_BUDGET`]) is read and handed to the workers whole, and its blob is written once
//! they are done, while the next layers are read: so several small layers are compressed
//! at once, and the workers never wait for the end of one layer to start on the next.

use std::collections::VecDeque;
use std::io::{self, Write};

use data_encoding::HEXLOWER;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Destination, ImageMeta, LayerInfo, LayerRecord, LayerSource};
use crate::cache::{BlobEntry, LayerCache};
use crate::compress::{Blocks, Compressed, Compressor, Pending, Workers};
use crate::error::{Error, Result};

/// Which media types the manifest, config and layers are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ManifestFormat {
    /// The OCI image specification's.
    #[default]
    Oci,
    /// Docker's image manifest schema 2, for registries that want it.
    Docker,
}

impl ManifestFormat {
    /// The manifest's media type.
    pub fn manifest_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => "application/vnd.oci.image.manifest.v1+json",
            ManifestFormat::Docker => "application/vnd.docker.distribution.manifest.v2+json",
        }
    }

    /// The config's media type.
    pub fn config_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => "application/vnd.oci.image.config.v1+json",
            ManifestFormat::Docker => "application/vnd.docker.container.image.v1+json",
        }
    }

    /// The media type of a layer compressed by `compressor`; an error for a combination
    /// the format has no type for (Docker's schema 2 knows no zstd layers).
    pub fn layer_type(self, compressor: Compressor) -> Result<&'static str> {
        Ok(match (self, compressor) {
            (ManifestFormat::Oci, Compressor::None) => "application/vnd.oci.image.layer.v1.tar",
            (ManifestFormat::Oci, Compressor::Gz) => "application/vnd.oci.image.layer.v1.tar+gzip",
            (ManifestFormat::Oci, Compressor::Zstd) => {
                "application/vnd.oci.image.layer.v1.tar+zstd"
            }
            (ManifestFormat::Docker, Compressor::None) => {
                "application/vnd.docker.image.rootfs.diff.tar"
            }
            (ManifestFormat::Docker, Compressor::Gz) => {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            }
            (ManifestFormat::Docker, Compressor::Zstd) => {
                return Err(Error::Invalid {
                    what: "compressor zstd".to_owned(),
                    reason: "Docker's manifest schema 2 has no media type for zstd layers; use \
                             the OCI format or the gz compressor"
                        .to_owned(),
                });
            }
        })
    }
}

/// A blob as a manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:<hex>` of its bytes.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

impl Blob {
    /// The OCI descriptor of the blob.
    pub fn descriptor(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size })
    }
}

/// Where a [`BlobImage`] puts its blobs and its manifest.
pub trait BlobStore {
    /// Whether the store holds the blob `digest` (`sha256:<hex>`) of `size` bytes. A store
    /// may make it available first (a registry mounts it from one of the `seen_in`
    /// locations, where the cache recorded it before) and then answer yes.
    fn has_blob(&mut self, digest: &str, size: u64, seen_in: &[String]) -> Result<bool>;

    /// Starts a blob whose digest is known only once it is written. Dropping the writer
    /// without [`BlobWriter::commit`] abandons it, leaving nothing visible.
    fn start_blob(&mut self) -> Result<Box<dyn BlobWriter + '_>>;

    /// Stores a blob whose bytes are all known (a config); does nothing when the store
    /// holds it. Returns whether it was sent.
    fn put_blob(&mut self, digest: &str, bytes: &[u8]) -> Result<bool> {
        if self.has_blob(digest, bytes.len() as u64, &[])? {
            return Ok(false);
        }
        let mut writer = self.start_blob()?;
        writer.write_all(bytes).map_err(Error::Write)?;
        writer.commit(digest, bytes.len() as u64)
    }

    /// Stores the manifest (its blobs are all stored) and names it: `tag` unless the store
    /// was given a reference of its own. Until this returns, no name points at the image.
    fn put_manifest(&mut self, manifest: &Blob, bytes: &[u8], tag: &str) -> Result<()>;

    /// How the cache names this store for a later mount (`host/repository`); `None` for a
    /// store that cannot mount.
    fn location(&self) -> Option<String> {
        None
    }
}

/// A blob being written into a [`BlobStore`].
pub trait BlobWriter: Write {
    /// Completes the blob, whose bytes hash to `digest` and number `size`: the store makes
    /// it visible under that digest (and may check it). Returns whether the bytes were
    /// stored: `false` when the store turned out to hold the blob already.
    fn commit(self: Box<Self>, digest: &str, size: u64) -> Result<bool>;
}

/// What a [`BlobImage`] sent and skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobStats {
    /// Blobs (layers and config) the store did not have and was sent.
    pub uploaded: u64,
    /// Blobs the store had (or mounted) and was not sent.
    pub skipped: u64,
    /// Bytes of the blobs sent.
    pub bytes: u64,
    /// The manifest, once stored.
    pub manifest: Option<Blob>,
}

/// Uncompressed bytes of the small layers whose blobs may wait to be written at once: a
/// layer up to this size is compressed while the next ones are read (see the module's
/// documentation). Bounds the memory they hold; one zstd block: a layer that fits in one
/// block is compressed on one worker, a larger one is streamed over all of them.
pub const DEFER_BUDGET: u64 = 8 << 20;

/// A small layer read and handed to the workers, its blob not yet written.
struct Deferred {
    /// Its place in the image (and in [`BlobImage::layers`]).
    slot: usize,
    diff_id: [u8; 32],
    size: u64,
    key: Option<[u8; 32]>,
    blocks: Pending,
}

/// An image written as blobs into a [`BlobStore`]: each layer compressed on its own per
/// `compressor`, the config, then an OCI (or Docker schema 2) manifest.
pub struct BlobImage<S: BlobStore> {
    store: S,
    compressor: Compressor,
    format: ManifestFormat,
    /// The pool every layer is compressed on; none without compression.
    workers: Option<Workers>,
    cache: Option<LayerCache>,
    /// Every layer's blob, in image order; `None` while a deferred one is not written.
    layers: Vec<Option<Blob>>,
    /// Small layers whose blobs are not written yet, oldest first.
    deferred: VecDeque<Deferred>,
    /// Their uncompressed sizes, added up.
    deferred_bytes: u64,
    config: Option<Blob>,
    stats: BlobStats,
}

impl<S: BlobStore> BlobImage<S> {
    /// An image into `store`, its layers compressed by `compressor` with `threads` workers
    /// (the bytes are the same for any number), its manifest in `format`, with `cache` (if
    /// any) to skip known layers.
    pub fn new(
        store: S,
        compressor: Compressor,
        format: ManifestFormat,
        threads: u32,
        cache: Option<LayerCache>,
    ) -> Result<Self> {
        format.layer_type(compressor)?;
        let workers = match compressor {
            Compressor::None => None,
            _ => Some(Workers::new(threads).map_err(Error::Write)?),
        };
        Ok(BlobImage {
            store,
            compressor,
            format,
            workers,
            cache,
            layers: Vec::new(),
            deferred: VecDeque::new(),
            deferred_bytes: 0,
            config: None,
            stats: BlobStats::default(),
        })
    }

    /// The store, once the image is written (to complete what it needs completing).
    pub fn into_store(self) -> (S, BlobStats) {
        (self.store, self.stats)
    }

    fn media_type(&self) -> String {
        self.format
            .layer_type(self.compressor)
            .expect("checked when made")
            .to_owned()
    }

    /// The blob of the layer `diff_id` as the cache knows it, if the store holds it.
    fn held(&mut self, diff_id: &[u8; 32]) -> Result<Option<Blob>> {
        let Some(cache) = &self.cache else {
            return Ok(None);
        };
        let Some(entry) = cache.blob(diff_id, self.compressor) else {
            return Ok(None);
        };
        let blob = Blob {
            digest: entry.digest.clone(),
            size: entry.size,
            media_type: self.media_type(),
        };
        if !self
            .store
            .has_blob(&blob.digest, blob.size, &entry.locations)?
        {
            return Ok(None);
        }
        self.remember_location(diff_id, &entry);
        Ok(Some(blob))
    }

    /// Records in the cache that this store holds the blob `entry` of `diff_id`.
    fn remember_location(&self, diff_id: &[u8; 32], entry: &BlobEntry) {
        if let (Some(cache), Some(location)) = (&self.cache, self.store.location())
            && !entry.locations.contains(&location)
        {
            let mut entry = entry.clone();
            entry.locations.push(location);
            cache.put_blob(diff_id, self.compressor, &entry);
        }
    }

    fn skipped(&mut self, blob: Blob, diff_id: [u8; 32], size: u64) -> LayerRecord {
        self.stats.skipped += 1;
        self.layers.push(Some(blob.clone()));
        LayerRecord {
            diff_id,
            size,
            tarsum: None,
            id: blob.digest.clone(),
            blob: Some(blob),
        }
    }
}

impl<S: BlobStore> BlobImage<S> {
    /// The blob of `media_type` whose bytes went through `hashed`.
    fn blob<W: Write>(hashed: Hashing<W>, media_type: String) -> Blob {
        let (digest, size) = hashed.result();
        Blob {
            digest: format!("sha256:{}", HEXLOWER.encode(&digest)),
            size,
            media_type,
        }
    }

    /// Counts a layer's blob as sent (`stored`) or found, and records it in the cache.
    fn stored(
        &mut self,
        blob: &Blob,
        stored: bool,
        diff_id: &[u8; 32],
        size: u64,
        key: Option<[u8; 32]>,
    ) {
        if stored {
            self.stats.uploaded += 1;
            self.stats.bytes += blob.size;
        } else {
            self.stats.skipped += 1;
        }
        if let Some(cache) = &self.cache {
            // Where else the same blob was stored stays known, for mounts.
            let mut locations = cache
                .blob(diff_id, self.compressor)
                .filter(|known| known.digest == blob.digest)
                .map(|known| known.locations)
                .unwrap_or_default();
            if let Some(here) = self.store.location() {
                locations.retain(|l| *l != here);
                locations.push(here);
            }
            let entry = BlobEntry {
                digest: blob.digest.clone(),
                size: blob.size,
                locations,
            };
            cache.put_blob(diff_id, self.compressor, &entry);
            if let Some(key) = key {
                cache.put_layer(&key, diff_id, size);
            }
        }
    }

    /// Waits for the oldest deferred layer's blocks and writes its blob.
    fn write_deferred(&mut self) -> Result<()> {
        let Some(layer) = self.deferred.pop_front() else {
            return Ok(());
        };
        self.deferred_bytes -= layer.size;
        let media_type = self.media_type();
        let mut writer = self.store.start_blob()?;
        let mut hashed = Hashing::new(&mut *writer);
        layer.blocks.write_to(&mut hashed).map_err(Error::Write)?;
        let blob = Self::blob(hashed, media_type);
        let stored = writer.commit(&blob.digest, blob.size)?;
        self.stored(&blob, stored, &layer.diff_id, layer.size, layer.key);
        self.layers[layer.slot] = Some(blob);
        Ok(())
    }

    fn write_all_deferred(&mut self) -> Result<()> {
        while !self.deferred.is_empty() {
            self.write_deferred()?;
        }
        Ok(())
    }
}

impl<S: BlobStore> Destination for BlobImage<S> {
    fn begin(&mut self, _meta: &ImageMeta) -> Result<()> {
        Ok(())
    }

    fn known(&mut self, _info: &LayerInfo<'_>, key: &[u8; 32]) -> Result<Option<LayerRecord>> {
        let Some(layer) = self.cache.as_ref().and_then(|c| c.layer(key)) else {
            return Ok(None);
        };
        Ok(self
            .held(&layer.diff_id)?
            .map(|blob| self.skipped(blob, layer.diff_id, layer.size)))
    }

    fn layer(&mut self, info: &LayerInfo<'_>, source: &mut dyn LayerSource) -> Result<LayerRecord> {
        if let Some(diff_id) = info.diff_id
            && let Some(blob) = self.held(&diff_id)?
        {
            return Ok(self.skipped(blob, diff_id, info.size));
        }
        if let Some(workers) = self.workers.clone()
            && info.size <= DEFER_BUDGET
        {
            while !self.deferred.is_empty() && self.deferred_bytes + info.size > DEFER_BUDGET {
                self.write_deferred()?;
            }
            let mut blocks =
                Blocks::new(io::sink(), self.compressor, &workers).unbounded(info.size);
            let digest = source.write_to(&mut blocks, false)?;
            let (_, pending) = blocks.into_pending().map_err(Error::Write)?;
            self.deferred.push_back(Deferred {
                slot: self.layers.len(),
                diff_id: digest.diff_id,
                size: digest.size,
                key: info.key,
                blocks: pending,
            });
            self.deferred_bytes += digest.size;
            self.layers.push(None);
            // The blob is known once written: `settle` completes the record.
            return Ok(LayerRecord {
                diff_id: digest.diff_id,
                size: digest.size,
                tarsum: None,
                id: String::new(),
                blob: None,
            });
        }
        let (media_type, compressor) = (self.media_type(), self.compressor);
        let workers = self.workers.clone();
        let mut writer = self.store.start_blob()?;
        let mut hashed = Hashing::new(&mut *writer);
        let mut compressed = match &workers {
            Some(workers) => Compressed::with_workers(&mut hashed, compressor, workers),
            None => Compressed::Plain(&mut hashed),
        };
        let digest = source.write_to(&mut compressed, false)?;
        compressed.finish().map_err(Error::Write)?;
        let blob = Self::blob(hashed, media_type);
        let stored = writer.commit(&blob.digest, blob.size)?;
        self.stored(&blob, stored, &digest.diff_id, digest.size, info.key);
        self.layers.push(Some(blob.clone()));
        Ok(LayerRecord {
            diff_id: digest.diff_id,
            size: digest.size,
            tarsum: None,
            id: blob.digest.clone(),
            blob: Some(blob),
        })
    }

    fn settle(&mut self, records: &mut [LayerRecord]) -> Result<()> {
        self.write_all_deferred()?;
        for (record, blob) in records.iter_mut().zip(&self.layers) {
            if record.blob.is_none()
                && let Some(blob) = blob
            {
                record.id.clone_from(&blob.digest);
                record.blob = Some(blob.clone());
            }
        }
        Ok(())
    }

    fn config(&mut self, bytes: &[u8], digest: &str) -> Result<()> {
        self.write_all_deferred()?;
        let blob = Blob {
            digest: format!("sha256:{digest}"),
            size: bytes.len() as u64,
            media_type: self.format.config_type().to_owned(),
        };
        if self.store.put_blob(&blob.digest, bytes)? {
            self.stats.uploaded += 1;
            self.stats.bytes += blob.size;
        } else {
            self.stats.skipped += 1;
        }
        self.config = Some(blob);
        Ok(())
    }

    fn finish(&mut self, _name: &str, tag: &str) -> Result<()> {
        let config = self.config.as_ref().ok_or_else(|| Error::Invalid {
            what: "the image".to_owned(),
            reason: "finished before its config was written".to_owned(),
        })?;
        let layers: Vec<Blob> = self.layers.iter().flatten().cloned().collect();
        let bytes = oci_manifest_bytes(self.format, config, &layers);
        let manifest = Blob {
            digest: format!("sha256:{}", HEXLOWER.encode(&Sha256::digest(&bytes))),
            size: bytes.len() as u64,
            media_type: self.format.manifest_type().to_owned(),
        };
        self.store.put_manifest(&manifest, &bytes, tag)?;
        self.stats.manifest = Some(manifest);
        if let Some(cache) = &self.cache
            && cache.over_limit()
        {
            cache.trim();
        }
        Ok(())
    }
}

/// The manifest of an image of `config` and `layers`, as compact JSON.
pub fn oci_manifest_bytes(format: ManifestFormat, config: &Blob, layers: &[Blob]) -> Vec<u8> {
    let mut manifest = Map::new();
    manifest.insert("schemaVersion".into(), json!(2));
    manifest.insert("mediaType".into(), json!(format.manifest_type()));
    manifest.insert("config".into(), config.descriptor());
    manifest.insert(
        "layers".into(),
        Value::Array(layers.iter().map(Blob::descriptor).collect()),
    );
    serde_json::to_vec(&manifest).expect("a JSON value always prints")
}

/// Hashes and counts the bytes that pass through.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    fn result(self) -> ([u8; 32], u64) {
        (self.hasher.finalize().into(), self.count)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
