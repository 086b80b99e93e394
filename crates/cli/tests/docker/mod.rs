//! End-to-end tests of `buildimage build` against the real consumers of its archives:
//! images are built from Debian's static busybox in temporary folders by the real
//! binary, then loaded, inspected and run by a private Docker daemon
//! ([`buildimage_test_support::docker`]), or copied by skopeo and unpacked by umoci.
//!
//! Each test builds its archives before it takes the Docker handle, so builds run in
//! parallel and only the Docker checks run one at a time. Every loaded image is removed
//! again (image guards): `docker load` skips layers the daemon already has, so a broken
//! archive could otherwise "load" by borrowing an earlier archive's layers.
//!
//! Run with `cargo xtask dockerd -- cargo test -p buildimage-cli --test cli docker`.

mod compressors;
mod config;
mod determinism;
mod owners;
mod scenarios;

use std::path::{Path, PathBuf};

use buildimage_test_support::{APPLETS, Buildimage, Built, TestDir, busybox_root, write_json};
use serde_json::Value;

/// A fresh test folder for this module.
fn test_dir() -> TestDir {
    TestDir::new("bi-docker.")
}

/// Writes `spec` to `dir/spec.json` and returns that path.
fn write_spec(dir: &Path, spec: &Value) -> PathBuf {
    let path = dir.join("spec.json");
    write_json(&path, spec);
    path
}

/// `buildimage build SPEC -o OUT --json`.
fn build(spec: &Path, out: &Path) -> Built {
    Buildimage::new().build(spec).out(out).json()
}

/// Builds `spec` (whose `copyToRoot` is `root`, a busybox root beside the spec) from
/// another folder without `-o`, so the image gets its default name there. Returns the
/// test folder (kept alive), that other folder and the build.
fn build_with_default_name(spec: &Value) -> (TestDir, PathBuf, Built) {
    let dir = test_dir();
    let spec_dir = dir.join("spec");
    let cwd = dir.join("cwd");
    std::fs::create_dir(&spec_dir).expect("mkdir spec");
    std::fs::create_dir(&cwd).expect("mkdir cwd");
    busybox_root(&spec_dir.join("root"), &APPLETS);
    let spec = write_spec(&spec_dir, spec);
    let built = Buildimage::new().cwd(&cwd).build(&spec).json();
    (dir, cwd, built)
}
