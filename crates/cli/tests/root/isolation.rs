//! What the script sees and cannot reach: no network but loopback, its own host name, a
//! read-only store, a `/dev` of its own; and the shell that runs it (`runAsRootShell`).

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use serde_json::json;

use super::{Case, base_image, member_names, store_path};
use buildimage_test_support::{ROOT_APPLETS, busybox_root, docker, member, static_busybox};

/// The host's `/dev/null`.
const DEV_NULL: &str = "/dev/null";

/// The script of the isolation test. Each finding goes to a file under `/report`. It
/// removes `/dev/null` only when `/dev` is a tmpfs of the sandbox's own (its mount table
/// says so): were `/dev` the host's, a broken sandbox would remove the host's `/dev/null`.
const ISOLATION_SCRIPT: &str = r"mkdir /report
cat /proc/net/dev > /report/net-dev
hostname > /report/hostname
cat /proc/self/mountinfo > /report/mountinfo
if test -x /nix/store/0ngfhmr5v81b3wbvjc97aph9ci36v9yv-hello/bin/hello; then echo visible; else echo missing; fi > /report/store-read
if touch /nix/store/written-by-run-as-root 2> /report/store-error; then echo writable; else echo read-only; fi > /report/store-write
if grep -qE '^[0-9]+ [0-9]+ [^ ]+ [^ ]+ /dev [^ ]+ .*- tmpfs ' /proc/self/mountinfo; then
  if rm -f /dev/null 2> /report/rm-error; then echo removed; else echo refused; fi > /report/dev-null
else
  echo 'skipped: /dev is not a tmpfs of its own' > /report/dev-null
fi
";

/// Whether the host's `/dev/null` is what it must be: a character device 1:3, mode 0666.
fn dev_null_intact() -> bool {
    std::fs::symlink_metadata(DEV_NULL).is_ok_and(|meta| {
        meta.file_type().is_char_device()
            && (
                nix::sys::stat::major(meta.rdev()),
                nix::sys::stat::minor(meta.rdev()),
            ) == (1, 3)
            && meta.permissions().mode() & 0o7777 == 0o666
    })
}

/// Puts the host's `/dev/null` back (`rm -f /dev/null; mknod -m 666 /dev/null c 1 3`) if
/// it is no longer a character device 1:3 when dropped, and says so.
struct DevNullGuard;

