//! Golden artefacts: small images and a layer whose exact bytes are committed beside this
//! file, rebuilt by the real binary from fixtures that depend on nothing of the machine
//! (explicit modes, fixed `SOURCE_DATE_EPOCH`, `architecture`, tag and store), and compared
//! byte for byte. A difference is a change of the output format: if it is intended,
//! `cargo xtask golden` rewrites the files (it runs these tests with
//! `BUILDIMAGE_UPDATE_GOLDEN=1`, as root), and the diff of the commit shows it. The tests
//! themselves never write them otherwise.
//!
//! - `image.tar`, `image.tar.gz`, `image.tar.zst`: one image with every compressor, built
//!   on a hand-made base (`fromImage`) with a `copyToRoot` tree, a `config`, and the
//!   closure of two fake store paths found by scanning (`--store`);
//! - `every-kind.layer.tar`: the layer of a tree holding every kind of entry buildimage
//!   packs, device nodes included (so it needs root).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use buildimage_test_support::{
    BaseImage, Buildimage, Image, Member, TestDir, chmod, decompress, ln_s, mkdir, require_root,
    write, write_tar,
};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use serde_json::json;

/// The variable under which the tests write the golden files instead of comparing.
const UPDATE_VAR: &str = "BUILDIMAGE_UPDATE_GOLDEN";

/// `SOURCE_DATE_EPOCH` of every golden build.
const EPOCH: &str = "1700000000";

/// Hash parts of the fake store paths (Nix's base-32 alphabet has no `e`, `o`, `u`, `t`).
const HELLO: &str = "/nix/store/1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r6s-hello-1.0";
const DEP: &str = "/nix/store/zyxwvsrqpnmlkjihgfdcba9876543210-dep-1.0";

/// Compares `bytes` with the golden file `name`, or writes it under [`UPDATE_VAR`]`=1`.
fn check_golden(name: &str, bytes: &[u8]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os(UPDATE_VAR).is_some_and(|v| v == "1") {
        fs::write(&path, bytes)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
        eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
        return;
    }
    let want = fs::read(&path).unwrap_or_else(|err| {
        panic!(
            "cannot read the golden file {}: {err}; `cargo xtask golden` writes it",
            path.display()
        )
    });
    if want != bytes {
        let first = want
            .iter()
            .zip(bytes)
            .position(|(a, b)| a != b)
            .unwrap_or(want.len().min(bytes.len()));
        panic!(
            "the rebuilt {name} ({} bytes) differs from the golden file {} ({} bytes) from \
             byte {first} on. If the change of output is intended, run `cargo xtask golden` \
             and commit the new file.",
            bytes.len(),
            path.display(),
            want.len()
        );
    }
}

/// The base image: one layer with `bin/tool` and `etc/os-release`, `Env` `PATH=/bin`.
fn base(dir: &TestDir) {
    let layer = write_tar(
        &[
            Member::dir("bin/", 0o755),
            Member::file("bin/tool", "#!/bin/sh\necho tool\n", 0o755),
            Member::dir("etc/", 0o755),
            Member::file("etc/os-release", "ID=golden-base\n", 0o644),
        ],
        false,
    );
    BaseImage::new("buildimage-test/golden-base:1")
        .layer(layer)
        .config(json!({
            "architecture": "amd64",
            "config": { "Env": ["PATH=/bin"] },
            "created": "1970-01-01T00:00:01Z",
        }))
        .save(&dir.join("base.tar"));
}

/// The store: `HELLO` (whose `bin/hello` names a file of `DEP`) and `DEP`, read-only, no
/// database, so that buildimage finds the references by scanning.
fn store(dir: &TestDir) -> PathBuf {
    let store = dir.join("store");
    let at = |path: &str| store.join(path.trim_start_matches('/'));
    mkdir(&at(&format!("{HELLO}/bin")), 0o755);
    write(
        &at(&format!("{HELLO}/bin/hello")),
        format!("#!/bin/sh\ncat {DEP}/share/msg.txt\n").as_bytes(),
        0o555,
    );
    mkdir(&at(&format!("{DEP}/share")), 0o755);
    write(&at(&format!("{DEP}/share/msg.txt")), b"hello\n", 0o444);
    for path in [
        format!("{HELLO}/bin"),
        HELLO.to_owned(),
        format!("{DEP}/share"),
        DEP.to_owned(),
    ] {
        chmod(&at(&path), 0o555);
    }
    store
}

/// The `copyToRoot` tree: a program linked from the store, a config file, a private
/// folder.
fn tree(dir: &TestDir) {
    let root = dir.join("root");
    mkdir(&root.join("usr/bin"), 0o755);
    ln_s(format!("{HELLO}/bin/hello"), &root.join("usr/bin/hello"));
    mkdir(&root.join("etc"), 0o755);
    write(&root.join("etc/motd"), b"welcome\n", 0o644);
    mkdir(&root.join("var/lib/app"), 0o750);
    write(&root.join("var/lib/app/state"), b"", 0o600);
    chmod(&root.join("var/lib"), 0o755);
    chmod(&root.join("var"), 0o755);
    chmod(&root.join("usr"), 0o755);
    chmod(&root, 0o755);
}

