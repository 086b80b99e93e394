//! Destinations other than a docker-archive file: OCI layouts (`oci:`), OCI archives
//! (`oci-archive:`) and the Docker engine (`docker-daemon:`), read back by skopeo, umoci,
//! podman and Docker; and the layer cache that lets a layout skip store layers it holds
//! without reading them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use buildimage_test_support::{Buildimage, Built, docker, listing, run_ok, sha256_hex, stderr};

use super::{APP_A, BUSYBOX, EPOCH, SHARED_TEXT, build_layered, fixture, scratch};

/// The spec of an image that runs app-a.
fn app_spec(compressor: &str) -> Value {
    let fx = fixture();
    json!({
        "name": "app-a", "tag": "t", "compressor": compressor,
        "contents": [fx.path(APP_A), fx.path(BUSYBOX)],
        "config": { "Cmd": ["/bin/app-a"] },
    })
}

/// `buildimage SUBCOMMAND spec -o DEST --json` with the fixture store and a cache in
/// `dir/cache`.
fn send(dir: &Path, subcommand: &str, spec: &Value, dest: &str, extra: &[&str]) -> Built {
    let spec_file = dir.join(format!(
        "spec-{}.json",
        spec["compressor"].as_str().unwrap_or("gz")
    ));
    buildimage_test_support::write_json(&spec_file, spec);
    let mut cmd = Buildimage::new();
    cmd.cwd(dir)
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .env("XDG_CACHE_HOME", dir.join("xdg-cache"))
        .arg(subcommand)
        .arg(&spec_file)
        .out(dest)
        .store(fixture().store())
        .args(extra);
    if !extra.contains(&"--no-cache") {
        cmd.arg("--cache").arg(dir.join("cache"));
    }
    cmd.json()
}

/// Unpacks `image` (a skopeo/umoci reference `DIR:REF`) with umoci into `dir/name` and
/// lists its root file system.
fn umoci_listing(image: &str, bundle: &Path) -> Vec<String> {
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image", image])
            .arg(bundle),
    );
    listing(&bundle.join("rootfs"))
}

