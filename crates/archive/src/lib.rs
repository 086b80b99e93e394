//! Image assembly and reading: the image model, destinations, the docker-archive format
//! (image config, layer `json`, `manifest.json`, `repositories`, the outer tar and its
//! compression), and reading base images nobody vouches for.
//!
//! An [`Image`] is a config and an ordered list of layers, each an existing tar (a base
//! layer) or planned entries (from `buildimage-layer`). [`assemble`] writes it into a
//! [`Destination`] in one pass: every layer is planned, then streamed once, its digests
//! computed while it is written. [`DockerArchive`] is the destination that `docker load`,
//! `podman load` and `skopeo copy docker-archive:` read; [`Output`] is the file (written
//! under a temporary name, renamed when complete) or stream it goes to.
//!
//! ```
//! use buildimage_archive::{
//!     Image, ImageLayer, ImageMeta, LayerData, LayerKind, Tag, merge_config, write_image,
//! };
//! use buildimage_layer::{Owner, Tree};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let entries = Tree::new().entries(&Owner::root(), 315_532_800);
//! let image = Image {
//!     name: "hello".into(),
//!     tag: Tag::Fixed("latest".into()),
//!     meta: ImageMeta {
//!         architecture: "amd64".into(),
//!         config: merge_config(None, &[]),
//!         created: "1970-01-01T00:00:01Z".into(),
//!         parent: None,
//!         mtime: 315_532_800,
//!     },
//!     layers: vec![ImageLayer { kind: LayerKind::Own, data: LayerData::Planned(&entries) }],
//!     history: vec![serde_json::json!({ "created": "1970-01-01T00:00:01Z" })],
//! };
//! let (bytes, summary) = write_image(Vec::new(), &image)?;
//! assert_eq!(bytes.len() % 10_240, 0);
//! assert_eq!(summary.tag, "latest");
//! # Ok(())
//! # }
//! ```
//!
//! # Determinism
//!
//! Every JSON document is printed with sorted user keys (`serde_json` maps are ordered) and
//! fixed layouts (jq's for the config and manifest, jshon's for the layer `json` and
//! `repositories`); every outer member is owned by root with a fixed mode and time;
//! compressed output is cut into blocks at fixed offsets, each compressed alone at a fixed
//! level (gzip members with no name or time stamp, zstd frames), which makes it
//! independent of the number of workers.

pub mod cache;
pub mod compress;
mod config;
pub mod created;
mod dest;
mod error;
mod image;
mod json;
mod outer;
pub mod output;
pub mod read;
pub mod reference;

pub use cache::LayerCache;
pub use compress::{Compressed, Compressor};
pub use config::{
    ImageConfig, LayerMeta, ManifestEntry, RootFs, manifest_bytes, merge_base_config, merge_config,
    merge_layered_config, repositories_bytes,
};
pub use dest::{
    Blob, BlobImage, BlobStats, BlobStore, BlobWriter, DEFER_BUDGET, Destination, DockerArchive,
    ImageMeta, LayerInfo, LayerKind, LayerRecord, LayerSource, Layout, ManifestFormat, OciArchive,
    OciLayout, oci_manifest_bytes,
};
pub use error::{Error, Result};
pub use image::{
    Image, ImageLayer, ImageSummary, LayerData, Observer, Quiet, Tag, assemble, write_image,
};
pub use json::{jq, jshon};
pub use outer::{Counting, OuterTar};
pub use output::Output;
pub use read::{BaseFs, BaseImage, BaseLayer, Select};
