//! Where the image goes: a temporary file beside OUT renamed into place when complete, or
//! standard output.

use std::fs::Permissions;
use std::io::{self, BufWriter, Stdout, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tempfile::NamedTempFile;

/// Buffer size between the archive writer and the file.
const BUFFER: usize = 1 << 20;

/// An output being written.
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
    /// Standard output.
    Stdout(BufWriter<Stdout>),
}

impl Output {
    /// Opens the output for `dest`, or standard output for `-`. Fails early, before any
    /// work, when OUT's folder does not exist or is not writable.
    pub fn open(dest: &Path, mode: u32) -> Result<Self> {
        if dest == Path::new("-") {
            return Ok(Output::Stdout(BufWriter::with_capacity(
                BUFFER,
                io::stdout(),
            )));
        }
        let name = dest
            .file_name()
            .with_context(|| format!("Output path {} does not name a file", dest.display()))?;
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            bail!(
                "Output folder {} does not exist (from -o {})",
                dir.display(),
                dest.display()
            );
        }
        if dest.is_dir() {
            bail!("Output path {} is a folder", dest.display());
        }
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{}.", name.to_string_lossy()))
            .suffix(".tmp")
            .tempfile_in(&dir)
            .with_context(|| format!("Cannot create a temporary file in {}", dir.display()))?;
        Ok(Output::File {
            file: BufWriter::with_capacity(BUFFER, temp),
            dest: dest.to_owned(),
            mode,
        })
    }

    /// The path the image will have, for messages (`-` for standard output).
    pub fn dest(&self) -> PathBuf {
        match self {
            Output::File { dest, .. } => dest.clone(),
            Output::Stdout(_) => PathBuf::from("-"),
        }
    }

    /// Makes the image visible at its final path: flush, sync, rename over OUT.
    pub fn commit(self) -> Result<()> {
        match self {
            Output::File { file, dest, mode } => {
                let temp = file
                    .into_inner()
                    .map_err(io::IntoInnerError::into_error)
                    .with_context(|| format!("Writing {} failed", dest.display()))?;
                temp.as_file()
                    .sync_all()
                    .with_context(|| format!("Writing {} failed", dest.display()))?;
                // NamedTempFile creates 0600 files; an image is an ordinary file.
                fs_err::set_permissions(temp.path(), Permissions::from_mode(mode))?;
                temp.persist(&dest).map_err(|e| e.error).with_context(|| {
                    format!("Cannot move the image into place at {}", dest.display())
                })?;
                Ok(())
            }
            Output::Stdout(mut out) => out.flush().context("Writing to standard output failed"),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::File { file, .. } => file.write(buf),
            Output::Stdout(out) => out.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Output::File { file, .. } => file.write_all(buf),
            Output::Stdout(out) => out.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::File { file, .. } => file.flush(),
            Output::Stdout(out) => out.flush(),
        }
    }
}
