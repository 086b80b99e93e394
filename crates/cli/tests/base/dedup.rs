//! De-duplication of the layer's store closure against the base (docs/formats.md
//! §5.6): a store file the base already has is not packed again, file by file, and
//! neither are `./nix/` and `./nix/store/`; a store path that a later base layer deletes
//! (`.wh.NAME`) or hides (`.wh..wh..opq`) is packed again.
//!
//! The store is made by hand: `store/nix/store/<32 nix32 characters>-name` folders, no
//! database, so buildimage finds references by scanning, as `--store DIR` allows.

use std::ffi::OsStr;
use std::path::PathBuf;

use serde_json::{Value, json};

use buildimage_test_support::{Built, Image, Member, docker, mkdir, write, write_tar};

use super::{Case, clean_names};

/// Hash parts of the fake store paths (Nix's base-32 alphabet has no `e`, `o`, `u`, `t`).
const HELLO_HASH: &str = "1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r6s";
const DEP_HASH: &str = "zyxwvsrqpnmlkjihgfdcba9876543210";

/// `/nix/store/<hash>-hello-1.0`: `bin/hello` (a script that reads a file of `DEP`) and
/// `share/doc.txt`.
fn hello() -> String {
    format!("/nix/store/{HELLO_HASH}-hello-1.0")
}

/// `/nix/store/<hash>-dep-1.0`: `share/msg.txt`.
fn dep() -> String {
    format!("/nix/store/{DEP_HASH}-dep-1.0")
}

/// What `hello`'s `bin/hello` holds: it names `dep`, so `dep` is in its closure.
fn hello_script() -> String {
    format!("#!/bin/sh\ncat {}/share/msg.txt\n", dep())
}

/// Makes the store in `case/store` and a busybox image root in `case/root`; returns the
/// `--store` arguments.
fn fake_store(case: &Case) -> [std::ffi::OsString; 2] {
    let store = case.join("store");
    let at = |path: &str| -> PathBuf { store.join(path.trim_start_matches('/')) };
    for dir in ["", "nix", "nix/store"] {
        mkdir(&store.join(dir), 0o755);
    }
    for dir in [
        hello(),
        format!("{}/bin", hello()),
        format!("{}/share", hello()),
    ] {
        mkdir(&at(&dir), 0o755);
    }
    write(
        &at(&format!("{}/bin/hello", hello())),
        hello_script().as_bytes(),
        0o555,
    );
    write(&at(&format!("{}/share/doc.txt", hello())), b"doc\n", 0o444);
    for dir in [dep(), format!("{}/share", dep())] {
        mkdir(&at(&dir), 0o755);
    }
    write(
        &at(&format!("{}/share/msg.txt", dep())),
        b"hello from the store\n",
        0o444,
    );
    case.busybox_root("root");
    [OsStr::new("--store").to_owned(), store.into_os_string()]
}

/// The spec of an image whose `Cmd` is `hello`'s program, which puts `hello` and `dep`
/// into the layer's closure.
fn runs_hello(name: &str, extra: &Value) -> Value {
    let mut spec = json!({
        "name": format!("buildimage-test/{name}"),
        "tag": "1",
        "config": { "Cmd": [format!("{}/bin/hello", hello())] },
    });
    for (key, value) in extra.as_object().expect("an object") {
        spec[key] = value.clone();
    }
    spec
}

/// Builds with the fake store.
fn build(case: &Case, store: &[std::ffi::OsString; 2], name: &str, spec: &Value) -> Built {
    let args: Vec<&OsStr> = store.iter().map(std::ffi::OsString::as_os_str).collect();
    case.build_with(name, spec, &args)
}

/// A base built by buildimage from the busybox root with `hello`'s closure in its layer,
/// uncompressed as `base.tar`.
fn base_with_hello(case: &Case, store: &[std::ffi::OsString; 2]) -> Image {
    let base = build(
        case,
        store,
        "base",
        &runs_hello(
            "dedup-base",
            &json!({ "copyToRoot": "root", "compressor": "none" }),
        ),
    );
    let archive = Image::open(&base.archive);
    let names = clean_names(&archive.layer_at(&archive.layers()[0]));
    for path in [hello(), dep()] {
        let path = path.trim_start_matches('/');
        assert!(
            names.iter().any(|n| n == path),
            "no {path} in the base: {names:?}"
        );
    }
    archive
}

/// The names in the new (last) layer of `built`, without `./` and a trailing `/`, the
/// root left out.
fn new_layer_names(built: &Built) -> Vec<String> {
    let archive = Image::open(&built.archive);
    let layers = archive.layers();
    let mut names = clean_names(&archive.layer_at(layers.last().expect("a layer")));
    names.retain(|n| !n.is_empty());
    names
}

