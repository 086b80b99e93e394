//! Where the references come from does not change the image: the store's own database,
//! scanning a store that has none, and a closure listing (a `closureInfo` folder, or the
//! output of `nix-store --dump-db`, an exportReferencesGraph file) all give the same bytes;
//! and a database Nix has open is read with its latest changes.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use buildimage_test_support::{Built, require_tool, unpack_oci, write};

use super::{
    BUSYBOX, Fixture, HELLO, LINK, MOTD, NOTE, ROOT, UNUSED, build, copy_store, fixture, scratch,
    sqlite,
};

/// Writes a folder like the output of nixpkgs `closureInfo { rootPaths = ...; }` for
/// `paths` (a whole closure): `registration` with `sha256:<nix32>` hashes and empty
/// deriver lines, sorted by path, and `store-paths`. Returns the folder.
///
/// `extra` adds a reference (referrer, reference) that the store does not have.
fn closure_info(
    fx: &Fixture,
    dir: &Path,
    paths: &BTreeSet<String>,
    extra: Option<(&str, &str)>,
) -> PathBuf {
    let folder = dir.join("closure-info");
    fs::create_dir(&folder).expect("create the closureInfo folder");
    let mut registration = String::new();
    let mut store_paths = String::new();
    for path in paths {
        let info = fx.info(path);
        let mut references = info.references.clone();
        if let Some((referrer, reference)) = extra
            && referrer == path
        {
            references.insert(reference.to_owned());
        }
        let _ = write!(
            registration,
            "{path}\n{}\n{}\n\n{}\n",
            info.hash,
            info.size,
            references.len()
        );
        for reference in &references {
            let _ = writeln!(registration, "{reference}");
        }
        let _ = writeln!(store_paths, "{path}");
    }
    write(&folder.join("registration"), registration.as_bytes(), 0o644);
    write(&folder.join("store-paths"), store_paths.as_bytes(), 0o644);
    folder
}

/// Writes the file a derivation's `exportReferencesGraph` makes for `paths`: the records of
/// `registration` without the hash and size lines. Returns the file.
fn references_graph(fx: &Fixture, dir: &Path, paths: &BTreeSet<String>) -> PathBuf {
    let mut graph = String::new();
    for path in paths {
        let references = &fx.info(path).references;
        let _ = write!(graph, "{path}\n\n{}\n", references.len());
        for reference in references {
            let _ = writeln!(graph, "{reference}");
        }
    }
    let file = dir.join("references-graph");
    write(&file, graph.as_bytes(), 0o644);
    file
}

/// Panics unless `built` is byte for byte the image `reference` is.
fn assert_identical(reference: &Built, built: &Built, what: &str) {
    let (a, b) = (reference.bytes(), built.bytes());
    let first_difference = a.iter().zip(&b).position(|(x, y)| x != y);
    assert!(
        a == b,
        "{what}: the image differs from the one built with the store's database \
         ({} bytes, that one {} bytes; first difference at byte {first_difference:?})",
        b.len(),
        a.len()
    );
    assert_eq!(
        built.store_paths(),
        reference.store_paths(),
        "{what}: storePaths"
    );
    assert_eq!(
        built.info["layer"], reference.info["layer"],
        "{what}: layer"
    );
}

/// Builds `spec` from every source of references and compares the images.
fn same_image_from_every_source(spec: &Value, want: &BTreeSet<String>) {
    let fx = fixture();
    let dir = scratch();
    let info_folder = closure_info(fx, dir.path(), want, None);
    let graph = references_graph(fx, dir.path(), want);
    let dump_db = dir.path().join("dump-db");
    write(&dump_db, fx.dump_db.as_bytes(), 0o644);
    let flag = OsStr::new("--closure-info");

    let reference = build(dir.path(), "database", spec, &fx.store, &[]);
    assert_eq!(
        &reference.store_paths(),
        want,
        "storePaths with the database"
    );

    let scanned = build(dir.path(), "scanning", spec, &fx.hidden, &[]);
    assert_identical(&reference, &scanned, "scanning a store without a database");

    let listed = build(
        dir.path(),
        "closure-info",
        spec,
        &fx.hidden,
        &[flag, info_folder.as_os_str()],
    );
    assert_identical(
        &reference,
        &listed,
        "a store without a database, with --closure-info FOLDER (registration, store-paths)",
    );

    let dumped = build(
        dir.path(),
        "dump-db",
        spec,
        &fx.hidden,
        &[flag, dump_db.as_os_str()],
    );
    assert_identical(
        &reference,
        &dumped,
        "a store without a database, with --closure-info FILE (nix-store --dump-db output)",
    );

    let graphed = build(
        dir.path(),
        "references-graph",
        spec,
        &fx.hidden,
        &[flag, graph.as_os_str()],
    );
    assert_identical(
        &reference,
        &graphed,
        "a store without a database, with --closure-info FILE (exportReferencesGraph: \
         references only, hashes computed)",
    );

    let both = build(
        dir.path(),
        "database-and-closure-info",
        spec,
        &fx.store,
        &[flag, info_folder.as_os_str()],
    );
    assert_identical(
        &reference,
        &both,
        "the store's database and a --closure-info folder",
    );

    // The spec key `closureInfo` is the same listing, relative to the spec's folder.
    let mut keyed = spec.clone();
    keyed["closureInfo"] = json!("closure-info");
    let keyed = build(dir.path(), "closure-info-key", &keyed, &fx.hidden, &[]);
    assert_identical(
        &reference,
        &keyed,
        "a store without a database, with the spec key closureInfo",
    );
}

