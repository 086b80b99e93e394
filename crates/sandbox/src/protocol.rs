//! What the parent, the helper (`__sandbox`) and the init process (`__sandbox init`) tell
//! each other: requests as JSON on standard input, one [`Report`] as JSON on standard
//! output.

use std::io::{Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::fakeroot::Record;
use crate::{FakeRoot, RootRun};

/// What the helper is asked to run.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Job {
    /// `runAsRoot` over an overlay of the image; with the range of host ids the caller
    /// shifted the folders into (the caller is root), which the script must run with.
    RunAsRoot(RootRun, Option<crate::idmap::IdRange>),
    /// `fakeRootCommands` in a folder, recording owners and devices.
    FakeRoot(FakeRoot),
}

/// From the parent to the helper.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HelperRequest {
    /// What to run.
    pub job: Job,
    /// The scratch folder the parent made inside `run.work`: `root` (the mount point),
    /// `ovl` (overlay's work dir), `upper` and `lower/N` (symlinks, which keep the overlay
    /// options short and free of characters overlayfs would need escaped).
    pub scratch: PathBuf,
    /// The parent's process id: the helper gives up when it is no longer its parent.
    pub parent: i32,
}

/// From the helper to the init process, which is PID 1 of the new PID namespace.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct InitRequest {
    /// The merged tree, as the host sees it.
    pub root: PathBuf,
    /// The script.
    pub script: String,
    /// The shell named by the caller.
    pub shell: Option<String>,
    /// The host store folder to bind at `/nix/store`.
    pub store: Option<PathBuf>,
    /// The script's name (its `$0`).
    pub name: String,
    /// Record owners and devices as a fake root (supervise the script rather than become
    /// it).
    pub fake_root: bool,
    /// Start the script in a user namespace of its own with this range of host ids (the
    /// caller is root, and so is this process).
    pub id_range: Option<crate::idmap::IdRange>,
}

/// How a run ended, or why it could not start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Report {
    /// The script exited with this status.
    Exited(i32),
    /// The script was killed by this signal.
    Signaled(i32),
    /// A fake root's script ended (with an exit status or a signal) and its calls
    /// recorded these owners and devices.
    Recorded {
        /// The exit status, if it exited.
        exited: Option<i32>,
        /// The signal, if one killed it.
        signal: Option<i32>,
        /// What the calls recorded.
        records: Vec<Record>,
    },
    /// A SIGINT or SIGTERM stopped the run.
    Interrupted,
    /// The image has no `/bin/sh` and no shell was named.
    NoShell,
    /// The named shell does not exist in the sandbox.
    ShellNotFound(String),
    /// The kernel refused the user namespace.
    UserNamespace(String),
    /// A step of the set-up failed.
    Failed {
        /// What was being done.
        step: String,
        /// What the operating system said.
        message: String,
    },
}

impl Report {
    pub(crate) fn failed(step: &str, message: impl std::fmt::Display) -> Self {
        Report::Failed {
            step: step.to_owned(),
            message: message.to_string(),
        }
    }
}

/// Reads a JSON request from standard input.
pub(crate) fn read_request<T: for<'de> Deserialize<'de>>() -> Result<T, Report> {
    let mut text = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut text)
        .map_err(|e| Report::failed("read the sandbox request", e))?;
    serde_json::from_slice(&text).map_err(|e| Report::failed("read the sandbox request", e))
}

/// Writes a report; a reader that went away is not an error worth telling anyone.
pub(crate) fn write_report(out: &mut impl Write, report: &Report) {
    if serde_json::to_writer(&mut *out, report).is_ok() {
        out.flush().ok();
    }
}