/// Builds the golden image with `compressor` into `dir/OUT`; returns its bytes.
fn build_image(dir: &TestDir, compressor: &str, out: &str) -> Vec<u8> {
    let spec = dir.spec_named(
        compressor,
        &json!({
            "name": "buildimage-test/golden",
            "tag": "1",
            "fromImage": "base.tar",
            "copyToRoot": "root",
            "architecture": "amd64",
            "compressor": compressor,
            "config": {
                "Cmd": ["/usr/bin/hello"],
                "Env": ["LANG=C.UTF-8"],
                "Labels": { "org.opencontainers.image.title": "golden" },
            },
        }),
    );
    let built = Buildimage::new()
        .cwd(dir.path())
        .tmpdir(&dir.tmp())
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .build(&spec)
        .out(out)
        .store(dir.join("store"))
        .json();
    assert_eq!(built.info["storePaths"], json!([HELLO, DEP]), "the closure");
    dir.assert_tmp_empty();
    built.bytes()
}

#[test]
fn golden_images_are_rebuilt_byte_for_byte_with_every_compressor() {
    let dir = TestDir::new("bi-golden.");
    base(&dir);
    store(&dir);
    tree(&dir);
    let plain = build_image(&dir, "none", "image.tar");
    let image = Image::from_bytes(&plain);
    let names: Vec<String> = image.top_layer().iter().map(Member::name).collect();
    // nixpkgs appends the closure with names without `./` (docs/formats.md §8.6).
    for path in [HELLO, DEP] {
        assert!(
            names.contains(&format!("{}/", &path[1..])),
            "the closure is appended: {names:?}"
        );
    }
    check_golden("image.tar", &plain);
    for (compressor, out) in [("gz", "image.tar.gz"), ("zstd", "image.tar.zst")] {
        let bytes = build_image(&dir, compressor, out);
        assert!(
            decompress(&bytes) == plain,
            "{out} holds the same archive as image.tar"
        );
        check_golden(out, &bytes);
    }
}

/// Creates a device node `path` (`kind` `S_IFCHR` or `S_IFBLK`) with `mode`, whatever the
/// umask.
fn device(path: &Path, kind: SFlag, mode: u32, major: u64, minor: u64) {
    mknod(path, kind, Mode::empty(), makedev(major, minor))
        .unwrap_or_else(|err| panic!("mknod {}: {err}", path.display()));
    chmod(path, mode);
}

/// A tree with every kind of entry: folders with odd modes (setgid, sticky, read-only,
/// private), set-id files, empty and non-empty files, relative, absolute and long symlink
/// targets, a name over 100 bytes below a folder, a name that is not UTF-8, two hard
/// links of one file (which become two files), a fifo, a character and a block device.
/// Modes are set after every child exists, deepest first, so neither the umask nor the
/// order of creation shows.
fn every_kind(root: &Path) {
    let long_dir = "d".repeat(60);
    let long_name = "n".repeat(120);
    mkdir(root, 0o755);
    for dir in ["private", "shared", "sticky", "read-only", &long_dir] {
        mkdir(&root.join(dir), 0o755);
    }
    write(&root.join("empty"), b"", 0o644);
    write(&root.join("private/secret"), b"secret\n", 0o600);
    write(&root.join("read-only/file"), b"read-only\n", 0o444);
    write(&root.join("setuid"), b"#!/bin/sh\n", 0o4755);
    write(&root.join("setgid"), b"#!/bin/sh\n", 0o2711);
    write(&root.join(&long_dir).join(&long_name), b"long\n", 0o640);
    write(
        &root.join(OsStr::from_bytes(b"caf\xe9")),
        b"latin-1\n",
        0o644,
    );
    write(&root.join("shared/one"), b"one inode, two names\n", 0o664);
    fs::hard_link(root.join("shared/one"), root.join("shared/two")).expect("hard link");
    ln_s("private/secret", &root.join("relative-link"));
    ln_s("/nonexistent/target", &root.join("absolute-link"));
    ln_s(format!("{long_dir}/{long_name}"), &root.join("long-link"));
    nix::unistd::mkfifo(&root.join("fifo"), Mode::empty()).expect("mkfifo");
    chmod(&root.join("fifo"), 0o620);
    device(&root.join("null"), SFlag::S_IFCHR, 0o666, 1, 3);
    device(&root.join("loop0"), SFlag::S_IFBLK, 0o660, 7, 0);
    chmod(&root.join("private"), 0o700);
    chmod(&root.join("shared"), 0o2775);
    chmod(&root.join("sticky"), 0o1777);
    chmod(&root.join("read-only"), 0o555);
    chmod(&root.join(&long_dir), 0o751);
}

#[test]
fn golden_layer_with_every_entry_kind_is_rebuilt_byte_for_byte_as_root() {
    require_root("the golden layer holds device nodes, which only root can make");
    let dir = TestDir::new("bi-golden.");
    every_kind(&dir.join("root"));
    let spec = dir.spec(&json!({
        "name": "buildimage-test/every-kind",
        "tag": "1",
        "copyToRoot": "root",
        "architecture": "amd64",
        "compressor": "none",
    }));
    let built = Buildimage::new()
        .cwd(dir.path())
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .build(&spec)
        .out("image.tar")
        .json();
    let image = built.read();
    let kinds: Vec<String> = image.layer_listing();
    for expected in [
        "c 0666 0:0 root/root ./null 1,3",
        "b 0660 0:0 root/root ./loop0 7,0",
        "p 0620 0:0 root/root ./fifo",
        "- 0664 0:0 root/root ./shared/two",
        "d 1777 0:0 root/root ./sticky/",
    ] {
        assert!(
            kinds.iter().any(|line| line == expected),
            "{expected} in the layer:\n{}",
            kinds.join("\n")
        );
    }
    check_golden("every-kind.layer.tar", image.layer_tar());
}
