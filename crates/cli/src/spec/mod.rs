//! The SPEC: a JSON object of nixpkgs `dockerTools.buildImage` arguments, parsed
//! into a typed [`Spec`] with precise errors.
//!
//! The keys are buildImage's argument names and keep their nixpkgs meanings and
//! defaults (docs/formats.md §13.1). The output of `nix eval --json` on a buildImage
//! argument set is valid input, so every optional key may also be JSON `null`, which
//! means "unset, use the default". On top of the nixpkgs arguments, three extension keys
//! are accepted: `runAsRootShell`, `inheritConfig` and `closureInfo`.
//!
//! ```json
//! {
//!   "name": "registry-1.docker.io/redis",
//!   "tag": "latest",
//!   "copyToRoot": ["./root", "/nix/store/00000000000000000000000000000000-redis"],
//!   "config": { "Cmd": ["/bin/redis-server"], "WorkingDir": "/data" }
//! }
//! ```
//!
//! [`parse`] reads such a text, [`parse_value`] an already decoded value. Relative paths
//! are joined onto the spec file's folder; absolute ones (store paths included) are kept
//! as they are. Every error names the key at fault and what was expected, and the two
//! nixpkgs messages (both `contents` and `copyToRoot`, unknown `compressor`) are kept
//! verbatim. Warnings, such as nixpkgs' deprecation notice for `contents`, are returned
//! beside the spec for the caller to print on standard error.
//!
//! The parts: [`json`](self) reading with duplicate-key detection, `keys` (one reader per
//! type of value, each error naming its key), `hints` (what an unknown key was meant to
//! be). [`default_output_name`] names the image file as nixpkgs names the derivation.
//!
//! # Determinism
//!
//! Parsing is a pure function of the text and `base_dir`. Objects are
//! `serde_json` maps without `preserve_order`, that is `BTreeMap`s, so `config`
//! and `build_args` come out with their keys in byte order at every level, as
//! Nix writes them; list order is kept. Nothing here reads the clock:
//! [`Created::Now`] is resolved by the caller.

mod hints;
mod json;
mod keys;
pub mod layered;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use buildimage_archive::created::{DEFAULT_CREATED, check_rfc3339};

pub use hints::UnknownKeyHint;
use hints::{Keys, hint_for};
use keys::{
    describe, describe_str, invalid, opt_architecture, opt_bool, opt_id, opt_object, opt_path,
    opt_string, opt_u64, path_list, present,
};

/// Every key a SPEC may hold, in the order of nixpkgs' argument list (docs/formats.md
/// §13.1), then the extension keys. Values are checked in this order, except that
/// `copyToRoot` and its alias `contents` come right after `name`.
const KNOWN_KEYS: [&str; 23] = [
    "name",
    "tag",
    "fromImage",
    "fromImageName",
    "fromImageTag",
    "copyToRoot",
    "keepContentsDirlinks",
    "config",
    "architecture",
    "extraCommands",
    "uid",
    "gid",
    "runAsRoot",
    "diskSize",
    "buildVMMemorySize",
    "created",
    "compressor",
    "includeNixDB",
    "contents",
    "meta",
    "runAsRootShell",
    "inheritConfig",
    "closureInfo",
];

/// Arguments of nixpkgs `buildLayeredImage`/`streamLayeredImage` that
/// `buildImage` does not take.
const LAYERED_IMAGE_ARGUMENTS: [(&str, &str); 8] = [
    ("maxLayers", LAYERED_FUNCTIONS),
    ("fakeRootCommands", LAYERED_FUNCTIONS),
    ("enableFakechroot", LAYERED_FUNCTIONS),
    ("includeStorePaths", LAYERED_FUNCTIONS),
    ("layeringPipeline", LAYERED_FUNCTIONS),
    ("uname", LAYERED_FUNCTIONS),
    ("gname", LAYERED_FUNCTIONS),
    ("mtime", LAYERED_FUNCTIONS),
];

/// How the layered functions are named in hints.
const LAYERED_FUNCTIONS: &str = "buildLayeredImage and streamLayeredImage";

/// The compression of the whole archive (`compressor`, docs/formats.md §3.4).
pub use buildimage_archive::Compressor;

/// The `created` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A fixed RFC 3339 date-time, written into the config as given.
    Fixed(String),
    /// `"now"`: the build time, written by the caller (`buildimage_archive::created::now_rfc3339`).
    Now,
}

