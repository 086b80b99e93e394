//! docker-archives: [`Image`] reads one back and edits it in memory; [`BaseImage`] makes
//! one from scratch, in each layout buildimage reads as a `fromImage` (docs/formats.md §5.1).

use std::io::Write as _;
use std::path::Path;

use serde_json::{Value, json};

use crate::fs::sha256_hex;
use crate::tar::{Member, decompress, read_tar, write_tar};

/// `sha256:<hex>` of `bytes`: a diff id, a digest.
pub fn diff_id(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// A string array of a JSON value, for comparisons.
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("not a string: {v}"))
                .to_owned()
        })
        .collect()
}

/// A docker-archive in memory: its outer members, in archive order.
///
/// The readers look at the first image of `manifest.json` (the only one of what buildimage
/// writes); "the layer" is the new, topmost one. The editors change members in place, to
/// break or rewrite a base image, and [`Image::save`] writes it again with [`write_tar`].
#[derive(Debug, Clone, Default)]
pub struct Image {
    /// The outer tar's members, in archive order.
    pub members: Vec<Member>,
}

impl Image {
    /// Reads the archive at `path` (plain, gzip or zstd).
    pub fn open(path: &Path) -> Image {
        let bytes = std::fs::read(path)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
        Image::from_bytes(&bytes)
    }

