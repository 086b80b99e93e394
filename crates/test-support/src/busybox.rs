//! A static busybox image root: a file system that runs in an image holding nothing else.

use std::path::{Path, PathBuf};

use crate::fs::{ln_s, mkdir, require_tool, write};

/// Debian's statically linked busybox (package busybox-static): it runs in an image that
/// holds nothing else.
pub const BUSYBOX: &str = "/bin/busybox";

/// The busybox applets of the `docker` tests' image roots.
pub const APPLETS: [&str; 13] = [
    "cat", "echo", "env", "id", "ls", "mkdir", "pwd", "readlink", "sh", "stat", "test", "touch",
    "true",
];

/// The busybox applets of the `root` tests' image roots: [`APPLETS`] plus what the
/// `runAsRoot` scripts call.
pub const ROOT_APPLETS: [&str; 21] = [
    "cat", "chmod", "chown", "echo", "env", "grep", "hostname", "id", "ls", "mkdir", "mknod",
    "printf", "pwd", "readlink", "rm", "sh", "sleep", "stat", "test", "touch", "true",
];

/// Creates `dir` (mode 0755) as an image root holding `bin/busybox` (a copy of the host's
/// static busybox, 0755) and a `bin/<applet> -> busybox` symlink for each of `applets`
/// (e.g. [`APPLETS`]). Returns `dir`.
pub fn busybox_root(dir: &Path, applets: &[&str]) -> PathBuf {
    let busybox = static_busybox();
    mkdir(dir, 0o755);
    let bin = dir.join("bin");
    mkdir(&bin, 0o755);
    write(&bin.join("busybox"), &busybox, 0o755);
    for applet in applets {
        ln_s("busybox", &bin.join(applet));
    }
    dir.to_owned()
}

/// The bytes of [`BUSYBOX`], after checking that it is a static executable: a dynamic
/// busybox (package `busybox`) finds no loader in an image that holds nothing else.
pub fn static_busybox() -> Vec<u8> {
    require_tool("busybox", "busybox-static");
    let bytes = std::fs::read(BUSYBOX).unwrap_or_else(|err| {
        panic!("cannot read {BUSYBOX}: {err}; install it with apt-get install busybox-static")
    });
    assert!(
        is_static_elf(&bytes),
        "{BUSYBOX} is not a statically linked executable: install the static one with \
         apt-get install busybox-static"
    );
    bytes
}

/// Whether `bytes` is a little-endian ELF executable without a program interpreter
/// (`PT_INTERP`), that is one that needs no dynamic loader.
fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let read = |offset: usize, len: usize| -> Option<u64> {
        let field = bytes.get(offset..offset + len)?;
        Some(
            field
                .iter()
                .rev()
                .fold(0, |acc, &byte| (acc << 8) | u64::from(byte)),
        )
    };
    if bytes.get(..4) != Some(b"\x7fELF".as_slice()) || bytes.get(5) != Some(&1) {
        return false;
    }
    // ELF32 and ELF64 keep the program header table's offset, entry size and count at
    // different places.
    let fields = match bytes.get(4) {
        Some(1) => (read(0x1c, 4), read(0x2a, 2), read(0x2c, 2)),
        Some(2) => (read(0x20, 8), read(0x36, 2), read(0x38, 2)),
        _ => return false,
    };
    let (Some(offset), Some(size), Some(count)) = fields else {
        return false;
    };
    let (Ok(offset), Ok(size)) = (usize::try_from(offset), usize::try_from(size)) else {
        return false;
    };
    (0..usize::try_from(count).unwrap_or(0)).all(|index| {
        read(offset + index * size, 4).is_some_and(|kind| kind != u64::from(PT_INTERP))
    })
}

#[cfg(test)]
mod tests {
    use super::{is_static_elf, static_busybox};

    #[test]
    fn is_static_elf_tells_static_from_dynamic_executables() {
        // A minimal little-endian ELF64 header with one program header at offset 64.
        let elf = |program_header_type: u8| {
            let mut bytes = vec![0_u8; 64 + 56];
            bytes[..4].copy_from_slice(b"\x7fELF");
            bytes[4] = 2; // ELFCLASS64
            bytes[5] = 1; // ELFDATA2LSB
            bytes[0x20] = 64; // e_phoff
            bytes[0x36] = 56; // e_phentsize
            bytes[0x38] = 1; // e_phnum
            bytes[64] = program_header_type;
            bytes
        };
        assert!(is_static_elf(&elf(1)), "PT_LOAD only");
        assert!(!is_static_elf(&elf(3)), "PT_INTERP");
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        assert!(!is_static_elf(b""));
        assert!(is_static_elf(&static_busybox()));
    }
}
