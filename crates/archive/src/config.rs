//! The image config, the layer `json`, `manifest.json` and `repositories`.

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use data_encoding::HEXLOWER;

/// Builds the `config` object of the image from the spec's `config` and the base image's
/// `Env`, as buildImage does: `Env` is always present, the base's entries first.
pub fn merge_config(config: Option<&Map<String, Value>>, base_env: &[Value]) -> Map<String, Value> {
    let mut out = config.cloned().unwrap_or_default();
    let mut env: Vec<Value> = base_env.to_vec();
    match out.get("Env") {
        Some(Value::Array(own)) => env.extend(own.iter().cloned()),
        Some(Value::Null) | None => {}
        Some(other) => env.push(other.clone()),
    }
    out.insert("Env".to_owned(), Value::Array(env));
    out
}

/// Builds the `config` object of an image on a base whose container config is `base`.
///
/// With `inherit` false this is buildImage's rule: only the base's `Env` is kept, before the
/// spec's. With `inherit` true (`inheritConfig`), the base's whole config is the start, as a
/// Dockerfile `FROM` gives it, and each key of the spec's `config` replaces the base's;
/// `Env` is still the base's entries followed by the spec's (later entries win in Docker).
pub fn merge_base_config(
    config: Option<&Map<String, Value>>,
    base: Option<&Map<String, Value>>,
    inherit: bool,
) -> Map<String, Value> {
    let base_env: Vec<Value> = match base.and_then(|b| b.get("Env")) {
        Some(Value::Array(env)) => env.clone(),
        _ => Vec::new(),
    };
    let mut merged = merge_config(config, &base_env);
    if inherit && let Some(base) = base {
        for (key, value) in base {
            merged.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    merged
}

/// Builds the `config` object of a layered image on a base whose container config is
/// `base`, as nixpkgs' `streamLayeredImage` does: only `Env` is taken from the base, its
/// entries first; a variable set twice keeps the place of its first entry and the value
/// of its last. Without any `Env` entry the config is left as it is (no empty `Env`).
pub fn merge_layered_config(
    config: Option<&Map<String, Value>>,
    base: Option<&Map<String, Value>>,
) -> Map<String, Value> {
    let mut out = config.cloned().unwrap_or_default();
    let entries = |c: Option<&Map<String, Value>>| -> Vec<Value> {
        match c.and_then(|c| c.get("Env")) {
            Some(Value::Array(env)) => env.clone(),
            _ => Vec::new(),
        }
    };
    let all: Vec<Value> = entries(base).into_iter().chain(entries(config)).collect();
    if all.is_empty() {
        return out;
    }
    let mut names: Vec<String> = Vec::new();
    let mut values: std::collections::BTreeMap<String, Value> = std::collections::BTreeMap::new();
    for entry in all {
        let name = entry.as_str().map_or_else(
            || entry.to_string(),
            |s| s.split('=').next().unwrap_or(s).to_owned(),
        );
        if !values.contains_key(&name) {
            names.push(name.clone());
        }
        values.insert(name, entry);
    }
    let env = names
        .into_iter()
        .filter_map(|n| values.remove(&n))
        .collect();
    out.insert("Env".to_owned(), Value::Array(env));
    out
}

/// The `rootfs` member of the image config.
#[derive(Debug, Clone, Serialize)]
pub struct RootFs {
    /// `sha256:<hex>` of every layer's uncompressed tar, lowest first.
    pub diff_ids: Vec<String>,
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// The image config (`<sha256>.json`), its keys in buildImage's order.
#[derive(Debug, Clone, Serialize)]
pub struct ImageConfig {
    /// Go's architecture name (`amd64`, `arm64`, …).
    pub architecture: String,
    /// The container config: `Cmd`, `Env`, `WorkingDir`, …
    pub config: Map<String, Value>,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Always `linux`.
    pub os: &'static str,
    /// The layers.
    pub rootfs: RootFs,
    /// One entry per layer (and any `empty_layer` entries a base image had).
    pub history: Vec<Value>,
}

impl ImageConfig {
    /// The file's bytes: jq's pretty print plus a newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::json::jq(self)
    }
}

/// The fields of a layer's `json` known before its bytes are written.
#[derive(Debug, Clone, Serialize)]
struct LayerJsonHead<'a> {
    architecture: &'a str,
    config: &'a Map<String, Value>,
    created: &'a str,
    os: &'a str,
}

/// A layer's `json` file, in jshon's layout, keys in buildImage's order.
#[derive(Debug, Clone, Serialize)]
struct LayerJson<'a> {
    architecture: &'a str,
    config: &'a Map<String, Value>,
    created: &'a str,
    os: &'a str,
    checksum: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<&'a str>,
    id: &'a str,
    #[serde(rename = "Size")]
    size: u64,
}

/// What the new layer's legacy `json` describes.
#[derive(Debug, Clone)]
pub struct LayerMeta<'a> {
    /// Architecture of the image.
    pub architecture: &'a str,
    /// The container config.
    pub config: &'a Map<String, Value>,
    /// Creation time.
    pub created: &'a str,
    /// ID of the layer below, if any.
    pub parent: Option<&'a str>,
}