/// Every path of the store path `path` as the layer names them, sorted.
fn store_names(path: &str, below: &[&str]) -> Vec<String> {
    let path = path.trim_start_matches('/');
    std::iter::once(path.to_owned())
        .chain(below.iter().map(|b| format!("{path}/{b}")))
        .collect()
}

/// Loads `built` and checks that its `Cmd`, `hello`, prints the file of `dep`.
fn assert_hello_runs(built: &Built) {
    let docker = docker();
    let image = docker.load_guarded(&built.archive);
    assert_eq!(
        docker.run(image.name(), &[]).assert_success(),
        "hello from the store\n"
    );
}

/// A base of the busybox root alone, named `buildimage-test/{name}:1`.
fn busybox_base(case: &Case, name: &str) -> Image {
    let base = case.build(
        "busybox",
        &json!({
            "name": format!("buildimage-test/{name}"),
            "tag": "1",
            "copyToRoot": "root",
            "compressor": "none",
        }),
    );
    Image::open(&base.archive)
}

/// `archive` with one more layer of `members` (absolute names when `absolute`), saved as
/// `NAME.tar`, and the child that runs `hello` on it.
fn child_over(
    case: &Case,
    store: &[std::ffi::OsString; 2],
    mut archive: Image,
    members: &[Member],
    absolute: bool,
    name: &str,
) -> Built {
    archive.push_layer(&write_tar(members, absolute));
    archive.save(&case.join(format!("{name}.tar")));
    build(
        case,
        store,
        "child",
        &runs_hello(
            &format!("dedup-{name}"),
            &json!({ "fromImage": format!("{name}.tar") }),
        ),
    )
}

/// Every path of `hello`'s closure as the layer names them.
fn whole_closure() -> Vec<String> {
    let mut names = store_names(&hello(), &["bin", "bin/hello", "share", "share/doc.txt"]);
    names.extend(store_names(&dep(), &["share", "share/msg.txt"]));
    names
}

#[test]
fn store_paths_the_base_already_has_are_not_packed_again() {
    let case = Case::new();
    let store = fake_store(&case);
    base_with_hello(&case, &store);
    let child = build(
        &case,
        &store,
        "child",
        &runs_hello("dedup-child", &json!({ "fromImage": "base.tar" })),
    );
    assert_eq!(
        child.info["storePaths"],
        json!([hello(), dep()]),
        "the closure is still computed"
    );
    assert_eq!(
        new_layer_names(&child),
        Vec::<String>::new(),
        "the child repeats the base's store files or /nix"
    );
    assert_hello_runs(&child);
}

/// Dropping works per file: a base layer with only `hello`'s `bin/hello` (and the folders
/// above it) makes the child pack `hello`'s `share/` and all of `dep`, nothing else.
#[test]
fn store_files_are_deduplicated_one_by_one_against_the_base() {
    let case = Case::new();
    let store = fake_store(&case);
    let h = hello();
    let h = h.trim_start_matches('/');
    let child = child_over(
        &case,
        &store,
        busybox_base(&case, "dedup-busybox"),
        &[
            Member::dir("nix/", 0o555),
            Member::dir("nix/store/", 0o555),
            Member::dir(format!("{h}/"), 0o555),
            Member::dir(format!("{h}/bin/"), 0o555),
            Member::file(format!("{h}/bin/hello"), hello_script(), 0o555),
        ],
        false,
        "partial",
    );
    let mut expected = vec![format!("{h}/share"), format!("{h}/share/doc.txt")];
    expected.extend(store_names(&dep(), &["share", "share/msg.txt"]));
    assert_eq!(new_layer_names(&child), expected);
    assert_hello_runs(&child);
}

/// docs/formats.md §5.6: nixpkgs counts a path that a later base layer whites out as present, so the store
/// path is missing from its image. buildimage applies the whiteout and packs it again;
/// `/nix/store` itself is still there, so `./nix/` and `./nix/store/` are not added.
#[test]
fn store_path_whited_out_by_a_later_base_layer_is_packed_again() {
    let case = Case::new();
    let store = fake_store(&case);
    let child = child_over(
        &case,
        &store,
        base_with_hello(&case, &store),
        &[
            Member::dir("nix/", 0o555),
            Member::dir("nix/store/", 0o555),
            Member::file(format!("nix/store/.wh.{HELLO_HASH}-hello-1.0"), "", 0o644),
        ],
        false,
        "whiteout",
    );
    assert_eq!(
        new_layer_names(&child),
        store_names(&hello(), &["bin", "bin/hello", "share", "share/doc.txt"])
    );
    assert_hello_runs(&child);
}

