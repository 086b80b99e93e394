//! `includeNixDB`: the database in the image is one the real `nix-store` accepts as it is,
//! and it says what the source store says about every path of the closure of `copyToRoot`;
//! paths the image holds only for its config are not in it (docs/formats.md §10 and §11).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde_json::{Value, json};

use super::{
    BUSYBOX_ROOT, EPOCH, Fixture, LINK, ROOT, base_name, build, copy_tree, fixture, nix_store,
    scratch, sqlite, store_listing,
};
use buildimage_test_support::{run_ok, unpack_oci};

/// Where the database lives in an image.
const DB: &str = "nix/var/nix/db/db.sqlite";

/// Words `nix-store --verify` prints when it repairs or rejects something: it exits 0
/// after a repair, so its output is what tells (docs/formats.md §10.5).
/// (`warning: not all store errors were fixed` contains `error`.)
const REPAIRS: [&str; 6] = [
    "fixing",
    "updating",
    "removing",
    "modified",
    "disappeared",
    "error",
];

fn spec(copy_to_root: &str, config: &Value) -> Value {
    json!({
        "name": "nix-db",
        "tag": "1",
        "copyToRoot": copy_to_root,
        "includeNixDB": true,
        "config": config,
        "compressor": "none",
    })
}

/// The checks of docs/formats.md §12.6, on the unpacked image `rootfs`: the files,
/// the rows (exactly `registered`), `nix-store --verify --check-contents` on a copy, and
/// references, closures, hashes and sizes as `nix-store` reads them, against the source
/// store; then the GC roots (exactly `gcroots`).
fn assert_database(
    fx: &Fixture,
    rootfs: &Path,
    registered: &BTreeSet<String>,
    gcroots: &[&str],
    work: &Path,
) {
    // Nix writes into any store it opens: check a copy.
    let copy = work.join("verify");
    copy_tree(rootfs, &copy);

    let schema = rootfs.join("nix/var/nix/db/schema");
    assert_eq!(
        fs::read(&schema).expect("read nix/var/nix/db/schema"),
        b"10",
        "the schema file holds the two bytes `10`, no newline"
    );
    let db = rootfs.join(DB);
    assert_eq!(sqlite(&db, "PRAGMA integrity_check"), "ok");
    assert_eq!(
        sqlite(&db, "PRAGMA foreign_key_check"),
        "",
        "dangling Refs rows"
    );
    let rows: BTreeSet<String> = sqlite(&db, "SELECT path FROM ValidPaths ORDER BY id")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(&rows, registered, "the database's ValidPaths");
    assert_eq!(
        sqlite(&db, "SELECT DISTINCT registrationTime FROM ValidPaths"),
        EPOCH.to_string(),
        "registrationTime must be SOURCE_DATE_EPOCH"
    );
    assert_eq!(
        sqlite(
            &db,
            "SELECT count(*) FROM ValidPaths WHERE deriver IS NOT NULL OR ultimate IS NOT NULL \
             OR sigs IS NOT NULL OR ca IS NOT NULL"
        ),
        "0",
        "deriver, ultimate, sigs and ca are NULL in a nixpkgs image database"
    );

    let verify = nix_store(&copy)
        .args(["--verify", "--check-contents"])
        .output()
        .expect("start nix-store");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.status.success(),
        "nix-store --verify --check-contents failed ({}):\n{log}",
        verify.status
    );
    let lower = log.to_lowercase();
    assert!(
        !REPAIRS.iter().any(|word| lower.contains(word)),
        "nix-store --verify --check-contents had to repair or reject the database:\n{log}"
    );

    let query = |flag: &str, path: &str| -> String {
        super::stdout(run_ok(nix_store(&copy).args(["-q", flag, path])))
    };
    let lines = |text: String| -> BTreeSet<String> { text.lines().map(str::to_owned).collect() };
    for path in registered {
        let want = fx.info(path);
        assert_eq!(
            lines(query("--references", path)),
            want.references,
            "nix-store -q --references {path} in the image and in the source store"
        );
        assert_eq!(
            lines(query("--requisites", path)),
            want.requisites,
            "nix-store -q --requisites {path} in the image and in the source store"
        );
        assert_eq!(
            query("--hash", path).trim(),
            want.hash,
            "nix-store -q --hash {path}"
        );
        assert_eq!(
            query("--size", path).trim(),
            want.size.to_string(),
            "nix-store -q --size {path}"
        );
    }

    // The GC roots keep every registered path alive. (Runtime roots that Nix finds in
    // /proc can only add paths, and every valid path is registered anyway.)
    let live = lines(super::stdout(run_ok(
        nix_store(&copy).args(["--gc", "--print-live"]),
    )));
    assert_eq!(&live, registered, "nix-store --gc --print-live");
    // Paths in the store that are not registered are garbage to Nix, as in nixpkgs: a
    // garbage collection in the container would delete what only the config names.
    let dead = lines(super::stdout(run_ok(
        nix_store(&copy).args(["--gc", "--print-dead"]),
    )));
    let unregistered: BTreeSet<String> = store_listing(rootfs)
        .difference(registered)
        .cloned()
        .collect();
    assert_eq!(
        dead, unregistered,
        "nix-store --gc --print-dead: what no GC root keeps"
    );

    fx.assert_host_nix_untouched();

    let gcroot_dir = rootfs.join("nix/var/nix/gcroots/docker");
    let listed: BTreeSet<String> = fs::read_dir(&gcroot_dir)
        .expect("list nix/var/nix/gcroots/docker")
        .map(|e| {
            e.expect("list gcroots")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let want: BTreeSet<String> = gcroots.iter().map(|p| base_name(p).to_owned()).collect();
    assert_eq!(listed, want, "nix/var/nix/gcroots/docker");
    for root in gcroots {
        let link = gcroot_dir.join(base_name(root));
        assert_eq!(
            fs::read_link(&link)
                .unwrap_or_else(|err| panic!("{} is not a symlink: {err}", link.display())),
            Path::new(root),
            "target of {}",
            link.display()
        );
    }
}

#[test]
fn nix_db_passes_nix_store_verify_and_agrees_with_the_source_store() {
    let fx = fixture();
    let dir = scratch();
    let root = fx.path(ROOT);
    let built = build(dir.path(), "db", &spec(root, &json!({})), &fx.store, &[]);
    let want = fx.closure_of(&[ROOT]);
    assert_eq!(built.store_paths(), want, "--json storePaths");
    let unpacked = unpack_oci(&built.archive);
    let rootfs = unpacked.rootfs();
    assert_eq!(
        store_listing(&rootfs),
        want,
        "every path in the image's store is registered, and only those"
    );
    assert_database(fx, &rootfs, &want, &[root], dir.path());
}

#[test]
fn nix_db_from_a_store_without_database_passes_nix_store_verify() {
    // No database to copy rows from: references are found by scanning, hashes and sizes
    // are computed from the files. Nix must not be able to tell.
    let fx = fixture();
    let dir = scratch();
    let root = fx.path(ROOT);
    let built = build(dir.path(), "db", &spec(root, &json!({})), &fx.hidden, &[]);
    let want = fx.closure_of(&[ROOT]);
    assert_eq!(built.store_paths(), want, "--json storePaths");
    let unpacked = unpack_oci(&built.archive);
    let rootfs = unpacked.rootfs();
    assert_eq!(store_listing(&rootfs), want);
    assert_database(fx, &rootfs, &want, &[root], dir.path());
}

#[test]
fn nix_db_has_a_gc_root_for_each_copied_store_path() {
    let fx = fixture();
    let dir = scratch();
    let roots = [fx.path(ROOT), fx.path(BUSYBOX_ROOT)];
    let spec = json!({
        "name": "nix-db",
        "tag": "1",
        "copyToRoot": roots,
        "includeNixDB": true,
        "compressor": "none",
    });
    let built = build(dir.path(), "db", &spec, &fx.store, &[]);
    let want = fx.closure_of(&[ROOT, BUSYBOX_ROOT]);
    assert_eq!(built.store_paths(), want, "--json storePaths");
    let unpacked = unpack_oci(&built.archive);
    let rootfs = unpacked.rootfs();
    assert_eq!(store_listing(&rootfs), want);
    assert_database(fx, &rootfs, &want, &roots, dir.path());
}

#[test]
fn config_only_reference_is_in_the_image_but_not_in_the_nix_db() {
    // Cmd names hello-link, which nothing copied refers to: nixpkgs puts it and its
    // closure into the image (the layer's `json` holds the config), but registers only the
    // closure of copyToRoot.
    let fx = fixture();
    let dir = scratch();
    let root = fx.path(BUSYBOX_ROOT);
    let config = json!({ "Cmd": [fx.path(LINK)] });
    let built = build(dir.path(), "db", &spec(root, &config), &fx.store, &[]);
    let in_image = fx.closure_of(&[BUSYBOX_ROOT, LINK]);
    let registered = fx.closure_of(&[BUSYBOX_ROOT]);
    assert!(
        fx.closure_of(&[LINK]).is_disjoint(&registered),
        "the fixture changed: hello-link's closure must not overlap busybox-root's"
    );
    assert_eq!(built.store_paths(), in_image, "--json storePaths");
    let unpacked = unpack_oci(&built.archive);
    let rootfs = unpacked.rootfs();
    assert_eq!(
        store_listing(&rootfs),
        in_image,
        "the image's /nix/store holds the config's closure too"
    );
    assert_database(fx, &rootfs, &registered, &[root], dir.path());
    for path in fx.closure_of(&[LINK]) {
        let check = nix_store(&dir.path().join("verify"))
            .arg("--check-validity")
            .arg(&path)
            .output()
            .expect("start nix-store");
        assert!(
            !check.status.success(),
            "{path} is registered in the image's database, but only Cmd names it"
        );
    }
}
