//! An ordinary user of a multi-user install builds from the store's root-owned database
//! (docs/formats.md §10.6): `nix/var/nix/db` is 0755 root and `db.sqlite` 0644 root, so the
//! user can create no `-wal` or `-shm` beside it. `buildimage` runs as uid 65534 and must
//! read the database in every state Nix 2.8 leaves it in: closed (no side files), or held
//! open by another process (the last commits only in `db.sqlite-wal`), with or without a
//! usable `-shm`; and it must write nothing beside the database and leave nothing in
//! `TMPDIR`.
//!
//! Once broken: every build failed with `attempt to write a readonly database:
//! SQLITE_READONLY_DIRECTORY`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;

use buildimage_test_support::{
    Buildimage, Built, TestDir, chmod, mkdir, require_tool, run_ok, write,
};

use super::{EPOCH, ROOT, base_name, copy_store, fixture, nix_store, scratch, sqlite, stdout};

/// Where the database lives below a store root.
const DB_DIR: &str = "nix/var/nix/db";

/// What `note.txt` in a path added by [`add`] holds.
const NOTE_TEXT: &[u8] = b"registered by nix-store --add\n";

/// The user `nobody`, who runs the builds.
const NOBODY: u32 = 65534;

/// A copy of the fixture store laid out as a multi-user install has it, in a scratch
/// folder every user can enter: folders 0755 root, `db.sqlite` and `schema` 0644 root, no
/// side files. Returns the scratch folder and the store root.
fn install() -> (TestDir, PathBuf) {
    let dir = scratch();
    chmod(dir.path(), 0o755);
    let root = dir.join("store");
    copy_store(&fixture().store, &root, true);
    // copy_store made these folders under the test's umask; Nix makes them 0755.
    for folder in ["", "nix", "nix/var", "nix/var/nix", DB_DIR] {
        chmod(&root.join(folder), 0o755);
    }
    let db = root.join(DB_DIR);
    for file in ["db.sqlite", "schema"] {
        chmod(&db.join(file), 0o644);
    }
    (dir, root)
}

/// Adds a folder `name` holding `note.txt` to the store with `nix-store --add`, and returns
/// its store path.
fn add(dir: &TestDir, root: &Path, name: &str) -> String {
    let source = dir.join(name);
    mkdir(&source, 0o755);
    write(&source.join("note.txt"), NOTE_TEXT, 0o644);
    let path = stdout(run_ok(nix_store(root).arg("--add").arg(&source)));
    path.trim().to_owned()
}

/// [`add`] while a `sqlite3` process holds a read transaction on the database, then kills
/// that process, as a crash or `kill -9` would: Nix's commit stays in `db.sqlite-wal`.
///
/// Any open connection keeps Nix's last close from checkpointing the log into `db.sqlite`
/// and deleting the side files; killing the holder keeps its own close from doing it. Nix
/// then leaves `db.sqlite-wal` and `db.sqlite-shm` with the mode and owner of `db.sqlite`
/// (0644 root), as after any Nix process that was killed with the database open.
fn add_behind_a_reader(dir: &TestDir, root: &Path, name: &str) -> String {
    require_tool("sqlite3", "sqlite3");
    let db = root.join(DB_DIR).join("db.sqlite");
    let mut reader = Command::new("sqlite3")
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sqlite3");
    let mut input = reader.stdin.take().expect("piped stdin");
    writeln!(input, "BEGIN; SELECT count(*) FROM ValidPaths;").expect("write to sqlite3");
    input.flush().expect("write to sqlite3");
    let mut count = String::new();
    BufReader::new(reader.stdout.take().expect("piped stdout"))
        .read_line(&mut count)
        .expect("read from sqlite3");
    assert!(
        count.trim().parse::<u64>().is_ok_and(|n| n > 0),
        "sqlite3 did not open a read transaction: {count:?}"
    );
    let path = add(dir, root, name);
    reader.kill().expect("kill sqlite3");
    reader.wait().expect("wait for sqlite3");
    drop(input);

    let wal = root.join(DB_DIR).join("db.sqlite-wal");
    let wal_len = fs::metadata(&wal).map_or(0, |m| m.len());
    assert!(
        wal_len > 0,
        "{} is empty or missing: the commit was checkpointed and the test proves nothing",
        wal.display()
    );
    assert_eq!(
        in_main_file(root, &path),
        "0",
        "{path} is in db.sqlite itself: the test proves nothing"
    );
    path
}

/// How many `ValidPaths` rows of `db.sqlite` alone (its write-ahead log ignored) are `path`.
fn in_main_file(root: &Path, path: &str) -> String {
    let uri = format!(
        "file:{}?immutable=1",
        root.join(DB_DIR).join("db.sqlite").display()
    );
    sqlite(
        Path::new(&uri),
        &format!("SELECT count(*) FROM ValidPaths WHERE path = '{path}'"),
    )
}

/// Name, owner, mode, size and modification time of every file in the database folder.
fn db_files(root: &Path) -> BTreeMap<String, (u32, u32, u64, i64, i64)> {
    let db = root.join(DB_DIR);
    fs::read_dir(&db)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", db.display()))
        .map(|entry| {
            let entry = entry.expect("list the database folder");
            let meta = entry.metadata().expect("stat a database file");
            (
                entry.file_name().to_string_lossy().into_owned(),
                (
                    meta.uid(),
                    meta.mode(),
                    meta.len(),
                    meta.mtime(),
                    meta.mtime_nsec(),
                ),
            )
        })
        .collect()
}