impl Default for Created {
    fn default() -> Self {
        Self::Fixed(DEFAULT_CREATED.to_owned())
    }
}

/// A parsed SPEC: buildImage's arguments with their defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// `name`: the image name as given (not lower-cased, not validated here).
    pub name: String,
    /// `tag`: `None` asks for the automatic, content-derived tag.
    pub tag: Option<String>,
    /// `fromImage`: the base image archive, joined onto the spec's folder when relative.
    pub from_image: Option<PathBuf>,
    /// `fromImageName`: with `from_image_tag`, selects one image of the base archive.
    pub from_image_name: Option<String>,
    /// `fromImageTag`: with `from_image_name`, selects one image of the base archive.
    pub from_image_tag: Option<String>,
    /// `copyToRoot` (or its deprecated alias `contents`): folders whose contents
    /// go to `/` of the new layer, in order; relative ones joined onto the spec's folder.
    pub copy_to_root: Vec<PathBuf>,
    /// `keepContentsDirlinks`: keep symlinks to directories when copying.
    pub keep_contents_dirlinks: bool,
    /// `config`: the Docker image `config` object, passed through with sorted keys.
    pub config: Option<Map<String, Value>>,
    /// `architecture`: `None` means the host's Go architecture name, chosen by the caller.
    pub architecture: Option<String>,
    /// `extraCommands`: shell code run in the layer's root before it is packed.
    pub extra_commands: String,
    /// `uid`: owner of the copied files in pure mode.
    pub uid: u32,
    /// `gid`: group of the copied files in pure mode.
    pub gid: u32,
    /// `runAsRoot`: shell code run as root in the image; `None` selects pure mode.
    pub run_as_root: Option<String>,
    /// `runAsRootShell` (extension): the shell that runs `runAsRoot`.
    pub run_as_root_shell: Option<String>,
    /// `inheritConfig` (extension): start from the base image's config.
    pub inherit_config: bool,
    /// `closureInfo` (extension): a closureInfo output folder (`store-paths`
    /// and `registration`) or an `exportReferencesGraph` file.
    pub closure_info: Option<PathBuf>,
    /// `diskSize` (MiB): accepted for compatibility, no effect.
    pub disk_size: Option<u64>,
    /// `buildVMMemorySize` (MiB): accepted for compatibility, no effect.
    pub build_vm_memory_size: Option<u64>,
    /// `created`: the config and history date.
    pub created: Created,
    /// `compressor`: the compression of the whole archive.
    pub compressor: Compressor,
    /// `includeNixDB`: put a Nix database of the closure into the layer.
    pub include_nix_db: bool,
    /// `meta`: derivation metadata, an object; no effect.
    pub meta: Option<Value>,
    /// The spec as given (an object, keys sorted), reported as `buildArgs`.
    pub build_args: Value,
}

/// A parsed spec and the warnings to print on standard error.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed<T = Spec> {
    /// The spec.
    pub spec: T,
    /// Warnings, one message each, in a fixed order.
    pub warnings: Vec<String>,
}

/// A key, or an item of a list-valued key, named in an error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPath {
    /// The SPEC key.
    pub key: &'static str,
    /// The index of the list item at fault, for `copyToRoot`/`contents`.
    pub index: Option<usize>,
}

impl KeyPath {
    fn key(key: &'static str) -> Self {
        Self { key, index: None }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.key)?;
        if let Some(index) = self.index {
            write!(f, "[{index}]")?;
        }
        Ok(())
    }
}

/// The keys of a buildImage spec, for hints.
const BUILD_IMAGE_KEYS: Keys = Keys {
    known: &KNOWN_KEYS,
    foreign: &LAYERED_IMAGE_ARGUMENTS,
    function: "buildImage",
};

