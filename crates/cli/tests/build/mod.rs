//! End-to-end tests of `buildimage build` in pure mode that need no Docker: they drive the
//! real binary and read the archives it writes back with the `tar` crate.
//!
//! Each area has its own module: the archive layout, the layer's content, `extraCommands`,
//! the outputs (`-o`, `--json`), errors, determinism and interruption. The helpers below
//! build source trees with explicit modes (so the test runner's umask never leaks into an
//! expectation), run the binary in a scratch folder, and take an archive apart.

mod content;
mod determinism;
mod errors;
mod extra_commands;
mod interrupt;
pub mod layout;
mod outputs;

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

pub use crate::support::{chmod, hex, ln_s, mkdir, sha256_hex, write};

/// `SOURCE_DATE_EPOCH` of a Nix build, 1980-01-01: every tar time when the variable is unset.
pub const EPOCH_1980: u64 = 315_532_800;

/// nixpkgs' default `created`.
pub const DEFAULT_CREATED: &str = "1970-01-01T00:00:01Z";

/// The path of the binary under test.
pub fn bin_path() -> PathBuf {
    assert_cmd::cargo::cargo_bin("buildimage")
}

/// `buildimage` run in `cwd`, with no `SOURCE_DATE_EPOCH` from the test's environment.
pub fn buildimage(cwd: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("buildimage").expect("the buildimage binary");
    cmd.current_dir(cwd).env_remove("SOURCE_DATE_EPOCH");
    cmd
}

/// `buildimage` run in `cwd` under `umask`, set by a shell that then `exec`s the binary.
pub fn buildimage_with_umask(cwd: &Path, umask: &str) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new("sh");
    cmd.current_dir(cwd)
        .env_remove("SOURCE_DATE_EPOCH")
        .arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
        .arg(bin_path());
    cmd
}

/// Runs `cmd` and panics, showing its standard error, unless it succeeds.
pub fn run_ok(cmd: &mut assert_cmd::Command) -> Output {
    let output = cmd.output().expect("start buildimage");
    assert!(
        output.status.success(),
        "buildimage failed ({}):\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `cmd` and panics unless it fails; returns its output.
pub fn run_err(cmd: &mut assert_cmd::Command) -> Output {
    let output = cmd.output().expect("start buildimage");
    assert!(
        !output.status.success(),
        "buildimage succeeded but should have failed:\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Standard error, lossily decoded.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A scratch folder, deleted on drop even when the test made parts of it read-only.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("bi-build.")
            .tempdir()
            .expect("create a scratch folder");
        Scratch { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `spec` as `spec.json` and returns its path.
    pub fn spec(&self, spec: &Value) -> PathBuf {
        self.spec_text(&serde_json::to_string_pretty(spec).expect("serialise spec"))
    }

    /// Writes `text` as `spec.json` and returns its path.
    pub fn spec_text(&self, text: &str) -> PathBuf {
        let path = self.join("spec.json");
        fs::write(&path, text).expect("write spec.json");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        make_writable(self.dir.path());
    }
}

/// The names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| {
            entry
                .expect("read a folder entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Gives the owner write and search permission on every folder below `path`, so that
/// the scratch folder can be removed by a non-root user too.
fn make_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode() | 0o700;
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
    }
}

/// One member of a tar archive, its content read into memory.
#[derive(Debug, Clone)]
pub struct Member {
    /// The full name (GNU long names resolved), raw bytes.
    pub name: Vec<u8>,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub uname: Vec<u8>,
    pub gname: Vec<u8>,
    pub mtime: u64,
    /// The symlink or hard-link target.
    pub link: Option<Vec<u8>>,
    pub data: Vec<u8>,
    /// Whether the header has the GNU magic `ustar  \0`.
    pub gnu: bool,
}

impl Member {
    /// The name, non-ASCII bytes escaped as `\xNN`.
    pub fn name(&self) -> String {
        self.name.escape_ascii().to_string()
    }

    /// One line describing the member for listings:
    /// `d 0775 0:0 root/root ./`, `- 0644 1000:100 / ./f`, `l 0777 0:0 root/root ./l -> t`.
    pub fn line(&self) -> String {
        let kind = match self.kind {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Regular => '-',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            _ => '?',
        };
        let mut line = format!(
            "{kind} {:04o} {}:{} {}/{} {}",
            self.mode,
            self.uid,
            self.gid,
            self.uname.escape_ascii(),
            self.gname.escape_ascii(),
            self.name()
        );
        if let Some(link) = &self.link {
            let _ = write!(line, " -> {}", link.escape_ascii());
        }
        line
    }
}

/// Reads every member of a plain tar.
pub fn read_tar(bytes: &[u8]) -> Vec<Member> {
    let mut archive = tar::Archive::new(bytes);
    let mut members = Vec::new();
    for entry in archive.entries().expect("read tar entries") {
        let mut entry = entry.expect("read a tar entry");
        let header = entry.header();
        let kind = header.entry_type();
        let link = matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link)
            .then(|| entry.link_name_bytes().map(std::borrow::Cow::into_owned))
            .flatten();
        let mut member = Member {
            name: entry.path_bytes().into_owned(),
            kind,
            mode: header.mode().expect("tar mode"),
            uid: header.uid().expect("tar uid"),
            gid: header.gid().expect("tar gid"),
            uname: header.username_bytes().unwrap_or_default().to_vec(),
            gname: header.groupname_bytes().unwrap_or_default().to_vec(),
            mtime: header.mtime().expect("tar mtime"),
            link,
            data: Vec::new(),
            gnu: header.as_gnu().is_some(),
        };
        entry
            .read_to_end(&mut member.data)
            .expect("read a tar entry's content");
        members.push(member);
    }
    members
}

/// The plain tar inside `bytes`, which may be gzip or zstd compressed (told by magic).
pub fn decompress(bytes: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut plain)
            .expect("gunzip the archive");
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        plain = zstd::decode_all(bytes).expect("unzstd the archive");
    } else {
        plain = bytes.to_vec();
    }
    plain
}

