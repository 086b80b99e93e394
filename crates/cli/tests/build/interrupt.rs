//! SIGTERM and SIGINT stop a build cleanly while it writes the image: the conventional
//! exit status, the message, and neither the image nor its temporary file left behind.

use std::fs::{self, File};
use std::path::Path;
use std::time::Duration;

use buildimage_test_support::{Buildimage, Interrupt, mkdir, names};
use nix::sys::signal::Signal;
use serde_json::json;

use super::test_dir;

/// Size of the sparse file that keeps the build busy for several seconds (gzip of 2 GiB of
/// zeros) while costing no disk space.
const SPARSE_SIZE: u64 = 2 << 30;

/// How long a build may take to start writing its layer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts a gz build of a large sparse file, waits until it is writing the layer (its
/// temporary output file has grown past the first 1 MiB write buffer), sends `signal` and
/// checks the outcome.
fn interrupt_build(signal: Signal) {
    let dir = test_dir();
    let root = dir.join("root");
    mkdir(&root, 0o755);
    File::create(root.join("sparse"))
        .and_then(|f| f.set_len(SPARSE_SIZE))
        .expect("create a sparse file");
    let spec_path = dir.spec(&json!({
        "name": "big", "tag": "t", "copyToRoot": "root", "compressor": "gz",
    }));
    let mut build = Interrupt::start(
        &dir,
        Buildimage::new().cwd(dir.path()).build(&spec_path),
        "docker-image-big.tar.gz",
    );
    let out_dir = build.out_dir().to_owned();
    build.wait_until("a growing temporary output file", START_TIMEOUT, |_| {
        names(&out_dir)
            .iter()
            .filter(|n| n.starts_with(".docker-image-big.tar.gz.") && is_tmp(n))
            .any(|n| fs::metadata(out_dir.join(n)).is_ok_and(|m| m.len() > 0))
    });
    build.stop(signal).assert_clean();
}

/// Whether `name` ends in `.tmp`, the suffix of buildimage's temporary output files.
fn is_tmp(name: &str) -> bool {
    Path::new(name).extension().is_some_and(|ext| ext == "tmp")
}

#[test]
fn sigterm_stops_the_build_and_leaves_no_output() {
    interrupt_build(Signal::SIGTERM);
}

#[test]
fn sigint_stops_the_build_and_leaves_no_output() {
    interrupt_build(Signal::SIGINT);
}
