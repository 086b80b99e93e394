//! Refused layered specs, and the `--json` report, as snapshots (`tests/snapshots/`): a
//! changed message or report shows up as a diff; review it and accept it with
//! `INSTA_UPDATE=always` (or `cargo insta review`).
//!
//! These need no Nix: the store is made by hand, store paths being folders under
//! `DIR/nix/store` whose references a scan finds.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use buildimage_test_support::{
    BaseImage, Buildimage, Member, TestDir, chmod, mkdir, names, snapshot_settings, stderr, write,
    write_tar,
};

use super::{EPOCH, scratch};

/// A hand-made store path: `/nix/store/<32 characters>-hello`, whose program names `DEP`.
const HELLO: &str = "/nix/store/0c7ibw1lqj5mlxzahyhxybxcnh2v0rn7-hello-2.12";
/// What `HELLO` refers to.
const DEP: &str = "/nix/store/1s9wbpvqjbb2xf8b4dlzvzzhsd2fwwbn-hello-dep-1.0";

/// Makes the store of `HELLO` and `DEP` in `root` (read-only, as Nix leaves it).
fn hand_made_store(root: &Path) {
    let at = |path: &str| root.join(path.trim_start_matches('/'));
    for dir in ["nix", "nix/store"] {
        mkdir(&root.join(dir), 0o755);
    }
    mkdir(&at(DEP), 0o755);
    mkdir(&at(&format!("{DEP}/lib")), 0o555);
    write(&at(&format!("{DEP}/lib/dep.txt")), b"dep\n", 0o444);
    mkdir(&at(HELLO), 0o755);
    mkdir(&at(&format!("{HELLO}/bin")), 0o555);
    let program = format!("#!/bin/sh\ncat {DEP}/lib/dep.txt\n");
    write(
        &at(&format!("{HELLO}/bin/hello")),
        program.as_bytes(),
        0o555,
    );
    for path in [DEP, HELLO] {
        chmod(&at(path), 0o555);
    }
}

/// A folder with the hand-made store at `store/`, a folder `dir` and a two-layer base
/// image `base2.tar`.
fn case_dir() -> TestDir {
    let dir = scratch();
    hand_made_store(&dir.join("store"));
    mkdir(&dir.join("dir"), 0o755);
    let layer = |name: &str| write_tar(&[Member::file(name, b"x", 0o644)], false);
    BaseImage::new("base:2")
        .layer(layer("./a"))
        .layer(layer("./b"))
        .save(&dir.join("base2.tar"));
    dir
}

/// Runs `buildimage SUBCOMMAND spec.json --store store` (`-o out.tar.gz` for
/// `build-layered`) with `spec_text`; asserts that it fails, prints nothing on standard
/// output and leaves no file, and returns its standard error with the folder as `[DIR]`.
fn fails(subcommand: &str, spec_text: &str) -> String {
    let dir = case_dir();
    let spec = dir.spec_text(spec_text);
    let mut cmd = Buildimage::new();
    cmd.cwd(dir.path())
        .tmpdir(&dir.tmp())
        .arg(subcommand)
        .arg(&spec)
        .store("store");
    if subcommand == "build-layered" {
        cmd.out("out.tar.gz");
    }
    let output = cmd.run_err();
    assert_eq!(
        names(dir.path()),
        ["base2.tar", "dir", "spec.json", "store", "tmp"],
        "no output file for {spec_text}"
    );
    dir.assert_tmp_empty();
    stderr(&output).replace(&*dir.path().to_string_lossy(), "[DIR]")
}

#[test]
fn errors_layered() {
    let cases = [
        ("build-layered", r#"{"name": "x", "copyToRoot": "dir"}"#),
        ("build-layered", r#"{"name": "x", "runAsRoot": "true"}"#),
        ("build-layered", r#"{"name": "x", "contens": []}"#),
        ("build-layered", r#"{"name": "x", "maxLayers": 1}"#),
        ("build-layered", r#"{"name": "x", "maxLayers": "3"}"#),
        (
            "build-layered",
            r#"{"name": "x", "includeStorePaths": "yes"}"#,
        ),
        ("build-layered", r#"{"name": "x", "contents": "dir"}"#),
        (
            "build-layered",
            r#"{"name": "x", "contents": ["/nix/store/00000000000000000000000000000000-gone"]}"#,
        ),
        (
            "build-layered",
            r#"{"name": "x", "fromImage": "base2.tar", "maxLayers": 3}"#,
        ),
        (
            "build-layered",
            r#"{"name": "x", "layeringPipeline": [["frob"]]}"#,
        ),
        (
            "build-layered",
            r#"{"name": "x", "layeringPipeline": [["limit_layers", 0]]}"#,
        ),
        (
            "build-layered",
            r#"{"name": "x", "layeringPipeline": "popularity_contest"}"#,
        ),
        (
            "build-layered",
            r#"{"name": "x", "fakeRootCommands": "echo it went wrong >&2; exit 3"}"#,
        ),
        (
            "build-layered",
            r#"{"name": "x", "enableFakechroot": true, "fakeRootCommands": "true"}"#,
        ),
        ("stream-layered", r#"{"name": "x", "compressor": "gz"}"#),
        (
            "stream-layered",
            r#"{"name": "x", "fromImage": "missing.tar"}"#,
        ),
    ];
    let mut text = String::new();
    for (subcommand, spec) in cases {
        let _ = writeln!(text, "{subcommand}: {spec}");
        for line in fails(subcommand, spec).lines() {
            let _ = writeln!(text, "stderr: {line}");
        }
        text.push('\n');
    }
    snapshot_settings().bind(|| insta::assert_snapshot!("errors_layered", text));
}

#[test]
fn json_report_layered() {
    let dir = case_dir();
    let spec = dir.spec(&json!({
        "name": "hello", "tag": "t", "compressor": "none",
        "fromImage": "base2.tar",
        "contents": [HELLO],
        "config": { "Cmd": ["/bin/hello"] },
        "extraCommands": "mkdir -p etc && echo hello > etc/motd",
    }));
    let built = Buildimage::new()
        .cwd(dir.path())
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .build_layered(&spec)
        .out("hello.tar")
        .store("store")
        .json();
    snapshot_settings().bind(|| {
        insta::assert_json_snapshot!("json_report_layered", built.info, { ".outPath" => "[outPath]" });
    });
}
