//! End-to-end tests of `buildimage build` against a real Nix store.
//!
//! Debian's `nix-build` (Nix 2.8) fills a chroot store `R` with real, input-addressed store
//! paths whose references Nix computed itself (docs/formats.md §12.5): a package and its
//! dependency, a store path that is a single symlink, a `buildEnv`-like image root, a static
//! busybox with an image root of its own, and a path nothing refers to. The binary builds
//! images from `--store R`; skopeo and umoci unpack them; `nix-store` checks the database of
//! `includeNixDB` images; a private Docker daemon runs a program that lives in the store;
//! the user `nobody` builds from a copy of `R` whose database is root's, as in a multi-user
//! install.
//!
//! The store is built once per test binary (a few tenths of a second) in a folder under /tmp
//! that lives as long as the process (a `static` is never dropped, so the next run removes
//! the folders of finished runs); every test works on its own copies, so that no Nix command
//! ever writes to a store another test reads. Nothing here touches the machine's
//! `/nix`: every Nix command gets `--store local?root=DIR` and a configuration of its own.
//!
//! Needs root (Nix builds into a chroot store only in its sandbox; umoci keeps owners only
//! as root) and `apt-get install nix-bin sqlite3 busybox-static skopeo umoci docker.io`.
//! Run with `cargo xtask dockerd -- cargo test -p buildimage-cli --test cli nix`.

mod database;
mod docker;
mod errors;
mod layout;
mod multi_user;
mod sources;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

use buildimage_test_support::{Buildimage, Built, TestDir, names, run_ok, write_json};

pub use buildimage_test_support::nix::{
    BuiltStore, base_name, copy_store, copy_tree, host_path, nix_store, sqlite, stdout, store_name,
};

/// `SOURCE_DATE_EPOCH` of every build here: not the default, so that a database whose
/// `registrationTime` ignores it shows.
pub const EPOCH: u64 = 1_600_000_000;

/// Store-path names (the part after `<hash>-`) of the fixture's outputs.
pub const DEP: &str = "hello-dep-1.0";
/// References `DEP` and itself.
pub const HELLO: &str = "hello-2.12";
/// A store path that is a single symlink, to `HELLO`'s `bin/hello`.
pub const LINK: &str = "hello-link";
/// A store path that is a single regular file.
pub const NOTE: &str = "greeting.txt";
/// A source file the Nix expression names (`${./motd.txt}`): a content-addressed path, with
/// `ca` set in the store's database. Not an output: found through [`ROOT`]'s references.
pub const MOTD: &str = "motd.txt";
/// `bin -> ${HELLO}/bin`, `greet -> ${LINK}`, `greeting.txt -> ${NOTE}` and
/// `motd -> ${MOTD}`: what `buildEnv` makes.
pub const ROOT: &str = "image-root";
/// `bin/busybox` (Debian's static one) and applet symlinks to it.
pub const BUSYBOX: &str = "busybox-static";
/// `bin -> ${BUSYBOX}/bin`.
pub const BUSYBOX_ROOT: &str = "busybox-root";
/// A path nothing refers to: it must never reach an image.
pub const UNUSED: &str = "unreferenced-1.0";

/// Every output of [`FIXTURE_NIX`].
const OUTPUTS: [&str; 8] = [DEP, HELLO, LINK, NOTE, ROOT, BUSYBOX, BUSYBOX_ROOT, UNUSED];

/// The derivations `nix-build` builds into `R`. The builder is the sandbox's `/bin/sh`, a
/// static busybox that runs its applets (`mkdir`, `ln`, `cp`) without a `PATH`.
const FIXTURE_NIX: &str = r#"
let
  run = name: script: derivation {
    inherit name; system = builtins.currentSystem;
    builder = "/bin/sh"; args = [ "-c" script ];
  };
  dep = run "hello-dep-1.0" ''mkdir -p $out/bin $out/share; echo '#!/bin/sh' > $out/bin/dep; chmod +x $out/bin/dep; ln -s msg.txt $out/share/link; echo hi > $out/share/msg.txt'';
  hello = run "hello-2.12" ''mkdir -p $out/bin; echo "exec ${dep}/bin/dep # $out" > $out/bin/hello; chmod 555 $out/bin/hello'';
  link = run "hello-link" ''ln -s ${hello}/bin/hello $out'';
  note = run "greeting.txt" ''echo hello > $out'';
  root = run "image-root" ''mkdir -p $out; ln -s ${hello}/bin $out/bin; ln -s ${link} $out/greet; ln -s ${note} $out/greeting.txt; ln -s ${./motd.txt} $out/motd'';
  busybox = run "busybox-static" ''mkdir -p $out/bin; cp /bin/busybox $out/bin/busybox; for a in sh echo id ls readlink; do ln -s busybox $out/bin/$a; done'';
  busyboxRoot = run "busybox-root" ''mkdir -p $out; ln -s ${busybox}/bin $out/bin'';
  unused = run "unreferenced-1.0" ''mkdir -p $out/share; echo unused > $out/share/unused.txt'';
