//! The Nix store database, `nix/var/nix/db/db.sqlite`: reading a store's, writing an image's.
//!
//! [`write_db`] writes the database that nixpkgs' `includeNixDB` gets from
//! `nix-store --load-db` followed by `UPDATE ValidPaths SET registrationTime = ...`, without
//! running Nix: the schema of Nix 2.10 to 2.34 verbatim ([`SCHEMA_SQL`]), one `ValidPaths`
//! row per path with ids 1..N in sorted path order, one `Refs` row per reference
//! (self-references included), in WAL mode, plus the `schema` file holding `10`.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use buildimage_nixdb::{PathInfo, StorePath, db};
//!
//! let dir = tempfile::tempdir()?;
//! let path = StorePath::new("/nix/store/h4lyvgdxy8acvyss6p8ps7ji50n6yw0d-hello-dep-1.0")?;
//! let mut info = PathInfo::new(path.clone());
//! info.nar_hash = Some([0x11; 32]);
//! info.nar_size = Some(1048);
//! info.references.insert(path);
//! db::write_db(dir.path(), &[info], 315_532_800)?;
//! assert_eq!(std::fs::read(dir.path().join("schema"))?, b"10");
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};

use crate::closure::PathInfo;
use crate::error::{Error, Result};
use crate::hash::{self, HashForm};
use crate::store_path::StorePath;

/// Where the database lives below a store root.
pub const DB_DIR: &str = "nix/var/nix/db";

/// The file name of the database in [`DB_DIR`].
pub const DB_FILE: &str = "db.sqlite";

/// The content of the `schema` file: the schema version, two ASCII bytes, no newline.
///
/// Nix 2.8 calls `10\n` corrupt and refuses `11`. Version 10 is current from Nix 2.0
/// through 2.35.
pub const SCHEMA_VERSION: &[u8] = b"10";

/// The DDL Nix 2.10 to 2.34 execute when they create a database, verbatim.
///
/// Nix 2.8 and 2.9 lack the `-- base16 representation` comment; nothing else differs. Later
/// releases migrate a database with this schema on first open.
pub const SCHEMA_SQL: &str = r#"create table if not exists ValidPaths (
    id               integer primary key autoincrement not null,
    path             text unique not null,
    hash             text not null, -- base16 representation
    registrationTime integer not null,
    deriver          text,
    narSize          integer,
    ultimate         integer, -- null implies "false"
    sigs             text, -- space-separated
    ca               text -- if not null, an assertion that the path is content-addressed; see ValidPathInfo
);

create table if not exists Refs (
    referrer  integer not null,
    reference integer not null,
    primary key (referrer, reference),
    foreign key (referrer) references ValidPaths(id) on delete cascade,
    foreign key (reference) references ValidPaths(id) on delete restrict
);

create index if not exists IndexReferrer on Refs(referrer);
create index if not exists IndexReference on Refs(reference);

