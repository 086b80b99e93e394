//! The SPEC of `build-layered` and `stream-layered`: a JSON object of nixpkgs
//! `dockerTools.buildLayeredImage` / `streamLayeredImage` arguments, parsed into a typed
//! [`LayeredSpec`] with the same kind of errors as the buildImage spec.
//!
//! ```json
//! {
//!   "name": "hello",
//!   "contents": ["/nix/store/00000000000000000000000000000000-hello"],
//!   "config": { "Cmd": ["/bin/hello"] },
//!   "maxLayers": 100
//! }
//! ```

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use buildimage_pipeline::layering::Pipeline;

use super::hints::{Keys, hint_for};
use super::keys::{
    bool_or, invalid, opt_architecture, opt_bool, opt_id, opt_object, opt_path, opt_string,
    path_list, present,
};
use super::{Compressor, Created, Parsed, SpecError, json, opt_compressor, opt_time};

/// Which of the two functions the spec is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `buildLayeredImage`: the archive compressed per `compressor`, written to a file.
    Build,
    /// `streamLayeredImage`: the plain archive, streamed.
    Stream,
}

/// Every key of a `buildLayeredImage` spec, in nixpkgs' order of arguments, then the
/// extension key `closureInfo`, then `compressor`, the one key `streamLayeredImage` lacks.
const KNOWN_KEYS: [&str; 24] = [
    "name",
    "tag",
    "fromImage",
    "contents",
    "config",
    "architecture",
    "created",
    "mtime",
    "uid",
    "gid",
    "uname",
    "gname",
    "maxLayers",
    "extraCommands",
    "fakeRootCommands",
    "enableFakechroot",
    "includeStorePaths",
    "includeNixDB",
    "passthru",
    "layeringPipeline",
    "debug",
    "meta",
    "closureInfo",
    "compressor",
];

/// The hint keys of `buildLayeredImage`.
const BUILD_KEYS: Keys = Keys {
    known: &KNOWN_KEYS,
    foreign: BUILD_IMAGE_ARGUMENTS,
    function: "buildLayeredImage",
};

/// The keys `streamLayeredImage` takes: all but `compressor`, the last.
const STREAM_KNOWN_KEYS: &[&str] = match KNOWN_KEYS.split_last() {
    Some((_, rest)) => rest,
    None => &[],
};

/// What `streamLayeredImage` does not take: `buildImage`'s own arguments, then
/// `compressor`.
const STREAM_FOREIGN: [(&str, &str); 10] = [
    ("copyToRoot", "buildImage"),
    ("keepContentsDirlinks", "buildImage"),
    ("runAsRoot", "buildImage"),
    ("runAsRootShell", "buildImage"),
    ("fromImageName", "buildImage"),
    ("fromImageTag", "buildImage"),
    ("diskSize", "buildImage"),
    ("buildVMMemorySize", "buildImage"),
    ("inheritConfig", "buildImage"),
    ("compressor", "buildImage and buildLayeredImage"),
];

/// Arguments of `buildImage` that the layered functions do not take: all of
/// [`STREAM_FOREIGN`] but `compressor`.
const BUILD_IMAGE_ARGUMENTS: &[(&str, &str)] = match STREAM_FOREIGN.split_last() {
    Some((_, rest)) => rest,
    None => &[],
};

/// The hint keys of `streamLayeredImage`.
const STREAM_KEYS: Keys = Keys {
    known: STREAM_KNOWN_KEYS,
    foreign: &STREAM_FOREIGN,
    function: "streamLayeredImage",
};

/// nixpkgs' default layer budget.
const DEFAULT_MAX_LAYERS: u64 = 100;