in { inherit dep hello link note root busybox busyboxRoot unused; }
"#;

/// How the fixture's folder is named: `bi-nix.<pid>.XXXXXX`. The pid lets a later run
/// remove the folders of finished runs (a `static` is never dropped).
const FIXTURE_PREFIX: &str = "bi-nix.";

/// A path as the source store `R` describes it (`nix-store -q`).
#[derive(Debug)]
pub struct NixInfo {
    /// `nix-store -q --hash`: `sha256:<nix32>`.
    pub hash: String,
    /// `nix-store -q --size`.
    pub size: u64,
    /// `nix-store -q --references`, self-references included.
    pub references: BTreeSet<String>,
    /// `nix-store -q --requisites`: the closure, the path included.
    pub requisites: BTreeSet<String>,
}

/// The store built by `nix-build`, and what Nix says about it.
#[derive(Debug)]
pub struct Fixture {
    /// `R`: the chroot store, with the database Nix wrote.
    pub store: PathBuf,
    /// A copy of `R/nix/store` without `nix/var`: a store without a database.
    pub hidden: PathBuf,
    /// `nix-store --dump-db` of `R`: every valid path (the `.drv` files too), hashes in
    /// hex, derivers filled in.
    pub dump_db: String,
    /// Output name -> `/nix/store/<hash>-<name>`.
    paths: BTreeMap<&'static str, String>,
    /// Store path -> what Nix says about it, for every output.
    infos: BTreeMap<String, NixInfo>,
    /// What `nix-build` made.
    built: BuiltStore,
}

impl Fixture {
    /// The store path of the output called `name` (one of the constants above).
    pub fn path(&self, name: &str) -> &str {
        self.paths
            .get(name)
            .unwrap_or_else(|| panic!("the fixture has no output {name:?}"))
    }

    /// What Nix says about `path`.
    pub fn info(&self, path: &str) -> &NixInfo {
        self.infos
            .get(path)
            .unwrap_or_else(|| panic!("the fixture has no path {path}"))
    }

    /// The union of the requisites (`nix-store -q --requisites`) of `paths`.
    pub fn requisites<'a>(&self, paths: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
        paths
            .into_iter()
            .flat_map(|p| self.info(p).requisites.iter().cloned())
            .collect()
    }

    /// The requisites of the outputs called `names`.
    pub fn closure_of(&self, names: &[&str]) -> BTreeSet<String> {
        self.requisites(names.iter().map(|name| self.path(name)))
    }

    /// Panics if the machine's `/nix` appeared: a Nix command escaped its chroot store.
    pub fn assert_host_nix_untouched(&self) {
        self.built.assert_host_nix_untouched();
    }

    /// Where `R` keeps `path` on the host.
    pub fn host(&self, path: &str) -> PathBuf {
        host_path(&self.store, path)
    }
}

/// The fixture store, built on first use and shared by every test of this binary.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build_fixture)
}

fn build_fixture() -> Fixture {
    let built = BuiltStore::build(FIXTURE_PREFIX, FIXTURE_NIX, &[(MOTD, b"welcome\n")]);
    let mut paths = BTreeMap::new();
    for line in &built.outputs {
        let name = store_name(line);
        let output = OUTPUTS.into_iter().find(|o| *o == name).unwrap_or_else(|| {
            panic!(
                "nix-build printed an unexpected path {line}: {:?}",
                built.outputs
            )
        });
        paths.insert(output, line.clone());
    }
    assert_eq!(
        paths.len(),
        OUTPUTS.len(),
        "nix-build printed: {:?}",
        built.outputs
    );
    let store = built.root.clone();

    let query = |flag: &str, path: &str| stdout(run_ok(nix_store(&store).args(["-q", flag, path])));
    let lines = |text: String| -> BTreeSet<String> { text.lines().map(str::to_owned).collect() };
    let root_refs = lines(query("--references", &paths[ROOT]));
    let motd = root_refs
        .iter()
        .find(|p| store_name(p) == MOTD)
        .unwrap_or_else(|| panic!("{ROOT} does not refer to {MOTD}: {root_refs:?}"));
    paths.insert(MOTD, motd.clone());
    // What makes MOTD worth having: Nix keeps an assertion in `ca`, which an image's
    // database leaves NULL, as nixpkgs' does.
    let ca = sqlite(
        &store.join("nix/var/nix/db/db.sqlite"),
        &format!("SELECT ca FROM ValidPaths WHERE path = '{motd}'"),
    );
    assert!(ca.starts_with("fixed:"), "ca of {motd} in R: {ca:?}");
    let infos = paths
        .values()
        .map(|path| {
            let info = NixInfo {
                hash: query("--hash", path).trim().to_owned(),
                size: query("--size", path)
                    .trim()
                    .parse()
                    .unwrap_or_else(|err| panic!("nix-store -q --size {path}: {err}")),
                references: lines(query("--references", path)),
                requisites: lines(query("--requisites", path)),
            };
            (path.clone(), info)
        })
        .collect();
    let dump_db = stdout(run_ok(nix_store(&store).arg("--dump-db")));

    let hidden = built.dir.join("hidden");
    copy_store(&store, &hidden, false);
    let fixture = Fixture {
        store,
        hidden,
        dump_db,
        paths,
        infos,
        built,
    };
    fixture.assert_host_nix_untouched();
    fixture
}

