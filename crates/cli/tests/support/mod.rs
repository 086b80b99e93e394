//! Helpers for end-to-end tests that hand archives to real consumers: a private Docker
//! daemon, and skopeo with umoci (see `shared/reference/validators.md`).
//!
//! Every helper panics with a message that says what failed and how to fix it: these
//! are tests, and a missing tool must fail loudly rather than pass quietly.
//!
//! Docker checks hold a process-wide lock (see [`docker`]), so in one test binary they
//! run one at a time against a daemon whose image store starts empty; archives loaded
//! by different tests can then never lend each other layers.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;

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
/// archive (validators.md, section 4). Images an earlier check left are removed from a
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
    /// The daemon address, for `docker -H`.
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
        let stdout = String::from_utf8_lossy(&output.stdout);
        stdout
            .lines()
            .find_map(|line| line.strip_prefix("Loaded image: "))
            .unwrap_or_else(|| {
                panic!(
                    "docker load of {} named no image (untagged archive?):\n{stdout}",
                    archive.display()
                )
            })
            .trim()
            .to_owned()
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
    /// the next `docker load` must extract its own (validators.md, section 4).
    pub fn rmi(&self, image: &str) {
        run_ok(self.command().arg("rmi").arg(image));
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

/// An image unpacked by `skopeo copy` and `umoci unpack`; its directory is deleted on drop.
pub struct Unpacked {
    dir: tempfile::TempDir,
}

/// Copies a docker-archive to an OCI layout with `skopeo copy` (which checks every layer
/// against its `diff_id`) and unpacks that with `umoci unpack` (which checks blob digests
/// and `diff_id`s and, as root, keeps owners, modes and hard links).
///
/// A `.tar.gz` is gunzipped to a plain tar first: skopeo 1.9 cannot read a whole-archive
/// gzip. `.tar` and `.tar.zst` go to skopeo as they are.
pub fn unpack_oci(archive: &Path) -> Unpacked {
    require_tool("skopeo", "skopeo");
    require_tool("umoci", "umoci");
    assert!(
        is_root(),
        "umoci unpack must run as root to keep owners and modes (cargo xtask ci runs as root)"
    );
    let dir = tempfile::Builder::new()
        .prefix("bi-oci.")
        .tempdir()
        .unwrap_or_else(|err| panic!("cannot create a temporary directory: {err}"));
    let source = if has_extension(archive, "gz") || has_extension(archive, "tgz") {
        let plain = dir.path().join("plain.tar");
        let file = File::create(&plain)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", plain.display()));
        run_ok(Command::new("gzip").arg("-dc").arg(archive).stdout(file));
        plain
    } else {
        archive.to_path_buf()
    };
    let layout = dir.path().join("oci");
    let bundle = dir.path().join("bundle");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "-q"])
            .arg(prefixed("docker-archive:", &source))
            .arg(format!("oci:{}:t", layout.display())),
    );
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:t", layout.display()))
            .arg(&bundle),
    );
    Unpacked { dir }
}

impl Unpacked {
    /// The unpacked root file system.
    pub fn rootfs(&self) -> PathBuf {
        self.bundle().join("rootfs")
    }

    /// The bundle directory umoci wrote (`rootfs/` and `config.json`).
    pub fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    /// The OCI image layout skopeo wrote; the image is tagged `t`.
    pub fn oci_layout(&self) -> PathBuf {
        self.dir.path().join("oci")
    }

    /// umoci's OCI runtime `config.json`: `process.user`, `process.cwd`, `process.env`,
    /// `process.args`, a tmpfs mount per volume, labels as `annotations`.
    pub fn config_json(&self) -> serde_json::Value {
        let path = self.bundle().join("config.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("{} is not JSON: {err}", path.display()))
    }

    /// The root file system as `find . -printf '%M %U:%G %n %p %l\n' | sort -k4` would
    /// list it; see [`listing`].
    pub fn listing(&self) -> Vec<String> {
        listing(&self.rootfs())
    }
}

/// Lists a tree like `cd ROOT && find . -printf '%M %U:%G %n %p %l\n' | LC_ALL=C sort -k4`:
/// mode as `ls` shows it, numeric owner, hard-link count, path from `.`, and for a
/// symlink its target. Example lines:
///
/// ```text
/// drwxr-xr-x 0:0 2 ./bin
/// -rwxr-xr-x 0:0 1 ./bin/busybox
/// lrwxrwxrwx 0:0 1 ./bin/sh busybox
/// ```
///
/// Lines are sorted by path, byte-wise, and carry no trailing space (find prints one
/// after the path when there is no link target). Symlinks are not followed.
pub fn listing(root: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    walk(root, Path::new("."), &mut lines);
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    lines.into_iter().map(|(_, line)| line).collect()
}

/// Adds `(path bytes, line)` for `root/rel` and everything below it.
fn walk(root: &Path, rel: &Path, lines: &mut Vec<(Vec<u8>, String)>) {
    let path = root.join(rel);
    let meta = std::fs::symlink_metadata(&path)
        .unwrap_or_else(|err| panic!("cannot stat {}: {err}", path.display()));
    let mut line = format!(
        "{} {}:{} {} {}",
        mode_string(&meta),
        meta.uid(),
        meta.gid(),
        meta.nlink(),
        rel.display()
    );
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&path)
            .unwrap_or_else(|err| panic!("cannot read link {}: {err}", path.display()));
        let _ = write!(line, " {}", target.display());
    }
    lines.push((rel.as_os_str().as_bytes().to_vec(), line));
    if meta.is_dir() {
        let entries = std::fs::read_dir(&path)
            .unwrap_or_else(|err| panic!("cannot list {}: {err}", path.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|err| panic!("cannot list {}: {err}", path.display()));
            walk(root, &rel.join(entry.file_name()), lines);
        }
    }
}

