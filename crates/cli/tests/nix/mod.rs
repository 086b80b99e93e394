//! End-to-end tests of `buildimage build` against a real Nix store.
//!
//! Debian's `nix-build` (Nix 2.8) fills a chroot store `R` with real, input-addressed store
//! paths whose references Nix computed itself (docs/formats.md §12.5): a package and its
//! dependency, a store path that is a single symlink, a `buildEnv`-like image root, a static
//! busybox with an image root of its own, and a path nothing refers to. The binary builds
//! images from `--store R`; skopeo and umoci unpack them; `nix-store` checks the database of
//! `includeNixDB` images; a private Docker daemon runs a program that lives in the store.
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
mod sources;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use buildimage_test_support::{
    Buildimage, Built, TestDir, names, require_root, require_tool, run_ok, write, write_json,
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

/// Settings for every Nix command: no host configuration, no build users (we are root and
/// need no `nixbld` group), no binary cache (no network), and the sandbox on, because Nix 2.8
/// builds into a chroot store only in the sandbox. Busybox is the sandbox's `/bin/sh`, and
/// is also visible at `/bin/busybox` for the derivation that copies it into the store.
const NIX_CONFIG: &str = "build-users-group =\nsubstituters =\nsandbox = true\n\
                          sandbox-paths = /bin/sh=/bin/busybox /bin/busybox\n";

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
    /// Whether the machine had a `/nix` before the fixture was built.
    host_nix: bool,
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
        assert!(
            self.host_nix || !Path::new("/nix").exists(),
            "the machine's /nix appeared: a Nix command escaped its chroot store"
        );
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
    require_tool("nix-build", "nix-bin");
    require_tool("nix-store", "nix-bin");
    assert!(
        Path::new("/bin/busybox").is_file(),
        "/bin/busybox is missing; the Nix sandbox needs it as /bin/sh: \
         apt-get install busybox-static"
    );
    require_root("the Nix tests (Nix 2.8 builds into a chroot store only in its sandbox)");
    let host_nix = Path::new("/nix").exists();
    remove_stale_fixtures();
    let dir = tempfile::Builder::new()
        .prefix(&format!("{FIXTURE_PREFIX}{}.", std::process::id()))
        .tempdir_in("/tmp")
        .unwrap_or_else(|err| panic!("cannot create a temporary directory: {err}"))
        .keep();
    let store = dir.join("store");
    let nix_file = dir.join("fixture.nix");
    write(&nix_file, FIXTURE_NIX.as_bytes(), 0o644);
    write(&dir.join(MOTD), b"welcome\n", 0o644);
    let built = stdout(run_ok(
        nix("nix-build")
            .arg("--store")
            .arg(chroot(&store))
            .arg(&nix_file)
            .arg("--no-out-link")
            .env("XDG_CACHE_HOME", dir.join("cache")),
    ));
    let mut paths = BTreeMap::new();
    for line in built.lines() {
        let name = store_name(line);
        let output = OUTPUTS
            .into_iter()
            .find(|o| *o == name)
            .unwrap_or_else(|| panic!("nix-build printed an unexpected path {line}:\n{built}"));
        paths.insert(output, line.to_owned());
    }
    assert_eq!(paths.len(), OUTPUTS.len(), "nix-build printed:\n{built}");

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

    let hidden = dir.join("hidden");
    copy_store(&store, &hidden, false);
    let fixture = Fixture {
        store,
        hidden,
        dump_db,
        paths,
        infos,
        host_nix,
    };
    fixture.assert_host_nix_untouched();
    fixture
}

/// Removes the fixture folders of test processes that have ended.
fn remove_stale_fixtures() {
    let Ok(entries) = fs::read_dir("/tmp") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(FIXTURE_PREFIX))
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            // Best effort: another run may be removing it at the same time.
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// The name part of `/nix/store/<32 hash characters>-<name>`.
pub fn store_name(path: &str) -> &str {
    path.strip_prefix("/nix/store/")
        .and_then(|base| base.get(33..))
        .unwrap_or_else(|| panic!("not a store path: {path:?}"))
}

/// The base name `<hash>-<name>` of a store path.
pub fn base_name(path: &str) -> &str {
    path.strip_prefix("/nix/store/")
        .unwrap_or_else(|| panic!("not a store path: {path:?}"))
}

/// Where the store rooted at `root` keeps `path`.
pub fn host_path(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// `local?root=DIR`: the chroot store at `root`.
pub fn chroot(root: &Path) -> String {
    format!("local?root={}", root.display())
}

/// A Nix command with this module's configuration, and nothing from the caller's.
pub fn nix(tool: &str) -> Command {
    require_tool(tool, "nix-bin");
    let mut cmd = Command::new(tool);
    cmd.env("NIX_CONF_DIR", "/nonexistent/buildimage-cli-nix-tests")
        .env("NIX_CONFIG", NIX_CONFIG)
        .env_remove("NIX_REMOTE")
        .env_remove("NIX_PATH")
        .stdin(Stdio::null());
    cmd
}

/// `nix-store --store local?root=ROOT`.
pub fn nix_store(root: &Path) -> Command {
    let mut cmd = nix("nix-store");
    cmd.arg("--store").arg(chroot(root));
    cmd
}

/// Copies a store: `FROM/nix/store` to `TO/nix/store`, and with `with_db` the database
/// files (`db.sqlite`, `schema`) but not Nix's lock and reserve files.
pub fn copy_store(from: &Path, to: &Path, with_db: bool) {
    fs::create_dir_all(to.join("nix"))
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", to.display()));
    copy_tree(&from.join("nix/store"), &to.join("nix/store"));
    if with_db {
        let db = to.join("nix/var/nix/db");
        fs::create_dir_all(&db)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", db.display()));
        for file in ["db.sqlite", "schema"] {
            copy_tree(&from.join("nix/var/nix/db").join(file), &db.join(file));
        }
    }
}

/// `cp -a FROM TO`: modes, owners, symlinks and times as they are.
pub fn copy_tree(from: &Path, to: &Path) {
    run_ok(Command::new("cp").arg("-a").arg(from).arg(to));
}

/// A fresh test folder.
pub fn scratch() -> TestDir {
    TestDir::new("bi-nix-test.")
}

/// Standard output as text.
pub fn stdout(output: Output) -> String {
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// `sqlite3 DB SQL`, its output without the last newline.
pub fn sqlite(db: &Path, sql: &str) -> String {
    require_tool("sqlite3", "sqlite3");
    let out = stdout(run_ok(Command::new("sqlite3").arg(db).arg(sql)));
    out.strip_suffix('\n').unwrap_or(&out).to_owned()
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