/// The root of `copyToRoot`, and a config-only path (`Cmd`) that nothing else names.
fn spec(include_nix_db: bool) -> Value {
    let fx = fixture();
    json!({
        "name": "nix-sources",
        "tag": "1",
        "copyToRoot": fx.path(ROOT),
        "includeNixDB": include_nix_db,
        "config": { "Cmd": [format!("{}/bin/sh", fx.path(BUSYBOX))] },
    })
}

#[test]
fn database_scanning_and_closure_info_give_byte_identical_images() {
    let fx = fixture();
    same_image_from_every_source(&spec(false), &fx.closure_of(&[LINK, NOTE, MOTD, BUSYBOX]));
}

#[test]
fn database_scanning_and_closure_info_give_byte_identical_images_with_nix_db() {
    let fx = fixture();
    // The database and its GC root name the copied root itself, so it is in the image too.
    same_image_from_every_source(&spec(true), &fx.closure_of(&[ROOT, BUSYBOX]));
}

#[test]
fn closure_info_references_replace_scanning_but_not_the_store_database() {
    // A listing that says hello also refers to the unreferenced path, which no file names:
    // only a build that reads the listing can find it. The store's own database, when
    // there is one, comes first (docs/formats.md §8.2: authoritative metadata wins).
    let fx = fixture();
    let dir = scratch();
    let (hello, unused) = (fx.path(HELLO), fx.path(UNUSED));
    let scanned = fx.closure_of(&[LINK, NOTE, MOTD]);
    let mut listed = scanned.clone();
    listed.insert(unused.to_owned());
    let folder = closure_info(fx, dir.path(), &listed, Some((hello, unused)));
    let spec = json!({
        "name": "nix-listing",
        "tag": "1",
        "copyToRoot": fx.path(ROOT),
        "compressor": "none",
    });
    let flag = OsStr::new("--closure-info");
    let built = build(dir.path(), "scanning", &spec, &fx.hidden, &[]);
    assert_eq!(built.store_paths(), scanned, "scanning alone");
    let built = build(
        dir.path(),
        "listing",
        &spec,
        &fx.hidden,
        &[flag, folder.as_os_str()],
    );
    assert_eq!(
        built.store_paths(),
        listed,
        "--closure-info on a store without a database: the listing's references count"
    );
    let built = build(
        dir.path(),
        "database",
        &spec,
        &fx.store,
        &[flag, folder.as_os_str()],
    );
    assert_eq!(
        built.store_paths(),
        scanned,
        "--closure-info on a store with a database: the database's references count"
    );
}

#[test]
fn store_database_changes_still_in_the_wal_are_seen() {
    // Nix keeps its database in WAL mode: while a Nix process has it open, recent changes
    // may live only in `db.sqlite-wal` (docs/formats.md §10.6). Hold a connection with an
    // uncheckpointed change open during the build; the image's database must show it.
    require_tool("sqlite3", "sqlite3");
    let fx = fixture();
    let dir = scratch();
    let store = dir.path().join("store");
    copy_store(&fx.store, &store, true);
    let db = store.join("nix/var/nix/db/db.sqlite");
    let hello = fx.path(HELLO);
    let mut session = Command::new("sqlite3")
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sqlite3");
    let mut input = session.stdin.take().expect("piped stdin");
    writeln!(
        input,
        "PRAGMA wal_autocheckpoint = 0;\n\
         UPDATE ValidPaths SET narSize = 4242 WHERE path = '{hello}';\n\
         SELECT 'committed';"
    )
    .expect("write to sqlite3");
    input.flush().expect("write to sqlite3");
    // `PRAGMA wal_autocheckpoint` prints the new value first; wait for the marker.
    let mut output = BufReader::new(session.stdout.take().expect("piped stdout"));
    let mut seen = String::new();
    while !seen.ends_with("committed\n") {
        let read = output.read_line(&mut seen).expect("read from sqlite3");
        assert!(read > 0, "sqlite3 did not commit the change:\n{seen}");
    }
    let wal = store.join("nix/var/nix/db/db.sqlite-wal");
    let wal_size = fs::metadata(&wal).map_or(0, |m| m.len());

    let spec = json!({
        "name": "nix-wal",
        "tag": "1",
        "copyToRoot": fx.path(ROOT),
        "includeNixDB": true,
        "compressor": "none",
    });
    let built = build(dir.path(), "wal", &spec, &store, &[]);
    drop(input);
    let status = session.wait().expect("wait for sqlite3");
    assert!(status.success(), "sqlite3 failed: {status}");
    assert!(
        wal_size > 0,
        "the change was checkpointed before the build: the test proves nothing"
    );

    let unpacked = unpack_oci(&built.archive);
    let image_db = unpacked.rootfs().join("nix/var/nix/db/db.sqlite");
    assert_eq!(
        sqlite(
            &image_db,
            &format!("SELECT narSize FROM ValidPaths WHERE path = '{hello}'")
        ),
        "4242",
        "the image's database misses a change that was still in the source's WAL"
    );
}
