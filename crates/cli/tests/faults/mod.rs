//! Bad input, faults and hostile archives: what `buildimage build` does when the disk is
//! full, when two builds race for one output, when a source changes under it, when a
//! source tree holds every odd kind of file, and when it is interrupted during
//! `extraCommands`; and the fuzz corpora replayed as regression tests.
//!
//! Every test checks the same promises (README, "Bad input and faults"): a non-zero exit
//! with a message naming the path at fault, no file at OUT, no temporary file beside it,
//! no staging folder left in `TMPDIR`.
//!
//! The tests mount tmpfs folders, create device nodes and hand images to `umoci unpack`,
//! so they run as root (`cargo xtask ci` does): without root they fail saying so.
//!
//! Run with `cargo test -p buildimage-cli --test cli faults::` (as root; the `::` keeps
//! out the `docker` tests whose names contain "defaults").

mod changed;
mod concurrent;
mod full_disk;
mod fuzz_corpus;
mod interrupt;
mod sparse;
mod special_files;

use std::path::{Path, PathBuf};

use buildimage_test_support::{TestDir, names, require_root};

/// A fresh test folder for this module.
fn test_dir() -> TestDir {
    TestDir::new("bi-faults.")
}

/// A tmpfs of a given size mounted on a fresh folder, unmounted and removed on drop, also
/// when the test panics.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=`, e.g. `4m`).
    pub fn mount(size: &str) -> Tmpfs {
        require_root("mounting a small tmpfs");
        let dir = tempfile::Builder::new()
            .prefix("bi-tmpfs.")
            .tempdir()
            .expect("create a mount point");
        nix::mount::mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(format!("size={size},mode=0755").as_str()),
        )
        .unwrap_or_else(|err| panic!("mount -t tmpfs on {}: {err}", dir.path().display()));
        Tmpfs { dir }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `rel` below the mount point.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // A process still holding a file there (a build killed by a failed test) makes a
        // plain unmount fail with EBUSY; detach it then, so that nothing stays mounted.
        if let Err(err) = nix::mount::umount(self.dir.path()) {
            eprintln!("umount {}: {err}; detaching it", self.dir.path().display());
            let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// The entries of `dir` whose name says they are buildimage's temporary files: output
/// files `.NAME.XXXXXX.tmp`, staging and database folders `buildimage-*`, base image
/// scratch folders `.buildimage-base-*`.
pub fn leftovers(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| {
            Path::new(n).extension().is_some_and(|e| e == "tmp")
                || n.starts_with("buildimage-")
                || n.starts_with(".buildimage-")
        })
        .collect()
}

/// `len` bytes that no compressor shrinks: xorshift64 output, different for each `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}
