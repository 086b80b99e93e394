//! End-to-end tests of `buildimage build` against the real consumers of its archives:
//! images are built from Debian's static busybox in temporary folders by the real
//! binary, then loaded, inspected and run by a private Docker daemon
//! ([`support::docker`]), or copied by skopeo and unpacked by umoci.
//!
//! Each test builds its archives before it takes the Docker handle, so builds run in
//! parallel and only the Docker checks run one at a time. Every loaded image is removed
//! again (image guards): `docker load` skips layers the daemon already has, so a broken
//! archive could otherwise "load" by borrowing an earlier archive's layers.
//!
//! Run with `cargo xtask dockerd -- cargo test -p buildimage-cli --test cli docker`.

mod compressors;
mod config;
mod determinism;
mod owners;
mod scenarios;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support;
pub use crate::support::{chmod, mkdir, write};

/// Debian's statically linked busybox (package busybox-static): it runs in an image that
/// holds nothing else.
pub const BUSYBOX: &str = "/bin/busybox";

/// The busybox applets every test image links in `bin/`, as symlinks to `busybox`.
pub const APPLETS: [&str; 13] = [
    "cat", "echo", "env", "id", "ls", "mkdir", "pwd", "readlink", "sh", "stat", "test", "touch",
    "true",
];

/// Modification time of every tar entry when `SOURCE_DATE_EPOCH` is unset (1980-01-01).
pub const DEFAULT_MTIME: u64 = 315_532_800;

/// The `created` value buildImage writes by default.
pub const DEFAULT_CREATED: &str = "1970-01-01T00:00:01Z";

/// A fresh temporary folder, deleted on drop.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("bi-docker.")
        .tempdir()
        .unwrap_or_else(|err| panic!("cannot create a temporary directory: {err}"))
}

/// Creates `dir` (mode 0755) as an image root holding `bin/busybox` (a copy of the
/// host's static busybox, 0755) and a `bin/<applet> -> busybox` symlink for each of
/// [`APPLETS`]. Returns `dir`.
pub fn busybox_root(dir: &Path) -> PathBuf {
    let busybox = static_busybox();
    mkdir(dir, 0o755);
    let bin = dir.join("bin");
    mkdir(&bin, 0o755);
    write(&bin.join("busybox"), &busybox, 0o755);
    for applet in APPLETS {
        symlink("busybox", bin.join(applet))
            .unwrap_or_else(|err| panic!("cannot link bin/{applet}: {err}"));
    }
    dir.to_owned()
}

/// The bytes of [`BUSYBOX`], after checking that it is a static executable: a dynamic
/// busybox (package `busybox`) finds no loader in an image that holds nothing else.
pub fn static_busybox() -> Vec<u8> {
    support::require_tool("busybox", "busybox-static");
    let bytes = fs::read(BUSYBOX).unwrap_or_else(|err| {
        panic!("cannot read {BUSYBOX}: {err}; install it with apt-get install busybox-static")
    });
    assert!(
        is_static_elf(&bytes),
        "{BUSYBOX} is not a statically linked executable: install the static one with \
         apt-get install busybox-static"
    );
    bytes
}

/// Whether `bytes` is a little-endian ELF executable without a program interpreter
/// (`PT_INTERP`), that is one that needs no dynamic loader.
fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let read = |offset: usize, len: usize| -> Option<u64> {
        let field = bytes.get(offset..offset + len)?;
        Some(
            field
                .iter()
                .rev()
                .fold(0, |acc, &byte| (acc << 8) | u64::from(byte)),
        )
    };
    if bytes.get(..4) != Some(b"\x7fELF".as_slice()) || bytes.get(5) != Some(&1) {
        return false;
    }
    // ELF32 and ELF64 keep the program header table's offset, entry size and count at
    // different places.
    let fields = match bytes.get(4) {
        Some(1) => (read(0x1c, 4), read(0x2a, 2), read(0x2c, 2)),
        Some(2) => (read(0x20, 8), read(0x36, 2), read(0x38, 2)),
        _ => return false,
    };
    let (Some(offset), Some(size), Some(count)) = fields else {
        return false;
    };
    let (Ok(offset), Ok(size)) = (usize::try_from(offset), usize::try_from(size)) else {
        return false;
    };
    (0..usize::try_from(count).unwrap_or(0)).all(|index| {
        read(offset + index * size, 4).is_some_and(|kind| kind != u64::from(PT_INTERP))
    })
}