-- Paths can refer to themselves, causing a tuple (N, N) in the Refs
-- table.  This causes a deletion of the corresponding row in
-- ValidPaths to cause a foreign key constraint violation (due to `on
-- delete restrict' on the `reference' column).  Therefore, explicitly
-- get rid of self-references.
create trigger if not exists DeleteSelfRefs before delete on ValidPaths
  begin
    delete from Refs where referrer = old.id and reference = old.id;
  end;

create table if not exists DerivationOutputs (
    drv  integer not null,
    id   text not null, -- symbolic output id, usually "out"
    path text not null,
    primary key (drv, id),
    foreign key (drv) references ValidPaths(id) on delete cascade
);

create index if not exists IndexDerivationOutputs on DerivationOutputs(path);
"#;

/// Writes `db.sqlite` and `schema` into `dir` (an image's `nix/var/nix/db`) for `infos`.
///
/// - Every info needs its NAR hash and size; every reference must be one of the infos; the
///   references must form no cycle other than self-references (Nix refuses cycles). The
///   order of `infos` does not matter.
/// - Columns: `id` 1..N in sorted path order, `hash` `sha256:<hex>`, `registrationTime` as
///   given (nixpkgs uses `SOURCE_DATE_EPOCH`, 315532800 by default), `narSize`, and NULL
///   `deriver`, `ultimate`, `sigs` and `ca`.
/// - `Refs` rows go in referrer order, then reference order, with `insert or replace`.
/// - Page size 4096, foreign keys on, all rows in one transaction, then
///   `PRAGMA journal_mode = WAL` and a clean close, so `db.sqlite` is in WAL mode (header
///   bytes 18 and 19 are 2) with no `-wal` or `-shm` file beside it.
/// - Both files get mode 0644 whatever the umask.
///
/// `dir` is created if needed; an existing database there is replaced.
///
/// The bytes depend only on the arguments and on the bundled SQLite version, which the file
/// records at offset 96.
pub fn write_db(dir: &Path, infos: &[PathInfo], registration_time: i64) -> Result<()> {
    let rows = plan_rows(infos)?;
    fs::create_dir_all(dir).map_err(|e| Error::io("create the directory", dir, e))?;
    let db_path = dir.join(DB_FILE);
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = db_path.clone().into_os_string();
        name.push(suffix);
        let file = PathBuf::from(name);
        match fs::remove_file(&file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(Error::io("remove", file, e));
            }
            _ => {}
        }
    }
    let sql = |e| Error::sqlite(&db_path, e);
    let mut conn = Connection::open_with_flags(
        &db_path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    // Must come before the first table; 4096 is SQLite's default, but the default is a
    // compile-time option.
    conn.pragma_update(None, "page_size", 4096).map_err(sql)?;
    conn.pragma_update(None, "foreign_keys", 1).map_err(sql)?;
    let tx = conn.transaction().map_err(sql)?;
    tx.execute_batch(SCHEMA_SQL).map_err(sql)?;
    {
        let mut insert = tx
            .prepare(
                "insert into ValidPaths (path, hash, registrationTime, deriver, narSize, \
                 ultimate, sigs, ca) values (?1, ?2, ?3, NULL, ?4, NULL, NULL, NULL)",
            )
            .map_err(sql)?;
        for (index, row) in rows.iter().enumerate() {
            let size = i64::try_from(row.nar_size).map_err(|_| Error::NarSizeTooLarge {
                path: row.path.to_string(),
                size: row.nar_size,
            })?;
            let id = insert
                .insert(params![
                    row.path.as_str(),
                    row.hash,
                    registration_time,
                    size
                ])
                .map_err(sql)?;
            debug_assert_eq!(usize::try_from(id).ok(), Some(index + 1));
        }
        let mut reference = tx
            .prepare("insert or replace into Refs (referrer, reference) values (?1, ?2)")
            .map_err(sql)?;
        for (index, row) in rows.iter().enumerate() {
            for &to in &row.references {
                reference.execute(params![index + 1, to + 1]).map_err(sql)?;
            }
        }
    }
    tx.commit().map_err(sql)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(sql)?;
    debug_assert_eq!(mode, "wal");
    conn.close().map_err(|(_, e)| sql(e))?;

    let schema = dir.join("schema");
    fs::write(&schema, SCHEMA_VERSION).map_err(|e| Error::io("write", &schema, e))?;
    for file in [&db_path, &schema] {
        fs::set_permissions(file, fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io("set the mode of", file, e))?;
    }
    Ok(())
}

/// One `ValidPaths` row, with its references as indexes into the sorted rows.
struct Row<'a> {
    path: &'a StorePath,
    hash: String,
    nar_size: u64,
    references: Vec<usize>,
}

