//! Reading a base image (`fromImage`) from an archive nobody vouches for.
//!
//! [`BaseImage::open`] reads a docker-archive once, streaming, in any of the forms found in
//! the wild: the legacy layout that buildimage, nixpkgs and older `docker save` write
//! (`<id>/layer.tar`, `<sha256>.json`), the OCI layout plus `manifest.json` of Docker 25
//! and later (`blobs/sha256/…`), skopeo's `docker-archive:` output and nixpkgs'
//! `streamLayeredImage` layout. The archive may be a plain tar, gzip or zstd, and so may
//! each layer: the first bytes tell, never the file name.
//!
//! Every regular member is saved into a private scratch folder under a generated name,
//! so no member name ever becomes a host path; links between members are followed inside
//! the archive only. The selected image's layers are stored uncompressed, each checked
//! against the `diff_ids` of its config, and [`BaseImage::filesystem`] merges them,
//! whiteouts applied, for de-duplication.
//!
//! ```
//! use buildimage_archive::read::{BaseImage, Select};
//! use buildimage_archive::{
//!     Image, ImageLayer, ImageMeta, LayerData, LayerKind, Tag, merge_config, write_image,
//! };
//! use buildimage_layer::{Owner, Tree};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let archive = dir.path().join("base.tar");
//! let entries = Tree::new().entries(&Owner::root(), 315_532_800);
//! let image = Image {
//!     name: "base".into(),
//!     tag: Tag::Fixed("1".into()),
//!     meta: ImageMeta {
//!         architecture: "amd64".into(),
//!         config: merge_config(None, &["A=1".into()]),
//!         created: "1970-01-01T00:00:01Z".into(),
//!         parent: None,
//!         mtime: 315_532_800,
//!     },
//!     layers: vec![ImageLayer { kind: LayerKind::Own, data: LayerData::Planned(&entries) }],
//!     history: vec![serde_json::json!({ "created": "1970-01-01T00:00:01Z" })],
//! };
//! let (_, written) = write_image(std::fs::File::create(&archive)?, &image)?;
//!
//! let (base, warnings) = BaseImage::open(&archive, Select::default(), dir.path())?;
//! assert!(warnings.is_empty());
//! assert_eq!(base.config_digest, written.config_digest);
//! assert_eq!(base.repo_tags, ["base:1"]);
//! assert_eq!(base.layers[0].diff_id, written.layers[0].diff_id);
//! assert_eq!(base.env(), ["A=1"]);
//! # Ok(())
//! # }
//! ```
//!
//! # Limits
//!
//! At most [`MAX_MEMBERS`] members in the archive and [`MAX_NAME_BYTES`] bytes of their
//! names, [`MAX_LAYERS`] layers in the image, [`MAX_JSON`] bytes per JSON member;
//! [`MAX_LAYER_MEMBERS`] members per layer and [`MAX_LAYER_NAME_BYTES`] bytes of names in
//! all layers together; extension headers of the tar format at most 1 MiB. These bound
//! the memory used, whatever the archive. The disk used is bounded by the archive's size
//! plus what decompressing it and its layers may yield, which [`BaseImage::open_with`]
//! caps ([`default_max_expansion`]: 32 times the archive, at least 1 GiB, at most
//! 64 GiB); blocks of zeros in an unpacked layer are left as holes. A full disk is an
//! error like any other.
//! A truncated archive or layer, invalid JSON, a missing member or a digest that does not
//! match is an error that names the member concerned.

mod compression;
mod fs;
mod limit;
mod names;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use buildimage_layer::read::{self as tarfile, Kind as MemberKind, Stream, TarReader};
use buildimage_layer::{Cancel, ScratchDir};
use data_encoding::HEXLOWER;

use crate::error::{Error, Result};
use compression::{Compression, SNIFF, decoder, detect};
use names::{Lookup, Namespace, Node, Stored, clean, show};

pub use fs::{BaseFs, Kind};
use limit::{Budget, exceeded};
pub use limit::{
    DEFAULT_RATIO, MAX_DEFAULT_EXPANSION, MIN_DEFAULT_EXPANSION, default_max_expansion,
};

