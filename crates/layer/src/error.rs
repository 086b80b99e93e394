//! The error type of the layer crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while planning or writing a layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file system object failed.
    #[error("{}", path.display())]
    Io {
        /// The object that could not be read or written.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Writing the tar stream itself failed.
    #[error("Writing the layer failed")]
    Write(#[source] io::Error),
    /// A source item of the layer is not a directory.
    #[error("{path}: expected a directory, found {found}")]
    NotADirectory {
        /// The offending source item.
        path: PathBuf,
        /// What it is instead.
        found: &'static str,
    },
    /// A source file changed size between planning and packing.
    #[error(
        "{path}: file changed size while it was being packed (planned {planned} bytes, found {found})"
    )]
    Changed {
        /// The file that changed.
        path: PathBuf,
        /// The size recorded in the plan.
        planned: u64,
        /// The size found while reading.
        found: u64,
    },
    /// Following directory symlinks (rsync `-k`) leads back into a directory being copied.
    #[error("{path}: symlink leads to a directory loop")]
    Loop {
        /// The symlink that closes the loop.
        path: PathBuf,
    },
    /// A directory cannot be merged into a symlink that points outside the layer.
    #[error(
        "{path}: cannot merge a directory into the symlink `{name}` -> {target}, whose target is not inside the layer (keepContentsDirlinks)"
    )]
    DirlinkOutside {
        /// The source directory that was to be merged.
        path: PathBuf,
        /// The layer path of the symlink.
        name: String,
        /// The symlink's target.
        target: String,
    },
    /// The build was interrupted (SIGINT, SIGTERM).
    #[error("Interrupted")]
    Interrupted,
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The result type of the layer crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