/// Sorts and checks the infos: hash and size present, no duplicates, no dangling references,
/// no cycles.
fn plan_rows(infos: &[PathInfo]) -> Result<Vec<Row<'_>>> {
    let mut sorted: Vec<&PathInfo> = infos.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut index = BTreeMap::new();
    for (i, info) in sorted.iter().enumerate() {
        if index.insert(&info.path, i).is_some() {
            return Err(Error::DuplicatePath {
                path: info.path.to_string(),
            });
        }
    }
    let rows = sorted
        .iter()
        .map(|info| {
            let (Some(nar_hash), Some(nar_size)) = (info.nar_hash, info.nar_size) else {
                return Err(Error::MissingNarInfo {
                    path: info.path.to_string(),
                });
            };
            // A BTreeSet iterates in path order, which is id order.
            let references = info
                .references
                .iter()
                .map(|r| {
                    index
                        .get(r)
                        .copied()
                        .ok_or_else(|| Error::DanglingReference {
                            path: info.path.to_string(),
                            reference: r.to_string(),
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Row {
                path: &info.path,
                hash: hash::format(&nar_hash, HashForm::Base16),
                nar_size,
                references,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    check_acyclic(&rows)?;
    Ok(rows)
}

/// Fails when the reference graph, self-loops aside, has a cycle.
fn check_acyclic(rows: &[Row<'_>]) -> Result<()> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        Open,
        Done,
    }
    let mut state = vec![State::New; rows.len()];
    for start in 0..rows.len() {
        if state[start] != State::New {
            continue;
        }
        // Iterative depth-first search: (node, next reference to follow).
        let mut stack = vec![(start, 0)];
        state[start] = State::Open;
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            if let Some(&to) = rows[node].references.get(next) {
                top.1 += 1;
                if to == node {
                    continue;
                }
                match state[to] {
                    State::New => {
                        state[to] = State::Open;
                        stack.push((to, 0));
                    }
                    State::Open => {
                        return Err(Error::ReferenceCycle {
                            path: rows[to].path.to_string(),
                        });
                    }
                    State::Done => {}
                }
            } else {
                state[node] = State::Done;
                stack.pop();
            }
        }
    }
    Ok(())
}

/// How many times a copy or a query is tried while the database keeps changing under it.
/// Each change needs a Nix process to commit and checkpoint within that short window; two
/// in a row are already rare.
const ATTEMPTS: usize = 5;

/// How a [`StoreDb`] reads the database (see [`StoreDb::open`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// `mode=ro` on the file itself.
    InPlace,
    /// `immutable=1` on the file itself: no lock, no side file, no write-ahead log.
    Immutable,
    /// `mode=ro` on a private copy of `db.sqlite` and `db.sqlite-wal`.
    Copy,
}

/// A store's database, opened for reading by whoever runs the build, root or not.
///
/// The connection sits behind a mutex so that a [`crate::Store`] can be shared between
/// threads; queries are short.
pub(crate) struct StoreDb {
    path: PathBuf,
    reader: Mutex<Reader>,
}

impl std::fmt::Debug for StoreDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreDb")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl StoreDb {
    /// Opens the database `path` read-only, in the first of three ways that works.
    ///
    /// Nix keeps its database in WAL mode: a commit goes to `db.sqlite-wal`, readers find it
    /// there through the index in `db.sqlite-shm`, and a checkpoint later copies it into
    /// `db.sqlite`. Nix 2.8 checkpoints and deletes both side files when its last
    /// connection closes; while a Nix process has the database open, or after one was
    /// killed, they stay, with the mode of `db.sqlite`. In a multi-user install the folder
    /// is root's and not writable by the users, who can then neither create the side files
    /// nor write the index. So:
    ///
    /// 1. `mode=ro` on the file. SQLite reads the log in place, with an index it creates
    ///    when the folder is writable, or with the existing `-wal` and `-shm` when it can
    ///    read them. This is what root gets, and the only way that also sees commits made
    ///    after the open. (When it has to create the side files it leaves them behind, as
    ///    a read-only connection cannot remove them; Nix uses them as its own.)
    /// 2. When SQLite cannot create or open the side files and there is no `-wal`, or an
    ///    empty one, every commit is in `db.sqlite`: `immutable=1`, which reads the main
    ///    file without locks or side files. This is the usual case for an ordinary user,
    ///    since the files are gone whenever no Nix process runs. Without locks, a Nix
    ///    process that starts later and checkpoints could change the file under a query,
    ///    so the file's identity, size and times are compared before the open, after it
    ///    and around every query; when they changed, the database is opened again from
    ///    step 1 and the query repeated. A `-wal` that appears during the open also moves
    ///    on to step 3.
    /// 3. Otherwise (a non-empty `-wal` next to an index that is missing or unreadable):
    ///    `db.sqlite` and `db.sqlite-wal` are copied into a private temporary folder and
    ///    the copy is opened `mode=ro`; SQLite rebuilds the index from the copied log, so
    ///    commits that are only in the log are seen. The copy is made again when either
    ///    file changed while it was copied, and the folder is removed when the
    ///    `StoreDb` is dropped. A `-wal` the user cannot read is an error: its commits
    ///    cannot be seen, and the main file alone may list paths the log has deleted.
    ///
    /// None of these writes next to the database unless step 1 can. Errors name `path`
    /// (or its `-wal`), never the copy.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        Ok(StoreDb {
            path: path.to_owned(),
            reader: Mutex::new(Reader::open(path)?),
        })
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `read` on the connection, again on a new one when the database changed under
    /// an `immutable=1` connection (see [`StoreDb::open`]).
    fn read<T>(&self, read: impl Fn(&Connection) -> Result<T>) -> Result<T> {
        let mut reader = self
            .reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for _ in 0..ATTEMPTS {
            if !reader.is_current(&self.path) {
                *reader = Reader::open(&self.path)?;
            }
            let result = read(&reader.conn);
            if reader.is_current(&self.path) {
                return result;
            }
        }
        Err(kept_changing(&self.path))
    }

    /// The `path` column of every row.
    pub(crate) fn valid_paths(&self) -> Result<BTreeSet<String>> {
        let sql = |e| Error::sqlite(&self.path, e);
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("select path from ValidPaths")
                .map_err(sql)?;
            stmt.query_map([], |row| row.get(0))
                .map_err(sql)?
                .collect::<rusqlite::Result<_>>()
                .map_err(sql)
        })
    }

    /// The row of `path` with its references, or `None` when the path is not valid.
    ///
    /// An all-zero hash and a NULL or zero `narSize` read as unknown (`None`), as Nix treats
    /// them (`nix-store --verify` fills them in).
    pub(crate) fn query(&self, path: &StorePath) -> Result<Option<PathInfo>> {
        self.read(|conn| self.query_in(conn, path))
    }

    /// [`StoreDb::query`] on `conn`.
    fn query_in(&self, conn: &Connection, path: &StorePath) -> Result<Option<PathInfo>> {
        let sql = |e| Error::sqlite(&self.path, e);
        let row: Option<(i64, String, Option<i64>)> = conn
            .prepare_cached("select id, hash, narSize from ValidPaths where path = ?1")
            .map_err(sql)?
            .query_row([path.as_str()], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .optional()
            .map_err(sql)?;
        let Some((id, hash_text, size)) = row else {
            return Ok(None);
        };
        let bad_row = |source: Error| Error::DbRow {
            db: self.path.clone(),
            store_path: path.to_string(),
            source: Box::new(source),
        };
        let nar_hash = hash::parse_sha256(&hash_text).map_err(bad_row)?;
        let nar_size = match size {
            None | Some(0) => None,
            Some(n) => Some(u64::try_from(n).map_err(|_| {
                bad_row(Error::InvalidHash {
                    hash: n.to_string(),
                    reason: "negative narSize",
                })
            })?),
        };
        let references = conn
            .prepare_cached(
                "select v.path from Refs r join ValidPaths v on r.reference = v.id \
                 where r.referrer = ?1",
            )
            .map_err(sql)?
            .query_map([id], |row| row.get::<_, String>(0))
            .map_err(sql)?
            .map(|r| {
                let text = r.map_err(sql)?;
                StorePath::new(&text).map_err(bad_row)
            })
            .collect::<Result<BTreeSet<_>>>()?;
        Ok(Some(PathInfo {
            path: path.clone(),
            nar_hash: (nar_hash != [0; 32]).then_some(nar_hash),
            nar_size,
            references,
        }))
    }
}

