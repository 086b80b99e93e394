//! SIGTERM and SIGINT stop a build cleanly: the conventional exit status, a message, and
//! neither the image nor its temporary file left behind.

use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use serde_json::json;

use super::{Scratch, bin_path, mkdir, names};
use crate::support::wait_for;

/// Size of the sparse file that keeps the build busy for several seconds (gzip of 2 GiB of
/// zeros) while costing no disk space.
const SPARSE_SIZE: u64 = 2 << 30;

/// How long a build may take to start writing its layer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts a gz build of a large sparse file, waits until it is writing the layer (its
/// temporary output file has grown past the first 1 MiB write buffer), sends `signal` and
/// checks the outcome.
fn interrupt_build(signal: Signal, expected_code: i32) {
    let scratch = Scratch::new();
    let root = scratch.join("root");
    mkdir(&root, 0o755);
    File::create(root.join("sparse"))
        .and_then(|f| f.set_len(SPARSE_SIZE))
        .expect("create a sparse file");
    let out_dir = scratch.join("out");
    mkdir(&out_dir, 0o755);
    let spec_path = scratch.spec(&json!({
        "name": "big", "tag": "t", "copyToRoot": "root", "compressor": "gz",
    }));
    let mut child = Command::new(bin_path())
        .current_dir(scratch.path())
        .env_remove("SOURCE_DATE_EPOCH")
        .arg("build")
        .arg(&spec_path)
        .arg("-o")
        .arg(out_dir.join("docker-image-big.tar.gz"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start buildimage");

    wait_for("a growing temporary output file", START_TIMEOUT, || {
        assert!(
            child.try_wait().expect("poll buildimage").is_none(),
            "the build ended before it could be interrupted; make SPARSE_SIZE larger"
        );
        names(&out_dir)
            .iter()
            .filter(|n| n.starts_with(".docker-image-big.tar.gz.") && is_tmp(n))
            .any(|n| fs::metadata(out_dir.join(n)).is_ok_and(|m| m.len() > 0))
    });
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
    kill(pid, signal).expect("signal buildimage");

    let output = child.wait_with_output().expect("wait for buildimage");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(expected_code), "{stderr}");
    assert!(
        stderr.contains(&format!("interrupted by {signal}, nothing was written")),
        "an interruption message: {stderr}"
    );
    assert!(
        names(&out_dir).is_empty(),
        "no image and no temporary file: {:?}",
        names(&out_dir)
    );
}

/// Whether `name` ends in `.tmp`, the suffix of buildimage's temporary output files.
fn is_tmp(name: &str) -> bool {
    Path::new(name).extension().is_some_and(|ext| ext == "tmp")
}

#[test]
fn sigterm_stops_the_build_and_leaves_no_output() {
    interrupt_build(Signal::SIGTERM, 143);
}

#[test]
fn sigint_stops_the_build_and_leaves_no_output() {
    interrupt_build(Signal::SIGINT, 130);
}
