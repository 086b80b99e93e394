//! The layer's entries (docs/formats.md §1.4–1.6): names, order, owners, times, modes, and
//! how `copyToRoot` items are copied.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;

use serde_json::json;

use super::{build_in, test_dir};
use buildimage_test_support::{
    Buildimage, DEFAULT_CREATED, EPOCH_1980, Image, TestDir, chmod, ln_s, mkdir, stderr, write,
};

#[test]
fn layer_entries_are_dot_slash_names_sorted_byte_wise_depth_first() {
    let scratch = test_dir();
    let root = scratch.join("root");
    mkdir(&root, 0o755);
    // Byte order: 'B' < '_' < 'a'; "a" < "a-b" < "a.b" between siblings, so the folder
    // `a/` and its contents come before `a-b` although "a-b" < "a/x" as full paths.
    for name in ["a.b", "_x", "a-b", "B", "\u{e9}"] {
        write(&root.join(name), name.as_bytes(), 0o644);
    }
    mkdir(&root.join("a"), 0o755);
    write(&root.join("a/x"), b"x", 0o600);
    mkdir(&root.join("a/sub"), 0o700);
    ln_s("../x", &root.join("a/sub/link"));
    let (image, _) = build_in(
        &scratch,
        &json!({ "name": "order", "tag": "t", "copyToRoot": "root", "compressor": "none" }),
    );
    assert_eq!(
        image.layer_listing(),
        [
            "d 0775 0:0 root/root ./",
            "- 0644 0:0 root/root ./B",
            "- 0644 0:0 root/root ./_x",
            "d 0755 0:0 root/root ./a/",
            "d 0700 0:0 root/root ./a/sub/",
            "l 0777 0:0 root/root ./a/sub/link -> ../x",
            "- 0600 0:0 root/root ./a/x",
            "- 0644 0:0 root/root ./a-b",
            "- 0644 0:0 root/root ./a.b",
            "- 0644 0:0 root/root ./\\xc3\\xa9",
        ]
    );
    assert_eq!(image.layer_file("./a-b"), b"a-b");
    for member in image.layer() {
        assert_eq!(member.mtime, EPOCH_1980, "{}", member.name());
        assert!(member.gnu, "{}: GNU tar format", member.name());
    }
}

#[test]
fn layer_owner_comes_from_uid_and_gid_with_names_only_for_root() {
    let scratch = test_dir();
    let root = scratch.join("root");
    mkdir(&root, 0o755);
    write(&root.join("f"), b"f", 0o644);
    let listing = |uid: u32, gid: u32| {
        let spec = json!({
            "name": "owner", "tag": "t", "copyToRoot": "root", "compressor": "none",
            "uid": uid, "gid": gid, "extraCommands": "echo made > made",
        });
        build_in(&scratch, &spec).0.layer_listing()
    };
    assert_eq!(
        listing(0, 0),
        [
            "d 0775 0:0 root/root ./",
            "- 0644 0:0 root/root ./f",
            "- 0644 0:0 root/root ./made",
        ]
    );
    // The host's user database is never read: other ids have empty names.
    assert_eq!(
        listing(1000, 100),
        [
            "d 0775 1000:100 / ./",
            "- 0644 1000:100 / ./f",
            "- 0644 1000:100 / ./made",
        ]
    );
    assert_eq!(
        listing(0, 65534),
        [
            "d 0775 0:65534 root/ ./",
            "- 0644 0:65534 root/ ./f",
            "- 0644 0:65534 root/ ./made",
        ]
    );
}

#[test]
fn layer_times_are_1980_or_source_date_epoch_and_created_stays() {
    let scratch = test_dir();
    let root = scratch.join("root");
    mkdir(&root.join("d"), 0o755);
    write(&root.join("d/f"), b"f", 0o644);
    ln_s("d/f", &root.join("l"));
    let spec_path = scratch.spec(&json!({
        "name": "times", "tag": "t", "copyToRoot": "root", "compressor": "none",
    }));
    let out = scratch.join("image.tar");
    Buildimage::new()
        .cwd(scratch.path())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .build(&spec_path)
        .out(&out)
        .run_ok();
    let image = Image::open(&out);
    let layer = image.layer();
    assert_eq!(layer.len(), 4, "{:?}", image.layer_listing());
    for member in &layer {
        assert_eq!(member.mtime, 1_700_000_000, "{}", member.name());
    }
    // SOURCE_DATE_EPOCH changes the tar times only, never `created`.
    assert_eq!(image.config()["created"], DEFAULT_CREATED);
    assert_eq!(image.layer_json()["created"], DEFAULT_CREATED);
}

