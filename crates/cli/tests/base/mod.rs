//! End-to-end tests of `fromImage`: images built on a base archive by the real binary, then
//! loaded, inspected and run by a private Docker daemon ([`buildimage_test_support::docker`]).
//!
//! The bases come from buildimage itself, from `docker save`, from `skopeo copy`, or are
//! rewritten or made by hand with `buildimage_test_support`'s [`Image`] and
//! [`BaseImage`]: compressed whole or
//! per layer, in the layout of nixpkgs' `streamLayeredImage`, with two images, a repeated
//! layer, whiteouts over a store path, or broken on purpose. Every build gets a private
//! `TMPDIR` that must be empty again when the binary exits, whether it succeeded or not.
//!
//! As in the `docker` module, each test builds what it can before it takes the Docker
//! handle, and every loaded image is removed again.
//!
//! Run with `cargo xtask dockerd -- cargo test -p buildimage-cli --test cli base`.

mod dedup;
mod forms;
mod hostile;
mod layers;
mod limit;
mod select;

use std::ffi::OsStr;
use std::path::PathBuf;

use buildimage_test_support::{
    APPLETS, Buildimage, Built, Member, TestDir, busybox_root, mkdir, names, write,
};
#[cfg(doc)]
use buildimage_test_support::{BaseImage, Image};
use serde_json::Value;

/// A test's folder: specs, archives, image roots, a fake store, and the private `TMPDIR`
/// every build runs with.
pub struct Case {
    dir: TestDir,
}

impl std::ops::Deref for Case {
    type Target = TestDir;
    fn deref(&self) -> &TestDir {
        &self.dir
    }
}

impl Case {
    /// A fresh folder with an empty `tmp/`.
    pub fn new() -> Case {
        let dir = TestDir::new("bi-base.");
        dir.tmp();
        Case { dir }
    }

    /// Creates the image root `rel` with a static busybox and its [`APPLETS`], and returns
    /// its path.
    pub fn busybox_root(&self, rel: &str) -> PathBuf {
        busybox_root(&self.join(rel), &APPLETS)
    }

    /// Creates the image root `rel` holding only the file `name` with `text` (both 0755 and
    /// 0644): a small base where busybox is not needed.
    pub fn small_root(&self, rel: &str, name: &str, text: &[u8]) -> PathBuf {
        let root = self.join(rel);
        mkdir(&root, 0o755);
        write(&root.join(name), text, 0o644);
        root
    }

    /// Where the image of the spec `name` goes: `name.tar`, `name.tar.gz` or `name.tar.zst`
    /// after the spec's `compressor` (default gz, as in nixpkgs).
    pub fn out(&self, name: &str, spec: &Value) -> PathBuf {
        let extension = match spec["compressor"].as_str() {
            Some("none") => "tar",
            Some("zstd") => "tar.zst",
            _ => "tar.gz",
        };
        self.join(format!("{name}.{extension}"))
    }

    /// `buildimage build NAME.json -o OUT [ARGS]` with `TMPDIR` set to [`TestDir::tmp`].
    fn command(&self, name: &str, spec: &Value, args: &[&OsStr]) -> Buildimage {
        let spec_path = self.spec_named(name, spec);
        let mut cmd = Buildimage::new();
        cmd.tmpdir(&self.tmp())
            .cwd(self.path())
            .build(&spec_path)
            .out(self.out(name, spec))
            .args(args);
        cmd
    }

    /// Builds the spec `spec`, saved as `NAME.json`, into [`Case::out`]; checks that the
    /// build left nothing in `TMPDIR`. [`Built::stderr`] holds its warnings.
    pub fn build(&self, name: &str, spec: &Value) -> Built {
        self.build_with(name, spec, &[])
    }

    /// [`Case::build`] with more arguments, such as `--store DIR`.
    pub fn build_with(&self, name: &str, spec: &Value, args: &[&OsStr]) -> Built {
        let built = self.command(name, spec, args).json();
        assert_eq!(built.archive, self.out(name, spec), "outPath");
        self.assert_tmp_empty();
        built
    }

    /// Runs a build that must fail: checks that it exits non-zero, prints nothing on
    /// standard output, that neither the image nor a temporary file beside it exists, and
    /// that `TMPDIR` is empty. Returns standard error.
    pub fn build_fails(&self, name: &str, spec: &Value) -> String {
        let spec_file = format!("{name}.json");
        let mut before = names(self.path());
        before.retain(|n| *n != spec_file);
        let output = self.command(name, spec, &[]).run_err();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let out = self.out(name, spec);
        assert!(
            !out.exists(),
            "a failed build left its output {}",
            out.display()
        );
        let mut after = names(self.path());
        after.retain(|n| *n != spec_file);
        assert_eq!(after, before, "a failed build left files beside its output");
        self.assert_tmp_empty();
        stderr
    }
}

/// Member names without a leading `./` and a trailing `/`, for comparisons.
pub fn clean_names(members: &[Member]) -> Vec<String> {
    members
        .iter()
        .map(|m| {
            let name = m.name();
            let name = name.strip_prefix("./").unwrap_or(&name);
            name.strip_suffix('/').unwrap_or(name).to_owned()
        })
        .collect()
}

/// Output lines of `docker run` that start with `prefix`.
pub fn lines_starting(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}
