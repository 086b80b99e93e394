//! `uid`/`gid`, modes, links and special files of `copyToRoot`, as skopeo with umoci and
//! Docker see them.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use serde_json::json;

use buildimage_test_support::{
    APPLETS, Built, busybox_root, chmod, docker, member, mkdir, require_tool, run_ok, unpack_oci,
    write,
};

use super::{build, test_dir, write_spec};

/// Builds, with `uid` 1000 and `gid` 100, an image of a busybox root that also holds:
/// `bin/suid` (4755), `bin/sgid` (2755), `data/one` and `data/two` (one file with two
/// hard links, 0640), `data/fifo` (a fifo, 0620), `etc/motd`, a relative and a dangling
/// symlink in `etc/`, `private/` (0700) with `secret` (0600), a setgid `shared/` (2775)
/// and a sticky `tmp/` (1777). The root folder is 0755. `extraCommands` adds
/// `made/by-extra-commands`.
fn owners_image(dir: &Path, compressor: &str, out: &str) -> Built {
    let root = busybox_root(&dir.join("root"), &APPLETS);
    write(&root.join("bin/suid"), b"#!/bin/sh\necho suid\n", 0o4755);
    write(&root.join("bin/sgid"), b"#!/bin/sh\necho sgid\n", 0o2755);
    mkdir(&root.join("data"), 0o755);
    write(&root.join("data/one"), b"shared content\n", 0o640);
    std::fs::hard_link(root.join("data/one"), root.join("data/two")).expect("hard link");
    require_tool("mkfifo", "coreutils");
    run_ok(Command::new("mkfifo").arg(root.join("data/fifo")));
    chmod(&root.join("data/fifo"), 0o620);
    mkdir(&root.join("etc"), 0o755);
    write(&root.join("etc/motd"), b"welcome\n", 0o644);
    symlink("../data/one", root.join("etc/data-one")).expect("symlink");
    symlink("/nonexistent", root.join("etc/dangling")).expect("symlink");
    mkdir(&root.join("private"), 0o700);
    write(&root.join("private/secret"), b"secret\n", 0o600);
    mkdir(&root.join("shared"), 0o2775);
    mkdir(&root.join("tmp"), 0o1777);
    let spec = write_spec(
        dir,
        &json!({
            "name": "buildimage-test/owners",
            "tag": compressor,
            "copyToRoot": "root",
            "extraCommands": "mkdir made && echo made > made/by-extra-commands",
            "uid": 1000,
            "gid": 100,
            "compressor": compressor,
        }),
    );
    build(&spec, &dir.join(out))
}

#[test]
fn uid_gid_modes_symlinks_hard_links_and_fifo_survive_skopeo_and_umoci() {
    let dir = test_dir();
    let built = owners_image(dir.path(), "none", "owners.tar");

    // umoci lists directories with 2 + subdirectories links, as the host file system does.
    let mut expected: Vec<String> = [
        // `chmod ug+w` on the root only: 0755 becomes 0775.
        "drwxrwxr-x 1000:100 9 .",
        "drwxr-xr-x 1000:100 2 ./bin",
        "-rwxr-xr-x 1000:100 1 ./bin/busybox",
        "-rwxr-sr-x 1000:100 1 ./bin/sgid",
        "-rwsr-xr-x 1000:100 1 ./bin/suid",
        "drwxr-xr-x 1000:100 2 ./data",
        "prw--w---- 1000:100 1 ./data/fifo",
        // One file with two links becomes two files with one link each.
        "-rw-r----- 1000:100 1 ./data/one",
        "-rw-r----- 1000:100 1 ./data/two",
        "drwxr-xr-x 1000:100 2 ./etc",
        "lrwxrwxrwx 1000:100 1 ./etc/dangling /nonexistent",
        "lrwxrwxrwx 1000:100 1 ./etc/data-one ../data/one",
        "-rw-r--r-- 1000:100 1 ./etc/motd",
        // What extraCommands made gets the same owner.
        "drwxr-xr-x 1000:100 2 ./made",
        "-rw-r--r-- 1000:100 1 ./made/by-extra-commands",
        "drwx------ 1000:100 2 ./private",
        "-rw------- 1000:100 1 ./private/secret",
        "drwxrwsr-x 1000:100 2 ./shared",
        "drwxrwxrwt 1000:100 2 ./tmp",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(
        APPLETS
            .iter()
            .map(|applet| format!("lrwxrwxrwx 1000:100 1 ./bin/{applet} busybox")),
    )
    .collect();
    let path = |line: &String| line.split(' ').nth(3).map(str::to_owned);
    expected.sort_by_key(path);

    let unpacked = unpack_oci(&built.archive);
    assert_eq!(unpacked.listing(), expected);
    assert_eq!(
        std::fs::read(unpacked.rootfs().join("data/two")).expect("read data/two"),
        b"shared content\n"
    );

    // The layer itself: every entry numeric 1000:100 with no names (buildimage must not
    // read the host's user database), and the two copies are regular files, not a link.
    let layer = built.read().layer();
    for entry in &layer {
        assert_eq!(
            (
                entry.uid,
                entry.gid,
                entry.uname.as_slice(),
                entry.gname.as_slice()
            ),
            (1000, 100, &b""[..], &b""[..]),
            "{}",
            entry.name()
        );
    }
    for path in ["./data/one", "./data/two"] {
        assert_eq!(
            member(&layer, path).kind.as_byte(),
            b'0',
            "{path} is a regular file"
        );
    }
    assert_eq!(member(&layer, "./").mode, 0o775);
    let link = member(&layer, "./etc/data-one");
    assert_eq!(
        (link.kind.as_byte(), link.target().as_deref()),
        (b'2', Some("../data/one"))
    );
}

#[test]
fn docker_run_as_user_1000_runs_a_program_and_sees_owners_and_modes() {
    let dir = test_dir();
    let built = owners_image(dir.path(), "gz", "owners.tar.gz");

    let docker = docker();
    let image = docker.load_guarded(&built.archive);
    assert_eq!(image.name(), "buildimage-test/owners:gz");
    let script = "set -e; id -u; \
        stat -c '%A %u:%g %h %n' /bin/suid /bin/sgid /data/fifo /data/one /data/two \
            /private/secret /shared /tmp; \
        readlink /etc/data-one; readlink /etc/dangling; \
        cat /etc/data-one /private/secret; \
        echo written > /tmp/new && cat /tmp/new";
    let run = docker.run_with(
        image.name(),
        &["--user", "1000:1000"],
        &["/bin/sh", "-c", script],
    );
    assert_eq!(
        run.assert_success(),
        "1000\n\
         -rwsr-xr-x 1000:100 1 /bin/suid\n\
         -rwxr-sr-x 1000:100 1 /bin/sgid\n\
         prw--w---- 1000:100 1 /data/fifo\n\
         -rw-r----- 1000:100 1 /data/one\n\
         -rw-r----- 1000:100 1 /data/two\n\
         -rw------- 1000:100 1 /private/secret\n\
         drwxrwsr-x 1000:100 2 /shared\n\
         drwxrwxrwt 1000:100 2 /tmp\n\
         ../data/one\n\
         /nonexistent\n\
         shared content\n\
         secret\n\
         written\n"
    );
}
