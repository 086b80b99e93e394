//! SIGTERM and SIGINT stop a build cleanly: the conventional exit status, a message, and
//! neither the image nor its temporary file left behind.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Scratch, bin_path, mkdir, names};

/// Size of the sparse file that keeps the build busy for several seconds (gzip of 2 GiB of
/// zeros) while costing no disk space.
const SPARSE_SIZE: u64 = 2 << 30;

/// How long a build may take to create its temporary output file.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts a gz build of a large sparse file, waits until its temporary file exists in the
/// output folder, sends `signal` and checks the outcome.
fn interrupt_build(signal: &str, expected_code: i32) {
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

    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let started = names(&out_dir)
            .iter()
            .any(|n| n.starts_with(".docker-image-big.tar.gz.") && is_tmp(n));
        if started {
            break;
        }
        if let Some(status) = child.try_wait().expect("poll buildimage") {
            panic!("buildimage ended ({status}) before its temporary file was seen");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "no temporary file in {} after {START_TIMEOUT:?}",
                out_dir.display()
            );
        }
        sleep(Duration::from_millis(10));
    }
    // Let it get into the layer's bytes.
    sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().expect("poll buildimage").is_none(),
        "the build finished too early to be interrupted; make SPARSE_SIZE larger"
    );
    let pid = child.id().to_string();
    let kill = Command::new("sh")
        .args(["-c", "kill -s \"$1\" \"$2\"", "sh", signal, &pid])
        .status()
        .expect("run kill");
    assert!(kill.success(), "kill -s {signal} {pid} failed");

    let output = child.wait_with_output().expect("wait for buildimage");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert_eq!(output.status.code(), Some(expected_code), "{stderr}");
    assert!(
        stderr.to_lowercase().contains("interrupted"),
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
    interrupt_build("TERM", 143);
}

#[test]
fn sigint_stops_the_build_and_leaves_no_output() {
    interrupt_build("INT", 130);
}
