//! Checks against the real Nix (Debian's `nix-bin`, Nix 2.8): NAR bytes and hashes against
//! `nix-store --dump` and `nix-hash`, and, on a chroot store that `nix-build` fills with real
//! references, closures, the database writer and the `registration` format against
//! `nix-store --verify`, `-q --references`, `-q --requisites` and `--load-db`.
//!
//! These tests need `nix-store`, `nix-build`, `nix-hash`, `sqlite3` and a static busybox at
//! `/bin/busybox` (the sandbox's `/bin/sh`): `apt-get install nix-bin sqlite3 busybox-static`.
//! They fail, rather than skip, when one is missing. They run as root (Nix builds into a
//! chroot store only with its sandbox), use temporary directories under /tmp and never touch
//! the machine's `/nix`.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use buildimage_nixdb::hash::{self, HashForm};
use buildimage_nixdb::{Closure, Store, StorePath, db, nar, registration};

/// What to install when a tool is missing.
const INSTALL: &str = "apt-get install nix-bin sqlite3 busybox-static";

/// Settings for every Nix command: no host configuration, no build users (we are root and
/// Debian has no `nixbld` group), no binary cache (no network), and the sandbox on, because
/// Nix 2.8 builds into a chroot store only in the sandbox, with busybox as its `/bin/sh`.
const NIX_CONFIG: &str = "build-users-group =\nsubstituters =\nsandbox = true\n\
                          sandbox-paths = /bin/sh=/bin/busybox\n";

/// A command for a tool that must be installed; fails the test with the fix when it is not.
fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            fs::metadata(dir.join(name))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    });
    assert!(
        found,
        "`{name}` is not installed; these tests need it: {INSTALL}"
    );
    let mut cmd = Command::new(name);
    if name.starts_with("nix") {
        cmd.env("NIX_CONF_DIR", "/nonexistent/buildimage-nixdb-tests")
            .env("NIX_CONFIG", NIX_CONFIG)
            .env_remove("NIX_REMOTE");
    }
    cmd
}

/// Runs a command and returns stdout; fails the test with stderr when it fails.
fn run(cmd: &mut Command) -> Vec<u8> {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("UTF-8 output")
}

fn chroot(root: &Path) -> String {
    format!("local?root={}", root.display())
}

// ---------------------------------------------------------------------------------------
// NAR against `nix-store --dump` and `nix-hash`
// ---------------------------------------------------------------------------------------

