//! Reading the base image (`fromImage`) once, into a private scratch folder.

use std::path::PathBuf;

use buildimage_archive::{BaseFs, BaseImage, Select};

use crate::Env;
use crate::error::{Error, Input, Result};

/// Which base image to build on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseRequest {
    /// The archive: a docker-archive in any of the forms `buildimage_archive::read` reads.
    pub path: PathBuf,
    /// With `tag`, the image of a multi-image archive whose `RepoTags` holds `name:tag`.
    pub name: Option<String>,
    /// See `name`.
    pub tag: Option<String>,
    /// The most bytes decompressing the archive and its layers may yield; `None` for
    /// `buildimage_archive::read::default_max_expansion` of the archive's size.
    pub max_size: Option<u64>,
}

/// The read-base stage: the base image `request` names, if any.
pub fn read_stage(request: Option<&BaseRequest>, env: &Env<'_>) -> Result<Option<BaseImage>> {
    env.events.stage(crate::Stage::ReadBase);
    request.map(|request| read(request, env)).transpose()
}

/// Reads the base image `request` names: config, layers in a scratch folder.
fn read(request: &BaseRequest, env: &Env<'_>) -> Result<BaseImage> {
    let select = Select {
        name: request.name.as_deref(),
        tag: request.tag.as_deref(),
    };
    // The reader's errors name the archive, or the member of it, at fault.
    let (image, notes) = BaseImage::open_with(
        &request.path,
        select,
        &env.tmp,
        Some(env.cancel),
        request.max_size,
    )
    .map_err(|e| {
        // Over the limit, the remedy is the limit, so that is what the error is about.
        let input = if matches!(e, buildimage_archive::Error::BaseTooLarge { .. }) {
            Input::MaxBaseSize
        } else {
            Input::FromImage
        };
        Error::from(e).about(input)
    })?;
    for note in notes {
        env.events.warning(Some(Input::FromImage), &note);
    }
    Ok(image)
}

/// The file system the base's layers make, whiteouts applied: what a layer on top need
/// not hold again. Reads every header of every base layer.
pub fn filesystem(image: &BaseImage) -> Result<BaseFs> {
    image.filesystem().map_err(|e| {
        Error::from(e)
            .context("Cannot read the base image's layers")
            .about(Input::FromImage)
    })
}
