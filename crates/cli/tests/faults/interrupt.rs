//! SIGINT and SIGTERM while `extraCommands` runs, and while a base image is unpacked: the
//! build stops the script, removes its staging or scratch folder from `TMPDIR` and the
//! temporary output file, and exits with 128 + the signal's number. (SIGKILL cannot be
//! caught: see the README for what it leaves.)

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use buildimage_test_support::{
    BaseImage, Buildimage, Interrupt, Member, Stopped, TarWriter, TestDir, alive, mkdir, names,
    write,
};
use nix::sys::signal::Signal;
use serde_json::json;

use super::test_dir;

/// How long the build may take to get into the script.
const START_TIMEOUT: Duration = Duration::from_mins(1);

/// The script: it records the process id of the `sleep` it starts (a child of the shell,
/// as the commands of most scripts are), then waits for it.
const SCRIPT: &str =
    "sleep 300 &\necho $! > sleeper.pid.new\nmv sleeper.pid.new sleeper.pid\nwait\n";

/// Starts `spec` in `dir` with OUT `out/image.tar`.
fn start(dir: &TestDir, spec: &serde_json::Value) -> Interrupt {
    let spec = dir.spec(spec);
    Interrupt::start(
        dir,
        Buildimage::new().cwd(dir.path()).build(&spec),
        "image.tar",
    )
}

/// Starts a build whose `extraCommands` sleeps, waits until the script runs, sends
/// `signal`, and returns what is left and the process id of the script's `sleep`.
fn interrupt_extra_commands(signal: Signal) -> (Stopped, i32) {
    let dir = test_dir();
    let root = dir.join("root");
    mkdir(&root, 0o755);
    write(&root.join("file"), b"content", 0o644);
    let mut build = start(
        &dir,
        &json!({
            "name": "sleepy", "tag": "t", "copyToRoot": "root", "compressor": "none",
            "extraCommands": SCRIPT,
        }),
    );
    let tmpdir = build.tmpdir().to_owned();
    let mut pid_file: Option<PathBuf> = None;
    build.wait_until("the script's sleeper.pid in TMPDIR", START_TIMEOUT, |_| {
        pid_file = staging_pid_file(&tmpdir);
        pid_file.is_some()
    });
    let pid_file = pid_file.expect("found");
    let sleeper: i32 = fs::read_to_string(&pid_file)
        .expect("read sleeper.pid")
        .trim()
        .parse()
        .expect("a process id");
    assert!(alive(sleeper), "the script's sleep runs");
    (build.stop(signal), sleeper)
}

/// `TMPDIR/buildimage-stage.*/sleeper.pid`, once the script has written it.
fn staging_pid_file(tmpdir: &Path) -> Option<PathBuf> {
    names(tmpdir)
        .into_iter()
        .filter(|n| n.starts_with("buildimage-stage."))
        .map(|n| tmpdir.join(n).join("sleeper.pid"))
        .find(|p| p.exists())
}

#[test]
fn sigterm_during_extra_commands_leaves_nothing() {
    interrupt_extra_commands(Signal::SIGTERM).0.assert_clean();
}

#[test]
fn sigint_during_extra_commands_leaves_nothing() {
    interrupt_extra_commands(Signal::SIGINT).0.assert_clean();
}

/// The script's own children stop with it: a command that went on running would keep
/// writing into a staging folder that no longer exists, and would hold the build's
/// standard error open after the build has ended.
#[test]
fn interrupting_extra_commands_stops_the_scripts_children() {
    let (stopped, sleeper) = interrupt_extra_commands(Signal::SIGTERM);
    assert!(
        stopped.children.contains(&sleeper),
        "the sleep (pid {sleeper}) is among the build's processes {:?}",
        stopped.children
    );
    assert!(
        !stopped.left.contains(&sleeper),
        "the script's `sleep` (pid {sleeper}) still ran after the interrupted build ended ({:?})",
        stopped.code
    );
}

/// Size of the zeros in the base's only layer: they take seconds to unpack into `TMPDIR`
/// and next to nothing compressed.
const BASE_LAYER_ZEROS: u64 = 2 << 30;

/// Writes `dir/base.tar`: a docker-archive whose layer is a zstd-compressed tar of one file
/// of [`BASE_LAYER_ZEROS`] zeros. Its `diff_ids` are not that layer's (computing them costs
/// as much as unpacking it): the build must be stopped before it gets that far.
fn zeros_base(dir: &Path) {
    let encoder = zstd::stream::Encoder::new(Vec::new(), 1).expect("zstd encoder");
    let mut layer = TarWriter::new(encoder);
    layer.append_from(
        &Member::file("zeros", Vec::new(), 0o644),
        BASE_LAYER_ZEROS,
        std::io::repeat(0).take(BASE_LAYER_ZEROS),
    );
    let layer = layer.finish().finish().expect("finish zstd");
    BaseImage::new("zeros:t")
        .raw_layer(layer, &format!("sha256:{}", "0".repeat(64)))
        .config(json!({ "architecture": "amd64", "config": {} }))
        .save(&dir.join("base.tar"));
}

/// SIGTERM while a base image is being unpacked into `TMPDIR`: the build stops (the reader
/// checks the flag between chunks: `buildimage_archive::read`'s unit tests) and the
/// scratch folder goes.
#[test]
fn sigterm_while_unpacking_a_base_stops_it_and_leaves_nothing() {
    let dir = test_dir();
    zeros_base(dir.path());
    let mut build = start(
        &dir,
        &json!({
            "name": "on-zeros", "tag": "t", "fromImage": "base.tar", "compressor": "none",
        }),
    );
    let tmpdir = build.tmpdir().to_owned();
    // The layer being unpacked: `TMPDIR/.buildimage-base-*/layer0000.tar`, once it grows.
    build.wait_until("the base's layer to be unpacked", START_TIMEOUT, |_| {
        names(&tmpdir)
            .iter()
            .filter(|n| n.starts_with(".buildimage-base-"))
            .filter_map(|n| fs::metadata(tmpdir.join(n).join("layer0000.tar")).ok())
            .any(|md| md.len() > 0)
    });
    build.stop(Signal::SIGTERM).assert_clean();
}
