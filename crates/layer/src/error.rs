//! The error type of the layer crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while planning, writing or reading a layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file system object failed.
    #[error("Cannot {action} {}", path.display())]
    Io {
        /// What was being done: `read`, `list`, `create`, …
        action: &'static str,
        /// The object concerned.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Writing the tar stream itself failed.
    #[error("Writing the layer failed")]
    Write(#[source] io::Error),
    /// A source item of the layer is not a directory.
    #[error("{}: expected a directory, found {found}", path.display())]
    NotADirectory {
        /// The offending source item.
        path: PathBuf,
        /// What it is instead.
        found: &'static str,
    },
    /// A source file changed size between planning and packing.
    #[error(
        "{}: file changed size while it was being packed (planned {planned} bytes, found {found})",
        path.display()
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
    #[error("{}: symlink leads to a directory loop", path.display())]
    Loop {
        /// The symlink that closes the loop.
        path: PathBuf,
    },
    /// A directory cannot be merged into a symlink that points outside the layer (rsync
    /// `-K` would write through it, into the store).
    #[error(
        "{}: cannot merge a directory into the symlink `{name}` -> {target}, whose target is \
         not inside the layer",
        path.display()
    )]
    DirlinkOutside {
        /// The source directory that was to be merged.
        path: PathBuf,
        /// The layer path of the symlink.
        name: String,
        /// The symlink's target.
        target: String,
    },
    /// The work was interrupted (see [`crate::Cancel`]).
    #[error(transparent)]
    Interrupted(#[from] crate::Interrupted),
}

impl Error {
    /// Wraps an I/O error with what was being done and the path it concerns.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// The result type of the layer crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
