//! Test folders, files with explicit modes, and small checks of the machine.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::NEEDS_ROOT;

/// A test's folder, removed on drop even when the test made parts of it read-only.
///
/// Specs are written into it ([`TestDir::spec`]), and [`TestDir::tmp`] is the private
/// `TMPDIR` of its builds, so that a test can check that a build left nothing there.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    /// A fresh, empty folder named `PREFIX…` in the system's temporary folder.
    pub fn new(prefix: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot create a temporary directory: {err}"));
        TestDir { dir }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `rel` inside the folder.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `tmp/` inside the folder, the private `TMPDIR` of the builds; created (0755) on
    /// first use.
    pub fn tmp(&self) -> PathBuf {
        let tmp = self.join("tmp");
        if !tmp.is_dir() {
            mkdir(&tmp, 0o755);
        }
        tmp
    }

    /// Writes `spec` as `spec.json` and returns its path.
    pub fn spec(&self, spec: &Value) -> PathBuf {
        self.spec_named("spec", spec)
    }

    /// Writes `spec` as `NAME.json` and returns its path.
    pub fn spec_named(&self, name: &str, spec: &Value) -> PathBuf {
        let path = self.join(format!("{name}.json"));
        write_json(&path, spec);
        path
    }

    /// Writes `text` as `spec.json` and returns its path.
    pub fn spec_text(&self, text: &str) -> PathBuf {
        let path = self.join("spec.json");
        write(&path, text.as_bytes(), 0o644);
        path
    }

    /// Panics unless [`TestDir::tmp`] exists (a build was given it) and is empty: the
    /// builds left no temporary file.
    pub fn assert_tmp_empty(&self) {
        let tmp = self.join("tmp");
        assert!(
            tmp.is_dir(),
            "no build used TestDir::tmp as its TMPDIR: the check would prove nothing"
        );
        assert_eq!(
            names(&tmp),
            Vec::<String>::new(),
            "buildimage left temporary files in TMPDIR"
        );
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        make_writable(self.dir.path());
    }
}

/// Gives the owner write and search permission on every folder below `path`, so that the
/// folder can be removed by a non-root user too.
fn make_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode() | 0o700;
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
    }
}

/// Creates the folder `path` (and missing parents) and gives it `mode`.
pub fn mkdir(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap_or_else(|err| panic!("cannot mkdir {}: {err}", path.display()));
    chmod(path, mode);
}

/// Writes `data` to `path` and gives it `mode`.
pub fn write(path: &Path, data: &[u8], mode: u32) {
    fs::write(path, data).unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    chmod(path, mode);
}

/// Writes `value` as pretty JSON (keys sorted) to `path`, mode 0644.
pub fn write_json(path: &Path, value: &Value) {
    let text = serde_json::to_string_pretty(value).expect("serialise JSON");
    write(path, text.as_bytes(), 0o644);
}

/// `chmod MODE PATH`, setuid, setgid and sticky bits included.
pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|err| panic!("cannot chmod {}: {err}", path.display()));
}

/// Creates the symlink `path -> target`.
pub fn ln_s(target: impl AsRef<Path>, path: &Path) {
    std::os::unix::fs::symlink(target, path)
        .unwrap_or_else(|err| panic!("cannot ln -s {}: {err}", path.display()));
}

/// The names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

/// Waits up to `timeout` for `ready`, polling every few milliseconds; panics with `what`
/// if it never turns true.
pub fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what}: not seen after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
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
pub(crate) fn require_file(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} not found: install it with apt-get install {package} (cargo xtask ci does this)"
    );
}

/// The first executable file called `name` in `PATH`.
pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate).is_ok_and(|meta| meta.is_file() && meta.mode() & 0o111 != 0)
        })
}

/// Whether the tests run as root. `/proc/self` is owned by the effective uid.
pub fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// Panics unless the tests run as root: `"{what}: needs root (cargo xtask ci runs as root)"`.
/// A test that checks something only root can see calls this first, and so fails, rather
/// than passing without the check, for an ordinary user.
pub fn require_root(what: &str) {
    assert!(is_root(), "{what}: {NEEDS_ROOT}");
}

/// Runs `cmd` (an external tool) and panics, with everything it printed, unless it
/// succeeds.
pub fn run_ok(cmd: &mut Command) -> Output {
    let output = cmd
        .output()
        .unwrap_or_else(|err| panic!("cannot start {}: {err}", display(cmd)));
    check(cmd, output)
}

/// Panics, with everything `cmd` printed, unless `output` is a success.
pub(crate) fn check(cmd: &Command, output: Output) -> Output {
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

/// A command line, for messages.
pub(crate) fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Panics if any process's mount table (`/proc/*/mountinfo`) has a mount point below
/// `dir`. The sandbox mounts in private namespaces, so the test's own table alone would
/// not show a leftover helper's overlay; every live process's table does.
pub fn assert_nothing_mounted(dir: &Path) {
    // Strictly below: `dir` may be a mount point itself (a test's tmpfs).
    let needle = format!("{}/", dir.to_str().expect("a UTF-8 temporary path"));
    let Ok(procs) = fs::read_dir("/proc") else {
        panic!("cannot list /proc");
    };
    for proc in procs.flatten() {
        let name = proc.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // A process that ended meanwhile has no table to read.
        let Ok(table) = fs::read_to_string(proc.path().join("mountinfo")) else {
            continue;
        };
        let mounted: Vec<&str> = table
            .lines()
            .filter(|line| {
                line.split(' ')
                    .nth(4)
                    .is_some_and(|m| m.starts_with(&needle))
            })
            .collect();
        assert!(
            mounted.is_empty(),
            "process {} still has mounts below {needle}:\n{}",
            name.to_string_lossy(),
            mounted.join("\n")
        );
    }
}
