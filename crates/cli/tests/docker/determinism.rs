//! Identical inputs give identical archives, however the source tree was made and
//! whatever the caller's umask, time zone, locale and number of cores; only
//! `SOURCE_DATE_EPOCH` moves the tar times, and it leaves `created` alone.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use buildimage_test_support::{
    APPLETS, Buildimage, Built, DEFAULT_CREATED, EPOCH_1980, busybox_root, chmod, listing, member,
    mkdir, require_tool, run_ok, static_busybox, write,
};

use super::{build, test_dir, write_spec};

/// A file name long enough for a GNU `././@LongLink` header: 127 bytes with `./etc/`.
const LONG_NAME: &str = "a-file-name-long-enough-that-gnu-tar-needs-a-long-link-header-\
                         to-store-it-in-the-layer-tar-whose-name-field-has-100-bytes";
const MOTD: &str = "welcome";
const SHARED: &str = "shared content";
const SECRET: &str = "secret";
const SUID: &str = "echo suid";

/// Runs in the layer root of both builds: what it creates gets the build's modes (umask
/// 022) whatever the caller's umask.
const EXTRA_COMMANDS: &str =
    "mkdir -p var/log && echo started > var/log/boot && ln -s ../../etc/motd var/log/motd";

/// Tree A, made in Rust in one order, with the current time as every mtime: a busybox
/// root plus `bin/suid` (4755), `data/one` and `data/two` as two links of one file
/// (0640), `data/fifo` (0620), `etc/motd`, `etc/<LONG_NAME>`, `etc/dangling`,
/// `private/secret` (0700, 0600) and `tmp/` (1777).
fn tree_a(root: &Path) {
    busybox_root(root, &APPLETS);
    write(
        &root.join("bin/suid"),
        format!("{SUID}\n").as_bytes(),
        0o4755,
    );
    mkdir(&root.join("data"), 0o755);
    write(
        &root.join("data/one"),
        format!("{SHARED}\n").as_bytes(),
        0o640,
    );
    std::fs::hard_link(root.join("data/one"), root.join("data/two")).expect("hard link");
    require_tool("mkfifo", "coreutils");
    run_ok(Command::new("mkfifo").arg(root.join("data/fifo")));
    chmod(&root.join("data/fifo"), 0o620);
    mkdir(&root.join("etc"), 0o755);
    write(
        &root.join("etc/motd"),
        format!("{MOTD}\n").as_bytes(),
        0o644,
    );
    write(&root.join("etc").join(LONG_NAME), b"long\n", 0o644);
    symlink("/nonexistent", root.join("etc/dangling")).expect("symlink");
    mkdir(&root.join("private"), 0o700);
    write(
        &root.join("private/secret"),
        format!("{SECRET}\n").as_bytes(),
        0o600,
    );
    mkdir(&root.join("tmp"), 0o1777);
}

/// Tree B, the same content made by a shell with umask 077, in the reverse order, with
/// `data/two` a separate copy instead of a hard link, and every mtime set to 2001-09-09.
fn tree_b(root: &Path) {
    let busybox = root.with_file_name("busybox.copy");
    std::fs::write(&busybox, static_busybox()).expect("write the busybox copy");
    let applets: Vec<&str> = APPLETS.iter().rev().copied().collect();
    let script = format!(
        r#"set -e
umask 077
mkdir "$1"
cd "$1"
mkdir tmp private etc data bin
echo {SECRET} > private/secret
ln -s /nonexistent etc/dangling
echo long > etc/{LONG_NAME}
echo {MOTD} > etc/motd
mkfifo data/fifo
echo {SHARED} > data/two
echo {SHARED} > data/one
for applet in {applets}; do ln -s busybox bin/$applet; done
echo {SUID} > bin/suid
cp "$2" bin/busybox
chmod 0755 . bin data etc bin/busybox
chmod 0700 private
chmod 1777 tmp
chmod 0600 private/secret
chmod 0644 etc/motd etc/{LONG_NAME}
chmod 0640 data/one data/two
chmod 0620 data/fifo
chmod 4755 bin/suid
find . -exec touch -h -d @1000000000 {{}} +
"#,
        applets = applets.join(" "),
    );
    run_ok(
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("tree-b")
            .arg(root)
            .arg(&busybox),
    );
}

