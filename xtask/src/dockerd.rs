//! A private `dockerd` for the end-to-end tests, as in
//! docs/formats.md §12.2: its own data root, exec root, PID file
//! and socket under a short temporary directory, no bridge and no iptables, so that it
//! neither touches nor conflicts with a Docker already on the host.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use signal_hook::consts::{SIGKILL, SIGTERM};

use crate::process;

/// Debian's daemon. Called by path: `PATH` may hold other Docker installations.
const DOCKERD: &str = "/usr/sbin/dockerd";
/// Debian's client, which matches the daemon; another client may come first in `PATH`.
const DOCKER: &str = "/usr/bin/docker";
/// How long the daemon may take to answer (it typically needs 0.3–1.3 s).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the daemon may take to stop after `SIGTERM` before it gets `SIGKILL`.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How many lines of the daemon's log to show when it fails.
const LOG_TAIL: usize = 30;

/// A running private daemon. [`PrivateDockerd::stop`] (or dropping it) removes its
/// containers, stops it, unmounts what it left and deletes its directory.
pub struct PrivateDockerd {
    /// The temporary directory holding everything the daemon writes; canonical.
    dir: PathBuf,
    /// The daemon, until it has been stopped and reaped.
    child: Option<Child>,
    /// Whether [`PrivateDockerd::stop`] has run (successfully or not).
    stopped: bool,
}

impl PrivateDockerd {
    /// Starts the daemon and waits until `docker version` answers.
    pub fn start() -> Result<Self> {
        for (path, what) in [(DOCKERD, "dockerd"), (DOCKER, "the docker client")] {
            if !Path::new(path).exists() {
                bail!(
                    "{path} ({what}) not found: install it with apt-get install docker.io \
                     (cargo xtask ci does this)"
                );
            }
        }
        // Short on purpose: a Unix socket path has at most 107 bytes. The tests' support
        // module recognises `/tmp/bi-ci.` as a daemon of ours whose images it may delete.
        let dir = tempfile::Builder::new()
            .prefix("bi-ci.")
            .rand_bytes(6)
            .tempdir_in("/tmp")
            .context("Cannot create a temporary directory in /tmp")?
            // Deleted by `stop`, only once nothing is mounted below it any more: a
            // recursive delete must never descend into a mount.
            .keep();
        let dir = fs_err::canonicalize(&dir)?;
        let mut daemon = PrivateDockerd {
            dir,
            child: None,
            stopped: false,
        };
        // From here on, an error drops `daemon`, which cleans up.
        daemon.spawn()?;
        daemon.wait_ready()?;
        Ok(daemon)
    }