impl Drop for DevNullGuard {
    fn drop(&mut self) {
        if dev_null_intact() {
            return;
        }
        eprintln!("the host's {DEV_NULL} was damaged: restoring it");
        let _ = std::fs::remove_file(DEV_NULL);
        let restored = nix::sys::stat::mknod(
            DEV_NULL,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .map_err(std::io::Error::from)
        // mknod's mode passes through the umask.
        .and_then(|()| std::fs::set_permissions(DEV_NULL, std::fs::Permissions::from_mode(0o666)));
        if let Err(err) = restored {
            eprintln!("cannot restore {DEV_NULL}: {err}");
        }
    }
}

#[test]
fn run_as_root_has_only_loopback_its_own_host_name_a_read_only_store_and_its_own_dev() {
    assert!(
        dev_null_intact(),
        "the host's {DEV_NULL} is not a character device 1:3 with mode 0666 before the test"
    );
    let _restore = DevNullGuard;
    let case = Case::new();
    busybox_root(&case.join("busybox"), &ROOT_APPLETS);
    let store = case.join("store");
    store_path(
        &store,
        "0ngfhmr5v81b3wbvjc97aph9ci36v9yv",
        "hello",
        &[],
        &[("bin/hello", b"#!/bin/sh\necho hello\n", 0o555)],
    );
    let built = case.build(
        "isolation",
        &json!({
            "name": "buildimage-test/isolation",
            "tag": "latest",
            "copyToRoot": "busybox",
            "runAsRoot": ISOLATION_SCRIPT,
            "compressor": "none",
        }),
        Some(&store),
    );
    assert!(
        dev_null_intact(),
        "runAsRoot's `rm -f /dev/null` reached the host's {DEV_NULL}"
    );
    let layer = built.read().top_layer();
    let report = |name: &str| {
        String::from_utf8_lossy(&member(&layer, &format!("./report/{name}")).data).into_owned()
    };

    // /dev was a tmpfs of the sandbox's own, so the destructive check did run.
    let dev_null = report("dev-null");
    assert!(
        dev_null == "removed\n" || dev_null == "refused\n",
        "{dev_null}mount table in the sandbox:\n{}",
        report("mountinfo")
    );

    // Below the two header lines, one line per interface.
    let net_dev = report("net-dev");
    let interfaces: Vec<&str> = net_dev
        .lines()
        .skip(2)
        .filter_map(|line| line.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(interfaces, ["lo"], "/proc/net/dev:\n{net_dev}");

    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("host name");
    assert_eq!(report("hostname"), "localhost\n");
    if host_name.trim() != "localhost" {
        assert_ne!(report("hostname"), host_name);
    }

    assert_eq!(report("store-read"), "visible\n");
    assert_eq!(report("store-write"), "read-only\n");
    assert!(
        report("store-error").contains("Read-only file system"),
        "{}",
        report("store-error")
    );
    assert!(!store.join("nix/store/written-by-run-as-root").exists());
    let mountinfo = report("mountinfo");
    let store_mount = mountinfo
        .lines()
        .find(|line| line.split(' ').nth(4) == Some("/nix/store"))
        .unwrap_or_else(|| panic!("no /nix/store mount:\n{mountinfo}"));
    assert!(
        store_mount
            .split(' ')
            .nth(5)
            .is_some_and(|options| options.split(',').any(|o| o == "ro")),
        "{store_mount}"
    );

    // The mount points the sandbox made are gone again; only `/tmp` stays, as in nixpkgs.
    for path in member_names(&layer) {
        for gone in ["./dev", "./proc", "./sys", "./nix"] {
            assert!(!path.starts_with(gone), "{path} in the layer");
        }
    }
    let tmp = member(&layer, "./tmp/");
    assert_eq!((tmp.kind.as_byte(), tmp.mode), (b'5', 0o755));
}

/// Builds `nosh.tar`, a base whose only file is `bin/busybox` (no `/bin/sh`), and a store
/// with a busybox store path whose `bin` has `sh` and `mkdir`. Returns the store folder
/// and the store path.
fn base_without_sh(case: &Case) -> (std::path::PathBuf, String) {
    let busybox = static_busybox();
    base_image(case, "nosh", &serde_json::Value::Null, |root: &Path| {
        // Keep only bin/busybox: the applet links include `sh`.
        for entry in std::fs::read_dir(root.join("bin")).expect("list bin") {
            let entry = entry.expect("a bin entry");
            if entry.file_name() != "busybox" {
                std::fs::remove_file(entry.path()).expect("remove an applet link");
            }
        }
        assert_eq!(std::fs::read(root.join("bin/busybox")).ok(), Some(busybox));
    });
    let store = case.join("store");
    let shell_path = store_path(
        &store,
        "1x2ddh53lppqlzwqzxhn1h3g4rkqcvc5",
        "busybox",
        &["sh", "mkdir"],
        &[],
    );
    (store, shell_path)
}

#[test]
fn run_as_root_shell_from_the_store_runs_the_script_on_a_base_without_bin_sh() {
    let case = Case::new();
    let (store, busybox) = base_without_sh(&case);
    let built = case.build(
        "shell",
        &json!({
            "name": "buildimage-test/shell",
            "tag": "latest",
            "fromImage": "nosh.tar",
            "runAsRoot": "mkdir -p /data\necho \"ran by $0\" > /data/ran\n",
            "runAsRootShell": format!("{busybox}/bin/sh"),
            "compressor": "none",
        }),
        Some(&store),
    );
    // `mkdir` came from the shell's folder, which the sandbox adds to PATH; the store path
    // itself is not written into the layer.
    let layer = built.read().top_layer();
    assert_eq!(
        member_names(&layer),
        ["./", "./data/", "./data/ran", "./tmp/"]
    );
    assert_eq!(member(&layer, "./data/ran").data, b"ran by runAsRoot\n");

    let docker = docker();
    let image = docker.load_guarded(&built.archive);
    assert_eq!(
        docker
            .run(image.name(), &["/bin/busybox", "cat", "/data/ran"])
            .assert_success(),
        "ran by runAsRoot\n"
    );
    assert_eq!(
        docker
            .run(image.name(), &["/bin/busybox", "ls", "-A", "/bin"])
            .assert_success(),
        "busybox\n"
    );
}

#[test]
fn a_base_without_bin_sh_needs_run_as_root_shell_and_an_existing_one() {
    let case = Case::new();
    let (store, busybox) = base_without_sh(&case);
    let spec = |shell: Option<String>| {
        json!({
            "name": "buildimage-test/shell",
            "tag": "latest",
            "fromImage": "nosh.tar",
            "runAsRoot": "mkdir -p /data",
            "runAsRootShell": shell,
        })
    };
    let stderr = case.build_fails("no-shell", &spec(None), Some(&store));
    assert!(
        stderr.contains(
            "Key `runAsRootShell`: The image has no /bin/sh to run the script with; name one \
             with runAsRootShell"
        ),
        "{stderr}"
    );
    let bash = format!("{busybox}/bin/bash");
    let stderr = case.build_fails("missing-shell", &spec(Some(bash.clone())), Some(&store));
    assert!(
        stderr.contains("runAsRootShell")
            && stderr.contains(&bash)
            && stderr.contains("neither in the image nor in the store"),
        "{stderr}"
    );
}

/// The script's standard output goes to buildimage's standard error, so with `-o -` the
/// image on standard output is the same archive that `-o FILE` writes.
#[test]
fn script_output_goes_to_stderr_so_that_dash_o_dash_writes_a_clean_archive() {
    let case = Case::new();
    busybox_root(&case.join("busybox"), &ROOT_APPLETS);
    let spec = json!({
        "name": "buildimage-test/stdout",
        "tag": "latest",
        "copyToRoot": "busybox",
        "runAsRoot": "echo from-run-as-root; echo to-stderr >&2",
        "extraCommands": "echo from-extra-commands",
        "compressor": "none",
    });
    let path = case.spec_named("stdout", &spec);
    let output = case.buildimage().build(&path).out("-").output();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for text in ["from-run-as-root\n", "to-stderr\n", "from-extra-commands\n"] {
        assert!(stderr.contains(text), "{text:?} in {stderr}");
    }
    case.assert_clean();
    let file = case.build("stdout-file", &spec, None);
    assert!(
        output.stdout == file.bytes(),
        "-o - and -o FILE give different archives"
    );
}