/// The most members an archive may have.
pub const MAX_MEMBERS: u64 = 1_000_000;
/// The most layers the selected image may have (Docker itself stops at 128).
pub const MAX_LAYERS: usize = 1000;
/// The largest JSON member (`manifest.json`, the config) read, in bytes: skopeo's and
/// podman's limit for a config (containers/image `iolimits.MaxConfigBodySize`), so no
/// image they accept is refused. A decoded JSON value takes up to about 16 times its
/// text, and a few kilobytes of gzip or zstd expand to the whole limit: 32 MiB let a
/// 32 KiB archive take half a gigabyte.
pub const MAX_JSON: u64 = 4 << 20;
/// The most members one layer may have.
pub const MAX_LAYER_MEMBERS: u64 = 10_000_000;

/// The most bytes of member names the base image's layers may have together, which
/// bounds the memory [`BaseImage::filesystem`] needs.
pub const MAX_LAYER_NAME_BYTES: u64 = 1 << 30;

/// The most bytes of member names and link targets the outer archive may have, which
/// bounds the memory of its namespace. A docker-archive's names are short (a few thousand
/// bytes in all); a PAX name may be 1 MiB and compresses to almost nothing, so without
/// this a 14 KiB zstd archive took 300 MiB.
pub const MAX_NAME_BYTES: u64 = 64 << 20;

/// How much of a compressed archive is read past the end of its tar, so that the
/// compressor's own checksum is checked; more is ignored.
const DRAIN_LIMIT: u64 = 1 << 20;

/// How many ignored members are named one by one in warnings; the rest are counted.
const MAX_NAMED_WARNINGS: u64 = 10;

/// Size of the copy buffer.
const CHUNK: usize = 256 * 1024;

/// Which image of a multi-image archive to use: buildImage's `fromImageName` and
/// `fromImageTag`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Select<'a> {
    /// `fromImageName`.
    pub name: Option<&'a str>,
    /// `fromImageTag`.
    pub tag: Option<&'a str>,
}

/// One layer of the base image, stored uncompressed in the scratch folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseLayer {
    /// The layer's path in the base archive, as its `manifest.json` lists it.
    pub member: String,
    /// SHA-256 of the uncompressed tar.
    pub diff_id: [u8; 32],
    /// Size of the uncompressed tar in bytes.
    pub size: u64,
    /// The scratch file that holds the uncompressed tar; a layer listed twice shares it.
    pub path: PathBuf,
}

impl BaseLayer {
    /// The diff id as image configs write it: `sha256:<hex>`.
    pub fn diff_id_string(&self) -> String {
        format!("sha256:{}", HEXLOWER.encode(&self.diff_id))
    }
}

/// A base image read from an archive. Its layers live in a scratch folder that is removed
/// when the value is dropped.
#[derive(Debug)]
pub struct BaseImage {
    /// The whole image config.
    pub config: Map<String, Value>,
    /// Hex SHA-256 of the config file's bytes: the image ID.
    pub config_digest: String,
    /// `RepoTags` of the selected manifest entry (may be empty).
    pub repo_tags: Vec<String>,
    /// The layers, lowest first, in manifest order, duplicates kept.
    pub layers: Vec<BaseLayer>,
    scratch: ScratchDir,
}

