//! Base archives in the forms found in the wild (docs/formats.md §5.1 and §12.1):
//! saved by Docker, copied by skopeo, compressed whole or per layer whatever the file name
//! says, and in the layout of nixpkgs' `streamLayeredImage` (scenario `layered-on-top`).

use std::fs;
use std::process::Command;

use serde_json::json;

use buildimage_test_support::{
    BaseImage, Built, Docker, Image, LayerCompression, Layout, Member, diff_id, docker, gzip,
    inspect_json, require_tool, run_ok, static_busybox, strings, write_tar, zstd_compress,
};

use super::Case;

/// A busybox base (`/base.txt` holds `base`), uncompressed, as `base.tar` in `case`.
fn busybox_base(case: &Case, name: &str) -> Built {
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
fn child_of(case: &Case, name: &str, from: &str) -> Built {
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
fn assert_child_runs(docker: &Docker, child: &Built) {
    let config = Image::open(&child.archive).config();
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

/// A base from `docker save` of a loaded image (Docker 20.10 writes the legacy layout:
/// `<v1 id>/layer.tar`, `<image id>.json`), built upon and run after the base is removed
/// from the daemon, so the child's archive must bring every layer itself.
#[test]
fn base_saved_by_docker_save_is_built_upon_and_runs() {
    let case = Case::new();
    let base = busybox_base(&case, "buildimage-test/saved-base");
    let saved = case.join("saved.tar");
    let docker = docker();
    {
        let image = docker.load_guarded(&base.archive);
        run_ok(
            docker
                .command()
                .args(["save", "-o"])
                .arg(&saved)
                .arg(image.name()),
        );
    }
    let archive = Image::open(&saved);
    assert_eq!(
        archive.manifest()[0]["RepoTags"],
        json!(["buildimage-test/saved-base:1"])
    );
    let child = child_of(&case, "saved-child", "saved.tar");
    let config = Image::open(&child.archive).config();
    assert_eq!(
        strings(&config["rootfs"]["diff_ids"])[0],
        base.layer_diff_id()
    );
    assert_child_runs(&docker, &child);
}

/// A base from `skopeo copy docker-archive:IN docker-archive:OUT`: skopeo writes its own
/// layout (layers as `<sha256>.tar` at the top level, no layer folders).
#[test]
fn base_copied_by_skopeo_is_built_upon_and_runs() {
    require_tool("skopeo", "skopeo");
    let case = Case::new();
    let base = busybox_base(&case, "buildimage-test/skopeo-base");
    let copied = case.join("skopeo.tar");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "-q"])
            .arg(format!("docker-archive:{}", base.archive.display()))
            .arg(format!(
                "docker-archive:{}:buildimage-test/skopeo-copy:1",
                copied.display()
            )),
    );
    let archive = Image::open(&copied);
    let layers = archive.layers();
    assert!(
        layers.iter().all(|l| !l.ends_with("/layer.tar")),
        "skopeo wrote legacy layer folders after all: {layers:?}"
    );
    let child = child_of(&case, "skopeo-child", "skopeo.tar");
    let config = Image::open(&child.archive).config();
    assert_eq!(
        strings(&config["rootfs"]["diff_ids"])[0],
        base.layer_diff_id()
    );
    let docker = docker();
    assert_child_runs(&docker, &child);
}

/// The same base, plain, gzip and zstd, each under a name that says another
/// compression: the bytes decide, and the children are byte-identical.
#[test]
fn base_compression_is_told_from_the_bytes_not_the_file_name() {
    let case = Case::new();
    busybox_base(&case, "buildimage-test/compressed-base");
    let plain = fs::read(case.join("base.tar")).expect("read base.tar");
    fs::write(case.join("plain.tar.zst"), &plain).expect("write plain.tar.zst");
    fs::write(case.join("gzip.tar"), gzip(&plain)).expect("write gzip.tar");
    fs::write(case.join("zstd.tar.gz"), zstd_compress(&plain)).expect("write zstd.tar.gz");
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
    let docker = docker();
    assert_child_runs(&docker, &children[0]);
}

