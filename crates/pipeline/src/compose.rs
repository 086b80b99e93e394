//! What goes into a layer built here: `buildImage`'s layer (its own entries, then the
//! store closure they need, less what the base image already has), and the store layers
//! of a layered image (store paths, whole).

use std::cell::RefCell;
use std::path::PathBuf;

use buildimage_archive::BaseFs;
use buildimage_layer::{
    Entry, EntryKind, LayerEntries, Owner, Tree, for_each_by_path, for_each_in_tree,
};
use buildimage_nixdb::{Closure, Store, StorePath};
use sha2::{Digest, Sha256};

/// Mode of the `/nix` and `/nix/store` entries added in front of a closure: every user can
/// traverse them, as in nixpkgs' `buildImage`.
const NIX_DIR_MODE: u32 = 0o555;

/// Mode of the `/nix` and `/nix/store` entries of a store layer, as nixpkgs'
/// `streamLayeredImage` writes them.
const STORE_LAYER_DIR_MODE: u32 = 0o755;

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
    listing: Listing,
    tree: &'a Tree,
    base: &'a BaseFs,
    mtime: u64,
}

/// Entries listed from the host: kept after the first complete listing when they are few,
/// for the next listing only; listed again otherwise.
#[derive(Default)]
struct Listing(RefCell<Listed>);

/// What the first complete listing left for the next.
#[derive(Default)]
enum Listed {
    /// Not listed yet (or the listing failed).
    #[default]
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
            listing: Listing::default(),
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
        self.listing.each(&|f| self.walk_closure(f), f)
    }

    /// The layer's own entries: nixpkgs takes the checksum before appending the closure.
    fn checksummed(&self) -> Option<usize> {
        Some(self.own.len())
    }
}

/// A function given each entry in turn.
type Visit<'f> = dyn FnMut(&Entry) -> buildimage_layer::Result<()> + 'f;

impl Listing {
    /// Calls `f` with the entries `walk` lists, or with those kept from its first listing.
    fn each(
        &self,
        walk: &dyn Fn(&mut Visit<'_>) -> buildimage_layer::Result<()>,
        f: &mut Visit<'_>,
    ) -> buildimage_layer::Result<()> {
        // The kept entries serve one more listing (the writer's), then go: a layered
        // image has many layers, and only the one being written needs them.
        let kept = std::mem::take(&mut *self.0.borrow_mut());
        match kept {
            Listed::Kept(listed) => return listed.iter().try_for_each(f),
            Listed::TooMany => {
                *self.0.borrow_mut() = Listed::TooMany;
                return walk(f);
            }
            Listed::NotYet => {}
        }
        // The first listing (the writer's plan) keeps what it passes on, up to a point.
        let mut kept = Some(Vec::new());
        walk(&mut |entry: &Entry| {
            if let Some(list) = &mut kept {
                if list.len() < KEEP_ENTRIES {
                    list.push(entry.clone());
                } else {
                    kept = None;
                }
            }
            f(entry)
        })?;
        *self.0.borrow_mut() = kept.map_or(Listed::TooMany, Listed::Kept);
        Ok(())
    }
}

/// A store layer of a layered image: `/nix/` and `/nix/store/` (mode 0755), then each of
/// its store paths whole, in the layer's order, each in tree order, with absolute names
/// (`/nix/store/…`), as nixpkgs' `streamLayeredImage` writes them; every entry gets the
/// layer's owner and time.
pub struct StoreLayer {
    paths: Vec<(StorePath, PathBuf)>,
    owner: Owner,
    mtime: u64,
    listing: Listing,
    key: Option<[u8; 32]>,
}

/// Names how store layers are packed, in their keys: changes whenever the same store
/// paths with the same owner and time would give other bytes.
const STORE_LAYER_FORMAT: &[u8] = b"buildimage store layer 1\0";

impl StoreLayer {
    /// A layer of `paths` (read from `store`, described by `closure`), owned by `owner`,
    /// dated `mtime`.
    pub fn new(
        paths: &[StorePath],
        store: &Store,
        closure: &Closure,
        owner: Owner,
        mtime: u64,
    ) -> Self {
        let paths: Vec<(StorePath, PathBuf)> = paths
            .iter()
            .map(|p| (p.clone(), store.host_path(p)))
            .collect();
        let key = store_layer_key(&paths, closure, &owner, mtime);
        StoreLayer {
            paths,
            owner,
            mtime,
            listing: Listing::default(),
            key,
        }
    }

    /// The store paths the layer holds, in its order.
    pub fn paths(&self) -> impl Iterator<Item = &StorePath> {
        self.paths.iter().map(|(p, _)| p)
    }

    fn walk(
        &self,
        f: &mut dyn FnMut(&Entry) -> buildimage_layer::Result<()>,
    ) -> buildimage_layer::Result<()> {
        for (path, host) in &self.paths {
            for_each_in_tree(host, path.as_str().as_bytes(), &self.owner, self.mtime, f)?;
        }
        Ok(())
    }
}

impl LayerEntries for StoreLayer {
    fn each(
        &self,
        f: &mut dyn FnMut(&Entry) -> buildimage_layer::Result<()>,
    ) -> buildimage_layer::Result<()> {
        for name in ["/nix/", "/nix/store/"] {
            f(&Entry {
                name: name.as_bytes().to_vec(),
                kind: EntryKind::Directory,
                mode: STORE_LAYER_DIR_MODE,
                owner: self.owner.clone(),
                mtime: self.mtime,
            })?;
        }
        self.listing.each(&|f| self.walk(f), f)
    }

    fn key(&self) -> Option<[u8; 32]> {
        self.key
    }
}

/// The key of a store layer: its store paths in order, each with its NAR hash, and how it
/// is packed (format, owner, time). A store path never changes once made and its NAR hash
/// names its contents, so the key names the layer's bytes. Without a NAR hash for every
/// path (a store scanned without a database or a closure listing) there is no key: a
/// folder that can change in place is read every time.
fn store_layer_key(
    paths: &[(StorePath, PathBuf)],
    closure: &Closure,
    owner: &Owner,
    mtime: u64,
) -> Option<[u8; 32]> {
    let mut hasher = Sha256::new();
    hasher.update(STORE_LAYER_FORMAT);
    for field in [
        owner.uid.to_string().as_bytes(),
        owner.gid.to_string().as_bytes(),
        owner.uname.as_bytes(),
        owner.gname.as_bytes(),
        mtime.to_string().as_bytes(),
    ] {
        hasher.update(field);
        hasher.update(b"\0");
    }
    for (path, _) in paths {
        let hash = closure.get(path).and_then(|info| info.nar_hash)?;
        hasher.update(path.as_str().as_bytes());
        hasher.update(b"\0");
        hasher.update(hash);
    }
    Some(hasher.finalize().into())
}

/// An entry's path without the trailing `/` of a folder.
fn path_of(entry: &Entry) -> &[u8] {
    entry.name.strip_suffix(b"/").unwrap_or(&entry.name)
}
