//! OCI image layouts: a folder (`oci:DIR`) or the same folder as one tar file
//! (`oci-archive:PATH`), as skopeo, umoci and podman read them.
//!
//! A layout holds `oci-layout`, `index.json` and `blobs/sha256/<hex>`. Adding an image
//! keeps the layout's other images and blobs: a blob the layout has is not written again,
//! and the index entry of the same reference is replaced. Blobs are written under a
//! temporary name in the layout's folder and renamed into `blobs/sha256/` once whole and
//! hashed; the index is replaced by a rename, under a lock, last: an interrupted write
//! leaves the layout as it was, plus at most some whole blobs no manifest names.

use std::fs::{self, File, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde_json::{Map, Value, json};
use tempfile::{NamedTempFile, TempDir};

use super::blobs::{Blob, BlobStore, BlobWriter};
use crate::error::{Error, Result};
use crate::outer::OuterTar;

/// The annotation that names an image in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The content of `oci-layout`.
const LAYOUT_FILE: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The index's media type.
const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// Mode of the files a layout holds.
const FILE_MODE: u32 = 0o644;

/// An OCI image layout folder, created or added to.
pub struct OciLayout {
    dir: PathBuf,
    reference: Option<String>,
}

impl OciLayout {
    /// The layout in `dir`, created when missing (its parent must exist); an existing
    /// folder must be empty or a layout. The image will be named `reference`, or its tag.
    pub fn open(dir: &Path, reference: Option<String>) -> Result<Self> {
        match fs::create_dir(dir) {
            Ok(()) => {}
            // Another build may be creating it at this moment: it is checked below.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create the layout folder", dir, e)),
        }
        let layout = dir.join("oci-layout");
        if !layout.is_file() {
            let mut items =
                fs::read_dir(dir).map_err(|e| Error::io("read the layout folder", dir, e))?;
            // Empty, or only what a layout being created beside us holds so far.
            let foreign = items.any(|item| {
                item.map_or(true, |item| {
                    let name = item.file_name();
                    let name = name.to_string_lossy();
                    !(name == "blobs"
                        || name == "oci-layout"
                        || name.starts_with(".blob.")
                        || name.starts_with(".buildimage."))
                })
            });
            if foreign {
                return Err(Error::Output(format!(
                    "{} is not an OCI image layout (it has no oci-layout file) and is not \
                     empty",
                    dir.display()
                )));
            }
            // The marker first: a folder that holds it is a layout.
            write_atomically(&layout, LAYOUT_FILE)?;
        }
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(|e| Error::io("create", &blobs, e))?;
        Ok(OciLayout {
            dir: dir.to_owned(),
            reference,
        })
    }

    /// The layout's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| Error::Invalid {
                what: format!("digest {digest}"),
                reason: "expected sha256:<64 hex digits>".to_owned(),
            })?;
        Ok(self.dir.join("blobs/sha256").join(hex))
    }

    /// Lists `manifest` in `index.json` as `reference`, replacing an entry of the same
    /// reference, under an exclusive lock on the layout's folder.
    fn name(&self, manifest: &Blob, reference: &str) -> Result<()> {
        let folder = File::open(&self.dir).map_err(|e| Error::io("open", &self.dir, e))?;
        let _lock = Flock::lock(folder, FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::io("lock", &self.dir, e.into()))?;
        let path = self.dir.join("index.json");
        let mut index = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Map<String, Value>>(&bytes)
                .map_err(|e| Error::Output(format!("{}: not an OCI index: {e}", path.display())))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Map::new(),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        index.insert("schemaVersion".into(), json!(2));
        index.insert("mediaType".into(), json!(INDEX_TYPE));
        let mut manifests = match index.remove("manifests") {
            Some(Value::Array(list)) => list,
            None | Some(Value::Null) => Vec::new(),
            Some(_) => {
                return Err(Error::Output(format!(
                    "{}: `manifests` is not a list",
                    path.display()
                )));
            }
        };
        manifests.retain(|m| {
            m.pointer(&format!("/annotations/{}", REF_NAME.replace('/', "~1")))
                .and_then(Value::as_str)
                != Some(reference)
        });
        let mut entry = manifest.descriptor();
        entry["annotations"] = json!({ REF_NAME: reference });
        manifests.push(entry);
        index.insert("manifests".into(), Value::Array(manifests));
        let bytes = serde_json::to_vec(&index).expect("a JSON value always prints");
        write_atomically(&path, &bytes)
    }
}

impl BlobStore for OciLayout {
    fn has_blob(&mut self, digest: &str, size: u64, _seen_in: &[String]) -> Result<bool> {
        let path = self.blob_path(digest)?;
        Ok(fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == size))
    }

    fn start_blob(&mut self) -> Result<Box<dyn BlobWriter + '_>> {
        let temp = tempfile::Builder::new()
            .prefix(".blob.")
            .suffix(".tmp")
            .tempfile_in(&self.dir)
            .map_err(|e| Error::io("create a temporary file in", &self.dir, e))?;
        Ok(Box::new(LayoutBlob {
            file: BufWriter::with_capacity(1 << 20, temp),
            layout: self,
        }))
    }

    fn put_manifest(&mut self, manifest: &Blob, bytes: &[u8], tag: &str) -> Result<()> {
        self.put_blob(&manifest.digest, bytes)?;
        let reference = self.reference.clone().unwrap_or_else(|| tag.to_owned());
        self.name(manifest, &reference)
    }
}

