//! End-to-end tests of root mode (`runAsRoot`): images built by the real binary, whose
//! script runs as root in `buildimage_sandbox`'s namespaces over an overlay of the base
//! layers, then read back with the `tar` crate, loaded, inspected and run by a private
//! Docker daemon ([`support::docker`]), or unpacked by skopeo and umoci.
//!
//! Image roots hold Debian's static busybox with the applets the scripts need, so the
//! sandbox finds `/bin/sh`, `rm`, `chown`, `mknod` and friends inside the image. Every build
//! runs with a private `TMPDIR` that must be empty again, with nothing mounted below the
//! test's folder, when the binary exits, whether it succeeded, failed or was interrupted.
//!
//! As in the `docker` module, each test builds its archives before it takes the Docker
//! handle, and every loaded image is removed again (image guards).
//!
//! Run with `cargo xtask dockerd -- cargo test -p buildimage-cli --test cli root` (as root:
//! the sandbox, `mknod` and umoci need it).

mod failures;
mod files;
mod isolation;
mod scenarios;
mod unprivileged;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::docker::{self, Built, ImageArchive, Member};
use crate::support;

/// The busybox applets every image root of this module links in `bin/`: those of the
/// `docker` module plus what the `runAsRoot` scripts call.
pub const APPLETS: [&str; 21] = [
    "cat", "chmod", "chown", "echo", "env", "grep", "hostname", "id", "ls", "mkdir", "mknod",
    "printf", "pwd", "readlink", "rm", "sh", "sleep", "stat", "test", "touch", "true",
];

/// A test's folder: specs, image roots, archives, a fake store, and the private `TMPDIR`
/// (`tmp/`) of its builds.
pub struct Case {
    dir: crate::support::TestDir,
}

impl std::ops::Deref for Case {
    type Target = crate::support::TestDir;
    fn deref(&self) -> &crate::support::TestDir {
        &self.dir
    }
}

impl Case {
    /// A fresh folder with an empty `tmp/`.
    pub fn new() -> Case {
        support::require_tool("busybox", "busybox-static");
        assert!(
            support::is_root(),
            "the root-mode tests must run as root (cargo xtask ci does): the sandbox needs \
             root for chown, setuid bits and mknod"
        );
        Case {
            dir: crate::support::TestDir::new("bi-root."),
        }
    }

    /// Writes `spec` to `NAME.json` and returns that path.
    pub fn spec(&self, name: &str, spec: &Value) -> PathBuf {
        let path = self.join(format!("{name}.json"));
        let text = serde_json::to_string_pretty(spec).expect("serialise the spec");
        fs::write(&path, text)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
        path
    }

    /// `buildimage` in the folder, with the private `TMPDIR` and no `SOURCE_DATE_EPOCH`.
    pub fn buildimage(&self) -> assert_cmd::Command {
        let mut cmd = docker::buildimage();
        cmd.current_dir(self.path()).env("TMPDIR", self.tmp());
        cmd
    }

    /// `buildimage` run by `sh` under `umask`, like [`Case::buildimage`] otherwise.
    pub fn buildimage_with_umask(&self, umask: &str) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new("sh");
        cmd.current_dir(self.path())
            .env("TMPDIR", self.tmp())
            .env_remove("SOURCE_DATE_EPOCH")
            .arg("-c")
            .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
            .arg(assert_cmd::cargo::cargo_bin("buildimage"));
        cmd
    }

    /// `buildimage build NAME.json -o NAME.tar [--store STORE] --json`, which must succeed
    /// and leave `TMPDIR` empty and nothing mounted.
    pub fn build(&self, name: &str, spec: &Value, store: Option<&Path>) -> Built {
        self.build_with(self.buildimage(), name, spec, store)
    }

    /// [`Case::build`] with `cmd` as the `buildimage` to run.
    pub fn build_with(
        &self,
        mut cmd: assert_cmd::Command,
        name: &str,
        spec: &Value,
        store: Option<&Path>,
    ) -> Built {
        let spec = self.spec(name, spec);
        cmd.arg("build")
            .arg(&spec)
            .arg("-o")
            .arg(self.join(format!("{name}.tar")));
        if let Some(store) = store {
            cmd.arg("--store").arg(store);
        }
        let built = docker::run_build(cmd);
        self.assert_clean();
        built
    }

    /// `buildimage build NAME.json -o out/NAME.tar [--store STORE]`, which must fail and leave
    /// no output (not even a temporary one), an empty `TMPDIR` and nothing mounted. Returns
    /// its standard error.
    pub fn build_fails(&self, name: &str, spec: &Value, store: Option<&Path>) -> String {
        let spec = self.spec(name, spec);
        let out_dir = self.join("out");
        fs::create_dir_all(&out_dir).expect("create out/");
        let mut cmd = self.buildimage();
        cmd.arg("build")
            .arg(&spec)
            .arg("-o")
            .arg(out_dir.join(format!("{name}.tar")));
        if let Some(store) = store {
            cmd.arg("--store").arg(store);
        }
        let output: Output = cmd.output().expect("start buildimage");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            !output.status.success(),
            "buildimage succeeded but should have failed:\n{stderr}"
        );
        assert!(
            output.stdout.is_empty(),
            "a failed build prints nothing on stdout: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert_eq!(
            docker::file_names(&out_dir),
            Vec::<String>::new(),
            "a failed build leaves no output file:\n{stderr}"
        );
        self.assert_clean();
        stderr
    }

    /// `TMPDIR` is empty and no process has anything mounted below the folder.
    pub fn assert_clean(&self) {
        assert_eq!(
            docker::file_names(&self.tmp()),
            Vec::<String>::new(),
            "buildimage left temporary files in TMPDIR"
        );
        assert_nothing_mounted(self.path());
    }
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

