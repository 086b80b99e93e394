//! Layered images in the hands of their consumers: Docker loads and runs them and shares
//! the layers two images have in common; skopeo and umoci unpack them into the root file
//! system that `build` makes of the same files.

use std::fs;
use std::path::Path;
use std::process::Stdio;

use serde_json::json;

use buildimage_test_support::{Buildimage, docker, ln_s, mkdir, run_ok, stderr, unpack_oci};

use super::{
    APP_A, APP_B, BUSYBOX, EPOCH, SHARED, SHARED_TEXT, build_layered, build_with, fixture,
    layer_of, layers, scratch,
};

/// The spec of an image that runs `app` (`APP_A` or `APP_B`), gzip-compressed.
fn app_spec(name: &str, app: &str) -> serde_json::Value {
    let fx = fixture();
    json!({
        "name": name, "tag": "t",
        "contents": [fx.path(app), fx.path(BUSYBOX)],
        "config": { "Cmd": [format!("/bin/{name}")] },
    })
}

#[test]
fn two_apps_share_the_layer_of_their_common_dependency() {
    let fx = fixture();
    let dir = scratch();
    let a = build_layered(dir.path(), "app-a", &app_spec("app-a", APP_A), fx.store());
    let b = build_layered(dir.path(), "app-b", &app_spec("app-b", APP_B), fx.store());
    let (layers_a, layers_b) = (layers(&a), layers(&b));
    for shared in [SHARED, BUSYBOX] {
        let path = fx.path(shared);
        assert_eq!(
            layer_of(&layers_a, path).diff_id,
            layer_of(&layers_b, path).diff_id,
            "{path} is one layer, the same in both images"
        );
    }
    assert_ne!(
        layer_of(&layers_a, fx.path(APP_A)).diff_id,
        layer_of(&layers_b, fx.path(APP_B)).diff_id
    );

    let docker = docker();
    let image_a = docker.load_guarded(&a.archive);
    let image_b = docker.load_guarded(&b.archive);
    for (image, built, name) in [(&image_a, &a, "app-a"), (&image_b, &b, "app-b")] {
        assert_eq!(image.name(), built.image());
        let out = docker.run(image.name(), &[]);
        assert_eq!(out.assert_success(), format!("{SHARED_TEXT}\n{name}\n"));
        // One `docker history` entry per layer, newest first.
        let history = run_ok(docker.command().args([
            "history",
            "--no-trunc",
            "--format",
            "{{.Comment}}",
            image.name(),
        ]));
        let comments: Vec<String> = String::from_utf8_lossy(&history.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        let layers = layers(built);
        assert_eq!(
            comments.len(),
            layers.len(),
            "docker history: {comments:#?}"
        );
        assert_eq!(comments[0], "customisation layer");
        assert_eq!(
            comments.last().map(String::as_str),
            Some(&*format!("store paths: ['{}']", layers[0].store_paths[0]))
        );
        let diff_ids = docker.inspect(image.name(), "{{json .RootFS.Layers}}");
        let want: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
        assert_eq!(diff_ids.trim(), serde_json::to_string(&want).unwrap());
    }
}

#[test]
fn stream_layered_output_loads_through_a_pipe() {
    let fx = fixture();
    let dir = scratch();
    let spec = dir.spec_named("stream", &app_spec("app-a", APP_A));
    let docker = docker();
    let mut stream = Buildimage::new();
    stream
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .stream_layered(&spec)
        .store(fx.store());
    let mut child = stream.spawn(Stdio::piped(), Stdio::piped());
    let image = docker.load_stream(child.stdout.take().expect("piped stdout"));
    let streamed = child.wait_with_output().expect("wait for stream-layered");
    assert!(
        streamed.status.success(),
        "stream-layered: {}",
        stderr(&streamed)
    );
    let out = docker.run(image.name(), &[]);
    assert_eq!(out.assert_success(), format!("{SHARED_TEXT}\napp-a\n"));
}

/// What `symlinkJoin` (lndir) makes of `paths` at `root`: real folders (0755), symlinks
/// copied as they are, and for every other file a symlink to it in the store; the first
/// path providing a name wins.
fn link_tree(store: &Path, paths: &[&str], root: &Path) {
    fn walk(host: &Path, in_store: &Path, at: &Path) {
        for entry in fs::read_dir(host).expect("list a store folder") {
            let entry = entry.expect("list a store folder");
            let (host, in_store) = (entry.path(), in_store.join(entry.file_name()));
            let at = at.join(entry.file_name());
            if entry.file_type().expect("file type").is_dir() {
                if !at.exists() {
                    mkdir(&at, 0o755);
                }
                walk(&host, &in_store, &at);
            } else if fs::symlink_metadata(&at).is_err() {
                let target = fs::read_link(&host).unwrap_or(in_store);
                ln_s(&target, &at);
            }
        }
    }
    mkdir(root, 0o755);
    for path in paths {
        let host = store.join(path.trim_start_matches('/'));
        walk(&host, Path::new(path), root);
    }
}

#[test]
fn the_root_file_system_is_what_build_makes_of_the_same_files() {
    let fx = fixture();
    let dir = scratch();
    let contents = [fx.path(APP_A), fx.path(BUSYBOX)];
    let layered = build_layered(dir.path(), "layered", &app_spec("app-a", APP_A), fx.store());

    // The same symlink tree, made here, is `build`'s copyToRoot; its store references
    // bring in the same closure.
    link_tree(fx.store(), &contents, &dir.join("root"));
    let built = build_with(
        Buildimage::new(),
        "build",
        dir.path(),
        "built",
        &json!({
            "name": "app-a", "tag": "t", "copyToRoot": "root", "compressor": "none",
            "config": { "Cmd": ["/bin/app-a"] },
        }),
        fx.store(),
    );
    assert_eq!(
        built.store_paths(),
        fx.closure_of(&[APP_A, BUSYBOX]),
        "build packs the same closure"
    );

    let (from_layered, from_build) = (
        unpack_oci(&layered.archive).listing(),
        unpack_oci(&built.archive).listing(),
    );
    // The documented differences, as nixpkgs has them: buildImage's root folder is 0775
    // and its /nix and /nix/store 0555; the layered image's are 0755.
    let differs = |line: &&String| {
        line.ends_with(" .") || line.ends_with(" ./nix") || line.ends_with(" ./nix/store")
    };
    let split = |listing: Vec<String>| -> (Vec<String>, Vec<String>) {
        listing.into_iter().partition(|line| differs(&line))
    };
    let ((layered_top, layered_rest), (build_top, build_rest)) =
        (split(from_layered), split(from_build));
    assert_eq!(
        layered_top,
        [
            "drwxr-xr-x 0:0 4 .",
            "drwxr-xr-x 0:0 3 ./nix",
            "drwxr-xr-x 0:0 5 ./nix/store"
        ]
    );
    assert_eq!(
        build_top,
        [
            "drwxrwxr-x 0:0 4 .",
            "dr-xr-xr-x 0:0 3 ./nix",
            "dr-xr-xr-x 0:0 5 ./nix/store"
        ]
    );
    assert_eq!(layered_rest, build_rest);
}
