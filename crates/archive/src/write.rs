//! Assembling a docker-archive around one new layer.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use buildimage_layer::{Entry, LayerDigest, LayerWriter, Plan, hex};

use crate::config::{
    ImageConfig, LayerMeta, ManifestEntry, RootFs, manifest_bytes, repositories_bytes,
};
use crate::error::Result;
use crate::outer::OuterTar;

/// The planned entries of a layer, produced in order as often as the writer needs them:
/// once to plan (size and digest), once to write. A large store closure can so be listed
/// path by path instead of being held in memory whole.
pub trait LayerEntries {
    /// Calls `f` with every entry, in order.
    fn each(&self, f: &mut dyn FnMut(&Entry) -> Result<()>) -> Result<()>;

    /// How many leading entries the layer's `checksum` (its tarsum) covers: all of them
    /// (`None`) unless the layer has a part that nixpkgs appends after taking it, the
    /// store closure.
    fn checksummed(&self) -> Option<usize> {
        None
    }
}

impl LayerEntries for [Entry] {
    fn each(&self, f: &mut dyn FnMut(&Entry) -> Result<()>) -> Result<()> {
        self.iter().try_for_each(f)
    }
}

impl LayerEntries for Vec<Entry> {
    fn each(&self, f: &mut dyn FnMut(&Entry) -> Result<()>) -> Result<()> {
        self.iter().try_for_each(f)
    }
}

/// How the tag of the image is chosen.
pub enum Tag<'a> {
    /// A tag given by the user.
    Fixed(String),
    /// A tag computed from the hex digest of the image config, once it is known.
    Auto(&'a dyn Fn(&str) -> String),
}

/// Everything about the image except its layer contents.
pub struct ImageSpec<'a> {
    /// Image name, already lower-cased.
    pub name: String,
    /// The tag, or how to derive it.
    pub tag: Tag<'a>,
    /// The container config, `Env` merged (see [`crate::merge_config`]).
    pub config: Map<String, Value>,
    /// Go architecture name.
    pub architecture: String,
    /// `created` of the config and of the new history entry.
    pub created: String,
    /// Modification time of the outer tar's members.
    pub mtime: u64,
    /// The base image whose layers go below the new one (`fromImage`).
    pub base: Option<&'a crate::read::BaseImage>,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    /// The new layer's digests.
    pub layer: LayerDigest,
    /// The new layer's ID (its folder in the archive).
    pub layer_id: String,
    /// Hex SHA-256 of the image config: the image ID.
    pub config_digest: String,
    /// The tag used.
    pub tag: String,
}

