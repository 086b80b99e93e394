//! Images unpacked without a daemon: `skopeo copy` to an OCI layout, then `umoci unpack`
//! (docs/formats.md §12.4); and a `find`-like listing of a tree.

use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::NEEDS_ROOT;
use crate::docker::has_extension;
use crate::fs::{is_root, require_tool, run_ok};

/// An image unpacked by `skopeo copy` and `umoci unpack`; its directory is deleted on drop.
pub struct Unpacked {
    dir: tempfile::TempDir,
}

/// Copies a docker-archive to an OCI layout with `skopeo copy` (which checks every layer
/// against its `diff_id`) and unpacks that with `umoci unpack` (which checks blob digests
/// and `diff_id`s and, as root, keeps owners, modes and hard links).
///
/// A `.tar.gz` is gunzipped to a plain tar first: skopeo 1.9 cannot read a whole-archive
/// gzip. `.tar` and `.tar.zst` go to skopeo as they are.
pub fn unpack_oci(archive: &Path) -> Unpacked {
    require_tool("skopeo", "skopeo");
    require_tool("umoci", "umoci");
    assert!(
        is_root(),
        "umoci unpack keeps owners and modes only as root: {NEEDS_ROOT}"
    );
    let dir = tempfile::Builder::new()
        .prefix("bi-oci.")
        .tempdir()
        .unwrap_or_else(|err| panic!("cannot create a temporary directory: {err}"));
    let source = if has_extension(archive, "gz") || has_extension(archive, "tgz") {
        let plain = dir.path().join("plain.tar");
        let file = File::create(&plain)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", plain.display()));
        run_ok(Command::new("gzip").arg("-dc").arg(archive).stdout(file));
        plain
    } else {
        archive.to_path_buf()
    };
    let layout = dir.path().join("oci");
    let bundle = dir.path().join("bundle");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "-q"])
            .arg(prefixed("docker-archive:", &source))
            .arg(format!("oci:{}:t", layout.display())),
    );
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:t", layout.display()))
            .arg(&bundle),
    );
    Unpacked { dir }
}

impl Unpacked {
    /// The unpacked root file system.
    pub fn rootfs(&self) -> PathBuf {
        self.bundle().join("rootfs")
    }

    /// The bundle directory umoci wrote (`rootfs/` and `config.json`).
    pub fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    /// The OCI image layout skopeo wrote; the image is tagged `t`.
    pub fn oci_layout(&self) -> PathBuf {
        self.dir.path().join("oci")
    }

    /// umoci's OCI runtime `config.json`: `process.user`, `process.cwd`, `process.env`,
    /// `process.args`, a tmpfs mount per volume, labels as `annotations`.
    pub fn config_json(&self) -> serde_json::Value {
        let path = self.bundle().join("config.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("{} is not JSON: {err}", path.display()))
    }

    /// The root file system as `find . -printf '%M %U:%G %n %p %l\n' | sort -k4` would
    /// list it; see [`listing`].
    pub fn listing(&self) -> Vec<String> {
        listing(&self.rootfs())
    }
}

/// Lists a tree like `cd ROOT && find . -printf '%M %U:%G %n %p %l\n' | LC_ALL=C sort -k4`:
/// mode as `ls` shows it, numeric owner, hard-link count, path from `.`, and for a
/// symlink its target. Example lines:
///
/// ```text
/// drwxr-xr-x 0:0 2 ./bin
/// -rwxr-xr-x 0:0 1 ./bin/busybox
/// lrwxrwxrwx 0:0 1 ./bin/sh busybox
/// ```
///
/// Lines are sorted by path, byte-wise, and carry no trailing space (find prints one
/// after the path when there is no link target). Symlinks are not followed.
pub fn listing(root: &Path) -> Vec<String> {
    tree_lines(root, |rel, path, meta| {
        let mut line = format!(
            "{} {}:{} {} {}",
            mode_string(meta),
            meta.uid(),
            meta.gid(),
            meta.nlink(),
            rel.display()
        );
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(path)
                .unwrap_or_else(|err| panic!("cannot read link {}: {err}", path.display()));
            let _ = write!(line, " {}", target.display());
        }
        line
    })
}

/// One line per path of the tree at `root`, itself included, made by `line` from the path
/// below `root` (`.`, `./a`, …), the path on the host and its metadata (symlinks are not
/// followed); sorted by the raw bytes of the path below `root`.
pub fn tree_lines(
    root: &Path,
    mut line: impl FnMut(&Path, &Path, &std::fs::Metadata) -> String,
) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pending = vec![PathBuf::from(".")];
    while let Some(rel) = pending.pop() {
        let path = root.join(&rel);
        let meta = std::fs::symlink_metadata(&path)
            .unwrap_or_else(|err| panic!("cannot stat {}: {err}", path.display()));
        lines.push((
            rel.as_os_str().as_bytes().to_vec(),
            line(&rel, &path, &meta),
        ));
        if meta.is_dir() {
            let entries = std::fs::read_dir(&path)
                .unwrap_or_else(|err| panic!("cannot list {}: {err}", path.display()));
            for entry in entries {
                let entry =
                    entry.unwrap_or_else(|err| panic!("cannot list {}: {err}", path.display()));
                pending.push(rel.join(entry.file_name()));
            }
        }
    }
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    lines.into_iter().map(|(_, line)| line).collect()
}

/// The letter `ls -l` shows for a file type: `d`, `l`, `c`, `b`, `p`, `s` or `-`.
pub fn kind_letter(file_type: std::fs::FileType) -> char {
    if file_type.is_dir() {
        'd'
    } else if file_type.is_symlink() {
        'l'
    } else if file_type.is_char_device() {
        'c'
    } else if file_type.is_block_device() {
        'b'
    } else if file_type.is_fifo() {
        'p'
    } else if file_type.is_socket() {
        's'
    } else {
        '-'
    }
}

/// A mode as `ls -l` and find's `%M` show it, e.g. `-rwsr-xr-x` or `drwxrwxrwt`.
fn mode_string(meta: &std::fs::Metadata) -> String {
    let kind = kind_letter(meta.file_type());
    let mode = meta.mode();
    let bit = |mask: u32, c: char| if mode & mask == 0 { '-' } else { c };
    // The execute position shows a set-id or sticky bit: lower case with execute,
    // upper case without.
    let special = |exec: u32, special: u32, c: char| match (mode & exec != 0, mode & special != 0) {
        (true, true) => c,
        (false, true) => c.to_ascii_uppercase(),
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        kind,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        special(0o100, 0o4000, 's'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        special(0o010, 0o2000, 's'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        special(0o001, 0o1000, 't'),
    ]
    .into_iter()
    .collect()
}

/// `prefix` followed by `path`, as one argument.
fn prefixed(prefix: &str, path: &Path) -> std::ffi::OsString {
    let mut arg = std::ffi::OsString::from(prefix);
    arg.push(path);
    arg
}
