//! Failures end to end: a non-zero exit, a message that names the key or path at fault,
//! nothing on standard output and no output file.

use serde_json::json;

use super::{Image, Scratch, buildimage, mkdir, names, run_ok, write};

/// Builds `spec_text` in a fresh scratch folder that also holds a folder `dir` and a
/// file `file`; asserts failure, an error line containing every one of `expected`, and
/// that no file appeared. Returns standard error.
fn fails(spec_text: &str, env: &[(&str, &str)], expected: &[&str]) -> String {
    let scratch = Scratch::new();
    mkdir(&scratch.join("dir"), 0o755);
    write(&scratch.join("file"), b"not a folder", 0o644);
    let spec_path = scratch.spec_text(spec_text);
    let mut cmd = buildimage(scratch.path());
    cmd.arg("build").arg(&spec_path).arg("-o").arg("out.tar.gz");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let output = cmd.output().expect("start buildimage");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "spec {spec_text} should fail:\n{stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let error = stderr
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line for {spec_text}:\n{stderr}"));
    for part in expected {
        assert!(
            error.contains(part),
            "the error for {spec_text} should contain {part:?}:\n{stderr}"
        );
    }
    assert_eq!(
        names(scratch.path()),
        ["dir", "file", "spec.json"],
        "no output file for {spec_text}"
    );
    stderr
}

#[test]
fn spec_that_is_not_json_is_rejected() {
    fails("{\"name\": \"x\",", &[], &["not valid JSON", "line 1"]);
    fails("name = \"x\"", &[], &["not valid JSON"]);
    fails("[\"name\"]", &[], &["JSON object", "a list"]);
}

#[test]
fn spec_without_name_is_rejected() {
    fails(r#"{"tag": "t"}"#, &[], &["`name`"]);
}

#[test]
fn unknown_key_is_rejected_with_a_suggestion() {
    fails(
        r#"{"name": "x", "copyToRot": "dir"}"#,
        &[],
        &["Unknown key `copyToRot`", "did you mean `copyToRoot`"],
    );
    fails(
        r#"{"name": "x", "Cmd": ["sh"]}"#,
        &[],
        &["Unknown key `Cmd`", "inside `config`"],
    );
}

#[test]
fn value_of_the_wrong_type_names_the_key_and_what_was_expected() {
    fails(
        r#"{"name": "x", "keepContentsDirlinks": "yes"}"#,
        &[],
        &["`keepContentsDirlinks`", "expected", "\"yes\""],
    );
    fails(
        r#"{"name": "x", "config": ["Cmd"]}"#,
        &[],
        &["`config`", "expected", "an object"],
    );
    fails(
        r#"{"name": "x", "copyToRoot": ["dir", 3]}"#,
        &[],
        &["`copyToRoot`[1]", "expected a path string"],
    );
}

#[test]
fn unknown_compressor_uses_the_nixpkgs_wording() {
    fails(
        r#"{"name": "Some/Thing", "compressor": "xz"}"#,
        &[],
        &["in docker image Some/Thing: compressor must be one of: [gz none zstd]"],
    );
}

#[test]
fn negative_uid_is_rejected() {
    fails(r#"{"name": "x", "uid": -1}"#, &[], &["`uid`", "-1"]);
    fails(
        r#"{"name": "x", "gid": 4294967296}"#,
        &[],
        &["`gid`", "4294967296"],
    );
}

#[test]
fn malformed_created_is_rejected() {
    fails(
        r#"{"name": "x", "created": "2024-13-01T00:00:00Z"}"#,
        &[],
        &["`created`", "2024-13-01T00:00:00Z", "month 13"],
    );
    fails(
        r#"{"name": "x", "created": "yesterday"}"#,
        &[],
        &["`created`", "\"yesterday\""],
    );
}

#[test]
fn invalid_image_name_is_rejected() {
    fails(
        r#"{"name": "my image", "tag": "t"}"#,
        &[],
        &["Invalid image name", "\"my image\""],
    );
}

#[test]
fn invalid_tag_is_rejected() {
    fails(
        r#"{"name": "x", "tag": "v1:latest"}"#,
        &[],
        &["Invalid tag", "\"v1:latest\""],
    );
    fails(
        r#"{"name": "x", "tag": ""}"#,
        &[],
        &["Invalid tag", "empty"],
    );
}

#[test]
fn missing_copy_to_root_path_is_named() {
    fails(
        r#"{"name": "x", "copyToRoot": ["dir", "does-not-exist"]}"#,
        &[],
        &[
            "`copyToRoot`",
            "does-not-exist",
            "No such file or directory",
        ],
    );
}

#[test]
fn missing_copy_to_root_error_states_its_cause_once() {
    let stderr = fails(
        r#"{"name": "x", "copyToRoot": "does-not-exist"}"#,
        &[],
        &["does-not-exist"],
    );
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "the OS error is repeated:\n{stderr}"
    );
}

#[test]
fn copy_to_root_item_that_is_a_file_is_rejected() {
    fails(
        r#"{"name": "x", "copyToRoot": ["dir", "file"]}"#,
        &[],
        &[
            "`copyToRoot`",
            "file",
            "expected a directory, found a regular file",
        ],
    );
}

#[test]
fn contents_and_copy_to_root_together_use_the_nixpkgs_wording() {
    fails(
        r#"{"name": "Both", "contents": "dir", "copyToRoot": "dir"}"#,
        &[],
        &["in docker image Both: You can not specify both contents and copyToRoot."],
    );
}

#[test]
fn contents_alone_builds_with_the_deprecation_warning() {
    let scratch = Scratch::new();
    let root = scratch.join("root");
    mkdir(&root, 0o755);
    write(&root.join("f"), b"from contents", 0o644);
    let spec_path = scratch.spec(&json!({ "name": "Old", "tag": "t", "contents": ["root"] }));
    let output = run_ok(
        buildimage(scratch.path())
            .arg("build")
            .arg(&spec_path)
            .arg("-o")
            .arg("image.tar.gz"),
    );
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
    let image = Image::open(&scratch.join("image.tar.gz"));
    assert_eq!(image.layer_file("./f"), b"from contents");
}

#[test]
fn from_image_that_is_not_an_image_archive_is_rejected() {
    fails(
        r#"{"name": "x", "fromImage": "file"}"#,
        &[],
        &["`fromImage`", "file"],
    );
}

#[test]
fn run_as_root_without_a_shell_in_the_image_is_rejected() {
    fails(
        r#"{"name": "x", "runAsRoot": "touch /x"}"#,
        &[],
        &["`runAsRoot`", "/bin/sh"],
    );
}

#[test]
fn inherit_config_without_from_image_is_rejected() {
    fails(
        r#"{"name": "x", "inheritConfig": true}"#,
        &[],
        &["`inheritConfig`", "`fromImage`"],
    );
}

#[test]
fn invalid_source_date_epoch_is_rejected() {
    for value in ["soon", "-1", "1.5"] {
        fails(
            r#"{"name": "x", "tag": "t"}"#,
            &[("SOURCE_DATE_EPOCH", value)],
            &["SOURCE_DATE_EPOCH", &format!("{value:?}")],
        );
    }
}
