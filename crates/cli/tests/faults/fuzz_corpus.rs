//! The fuzz inputs replayed through the fuzz targets' own code (`buildimage_cli::fuzzing`):
//! the seeds (`fuzz/seeds/<target>/`) and the corpus `cargo xtask fuzz` kept
//! (`fuzz/corpus/<target>/`), so that an input that once crashed, or one that reached new
//! code, is checked by every `cargo test`, without nightly or cargo-fuzz.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The folder `kind` (`seeds` or `corpus`) of `target`.
fn inputs(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(kind)
        .join(target)
}

/// Runs `run` on every seed and corpus file of `target`; panics naming every input that
/// panicked. Returns how many seeds and corpus inputs there were.
fn replay(target: &str, run: fn(&[u8])) -> (usize, usize) {
    let mut counts = [0, 0];
    let mut failed = Vec::new();
    for (kind, count) in ["seeds", "corpus"].into_iter().zip(&mut counts) {
        let dir = inputs(kind, target);
        let mut files: Vec<PathBuf> = match fs::read_dir(&dir) {
            Ok(entries) => entries
                .map(|entry| entry.expect("a corpus entry").path())
                .collect(),
            // The corpus folder appears with the first `cargo xtask fuzz`.
            Err(err) if kind == "corpus" && err.kind() == std::io::ErrorKind::NotFound => {
                Vec::new()
            }
            Err(err) => panic!("cannot list {}: {err}", dir.display()),
        };
        files.sort();
        for file in &files {
            let data =
                fs::read(file).unwrap_or_else(|err| panic!("read {}: {err}", file.display()));
            if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
                failed.push(file.display().to_string());
            }
        }
        *count = files.len();
    }
    assert!(
        failed.is_empty(),
        "fuzz target {target} panicked on {} input(s) (the panic messages are above):\n{}",
        failed.len(),
        failed.join("\n")
    );
    (counts[0], counts[1])
}

#[test]
fn spec_corpus_never_panics() {
    let (seeds, _) = replay("spec", buildimage_cli::fuzzing::spec);
    assert!(seeds >= 4, "the spec seeds are missing ({seeds} found)");
}

#[test]
fn base_image_corpus_never_panics_nor_writes_outside_its_scratch_folder() {
    let (seeds, _) = replay("base_image", buildimage_cli::fuzzing::base_image);
    assert!(
        seeds >= 6,
        "the base image seeds are missing ({seeds} found)"
    );
}

/// The seeds are real images: the reader must accept them, or the fuzzer would start from
/// nothing but errors.
#[test]
fn base_image_seeds_are_valid_images() {
    let dir = inputs("seeds", "base_image");
    let scratch = tempfile::tempdir().expect("a scratch folder");
    for name in [
        "seed-empty-none",
        "seed-tree-none",
        "seed-tree-gz",
        "seed-tree-zstd",
        "seed-tree-pax-gzip-layers",
        "seed-two-layers-none",
    ] {
        let (image, _) = buildimage_archive::BaseImage::open(
            &dir.join(name),
            buildimage_archive::Select::default(),
            scratch.path(),
        )
        .unwrap_or_else(|err| panic!("seed {name}: {err}"));
        image
            .filesystem()
            .unwrap_or_else(|err| panic!("seed {name}: {err}"));
    }
}

/// The spec seeds parse.
#[test]
fn spec_seeds_are_valid_specs() {
    let dir = inputs("seeds", "spec");
    for name in [
        "seed-busybox",
        "seed-redis",
        "seed-nix-eval-every-key",
        "seed-root-mode",
    ] {
        let text = fs::read_to_string(dir.join(name)).expect("read a seed");
        buildimage_cli::spec::parse(&text, Path::new("/specs"))
            .unwrap_or_else(|err| panic!("seed {name}: {err}"));
    }
}

#[test]
fn layered_spec_corpus_never_panics() {
    let (seeds, _) = replay("layered_spec", buildimage_cli::fuzzing::layered_spec);
    assert!(
        seeds >= 4,
        "the layered spec seeds are missing ({seeds} found)"
    );
}

#[test]
fn oci_index_corpus_never_panics_and_keeps_other_entries() {
    let (seeds, _) = replay("oci_index", buildimage_cli::fuzzing::oci_index);
    assert!(
        seeds >= 4,
        "the OCI index seeds are missing ({seeds} found)"
    );
}

#[test]
fn challenge_corpus_never_panics() {
    let (seeds, _) = replay("challenge", buildimage_cli::fuzzing::challenge);
    assert!(
        seeds >= 4,
        "the challenge seeds are missing ({seeds} found)"
    );
}

/// The layered seeds parse, and their pipelines apply, so that the fuzzer starts from
/// inputs that reach the layering steps.
#[test]
fn layered_spec_seeds_are_valid_specs() {
    let dir = inputs("seeds", "layered_spec");
    for name in [
        "seed-minimal",
        "seed-pipeline",
        "seed-every-step",
        "seed-every-key",
    ] {
        let text = fs::read_to_string(dir.join(name)).expect("read a seed");
        let parsed = buildimage_cli::spec::layered::parse(
            &text,
            Path::new("/specs"),
            buildimage_cli::spec::layered::Function::Build,
        )
        .unwrap_or_else(|err| panic!("seed {name}: {err}"));
        assert!(
            parsed.warnings.is_empty(),
            "seed {name}: {:?}",
            parsed.warnings
        );
    }
}
