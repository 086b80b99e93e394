//! `buildLayeredImage` and `streamLayeredImage`: the base image's layers, then one layer
//! per popular store path (the rest merged into the last), then the customisation layer.

use std::borrow::Cow;
use std::path::PathBuf;

use serde_json::{Map, Value, json};

use buildimage_archive::{
    Destination, ImageLayer, ImageSummary, LayerData, LayerKind, merge_layered_config,
};
use buildimage_layer::{Owner, Tree, Warnings};
use buildimage_nixdb::{Store, StorePath};

use crate::Env;
use crate::base::{self, BaseRequest};
use crate::build::remove_scratch;
use crate::compose::StoreLayer;
use crate::database::database_stage;
use crate::error::{Error, Input, Result, ResultExt};
use crate::events::Stage;
use crate::layering::{Graph, Pipeline};
use crate::scripts::{self, warn_all};
use crate::store::{StoreSource, runtime_closure};
use crate::write::{ImageHead, image_name, write_image};

/// Owner and names of every entry of the store layers (`uid`, `gid`, `uname`, `gname`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOwner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// User name.
    pub uname: String,
    /// Group name.
    pub gname: String,
}

impl Default for StoreOwner {
    fn default() -> Self {
        StoreOwner {
            uid: 0,
            gid: 0,
            uname: "root".to_owned(),
            gname: "root".to_owned(),
        }
    }
}

/// What `buildLayeredImage`/`streamLayeredImage` is asked to build, its arguments resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildLayered {
    /// The image name as given; the image is named in lower case.
    pub name: String,
    /// The tag; `None` for the automatic one.
    pub tag: Option<String>,
    /// The base image, whose layers go first.
    pub from_image: Option<BaseRequest>,
    /// Store paths (or folders inside them) whose files are linked into the customisation
    /// layer; the first to provide a name wins.
    pub contents: Vec<PathBuf>,
    /// The container config.
    pub config: Option<Map<String, Value>>,
    /// Go architecture name.
    pub architecture: String,
    /// `created` of the config and history.
    pub created: String,
    /// Owner of the store layers' entries.
    pub store_owner: StoreOwner,
    /// Modification time of the store layers' entries (`mtime`).
    pub store_mtime: u64,
    /// The layer budget (`maxLayers`), used when `layering` is `None`.
    pub max_layers: usize,
    /// `layeringPipeline`: steps replacing the popularity contest and the budget.
    pub layering: Option<Pipeline>,
    /// Shell code run in the customisation layer's folder as the invoking user.
    pub extra_commands: String,
    /// Shell code run there as a fake root (owners and devices it sets are kept).
    pub fake_root_commands: String,
    /// Run `fake_root_commands` chrooted into the customisation layer.
    pub enable_fakechroot: bool,
    /// Put the store paths into the image (`false`: only the customisation layer).
    pub include_store_paths: bool,
    /// Put a Nix database of the contents' closure into the customisation layer.
    pub include_nix_db: bool,
    /// Where store paths come from.
    pub store: StoreSource,
    /// Modification time of the customisation layer's entries (`SOURCE_DATE_EPOCH`).
    pub mtime: u64,
}

/// One layer of a layered image, as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerReport {
    /// What it is.
    pub kind: LayerKind,
    /// The store paths of a store layer, in its order.
    pub store_paths: Vec<StorePath>,
}

/// What a layered build made.
#[derive(Debug, Clone)]
pub struct BuiltLayered {
    /// The image name, lower-cased.
    pub name: String,
    /// What the destination took.
    pub summary: ImageSummary,
    /// Each layer, as `summary.layers` lists them.
    pub layers: Vec<LayerReport>,
}

impl BuildLayered {
    /// Checks what can be checked before any work: the name and tag, and the layer budget
    /// (`maxLayers` must leave the customisation layer and one store layer).
    pub fn check(&self) -> Result<()> {
        image_name(&self.name, self.tag.as_deref())?;
        if self.layering.is_none() && self.max_layers < 2 {
            return Err(Error::message(format!(
                "expected a number greater than 1 (the customisation layer takes one layer), \
                 got {}",
                self.max_layers
            ))
            .about(Input::MaxLayers));
        }
        Ok(())
    }
}

