//! The image model: a config and an ordered list of layers, assembled into a
//! [`Destination`] in one pass.

use std::io::{self, Write};

use data_encoding::HEXLOWER;
use serde_json::Value;
use sha2::{Digest, Sha256};

use buildimage_layer::{Cancel, LayerDigest, LayerEntries, LayerWriter, Plan};

use crate::config::{ImageConfig, RootFs};
use crate::dest::{
    Destination, DockerArchive, ImageMeta, LayerInfo, LayerKind, LayerRecord, LayerSource, Layout,
};
use crate::error::{Error, Result};
use crate::read::{BaseLayer, Pump};

/// How the tag of the image is chosen.
pub enum Tag<'a> {
    /// A tag given by the user.
    Fixed(String),
    /// A tag computed from the hex digest of the image config, once it is known.
    Auto(&'a dyn Fn(&str) -> String),
}

/// Where a layer's bytes come from.
#[derive(Clone, Copy)]
pub enum LayerData<'a> {
    /// An uncompressed tar that exists already: a base layer, copied unchanged.
    Tar(&'a BaseLayer),
    /// Planned entries, streamed by a [`LayerWriter`] as the layer is written.
    Planned(&'a dyn LayerEntries),
}

/// One layer of an image.
#[derive(Clone, Copy)]
pub struct ImageLayer<'a> {
    /// What it is.
    pub kind: LayerKind,
    /// Where its bytes come from.
    pub data: LayerData<'a>,
}

/// An image: everything needed to write it, its layers as plans or existing tars.
pub struct Image<'a> {
    /// The image name, lower-cased.
    pub name: String,
    /// The tag, or how to derive it.
    pub tag: Tag<'a>,
    /// Architecture, container config, `created`, base image ID, member time.
    pub meta: ImageMeta,
    /// The layers, lowest first.
    pub layers: Vec<ImageLayer<'a>>,
    /// The config's `history`, with one entry (not marked `empty_layer`) per layer.
    pub history: Vec<Value>,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    /// Each layer as its destination took it, lowest first.
    pub layers: Vec<LayerRecord>,
    /// Hex SHA-256 of the image config: the image ID.
    pub config_digest: String,
    /// The tag used.
    pub tag: String,
}

/// Told how the layers of an image are written, for progress displays. Every method has
/// a default that does nothing.
pub trait Observer {
    /// A layer of `size` bytes is about to be written.
    fn layer_started(&self, _info: &LayerInfo<'_>) {}
    /// `bytes` more bytes of the layer `index` were written.
    fn layer_bytes(&self, _index: usize, _bytes: u64) {}
    /// The layer `index` is complete.
    fn layer_done(&self, _index: usize, _record: &LayerRecord) {}
}

/// An [`Observer`] that is told nothing.
pub struct Quiet;

impl Observer for Quiet {}

/// Writes `image` into `dest`: each layer (planned, then streamed from its entries, or
/// copied), the config with every layer's diff id, then the reference. Each layer's files
/// are read once (a planned layer of more than 20,000 entries is listed twice, once to
/// plan and once to write); its size comes from its plan, its digests from writing it.
/// Stops with
/// [`buildimage_layer::Interrupted`] once `cancel` is set.
pub fn assemble(
    image: &Image<'_>,
    dest: &mut dyn Destination,
    cancel: &Cancel,
    observer: &dyn Observer,
) -> Result<ImageSummary> {
    dest.begin(&image.meta)?;
    let mut records = Vec::with_capacity(image.layers.len());
    for (index, layer) in image.layers.iter().enumerate() {
        cancel.check().map_err(buildimage_layer::Error::from)?;
        let name;
        let (info, mut source): (LayerInfo<'_>, Box<dyn LayerSource + '_>) = match layer.data {
            LayerData::Tar(base) => (
                LayerInfo {
                    index,
                    kind: layer.kind,
                    size: base.size,
                    plan_digest: None,
                    diff_id: Some(base.diff_id),
                    key: None,
                    name: &base.member,
                },
                Box::new(TarSource { base, cancel }),
            ),
            LayerData::Planned(entries) => {
                name = format!("layer {}", index + 1);
                let key = entries.key();
                if let Some(key) = &key {
                    let info = LayerInfo {
                        index,
                        kind: layer.kind,
                        size: 0,
                        plan_digest: None,
                        diff_id: None,
                        key: Some(*key),
                        name: &name,
                    };
                    if let Some(record) = dest.known(&info, key)? {
                        observer.layer_done(index, &record);
                        records.push(record);
                        continue;
                    }
                }
                let plan = Plan::of(entries)?;
                (
                    LayerInfo {
                        index,
                        kind: layer.kind,
                        size: plan.size(),
                        plan_digest: Some(plan.digest()),
                        diff_id: None,
                        key,
                        name: &name,
                    },
                    Box::new(PlannedSource { entries, cancel }),
                )
            }
        };
        observer.layer_started(&info);
        let mut counted = Counted {
            source: source.as_mut(),
            observer,
            index,
        };
        let record = dest.layer(&info, &mut counted)?;
        observer.layer_done(index, &record);
        records.push(record);
    }
    dest.settle(&mut records)?;

    let config = ImageConfig {
        architecture: image.meta.architecture.clone(),
        config: image.meta.config.clone(),
        created: image.meta.created.clone(),
        os: "linux",
        rootfs: RootFs {
            diff_ids: records.iter().map(LayerRecord::diff_id_string).collect(),
            kind: "layers",
        },
        history: image.history.clone(),
    };
    let bytes = config.to_bytes();
    let config_digest = HEXLOWER.encode(&Sha256::digest(&bytes));
    dest.config(&bytes, &config_digest)?;
    let tag = match &image.tag {
        Tag::Fixed(tag) => tag.clone(),
        Tag::Auto(derive) => derive(&config_digest),
    };
    dest.finish(&image.name, &tag)?;
    Ok(ImageSummary {
        layers: records,
        config_digest,
        tag,
    })
}

/// Writes `image` as a docker-archive in `buildImage`'s layout into `out`; returns the
/// writer, unflushed (see [`DockerArchive::into_inner`]), and what was written.
pub fn write_image<W: Write>(out: W, image: &Image<'_>) -> Result<(W, ImageSummary)> {
    let mut archive = DockerArchive::new(out, Layout::Legacy);
    let summary = assemble(image, &mut archive, &Cancel::new(), &Quiet)?;
    Ok((archive.into_inner()?, summary))
}

/// A base layer's tar, copied as it is.
struct TarSource<'a> {
    base: &'a BaseLayer,
    cancel: &'a Cancel,
}

