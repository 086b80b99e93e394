//! SIGINT and SIGTERM while `extraCommands` runs, and while a base image is unpacked: the
//! build stops the script, removes its staging or scratch folder from `TMPDIR` and the
//! temporary output file, and exits with 128 + the signal's number. (SIGKILL cannot be caught: see the README for what it leaves.)

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use super::wait_for;
use crate::build::{Scratch, bin_path, mkdir, names, write};

/// How long the build may take to get into the script.
const START_TIMEOUT: Duration = Duration::from_mins(1);

/// How long the build may take to stop once signalled.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The script: it records the process id of the `sleep` it starts (a child of the shell,
/// as the commands of most scripts are), then waits for it.
const SCRIPT: &str =
    "sleep 300 &\necho $! > sleeper.pid.new\nmv sleeper.pid.new sleeper.pid\nwait\n";

/// What an interrupted build left.
struct Interrupted {
    /// Exit code.
    code: Option<i32>,
    /// Standard error.
    stderr: String,
    /// The private `TMPDIR`'s entries afterwards.
    tmpdir: Vec<String>,
    /// The output folder's entries afterwards.
    out_dir: Vec<String>,
    /// The process id of the script's `sleep`.
    sleeper: u32,
}

/// Whether the process `pid` is a `sleep` that still runs (a zombie does not count).
fn sleeping(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `PID (comm) STATE ...`; the name may hold spaces, so split after the last ')'.
    let Some((head, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    head.ends_with("(sleep") && !rest.trim_start().starts_with('Z')
}

/// Kills the script's `sleep` if it outlived the build, by its process id only.
fn reap(pid: u32) {
    if sleeping(pid) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

/// A build of `spec` in `scratch` with `TMPDIR` = `scratch/tmp` and OUT in `scratch/out`
/// (both created), standard error going to `scratch/stderr.txt`: a file, not a pipe, since a
/// process that outlived the build and held a pipe open would keep the test waiting for
/// the end of the output.
struct Running {
    child: std::process::Child,
    tmpdir: PathBuf,
    out_dir: PathBuf,
    stderr_path: PathBuf,
}

impl Running {
    fn start(scratch: &Scratch, spec: &serde_json::Value) -> Running {
        let tmpdir = scratch.join("tmp");
        let out_dir = scratch.join("out");
        mkdir(&tmpdir, 0o755);
        mkdir(&out_dir, 0o755);
        let spec = scratch.spec(spec);
        let stderr_path = scratch.join("stderr.txt");
        let child = Command::new(bin_path())
            .current_dir(scratch.path())
            .env_remove("SOURCE_DATE_EPOCH")
            .env("TMPDIR", &tmpdir)
            .arg("build")
            .arg(&spec)
            .arg("-o")
            .arg(out_dir.join("image.tar"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr_path).expect("create stderr.txt"))
            .spawn()
            .expect("start buildimage");
        Running {
            child,
            tmpdir,
            out_dir,
            stderr_path,
        }
    }

    /// Sends `signal`, waits for the build to end, and returns its exit code and standard
    /// error.
    fn stop(mut self, signal: nix::sys::signal::Signal) -> (Option<i32>, String) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("a pid"));
        nix::sys::signal::kill(pid, signal).expect("signal buildimage");
        let mut status = None;
        wait_for("the build to stop", STOP_TIMEOUT, || {
            status = self.child.try_wait().expect("poll buildimage");
            status.is_some()
        });
        let stderr = fs::read_to_string(&self.stderr_path).expect("read stderr.txt");
        (status.and_then(|s| s.code()), stderr)
    }
}

/// Starts a build whose `extraCommands` sleeps, waits until the script runs, sends
/// `signal`, and reports what is left.
fn interrupt_extra_commands(signal: nix::sys::signal::Signal) -> Interrupted {
    let scratch = Scratch::new();
    let root = scratch.join("root");
    mkdir(&root, 0o755);
    write(&root.join("file"), b"content", 0o644);
    let mut build = Running::start(
        &scratch,
        &json!({
            "name": "sleepy", "tag": "t", "copyToRoot": "root", "compressor": "none",
            "extraCommands": SCRIPT,
        }),
    );
    let tmpdir = build.tmpdir.clone();
    let out_dir = build.out_dir.clone();
    let mut pid_file: Option<PathBuf> = None;
    wait_for("the script's sleeper.pid in TMPDIR", START_TIMEOUT, || {
        pid_file = staging_pid_file(&tmpdir);
        pid_file.is_some()
    });
    let pid_file = pid_file.expect("found");
    let sleeper: u32 = fs::read_to_string(&pid_file)
        .expect("read sleeper.pid")
        .trim()
        .parse()
        .expect("a process id");
    assert!(sleeping(sleeper), "the script's sleep runs");
    assert!(
        build.child.try_wait().expect("poll buildimage").is_none(),
        "the build waits for its script"
    );
    let (code, stderr) = build.stop(signal);
    Interrupted {
        code,
        stderr,
        tmpdir: names(&tmpdir),
        out_dir: names(&out_dir),
        sleeper,
    }
}

/// `TMPDIR/buildimage-stage.*/sleeper.pid`, once the script has written it.
fn staging_pid_file(tmpdir: &Path) -> Option<PathBuf> {
    names(tmpdir)
        .into_iter()
        .filter(|n| n.starts_with("buildimage-stage."))
        .map(|n| tmpdir.join(n).join("sleeper.pid"))
        .find(|p| p.exists())
}

fn check_nothing_left(signal: nix::sys::signal::Signal, expected_code: i32) {
    let left = interrupt_extra_commands(signal);
    reap(left.sleeper);
    assert_eq!(left.code, Some(expected_code), "{}", left.stderr);
    assert!(
        left.stderr
            .contains(&format!("interrupted by {signal}, nothing was written")),
        "an interruption message: {}",
        left.stderr
    );
    assert_eq!(
        left.tmpdir,
        Vec::<String>::new(),
        "the staging folder is removed from TMPDIR"
    );
    assert_eq!(
        left.out_dir,
        Vec::<String>::new(),
        "no image and no temporary file"
    );
}

#[test]
fn sigterm_during_extra_commands_leaves_nothing() {
    check_nothing_left(nix::sys::signal::Signal::SIGTERM, 143);
}

#[test]
fn sigint_during_extra_commands_leaves_nothing() {
    check_nothing_left(nix::sys::signal::Signal::SIGINT, 130);
}

/// The script's own children stop with it: a command that went on running would keep
/// writing into a staging folder that no longer exists, and would hold the build's
/// standard error open after the build has ended.
#[test]
fn interrupting_extra_commands_stops_the_scripts_children() {
    let left = interrupt_extra_commands(nix::sys::signal::Signal::SIGTERM);
    let mut gone = false;
    // Give the process a moment to receive its signal and exit.
    for _ in 0..100 {
        if !sleeping(left.sleeper) {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    reap(left.sleeper);
    assert!(
        gone,
        "the script's `sleep` (pid {}) still ran after the interrupted build ended ({:?})",
        left.sleeper, left.code
    );
}

/// Size of the zeros in the base's only layer: they take seconds to unpack into `TMPDIR`
/// and next to nothing compressed.
const BASE_LAYER_ZEROS: u64 = 2 << 30;

/// Writes `dir/base.tar`: a docker-archive whose layer is a zstd-compressed tar of one file
/// of [`BASE_LAYER_ZEROS`] zeros. Its `diff_ids` are not that layer's (computing them costs
/// as much as unpacking it): the build must be stopped before it gets that far.
fn zeros_base(dir: &Path) -> PathBuf {
    use sha2::{Digest, Sha256};
    let mut layer = Vec::new();
    {
        let enc = zstd::stream::Encoder::new(&mut layer, 1).expect("zstd encoder");
        let mut tar = tar::Builder::new(enc);
        let mut header = tar::Header::new_gnu();
        header.set_size(BASE_LAYER_ZEROS);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(
            &mut header,
            "zeros",
            std::io::Read::take(std::io::repeat(0), BASE_LAYER_ZEROS),
        )
        .expect("write the layer");
        tar.into_inner()
            .expect("finish the tar")
            .finish()
            .expect("finish zstd");
    }
    let config = json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{}", "0".repeat(64))] },
    })
    .to_string();
    let config_name = format!("{:x}.json", Sha256::digest(config.as_bytes()));
    let manifest = json!([{
        "Config": config_name, "RepoTags": ["zeros:t"], "Layers": ["layer.tar"],
    }])
    .to_string();
    let path = dir.join("base.tar");
    let mut outer = tar::Builder::new(File::create(&path).expect("create base.tar"));
    for (name, data) in [
        ("manifest.json", manifest.as_bytes()),
        (config_name.as_str(), config.as_bytes()),
        ("layer.tar", layer.as_slice()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        outer
            .append_data(&mut header, name, data)
            .expect("write base.tar");
    }
    outer.finish().expect("finish base.tar");
    path
}

/// SIGTERM while a base image is being unpacked into `TMPDIR`: the build stops (the reader
/// checks the flag between chunks: `buildimage_archive::read`'s unit tests) and the
/// scratch folder goes.
#[test]
fn sigterm_while_unpacking_a_base_stops_it_and_leaves_nothing() {
    let scratch = Scratch::new();
    zeros_base(scratch.path());
    let build = Running::start(
        &scratch,
        &json!({
            "name": "on-zeros", "tag": "t", "fromImage": "base.tar", "compressor": "none",
        }),
    );
    let (tmpdir, out_dir) = (build.tmpdir.clone(), build.out_dir.clone());
    // The layer being unpacked: `TMPDIR/.buildimage-base-*/layer0000.tar`, once it grows.
    wait_for("the base's layer to be unpacked", START_TIMEOUT, || {
        names(&tmpdir)
            .iter()
            .filter(|n| n.starts_with(".buildimage-base-"))
            .filter_map(|n| fs::metadata(tmpdir.join(n).join("layer0000.tar")).ok())
            .any(|md| md.len() > 0)
    });
    let (code, stderr) = build.stop(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(code, Some(143), "{stderr}");
    assert!(
        stderr.contains("interrupted by SIGTERM"),
        "an interruption message: {stderr}"
    );
    assert_eq!(names(&tmpdir), Vec::<String>::new(), "TMPDIR is empty");
    assert_eq!(names(&out_dir), Vec::<String>::new(), "no output");
}
