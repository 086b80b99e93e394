//! Images stored as blobs: an OCI layout written, added to and reused, with and without
//! the layer cache.

use std::cell::Cell;
use std::fs;
use std::io::Read;
use std::path::Path;

use buildimage_archive::{
    BlobImage, Compressor, Image, ImageLayer, ImageMeta, LayerCache, LayerData, LayerKind,
    ManifestFormat, OciLayout, Quiet, Tag, assemble, cache, merge_config,
};
use buildimage_layer::{Cancel, Entry, EntryKind, LayerEntries, Owner};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A layer of one file, with a key when `keyed`, counting how often it is listed.
struct Layer {
    content: &'static [u8],
    keyed: bool,
    listed: Cell<usize>,
}

impl Layer {
    fn new(content: &'static [u8], keyed: bool) -> Self {
        Layer {
            content,
            keyed,
            listed: Cell::new(0),
        }
    }
}

impl LayerEntries for Layer {
    fn each(
        &self,
        f: &mut dyn FnMut(&Entry) -> buildimage_layer::Result<()>,
    ) -> buildimage_layer::Result<()> {
        self.listed.set(self.listed.get() + 1);
        f(&Entry {
            name: b"./file".to_vec(),
            kind: EntryKind::Data(self.content.to_vec()),
            mode: 0o644,
            owner: Owner::root(),
            mtime: 1,
        })
    }

    fn key(&self) -> Option<[u8; 32]> {
        self.keyed.then(|| {
            let mut key = [0; 32];
            key[..self.content.len().min(32)]
                .copy_from_slice(&self.content[..self.content.len().min(32)]);
            key
        })
    }
}