/// A parsed layered SPEC: the arguments with their defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct LayeredSpec {
    /// `name`.
    pub name: String,
    /// `tag`: `None` asks for the automatic, content-derived tag.
    pub tag: Option<String>,
    /// `fromImage`.
    pub from_image: Option<PathBuf>,
    /// `contents`: store paths linked into the customisation layer.
    pub contents: Vec<PathBuf>,
    /// `config`.
    pub config: Option<Map<String, Value>>,
    /// `architecture`: `None` means the host's.
    pub architecture: Option<String>,
    /// `created`.
    pub created: Created,
    /// `mtime`: the time of the store layers' entries.
    pub mtime: Created,
    /// `uid` of the store layers' entries.
    pub uid: u32,
    /// `gid` of the store layers' entries.
    pub gid: u32,
    /// `uname` of the store layers' entries.
    pub uname: String,
    /// `gname` of the store layers' entries.
    pub gname: String,
    /// `maxLayers`.
    pub max_layers: u64,
    /// `extraCommands`.
    pub extra_commands: String,
    /// `fakeRootCommands`.
    pub fake_root_commands: String,
    /// `enableFakechroot`.
    pub enable_fakechroot: bool,
    /// `includeStorePaths` (default true).
    pub include_store_paths: bool,
    /// `includeNixDB`.
    pub include_nix_db: bool,
    /// `layeringPipeline`, read.
    pub layering_pipeline: Option<Pipeline>,
    /// `compressor` (`buildLayeredImage` only; `none` for the stream).
    pub compressor: Compressor,
    /// `closureInfo` (extension).
    pub closure_info: Option<PathBuf>,
    /// The spec as given (an object, keys sorted), reported as `buildArgs`.
    pub build_args: Value,
}

/// Parses a layered SPEC text for `function`; relative paths are joined onto `base_dir`.
pub fn parse(
    text: &str,
    base_dir: &Path,
    function: Function,
) -> Result<Parsed<LayeredSpec>, SpecError> {
    parse_value(json::decode(text)?, base_dir, function)
}

/// Parses an already decoded layered SPEC.
pub fn parse_value(
    value: Value,
    base_dir: &Path,
    function: Function,
) -> Result<Parsed<LayeredSpec>, SpecError> {
    let Value::Object(object) = value else {
        return Err(SpecError::NotAnObject {
            got: super::keys::describe(&value),
        });
    };
    let map = &object;
    let keys = match function {
        Function::Build => &BUILD_KEYS,
        Function::Stream => &STREAM_KEYS,
    };
    if let Some(key) = map.keys().find(|key| !keys.known.contains(&key.as_str())) {
        return Err(SpecError::UnknownKey {
            key: key.clone(),
            hint: hint_for(key, keys),
        });
    }
    let name = match map.get("name") {
        None => return Err(SpecError::MissingName),
        Some(Value::String(name)) if !name.is_empty() => name.clone(),
        Some(other) => return Err(invalid("name", "a non-empty string", other)),
    };
    let layering_pipeline = match present(map, "layeringPipeline") {
        None => None,
        Some(value) => {
            Some(
                Pipeline::from_json(value).map_err(|e| SpecError::InvalidPipeline {
                    at: e.at,
                    message: e.message,
                })?,
            )
        }
    };
    let max_layers = match present(map, "maxLayers") {
        None => DEFAULT_MAX_LAYERS,
        Some(value) => value
            .as_u64()
            .ok_or_else(|| invalid("maxLayers", "a non-negative integer or null", value))?,
    };
    if layering_pipeline.is_none() && max_layers < 2 {
        return Err(SpecError::TooFewLayers { got: max_layers });
    }
    let spec = LayeredSpec {
        tag: opt_string(map, "tag")?,
        from_image: opt_path(map, "fromImage", base_dir)?,
        contents: path_list(map, "contents", base_dir)?,
        config: opt_object(map, "config")?.cloned(),
        architecture: opt_architecture(map)?,
        created: opt_time(map, "created")?,
        mtime: opt_time(map, "mtime")?,
        uid: opt_id(map, "uid")?,
        gid: opt_id(map, "gid")?,
        uname: opt_string(map, "uname")?.unwrap_or_else(|| "root".to_owned()),
        gname: opt_string(map, "gname")?.unwrap_or_else(|| "root".to_owned()),
        max_layers,
        extra_commands: opt_string(map, "extraCommands")?.unwrap_or_default(),
        fake_root_commands: opt_string(map, "fakeRootCommands")?.unwrap_or_default(),
        enable_fakechroot: opt_bool(map, "enableFakechroot")?,
        include_store_paths: bool_or(map, "includeStorePaths", true)?,
        include_nix_db: opt_bool(map, "includeNixDB")?,
        layering_pipeline,
        compressor: match function {
            Function::Build => opt_compressor(map, &name)?,
            Function::Stream => Compressor::None,
        },
        closure_info: opt_path(map, "closureInfo", base_dir)?,
        name,
        build_args: Value::Object(object.clone()),
    };
    // Accepted, without effect.
    opt_object(map, "passthru")?;
    opt_object(map, "meta")?;
    opt_bool(map, "debug")?;
    Ok(Parsed {
        spec,
        warnings: Vec::new(),
    })
}

