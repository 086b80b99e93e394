//! Base archives in the forms found in the wild (buildimage.md Q6, validators.md section 2):
//! saved by Docker, copied by skopeo, compressed whole or per layer whatever the file name
//! says, and in the layout of nixpkgs' `streamLayeredImage` (scenario `layered-on-top`).

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use super::{Archive, Case, Raw, diff_id, layer_diff_id, sha256_hex, strings, write_tar};
use crate::docker::{self, inspect_json};
use crate::support;

/// A busybox base (`/base.txt` holds `base`), uncompressed, as `base.tar` in `case`.
fn busybox_base(case: &Case, name: &str) -> crate::docker::Built {
    case.busybox_root("root");
    case.build(
        "base",
        &json!({
            "name": name,
            "tag": "1",
            "copyToRoot": "root",
            "extraCommands": "echo base > base.txt",
            "compressor": "none",
        }),
    )
}

/// A child of `from` that adds `/child.txt`, as `NAME.tar.gz`.
fn child_of(case: &Case, name: &str, from: &str) -> crate::docker::Built {
    case.build(
        name,
        &json!({
            "name": format!("buildimage-test/{name}"),
            "tag": "1",
            "fromImage": from,
            "extraCommands": "echo child > child.txt",
        }),
    )
}

/// Loads `child`, checks its layers in Docker against the archive's config, and that it
/// runs with the files of both the base and its own layer.
fn assert_child_runs(docker: &support::Docker, child: &crate::docker::Built) {
    let config = Archive::open(&child.archive).config();
    let image = docker.load_guarded(&child.archive);
    assert_eq!(
        inspect_json(docker, image.name(), ".RootFS.Layers"),
        config["rootfs"]["diff_ids"]
    );
    assert_eq!(
        docker
            .run(image.name(), &["cat", "/base.txt", "/child.txt"])
            .assert_success(),
        "base\nchild\n"
    );
}

/// Runs `program ARGS < nothing > out`, checking that it succeeds.
fn run_to_file(program: &str, package: &str, args: &[&str], input: &Path, out: &Path) {
    support::require_tool(program, package);
    let file =
        File::create(out).unwrap_or_else(|err| panic!("cannot create {}: {err}", out.display()));
    support::run_ok(Command::new(program).args(args).arg(input).stdout(file));
}

/// A base from `docker save` of a loaded image (Docker 20.10 writes the legacy layout:
/// `<v1 id>/layer.tar`, `<image id>.json`), built upon and run after the base is removed
/// from the daemon, so the child's archive must bring every layer itself.
#[test]
fn base_saved_by_docker_save_is_built_upon_and_runs() {
    let case = Case::new();
    let base = busybox_base(&case, "buildimage-test/saved-base");
    let saved = case.join("saved.tar");
    let docker = support::docker();
    {
        let image = docker.load_guarded(&base.archive);
        support::run_ok(
            docker
                .command()
                .args(["save", "-o"])
                .arg(&saved)
                .arg(image.name()),
        );
    }
    let archive = Archive::open(&saved);
    assert_eq!(
        archive.manifest()[0]["RepoTags"],
        json!(["buildimage-test/saved-base:1"])
    );
    let child = child_of(&case, "saved-child", "saved.tar");
    let config = Archive::open(&child.archive).config();
    assert_eq!(
        strings(&config["rootfs"]["diff_ids"])[0],
        layer_diff_id(&base)
    );
    assert_child_runs(&docker, &child);
}

/// A base from `skopeo copy docker-archive:IN docker-archive:OUT`: skopeo writes its own
/// layout (layers as `<sha256>.tar` at the top level, no layer folders).
#[test]
fn base_copied_by_skopeo_is_built_upon_and_runs() {
    support::require_tool("skopeo", "skopeo");
    let case = Case::new();
    let base = busybox_base(&case, "buildimage-test/skopeo-base");
    let copied = case.join("skopeo.tar");
    support::run_ok(
        Command::new("skopeo")
            .args(["copy", "-q"])
            .arg(format!("docker-archive:{}", base.archive.display()))
            .arg(format!(
                "docker-archive:{}:buildimage-test/skopeo-copy:1",
                copied.display()
            )),
    );
    let archive = Archive::open(&copied);
    let layers = archive.layers();
    assert!(
        layers.iter().all(|l| !l.ends_with("/layer.tar")),
        "skopeo wrote legacy layer folders after all: {layers:?}"
    );
    let child = child_of(&case, "skopeo-child", "skopeo.tar");
    let config = Archive::open(&child.archive).config();
    assert_eq!(
        strings(&config["rootfs"]["diff_ids"])[0],
        layer_diff_id(&base)
    );
    let docker = support::docker();
    assert_child_runs(&docker, &child);
}