/// Creates `dir` (0755) as an image root holding `bin/busybox` (the host's static busybox,
/// 0755) and a `bin/<applet> -> busybox` symlink for each of [`APPLETS`]. Returns `dir`.
pub fn busybox_root(dir: &Path) -> PathBuf {
    let busybox = docker::static_busybox();
    docker::mkdir(dir, 0o755);
    let bin = dir.join("bin");
    docker::mkdir(&bin, 0o755);
    docker::write(&bin.join("busybox"), &busybox, 0o755);
    for applet in APPLETS {
        symlink("busybox", bin.join(applet))
            .unwrap_or_else(|err| panic!("cannot link bin/{applet}: {err}"));
    }
    dir.to_owned()
}

/// Builds `NAME.tar`, a pure-mode busybox image (no compression) to use as `fromImage`:
/// the root of [`busybox_root`], after `extra` added to it, and `config`.
pub fn base_image(case: &Case, name: &str, config: &Value, extra: impl FnOnce(&Path)) -> Built {
    let root = busybox_root(&case.join(format!("{name}-root")));
    extra(&root);
    case.build(
        name,
        &serde_json::json!({
            "name": format!("buildimage-test/{name}"),
            "tag": "latest",
            "copyToRoot": format!("{name}-root"),
            "config": config,
            "compressor": "none",
        }),
        None,
    )
}

/// The members of the top (newest) layer of `archive`.
pub fn top_layer(archive: &ImageArchive) -> Vec<Member> {
    let manifest = archive.manifest();
    let layers = manifest[0]["Layers"]
        .as_array()
        .unwrap_or_else(|| panic!("manifest.json has no Layers: {manifest:#}"));
    let path = layers
        .last()
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("manifest.json lists no layer: {manifest:#}"))
        .to_owned();
    docker::tar_members(archive.file(&path))
}

/// The names of `members`, in archive order.
pub fn names(members: &[Member]) -> Vec<&str> {
    members.iter().map(|m| m.path.as_str()).collect()
}

/// Makes the fake store path `STORE/nix/store/<hash>-<name>` (`hash`: 32 characters of
/// Nix's base-32 alphabet), read-only as in a real store. When `busybox_links` is not empty
/// it holds `bin/busybox` with those links to it in `bin/`; `files` adds (path below the
/// store path, contents, mode). Returns the store path (`/nix/store/...`).
pub fn store_path(
    store: &Path,
    hash: &str,
    name: &str,
    busybox_links: &[&str],
    files: &[(&str, &[u8], u32)],
) -> String {
    let path = format!("/nix/store/{hash}-{name}");
    let host = store.join(path.trim_start_matches('/'));
    fs::create_dir_all(host.join("bin"))
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", host.display()));
    if !busybox_links.is_empty() {
        docker::write(&host.join("bin/busybox"), &docker::static_busybox(), 0o555);
        for link in busybox_links {
            symlink("busybox", host.join("bin").join(link))
                .unwrap_or_else(|err| panic!("cannot link bin/{link}: {err}"));
        }
    }
    for (rel, data, mode) in files {
        docker::write(&host.join(rel), data, *mode);
    }
    docker::chmod(&host.join("bin"), 0o555);
    docker::chmod(&host, 0o555);
    path
}
