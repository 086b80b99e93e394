//! The error type of the nixdb crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while reading a store, serialising a NAR or writing a database.
///
/// Every variant names the object it concerns (a host path, a store path or a piece of input);
/// the underlying cause, when there is one, is the [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file system object failed.
    #[error("Cannot {action} {}", path.display())]
    Io {
        /// What was being done, as a verb phrase ("read", "list the directory", ...).
        action: &'static str,
        /// The object that could not be read or written.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Writing a NAR to the caller's writer failed.
    #[error("Cannot write the NAR of {}", path.display())]
    NarWrite {
        /// The object being serialised.
        path: PathBuf,
        /// What the writer said.
        #[source]
        source: io::Error,
    },
    /// A file-system object is neither a regular file, a directory nor a symlink.
    #[error("{} has an unsupported type", path.display())]
    UnsupportedType {
        /// The FIFO, socket or device file.
        path: PathBuf,
    },
    /// A regular file changed size while it was being serialised.
    #[error("{} changed size while it was being read (expected {expected} bytes)", path.display())]
    FileChanged {
        /// The file that changed.
        path: PathBuf,
        /// The size `lstat` reported before reading.
        expected: u64,
    },
    /// A string is not a valid store path.
    #[error("Invalid store path '{path}': {reason}")]
    InvalidStorePath {
        /// The rejected string.
        path: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A string is not valid nix32.
    #[error("Invalid nix32 string '{input}': {reason}")]
    InvalidNix32 {
        /// The rejected string.
        input: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A string is not a SHA-256 hash in a form that Nix accepts.
    #[error("Invalid hash '{hash}': {reason}")]
    InvalidHash {
        /// The rejected string.
        hash: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A reference-scanner candidate is not a 32-character nix32 hash part.
    #[error("Invalid hash part '{hash_part}': expected 32 nix32 characters")]
    InvalidHashPart {
        /// The rejected candidate.
        hash_part: String,
    },
    /// A `registration`, exportReferencesGraph or `store-paths` file is malformed.
    #[error("{}, line {line}: {reason}", file.display())]
    Registration {
        /// The file (or `<input>` for text that came from memory).
        file: PathBuf,
        /// The 1-based line number of the problem.
        line: usize,
        /// What is wrong there.
        reason: String,
    },
    /// Reading from or writing to a SQLite database failed.
    #[error("SQLite error on {}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// A row of a store database holds something Nix would reject.
    #[error("{}: bad row for {store_path}", db.display())]
    DbRow {
        /// The database file.
        db: PathBuf,
        /// The `path` column of the row.
        store_path: String,
        /// What is wrong with the row.
        #[source]
        source: Box<Error>,
    },
    /// A store path is needed but no metadata source knows it, and scanning is off.
    #[error("Store path {path} is not valid in {}", source_name.display())]
    NotValid {
        /// The unknown store path.
        path: String,
        /// The database or registration that was asked.
        source_name: PathBuf,
    },
    /// A path info lacks the NAR hash or size needed to register it.
    #[error("No NAR hash or size known for {path}")]
    MissingNarInfo {
        /// The incomplete path.
        path: String,
    },
    /// A NAR size beyond what the database's 64-bit signed integers hold.
    #[error("NAR size {size} of {path} is too large for the Nix database")]
    NarSizeTooLarge {
        /// The store path.
        path: String,
        /// Its NAR size.
        size: u64,
    },
    /// The same store path appears twice in a list of path infos.
    #[error("Store path {path} is listed twice")]
    DuplicatePath {
        /// The repeated path.
        path: String,
    },
    /// A path refers to a path that is not part of the same set.
    #[error("{path} refers to {reference}, which is not in the closure")]
    DanglingReference {
        /// The referrer.
        path: String,
        /// The missing reference.
        reference: String,
    },
    /// The references form a cycle other than a self-reference, which Nix refuses.
    #[error("Reference cycle through {path}")]
    ReferenceCycle {
        /// A path on the cycle.
        path: String,
    },
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

    /// Wraps a SQLite error with the database file it concerns.
    pub fn sqlite(path: impl Into<PathBuf>, source: rusqlite::Error) -> Self {
        Error::Sqlite {
            path: path.into(),
            source,
        }
    }
}

/// The result type of the nixdb crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    fn assert_send_sync<T: Send + Sync>() {}

    /// Errors cross rayon threads, and a `Store` is shared by them.
    #[test]
    fn shared_types_are_send_and_sync() {
        assert_send_sync::<super::Error>();
        assert_send_sync::<crate::Store>();
        assert_send_sync::<crate::Scanner>();
    }

    #[test]
    fn messages_name_the_path_and_keep_the_cause_apart() {
        let err = super::Error::io(
            "read",
            "/x/y",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(err.to_string(), "Cannot read /x/y");
        assert!(std::error::Error::source(&err).is_some());
    }
}
