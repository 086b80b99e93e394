//! Running a shell snippet as the invoking user in a staged layer root (`extraCommands`).

use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use buildimage_layer::Cancel;

use crate::error::{Error, Result};

/// How often the caller looks whether the script ended or a stop was asked for.
const POLL: Duration = Duration::from_millis(20);

/// The host's shell for scripts: `sh` from `PATH`, else `/bin/sh` (a Nix build's `PATH`
/// names nothing, and its sandbox has only `/bin/sh`).
pub(crate) fn host_shell() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("sh"))
        .find(|sh| sh.is_file())
        .unwrap_or_else(|| PathBuf::from("/bin/sh"))
}

/// Runs `script` with `sh -e -c` in `dir`, as the invoking user, with `name` as its `$0`
/// (so the shell's own messages say which script failed).
///
/// The script's standard output goes to our standard error (standard output may carry the
/// image), its standard error passes through, its standard input is `/dev/null`. The
/// environment is the caller's with `TZ=UTC` and `LC_ALL=C` on top; the umask is the
/// caller's. The script runs in a process group of its own, which is killed when it ends
/// (nothing it started in the background outlives it) and when `cancel` is set (then
/// [`Error::Interrupted`] is returned).
pub fn run_script(name: &str, script: &str, dir: &Path, cancel: &Cancel) -> Result<()> {
    let stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Error::io("duplicate", "standard error", e))?;
    let shell = host_shell();
    let mut child = Command::new(&shell)
        .arg("-e")
        .arg("-c")
        .arg(script)
        .arg(name)
        .current_dir(dir)
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Spawn {
            path: shell.clone(),
            source: e,
        })?;
    let group = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let wait_err = |e| Error::io("wait for", "the script", e);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(wait_err)? {
            break status;
        }
        if cancel.is_cancelled() {
            let _ = killpg(group, Signal::SIGKILL);
            let _ = child.wait();
            return Err(buildimage_layer::Interrupted.into());
        }
        std::thread::sleep(POLL);
    };
    // Background processes the script left must not outlive the build (or write into a
    // staging folder about to be removed). ESRCH, when there are none, is fine.
    let _ = killpg(group, Signal::SIGKILL);
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(status), _) => Err(Error::script_failed(status)),
        (None, signal) => Err(Error::ScriptKilled {
            signal: signal.unwrap_or(0),
        }),
    }
}