fn image<'a>(layers: &'a [&'a Layer], tag: &str) -> Image<'a> {
    Image {
        name: "app".into(),
        tag: Tag::Fixed(tag.into()),
        meta: ImageMeta {
            architecture: "amd64".into(),
            config: merge_config(None, &[]),
            created: "1970-01-01T00:00:01Z".into(),
            parent: None,
            mtime: 1,
        },
        layers: layers
            .iter()
            .map(|l| ImageLayer {
                kind: if l.keyed {
                    LayerKind::Store
                } else {
                    LayerKind::Own
                },
                data: LayerData::Planned(*l),
            })
            .collect(),
        history: layers
            .iter()
            .map(|_| json!({ "created": "1970-01-01T00:00:01Z" }))
            .collect(),
    }
}

fn write(
    dir: &Path,
    layers: &[&Layer],
    tag: &str,
    compressor: Compressor,
    cache: Option<LayerCache>,
) -> buildimage_archive::BlobStats {
    let layout = OciLayout::open(dir, None).unwrap();
    let mut dest = BlobImage::new(layout, compressor, ManifestFormat::Oci, 2, cache).unwrap();
    assemble(&image(layers, tag), &mut dest, &Cancel::new(), &Quiet).unwrap();
    dest.into_store().1
}

fn index(dir: &Path) -> Value {
    serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap()
}

fn blobs(dir: &Path) -> usize {
    fs::read_dir(dir.join("blobs/sha256")).unwrap().count()
}

#[test]
fn a_layout_keeps_its_other_images_and_replaces_a_reference() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("layout");
    let (a, b) = (Layer::new(b"a", false), Layer::new(b"b", false));
    let first = write(&dir, &[&a], "one", Compressor::Gz, None);
    assert_eq!(
        (first.uploaded, first.skipped),
        (2, 0),
        "a layer and the config"
    );
    assert_eq!(
        fs::read(dir.join("oci-layout")).unwrap(),
        br#"{"imageLayoutVersion":"1.0.0"}"#
    );
    // The same image under another reference: every blob is there already.
    let again = write(&dir, &[&a], "two", Compressor::Gz, None);
    assert_eq!((again.uploaded, again.skipped), (0, 2));
    // Another image under the first reference replaces its entry.
    write(&dir, &[&a, &b], "one", Compressor::Gz, None);
    let index = index(&dir);
    let refs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(refs, ["two", "one"]);
    // Layers a, b; two configs; two manifests.
    assert_eq!(blobs(&dir), 6);
    let leftovers: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn media_types_follow_compressor_and_format() {
    let temp = tempfile::tempdir().unwrap();
    let a = Layer::new(b"a", false);
    for (compressor, media_type) in [
        (Compressor::None, "application/vnd.oci.image.layer.v1.tar"),
        (
            Compressor::Gz,
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (
            Compressor::Zstd,
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
    ] {
        let dir = temp.path().join(compressor.as_str());
        let stats = write(&dir, &[&a], "t", compressor, None);
        let manifest = stats.manifest.unwrap();
        let hex = manifest.digest.strip_prefix("sha256:").unwrap();
        let bytes = fs::read(dir.join("blobs/sha256").join(hex)).unwrap();
        let manifest: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(manifest["layers"][0]["mediaType"], media_type);
        assert_eq!(
            manifest["config"]["mediaType"],
            "application/vnd.oci.image.config.v1+json"
        );
    }
    let err = BlobImage::new(
        OciLayout::open(&temp.path().join("d"), None).unwrap(),
        Compressor::Zstd,
        ManifestFormat::Docker,
        1,
        None,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("no media type for zstd"), "{err}");
}

#[test]
fn the_cache_skips_keyed_layers_without_listing_them() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("layout");
    let cache = LayerCache::open(&temp.path().join("cache"), cache::DEFAULT_LIMIT).unwrap();
    let store = Layer::new(b"store", true);
    let own = Layer::new(b"own", false);
    let first = write(
        &dir,
        &[&store, &own],
        "t",
        Compressor::Gz,
        Some(cache.clone()),
    );
    assert_eq!(store.listed.get(), 2, "planned and written");
    let second = write(
        &dir,
        &[&store, &own],
        "t",
        Compressor::Gz,
        Some(cache.clone()),
    );
    assert_eq!(
        store.listed.get(),
        2,
        "the keyed layer is not even listed again"
    );
    assert_eq!(first.manifest, second.manifest, "the same image");
    // The keyed layer is not read; the own layer is, and found present; the config too.
    assert_eq!((second.uploaded, second.skipped), (0, 3));

    // A layout without the blob: the keyed layer is read again, and the cache is right.
    let other = temp.path().join("other");
    let third = write(
        &other,
        &[&store, &own],
        "t",
        Compressor::Gz,
        Some(cache.clone()),
    );
    assert_eq!(store.listed.get(), 4);
    assert_eq!(third.manifest, first.manifest);

    // Without a cache every layer is read, with the same result.
    let plain = write(
        &temp.path().join("plain"),
        &[&store, &own],
        "t",
        Compressor::Gz,
        None,
    );
    assert_eq!(plain.manifest, first.manifest);
}

/// `len` bytes that compress, but not to nothing, different for each `seed`.
fn noise(len: u32, seed: u32) -> &'static [u8] {
    Box::leak(
        (0..len)
            .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<u8>>()
            .into_boxed_slice(),
    )
}

#[test]
fn compressed_layers_are_the_same_with_any_number_of_workers() {
    let temp = tempfile::tempdir().unwrap();
    // Small layers (compressed while the next ones are read, several at once) around one
    // larger than `DEFER_BUDGET` (streamed into its blob over every worker).
    let large = u32::try_from(buildimage_archive::DEFER_BUDGET).unwrap() + 3_000_000;
    let layers = [
        Layer::new(noise(3_000_000, 1), false),
        Layer::new(noise(70_000, 2), false),
        Layer::new(noise(large, 3), false),
        Layer::new(b"small", false),
        Layer::new(noise(9_000_000, 4), false),
    ];
    let refs: Vec<&Layer> = layers.iter().collect();
    for compressor in [Compressor::Gz, Compressor::Zstd] {
        let mut results = Vec::new();
        for threads in [1, 2, 4] {
            let dir = temp
                .path()
                .join(format!("{}-{threads}", compressor.as_str()));
            let layout = OciLayout::open(&dir, None).unwrap();
            let mut dest =
                BlobImage::new(layout, compressor, ManifestFormat::Oci, threads, None).unwrap();
            let summary = assemble(&image(&refs, "t"), &mut dest, &Cancel::new(), &Quiet).unwrap();
            let blobs: Vec<String> = summary
                .layers
                .iter()
                .map(|l| {
                    let blob = l.blob.clone().expect("every layer's blob is known");
                    assert_eq!(l.id, blob.digest);
                    // The blob (a series of gzip members or zstd frames) is the layer.
                    let path = dir
                        .join("blobs/sha256")
                        .join(&blob.digest["sha256:".len()..]);
                    let bytes = fs::read(path).unwrap();
                    let mut tar = Vec::new();
                    match compressor {
                        Compressor::Gz => flate2::read::MultiGzDecoder::new(&bytes[..])
                            .read_to_end(&mut tar)
                            .unwrap(),
                        _ => zstd::stream::read::Decoder::new(&bytes[..])
                            .unwrap()
                            .read_to_end(&mut tar)
                            .unwrap(),
                    };
                    assert_eq!(<[u8; 32]>::from(Sha256::digest(&tar)), l.diff_id);
                    blob.digest
                })
                .collect();
            let manifest = dest.into_store().1.manifest.unwrap().digest;
            results.push((blobs, manifest));
        }
        assert!(
            results.windows(2).all(|w| w[0] == w[1]),
            "{compressor:?}: {results:?}"
        );
    }
}

#[test]
fn a_folder_that_is_not_a_layout_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    fs::write(temp.path().join("file"), b"x").unwrap();
    let err = OciLayout::open(temp.path(), None).err().unwrap();
    assert!(
        err.to_string().contains("is not an OCI image layout"),
        "{err}"
    );
}
