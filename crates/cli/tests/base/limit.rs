//! `--max-base-size`: what a base archive and its layers may expand to. A zstd bomb fails
//! within seconds, naming the layer and the limit, and leaves nothing behind; a legitimate
//! layer of 8 GiB of zeros builds once the limit is raised, without 8 GiB of disk (the
//! unpacked layer is written with holes, and the image goes to `/dev/null`).

use std::ffi::OsStr;
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};

use buildimage_test_support::{BaseImage, names};

use super::Case;

/// zstd of `mib` MiB of zeros, as concatenated frames of 1 MiB (a stream the decoder reads
/// as one): about 40 bytes per MiB, made in milliseconds.
fn zstd_zeros(mib: usize) -> Vec<u8> {
    let frame = zstd::encode_all(&vec![0u8; 1 << 20][..], 1).expect("zstd");
    frame.repeat(mib)
}

/// A child of `from` with no files of its own.
fn child(from: &str) -> serde_json::Value {
    json!({
        "name": "buildimage-test/limit-child",
        "tag": "1",
        "fromImage": from,
        "compressor": "none",
    })
}

/// Runs a build that must fail, with `args`; checks that it leaves no output, nothing
/// beside it and nothing in `TMPDIR` (as [`Case::build_fails`]), and returns standard error
/// and how long it took.
fn build_fails_with(case: &Case, spec: &serde_json::Value, args: &[&str]) -> (String, Duration) {
    let mut before = names(case.path());
    before.retain(|n| n != "child.json");
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let start = Instant::now();
    let output = case.command("child", spec, &args).run_err();
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !case.out("child", spec).exists(),
        "a failed build left its output"
    );
    let mut after = names(case.path());
    after.retain(|n| n != "child.json");
    assert_eq!(after, before, "a failed build left files beside its output");
    case.assert_tmp_empty();
    (stderr, took)
}

#[test]
fn zstd_bomb_base_fails_fast_naming_the_layer_and_the_limit_and_leaves_nothing() {
    let case = Case::new();
    // 4 GiB of zeros in about 170 KiB: over the default limit for an archive this small
    // (32 times its size, at least 1 GiB).
    let bomb = zstd_zeros(4 << 10);
    let image = BaseImage::new("buildimage-test/bomb:1")
        .raw_layer(bomb, &format!("sha256:{}", "0".repeat(64)))
        .to_image();
    let layer = image.layers().remove(0);
    image.save(&case.join("bomb.tar"));
    let size = std::fs::metadata(case.join("bomb.tar"))
        .expect("stat")
        .len();
    let spec = child("bomb.tar");

    let (stderr, took) = build_fails_with(&case, &spec, &[]);
    eprintln!("{size}-byte bomb, default limit: {took:.1?}\n{stderr}");
    for needle in [
        "Key `fromImage` (--max-base-size)",
        "Base image layer ",
        &layer,
        "expands to more than 1073741824 bytes (1 GiB)",
    ] {
        assert!(stderr.contains(needle), "no {needle:?} in:\n{stderr}");
    }
    assert!(took < Duration::from_secs(45), "took {took:?}");

    let (stderr, took) = build_fails_with(&case, &spec, &["--max-base-size", "16M"]);
    eprintln!("--max-base-size 16M: {took:.1?}\n{stderr}");
    assert!(
        stderr.contains("expands to more than 16777216 bytes (16 MiB)"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn bad_max_base_size_is_refused_by_the_argument_parser() {
    let case = Case::new();
    let spec = child("none.tar");
    let (stderr, _) = build_fails_with(&case, &spec, &["--max-base-size", "1.5G"]);
    assert!(
        stderr.contains("invalid value '1.5G' for '--max-base-size <BYTES>'"),
        "{stderr}"
    );
}

/// A layer of one 8 GiB file of zeros, zstd-compressed (about 300 KiB): refused by the
/// default limit, built with `--max-base-size 9G`. The unpacked layer takes no disk to
/// speak of (holes), and the image is streamed into `/dev/null`, so the test needs
/// neither 8 GiB of disk nor of memory.
#[test]
fn base_layer_of_8_gib_of_zeros_builds_with_a_raised_limit_without_8_gib_of_disk() {
    const BIG: u64 = 8 << 30;
    let case = Case::new();
    let mut header = tar::Header::new_gnu();
    header.set_path("big").expect("name");
    header.set_size(BIG);
    header.set_mode(0o644);
    header.set_mtime(1);
    header.set_cksum();
    let start = Instant::now();
    let mut hash = Sha256::new();
    let mut zstd = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("zstd");
    let zeros = vec![0u8; 1 << 20];
    hash.update(header.as_bytes());
    zstd.write_all(header.as_bytes()).expect("zstd");
    for _ in 0..BIG >> 20 {
        hash.update(&zeros);
        zstd.write_all(&zeros).expect("zstd");
    }
    // The end of the archive: two zero blocks.
    hash.update(&zeros[..1024]);
    zstd.write_all(&zeros[..1024]).expect("zstd");
    let stored = zstd.finish().expect("zstd");
    let diff_id = format!(
        "sha256:{}",
        data_encoding::HEXLOWER.encode(&hash.finalize())
    );
    let archive = BaseImage::new("buildimage-test/big:1")
        .raw_layer(stored, &diff_id)
        .to_bytes();
    std::fs::write(case.join("big.tar"), &archive).expect("write the base");
    eprintln!(
        "base of {} bytes made in {:.1?}",
        archive.len(),
        start.elapsed()
    );
    let spec = child("big.tar");

    let (stderr, _) = build_fails_with(&case, &spec, &[]);
    assert!(stderr.contains("(--max-base-size)"), "{stderr}");

    let start = Instant::now();
    let spec_path = case.spec_named("big-child", &spec);
    let output = buildimage_test_support::Buildimage::new()
        .tmpdir(&case.tmp())
        .cwd(case.path())
        .build(&spec_path)
        .out("/dev/null")
        .args(["--max-base-size", "9G", "--json"])
        .run_ok();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("--json");
    eprintln!("built on the 8 GiB layer in {:.1?}", start.elapsed());
    assert_eq!(
        report["imageName"], "buildimage-test/limit-child",
        "{report:#}"
    );
    case.assert_tmp_empty();
}
