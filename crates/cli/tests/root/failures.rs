//! A failing or interrupted `runAsRoot` stops the build cleanly: a message that names the
//! script, no output, no temporary folder, nothing mounted and no sandbox process left.

use std::collections::BTreeSet;
use std::fs;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

use super::{Case, busybox_root};
use crate::docker;

/// How long the sandbox may take to start the script.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long buildimage may take to stop after the signal: the script sleeps 30 s, so a
/// build that waits for it fails this.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the sandbox's processes may take to disappear once buildimage has exited.
const GONE_TIMEOUT: Duration = Duration::from_secs(10);

/// The interval of every bounded poll below.
const POLL: Duration = Duration::from_millis(20);

#[test]
fn a_failing_run_as_root_names_the_script_and_its_status_and_leaves_nothing() {
    let case = Case::new();
    busybox_root(&case.join("busybox"));
    let stderr = case.build_fails(
        "fails",
        &json!({
            "name": "buildimage-test/fails",
            "tag": "latest",
            "copyToRoot": "busybox",
            "runAsRoot": "echo boom >&2; exit 7",
        }),
        None,
    );
    assert!(
        stderr.contains("boom\n"),
        "the script's stderr passes: {stderr}"
    );
    let message = stderr
        .lines()
        .find(|line| line.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        message.contains("runAsRoot") && message.contains("exit status 7"),
        "{message}"
    );
}

/// A process as `/proc` shows it.
struct Proc {
    pid: i32,
    ppid: i32,
    cmdline: Vec<u8>,
}

/// Every process that can be read now.
fn processes() -> Vec<Proc> {
    let mut procs = Vec::new();
    for entry in fs::read_dir("/proc").expect("list /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // A process that ends meanwhile is skipped.
        let (Ok(status), Ok(cmdline)) = (
            fs::read_to_string(entry.path().join("status")),
            fs::read(entry.path().join("cmdline")),
        ) else {
            continue;
        };
        let Some(ppid) = status
            .lines()
            .find_map(|line| line.strip_prefix("PPid:"))
            .and_then(|v| v.trim().parse().ok())
        else {
            continue;
        };
        procs.push(Proc { pid, ppid, cmdline });
    }
    procs
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The process ids of `root`'s descendants.
fn descendants(procs: &[Proc], root: i32) -> BTreeSet<i32> {
    let mut found = BTreeSet::from([root]);
    loop {
        let more: Vec<i32> = procs
            .iter()
            .filter(|p| found.contains(&p.ppid) && !found.contains(&p.pid))
            .map(|p| p.pid)
            .collect();
        if more.is_empty() {
            found.remove(&root);
            return found;
        }
        found.extend(more);
    }
}

/// Whether process `pid` is still alive: it exists and is no zombie (a zombie has an
/// empty command line).
fn alive(pid: i32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

/// Kills `child` and panics with `message`.
fn give_up(child: &mut Child, message: &str) -> ! {
    let _ = child.kill();
    let _ = child.wait();
    panic!("{message}");
}

/// Starts a root-mode build whose script sleeps 30 s, waits until the sandbox runs it,
/// sends `signal` to buildimage, and checks that it stops at once with `expected_code`,
/// leaving no output, no temporary folder, no mount and no sandbox process.
fn interrupt_run_as_root(signal: Signal, expected_code: i32) {
    let case = Case::new();
    busybox_root(&case.join("busybox"));
    let marker = format!("bi-root-hang-{}-{signal}", std::process::id());
    let spec = case.spec(
        "hang",
        &json!({
            "name": "buildimage-test/hang",
            "tag": "latest",
            "copyToRoot": "busybox",
            "runAsRoot": format!("sleep 30\necho {marker}\n"),
        }),
    );
    let out_dir = case.join("out");
    docker::mkdir(&out_dir, 0o755);
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("buildimage"))
        .current_dir(case.path())
        .env("TMPDIR", case.tmp())
        .env_remove("SOURCE_DATE_EPOCH")
        .arg("build")
        .arg(&spec)
        .arg("-o")
        .arg(out_dir.join("hang.tar.gz"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start buildimage");
    let buildimage = i32::try_from(child.id()).expect("a pid");

    // The sandbox has started when buildimage has a `__sandbox` helper and the script
    // (whose text, and so the shell's command line, holds the marker) runs.
    let deadline = Instant::now() + START_TIMEOUT;
    let sandbox = loop {
        let procs = processes();
        let helper = procs
            .iter()
            .any(|p| p.ppid == buildimage && contains(&p.cmdline, "__sandbox"));
        let script = procs.iter().any(|p| contains(&p.cmdline, &marker));
        if helper && script {
            break descendants(&procs, buildimage);
        }
        if let Some(status) = child.try_wait().expect("poll buildimage") {
            let output = child.wait_with_output().expect("read stderr");
            panic!(
                "buildimage ended ({status}) before its sandbox ran the script:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        if Instant::now() > deadline {
            give_up(
                &mut child,
                &format!("the sandbox did not start the script within {START_TIMEOUT:?}"),
            );
        }
        sleep(POLL);
    };

    kill(Pid::from_raw(buildimage), signal).expect("send the signal");
    let sent = Instant::now();
    while child.try_wait().expect("poll buildimage").is_none() {
        if sent.elapsed() > STOP_TIMEOUT {
            give_up(
                &mut child,
                &format!("buildimage did not stop within {STOP_TIMEOUT:?} of {signal}"),
            );
        }
        sleep(POLL);
    }
    let output = child.wait_with_output().expect("wait for buildimage");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(expected_code), "{stderr}");
    assert!(
        stderr.contains(&format!("interrupted by {signal}, nothing was written")),
        "an interruption message: {stderr}"
    );
    assert!(
        !stderr.contains(&marker),
        "the script went on after the signal: {stderr}"
    );

    let deadline = Instant::now() + GONE_TIMEOUT;
    loop {
        let left: Vec<i32> = sandbox.iter().copied().filter(|&pid| alive(pid)).collect();
        let marked = processes().iter().any(|p| {
            contains(&p.cmdline, &marker) || contains(&p.cmdline, &spec.to_string_lossy())
        });
        if left.is_empty() && !marked {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sandbox processes {left:?} (of {sandbox:?}) still run {GONE_TIMEOUT:?} after \
             buildimage exited"
        );
        sleep(POLL);
    }
    assert_eq!(
        docker::file_names(&out_dir),
        Vec::<String>::new(),
        "no image and no temporary file"
    );
    case.assert_clean();
}

#[test]
fn sigterm_during_run_as_root_exits_143_and_leaves_nothing() {
    interrupt_run_as_root(Signal::SIGTERM, 143);
}

#[test]
fn sigint_during_run_as_root_exits_130_and_leaves_nothing() {
    interrupt_run_as_root(Signal::SIGINT, 130);
}
