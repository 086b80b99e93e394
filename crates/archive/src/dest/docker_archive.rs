//! The docker-archive: the tar that `docker load`, `podman load` and `skopeo copy
//! docker-archive:` read, in the two layouts nixpkgs writes.

use std::collections::BTreeSet;
use std::io::Write;

use data_encoding::HEXLOWER;
use serde_json::{Map, Value};

use super::{Destination, ImageMeta, LayerInfo, LayerRecord, LayerSource};
use crate::config::{LayerMeta, ManifestEntry, manifest_bytes, repositories_bytes};
use crate::error::{Error, Result};
use crate::outer::OuterTar;

/// How a docker-archive is laid out: the two layouts nixpkgs writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `buildImage`'s: a folder per layer with `VERSION`, `layer.tar` and a legacy `json`
    /// (the new layer's with its tarsum), and a `repositories` file.
    Legacy,
    /// `streamLayeredImage`'s: `<id>/layer.tar` per layer, no `VERSION`, `json` or
    /// `repositories`.
    Layered,
}

/// A docker-archive written as a stream: `docker load`, `podman load` and
/// `skopeo copy docker-archive:` read it.
///
/// Members come in the order the parts arrive, so that no layer is staged: `./`
/// (legacy), each layer's folder with its `layer.tar` (a base layer listed twice is
/// stored once), the config `<sha256>.json`, `manifest.json`, and `repositories`
/// (legacy). A layer built here is named by a digest of its plan, since its diff id is
/// known only once it is written.
pub struct DockerArchive<W: Write> {
    out: Option<W>,
    tar: Option<OuterTar<W>>,
    layout: Layout,
    meta: Option<ImageMeta>,
    /// `<id>/layer.tar` of every layer so far, in image order.
    layers: Vec<String>,
    /// Layer folders written so far.
    written: BTreeSet<String>,
    /// The folder of the layer below the next one (legacy `json` `parent`).
    below: Option<String>,
    /// The config member's name, once written.
    config: Option<String>,
}

impl<W: Write> DockerArchive<W> {
    /// An archive in `layout` to be written into `out`.
    pub fn new(out: W, layout: Layout) -> Self {
        DockerArchive {
            out: Some(out),
            tar: None,
            layout,
            meta: None,
            layers: Vec::new(),
            written: BTreeSet::new(),
            below: None,
            config: None,
        }
    }

    /// Ends the archive and returns the writer, unflushed: flushing a compressor in the
    /// middle of its stream would change its bytes, so the caller finishes it.
    pub fn into_inner(self) -> Result<W> {
        match (self.tar, self.out) {
            (Some(tar), _) => tar.finish(),
            (None, Some(out)) => Ok(out),
            (None, None) => unreachable!("the writer is either waiting or in the tar"),
        }
    }

    fn tar(&mut self) -> Result<&mut OuterTar<W>> {
        self.tar.as_mut().ok_or_else(not_begun)
    }

    /// The folder of a layer: its diff id when known (base layers), else the legacy layer
    /// ID of its plan ([`LayerMeta::layer_id`]).
    fn folder(&self, info: &LayerInfo<'_>) -> Result<String> {
        if let Some(diff_id) = info.diff_id {
            return Ok(HEXLOWER.encode(&diff_id));
        }
        let plan = info.plan_digest.ok_or_else(|| Error::Invalid {
            what: info.name.to_owned(),
            reason: "a layer needs a diff id or a plan digest".to_owned(),
        })?;
        Ok(self.legacy_meta()?.layer_id(&plan))
    }

    fn legacy_meta(&self) -> Result<LayerMeta<'_>> {
        let meta = self.meta.as_ref().ok_or_else(not_begun)?;
        Ok(LayerMeta {
            architecture: &meta.architecture,
            config: &meta.config,
            created: &meta.created,
            parent: meta.parent.as_deref(),
        })
    }
}

fn not_begun() -> Error {
    Error::Invalid {
        what: "the image".to_owned(),
        reason: "written before it was begun".to_owned(),
    }
}

impl<W: Write> Destination for DockerArchive<W> {
    fn begin(&mut self, meta: &ImageMeta) -> Result<()> {
        let out = self.out.take().ok_or_else(|| Error::Invalid {
            what: "the image".to_owned(),
            reason: "begun twice".to_owned(),
        })?;
        let mut tar = OuterTar::new(out, meta.mtime);
        if self.layout == Layout::Legacy {
            tar.dir("./")?;
        }
        self.tar = Some(tar);
        self.meta = Some(meta.clone());
        Ok(())
    }

    fn layer(&mut self, info: &LayerInfo<'_>, source: &mut dyn LayerSource) -> Result<LayerRecord> {
        let id = self.folder(info)?;
        let path = format!("{id}/layer.tar");
        self.layers.push(path.clone());
        let below = self.below.replace(id.clone());
        if let Some(diff_id) = info.diff_id
            && !self.written.insert(id.clone())
        {
            // Stored already: a base that lists a layer twice lists one file twice.
            return Ok(LayerRecord {
                diff_id,
                size: info.size,
                tarsum: None,
                id,
                blob: None,
            });
        }
        let legacy = self.layout == Layout::Legacy;
        if legacy {
            self.tar()?.dir(&format!("{id}/"))?;
            self.tar()?.file(&format!("{id}/VERSION"), b"1.0")?;
        }
        // Only the legacy `json` of a layer built here carries a tarsum.
        let tarsum = legacy && info.diff_id.is_none();
        let digest = self
            .tar()?
            .stream(&path, info.size, |out| source.write_to(out, tarsum))?;
        if legacy {
            let json = if let Some(tarsum) = &digest.tarsum {
                self.legacy_meta()?.to_bytes(tarsum, &id, digest.size)
            } else {
                let mut json = Map::new();
                json.insert("id".into(), Value::String(id.clone()));
                if let Some(parent) = below {
                    json.insert("parent".into(), Value::String(parent));
                }
                crate::json::jshon(&json)
            };
            self.tar()?.file(&format!("{id}/json"), &json)?;
        }
        Ok(LayerRecord {
            diff_id: digest.diff_id,
            size: digest.size,
            tarsum: digest.tarsum,
            id,
            blob: None,
        })
    }

    fn config(&mut self, bytes: &[u8], digest: &str) -> Result<()> {
        let name = format!("{digest}.json");
        self.tar()?.file(&name, bytes)?;
        self.config = Some(name);
        Ok(())
    }

    fn finish(&mut self, name: &str, tag: &str) -> Result<()> {
        let config = self.config.clone().ok_or_else(|| Error::Invalid {
            what: "the image".to_owned(),
            reason: "finished before its config was written".to_owned(),
        })?;
        let entry = ManifestEntry {
            repo_tags: vec![format!("{name}:{tag}")],
            layers: self.layers.clone(),
            config,
        };
        self.tar()?.file("manifest.json", &manifest_bytes(&entry))?;
        if self.layout == Layout::Legacy {
            let top = self.below.clone().unwrap_or_default();
            self.tar()?
                .file("repositories", &repositories_bytes(name, tag, &top))?;
        }
        Ok(())
    }
}