/// The same base, plain, gzip (`gzip -n`) and zstd, each under a name that says another
/// compression: the bytes decide, and the children are byte-identical.
#[test]
fn base_compression_is_told_from_the_bytes_not_the_file_name() {
    let case = Case::new();
    busybox_base(&case, "buildimage-test/compressed-base");
    let plain = case.join("base.tar");
    fs::copy(&plain, case.join("plain.tar.zst")).expect("copy the base");
    run_to_file(
        "gzip",
        "gzip",
        &["-n", "-c"],
        &plain,
        &case.join("gzip.tar"),
    );
    run_to_file(
        "zstd",
        "zstd",
        &["-q", "-c"],
        &plain,
        &case.join("zstd.tar.gz"),
    );
    assert!(
        fs::read(case.join("gzip.tar"))
            .expect("gzip.tar")
            .starts_with(&[0x1f, 0x8b])
    );
    assert!(
        fs::read(case.join("zstd.tar.gz"))
            .expect("zstd.tar.gz")
            .starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
    );

    let spec = |from: &str| {
        json!({
            "name": "buildimage-test/compressed-child",
            "tag": "1",
            "fromImage": from,
            "extraCommands": "echo child > child.txt",
        })
    };
    let children: Vec<_> = ["plain.tar.zst", "gzip.tar", "zstd.tar.gz"]
        .iter()
        .enumerate()
        .map(|(i, from)| case.build(&format!("child{i}"), &spec(from)))
        .collect();
    for child in &children[1..] {
        assert_eq!(
            child.bytes(),
            children[0].bytes(),
            "{} differs from {}",
            child.archive.display(),
            children[0].archive.display()
        );
    }
    let docker = support::docker();
    assert_child_runs(&docker, &children[0]);
}

/// Rewrites `base.tar` into `NAME.tar` with every layer compressed by `compress` and
/// renamed `<layer>.SUFFIX`, the manifest pointing at them and the config's diff ids
/// still those of the plain tars; builds a child on it and checks that the output stores
/// the base layers uncompressed, byte for byte the original tars, under `<dir>/layer.tar`.
fn child_of_compressed_layers(
    case: &Case,
    name: &str,
    suffix: &str,
    compress: fn(&[u8]) -> Vec<u8>,
) -> crate::docker::Built {
    let mut archive = Archive::open(&case.join("base.tar"));
    let mut manifest = archive.manifest();
    let mut originals = Vec::new();
    let mut renamed = Vec::new();
    for layer in archive.layers() {
        let plain = archive.file(&layer).to_vec();
        let new_name = format!("{layer}.{suffix}");
        archive.put(&layer, compress(&plain));
        archive.rename(&layer, &new_name);
        originals.push(plain);
        renamed.push(Value::String(new_name));
    }
    manifest[0]["Layers"] = Value::Array(renamed);
    archive.set_manifest(&manifest);
    archive.save(&case.join(format!("{name}.tar")));

    let child = child_of(case, &format!("{name}-child"), &format!("{name}.tar"));
    let out = Archive::open(&child.archive);
    let layers = out.layers();
    assert_eq!(layers.len(), originals.len() + 1, "{layers:?}");
    for (path, original) in layers.iter().zip(&originals) {
        assert!(path.ends_with("/layer.tar"), "{path}");
        assert!(
            out.file(path) == original.as_slice(),
            "layer {path} is not the original plain tar"
        );
    }
    let diff_ids = strings(&out.config()["rootfs"]["diff_ids"]);
    assert_eq!(diff_ids.len(), layers.len(), "one diff id per layer");
    for (path, id) in layers.iter().zip(&diff_ids) {
        assert_eq!(&diff_id(out.file(path)), id, "layer {path}");
    }
    child
}

/// A base whose layers are gzip-compressed one by one (`<dir>/layer.tar.gz`): stored
/// uncompressed in the output, which Docker loads and runs.
#[test]
fn base_with_gzip_compressed_layers_is_stored_uncompressed_and_loads() {
    let case = Case::new();
    busybox_base(&case, "buildimage-test/gzip-layers-base");
    let child = child_of_compressed_layers(&case, "gzip-layers", "gz", |plain| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        encoder.write_all(plain).expect("gzip a layer");
        encoder.finish().expect("gzip a layer")
    });
    let docker = support::docker();
    assert_child_runs(&docker, &child);
}