    /// Reads an archive held in memory (plain, gzip or zstd).
    pub fn from_bytes(bytes: &[u8]) -> Image {
        Image {
            members: read_tar(&decompress(bytes)),
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.members.iter().position(|m| m.name == name.as_bytes())
    }

    /// The outer member called `name`.
    pub fn member(&self, name: &str) -> &Member {
        crate::tar::member(&self.members, name)
    }

    /// The content of the outer member `name`.
    pub fn file(&self, name: &str) -> &[u8] {
        &self.member(name).data
    }

    /// The content of the outer member `name` as text.
    pub fn text(&self, name: &str) -> &str {
        std::str::from_utf8(self.file(name))
            .unwrap_or_else(|err| panic!("member {name} is not UTF-8: {err}"))
    }

    /// The outer member `name`, parsed as JSON.
    pub fn json(&self, name: &str) -> Value {
        serde_json::from_slice(self.file(name))
            .unwrap_or_else(|err| panic!("member {name} is not JSON: {err}"))
    }

    /// `manifest.json`, parsed.
    pub fn manifest(&self) -> Value {
        self.json("manifest.json")
    }

    /// The first image's config file name (`<sha256>.json` as buildimage writes it).
    pub fn config_name(&self) -> String {
        let manifest = self.manifest();
        manifest[0]["Config"]
            .as_str()
            .unwrap_or_else(|| panic!("manifest.json names no Config: {manifest:#}"))
            .to_owned()
    }

    /// The first image's config text.
    pub fn config_text(&self) -> &str {
        self.text(&self.config_name())
    }

    /// The first image's config, parsed.
    pub fn config(&self) -> Value {
        self.json(&self.config_name())
    }

    /// The first image's `Layers`, bottom first.
    pub fn layers(&self) -> Vec<String> {
        let manifest = self.manifest();
        strings(&manifest[0]["Layers"])
    }

    /// The path of the new (topmost) layer, `<id>/layer.tar`.
    fn top_layer_path(&self) -> String {
        let layers = self.layers();
        layers
            .last()
            .unwrap_or_else(|| panic!("manifest.json lists no layer: {layers:?}"))
            .clone()
    }

    /// The new layer's ID: its folder's name.
    pub fn layer_id(&self) -> String {
        let path = self.top_layer_path();
        path.strip_suffix("/layer.tar")
            .unwrap_or_else(|| panic!("Layers names {path}, not <id>/layer.tar"))
            .to_owned()
    }

    /// The new layer's `json`, parsed.
    pub fn layer_json(&self) -> Value {
        self.json(&format!("{}/json", self.layer_id()))
    }

    /// The bytes of the new layer's `layer.tar`.
    pub fn layer_tar(&self) -> &[u8] {
        self.file(&self.top_layer_path())
    }

    /// The members of the only layer, checking that there is one (an image without
    /// `fromImage`).
    pub fn layer(&self) -> Vec<Member> {
        let layers = self.layers();
        assert_eq!(layers.len(), 1, "one layer without fromImage: {layers:?}");
        self.layer_at(&layers[0])
    }

    /// The members of the new (topmost) layer.
    pub fn top_layer(&self) -> Vec<Member> {
        self.layer_at(&self.top_layer_path())
    }

    /// The members of the layer stored as the outer member `path` (plain tar).
    pub fn layer_at(&self, path: &str) -> Vec<Member> {
        read_tar(self.file(path))
    }

    /// The only layer as [`Member::line`]s, in archive order.
    pub fn layer_listing(&self) -> Vec<String> {
        self.layer().iter().map(Member::line).collect()
    }

    /// The content of the file `name` (`./a/b`) of the only layer.
    pub fn layer_file(&self, name: &str) -> Vec<u8> {
        self.layer()
            .into_iter()
            .find(|m| m.name == name.as_bytes())
            .unwrap_or_else(|| panic!("no {name} in the layer: {:?}", self.layer_listing()))
            .data
    }

    /// Replaces the content of the file `name`, or adds it (0644) at the end.
    pub fn put(&mut self, name: &str, data: impl Into<Vec<u8>>) {
        let data = data.into();
        match self.position(name) {
            Some(index) => self.members[index].data = data,
            None => self.members.push(Member::file(name, data, 0o644)),
        }
    }

    /// Removes the member `name`, which must exist.
    pub fn remove(&mut self, name: &str) {
        let index = self
            .position(name)
            .unwrap_or_else(|| panic!("the archive has no member {name} to remove"));
        self.members.remove(index);
    }

    /// Writes `manifest.json` (compact, as Docker does).
    pub fn set_manifest(&mut self, manifest: &Value) {
        self.put("manifest.json", serde_json::to_vec(manifest).expect("JSON"));
    }

    /// Replaces the first image's config: writes it as `<sha256>.json` (its new image ID),
    /// removes the old one and points `manifest.json` at the new one. Returns the hex ID.
    pub fn set_config(&mut self, config: &Value) -> String {
        let bytes = serde_json::to_vec_pretty(config).expect("JSON");
        let id = sha256_hex(&bytes);
        let mut manifest = self.manifest();
        self.remove(&self.config_name());
        self.put(&format!("{id}.json"), bytes);
        manifest[0]["Config"] = Value::String(format!("{id}.json"));
        self.set_manifest(&manifest);
        id
    }

    /// Adds a layer on top of the first image: the tar `layer` as `<sha256>/layer.tar`,
    /// its diff id and a history entry in the config.
    pub fn push_layer(&mut self, layer: &[u8]) {
        let id = sha256_hex(layer);
        self.members.push(Member::dir(format!("{id}/"), 0o755));
        self.members
            .push(Member::file(format!("{id}/layer.tar"), layer, 0o644));
        let mut manifest = self.manifest();
        manifest[0]["Layers"]
            .as_array_mut()
            .expect("Layers")
            .push(Value::String(format!("{id}/layer.tar")));
        self.set_manifest(&manifest);
        let mut config = self.config();
        config["rootfs"]["diff_ids"]
            .as_array_mut()
            .expect("diff_ids")
            .push(Value::String(diff_id(layer)));
        config["history"]
            .as_array_mut()
            .expect("history")
            .push(json!({ "created": crate::DEFAULT_CREATED }));
        self.set_config(&config);
    }

    /// One archive with the images of `self`, then those of `other`, as `docker save A B`
    /// makes: the members `self` lacks are added, `manifest.json` lists every image and
    /// `repositories` holds every name.
    #[must_use]
    pub fn merge(&self, other: &Image) -> Image {
        let mut merged = self.clone();
        for member in &other.members {
            if merged.position(&member.name()).is_none() {
                merged.members.push(member.clone());
            }
        }
        let mut manifest = self.manifest();
        let entries = manifest.as_array_mut().expect("a manifest list");
        entries.extend(
            other
                .manifest()
                .as_array()
                .expect("a manifest list")
                .clone(),
        );
        merged.set_manifest(&manifest);
        let mut repositories = self.json("repositories");
        for (name, tags) in other
            .json("repositories")
            .as_object()
            .expect("repositories")
        {
            repositories[name] = tags.clone();
        }
        merged.put(
            "repositories",
            serde_json::to_vec(&repositories).expect("JSON"),
        );
        merged
    }

    /// The plain tar; see [`write_tar`] (`pax` as there).
    pub fn to_bytes(&self, pax: bool) -> Vec<u8> {
        write_tar(&self.members, pax)
    }

    /// Writes the plain tar to `path`.
    pub fn save(&self, path: &Path) {
        std::fs::write(path, self.to_bytes(false))
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    }
}

/// Where a [`BaseImage`] puts its members (docs/formats.md §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// What buildimage, nixpkgs and Docker before 25 write: `<id>/VERSION`, `<id>/json`,
    /// `<id>/layer.tar` per layer, `<sha256>.json`, `manifest.json`, `repositories`.
    Legacy,
    /// What `docker save` writes since Docker 25: an OCI layout (`oci-layout`,
    /// `index.json`, `blobs/sha256/…`, here with one blob nothing names) plus
    /// `manifest.json` and `repositories` whose `Config` and `Layers` name blobs.
    Docker25,
    /// What `skopeo copy … docker-archive:` writes: `<sha256>.tar` layers and the config
    /// at the top level, `manifest.json`, `repositories`; no layer folders.
    Skopeo,
    /// What nixpkgs' `streamLayeredImage` writes: `<sha256>/layer.tar`, the config and a
    /// `manifest.json` with `Config`, `RepoTags` and `Layers` only, every member with a
    /// PAX header, mode 0444.
    StreamLayered,
}