/// One open connection to a store's database, and what it needs to stay valid.
struct Reader {
    /// Declared before `_copy`, so that it is closed before the copy is removed.
    conn: Connection,
    access: Access,
    /// With [`Access::Immutable`]: the main file when it was opened.
    opened: Option<Stamp>,
    /// With [`Access::Copy`]: the private folder holding the copy, kept for its drop,
    /// which removes it.
    _copy: Option<tempfile::TempDir>,
}

impl Reader {
    /// Steps 1 to 3 of [`StoreDb::open`].
    fn open(path: &Path) -> Result<Reader> {
        let err = match connect(path, "mode=ro") {
            Ok(conn) => {
                return Ok(Reader {
                    conn,
                    access: Access::InPlace,
                    opened: None,
                    _copy: None,
                });
            }
            Err(err) => err,
        };
        let wal = Stamp::of(&wal_path(path));
        match fallback(&err, wal.map(|w| w.len)) {
            None => Err(Error::sqlite(path, err)),
            Some(Access::Immutable) => match Reader::immutable(path)? {
                Some(reader) => Ok(reader),
                None => Reader::copy(path),
            },
            Some(_) => Reader::copy(path),
        }
    }

    /// Step 2: `immutable=1`, or `None` when the files changed during the open or a
    /// non-empty `-wal` is there.
    fn immutable(path: &Path) -> Result<Option<Reader>> {
        let wal = wal_path(path);
        let before = (Stamp::of(path), Stamp::of(&wal));
        if before.1.is_some_and(|w| w.len > 0) {
            return Ok(None);
        }
        let conn = connect(path, "mode=ro&immutable=1").map_err(|e| Error::sqlite(path, e))?;
        if (Stamp::of(path), Stamp::of(&wal)) != before {
            return Ok(None);
        }
        Ok(Some(Reader {
            conn,
            access: Access::Immutable,
            opened: before.0,
            _copy: None,
        }))
    }

    /// Step 3: a private copy of `db.sqlite` and, if there is one, `db.sqlite-wal`, in a
    /// new folder in `TMPDIR`.
    fn copy(path: &Path) -> Result<Reader> {
        Reader::copy_in(path, &std::env::temp_dir())
    }