/// One entry of `manifest.json`, as far as buildimage reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl BaseImage {
    /// Reads `archive` once, into a private scratch folder created under `scratch_parent`,
    /// and selects an image as `select` says. Returns the image and warnings for the user.
    ///
    /// With both a name and a tag, the image whose `RepoTags` holds exactly `name:tag` is
    /// taken (none is an error listing the tags found); otherwise the first image, with a
    /// warning if only one of the two is given.
    pub fn open(
        archive: &Path,
        select: Select<'_>,
        scratch_parent: &Path,
    ) -> Result<(BaseImage, Vec<String>)> {
        Self::open_with(archive, select, scratch_parent, None, None)
    }

    /// [`BaseImage::open`] that stops with [`buildimage_layer::Interrupted`] as soon as
    /// `cancel` is set (a large base takes a while to unpack), and with
    /// [`Error::BaseTooLarge`] as soon as decompressing the archive and its layers has
    /// yielded more than `max_expansion` bytes (default: [`default_max_expansion`] of the
    /// archive's size), before those bytes are written.
    pub fn open_with(
        archive: &Path,
        select: Select<'_>,
        scratch_parent: &Path,
        cancel: Option<&Cancel>,
        max_expansion: Option<u64>,
    ) -> Result<(BaseImage, Vec<String>)> {
        let limit = match max_expansion {
            Some(limit) => limit,
            None => default_max_expansion(
                std::fs::metadata(archive)
                    .map_err(|e| Error::io("open", archive, e))?
                    .len(),
            ),
        };
        let budget = Budget::new(limit);
        let scratch = ScratchDir::new_in(scratch_parent, ".buildimage-base-")?;
        let mut warnings = Vec::new();
        let mut pump = Pump::new(cancel);
        let ns = read_outer(archive, scratch.path(), &mut pump, &budget, &mut warnings)?;

        let manifest = match ns.resolve(b"manifest.json") {
            Ok(_) => read_json(&ns, "manifest.json")?,
            Err(_) if ns.nodes.contains_key(&b"index.json"[..]) => {
                return Err(Error::BaseInvalid {
                    what: archive.display().to_string(),
                    reason: "no manifest.json, only an OCI index; convert it with \
                             `skopeo copy oci-archive:FILE docker-archive:NEW`"
                        .to_owned(),
                });
            }
            Err(_) => {
                return Err(Error::BaseMissing {
                    member: "manifest.json".to_owned(),
                });
            }
        };
        let entries: Vec<RawEntry> =
            serde_json::from_slice(&manifest).map_err(|source| Error::BaseJson {
                member: "manifest.json".to_owned(),
                source,
            })?;
        let entry = select_entry(entries, select, &mut warnings)?;

        let config_bytes = read_json(&ns, &entry.config)?;
        let config_digest = HEXLOWER.encode(&Sha256::digest(&config_bytes));
        check_config_name(&entry.config, &config_digest)?;
        let config: Map<String, Value> =
            serde_json::from_slice(&config_bytes).map_err(|source| Error::BaseJson {
                member: entry.config.clone(),
                source,
            })?;

        if entry.layers.len() > MAX_LAYERS {
            return Err(Error::BaseLimit {
                what: "manifest.json".to_owned(),
                limit: MAX_LAYERS as u64,
                items: "layers",
            });
        }
        let diff_ids = config_diff_ids(&config, &entry.config)?;
        if diff_ids.len() != entry.layers.len() {
            return Err(Error::BaseInvalid {
                what: format!("config {}", entry.config),
                reason: format!(
                    "{} diff_ids for {} layers in manifest.json",
                    diff_ids.len(),
                    entry.layers.len()
                ),
            });
        }

        // Unpacked layers by the scratch file of their member: a layer listed twice, or
        // linked under two names, is read once.
        let mut unpacked: BTreeMap<PathBuf, ([u8; 32], u64, PathBuf)> = BTreeMap::new();
        let mut layers = Vec::with_capacity(entry.layers.len());
        for (index, (member, expected)) in entry.layers.iter().zip(&diff_ids).enumerate() {
            let stored = lookup(&ns, member)?;
            let (diff_id, size, path) = if let Some(done) = unpacked.get(&stored.path) {
                done.clone()
            } else {
                let done = unpack_layer(stored, member, scratch.path(), index, &mut pump, &budget)?;
                unpacked.insert(stored.path.clone(), done.clone());
                done
            };
            let actual = format!("sha256:{}", HEXLOWER.encode(&diff_id));
            if actual != *expected {
                return Err(Error::BaseDiffId {
                    layer: member.clone(),
                    expected: expected.clone(),
                    actual,
                });
            }
            layers.push(BaseLayer {
                member: member.clone(),
                diff_id,
                size,
                path,
            });
        }

        // Everything else the archive held is of no further use: free the disk now.
        let keep: BTreeSet<&Path> = layers.iter().map(|l| l.path.as_path()).collect();
        for node in ns.nodes.values() {
            if let Node::File(stored) = node
                && !keep.contains(stored.path.as_path())
            {
                // Best effort: the scratch folder goes as a whole on drop anyway.
                let _ = std::fs::remove_file(&stored.path);
            }
        }

        let image = BaseImage {
            config,
            config_digest,
            repo_tags: entry.repo_tags.unwrap_or_default(),
            layers,
            scratch,
        };
        Ok((image, warnings))
    }

    /// The scratch folder holding the layers.
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// `config.Env` of the base image, or an empty list.
    pub fn env(&self) -> Vec<Value> {
        self.config
            .get("config")
            .and_then(|c| c.get("Env"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    /// The history entries of the base layers for the new config (docs/formats.md §4.4).
    ///
    /// The base `history` is kept as it is when its entries without `"empty_layer": true`
    /// are exactly as many as the base layers; otherwise (no history, or one that does not
    /// match) it is replaced by one `{"created": created}` per base layer, as nixpkgs
    /// does, `created` being the new image's. Either way the non-empty entries match the
    /// base `diff_ids` one to one.
    pub fn history(&self, created: &str) -> Vec<Value> {
        if let Some(history) = self.config.get("history").and_then(Value::as_array) {
            let non_empty = history
                .iter()
                .filter(|h| h.get("empty_layer") != Some(&Value::Bool(true)))
                .count();
            if non_empty == self.layers.len() {
                return history.clone();
            }
        }
        self.layers
            .iter()
            .map(|_| json!({ "created": created }))
            .collect()
    }

    /// The layers in the order they apply, each once. Applying a layer again on top leaves
    /// exactly what applying it only that last time leaves (its files replace, its
    /// whiteouts and opaque folders hide, whatever lies below), so of a layer listed twice
    /// only the last occurrence counts. This is the rule for everything that unpacks or
    /// merges the base; writing the image still lists every occurrence.
    pub fn unique_layers(&self) -> Vec<&BaseLayer> {
        let mut seen = BTreeSet::new();
        let mut unique: Vec<&BaseLayer> = self
            .layers
            .iter()
            .rev()
            .filter(|layer| seen.insert(layer.diff_id))
            .collect();
        unique.reverse();
        unique
    }

    /// The merged file system of the layers ([`BaseImage::unique_layers`]), applied in
    /// order with their whiteouts.
    pub fn filesystem(&self) -> Result<BaseFs> {
        let mut fs = BaseFs::new();
        for layer in self.unique_layers() {
            fs.apply_layer(&layer.path, &layer.member)?;
        }
        Ok(fs)
    }
}

/// Reads every member of the outer archive: regular files into the scratch folder, links
/// and folders into the namespace.
fn read_outer(
    archive: &Path,
    scratch: &Path,
    pump: &mut Pump<'_>,
    budget: &Budget,
    warnings: &mut Vec<String>,
) -> Result<Namespace> {
    let what = archive.display().to_string();
    let outer_err = |source: io::Error| read_error(what.clone(), source);
    let file = std::fs::File::open(archive).map_err(|e| Error::io("open", archive, e))?;
    let mut input = BufReader::with_capacity(1 << 20, file);
    let head = tarfile::peek(&mut input, SNIFF).map_err(outer_err)?;
    let compression = detect(&head);
    if let Compression::Unsupported(format) = compression {
        return Err(Error::BaseInvalid {
            what,
            reason: format!("compressed with {format}, which buildimage does not read"),
        });
    }
    // Only decompressed bytes count: a plain archive's are bounded by its size.
    let mut tar = TarReader::new(
        Stream(budget.wrap_if(
            compression != Compression::None,
            decoder(input, compression).map_err(outer_err)?,
        )),
        true,
    );
    let mut ns = Namespace::default();
    let mut count: u64 = 0;
    let mut name_bytes: u64 = 0;
    let mut escaped: u64 = 0;
    while let Some(member) = tar.next_member().map_err(outer_err)? {
        count += 1;
        if count > MAX_MEMBERS {
            return Err(Error::BaseLimit {
                what,
                limit: MAX_MEMBERS,
                items: "members",
            });
        }
        name_bytes += (member.name.len() + member.link.len()) as u64;
        if name_bytes > MAX_NAME_BYTES {
            return Err(Error::BaseLimit {
                what,
                limit: MAX_NAME_BYTES,
                items: "bytes of member names",
            });
        }
        let Some(name) = clean(&member.name) else {
            escaped += 1;
            if escaped <= MAX_NAMED_WARNINGS {
                warnings.push(format!(
                    "Base image member {} points outside the archive; ignored",
                    show(&member.name)
                ));
            }
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let node = match member.kind {
            MemberKind::File => {
                // A generated name: nothing of the member's name reaches the host.
                let path = scratch.join(format!("m{count:07}"));
                // Name the member that went over the limit, not only the archive.
                let member_err = |source: io::Error| match exceeded(&source) {
                    Some(limit) => Error::BaseTooLarge {
                        what: format!("{what}, member {}", show(&name)),
                        limit,
                    },
                    None => outer_err(source),
                };
                let size = save(&mut tar, &path, pump, &member_err)?;
                Node::File(Stored { path, size })
            }
            MemberKind::Dir => Node::Dir,
            MemberKind::Symlink => Node::Symlink(member.link),
            MemberKind::HardLink => Node::HardLink(member.link),
            MemberKind::CharDevice { .. }
            | MemberKind::BlockDevice { .. }
            | MemberKind::Fifo
            | MemberKind::Unknown => continue,
        };
        if let Some(Node::File(old)) = ns.nodes.insert(name, node) {
            // A later member of the same name replaces the earlier one, as on extraction.
            let _ = std::fs::remove_file(&old.path);
        }
    }
    if escaped > MAX_NAMED_WARNINGS {
        warnings.push(format!(
            "Base image: {} more members point outside the archive; ignored",
            escaped - MAX_NAMED_WARNINGS
        ));
    }
    if compression != Compression::None {
        let mut rest = tar.into_inner();
        io::copy(&mut (&mut rest).take(DRAIN_LIMIT), &mut io::sink()).map_err(outer_err)?;
    }
    Ok(ns)
}

/// Copies the current member's data into a new scratch file.
fn save<S: tarfile::Source>(
    tar: &mut TarReader<S>,
    path: &Path,
    pump: &mut Pump<'_>,
    read_err: &dyn Fn(io::Error) -> Error,
) -> Result<u64> {
    let scratch_err = |e: io::Error| Error::io("write", path, e);
    let out = std::fs::File::create(path).map_err(|e| Error::io("create", path, e))?;
    let mut out = BufWriter::with_capacity(CHUNK, Holes::new(out));
    let size = pump.copy(tar, &mut out, read_err, &scratch_err)?;
    out.into_inner()
        .map_err(|e| scratch_err(e.into_error()))?
        .finish()
        .map_err(scratch_err)?;
    Ok(size)
}

/// Copies data through one buffer, and stops when the build is interrupted.
pub(crate) struct Pump<'a> {
    buf: Vec<u8>,
    cancel: Option<&'a Cancel>,
}

impl<'a> Pump<'a> {
    pub(crate) fn new(cancel: Option<&'a Cancel>) -> Self {
        Pump {
            buf: vec![0; CHUNK],
            cancel,
        }
    }

    /// Copies `from` into `to`, telling read errors from write errors.
    pub(crate) fn copy<R: Read + ?Sized, W: Write + ?Sized>(
        &mut self,
        from: &mut R,
        to: &mut W,
        read_err: &dyn Fn(io::Error) -> Error,
        write_err: &dyn Fn(io::Error) -> Error,
    ) -> Result<u64> {
        let mut total = 0;
        loop {
            if let Some(cancel) = self.cancel {
                cancel.check()?;
            }
            let n = match from.read(&mut self.buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(e)),
            };
            to.write_all(&self.buf[..n]).map_err(write_err)?;
            total += n as u64;
        }
    }
}

/// An error reading the archive or a layer: truncation is told apart.
fn read_error(what: String, source: io::Error) -> Error {
    if let Some(limit) = exceeded(&source) {
        Error::BaseTooLarge { what, limit }
    } else if source.kind() == io::ErrorKind::UnexpectedEof {
        Error::BaseTruncated { what }
    } else {
        Error::BaseRead { what, source }
    }
}

/// An error reading the layer listed as `layer`.
pub(crate) fn layer_error(layer: &str, source: io::Error) -> Error {
    read_error(format!("layer {layer}"), source)
}

/// The regular file a manifest path leads to.
fn lookup<'a>(ns: &'a Namespace, member: &str) -> Result<&'a Stored> {
    ns.resolve(member.as_bytes()).map_err(|e| match e {
        Lookup::Missing => Error::BaseMissing {
            member: member.to_owned(),
        },
        Lookup::Loop => Error::BaseInvalid {
            what: format!("member {member}"),
            reason: "too many levels of links".to_owned(),
        },
    })
}

