//! Running the user's shell snippets (`extraCommands`) in a staged layer root.

use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::signals::Signals;

/// Runs `script` with `sh -e` in `dir`, as the invoking user.
///
/// The script's standard output goes to our standard error (standard output may carry the
/// image), its standard error passes through. The environment is the caller's with the
/// build's fixed settings on top: `TZ=UTC`, `LC_ALL=C`, and the umask 022 that `main` set.
/// A signal stops the script.
pub fn run(key: &str, script: &str, dir: &Path, signals: &Signals) -> Result<()> {
    let stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("Cannot duplicate standard error")?;
    let mut child = Command::new("sh")
        .arg("-e")
        .arg("-c")
        .arg(script)
        .arg(format!("buildimage-{key}"))
        .current_dir(dir)
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        // Its own process group, so that whatever the script starts in the background can
        // be stopped with it.
        .process_group(0)
        .spawn()
        .with_context(|| format!("Cannot start sh to run `{key}`"))?;
    let group = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let status = loop {
        if let Some(status) = child.try_wait().context("Waiting for the script failed")? {
            break status;
        }
        if signals.received().is_some() {
            let _ = killpg(group, Signal::SIGKILL);
            let _ = child.wait();
            signals.check()?;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Background processes the script left must not outlive the build (or write into a
    // staging folder about to be removed). ESRCH, when there are none, is fine.
    let _ = killpg(group, Signal::SIGKILL);
    if !status.success() {
        match status.code() {
            Some(code) => {
                bail!("`{key}` failed with exit status {code} (its error output is above)")
            }
            None => bail!("`{key}` was killed by a signal ({status})"),
        }
    }
    Ok(())
}
