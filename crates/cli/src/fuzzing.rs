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
//! buildimage_cli::fuzzing::layered_spec(br#"{"name": "x", "layeringPipeline": [["popularity_contest"]]}"#);
//! buildimage_cli::fuzzing::oci_index(br#"{"manifests": [{"annotations": 5}]}"#);
//! buildimage_cli::fuzzing::challenge(br#"Bearer realm="https://auth", scope="a\"b""#);
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use buildimage_archive::read::{BaseImage, Select};
use buildimage_archive::{Blob, BlobStore, OciLayout};
use buildimage_pipeline::layering::Graph;
use serde_json::Value;

use crate::spec::layered::{self, Function};
use crate::{request, spec};

/// What the `base_image` target lets decompression yield: enough for every seed, small
/// enough that a bomb costs the fuzzer milliseconds, not the disk.
pub const BASE_MAX_EXPANSION: u64 = 16 << 20;

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
/// scratch folder, opened with [`BaseImage::open_with`] under a limit of
/// [`BASE_MAX_EXPANSION`] bytes of decompressed data, and merged with
/// [`BaseImage::filesystem`].
///
/// The archive and the reader's scratch parent sit two folders deep in a private folder,
/// so that a member name used as a host path (`../../x`) would land inside it and be seen.
/// Panics if the reader leaves anything but its own scratch folder while the image lives,
/// or anything at all once it is dropped, or if what it keeps is longer than the archive
/// plus the limit (the promise `--max-base-size` makes).
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

    let opened = BaseImage::open_with(
        &archive,
        Select::default(),
        &parent,
        None,
        Some(BASE_MAX_EXPANSION),
    );
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
            let kept: u64 = listing(image.scratch())
                .iter()
                .filter_map(|p| fs::symlink_metadata(image.scratch().join(p)).ok())
                .filter(fs::Metadata::is_file)
                .map(|m| m.len())
                .sum();
            assert!(
                kept <= data.len() as u64 + BASE_MAX_EXPANSION,
                "the reader kept {kept} bytes from a {}-byte archive",
                data.len()
            );
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

/// The layered SPEC parser (`build-layered` and `stream-layered`) on arbitrary bytes,
/// followed by the resolution into a request and its checks, the default output name, and
/// the spec's `layeringPipeline`, if any, applied to a small references graph: every layer
/// it makes must hold only paths of the graph, each once.
pub fn layered_spec(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for function in [Function::Build, Function::Stream] {
        let parsed = match layered::parse(&text, Path::new(SPEC_DIR), function) {
            Ok(parsed) => parsed,
            Err(err) => {
                assert!(!err.to_string().is_empty(), "an empty error message");
                continue;
            }
        };
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
        match request::build_layered(&spec, &context) {
            Ok(request) => {
                if let Err(err) = request.check() {
                    assert!(!err.to_string().is_empty(), "an empty error message");
                }
            }
            Err(err) => assert!(!err.to_string().is_empty(), "an empty error message"),
        }
        let out = layered::default_output_name(&spec.name, spec.compressor);
        assert!(out.contains(".tar"), "output name {out:?}");
        if let Some(pipeline) = &spec.layering_pipeline {
            let graph = sample_graph();
            let names = graph.names();
            match pipeline.apply(graph) {
                Ok(layers) => {
                    let mut seen = std::collections::BTreeSet::new();
                    for name in layers.iter().flatten() {
                        assert!(names.contains(name), "{name} is not in the graph");
                        assert!(seen.insert(name), "{name} is in two layers: {layers:?}");
                    }
                }
                Err(err) => assert!(!err.to_string().is_empty(), "an empty error message"),
            }
        }
    }
}

