//! The write stage every build ends with: the base image's layers and history, then the
//! build's own layers, assembled into an image and streamed into the destination.

use serde_json::{Map, Value};

use buildimage_archive::{
    BaseImage, Destination, Image, ImageLayer, ImageMeta, ImageSummary, LayerData, LayerKind, Tag,
    assemble,
};

use crate::error::{Input, Result, ResultExt};
use crate::{Env, auto_tag};

/// The image name as it is written (lower-cased), checked with `tag` against Docker's
/// reference grammar (an automatic tag is checked as `latest`, which has its form).
pub(crate) fn image_name(name: &str, tag: Option<&str>) -> Result<String> {
    let name = name.to_lowercase();
    buildimage_archive::reference::validate(&name, tag.unwrap_or("latest"))?;
    Ok(name)
}

/// What names and describes the image, whatever its layers.
pub(crate) struct ImageHead<'a> {
    /// The image name, lower-cased.
    pub name: &'a str,
    /// The spec's tag; `None` for the automatic one.
    pub tag: Option<&'a String>,
    /// Go architecture name.
    pub architecture: &'a str,
    /// The container config, merged with the base's.
    pub config: Map<String, Value>,
    /// `created` of the config and history.
    pub created: &'a str,
    /// Modification time of the archive's own members.
    pub mtime: u64,
    /// The base image, whose layers and history come first.
    pub base: Option<&'a BaseImage>,
}

/// Writes the base's layers, then `layers` with one `history` entry each, into `dest`.
pub(crate) fn write_image(
    head: ImageHead<'_>,
    layers: Vec<ImageLayer<'_>>,
    history: Vec<Value>,
    dest: &mut dyn Destination,
    env: &Env<'_>,
) -> Result<ImageSummary> {
    let base_layers = head.base.map_or(&[][..], |b| &b.layers);
    let all_layers = base_layers
        .iter()
        .map(|l| ImageLayer {
            kind: LayerKind::Base,
            data: LayerData::Tar(l),
        })
        .chain(layers)
        .collect();
    let mut all_history = head
        .base
        .map(|b| b.history(head.created))
        .unwrap_or_default();
    all_history.extend(history);
    let auto = |config_digest: &str| auto_tag(head.name, config_digest);
    let image = Image {
        name: head.name.to_owned(),
        tag: head.tag.cloned().map_or(Tag::Auto(&auto), Tag::Fixed),
        meta: ImageMeta {
            architecture: head.architecture.to_owned(),
            config: head.config,
            created: head.created.to_owned(),
            parent: head.base.map(|b| b.config_digest.clone()),
            mtime: head.mtime,
        },
        layers: all_layers,
        history: all_history,
    };
    assemble(&image, dest, env.cancel, env.events).about(Input::Destination)
}
