//! The error type of the sandbox crate.

use std::io;
use std::path::PathBuf;

/// What an unprivileged run adds to a failing script's message: in a user namespace that
/// maps only the caller, every other id is unmapped.
const UNPRIVILEGED_NOTE: &str = "; buildimage runs without root, so runAsRoot can only own files as root \
     (chown to any other id fails): run buildimage as root for other owners";

/// Everything that can go wrong while extracting a layer or running `runAsRoot`.
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
    /// A layer tar could not be read.
    #[error("{path}: cannot read the layer tar")]
    Tar {
        /// The layer tar.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// A layer tar holds an entry that would land outside the extraction folder or that
    /// cannot be represented there.
    #[error("{path}: entry `{entry}`: {reason}")]
    Hostile {
        /// The layer tar.
        path: PathBuf,
        /// The entry's name, as in the tar.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// A path given in the request is not usable.
    #[error("{path}: {reason}")]
    BadRequest {
        /// The path at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The script is too long to be passed as one argument.
    #[error("The runAsRoot script is {len} bytes long; at most {max} bytes are supported")]
    ScriptTooLong {
        /// Its length.
        len: usize,
        /// The limit (Linux's `MAX_ARG_STRLEN` less the final NUL).
        max: usize,
    },
    /// The helper process could not be started.
    #[error("Cannot start the sandbox helper {path}")]
    Spawn {
        /// The binary that was to be re-executed.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The helper process ended without a report.
    #[error(
        "The sandbox helper {path} ended without a report ({status}); it must be a binary that \
         calls buildimage_sandbox::sandbox_main for `__sandbox`"
    )]
    Helper {
        /// The binary that was re-executed.
        path: PathBuf,
        /// How it ended.
        status: String,
    },
    /// Running without root needs a user namespace, and the kernel refused one.
    #[error(
        "Running runAsRoot without root needs a user namespace, and the kernel refused it ({message}); \
         run buildimage as root or allow unprivileged user namespaces"
    )]
    UserNamespace {
        /// What failed.
        message: String,
    },
    /// Preparing the sandbox failed.
    #[error("Cannot {step} for runAsRoot: {message}")]
    Setup {
        /// The step that failed (`mount the overlay`, …).
        step: String,
        /// What the operating system said.
        message: String,
    },
    /// The image has no `/bin/sh` and no shell was named.
    #[error("The image has no /bin/sh; set runAsRootShell")]
    NoShell,
    /// The named shell is neither in the image nor in the store.
    #[error("Key `runAsRootShell`: {shell} is neither in the image nor in the store")]
    ShellNotFound {
        /// The shell as named.
        shell: String,
    },
    /// The script ended with a non-zero exit status.
    #[error(
        "The runAsRoot script failed with exit status {status}{}",
        if *unprivileged { UNPRIVILEGED_NOTE } else { "" }
    )]
    ScriptFailed {
        /// Its exit status.
        status: i32,
        /// Whether it ran in a user namespace as a non-root caller.
        unprivileged: bool,
    },
    /// The script was killed by a signal.
    #[error("The runAsRoot script was killed by signal {signal}")]
    ScriptKilled {
        /// The signal number.
        signal: i32,
    },
    /// The run was stopped (SIGINT, SIGTERM) before the script ended.
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

/// The result type of the sandbox crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