/// A fresh test folder.
pub fn scratch() -> TestDir {
    TestDir::new("bi-nix-test.")
}

/// `buildimage build SPEC -o OUT --store STORE --json EXTRA...` with
/// `SOURCE_DATE_EPOCH=`[`EPOCH`], where SPEC is `spec` written to `DIR/NAME.json` and OUT is
/// `DIR/NAME.tar`, or `DIR/NAME.tar.gz` unless the spec's `compressor` is `none`.
pub fn build(dir: &Path, name: &str, spec: &Value, store: &Path, extra: &[&OsStr]) -> Built {
    let (mut cmd, out) = command(dir, name, spec, store);
    let built = cmd.args(extra).json();
    assert_eq!(built.archive, out, "outPath");
    built
}

/// Like [`build`], for a build that must fail: returns its standard error after checking
/// that it printed nothing on standard output and left no file at OUT.
pub fn build_fails(dir: &Path, name: &str, spec: &Value, store: &Path, extra: &[&OsStr]) -> String {
    let (mut cmd, out) = command(dir, name, spec, store);
    let output = cmd.arg("--json").args(extra).run_err();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        fs::symlink_metadata(&out).is_err(),
        "a failed build left {}; stderr:\n{stderr}",
        out.display()
    );
    let leftovers: Vec<String> = names(dir)
        .into_iter()
        .filter(|n| n.starts_with(name) && n != &format!("{name}.json"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "a failed build left files next to its output: {leftovers:?}"
    );
    stderr
}

/// `buildimage build SPEC -o OUT --store STORE` (see [`build`]) and OUT.
fn command(dir: &Path, name: &str, spec: &Value, store: &Path) -> (Buildimage, PathBuf) {
    let spec_file = dir.join(format!("{name}.json"));
    write_json(&spec_file, spec);
    let extension = if spec["compressor"] == "none" {
        "tar"
    } else {
        "tar.gz"
    };
    let out = dir.join(format!("{name}.{extension}"));
    let mut cmd = Buildimage::new();
    cmd.env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .build(&spec_file)
        .out(&out)
        .store(store);
    (cmd, out)
}

/// The store paths in `root/nix/store`, as `/nix/store/<name>`, sorted.
pub fn store_listing(root: &Path) -> BTreeSet<String> {
    let dir = root.join("nix/store");
    fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|e| e.unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display())))
        .map(|e| format!("/nix/store/{}", e.file_name().to_string_lossy()))
        .collect()
}

/// Checks that `copy` holds what `source` holds, file by file: the same kinds, permission
/// bits, contents and symlink targets, and nothing else; and that everything in `copy` is
/// owned by `owner`.
pub fn assert_same_tree(source: &Path, copy: &Path, owner: (u32, u32)) {
    let want = fs::symlink_metadata(source)
        .unwrap_or_else(|err| panic!("cannot stat {}: {err}", source.display()));
    let got = fs::symlink_metadata(copy)
        .unwrap_or_else(|err| panic!("{} is missing from the image: {err}", copy.display()));
    assert_eq!(
        (got.uid(), got.gid()),
        owner,
        "owner of {} in the image",
        copy.display()
    );
    assert_eq!(
        got.file_type(),
        want.file_type(),
        "kind of {} in the image",
        copy.display()
    );
    if want.file_type().is_symlink() {
        assert_eq!(
            fs::read_link(copy).expect("read the image's symlink"),
            fs::read_link(source).expect("read the store's symlink"),
            "target of {}",
            copy.display()
        );
        return;
    }
    assert_eq!(
        format!("{:o}", got.mode() & 0o7777),
        format!("{:o}", want.mode() & 0o7777),
        "mode of {} in the image",
        copy.display()
    );
    if want.is_dir() {
        let names = |dir: &Path| -> BTreeSet<std::ffi::OsString> {
            fs::read_dir(dir)
                .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
                .map(|e| e.expect("list a folder").file_name())
                .collect()
        };
        let (want_names, got_names) = (names(source), names(copy));
        assert_eq!(
            got_names,
            want_names,
            "entries of {} in the image",
            copy.display()
        );
        for name in &want_names {
            assert_same_tree(&source.join(name), &copy.join(name), owner);
        }
    } else {
        assert!(
            fs::read(copy).expect("read the image's file")
                == fs::read(source).expect("read the store's file"),
            "contents of {} differ from the store's",
            copy.display()
        );
    }
}