/// The default output of `build-layered`: `<part of name after the last '/'>.tar` plus
/// the compressor's extension, as nixpkgs names `buildLayeredImage`'s output.
pub fn default_output_name(name: &str, compressor: Compressor) -> String {
    format!("{}.tar{}", super::name_base(name), compressor.extension())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse_json(value: Value, function: Function) -> Result<LayeredSpec, String> {
        parse_value(value, Path::new("/specs"), function)
            .map(|p| p.spec)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_nixpkgs_defaults() {
        let spec = parse_json(json!({"name": "hello"}), Function::Build).unwrap();
        assert_eq!(spec.max_layers, 100);
        assert_eq!((spec.uid, spec.gid), (0, 0));
        assert_eq!((spec.uname.as_str(), spec.gname.as_str()), ("root", "root"));
        assert!(spec.include_store_paths && !spec.include_nix_db && !spec.enable_fakechroot);
        assert_eq!(spec.compressor, Compressor::Gz);
        assert_eq!(spec.mtime, Created::default());
        let stream = parse_json(json!({"name": "hello"}), Function::Stream).unwrap();
        assert_eq!(stream.compressor, Compressor::None);
    }

    #[test]
    fn errors_name_the_key() {
        let err = |v: Value| parse_json(v, Function::Build).unwrap_err();
        assert_eq!(
            err(json!({"name": "x", "maxLayers": 1})),
            "Key `maxLayers`: expected a number greater than 1 (the customisation layer takes \
             one layer), got 1"
        );
        assert!(
            parse_json(
                json!({"name": "x", "maxLayers": 1, "layeringPipeline": [["flatten"]]}),
                Function::Build
            )
            .is_ok()
        );
        assert_eq!(
            err(json!({"name": "x", "copyToRoot": "/x"})),
            "Unknown key `copyToRoot`; it is an argument of buildImage, not of buildLayeredImage"
        );
        assert_eq!(
            parse_json(json!({"name": "x", "compressor": "gz"}), Function::Stream).unwrap_err(),
            "Unknown key `compressor`; it is an argument of buildImage and buildLayeredImage, \
             not of streamLayeredImage"
        );
        assert_eq!(
            err(json!({"name": "x", "layeringPipeline": [["limit_layers", 0]]})),
            "Key `layeringPipeline`[0]: `limit_layers` takes a count greater than 0, got 0"
        );
        assert!(
            err(json!({"name": "x", "mtime": "yesterday"})).starts_with("Key `mtime`: expected")
        );
        assert_eq!(
            err(json!({"name": "x", "includeStorePaths": "no"})),
            "Key `includeStorePaths`: expected true, false or null, got \"no\""
        );
        assert_eq!(
            err(json!({"name": "x", "contents": [3]})),
            "Key `contents`[0]: expected a path string, got 3"
        );
    }

    #[test]
    fn output_names_follow_build_layered_image() {
        assert_eq!(
            default_output_name("a/hello", Compressor::Gz),
            "hello.tar.gz"
        );
        assert_eq!(default_output_name("hello", Compressor::None), "hello.tar");
        assert_eq!(
            default_output_name("hello", Compressor::Zstd),
            "hello.tar.zst"
        );
    }
}
