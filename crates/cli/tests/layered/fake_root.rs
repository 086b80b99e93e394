//! `fakeRootCommands` without fakeroot: what the script gives away (owners, device nodes)
//! is recorded and packed, the same for root and for an ordinary user; with
//! `enableFakechroot` it runs inside the image.

use serde_json::json;

use buildimage_test_support::nix::{base_name, copy_store};
use buildimage_test_support::{Buildimage, Built, Image, Member, chmod, unpack_oci};

use super::{APP_A, BUSYBOX, SHARED_TEXT, build_with, fixture, layers, scratch};

/// A script that needs root: owners for others, a setuid file, a device node.
const GIVES_AWAY: &str = "mkdir -p data dev
echo hi > data/owned
chown 1000:100 data data/owned
touch data/suid
chmod 4755 data/suid
mknod dev/null c 1 3
chmod 0666 dev/null";

/// The customisation layer of `built` (the last one) as [`Member::line`]s.
fn customisation(built: &Built) -> Vec<String> {
    let image: Image = built.read();
    let layers = image.layers();
    image
        .layer_at(layers.last().expect("a layer"))
        .iter()
        .map(Member::line)
        .collect()
}

#[test]
fn fake_root_commands_give_files_away_the_same_as_root_and_as_nobody() {
    let fx = fixture();
    let dir = scratch();
    let spec = json!({
        "name": "fake", "tag": "t", "compressor": "none",
        "contents": [fx.path(BUSYBOX)],
        "fakeRootCommands": GIVES_AWAY,
    });
    let mut root = Buildimage::new();
    root.tmpdir(&dir.tmp());
    let as_root = build_with(root, "build-layered", dir.path(), "root", &spec, fx.store());

    // `nobody` reads a copy of the store without a database (a scan finds the same paths)
    // and writes into a folder of its own.
    chmod(dir.path(), 0o777);
    chmod(&dir.tmp(), 0o777);
    let store = dir.join("store");
    copy_store(fx.store(), &store, false);
    let mut nobody = Buildimage::new();
    nobody.as_nobody(dir.path()).tmpdir(&dir.tmp());
    let as_nobody = build_with(nobody, "build-layered", dir.path(), "nobody", &spec, &store);
    assert!(
        as_root.bytes() == as_nobody.bytes(),
        "root and nobody built different images:\n{:#?}\n{:#?}",
        customisation(&as_root),
        customisation(&as_nobody)
    );
    dir.assert_tmp_empty();

    // What the script made, and nothing else beside the links of `contents`.
    let made = |lines: Vec<String>, names: [&str; 2]| -> Vec<String> {
        lines
            .into_iter()
            .filter(|l| names.iter().any(|n| l.contains(n)))
            .collect()
    };
    assert_eq!(
        made(customisation(&as_root), [" ./data", " ./dev"]),
        [
            "d 0755 1000:100 / ./data/",
            "- 0644 1000:100 / ./data/owned",
            "- 4755 0:0 root/root ./data/suid",
            "d 0755 0:0 root/root ./dev/",
            "c 0666 0:0 root/root ./dev/null 1,3",
        ]
    );
    assert_eq!(
        made(
            unpack_oci(&as_nobody.archive).listing(),
            [" ./data", " ./dev"]
        ),
        [
            "drwxr-xr-x 1000:100 2 ./data",
            "-rw-r--r-- 1000:100 1 ./data/owned",
            "-rwsr-xr-x 0:0 1 ./data/suid",
            "drwxr-xr-x 0:0 2 ./dev",
            "crw-rw-rw- 0:0 1 ./dev/null",
        ]
    );
}

#[test]
fn enable_fakechroot_runs_the_script_inside_the_image() {
    let fx = fixture();
    let dir = scratch();
    let busybox = fx.path(BUSYBOX);
    let spec = json!({
        "name": "chrooted", "tag": "t", "compressor": "none",
        "contents": [fx.path(APP_A), busybox],
        "enableFakechroot": true,
        // One command a line: `sh -e` stops at a failing one (not inside an `&&` list).
        "fakeRootCommands": "mkdir -p /etc
/bin/app-a > /etc/app-output
id -u > /etc/uid
test -c /dev/null
test -r /proc/self/status
test -d /sys/kernel
ls /nix/store > /etc/store
chown 1000:100 /etc/uid",
    });
    let built = build_with(
        Buildimage::new(),
        "build-layered",
        dir.path(),
        "chrooted",
        &spec,
        fx.store(),
    );
    assert_eq!(layers(&built).last().unwrap().kind, "customisation");
    let image = built.read();
    let top = image.top_layer();
    let file = |name: &str| -> &Member {
        top.iter()
            .find(|m| m.name == name.as_bytes())
            .unwrap_or_else(|| panic!("no {name} in {:#?}", customisation(&built)))
    };
    assert_eq!(
        String::from_utf8_lossy(&file("./etc/app-output").data),
        format!("{SHARED_TEXT}\napp-a\n"),
        "the image's /bin/app-a ran, with its store paths"
    );
    let uid = file("./etc/uid");
    assert_eq!(
        (uid.data.as_slice(), uid.uid, uid.gid),
        (&b"0\n"[..], 1000, 100)
    );
    assert!(
        String::from_utf8_lossy(&file("./etc/store").data)
            .lines()
            .any(|l| l == base_name(busybox)),
        "the store is visible at /nix/store"
    );
    let lines = customisation(&built);
    for mount in ["./dev", "./proc", "./sys", "./nix"] {
        assert!(
            !lines
                .iter()
                .any(|l| l.split(' ').nth(4).is_some_and(|n| n.starts_with(mount))),
            "{mount} is a mount point, not part of the layer: {lines:#?}"
        );
    }
}
