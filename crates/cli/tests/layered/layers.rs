//! What a layered image holds, read back from the archive: one layer per store path up to
//! `maxLayers`, the customisation layer last, the same bytes from every store source and
//! from both commands.

use std::collections::BTreeSet;

use serde_json::json;

use buildimage_test_support::nix::{copy_store, sqlite};
use buildimage_test_support::{Buildimage, Image, Member};

use super::{
    APP_A, APP_B, APPLETS, BUSYBOX, EPOCH, SHARED, build_layered, fixture, layers, scratch,
};

/// The spec of an image that runs `APP_A`, its files linked into the root by `contents`.
fn app_a_spec(compressor: &str) -> serde_json::Value {
    let fx = fixture();
    json!({
        "name": "app-a", "tag": "t", "compressor": compressor,
        "contents": [fx.path(APP_A), fx.path(BUSYBOX)],
        "config": { "Cmd": ["/bin/app-a"] },
    })
}

/// The members of the layer `index` (0 is the lowest) of `image`.
fn layer_members(image: &Image, index: usize) -> Vec<Member> {
    image.layer_at(&image.layers()[index])
}

#[test]
fn each_store_path_gets_a_layer_and_the_customisation_layer_comes_last() {
    let fx = fixture();
    let dir = scratch();
    let built = build_layered(dir.path(), "app-a", &app_a_spec("none"), fx.store());
    let layers = layers(&built);

    let closure = fx.closure_of(&[APP_A, BUSYBOX]);
    let (custom, store) = layers.split_last().expect("at least one layer");
    assert_eq!(custom.kind, "customisation");
    assert!(custom.store_paths.is_empty(), "{custom:?}");
    assert!(store.iter().all(|l| l.kind == "store"), "{layers:#?}");
    assert_eq!(
        store.len(),
        closure.len(),
        "one layer per store path: {layers:#?}"
    );
    let packed: BTreeSet<String> = store.iter().flat_map(|l| l.store_paths.clone()).collect();
    assert_eq!(packed, closure, "the store layers hold the closure");

    // A store layer: /nix and /nix/store, then the path, absolute names, every entry with
    // the spec's (default) owner and time.
    let image = built.read();
    let shared = fx.path(SHARED);
    let index = layers
        .iter()
        .position(|l| l.store_paths == [shared])
        .unwrap();
    let lines: Vec<String> = layer_members(&image, index)
        .iter()
        .map(Member::line)
        .collect();
    assert_eq!(
        lines,
        [
            "d 0755 0:0 root/root /nix/".to_owned(),
            "d 0755 0:0 root/root /nix/store/".to_owned(),
            format!("d 0555 0:0 root/root {shared}/"),
            format!("d 0555 0:0 root/root {shared}/lib/"),
            format!("- 0444 0:0 root/root {shared}/lib/libshared.txt"),
        ]
    );
    assert!(
        layer_members(&image, index).iter().all(|m| m.mtime == 1),
        "store layers carry `mtime` (1970-01-01T00:00:01Z by default)"
    );

    // The customisation layer: the symlink tree of `contents` (a link to each file, a
    // symlink copied as it is, as lndir does), at SOURCE_DATE_EPOCH, owned by root.
    let custom_members = layer_members(&image, layers.len() - 1);
    let app = fx.path(APP_A);
    let busybox = fx.path(BUSYBOX);
    let lines: Vec<String> = custom_members.iter().map(Member::line).collect();
    let mut want = vec![
        "d 0755 0:0 root/root ./".to_owned(),
        "d 0755 0:0 root/root ./bin/".to_owned(),
        format!("l 0777 0:0 root/root ./bin/app-a -> {app}/bin/app-a"),
        format!("l 0777 0:0 root/root ./bin/busybox -> {busybox}/bin/busybox"),
    ];
    for applet in &APPLETS[1..] {
        want.push(format!("l 0777 0:0 root/root ./bin/{applet} -> busybox"));
    }
    assert_eq!(lines, want);
    assert!(
        custom_members.iter().all(|m| m.mtime == EPOCH),
        "{lines:#?}"
    );

    // The config: the spec's, one history entry per layer, naming its store paths.
    let config = image.config();
    assert_eq!(config["config"]["Cmd"], json!(["/bin/app-a"]));
    let history = config["history"].as_array().unwrap();
    assert_eq!(
        history[index]["comment"],
        json!(format!("store paths: ['{shared}']"))
    );
}

#[test]
fn stream_layered_writes_what_build_layered_writes_uncompressed() {
    let fx = fixture();
    let dir = scratch();
    let built = build_layered(dir.path(), "app-a", &app_a_spec("none"), fx.store());
    let mut spec = app_a_spec("none");
    spec.as_object_mut().unwrap().remove("compressor");
    let streamed = Buildimage::new()
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .stream_layered(dir.spec_named("stream", &spec))
        .store(fx.store())
        .run_ok();
    assert!(
        streamed.stdout == built.bytes(),
        "stream-layered and build-layered with compressor none differ"
    );
    let stderr = String::from_utf8_lossy(&streamed.stderr);
    assert!(
        stderr.contains("buildimage: wrote standard output (app-a:t,"),
        "the summary says where the image went:\n{stderr}"
    );
}

