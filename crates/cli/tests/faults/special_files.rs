//! A source tree with every odd thing a file system holds, packed and read back by
//! `skopeo copy` + `umoci unpack` ([`buildimage_test_support::unpack_oci`]): what comes out must be
//! what went in, as the README says it is packed (sockets skipped with a warning, hard
//! links as separate files, symlinks kept as they are, the root made `ug+w`).
//!
//! Names of 255 bytes, paths over 100 and over 255 bytes (GNU long names), link targets
//! over 100 bytes, names that are not UTF-8 or hold a newline, quotes and backslashes;
//! setuid, setgid and sticky bits; fifos, character and block devices, a socket; hard
//! links; absolute, dangling and looping symlinks.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, major, makedev, minor, mknod};
use serde_json::json;

use buildimage_test_support::{
    Buildimage, chmod, kind_letter, ln_s, mkdir, require_root, sha256_hex, stderr, tree_lines,
    unpack_oci, write,
};

use super::test_dir;

/// `root/` followed by raw name bytes.
fn at(root: &Path, name: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(name))
}

/// Fills `root` with the odd tree; returns the socket's listener, which must live until
/// the build has run (the socket file stays either way).
fn odd_tree(root: &Path) -> UnixListener {
    mkdir(root, 0o755);
    // Names and paths.
    write(&at(root, &[b'n'; 255]), b"255 bytes of name", 0o644);
    let over_100 = root.join("p".repeat(60));
    mkdir(&over_100, 0o755);
    write(&over_100.join("q".repeat(60)), b"path over 100", 0o644);
    let over_255 = root
        .join("d".repeat(100))
        .join("e".repeat(100))
        .join("f".repeat(100));
    mkdir(&over_255, 0o755);
    write(&over_255.join("g".repeat(200)), b"path over 255", 0o644);
    write(&at(root, b"caf\xe9"), b"latin-1", 0o644);
    let not_utf8_dir = at(root, b"\xff\xfe-dir");
    mkdir(&not_utf8_dir, 0o755);
    write(
        &at(&not_utf8_dir, b"\x80inside"),
        b"below a non-UTF-8 folder",
        0o644,
    );
    write(&at(root, b"new\nline"), b"newline in the name", 0o644);
    write(
        &at(root, b"back\\slash \"double\" 'single' sp ace"),
        b"quotes",
        0o644,
    );
    write(&root.join("empty"), b"", 0o600);
    // Modes.
    write(&root.join("setuid"), b"#!/bin/sh\n", 0o4755);
    write(&root.join("setgid"), b"#!/bin/sh\n", 0o2755);
    write(&root.join("all-bits"), b"every mode bit", 0o7777);
    mkdir(&root.join("setgid-dir"), 0o2775);
    write(&root.join("setgid-dir/inside"), b"x", 0o664);
    mkdir(&root.join("sticky"), 0o1777);
    mkdir(&root.join("read-only"), 0o755);
    write(&root.join("read-only/file"), b"read only", 0o444);
    chmod(&root.join("read-only"), 0o555);
    // Special files.
    nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o640)).expect("mkfifo");
    chmod(&root.join("fifo"), 0o640);
    mknod(
        &root.join("char-null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .expect("mknod c 1 3");
    chmod(&root.join("char-null"), 0o666);
    mknod(
        &root.join("block-loop"),
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o660),
        makedev(7, 200),
    )
    .expect("mknod b 7 200");
    chmod(&root.join("block-loop"), 0o660);
    let listener = UnixListener::bind(root.join("socket")).expect("bind a unix socket");
    // Links.
    write(&root.join("hard-one"), b"one inode, two names", 0o640);
    fs::hard_link(root.join("hard-one"), root.join("hard-two")).expect("hard link");
    ln_s("/etc/passwd", &root.join("absolute"));
    ln_s("no/such/file", &root.join("dangling"));
    ln_s("self", &root.join("self"));
    ln_s("pong", &root.join("ping"));
    ln_s("ping", &root.join("pong"));
    ln_s("t".repeat(300), &root.join("long-target"));
    listener
}

/// One line per path below `root`, sorted by raw path bytes: type and permission bits,
/// owner, and what makes the path what it is (size and SHA-256 of a file, the device
/// numbers, the link target). Modification times are not compared: the layer fixes them.
fn describe(root: &Path) -> Vec<String> {
    tree_lines(root, |rel, path, meta| {
        let kind = kind_letter(meta.file_type());
        let mut line = format!(
            "{kind} {:04o} {}:{} {}",
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid(),
            rel.as_os_str().as_bytes().escape_ascii()
        );
        match kind {
            '-' => {
                let data =
                    fs::read(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
                let _ = write!(line, " size={} sha256={}", data.len(), sha256_hex(&data));
            }
            'l' => {
                let target = fs::read_link(path).expect("readlink");
                let _ = write!(line, " -> {}", target.as_os_str().as_bytes().escape_ascii());
            }
            'c' | 'b' => {
                let _ = write!(line, " dev={},{}", major(meta.rdev()), minor(meta.rdev()));
            }
            _ => {}
        }
        line
    })
}

#[test]
fn odd_source_tree_is_read_back_identically_by_umoci() {
    require_root("it creates device nodes and umoci keeps owners only as root");
    let scratch = test_dir();
    let root = scratch.join("root");
    let _listener = odd_tree(&root);
    let (stderr, image) = {
        let out = scratch.join("image.tar");
        let output = Buildimage::new()
            .cwd(scratch.path())
            .build(scratch.spec(&json!({
                "name": "odd", "tag": "t", "copyToRoot": "root", "compressor": "none",
            })))
            .out(&out)
            .run_ok();
        (stderr(&output), out)
    };
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("warning:") && l.contains("socket")),
        "a warning for the socket: {stderr}"
    );

    // What the README promises: the socket skipped, the root ug+w, the rest as it is.
    let expected: Vec<String> = describe(&root)
        .into_iter()
        .filter(|line| !line.starts_with("s "))
        .map(|line| match line.strip_prefix("d 0755 0:0 .") {
            Some("") => "d 0775 0:0 .".to_owned(),
            _ => line,
        })
        .collect();
    assert!(
        expected
            .iter()
            .any(|l| l.starts_with("c 0666 0:0 ./char-null"))
    );

    let unpacked = unpack_oci(&image);
    let got = describe(&unpacked.rootfs());
    let missing: Vec<&String> = expected.iter().filter(|l| !got.contains(l)).collect();
    let extra: Vec<&String> = got.iter().filter(|l| !expected.contains(l)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "umoci unpack differs from the source\nmissing from the image:\n{}\nnot in the source:\n{}",
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        extra
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Hard links come out as two files: two inodes with a link count of one each.
    let one = fs::metadata(unpacked.rootfs().join("hard-one")).expect("stat hard-one");
    let two = fs::metadata(unpacked.rootfs().join("hard-two")).expect("stat hard-two");
    assert_ne!(
        one.ino(),
        two.ino(),
        "hard links are stored as separate files"
    );
    assert_eq!((one.nlink(), two.nlink()), (1, 1));
}
