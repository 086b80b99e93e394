//! What the fuzz targets run on each input, shared with the test that replays their corpus
//! (`tests/faults/fuzz_corpus.rs`), so that both take exactly the same code paths.
//!
//! Each function panics when, and only when, the code under test misbehaves: a panic inside
//! it, or (for base images) a file left outside or after the scratch folder. An input that
//! is merely invalid is an `Err`, which is the expected outcome for almost every input.
//!
//! ```
//! buildimage_cli::fuzzing::spec(br#"{"name": "x", "tag": "t", "uid": 5}"#);
//! buildimage_cli::fuzzing::spec(b"\xff{\"name\": [");
//! buildimage_cli::fuzzing::base_image(b"not an archive");
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use buildimage_archive::read::{BaseImage, Select};

use crate::{request, spec};

/// The folder relative spec paths are joined onto; never read.
const SPEC_DIR: &str = "/specs";

/// The SPEC parser on arbitrary bytes, followed by what `buildimage build` does before it
/// touches a file: the resolution into a request (with the rules between keys), the
/// request's own checks (the reference grammar), and the default output name.
///
/// Text that is not UTF-8 never reaches the parser in the binary (reading the spec fails
/// first); here it is decoded lossily so that the rest of such inputs is still parsed.
pub fn spec(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match spec::parse(&text, Path::new(SPEC_DIR)) {
        Ok(parsed) => {
            for warning in &parsed.warnings {
                assert!(!warning.is_empty(), "an empty warning");
            }
            let spec = parsed.spec;
            let context = request::Context {
                source_date_epoch: None,
                now: 0,
                store: PathBuf::from("/"),
                closure_info: None,
                max_base_size: None,
            };
            match request::build_image(&spec, &context) {
                Ok(request) => {
                    if let Err(err) = request.check() {
                        assert!(!err.to_string().is_empty(), "an empty error message");
                    }
                }
                Err(err) => assert!(!err.to_string().is_empty(), "an empty error message"),
            }
            let out = spec::default_output_name(&spec.name, spec.compressor);
            assert!(out.starts_with("docker-image-"), "output name {out:?}");
            serde_json::to_string(&spec.build_args).expect("buildArgs serialise");
        }
        Err(err) => assert!(!err.to_string().is_empty(), "an empty error message"),
    }
}

/// A base image archive (`fromImage`) of arbitrary bytes: written as a file into a fresh
/// scratch folder, opened with [`BaseImage::open`] and merged with
/// [`BaseImage::filesystem`].
///
/// The archive and the reader's scratch parent sit two folders deep in a private folder,
/// so that a member name used as a host path (`../../x`) would land inside it and be seen.
/// Panics if the reader leaves anything but its own scratch folder while the image lives,
/// or anything at all once it is dropped.
pub fn base_image(data: &[u8]) {
    let sandbox = tempfile::Builder::new()
        .prefix("bi-fuzz-base.")
        .tempdir()
        .expect("create a scratch folder");
    let work = sandbox.path().join("a/b");
    let parent = work.join("scratch");
    fs::create_dir_all(&parent).expect("create the scratch parent");
    let archive = work.join("archive");
    fs::write(&archive, data).expect("write the archive");
    let expected = [
        PathBuf::from("a"),
        PathBuf::from("a/b"),
        PathBuf::from("a/b/archive"),
        PathBuf::from("a/b/scratch"),
    ];

    let opened = BaseImage::open(&archive, Select::default(), &parent);
    match &opened {
        Ok((image, warnings)) => {
            for warning in warnings {
                assert!(!warning.is_empty(), "an empty warning");
            }
            if let Ok(fs) = image.filesystem() {
                // Every query on the merged view must answer, never panic.
                for (path, _) in fs.iter().take(64) {
                    let _ = (fs.kind(path), fs.mode(path), fs.is_dir(path));
                }
            }
            let _ = (image.env(), image.history("1970-01-01T00:00:01Z"));
            let own = image
                .scratch()
                .strip_prefix(sandbox.path())
                .expect("the reader's scratch folder is inside its parent")
                .to_owned();
            for path in listing(sandbox.path()) {
                assert!(
                    expected.contains(&path) || path.starts_with(&own),
                    "the base image reader wrote {} outside its scratch folder",
                    path.display()
                );
            }
        }
        Err(err) => assert!(!err.to_string().is_empty(), "an empty error message"),
    }
    drop(opened);
    assert_eq!(
        listing(sandbox.path()),
        expected,
        "the base image reader left files behind"
    );
}

/// Every path below `root`, relative to it, sorted; symlinks are not followed.
fn listing(root: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries =
            fs::read_dir(&dir).unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()));
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path.clone());
            }
            paths.push(path.strip_prefix(root).expect("below root").to_owned());
        }
    }
    paths.sort();
    paths
}