/// A mode as `ls -l` and find's `%M` show it, e.g. `-rwsr-xr-x` or `drwxrwxrwt`.
fn mode_string(meta: &std::fs::Metadata) -> String {
    let file_type = meta.file_type();
    let kind = if file_type.is_dir() {
        'd'
    } else if file_type.is_symlink() {
        'l'
    } else if file_type.is_char_device() {
        'c'
    } else if file_type.is_block_device() {
        'b'
    } else if file_type.is_fifo() {
        'p'
    } else if file_type.is_socket() {
        's'
    } else {
        '-'
    };
    let mode = meta.mode();
    let bit = |mask: u32, c: char| if mode & mask == 0 { '-' } else { c };
    // The execute position shows a set-id or sticky bit: lower case with execute,
    // upper case without.
    let special = |exec: u32, special: u32, c: char| match (mode & exec != 0, mode & special != 0) {
        (true, true) => c,
        (false, true) => c.to_ascii_uppercase(),
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        kind,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        special(0o100, 0o4000, 's'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        special(0o010, 0o2000, 's'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        special(0o001, 0o1000, 't'),
    ]
    .into_iter()
    .collect()
}

/// Panics unless `name` is an executable in `PATH`, saying which package provides it.
pub fn require_tool(name: &str, package: &str) {
    assert!(
        find_in_path(name).is_some(),
        "`{name}` not found in PATH: install it with apt-get install {package} \
         (cargo xtask ci does this)"
    );
}

/// Panics unless `path` exists, saying which package provides it.
fn require_file(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} not found: install it with apt-get install {package} (cargo xtask ci does this)"
    );
}

/// The first executable file called `name` in `PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.mode() & 0o111 != 0)
        })
}

/// Whether the tests run as root. `/proc/self` is owned by the effective uid.
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// Runs `cmd` and panics, with everything it printed, unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Output {
    let output = cmd
        .output()
        .unwrap_or_else(|err| panic!("cannot start {}: {err}", display(cmd)));
    check(cmd, output)
}

fn check(cmd: &Command, output: Output) -> Output {
    assert!(
        output.status.success(),
        "{} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        display(cmd),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn read_on_thread(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _: io::Result<usize> = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// A command line for messages.
fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn has_extension(path: &Path, extension: &str) -> bool {
    path.extension().is_some_and(|ext| ext == extension)
}

/// `prefix` followed by `path`, as one argument.
fn prefixed(prefix: &str, path: &Path) -> std::ffi::OsString {
    let mut arg = std::ffi::OsString::from(prefix);
    arg.push(path);
    arg
}

/// Waits up to `timeout` for `ready`, polling every few milliseconds; panics with `what`
/// if it never turns true.
pub fn wait_for(what: &str, timeout: std::time::Duration, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not seen after {timeout:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Creates the folder `path` (and missing parents) and gives it `mode`.
pub fn mkdir(path: &Path, mode: u32) {
    std::fs::create_dir_all(path)
        .unwrap_or_else(|err| panic!("cannot mkdir {}: {err}", path.display()));
    chmod(path, mode);
}

/// Writes `data` to `path` and gives it `mode`.
pub fn write(path: &Path, data: &[u8], mode: u32) {
    std::fs::write(path, data)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    chmod(path, mode);
}

/// `chmod MODE PATH`, setuid, setgid and sticky bits included.
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|err| panic!("cannot chmod {}: {err}", path.display()));
}

/// Creates the symlink `path -> target`.
pub fn ln_s(target: impl AsRef<Path>, path: &Path) {
    std::os::unix::fs::symlink(target, path)
        .unwrap_or_else(|err| panic!("cannot ln -s {}: {err}", path.display()));
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

/// A test's folder, removed on drop, with an empty `tmp/` for the builds' `TMPDIR`.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    /// A fresh folder named `PREFIX…` in the system's temporary folder.
    pub fn new(prefix: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot create a temporary directory: {err}"));
        let test_dir = TestDir { dir };
        mkdir(&test_dir.tmp(), 0o755);
        test_dir
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `rel` inside the folder.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The private `TMPDIR` of the builds.
    pub fn tmp(&self) -> PathBuf {
        self.join("tmp")
    }
}
