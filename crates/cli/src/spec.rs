//! The SPEC: a JSON object of nixpkgs `dockerTools.buildImage` arguments, parsed
//! into a typed [`Spec`] with precise errors.
//!
//! The keys are buildImage's argument names and keep their nixpkgs meanings and
//! defaults (`cli-contract.md`, `buildimage.md` section 2). The output of
//! `nix eval --json` on a buildImage argument set is valid input, so every
//! optional key may also be JSON `null`, which means "unset, use the default".
//! On top of the nixpkgs arguments, three extension keys are accepted:
//! `runAsRootShell`, `inheritConfig` and `closureInfo`.
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
//! [`parse`] reads such a text, [`parse_value`] an already decoded value.
//! Relative paths are joined onto the spec file's folder; absolute ones (store
//! paths included) are kept as they are. Every error names the key at fault and
//! what was expected, and the two nixpkgs messages (both `contents` and
//! `copyToRoot`, unknown `compressor`) are kept verbatim. Warnings, such as
//! nixpkgs' deprecation notice for `contents`, are returned beside the spec for
//! the caller to print on standard error.
//!
//! The module also holds the small pieces of buildImage's naming rules:
//! [`default_output_name`], [`validate_reference`] (Docker's reference
//! grammar, written by hand) and [`now_rfc3339`] (the `created = "now"` stamp).
//!
//! # Determinism
//!
//! Parsing is a pure function of the text and `base_dir`. Objects are
//! `serde_json` maps without `preserve_order`, that is `BTreeMap`s, so `config`
//! and `build_args` come out with their keys in byte order at every level, as
//! Nix writes them; list order is kept. Nothing here reads the clock:
//! [`Created::Now`] is resolved by the caller through [`now_rfc3339`].

use std::cell::Cell;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The `created` value nixpkgs uses when the argument is not given.
pub const DEFAULT_CREATED: &str = "1970-01-01T00:00:01Z";

/// Docker's `NameTotalLengthMax` (distribution/reference).
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// Docker's tag grammar `[\w][\w.-]{0,127}` allows at most 128 characters.
const TAG_LENGTH_MAX: usize = 128;

/// Every key a SPEC may hold, in the order of `buildimage.md` section 2, then
/// the extension keys. Also the order in which values are checked.
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

/// Fields of the Docker image `config` object; seen at the top level, they are
/// most likely meant to go inside `config`.
const DOCKER_CONFIG_FIELDS: [&str; 16] = [
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "ArgsEscaped",
    "Healthcheck",
    "OnBuild",
    "Shell",
    "Memory",
    "MemorySwap",
    "CpuShares",
];

/// Arguments of nixpkgs `buildLayeredImage`/`streamLayeredImage` that
/// `buildImage` does not take.
const LAYERED_IMAGE_ARGUMENTS: [&str; 7] = [
    "maxLayers",
    "fakeRootCommands",
    "enableFakechroot",
    "includeStorePaths",
    "layeringPipeline",
    "uname",
    "gname",
];

/// The compression of the whole archive (`compressor`, `buildimage.md` section 11).
pub use buildimage_archive::Compressor;

/// The `created` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A fixed RFC 3339 date-time, written into the config as given.
    Fixed(String),
    /// `"now"`: the build time, written by the caller with [`now_rfc3339`].
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
pub struct Parsed {
    /// The spec.
    pub spec: Spec,
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

/// What an unknown key most likely was meant to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownKeyHint {
    /// A known key that is close by edit distance (case ignored).
    DidYouMean(&'static str),
    /// A field of the Docker image config, which belongs inside `config`.
    DockerConfigField,
    /// An argument of `buildLayeredImage`, not of `buildImage`.
    LayeredImageArgument,
    /// Nothing close: the message lists the known keys.
    None,
}

impl fmt::Display for UnknownKeyHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DidYouMean(key) => write!(f, "; did you mean `{key}`?"),
            Self::DockerConfigField => {
                f.write_str("; it is a Docker image config field and belongs inside `config`")
            }
            Self::LayeredImageArgument => f.write_str(
                "; it is an argument of buildLayeredImage and streamLayeredImage, not of buildImage",
            ),
            Self::None => write!(f, "; the known keys are {}", KNOWN_KEYS.join(", ")),
        }
    }
}

/// Why a SPEC, an image name or a tag was rejected.
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
    /// `created` is neither `"now"` nor an RFC 3339 date-time.
    #[error(
        "Key `created`: expected \"now\" or an RFC 3339 date-time \
         YYYY-MM-DDTHH:MM:SS[.fraction] followed by Z or ±HH:MM, \
         such as 1970-01-01T00:00:01Z, got {got}: {reason}"
    )]
    InvalidCreated {
        /// The value found, shortened.
        got: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An image name that Docker's reference grammar rejects.
    #[error("Invalid image name {name:?}: {reason}")]
    InvalidName {
        /// The name checked.
        name: String,
        /// What is wrong and where.
        reason: String,
    },
    /// A tag that Docker's reference grammar rejects.
    #[error("Invalid tag {tag:?}: must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}, but {reason}")]
    InvalidTag {
        /// The tag checked.
        tag: String,
        /// What is wrong and where.
        reason: String,
    },
}

/// Parses a SPEC text; relative paths are joined onto `base_dir`, the spec
/// file's folder.
///
/// A leading byte-order mark is skipped. Unlike [`parse_value`], this also
/// rejects an object that repeats a key, at any depth, which a decoded
/// [`Value`] can no longer show.
pub fn parse(text: &str, base_dir: &Path) -> Result<Parsed, SpecError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let duplicate = Cell::new(None);
    let seed = ValueSeed {
        path: String::new(),
        duplicate: &duplicate,
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = seed
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|err| {
            let (line, column) = (err.line(), err.column());
            if let Some(path) = duplicate.take() {
                return SpecError::DuplicateKey { path, line, column };
            }
            let message = err.to_string();
            // serde_json's Display is "<reason> at line L column C".
            let suffix = format!(" at line {line} column {column}");
            let reason = message.strip_suffix(&suffix).unwrap_or(&message).to_owned();
            SpecError::Json {
                line,
                column,
                reason,
            }
        })?;
    parse_value(value, base_dir)
}

/// Parses an already decoded SPEC; relative paths are joined onto `base_dir`.
///
/// Checks, in order: the top level is an object, every key is known, `name`,
/// `contents` against `copyToRoot`, then the other keys in the order of
/// `buildimage.md` section 2. The first problem found is returned.
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
            hint: hint_for(key),
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
        config: match present(map, "config") {
            None => None,
            Some(Value::Object(config)) => Some(config.clone()),
            Some(other) => return Err(invalid("config", "an object or null", other)),
        },
        architecture: match present(map, "architecture") {
            None => None,
            Some(Value::String(arch)) if !arch.is_empty() => Some(arch.clone()),
            Some(other) => {
                let expected = "a non-empty string such as \"amd64\", or null";
                return Err(invalid("architecture", expected, other));
            }
        },
        extra_commands: opt_string(map, "extraCommands")?.unwrap_or_default(),
        uid: opt_id(map, "uid")?,
        gid: opt_id(map, "gid")?,
        run_as_root: opt_string(map, "runAsRoot")?,
        disk_size: opt_u64(map, "diskSize")?,
        build_vm_memory_size: opt_u64(map, "buildVMMemorySize")?,
        created: opt_created(map)?,
        compressor: opt_compressor(map, &name)?,
        include_nix_db: opt_bool(map, "includeNixDB")?,
        meta: match present(map, "meta") {
            None => None,
            Some(meta @ Value::Object(_)) => Some(meta.clone()),
            Some(other) => return Err(invalid("meta", "an object or null", other)),
        },
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