/// The same with zstd layers, which Docker 20.10 cannot load itself (validators.md,
/// section 2): stored uncompressed, the child loads and runs.
#[test]
fn base_with_zstd_compressed_layers_is_stored_uncompressed_and_loads() {
    let case = Case::new();
    busybox_base(&case, "buildimage-test/zstd-layers-base");
    let child = child_of_compressed_layers(&case, "zstd-layers", "zst", |plain| {
        zstd::encode_all(plain, 3).expect("zstd a layer")
    });
    let docker = support::docker();
    assert_child_runs(&docker, &child);
}

/// Q6: the layout `docker save` writes since Docker 25, an OCI layout (`oci-layout`,
/// `index.json`, `blobs/sha256/…`, here with one unused blob too) plus `manifest.json`
/// whose `Config` and `Layers` name blobs. The output is a plain legacy archive: no
/// `index.json`, `oci-layout` or `blobs/` carried over.
#[test]
fn base_in_docker_25_oci_layout_leaves_no_oci_leftovers_and_runs() {
    let case = Case::new();
    busybox_base(&case, "buildimage-test/oci-base");
    let legacy = Archive::open(&case.join("base.tar"));
    let config = legacy.file(legacy.manifest()[0]["Config"].as_str().expect("Config"));
    let layers: Vec<Vec<u8>> = legacy
        .layers()
        .iter()
        .map(|l| legacy.file(l).to_vec())
        .collect();
    let blob = |bytes: &[u8]| format!("blobs/sha256/{}", sha256_hex(bytes));
    let descriptor = |media: &str, bytes: &[u8]| json!({ "mediaType": media, "digest": diff_id(bytes), "size": bytes.len() });
    let oci_manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": layers
            .iter()
            .map(|l| descriptor("application/vnd.oci.image.layer.v1.tar", l))
            .collect::<Vec<_>>(),
    }))
    .expect("JSON");
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": diff_id(&oci_manifest),
            "size": oci_manifest.len(),
            "annotations": {
                "io.containerd.image.name": "docker.io/buildimage-test/oci-base:1",
                "org.opencontainers.image.ref.name": "1",
            },
        }],
    });
    let unused = write_tar(&[Raw::file("unused.txt", "unused\n", 0o644)], false);
    let mut members = vec![
        Raw::dir("blobs/", 0o755),
        Raw::dir("blobs/sha256/", 0o755),
        Raw::file(blob(config), config.to_vec(), 0o644),
        Raw::file(blob(&oci_manifest), oci_manifest.clone(), 0o644),
        Raw::file(blob(&unused), unused, 0o644),
    ];
    for layer in &layers {
        members.push(Raw::file(blob(layer), layer.clone(), 0o644));
    }
    let manifest = json!([{
        "Config": blob(config),
        "RepoTags": ["buildimage-test/oci-base:1"],
        "Layers": layers.iter().map(|l| blob(l)).collect::<Vec<_>>(),
    }]);
    members.extend([
        Raw::file(
            "index.json",
            serde_json::to_vec(&index).expect("JSON"),
            0o644,
        ),
        Raw::file(
            "manifest.json",
            serde_json::to_vec(&manifest).expect("JSON"),
            0o644,
        ),
        Raw::file("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#, 0o644),
        Raw::file("repositories", legacy.file("repositories").to_vec(), 0o644),
    ]);
    fs::write(case.join("oci.tar"), write_tar(&members, false)).expect("write oci.tar");

    let child = child_of(&case, "oci-child", "oci.tar");
    let out = Archive::open(&child.archive);
    let names: Vec<String> = out.members.iter().map(Raw::name).collect();
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with("blobs") && n != "index.json" && n != "oci-layout"),
        "OCI leftovers in the output: {names:?}"
    );
    let diff_ids = strings(&out.config()["rootfs"]["diff_ids"]);
    assert_eq!(
        diff_ids[..layers.len()],
        layers.iter().map(|l| diff_id(l)).collect::<Vec<_>>()[..]
    );
    let docker = support::docker();
    assert_child_runs(&docker, &child);
}

/// A fake store path hash: 32 characters of Nix's base-32 alphabet.
const BUSYBOX_HASH: &str = "0123456789abcdfghijklmnpqrsvwxyz";