/// Every kind of object and name the NAR format distinguishes.
fn nar_tree(dir: &Path) -> PathBuf {
    let root = dir.join("tree");
    let p = |rel: &str| root.join(rel);
    fs::create_dir_all(p("nested/deeper/deepest")).unwrap();
    fs::create_dir(p("empty")).unwrap();
    fs::create_dir(p("Zempty")).unwrap();
    fs::create_dir(p("doc")).unwrap();
    fs::write(p("doc/readme"), "hello world\n").unwrap();
    fs::write(p("nested/deeper/deepest/file"), vec![0xa5; 100_003]).unwrap();
    fs::write(p("exec"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(p("exec"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(p("group-exec"), "x").unwrap();
    fs::set_permissions(p("group-exec"), fs::Permissions::from_mode(0o654)).unwrap();
    fs::write(p("12345678"), "12345678").unwrap();
    fs::write(p("empty-file"), "").unwrap();
    symlink("doc/readme", p("link")).unwrap();
    symlink(
        "/nix/store/h4lyvgdxy8acvyss6p8ps7ji50n6yw0d-hello-dep-1.0",
        p("abs-link"),
    )
    .unwrap();
    symlink("nowhere", p("dangling")).unwrap();
    fs::hard_link(p("doc/readme"), p("hardlink")).unwrap();
    // Non-UTF-8 names, and names whose byte order differs from any locale's order.
    let odd = root.join(OsStr::from_bytes(b"caf\xe9-\xff\x01"));
    fs::create_dir(&odd).unwrap();
    fs::write(odd.join(OsStr::from_bytes(b"\xc3\xa9")), "e-acute").unwrap();
    fs::write(odd.join("E"), "capital").unwrap();
    fs::write(p("a-b"), "").unwrap();
    fs::write(p("a.b"), "").unwrap();
    fs::write(p("a"), "").unwrap();
    root
}

#[test]
fn nar_is_byte_identical_to_nix_store_dump() {
    let dir = tempfile::tempdir().unwrap();
    let root = nar_tree(dir.path());
    let mut objects: Vec<PathBuf> = vec![root.clone()];
    for entry in fs::read_dir(&root).unwrap() {
        objects.push(entry.unwrap().path());
    }
    objects.push(root.join("nested/deeper/deepest/file"));
    objects.sort();
    for object in &objects {
        let want = run(tool("nix-store").arg("--dump").arg(object));
        let mut got = Vec::new();
        let size = nar::dump(object, &mut got).unwrap();
        assert!(
            got == want,
            "NAR of {} differs from nix-store --dump",
            object.display()
        );
        assert_eq!(size, want.len() as u64);

        let info = nar::hash_path(object).unwrap();
        assert_eq!(info.nar_size, want.len() as u64);
        let nix_hash = text(run(tool("nix-hash")
            .args(["--type", "sha256", "--base32"])
            .arg(object)));
        assert_eq!(
            hash::format(&info.nar_hash, HashForm::Nix32Bare),
            nix_hash.trim_end(),
            "narHash of {}",
            object.display()
        );
    }
}

// ---------------------------------------------------------------------------------------
// A chroot store built by Nix, with real references
// ---------------------------------------------------------------------------------------

/// The fixture of docs/formats.md §12.5, plus an exportReferencesGraph output.
const FIXTURE_NIX: &str = r#"
let
  run = name: script: derivation {
    inherit name; system = builtins.currentSystem;
    builder = "/bin/sh"; args = [ "-c" script ];
  };
  dep = run "hello-dep-1.0" ''mkdir -p $out/bin $out/share; echo '#!/bin/sh' > $out/bin/dep; chmod +x $out/bin/dep; ln -s msg.txt $out/share/link; echo hi > $out/share/msg.txt'';
  hello = run "hello-2.12" ''mkdir -p $out/bin; echo "exec ${dep}/bin/dep # $out" > $out/bin/hello; chmod 555 $out/bin/hello'';
  link = run "hello-link" ''ln -s ${hello}/bin/hello $out'';
  root = run "image-root" ''mkdir -p $out; ln -s ${hello}/bin $out/bin'';
  graph = derivation {
    name = "hello-graph"; system = builtins.currentSystem;
    builder = "/bin/sh"; args = [ "-c" "cp graph $out" ];
    exportReferencesGraph = [ "graph" hello ];
  };
in { inherit dep hello link root graph; }
"#;

/// The source store and the output paths `nix-build` printed.
struct Built {
    root: PathBuf,
    outputs: Vec<StorePath>,
}

fn build_fixture(dir: &Path) -> Built {
    assert!(
        Path::new("/bin/busybox").is_file(),
        "/bin/busybox is missing; the Nix sandbox needs it as /bin/sh: {INSTALL}"
    );
    let root = dir.join("store");
    let nix_file = dir.join("fixture.nix");
    fs::write(&nix_file, FIXTURE_NIX).unwrap();
    let out = text(run(tool("nix-build")
        .arg("--store")
        .arg(chroot(&root))
        .arg(&nix_file)
        .arg("--no-out-link")
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .stdin(Stdio::null())));
    let mut outputs: Vec<StorePath> = out.lines().map(|l| StorePath::new(l).unwrap()).collect();
    outputs.sort();
    assert_eq!(outputs.len(), 5, "nix-build printed:\n{out}");
    Built { root, outputs }
}

fn named<'a>(built: &'a Built, name: &str) -> &'a StorePath {
    built.outputs.iter().find(|p| p.name() == name).unwrap()
}

fn query(store_root: &Path, what: &str, path: &StorePath) -> BTreeSet<String> {
    text(run(tool("nix-store")
        .arg("--store")
        .arg(chroot(store_root))
        .args(["-q", what, path.as_str()])))
    .lines()
    .map(str::to_owned)
    .collect()
}

fn paths(closure: &Closure) -> Vec<&str> {
    closure.paths().map(StorePath::as_str).collect()
}

/// One test for everything that needs the Nix-built store, so that the store is built once
/// and its temporary directory is removed at the end.
#[test]
fn nix_built_store() {
    let dir = tempfile::Builder::new()
        .prefix("buildimage-nixdb-")
        .tempdir_in("/tmp")
        .unwrap();
    let built = build_fixture(dir.path());
    closures_from_db_scanning_and_listings_agree(&built);
    export_references_graph_is_read(&built);
    let image = image_with_db(&built, dir.path());
    nix_store_accepts_the_image_db(&built, &image, dir.path());
    db_matches_nix_store_load_db(&image, dir.path());
}

/// The database, a `registration` listing and scanning give the same closures.
fn closures_from_db_scanning_and_listings_agree(built: &Built) {
    let with_db = Store::open(&built.root).unwrap();
    assert!(with_db.database().is_some());
    let scanning = Store::open_without_db(&built.root).unwrap();
    for root in &built.outputs {
        let roots = std::slice::from_ref(root);
        let from_db = with_db.closure(roots).unwrap();
        assert!(
            from_db.is_complete(),
            "the database has every hash and size"
        );
        assert!(
            from_db.paths().all(|p| !p.is_derivation()),
            "an output's closure has no .drv: {:?}",
            paths(&from_db)
        );
        let scanned = scanning.closure_with_nar_info(roots).unwrap();
        assert_eq!(
            scanned, from_db,
            "closure of {root} by scanning vs database"
        );
        // References alone by scanning, hashes and sizes filled in afterwards.
        let references_only = scanning.closure(roots).unwrap();
        assert!(references_only.iter().all(|i| i.nar_info().is_none()));
        assert_eq!(
            scanning.path_info_complete(references_only).unwrap(),
            from_db
        );

        let requisites = query(&built.root, "--requisites", root);
        assert_eq!(
            paths(&from_db)
                .into_iter()
                .map(str::to_owned)
                .collect::<BTreeSet<_>>(),
            requisites
        );
        for info in &from_db {
            let references = query(&built.root, "--references", &info.path);
            let ours: BTreeSet<String> = info.references.iter().map(ToString::to_string).collect();
            assert_eq!(ours, references, "references of {}", info.path);
        }

        // A closureInfo-style listing gives the same, with no database and no scanning.
        let listing = registration::registration(from_db.as_slice()).unwrap();
        let from_listing = Store::open_without_db(&built.root)
            .unwrap()
            .with_path_infos(registration::parse_registration(&listing).unwrap())
            .scan_unknown(false)
            .closure(roots)
            .unwrap();
        assert_eq!(
            from_listing, from_db,
            "closure of {root} from a registration listing"
        );
    }

    // The special shapes of the fixture.
    let hello = named(built, "hello-2.12");
    let dep = named(built, "hello-dep-1.0");
    let closure = with_db
        .closure(std::slice::from_ref(named(built, "hello-link")))
        .unwrap();
    assert_eq!(
        closure.get(hello).unwrap().references,
        [hello.clone(), dep.clone()].into(),
        "hello refers to itself and to dep"
    );
    let roots = with_db
        .find_roots_in(format!("[\"{hello}/bin/hello\"]").as_bytes())
        .unwrap();
    assert_eq!(roots, std::slice::from_ref(hello));
    assert!(
        with_db
            .paths()
            .unwrap()
            .iter()
            .any(StorePath::is_derivation)
    );
}

/// exportReferencesGraph files are read, without hashes.
fn export_references_graph_is_read(built: &Built) {
    let graph = named(built, "hello-graph");
    let infos = registration::read_registration(&graph.host_path(&built.root)).unwrap();
    let store = Store::open(&built.root).unwrap();
    let closure = store
        .closure(std::slice::from_ref(named(built, "hello-2.12")))
        .unwrap();
    assert_eq!(infos.len(), closure.len());
    for info in infos {
        assert_eq!((info.nar_hash, info.nar_size), (None, None));
        assert_eq!(info.references, closure.get(&info.path).unwrap().references);
    }
}

/// An image root holding the closure of every output, with our database.
fn image_with_db(built: &Built, dir: &Path) -> (PathBuf, Closure) {
    let store = Store::open(&built.root).unwrap();
    let closure = store.closure_with_nar_info(&built.outputs).unwrap();
    let image = dir.join("image");
    fs::create_dir_all(image.join("nix/store")).unwrap();
    for path in closure.paths() {
        run(Command::new("cp")
            .arg("-a")
            .arg(path.host_path(&built.root))
            .arg(image.join("nix/store")));
    }
    db::write_db(&image.join(db::DB_DIR), closure.as_slice(), 315_532_800).unwrap();
    (image, closure)
}

/// `nix-store --verify --check-contents` recomputes every hash and must repair nothing;
/// references, requisites, hashes and sizes read back as in the source store.
fn nix_store_accepts_the_image_db(
    built: &Built,
    (image, closure): &(PathBuf, Closure),
    dir: &Path,
) {
    // Nix writes into any store it opens: check a copy.
    let copy = dir.join("image-copy");
    run(Command::new("cp").arg("-a").arg(image).arg(&copy));
    let out = output(
        tool("nix-store")
            .arg("--store")
            .arg(chroot(&copy))
            .args(["--verify", "--check-contents"]),
    );
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "nix-store --verify failed:\n{log}");
    for bad in [
        "fixing",
        "updating",
        "removing",
        "modified",
        "disappeared",
        "error",
    ] {
        assert!(
            !log.contains(bad),
            "nix-store --verify had to repair ({bad}):\n{log}"
        );
    }
    assert!(log.contains("checking store hashes"), "{log}");
    for info in closure {
        let p = &info.path;
        for what in ["--references", "--requisites", "--hash", "--size"] {
            assert_eq!(
                query(&copy, what, p),
                query(&built.root, what, p),
                "{what} {p}"
            );
        }
    }
}

/// `sqlite3 .dump` of our database equals that of `nix-store --load-db` fed the same
/// records, after nixpkgs' registrationTime update; only the schema comment that Nix 2.8
/// lacks may differ (docs/formats.md §12.6).
fn db_matches_nix_store_load_db((image, closure): &(PathBuf, Closure), dir: &Path) {
    let reference = dir.join("load-db");
    fs::create_dir_all(reference.join("nix/store")).unwrap();
    let listing = registration::registration(closure.as_slice()).unwrap();
    let mut child = tool("nix-store")
        .arg("--store")
        .arg(chroot(&reference))
        .arg("--load-db")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), listing.as_bytes()).unwrap();
    assert!(
        child.wait().unwrap().success(),
        "nix-store --load-db failed"
    );
    let theirs = reference.join(db::DB_DIR).join(db::DB_FILE);
    run(tool("sqlite3")
        .arg(&theirs)
        .arg("UPDATE ValidPaths SET registrationTime = 315532800"));

    let dump = |db: &Path, skip: &str| -> Vec<String> {
        text(run(tool("sqlite3").arg(db).arg(".dump")))
            .lines()
            .filter(|l| *l != skip)
            .map(str::to_owned)
            .collect()
    };
    // Work on a copy: sqlite3 may leave -wal and -shm files behind in the image.
    let ours = dir.join("ours.sqlite");
    fs::copy(image.join(db::DB_DIR).join(db::DB_FILE), &ours).unwrap();
    let ours = dump(
        &ours,
        "    hash             text not null, -- base16 representation",
    );
    let theirs = dump(&theirs, "    hash             text not null,");
    assert!(
        ours.iter().any(|l| l.starts_with("INSERT INTO Refs")),
        "{ours:#?}"
    );
    if ours != theirs {
        let line = ours.iter().zip(&theirs).take_while(|(a, b)| a == b).count();
        panic!(
            "sqlite3 .dump differs at line {}:\n  ours:   {:?}\n  theirs: {:?}",
            line + 1,
            ours.get(line),
            theirs.get(line)
        );
    }

    // And the registration we wrote reads back as the closure.
    let back = registration::parse_registration(&listing).unwrap();
    assert_eq!(Closure::from_infos(back).unwrap(), *closure);
}