/// A references graph like a small closure: a root, two libraries sharing a third, a
/// cycle, and a path nothing references.
fn sample_graph() -> Graph {
    const S: &str = "/nix/store/";
    let name = |n: &str| format!("{S}{n}");
    let names: Vec<String> = [
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-root",
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-glibc-2.40",
        "cccccccccccccccccccccccccccccccc-openssl-3.0",
        "dddddddddddddddddddddddddddddddd-zlib-1.3",
        "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-bash-5.2",
        "ffffffffffffffffffffffffffffffff-cycle-a",
        "gggggggggggggggggggggggggggggggg-cycle-b",
        "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh-lonely",
    ]
    .iter()
    .map(|n| name(n))
    .collect();
    let refs: [&[usize]; 8] = [
        &[1, 2, 3, 4, 5],
        &[],
        &[1, 3],
        &[1],
        &[1],
        &[6],
        &[5, 1],
        &[],
    ];
    Graph::from_references(names.iter().zip(refs).enumerate().map(|(i, (n, r))| {
        let size = 1000 - 100 * i as u64;
        (
            n.as_str(),
            size,
            r.iter().map(|&j| names[j].as_str()).collect(),
        )
    }))
}

/// The reference the `oci_index` target names its manifest.
const OCI_REF: &str = "fuzz:latest";

/// Arbitrary bytes as the `index.json` of an existing OCI layout, to which an image is
/// added ([`OciLayout`], as `-o oci:DIR` does). Either an error that says what is wrong,
/// or an index that is JSON, lists the new manifest once under its reference, and keeps
/// every other entry of a `manifests` list, in order.
pub fn oci_index(data: &[u8]) {
    let dir = tempfile::Builder::new()
        .prefix("bi-fuzz-oci.")
        .tempdir()
        .expect("create a scratch folder");
    let layout = dir.path().join("layout");
    fs::create_dir(&layout).expect("create the layout");
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("write oci-layout");
    fs::write(layout.join("index.json"), data).expect("write index.json");
    let manifest = br#"{"schemaVersion":2}"#;
    let blob = Blob {
        // `printf '{"schemaVersion":2}' | sha256sum`
        digest: "sha256:bafebd36189ad3688b7b3915ea55d461e0bfcfbdde11e54b0a123999fb6be50f"
            .to_owned(),
        size: manifest.len() as u64,
        media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
    };
    let result = OciLayout::open(&layout, Some(OCI_REF.to_owned()))
        .and_then(|mut oci| oci.put_manifest(&blob, manifest, "ignored"));
    if let Err(err) = result {
        assert!(!err.to_string().is_empty(), "an empty error message");
        return;
    }
    let written: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("read"))
            .expect("the new index.json is JSON");
    assert_eq!(written["schemaVersion"], 2, "{written}");
    let entries = written["manifests"].as_array().expect("a manifests list");
    let named = |entry: &Value| {
        entry
            .pointer("/annotations/org.opencontainers.image.ref.name")
            .and_then(Value::as_str)
            == Some(OCI_REF)
    };
    let ours: Vec<&Value> = entries.iter().filter(|e| named(e)).collect();
    assert_eq!(ours.len(), 1, "{written}");
    assert_eq!(ours[0]["digest"], Value::String(blob.digest.clone()));
    let before: Vec<Value> = serde_json::from_slice::<Value>(data)
        .ok()
        .and_then(|v| v.get("manifests").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    let kept: Vec<&Value> = before.iter().filter(|e| !named(e)).collect();
    let others: Vec<&Value> = entries.iter().filter(|e| !named(e)).collect();
    assert_eq!(
        kept, others,
        "entries of other references must stay as they were"
    );
}

/// A `WWW-Authenticate` header of arbitrary bytes: parsed into challenges, never a panic;
/// schemes are non-empty and lower-case, parameter names lower-case, and a challenge has
/// parameters or a `token68`, not both.
pub fn challenge(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for challenge in buildimage_remote::registry::parse_challenges(&text) {
        assert!(!challenge.scheme.is_empty(), "an empty scheme in {text:?}");
        assert_eq!(
            challenge.scheme,
            challenge.scheme.to_lowercase(),
            "{text:?}"
        );
        for name in challenge.params.keys() {
            assert_eq!(*name, name.to_lowercase(), "{text:?}");
        }
        assert!(
            challenge.params.is_empty() || challenge.token68.is_none(),
            "{challenge:?} from {text:?}"
        );
    }
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
