//! What a `runAsRoot` script does to files reaches the layer as it would in nixpkgs' VM:
//! real owners, setuid bits and device nodes; deletions as whiteouts and replaced folders
//! as opaque ones (docs/formats.md §1.7); byte for byte the same on every build.

use serde_json::{Value, json};

use super::{Case, base_image, member_names};
use buildimage_test_support::{
    Member, ROOT_APPLETS, busybox_root, docker, member, mkdir, names, unpack_oci, write,
};

/// The script of the owners test: ownership, a setuid bit and a device node, which only
/// root can make.
const OWNERS_SCRIPT: &str = "touch /x /y\n\
                             chown 1000:1000 /x\n\
                             chmod 4755 /y\n\
                             mknod /dev-null-copy c 1 3\n";

/// The script of the whiteout tests: a deleted base file, a base folder replaced by a new
/// one, and a new file that sorts before the whiteout in `/etc` (`!` is 0x21, `.` 0x2E).
const WHITEOUT_SCRIPT: &str = "rm /etc/motd\n\
                               echo first > '/etc/!first'\n\
                               rm -rf /dir && mkdir /dir && echo new > /dir/f\n";

/// Adds `etc/motd`, `etc/issue` and a folder `dir/` with `old` and `sub/old2` to a
/// base root.
fn whiteout_base(root: &std::path::Path) {
    mkdir(&root.join("etc"), 0o755);
    write(&root.join("etc/motd"), b"welcome\n", 0o644);
    write(&root.join("etc/issue"), b"base\n", 0o644);
    mkdir(&root.join("dir"), 0o755);
    write(&root.join("dir/old"), b"old\n", 0o644);
    mkdir(&root.join("dir/sub"), 0o755);
    write(&root.join("dir/sub/old2"), b"old2\n", 0o644);
}

#[test]
fn chown_setuid_and_mknod_in_run_as_root_are_kept_and_uid_gid_do_not_apply() {
    let case = Case::new();
    busybox_root(&case.join("busybox"), &ROOT_APPLETS);
    mkdir(&case.join("extra"), 0o755);
    write(&case.join("extra/copied"), b"copied\n", 0o640);
    let built = case.build(
        "owners",
        &json!({
            "name": "buildimage-test/owners",
            "tag": "latest",
            "copyToRoot": ["busybox", "extra"],
            "runAsRoot": OWNERS_SCRIPT,
            // Pure mode only: in root mode the owners are the real ones.
            "uid": 1000,
            "gid": 1000,
            "compressor": "none",
        }),
        None,
    );
    let layer = built.read().top_layer();
    let show = |m: &Member| (m.kind.as_byte(), m.mode, m.uid, m.gid);
    assert_eq!(show(member(&layer, "./x")), (b'0', 0o644, 1000, 1000));
    assert_eq!(show(member(&layer, "./y")), (b'0', 0o4755, 0, 0));
    assert_eq!(show(member(&layer, "./dev-null-copy")), (b'3', 0o644, 0, 0));
    assert_eq!(show(member(&layer, "./copied")), (b'0', 0o640, 0, 0));
    assert_eq!(show(member(&layer, "./bin/busybox")), (b'0', 0o755, 0, 0));
    for entry in &layer {
        // No names from the host's user database; root is `root`, as nixpkgs' tar writes.
        let expected = if entry.uid == 0 { "root" } else { "" };
        assert_eq!(entry.uname(), expected, "{}", entry.name());
        if entry.name != b"./x" {
            assert_eq!((entry.uid, entry.gid), (0, 0), "{}", entry.name());
        }
    }

    let unpacked = unpack_oci(&built.archive);
    let listing = unpacked.listing();
    for line in [
        "crw-r--r-- 0:0 1 ./dev-null-copy",
        "-rw-r--r-- 1000:1000 1 ./x",
        "-rwsr-xr-x 0:0 1 ./y",
        "-rw-r----- 0:0 1 ./copied",
    ] {
        assert!(
            listing.iter().any(|l| l == line),
            "{line} in the umoci listing:\n{}",
            listing.join("\n")
        );
    }
    let rdev = {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(unpacked.rootfs().join("dev-null-copy"))
            .expect("stat dev-null-copy")
            .rdev()
    };
    assert_eq!(
        (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev)),
        (1, 3)
    );
    drop(unpacked);

    let docker = docker();
    let image = docker.load_guarded(&built.archive);
    assert_eq!(
        docker
            .run(
                image.name(),
                &[
                    "stat",
                    "-c",
                    "%n %u:%g %a %F %t,%T",
                    "/x",
                    "/y",
                    "/dev-null-copy",
                    "/copied"
                ],
            )
            .assert_success(),
        "/x 1000:1000 644 regular empty file 0,0\n\
         /y 0:0 4755 regular empty file 0,0\n\
         /dev-null-copy 0:0 644 character special file 1,3\n\
         /copied 0:0 640 regular file 0,0\n"
    );
}

