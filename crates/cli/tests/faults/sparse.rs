//! A sparse source file of over 8 GiB: larger than the 11 octal digits of a tar header
//! hold (8 GiB - 1), so its size goes in base-256 (GNU's extension, first byte 0x80), in
//! the layer and, for `layer.tar` itself, in the outer archive. GNU tar must read both
//! sizes back. The file is mostly holes, so zstd keeps the image small; the build reads
//! every byte, about 45 s with the unoptimised binary the tests use.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use serde_json::json;

use buildimage_test_support::{Buildimage, mkdir, require_tool, run_ok};

use super::test_dir;

/// Over 8 GiB, and not a multiple of a block, so that the padding is exercised too.
const BIG: u64 = (8 << 30) + 123;

/// Size of the copy buffer.
const CHUNK: usize = 1 << 20;

/// Copies `from` to its end into `to`, leaving a hole for every chunk of zeros, so that an
/// archive of 8 GiB of zeros costs no disk. Returns the offsets of the chunks that were not
/// all zeros.
fn sparse_copy(from: &mut impl Read, to: &mut File) -> io::Result<Vec<u64>> {
    let zeros = vec![0u8; CHUNK];
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0u64;
    let mut data = Vec::new();
    loop {
        let n = fill(from, &mut buf)?;
        if n == 0 {
            break;
        }
        // Slice equality of bytes is a memcmp, fast even in an unoptimised test build.
        if buf[..n] == zeros[..n] {
            to.seek(SeekFrom::Current(i64::try_from(n).expect("a chunk")))?;
        } else {
            to.write_all(&buf[..n])?;
            data.push(offset);
        }
        offset += n as u64;
    }
    to.set_len(offset)?;
    Ok(data)
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn fill(from: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match from.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The size GNU tar lists for `member` in `archive` (`tar -tvf`).
fn gnu_tar_size(archive: &Path, member: &str) -> u64 {
    require_tool("tar", "tar");
    let output = run_ok(
        Command::new("tar")
            .arg("--numeric-owner")
            .arg("-tvf")
            .arg(archive),
    );
    let listing = String::from_utf8_lossy(&output.stdout);
    let line = listing
        .lines()
        .find(|line| line.ends_with(member))
        .unwrap_or_else(|| panic!("GNU tar does not list {member}:\n{listing}"));
    line.split_whitespace()
        .nth(2)
        .and_then(|size| size.parse().ok())
        .unwrap_or_else(|| panic!("no size in {line:?}"))
}

/// The base-256 value of a numeric header field, checking its marker.
fn base256(field: &[u8]) -> u64 {
    assert_eq!(
        field[0], 0x80,
        "a size beyond 8 GiB is stored in base-256: {field:02x?}"
    );
    field[1..].iter().fold(0u64, |n, &b| {
        n.checked_mul(256).expect("fits") + u64::from(b)
    })
}

#[test]
fn sparse_file_over_8_gib_gets_a_base_256_size_that_gnu_tar_reads() {
    let scratch = test_dir();
    mkdir(&scratch.join("root"), 0o755);
    File::create(scratch.join("root/big"))
        .and_then(|f| f.set_len(BIG))
        .expect("create a sparse file");
    let image = scratch.join("image.tar.zst");
    Buildimage::new()
        .cwd(scratch.path())
        .build(scratch.spec(&json!({
            "name": "sparse", "tag": "t", "copyToRoot": "root", "compressor": "zstd",
        })))
        .out(&image)
        .run_ok();
    let compressed = fs::metadata(&image).expect("stat the image").len();
    assert!(
        compressed < 16 << 20,
        "zstd of zeros is small: {compressed}"
    );

    // The outer archive, decompressed into a sparse file.
    let plain = scratch.join("plain.tar");
    let mut decoder =
        zstd::stream::read::Decoder::new(File::open(&image).expect("open")).expect("a zstd stream");
    let mut plain_file = File::create(&plain).expect("create plain.tar");
    sparse_copy(&mut decoder, &mut plain_file).expect("decompress");
    drop(plain_file);

    // Find layer.tar: its header, where its data starts, and its size.
    let mut archive = tar::Archive::new(File::open(&plain).expect("open plain.tar"));
    let (name, outer_field, offset, layer_size) = archive
        .entries_with_seek()
        .expect("read plain.tar")
        .map(|e| e.expect("an outer member"))
        .find(|e| e.path_bytes().ends_with(b"/layer.tar"))
        .map(|e| {
            let field = e.header().as_bytes()[124..136].to_vec();
            (
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                field,
                e.raw_file_position(),
                e.size(),
            )
        })
        .expect("a layer.tar member");
    assert_eq!(base256(&outer_field), layer_size, "outer header of {name}");
    // `./` and `./big` (a header each, the contents padded to a block), the two zero
    // blocks of the end, then up to a whole 10 240-byte record.
    assert_eq!(
        layer_size,
        (512 + 512 + BIG.next_multiple_of(512) + 1024).next_multiple_of(10_240)
    );
    assert_eq!(
        gnu_tar_size(&plain, &name),
        layer_size,
        "GNU tar reads the base-256 size of {name} in the outer archive"
    );

    // The layer, copied out sparsely: its first two headers are `./` and `./big`, and every
    // byte after them is zero (the file's holes, padding, end of archive).
    let layer = scratch.join("layer.tar");
    let mut from = File::open(&plain).expect("open plain.tar");
    from.seek(SeekFrom::Start(offset))
        .expect("seek to layer.tar");
    let mut to = File::create(&layer).expect("create layer.tar");
    let data = sparse_copy(&mut from.take(layer_size), &mut to).expect("copy layer.tar");
    drop(to);
    assert_eq!(
        fs::metadata(&layer).expect("stat layer.tar").len(),
        layer_size
    );
    assert_eq!(
        data,
        [0],
        "only the first chunk of the layer holds anything but zeros"
    );
    let mut first = vec![0u8; CHUNK];
    File::open(&layer)
        .and_then(|mut f| f.read_exact(&mut first))
        .expect("read the layer's first chunk");
    assert!(
        first[1024..] == vec![0u8; CHUNK - 1024][..],
        "the layer is two headers followed by zeros only"
    );
    let big = &first[512..1024];
    assert_eq!(&big[..6], b"./big\0", "the second member is ./big");
    assert_eq!(base256(&big[124..136]), BIG, "layer header of ./big");
    assert_eq!(
        gnu_tar_size(&layer, "./big"),
        BIG,
        "GNU tar reads the base-256 size of ./big"
    );
}
