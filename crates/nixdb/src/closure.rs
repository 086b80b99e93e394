//! Path metadata and closures of a store on disk.
//!
//! A [`Store`] is a directory holding `nix/store` (what `nix --store DIR` calls a store
//! root). It answers "what does this path reference?" from, in this order:
//!
//! 1. the store's database `nix/var/nix/db/db.sqlite`, opened read-only with the changes
//!    still in its write-ahead log, also by a user who cannot write the database's folder
//!    (see [`Store::open`]);
//! 2. listings given with [`Store::with_registration`] (a `closureInfo` `registration` file,
//!    `nix-store --dump-db` output, or an exportReferencesGraph file);
//! 3. scanning, as Nix does after a build: the path's NAR is searched for the hash parts of
//!    the candidate paths. The candidates are all paths present in `nix/store` (valid ones
//!    only, when there is a database), or the paths of a `store-paths` file given with
//!    [`Store::with_store_paths`].
//!
//! With authoritative metadata all three give the same references, apart from what scanning
//! cannot know: a path that names a hash part it does not depend on (a `.drv` file names its
//! outputs), declared references, `unsafeDiscardReferences`. So scanning is the fallback:
//! by default it is used only when the store has no database; a path that the database does
//! not list is an error ([`Error::NotValid`]), as it is for Nix. [`Store::scan_unknown`]
//! changes that.
//!
//! A [`Closure`] is the fixed point: the roots plus, transitively, everything they
//! reference, sorted byte-wise by path.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::db::{DB_DIR, DB_FILE, StoreDb};
use crate::error::{Error, Result};
use crate::nar::{self, NarInfo};
use crate::refs::{self, Scanner};
use crate::registration;
use crate::store_path::{STORE_DIR, StorePath};

/// What Nix knows about one store path, as far as an image needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    /// The path.
    pub path: StorePath,
    /// SHA-256 of its NAR; `None` when not known (yet).
    pub nar_hash: Option<[u8; 32]>,
    /// Size of its NAR in bytes; `None` when not known (yet).
    pub nar_size: Option<u64>,
    /// The paths it references, itself included when it contains its own hash part.
    pub references: BTreeSet<StorePath>,
}

impl PathInfo {
    /// An info with no hash, no size and no references.
    pub fn new(path: StorePath) -> Self {
        PathInfo {
            path,
            nar_hash: None,
            nar_size: None,
            references: BTreeSet::new(),
        }
    }

    /// The NAR hash and size, when both are known.
    pub fn nar_info(&self) -> Option<NarInfo> {
        Some(NarInfo {
            nar_hash: self.nar_hash?,
            nar_size: self.nar_size?,
        })
    }
}

/// A set of path infos closed under references, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Closure {
    infos: Vec<PathInfo>,
}

impl Closure {
    /// Makes a closure from infos in any order.
    ///
    /// Fails when a path is listed twice or a reference is missing from `infos`.
    pub fn from_infos(mut infos: Vec<PathInfo>) -> Result<Self> {
        infos.sort_by(|a, b| a.path.cmp(&b.path));
        if let Some(pair) = infos.windows(2).find(|w| w[0].path == w[1].path) {
            return Err(Error::DuplicatePath {
                path: pair[0].path.to_string(),
            });
        }
        let closure = Closure { infos };
        for info in &closure.infos {
            if let Some(missing) = info.references.iter().find(|r| !closure.contains(r)) {
                return Err(Error::DanglingReference {
                    path: info.path.to_string(),
                    reference: missing.to_string(),
                });
            }
        }
        Ok(closure)
    }

    /// The infos, sorted by path.
    pub fn as_slice(&self) -> &[PathInfo] {
        &self.infos
    }

