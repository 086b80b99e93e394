//! A private Docker daemon for the end-to-end tests (docs/formats.md §12.2 and §12.3).
//!
//! Docker checks hold a process-wide lock (see [`docker`]), so in one test binary they
//! run one at a time against a daemon whose image store starts empty; archives loaded
//! by different tests can then never lend each other layers.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;

use serde_json::Value;

use crate::fs::{check, display, require_file, require_tool, run_ok};

/// The variable `cargo xtask ci` and `cargo xtask dockerd` set to the private daemon's
/// address, `unix:///tmp/bi-ci.XXXXXX/docker.sock`.
pub const DOCKER_HOST_VAR: &str = "BUILDIMAGE_TEST_DOCKER_HOST";

/// Debian's Docker client, called by path: another client may come first in `PATH` and
/// not match the daemon.
const DOCKER: &str = "/usr/bin/docker";

/// How the address of a private daemon started by `cargo xtask` begins (xtask's
/// `PrivateDockerd` puts its socket in `/tmp/bi-ci.XXXXXX/`).
const PRIVATE_DAEMON_PREFIX: &str = "unix:///tmp/bi-ci.";

/// Serialises Docker checks within a test binary (see [`docker`]).
static DOCKER_LOCK: Mutex<()> = Mutex::new(());

/// A connection to the private test daemon, holding the Docker lock while it lives.
pub struct Docker {
    host: String,
    _lock: MutexGuard<'static, ()>,
}

/// Connects to the private daemon named by `BUILDIMAGE_TEST_DOCKER_HOST`.
///
/// Panics if the variable is unset or the client is missing. Waits for other tests of
/// this binary that hold a [`Docker`], then makes sure the daemon's image store is
/// empty: `docker load` skips layers the daemon already has, which would hide a broken
/// archive (docs/formats.md §12.3). Images an earlier check left are removed from a
/// private daemon that `cargo xtask` started; any other daemon with images is refused.
pub fn docker() -> Docker {
    let host = docker_host(std::env::var_os(DOCKER_HOST_VAR).as_deref());
    require_file(DOCKER, "docker.io");
    // A test that panicked while holding the lock poisons it; its guards have cleaned up.
    let lock = DOCKER_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let docker = Docker { host, _lock: lock };
    docker.remove_all_images();
    docker
}

/// The `name:tag` that `docker load` printed, for `what` it loaded.
fn loaded_name(output: &std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("Loaded image: "))
        .unwrap_or_else(|| {
            panic!("docker load of {what} named no image (untagged archive?):\n{stdout}")
        })
        .trim()
        .to_owned()
}

/// The daemon address from the variable's value, or a panic saying how to get one.
pub fn docker_host(value: Option<&OsStr>) -> String {
    match value.and_then(OsStr::to_str) {
        Some(host) if !host.is_empty() => host.to_owned(),
        _ => panic!(
            "{DOCKER_HOST_VAR} is not set: tests that need Docker run under `cargo xtask ci`, \
             or `cargo xtask dockerd -- cargo test ...`"
        ),
    }
}