/// The bytes of a JSON member, refusing oversized ones before reading them.
fn read_json(ns: &Namespace, member: &str) -> Result<Vec<u8>> {
    let stored = lookup(ns, member)?;
    if stored.size > MAX_JSON {
        return Err(Error::BaseJsonSize {
            member: member.to_owned(),
            limit: MAX_JSON,
        });
    }
    std::fs::read(&stored.path).map_err(|e| Error::io("read", &stored.path, e))
}

/// Picks the manifest entry (docs/formats.md §5.4).
fn select_entry(
    entries: Vec<RawEntry>,
    select: Select<'_>,
    warnings: &mut Vec<String>,
) -> Result<RawEntry> {
    if let (Some(name), Some(tag)) = (select.name, select.tag) {
        let wanted = format!("{name}:{tag}");
        let found: Vec<String> = entries
            .iter()
            .flat_map(|e| e.repo_tags.iter().flatten().cloned())
            .collect();
        return entries
            .into_iter()
            .find(|e| e.repo_tags.iter().flatten().any(|t| *t == wanted))
            .ok_or(Error::BaseNoMatch { wanted, found });
    }
    match (select.name, select.tag) {
        (Some(name), None) => warnings.push(format!(
            "fromImageName {name} is ignored without fromImageTag; \
             the first image of the base archive is used"
        )),
        (None, Some(tag)) => warnings.push(format!(
            "fromImageTag {tag} is ignored without fromImageName; \
             the first image of the base archive is used"
        )),
        _ => {}
    }
    entries
        .into_iter()
        .next()
        .ok_or_else(|| Error::BaseInvalid {
            what: "manifest.json".to_owned(),
            reason: "lists no images".to_owned(),
        })
}