/// Why a SPEC was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The text is not JSON.
    #[error("Spec is not valid JSON at line {line}, column {column}: {reason}")]
    Json {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// `serde_json`'s description, without the position.
        reason: String,
    },
    /// An object in the text has the same key twice.
    #[error("Key `{path}` appears more than once (line {line}, column {column})")]
    DuplicateKey {
        /// The repeated key, with its parents: `config.Env`.
        path: String,
        /// 1-based line of the second occurrence.
        line: usize,
        /// 1-based column of the second occurrence.
        column: usize,
    },
    /// The top-level value is not an object.
    #[error("Spec must be a JSON object of buildImage arguments, got {got}")]
    NotAnObject {
        /// What was found instead.
        got: String,
    },
    /// There is no `name` key.
    #[error("Missing required key `name`")]
    MissingName,
    /// A key that buildImage does not take.
    #[error("Unknown key `{key}`{hint}")]
    UnknownKey {
        /// The key as written.
        key: String,
        /// What it was probably meant to be.
        hint: UnknownKeyHint,
    },
    /// A key with a value of the wrong type or out of range.
    #[error("Key {key}: expected {expected}, got {got}")]
    InvalidValue {
        /// The key (and list index) at fault.
        key: KeyPath,
        /// What the key accepts.
        expected: &'static str,
        /// The value found, shortened.
        got: String,
    },
    /// Both `contents` and `copyToRoot` are set (nixpkgs' message, verbatim).
    #[error("in docker image {name}: You can not specify both contents and copyToRoot.")]
    ContentsAndCopyToRoot {
        /// The `name` argument.
        name: String,
    },
    /// `compressor` is not one of the three (nixpkgs' message, verbatim).
    #[error("in docker image {name}: compressor must be one of: [gz none zstd]")]
    UnknownCompressor {
        /// The `name` argument.
        name: String,
    },
    /// `created` (or `mtime`) is neither `"now"` nor an RFC 3339 date-time.
    #[error(
        "Key `{key}`: expected \"now\" or an RFC 3339 date-time \
         YYYY-MM-DDTHH:MM:SS[.fraction] followed by Z or ±HH:MM, \
         such as 1970-01-01T00:00:01Z, got {got}: {reason}"
    )]
    InvalidCreated {
        /// The key: `created` or `mtime`.
        key: &'static str,
        /// The value found, shortened.
        got: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `layeringPipeline` that is not a valid list of steps.
    #[error("Key `layeringPipeline`{at}: {message}")]
    InvalidPipeline {
        /// Where in the list: `[1][2]`.
        at: String,
        /// What is wrong.
        message: String,
    },
    /// `maxLayers` leaves no layer for store paths.
    #[error(
        "Key `maxLayers`: expected a number greater than 1 (the customisation layer takes \
         one layer), got {got}"
    )]
    TooFewLayers {
        /// The value found.
        got: u64,
    },
}

/// Parses a SPEC text; relative paths are joined onto `base_dir`, the spec
/// file's folder.
///
/// A leading byte-order mark is skipped. Unlike [`parse_value`], this also
/// rejects an object that repeats a key, at any depth, which a decoded
/// [`Value`] can no longer show.
pub fn parse(text: &str, base_dir: &Path) -> Result<Parsed, SpecError> {
    parse_value(json::decode(text)?, base_dir)
}

/// Parses an already decoded SPEC; relative paths are joined onto `base_dir`.
///
/// Checks, in order: the top level is an object, every key is known, `name`,
/// `contents` against `copyToRoot`, then the other keys in the order of
/// the key list. The first problem found is returned.
pub fn parse_value(value: Value, base_dir: &Path) -> Result<Parsed, SpecError> {
    let object = match value {
        Value::Object(object) => object,
        other => {
            return Err(SpecError::NotAnObject {
                got: describe(&other),
            });
        }
    };
    let map = &object;
    if let Some(key) = map.keys().find(|key| !KNOWN_KEYS.contains(&key.as_str())) {
        return Err(SpecError::UnknownKey {
            key: key.clone(),
            hint: hint_for(key, &BUILD_IMAGE_KEYS),
        });
    }
    let name = match map.get("name") {
        None => return Err(SpecError::MissingName),
        Some(Value::String(name)) if !name.is_empty() => name.clone(),
        Some(other) => return Err(invalid("name", "a non-empty string", other)),
    };
    let mut warnings = Vec::new();
    let copy_to_root = copy_to_root(map, &name, base_dir, &mut warnings)?;
    // Struct fields are evaluated in the order written: the order of the checks.
    let spec = Spec {
        tag: opt_string(map, "tag")?,
        from_image: opt_path(map, "fromImage", base_dir)?,
        from_image_name: opt_string(map, "fromImageName")?,
        from_image_tag: opt_string(map, "fromImageTag")?,
        copy_to_root,
        keep_contents_dirlinks: opt_bool(map, "keepContentsDirlinks")?,
        config: opt_object(map, "config")?.cloned(),
        architecture: opt_architecture(map)?,
        extra_commands: opt_string(map, "extraCommands")?.unwrap_or_default(),
        uid: opt_id(map, "uid")?,
        gid: opt_id(map, "gid")?,
        run_as_root: opt_string(map, "runAsRoot")?,
        disk_size: opt_u64(map, "diskSize")?,
        build_vm_memory_size: opt_u64(map, "buildVMMemorySize")?,
        created: opt_time(map, "created")?,
        compressor: opt_compressor(map, &name)?,
        include_nix_db: opt_bool(map, "includeNixDB")?,
        meta: opt_object(map, "meta")?.cloned().map(Value::Object),
        run_as_root_shell: opt_string(map, "runAsRootShell")?,
        inherit_config: opt_bool(map, "inheritConfig")?,
        closure_info: opt_path(map, "closureInfo", base_dir)?,
        name,
        build_args: Value::Object(object),
    };
    base_selection_warnings(&spec, &mut warnings);
    Ok(Parsed { spec, warnings })
}

