//! End-to-end tests of `buildimage build-layered` and `buildimage stream-layered`.
//!
//! Debian's `nix-build` (Nix 2.8) fills a chroot store with a static busybox, a shared
//! dependency and two apps that use it, so that the references between store paths are
//! real ones that Nix computed. The tests build layered images from that store and hand
//! them to the consumers: Docker (`docker load`, `docker run`, `docker history`), skopeo
//! and umoci; the images' root file systems are compared with what `build` makes of the
//! same files; `fakeRootCommands` runs as root and as `nobody`, chrooted or not.
//!
//! The store is built once per test binary (see `buildimage_test_support::nix`); every
//! test that changes it works on a copy. The tests that need no Nix (errors, `--json`)
//! use a store made by hand: store paths are only folders under `DIR/nix/store`.
//!
//! Needs root and `apt-get install nix-bin busybox-static skopeo umoci docker.io`.
//! Run with `cargo xtask dockerd -- cargo test -p buildimage-cli --test cli layered`.

mod consumers;
mod destinations;
mod errors;
mod fake_root;
mod layers;
mod registry;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;

use buildimage_test_support::nix::{BuiltStore, nix_store, stdout};
use buildimage_test_support::{Buildimage, Built, TestDir, run_ok};

/// `SOURCE_DATE_EPOCH` of every build here, the customisation layer's time.
pub const EPOCH: u64 = 1_600_000_000;

/// Store-path names (the part after `<hash>-`) of the fixture's outputs.
/// `bin/busybox` (Debian's static one) and applet symlinks to it.
pub const BUSYBOX: &str = "busybox-static";
/// `lib/libshared.txt`: what both apps print.
pub const SHARED: &str = "libshared-1.0";
/// `bin/app-a`, a busybox script that prints `SHARED`'s file, then `app-a`.
pub const APP_A: &str = "app-a-1.0";
/// `bin/app-b`, like `APP_A`.
pub const APP_B: &str = "app-b-1.0";

/// The files of `BUSYBOX`'s `bin`, sorted: `busybox` and its applets.
pub const APPLETS: [&str; 12] = [
    "busybox", "cat", "chmod", "chown", "echo", "id", "ls", "mkdir", "mknod", "sh", "stat", "touch",
];

/// What the apps print, after their own name.
pub const SHARED_TEXT: &str = "shared by both apps";

/// The derivations. The builder is the sandbox's `/bin/sh`, a static busybox that runs its
/// applets without a `PATH`; the apps' `#!` line names the store's busybox, so that they
/// run in an image that has nothing but the store layers and the customisation layer.
const FIXTURE_NIX: &str = r#"
let
  run = name: script: derivation {
    inherit name; system = builtins.currentSystem;
    builder = "/bin/sh"; args = [ "-c" script ];
  };
  busybox = run "busybox-static" ''mkdir -p $out/bin; cp /bin/busybox $out/bin/busybox; for a in sh cat echo id ls stat mkdir chown chmod mknod touch; do ln -s busybox $out/bin/$a; done'';
  shared = run "libshared-1.0" ''mkdir -p $out/lib; echo "shared by both apps" > $out/lib/libshared.txt'';
  app = name: run "${name}-1.0" ''mkdir -p $out/bin; printf '#!${busybox}/bin/sh\n${busybox}/bin/cat ${shared}/lib/libshared.txt\necho ${name}\n' > $out/bin/${name}; chmod 555 $out/bin/${name}'';
in { inherit busybox shared; appA = app "app-a"; appB = app "app-b"; }
"#;

/// The store `nix-build` made.
pub struct Fixture {
    built: BuiltStore,
}

impl Fixture {
    /// `R`: the chroot store, with the database Nix wrote.
    pub fn store(&self) -> &Path {
        &self.built.root
    }

    /// The store path of the output called `name` (one of the constants above).
    pub fn path(&self, name: &str) -> &str {
        self.built.output(name)
    }