    /// [`Reader::copy`] with a new folder in `parent`.
    fn copy_in(path: &Path, parent: &Path) -> Result<Reader> {
        let wal = wal_path(path);
        for _ in 0..ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("buildimage-nixdb.")
                .tempdir_in(parent)
                .map_err(|e| Error::io("make a private copy of", path, e))?;
            let copy = dir.path().join(DB_FILE);
            let before = (Stamp::of(path), Stamp::of(&wal));
            fs::copy(path, &copy).map_err(|e| Error::io("copy", path, e))?;
            if before.1.is_some() {
                match fs::copy(&wal, wal_path(&copy)) {
                    Ok(_) => {}
                    // Checkpointed and removed since: start again.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io("read the write-ahead log", wal, e)),
                }
            }
            if (Stamp::of(path), Stamp::of(&wal)) != before {
                continue;
            }
            let conn = connect(&copy, "mode=ro").map_err(|e| Error::sqlite(path, e))?;
            return Ok(Reader {
                conn,
                access: Access::Copy,
                opened: None,
                _copy: Some(dir),
            });
        }
        Err(kept_changing(path))
    }

    /// Whether the connection still reads what is in `path`: only an `immutable=1`
    /// connection can be out of date, once the main file changed.
    fn is_current(&self, path: &Path) -> bool {
        self.access != Access::Immutable || Stamp::of(path) == self.opened
    }
}

/// What to try after `mode=ro` failed with `err`, given the size of the `-wal` file
/// (`None`: there is none); `None` when the error is not about the side files.
///
/// In a folder it cannot write, SQLite 3.50 says `SQLITE_READONLY_DIRECTORY` when the
/// `-wal` is missing, `SQLITE_CANTOPEN` when only the `-shm` is missing or either cannot
/// be read, and may say another `SQLITE_READONLY` code when it cannot use a read-only
/// index (`_CANTINIT`, `_RECOVERY`, `_CANTLOCK`). A database it cannot read at all fails
/// the fallback too, with an error that names the same file.
fn fallback(err: &rusqlite::Error, wal_len: Option<u64>) -> Option<Access> {
    if !matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen)
    ) {
        return None;
    }
    match wal_len {
        None | Some(0) => Some(Access::Immutable),
        Some(_) => Some(Access::Copy),
    }
}

/// Opens `file:<path>?<params>` read-only, and checks that it is a Nix database: the
/// first read is where SQLite opens the side files, and where a file that is not a
/// database shows.
fn connect(path: &Path, params: &str) -> rusqlite::Result<Connection> {
    let uri = format!("file:{}?{params}", uri_escape(path));
    let conn = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.prepare("select id, path, hash, narSize from ValidPaths limit 0")
        .and_then(|mut stmt| stmt.query([]).map(drop))?;
    Ok(conn)
}

/// `<path>-wal`.
fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// The error when the database kept changing under a copy or an `immutable=1` read.
fn kept_changing(path: &Path) -> Error {
    Error::io(
        "read a stable state of",
        path,
        io::Error::other(format!(
            "it changed {ATTEMPTS} times while it was read (is a Nix process writing to it?)"
        )),
    )
}

