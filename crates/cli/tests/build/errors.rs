//! Failures end to end (docs/formats.md §13.1): a non-zero exit, nothing on standard
//! output, no output file, and one `error:` line that names the key or path at fault.
//!
//! Every message a bad spec can get is pinned down in full by a snapshot, one per group
//! (`tests/snapshots/errors_*.snap`), each listing the spec, then what `buildimage build`
//! printed on standard error, with the test's folder shown as `[DIR]`. A message that
//! changes shows up there as a diff; review it and, if it is right, accept it with
//! `INSTA_UPDATE=always` (or `cargo insta review`).

use std::fmt::Write as _;

use buildimage_test_support::{Buildimage, Image, mkdir, names, snapshot_settings, stderr, write};
use serde_json::json;

use super::test_dir;

/// Builds `spec_text` (with the variables `env`) in a fresh folder that also holds a
/// folder `dir` and a file `file`; asserts that it fails, prints nothing on standard
/// output and leaves no output file, and returns its standard error with the folder's
/// path replaced by `[DIR]`.
fn fails(spec_text: &str, env: &[(&str, &str)]) -> String {
    let dir = test_dir();
    mkdir(&dir.join("dir"), 0o755);
    write(&dir.join("file"), b"not a folder", 0o644);
    let spec_path = dir.spec_text(spec_text);
    let mut cmd = Buildimage::new();
    cmd.cwd(dir.path()).build(&spec_path).out("out.tar.gz");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let output = cmd.run_err();
    let stderr = stderr(&output);
    assert!(
        stderr.lines().any(|line| line.starts_with("error: ")),
        "no error line for {spec_text}:\n{stderr}"
    );
    assert_eq!(
        names(dir.path()),
        ["dir", "file", "spec.json"],
        "no output file for {spec_text}"
    );
    stderr.replace(&*dir.path().to_string_lossy(), "[DIR]")
}

/// One snapshot entry per case: the spec (newlines shown as `\n`, variables in front),
/// then every line buildimage printed on standard error.
fn listing(cases: &[(&str, &[(&str, &str)])]) -> String {
    let mut text = String::new();
    for (spec_text, env) in cases {
        let _ = write!(text, "spec:   ");
        for (key, value) in *env {
            let _ = write!(text, "{key}={value} ");
        }
        let _ = writeln!(text, "{}", spec_text.replace('\n', "\\n"));
        for line in fails(spec_text, env).lines() {
            let _ = writeln!(text, "stderr: {line}");
        }
        text.push('\n');
    }
    text
}

/// Specs without variables.
fn plain<'a>(specs: &[&'a str]) -> Vec<(&'a str, &'static [(&'static str, &'static str)])> {
    specs.iter().map(|spec| (*spec, &[][..])).collect()
}

/// Snapshots `listing(cases)` as `tests/snapshots/NAME.snap`.
fn assert_messages(name: &str, cases: &[(&str, &[(&str, &str)])]) {
    snapshot(name, &listing(cases));
}

/// Compares `text` with `tests/snapshots/NAME.snap`.
fn snapshot(name: &str, text: &str) {
    snapshot_settings().bind(|| {
        insta::assert_snapshot!(name, text);
    });
}

#[test]
fn errors_json_syntax_and_duplicates() {
    assert_messages(
        "errors_json_syntax_and_duplicates",
        &plain(&[
            "{\"name\": \"x\",",
            "name = \"x\"",
            "{\"name\": \"x\",\n  }",
            "",
            r#"{"name": "x"} {}"#,
            "{\"name\": \"x\",\n \"tag\": \"a\",\n \"tag\": \"b\"}",
            r#"{"name": "x", "config": {"Labels": {"a": "1", "a": "2"}}}"#,
            r#"{"name": "x", "copyToRoot": [{"k": 1, "k": 2}]}"#,
            r#"["name"]"#,
            "[]",
            "\"x\"",
            "null",
            "{}",
            r#"{"tag": "t"}"#,
        ]),
    );
}