/// The same with an opaque `/nix/store` (`.wh..wh..opq`): every store path is hidden, so
/// both are packed again, and the folder itself still needs no `./nix/store/` entry.
#[test]
fn opaque_nix_store_in_a_later_base_layer_makes_every_store_path_packed_again() {
    let case = Case::new();
    let store = fake_store(&case);
    let child = child_over(
        &case,
        &store,
        base_with_hello(&case, &store),
        &[
            Member::dir("nix/", 0o555),
            Member::dir("nix/store/", 0o555),
            Member::file("nix/store/.wh..wh..opq", "", 0o644),
        ],
        false,
        "opaque",
    );
    assert_eq!(new_layer_names(&child), whole_closure());
    assert_hello_runs(&child);
}

/// A later base layer deletes `/nix/store` itself (`nix/.wh.store`): the base has no
/// `/nix/store` any more, so the child adds `./nix/` and `./nix/store/` (0555, root) in
/// front of both store paths again.
#[test]
fn nix_store_whited_out_in_the_base_gets_its_nix_entries_again() {
    let case = Case::new();
    let store = fake_store(&case);
    let child = child_over(
        &case,
        &store,
        base_with_hello(&case, &store),
        &[
            Member::dir("nix/", 0o555),
            Member::file("nix/.wh.store", "", 0o644),
        ],
        false,
        "no-store",
    );
    let mut expected = vec!["nix".to_owned(), "nix/store".to_owned()];
    expected.extend(whole_closure());
    assert_eq!(new_layer_names(&child), expected);
    let out = Image::open(&child.archive);
    let members = out.layer_at(out.layers().last().expect("a layer"));
    let nix: Vec<(String, u32)> = members
        .iter()
        .filter(|m| m.name == b"./nix/" || m.name == b"./nix/store/")
        .map(|m| (m.name(), m.mode))
        .collect();
    assert_eq!(
        nix,
        [
            ("./nix/".to_owned(), 0o555),
            ("./nix/store/".to_owned(), 0o555)
        ]
    );
    assert_hello_runs(&child);
}

/// A base layer in `streamLayeredImage`'s form holds the whole closure under absolute
/// names (`/nix/store/…`, PAX headers): names are compared without the leading `/`, so the
/// child packs nothing of it again.
#[test]
fn store_paths_under_absolute_names_in_a_base_layer_are_not_packed_again() {
    let case = Case::new();
    let store = fake_store(&case);
    let (h, d) = (hello(), dep());
    let child = child_over(
        &case,
        &store,
        busybox_base(&case, "dedup-absolute-base"),
        &[
            Member::dir("/nix/", 0o555),
            Member::dir("/nix/store/", 0o555),
            Member::dir(format!("{d}/"), 0o555),
            Member::dir(format!("{d}/share/"), 0o555),
            Member::file(
                format!("{d}/share/msg.txt"),
                "hello from the store\n",
                0o444,
            ),
            Member::dir(format!("{h}/"), 0o555),
            Member::dir(format!("{h}/bin/"), 0o555),
            Member::file(format!("{h}/bin/hello"), hello_script(), 0o555),
            Member::dir(format!("{h}/share/"), 0o555),
            Member::file(format!("{h}/share/doc.txt"), "doc\n", 0o444),
        ],
        true,
        "absolute",
    );
    assert_eq!(
        new_layer_names(&child),
        Vec::<String>::new(),
        "the child repeats store files the base has under absolute names"
    );
    assert_hello_runs(&child);
}

/// docs/formats.md §5.4 and §5.6: only the selected image's layers count. In an archive of A (which has `hello`'s
/// closure) and B (which has not), a child of B packs the closure, `./nix/` and
/// `./nix/store/` included; nixpkgs would look at A's layers too and leave them out.
#[test]
fn store_files_only_another_image_of_the_base_archive_has_are_packed() {
    let case = Case::new();
    let store = fake_store(&case);
    let a = base_with_hello(&case, &store);
    a.merge(&busybox_base(&case, "dedup-b"))
        .save(&case.join("two.tar"));
    let child = build(
        &case,
        &store,
        "child",
        &runs_hello(
            "dedup-selected",
            &json!({
                "fromImage": "two.tar",
                "fromImageName": "buildimage-test/dedup-b",
                "fromImageTag": "1",
            }),
        ),
    );
    let mut expected = vec!["nix".to_owned(), "nix/store".to_owned()];
    expected.extend(whole_closure());
    assert_eq!(new_layer_names(&child), expected);
    assert_hello_runs(&child);
}