    /// The infos, sorted by path.
    pub fn iter(&self) -> std::slice::Iter<'_, PathInfo> {
        self.infos.iter()
    }

    /// The paths, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &StorePath> {
        self.infos.iter().map(|i| &i.path)
    }

    /// The number of paths.
    pub fn len(&self) -> usize {
        self.infos.len()
    }

    /// Whether the closure has no paths (it had no roots).
    pub fn is_empty(&self) -> bool {
        self.infos.is_empty()
    }

    /// The info of `path`, if it is in the closure.
    pub fn get(&self, path: &StorePath) -> Option<&PathInfo> {
        self.infos
            .binary_search_by(|i| i.path.cmp(path))
            .ok()
            .map(|i| &self.infos[i])
    }

    /// Whether `path` is in the closure.
    pub fn contains(&self, path: &StorePath) -> bool {
        self.get(path).is_some()
    }

    /// Whether every path has its NAR hash and size (as [`crate::db::write_db`] needs).
    pub fn is_complete(&self) -> bool {
        self.infos.iter().all(|i| i.nar_info().is_some())
    }

    /// The infos, sorted by path.
    pub fn into_vec(self) -> Vec<PathInfo> {
        self.infos
    }
}

impl<'a> IntoIterator for &'a Closure {
    type Item = &'a PathInfo;
    type IntoIter = std::slice::Iter<'a, PathInfo>;

    fn into_iter(self) -> Self::IntoIter {
        self.infos.iter()
    }
}

/// A set of candidate paths for scanning, with the way back from hash part to path.
struct Candidates {
    paths: Vec<StorePath>,
    by_hash: BTreeMap<String, Vec<StorePath>>,
    scanner: Scanner,
}

impl std::fmt::Debug for Candidates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidates")
            .field("paths", &self.paths.len())
            .finish_non_exhaustive()
    }
}

impl Candidates {
    fn new(mut paths: Vec<StorePath>) -> Self {
        paths.sort();
        paths.dedup();
        let mut by_hash: BTreeMap<String, Vec<StorePath>> = BTreeMap::new();
        for p in &paths {
            by_hash
                .entry(p.hash_part().to_owned())
                .or_default()
                .push(p.clone());
        }
        let scanner = Scanner::from_store_paths(&paths);
        Candidates {
            paths,
            by_hash,
            scanner,
        }
    }

    /// The candidate paths with these hash parts, sorted.
    fn resolve<'a>(&self, hash_parts: impl IntoIterator<Item = &'a String>) -> BTreeSet<StorePath> {
        hash_parts
            .into_iter()
            .filter_map(|h| self.by_hash.get(h))
            .flatten()
            .cloned()
            .collect()
    }
}

/// A Nix store rooted at a host directory, and the metadata known about its paths.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use buildimage_nixdb::{Store, StorePath};
///
/// let root = tempfile::tempdir()?;
/// let store_dir = root.path().join("nix/store");
/// std::fs::create_dir_all(&store_dir)?;
/// let dep = "/nix/store/h4lyvgdxy8acvyss6p8ps7ji50n6yw0d-dep";
/// let app = "/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-app";
/// std::fs::write(root.path().join(&dep[1..]), "")?;
/// std::fs::write(root.path().join(&app[1..]), format!("exec {dep}"))?;
///
/// // No database: references are found by scanning.
/// let store = Store::open(root.path())?;
/// let closure = store.closure(&[StorePath::new(app)?])?;
/// let paths: Vec<&str> = closure.paths().map(StorePath::as_str).collect();
/// assert_eq!(paths, [app, dep]);
///
/// // Which store paths does some other content (say, an image config) name?
/// let roots = store.find_roots_in(format!(r#"{{"Cmd":["{app}"]}}"#).as_bytes())?;
/// assert_eq!(roots, [StorePath::new(app)?]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    db: Option<StoreDb>,
    registered: BTreeMap<StorePath, PathInfo>,
    registration_files: Vec<PathBuf>,
    scan_unknown: bool,
    restricted: Option<Candidates>,
    present: OnceLock<Candidates>,
}