#[test]
fn errors_unknown_keys_and_hints() {
    assert_messages(
        "errors_unknown_keys_and_hints",
        &plain(&[
            r#"{"name": "x", "copyToRot": "dir"}"#,
            r#"{"name": "x", "copytoroot": "dir"}"#,
            r#"{"name": "x", "extraCommand": ""}"#,
            r#"{"name": "x", "tags": "a"}"#,
            r#"{"name": "x", "includeNixDb": true}"#,
            r#"{"nmae": "x"}"#,
            r#"{"name": "x", "Cmd": ["sh"]}"#,
            r#"{"name": "x", "Env": []}"#,
            r#"{"name": "x", "maxLayers": 100}"#,
            r#"{"name": "x", "frobnicate": 1}"#,
        ]),
    );
}

#[test]
fn errors_wrong_types_per_key() {
    let long = format!(
        r#"{{"name": "x", "keepContentsDirlinks": "{}"}}"#,
        "x".repeat(100)
    );
    assert_messages(
        "errors_wrong_types_per_key",
        &plain(&[
            r#"{"name": ""}"#,
            r#"{"name": null}"#,
            r#"{"name": 3}"#,
            r#"{"name": "x", "tag": 1}"#,
            r#"{"name": "x", "fromImage": ["a"]}"#,
            r#"{"name": "x", "fromImageName": false}"#,
            r#"{"name": "x", "fromImageTag": {}}"#,
            r#"{"name": "x", "copyToRoot": {"a": 1}}"#,
            r#"{"name": "x", "copyToRoot": ["dir", 3]}"#,
            r#"{"name": "x", "copyToRoot": [["dir"]]}"#,
            r#"{"name": "x", "keepContentsDirlinks": "yes"}"#,
            &long,
            r#"{"name": "x", "config": ["Cmd"]}"#,
            r#"{"name": "x", "config": "{}"}"#,
            r#"{"name": "x", "architecture": ""}"#,
            r#"{"name": "x", "extraCommands": ["ls"]}"#,
            r#"{"name": "x", "uid": "0"}"#,
            r#"{"name": "x", "runAsRoot": 1}"#,
            r#"{"name": "x", "runAsRootShell": true}"#,
            r#"{"name": "x", "inheritConfig": 1}"#,
            r#"{"name": "x", "closureInfo": 7}"#,
            r#"{"name": "x", "diskSize": -1}"#,
            r#"{"name": "x", "buildVMMemorySize": 512.5}"#,
            r#"{"name": "x", "created": 0}"#,
            r#"{"name": "x", "compressor": 1}"#,
            r#"{"name": "x", "includeNixDB": "yes"}"#,
            r#"{"name": "x", "meta": []}"#,
            r#"{"name": "x", "contents": 1}"#,
            r#"{"name": "x", "contents": ["dir", true]}"#,
        ]),
    );
}