/// How a [`BaseImage`] stores each layer; the config's `diff_ids` stay those of the plain
/// tars, as the format wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    /// Plain tars.
    None,
    /// Each layer gzip-compressed, its member name given a `.gz` suffix.
    Gzip,
    /// Each layer zstd-compressed, its member name given a `.zst` suffix.
    Zstd,
}

/// A base image made from scratch: layers (plain tars, e.g. from [`write_tar`]), an image
/// config and a tag, laid out as one of the [`Layout`]s and saved as a docker-archive,
/// plain or compressed as a whole.
///
/// ```no_run
/// use buildimage_test_support::{BaseImage, Layout, Member, write_tar};
///
/// let layer = write_tar(&[Member::dir("etc/", 0o755), Member::file("etc/motd", "hi\n", 0o644)], false);
/// let base = BaseImage::new("buildimage-test/base:1")
///     .layer(layer)
///     .config(serde_json::json!({ "config": { "Env": ["PATH=/bin"] } }))
///     .layout(Layout::Docker25)
///     .to_bytes();
/// ```
#[derive(Debug, Clone)]
pub struct BaseImage {
    repo_tag: Option<String>,
    /// `(stored bytes, diff id)` per layer, bottom first.
    layers: Vec<(Vec<u8>, String)>,
    config: Value,
    config_bytes: Option<Vec<u8>>,
    layout: Layout,
    compression: LayerCompression,
}

impl BaseImage {
    /// An image tagged `repo_tag` (`NAME:TAG`) without layers, config `{}` and the
    /// [`Layout::Legacy`] layout.
    pub fn new(repo_tag: &str) -> BaseImage {
        BaseImage {
            repo_tag: Some(repo_tag.to_owned()),
            layers: Vec::new(),
            config: json!({}),
            config_bytes: None,
            layout: Layout::Legacy,
            compression: LayerCompression::None,
        }
    }

    /// The first image of `image`, its layers and config bytes unchanged (so the same
    /// image ID), to be laid out anew.
    pub fn from_image(image: &Image) -> BaseImage {
        let tag = image.manifest()[0]["RepoTags"][0]
            .as_str()
            .map(str::to_owned);
        BaseImage {
            repo_tag: tag,
            layers: image
                .layers()
                .iter()
                .map(|path| {
                    let plain = image.file(path).to_vec();
                    let id = diff_id(&plain);
                    (plain, id)
                })
                .collect(),
            config: image.config(),
            config_bytes: Some(image.file(&image.config_name()).to_vec()),
            layout: Layout::Legacy,
            compression: LayerCompression::None,
        }
    }

    /// Adds the plain tar `layer` on top.
    #[must_use]
    pub fn layer(mut self, layer: Vec<u8>) -> BaseImage {
        let id = diff_id(&layer);
        self.layers.push((layer, id));
        self.config_bytes = None;
        self
    }

    /// Adds `stored` on top as it is, with `diff_id` in the config: a layer compressed
    /// beforehand, or one whose diff id is wrong on purpose.
    #[must_use]
    pub fn raw_layer(mut self, stored: Vec<u8>, diff_id: &str) -> BaseImage {
        self.layers.push((stored, diff_id.to_owned()));
        self.config_bytes = None;
        self
    }

    /// The image config without `rootfs`, which is added: `architecture` (default the
    /// host's in Go's naming), `os` (default `linux`), `config`, `created`, and `history`
    /// (default one entry per layer, created 1970-01-01T00:00:01Z).
    #[must_use]
    pub fn config(mut self, config: Value) -> BaseImage {
        self.config = config;
        self.config_bytes = None;
        self
    }

