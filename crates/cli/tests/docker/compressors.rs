//! Each `compressor` gives a file with its default name and its format that Docker loads
//! and runs (`bashUncompressed`, `bashZstdCompressed` in nixpkgs).

use std::fs;

use serde_json::json;

use buildimage_test_support::{docker, inspect_json, names};

use super::build_with_default_name;

/// Builds an image with `compressor` (or the default when `None`) in an empty current
/// folder and checks the file's name and magic number, then loads, runs and removes it.
fn check_compressor(compressor: Option<&str>, default_name: &str, magic: &[u8], offset: usize) {
    let label = compressor.unwrap_or("default");
    let mut spec = json!({
        "name": format!("buildimage-test/compress-{label}"),
        "tag": "latest",
        "copyToRoot": "root",
        "config": { "Cmd": ["/bin/echo", format!("compressed with {label}")] },
    });
    if let Some(compressor) = compressor {
        spec["compressor"] = json!(compressor);
    }
    let (_dir, cwd, built) = build_with_default_name(&spec);
    // The image is the only file in the current folder: no temporary file is left over.
    assert_eq!(names(&cwd), [default_name]);
    assert_eq!(
        fs::canonicalize(&built.archive).expect("canonical outPath"),
        fs::canonicalize(cwd.join(default_name)).expect("canonical image path"),
        "outPath"
    );
    let bytes = built.bytes();
    assert_eq!(
        bytes.get(offset..offset + magic.len()),
        Some(magic),
        "{default_name} starts with the wrong magic number"
    );

    let docker = docker();
    let image = docker.load_guarded(&built.archive);
    assert_eq!(
        image.name(),
        format!("buildimage-test/compress-{label}:latest")
    );
    assert_eq!(image.name(), built.image());
    assert_eq!(
        inspect_json(&docker, image.name(), ".Id"),
        json!(built.str("configDigest"))
    );
    assert_eq!(
        docker.run(image.name(), &[]).assert_success(),
        format!("compressed with {label}\n")
    );
    let name = image.name().to_owned();
    drop(image);
    assert!(!docker.has_image(&name), "the guard removed {name}");
}

/// A POSIX tar has `ustar` at offset 257.
const TAR_MAGIC: &[u8] = b"ustar";
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

#[test]
fn compressor_none_writes_a_plain_tar_named_docker_image_name_tar_that_loads_and_runs() {
    check_compressor(
        Some("none"),
        "docker-image-compress-none.tar",
        TAR_MAGIC,
        257,
    );
}

#[test]
fn compressor_gz_writes_a_gzip_named_docker_image_name_tar_gz_that_loads_and_runs() {
    check_compressor(Some("gz"), "docker-image-compress-gz.tar.gz", GZIP_MAGIC, 0);
}

#[test]
fn compressor_zstd_writes_a_zstd_named_docker_image_name_tar_zst_that_loads_and_runs() {
    check_compressor(
        Some("zstd"),
        "docker-image-compress-zstd.tar.zst",
        ZSTD_MAGIC,
        0,
    );
}

#[test]
fn compressor_defaults_to_gz_named_docker_image_name_tar_gz() {
    check_compressor(None, "docker-image-compress-default.tar.gz", GZIP_MAGIC, 0);
}
