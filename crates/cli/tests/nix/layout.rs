//! What a `copyToRoot` store path brings into an image: the closure of what its files name,
//! every file of it under `/nix/store` owned by root, and nothing else from the store.

use std::fs;
use std::os::unix::fs::MetadataExt;

use serde_json::json;

use super::{
    BUSYBOX, BUSYBOX_ROOT, DEP, HELLO, LINK, MOTD, NOTE, ROOT, UNUSED, assert_same_tree, build,
    fixture, scratch, store_listing,
};
use buildimage_test_support::{Image, read_tar, tarsum, unpack_oci};

/// `copyToRoot` = the `buildEnv`-like root, with a non-root `uid`/`gid` for the layer.
fn spec() -> serde_json::Value {
    json!({
        "name": "nix-layout",
        "tag": "1",
        "copyToRoot": fixture().path(ROOT),
        "uid": 1000,
        "gid": 100,
        "compressor": "none",
    })
}

#[test]
fn json_store_paths_are_the_requisites_of_what_the_copied_root_names() {
    let fx = fixture();
    let dir = scratch();
    let built = build(dir.path(), "layout", &spec(), &fx.store, &[]);
    // The root's files name `hello` (bin/hello is a copy of its file, since rsync -k turns
    // the `bin` dirlink into a folder), and its symlinks to files name `hello-link`,
    // `greeting.txt` and `motd.txt`; the root itself is named by nothing in the layer, so it
    // stays out, as in nixpkgs.
    let root_refs = &fx.info(fx.path(ROOT)).references;
    let want = fx.requisites(root_refs.iter().map(String::as_str));
    assert_eq!(
        want,
        fx.closure_of(&[LINK, HELLO, DEP, NOTE, MOTD]),
        "the fixture changed"
    );
    assert_eq!(built.store_paths(), want, "--json storePaths");
}

#[test]
fn layer_checksum_is_taken_before_the_closure_is_appended() {
    let fx = fixture();
    let dir = scratch();
    let built = build(dir.path(), "checksum", &spec(), &fx.store, &[]);
    let image = Image::open(&built.archive);
    let members = read_tar(image.layer_tar());
    let closure = members
        .iter()
        .position(|m| m.name == b"./nix/")
        .expect("the closure starts with ./nix/");
    assert!(
        members[closure..]
            .iter()
            .all(|m| m.name.starts_with(b"./nix/") || m.name.starts_with(b"nix/store/")),
        "only the closure follows ./nix/ (its paths named as `find nix/store` lists them)"
    );
    // nixpkgs runs tarsum on the layer before it appends the closure.
    assert_eq!(
        image.layer_json()["checksum"],
        tarsum(&members[..closure], false),
        "the checksum covers the copied root only"
    );
}

#[test]
fn closure_files_are_under_nix_store_owned_by_root_and_nothing_else_is() {
    let fx = fixture();
    let dir = scratch();
    let built = build(dir.path(), "layout", &spec(), &fx.store, &[]);
    let unpacked = unpack_oci(&built.archive);
    let rootfs = unpacked.rootfs();

    let want = fx.closure_of(&[LINK, NOTE, MOTD]);
    assert_eq!(
        store_listing(&rootfs),
        want,
        "the image's /nix/store must hold exactly the closure: not the copied root, not \
         {UNUSED}, not the .drv files"
    );
    for unwanted in [ROOT, UNUSED, BUSYBOX, BUSYBOX_ROOT] {
        let path = fx.path(unwanted);
        assert!(
            fs::symlink_metadata(rootfs.join(&path[1..])).is_err(),
            "{path} is in the image, but nothing there refers to it"
        );
    }
    for path in &want {
        // Every file, folder and symlink of the store path, with its mode, contents and
        // target, owned by 0:0 although the spec says uid 1000, gid 100.
        assert_same_tree(&fx.host(path), &rootfs.join(&path[1..]), (0, 0));
    }

    for folder in ["nix", "nix/store"] {
        let meta = fs::symlink_metadata(rootfs.join(folder)).expect("stat /nix");
        assert!(meta.is_dir(), "/{folder} is not a folder");
        assert_eq!(
            (
                format!("{:o}", meta.mode() & 0o7777),
                meta.uid(),
                meta.gid()
            ),
            ("555".to_owned(), 0, 0),
            "mode and owner of /{folder}: every user must be able to traverse it"
        );
    }

    let link = rootfs.join(&fx.path(LINK)[1..]);
    let meta = fs::symlink_metadata(&link).expect("stat the hello-link store path");
    assert!(
        meta.file_type().is_symlink(),
        "{} must stay a symlink",
        fx.path(LINK)
    );
    assert_eq!(
        fs::read_link(&link).expect("read hello-link"),
        std::path::Path::new(&format!("{}/bin/hello", fx.path(HELLO)))
    );

    // The layer's own entries keep the spec's owner.
    let greet = fs::symlink_metadata(rootfs.join("greet")).expect("stat /greet");
    assert_eq!((greet.uid(), greet.gid()), (1000, 100), "owner of /greet");
    assert_eq!(
        fs::read_link(rootfs.join("greet")).expect("read /greet"),
        std::path::Path::new(fx.path(LINK))
    );
    let hello = rootfs.join("bin/hello");
    let meta = fs::symlink_metadata(&hello).expect("stat /bin/hello");
    assert!(meta.is_file(), "/bin/hello must be a copy (rsync -k)");
    assert_eq!((meta.uid(), meta.gid()), (1000, 100), "owner of /bin/hello");
    assert_eq!(
        fs::read(&hello).expect("read /bin/hello"),
        fs::read(fx.host(fx.path(HELLO)).join("bin/hello")).expect("read hello's bin/hello")
    );
}
