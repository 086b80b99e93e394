//! Helpers for the end-to-end tests of `buildimage` (`crates/cli/tests`), modelled on
//! cargo's `cargo-test-support`: every test module takes what it needs from here, and no
//! test module lends helpers to another.
//!
//! What it offers, one of each:
//!
//! - [`Buildimage`]: the binary under test as a builder (folder, environment without
//!   `SOURCE_DATE_EPOCH`, umask, user `nobody`, arguments), run to an [`Output`] or, with
//!   `--json`, to a [`Built`] (the archive's path and the parsed report);
//! - [`Interrupt`]: a build started, signalled once a condition holds, and checked to stop
//!   with 130/143, the exact message, and nothing left behind;
//! - [`tar`](mod@tar): one tar [`Member`] type, read by [`read_tar`] and written by
//!   [`write_tar`] or [`TarWriter`] (deterministic headers: owners, modes and times are
//!   what the member says), and [`decompress`] for gzip and zstd;
//! - [`Image`]: a docker-archive read back (manifest, config, layers) and edited in memory,
//!   and [`BaseImage`]: base images for `fromImage` made from scratch in every layout
//!   buildimage reads (legacy, Docker 25's `blobs/sha256`, skopeo's, `streamLayeredImage`'s),
//!   layers plain or compressed;
//! - the external tools: a private Docker daemon ([`docker()`]), `skopeo` with `umoci`
//!   ([`unpack_oci`]), a `find`-like [`listing`], [`require_tool`] and friends;
//! - a private registry ([`Registry`]: distribution 2.8, plain or TLS, anonymous, htpasswd
//!   or token auth, stopped and started again, the requests it served read from its
//!   access log), a [`FaultProxy`] in front of it that fails or cuts requests, and
//!   [`skopeo_inspect`];
//! - test folders and files: [`TestDir`], [`mkdir`], [`write()`], [`chmod`], [`ln_s`],
//!   [`names`], [`sha256_hex`], [`wait_for`], and a static busybox image root
//!   ([`busybox_root`]).
//!
//! Every helper panics with a message that says what failed and how to fix it: these are
//! tests, and a missing tool or privilege must fail loudly rather than pass quietly.
//!
//! ```no_run
//! use buildimage_test_support::{Buildimage, TestDir};
//!
//! let dir = TestDir::new("bi-example.");
//! let spec = dir.spec(&serde_json::json!({ "name": "x", "tag": "t", "compressor": "none" }));
//! let built = Buildimage::new().cwd(dir.path()).build(&spec).out("x.tar").json();
//! assert_eq!(built.image(), "x:t");
//! assert_eq!(built.read().layer_listing(), ["d 0775 0:0 root/root ./"]);
//! ```
//!
//! # Determinism
//!
//! Fixtures never depend on the test runner's umask, clock or creation order: files get
//! explicit modes ([`mkdir`], [`write()`]), tars explicit owners, modes and times
//! ([`Member`]), and JSON is written with sorted keys (`serde_json` without
//! `preserve_order`).

mod busybox;
mod docker;
mod fs;
mod image;
mod interrupt;
pub mod nix;
mod oci;
mod registry;
mod run;
pub mod tar;

pub use crate::busybox::{APPLETS, BUSYBOX, ROOT_APPLETS, busybox_root, static_busybox};
pub use crate::docker::{
    DOCKER_HOST_VAR, Docker, ImageGuard, RunOutput, docker, docker_host, inspect_json,
};
pub use crate::fs::{
    TestDir, assert_nothing_mounted, chmod, hex, is_root, ln_s, mkdir, names, require_root,
    require_tool, run_ok, sha256_hex, wait_for, write, write_json,
};
pub use crate::image::{
    BaseImage, Image, LayerCompression, Layout, diff_id, go_arch, gzip, strings, zstd_compress,
};
pub use crate::interrupt::{Interrupt, Stopped, alive, processes_matching};
pub use crate::oci::{Unpacked, kind_letter, listing, tree_lines, unpack_oci};
pub use crate::registry::{
    Action, Auth, FaultProxy, LoggedRequest, Outcome, ProxiedRequest, Registry, RegistryConfig,
    Rule, TOKEN_ISSUER, TOKEN_SERVICE, skopeo_inspect,
};
pub use crate::run::{Buildimage, Built, stderr};
pub use crate::tar::{Member, TarWriter, decompress, member, read_tar, tarsum, write_tar};

pub use std::process::Output;

/// `SOURCE_DATE_EPOCH` of a Nix build, 1980-01-01: every tar time of a build when the
/// variable is unset, and of every [`Member`] made here unless it says otherwise.
pub const EPOCH_1980: u64 = 315_532_800;

/// nixpkgs' default `created`.
pub const DEFAULT_CREATED: &str = "1970-01-01T00:00:01Z";

/// insta's settings for the cli tests' snapshots: kept in `crates/cli/tests/snapshots/`
/// (the path is relative to the asserting file, one module folder below `tests/`), named
/// as the test says, without the module's name.
pub fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings
}

/// The message every test that needs root fails with when it is not root.
pub const NEEDS_ROOT: &str = "needs root (cargo xtask ci runs as root)";