impl LayerSource for TarSource<'_> {
    fn write_to(&mut self, out: &mut dyn Write, _tarsum: bool) -> Result<LayerDigest> {
        let path = &self.base.path;
        let mut file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        let size = Pump::new(Some(self.cancel)).copy(
            &mut file,
            out,
            &|e| Error::io("read", path, e),
            &Error::Write,
        )?;
        Ok(LayerDigest {
            diff_id: self.base.diff_id,
            tarsum: None,
            size,
        })
    }
}

/// A layer built from its planned entries.
struct PlannedSource<'a> {
    entries: &'a dyn LayerEntries,
    cancel: &'a Cancel,
}

impl LayerSource for PlannedSource<'_> {
    fn write_to(&mut self, out: &mut dyn Write, tarsum: bool) -> Result<LayerDigest> {
        let mut writer = if tarsum {
            LayerWriter::new(out)
        } else {
            LayerWriter::without_tarsum(out)
        };
        writer.cancel_on(self.cancel.clone());
        // nixpkgs takes the checksum before it appends a store closure.
        let mut checksummed = self.entries.checksummed().unwrap_or(usize::MAX);
        self.entries.each(&mut |entry| {
            if checksummed == 0 {
                writer.end_checksum();
            }
            checksummed = checksummed.saturating_sub(1);
            writer.append(entry)
        })?;
        Ok(writer.finish()?.1)
    }
}

/// Tells the observer about the bytes a source writes.
struct Counted<'a, 'o> {
    source: &'a mut dyn LayerSource,
    observer: &'o dyn Observer,
    index: usize,
}

impl LayerSource for Counted<'_, '_> {
    fn write_to(&mut self, out: &mut dyn Write, tarsum: bool) -> Result<LayerDigest> {
        let mut counting = Counting {
            out,
            observer: self.observer,
            index: self.index,
        };
        self.source.write_to(&mut counting, tarsum)
    }
}

struct Counting<'a, 'o> {
    out: &'a mut dyn Write,
    observer: &'o dyn Observer,
    index: usize,
}

impl Write for Counting<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.observer.layer_bytes(self.index, n as u64);
        Ok(n)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.write_all(buf)?;
        self.observer.layer_bytes(self.index, buf.len() as u64);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
