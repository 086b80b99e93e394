//! Where an image goes: the [`Destination`] trait, and one module per kind of destination
//! that implements it: the docker-archive, and images stored as blobs ([`BlobImage`]) in
//! an OCI layout ([`OciLayout`]) or any other [`BlobStore`] (a registry).
//!
//! [`crate::assemble`] hands a destination the image's layers one at a time, lowest first,
//! then the config, then the reference (`name:tag`). A destination receives each layer as a
//! stream of known size and learns its digests as it is written; it may decline to read a
//! layer it already holds (a registry that has the blob, a layout that stores it), which is
//! what makes repeated pushes cheap; a layer whose bytes a key names (a store layer) may
//! be answered from what the destination knows by [`Destination::known`] before it is even
//! planned. Whole-archive compression is a property of the docker-archive
//! ([`crate::Compressed`] around its writer); per-layer compression one of [`BlobImage`].

mod blobs;
mod docker_archive;
mod oci;

use std::io::Write;

use data_encoding::HEXLOWER;
use serde_json::{Map, Value};

use buildimage_layer::LayerDigest;

use crate::error::Result;

pub use blobs::{
    Blob, BlobImage, BlobStats, BlobStore, BlobWriter, DEFER_BUDGET, ManifestFormat,
    oci_manifest_bytes,
};
pub use docker_archive::{DockerArchive, Layout};
pub use oci::{OciArchive, OciLayout};

/// What a destination is told of the image before its layers.
#[derive(Debug, Clone)]
pub struct ImageMeta {
    /// Go architecture name.
    pub architecture: String,
    /// The container config (`Cmd`, `Env`, …).
    pub config: Map<String, Value>,
    /// `created` of the config.
    pub created: String,
    /// Hex SHA-256 of the base image's config (its image ID), if there is a base.
    pub parent: Option<String>,
    /// Modification time of the members a destination writes around the layers.
    pub mtime: u64,
}

/// What a layer is, as far as a destination cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// A layer of the base image, copied unchanged.
    Base,
    /// A layer of store paths (layered images).
    Store,
    /// The layer built from the image's own contents: `buildImage`'s one layer, or the
    /// customisation layer of a layered image.
    Own,
}

impl LayerKind {
    /// The name `--json` reports: `base`, `store` or `customisation`.
    pub fn as_str(self) -> &'static str {
        match self {
            LayerKind::Base => "base",
            LayerKind::Store => "store",
            LayerKind::Own => "customisation",
        }
    }
}

/// A layer about to be written.
#[derive(Debug, Clone, Copy)]
pub struct LayerInfo<'a> {
    /// Its position in the image, lowest first.
    pub index: usize,
    /// What it is.
    pub kind: LayerKind,
    /// The size of its uncompressed tar in bytes, known before it is written.
    pub size: u64,
    /// The digest of its plan (see `buildimage_layer::Plan`), for a layer built here.
    pub plan_digest: Option<[u8; 32]>,
    /// Its diff id, when known before it is written (base layers).
    pub diff_id: Option<[u8; 32]>,
    /// The key that names its bytes before they are read (a store layer), for a cache.
    pub key: Option<[u8; 32]>,
    /// How messages name it: a base archive's member, `layer 3`, …
    pub name: &'a str,
}

/// The bytes of a layer, streamed on demand.
pub trait LayerSource {
    /// Writes the layer's uncompressed tar (exactly [`LayerInfo::size`] bytes) into `out`
    /// and returns its digests; the tarsum only when `tarsum` is set (it costs a second
    /// hash over every byte).
    fn write_to(&mut self, out: &mut dyn Write, tarsum: bool) -> Result<LayerDigest>;
}

/// What a destination did with a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRecord {
    /// SHA-256 of the uncompressed tar.
    pub diff_id: [u8; 32],
    /// Its size in bytes.
    pub size: u64,
    /// moby's tarsum, if the destination asked for it.
    pub tarsum: Option<String>,
    /// The layer's name at the destination (a docker-archive's layer folder, a blob's
    /// digest).
    pub id: String,
    /// The compressed blob, for destinations that compress layers one by one.
    pub blob: Option<Blob>,
}

impl LayerRecord {
    /// The diff id as image configs write it: `sha256:<hex>`.
    pub fn diff_id_string(&self) -> String {
        format!("sha256:{}", HEXLOWER.encode(&self.diff_id))
    }
}

/// Where an image's parts go, in the order [`crate::assemble`] produces them: what the
/// image is, every layer, lowest first (a layer listed twice comes twice), the config, then
/// the reference.
pub trait Destination {
    /// Starts the image `meta` describes.
    fn begin(&mut self, meta: &ImageMeta) -> Result<()>;

    /// Answers a layer whose bytes `key` names (see [`LayerInfo::key`]) without reading
    /// it, when the destination holds it already; `None` means it must be written with
    /// [`Destination::layer`]. `info.size` is not known yet (0).
    fn known(&mut self, _info: &LayerInfo<'_>, _key: &[u8; 32]) -> Result<Option<LayerRecord>> {
        Ok(None)
    }

    /// Takes one layer: streams it from `source` (or, when the destination already holds
    /// a layer of this diff id, need not).
    fn layer(&mut self, info: &LayerInfo<'_>, source: &mut dyn LayerSource) -> Result<LayerRecord>;

    /// Completes what [`Destination::layer`] returned before the layer was all written
    /// (a blob still being compressed while the next layers are read): called once after
    /// the last layer with every record, lowest first. Does nothing by default.
    fn settle(&mut self, _records: &mut [LayerRecord]) -> Result<()> {
        Ok(())
    }

    /// Takes the image config, whose hex SHA-256 is `digest` (the image ID).
    fn config(&mut self, bytes: &[u8], digest: &str) -> Result<()>;

    /// Names the image `name:tag` and completes it.
    fn finish(&mut self, name: &str, tag: &str) -> Result<()>;
}
