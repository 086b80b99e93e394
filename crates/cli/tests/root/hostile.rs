//! Scripts that try to reach the host: each attempt must fail inside the script, the host
//! must be as it was (clock, host name, mounts, processes, files), and a script that
//! ignores the failures must still give the right layer. Run as root and as an ordinary
//! user.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command};
use std::time::SystemTime;

use serde_json::json;

use super::Case;
use buildimage_test_support::{Buildimage, Image, busybox_root, chmod};

/// The applets the attempts call.
const HOSTILE_APPLETS: [&str; 23] = [
    "sh", "cat", "echo", "test", "mkdir", "date", "hwclock", "insmod", "modprobe", "reboot",
    "sysctl", "mount", "mknod", "dd", "wc", "kill", "sleep", "unshare", "nsenter", "chroot",
    "hostname", "true", "ls",
];

/// Each attempt: a name and shell code that succeeds only if the attempt worked. `@PID@`
/// is a host process's id, `@CANARY@` a host file, `@MAJOR@`/`@MINOR@` the host root file
/// system's device.
const ATTEMPTS: &[(&str, &str)] = &[
    (
        "set-clock",
        "date -s '2000-01-01 00:00:00'; test \"$(date +%Y)\" = 2000",
    ),
    ("hardware-clock", "hwclock -w"),
    ("load-module", "echo not-a-module > /m.ko && insmod /m.ko"),
    ("modprobe", "modprobe loop"),
    ("reboot", "reboot -f"),
    ("sysctl", "sysctl -w kernel.domainname=hostile"),
    ("mount-bind", "mkdir -p /mnt/up && mount --bind / /mnt/up"),
    ("mount-proc-sys", "mount -o remount,rw /proc/sys"),
    (
        "read-host-disk",
        "mknod /disk b @MAJOR@ @MINOR@ && test \"$(dd if=/disk bs=512 count=1 2>/dev/null | wc -c)\" -gt 0",
    ),
    ("kill-init", "kill -9 1 && sleep 1 && ! kill -0 1"),
    ("kill-host-process", "kill -9 @PID@"),
    ("unshare", "unshare -m -u -n true"),
    ("setns", "nsenter -t 1 -m -u true"),
    (
        "chroot-escape",
        "mkdir -p /jail && chroot /jail /bin/busybox sh -c 'cd ../../../../..; test -e @CANARY@' \
         || (cd /; for i in 1 2 3 4 5 6 7 8; do cd ..; done; test -e @CANARY@)",
    ),
    ("sysrq", "echo h > /proc/sysrq-trigger"),
    ("read-host-file", "cat @CANARY@"),
    (
        "write-host-file",
        "echo changed > @CANARY@ && test -e @CANARY@",
    ),
];

/// The script: every attempt, its outcome in `/results` (`NAME worked` or `NAME failed`),
/// failures ignored, then `/done`.
fn script(pid: u32, canary: &str, major: u64, minor: u64) -> String {
    let mut script = String::new();
    for (name, code) in ATTEMPTS {
        let code = code
            .replace("@PID@", &pid.to_string())
            .replace("@CANARY@", canary)
            .replace("@MAJOR@", &major.to_string())
            .replace("@MINOR@", &minor.to_string());
        let _ = writeln!(
            script,
            "if ( {code} ) > /dev/null 2>&1; then echo '{name} worked'; else echo '{name} failed'; fi >> /results"
        );
    }
    script.push_str("hostname hostile-inside || true\necho done > /done\n");
    script
}

/// What the host looks like, for a before/after comparison.
#[derive(Debug, PartialEq, Eq)]
struct Host {
    hostname: String,
    canary: Vec<u8>,
    mount_points: Vec<String>,
}

fn host(canary: &std::path::Path) -> Host {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mut mount_points: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        // Other tests mount below /tmp (their own sandboxes) while this one runs.
        .filter(|p| !p.starts_with("/tmp/"))
        .collect();
    mount_points.sort();
    Host {
        hostname: fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname"),
        canary: fs::read(canary).expect("canary"),
        mount_points,
    }
}

fn hostile_run(as_nobody: bool) {
    let case = Case::new();
    busybox_root(&case.join("root"), &HOSTILE_APPLETS);
    // A host file the script must neither read nor change, and a host process it must not
    // kill.
    let canary = case.join("canary");
    fs::write(&canary, b"host file\n").expect("canary");
    let mut sleeper: Child = Command::new("sleep").arg("600").spawn().expect("sleep");
    let root_dev = fs::metadata("/").expect("/").dev();
    let script = script(
        sleeper.id(),
        &canary.display().to_string(),
        nix::sys::stat::major(root_dev),
        nix::sys::stat::minor(root_dev),
    );
    let spec = json!({
        "name": "hostile", "tag": "t", "copyToRoot": "root", "compressor": "none",
        "runAsRoot": script,
    });
    let before = host(&canary);
    let clock = SystemTime::now();
    let mut cmd: Buildimage = case.buildimage();
    if as_nobody {
        chmod(case.path(), 0o777);
        chmod(&case.tmp(), 0o777);
        cmd.as_nobody(case.path());
    }
    let built = case.build_with(cmd, "hostile", &spec, None);

    // The host is as it was.
    assert_eq!(host(&canary), before, "the host changed");
    assert!(
        SystemTime::now() >= clock,
        "the host's clock went backwards"
    );
    assert!(
        sleeper.try_wait().expect("wait").is_none(),
        "the host process was killed"
    );
    sleeper.kill().ok();
    sleeper.wait().ok();

    // Every attempt failed inside, and the layer is the script's.
    let layer = Image::open(&built.archive).top_layer();
    let file = |name: &[u8]| {
        layer.iter().find(|m| m.name == name).map_or_else(
            || panic!("no {} in the layer", String::from_utf8_lossy(name)),
            |m| String::from_utf8_lossy(&m.data).into_owned(),
        )
    };
    let results = file(b"./results");
    for (name, _) in ATTEMPTS {
        assert!(
            results.lines().any(|l| l == format!("{name} failed")),
            "{name} must fail inside the script:\n{results}\n{}",
            built.stderr
        );
    }
    assert_eq!(file(b"./done"), "done\n");
}

#[test]
fn hostile_scripts_fail_and_leave_the_host_unchanged_as_root() {
    hostile_run(false);
}

#[test]
fn hostile_scripts_fail_and_leave_the_host_unchanged_as_an_ordinary_user() {
    hostile_run(true);
}
