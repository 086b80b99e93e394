//! Where the image goes (`-o`, the default name, standard output) and what `--json`
//! reports (docs/formats.md §13.2).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{Value, json};

use super::test_dir;
use buildimage_test_support::{
    Buildimage, Image, TestDir, mkdir, names, sha256_hex, snapshot_settings, stderr, write,
};

/// A spec using the deprecated `contents`, so that the build prints a warning.
fn warning_spec(scratch: &TestDir, compressor: &str) -> std::path::PathBuf {
    let root = scratch.join("root");
    mkdir(&root, 0o755);
    write(&root.join("f"), b"f", 0o644);
    scratch.spec(&json!({
        "name": "stream", "tag": "t", "contents": "root", "compressor": compressor,
    }))
}

#[test]
fn output_to_stdout_is_the_archive_and_nothing_else() {
    for compressor in ["none", "gz", "zstd"] {
        let scratch = test_dir();
        let spec_path = warning_spec(&scratch, compressor);
        let file = scratch.join("image");
        Buildimage::new()
            .cwd(scratch.path())
            .build(&spec_path)
            .out(&file)
            .run_ok();
        let output = Buildimage::new()
            .cwd(scratch.path())
            .build(&spec_path)
            .out("-")
            .run_ok();
        let stderr = stderr(&output);
        assert!(
            stderr
                .contains("warning: in docker image stream: The contents parameter is deprecated"),
            "{stderr}"
        );
        assert!(
            output.stdout == fs::read(&file).expect("read the image file"),
            "{compressor}: standard output is exactly the image that -o FILE writes"
        );
        assert_eq!(Image::from_bytes(&output.stdout).layer_file("./f"), b"f");
        assert_eq!(names(scratch.path()), ["image", "root", "spec.json"]);
    }
}

#[test]
fn json_prints_one_object_describing_the_image() {
    let scratch = test_dir();
    let root = scratch.join("root");
    mkdir(&root, 0o755);
    write(&root.join("f"), b"f", 0o644);
    // Keys deliberately out of order, at both levels.
    let spec_text = r#"{
  "tag": "T1",
  "name": "Json/Report",
  "config": { "WorkingDir": "/w", "Cmd": ["x"] },
  "compressor": "none",
  "copyToRoot": "root",
  "meta": { "z": 1, "a": 2 }
}"#;
    let spec_path = scratch.spec_text(spec_text);
    let output = Buildimage::new()
        .cwd(scratch.path())
        .build(&spec_path)
        .out("image.tar")
        .arg("--json")
        .run_ok();
    let values: Vec<Value> = serde_json::Deserializer::from_slice(&output.stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|err| {
            panic!(
                "stdout is not JSON ({err}):\n{}",
                String::from_utf8_lossy(&output.stdout)
            )
        });
    assert_eq!(values.len(), 1, "exactly one JSON value on stdout");
    let info = &values[0];
    assert!(info.is_object());

    let out = scratch.join("image.tar");
    let image = Image::open(&out);
    assert_eq!(info["imageName"], "json/report");
    assert_eq!(info["imageTag"], "T1");
    let out_path = Path::new(info["outPath"].as_str().expect("outPath is a string"));
    assert!(out_path.is_absolute(), "{}", out_path.display());
    assert_eq!(
        out_path.canonicalize().expect("outPath exists"),
        out.canonicalize().expect("the image exists")
    );
    let layer_tar = image.layer_tar();
    assert_eq!(
        info["layer"]["diffId"],
        format!("sha256:{}", sha256_hex(layer_tar))
    );
    assert_eq!(info["layer"]["size"], json!(layer_tar.len()));
    assert_eq!(
        info["configDigest"],
        format!(
            "sha256:{}",
            image.config_name().strip_suffix(".json").expect(".json")
        )
    );
    let spec: Value = serde_json::from_str(spec_text).expect("the spec is JSON");
    assert_eq!(info["buildArgs"], spec);
    // buildArgs keys are sorted at every level, as Nix writes attribute sets.
    let text = String::from_utf8_lossy(&output.stdout);
    let args = &text[text.find("\"buildArgs\"").expect("buildArgs")..];
    let at = |key: &str| args.find(key).unwrap_or_else(|| panic!("{key} in {args}"));
    let order = [
        "\"compressor\"",
        "\"config\"",
        "\"Cmd\"",
        "\"WorkingDir\"",
        "\"copyToRoot\"",
        "\"meta\"",
        "\"a\"",
        "\"z\"",
        "\"name\"",
        "\"tag\"",
    ];
    for pair in order.windows(2) {
        assert!(
            at(pair[0]) < at(pair[1]),
            "{} before {}: {args}",
            pair[0],
            pair[1]
        );
    }
}