/// Builds a layered image into `dest`: reads the base, links the contents into the
/// customisation layer, writes its Nix database, runs its scripts, finds the closure of
/// what it and the config name, cuts it into store layers, and writes the image.
pub fn build_layered(
    request: &BuildLayered,
    env: &Env<'_>,
    dest: &mut dyn Destination,
) -> Result<BuiltLayered> {
    request.check()?;
    let name = request.name.to_lowercase();

    let base = base::read_stage(request.from_image.as_ref(), env)?;
    let base_image = base.as_ref();
    let base_layers = base_image.map_or(0, |b| b.layers.len());
    let pipeline = match &request.layering {
        Some(pipeline) => pipeline.clone(),
        None => Pipeline::popularity(store_budget(request.max_layers, base_layers)?),
    };
    env.cancel.check()?;

    env.events.stage(Stage::Plan);
    let mut tree = link_contents(&request.contents, &request.store, env)?;
    let (database, store) = database_stage(
        request.include_nix_db,
        &mut tree,
        &request.contents,
        request.store.open()?,
        env,
        request.mtime,
    )?;
    env.cancel.check()?;

    let staging = if request.extra_commands.is_empty() && request.fake_root_commands.is_empty() {
        None
    } else {
        env.events.stage(Stage::Scripts);
        Some(scripts::fake_root(
            &mut tree,
            &request.extra_commands,
            &request.fake_root_commands,
            request.enable_fakechroot,
            &request.store,
            env,
        )?)
    };
    env.cancel.check()?;

    env.events.stage(Stage::Closure);
    let config = merge_layered_config(
        request.config.as_ref(),
        base_image
            .and_then(|b| b.config.get("config"))
            .and_then(Value::as_object),
    );
    let store_layers = match (&store, request.include_store_paths) {
        (Some(store), true) => store_layers(store, &tree, &config, &pipeline, request)?,
        _ => Vec::new(),
    };
    // The customisation layer holds its own entries only: their closure is in the store
    // layers.
    let customisation = tree.entries(&Owner::root(), request.mtime);
    env.cancel.check()?;

    env.events.stage(Stage::Write);
    let mut reports: Vec<LayerReport> = (0..base_layers)
        .map(|_| LayerReport {
            kind: LayerKind::Base,
            store_paths: Vec::new(),
        })
        .collect();
    let mut layers: Vec<ImageLayer<'_>> = Vec::new();
    let mut history = Vec::new();
    for layer in &store_layers {
        layers.push(ImageLayer {
            kind: LayerKind::Store,
            data: LayerData::Planned(layer),
        });
        let paths: Vec<StorePath> = layer.paths().cloned().collect();
        history.push(json!({
            "created": request.created,
            "comment": format!("store paths: {}", python_list(&paths)),
        }));
        reports.push(LayerReport {
            kind: LayerKind::Store,
            store_paths: paths,
        });
    }
    layers.push(ImageLayer {
        kind: LayerKind::Own,
        data: LayerData::Planned(&customisation),
    });
    history.push(json!({ "created": request.created, "comment": "customisation layer" }));
    reports.push(LayerReport {
        kind: LayerKind::Own,
        store_paths: Vec::new(),
    });
    let head = ImageHead {
        name: &name,
        tag: request.tag.as_ref(),
        architecture: &request.architecture,
        config,
        created: &request.created,
        mtime: request.mtime,
        base: base_image,
    };
    let summary = write_image(head, layers, history, dest, env)?;
    drop(store_layers);
    remove_scratch(staging, env);
    remove_scratch(database.map(|d| d.scratch), env);
    Ok(BuiltLayered {
        name,
        summary,
        layers: reports,
    })
}