#[test]
fn errors_values_compressor_ids_created_names_and_tags() {
    let long_name = format!(r#"{{"name": "{}"}}"#, "a".repeat(256));
    let long_tag = format!(r#"{{"name": "x", "tag": "{}"}}"#, "t".repeat(129));
    let mut cases = plain(&[
        r#"{"name": "Some/Thing", "compressor": "xz"}"#,
        r#"{"name": "x", "compressor": "GZ"}"#,
        r#"{"name": "Both", "contents": "dir", "copyToRoot": "dir"}"#,
        r#"{"name": "x", "uid": -1}"#,
        r#"{"name": "x", "gid": 1.5}"#,
        r#"{"name": "x", "uid": 1000.0}"#,
        r#"{"name": "x", "uid": 1e3}"#,
        r#"{"name": "x", "gid": 4294967296}"#,
        r#"{"name": "my image", "tag": "t"}"#,
        r#"{"name": "-a"}"#,
        r#"{"name": "a_"}"#,
        r#"{"name": "a//b"}"#,
        r#"{"name": "a/"}"#,
        r#"{"name": "a___b"}"#,
        r#"{"name": "a.-b"}"#,
        r#"{"name": "a..b"}"#,
        &long_name,
        r#"{"name": "x", "tag": "v1:latest"}"#,
        r#"{"name": "x", "tag": ""}"#,
        r#"{"name": "x", "tag": ".a"}"#,
        r#"{"name": "x", "tag": "-a"}"#,
        r#"{"name": "x", "tag": "a b"}"#,
        &long_tag,
        r#"{"name": "x", "inheritConfig": true}"#,
    ]);
    let created: Vec<String> = [
        "",
        "Now",
        "yesterday",
        "2024-01-01",
        "2024-01-01 00:00:00Z",
        "2024-01-01t00:00:00Z",
        "2024-1-01T00:00:00Z",
        "2024-01-01T00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-00-01T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2024-04-31T00:00:00Z",
        "2024-01-00T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:60:00Z",
        "2016-12-31T23:59:60Z",
        "2024-01-01T00:00:00",
        "2024-01-01T00:00:00z",
        "2024-01-01T00:00:00.Z",
        "2024-01-01T00:00:00,5Z",
        "2024-01-01T00:00:00+0100",
        "2024-01-01T00:00:00ZZ",
        "2024-01-01T00:00:00+24:00",
        "2024-01-01T00:00:00-01:60",
        "2024-01-01T00:00:00\u{e9}",
        "\u{ff12}024-01-01T00:00:00Z",
    ]
    .iter()
    .map(|created| json!({ "name": "x", "created": created }).to_string())
    .collect();
    cases.extend(created.iter().map(|spec| (spec.as_str(), &[][..])));
    let valid = r#"{"name": "x", "tag": "t"}"#;
    cases.extend([
        (valid, &[("SOURCE_DATE_EPOCH", "soon")][..]),
        (valid, &[("SOURCE_DATE_EPOCH", "-1")][..]),
        (valid, &[("SOURCE_DATE_EPOCH", "1.5")][..]),
    ]);
    assert_messages(
        "errors_values_compressor_ids_created_names_and_tags",
        &cases,
    );
}

#[test]
fn errors_paths_and_sources() {
    let messages = listing(&plain(&[
        r#"{"name": "x", "fromImage": ""}"#,
        r#"{"name": "x", "copyToRoot": ["dir", ""]}"#,
        r#"{"name": "x", "copyToRoot": ""}"#,
        r#"{"name": "x", "closureInfo": "a\u0000b"}"#,
        r#"{"name": "x", "copyToRoot": ["dir", "does-not-exist"]}"#,
        r#"{"name": "x", "copyToRoot": "does-not-exist"}"#,
        r#"{"name": "x", "copyToRoot": ["dir", "file"]}"#,
        r#"{"name": "x", "fromImage": "file"}"#,
        r#"{"name": "x", "fromImage": "missing.tar"}"#,
        r#"{"name": "x", "runAsRoot": "touch /x"}"#,
    ]));
    // A missing source's cause is given once, not repeated by its context.
    let missing: Vec<&str> = messages
        .split("\n\n")
        .filter(|b| b.contains("does-not-exist"))
        .collect();
    assert_eq!(
        missing.len(),
        2,
        "the two missing-source cases:\n{messages}"
    );
    for block in missing {
        assert_eq!(
            block.matches("No such file or directory").count(),
            1,
            "the OS error is repeated:\n{block}"
        );
    }
    snapshot("errors_paths_and_sources", &messages);
}

#[test]
fn contents_alone_builds_with_the_deprecation_warning() {
    let dir = test_dir();
    let root = dir.join("root");
    mkdir(&root, 0o755);
    write(&root.join("f"), b"from contents", 0o644);
    let spec_path = dir.spec(&json!({ "name": "Old", "tag": "t", "contents": ["root"] }));
    let output = Buildimage::new()
        .cwd(dir.path())
        .build(&spec_path)
        .out("image.tar.gz")
        .run_ok();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "warning: in docker image Old: The contents parameter is deprecated. Change to \
             copyToRoot if the contents are designed to be copied to the root filesystem, such \
             as when you use `buildEnv` or similar between contents and your packages. Use \
             copyToRoot = buildEnv { ... }; or similar if you intend to add packages to /bin."
        ),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
    let image = Image::open(&dir.join("image.tar.gz"));
    assert_eq!(image.layer_file("./f"), b"from contents");
}