/// Writes a docker-archive holding one layer, made of the entries `layer` produces, into
/// `out`.
///
/// The members come in this order: `./`, the layer folder with `VERSION` and `layer.tar`
/// (streamed straight from the sources, its size known from the plan), the layer's `json`,
/// the config, `manifest.json`, `repositories`. Everything that depends on the layer's
/// digest comes after it, so the layer is read once and never staged.
pub fn write_image<W: Write>(
    out: W,
    spec: &ImageSpec<'_>,
    layer: &dyn LayerEntries,
    cancel: Option<&Arc<AtomicBool>>,
) -> Result<(W, ImageSummary)> {
    let mut tar = OuterTar::new(out, spec.mtime);
    tar.dir("./")?;

    // Base layers first, unchanged and uncompressed, each once even when the base lists
    // it twice, in folders named by their diff id.
    let mut layer_paths = Vec::new();
    let mut diff_ids = Vec::new();
    let mut written_dirs = std::collections::BTreeSet::new();
    let mut parent_dir: Option<String> = None;
    for layer in spec.base.map_or(&[][..], |b| b.layers.as_slice()) {
        let dir = hex(&layer.diff_id);
        if written_dirs.insert(dir.clone()) {
            write_base_layer(&mut tar, layer, &dir, parent_dir.as_deref(), cancel)?;
        }
        layer_paths.push(format!("{dir}/layer.tar"));
        diff_ids.push(layer.diff_id_string());
        parent_dir = Some(dir);
    }

    let meta = LayerMeta {
        architecture: &spec.architecture,
        config: &spec.config,
        created: &spec.created,
        parent: spec.base.map(|b| b.config_digest.as_str()),
    };
    // First pass over the entries: the size the layer will have and its plan digest.
    let mut plan = Plan::default();
    layer.each(&mut |entry| {
        plan.add(entry);
        Ok(())
    })?;
    let layer_id = meta.layer_id(&plan.digest());
    tar.dir(&format!("{layer_id}/"))?;
    tar.file(&format!("{layer_id}/VERSION"), b"1.0")?;
    let layer_path = format!("{layer_id}/layer.tar");
    let digest = tar.stream(&layer_path, plan.size(), |out| {
        let mut writer = LayerWriter::new(out);
        if let Some(flag) = cancel {
            writer.cancel_on(flag.clone());
        }
        let mut checksummed = layer.checksummed().unwrap_or(usize::MAX);
        layer.each(&mut |entry| {
            if checksummed == 0 {
                writer.end_checksum();
            }
            checksummed = checksummed.saturating_sub(1);
            Ok(writer.append(entry)?)
        })?;
        Ok(writer.finish()?.1)
    })?;
    tar.file(
        &format!("{layer_id}/json"),
        &meta.to_bytes(&digest.tarsum, &layer_id, digest.size),
    )?;

    let config = ImageConfig {
        architecture: spec.architecture.clone(),
        config: spec.config.clone(),
        created: spec.created.clone(),
        os: "linux",
        rootfs: RootFs {
            diff_ids: {
                diff_ids.push(digest.diff_id_string());
                diff_ids
            },
            kind: "layers",
        },
        history: {
            let mut history = spec
                .base
                .map(|b| b.history(&spec.created))
                .unwrap_or_default();
            history.push(json!({ "created": spec.created }));
            history
        },
    };
    let config_bytes = config.to_bytes();
    let config_digest = hex(&Sha256::digest(&config_bytes));
    let config_path = format!("{config_digest}.json");
    tar.file(&config_path, &config_bytes)?;

    let tag = match &spec.tag {
        Tag::Fixed(t) => t.clone(),
        Tag::Auto(f) => f(&config_digest),
    };
    layer_paths.push(layer_path);
    let manifest = ManifestEntry {
        repo_tags: vec![format!("{}:{}", spec.name, tag)],
        layers: layer_paths,
        config: config_path,
    };
    tar.file("manifest.json", &manifest_bytes(&manifest))?;
    tar.file(
        "repositories",
        &repositories_bytes(&spec.name, &tag, &layer_id),
    )?;
    let out = tar.finish()?;
    Ok((
        out,
        ImageSummary {
            layer: digest,
            layer_id,
            config_digest,
            tag,
        },
    ))
}

/// Copies one base layer into the archive as a legacy layer folder: `VERSION`, `json` (its
/// id and parent) and the uncompressed `layer.tar`.
fn write_base_layer<W: Write>(
    tar: &mut OuterTar<W>,
    layer: &crate::read::BaseLayer,
    dir: &str,
    parent: Option<&str>,
    cancel: Option<&Arc<AtomicBool>>,
) -> Result<()> {
    tar.dir(&format!("{dir}/"))?;
    tar.file(&format!("{dir}/VERSION"), b"1.0")?;
    tar.stream(&format!("{dir}/layer.tar"), layer.size, |out| {
        let io_err = |source| crate::Error::Io {
            path: layer.path.clone(),
            source,
        };
        let mut file = fs_err::File::open(&layer.path).map_err(io_err)?;
        let mut pump = crate::read::Pump::new(cancel.map(|c| &**c));
        pump.copy(&mut file, out, &io_err, &crate::Error::Write)?;
        Ok(())
    })?;
    let mut json = Map::new();
    json.insert("id".into(), Value::String(dir.to_owned()));
    if let Some(parent) = parent {
        json.insert("parent".into(), Value::String(parent.to_owned()));
    }
    tar.file(&format!("{dir}/json"), &crate::json::jshon(&json))
}