/// What any write to a file, or its replacement, changes: its identity, size and times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    /// `None` when `path` cannot be examined (for a side file: when there is none).
    fn of(path: &Path) -> Option<Stamp> {
        let meta = fs::metadata(path).ok()?;
        Some(Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

/// Percent-encodes a file name for an SQLite `file:` URI (`?`, `#`, `%` and non-ASCII bytes
/// would otherwise change its meaning).
fn uri_escape(path: &Path) -> String {
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(name: &str) -> StorePath {
        let part = crate::nix32::encode(&crate::nix32::compress_hash(
            &<sha2::Sha256 as sha2::Digest>::digest(format!("fake:{name}")),
            20,
        ));
        StorePath::from_base_name(&format!("{part}-{name}")).unwrap()
    }

    fn info(name: &str, refs: &[&str]) -> PathInfo {
        let mut i = PathInfo::new(sp(name));
        i.nar_hash = Some([name.len() as u8; 32]);
        i.nar_size = Some(96 + name.len() as u64);
        i.references = refs.iter().map(|r| sp(r)).collect();
        i
    }

    fn sample() -> Vec<PathInfo> {
        vec![
            info("hello", &["hello", "dep"]),
            info("dep", &[]),
            info("root", &["hello"]),
        ]
    }

    fn open(dir: &Path) -> Connection {
        Connection::open(dir.join(DB_FILE)).unwrap()
    }

    #[test]
    fn writes_the_same_bytes_every_time() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let mut reversed = sample();
        reversed.reverse();
        write_db(a.path(), &sample(), 315_532_800).unwrap();
        write_db(b.path(), &reversed, 315_532_800).unwrap();
        let bytes = fs::read(a.path().join(DB_FILE)).unwrap();
        assert_eq!(bytes, fs::read(b.path().join(DB_FILE)).unwrap());
        // Writing again over an existing database gives the same bytes too.
        write_db(a.path(), &sample(), 315_532_800).unwrap();
        assert_eq!(bytes, fs::read(a.path().join(DB_FILE)).unwrap());
    }

    #[test]
    fn files_header_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        write_db(dir.path(), &sample(), 315_532_800).unwrap();
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["db.sqlite", "schema"],
            "no -wal, -shm or -journal left"
        );
        assert_eq!(fs::read(dir.path().join("schema")).unwrap(), b"10");
        for name in &names {
            let mode = fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o7777, 0o644, "{name}");
        }
        let bytes = fs::read(dir.path().join(DB_FILE)).unwrap();
        assert_eq!(&bytes[..16], b"SQLite format 3\0");
        assert_eq!(
            u16::from_be_bytes([bytes[16], bytes[17]]),
            4096,
            "page size"
        );
        assert_eq!(&bytes[18..20], &[2, 2], "WAL mode");
        let conn = open(dir.path());
        let check: String = conn
            .query_row("pragma integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let fk: Option<String> = conn
            .query_row("pragma foreign_key_check", [], |r| r.get(0))
            .optional()
            .unwrap();
        assert_eq!(fk, None);
    }

    #[test]
    fn ddl_is_stored_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        write_db(dir.path(), &[], 0).unwrap();
        let conn = open(dir.path());
        let sql: String = conn
            .query_row(
                "select sql from sqlite_master where name = 'ValidPaths'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(sql.contains("hash             text not null, -- base16 representation\n"));
        let names: Vec<String> = conn
            .prepare("select name from sqlite_master order by rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            names,
            [
                "ValidPaths",
                "sqlite_autoindex_ValidPaths_1",
                "sqlite_sequence",
                "Refs",
                "sqlite_autoindex_Refs_1",
                "IndexReferrer",
                "IndexReference",
                "DeleteSelfRefs",
                "DerivationOutputs",
                "sqlite_autoindex_DerivationOutputs_1",
                "IndexDerivationOutputs",
            ]
        );
        let rows: i64 = conn
            .query_row("select count(*) from ValidPaths", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0, "an empty closure still gets the schema");
    }

    #[test]
    fn rows_follow_the_column_rules() {
        let dir = tempfile::tempdir().unwrap();
        write_db(dir.path(), &sample(), 315_532_800).unwrap();
        let conn = open(dir.path());
        let mut sorted = sample();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        let rows: Vec<(i64, String, String, i64, Option<String>, i64)> = conn
            .prepare(
                "select id, path, hash, registrationTime, \
                 coalesce(deriver, ultimate, sigs, ca), narSize from ValidPaths order by id",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (i, (row, info)) in rows.iter().zip(&sorted).enumerate() {
            assert_eq!(row.0, i64::try_from(i + 1).unwrap());
            assert_eq!(row.1, info.path.as_str());
            assert_eq!(
                row.2,
                hash::format(&info.nar_hash.unwrap(), HashForm::Base16)
            );
            assert_eq!(row.3, 315_532_800);
            assert_eq!(row.4, None, "deriver, ultimate, sigs and ca are NULL");
            assert_eq!(u64::try_from(row.5).unwrap(), info.nar_size.unwrap());
        }
        let refs: Vec<(i64, i64)> = conn
            .prepare("select referrer, reference from Refs order by rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let id = |name: &str| {
            i64::try_from(sorted.iter().position(|i| i.path == sp(name)).unwrap() + 1).unwrap()
        };
        let mut want = vec![
            (id("hello"), id("hello")),
            (id("hello"), id("dep")),
            (id("root"), id("hello")),
        ];
        want.sort_unstable();
        assert_eq!(
            refs, want,
            "referrer order, then reference order, self included"
        );
        let seq: i64 = conn
            .query_row(
                "select seq from sqlite_sequence where name = 'ValidPaths'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(seq, 3);
    }

    #[test]
    fn rejects_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let mut missing = sample();
        missing[1].nar_hash = None;
        assert!(matches!(
            write_db(dir.path(), &missing, 0),
            Err(Error::MissingNarInfo { .. })
        ));
        let dangling = vec![info("a", &["b"])];
        assert!(matches!(
            write_db(dir.path(), &dangling, 0),
            Err(Error::DanglingReference { .. })
        ));
        let twice = vec![info("a", &[]), info("a", &[])];
        assert!(matches!(
            write_db(dir.path(), &twice, 0),
            Err(Error::DuplicatePath { .. })
        ));
        let cycle = vec![info("a", &["b"]), info("b", &["c"]), info("c", &["a", "c"])];
        assert!(matches!(
            write_db(dir.path(), &cycle, 0),
            Err(Error::ReferenceCycle { .. })
        ));
    }

    #[test]
    fn reads_back_what_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        write_db(dir.path(), &sample(), 315_532_800).unwrap();
        let db = StoreDb::open(&dir.path().join(DB_FILE)).unwrap();
        for info in sample() {
            assert_eq!(db.query(&info.path).unwrap(), Some(info));
        }
        assert_eq!(db.query(&sp("absent")).unwrap(), None);
        assert_eq!(db.valid_paths().unwrap().len(), 3);
    }

    #[test]
    fn reads_every_hash_form_and_treats_zero_as_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let infos = sample();
        write_db(dir.path(), &infos, 1).unwrap();
        let digest = infos[0].nar_hash.unwrap();
        let conn = open(dir.path());
        for form in [HashForm::Nix32, HashForm::Sri, HashForm::Base16] {
            conn.execute(
                "update ValidPaths set hash = ?1 where path = ?2",
                params![hash::format(&digest, form), infos[0].path.as_str()],
            )
            .unwrap();
            let db = StoreDb::open(&dir.path().join(DB_FILE)).unwrap();
            assert_eq!(
                db.query(&infos[0].path).unwrap().unwrap().nar_hash,
                Some(digest)
            );
        }
        conn.execute(
            "update ValidPaths set hash = ?1, narSize = NULL where path = ?2",
            params![format!("sha256:{}", "0".repeat(64)), infos[0].path.as_str()],
        )
        .unwrap();
        let db = StoreDb::open(&dir.path().join(DB_FILE)).unwrap();
        let got = db.query(&infos[0].path).unwrap().unwrap();
        assert_eq!((got.nar_hash, got.nar_size), (None, None));
        conn.execute(
            "update ValidPaths set hash = ?1 where path = ?2",
            params![
                data_encoding::HEXLOWER.encode(&digest),
                infos[0].path.as_str()
            ],
        )
        .unwrap();
        let err = db.query(&infos[0].path).unwrap_err();
        assert!(
            matches!(err, Error::DbRow { .. }),
            "a hash without type: {err}"
        );
    }

    /// The names in `dir`, sorted.
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn failure(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn fallback_is_immutable_without_a_log_and_a_copy_with_one() {
        use rusqlite::ffi;
        // What SQLite 3.50 says, as an ordinary user, when the folder is root's: no side
        // files and a folder it cannot write; a `-wal` or `-shm` it cannot open; an index
        // it can read but not trust.
        for code in [
            ffi::SQLITE_READONLY_DIRECTORY,
            ffi::SQLITE_CANTOPEN,
            ffi::SQLITE_READONLY_CANTINIT,
            ffi::SQLITE_READONLY,
        ] {
            let err = failure(code);
            assert_eq!(fallback(&err, None), Some(Access::Immutable), "{err}");
            assert_eq!(fallback(&err, Some(0)), Some(Access::Immutable), "{err}");
            assert_eq!(fallback(&err, Some(4152)), Some(Access::Copy), "{err}");
        }
        // Not about the side files: the error stands.
        for err in [
            failure(ffi::SQLITE_NOTADB),
            failure(ffi::SQLITE_CORRUPT),
            failure(ffi::SQLITE_ERROR),
            rusqlite::Error::InvalidQuery,
        ] {
            assert_eq!(fallback(&err, None), None, "{err}");
            assert_eq!(fallback(&err, Some(4152)), None, "{err}");
        }
    }

    #[test]
    fn immutable_reads_the_main_file_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        write_db(dir.path(), &sample(), 315_532_800).unwrap();
        let path = dir.path().join(DB_FILE);
        let reader = Reader::immutable(&path)
            .unwrap()
            .expect("no -wal: immutable");
        assert_eq!(reader.access, Access::Immutable);
        let db = StoreDb {
            path: path.clone(),
            reader: Mutex::new(reader),
        };
        for info in sample() {
            assert_eq!(db.query(&info.path).unwrap(), Some(info));
        }
        assert_eq!(db.valid_paths().unwrap().len(), 3);
        assert_eq!(listing(dir.path()), ["db.sqlite", "schema"]);
        drop(db);
        assert_eq!(listing(dir.path()), ["db.sqlite", "schema"]);
    }

    /// A database like one Nix left while another process held it open: `db.sqlite` with
    /// the sample, and a `db.sqlite-wal` (no `-shm`) holding one more path. Returns the
    /// folder and that path's info.
    fn database_with_a_log() -> (tempfile::TempDir, PathInfo) {
        let live = tempfile::tempdir().unwrap();
        write_db(live.path(), &sample(), 315_532_800).unwrap();
        let path = live.path().join(DB_FILE);
        // An open reader keeps the writer's close from checkpointing the log into the
        // main file and removing it, as any other connection keeps Nix's.
        let reader = Connection::open(&path).unwrap();
        let count: i64 = reader
            .query_row("select count(*) from ValidPaths", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 3);
        let late = info("late", &["late", "dep"]);
        let writer = Connection::open(&path).unwrap();
        writer
            .execute(
                "insert into ValidPaths (path, hash, registrationTime, narSize) \
                 values (?1, ?2, 1, ?3)",
                params![
                    late.path.as_str(),
                    hash::format(&late.nar_hash.unwrap(), HashForm::Base16),
                    i64::try_from(late.nar_size.unwrap()).unwrap()
                ],
            )
            .unwrap();
        writer
            .execute(
                "insert into Refs (referrer, reference) select l.id, r.id \
                 from ValidPaths l, ValidPaths r where l.path = ?1 and r.path in (?1, ?2)",
                params![late.path.as_str(), sp("dep").as_str()],
            )
            .unwrap();
        drop(writer);
        let copy = tempfile::tempdir().unwrap();
        for name in [DB_FILE, "db.sqlite-wal"] {
            fs::copy(live.path().join(name), copy.path().join(name)).unwrap();
        }
        drop(reader);
        let copied = copy.path().join(DB_FILE);
        assert!(fs::metadata(wal_path(&copied)).unwrap().len() > 0);
        let main_only = connect(&copied, "mode=ro&immutable=1").unwrap();
        let in_main: i64 = main_only
            .query_row(
                "select count(*) from ValidPaths where path = ?1",
                [late.path.as_str()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(in_main, 0, "the new path must be only in the log");
        (copy, late)
    }

    #[test]
    fn a_private_copy_sees_paths_that_are_only_in_the_log() {
        let (dir, late) = database_with_a_log();
        let path = dir.path().join(DB_FILE);
        // A non-empty log rules out immutable=1, which would miss the path.
        assert!(Reader::immutable(&path).unwrap().is_none());
        let tmp = tempfile::tempdir().unwrap();
        let reader = Reader::copy_in(&path, tmp.path()).unwrap();
        assert_eq!(reader.access, Access::Copy);
        let db = StoreDb {
            path: path.clone(),
            reader: Mutex::new(reader),
        };
        assert_eq!(db.query(&late.path).unwrap(), Some(late));
        assert_eq!(db.valid_paths().unwrap().len(), 4);
        for info in sample() {
            assert_eq!(db.query(&info.path).unwrap(), Some(info));
        }
        assert_eq!(
            listing(dir.path()),
            ["db.sqlite", "db.sqlite-wal"],
            "nothing written next to the database"
        );
        let copies = listing(tmp.path());
        assert_eq!(copies.len(), 1, "one private folder: {copies:?}");
        drop(db);
        assert_eq!(
            listing(tmp.path()),
            Vec::<String>::new(),
            "the copy outlived the StoreDb"
        );
    }

    #[test]
    fn an_unreadable_log_is_an_error_that_names_it() {
        let (dir, _) = database_with_a_log();
        let path = dir.path().join(DB_FILE);
        fs::remove_file(wal_path(&path)).unwrap();
        // A folder where the log should be: reading it fails as an unreadable file does
        // (root reads every file).
        fs::create_dir(wal_path(&path)).unwrap();
        let err = Reader::copy(&path).err().expect("an unreadable log");
        assert_eq!(
            err.to_string(),
            format!(
                "Cannot read the write-ahead log {}",
                wal_path(&path).display()
            )
        );
    }

    #[test]
    fn an_immutable_reader_opens_again_when_nix_changes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write_db(dir.path(), &sample(), 315_532_800).unwrap();
        let path = dir.path().join(DB_FILE);
        let db = StoreDb {
            path: path.clone(),
            reader: Mutex::new(Reader::immutable(&path).unwrap().unwrap()),
        };
        assert_eq!(db.valid_paths().unwrap().len(), 3);
        // The file times have the kernel's clock tick (a few milliseconds) as resolution;
        // Nix never writes twice that fast, the test could.
        std::thread::sleep(std::time::Duration::from_millis(50));
        // A writer's last close checkpoints into the main file and removes the log: the
        // immutable connection's cached pages are now out of date.
        let writer = Connection::open(&path).unwrap();
        writer
            .execute(
                "delete from ValidPaths where path = ?1",
                [sp("root").as_str()],
            )
            .unwrap();
        drop(writer);
        assert!(!wal_path(&path).exists());
        assert_eq!(db.valid_paths().unwrap().len(), 2);
        assert_eq!(db.query(&sp("root")).unwrap(), None);
        let reader = db.reader.lock().unwrap();
        assert_eq!(
            reader.access,
            Access::InPlace,
            "root may create the side files"
        );
    }

    #[test]
    fn uri_escapes_special_characters() {
        assert_eq!(
            uri_escape(Path::new("/a b/c?d#e%f")),
            "/a%20b/c%3Fd%23e%25f"
        );
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("we?ird #dir");
        write_db(&odd, &sample(), 1).unwrap();
        assert!(StoreDb::open(&odd.join(DB_FILE)).is_ok());
    }
}