#[test]
fn layer_root_gets_ug_write_with_and_without_copy_to_root() {
    let scratch = test_dir();
    let (image, _) = build_in(
        &scratch,
        &json!({ "name": "empty", "tag": "t", "compressor": "none" }),
    );
    assert_eq!(image.layer_listing(), ["d 0775 0:0 root/root ./"]);

    // A store path's root is 0555; the last item's root mode is the layer's, plus ug+w.
    let store_like = scratch.join("store-like");
    mkdir(&store_like.join("bin"), 0o555);
    write(&store_like.join("bin/tool"), b"tool", 0o555);
    chmod(&store_like, 0o555);
    let private = scratch.join("private");
    mkdir(&private, 0o700);
    for (items, root) in [
        (json!("store-like"), "d 0775 0:0 root/root ./"),
        (json!(["store-like", "private"]), "d 0720 0:0 root/root ./"),
        (json!(["private", "store-like"]), "d 0775 0:0 root/root ./"),
    ] {
        let spec = json!({ "name": "root", "tag": "t", "compressor": "none", "copyToRoot": items });
        let (image, _) = build_in(&scratch, &spec);
        let listing = image.layer_listing();
        assert_eq!(listing[0], root, "copyToRoot {items}");
        assert!(
            listing.contains(&"- 0555 0:0 root/root ./bin/tool".to_owned()),
            "{listing:?}"
        );
    }
}

#[test]
fn later_copy_to_root_items_win_and_directories_merge() {
    let scratch = test_dir();
    let first = scratch.join("first");
    let second = scratch.join("second");
    mkdir(&first.join("etc"), 0o755);
    write(&first.join("etc/only-first"), b"1", 0o644);
    write(&first.join("etc/both"), b"from first", 0o600);
    write(&first.join("file-then-dir"), b"a file", 0o644);
    mkdir(&first.join("dir-then-file"), 0o755);
    write(&first.join("dir-then-file/inside"), b"gone", 0o644);
    mkdir(&second.join("etc"), 0o750);
    write(&second.join("etc/only-second"), b"2", 0o644);
    write(&second.join("etc/both"), b"from second", 0o640);
    mkdir(&second.join("file-then-dir"), 0o755);
    write(&second.join("file-then-dir/inside"), b"new", 0o644);
    write(&second.join("dir-then-file"), b"now a file", 0o644);
    chmod(&first, 0o755);
    chmod(&second, 0o755);
    let (image, _) = build_in(
        &scratch,
        &json!({ "name": "merge", "tag": "t", "copyToRoot": ["first", "second"], "compressor": "none" }),
    );
    assert_eq!(
        image.layer_listing(),
        [
            "d 0775 0:0 root/root ./",
            "- 0644 0:0 root/root ./dir-then-file",
            "d 0750 0:0 root/root ./etc/",
            "- 0640 0:0 root/root ./etc/both",
            "- 0644 0:0 root/root ./etc/only-first",
            "- 0644 0:0 root/root ./etc/only-second",
            "d 0755 0:0 root/root ./file-then-dir/",
            "- 0644 0:0 root/root ./file-then-dir/inside",
        ]
    );
    assert_eq!(image.layer_file("./etc/both"), b"from second");
    assert_eq!(image.layer_file("./dir-then-file"), b"now a file");
}

/// A `buildEnv`-like item whose `bin` is a symlink to a folder in another item, plus a
/// symlink to a file and a dangling one.
fn dirlink_sources(scratch: &TestDir) {
    let pkg = scratch.join("pkg");
    mkdir(&pkg.join("bin"), 0o555);
    write(&pkg.join("bin/hello"), b"hello", 0o555);
    let env = scratch.join("env");
    mkdir(&env, 0o755);
    ln_s("../pkg/bin", &env.join("bin"));
    ln_s("../pkg/bin/hello", &env.join("hello"));
    ln_s("nowhere", &env.join("dangling"));
}