/// The file listing of the docker-archive `archive`, unpacked by skopeo and umoci.
fn archive_listing(archive: &Path) -> Vec<String> {
    buildimage_test_support::unpack_oci(archive).listing()
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

fn blob_json(layout: &Path, digest: &str) -> Value {
    serde_json::from_slice(&fs::read(blob_path(layout, digest)).unwrap()).unwrap()
}

/// When each of `blobs` was last written.
fn blob_mtimes(layout: &Path, blobs: &[String]) -> Vec<std::time::SystemTime> {
    blobs
        .iter()
        .map(|b| {
            fs::metadata(layout.join("blobs/sha256").join(b))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect()
}

fn blobs_in(layout: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn an_oci_layout_holds_the_image_the_archive_holds() {
    let dir = scratch();
    let archive = build_layered(dir.path(), "app", &app_spec("none"), fixture().store());
    for compressor in ["gz", "zstd", "none"] {
        let layout = dir.join(format!("layout-{compressor}"));
        let dest = format!("oci:{}:app", layout.display());
        let built = send(
            dir.path(),
            "build-layered",
            &app_spec(compressor),
            &dest,
            &[],
        );
        // The same config, so the same image ID, as the docker-archive.
        assert_eq!(built.info["configDigest"], archive.info["configDigest"]);
        let layers = built.info["layers"].as_array().unwrap();
        let suffix = match compressor {
            "gz" => "+gzip",
            "zstd" => "+zstd",
            _ => "",
        };
        for layer in layers {
            assert_eq!(
                layer["mediaType"],
                format!("application/vnd.oci.image.layer.v1.tar{suffix}")
            );
        }
        let want = archive_listing(&archive.archive);
        // umoci 0.4 reads no zstd layers; skopeo does.
        if compressor != "zstd" {
            assert_eq!(
                umoci_listing(
                    &format!("{}:app", layout.display()),
                    &dir.join(format!("bundle-{compressor}"))
                ),
                want,
                "{compressor}: umoci's root file system of the layout against the archive's"
            );
        }
        // Each blob decompresses to the layer the archive holds.
        let manifest = blob_json(&layout, built.str("manifestDigest"));
        let blobs = manifest["layers"].as_array().unwrap();
        let diff_ids = archive.read().config()["rootfs"]["diff_ids"].clone();
        for (blob, diff_id) in blobs.iter().zip(diff_ids.as_array().unwrap()) {
            let bytes = fs::read(blob_path(&layout, blob["digest"].as_str().unwrap())).unwrap();
            let plain = buildimage_test_support::decompress(&bytes);
            assert_eq!(
                format!("sha256:{}", sha256_hex(&plain)),
                diff_id.as_str().unwrap(),
                "{compressor}"
            );
        }
        if compressor == "zstd" {
            continue;
        }
        // skopeo reads the layout back into a docker-archive Docker runs.
        let copy = dir.join(format!("copy-{compressor}.tar"));
        run_ok(
            Command::new("skopeo")
                .args(["copy", "-q"])
                .arg(format!("oci:{}:app", layout.display()))
                .arg(format!("docker-archive:{}:app-a:t", copy.display())),
        );
        assert_eq!(
            archive_listing(&copy),
            want,
            "{compressor}: skopeo's copy of the layout"
        );
        if compressor == "gz" {
            let docker = docker();
            let image = docker.load_guarded(&copy);
            assert_eq!(
                docker.run(image.name(), &[]).assert_success(),
                format!("{SHARED_TEXT}\napp-a\n")
            );
        }
    }
}

#[test]
fn adding_an_image_keeps_the_others_and_writes_no_blob_twice() {
    let dir = scratch();
    let layout = dir.join("layout");
    let first = send(
        dir.path(),
        "build-layered",
        &app_spec("gz"),
        &format!("oci:{}:one", layout.display()),
        &["--no-cache"],
    );
    let blobs = blobs_in(&layout);
    let mtimes = blob_mtimes(&layout, &blobs);
    // The same image under a second reference: nothing new but the index entry.
    let second = send(
        dir.path(),
        "build-layered",
        &app_spec("gz"),
        &format!("oci:{}:two", layout.display()),
        &["--no-cache"],
    );
    assert_eq!(blobs_in(&layout), blobs);
    let again = blob_mtimes(&layout, &blobs);
    assert_eq!(mtimes, again, "no blob was rewritten");
    assert_eq!(first.info["manifestDigest"], second.info["manifestDigest"]);
    // A buildImage image under a third: both others stay readable.
    let spec = json!({ "name": "single", "tag": "s", "copyToRoot": [fixture().path(BUSYBOX)] });
    send(
        dir.path(),
        "build",
        &spec,
        &format!("oci:{}", layout.display()),
        &[],
    );
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let refs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(refs, ["one", "two", "s"], "REF defaults to the tag");
    // skopeo finds each image by its REF, with the manifest the index lists.
    for entry in index["manifests"].as_array().unwrap() {
        let reference = entry["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap();
        let out = run_ok(
            Command::new("skopeo")
                .args(["inspect"])
                .arg(format!("oci:{}:{reference}", layout.display())),
        );
        let inspect: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(inspect["Digest"], entry["digest"], "{reference}");
    }
    let leftovers: Vec<String> = fs::read_dir(&layout)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn an_oci_archive_is_read_by_skopeo_and_podman() {
    let dir = scratch();
    let path = dir.join("app.oci.tar");
    let mut stream_spec = app_spec("gz");
    stream_spec.as_object_mut().unwrap().remove("compressor");
    let built = send(
        dir.path(),
        "stream-layered",
        &stream_spec,
        &format!("oci-archive:{}:app", path.display()),
        &[],
    );
    // Layers of a stream to a destination of blobs are gzip-compressed.
    for layer in built.info["layers"].as_array().unwrap() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }
    assert_eq!(PathBuf::from(built.str("outPath")), path);
    let inspect = run_ok(
        Command::new("skopeo")
            .args(["inspect"])
            .arg(format!("oci-archive:{}:app", path.display())),
    );
    let inspect: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(
        inspect["Layers"].as_array().unwrap().len(),
        built.info["layers"].as_array().unwrap().len()
    );
    buildimage_test_support::require_tool("podman", "podman");
    let root = dir.join("podman-root");
    let runroot = dir.join("podman-run");
    let podman = |args: &[&str]| {
        run_ok(
            Command::new("podman")
                .arg("--root")
                .arg(&root)
                .arg("--runroot")
                .arg(&runroot)
                .args(["--storage-driver", "vfs"])
                .args(args),
        )
    };
    let loaded = podman(&["load", "-q", "-i", path.to_str().unwrap()]);
    let loaded = String::from_utf8_lossy(&loaded.stdout).into_owned();
    assert!(loaded.contains("Loaded image"), "{loaded}");
    let images = podman(&["images", "--format", "{{.ID}}", "--no-trunc"]);
    let id = String::from_utf8_lossy(&images.stdout).trim().to_owned();
    assert_eq!(
        id,
        built.str("configDigest"),
        "podman's image ID is the config digest"
    );
    // The same bytes for the same image.
    let again = dir.join("again.oci.tar");
    send(
        dir.path(),
        "stream-layered",
        &stream_spec,
        &format!("oci-archive:{}:app", again.display()),
        &["--no-cache"],
    );
    assert_eq!(fs::read(&path).unwrap(), fs::read(&again).unwrap());
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn docker_daemon_loads_without_a_temporary_file() {
    let dir = scratch();
    let docker = docker();
    let tmp = dir.join("tmp");
    fs::create_dir(&tmp).unwrap();
    let spec_file = dir.join("spec.json");
    buildimage_test_support::write_json(&spec_file, &app_spec("gz"));
    let output = Buildimage::new()
        .cwd(dir.path())
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .env("DOCKER_HOST", docker.host())
        .env("TMPDIR", &tmp)
        .arg("build-layered")
        .arg(&spec_file)
        .out("docker-daemon:")
        .store(fixture().store())
        .run_ok();
    let image = docker.guard("app-a:t");
    assert!(
        stderr(&output).contains("loaded into the Docker engine (app-a:t"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        docker.run(image.name(), &[]).assert_success(),
        format!("{SHARED_TEXT}\napp-a\n")
    );
    assert_eq!(
        fs::read_dir(&tmp).unwrap().count(),
        0,
        "nothing was staged in TMPDIR"
    );
    let files: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files.len(), 2, "no image file was written: {files:?}");
}

#[test]
fn the_cache_skips_store_layers_a_layout_holds() {
    let dir = scratch();
    let layout = dir.join("layout");
    let dest = format!("oci:{}:app", layout.display());
    let first = send(dir.path(), "build-layered", &app_spec("gz"), &dest, &[]);
    let layers = first.info["layers"].as_array().unwrap().len() as u64;
    // Layers and config went in; a second build skips all of them.
    let second = send(dir.path(), "build-layered", &app_spec("gz"), &dest, &[]);
    assert_eq!(second.info["manifestDigest"], first.info["manifestDigest"]);
    assert!(
        second
            .stderr
            .contains(&format!("0 blobs sent (0 B), {} already there", layers + 1)),
        "{}",
        second.stderr
    );

    // A damaged cache entry is dropped and rebuilt: the image is the same.
    let entries: Vec<PathBuf> = fs::read_dir(dir.join("cache/v1/layers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        entries.len() as u64,
        layers - 1,
        "one entry per store layer"
    );
    for entry in &entries {
        let mut text = fs::read(entry).unwrap();
        text[20] ^= 0x20;
        fs::write(entry, text).unwrap();
    }
    let third = send(dir.path(), "build-layered", &app_spec("gz"), &dest, &[]);
    assert_eq!(third.info["manifestDigest"], first.info["manifestDigest"]);
    let rebuilt = fs::read_dir(dir.join("cache/v1/layers")).unwrap().count() as u64;
    assert_eq!(rebuilt, layers - 1);

    // `cache gc` empties it; the default cache is $XDG_CACHE_HOME/buildimage.
    let out = Buildimage::new()
        .args(["cache", "gc", "--max-size", "0", "--cache"])
        .arg(dir.join("cache"))
        .run_ok();
    assert!(stderr(&out).contains("entries from"), "{}", stderr(&out));
    assert_eq!(
        fs::read_dir(dir.join("cache/v1/layers")).unwrap().count(),
        0
    );
    let spec_file = dir.join("spec-default.json");
    buildimage_test_support::write_json(&spec_file, &app_spec("gz"));
    Buildimage::new()
        .cwd(dir.path())
        .env("XDG_CACHE_HOME", dir.join("xdg"))
        .arg("build-layered")
        .arg(&spec_file)
        .out(format!("oci:{}:other", dir.join("layout2").display()))
        .store(fixture().store())
        .run_ok();
    assert!(
        dir.join("xdg/buildimage/v1/layers")
            .read_dir()
            .unwrap()
            .count()
            > 0
    );
}

#[test]
fn destination_mistakes_are_named_before_any_work() {
    let dir = scratch();
    let spec_file = dir.join("spec.json");
    buildimage_test_support::write_json(&spec_file, &app_spec("zstd"));
    let fails = |dest: &str, extra: &[&str]| {
        let out = Buildimage::new()
            .cwd(dir.path())
            .arg("build-layered")
            .arg(&spec_file)
            .out(dest)
            .store(fixture().store())
            .args(extra)
            .run_err();
        stderr(&out)
    };
    let err = fails("oci-archive:-", &["--json"]);
    assert!(err.contains("--json prints to standard output"), "{err}");
    let err = fails("oic:dir", &[]);
    assert!(err.contains("unknown transport `oic`"), "{err}");
    assert!(!dir.join("oic:dir").exists());
    fs::write(dir.join("notalayout"), b"").unwrap();
    let folder = dir.join("folder");
    fs::create_dir(&folder).unwrap();
    fs::write(folder.join("x"), b"").unwrap();
    let err = fails(&format!("oci:{}", folder.display()), &[]);
    assert!(err.contains("is not an OCI image layout"), "{err}");
    let err = fails(
        &format!("oci:{}", dir.join("l").display()),
        &["--format", "docker"],
    );
    assert!(err.contains("no media type for zstd"), "{err}");
    // A file name with a colon, written as ./NAME.
    let out = Buildimage::new()
        .cwd(dir.path())
        .arg("build-layered")
        .arg(&spec_file)
        .out("./a:b")
        .store(fixture().store())
        .run_ok();
    assert!(dir.join("a:b").is_file(), "{}", stderr(&out));
}