/// `buildimage` as `nobody`, from a folder `out` that nobody may write, with `dir`'s
/// `tmp` as `TMPDIR`: `build SPEC -o out/NAME.tar --store ROOT`, where SPEC copies
/// `paths` to the root and, with `includeNixDB`, puts them and their closure into the
/// image's store and database.
fn command(dir: &TestDir, root: &Path, name: &str, paths: &[&str]) -> Buildimage {
    let out = dir.join("out");
    if !out.is_dir() {
        mkdir(&out, 0o777);
    }
    let tmp = dir.tmp();
    chmod(&tmp, 0o777);
    let spec = out.join(format!("{name}.json"));
    write(
        &spec,
        json!({
            "name": "multi-user",
            "tag": name,
            "copyToRoot": paths,
            "includeNixDB": true,
            "compressor": "none",
        })
        .to_string()
        .as_bytes(),
        0o644,
    );
    let mut cmd = Buildimage::new();
    cmd.as_nobody(&out)
        .tmpdir(&tmp)
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .build(&spec)
        .out(out.join(format!("{name}.tar")))
        .store(root);
    cmd
}

/// Builds, as `nobody`, an image of the fixture's image root and `added`; checks that it
/// holds the closure the database gives, `added`'s file and a database row for `added`,
/// and that the build wrote nothing beside the database and left nothing in `TMPDIR`.
fn build_as_nobody(dir: &TestDir, root: &Path, name: &str, added: &str) -> Built {
    let fx = fixture();
    let before = db_files(root);
    let built = command(dir, root, name, &[fx.path(ROOT), added]).json();
    assert_eq!(
        fs::metadata(&built.archive).expect("stat the image").uid(),
        NOBODY,
        "the build did not run as nobody"
    );
    let mut want: BTreeSet<String> = fx.closure_of(&[ROOT]);
    want.insert(added.to_owned());
    assert_eq!(built.store_paths(), want, "storePaths");
    assert_eq!(
        built
            .read()
            .layer_file(&format!("nix/store/{}/note.txt", base_name(added))),
        NOTE_TEXT,
        "the image's copy of {added}"
    );
    let image_db = dir.join(format!("{name}-db.sqlite"));
    write(
        &image_db,
        &built.read().layer_file("./nix/var/nix/db/db.sqlite"),
        0o644,
    );
    assert_eq!(
        sqlite(
            &image_db,
            &format!("SELECT count(*) FROM ValidPaths WHERE path = '{added}'")
        ),
        "1",
        "{added} in the image's database"
    );
    assert_eq!(
        db_files(root),
        before,
        "the build changed the files beside the database"
    );
    dir.assert_tmp_empty();
    built
}

#[test]
fn an_ordinary_user_reads_a_root_owned_database_that_nix_closed() {
    let (dir, root) = install();
    let added = add(&dir, &root, "closed");
    // Nix's last close checkpoints the log into db.sqlite and deletes both side files.
    let files: Vec<String> = db_files(&root).into_keys().collect();
    assert!(
        !files.iter().any(|f| f.starts_with("db.sqlite-")),
        "nix-store left side files: {files:?}"
    );
    assert_eq!(in_main_file(&root, &added), "1");
    build_as_nobody(&dir, &root, "closed", &added);
}

#[test]
fn an_ordinary_user_reads_paths_only_in_the_wal_of_a_root_owned_database() {
    // The side files as Nix leaves them, readable by all: SQLite reads the log in place
    // through the existing index without writing it.
    let (dir, root) = install();
    let added = add_behind_a_reader(&dir, &root, "in-wal");
    build_as_nobody(&dir, &root, "in-wal", &added);
}

#[test]
fn an_ordinary_user_reads_paths_only_in_the_wal_when_the_shm_is_gone() {
    // Without an index SQLite would have to create one beside the database.
    let (dir, root) = install();
    let added = add_behind_a_reader(&dir, &root, "no-shm");
    fs::remove_file(root.join(DB_DIR).join("db.sqlite-shm")).expect("remove db.sqlite-shm");
    build_as_nobody(&dir, &root, "no-shm", &added);
}

#[test]
fn an_ordinary_user_reads_paths_only_in_the_wal_when_the_shm_is_root_only() {
    let (dir, root) = install();
    let added = add_behind_a_reader(&dir, &root, "root-shm");
    chmod(&root.join(DB_DIR).join("db.sqlite-shm"), 0o600);
    build_as_nobody(&dir, &root, "root-shm", &added);
}

#[test]
fn an_ordinary_user_is_told_that_a_root_only_wal_cannot_be_read() {
    // The log may hold paths the main file lacks, or delete paths it lists: reading the
    // main file alone could give a wrong image, so the build fails and names the log.
    let fx = fixture();
    let (dir, root) = install();
    let added = add_behind_a_reader(&dir, &root, "root-wal");
    let wal = root.join(DB_DIR).join("db.sqlite-wal");
    chmod(&wal, 0o600);
    let before = db_files(&root);
    let output = command(&dir, &root, "root-wal", &[fx.path(ROOT), &added]).run_err();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "Cannot open the Nix store at {}: Cannot read the write-ahead log {}: \
             Permission denied",
            root.display(),
            wal.display()
        )),
        "the error names the log and the cause:\n{stderr}"
    );
    assert!(
        !dir.join("out/root-wal.tar").exists(),
        "a failed build left its output"
    );
    assert_eq!(db_files(&root), before, "files beside the database changed");
    dir.assert_tmp_empty();
}
