//! GNU tar headers, byte for byte as GNU tar 1.34 `--format=gnu` writes them.

use crate::entry::{Entry, EntryKind};

/// Size of a tar block.
pub const BLOCK: u64 = 512;
/// GNU tar's default record size (blocking factor 20): archives are padded to a multiple of it.
pub const RECORD: u64 = 20 * BLOCK;
/// Longest name or link target that fits in its header field without a long-name header.
const NAME_FIELD: usize = 100;

/// Rounds `n` up to a whole number of blocks.
pub fn pad_to_block(n: u64) -> u64 {
    n.div_ceil(BLOCK) * BLOCK
}

/// The total size of a tar stream whose members take `members` bytes: two zero blocks end it,
/// then zeros up to a whole record.
pub fn archive_size(members: u64) -> u64 {
    (members + 2 * BLOCK).div_ceil(RECORD) * RECORD
}

/// Bytes an entry takes in the stream: its long-name headers, its header, its padded content.
pub fn entry_tar_size(entry: &Entry) -> u64 {
    let mut size = BLOCK + pad_to_block(entry.kind.content_size());
    if entry.name.len() > NAME_FIELD {
        size += BLOCK + pad_to_block(entry.name.len() as u64 + 1);
    }
    if let EntryKind::Symlink(target) = &entry.kind
        && target.len() > NAME_FIELD
    {
        size += BLOCK + pad_to_block(target.len() as u64 + 1);
    }
    size
}

/// Writes a numeric field: octal digits and a NUL when the value fits, otherwise GNU's
/// base-256 form (first byte 0x80, the value big-endian in the remaining bytes).
fn put_number(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    if digits >= 22 || value < 1u64 << (3 * digits) {
        let text = format!("{value:0digits$o}");
        field[..digits].copy_from_slice(text.as_bytes());
        field[digits] = 0;
    } else {
        field.fill(0);
        field[0] = 0x80;
        let bytes = value.to_be_bytes();
        let n = bytes.len().min(field.len() - 1);
        let start = field.len() - n;
        field[start..].copy_from_slice(&bytes[bytes.len() - n..]);
    }
}

fn put_str(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// Builds one 512-byte GNU header.
#[allow(clippy::too_many_arguments)]
fn raw_header(
    name: &[u8],
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    typeflag: u8,
    linkname: &[u8],
    uname: &[u8],
    gname: &[u8],
    device: Option<(u32, u32)>,
) -> [u8; 512] {
    let mut h = [0u8; 512];
    put_str(&mut h[0..100], name);
    put_number(&mut h[100..108], u64::from(mode));
    put_number(&mut h[108..116], uid);
    put_number(&mut h[116..124], gid);
    put_number(&mut h[124..136], size);
    put_number(&mut h[136..148], mtime);
    h[156] = typeflag;
    put_str(&mut h[157..257], linkname);
    // GNU magic and version: "ustar " then " \0".
    h[257..265].copy_from_slice(b"ustar  \0");
    put_str(&mut h[265..297], uname);
    put_str(&mut h[297..329], gname);
    // GNU tar fills the device fields only for device nodes.
    if let Some((major, minor)) = device {
        put_number(&mut h[329..337], u64::from(major));
        put_number(&mut h[337..345], u64::from(minor));
    }
    // The checksum is computed with its own field as spaces, then written as six octal
    // digits, NUL, space.
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    h[148..154].copy_from_slice(format!("{:06o}", sum & 0o777_777).as_bytes());
    h[154] = 0;
    h[155] = b' ';
    h
}

/// A `././@LongLink` header of type `L` (name) or `K` (link target) followed by the padded
/// value; GNU tar writes it with mode 0644, owner root, mtime 0.
fn long_link(out: &mut Vec<u8>, typeflag: u8, value: &[u8]) {
    let len = value.len() as u64 + 1;
    out.extend_from_slice(&raw_header(
        b"././@LongLink",
        0o644,
        0,
        0,
        len,
        0,
        typeflag,
        b"",
        b"root",
        b"root",
        None,
    ));
    out.extend_from_slice(value);
    let padded = pad_to_block(len) as usize;
    out.resize(out.len() + padded - value.len(), 0);
}

/// Appends the header blocks of `entry` (long-name headers first) to `out`.
pub fn encode(entry: &Entry, out: &mut Vec<u8>) {
    let link: &[u8] = match &entry.kind {
        EntryKind::Symlink(target) => target,
        _ => b"",
    };
    if link.len() > NAME_FIELD {
        long_link(out, b'K', link);
    }
    if entry.name.len() > NAME_FIELD {
        long_link(out, b'L', &entry.name);
    }
    let device = match entry.kind {
        EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
            Some((major, minor))
        }
        _ => None,
    };
    out.extend_from_slice(&raw_header(
        &entry.name,
        entry.mode & 0o7777,
        entry.owner.uid,
        entry.owner.gid,
        entry.kind.content_size(),
        entry.mtime,
        entry.kind.typeflag(),
        link,
        entry.owner.uname.as_bytes(),
        entry.owner.gname.as_bytes(),
        device,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_use_octal_then_base256() {
        let mut f = [0u8; 12];
        put_number(&mut f, 315_532_800);
        assert_eq!(&f, b"02263523000\0");
        // 8 GiB does not fit in eleven octal digits.
        put_number(&mut f, 8 << 30);
        assert_eq!(f[0], 0x80);
        assert_eq!(&f[4..], &(8u64 << 30).to_be_bytes());
        let mut id = [0u8; 8];
        put_number(&mut id, 0o7_777_777);
        assert_eq!(&id, b"7777777\0");
        put_number(&mut id, 0o10_000_000);
        assert_eq!(id, [0x80, 0, 0, 0, 0, 0x20, 0, 0]);
    }

    #[test]
    fn archive_is_padded_to_records() {
        assert_eq!(archive_size(0), 10_240);
        assert_eq!(archive_size(512), 10_240);
        assert_eq!(archive_size(9_216), 10_240);
        assert_eq!(archive_size(9_728), 20_480);
    }
}