#[test]
fn directory_symlinks_become_directories_by_default() {
    let scratch = test_dir();
    dirlink_sources(&scratch);
    let (image, _) = build_in(
        &scratch,
        &json!({ "name": "dirlinks", "tag": "t", "copyToRoot": "env", "compressor": "none" }),
    );
    assert_eq!(
        image.layer_listing(),
        [
            "d 0775 0:0 root/root ./",
            "d 0555 0:0 root/root ./bin/",
            "- 0555 0:0 root/root ./bin/hello",
            "l 0777 0:0 root/root ./dangling -> nowhere",
            "l 0777 0:0 root/root ./hello -> ../pkg/bin/hello",
        ]
    );
    assert_eq!(image.layer_file("./bin/hello"), b"hello");
}

#[test]
fn keep_contents_dirlinks_keeps_directory_symlinks() {
    let scratch = test_dir();
    dirlink_sources(&scratch);
    let spec = json!({
        "name": "dirlinks", "tag": "t", "copyToRoot": "env", "compressor": "none",
        "keepContentsDirlinks": true,
    });
    let (image, _) = build_in(&scratch, &spec);
    assert_eq!(
        image.layer_listing(),
        [
            "d 0775 0:0 root/root ./",
            "l 0777 0:0 root/root ./bin -> ../pkg/bin",
            "l 0777 0:0 root/root ./dangling -> nowhere",
            "l 0777 0:0 root/root ./hello -> ../pkg/bin/hello",
        ]
    );
}

#[test]
fn sockets_are_skipped_with_a_warning_on_stderr() {
    let scratch = test_dir();
    let root = scratch.join("root");
    mkdir(&root, 0o755);
    write(&root.join("kept"), b"kept", 0o644);
    let _listener = UnixListener::bind(root.join("sock")).expect("bind a unix socket");
    let (image, output) = build_in(
        &scratch,
        &json!({ "name": "socket", "tag": "t", "copyToRoot": "root", "compressor": "none" }),
    );
    assert_eq!(
        image.layer_listing(),
        ["d 0775 0:0 root/root ./", "- 0644 0:0 root/root ./kept"]
    );
    let stderr = stderr(&output);
    assert!(
        stderr
            .lines()
            .any(|line| line.starts_with("warning:") && line.contains("sock")),
        "a warning naming the socket: {stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn hard_links_become_separate_regular_files() {
    let scratch = test_dir();
    let root = scratch.join("root");
    mkdir(&root, 0o755);
    write(&root.join("one"), b"same inode", 0o644);
    fs::hard_link(root.join("one"), root.join("two")).expect("hard link");
    let (image, _) = build_in(
        &scratch,
        &json!({ "name": "hardlinks", "tag": "t", "copyToRoot": "root", "compressor": "none" }),
    );
    assert_eq!(
        image.layer_listing(),
        [
            "d 0775 0:0 root/root ./",
            "- 0644 0:0 root/root ./one",
            "- 0644 0:0 root/root ./two",
        ]
    );
    assert_eq!(image.layer_file("./one"), b"same inode");
    assert_eq!(image.layer_file("./two"), b"same inode");
}

#[test]
fn non_utf8_and_long_names_and_link_targets_survive() {
    let scratch = test_dir();
    let root = scratch.join("root");
    mkdir(&root, 0o755);
    let latin1 = OsStr::from_bytes(b"caf\xe9");
    write(&root.join(latin1), b"latin-1", 0o644);
    let long_name = "n".repeat(150);
    let deep = format!("{}/{}", "d".repeat(60), "e".repeat(60));
    mkdir(&root.join("d".repeat(60)), 0o755);
    mkdir(&root.join(&deep), 0o755);
    write(&root.join(&deep).join(&long_name), b"long", 0o644);
    let long_target = format!("{deep}/{long_name}");
    ln_s(&long_target, &root.join("long-link"));
    let (image, _) = build_in(
        &scratch,
        &json!({ "name": "names", "tag": "t", "copyToRoot": "root", "compressor": "none" }),
    );
    let d = "d".repeat(60);
    assert_eq!(
        image.layer_listing(),
        [
            "d 0775 0:0 root/root ./".to_owned(),
            "- 0644 0:0 root/root ./caf\\xe9".to_owned(),
            format!("d 0755 0:0 root/root ./{d}/"),
            format!("d 0755 0:0 root/root ./{deep}/"),
            format!("- 0644 0:0 root/root ./{deep}/{long_name}"),
            format!("l 0777 0:0 root/root ./long-link -> {long_target}"),
        ]
    );
    let layer = image.layer();
    assert_eq!(layer[1].name, b"./caf\xe9");
    assert_eq!(layer[1].data, b"latin-1");
    assert_eq!(layer[4].data, b"long");
}