impl Store {
    /// Opens the store rooted at `root` (the directory holding `nix/store`).
    ///
    /// Uses `root/nix/var/nix/db/db.sqlite` when it exists; then scanning is off
    /// ([`Store::scan_unknown`]). Without a database, scanning is on.
    ///
    /// The database is opened read-only, and never written to. Nix keeps it in WAL mode,
    /// and a user of a multi-user install can neither create its `-wal` and `-shm` files
    /// nor write the existing ones, so when SQLite cannot read it in place, the main file
    /// is read as it is when there is no write-ahead log, and a private copy of both files
    /// is read when there is one (docs/formats.md §10.6). An unreadable write-ahead log is
    /// an error.
    pub fn open(root: &Path) -> Result<Self> {
        let mut store = Self::open_without_db(root)?;
        let db_path = root.join(DB_DIR).join(DB_FILE);
        if db_path.exists() {
            store.db = Some(StoreDb::open(&db_path)?);
            store.scan_unknown = false;
        }
        Ok(store)
    }

    /// Opens the store rooted at `root` ignoring any database: metadata comes from
    /// registrations and scanning only.
    pub fn open_without_db(root: &Path) -> Result<Self> {
        let store_dir = root.join(&STORE_DIR[1..]);
        let meta =
            fs::metadata(&store_dir).map_err(|e| Error::io("open the store", &store_dir, e))?;
        if !meta.is_dir() {
            return Err(Error::io(
                "open the store",
                store_dir,
                std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        Ok(Store {
            root: root.to_owned(),
            db: None,
            registered: BTreeMap::new(),
            registration_files: Vec::new(),
            scan_unknown: true,
            restricted: None,
            present: OnceLock::new(),
        })
    }

    /// Adds the metadata of a `registration`, `--dump-db` or exportReferencesGraph file.
    ///
    /// The database, if any, still comes first. Listings added later replace the entries
    /// of earlier ones for the same path.
    pub fn with_registration(mut self, file: &Path) -> Result<Self> {
        let infos = registration::read_registration(file)?;
        self.registration_files.push(file.to_owned());
        Ok(self.with_path_infos(infos))
    }

    /// Adds metadata from memory, with the same precedence as [`Store::with_registration`].
    #[must_use]
    pub fn with_path_infos(mut self, infos: impl IntoIterator<Item = PathInfo>) -> Self {
        for info in infos {
            self.registered.insert(info.path.clone(), info);
        }
        self
    }

    /// Scans with the paths of a `store-paths` file as the candidates, instead of every path
    /// present in the store.
    ///
    /// `closureInfo`'s `store-paths` lists a whole closure; scanning its members for the
    /// hash parts of its members gives exactly the references Nix recorded, as long as the
    /// members are the paths being scanned.
    pub fn with_store_paths(self, file: &Path) -> Result<Self> {
        let paths = registration::read_store_paths(file)?;
        Ok(self.with_candidates(paths))
    }

    /// Scans with `paths` as the candidates, instead of every path present in the store.
    #[must_use]
    pub fn with_candidates(mut self, paths: impl IntoIterator<Item = StorePath>) -> Self {
        self.restricted = Some(Candidates::new(paths.into_iter().collect()));
        self
    }

    /// Whether paths that no database or listing knows are scanned (`true`) or are an error.
    #[must_use]
    pub fn scan_unknown(mut self, scan: bool) -> Self {
        self.scan_unknown = scan;
        self
    }

    /// The database in use, if any.
    pub fn database(&self) -> Option<&Path> {
        self.db.as_ref().map(StoreDb::path)
    }

    /// Where `path` lives on the host: `<root>/nix/store/<hash>-<name>`.
    pub fn host_path(&self, path: &StorePath) -> PathBuf {
        path.host_path(&self.root)
    }

    /// The store paths present in `<root>/nix/store`, sorted.
    ///
    /// Entries whose names are not store paths (`.links`, temporary files) are left out, and
    /// so is `<path>.lock` next to `<path>` (a build lock, which shares the hash part). With
    /// a database, only paths it lists as valid count. The listing is made once per store.
    pub fn paths(&self) -> Result<&[StorePath]> {
        Ok(&self.present()?.paths)
    }

    /// The hash parts of the paths present in the store ([`Store::paths`]), sorted, unique.
    pub fn all_hash_parts(&self) -> Result<Vec<&str>> {
        Ok(self.present()?.by_hash.keys().map(String::as_str).collect())
    }

    /// A scanner for the hash parts of every path present in the store.
    ///
    /// Feed it the files and the config of a new layer to find the store paths they name:
    /// the roots of the layer's runtime closure. Map what it finds back with
    /// [`Store::paths_with_hash_parts`].
    pub fn scanner(&self) -> Result<&Scanner> {
        Ok(&self.present()?.scanner)
    }

    /// The paths present in the store whose hash part is in `hash_parts`, sorted.
    pub fn paths_with_hash_parts(&self, hash_parts: &BTreeSet<String>) -> Result<Vec<StorePath>> {
        Ok(self.present()?.resolve(hash_parts).into_iter().collect())
    }

    /// The paths present in the store that `data` names, sorted.
    pub fn find_roots_in(&self, data: &[u8]) -> Result<Vec<StorePath>> {
        let found = self.scanner()?.scan_bytes(data);
        self.paths_with_hash_parts(&found)
    }

    /// The closure of `roots`: every path reachable from them through references, the
    /// roots included, sorted.
    ///
    /// Hashes and sizes are those the database or listings give; scanned paths get none
    /// (use [`Store::closure_with_nar_info`] when they are needed). Paths to scan are
    /// scanned in parallel, one rayon task per path. An empty `roots` gives an empty closure.
    pub fn closure(&self, roots: &[StorePath]) -> Result<Closure> {
        self.closure_impl(roots, false)
    }

    /// Like [`Store::closure`], but every path also gets its NAR hash and size: scanned
    /// paths are hashed in the same pass that scans them, and paths whose metadata lacks
    /// them are hashed afterwards, as by [`Store::path_info_complete`].
    pub fn closure_with_nar_info(&self, roots: &[StorePath]) -> Result<Closure> {
        let closure = self.closure_impl(roots, true)?;
        self.path_info_complete(closure)
    }

    /// Fills in missing NAR hashes and sizes by serialising those paths (in parallel).
    ///
    /// Values that are already known (from the database or a listing) are kept, not
    /// recomputed.
    pub fn path_info_complete(&self, closure: Closure) -> Result<Closure> {
        let infos = closure
            .infos
            .into_par_iter()
            .map(|mut info| {
                if info.nar_info().is_none() {
                    let computed = nar::hash_path(&self.host_path(&info.path))?;
                    info.nar_hash.get_or_insert(computed.nar_hash);
                    info.nar_size.get_or_insert(computed.nar_size);
                }
                Ok(info)
            })
            .collect::<Vec<Result<PathInfo>>>();
        let infos = infos.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(Closure { infos })
    }

    fn closure_impl(&self, roots: &[StorePath], with_nar_info: bool) -> Result<Closure> {
        let mut done: BTreeMap<StorePath, PathInfo> = BTreeMap::new();
        let mut frontier: BTreeSet<StorePath> = roots.iter().cloned().collect();
        while !frontier.is_empty() {
            let mut infos = Vec::with_capacity(frontier.len());
            let mut unknown = Vec::new();
            for path in &frontier {
                match self.known(path)? {
                    Some(info) => infos.push(info),
                    None => unknown.push(path),
                }
            }
            // Collect every result before looking at errors, so the error reported is the
            // first in path order, whatever the thread timing.
            let scanned = unknown
                .par_iter()
                .map(|path| self.scan(path, with_nar_info))
                .collect::<Vec<_>>();
            for info in scanned {
                infos.push(info?);
            }
            let mut next = BTreeSet::new();
            for info in &infos {
                next.extend(info.references.iter().cloned());
            }
            for info in infos {
                done.insert(info.path.clone(), info);
            }
            next.retain(|p| !done.contains_key(p));
            frontier = next;
        }
        Ok(Closure {
            infos: done.into_values().collect(),
        })
    }

    /// The info from the database or a listing, if either knows the path.
    fn known(&self, path: &StorePath) -> Result<Option<PathInfo>> {
        if let Some(db) = &self.db
            && let Some(info) = db.query(path)?
        {
            return Ok(Some(info));
        }
        Ok(self.registered.get(path).cloned())
    }

    /// Scans one path for references (and hashes it when asked), if scanning is allowed.
    fn scan(&self, path: &StorePath, with_nar_info: bool) -> Result<PathInfo> {
        if !self.scan_unknown {
            return Err(Error::NotValid {
                path: path.to_string(),
                source_name: self.metadata_source(),
            });
        }
        let candidates = match &self.restricted {
            Some(c) => c,
            None => self.present()?,
        };
        let host = self.host_path(path);
        let (nar_info, found) = if with_nar_info {
            let (info, found) = refs::hash_and_scan_path(&host, &candidates.scanner)?;
            (Some(info), found)
        } else {
            (None, refs::scan_path(&host, &candidates.scanner)?)
        };
        Ok(PathInfo {
            path: path.clone(),
            nar_hash: nar_info.map(|i| i.nar_hash),
            nar_size: nar_info.map(|i| i.nar_size),
            references: candidates.resolve(&found),
        })
    }

    /// What to name in [`Error::NotValid`]: the database, else the first listing.
    fn metadata_source(&self) -> PathBuf {
        self.database()
            .map(Path::to_owned)
            .or_else(|| self.registration_files.first().cloned())
            .unwrap_or_else(|| self.root.join(&STORE_DIR[1..]))
    }

    fn present(&self) -> Result<&Candidates> {
        if let Some(c) = self.present.get() {
            return Ok(c);
        }
        let listed = self.list_present()?;
        // Another thread may have won the race; both listings are the same.
        Ok(self.present.get_or_init(|| listed))
    }

    fn list_present(&self) -> Result<Candidates> {
        let store_dir = self.root.join(&STORE_DIR[1..]);
        let names = nar::sorted_entries(&store_dir)?;
        let valid = self.db.as_ref().map(StoreDb::valid_paths).transpose()?;
        let mut paths: Vec<StorePath> = names
            .iter()
            .filter_map(|n| n.to_str())
            .filter(|n| !n.starts_with('.'))
            .filter_map(|n| StorePath::from_base_name(n).ok())
            .filter(|p| valid.as_ref().is_none_or(|v| v.contains(p.as_str())))
            .collect();
        let all: BTreeSet<String> = paths.iter().map(|p| p.as_str().to_owned()).collect();
        paths.retain(|p| {
            p.as_str()
                .strip_suffix(".lock")
                .is_none_or(|locked| !all.contains(locked))
        });
        Ok(Candidates::new(paths))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nix32;
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::symlink;

    /// A fake store path as docs/formats.md §6.4 makes them.
    fn sp(name: &str) -> StorePath {
        let part = nix32::encode(&nix32::compress_hash(
            &Sha256::digest(format!("fake:{name}")),
            20,
        ));
        StorePath::from_base_name(&format!("{part}-{name}")).unwrap()
    }

    /// dep <- lib <- app (app also refers to itself); stray refers to nothing; app.lock is a
    /// build lock.
    fn fake_store() -> (tempfile::TempDir, Vec<StorePath>) {
        let dir = tempfile::tempdir().unwrap();
        let (dep, lib, app, stray) = (sp("dep"), sp("lib"), sp("app"), sp("stray"));
        let h = |p: &StorePath| p.host_path(dir.path());
        fs::create_dir_all(h(&dep).parent().unwrap()).unwrap();
        fs::create_dir_all(h(&dep).join("share")).unwrap();
        fs::write(h(&dep).join("share/msg"), "hi\n").unwrap();
        fs::create_dir_all(h(&lib)).unwrap();
        symlink(format!("{dep}/share/msg"), h(&lib).join("msg")).unwrap();
        fs::write(h(&app), format!("#!{app}\nexec {lib}/bin/x\n")).unwrap();
        fs::write(h(&stray), "").unwrap();
        fs::write(
            dir.path()
                .join(format!("nix/store/{}.lock", app.base_name())),
            "",
        )
        .unwrap();
        fs::create_dir(dir.path().join("nix/store/.links")).unwrap();
        (dir, vec![app, dep, lib, stray])
    }

    #[test]
    fn closure_by_scanning() {
        let (dir, p) = fake_store();
        let (app, dep, lib) = (&p[0], &p[1], &p[2]);
        let store = Store::open(dir.path()).unwrap();
        let mut all = p.clone();
        all.sort();
        assert_eq!(store.paths().unwrap(), all, "no .lock file, no .links");
        let closure = store.closure(std::slice::from_ref(app)).unwrap();
        let mut want = vec![app.clone(), dep.clone(), lib.clone()];
        want.sort();
        assert_eq!(closure.paths().cloned().collect::<Vec<_>>(), want);
        assert_eq!(
            closure.get(app).unwrap().references,
            [app.clone(), lib.clone()].into()
        );
        assert_eq!(closure.get(lib).unwrap().references, [dep.clone()].into());
        assert!(!closure.is_complete());
        let full = store
            .closure_with_nar_info(std::slice::from_ref(app))
            .unwrap();
        assert!(full.is_complete());
        for info in &full {
            assert_eq!(
                info.nar_info().unwrap(),
                nar::hash_path(&store.host_path(&info.path)).unwrap()
            );
        }
        assert_eq!(store.path_info_complete(closure).unwrap(), full);
        assert!(store.closure(&[]).unwrap().is_empty());
    }

    #[test]
    fn roots_in_other_content() {
        let (dir, p) = fake_store();
        let store = Store::open(dir.path()).unwrap();
        let config = format!(
            r#"{{"Cmd":["{}/bin/x"],"Env":["A={}"]}}"#,
            p[2],
            p[3].hash_part()
        );
        let mut want = vec![p[2].clone(), p[3].clone()];
        want.sort();
        assert_eq!(store.find_roots_in(config.as_bytes()).unwrap(), want);
        assert_eq!(store.all_hash_parts().unwrap().len(), 4);
    }

    #[test]
    fn registration_metadata_wins_over_scanning() {
        let (dir, p) = fake_store();
        let (app, lib) = (&p[0], &p[2]);
        // Claim that app references nothing but lib, with a made-up hash.
        let mut info = PathInfo::new(app.clone());
        info.references.insert(lib.clone());
        info.nar_hash = Some([1; 32]);
        info.nar_size = Some(7);
        let store = Store::open(dir.path())
            .unwrap()
            .with_path_infos([info.clone()]);
        let closure = store
            .closure_with_nar_info(std::slice::from_ref(app))
            .unwrap();
        assert_eq!(closure.get(app), Some(&info));
        assert_eq!(closure.len(), 3);
    }

    #[test]
    fn unknown_paths_are_an_error_without_scanning() {
        let (dir, p) = fake_store();
        let store = Store::open(dir.path()).unwrap().scan_unknown(false);
        let err = store.closure(&p[..1]).unwrap_err();
        assert!(matches!(err, Error::NotValid { .. }), "{err}");
        assert!(err.to_string().contains(p[0].as_str()), "{err}");
    }

    #[test]
    fn restricted_candidates() {
        let (dir, p) = fake_store();
        let (app, dep) = (&p[0], &p[1]);
        // Without lib among the candidates, app's reference to it cannot be found.
        let store = Store::open(dir.path())
            .unwrap()
            .with_candidates([app.clone(), dep.clone()]);
        let closure = store.closure(std::slice::from_ref(app)).unwrap();
        assert_eq!(closure.paths().collect::<Vec<_>>(), [app]);
        assert_eq!(closure.get(app).unwrap().references, [app.clone()].into());
    }

    #[test]
    fn missing_root_is_an_io_error() {
        let (dir, _) = fake_store();
        let store = Store::open(dir.path()).unwrap();
        let err = store.closure(&[sp("absent")]).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert!(Store::open(&dir.path().join("nope")).is_err());
    }

    #[test]
    fn closure_from_infos_checks_closedness() {
        let mut a = PathInfo::new(sp("a"));
        a.references.insert(sp("b"));
        assert!(matches!(
            Closure::from_infos(vec![a.clone()]),
            Err(Error::DanglingReference { .. })
        ));
        let closure = Closure::from_infos(vec![a.clone(), PathInfo::new(sp("b"))]).unwrap();
        assert_eq!(closure.len(), 2);
        assert!(matches!(
            Closure::from_infos(vec![a.clone(), a]),
            Err(Error::DuplicatePath { .. })
        ));
    }
}
