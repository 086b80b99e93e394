//! The Nix store an image takes store paths from: opened with its database or a closure
//! listing, and the store paths that a planned tree names.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use buildimage_layer::{Node, Tree};
use buildimage_nixdb::{Closure, Store, StorePath};

use crate::error::{Error, Input, Result, ResultExt};

/// Where store paths come from: `--store DIR` and an optional closure listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSource {
    /// The folder that holds `nix/store` (`/` for the host's store).
    pub root: PathBuf,
    /// A closure listing: a `closureInfo` output folder (`registration` and
    /// `store-paths`), a `registration` file, `nix-store --dump-db` output or an
    /// `exportReferencesGraph` file.
    pub closure_info: Option<PathBuf>,
}

impl Default for StoreSource {
    fn default() -> Self {
        StoreSource {
            root: PathBuf::from("/"),
            closure_info: None,
        }
    }
}

impl StoreSource {
    /// Where the store path `path` (`/nix/store/…`, or anything else) is read from on the
    /// host: store paths from the store's folder, other paths as they are.
    pub fn host_path(&self, path: &Path) -> PathBuf {
        match path.strip_prefix("/nix/store") {
            Ok(rest) => self.root.join("nix/store").join(rest),
            Err(_) => path.to_owned(),
        }
    }

    /// The store folder itself (`DIR/nix/store`).
    pub fn store_dir(&self) -> PathBuf {
        self.root.join("nix/store")
    }

    /// Opens the store with its closure listing, if any. `None` when there is no store
    /// there at all (then nothing can be referenced).
    pub fn open(&self) -> Result<Option<Store>> {
        let store_dir = self.store_dir();
        if !store_dir.is_dir() {
            if let Some(info) = &self.closure_info {
                return Err(Error::message(format!(
                    "{} needs a Nix store, but {} is not a folder (see --store)",
                    info.display(),
                    store_dir.display()
                ))
                .about(Input::ClosureInfo));
            }
            return Ok(None);
        }
        let mut store = Store::open(&self.root)
            .context(|| format!("Cannot open the Nix store at {}", self.root.display()))?;
        if let Some(info) = &self.closure_info {
            let context = || format!("Cannot use the closure listing {}", info.display());
            if info.is_dir() {
                store = store
                    .with_registration(&info.join("registration"))
                    .context(context)
                    .about(Input::ClosureInfo)?;
                let paths = info.join("store-paths");
                if paths.exists() {
                    store = store
                        .with_store_paths(&paths)
                        .context(context)
                        .about(Input::ClosureInfo)?;
                }
            } else {
                store = store
                    .with_registration(info)
                    .context(context)
                    .about(Input::ClosureInfo)?;
            }
        }
        Ok(Some(store))
    }
}

/// The store paths that the tree's file contents, symlink targets and names, and `extra`
/// (an image config) name: the roots of a runtime closure.
pub fn find_roots(store: &Store, tree: &Tree, extra: &[&[u8]]) -> Result<Vec<StorePath>> {
    let scanner = store.scanner()?;
    if scanner.is_empty() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = Vec::new();
    tree.for_each_file(|_, source| files.push(source.to_owned()));
    let mut hashes = buildimage_nixdb::refs::scan_files(&files, scanner)?;
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

/// The runtime closure of a layer: every store path that the files, symlink targets and
/// names of `tree` or the image `config` name, and everything those reference; with NAR
/// hashes and sizes when `nar_info` (they cost a read of every path). `layer` names the
/// layer in errors ("the layer", "the customisation layer").
pub(crate) fn runtime_closure(
    store: &Store,
    tree: &Tree,
    config: &serde_json::Map<String, serde_json::Value>,
    nar_info: bool,
    layer: &str,
) -> Result<Closure> {
    let config_json = serde_json::to_vec(config).map_err(std::io::Error::from)?;
    let roots = find_roots(store, tree, &[&config_json])
        .map_err(|e| e.context(format!("Scanning {layer} for store paths failed")))?;
    if nar_info {
        store.closure_with_nar_info(&roots)
    } else {
        store.closure(&roots)
    }
    .context(|| format!("Computing the closure of {layer} failed"))
}

/// The items of `items` that are store paths themselves (`/nix/store/<hash>-<name>`, a
/// trailing `/` allowed), as written.
pub fn store_path_items(items: &[PathBuf]) -> Vec<StorePath> {
    items
        .iter()
        .filter_map(|item| {
            item.to_str()
                .and_then(|s| StorePath::new(s.trim_end_matches('/')).ok())
        })
        .collect()
}

/// The store paths that `items` lie in (an item inside a store path counts for it).
pub fn store_paths_under(items: &[PathBuf]) -> BTreeSet<StorePath> {
    items
        .iter()
        .filter_map(|item| item.to_str().and_then(StorePath::prefix_of))
        .collect()
}
