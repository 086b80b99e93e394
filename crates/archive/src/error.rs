//! The error type of the archive crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while assembling or reading an image archive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Writing the archive stream failed.
    #[error("Writing the image failed")]
    Write(#[source] io::Error),
    /// Packing the layer failed.
    #[error(transparent)]
    Layer(#[from] buildimage_layer::Error),
    /// The layer stream did not have the size its plan promised.
    #[error("Layer {name} was planned as {planned} bytes but {written} were written")]
    LayerSize {
        /// Archive member name of the layer.
        name: String,
        /// Size from the plan.
        planned: u64,
        /// Size actually written.
        written: u64,
    },
}

/// The result type of the archive crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