fn opt_created(map: &Map<String, Value>) -> Result<Created, SpecError> {
    match present(map, "created") {
        None => Ok(Created::default()),
        Some(Value::String(s)) if s == "now" => Ok(Created::Now),
        Some(Value::String(s)) => match check_rfc3339(s) {
            Ok(()) => Ok(Created::Fixed(s.clone())),
            Err(reason) => Err(SpecError::InvalidCreated {
                got: describe_str(s),
                reason,
            }),
        },
        Some(other) => {
            let expected = "\"now\", an RFC 3339 date-time string, or null";
            Err(invalid("created", expected, other))
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

/// The current time as nixpkgs writes `created = "now"`:
/// `YYYY-MM-DDTHH:MM:SS+00:00` in UTC (`+00:00`, not `Z`).
pub fn now_rfc3339(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+00:00",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The default output file name, as nixpkgs names the derivation:
/// `docker-image-<part of name after the last '/'>.tar` plus the compressor's
/// extension. Like Nix's `baseNameOf`, one trailing `/` is ignored.
pub fn default_output_name(name: &str, compressor: Compressor) -> String {
    let name = name.strip_suffix('/').unwrap_or(name);
    let base = name.rsplit('/').next().unwrap_or(name);
    format!("docker-image-{base}.tar{}", compressor.extension())
}

/// Checks an image name and a tag against Docker's reference grammar
/// (distribution/reference), so that a bad reference fails the build rather
/// than the later `docker load`.
///
/// The builder calls this with the lower-cased name and the final tag. Names
/// are `[domain '/'] component ('/' component)*`, at most 255 bytes, where a
/// component is runs of `[a-z0-9]` joined by `.`, `_`, `__` or one or more `-`,
/// and a domain is dot-separated host labels with an optional `:port`. IPv6
/// registry addresses are rejected. Tags match `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn validate_reference(name: &str, tag: &str) -> Result<(), SpecError> {
    check_name(name).map_err(|reason| SpecError::InvalidName {
        name: name.to_owned(),
        reason,
    })?;
    check_tag(tag).map_err(|reason| SpecError::InvalidTag {
        tag: tag.to_owned(),
        reason,
    })
}

// ---------------------------------------------------------------------------
// JSON reading with duplicate-key detection

/// Builds a [`Value`] like `serde_json` does, but fails on a repeated object key
/// (`serde_json` silently keeps the last one) and records where it was.
struct ValueSeed<'a> {
    path: String,
    duplicate: &'a Cell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity, so this never falls back to null.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let path = format!("{}[{}]", self.path, items.len());
            match seq.next_element_seed(ValueSeed {
                path,
                duplicate: self.duplicate,
            })? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if map.contains_key(&key) {
                self.duplicate.set(Some(path));
                return Err(de::Error::custom("duplicate key"));
            }
            let value = access.next_value_seed(ValueSeed {
                path,
                duplicate: self.duplicate,
            })?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

// ---------------------------------------------------------------------------
// Key readers

/// The value of `key`, or `None` when it is absent or null.
fn present<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|value| !value.is_null())
}

fn invalid(key: &'static str, expected: &'static str, got: &Value) -> SpecError {
    SpecError::InvalidValue {
        key: KeyPath::key(key),
        expected,
        got: describe(got),
    }
}

fn opt_string(map: &Map<String, Value>, key: &'static str) -> Result<Option<String>, SpecError> {
    match present(map, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(key, "a string or null", other)),
    }
}

fn opt_bool(map: &Map<String, Value>, key: &'static str) -> Result<bool, SpecError> {
    match present(map, key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(invalid(key, "true, false or null", other)),
    }
}

/// A uid or gid: a JSON integer from 0 to `u32::MAX`; `1000.0` is a float and rejected.
fn opt_id(map: &Map<String, Value>, key: &'static str) -> Result<u32, SpecError> {
    match present(map, key) {
        None => Ok(0),
        Some(value) => match value.as_u64() {
            Some(n) => {
                u32::try_from(n).map_err(|_| invalid(key, "an integer from 0 to 4294967295", value))
            }
            None => Err(invalid(key, "a non-negative integer", value)),
        },
    }
}

fn opt_u64(map: &Map<String, Value>, key: &'static str) -> Result<Option<u64>, SpecError> {
    match present(map, key) {
        None => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(key, "a non-negative integer (MiB) or null", value)),
    }
}

fn opt_path(
    map: &Map<String, Value>,
    key: &'static str,
    base_dir: &Path,
) -> Result<Option<PathBuf>, SpecError> {
    match present(map, key) {
        None => Ok(None),
        Some(Value::String(s)) => resolve_path(KeyPath::key(key), s, base_dir).map(Some),
        Some(other) => Err(invalid(key, "a path string or null", other)),
    }
}

/// `copyToRoot`/`contents`: one path, a list of paths, or null.
fn path_list(
    map: &Map<String, Value>,
    key: &'static str,
    base_dir: &Path,
) -> Result<Vec<PathBuf>, SpecError> {
    match present(map, key) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![resolve_path(KeyPath::key(key), s, base_dir)?]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let at = KeyPath {
                    key,
                    index: Some(index),
                };
                match item {
                    Value::String(s) => resolve_path(at, s, base_dir),
                    other => Err(SpecError::InvalidValue {
                        key: at,
                        expected: "a path string",
                        got: describe(other),
                    }),
                }
            })
            .collect(),
        Some(other) => Err(invalid(
            key,
            "a path string, a list of path strings, or null",
            other,
        )),
    }
}

/// A path from the spec: absolute ones are kept, relative ones joined onto `base_dir`.
fn resolve_path(at: KeyPath, raw: &str, base_dir: &Path) -> Result<PathBuf, SpecError> {
    let reject = |expected| SpecError::InvalidValue {
        key: at,
        expected,
        got: describe_str(raw),
    };
    if raw.is_empty() {
        return Err(reject("a non-empty path"));
    }
    if raw.contains('\0') {
        return Err(reject("a path without NUL characters"));
    }
    let path = Path::new(raw);
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    })
}

/// A short description of a value for error messages: scalars as JSON, long
/// strings cut, containers by kind.
fn describe(value: &Value) -> String {
    match value {
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
        Value::String(s) => describe_str(s),
        scalar => scalar.to_string(),
    }
}

fn describe_str(s: &str) -> String {
    const MAX_CHARS: usize = 60;
    if s.chars().count() <= MAX_CHARS {
        Value::from(s).to_string()
    } else {
        let head: String = s.chars().take(MAX_CHARS).collect();
        format!(
            "{}... ({} characters)",
            Value::from(head),
            s.chars().count()
        )
    }
}

// ---------------------------------------------------------------------------
// Unknown keys