/// A docker-archive taken apart.
pub struct Image {
    /// The outer tar's members, in archive order.
    pub members: Vec<Member>,
}

impl Image {
    /// Reads the archive at `path` (any compressor).
    pub fn open(path: &Path) -> Image {
        let bytes = fs::read(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
        Image::from_bytes(&bytes)
    }

    /// Reads an archive held in memory (any compressor).
    pub fn from_bytes(bytes: &[u8]) -> Image {
        Image {
            members: read_tar(&decompress(bytes)),
        }
    }

    /// The outer member called `name`.
    pub fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.name == name.as_bytes())
            .unwrap_or_else(|| {
                let names: Vec<String> = self.members.iter().map(Member::name).collect();
                panic!("no member {name} in the archive; it has {names:?}")
            })
    }

    /// The outer member's content as text.
    pub fn text(&self, name: &str) -> &str {
        std::str::from_utf8(&self.member(name).data).expect("a UTF-8 member")
    }

    /// `manifest.json`, parsed.
    pub fn manifest(&self) -> Value {
        serde_json::from_str(self.text("manifest.json")).expect("manifest.json is JSON")
    }

    /// The new (only) layer's ID: its folder's name.
    pub fn layer_id(&self) -> String {
        let manifest = self.manifest();
        let layer = manifest[0]["Layers"][0].as_str().expect("a layer path");
        layer
            .strip_suffix("/layer.tar")
            .expect("Layers names <id>/layer.tar")
            .to_owned()
    }

    /// The config file's name in the archive, `<sha256>.json`.
    pub fn config_name(&self) -> String {
        self.manifest()[0]["Config"]
            .as_str()
            .expect("a config name")
            .to_owned()
    }

    /// The image config's text.
    pub fn config_text(&self) -> &str {
        self.text(&self.config_name())
    }

    /// The image config, parsed.
    pub fn config(&self) -> Value {
        serde_json::from_str(self.config_text()).expect("the config is JSON")
    }

    /// The layer's `json`, parsed.
    pub fn layer_json(&self) -> Value {
        serde_json::from_str(self.text(&format!("{}/json", self.layer_id())))
            .expect("the layer json is JSON")
    }

    /// The bytes of `layer.tar`.
    pub fn layer_tar(&self) -> &[u8] {
        &self.member(&format!("{}/layer.tar", self.layer_id())).data
    }

    /// The layer's members.
    pub fn layer(&self) -> Vec<Member> {
        read_tar(self.layer_tar())
    }

    /// The layer as [`Member::line`]s, in archive order.
    pub fn layer_listing(&self) -> Vec<String> {
        self.layer().iter().map(Member::line).collect()
    }

    /// The content of the layer file called `name` (`./a/b`).
    pub fn layer_file(&self, name: &str) -> Vec<u8> {
        self.layer()
            .into_iter()
            .find(|m| m.name == name.as_bytes())
            .unwrap_or_else(|| panic!("no {name} in the layer: {:?}", self.layer_listing()))
            .data
    }
}

/// Builds `spec` in a scratch folder of its own (`-o image.tar`, compressor none unless
/// the spec says otherwise) and returns the image and the command's output.
pub fn build_in(scratch: &Scratch, spec: &Value) -> (Image, Output) {
    let spec_path = scratch.spec(spec);
    let out = scratch.join("image.tar");
    let output = run_ok(
        buildimage(scratch.path())
            .arg("build")
            .arg(&spec_path)
            .arg("-o")
            .arg(&out),
    );
    (Image::open(&out), output)
}