    /// The layout.
    #[must_use]
    pub fn layout(mut self, layout: Layout) -> BaseImage {
        self.layout = layout;
        self
    }

    /// How each layer is stored.
    #[must_use]
    pub fn layer_compression(mut self, compression: LayerCompression) -> BaseImage {
        self.compression = compression;
        self
    }

    /// The config's bytes: as read by [`BaseImage::from_image`], else made from
    /// [`BaseImage::config`] with `rootfs` added.
    fn config_bytes(&self) -> Vec<u8> {
        if let Some(bytes) = &self.config_bytes {
            return bytes.clone();
        }
        let mut config = self.config.clone();
        let object = config.as_object_mut().expect("the config is an object");
        object
            .entry("architecture")
            .or_insert_with(|| json!(go_arch()));
        object.entry("os").or_insert_with(|| json!("linux"));
        object.entry("history").or_insert_with(|| {
            json!(vec![
                json!({ "created": crate::DEFAULT_CREATED });
                self.layers.len()
            ])
        });
        object.insert(
            "rootfs".to_owned(),
            json!({
                "type": "layers",
                "diff_ids": self.layers.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>(),
            }),
        );
        serde_json::to_vec(&config).expect("JSON")
    }

    /// The archive's members.
    pub fn to_image(&self) -> Image {
        let config = self.config_bytes();
        let layers: Vec<(Vec<u8>, String)> = self
            .layers
            .iter()
            .map(|(plain, _)| {
                let stored = match self.compression {
                    LayerCompression::None => plain.clone(),
                    LayerCompression::Gzip => gzip(plain),
                    LayerCompression::Zstd => zstd_compress(plain),
                };
                (stored, sha256_hex(plain))
            })
            .collect();
        let suffix = match self.compression {
            LayerCompression::None => "",
            LayerCompression::Gzip => ".gz",
            LayerCompression::Zstd => ".zst",
        };
        let config_hex = sha256_hex(&config);
        let mut members = Vec::new();
        let mut layer_names = Vec::new();
        let (config_name, mode) = match self.layout {
            Layout::Legacy | Layout::StreamLayered => {
                let mode = if self.layout == Layout::Legacy {
                    0o644
                } else {
                    0o444
                };
                for (stored, id) in &layers {
                    let name = format!("{id}/layer.tar{suffix}");
                    if self.layout == Layout::Legacy {
                        members.push(Member::dir(format!("{id}/"), 0o755));
                        members.push(Member::file(format!("{id}/VERSION"), "1.0", mode));
                        let layer_json = serde_json::to_vec(&json!({ "id": id })).expect("JSON");
                        members.push(Member::file(format!("{id}/json"), layer_json, mode));
                    }
                    members.push(Member::file(&name, stored.clone(), mode));
                    layer_names.push(name);
                }
                let config_name = format!("{config_hex}.json");
                members.push(Member::file(&config_name, config.clone(), mode));
                (config_name, mode)
            }
            Layout::Skopeo => {
                for (stored, id) in &layers {
                    let name = format!("{id}.tar{suffix}");
                    members.push(Member::file(&name, stored.clone(), 0o644));
                    layer_names.push(name);
                }
                let config_name = format!("{config_hex}.json");
                members.push(Member::file(&config_name, config.clone(), 0o644));
                (config_name, 0o644)
            }
            Layout::Docker25 => {
                let blob = |bytes: &[u8]| format!("blobs/sha256/{}", sha256_hex(bytes));
                let descriptor = |media: &str, bytes: &[u8]| json!({ "mediaType": media, "digest": diff_id(bytes), "size": bytes.len() });
                let oci_manifest = serde_json::to_vec(&json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
                    "layers": layers
                        .iter()
                        .map(|(stored, _)| descriptor("application/vnd.oci.image.layer.v1.tar", stored))
                        .collect::<Vec<_>>(),
                }))
                .expect("JSON");
                let unused = write_tar(&[Member::file("unused.txt", "unused\n", 0o644)], false);
                members.push(Member::dir("blobs/", 0o755));
                members.push(Member::dir("blobs/sha256/", 0o755));
                members.push(Member::file(blob(&config), config.clone(), 0o644));
                members.push(Member::file(
                    blob(&oci_manifest),
                    oci_manifest.clone(),
                    0o644,
                ));
                members.push(Member::file(blob(&unused), unused, 0o644));
                for (stored, _) in &layers {
                    let name = blob(stored);
                    members.push(Member::file(&name, stored.clone(), 0o644));
                    layer_names.push(name);
                }
                let mut annotations = json!({});
                if let Some(repo_tag) = &self.repo_tag {
                    let tag = repo_tag.rsplit_once(':').map_or("latest", |(_, tag)| tag);
                    annotations = json!({
                        "io.containerd.image.name": format!("docker.io/{repo_tag}"),
                        "org.opencontainers.image.ref.name": tag,
                    });
                }
                let index = json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": [{
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": diff_id(&oci_manifest),
                        "size": oci_manifest.len(),
                        "annotations": annotations,
                    }],
                });
                members.push(Member::file(
                    "index.json",
                    serde_json::to_vec(&index).expect("JSON"),
                    0o644,
                ));
                members.push(Member::file(
                    "oci-layout",
                    r#"{"imageLayoutVersion":"1.0.0"}"#,
                    0o644,
                ));
                (blob(&config), 0o644)
            }
        };
        let manifest = json!([{
            "Config": config_name,
            "RepoTags": self.repo_tag.as_ref().map(|t| vec![t.clone()]),
            "Layers": layer_names,
        }]);
        members.push(Member::file(
            "manifest.json",
            serde_json::to_vec(&manifest).expect("JSON"),
            mode,
        ));
        if self.layout != Layout::StreamLayered {
            let repositories = match (&self.repo_tag, layers.last()) {
                (Some(repo_tag), Some((_, top))) => {
                    let (repo, tag) = repo_tag.rsplit_once(':').expect("repo_tag is NAME:TAG");
                    json!({ repo: { tag: top } })
                }
                _ => json!({}),
            };
            members.push(Member::file(
                "repositories",
                serde_json::to_vec(&repositories).expect("JSON"),
                mode,
            ));
        }
        Image { members }
    }

    /// The plain archive.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_image()
            .to_bytes(self.layout == Layout::StreamLayered)
    }

    /// Writes the plain archive to `path`.
    pub fn save(&self, path: &Path) {
        std::fs::write(path, self.to_bytes())
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    }
}