/// A blob being written into a layout: a temporary file in its folder.
struct LayoutBlob<'a> {
    file: BufWriter<NamedTempFile>,
    layout: &'a OciLayout,
}

impl Write for LayoutBlob<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter for LayoutBlob<'_> {
    fn commit(self: Box<Self>, digest: &str, size: u64) -> Result<bool> {
        let path = self.layout.blob_path(digest)?;
        let temp = self
            .file
            .into_inner()
            .map_err(|e| Error::io("write", &self.layout.dir, e.into_error()))?;
        if fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == size) {
            return Ok(false);
        }
        fs::set_permissions(temp.path(), Permissions::from_mode(FILE_MODE))
            .map_err(|e| Error::io("set the mode of", temp.path(), e))?;
        temp.persist(&path)
            .map_err(|e| Error::io("move a blob into place at", &path, e.error))?;
        Ok(true)
    }
}

/// Writes `bytes` to `path` through a temporary file renamed over it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".buildimage.")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io("create a temporary file in", dir, e))?;
    temp.write_all(bytes)
        .map_err(|e| Error::io("write", temp.path().to_owned(), e))?;
    fs::set_permissions(temp.path(), Permissions::from_mode(FILE_MODE))
        .map_err(|e| Error::io("set the mode of", temp.path(), e))?;
    temp.persist(path)
        .map_err(|e| Error::io("replace", path, e.error))?;
    Ok(())
}

/// An OCI layout written as one tar file: the layout is made in a temporary folder beside
/// the archive, then written into `out` as a tar (`oci-layout`, `index.json`, then every
/// blob in name order) once the image is complete.
pub struct OciArchive<W: Write> {
    layout: OciLayout,
    _temp: TempDir,
    out: Option<W>,
}

/// Modification time of an OCI archive's members: fixed, so that the same image gives the
/// same archive.
const ARCHIVE_MTIME: u64 = 1;

impl<W: Write> OciArchive<W> {
    /// An archive into `out`, staged in a temporary folder in `stage_in` (the archive's
    /// folder, so its blobs are on the same disk), naming the image `reference` or its
    /// tag.
    pub fn new(out: W, stage_in: &Path, reference: Option<String>) -> Result<Self> {
        let temp = tempfile::Builder::new()
            .prefix(".oci-archive.")
            .tempdir_in(stage_in)
            .map_err(|e| Error::io("create a temporary folder in", stage_in, e))?;
        let layout = OciLayout::open(&temp.path().join("layout"), reference)?;
        Ok(OciArchive {
            layout,
            _temp: temp,
            out: Some(out),
        })
    }

    /// The writer the archive went into, once the manifest is stored.
    pub fn into_inner(mut self) -> Result<W> {
        self.out.take().ok_or_else(|| Error::Invalid {
            what: "the OCI archive".to_owned(),
            reason: "taken twice".to_owned(),
        })
    }

    fn write_tar(&mut self) -> Result<()> {
        let out = self.out.take().ok_or_else(|| Error::Invalid {
            what: "the OCI archive".to_owned(),
            reason: "written twice".to_owned(),
        })?;
        let dir = self.layout.dir().to_owned();
        let mut tar = OuterTar::new(out, ARCHIVE_MTIME);
        for name in ["oci-layout", "index.json"] {
            let path = dir.join(name);
            let bytes = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
            tar.file(name, &bytes)?;
        }
        tar.dir("blobs/")?;
        tar.dir("blobs/sha256/")?;
        let blobs = dir.join("blobs/sha256");
        let mut names: Vec<String> = fs::read_dir(&blobs)
            .map_err(|e| Error::io("read", &blobs, e))?
            .filter_map(|item| item.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in names {
            let path = blobs.join(&name);
            let mut file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
            let size = file
                .metadata()
                .map_err(|e| Error::io("read", &path, e))?
                .len();
            tar.stream(&format!("blobs/sha256/{name}"), size, |out| {
                io::copy(&mut file, out).map_err(Error::Write)
            })?;
        }
        self.out = Some(tar.finish()?);
        Ok(())
    }
}

impl<W: Write> BlobStore for OciArchive<W> {
    fn has_blob(&mut self, digest: &str, size: u64, seen_in: &[String]) -> Result<bool> {
        self.layout.has_blob(digest, size, seen_in)
    }

    fn start_blob(&mut self) -> Result<Box<dyn BlobWriter + '_>> {
        self.layout.start_blob()
    }

    fn put_manifest(&mut self, manifest: &Blob, bytes: &[u8], tag: &str) -> Result<()> {
        self.layout.put_manifest(manifest, bytes, tag)?;
        self.write_tar()
    }
}