/// `copyToRoot`, or its deprecated alias `contents` with nixpkgs' warning.
fn copy_to_root(
    map: &Map<String, Value>,
    name: &str,
    base_dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<PathBuf>, SpecError> {
    if present(map, "contents").is_none() {
        return path_list(map, "copyToRoot", base_dir);
    }
    if present(map, "copyToRoot").is_some() {
        // nixpkgs prints the deprecation warning, then throws.
        return Err(SpecError::ContentsAndCopyToRoot {
            name: name.to_owned(),
        });
    }
    warnings.push(format!(
        "in docker image {name}: The contents parameter is deprecated. Change to copyToRoot \
         if the contents are designed to be copied to the root filesystem, such as when you \
         use `buildEnv` or similar between contents and your packages. Use copyToRoot = \
         buildEnv {{ ... }}; or similar if you intend to add packages to /bin."
    ));
    path_list(map, "contents", base_dir)
}

/// A time key (`created`, `mtime`): `"now"`, an RFC 3339 date-time, or null.
fn opt_time(map: &Map<String, Value>, key: &'static str) -> Result<Created, SpecError> {
    match present(map, key) {
        None => Ok(Created::default()),
        Some(Value::String(s)) if s == "now" => Ok(Created::Now),
        Some(Value::String(s)) => match check_rfc3339(s) {
            Ok(()) => Ok(Created::Fixed(s.clone())),
            Err(reason) => Err(SpecError::InvalidCreated {
                key,
                got: describe_str(s),
                reason,
            }),
        },
        Some(other) => {
            let expected = "\"now\", an RFC 3339 date-time string, or null";
            Err(invalid(key, expected, other))
        }
    }
}

fn opt_compressor(map: &Map<String, Value>, name: &str) -> Result<Compressor, SpecError> {
    match present(map, "compressor") {
        None => Ok(Compressor::default()),
        Some(Value::String(s)) => {
            Compressor::from_name(s).ok_or_else(|| SpecError::UnknownCompressor {
                name: name.to_owned(),
            })
        }
        Some(other) => {
            let expected = "one of \"gz\", \"none\", \"zstd\", or null";
            Err(invalid("compressor", expected, other))
        }
    }
}

/// `fromImageName` and `fromImageTag` select an image of the `fromImage` archive; without
/// one they do nothing. (A lone name or tag is the base reader's to warn about: it is the
/// one that falls back to the first image.)
fn base_selection_warnings(spec: &Spec, warnings: &mut Vec<String>) {
    if spec.from_image.is_none()
        && (spec.from_image_name.is_some() || spec.from_image_tag.is_some())
    {
        warnings.push(
            "Keys `fromImageName` and `fromImageTag` have no effect without `fromImage`".to_owned(),
        );
    }
}

/// The default output file name, as nixpkgs names the derivation:
/// `docker-image-<part of name after the last '/'>.tar` plus the compressor's
/// extension. Like Nix's `baseNameOf`, one trailing `/` is ignored.
pub fn default_output_name(name: &str, compressor: Compressor) -> String {
    format!(
        "docker-image-{}.tar{}",
        name_base(name),
        compressor.extension()
    )
}

/// The part of an image name after its last `/`, one trailing `/` ignored, as Nix's
/// `baseNameOf` gives it: what the default output files are named after.
pub(crate) fn name_base(name: &str) -> &str {
    let name = name.strip_suffix('/').unwrap_or(name);
    name.rsplit('/').next().unwrap_or(name)
}