/// An image whose `/tmp` is a symlink (`tmp -> var/tmp`, kept by `keepContentsDirlinks`)
/// can still run `runAsRoot`: nixpkgs mounts nothing on `/tmp` (its `mkdir -p tmp` accepts
/// the link), and neither does the sandbox, so there is no reason to refuse it. The
/// script's file lands in the link's target.
#[test]
fn run_as_root_works_when_the_base_tmp_is_a_symlink() {
    let case = Case::new();
    let root = busybox_root(&case.join("linked-tmp-root"), &ROOT_APPLETS);
    mkdir(&root.join("var"), 0o755);
    mkdir(&root.join("var/tmp"), 0o1777);
    std::os::unix::fs::symlink("var/tmp", root.join("tmp")).expect("link tmp");
    let base = case.build(
        "linked-tmp",
        &json!({
            "name": "buildimage-test/linked-tmp",
            "tag": "latest",
            "copyToRoot": "linked-tmp-root",
            "keepContentsDirlinks": true,
            "compressor": "none",
        }),
        None,
    );
    let base_layer = base.read().top_layer();
    assert_eq!(
        member(&base_layer, "./tmp").kind.as_byte(),
        b'2',
        "the base keeps tmp a symlink"
    );
    let built = case.build(
        "on-linked-tmp",
        &json!({
            "name": "buildimage-test/on-linked-tmp",
            "tag": "latest",
            "fromImage": "linked-tmp.tar",
            "runAsRoot": "echo hi > /tmp/x",
            "compressor": "none",
        }),
        None,
    );
    let layer = built.read().top_layer();
    assert_eq!(
        member_names(&layer),
        ["./", "./var/", "./var/tmp/", "./var/tmp/x"]
    );
    assert_eq!(member(&layer, "./var/tmp/x").data, b"hi\n");
}

/// The index of `path` in `layer`.
fn position(layer: &[Member], path: &str) -> usize {
    layer
        .iter()
        .position(|m| m.name == path.as_bytes())
        .unwrap_or_else(|| panic!("no member {path} among {:?}", member_names(layer)))
}