#[test]
fn json_with_output_to_stdout_is_refused_up_front() {
    // Standard output cannot carry both the image and the report: the combination is
    // refused before anything is written, saying why.
    let scratch = test_dir();
    let spec_path = scratch.spec(&json!({ "name": "both", "tag": "t", "compressor": "none" }));
    let output = Buildimage::new()
        .cwd(scratch.path())
        .build(&spec_path)
        .out("-")
        .arg("--json")
        .run_err();
    assert!(output.stdout.is_empty(), "nothing on standard output");
    let stderr = stderr(&output);
    assert!(
        stderr.contains("--json") && stderr.contains("-o -"),
        "{stderr}"
    );
    assert_eq!(names(scratch.path()), ["spec.json"]);
}

#[test]
fn default_output_names_follow_the_compressor() {
    for (compressor, file, magic) in [
        (None, "docker-image-App.tar.gz", &[0x1f_u8, 0x8b][..]),
        (Some("gz"), "docker-image-App.tar.gz", &[0x1f, 0x8b][..]),
        (Some("none"), "docker-image-App.tar", &b"./"[..]),
        (
            Some("zstd"),
            "docker-image-App.tar.zst",
            &[0x28, 0xb5, 0x2f, 0xfd][..],
        ),
    ] {
        let scratch = test_dir();
        let mut spec = json!({ "name": "registry-1.docker.io/Some/App", "tag": "t" });
        if let Some(compressor) = compressor {
            spec["compressor"] = json!(compressor);
        }
        let spec_path = scratch.spec(&spec);
        Buildimage::new()
            .cwd(scratch.path())
            .arg("build")
            .arg(&spec_path)
            .run_ok();
        assert_eq!(
            names(scratch.path()),
            [file, "spec.json"],
            "compressor {compressor:?}"
        );
        let bytes = fs::read(scratch.join(file)).expect("read the image");
        assert!(bytes.starts_with(magic), "{file}");
        let image = Image::from_bytes(&bytes);
        assert_eq!(
            image.manifest()[0]["RepoTags"],
            json!(["registry-1.docker.io/some/app:t"])
        );
    }
}

#[test]
fn existing_output_is_replaced_by_a_complete_image() {
    let scratch = test_dir();
    let spec_path = scratch.spec(&json!({ "name": "replace", "tag": "t", "compressor": "gz" }));
    let out = scratch.join("image.tar.gz");
    write(&out, b"an older image", 0o600);
    Buildimage::new()
        .cwd(scratch.path())
        .build(&spec_path)
        .out(&out)
        .run_ok();
    let fresh = scratch.join("fresh.tar.gz");
    Buildimage::new()
        .cwd(scratch.path())
        .build(&spec_path)
        .out(&fresh)
        .run_ok();
    assert!(fs::read(&out).expect("read OUT") == fs::read(&fresh).expect("read the fresh image"));
    assert_eq!(
        names(scratch.path()),
        ["fresh.tar.gz", "image.tar.gz", "spec.json"],
        "no temporary file left"
    );
}

#[test]
fn existing_output_is_left_unchanged_when_the_build_fails() {
    let scratch = test_dir();
    let out = scratch.join("image.tar");
    let old = b"an older image, still wanted".as_slice();
    for spec in [
        // Fails while the image is being made, after OUT's temporary file exists.
        json!({ "name": "keep", "tag": "t", "compressor": "none", "extraCommands": "echo partial > f; exit 1" }),
        // Fails before any work.
        json!({ "name": "keep", "tag": "t", "compressor": "bzip2" }),
    ] {
        write(&out, old, 0o640);
        let spec_path = scratch.spec(&spec);
        let output = Buildimage::new()
            .cwd(scratch.path())
            .build(&spec_path)
            .out(&out)
            .run_err();
        assert!(
            fs::read(&out).expect("read OUT") == old,
            "OUT changed: {}",
            stderr(&output)
        );
        let mode = fs::metadata(&out).expect("stat OUT").permissions().mode();
        assert_eq!(mode & 0o7777, 0o640);
        assert_eq!(names(scratch.path()), ["image.tar", "spec.json"]);
    }
}

#[test]
fn output_into_a_missing_folder_fails_naming_it() {
    let scratch = test_dir();
    let spec_path = scratch.spec(&json!({ "name": "nowhere", "tag": "t" }));
    let out = scratch.join("missing/sub/image.tar.gz");
    let output = Buildimage::new()
        .cwd(scratch.path())
        .build(&spec_path)
        .out(&out)
        .run_err();
    let stderr = stderr(&output);
    assert!(
        stderr.contains(&*scratch.join("missing/sub").to_string_lossy()),
        "{stderr}"
    );
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert_eq!(names(scratch.path()), ["spec.json"]);
}

#[test]
fn output_file_mode_follows_the_caller_umask() {
    for (umask, mode) in [
        ("022", 0o644),
        ("027", 0o640),
        ("077", 0o600),
        ("002", 0o664),
    ] {
        let scratch = test_dir();
        let spec_path = scratch.spec(&json!({ "name": "mode", "tag": "t" }));
        Buildimage::new()
            .cwd(scratch.path())
            .umask(umask)
            .build(&spec_path)
            .out("image.tar.gz")
            .run_ok();
        let actual = fs::metadata(scratch.join("image.tar.gz"))
            .expect("stat the image")
            .permissions()
            .mode();
        assert_eq!(actual & 0o7777, mode, "umask {umask}: {actual:o}");
    }
}

