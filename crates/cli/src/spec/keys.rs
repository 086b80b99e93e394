//! Reading one key of a spec: its value checked against the type the key takes, with an
//! error that names the key, what it takes, and what was found.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{KeyPath, SpecError};

/// The value of `key`, or `None` when it is absent or null.
pub(crate) fn present<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|value| !value.is_null())
}

pub(crate) fn invalid(key: &'static str, expected: &'static str, got: &Value) -> SpecError {
    SpecError::InvalidValue {
        key: KeyPath::key(key),
        expected,
        got: describe(got),
    }
}

pub(crate) fn opt_string(
    map: &Map<String, Value>,
    key: &'static str,
) -> Result<Option<String>, SpecError> {
    match present(map, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(key, "a string or null", other)),
    }
}

pub(crate) fn opt_bool(map: &Map<String, Value>, key: &'static str) -> Result<bool, SpecError> {
    bool_or(map, key, false)
}

/// A boolean, `default` when absent or null.
pub(crate) fn bool_or(
    map: &Map<String, Value>,
    key: &'static str,
    default: bool,
) -> Result<bool, SpecError> {
    match present(map, key) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(invalid(key, "true, false or null", other)),
    }
}

/// An object, `None` when absent or null.
pub(crate) fn opt_object<'a>(
    map: &'a Map<String, Value>,
    key: &'static str,
) -> Result<Option<&'a Map<String, Value>>, SpecError> {
    match present(map, key) {
        None => Ok(None),
        Some(Value::Object(object)) => Ok(Some(object)),
        Some(other) => Err(invalid(key, "an object or null", other)),
    }
}

/// `architecture`: a non-empty string (Go's name of the architecture), `None` when absent
/// or null.
pub(crate) fn opt_architecture(map: &Map<String, Value>) -> Result<Option<String>, SpecError> {
    match present(map, "architecture") {
        None => Ok(None),
        Some(Value::String(arch)) if !arch.is_empty() => Ok(Some(arch.clone())),
        Some(other) => Err(invalid(
            "architecture",
            "a non-empty string such as \"amd64\", or null",
            other,
        )),
    }
}

/// A uid or gid: a JSON integer from 0 to `u32::MAX`; `1000.0` is a float and rejected.
pub(crate) fn opt_id(map: &Map<String, Value>, key: &'static str) -> Result<u32, SpecError> {
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

pub(crate) fn opt_u64(
    map: &Map<String, Value>,
    key: &'static str,
) -> Result<Option<u64>, SpecError> {
    match present(map, key) {
        None => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(key, "a non-negative integer (MiB) or null", value)),
    }
}

pub(crate) fn opt_path(
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
pub(crate) fn path_list(
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
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
        Value::String(s) => describe_str(s),
        scalar => scalar.to_string(),
    }
}

pub(crate) fn describe_str(s: &str) -> String {
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