/// A listing without the link-count column: the trees differ there on purpose.
fn listing_without_links(root: &Path) -> Vec<String> {
    listing(root)
        .iter()
        .map(|line| {
            line.split(' ')
                .enumerate()
                .filter(|&(column, _)| column != 2)
                .map(|(_, field)| field)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn spec(compressor: &str) -> Value {
    json!({
        "name": "buildimage-test/determinism",
        "tag": "latest",
        "copyToRoot": "root",
        "extraCommands": EXTRA_COMMANDS,
        "config": { "Cmd": ["/bin/cat", "/etc/motd"], "Env": ["PATH=/bin"] },
        "compressor": compressor,
    })
}

/// Builds from tree A the plain way: umask of the test process, `TZ=UTC`, `LC_ALL=C`,
/// all cores.
fn build_a(tree: &Path, compressor: &str, out: &Path) -> Built {
    let spec = write_spec(tree, &spec(compressor));
    Buildimage::new()
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .build(spec)
        .out(out)
        .json()
}

/// Builds from tree B under umask 077, another time zone and locale, on one core
/// (`taskset -c 0`), with a spec path relative to the current folder.
fn build_b(tree: &Path, compressor: &str, out: &Path) -> Built {
    write_spec(tree, &spec(compressor));
    require_tool("taskset", "util-linux");
    Buildimage::new()
        .env("TZ", "NZST-12NZDT")
        .env("LC_ALL", "C.UTF-8")
        .cwd(tree)
        .umask("077")
        .through(["taskset", "-c", "0"])
        .build("spec.json")
        .out(out)
        .json()
}

/// Panics, naming the first differing byte, unless `a` and `b` hold the same bytes.
fn assert_same_bytes(a: &Built, b: &Built, what: &str) {
    let (left, right) = (a.bytes(), b.bytes());
    if left != right {
        let first = left
            .iter()
            .zip(&right)
            .position(|(x, y)| x != y)
            .unwrap_or(left.len().min(right.len()));
        panic!(
            "{what}: {} ({} bytes) and {} ({} bytes) differ from byte {first}",
            a.archive.display(),
            left.len(),
            b.archive.display(),
            right.len()
        );
    }
}

#[test]
fn differently_created_source_trees_give_byte_identical_archives_for_every_compressor() {
    let dir = test_dir();
    let (a, b) = (dir.join("a"), dir.join("b"));
    mkdir(&a, 0o755);
    mkdir(&b, 0o755);
    tree_a(&a.join("root"));
    tree_b(&b.join("root"));
    // The trees hold the same content; anything else here is a fault of this test.
    assert_eq!(
        listing_without_links(&a.join("root")),
        listing_without_links(&b.join("root"))
    );

    for (compressor, file) in [
        ("none", "image.tar"),
        ("gz", "image.tar.gz"),
        ("zstd", "image.tar.zst"),
    ] {
        let built_a = build_a(&a, compressor, &a.join(file));
        let built_b = build_b(&b, compressor, &b.join(file));
        assert_same_bytes(&built_a, &built_b, compressor);
        for key in ["imageTag", "configDigest", "layer"] {
            assert_eq!(built_a.info[key], built_b.info[key], "{compressor}: {key}");
        }
    }

    // The hard link became two regular files; what extraCommands made has mode 0755/0644
    // although the caller's umask was 077.
    let layer = build_a(&a, "none", &a.join("check.tar")).read().layer();
    let mode_of = |path: &str| {
        let entry = member(&layer, path);
        (entry.kind.as_byte(), entry.mode)
    };
    assert_eq!(mode_of("./data/one"), (b'0', 0o640));
    assert_eq!(mode_of("./data/two"), (b'0', 0o640));
    assert_eq!(mode_of("./var/log/"), (b'5', 0o755));
    assert_eq!(mode_of("./var/log/boot"), (b'0', 0o644));
    let long_path = format!("./etc/{LONG_NAME}");
    assert!(long_path.len() > 100, "{} bytes", long_path.len());
    assert_eq!(mode_of(&long_path), (b'0', 0o644));
}

#[test]
fn source_date_epoch_sets_every_tar_mtime_but_not_created() {
    let dir = test_dir();
    let tree = dir.join("tree");
    mkdir(&tree, 0o755);
    busybox_root(&tree.join("root"), &APPLETS);
    let spec = write_spec(&tree, &spec("none"));
    let default = build(&spec, &dir.join("default.tar"));
    let epoch = Buildimage::new()
        .env("SOURCE_DATE_EPOCH", "1234567890")
        .build(&spec)
        .out(dir.join("epoch.tar"))
        .json();

    for (built, mtime) in [(&default, EPOCH_1980), (&epoch, 1_234_567_890)] {
        let archive = built.read();
        let layer = archive.layer();
        // Copied files and what extraCommands made alike.
        assert!(layer.iter().any(|entry| entry.name == b"./var/log/boot"));
        for entry in layer.iter().chain(&archive.members) {
            assert_eq!(entry.mtime, mtime, "{}", entry.name());
        }
        let config = archive.config();
        assert_eq!(config["created"], DEFAULT_CREATED);
        assert_eq!(config["history"], json!([{ "created": DEFAULT_CREATED }]));
    }
    assert_ne!(
        default.info["layer"]["diffId"], epoch.info["layer"]["diffId"],
        "the layer's mtimes changed"
    );
}
