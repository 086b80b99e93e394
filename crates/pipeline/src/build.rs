//! `buildImage`: one layer of the image's own files and their store closure, on top of an
//! optional base image.

use std::path::PathBuf;

use serde_json::{Map, Value, json};

use buildimage_archive::{
    BaseFs, Destination, ImageLayer, ImageSummary, LayerData, LayerKind, merge_base_config,
};
use buildimage_layer::{CopyOptions, Owner, Tree, Warnings};
use buildimage_nixdb::StorePath;

use crate::Env;
use crate::base::{self, BaseRequest};
use crate::compose::OwnLayer;
use crate::database::database_stage;
use crate::error::{Input, Result};
use crate::events::Stage;
use crate::scripts::{self, RootScript, warn_all};
use crate::store::{StoreSource, runtime_closure};
use crate::write::{ImageHead, image_name, write_image};

/// What `buildImage` is asked to build, its arguments resolved (paths absolute, defaults
/// filled in, `created` a date).
#[derive(Debug, Clone, PartialEq)]
pub struct BuildImage {
    /// The image name as given; the image is named in lower case.
    pub name: String,
    /// The tag; `None` for the automatic one ([`crate::auto_tag`]).
    pub tag: Option<String>,
    /// The base image.
    pub from_image: Option<BaseRequest>,
    /// Folders whose contents are copied to `/`, later ones winning.
    pub copy_to_root: Vec<PathBuf>,
    /// rsync `-K` rather than `-k` when copying.
    pub keep_contents_dirlinks: bool,
    /// The container config.
    pub config: Option<Map<String, Value>>,
    /// Start from the base image's whole config, not only its `Env`.
    pub inherit_config: bool,
    /// Go architecture name.
    pub architecture: String,
    /// `created` of the config and history.
    pub created: String,
    /// Shell code run in the layer's root as the invoking user.
    pub extra_commands: String,
    /// Owner of the copied files (when no root script runs).
    pub uid: u32,
    /// Group of the copied files (when no root script runs).
    pub gid: u32,
    /// Shell code run as root in the image.
    pub run_as_root: Option<RootScript>,
    /// Put a Nix database of the copied folders' closure into the layer.
    pub include_nix_db: bool,
    /// Where store paths come from.
    pub store: StoreSource,
    /// Modification time of every entry (`SOURCE_DATE_EPOCH`).
    pub mtime: u64,
}

impl BuildImage {
    /// Checks what can be checked before any work: the name (lower-cased) and the tag
    /// against Docker's reference grammar.
    pub fn check(&self) -> Result<()> {
        image_name(&self.name, self.tag.as_deref())?;
        Ok(())
    }
}

/// What a build made.
#[derive(Debug, Clone)]
pub struct Built {
    /// The image name, lower-cased.
    pub name: String,
    /// What the destination took: layers, config digest, tag.
    pub summary: ImageSummary,
    /// The store paths of the layer's closure.
    pub store_paths: Vec<StorePath>,
}