    /// The daemon's address for `docker -H`, `unix:///tmp/bi-ci.XXXXXX/docker.sock`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("dockerd.log")
    }

    fn spawn(&mut self) -> Result<()> {
        let log = File::create(self.log_path())
            .with_context(|| format!("Cannot create {}", self.log_path().display()))?;
        let log_err = log
            .try_clone()
            .context("Cannot duplicate the log file handle")?;
        let mut cmd = Command::new(DOCKERD);
        cmd.arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("--pidfile")
            .arg(self.dir.join("dockerd.pid"))
            .arg("-H")
            .arg(self.host())
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group: the terminal's Ctrl-C must not reach the daemon, which
            // xtask stops itself, in order, after the tests.
            .process_group(0);
        eprintln!("$ {}", process::display(&cmd));
        let child = cmd
            .spawn()
            .with_context(|| format!("Cannot start {DOCKERD}"))?;
        self.child = Some(child);
        Ok(())
    }

    fn wait_ready(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            if docker(&self.host())
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
            {
                let child = self.child.as_ref().expect("spawned");
                eprintln!(
                    "dockerd ready in {:.2} s (pid {}, {})",
                    start.elapsed().as_secs_f64(),
                    child.id(),
                    self.host()
                );
                return Ok(());
            }
            let child = self.child.as_mut().expect("spawned");
            if let Some(status) = child.try_wait().context("Cannot wait for dockerd")? {
                self.child = None;
                self.print_log_tail();
                bail!("dockerd exited early: {}", process::describe(status));
            }
            process::check_interrupted()?;
            if start.elapsed() > READY_TIMEOUT {
                self.print_log_tail();
                bail!("dockerd did not answer within {READY_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the daemon and deletes its directory, leaving nothing running or mounted.
    ///
    /// Every stage runs even when an earlier one fails; the first failure is returned.
    /// The directory is kept (and named in the error) if something is still mounted
    /// below it.
    pub fn stop(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let mut result = self.stop_daemon();
        let leftovers = self.kill_leftovers();
        let unmounted = self.unmount_all();
        for stage in [leftovers, unmounted] {
            if result.is_ok() {
                result = stage;
            }
        }
        if let Err(err) = unmounted_check(&self.dir) {
            return Err(err.context(format!("Keeping {} for inspection", self.dir.display())));
        }
        let removed = fs_err::remove_dir_all(&self.dir).map_err(anyhow::Error::from);
        if result.is_ok() {
            result = removed;
        }
        if result.is_ok() {
            eprintln!("dockerd stopped; {} removed", self.dir.display());
        }
        result
    }

    /// Removes containers, then `SIGTERM`, up to [`STOP_TIMEOUT`], then `SIGKILL`.
    fn stop_daemon(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(status) = child.try_wait().context("Cannot wait for dockerd")? {
            self.print_log_tail();
            bail!(
                "dockerd had exited by itself: {}",
                process::describe(status)
            );
        }
        if let Err(err) = self.remove_containers() {
            eprintln!("warning: cannot remove containers: {err:#}");
        }
        // dockerd also stops the containerd it started when it gets SIGTERM.
        process::send_signal(process::Target::Process(child.id()), SIGTERM);
        let start = Instant::now();
        while start.elapsed() < STOP_TIMEOUT {
            if let Some(status) = child.try_wait().context("Cannot wait for dockerd")? {
                eprintln!(
                    "dockerd exited after {:.2} s ({})",
                    start.elapsed().as_secs_f64(),
                    process::describe(status)
                );
                return Ok(());
            }
            thread::sleep(Duration::from_millis(100));
        }
        eprintln!("dockerd still running after {STOP_TIMEOUT:?}: sending SIGKILL");
        process::kill_and_reap(&mut child);
        self.print_log_tail();
        bail!("dockerd did not stop within {STOP_TIMEOUT:?} and was killed");
    }

    fn remove_containers(&self) -> Result<()> {
        let timeout = Duration::from_secs(30);
        let listed = process::output_with_timeout(
            docker(&self.host()).args(["ps", "-aq", "--no-trunc"]),
            timeout,
        )?;
        if !listed.status.success() {
            bail!(
                "docker ps failed: {}",
                String::from_utf8_lossy(&listed.stderr).trim()
            );
        }
        let ids = String::from_utf8_lossy(&listed.stdout).into_owned();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            return Ok(());
        }
        eprintln!("removing {} leftover container(s)", ids.len());
        let removed = process::output_with_timeout(
            docker(&self.host()).args(["rm", "-f"]).args(&ids),
            timeout,
        )?;
        if !removed.status.success() {
            bail!(
                "docker rm -f failed: {}",
                String::from_utf8_lossy(&removed.stderr).trim()
            );
        }
        Ok(())
    }

    /// `SIGKILL`s any process still naming our directory on its command line: a
    /// containerd or shim that outlived a killed daemon. The directory's name is random
    /// and unique to this run, so every match is a descendant of ours.
    fn kill_leftovers(&self) -> Result<()> {
        let leftovers = processes_mentioning(&self.dir)?;
        if leftovers.is_empty() {
            return Ok(());
        }
        for (pid, cmdline) in &leftovers {
            eprintln!("killing leftover process {pid}: {cmdline}");
            process::send_signal(process::Target::Process(*pid), SIGKILL);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if leftovers.iter().all(|(pid, _)| !process::exists(*pid)) {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "warning: {} process(es) outlived dockerd and were killed",
            leftovers.len()
        );
        Ok(())
    }

    /// Lazily unmounts everything mounted below our directory, deepest first.
    fn unmount_all(&self) -> Result<()> {
        let mut failed = Vec::new();
        // Stacked mounts on one point need one `umount` each; a few rounds cover them.
        for _ in 0..3 {
            let mut points = mounts_below(&self.dir)?;
            if points.is_empty() {
                break;
            }
            // Reverse byte-wise order puts every mount before the mounts it contains.
            points.sort();
            points.reverse();
            for point in points {
                let status = Command::new("umount")
                    .arg("-l")
                    .arg(&point)
                    .stdin(Stdio::null())
                    .status();
                match status {
                    Ok(status) if status.success() => {}
                    Ok(status) => failed.push(format!(
                        "umount -l {}: {}",
                        point.display(),
                        process::describe(status)
                    )),
                    Err(err) => failed.push(format!("umount -l {}: {err}", point.display())),
                }
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            bail!("{}", failed.join("; "))
        }
    }

    fn print_log_tail(&self) {
        let log = match fs_err::read(self.log_path()) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(err) => {
                eprintln!("(no dockerd log: {err})");
                return;
            }
        };
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
        eprintln!("---- last {} lines of the dockerd log ----", tail.len());
        for line in tail {
            eprintln!("{line}");
        }
        eprintln!("---- end of the dockerd log ----");
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            eprintln!("error: cleaning up the private dockerd: {err:#}");
        }
    }
}

/// Debian's `docker` client, talking to `host` only.
pub(crate) fn docker(host: &str) -> Command {
    let mut cmd = Command::new(DOCKER);
    // `-H` alone decides: no context or host from the caller's environment.
    cmd.env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .arg("-H")
        .arg(host)
        .stdin(Stdio::null());
    cmd
}

/// Fails if anything is still mounted below `dir`.
fn unmounted_check(dir: &Path) -> Result<()> {
    let left = mounts_below(dir)?;
    if left.is_empty() {
        return Ok(());
    }
    let left: Vec<String> = left.iter().map(|p| p.display().to_string()).collect();
    bail!("Still mounted: {}", left.join(", "))
}

/// Mount points at or below `dir`, from `/proc/self/mounts`.
fn mounts_below(dir: &Path) -> Result<Vec<PathBuf>> {
    let mounts = fs_err::read_to_string("/proc/self/mounts")?;
    Ok(mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(1))
        .map(|field| PathBuf::from(unescape_mount_field(field)))
        .filter(|point| point.starts_with(dir))
        .collect())
}

