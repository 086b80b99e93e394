//! The Nix side of a build: which store paths the layer needs, the entries that carry them,
//! and the database that `includeNixDB` puts into the image.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use buildimage_archive::{BaseFs, LayerEntries};
use buildimage_layer::{Dir, Entry, EntryKind, Node, Owner, Tree, for_each_by_path};
use buildimage_nixdb::{Closure, Store, StorePath, write_db};

/// Mode of the `/nix` and `/nix/store` entries added in front of a closure: every user can
/// traverse them, as in nixpkgs.
const NIX_DIR_MODE: u32 = 0o555;

/// Opens the store at `store_root` with the closure listing of the spec, if any. `None`
/// when there is no store there at all (then nothing can be referenced).
pub fn open_store(store_root: &Path, closure_info: Option<&Path>) -> Result<Option<Store>> {
    let store_dir = store_root.join("nix/store");
    if !store_dir.is_dir() {
        if let Some(info) = closure_info {
            bail!(
                "Key `closureInfo` ({}) needs a Nix store, but {} is not a folder (see --store)",
                info.display(),
                store_dir.display()
            );
        }
        return Ok(None);
    }
    let mut store = Store::open(store_root)
        .with_context(|| format!("Cannot open the Nix store at {}", store_root.display()))?;
    if let Some(info) = closure_info {
        let context = || "The closure listing (`closureInfo` or --closure-info) cannot be used";
        if info.is_dir() {
            store = store
                .with_registration(&info.join("registration"))
                .with_context(context)?;
            let paths = info.join("store-paths");
            if paths.exists() {
                store = store.with_store_paths(&paths).with_context(context)?;
            }
        } else {
            store = store.with_registration(info).with_context(context)?;
        }
    }
    Ok(Some(store))
}

/// The store paths that the tree's file contents, symlink targets and names, and `extra`
/// (the image config) name: the roots of the layer's runtime closure.
pub fn find_roots(store: &Store, tree: &Tree, extra: &[&[u8]]) -> Result<Vec<StorePath>> {
    let scanner = store.scanner().context("Cannot list the Nix store")?;
    if scanner.is_empty() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = Vec::new();
    tree.for_each_file(|_, source| files.push(source.to_owned()));
    let mut hashes = buildimage_nixdb::refs::scan_files(&files, scanner)
        .context("Cannot read a file of the layer")?;
    // Names and symlink targets count as much as contents (Nix scans the NAR, which holds
    // them too).
    tree.for_each_node(|path, node| {
        hashes.extend(scanner.scan_bytes(path));
        if let Node::Symlink { target, .. } = node {
            hashes.extend(scanner.scan_bytes(target));
        }
    });
    for data in extra {
        hashes.extend(scanner.scan_bytes(data));
    }
    Ok(store.paths_with_hash_parts(&hashes)?)
}

/// The layer's entries: its own, then its store closure as nixpkgs appends it — `./nix/`
/// and `./nix/store/` (mode 0555) when neither the layer nor the base image has a
/// `nix/store`, then every file of every path, owned by root, sorted by the byte order of
/// the full path, leaving out paths the layer or the base image (whiteouts applied) already
/// has.
///
/// The closure is listed one store path at a time: the paths of different store paths never
/// interleave in that order (they differ within the hash part), so memory holds one store
/// path's listing, not the image's. The first listing (the writer's plan) keeps the
/// entries when there are at most [`KEEP_ENTRIES`]; a larger closure is listed again for
/// writing.
pub struct Layer<'a> {
    own: Vec<Entry>,
    closure: Vec<(StorePath, PathBuf)>,
    /// The closure's entries as the first complete listing left them.
    listed: RefCell<Listed>,
    tree: &'a Tree,
    base: &'a BaseFs,
    mtime: u64,
}

/// Closure entries kept in memory at most (about 400 bytes each): a larger closure is
/// listed again for writing instead.
const KEEP_ENTRIES: usize = 20_000;

/// What the first complete listing of the closure left for the next.
enum Listed {
    /// Not listed yet (or the listing failed).
    NotYet,
    /// Few enough entries to keep: listing twice costs more than holding them.
    Kept(Vec<Entry>),
    /// Too many: each listing walks the store again.
    TooMany,
}

impl<'a> Layer<'a> {
    /// A layer of `own` entries (from `tree`) and the closure `closure` of `store`.
    pub fn new(
        own: Vec<Entry>,
        store: Option<(&Store, &Closure)>,
        tree: &'a Tree,
        base: &'a BaseFs,
        mtime: u64,
    ) -> Self {
        let closure = store.map_or_else(Vec::new, |(store, closure)| {
            closure
                .paths()
                .map(|p| (p.clone(), store.host_path(p)))
                .collect()
        });
        Layer {
            own,
            closure,
            listed: RefCell::new(Listed::NotYet),
            tree,
            base,
            mtime,
        }
    }