/// Builds `request` into `dest`: reads the base, plans the copied folders, writes the Nix
/// database, runs the scripts, finds the store closure, and writes the image.
pub fn build_image(
    request: &BuildImage,
    env: &Env<'_>,
    dest: &mut dyn Destination,
) -> Result<Built> {
    request.check()?;
    let name = request.name.to_lowercase();

    let base = base::read_stage(request.from_image.as_ref(), env)?;
    let base_fs = match &base {
        Some(image) => base::filesystem(image)?,
        None => BaseFs::new(),
    };
    let base_fs = &base_fs;
    let base_image = base.as_ref();
    env.cancel.check()?;

    env.events.stage(Stage::Plan);
    let mut tree = copy_folders(
        &request.copy_to_root,
        request.keep_contents_dirlinks,
        &request.store,
        env,
    )?;

    // The database files must live until the layer is written, since entries point to them.
    let (database, store) = database_stage(
        request.include_nix_db,
        &mut tree,
        &request.copy_to_root,
        request.store.open()?,
        env,
        request.mtime,
    )?;
    env.cancel.check()?;

    // Scripts need real files to run in: stage the tree, run, plan again from the result.
    // The staging folder must live until the layer is written, since entries point into it.
    let staging = if let Some(script) = &request.run_as_root {
        env.events.stage(Stage::Scripts);
        Some(scripts::run_as_root(
            &mut tree,
            script,
            &request.extra_commands,
            base_image,
            &request.store,
            env,
        )?)
    } else if request.extra_commands.is_empty() {
        None
    } else {
        env.events.stage(Stage::Scripts);
        Some(scripts::extra_commands(
            &mut tree,
            &request.extra_commands,
            env,
        )?)
    };
    env.cancel.check()?;

    env.events.stage(Stage::Closure);
    let config = merge_base_config(
        request.config.as_ref(),
        base_image
            .and_then(|b| b.config.get("config"))
            .and_then(Value::as_object),
        request.inherit_config,
    );
    // In root mode the owners are the real ones the script left (recorded in the tree);
    // `uid` and `gid` apply otherwise, as in nixpkgs.
    let owner = if request.run_as_root.is_some() {
        Owner::root()
    } else {
        Owner::numeric(request.uid.into(), request.gid.into())
    };
    let entries = tree.entries(&owner, request.mtime);
    // The layer's runtime closure: every store path its files or its config name, and
    // everything those reference.
    let closure = match &store {
        Some(store) => Some((
            store,
            runtime_closure(store, &tree, &config, false, "the layer")?,
        )),
        None => None,
    };
    let store_paths: Vec<StorePath> = closure
        .iter()
        .flat_map(|(_, c)| c.paths().cloned())
        .collect();
    let layer = OwnLayer::new(
        entries,
        closure.as_ref().map(|(s, c)| (*s, c)),
        &tree,
        base_fs,
        request.mtime,
    );
    env.cancel.check()?;

    env.events.stage(Stage::Write);
    let head = ImageHead {
        name: &name,
        tag: request.tag.as_ref(),
        architecture: &request.architecture,
        config,
        created: &request.created,
        mtime: request.mtime,
        base: base_image,
    };
    let own = ImageLayer {
        kind: LayerKind::Own,
        data: LayerData::Planned(&layer),
    };
    let history = vec![json!({ "created": request.created })];
    let summary = write_image(head, vec![own], history, dest, env)?;
    drop(layer);
    remove_scratch(staging, env);
    remove_scratch(database.map(|d| d.scratch), env);
    Ok(Built {
        name,
        summary,
        store_paths,
    })
}

/// Plans the copied folders: each merged into the tree in order, later ones winning, then
/// the root made writable for its owner and group, as `buildImage` does.
pub(crate) fn copy_folders(
    items: &[PathBuf],
    keep_dirlinks: bool,
    store: &StoreSource,
    env: &Env<'_>,
) -> Result<Tree> {
    let options = CopyOptions {
        keep_dirlinks,
        store_root: store.root.clone(),
    };
    let mut tree = Tree::new();
    let mut warnings = Warnings::default();
    for item in items {
        let host = store.host_path(item);
        tree.copy_from(&host, &options, &mut warnings)
            .map_err(|e| {
                // An error about the folder itself names it already.
                let names_it = matches!(&e,
                buildimage_layer::Error::Io { path, .. }
                | buildimage_layer::Error::NotADirectory { path, .. } if *path == host);
                let error = crate::Error::from(e).about(Input::CopyToRoot);
                if names_it {
                    error
                } else {
                    error.context(format!("Cannot copy {}", item.display()))
                }
            })?;
    }
    tree.make_root_writable();
    warn_all(env, &warnings);
    Ok(tree)
}

/// Removes a scratch folder now, telling the user when that fails.
pub(crate) fn remove_scratch(scratch: Option<buildimage_layer::ScratchDir>, env: &Env<'_>) {
    if let Some(scratch) = scratch
        && let Err(e) = scratch.remove()
    {
        env.events
            .warning(None, &format!("cannot remove a temporary folder: {e}"));
    }
}