/// Undoes the kernel's octal escapes in `/proc/self/mounts` (`\040` for a space, and so
/// on for tab, newline and backslash).
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Processes (other than this one) whose command line contains `dir`.
fn processes_mentioning(dir: &Path) -> Result<Vec<(u32, String)>> {
    let needle = dir.as_os_str().as_encoded_bytes();
    let own = std::process::id();
    let mut found = Vec::new();
    for entry in fs_err::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        // A process may exit between listing and reading: skip it.
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.windows(needle.len()).any(|window| window == needle) {
            let shown = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push((pid, shown.trim_end().to_owned()));
        }
    }
    found.sort_unstable();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_mount_field_decodes_octal_escapes() {
        assert_eq!(unescape_mount_field(r"/tmp/a\040b\134c"), r"/tmp/a b\c");
        assert_eq!(unescape_mount_field("/plain"), "/plain");
        assert_eq!(unescape_mount_field(r"/trailing\04"), r"/trailing\04");
    }

    #[test]
    fn mounts_below_matches_whole_components_only() {
        // `/proc` is mounted at `/proc`, never below `/pro`.
        assert!(mounts_below(Path::new("/pro")).unwrap().is_empty());
        assert!(
            mounts_below(Path::new("/proc"))
                .unwrap()
                .contains(&PathBuf::from("/proc"))
        );
    }
}