/// `bytes` gzip-compressed (level 6, no name or time in the header, as `gzip -n`).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// `bytes` zstd-compressed (level 3).
pub fn zstd_compress(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).expect("zstd")
}

/// The host architecture in Go's (and Docker's) naming.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::{BaseImage, Image, LayerCompression, Layout, diff_id, strings};
    use crate::tar::{Member, decompress, write_tar};

    /// Every layout and layer compression gives an archive whose manifest names the layers,
    /// which hold the plain tars (decompressed), and whose config has their diff ids.
    #[test]
    fn base_images_in_every_layout_hold_their_layers_and_diff_ids() {
        let layers = [
            write_tar(&[Member::file("a", "a\n", 0o644)], false),
            write_tar(
                &[Member::dir("b/", 0o755), Member::symlink("b/l", "../a")],
                false,
            ),
        ];
        for layout in [
            Layout::Legacy,
            Layout::Docker25,
            Layout::Skopeo,
            Layout::StreamLayered,
        ] {
            for compression in [
                LayerCompression::None,
                LayerCompression::Gzip,
                LayerCompression::Zstd,
            ] {
                let what = format!("{layout:?} {compression:?}");
                let bytes = BaseImage::new("r/x:1")
                    .layer(layers[0].clone())
                    .layer(layers[1].clone())
                    .layout(layout)
                    .layer_compression(compression)
                    .to_bytes();
                let image = Image::from_bytes(&bytes);
                assert_eq!(image.manifest()[0]["RepoTags"][0], "r/x:1", "{what}");
                let stored = image.layers();
                assert_eq!(stored.len(), 2, "{what}");
                for (path, plain) in stored.iter().zip(&layers) {
                    assert!(decompress(image.file(path)) == *plain, "{what}: {path}");
                }
                assert_eq!(
                    strings(&image.config()["rootfs"]["diff_ids"]),
                    layers.iter().map(|l| diff_id(l)).collect::<Vec<_>>(),
                    "{what}"
                );
                let config_name = image.config_name();
                let hex = config_name
                    .trim_start_matches("blobs/sha256/")
                    .trim_end_matches(".json");
                assert_eq!(
                    diff_id(image.file(&config_name)),
                    format!("sha256:{hex}"),
                    "{what}: the config is named after its digest"
                );
            }
        }
    }
}