/// Writes `spec` as JSON to `dir/spec.json` and returns that path.
pub fn write_spec(dir: &Path, spec: &Value) -> PathBuf {
    let path = dir.join("spec.json");
    let text = serde_json::to_string_pretty(spec).expect("serialise the spec");
    fs::write(&path, text).unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    path
}

/// A successful build: the archive and what `--json` printed.
pub struct Built {
    /// The image file (`outPath`).
    pub archive: PathBuf,
    /// The `--json` object: `imageName`, `imageTag`, `outPath`, `layer`, `configDigest`,
    /// `buildArgs`.
    pub info: Value,
}

impl Built {
    /// `imageName:imageTag`, the name `docker load` should report.
    pub fn image(&self) -> String {
        format!("{}:{}", self.str("imageName"), self.str("imageTag"))
    }

    /// `imageTag`.
    pub fn tag(&self) -> &str {
        self.str("imageTag")
    }

    /// A string field of the `--json` object.
    pub fn str(&self, key: &str) -> &str {
        self.info[key]
            .as_str()
            .unwrap_or_else(|| panic!("--json has no string {key:?}: {:#}", self.info))
    }

    /// The archive's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        fs::read(&self.archive)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", self.archive.display()))
    }

    /// The archive, decompressed and read.
    pub fn read(&self) -> ImageArchive {
        ImageArchive::read(&self.archive)
    }
}

/// `buildimage` as built by cargo for this test binary, with `SOURCE_DATE_EPOCH` removed
/// so that a caller's environment cannot move the expected times.
pub fn buildimage() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("buildimage")
        .unwrap_or_else(|err| panic!("cannot find the buildimage binary: {err}"));
    cmd.env_remove("SOURCE_DATE_EPOCH");
    cmd
}

/// `buildimage build SPEC -o OUT --json`.
pub fn build(spec: &Path, out: &Path) -> Built {
    let mut cmd = buildimage();
    cmd.arg("build").arg(spec).arg("-o").arg(out);
    run_build(cmd)
}

/// `buildimage build SPEC --json` in the folder `cwd`, so the image gets its default name.
pub fn build_in(cwd: &Path, spec: &Path) -> Built {
    let mut cmd = buildimage();
    cmd.current_dir(cwd).arg("build").arg(spec);
    run_build(cmd)
}

/// Adds `--json` to a `buildimage build` command, runs it, and checks that it succeeded
/// and printed one JSON object (and nothing else) on standard output.
pub fn run_build(mut cmd: assert_cmd::Command) -> Built {
    let assert = cmd.arg("--json").assert().success();
    let stdout = &assert.get_output().stdout;
    let info: Value = serde_json::from_slice(stdout).unwrap_or_else(|err| {
        panic!(
            "--json must print one JSON object on stdout ({err}):\n{}",
            String::from_utf8_lossy(stdout)
        )
    });
    let archive = PathBuf::from(
        info["outPath"]
            .as_str()
            .unwrap_or_else(|| panic!("--json has no outPath: {info:#}")),
    );
    assert!(
        archive.is_file(),
        "outPath {} is no file",
        archive.display()
    );
    Built { archive, info }
}

/// One member of a tar, as the checks need it.
#[derive(Debug, Clone)]
pub struct Member {
    /// The raw member name, lossily decoded (`./`, `./bin/`, `manifest.json`).
    pub path: String,
    /// The type flag: `b'0'` file, `b'5'` directory, `b'2'` symlink, `b'6'` fifo, …
    pub kind: u8,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    /// Numeric owner.
    pub uid: u64,
    /// Numeric group.
    pub gid: u64,
    /// Owner name.
    pub uname: String,
    /// Group name.
    pub gname: String,
    /// Modification time, seconds.
    pub mtime: u64,
    /// Link target of a symlink or hard link.
    pub link: Option<String>,
    /// Contents.
    pub data: Vec<u8>,
}

/// Reads every member of a plain tar.
pub fn tar_members(bytes: &[u8]) -> Vec<Member> {
    let mut archive = tar::Archive::new(bytes);
    let mut members = Vec::new();
    for entry in archive.entries().expect("read the tar") {
        let mut entry = entry.expect("read a tar entry");
        let header = entry.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).expect("read a tar member");
        members.push(Member {
            path: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
            kind: header.entry_type().as_byte(),
            mode: header.mode().expect("tar mode"),
            uid: header.uid().expect("tar uid"),
            gid: header.gid().expect("tar gid"),
            uname: lossy(header.username_bytes()),
            gname: lossy(header.groupname_bytes()),
            mtime: header.mtime().expect("tar mtime"),
            link: entry
                .link_name_bytes()
                .map(|link| String::from_utf8_lossy(&link).into_owned()),
            data,
        });
    }
    members
}