/// Checks the config's digest against its name when the name states one: `<hex>.json`
/// (legacy) or `blobs/sha256/<hex>` (OCI). `docker load` checks it too.
fn check_config_name(member: &str, digest: &str) -> Result<()> {
    let Some(name) = clean(member.as_bytes()) else {
        return Ok(());
    };
    let claimed = name
        .strip_suffix(b".json")
        .or_else(|| name.strip_prefix(b"blobs/sha256/"))
        .filter(|h| h.len() == 64 && h.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    match claimed {
        Some(claimed) if claimed != digest.as_bytes() => Err(Error::BaseConfigDigest {
            config: member.to_owned(),
            actual: digest.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// `rootfs.diff_ids` of the config.
fn config_diff_ids(config: &Map<String, Value>, member: &str) -> Result<Vec<String>> {
    config
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(Value::as_array)
        .and_then(|ids| {
            ids.iter()
                .map(|id| id.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| Error::BaseInvalid {
            what: format!("config {member}"),
            reason: "no rootfs.diff_ids list of strings".to_owned(),
        })
}

/// Hashes a layer member, decompressing it into a new scratch file if it is compressed.
/// Returns the diff id, the uncompressed size and the file holding the uncompressed tar.
fn unpack_layer(
    stored: &Stored,
    member: &str,
    scratch: &Path,
    index: usize,
    pump: &mut Pump<'_>,
    budget: &Budget,
) -> Result<([u8; 32], u64, PathBuf)> {
    let read_err = |source: io::Error| layer_error(member, source);
    let file = std::fs::File::open(&stored.path).map_err(|e| Error::io("open", &stored.path, e))?;
    let mut input = BufReader::with_capacity(1 << 20, file);
    let head = tarfile::peek(&mut input, SNIFF).map_err(read_err)?;
    let compression = detect(&head);
    match compression {
        Compression::Unsupported(format) => Err(Error::BaseInvalid {
            what: format!("layer {member}"),
            reason: format!("compressed with {format}, which buildimage does not read"),
        }),
        Compression::None => {
            // Already a plain tar: hash it where it is.
            let mut sink = Hashing::new(io::sink());
            pump.copy(&mut input, &mut sink, &read_err, &read_err)?;
            Ok((
                sink.hasher.finalize().into(),
                sink.size,
                stored.path.clone(),
            ))
        }
        Compression::Gzip | Compression::Zstd => {
            let path = scratch.join(format!("layer{index:04}.tar"));
            let scratch_err = |e: io::Error| Error::io("write", &path, e);
            let out = std::fs::File::create(&path).map_err(|e| Error::io("create", &path, e))?;
            let mut out = Hashing::new(BufWriter::with_capacity(CHUNK, Holes::new(out)));
            let mut from = budget.wrap(decoder(input, compression).map_err(read_err)?);
            pump.copy(&mut from, &mut out, &read_err, &scratch_err)?;
            out.inner
                .into_inner()
                .map_err(|e| scratch_err(e.into_error()))?
                .finish()
                .map_err(scratch_err)?;
            Ok((out.hasher.finalize().into(), out.size, path))
        }
    }
}

/// A scratch file written with a hole wherever a whole block of zeros would go, as
/// `cp --sparse=always` does: a layer of a large file of zeros (a disk image, a
/// preallocated database) then costs the disk what it holds, not its length. Reading the
/// file back gives the zeros.
struct Holes {
    file: std::fs::File,
    /// Bytes of zeros skipped since the last write, not yet followed by data.
    pending: u64,
    length: u64,
}

/// The unit of hole detection: file systems allocate in blocks of 4 KiB.
const HOLE_BLOCK: usize = 4096;

impl Holes {
    fn new(file: std::fs::File) -> Self {
        Holes {
            file,
            pending: 0,
            length: 0,
        }
    }

    /// Extends the file over a trailing hole.
    fn finish(self) -> io::Result<()> {
        if self.pending > 0 {
            self.file.set_len(self.length)?;
        }
        Ok(())
    }
}

impl Write for Holes {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use std::io::{Seek, SeekFrom};
        const ZEROS: [u8; HOLE_BLOCK] = [0; HOLE_BLOCK];
        for block in buf.chunks(HOLE_BLOCK) {
            // A whole block of zeros is skipped; a comparison of slices is one memcmp.
            if block.len() == HOLE_BLOCK && block == ZEROS {
                self.pending += HOLE_BLOCK as u64;
            } else {
                if self.pending > 0 {
                    let skip = i64::try_from(self.pending).map_err(io::Error::other)?;
                    self.file.seek(SeekFrom::Current(skip))?;
                    self.pending = 0;
                }
                self.file.write_all(block)?;
            }
            self.length += block.len() as u64;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer that hashes and counts what passes through.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar of `members` (name, data) written by the `tar` crate.
    fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn open(bytes: &[u8]) -> Result<(BaseImage, Vec<String>)> {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("base");
        std::fs::write(&archive, bytes).unwrap();
        BaseImage::open(&archive, Select::default(), dir.path())
    }

    #[test]
    fn a_set_cancel_flag_stops_reading_and_leaves_no_scratch_folder() {
        let big = vec![7u8; 3 << 20];
        let bytes = tar_of(&[("manifest.json", b"[]"), ("big", &big)]);
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("base");
        std::fs::write(&archive, bytes).unwrap();
        let scratch = dir.path().join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        let cancel = Cancel::new();
        cancel.cancel();
        let err = BaseImage::open_with(&archive, Select::default(), &scratch, Some(&cancel), None)
            .unwrap_err();
        assert!(
            matches!(err, Error::Layer(buildimage_layer::Error::Interrupted(_))),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
    }

    /// 32 KiB of gzip held a 31 MiB config of zeros, which decoded into half a gigabyte of
    /// `serde_json` values (the fuzz target's 512 MiB limit stopped it). Found while fuzzing
    /// the reader; the archive is `fuzz/seeds/base_image/regression-json-bomb`.
    #[test]
    fn config_that_decodes_to_half_a_gigabyte_is_refused_unread() {
        let mut config = b"{\"rootfs\":{\"diff_ids\":[]},\"x\":[".to_vec();
        for _ in 0..(31 << 20) / 2 {
            config.extend_from_slice(b"0,");
        }
        config.extend_from_slice(b"0]}");
        let manifest = br#"[{"Config": "c.json", "Layers": []}]"#;
        let plain = tar_of(&[("manifest.json", manifest), ("c.json", &config)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&plain).unwrap();
        let bytes = gz.finish().unwrap();
        assert!(bytes.len() < 64 << 10, "{} bytes", bytes.len());
        match open(&bytes) {
            Err(Error::BaseJsonSize { member, limit }) => {
                assert_eq!((member.as_str(), limit), ("c.json", MAX_JSON));
            }
            other => panic!("{other:?}"),
        }
    }

    /// 14 KiB of zstd held 300 members with 1 MiB PAX names, all kept in the outer
    /// namespace: 300 MiB of memory, and more for a larger archive. Found while fuzzing the
    /// reader; the archive is `fuzz/seeds/base_image/regression-long-names`.
    #[test]
    fn long_pax_names_cannot_fill_memory() {
        let mut plain = Vec::new();
        let mut b = tar::Builder::new(&mut plain);
        let long = "a".repeat((1 << 20) - 100);
        let members = MAX_NAME_BYTES / (1 << 20) + 2;
        for i in 0..members {
            let path = format!("{i:04}/{long}");
            b.append_pax_extensions([("path", path.as_bytes())])
                .unwrap();
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            h.set_mode(0o755);
            h.set_path("placeholder").unwrap();
            h.set_cksum();
            b.append(&h, &b""[..]).unwrap();
        }
        b.finish().unwrap();
        drop(b);
        let bytes = zstd::encode_all(&plain[..], 3).unwrap();
        match open(&bytes) {
            Err(Error::BaseLimit { limit, items, .. }) => {
                assert_eq!((limit, items), (MAX_NAME_BYTES, "bytes of member names"));
            }
            other => panic!("{other:?}"),
        }
    }

    /// zstd frames of `frames` × 1 MiB of zeros: a few hundred bytes per GiB.
    fn zstd_zeros(frames: usize) -> Vec<u8> {
        let frame = zstd::encode_all(&vec![0u8; 1 << 20][..], 1).unwrap();
        frame.repeat(frames)
    }

    /// A docker-archive whose one layer is `layer`, with a config that names `diff_id`.
    fn archive_with_layer(layer: &[u8], diff_id: &str) -> Vec<u8> {
        let config = format!(r#"{{"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#);
        let manifest = br#"[{"Config": "c.json", "Layers": ["l/layer.tar"]}]"#;
        tar_of(&[
            ("manifest.json", manifest),
            ("c.json", config.as_bytes()),
            ("l/layer.tar", layer),
        ])
    }

    fn open_limited(bytes: &[u8], limit: Option<u64>) -> (Result<BaseImage>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("base");
        std::fs::write(&archive, bytes).unwrap();
        let scratch = dir.path().join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        let opened = BaseImage::open_with(&archive, Select::default(), &scratch, None, limit)
            .map(|(image, _)| image);
        (opened, dir)
    }

    #[test]
    fn a_zstd_bomb_layer_stops_at_the_limit_naming_the_layer() {
        let bomb = zstd_zeros(64);
        let bytes = archive_with_layer(&bomb, &format!("sha256:{}", "0".repeat(64)));
        let (opened, dir) = open_limited(&bytes, Some(16 << 20));
        match opened {
            Err(err @ Error::BaseTooLarge { .. }) => {
                assert_eq!(
                    err.to_string(),
                    "Base image layer l/layer.tar: expands to more than 16777216 bytes (16 MiB)"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            std::fs::read_dir(dir.path().join("scratch"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn a_compressed_archive_counts_against_the_same_limit_naming_the_member() {
        let plain = archive_with_layer(&vec![0u8; 12 << 20], "sha256:x");
        let bytes = zstd::encode_all(&plain[..], 1).unwrap();
        let (opened, _dir) = open_limited(&bytes, Some(8 << 20));
        match opened {
            Err(Error::BaseTooLarge { what, limit }) => {
                assert!(what.ends_with(", member l/layer.tar"), "{what}");
                assert_eq!(limit, 8 << 20);
            }
            other => panic!("{other:?}"),
        }
    }

    /// The limit counts what decompression yields for the archive and its layers together;
    /// an uncompressed archive's bytes are not counted, whatever its size.
    #[test]
    fn the_limit_is_the_sum_of_what_decompression_yields() {
        let layer = tar_of(&[("zeros", &vec![0u8; 3 << 20])]);
        let diff_id = format!("sha256:{}", HEXLOWER.encode(&Sha256::digest(&layer)));
        let compressed = zstd::encode_all(&layer[..], 1).unwrap();
        let bytes = archive_with_layer(&compressed, &diff_id);
        let exact = layer.len() as u64;
        let (opened, _dir) = open_limited(&bytes, Some(exact));
        let image = opened.unwrap();
        assert_eq!(image.layers[0].size, exact);
        // The zeros went into holes: the unpacked layer takes less disk than its length.
        let blocks = std::os::unix::fs::MetadataExt::blocks(
            &std::fs::metadata(&image.layers[0].path).unwrap(),
        );
        assert!(blocks * 512 < 1 << 20, "{blocks} blocks of 512 bytes");
        assert_eq!(std::fs::read(&image.layers[0].path).unwrap(), layer);
        let (opened, _dir) = open_limited(&bytes, Some(exact - 1));
        assert!(matches!(opened, Err(Error::BaseTooLarge { .. })));
        // The whole archive compressed: its tar counts too, so the layer no longer fits.
        let outer = zstd::encode_all(&bytes[..], 1).unwrap();
        let (opened, _dir) = open_limited(&outer, Some(exact));
        assert!(
            matches!(opened, Err(Error::BaseTooLarge { .. })),
            "{opened:?}"
        );
        let (opened, _dir) = open_limited(&outer, Some(exact + bytes.len() as u64));
        opened.unwrap();
    }
}
