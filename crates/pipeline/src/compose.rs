//! What goes into a layer built here: the layer's own entries, then the store closure they
//! need, leaving out what the base image already has.

use std::cell::RefCell;
use std::path::PathBuf;

use buildimage_archive::BaseFs;
use buildimage_layer::{Entry, EntryKind, LayerEntries, Owner, Tree, for_each_by_path};
use buildimage_nixdb::{Closure, Store, StorePath};

/// Mode of the `/nix` and `/nix/store` entries added in front of a closure: every user can
/// traverse them, as in nixpkgs' `buildImage`.
const NIX_DIR_MODE: u32 = 0o555;

/// Closure entries kept in memory at most (about 400 bytes each): a larger closure is
/// listed again for writing instead.
const KEEP_ENTRIES: usize = 20_000;

/// The layer of `buildImage`: its own entries, then its store closure as nixpkgs appends it
/// — `./nix/` and `./nix/store/` (mode 0555) when neither the layer nor the base image has a
/// `nix/store`, then every file of every path, owned by root, sorted by the byte order of
/// the full path, leaving out paths the layer or the base image (whiteouts applied) already
/// has.
///
/// The closure is listed one store path at a time: the paths of different store paths never
/// interleave in that order (they differ within the hash part), so memory holds one store
/// path's listing, not the image's. The first listing (the writer's plan) keeps the
/// entries when there are at most 20,000 (about 8 MB); a larger closure is listed again for
/// writing.
pub struct OwnLayer<'a> {
    own: Vec<Entry>,
    closure: Vec<(StorePath, PathBuf)>,
    /// The closure's entries as the first complete listing left them.
    listed: RefCell<Listed>,
    tree: &'a Tree,
    base: &'a BaseFs,
    mtime: u64,
}

/// What the first complete listing of the closure left for the next.
enum Listed {
    /// Not listed yet (or the listing failed).
    NotYet,
    /// Few enough entries to keep: listing twice costs more than holding them.
    Kept(Vec<Entry>),
    /// Too many: each listing walks the store again.
    TooMany,
}

impl<'a> OwnLayer<'a> {
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
        OwnLayer {
            own,
            closure,
            listed: RefCell::new(Listed::NotYet),
            tree,
            base,
            mtime,
        }
    }

    /// Calls `f` with the closure's entries, listing the store paths one folder at a time.
    fn walk_closure(
        &self,
        f: &mut dyn FnMut(&Entry) -> buildimage_layer::Result<()>,
    ) -> buildimage_layer::Result<()> {
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

impl LayerEntries for OwnLayer<'_> {
    fn each(
        &self,
        f: &mut dyn FnMut(&Entry) -> buildimage_layer::Result<()>,
    ) -> buildimage_layer::Result<()> {
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
