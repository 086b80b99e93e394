//! `includeNixDB`: a Nix database of the image's closure, put into a layer with GC roots.

use std::path::{Path, PathBuf};

use buildimage_layer::{Dir, Node, ScratchDir, Tree};
use buildimage_nixdb::{Closure, Store, StorePath, write_db};

use crate::Env;
use crate::error::{Error, Input, Result, ResultExt};
use crate::events::Stage;
use crate::store::{find_roots, store_path_items, store_paths_under};

/// A database written for a layer. Its files live in a scratch folder that must outlive
/// the layer's writing, since the layer's entries point into it.
pub struct Database {
    /// Holds `db.sqlite` and `schema`.
    pub scratch: ScratchDir,
    /// The closure registered in it, with NAR hashes and sizes: a later closure step need
    /// not scan or hash these paths again.
    pub closure: Closure,
}

/// The database stage of a build: with `include` (`includeNixDB`), writes the database of
/// the closure of `items` into `tree` (see [`add_database`]) and tells `store` the hashes
/// and sizes computed for it, so that the closure stage does not scan or hash those paths
/// again. Returns the database, whose files must outlive the layer's writing, and the store.
pub(crate) fn database_stage(
    include: bool,
    tree: &mut Tree,
    items: &[PathBuf],
    store: Option<Store>,
    env: &Env<'_>,
    registration_time: u64,
) -> Result<(Option<Database>, Option<Store>)> {
    if !include {
        return Ok((None, store));
    }
    env.events.stage(Stage::Database);
    let database = add_database(tree, items, store.as_ref(), &env.tmp, registration_time)?;
    let store = store.map(|s| s.with_path_infos(database.closure.iter().cloned()));
    Ok((Some(database), store))
}

/// Writes the database of the closure of `items` (the copied folders: store paths
/// themselves, folders inside store paths, and plain folders whose files `tree` holds and
/// name store paths) and puts it into `tree`: `nix/var/nix/db/{db.sqlite,schema}`, an
/// empty `nix/store`, and `nix/var/nix/gcroots/docker/<name>` links to the items that are
/// store paths. Paths are registered at `registration_time`.
pub fn add_database(
    tree: &mut Tree,
    items: &[PathBuf],
    store: Option<&Store>,
    scratch_parent: &Path,
    registration_time: u64,
) -> Result<Database> {
    let scratch = ScratchDir::new_in(scratch_parent, "buildimage-nixdb.")?;
    let closure = match store {
        Some(store) => {
            let mut roots = store_paths_under(items);
            roots.extend(find_roots(store, tree, &[]).map_err(|e| {
                e.context("Scanning the copied folders for store paths failed")
                    .about(Input::IncludeNixDb)
            })?);
            let roots: Vec<StorePath> = roots.into_iter().collect();
            store
                .closure_with_nar_info(&roots)
                .context(|| "Computing the closure of the copied folders failed".to_owned())
                .about(Input::IncludeNixDb)?
        }
        None => Closure::default(),
    };
    insert_database(
        tree,
        &closure,
        &store_path_items(items),
        scratch.path(),
        registration_time,
    )?;
    Ok(Database { scratch, closure })
}

/// Writes the database of `closure` into `dir` and puts it into the tree.
fn insert_database(
    tree: &mut Tree,
    closure: &Closure,
    gcroots: &[StorePath],
    dir: &Path,
    registration_time: u64,
) -> Result<()> {
    let time = i64::try_from(registration_time).map_err(|_| {
        Error::message(format!(
            "SOURCE_DATE_EPOCH {registration_time} is too large"
        ))
    })?;
    write_db(dir, closure.as_slice(), time)
        .context(|| "Cannot write the Nix database".to_owned())
        .about(Input::IncludeNixDb)?;
    for name in ["db.sqlite", "schema"] {
        let source = dir.join(name);
        let size = std::fs::metadata(&source)
            .map_err(|e| buildimage_layer::Error::io("inspect", &source, e))?
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