#[test]
fn deletions_become_whiteouts_and_a_recreated_folder_is_opaque() {
    let case = Case::new();
    base_image(&case, "base", &Value::Null, whiteout_base);
    let built = case.build(
        "deleted",
        &json!({
            "name": "buildimage-test/deleted",
            "tag": "latest",
            "fromImage": "base.tar",
            "runAsRoot": WHITEOUT_SCRIPT,
            "compressor": "none",
        }),
        None,
    );
    let layer = built.read().top_layer();
    assert_eq!(
        member_names(&layer),
        [
            "./",
            "./dir/",
            "./dir/.wh..wh..opq",
            "./dir/f",
            "./etc/",
            "./etc/.wh.motd",
            "./etc/!first",
            "./tmp/",
        ]
    );
    for marker in ["./dir/.wh..wh..opq", "./etc/.wh.motd"] {
        let m = member(&layer, marker);
        assert_eq!(
            (m.kind.as_byte(), m.mode, m.uid, m.data.len()),
            (b'0', 0o644, 0, 0)
        );
    }
    // OCI: a whiteout comes before every other entry of its folder, whatever the byte
    // order of the names says.
    let is_whiteout = |m: &Member| {
        m.name()
            .rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with(".wh."))
    };
    for (i, entry) in layer.iter().enumerate().filter(|(_, m)| is_whiteout(m)) {
        let name = entry.name();
        let (dir, _) = name.rsplit_once('/').expect("a folder");
        let prefix = format!("{dir}/");
        let dir_at = position(&layer, &prefix);
        assert!(dir_at < i, "{prefix} comes before {name}");
        assert!(
            layer[dir_at + 1..i].iter().all(is_whiteout),
            "{name} must come before the other entries of {prefix}: {:?}",
            member_names(&layer)
        );
    }

    let unpacked = unpack_oci(&built.archive);
    assert!(!unpacked.rootfs().join("etc/motd").exists());
    assert_eq!(names(&unpacked.rootfs().join("dir")), ["f"]);
    assert_eq!(names(&unpacked.rootfs().join("etc")), ["!first", "issue"]);
    drop(unpacked);

    let docker = docker();
    let image = docker.load_guarded(&built.archive);
    assert_eq!(
        docker
            .run(
                image.name(),
                &[
                    "sh",
                    "-c",
                    // Docker adds its own files to /etc (hosts, mtab, ...).
                    "test ! -e /etc/motd && echo no motd; cat '/etc/!first' /etc/issue; \
                     ls -A /dir; cat /dir/f"
                ],
            )
            .assert_success(),
        "no motd\nfirst\nbase\nf\nnew\n"
    );
}

/// A script on top of an image with whiteouts and an opaque folder sees the base's files
/// as Docker does (deleted ones absent, the replaced folder holding only its new file),
/// and its own new layer needs no new markers for them.
#[test]
fn run_as_root_over_whiteouts_and_opaque_folders_of_a_base_sees_what_docker_sees() {
    let case = Case::new();
    base_image(&case, "base", &Value::Null, whiteout_base);
    case.build(
        "deleted",
        &json!({
            "name": "buildimage-test/deleted",
            "tag": "latest",
            "fromImage": "base.tar",
            "runAsRoot": WHITEOUT_SCRIPT,
            "compressor": "none",
        }),
        None,
    );
    let built = case.build(
        "on-top",
        &json!({
            "name": "buildimage-test/on-top",
            "tag": "latest",
            "fromImage": "deleted.tar",
            "runAsRoot": "test ! -e /etc/motd\n\
                          ls -A /dir > /seen-dir\n\
                          ls -A /etc > /seen-etc\n",
            "compressor": "none",
        }),
        None,
    );
    let layer = built.read().top_layer();
    // `/tmp` is in the base already (the previous script's mount point), so not new.
    assert_eq!(member_names(&layer), ["./", "./seen-dir", "./seen-etc"]);
    assert_eq!(member(&layer, "./seen-dir").data, b"f\n");
    assert_eq!(member(&layer, "./seen-etc").data, b"!first\nissue\n");
}

/// The same root-mode spec, with a base, copied files, owners, a device node, whiteouts
/// and an opaque folder, built twice (the second time under umask 077) gives the same bytes.
#[test]
fn the_same_run_as_root_spec_built_twice_gives_identical_archives() {
    let case = Case::new();
    base_image(&case, "base", &Value::Null, whiteout_base);
    mkdir(&case.join("extra"), 0o755);
    write(&case.join("extra/copied"), b"copied\n", 0o640);
    let spec = json!({
        "name": "buildimage-test/determinism",
        "tag": "latest",
        "fromImage": "base.tar",
        "copyToRoot": "extra",
        "runAsRoot": format!("{OWNERS_SCRIPT}{WHITEOUT_SCRIPT}"),
        "config": { "Cmd": ["/bin/sh"] },
    });
    let first = case.build("first", &spec, None);
    // The caller's umask must not reach the script's files nor the staged copyToRoot.
    let second = case.build_with(
        case.buildimage().umask("077").clone(),
        "second",
        &spec,
        None,
    );
    assert_eq!(
        first.bytes(),
        second.bytes(),
        "two builds of one root-mode spec differ"
    );
    for key in ["imageTag", "configDigest"] {
        assert_eq!(first.info[key], second.info[key], "{key}");
    }
    assert_eq!(first.info["layer"], second.info["layer"]);
}