#[test]
fn every_store_source_gives_the_same_bytes() {
    let fx = fixture();
    let dir = scratch();
    let spec = app_a_spec("none");
    let with_db = build_layered(dir.path(), "db", &spec, fx.store());
    let scanned_store = dir.join("scanned");
    copy_store(fx.store(), &scanned_store, false);
    let scanned = build_layered(dir.path(), "scanned", &spec, &scanned_store);
    assert!(
        with_db.bytes() == scanned.bytes(),
        "the store database and a scan of the store give different images"
    );
    let gz = build_layered(dir.path(), "gz", &app_a_spec("gz"), fx.store());
    assert_eq!(
        gz.str("configDigest"),
        with_db.str("configDigest"),
        "the compressor changes the archive, not the image"
    );
}

#[test]
fn max_layers_merges_the_least_popular_paths_into_the_last_store_layer() {
    let fx = fixture();
    let dir = scratch();
    let closure = fx.closure_of(&[APP_A, BUSYBOX]);
    assert_eq!(closure.len(), 3, "app-a, libshared, busybox: {closure:?}");

    let mut spec = app_a_spec("none");
    spec["maxLayers"] = json!(3);
    let three = layers(&build_layered(dir.path(), "three", &spec, fx.store()));
    let kinds: Vec<&str> = three.iter().map(|l| l.kind.as_str()).collect();
    assert_eq!(kinds, ["store", "store", "customisation"]);
    // busybox is referenced by app-a and by the customisation layer: the most popular
    // path keeps a layer of its own; the rest share one.
    assert_eq!(three[0].store_paths, [fx.path(BUSYBOX)]);
    let rest: BTreeSet<String> = three[1].store_paths.iter().cloned().collect();
    assert_eq!(
        rest,
        BTreeSet::from([fx.path(APP_A).to_owned(), fx.path(SHARED).to_owned()])
    );

    spec["maxLayers"] = json!(2);
    let two = layers(&build_layered(dir.path(), "two", &spec, fx.store()));
    assert_eq!(two.len(), 2, "{two:#?}");
    assert_eq!(
        two[0].store_paths.len(),
        3,
        "one store layer holds all: {two:#?}"
    );

    spec["maxLayers"] = json!(4);
    let four = layers(&build_layered(dir.path(), "four", &spec, fx.store()));
    let (custom, store) = four.split_last().expect("layers");
    assert_eq!(custom.kind, "customisation");
    assert!(
        store
            .iter()
            .all(|l| l.kind == "store" && l.store_paths.len() == 1),
        "exactly one layer per path: {four:#?}"
    );
    let packed: BTreeSet<String> = store.iter().flat_map(|l| l.store_paths.clone()).collect();
    assert_eq!(packed, closure);
    spec["maxLayers"] = json!(100);
    let hundred = build_layered(dir.path(), "hundred", &spec, fx.store());
    assert_eq!(
        layers(&hundred),
        four,
        "more layers than paths change nothing"
    );
}

#[test]
fn include_store_paths_false_leaves_only_the_customisation_layer() {
    let fx = fixture();
    let dir = scratch();
    let mut spec = app_a_spec("none");
    spec["includeStorePaths"] = json!(false);
    let built = build_layered(dir.path(), "links-only", &spec, fx.store());
    let layers = layers(&built);
    assert_eq!(layers.len(), 1, "{layers:#?}");
    assert_eq!(layers[0].kind, "customisation");
}

#[test]
fn the_store_database_is_read_rather_than_the_files_scanned() {
    // A reference only the database knows (libshared → app-b, which no file names): a
    // build that reads the database packs app-b, a scan of the same files does not.
    let fx = fixture();
    let dir = scratch();
    let store = dir.join("with-db");
    copy_store(fx.store(), &store, true);
    let db = store.join("nix/var/nix/db/db.sqlite");
    sqlite(
        &db,
        &format!(
            "INSERT INTO Refs (referrer, reference) SELECT a.id, b.id FROM ValidPaths a, \
             ValidPaths b WHERE a.path = '{}' AND b.path = '{}'",
            fx.path(SHARED),
            fx.path(APP_B)
        ),
    );
    let spec = app_a_spec("none");
    let packed = |built: &buildimage_test_support::Built| -> BTreeSet<String> {
        layers(built)
            .into_iter()
            .flat_map(|l| l.store_paths)
            .collect()
    };
    let from_db = packed(&build_layered(dir.path(), "db", &spec, &store));
    let mut want = fx.closure_of(&[APP_A, BUSYBOX]);
    want.insert(fx.path(APP_B).to_owned());
    assert_eq!(from_db, want, "the database's references");
    let scanned_store = dir.join("scanned");
    copy_store(fx.store(), &scanned_store, false);
    let scanned = packed(&build_layered(dir.path(), "scanned", &spec, &scanned_store));
    assert_eq!(
        scanned,
        fx.closure_of(&[APP_A, BUSYBOX]),
        "the files' references"
    );
}
