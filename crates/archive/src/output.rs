//! Where an archive goes: a temporary file beside OUT renamed into place when complete, or a
//! stream (standard output, a device such as `/dev/null`, a fifo).

use std::fs::{OpenOptions, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::{Error, Result};

/// Buffer size between the archive writer and the file.
const BUFFER: usize = 1 << 20;

/// An output being written. Dropping it without [`Output::commit`] deletes the temporary
/// file: a failed or interrupted build leaves nothing at OUT, and an existing OUT as it was.
pub enum Output {
    /// A temporary file in OUT's folder; dropped (and deleted) unless committed.
    File {
        /// The writer.
        file: BufWriter<NamedTempFile>,
        /// The final path.
        dest: PathBuf,
        /// Permission bits of the final file.
        mode: u32,
    },
    /// Standard output, or an existing file that is not a regular file: written as it
    /// comes, since it cannot be replaced atomically (and must never be replaced).
    Stream {
        /// The writer.
        out: BufWriter<Box<dyn Write>>,
        /// What it is, for messages.
        shown: PathBuf,
    },
}

impl Output {
    /// Opens the output for `dest`, or standard output for `-`. Fails early, before any
    /// work, when OUT's folder does not exist or OUT is a folder.
    pub fn open(dest: &Path, mode: u32) -> Result<Self> {
        if dest == Path::new("-") {
            return Ok(Output::Stream {
                out: BufWriter::with_capacity(BUFFER, Box::new(io::stdout())),
                shown: PathBuf::from("-"),
            });
        }
        // A symlink is followed: the image replaces the file it points to, not the link.
        let real = match std::fs::symlink_metadata(dest) {
            Ok(md) if md.file_type().is_symlink() => {
                std::fs::canonicalize(dest).unwrap_or_else(|_| dest.to_owned())
            }
            _ => dest.to_owned(),
        };
        if let Ok(md) = std::fs::metadata(&real) {
            if md.is_dir() {
                return Err(Error::Output(format!(
                    "Output path {} is a folder",
                    dest.display()
                )));
            }
            if !md.is_file() {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&real)
                    .map_err(|e| Error::io("write to", dest, e))?;
                return Ok(Output::Stream {
                    out: BufWriter::with_capacity(BUFFER, Box::new(file)),
                    shown: dest.to_owned(),
                });
            }
        }
        let name = real.file_name().ok_or_else(|| {
            Error::Output(format!(
                "Output path {} does not name a file",
                dest.display()
            ))
        })?;
        let dir = match real.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(Error::Output(format!(
                "Output folder {} does not exist (from -o {})",
                dir.display(),
                dest.display()
            )));
        }
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{}.", name.to_string_lossy()))
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(|e| Error::io("create a temporary file in", &dir, e))?;
        Ok(Output::File {
            file: BufWriter::with_capacity(BUFFER, temp),
            dest: real,
            mode,
        })
    }

    /// The path the image will have, for messages (`-` for standard output).
    pub fn dest(&self) -> PathBuf {
        match self {
            Output::File { dest, .. } => dest.clone(),
            Output::Stream { shown, .. } => shown.clone(),
        }
    }

    /// Makes the image visible at its final path: flush, rename over OUT.
    pub fn commit(self) -> Result<()> {
        match self {
            Output::File { file, dest, mode } => {
                let temp = file
                    .into_inner()
                    .map_err(|e| Error::io("write", &dest, e.into_error()))?;
                // No fsync: the rename makes the image appear complete or not at all to
                // every reader; surviving a power cut is the file system's business (it
                // costs 20% of a build).
                // NamedTempFile creates 0600 files; an image is an ordinary file.
                std::fs::set_permissions(temp.path(), Permissions::from_mode(mode))
                    .map_err(|e| Error::io("set the mode of", temp.path(), e))?;
                temp.persist(&dest)
                    .map_err(|e| Error::io("move the image into place at", &dest, e.error))?;
                Ok(())
            }
            Output::Stream { mut out, shown } => {
                out.flush().map_err(|e| Error::io("write to", &shown, e))
            }
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::File { file, .. } => file.write(buf),
            Output::Stream { out, .. } => out.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Output::File { file, .. } => file.write_all(buf),
            Output::Stream { out, .. } => out.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::File { file, .. } => file.flush(),
            Output::Stream { out, .. } => out.flush(),
        }
    }
}