    /// `nix-store -q --requisites` of the outputs called `names`: their closure.
    pub fn closure_of(&self, names: &[&str]) -> BTreeSet<String> {
        let mut cmd = nix_store(self.store());
        cmd.args(["-q", "--requisites"]);
        for name in names {
            cmd.arg(self.path(name));
        }
        stdout(run_ok(&mut cmd))
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The fixture store, built on first use and shared by every test of this binary.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let built = BuiltStore::build("bi-layered.", FIXTURE_NIX, &[]);
        assert_eq!(
            built.outputs.len(),
            4,
            "nix-build printed {:?}",
            built.outputs
        );
        Fixture { built }
    })
}

/// A fresh test folder.
pub fn scratch() -> TestDir {
    TestDir::new("bi-layered-test.")
}

/// `buildimage SUBCOMMAND NAME.json -o OUT --store STORE --json` in `dir`, with
/// `SOURCE_DATE_EPOCH=`[`EPOCH`] and `spec` as NAME.json, where `SUBCOMMAND` is
/// `build-layered` (OUT: `NAME.tar`, or `NAME.tar.gz` unless the spec's `compressor` is
/// `none`) or `build` (OUT: `NAME.tar`; the spec says `compressor`).
pub fn build_with(
    mut cmd: Buildimage,
    subcommand: &str,
    dir: &Path,
    name: &str,
    spec: &Value,
    store: &Path,
) -> Built {
    let spec_file = dir.join(format!("{name}.json"));
    buildimage_test_support::write_json(&spec_file, spec);
    let out = if subcommand == "build-layered" && spec["compressor"] != "none" {
        dir.join(format!("{name}.tar.gz"))
    } else {
        dir.join(format!("{name}.tar"))
    };
    let built = cmd
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .arg(subcommand)
        .arg(&spec_file)
        .out(&out)
        .store(store)
        .json();
    assert_eq!(built.archive, out, "outPath");
    built
}

/// [`build_with`] `build-layered`, run as the test's own user.
pub fn build_layered(dir: &Path, name: &str, spec: &Value, store: &Path) -> Built {
    build_with(Buildimage::new(), "build-layered", dir, name, spec, store)
}

/// One layer of a `--json` report: `kind`, `diffId` and, for store layers, `storePaths`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    pub kind: String,
    pub diff_id: String,
    pub store_paths: Vec<String>,
}

/// The `layers` of a `--json` report, checked against the archive's config: the same diff
/// ids in the same order, one history entry per layer.
pub fn layers(built: &Built) -> Vec<LayerInfo> {
    let layers: Vec<LayerInfo> = built.info["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("--json has no layers: {:#}", built.info))
        .iter()
        .map(|layer| LayerInfo {
            kind: layer["kind"].as_str().expect("kind").to_owned(),
            diff_id: layer["diffId"].as_str().expect("diffId").to_owned(),
            store_paths: layer["storePaths"]
                .as_array()
                .map(|paths| {
                    paths
                        .iter()
                        .map(|p| p.as_str().expect("store path").to_owned())
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    let config = built.read().config();
    let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
        .as_array()
        .expect("rootfs.diff_ids")
        .iter()
        .map(|d| d.as_str().expect("diff id"))
        .collect();
    assert_eq!(
        diff_ids,
        layers
            .iter()
            .map(|l| l.diff_id.as_str())
            .collect::<Vec<_>>(),
        "--json layers against the config's diff_ids"
    );
    assert_eq!(
        config["history"].as_array().map(Vec::len),
        Some(layers.len()),
        "one history entry per layer: {:#}",
        config["history"]
    );
    layers
}

/// The store layer that holds exactly `path`.
pub fn layer_of<'a>(layers: &'a [LayerInfo], path: &str) -> &'a LayerInfo {
    layers
        .iter()
        .find(|l| l.store_paths == [path])
        .unwrap_or_else(|| panic!("no store layer holds exactly {path}: {layers:#?}"))
}
