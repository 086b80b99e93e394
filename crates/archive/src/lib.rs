//! docker-archive assembly: the image config, the layer `json`, `manifest.json`,
//! `repositories`, the outer tar and its compression.
//!
//! [`write_image`] takes the planned entries of a layer (from `buildimage-layer`) and the
//! image's metadata, and streams a complete archive that `docker load`, `podman load` and
//! `skopeo copy docker-archive:` accept into any writer.
//!
//! ```
//! use buildimage_archive::{ImageSpec, Tag, merge_config, write_image};
//! use buildimage_layer::{Owner, Tree};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let entries = Tree::new().entries(&Owner::root(), 315_532_800);
//! let spec = ImageSpec {
//!     name: "hello".into(),
//!     tag: Tag::Fixed("latest".into()),
//!     config: merge_config(None, &[]),
//!     architecture: "amd64".into(),
//!     created: "1970-01-01T00:00:01Z".into(),
//!     mtime: 315_532_800,
//!     base: None,
//! };
//! let (bytes, summary) = write_image(Vec::new(), &spec, &entries, None)?;
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
//! `repositories`); every outer member is owned by root with a fixed mode and time; gzip
//! output has no name or time stamp, and zstd output uses a fixed level with at least one
//! worker, which makes it independent of the number of workers.

pub mod compress;
mod config;
mod error;
mod json;
mod outer;
pub mod read;
mod write;

pub use compress::{Compressed, Compressor};
pub use config::{
    ImageConfig, LayerMeta, ManifestEntry, RootFs, manifest_bytes, merge_base_config, merge_config,
    repositories_bytes,
};
pub use error::{Error, Result};
pub use json::{jq, jshon};
pub use outer::{Counting, OuterTar};
pub use read::{BaseFs, BaseImage, BaseLayer, Select};
pub use write::{ImageSpec, ImageSummary, LayerEntries, Tag, write_image};