/// Regression: `-o /dev/null` once replaced the device with a regular file, because the
/// image was renamed over it. A path that exists and is not a regular file is written to
/// as a stream and never replaced; a fifo shows it without touching `/dev`.
#[test]
fn output_to_a_fifo_streams_into_it_and_keeps_it() {
    use std::os::unix::fs::FileTypeExt;
    let scratch = test_dir();
    let spec_path = warning_spec(&scratch, "none");
    let file = scratch.join("image");
    Buildimage::new()
        .cwd(scratch.path())
        .build(&spec_path)
        .out(&file)
        .run_ok();
    let fifo = scratch.join("pipe");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(status.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(&fifo).expect("read the fifo"))
    };
    Buildimage::new()
        .cwd(scratch.path())
        .build(&spec_path)
        .out(&fifo)
        .run_ok();
    let streamed = reader.join().expect("reader thread");
    assert!(streamed == fs::read(&file).expect("read the image"));
    let kind = fs::symlink_metadata(&fifo)
        .expect("stat the fifo")
        .file_type();
    assert!(kind.is_fifo(), "the fifo was replaced: {kind:?}");
}

#[test]
fn output_through_a_symlink_replaces_its_target_and_keeps_the_link() {
    let scratch = test_dir();
    let spec_path = warning_spec(&scratch, "none");
    mkdir(&scratch.join("images"), 0o755);
    write(&scratch.join("images/current.tar"), b"old", 0o644);
    std::os::unix::fs::symlink("images/current.tar", scratch.join("link.tar"))
        .expect("make the link");
    Buildimage::new()
        .cwd(scratch.path())
        .build(&spec_path)
        .out(scratch.join("link.tar"))
        .run_ok();
    let link = fs::symlink_metadata(scratch.join("link.tar")).expect("stat the link");
    assert!(link.file_type().is_symlink(), "the link was replaced");
    let image = fs::read(scratch.join("images/current.tar")).expect("read the target");
    assert_eq!(Image::from_bytes(&image).layer_file("./f"), b"f");
    assert_eq!(names(&scratch.join("images")), ["current.tar"]);
}

/// The whole `--json` report of a representative build, as a snapshot: every key and
/// value but `outPath`, whose temporary folder differs from run to run (checked here
/// instead).
#[test]
fn json_report_of_a_representative_build_matches_the_snapshot() {
    let dir = test_dir();
    let root = dir.join("root");
    mkdir(&root, 0o755);
    mkdir(&root.join("bin"), 0o755);
    write(&root.join("bin/hello"), b"#!/bin/sh\necho hello\n", 0o755);
    let spec_path = dir.spec(&json!({
        "name": "Snapshot/Report",
        "tag": "v1",
        "copyToRoot": "root",
        "compressor": "none",
        "architecture": "amd64",
        "config": {
            "Cmd": ["/bin/hello"],
            "Env": ["PATH=/bin"],
            "Labels": { "org.opencontainers.image.title": "report" },
        },
    }));
    let built = Buildimage::new()
        .cwd(dir.path())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .build(&spec_path)
        .out("image.tar")
        .json();
    assert_eq!(
        Path::new(built.str("outPath")),
        dir.join("image.tar")
            .canonicalize()
            .expect("the image exists")
    );
    snapshot_settings().bind(|| {
        insta::assert_json_snapshot!("json_report", built.info, { ".outPath" => "[outPath]" });
    });
}

/// `SPEC` `-` reads the spec from standard input, its relative paths starting from the
/// current folder (docs/formats.md §13.1): the image is the one the same spec file gives.
#[test]
fn spec_from_standard_input_gives_the_image_of_the_same_spec_file() {
    let dir = test_dir();
    let root = dir.join("root");
    mkdir(&root, 0o755);
    write(&root.join("f"), b"from stdin", 0o644);
    let spec = json!({ "name": "stdin", "tag": "t", "copyToRoot": "root", "compressor": "none" });
    let spec_path = dir.spec(&spec);
    Buildimage::new()
        .cwd(dir.path())
        .build(&spec_path)
        .out("file.tar")
        .run_ok();
    Buildimage::new()
        .cwd(dir.path())
        .build("-")
        .out("stdin.tar")
        .stdin(spec.to_string())
        .run_ok();
    let from_stdin = fs::read(dir.join("stdin.tar")).expect("read stdin.tar");
    assert!(
        from_stdin == fs::read(dir.join("file.tar")).expect("read file.tar"),
        "the spec from standard input gives another image"
    );
    assert_eq!(
        Image::from_bytes(&from_stdin).layer_file("./f"),
        b"from stdin"
    );
}