/// Rewrites `base.tar` into `NAME.tar` ([`BaseImage::from_image`]) in `layout`, with every
/// layer compressed as `compression` says (and named with its suffix), the config's diff
/// ids still those of the plain tars; builds a child on it and checks that the output
/// stores the base layers uncompressed, byte for byte the original tars, under
/// `<dir>/layer.tar`.
fn child_of_relaid(
    case: &Case,
    name: &str,
    layout: Layout,
    compression: LayerCompression,
) -> Built {
    let base = Image::open(&case.join("base.tar"));
    let originals: Vec<Vec<u8>> = base
        .layers()
        .iter()
        .map(|layer| base.file(layer).to_vec())
        .collect();
    let rewritten = BaseImage::from_image(&base)
        .layout(layout)
        .layer_compression(compression)
        .to_image();
    assert!(
        rewritten
            .layers()
            .iter()
            .all(|l| !l.ends_with("/layer.tar")),
        "{:?}",
        rewritten.layers()
    );
    rewritten.save(&case.join(format!("{name}.tar")));

    let child = child_of(case, &format!("{name}-child"), &format!("{name}.tar"));
    let out = Image::open(&child.archive);
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

/// docs/formats.md §5.1: skopeo's layout (`<sha256>.tar` layers at the top level, no
/// layer folders) made by hand, here with zstd layers, which skopeo itself does not
/// write: the child stores the plain layers under `<dir>/layer.tar`.
#[test]
fn base_in_skopeo_layout_with_zstd_layers_made_by_hand_is_built_upon() {
    let case = Case::new();
    busybox_base(&case, "buildimage-test/skopeo-layout-base");
    child_of_relaid(
        &case,
        "skopeo-layout",
        Layout::Skopeo,
        LayerCompression::Zstd,
    );
}

/// A base whose layers are gzip-compressed one by one (`<dir>/layer.tar.gz`): stored
/// uncompressed in the output, which Docker loads and runs.
#[test]
fn base_with_gzip_compressed_layers_is_stored_uncompressed_and_loads() {
    let case = Case::new();
    busybox_base(&case, "buildimage-test/gzip-layers-base");
    let child = child_of_relaid(&case, "gzip-layers", Layout::Legacy, LayerCompression::Gzip);
    let docker = docker();
    assert_child_runs(&docker, &child);
}

/// The same with zstd layers, which Docker 20.10 cannot load itself (docs/formats.md
/// §12.1): stored uncompressed, the child loads and runs.
#[test]
fn base_with_zstd_compressed_layers_is_stored_uncompressed_and_loads() {
    let case = Case::new();
    busybox_base(&case, "buildimage-test/zstd-layers-base");
    let child = child_of_relaid(&case, "zstd-layers", Layout::Legacy, LayerCompression::Zstd);
    let docker = docker();
    assert_child_runs(&docker, &child);
}

/// docs/formats.md §5.1: the layout `docker save` writes since Docker 25, an OCI layout (`oci-layout`,
/// `index.json`, `blobs/sha256/…`, here with one unused blob too) plus `manifest.json`
/// whose `Config` and `Layers` name blobs. The output is a plain legacy archive: no
/// `index.json`, `oci-layout` or `blobs/` carried over.
#[test]
fn base_in_docker_25_oci_layout_leaves_no_oci_leftovers_and_runs() {
    let case = Case::new();
    busybox_base(&case, "buildimage-test/oci-base");
    let child = child_of_relaid(&case, "oci", Layout::Docker25, LayerCompression::None);
    let oci = Image::open(&case.join("oci.tar"));
    assert!(
        oci.members.iter().any(|m| m.name == b"index.json")
            && oci.layers().iter().all(|l| l.starts_with("blobs/sha256/")),
        "a Docker 25 layout"
    );
    let out = Image::open(&child.archive);
    let names: Vec<String> = out.members.iter().map(Member::name).collect();
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with("blobs") && n != "index.json" && n != "oci-layout"),
        "OCI leftovers in the output: {names:?}"
    );
    let docker = docker();
    assert_child_runs(&docker, &child);
}

/// A fake store path hash: 32 characters of Nix's base-32 alphabet.
const BUSYBOX_HASH: &str = "0123456789abcdfghijklmnpqrsvwxyz";

/// `layered-on-top`: a base in the layout nixpkgs' `streamLayeredImage` writes:
/// `manifest.json` with `Config`, `RepoTags` and `Layers` only, `<sha256>/layer.tar` with
/// absolute `/nix/store/…` names in PAX format, no `repositories`, `VERSION` or `json`.
/// The child adds `example-output` (0777) and a `Cmd`, as in nixpkgs' test.
#[test]
fn base_in_stream_layered_image_layout_is_built_upon_and_runs() {
    let case = Case::new();
    let store = format!("/nix/store/{BUSYBOX_HASH}-busybox-static");
    let mut store_layer = vec![
        Member::dir("/nix/", 0o555),
        Member::dir("/nix/store/", 0o555),
        Member::dir(format!("{store}/"), 0o555),
        Member::dir(format!("{store}/bin/"), 0o555),
        Member::file(format!("{store}/bin/busybox"), static_busybox(), 0o555),
    ];
    for applet in ["cat", "chmod", "echo", "mkdir", "sh", "stat"] {
        store_layer.push(Member::symlink(format!("{store}/bin/{applet}"), "busybox"));
    }
    let layers = [
        write_tar(&store_layer, true),
        write_tar(
            &[
                Member::symlink("bin", format!("{store}/bin")),
                Member::dir("tmp/", 0o1777),
            ],
            true,
        ),
    ];
    BaseImage::new("buildimage-test/stream-layered:1")
        .layer(layers[0].clone())
        .layer(layers[1].clone())
        .config(json!({
            "config": { "Env": ["PATH=/bin"] },
            "created": "1970-01-01T00:00:01Z",
            "history": [
                { "created": "1970-01-01T00:00:01Z", "comment": "store paths: [busybox-static]" },
                { "created": "1970-01-01T00:00:01Z", "comment": "customisation layer" },
            ],
        }))
        .layout(Layout::StreamLayered)
        .save(&case.join("layered.tar"));

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
    let out = Image::open(&child.archive);
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

    let docker = docker();
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