    /// Calls `f` with the closure's entries, listing the store paths one folder at a time.
    fn walk_closure<E: From<buildimage_layer::Error>>(
        &self,
        f: &mut dyn FnMut(&Entry) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let root = Owner::root();
        for (path, host) in &self.closure {
            let name = format!("nix/store/{}", path.base_name());
            // Neither the layer nor the base has anything of this store path unless they
            // have its folder: then its entries need no look-up each.
            if self.keep_path(name.as_bytes()) {
                for_each_by_path(host, name.as_bytes(), &root, self.mtime, f)?;
            } else {
                for_each_by_path(host, name.as_bytes(), &root, self.mtime, &mut |entry| {
                    if self.keep_path(path_of(entry)) {
                        f(entry)
                    } else {
                        Ok(())
                    }
                })?;
            }
        }
        Ok(())
    }

    /// Whether neither the layer's tree nor the base image has `path`.
    fn keep_path(&self, path: &[u8]) -> bool {
        self.tree.get(path).is_none() && !self.base.contains(path)
    }
}

impl LayerEntries for Layer<'_> {
    fn each(
        &self,
        f: &mut dyn FnMut(&Entry) -> buildimage_archive::Result<()>,
    ) -> buildimage_archive::Result<()> {
        for entry in &self.own {
            f(entry)?;
        }
        let root = Owner::root();
        if !self.closure.is_empty()
            && self.tree.get(b"nix/store").is_none()
            && !self.base.contains(b"nix/store")
        {
            for name in ["./nix/", "./nix/store/"] {
                f(&Entry {
                    name: name.as_bytes().to_vec(),
                    kind: EntryKind::Directory,
                    mode: NIX_DIR_MODE,
                    owner: root.clone(),
                    mtime: self.mtime,
                })?;
            }
        }
        if let Listed::Kept(listed) = &*self.listed.borrow() {
            return listed.iter().try_for_each(f);
        }
        if matches!(*self.listed.borrow(), Listed::TooMany) {
            return self.walk_closure(f);
        }
        // The first listing (the writer's plan) keeps what it passes on, up to a point.
        let mut kept = Some(Vec::new());
        self.walk_closure(&mut |entry: &Entry| {
            if let Some(list) = &mut kept {
                if list.len() < KEEP_ENTRIES {
                    list.push(entry.clone());
                } else {
                    kept = None;
                }
            }
            f(entry)
        })?;
        *self.listed.borrow_mut() = kept.map_or(Listed::TooMany, Listed::Kept);
        Ok(())
    }

    /// The layer's own entries: nixpkgs takes the checksum before appending the closure.
    fn checksummed(&self) -> Option<usize> {
        Some(self.own.len())
    }
}

/// An entry's path without the trailing `/` of a folder.
fn path_of(entry: &Entry) -> &[u8] {
    entry.name.strip_suffix(b"/").unwrap_or(&entry.name)
}

/// Writes the Nix database of `closure` into `dir` (a scratch folder that must outlive the
/// layer) and puts it into the layer tree: `nix/var/nix/db/{db.sqlite,schema}`, an empty
/// `nix/store`, and `nix/var/nix/gcroots/docker/<name>` links to the `gcroots`.
pub fn add_nix_db(
    tree: &mut Tree,
    closure: &Closure,
    gcroots: &[StorePath],
    dir: &Path,
    registration_time: u64,
) -> Result<()> {
    let time = i64::try_from(registration_time).context("SOURCE_DATE_EPOCH is too large")?;
    write_db(dir, closure.as_slice(), time).context("Cannot write the Nix database")?;
    for name in ["db.sqlite", "schema"] {
        let source = dir.join(name);
        let size = std::fs::metadata(&source)
            .with_context(|| format!("Cannot read {}", source.display()))?
            .len();
        tree.insert(
            format!("nix/var/nix/db/{name}").as_bytes(),
            Node::File {
                source,
                size,
                mode: 0o644,
            },
            0o755,
        );
    }
    // An empty nix/store (as nix-store --load-db leaves it) and the GC roots folder, which
    // every nixpkgs image with a database has, even without roots.
    for folder in [&b"nix/store"[..], b"nix/var/nix/gcroots/docker"] {
        if tree.get(folder).is_none() {
            tree.insert(
                folder,
                Node::Dir(Dir {
                    mode: 0o755,
                    ..Dir::default()
                }),
                0o755,
            );
        }
    }
    for root in gcroots {
        tree.insert(
            format!("nix/var/nix/gcroots/docker/{}", root.base_name()).as_bytes(),
            Node::Symlink {
                target: root.as_str().as_bytes().to_vec(),
                mode: 0o777,
            },
            0o755,
        );
    }
    Ok(())
}
