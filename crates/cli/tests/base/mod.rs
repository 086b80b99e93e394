//! End-to-end tests of `fromImage`: images built on a base archive by the real binary, then
//! loaded, inspected and run by a private Docker daemon ([`crate::support::docker`]).
//!
//! The bases come from buildimage itself, from `docker save`, from `skopeo copy`, or are
//! rewritten or made by hand here with the `tar` crate ([`Archive`]): compressed whole or
//! per layer, in the layout of nixpkgs' `streamLayeredImage`, with two images, a repeated
//! layer, whiteouts over a store path, or broken on purpose. Every build gets a private
//! `TMPDIR` that must be empty again when the binary exits, whether it succeeded or not.
//!
//! As in the `docker` module, each test builds what it can before it takes the Docker
//! handle, and every loaded image is removed again.
//!
//! Run with `cargo xtask dockerd -- cargo test -p buildimage-cli --test cli base`.

mod dedup;
mod forms;
mod hostile;
mod layers;
mod select;

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::docker::{self, Built, DEFAULT_MTIME};
pub use crate::support::sha256_hex;

/// A test's folder: specs, archives, image roots, a fake store, and the private `TMPDIR`
/// every build runs with.
pub struct Case {
    dir: crate::support::TestDir,
}

impl std::ops::Deref for Case {
    type Target = crate::support::TestDir;
    fn deref(&self) -> &crate::support::TestDir {
        &self.dir
    }
}

impl Case {
    /// A fresh folder with an empty `tmp/`.
    pub fn new() -> Case {
        Case {
            dir: crate::support::TestDir::new("bi-base."),
        }
    }

    /// Creates the image root `rel` with a static busybox (see [`docker::busybox_root`])
    /// and returns its path.
    pub fn busybox_root(&self, rel: &str) -> PathBuf {
        docker::busybox_root(&self.join(rel))
    }

    /// Creates the image root `rel` holding only the file `name` with `text` (both 0755 and
    /// 0644): a small base where busybox is not needed.
    pub fn small_root(&self, rel: &str, name: &str, text: &[u8]) -> PathBuf {
        let root = self.join(rel);
        docker::mkdir(&root, 0o755);
        docker::write(&root.join(name), text, 0o644);
        root
    }

    /// Where the image of the spec `name` goes: `name.tar`, `name.tar.gz` or `name.tar.zst`
    /// after the spec's `compressor` (default gz, as in nixpkgs).
    pub fn out(&self, name: &str, spec: &Value) -> PathBuf {
        let extension = match spec["compressor"].as_str() {
            Some("none") => "tar",
            Some("zstd") => "tar.zst",
            _ => "tar.gz",
        };
        self.join(format!("{name}.{extension}"))
    }

    /// `buildimage build NAME.json -o OUT [ARGS]` with `TMPDIR` set to [`Case::tmp`].
    fn command(&self, name: &str, spec: &Value, args: &[&OsStr]) -> assert_cmd::Command {
        let spec_path = self.join(format!("{name}.json"));
        let text = serde_json::to_string_pretty(spec).expect("serialise the spec");
        fs::write(&spec_path, text)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", spec_path.display()));
        let mut cmd = docker::buildimage();
        cmd.env("TMPDIR", self.tmp())
            .current_dir(self.path())
            .arg("build")
            .arg(&spec_path)
            .arg("-o")
            .arg(self.out(name, spec))
            .args(args);
        cmd
    }

    /// Builds the spec `spec`, saved as `NAME.json`, into [`Case::out`]; checks that the
    /// build left nothing in `TMPDIR`.
    pub fn build(&self, name: &str, spec: &Value) -> Built {
        self.build_with(name, spec, &[])
    }

    /// [`Case::build`] with more arguments, such as `--store DIR`.
    pub fn build_with(&self, name: &str, spec: &Value, args: &[&OsStr]) -> Built {
        let built = docker::run_build(self.command(name, spec, args));
        self.assert_tmp_empty();
        built
    }

    /// Like [`Case::build`], with standard error too (warnings).
    pub fn build_stderr(&self, name: &str, spec: &Value) -> (Built, String) {
        let mut cmd = self.command(name, spec, &[]);
        let output = cmd.arg("--json").output().expect("start buildimage");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "buildimage failed ({}):\n{stderr}",
            output.status
        );
        let info: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|err| panic!("--json printed no JSON ({err}):\n{stderr}"));
        self.assert_tmp_empty();
        let archive = self.out(name, spec);
        (Built { archive, info }, stderr)
    }

    /// Runs a build that must fail: checks that it exits non-zero, that neither the image
    /// nor a temporary file beside it exists, and that `TMPDIR` is empty. Returns standard
    /// error.
    pub fn build_fails(&self, name: &str, spec: &Value) -> String {
        let spec_file = format!("{name}.json");
        let mut before = docker::file_names(self.path());
        before.retain(|n| *n != spec_file);
        let output = self
            .command(name, spec, &[])
            .output()
            .expect("start buildimage");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        // Shown with --nocapture, to read the messages users get.
        eprintln!("buildimage build {name}.json:\n{stderr}");
        assert!(
            !output.status.success(),
            "buildimage succeeded but should have failed:\n{stderr}"
        );
        let out = self.out(name, spec);
        assert!(
            !out.exists(),
            "a failed build left its output {}",
            out.display()
        );
        let mut after = docker::file_names(self.path());
        after.retain(|n| *n != spec_file);
        assert_eq!(after, before, "a failed build left files beside its output");
        self.assert_tmp_empty();
        stderr
    }

    /// Panics unless `TMPDIR` is empty.
    pub fn assert_tmp_empty(&self) {
        let left = docker::file_names(&self.tmp());
        assert!(left.is_empty(), "buildimage left {left:?} in TMPDIR");
    }
}