fn hint_for(key: &str) -> UnknownKeyHint {
    if DOCKER_CONFIG_FIELDS
        .iter()
        .any(|field| field.eq_ignore_ascii_case(key))
    {
        return UnknownKeyHint::DockerConfigField;
    }
    if LAYERED_IMAGE_ARGUMENTS.contains(&key) {
        return UnknownKeyHint::LayeredImageArgument;
    }
    let lower = key.to_lowercase();
    KNOWN_KEYS
        .iter()
        .map(|known| (edit_distance(&lower, &known.to_lowercase()), *known))
        .filter(|(distance, known)| *distance <= (known.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map_or(UnknownKeyHint::None, |(_, known)| {
            UnknownKeyHint::DidYouMean(known)
        })
}

/// Edit distance over characters, counting insertions, deletions,
/// substitutions and swaps of two neighbours (optimal string alignment), so
/// that the common typo `nmae` is one edit away from `name`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: distance between the first i chars of a and the first j of b.
    let mut rows = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let substitute = rows[i - 1][j - 1] + usize::from(a[i - 1] != b[j - 1]);
            let mut best = substitute.min(rows[i - 1][j] + 1).min(rows[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

// ---------------------------------------------------------------------------
// Dates

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year, month, day) of a day count since 1970-01-01, proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`, which counts in 400-year eras of
/// 146 097 days starting on March 1 so that February is the last month).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1, [0, 365]
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Checks `created` the way Go's `time.Time` JSON decoding does (what
/// `docker load` uses): strict RFC 3339 with an upper-case `T` and `Z`, years
/// 0000-9999, seconds 00-59 (Go rejects leap second 60), and a zone `Z` or
/// `±HH:MM` with HH ≤ 23 and MM ≤ 59.
fn check_rfc3339(s: &str) -> Result<(), String> {
    const TEMPLATE: &[u8; 19] = b"0000-00-00T00:00:00";
    let bytes = s.as_bytes();
    for (i, &want) in TEMPLATE.iter().enumerate() {
        let found = bytes.get(i).copied();
        let ok = match want {
            b'0' => found.is_some_and(|b| b.is_ascii_digit()),
            _ => found == Some(want),
        };
        if !ok {
            let what = match want {
                b'0' => "a digit".to_owned(),
                b'T' => "an upper-case 'T' between the date and the time".to_owned(),
                other => format!("'{}'", char::from(other)),
            };
            // Every byte before `i` matched ASCII, so `i` is a char boundary.
            let found = s[i..]
                .chars()
                .next()
                .map_or("the end".to_owned(), |c| format!("{c:?}"));
            return Err(format!(
                "expected {what} at character {}, found {found}",
                i + 1
            ));
        }
    }
    let number = |range: std::ops::Range<usize>| -> i64 {
        bytes[range]
            .iter()
            .fold(0, |n, b| n * 10 + i64::from(b - b'0'))
    };
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    let (hour, minute, second) = (number(11..13), number(14..16), number(17..19));
    if !(1..=12).contains(&month) {
        return Err(format!("month {month:02} is not between 01 and 12"));
    }
    if !(1..=days_in_month(year, month)).contains(&day) {
        return Err(format!(
            "day {day:02} does not exist in {year:04}-{month:02}"
        ));
    }
    if hour > 23 {
        return Err(format!("hour {hour:02} is not between 00 and 23"));
    }
    if minute > 59 {
        return Err(format!("minute {minute:02} is not between 00 and 59"));
    }
    if second > 59 {
        return Err(format!(
            "second {second:02} is not between 00 and 59 (Docker's Go time parser rejects leap seconds)"
        ));
    }

    let mut rest = &s[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err("expected digits after the '.' of the fraction of a second".to_owned());
        }
        rest = &fraction[digits..];
    } else if rest.starts_with(',') {
        return Err("expected '.', not ',', before the fraction of a second".to_owned());
    }
    match rest.as_bytes() {
        b"Z" => Ok(()),
        b"z" => Err("the UTC zone must be an upper-case 'Z'".to_owned()),
        [] => Err("the time zone is missing: add Z or an offset such as +00:00".to_owned()),
        [b'+' | b'-', h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()) =>
        {
            let hours = (h1 - b'0') * 10 + (h2 - b'0');
            let minutes = (m1 - b'0') * 10 + (m2 - b'0');
            if hours > 23 {
                Err(format!(
                    "zone offset hour {hours:02} is not between 00 and 23"
                ))
            } else if minutes > 59 {
                Err(format!(
                    "zone offset minute {minutes:02} is not between 00 and 59"
                ))
            } else {
                Ok(())
            }
        }
        _ => Err(format!(
            "expected Z or an offset ±HH:MM after the time, found {rest:?}"
        )),
    }
}

// ---------------------------------------------------------------------------
// Docker references

const COMPONENT_RULE: &str =
    "lower-case letters and digits, joined by '.', '_', '__' or one or more '-'";

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".to_owned());
    }
    if name.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(format!(
            "it is {} bytes long, more than the limit of {NAME_TOTAL_LENGTH_MAX}",
            name.len()
        ));
    }
    let Some((first, rest)) = name.split_once('/') else {
        return check_remote(name);
    };
    // The grammar is `[domain '/'] remote`: valid if either reading is.
    let as_remote = check_remote(name);
    if as_remote.is_ok() {
        return Ok(());
    }
    let as_domain = check_domain(first).and_then(|()| check_remote(rest));
    if as_domain.is_ok() {
        return Ok(());
    }
    // Report the reading the user most likely meant, as Docker's own
    // splitDockerDomain guesses: a '.', a ':' or "localhost" marks a registry.
    let looks_like_domain = first.contains(['.', ':', '['])
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase());
    if looks_like_domain {
        as_domain
    } else {
        as_remote
    }
}

fn check_remote(remote: &str) -> Result<(), String> {
    remote.split('/').try_for_each(check_component)
}

fn check_component(component: &str) -> Result<(), String> {
    let is_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if component.is_empty() {
        return Err(
            "it has an empty path component (a leading or trailing '/', or '//')".to_owned(),
        );
    }
    if let Some(c) = component
        .chars()
        .find(|&c| !is_alnum(c) && !matches!(c, '.' | '_' | '-'))
    {
        let kind = if c.is_uppercase() {
            "the upper-case letter "
        } else {
            ""
        };
        return Err(format!(
            "path component {component:?} contains {kind}{c:?}; components are {COMPONENT_RULE}"
        ));
    }
    if !component.starts_with(is_alnum) {
        return Err(format!(
            "path component {component:?} must start with a lower-case letter or a digit"
        ));
    }
    if !component.ends_with(is_alnum) {
        return Err(format!(
            "path component {component:?} must end with a lower-case letter or a digit"
        ));
    }
    for separator in component.split(is_alnum).filter(|run| !run.is_empty()) {
        let allowed = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !allowed {
            return Err(format!(
                "path component {component:?} has the separator {separator:?}; components are {COMPONENT_RULE}"
            ));
        }
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), String> {
    if domain.starts_with('[') {
        return Err(format!(
            "registry {domain:?}: IPv6 registry addresses are not supported"
        ));
    }
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    for label in host.split('.') {
        let is_label_char = |c: char| c.is_ascii_alphanumeric() || c == '-';
        if label.is_empty() {
            return Err(format!("registry host {host:?} has an empty label"));
        }
        if let Some(c) = label.chars().find(|&c| !is_label_char(c)) {
            return Err(format!(
                "registry host {host:?} contains {c:?}; host labels are letters, digits and '-'"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "registry host {host:?} has the label {label:?}, which starts or ends with '-'"
            ));
        }
    }
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("registry port {port:?} must be decimal digits"));
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), String> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let Some(first) = tag.chars().next() else {
        return Err("it is empty".to_owned());
    };
    if !is_word(first) {
        return Err(format!("it starts with {first:?}"));
    }
    if let Some(c) = tag.chars().find(|&c| !is_word(c) && c != '.' && c != '-') {
        return Err(format!("it contains {c:?}"));
    }
    if tag.len() > TAG_LENGTH_MAX {
        return Err(format!("it is {} characters long", tag.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> &'static Path {
        Path::new("/specs")
    }

    fn ok(text: &str) -> Parsed {
        parse(text, base()).unwrap_or_else(|err| panic!("{text}: {err}"))
    }

    fn err(text: &str) -> String {
        match parse(text, base()) {
            Ok(parsed) => panic!("{text} parsed: {parsed:?}"),
            Err(err) => err.to_string(),
        }
    }

    fn err_value(value: Value) -> String {
        parse_value(value, base()).unwrap_err().to_string()
    }

    fn with(key: &str, value: Value) -> Value {
        let mut spec = json!({ "name": "img" });
        spec[key] = value;
        spec
    }

    fn key_err(key: &str, value: Value) -> String {
        err_value(with(key, value))
    }

    // -- defaults, nulls, examples ------------------------------------------

    #[test]
    fn defaults() {
        let parsed = ok(r#"{"name": "hello"}"#);
        assert!(parsed.warnings.is_empty());
        let spec = parsed.spec;
        assert_eq!(
            spec,
            Spec {
                name: "hello".to_owned(),
                tag: None,
                from_image: None,
                from_image_name: None,
                from_image_tag: None,
                copy_to_root: vec![],
                keep_contents_dirlinks: false,
                config: None,
                architecture: None,
                extra_commands: String::new(),
                uid: 0,
                gid: 0,
                run_as_root: None,
                run_as_root_shell: None,
                inherit_config: false,
                closure_info: None,
                disk_size: None,
                build_vm_memory_size: None,
                created: Created::Fixed("1970-01-01T00:00:01Z".to_owned()),
                compressor: Compressor::Gz,
                include_nix_db: false,
                meta: None,
                build_args: json!({ "name": "hello" }),
            }
        );
    }

    #[test]
    fn null_means_default_for_every_optional_key() {
        let mut value = json!({ "name": "hello" });
        for key in KNOWN_KEYS.iter().filter(|key| **key != "name") {
            value[*key] = Value::Null;
        }
        let parsed = parse_value(value.clone(), base()).unwrap();
        assert!(parsed.warnings.is_empty());
        let defaults = parse_value(json!({ "name": "hello" }), base())
            .unwrap()
            .spec;
        assert_eq!(
            Spec {
                build_args: value.clone(),
                ..defaults
            },
            parsed.spec
        );
        // buildArgs keeps the nulls as given.
        assert_eq!(parsed.spec.build_args, value);
    }

    #[test]
    fn nix_eval_json_with_every_key() {
        // What `nix eval --json` prints for an argument set that spells out
        // every argument with its default (keys sorted, as Nix does).
        let text = r#"{"architecture":null,"buildVMMemorySize":512,"closureInfo":null,
            "compressor":"gz","config":null,"contents":null,"copyToRoot":null,
            "created":"1970-01-01T00:00:01Z","diskSize":1024,"extraCommands":"",
            "fromImage":null,"fromImageName":null,"fromImageTag":null,"gid":0,
            "includeNixDB":false,"inheritConfig":false,"keepContentsDirlinks":false,
            "meta":{},"name":"hello","runAsRoot":null,"runAsRootShell":null,
            "tag":null,"uid":0}"#;
        let parsed = ok(text);
        assert!(parsed.warnings.is_empty());
        let spec = parsed.spec;
        assert_eq!(spec.name, "hello");
        assert_eq!(spec.disk_size, Some(1024));
        assert_eq!(spec.build_vm_memory_size, Some(512));
        assert_eq!(spec.meta, Some(json!({})));
        assert_eq!(spec.compressor, Compressor::Gz);
        assert_eq!(spec.created, Created::default());
        assert_eq!(spec.build_args.as_object().unwrap().len(), KNOWN_KEYS.len());
    }

    #[test]
    fn redis_example_config_is_passed_through_sorted() {
        let parsed = ok(r#"{
            "name": "redis",
            "tag": "latest",
            "fromImage": "bash.tar.gz",
            "extraCommands": "mkdir -p data",
            "config": {
                "WorkingDir": "/data",
                "Volumes": { "/data": {} },
                "Healthcheck": {
                    "Test": ["CMD-SHELL", "/usr/bin/healthcheck"],
                    "Interval": 30000000000,
                    "Timeout": 10000000000,
                    "Retries": 3
                },
                "Cmd": ["/bin/redis-server"]
            }
        }"#);
        let spec = parsed.spec;
        assert_eq!(spec.tag.as_deref(), Some("latest"));
        assert_eq!(spec.from_image, Some(PathBuf::from("/specs/bash.tar.gz")));
        assert_eq!(spec.extra_commands, "mkdir -p data");
        let config = Value::Object(spec.config.unwrap());
        assert_eq!(
            config.to_string(),
            r#"{"Cmd":["/bin/redis-server"],"Healthcheck":{"Interval":30000000000,"Retries":3,"Test":["CMD-SHELL","/usr/bin/healthcheck"],"Timeout":10000000000},"Volumes":{"/data":{}},"WorkingDir":"/data"}"#
        );
        assert!(config["Healthcheck"]["Interval"].is_u64());
        let args = spec.build_args.as_object().unwrap();
        assert_eq!(
            args.keys().collect::<Vec<_>>(),
            ["config", "extraCommands", "fromImage", "name", "tag"]
        );
    }

    #[test]
    fn nixpkgs_examples() {
        let bash =
            ok(r#"{"name": "bash", "tag": "latest", "copyToRoot": "/nix/store/x-bash-env"}"#);
        assert_eq!(
            bash.spec.copy_to_root,
            [PathBuf::from("/nix/store/x-bash-env")]
        );

        let prefixed =
            ok(r#"{"name": "registry-1.docker.io/image", "config": {"Cmd": ["/bin/hello"]}}"#);
        assert_eq!(
            default_output_name(&prefixed.spec.name, prefixed.spec.compressor),
            "docker-image-image.tar.gz"
        );

        let arch = ok(r#"{"name": "arm", "architecture": "arm64", "compressor": "zstd"}"#);
        assert_eq!(arch.spec.architecture.as_deref(), Some("arm64"));
        assert_eq!(arch.spec.compressor, Compressor::Zstd);

        let now = ok(r#"{"name": "unstable", "created": "now", "compressor": "none"}"#);
        assert_eq!(now.spec.created, Created::Now);
        assert_eq!(now.spec.compressor, Compressor::None);

        let nix = ok(
            r#"{"name": "nix", "includeNixDB": true, "uid": 1000, "gid": 100,
            "config": {"Env": ["NIX_PAGER=cat", "USER=nobody"]}}"#,
        );
        assert!(nix.spec.include_nix_db);
        assert_eq!((nix.spec.uid, nix.spec.gid), (1000, 100));

        let root = ok(r#"{"name": "root", "runAsRoot": "touch /example-file",
            "runAsRootShell": "/bin/sh", "inheritConfig": true, "keepContentsDirlinks": true,
            "closureInfo": "closure", "diskSize": 2048, "buildVMMemorySize": 1024}"#);
        assert_eq!(
            root.spec.run_as_root.as_deref(),
            Some("touch /example-file")
        );
        assert_eq!(root.spec.run_as_root_shell.as_deref(), Some("/bin/sh"));
        assert!(root.spec.inherit_config && root.spec.keep_contents_dirlinks);
        assert_eq!(
            root.spec.closure_info,
            Some(PathBuf::from("/specs/closure"))
        );
        assert_eq!(
            (root.spec.disk_size, root.spec.build_vm_memory_size),
            (Some(2048), Some(1024))
        );
    }

    #[test]
    fn created_accepts_rfc3339_forms() {
        for created in [
            "1970-01-01T00:00:01Z",
            "2024-02-29T23:59:59Z",
            "2000-02-29T12:00:00.123456789+05:30",
            "1999-12-31T23:59:59.5-08:00",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59+23:59",
        ] {
            let spec = parse_value(with("created", json!(created)), base())
                .unwrap()
                .spec;
            assert_eq!(spec.created, Created::Fixed(created.to_owned()));
        }
    }

    // -- paths ----------------------------------------------------------------

    #[test]
    fn relative_paths_are_joined_onto_base_dir() {
        let spec = ok(
            r#"{"name": "p", "copyToRoot": ["root", "./dummy", "/abs/dir", "/nix/store/h-bash"],
            "fromImage": "../base.tar", "closureInfo": "/nix/store/c-closure-info"}"#,
        )
        .spec;
        assert_eq!(
            spec.copy_to_root,
            [
                PathBuf::from("/specs/root"),
                PathBuf::from("/specs/./dummy"),
                PathBuf::from("/abs/dir"),
                PathBuf::from("/nix/store/h-bash"),
            ]
        );
        assert_eq!(spec.from_image, Some(PathBuf::from("/specs/../base.tar")));
        assert_eq!(
            spec.closure_info,
            Some(PathBuf::from("/nix/store/c-closure-info"))
        );

        let relative_base = parse(r#"{"name": "p", "copyToRoot": "root"}"#, Path::new("")).unwrap();
        assert_eq!(relative_base.spec.copy_to_root, [PathBuf::from("root")]);
    }

    #[test]
    fn copy_to_root_single_path_and_empty_list() {
        assert_eq!(
            ok(r#"{"name": "p", "copyToRoot": "r"}"#).spec.copy_to_root,
            [PathBuf::from("/specs/r")]
        );
        assert!(
            ok(r#"{"name": "p", "copyToRoot": []}"#)
                .spec
                .copy_to_root
                .is_empty()
        );
    }

    #[test]
    fn empty_path_errors() {
        assert_eq!(
            key_err("fromImage", json!("")),
            "Key `fromImage`: expected a non-empty path, got \"\""
        );
        assert_eq!(
            key_err("copyToRoot", json!(["a", ""])),
            "Key `copyToRoot`[1]: expected a non-empty path, got \"\""
        );
        assert_eq!(
            key_err("copyToRoot", json!("")),
            "Key `copyToRoot`: expected a non-empty path, got \"\""
        );
        assert_eq!(
            key_err("closureInfo", json!("a\u{0}b")),
            "Key `closureInfo`: expected a path without NUL characters, got \"a\\u0000b\""
        );
    }

    // -- contents -------------------------------------------------------------

    #[test]
    fn contents_is_an_alias_with_a_warning() {
        let parsed = ok(r#"{"name": "Old", "contents": ["a", "/b"]}"#);
        assert_eq!(
            parsed.spec.copy_to_root,
            [PathBuf::from("/specs/a"), PathBuf::from("/b")]
        );
        assert_eq!(
            parsed.warnings,
            [
                "in docker image Old: The contents parameter is deprecated. Change to copyToRoot if the contents are designed to be copied to the root filesystem, such as when you use `buildEnv` or similar between contents and your packages. Use copyToRoot = buildEnv { ... }; or similar if you intend to add packages to /bin."
            ]
        );
        // A null on either side does not count as set.
        let parsed = ok(r#"{"name": "Old", "contents": "a", "copyToRoot": null}"#);
        assert_eq!(parsed.spec.copy_to_root, [PathBuf::from("/specs/a")]);
        assert_eq!(parsed.warnings.len(), 1);
        let parsed = ok(r#"{"name": "New", "contents": null, "copyToRoot": "a"}"#);
        assert!(parsed.warnings.is_empty());
    }

    #[test]
    fn contents_and_copy_to_root_together() {
        assert_eq!(
            err(r#"{"name": "Both", "contents": "a", "copyToRoot": []}"#),
            "in docker image Both: You can not specify both contents and copyToRoot."
        );
    }

    #[test]
    fn contents_item_errors_name_contents() {
        assert_eq!(
            key_err("contents", json!(["a", true])),
            "Key `contents`[1]: expected a path string, got true"
        );
    }

    // -- fromImageName / fromImageTag -----------------------------------------

    #[test]
    fn from_image_name_or_tag_without_from_image_warns() {
        // A lone name or tag with `fromImage` is for the base reader to warn about.
        let parsed = ok(r#"{"name": "x", "fromImage": "b.tar", "fromImageName": "base"}"#);
        assert_eq!(parsed.warnings, Vec::<String>::new());
        let parsed = ok(r#"{"name": "x", "fromImageName": "base", "fromImageTag": "v1"}"#);
        assert_eq!(
            parsed.warnings,
            ["Keys `fromImageName` and `fromImageTag` have no effect without `fromImage`"]
        );
        let parsed = ok(
            r#"{"name": "x", "fromImage": "b.tar", "fromImageName": "base", "fromImageTag": "v1"}"#,
        );
        assert!(parsed.warnings.is_empty());
        assert_eq!(parsed.spec.from_image_name.as_deref(), Some("base"));
        assert_eq!(parsed.spec.from_image_tag.as_deref(), Some("v1"));
    }

    // -- structural errors ----------------------------------------------------

    #[test]
    fn not_json() {
        assert_eq!(
            err("{\"name\": \"x\",\n  }"),
            "Spec is not valid JSON at line 2, column 3: trailing comma"
        );
        assert_eq!(
            err(""),
            "Spec is not valid JSON at line 1, column 0: EOF while parsing a value"
        );
        assert_eq!(
            err(r#"{"name": "x"} {}"#),
            "Spec is not valid JSON at line 1, column 15: trailing characters"
        );
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        assert_eq!(ok("\u{feff}{\"name\": \"x\"}").spec.name, "x");
    }

    #[test]
    fn duplicate_keys() {
        assert_eq!(
            err("{\"name\": \"x\",\n \"tag\": \"a\",\n \"tag\": \"b\"}"),
            "Key `tag` appears more than once (line 3, column 6)"
        );
        assert_eq!(
            err(r#"{"name": "x", "config": {"Labels": {"a": "1", "a": "2"}}}"#),
            "Key `config.Labels.a` appears more than once (line 1, column 49)"
        );
        assert_eq!(
            err(r#"{"name": "x", "copyToRoot": [{"k": 1, "k": 2}]}"#),
            "Key `copyToRoot[0].k` appears more than once (line 1, column 41)"
        );
    }

    #[test]
    fn top_level_not_an_object() {
        assert_eq!(
            err("[]"),
            "Spec must be a JSON object of buildImage arguments, got a list"
        );
        assert_eq!(
            err("\"x\""),
            "Spec must be a JSON object of buildImage arguments, got \"x\""
        );
        assert_eq!(
            err("null"),
            "Spec must be a JSON object of buildImage arguments, got null"
        );
    }

    #[test]
    fn name_errors() {
        assert_eq!(err("{}"), "Missing required key `name`");
        assert_eq!(err(r#"{"tag": "x"}"#), "Missing required key `name`");
        assert_eq!(
            err(r#"{"name": ""}"#),
            "Key `name`: expected a non-empty string, got \"\""
        );
        assert_eq!(
            err(r#"{"name": null}"#),
            "Key `name`: expected a non-empty string, got null"
        );
        assert_eq!(
            err(r#"{"name": 3}"#),
            "Key `name`: expected a non-empty string, got 3"
        );
    }

    #[test]
    fn unknown_keys() {
        assert_eq!(
            err(r#"{"name": "x", "copytoroot": "a"}"#),
            "Unknown key `copytoroot`; did you mean `copyToRoot`?"
        );
        assert_eq!(
            err(r#"{"name": "x", "extraCommand": ""}"#),
            "Unknown key `extraCommand`; did you mean `extraCommands`?"
        );
        assert_eq!(
            err(r#"{"name": "x", "tags": "a"}"#),
            "Unknown key `tags`; did you mean `tag`?"
        );
        assert_eq!(
            err(r#"{"name": "x", "includeNixDb": true}"#),
            "Unknown key `includeNixDb`; did you mean `includeNixDB`?"
        );
        // Reported before a missing name, so the hint can point at `name`.
        assert_eq!(
            err(r#"{"nmae": "x"}"#),
            "Unknown key `nmae`; did you mean `name`?"
        );
        assert_eq!(
            err(r#"{"name": "x", "Env": []}"#),
            "Unknown key `Env`; it is a Docker image config field and belongs inside `config`"
        );
        assert_eq!(
            err(r#"{"name": "x", "maxLayers": 100}"#),
            "Unknown key `maxLayers`; it is an argument of buildLayeredImage and streamLayeredImage, not of buildImage"
        );
        assert_eq!(
            err(r#"{"name": "x", "frobnicate": 1}"#),
            "Unknown key `frobnicate`; the known keys are name, tag, fromImage, fromImageName, \
             fromImageTag, copyToRoot, keepContentsDirlinks, config, architecture, extraCommands, \
             uid, gid, runAsRoot, diskSize, buildVMMemorySize, created, compressor, includeNixDB, \
             contents, meta, runAsRootShell, inheritConfig, closureInfo"
        );
    }

    #[test]
    fn wrong_types_name_the_key() {
        let cases = [
            (
                "tag",
                json!(1),
                "Key `tag`: expected a string or null, got 1",
            ),
            (
                "fromImage",
                json!(["a"]),
                "Key `fromImage`: expected a path string or null, got a list",
            ),
            (
                "fromImageName",
                json!(false),
                "Key `fromImageName`: expected a string or null, got false",
            ),
            (
                "fromImageTag",
                json!({}),
                "Key `fromImageTag`: expected a string or null, got an object",
            ),
            (
                "copyToRoot",
                json!({"a": 1}),
                "Key `copyToRoot`: expected a path string, a list of path strings, or null, got an object",
            ),
            (
                "copyToRoot",
                json!(["a", "b", 42]),
                "Key `copyToRoot`[2]: expected a path string, got 42",
            ),
            (
                "copyToRoot",
                json!([["a"]]),
                "Key `copyToRoot`[0]: expected a path string, got a list",
            ),
            (
                "keepContentsDirlinks",
                json!("true"),
                "Key `keepContentsDirlinks`: expected true, false or null, got \"true\"",
            ),
            (
                "config",
                json!([]),
                "Key `config`: expected an object or null, got a list",
            ),
            (
                "config",
                json!("{}"),
                "Key `config`: expected an object or null, got \"{}\"",
            ),
            (
                "architecture",
                json!(""),
                "Key `architecture`: expected a non-empty string such as \"amd64\", or null, got \"\"",
            ),
            (
                "extraCommands",
                json!(["ls"]),
                "Key `extraCommands`: expected a string or null, got a list",
            ),
            (
                "runAsRoot",
                json!(1),
                "Key `runAsRoot`: expected a string or null, got 1",
            ),
            (
                "runAsRootShell",
                json!(true),
                "Key `runAsRootShell`: expected a string or null, got true",
            ),
        ];
        for (key, value, message) in cases {
            assert_eq!(key_err(key, value), message, "{key}");
        }
    }

    #[test]
    fn wrong_types_name_the_key_continued() {
        let cases = [
            (
                "inheritConfig",
                json!(1),
                "Key `inheritConfig`: expected true, false or null, got 1",
            ),
            (
                "closureInfo",
                json!(7),
                "Key `closureInfo`: expected a path string or null, got 7",
            ),
            (
                "diskSize",
                json!(-1),
                "Key `diskSize`: expected a non-negative integer (MiB) or null, got -1",
            ),
            (
                "buildVMMemorySize",
                json!(512.5),
                "Key `buildVMMemorySize`: expected a non-negative integer (MiB) or null, got 512.5",
            ),
            (
                "created",
                json!(0),
                "Key `created`: expected \"now\", an RFC 3339 date-time string, or null, got 0",
            ),
            (
                "compressor",
                json!(1),
                "Key `compressor`: expected one of \"gz\", \"none\", \"zstd\", or null, got 1",
            ),
            (
                "includeNixDB",
                json!("yes"),
                "Key `includeNixDB`: expected true, false or null, got \"yes\"",
            ),
            (
                "meta",
                json!([]),
                "Key `meta`: expected an object or null, got a list",
            ),
            (
                "contents",
                json!(1),
                "Key `contents`: expected a path string, a list of path strings, or null, got 1",
            ),
        ];
        for (key, value, message) in cases {
            assert_eq!(key_err(key, value), message, "{key}");
        }
    }

    #[test]
    fn long_strings_are_shortened_in_messages() {
        let long = "x".repeat(100);
        assert_eq!(
            key_err("keepContentsDirlinks", json!(long)),
            format!(
                "Key `keepContentsDirlinks`: expected true, false or null, got \"{}\"... (100 characters)",
                "x".repeat(60)
            )
        );
    }

    #[test]
    fn ids() {
        assert_eq!(
            key_err("uid", json!(-1)),
            "Key `uid`: expected a non-negative integer, got -1"
        );
        assert_eq!(
            key_err("gid", json!(1.5)),
            "Key `gid`: expected a non-negative integer, got 1.5"
        );
        assert_eq!(
            key_err("uid", json!(1000.0)),
            "Key `uid`: expected a non-negative integer, got 1000.0"
        );
        assert_eq!(
            err(r#"{"name": "x", "uid": 1000.0}"#),
            "Key `uid`: expected a non-negative integer, got 1000.0"
        );
        assert_eq!(
            err(r#"{"name": "x", "uid": 1e3}"#),
            "Key `uid`: expected a non-negative integer, got 1000.0"
        );
        assert_eq!(
            key_err("uid", json!("0")),
            "Key `uid`: expected a non-negative integer, got \"0\""
        );
        assert_eq!(
            key_err("gid", json!(4_294_967_296_u64)),
            "Key `gid`: expected an integer from 0 to 4294967295, got 4294967296"
        );
        let spec = parse_value(
            json!({"name": "x", "uid": 4_294_967_295_u64, "gid": 65534}),
            base(),
        )
        .unwrap()
        .spec;
        assert_eq!((spec.uid, spec.gid), (u32::MAX, 65534));
    }

    #[test]
    fn compressor_values() {
        assert_eq!(
            key_err("compressor", json!("xz")),
            "in docker image img: compressor must be one of: [gz none zstd]"
        );
        assert_eq!(
            key_err("compressor", json!("GZ")),
            "in docker image img: compressor must be one of: [gz none zstd]"
        );
        for (name, compressor, extension) in [
            ("none", Compressor::None, ""),
            ("gz", Compressor::Gz, ".gz"),
            ("zstd", Compressor::Zstd, ".zst"),
        ] {
            let spec = parse_value(with("compressor", json!(name)), base())
                .unwrap()
                .spec;
            assert_eq!(spec.compressor, compressor);
            assert_eq!(compressor.as_str(), name);
            assert_eq!(compressor.extension(), extension);
        }
    }

    #[test]
    fn malformed_created() {
        let form = "Key `created`: expected \"now\" or an RFC 3339 date-time YYYY-MM-DDTHH:MM:SS[.fraction] \
                    followed by Z or ±HH:MM, such as 1970-01-01T00:00:01Z, got";
        let cases = [
            ("", "expected a digit at character 1, found the end"),
            ("Now", "expected a digit at character 1, found 'N'"),
            ("yesterday", "expected a digit at character 1, found 'y'"),
            (
                "2024-01-01",
                "expected an upper-case 'T' between the date and the time at character 11, found the end",
            ),
            (
                "2024-01-01 00:00:00Z",
                "expected an upper-case 'T' between the date and the time at character 11, found ' '",
            ),
            (
                "2024-01-01t00:00:00Z",
                "expected an upper-case 'T' between the date and the time at character 11, found 't'",
            ),
            (
                "2024-1-01T00:00:00Z",
                "expected a digit at character 7, found '-'",
            ),
            (
                "2024-01-01T00:00Z",
                "expected ':' at character 17, found 'Z'",
            ),
            ("2024-13-01T00:00:00Z", "month 13 is not between 01 and 12"),
            ("2024-00-01T00:00:00Z", "month 00 is not between 01 and 12"),
            ("2023-02-29T00:00:00Z", "day 29 does not exist in 2023-02"),
            ("1900-02-29T00:00:00Z", "day 29 does not exist in 1900-02"),
            ("2024-04-31T00:00:00Z", "day 31 does not exist in 2024-04"),
            ("2024-01-00T00:00:00Z", "day 00 does not exist in 2024-01"),
            ("2024-01-01T24:00:00Z", "hour 24 is not between 00 and 23"),
            ("2024-01-01T00:60:00Z", "minute 60 is not between 00 and 59"),
            (
                "2016-12-31T23:59:60Z",
                "second 60 is not between 00 and 59 (Docker's Go time parser rejects leap seconds)",
            ),
            (
                "2024-01-01T00:00:00",
                "the time zone is missing: add Z or an offset such as +00:00",
            ),
            (
                "2024-01-01T00:00:00z",
                "the UTC zone must be an upper-case 'Z'",
            ),
            (
                "2024-01-01T00:00:00.Z",
                "expected digits after the '.' of the fraction of a second",
            ),
            (
                "2024-01-01T00:00:00,5Z",
                "expected '.', not ',', before the fraction of a second",
            ),
            (
                "2024-01-01T00:00:00+0100",
                "expected Z or an offset ±HH:MM after the time, found \"+0100\"",
            ),
            (
                "2024-01-01T00:00:00ZZ",
                "expected Z or an offset ±HH:MM after the time, found \"ZZ\"",
            ),
            (
                "2024-01-01T00:00:00+24:00",
                "zone offset hour 24 is not between 00 and 23",
            ),
            (
                "2024-01-01T00:00:00-01:60",
                "zone offset minute 60 is not between 00 and 59",
            ),
            (
                "2024-01-01T00:00:00é",
                "expected Z or an offset ±HH:MM after the time, found \"é\"",
            ),
            (
                "２024-01-01T00:00:00Z",
                "expected a digit at character 1, found '２'",
            ),
        ];
        for (created, reason) in cases {
            assert_eq!(
                key_err("created", json!(created)),
                format!("{form} {}: {reason}", describe_str(created)),
                "{created}"
            );
        }
    }

    #[test]
    fn keys_stay_sorted_without_preserve_order() {
        // Guards against serde_json's `preserve_order` being switched on by
        // feature unification: config keys must come out in byte order.
        let spec = ok(r#"{"name": "x", "config": {"b": 1, "a": {"d": 1, "c": 2}, "B": 0}}"#).spec;
        assert_eq!(
            Value::Object(spec.config.unwrap()).to_string(),
            r#"{"B":0,"a":{"c":2,"d":1},"b":1}"#
        );
        assert_eq!(
            spec.build_args.to_string(),
            r#"{"config":{"B":0,"a":{"c":2,"d":1},"b":1},"name":"x"}"#
        );
    }

    #[test]
    fn edit_distance_vectors() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("tag", "tags"), 1);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("nmae", "name"), 1);
        assert_eq!(edit_distance("ca", "abc"), 3);
        assert_eq!(hint_for("zzz"), UnknownKeyHint::None);
        assert_eq!(
            hint_for("fromimage"),
            UnknownKeyHint::DidYouMean("fromImage")
        );
        assert_eq!(hint_for("cmd"), UnknownKeyHint::DockerConfigField);
    }

    // -- output name ----------------------------------------------------------

    #[test]
    fn default_output_names() {
        assert_eq!(
            default_output_name("hello", Compressor::None),
            "docker-image-hello.tar"
        );
        assert_eq!(
            default_output_name("hello", Compressor::Gz),
            "docker-image-hello.tar.gz"
        );
        assert_eq!(
            default_output_name("hello", Compressor::Zstd),
            "docker-image-hello.tar.zst"
        );
        assert_eq!(
            default_output_name("registry-1.docker.io/image", Compressor::Gz),
            "docker-image-image.tar.gz"
        );
        assert_eq!(
            default_output_name("a/b/OnTop", Compressor::None),
            "docker-image-OnTop.tar"
        );
        assert_eq!(
            default_output_name("a/b/", Compressor::None),
            "docker-image-b.tar"
        );
    }

    // -- references -----------------------------------------------------------

    #[test]
    fn reference_positives() {
        for name in [
            "a",
            "hello",
            "registry-1.docker.io/image",
            "localhost:5000/a/b",
            "localhost/a",
            "example.com:443/team/app",
            "Example.COM/app",
            "a__b",
            "a--b",
            "a---b",
            "a.b_c-d",
            "0/1",
            "nixos/nix",
            "ontopofpulledimage",
            "exa_mple.com/foo",
        ] {
            validate_reference(name, "latest").unwrap_or_else(|err| panic!("{name}: {err}"));
        }
        let longest = "a".repeat(255);
        validate_reference(&longest, "latest").unwrap();
        for tag in [
            "latest",
            "_",
            "v1.0-rc_1",
            "0",
            "ABC",
            &"t".repeat(128),
            "x0000000000000000000000000000000",
        ] {
            validate_reference("a", tag).unwrap_or_else(|err| panic!("{tag}: {err}"));
        }
    }

    #[test]
    fn reference_negative_names() {
        let name_err = |name: &str| validate_reference(name, "latest").unwrap_err().to_string();
        let rule = COMPONENT_RULE;
        assert_eq!(name_err(""), "Invalid image name \"\": it is empty");
        assert_eq!(
            name_err("-a"),
            "Invalid image name \"-a\": path component \"-a\" must start with a lower-case letter or a digit"
        );
        assert_eq!(
            name_err("a_"),
            "Invalid image name \"a_\": path component \"a_\" must end with a lower-case letter or a digit"
        );
        assert_eq!(
            name_err("A"),
            format!(
                "Invalid image name \"A\": path component \"A\" contains the upper-case letter 'A'; components are {rule}"
            )
        );
        assert_eq!(
            name_err("Foo bar"),
            format!(
                "Invalid image name \"Foo bar\": path component \"Foo bar\" contains the upper-case letter 'F'; components are {rule}"
            )
        );
        assert_eq!(
            name_err("foo bar"),
            format!(
                "Invalid image name \"foo bar\": path component \"foo bar\" contains ' '; components are {rule}"
            )
        );
        assert_eq!(
            name_err("a//b"),
            "Invalid image name \"a//b\": it has an empty path component (a leading or trailing '/', or '//')"
        );
        assert_eq!(
            name_err("a/"),
            "Invalid image name \"a/\": it has an empty path component (a leading or trailing '/', or '//')"
        );
        assert_eq!(
            name_err("a___b"),
            format!(
                "Invalid image name \"a___b\": path component \"a___b\" has the separator \"___\"; components are {rule}"
            )
        );
        assert_eq!(
            name_err("a.-b"),
            format!(
                "Invalid image name \"a.-b\": path component \"a.-b\" has the separator \".-\"; components are {rule}"
            )
        );
        assert_eq!(
            name_err("a..b"),
            format!(
                "Invalid image name \"a..b\": path component \"a..b\" has the separator \"..\"; components are {rule}"
            )
        );
        let long = "a".repeat(256);
        assert_eq!(
            name_err(&long),
            format!(
                "Invalid image name \"{long}\": it is 256 bytes long, more than the limit of 255"
            )
        );
    }

    #[test]
    fn reference_negative_registries() {
        let name_err = |name: &str| validate_reference(name, "latest").unwrap_err().to_string();
        let rule = COMPONENT_RULE;
        // A registry needs a path after it.
        assert_eq!(
            name_err("localhost:5000"),
            format!(
                "Invalid image name \"localhost:5000\": path component \"localhost:5000\" contains ':'; components are {rule}"
            )
        );
        assert_eq!(
            name_err("localhost:50a/x"),
            "Invalid image name \"localhost:50a/x\": registry port \"50a\" must be decimal digits"
        );
        assert_eq!(
            name_err("-bad.example.com/x"),
            "Invalid image name \"-bad.example.com/x\": registry host \"-bad.example.com\" has the label \"-bad\", which starts or ends with '-'"
        );
        assert_eq!(
            name_err("bad..com/x"),
            "Invalid image name \"bad..com/x\": registry host \"bad..com\" has an empty label"
        );
        assert_eq!(
            name_err("[::1]:5000/x"),
            "Invalid image name \"[::1]:5000/x\": registry \"[::1]:5000\": IPv6 registry addresses are not supported"
        );
        // With a registry, the fault in the path is reported.
        assert_eq!(
            name_err("localhost:5000/Up"),
            format!(
                "Invalid image name \"localhost:5000/Up\": path component \"Up\" contains the upper-case letter 'U'; components are {rule}"
            )
        );
        // Without one, the name is read as a path.
        assert_eq!(
            name_err("team/Up"),
            format!(
                "Invalid image name \"team/Up\": path component \"Up\" contains the upper-case letter 'U'; components are {rule}"
            )
        );
    }

    #[test]
    fn reference_negative_tags() {
        let tag_err = |tag: &str| validate_reference("a", tag).unwrap_err().to_string();
        let prefix = "must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}, but";
        assert_eq!(
            tag_err(""),
            format!("Invalid tag \"\": {prefix} it is empty")
        );
        assert_eq!(
            tag_err(".a"),
            format!("Invalid tag \".a\": {prefix} it starts with '.'")
        );
        assert_eq!(
            tag_err("-a"),
            format!("Invalid tag \"-a\": {prefix} it starts with '-'")
        );
        assert_eq!(
            tag_err("a:b"),
            format!("Invalid tag \"a:b\": {prefix} it contains ':'")
        );
        assert_eq!(
            tag_err("a b"),
            format!("Invalid tag \"a b\": {prefix} it contains ' '")
        );
        let long = "t".repeat(129);
        assert_eq!(
            tag_err(&long),
            format!("Invalid tag \"{long}\": {prefix} it is 129 characters long")
        );
        // The name is checked first.
        assert!(
            validate_reference("A", "")
                .unwrap_err()
                .to_string()
                .starts_with("Invalid image name")
        );
    }

    // -- dates ----------------------------------------------------------------

    #[test]
    fn now_rfc3339_vectors() {
        let cases = [
            (0, "1970-01-01T00:00:00+00:00"),
            (1, "1970-01-01T00:00:01+00:00"),
            (-1, "1969-12-31T23:59:59+00:00"),
            (951_782_400, "2000-02-29T00:00:00+00:00"),
            (951_868_800, "2000-03-01T00:00:00+00:00"),
            (315_532_800, "1980-01-01T00:00:00+00:00"),
            (4_102_444_800, "2100-01-01T00:00:00+00:00"),
            (4_107_456_000, "2100-02-28T00:00:00+00:00"),
            (4_107_542_400, "2100-03-01T00:00:00+00:00"),
            (1_709_164_800, "2024-02-29T00:00:00+00:00"),
            (1_735_689_599, "2024-12-31T23:59:59+00:00"),
            (1_234_567_890, "2009-02-13T23:31:30+00:00"),
            (253_402_300_799, "9999-12-31T23:59:59+00:00"),
            (-2_208_988_800, "1900-01-01T00:00:00+00:00"),
        ];
        for (secs, want) in cases {
            assert_eq!(now_rfc3339(secs), want, "{secs}");
            assert_eq!(check_rfc3339(&now_rfc3339(secs)), Ok(()));
        }
    }

    #[test]
    fn civil_from_days_matches_a_day_by_day_walk() {
        // An independent oracle: walk the calendar one day at a time from
        // 1970-01-01, forwards and backwards, over about 550 years each way.
        let (mut year, mut month, mut day) = (1970, 1, 1);
        for days in 0..200_000 {
            assert_eq!(civil_from_days(days), (year, month, day), "{days}");
            day += 1;
            if day > days_in_month(year, month) {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
            }
        }
        let (mut year, mut month, mut day) = (1970, 1, 1);
        for days in (-200_000..=0).rev() {
            assert_eq!(civil_from_days(days), (year, month, day), "{days}");
            day -= 1;
            if day == 0 {
                month -= 1;
                if month == 0 {
                    month = 12;
                    year -= 1;
                }
                day = days_in_month(year, month);
            }
        }
    }

    #[test]
    fn leap_years() {
        assert!(is_leap(2000) && is_leap(2024) && is_leap(1600));
        assert!(!is_leap(1900) && !is_leap(2100) && !is_leap(2023));
    }
}