/// Go's name of the host's architecture, for a hand-made config.
fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no Go name for the architecture {other} in this test"),
    }
}

/// `layered-on-top`: a base in the layout nixpkgs' `streamLayeredImage` writes:
/// `manifest.json` with `Config`, `RepoTags` and `Layers` only, `<sha256>/layer.tar` with
/// absolute `/nix/store/…` names in PAX format, no `repositories`, `VERSION` or `json`.
/// The child adds `example-output` (0777) and a `Cmd`, as in nixpkgs' test.
#[test]
fn base_in_stream_layered_image_layout_is_built_upon_and_runs() {
    let case = Case::new();
    let store = format!("/nix/store/{BUSYBOX_HASH}-busybox-static");
    let mut store_layer = vec![
        Raw::dir("/nix/", 0o555),
        Raw::dir("/nix/store/", 0o555),
        Raw::dir(format!("{store}/"), 0o555),
        Raw::dir(format!("{store}/bin/"), 0o555),
        Raw::file(
            format!("{store}/bin/busybox"),
            docker::static_busybox(),
            0o555,
        ),
    ];
    for applet in ["cat", "chmod", "echo", "mkdir", "sh", "stat"] {
        store_layer.push(Raw::symlink(format!("{store}/bin/{applet}"), "busybox"));
    }
    let layers = [
        write_tar(&store_layer, true),
        write_tar(
            &[
                Raw::symlink("bin", format!("{store}/bin")),
                Raw::dir("tmp/", 0o1777),
            ],
            true,
        ),
    ];
    let config = json!({
        "architecture": host_architecture(),
        "config": { "Env": ["PATH=/bin"] },
        "created": "1970-01-01T00:00:01Z",
        "os": "linux",
        "rootfs": {
            "diff_ids": layers.iter().map(|l| diff_id(l)).collect::<Vec<_>>(),
            "type": "layers",
        },
        "history": [
            { "created": "1970-01-01T00:00:01Z", "comment": "store paths: [busybox-static]" },
            { "created": "1970-01-01T00:00:01Z", "comment": "customisation layer" },
        ],
    });
    let config_bytes = serde_json::to_vec(&config).expect("JSON");
    let config_name = format!("{}.json", sha256_hex(&config_bytes));
    let layer_names: Vec<String> = layers
        .iter()
        .map(|l| format!("{}/layer.tar", sha256_hex(l)))
        .collect();
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": ["buildimage-test/stream-layered:1"],
        "Layers": layer_names,
    }]);
    let mut outer: Vec<Raw> = layer_names
        .iter()
        .zip(&layers)
        .map(|(name, layer)| Raw::file(name, layer.clone(), 0o444))
        .collect();
    outer.push(Raw::file(&config_name, config_bytes, 0o444));
    outer.push(Raw::file(
        "manifest.json",
        serde_json::to_vec(&manifest).expect("JSON"),
        0o444,
    ));
    fs::write(case.join("layered.tar"), write_tar(&outer, true)).expect("write layered.tar");

    let child = case.build(
        "layered-on-top",
        &json!({
            "name": "buildimage-test/layered-on-top",
            "tag": "1",
            "fromImage": "layered.tar",
            "extraCommands": "mkdir ./example-output\nchmod 777 ./example-output\n",
            "config": {
                "Env": ["PATH=/bin"],
                "Cmd": ["sh", "-c", "echo hello > foo; cat foo"],
            },
        }),
    );
    let out = Archive::open(&child.archive);
    let stored = out.layers();
    assert_eq!(
        stored.len(),
        layers.len() + 1,
        "the base's layers and the new one"
    );
    for (path, layer) in stored.iter().zip(&layers) {
        assert!(
            out.file(path) == layer.as_slice(),
            "base layer {path} changed"
        );
    }
    assert_eq!(
        out.config()["config"]["Env"],
        json!(["PATH=/bin", "PATH=/bin"])
    );

    let docker = support::docker();
    let image = docker.load_guarded(&child.archive);
    assert_eq!(docker.run(image.name(), &[]).assert_success(), "hello\n");
    assert_eq!(
        docker
            .run(image.name(), &["stat", "-c", "%a", "/example-output"])
            .assert_success(),
        "777\n"
    );
    let echo = format!("{store}/bin/echo");
    assert_eq!(
        docker.run(image.name(), &[&echo, "ok"]).assert_success(),
        "ok\n"
    );
}