/// `sha256:<hex>` of `bytes`: a diff id.
pub fn diff_id(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// The new layer's diff id, as `--json` printed it.
pub fn layer_diff_id(built: &Built) -> String {
    built.info["layer"]["diffId"]
        .as_str()
        .unwrap_or_else(|| panic!("--json has no layer.diffId: {:#}", built.info))
        .to_owned()
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

/// One member of an archive being made or rewritten: name and link target are raw bytes,
/// written as they are (even `../x`, which the `tar` crate's own setters refuse).
#[derive(Debug, Clone)]
pub struct Raw {
    /// The member name.
    pub name: Vec<u8>,
    /// Its type.
    pub kind: tar::EntryType,
    /// Permission bits.
    pub mode: u32,
    /// Link target of a symlink or hard link, else empty.
    pub link: Vec<u8>,
    /// Contents of a regular file.
    pub data: Vec<u8>,
}

impl Raw {
    /// A regular file.
    pub fn file(name: impl AsRef<[u8]>, data: impl Into<Vec<u8>>, mode: u32) -> Raw {
        Raw {
            name: name.as_ref().to_vec(),
            kind: tar::EntryType::Regular,
            mode,
            link: Vec::new(),
            data: data.into(),
        }
    }

    /// A directory.
    pub fn dir(name: impl AsRef<[u8]>, mode: u32) -> Raw {
        Raw {
            name: name.as_ref().to_vec(),
            kind: tar::EntryType::Directory,
            mode,
            link: Vec::new(),
            data: Vec::new(),
        }
    }

    /// A symbolic link.
    pub fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Raw {
        Raw {
            name: name.as_ref().to_vec(),
            kind: tar::EntryType::Symlink,
            mode: 0o777,
            link: target.as_ref().to_vec(),
            data: Vec::new(),
        }
    }

    /// The name, lossily decoded.
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// Reads every member of a plain tar, keeping names and link targets as raw bytes.
pub fn read_tar(bytes: &[u8]) -> Vec<Raw> {
    let mut archive = tar::Archive::new(bytes);
    let mut members = Vec::new();
    for entry in archive.entries().expect("read the tar") {
        let mut entry = entry.expect("read a tar entry");
        let header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read a tar member");
        members.push(Raw {
            name: entry.path_bytes().into_owned(),
            kind: header.entry_type(),
            mode: header.mode().expect("tar mode"),
            link: entry
                .link_name_bytes()
                .map(std::borrow::Cow::into_owned)
                .unwrap_or_default(),
            data,
        });
    }
    members
}

/// Writes `members` as a ustar archive, owner 0:0, mtime 1980-01-01. With `pax`, every
/// member gets a PAX extended header with its `path` (and `linkpath`), as Python's
/// `tarfile` in PAX format (nixpkgs' `streamLayeredImage`) writes for names it cannot
/// store otherwise; names longer than 100 bytes always get one.
pub fn write_tar(members: &[Raw], pax: bool) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for member in members {
        let long = member.name.len() > 100 || member.link.len() > 100;
        if pax || long {
            let mut records: Vec<(&str, &[u8])> = vec![("path", &member.name)];
            if !member.link.is_empty() {
                records.push(("linkpath", &member.link));
            }
            builder
                .append_pax_extensions(records)
                .expect("write a PAX header");
        }
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(member.kind);
        header.set_mode(member.mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(DEFAULT_MTIME);
        header.set_size(member.data.len() as u64);
        // The ustar name field is the first 100 bytes of the header; set by hand so that
        // any bytes go in. A longer name is cut here and given whole by the PAX header.
        let name = &member.name[..member.name.len().min(100)];
        header.as_mut_bytes()[..100].fill(0);
        header.as_mut_bytes()[..name.len()].copy_from_slice(name);
        if !member.link.is_empty() {
            let link = &member.link[..member.link.len().min(100)];
            header
                .set_link_name_literal(link)
                .expect("set the link name");
        }
        header.set_cksum();
        builder
            .append(&header, member.data.as_slice())
            .expect("write a tar member");
    }
    builder.into_inner().expect("finish the tar")
}

/// A docker-archive in memory, to rewrite a base or make one by hand.
#[derive(Debug, Clone, Default)]
pub struct Archive {
    /// The outer members, in order.
    pub members: Vec<Raw>,
}

impl Archive {
    /// Reads `path`, decompressing gzip and zstd.
    pub fn open(path: &Path) -> Archive {
        Archive {
            members: read_tar(&docker::decompress(path)),
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.members.iter().position(|m| m.name == name.as_bytes())
    }

    /// The contents of the member `name`.
    pub fn file(&self, name: &str) -> &[u8] {
        let index = self.position(name).unwrap_or_else(|| {
            let names: Vec<String> = self.members.iter().map(Raw::name).collect();
            panic!("the archive has no member {name}: {names:?}")
        });
        &self.members[index].data
    }

    /// The member `name`, parsed as JSON.
    pub fn json(&self, name: &str) -> Value {
        serde_json::from_slice(self.file(name))
            .unwrap_or_else(|err| panic!("member {name} is not JSON: {err}"))
    }

    /// Replaces the contents of the file `name`, or adds it (0644) at the end.
    pub fn put(&mut self, name: &str, data: impl Into<Vec<u8>>) {
        let data = data.into();
        match self.position(name) {
            Some(index) => self.members[index].data = data,
            None => self.members.push(Raw::file(name, data, 0o644)),
        }
    }

    /// Removes the member `name`, which must exist.
    pub fn remove(&mut self, name: &str) {
        let index = self
            .position(name)
            .unwrap_or_else(|| panic!("the archive has no member {name} to remove"));
        self.members.remove(index);
    }

    /// Renames the member `from`.
    pub fn rename(&mut self, from: &str, to: &str) {
        let index = self
            .position(from)
            .unwrap_or_else(|| panic!("the archive has no member {from} to rename"));
        self.members[index].name = to.as_bytes().to_vec();
    }

    /// `manifest.json`.
    pub fn manifest(&self) -> Value {
        self.json("manifest.json")
    }

    /// Writes `manifest.json` (compact, as Docker does).
    pub fn set_manifest(&mut self, manifest: &Value) {
        self.put("manifest.json", serde_json::to_vec(manifest).expect("JSON"));
    }

    /// The config of the first image.
    pub fn config(&self) -> Value {
        let manifest = self.manifest();
        self.json(manifest[0]["Config"].as_str().expect("a Config name"))
    }

    /// The first image's `Layers`.
    pub fn layers(&self) -> Vec<String> {
        strings(&self.manifest()[0]["Layers"])
    }

    /// Replaces the first image's config: writes it as `<sha256>.json` (its new image ID),
    /// removes the old one and points `manifest.json` at the new one. Returns the hex ID.
    pub fn set_config(&mut self, config: &Value) -> String {
        let bytes = serde_json::to_vec_pretty(config).expect("JSON");
        let id = sha256_hex(&bytes);
        let mut manifest = self.manifest();
        let old = manifest[0]["Config"].as_str().expect("a Config").to_owned();
        self.remove(&old);
        self.put(&format!("{id}.json"), bytes);
        manifest[0]["Config"] = Value::String(format!("{id}.json"));
        self.set_manifest(&manifest);
        id
    }

    /// Adds a layer on top of the first image: the tar `layer` as `<diff id>/layer.tar`,
    /// its diff id and a history entry in the config.
    pub fn push_layer(&mut self, layer: &[u8]) {
        let id = sha256_hex(layer);
        self.members.push(Raw::dir(format!("{id}/"), 0o755));
        self.members
            .push(Raw::file(format!("{id}/layer.tar"), layer, 0o644));
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
            .push(serde_json::json!({ "created": "1970-01-01T00:00:01Z" }));
        self.set_config(&config);
    }

    /// The plain tar.
    pub fn to_bytes(&self) -> Vec<u8> {
        write_tar(&self.members, false)
    }

    /// Writes the plain tar to `path`.
    pub fn save(&self, path: &Path) {
        fs::write(path, self.to_bytes())
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    }
}

/// One archive with the images of `first`, then those of `second`, as `docker save A B`
/// makes: the members `first` lacks are added, `manifest.json` lists every image and
/// `repositories` holds every name.
pub fn merge(first: &Archive, second: &Archive) -> Archive {
    let mut merged = first.clone();
    for member in &second.members {
        if merged.position(&member.name()).is_none() {
            merged.members.push(member.clone());
        }
    }
    let mut manifest = first.manifest();
    let entries = manifest.as_array_mut().expect("a manifest list");
    entries.extend(
        second
            .manifest()
            .as_array()
            .expect("a manifest list")
            .clone(),
    );
    merged.set_manifest(&manifest);
    let mut repositories = first.json("repositories");
    for (name, tags) in second
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

/// The members of the layer `path` of an image archive (plain tar).
pub fn layer_members(archive: &Archive, path: &str) -> Vec<Raw> {
    read_tar(archive.file(path))
}

/// Member names without a leading `./` and a trailing `/`, for comparisons.
pub fn clean_names(members: &[Raw]) -> Vec<String> {
    members
        .iter()
        .map(|m| {
            let name = m.name();
            let name = name.strip_prefix("./").unwrap_or(&name);
            name.strip_suffix('/').unwrap_or(name).to_owned()
        })
        .collect()
}

/// Output lines of `docker run` that start with `prefix`.
pub fn lines_starting(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}
