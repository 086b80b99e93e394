//! From a parsed spec to the pipeline's request: the defaults that depend on the machine
//! or the environment resolved, and the rules between keys checked.

use std::path::PathBuf;

use buildimage_archive::created::{now_rfc3339, rfc3339_seconds};
use buildimage_layer::DEFAULT_MTIME;
use buildimage_pipeline::{
    BaseRequest, BuildImage, BuildLayered, RootScript, StoreOwner, StoreSource, host_architecture,
};

use crate::spec::layered::LayeredSpec;
use crate::spec::{Created, Spec};

/// What resolving a spec takes from outside it.
#[derive(Debug, Clone)]
pub struct Context {
    /// `SOURCE_DATE_EPOCH`, if set.
    pub source_date_epoch: Option<String>,
    /// The time `created = "now"` stands for, in seconds since the epoch.
    pub now: i64,
    /// `--store`.
    pub store: PathBuf,
    /// `--closure-info`, which replaces the spec's `closureInfo`.
    pub closure_info: Option<PathBuf>,
    /// `--max-base-size`.
    pub max_base_size: Option<u64>,
}

/// Why a spec that parsed cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// A key that only means something together with another one.
    #[error("Key `{key}` needs `{needs}`: {why}")]
    Needs {
        /// The key given.
        key: &'static str,
        /// The key it needs.
        needs: &'static str,
        /// What is missing without it.
        why: &'static str,
    },
    /// A time before 1970, which a tar header cannot hold.
    #[error("Key `{key}`: {value} is before 1970-01-01, which a layer cannot record")]
    BeforeEpoch {
        /// The key.
        key: &'static str,
        /// The value.
        value: String,
    },
    /// `SOURCE_DATE_EPOCH` is not a number of seconds.
    #[error("SOURCE_DATE_EPOCH must be a non-negative integer of seconds, got {got:?}")]
    SourceDateEpoch {
        /// Its value.
        got: String,
    },
}

impl Context {
    /// Where store paths come from: `--store`, and `--closure-info` or else the spec's
    /// `closureInfo`.
    fn store_source(&self, spec_closure_info: Option<&PathBuf>) -> StoreSource {
        StoreSource {
            root: self.store.clone(),
            closure_info: self
                .closure_info
                .clone()
                .or_else(|| spec_closure_info.cloned()),
        }
    }

    /// The `created` of the config and history: the spec's, or the build time for
    /// `"now"`.
    fn created(&self, created: &Created) -> String {
        match created {
            Created::Fixed(text) => text.clone(),
            Created::Now => now_rfc3339(self.now),
        }
    }
}

/// The request that `buildimage build` runs for `spec`.
pub fn build_image(spec: &Spec, context: &Context) -> Result<BuildImage, RequestError> {
    if spec.run_as_root_shell.is_some() && spec.run_as_root.is_none() {
        return Err(RequestError::Needs {
            key: "runAsRootShell",
            needs: "runAsRoot",
            why: "there is no script to run",
        });
    }
    if spec.inherit_config && spec.from_image.is_none() {
        return Err(RequestError::Needs {
            key: "inheritConfig",
            needs: "fromImage",
            why: "there is no base config to inherit",
        });
    }
    Ok(BuildImage {
        name: spec.name.clone(),
        tag: spec.tag.clone(),
        from_image: spec.from_image.clone().map(|path| BaseRequest {
            path,
            name: spec.from_image_name.clone(),
            tag: spec.from_image_tag.clone(),
            max_size: context.max_base_size,
        }),
        copy_to_root: spec.copy_to_root.clone(),
        keep_contents_dirlinks: spec.keep_contents_dirlinks,
        config: spec.config.clone(),
        inherit_config: spec.inherit_config,
        architecture: spec.architecture.clone().unwrap_or_else(host_architecture),
        created: context.created(&spec.created),
        extra_commands: spec.extra_commands.clone(),
        uid: spec.uid,
        gid: spec.gid,
        run_as_root: spec.run_as_root.clone().map(|script| RootScript {
            script,
            shell: spec.run_as_root_shell.clone(),
        }),
        include_nix_db: spec.include_nix_db,
        store: context.store_source(spec.closure_info.as_ref()),
        mtime: source_date_epoch(context.source_date_epoch.as_deref())?,
    })
}

/// The request that `buildimage build-layered` and `stream-layered` run for `spec`.
pub fn build_layered(spec: &LayeredSpec, context: &Context) -> Result<BuildLayered, RequestError> {
    let store_mtime = match &spec.mtime {
        Created::Now => context.now,
        Created::Fixed(text) => rfc3339_seconds(text).unwrap_or(0),
    };
    let store_mtime = u64::try_from(store_mtime).map_err(|_| RequestError::BeforeEpoch {
        key: "mtime",
        value: match &spec.mtime {
            Created::Fixed(text) => text.clone(),
            Created::Now => "now".to_owned(),
        },
    })?;
    Ok(BuildLayered {
        name: spec.name.clone(),
        tag: spec.tag.clone(),
        from_image: spec.from_image.clone().map(|path| BaseRequest {
            path,
            name: None,
            tag: None,
            max_size: context.max_base_size,
        }),
        contents: spec.contents.clone(),
        config: spec.config.clone(),
        architecture: spec.architecture.clone().unwrap_or_else(host_architecture),
        created: context.created(&spec.created),
        store_owner: StoreOwner {
            uid: spec.uid,
            gid: spec.gid,
            uname: spec.uname.clone(),
            gname: spec.gname.clone(),
        },
        store_mtime,
        max_layers: usize::try_from(spec.max_layers).unwrap_or(usize::MAX),
        layering: spec.layering_pipeline.clone(),
        extra_commands: spec.extra_commands.clone(),
        fake_root_commands: spec.fake_root_commands.clone(),
        enable_fakechroot: spec.enable_fakechroot,
        include_store_paths: spec.include_store_paths,
        include_nix_db: spec.include_nix_db,
        store: context.store_source(spec.closure_info.as_ref()),
        mtime: source_date_epoch(context.source_date_epoch.as_deref())?,
    })
}

/// Modification time of every tar entry: `SOURCE_DATE_EPOCH`, or 1980-01-01.
fn source_date_epoch(value: Option<&str>) -> Result<u64, RequestError> {
    match value {
        Some(text) if !text.is_empty() => {
            text.trim()
                .parse::<u64>()
                .map_err(|_| RequestError::SourceDateEpoch {
                    got: text.to_owned(),
                })
        }
        _ => Ok(DEFAULT_MTIME),
    }
}