impl Docker {
    /// The daemon's address, as `DOCKER_HOST` takes it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// A `docker -H HOST` command; the caller adds the rest.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(DOCKER);
        // `-H` alone decides: no context or host from the caller's environment.
        cmd.env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .arg("-H")
            .arg(&self.host)
            .stdin(Stdio::null());
        cmd
    }

    /// Loads an archive and returns the loaded `name:tag`.
    ///
    /// Docker 20.10 reads `.tar` and `.tar.gz` itself; a `.tar.zst` is piped through
    /// `zstd -dc` because Docker cannot read zstd.
    pub fn load(&self, archive: &Path) -> String {
        let output = if has_extension(archive, "zst") {
            require_tool("zstd", "zstd");
            let mut zstd = Command::new("zstd")
                .arg("-dc")
                .arg(archive)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|err| panic!("cannot start zstd: {err}"));
            let zstd_out = zstd.stdout.take().expect("piped stdout");
            let zstd_err = read_on_thread(zstd.stderr.take().expect("piped stderr"));
            let mut load = self.command();
            load.arg("load").stdin(zstd_out);
            let output = load
                .output()
                .unwrap_or_else(|err| panic!("cannot start {}: {err}", display(&load)));
            let status = zstd.wait().expect("wait for zstd");
            let stderr = zstd_err.join().expect("zstd stderr reader");
            assert!(
                status.success(),
                "zstd -dc {} failed ({status}):\n{}",
                archive.display(),
                String::from_utf8_lossy(&stderr)
            );
            check(&load, output)
        } else {
            run_ok(self.command().arg("load").arg("-i").arg(archive))
        };
        loaded_name(&output, &archive.display().to_string())
    }

    /// Loads the archive a pipe (another process's standard output, say) carries, and
    /// returns a guard that removes the image when dropped.
    pub fn load_stream(&self, input: impl Into<Stdio>) -> ImageGuard<'_> {
        let mut load = self.command();
        load.arg("load").stdin(input);
        let output = load
            .output()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", display(&load)));
        let name = loaded_name(&check(&load, output), "the stream");
        self.guard(name)
    }

    /// Loads an archive like [`Docker::load`] and returns a guard that removes the image
    /// when dropped, also when the test panics.
    pub fn load_guarded(&self, archive: &Path) -> ImageGuard<'_> {
        let name = self.load(archive);
        self.guard(name)
    }

    /// A guard that removes `image` when dropped.
    pub fn guard(&self, image: impl Into<String>) -> ImageGuard<'_> {
        ImageGuard {
            docker: self,
            name: image.into(),
        }
    }

    /// Runs `args` in `image` with `--rm --pull never --network none`. Does not check the
    /// exit status: see [`RunOutput::assert_success`].
    pub fn run(&self, image: &str, args: &[&str]) -> RunOutput {
        self.run_with(image, &[], args)
    }

    /// Like [`Docker::run`], with extra `docker run` flags such as `["--user", "1000:1000"]`.
    pub fn run_with(&self, image: &str, flags: &[&str], args: &[&str]) -> RunOutput {
        let mut cmd = self.command();
        // Without `--pull never` a missing image makes Docker try the Docker Hub.
        cmd.args(["run", "--rm", "--pull", "never", "--network", "none"])
            .args(flags)
            .arg(image)
            .args(args);
        let output = cmd
            .output()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", display(&cmd)));
        RunOutput {
            command: display(&cmd),
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// `docker image inspect --format TEMPLATE IMAGE`, without the trailing newline.
    /// For example `{{json .Config}}`, `{{.Architecture}}`, `{{json .RootFS.Layers}}`.
    pub fn inspect(&self, image: &str, go_template: &str) -> String {
        let output = run_ok(
            self.command()
                .args(["image", "inspect", "--format", go_template])
                .arg(image),
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        stdout.strip_suffix('\n').unwrap_or(&stdout).to_owned()
    }

    /// Whether the daemon has `image`.
    pub fn has_image(&self, image: &str) -> bool {
        self.command()
            .args(["image", "inspect", "--format", "{{.Id}}"])
            .arg(image)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|err| panic!("cannot start {DOCKER}: {err}"))
            .success()
    }

    /// `docker rmi IMAGE`. Do this after every check: it also drops the image's layers, so
    /// the next `docker load` must extract its own (docs/formats.md §12.3).
    pub fn rmi(&self, image: &str) {
        run_ok(self.command().arg("rmi").arg(image));
    }

    /// `docker images --format '{{.Repository}}:{{.Tag}}'`, one line each.
    pub fn images(&self) -> Vec<String> {
        let output =
            run_ok(
                self.command()
                    .args(["images", "--format", "{{.Repository}}:{{.Tag}}"]),
            );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Removes every image, for a clean start, but only from a private daemon that
    /// `cargo xtask` started: a daemon anybody else runs has images nobody may delete.
    fn remove_all_images(&self) {
        let output = run_ok(self.command().args([
            "images",
            "-a",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Repository}}:{{.Tag}}",
        ]));
        let listed = String::from_utf8_lossy(&output.stdout);
        let mut ids: Vec<&str> = listed
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        if ids.is_empty() {
            return;
        }
        assert!(
            self.host.starts_with(PRIVATE_DAEMON_PREFIX),
            "the Docker daemon at {} already has images, and is not a private one that \
             `cargo xtask` started, so the tests will not delete them. They need an empty \
             image store (docker load skips layers the daemon has, which hides broken \
             archives): run them under `cargo xtask dockerd -- cargo test ...`.\n{listed}",
            self.host
        );
        ids.sort_unstable();
        ids.dedup();
        eprintln!(
            "note: removing {} image(s) left on the test daemon:\n{listed}",
            ids.len()
        );
        run_ok(self.command().args(["rmi", "-f"]).args(&ids));
    }
}

/// A loaded image that is removed (`docker rmi`) when the guard is dropped.
pub struct ImageGuard<'a> {
    docker: &'a Docker,
    name: String,
}

impl ImageGuard<'_> {
    /// The image's `name:tag`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ImageGuard<'_> {
    fn drop(&mut self) {
        let output = self.docker.command().arg("rmi").arg(&self.name).output();
        let failure = match output {
            Ok(output) if output.status.success() => return,
            Ok(output) => format!(
                "{} ({})",
                String::from_utf8_lossy(&output.stderr).trim(),
                output.status
            ),
            Err(err) => err.to_string(),
        };
        // Panicking while already unwinding would abort and hide the first panic.
        if thread::panicking() {
            eprintln!("docker rmi {} failed: {failure}", self.name);
        } else {
            panic!("docker rmi {} failed: {failure}", self.name);
        }
    }
}

/// What `docker run` printed, and how it exited.
#[derive(Debug)]
pub struct RunOutput {
    /// The command line, for messages.
    pub command: String,
    /// The exit status of `docker run` (the container's, unless Docker itself failed).
    pub status: ExitStatus,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl RunOutput {
    /// Panics unless the command succeeded; returns its standard output.
    pub fn assert_success(&self) -> &str {
        assert!(
            self.status.success(),
            "{} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.status,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }
}

/// `docker image inspect --format '{{json FIELD}}' IMAGE`, parsed.
pub fn inspect_json(docker: &Docker, image: &str, field: &str) -> Value {
    let text = docker.inspect(image, &format!("{{{{json {field}}}}}"));
    serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("docker inspect {field} printed no JSON ({err}): {text}"))
}

fn read_on_thread(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _: io::Result<usize> = pipe.read_to_end(&mut bytes);
        bytes
    })
}

pub(crate) fn has_extension(path: &Path, extension: &str) -> bool {
    path.extension().is_some_and(|ext| ext == extension)
}