impl LayerMeta<'_> {
    /// The layer ID: SHA-256 over the layer's `json` fields known before packing (base JSON
    /// and parent) and the digest of its planned entries.
    ///
    /// nixpkgs hashes the tarsum instead, which is known only after the layer is written;
    /// deriving the ID from the plan lets the layer stream straight into the archive. The
    /// ID names the layer's folder; Docker identifies layers by `diff_id`, never by it.
    pub fn layer_id(&self, plan_digest: &[u8; 32]) -> String {
        let head = LayerJsonHead {
            architecture: self.architecture,
            config: self.config,
            created: self.created,
            os: "linux",
        };
        let mut h = Sha256::new();
        h.update(crate::json::jshon(&head));
        h.update(self.parent.unwrap_or("").as_bytes());
        h.update(b"\0");
        h.update(plan_digest);
        HEXLOWER.encode(&h.finalize())
    }

    /// The `json` file: base JSON plus `checksum`, `parent`, `id` and `Size`.
    pub fn to_bytes(&self, checksum: &str, id: &str, size: u64) -> Vec<u8> {
        crate::json::jshon(&LayerJson {
            architecture: self.architecture,
            config: self.config,
            created: self.created,
            os: "linux",
            checksum,
            parent: self.parent,
            id,
            size,
        })
    }
}

/// One entry of `manifest.json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManifestEntry {
    /// `name:tag` references.
    pub repo_tags: Vec<String>,
    /// Archive paths of the layer tars, lowest first.
    pub layers: Vec<String>,
    /// Archive path of the image config.
    pub config: String,
}

/// `manifest.json`: jq's pretty print of the one-entry list.
pub fn manifest_bytes(entry: &ManifestEntry) -> Vec<u8> {
    crate::json::jq(&[entry])
}

/// `repositories`: `{name: {tag: top layer id}}` in jshon's layout.
pub fn repositories_bytes(name: &str, tag: &str, layer_id: &str) -> Vec<u8> {
    let mut tags = Map::new();
    tags.insert(tag.to_owned(), Value::String(layer_id.to_owned()));
    let mut repos = Map::new();
    repos.insert(name.to_owned(), Value::Object(tags));
    crate::json::jshon(&repos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn env_is_always_present_and_base_first() {
        let none = merge_config(None, &[]);
        assert_eq!(Value::Object(none), json!({"Env": []}));
        let own = json!({"Cmd": ["x"], "Env": ["A=3"]});
        let merged = merge_config(own.as_object(), &[json!("A=1"), json!("B=2")]);
        assert_eq!(
            Value::Object(merged),
            json!({"Cmd": ["x"], "Env": ["A=1", "B=2", "A=3"]})
        );
    }

    #[test]
    fn inherit_config_starts_from_the_base() {
        let base = json!({"Cmd": ["base"], "WorkingDir": "/b", "Env": ["A=1"], "User": "1"});
        let own = json!({"Cmd": ["own"], "Env": ["A=2"]});
        let plain = merge_base_config(own.as_object(), base.as_object(), false);
        assert_eq!(
            Value::Object(plain),
            json!({"Cmd": ["own"], "Env": ["A=1", "A=2"]})
        );
        let inherited = merge_base_config(own.as_object(), base.as_object(), true);
        assert_eq!(
            Value::Object(inherited),
            json!({"Cmd": ["own"], "Env": ["A=1", "A=2"], "User": "1", "WorkingDir": "/b"})
        );
    }

    #[test]
    fn layered_env_keeps_the_first_place_and_the_last_value() {
        let base = json!({"Env": ["PATH=/a", "X=1"], "Cmd": ["base"]});
        let own = json!({"Env": ["PATH=/b", "Y=2"]});
        assert_eq!(
            Value::Object(merge_layered_config(own.as_object(), base.as_object())),
            json!({"Env": ["PATH=/b", "X=1", "Y=2"]})
        );
        assert_eq!(
            Value::Object(merge_layered_config(
                json!({"Cmd": ["x"]}).as_object(),
                None
            )),
            json!({"Cmd": ["x"]})
        );
        assert_eq!(
            Value::Object(merge_layered_config(None, base.as_object())),
            json!({"Env": ["PATH=/a", "X=1"]})
        );
    }

    #[test]
    fn layer_json_layout() {
        let config = merge_config(json!({"Cmd": ["/bin/hello"]}).as_object(), &[]);
        let meta = LayerMeta {
            architecture: "amd64",
            config: &config,
            created: "1970-01-01T00:00:01Z",
            parent: None,
        };
        let text = String::from_utf8(meta.to_bytes("tarsum.v1+sha256:00", "abc", 10_240)).unwrap();
        assert_eq!(
            text,
            "{\n \"architecture\": \"amd64\",\n \"config\": {\n  \"Cmd\": [\n   \"/bin/hello\"\n  ],\n  \"Env\": []\n },\n \"created\": \"1970-01-01T00:00:01Z\",\n \"os\": \"linux\",\n \"checksum\": \"tarsum.v1+sha256:00\",\n \"id\": \"abc\",\n \"Size\": 10240\n}\n"
        );
    }

    #[test]
    fn repositories_layout() {
        assert_eq!(
            String::from_utf8(repositories_bytes("registry-1.docker.io/image", "t", "id")).unwrap(),
            "{\n \"registry-1.docker.io/image\": {\n  \"t\": \"id\"\n }\n}\n"
        );
    }
}
