//! The error type of the sandbox crate.

use std::io;
use std::path::PathBuf;

/// What a failing script's message adds where setuid and setgid bits cannot be set.
const SETUID_FILTERED_NOTE: &str = "; setuid and setgid bits cannot be set here: Nix's build \
     sandbox refuses them to every builder (`filter-syscalls = false` in nix.conf allows them)";

/// Everything that can go wrong while extracting a layer or running a script.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file system object failed.
    #[error("Cannot {action} {}", path.display())]
    Io {
        /// What was being done: `create`, `remove`, …
        action: &'static str,
        /// The object concerned.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A layer tar could not be read.
    #[error("Cannot read the layer tar {}", path.display())]
    Tar {
        /// The layer tar.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// A layer tar holds an entry that would land outside the extraction folder or that
    /// cannot be represented there.
    #[error("{}: entry `{entry}`: {reason}", path.display())]
    Hostile {
        /// The layer tar.
        path: PathBuf,
        /// The entry's name, as in the tar.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// A path given in the request is not usable.
    #[error("{}: {reason}", path.display())]
    BadRequest {
        /// The path at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The script is too long to be passed as one argument.
    #[error("The script is {len} bytes long; at most {max} bytes are supported")]
    ScriptTooLong {
        /// Its length.
        len: usize,
        /// The limit (Linux's `MAX_ARG_STRLEN` less the final NUL).
        max: usize,
    },
    /// A process could not be started: the sandbox helper, or the shell.
    #[error("Cannot start {}", path.display())]
    Spawn {
        /// The program that was to be started.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The helper process ended without a report.
    #[error(
        "The sandbox helper {} ended without a report ({status}); it must be a binary that \
         calls buildimage_sandbox::sandbox_main for `__sandbox`",
        path.display()
    )]
    Helper {
        /// The binary that was re-executed.
        path: PathBuf,
        /// How it ended.
        status: String,
    },
    /// Running without root needs a user namespace, and the kernel refused one.
    #[error(
        "Running the script without root needs a user namespace, and the kernel refused it \
         ({message}); run as root or allow unprivileged user namespaces"
    )]
    UserNamespace {
        /// What failed.
        message: String,
    },
    /// Preparing the sandbox failed.
    #[error("Cannot {step} for the script: {message}")]
    Setup {
        /// The step that failed (`mount the overlay`, …).
        step: String,
        /// What the operating system said.
        message: String,
    },
    /// The image has no `/bin/sh` and no shell was named.
    #[error("The image has no /bin/sh to run the script with")]
    NoShell,
    /// The named shell is neither in the image nor in the store.
    #[error("The shell {shell} is neither in the image nor in the store")]
    ShellNotFound {
        /// The shell as named.
        shell: String,
    },
    /// The script ended with a non-zero exit status.
    #[error(
        "The script failed with exit status {status} (its error output is above){}",
        if *setuid_filtered { SETUID_FILTERED_NOTE } else { "" }
    )]
    ScriptFailed {
        /// Its exit status.
        status: i32,
        /// Whether this process may not set setuid or setgid bits at all (Nix's build
        /// sandbox refuses them), which may be why.
        setuid_filtered: bool,
    },
    /// The script was killed by a signal.
    #[error("The script was killed by signal {signal}")]
    ScriptKilled {
        /// The signal number.
        signal: i32,
    },
    /// The script ran longer than its time limit and was stopped.
    #[error(
        "The script ran for longer than {} (--script-timeout) and was stopped, with everything it started",
        humantime(*after)
    )]
    TimedOut {
        /// The limit.
        after: std::time::Duration,
    },
    /// The script filled its file system down to the reserve and was stopped.
    #[error(
        "The script was stopped: the file system of {} had less than {} MiB free, the \
         space a script must leave (free more space, or set TMPDIR to a larger file system)",
        path.display(),
        reserve.div_ceil(1 << 20)
    )]
    DiskReserve {
        /// A folder on that file system.
        path: PathBuf,
        /// The reserve, in bytes.
        reserve: u64,
    },
    /// The run was stopped (SIGINT, SIGTERM) before the script ended.
    #[error(transparent)]
    Interrupted(#[from] buildimage_layer::Interrupted),
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

impl From<buildimage_layer::Error> for Error {
    fn from(error: buildimage_layer::Error) -> Self {
        match error {
            buildimage_layer::Error::Io {
                action,
                path,
                source,
            } => Error::Io {
                action,
                path,
                source,
            },
            buildimage_layer::Error::Interrupted(i) => Error::Interrupted(i),
            other => Error::Setup {
                step: "prepare the folders".to_owned(),
                message: other.to_string(),
            },
        }
    }
}

/// The result type of the sandbox crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A script that ended with `status`, noting when setuid and setgid bits cannot be set
    /// here at all: Nix's build sandbox makes every `chmod` that sets them fail with EPERM
    /// (a seccomp filter that ours cannot override), so a script that sets one fails
    /// there, and only there.
    pub(crate) fn script_failed(status: i32) -> Error {
        Error::ScriptFailed {
            status,
            setuid_filtered: setuid_filtered(),
        }
    }
}

/// Whether a `chmod` that sets the setuid bit fails with EPERM on a file of our own: tried
/// on an unnamed temporary file in the temporary folder.
fn setuid_filtered() -> bool {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::{Mode, fchmod};
    let Ok(file) = open(
        &std::env::temp_dir(),
        OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    ) else {
        return false;
    };
    fchmod(&file, Mode::from_bits_truncate(0o4700)) == Err(nix::errno::Errno::EPERM)
}

/// `90s`, `15m`, `2h`, `1h30m`: how a limit is shown.
fn humantime(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (value, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if value > 0 {
            use std::fmt::Write as _;
            let _ = write!(out, "{value}{unit}");
        }
    }
    if out.is_empty() {
        out = format!("{}ms", d.as_millis());
    }
    out
}