/// The layers left for store paths: `maxLayers` less the customisation layer and the
/// base's layers; an error when none is left.
fn store_budget(max_layers: usize, base_layers: usize) -> Result<usize> {
    let used = 1 + base_layers;
    if used >= max_layers {
        return Err(Error::message(format!(
            "{max_layers} layers leave none for the store paths: the base image has \
             {base_layers} and the customisation layer takes one; raise it to at least {}",
            used + 1
        ))
        .about(Input::MaxLayers));
    }
    Ok(max_layers - used)
}

/// The symlink tree of the contents, as nixpkgs' `symlinkJoin` makes it.
fn link_contents(items: &[PathBuf], store: &StoreSource, env: &Env<'_>) -> Result<Tree> {
    let mut tree = Tree::new();
    let mut warnings = Warnings::default();
    for item in items {
        let Some(in_image) = item.to_str().filter(|s| s.starts_with("/nix/store/")) else {
            return Err(Error::message(format!(
                "{} is not in the Nix store: the customisation layer links the files of store \
                 paths (copy other files in with extraCommands)",
                item.display()
            ))
            .about(Input::Contents));
        };
        let host = store.host_path(item);
        tree.link_from(
            &host,
            in_image.trim_end_matches('/').as_bytes(),
            &mut warnings,
        )
        .context(|| format!("Cannot link {in_image} into the customisation layer"))
        .about(Input::Contents)?;
    }
    warn_all(env, &warnings);
    Ok(tree)
}

/// The store layers: the closure of what the customisation layer and the config name,
/// cut by `pipeline`.
fn store_layers(
    store: &Store,
    tree: &Tree,
    config: &Map<String, Value>,
    pipeline: &Pipeline,
    request: &BuildLayered,
) -> Result<Vec<StoreLayer>> {
    // NAR sizes order the paths inside a layer of a custom pipeline; the popularity
    // contest does not need them, and hashing every path for them is not free.
    let nar_info = request.layering.is_some();
    let closure = runtime_closure(store, tree, config, nar_info, "the customisation layer")?;
    let graph = Graph::from_references(closure.iter().map(|info| {
        (
            info.path.as_str(),
            info.nar_size.unwrap_or(0),
            info.references.iter().map(StorePath::as_str).collect(),
        )
    }));
    let layers = pipeline
        .apply(graph)
        .map_err(|e| Error::new(e).about(Input::LayeringPipeline))?;
    let owner = Owner {
        uid: request.store_owner.uid.into(),
        gid: request.store_owner.gid.into(),
        uname: owner_name(&request.store_owner.uname),
        gname: owner_name(&request.store_owner.gname),
    };
    layers
        .into_iter()
        .map(|names| {
            let paths = names
                .iter()
                .map(|n| StorePath::new(n))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(StoreLayer::new(
                &paths,
                store,
                &closure,
                owner.clone(),
                request.store_mtime,
            ))
        })
        .collect()
}

/// An owner name for every entry of the store layers: the usual ones borrowed, since each
/// entry carries a copy.
fn owner_name(name: &str) -> Cow<'static, str> {
    match name {
        "root" => Cow::Borrowed("root"),
        "" => Cow::Borrowed(""),
        other => Cow::Owned(other.to_owned()),
    }
}

/// A list of paths as Python prints it, which nixpkgs puts in the history comments:
/// `['/nix/store/a', '/nix/store/b']`.
fn python_list(paths: &[StorePath]) -> String {
    let items: Vec<String> = paths.iter().map(|p| format!("'{p}'")).collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_leaves_the_customisation_layer_and_one_store_layer() {
        assert_eq!(store_budget(100, 0).unwrap(), 99);
        assert_eq!(store_budget(3, 1).unwrap(), 1);
        let err = store_budget(3, 2).unwrap_err();
        assert_eq!(err.input(), Some(Input::MaxLayers));
        assert_eq!(
            err.to_string(),
            "3 layers leave none for the store paths: the base image has 2 and the \
             customisation layer takes one; raise it to at least 4"
        );
    }

    #[test]
    fn history_comments_list_paths_as_python_prints_them() {
        let a = StorePath::new("/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-a").unwrap();
        assert_eq!(
            python_list(&[a.clone(), a]),
            "['/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-a', \
             '/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-a']"
        );
    }
}