fn lossy(bytes: Option<&[u8]>) -> String {
    bytes.map_or_else(String::new, |b| String::from_utf8_lossy(b).into_owned())
}

/// The plain tar inside an image file: gzip and zstd archives (recognised by their magic
/// numbers) go through `gzip -dc` and `zstd -dc`.
pub fn decompress(archive: &Path) -> Vec<u8> {
    let bytes =
        fs::read(archive).unwrap_or_else(|err| panic!("cannot read {}: {err}", archive.display()));
    let tool = if bytes.starts_with(&[0x1f, 0x8b]) {
        ("gzip", "gzip")
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        ("zstd", "zstd")
    } else {
        return bytes;
    };
    support::require_tool(tool.0, tool.1);
    support::run_ok(Command::new(tool.0).arg("-dc").arg(archive)).stdout
}

/// A docker-archive, read back member by member.
pub struct ImageArchive {
    /// The outer tar's members, in archive order.
    pub members: Vec<Member>,
}

impl ImageArchive {
    /// Decompresses and reads `archive`.
    pub fn read(archive: &Path) -> Self {
        ImageArchive {
            members: tar_members(&decompress(archive)),
        }
    }

    /// The contents of the member `path`.
    pub fn file(&self, path: &str) -> &[u8] {
        &self
            .members
            .iter()
            .find(|member| member.path == path)
            .unwrap_or_else(|| panic!("the archive has no member {path}"))
            .data
    }

    /// The member `path`, parsed as JSON.
    pub fn json(&self, path: &str) -> Value {
        serde_json::from_slice(self.file(path))
            .unwrap_or_else(|err| panic!("archive member {path} is not JSON: {err}"))
    }

    /// `manifest.json`.
    pub fn manifest(&self) -> Value {
        self.json("manifest.json")
    }

    /// The image config named by the manifest's only entry.
    pub fn config(&self) -> Value {
        let manifest = self.manifest();
        let name = manifest[0]["Config"]
            .as_str()
            .unwrap_or_else(|| panic!("manifest.json names no Config: {manifest:#}"))
            .to_owned();
        self.json(&name)
    }

    /// The members of the (only) layer's `layer.tar`.
    pub fn layer(&self) -> Vec<Member> {
        let manifest = self.manifest();
        let layers = manifest[0]["Layers"]
            .as_array()
            .unwrap_or_else(|| panic!("manifest.json has no Layers: {manifest:#}"));
        assert_eq!(layers.len(), 1, "one layer without fromImage: {manifest:#}");
        let path = layers[0].as_str().expect("a layer path").to_owned();
        tar_members(self.file(&path))
    }
}

/// The member of `members` named `path`.
pub fn member<'a>(members: &'a [Member], path: &str) -> &'a Member {
    members
        .iter()
        .find(|member| member.path == path)
        .unwrap_or_else(|| {
            let names: Vec<&str> = members.iter().map(|m| m.path.as_str()).collect();
            panic!("no member {path} among {names:?}")
        })
}

/// `docker image inspect --format '{{json FIELD}}' IMAGE`, parsed.
pub fn inspect_json(docker: &support::Docker, image: &str, field: &str) -> Value {
    let text = docker.inspect(image, &format!("{{{{json {field}}}}}"));
    serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("docker inspect {field} printed no JSON ({err}): {text}"))
}

/// `docker images --format '{{.Repository}}:{{.Tag}}'`, one line each.
pub fn docker_images(docker: &support::Docker) -> Vec<String> {
    let output =
        support::run_ok(
            docker
                .command()
                .args(["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The files directly in `dir`, sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| {
            entry
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn is_static_elf_tells_static_from_dynamic_executables() {
    // A minimal little-endian ELF64 header with one program header at offset 64.
    let elf = |program_header_type: u8| {
        let mut bytes = vec![0_u8; 64 + 56];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2; // ELFCLASS64
        bytes[5] = 1; // ELFDATA2LSB
        bytes[0x20] = 64; // e_phoff
        bytes[0x36] = 56; // e_phentsize
        bytes[0x38] = 1; // e_phnum
        bytes[64] = program_header_type;
        bytes
    };
    assert!(is_static_elf(&elf(1)), "PT_LOAD only");
    assert!(!is_static_elf(&elf(3)), "PT_INTERP");
    assert!(!is_static_elf(b"#!/bin/sh\n"));
    assert!(!is_static_elf(b""));
    assert!(is_static_elf(&static_busybox()));
}
