//! Compression of a base archive or a base layer, told by its first bytes, never its name.

use std::io::{self, BufReader, Read};

use flate2::read::MultiGzDecoder;

use buildimage_layer::read::is_tar_start;

/// How a stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
    /// A format buildimage does not read, by name.
    Unsupported(&'static str),
}

/// Bytes to look at: a whole tar header.
pub(crate) const SNIFF: usize = 512;

/// Tells the compression from the first [`SNIFF`] bytes of a stream.
pub(crate) fn detect(head: &[u8]) -> Compression {
    // A tar header with a valid checksum is a tar, whatever its first bytes spell:
    // a member may well be named `BZh…`.
    if is_tar_start(head) {
        return Compression::None;
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Compression::Unsupported("xz")
    } else if head.starts_with(b"BZh") {
        Compression::Unsupported("bzip2")
    } else {
        Compression::None
    }
}

/// Wraps `input` in the decoder for `compression`.
pub(crate) fn decoder<'a, R: Read + 'a>(
    input: BufReader<R>,
    compression: Compression,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None | Compression::Unsupported(_) => Box::new(input),
        // Concatenated gzip members form one stream, as `gzip -d` and Go read them.
        Compression::Gzip => Box::new(MultiGzDecoder::new(input)),
        // zstd's default window limit (128 MiB) bounds the decoder's memory.
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes() {
        assert_eq!(detect(b"\x1f\x8b\x08\0\0\0"), Compression::Gzip);
        assert_eq!(detect(b"\x28\xb5\x2f\xfd\0"), Compression::Zstd);
        assert_eq!(detect(b"\xfd7zXZ\0"), Compression::Unsupported("xz"));
        assert_eq!(detect(b"BZh91AY&SY"), Compression::Unsupported("bzip2"));
        assert_eq!(detect(&[0; 1024]), Compression::None);
        assert_eq!(detect(b""), Compression::None);
    }

    #[test]
    fn a_tar_whose_first_member_is_named_bzh_is_a_tar() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        b.append_data(&mut h, "BZh9", &b""[..]).unwrap();
        assert_eq!(detect(&b.into_inner().unwrap()), Compression::None);
    }
}
