//! Integration tests of the archive crate: reading base images in every archive form, and
//! refusing hostile ones cleanly.

use std::io::Write;
use std::path::PathBuf;

use buildimage_archive::read::{BaseImage, Kind, MAX_JSON, Select};
use buildimage_archive::{
    Error, Image, ImageLayer, ImageMeta, LayerData, LayerKind, Tag, merge_config, write_image,
};
use buildimage_layer::{CopyOptions, Owner, Tree, Warnings};
use data_encoding::HEXLOWER;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------
// Building archives

fn sha(bytes: &[u8]) -> String {
    HEXLOWER.encode(&Sha256::digest(bytes))
}

fn diff_id(layer: &[u8]) -> String {
    format!("sha256:{}", sha(layer))
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn zst(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

/// One member of a layer tar.
enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
}

/// A GNU-format layer tar. Short names are written raw (so `./` and whiteouts are exact),
/// long ones through `././@LongLink`.
fn layer(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (name, kind, mode, data, target) = match e {
            E::Dir(name, mode) => (*name, tar::EntryType::Directory, *mode, &b""[..], ""),
            E::File(name, data, mode) => (*name, tar::EntryType::Regular, *mode, *data, ""),
            E::Symlink(name, target) => (*name, tar::EntryType::Symlink, 0o777, &b""[..], *target),
        };
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        if name.len() <= 100 && target.len() <= 100 {
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
            h.set_cksum();
            b.append(&h, data).unwrap();
        } else if target.is_empty() {
            b.append_data(&mut h, name, data).unwrap();
        } else {
            b.append_link(&mut h, name, target).unwrap();
        }
    }
    b.into_inner().unwrap()
}

/// The outer tar, member by member; names are written raw, so hostile ones are possible.
struct Outer(tar::Builder<Vec<u8>>);

impl Outer {
    fn new() -> Self {
        Outer(tar::Builder::new(Vec::new()))
    }

    fn header(name: &[u8], kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(size);
        h.set_mtime(1);
        h
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw_file(name.as_bytes(), data)
    }

    fn raw_file(&mut self, name: &[u8], data: &[u8]) -> &mut Self {
        let mut h = Self::header(name, tar::EntryType::Regular, data.len() as u64);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        let mut h = Self::header(name.as_bytes(), tar::EntryType::Directory, 0);
        h.set_cksum();
        self.0.append(&h, &b""[..]).unwrap();
        self
    }

    fn link(&mut self, kind: tar::EntryType, name: &str, target: &str) -> &mut Self {
        let mut h = Self::header(name.as_bytes(), kind, 0);
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        h.set_cksum();
        self.0.append(&h, &b""[..]).unwrap();
        self
    }

    fn json(&mut self, name: &str, value: &Value) -> &mut Self {
        self.file(name, &serde_json::to_vec_pretty(value).unwrap())
    }

    fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn config(diff_ids: &[String], env: &[&str], history: Option<Value>) -> Vec<u8> {
    let mut c = json!({
        "architecture": "amd64",
        "config": { "Cmd": ["/bin/sh"], "Env": env },
        "created": "2020-01-01T00:00:00Z",
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    if let Some(h) = history {
        c["history"] = h;
    }
    serde_json::to_vec_pretty(&c).unwrap()
}

/// Adds one image in the legacy layout (`<n>/layer.tar`, `<sha>.json`) and returns its
/// manifest entry and config digest.
fn add_legacy(
    outer: &mut Outer,
    prefix: &str,
    layers: &[Vec<u8>],
    tags: &Value,
    env: &[&str],
) -> (Value, String) {
    let ids: Vec<String> = layers.iter().map(|l| diff_id(l)).collect();
    let cfg = config(&ids, env, None);
    let digest = sha(&cfg);
    let mut paths = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let dir = format!("{prefix}{i:02}");
        outer.dir(&format!("{dir}/"));
        outer.file(&format!("{dir}/VERSION"), b"1.0");
        outer.file(&format!("{dir}/layer.tar"), l);
        paths.push(format!("{dir}/layer.tar"));
    }
    outer.file(&format!("{digest}.json"), &cfg);
    (
        json!({ "Config": format!("{digest}.json"), "RepoTags": tags, "Layers": paths }),
        digest,
    )
}

/// A one-image legacy archive.
fn legacy(layers: &[Vec<u8>], env: &[&str]) -> (Vec<u8>, String) {
    let mut outer = Outer::new();
    let (entry, digest) = add_legacy(&mut outer, "l", layers, &json!(["base:1"]), env);
    outer.json("manifest.json", &json!([entry]));
    (outer.finish(), digest)
}

fn two_layers() -> Vec<Vec<u8>> {
    vec![
        layer(&[E::Dir("bin/", 0o755), E::File("bin/sh", b"#!", 0o755)]),
        layer(&[E::Dir("etc/", 0o755), E::File("etc/motd", b"hi\n", 0o644)]),
    ]
}

struct Dirs {
    _root: tempfile::TempDir,
    /// Where archives are written.
    input: PathBuf,
    /// The parent of the scratch folders.
    parent: PathBuf,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().unwrap();
    let input = root.path().join("in");
    let parent = root.path().join("work/scratch");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&parent).unwrap();
    Dirs {
        input,
        parent,
        _root: root,
    }
}

impl Dirs {
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.input.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn open(&self, bytes: &[u8]) -> Result<(BaseImage, Vec<String>), Error> {
        self.open_with(bytes, Select::default())
    }

    fn open_with(
        &self,
        bytes: &[u8],
        select: Select<'_>,
    ) -> Result<(BaseImage, Vec<String>), Error> {
        let path = self.write("base.tar", bytes);
        BaseImage::open(&path, select, &self.parent)
    }

    fn scratch_is_empty(&self) -> bool {
        std::fs::read_dir(&self.parent).unwrap().next().is_none()
    }
}

// ---------------------------------------------------------------------------------------
// Archive forms

#[test]
fn legacy_archive_written_by_buildimage() {
    let d = dirs();
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir(src.path().join("bin")).unwrap();
    std::fs::write(src.path().join("bin/hello"), b"#!/bin/sh\necho hello\n").unwrap();
    let mut tree = Tree::new();
    tree.copy_from(
        src.path(),
        &CopyOptions::default(),
        &mut Warnings::default(),
    )
    .unwrap();
    let entries = tree.entries(&Owner::root(), 315_532_800);
    let image = Image {
        name: "base".into(),
        tag: Tag::Fixed("latest".into()),
        meta: ImageMeta {
            architecture: "amd64".into(),
            config: merge_config(None, &[json!("PATH=/bin")]),
            created: "1970-01-01T00:00:01Z".into(),
            parent: None,
            mtime: 315_532_800,
        },
        layers: vec![ImageLayer {
            kind: LayerKind::Own,
            data: LayerData::Planned(&entries),
        }],
        history: vec![json!({"created": "1970-01-01T00:00:01Z"})],
    };
    let archive = d.input.join("base.tar");
    let file = std::fs::File::create(&archive).unwrap();
    let (_, written) = write_image(file, &image).unwrap();
    let layer = &written.layers[0];

    let (base, warnings) = BaseImage::open(&archive, Select::default(), &d.parent).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(base.config_digest, written.config_digest);
    assert_eq!(base.repo_tags, ["base:latest"]);
    assert_eq!(base.layers.len(), 1);
    let l = &base.layers[0];
    assert_eq!(l.member, format!("{}/layer.tar", layer.id));
    assert_eq!(l.diff_id, layer.diff_id);
    assert_eq!(l.diff_id_string(), layer.diff_id_string());
    assert_eq!(l.size, layer.size);
    assert_eq!(std::fs::metadata(&l.path).unwrap().len(), l.size);
    assert!(l.path.starts_with(base.scratch()));
    assert_eq!(base.env(), [json!("PATH=/bin")]);
    assert_eq!(
        base.history("2024-01-01T00:00:00Z"),
        [json!({"created": "1970-01-01T00:00:01Z"})]
    );

    let fs = base.filesystem().unwrap();
    assert!(fs.is_dir(b"bin"));
    assert_eq!(fs.kind(b"/bin/hello"), Some(Kind::File));
    assert_eq!(fs.len(), 2);

    // Only the layer is left in the scratch folder, and nothing once the image is dropped.
    assert_eq!(std::fs::read_dir(base.scratch()).unwrap().count(), 1);
    drop(base);
    assert!(d.scratch_is_empty());
}

#[test]
fn docker_25_layout_with_gzip_layers() {
    let d = dirs();
    let plain = two_layers();
    let stored: Vec<Vec<u8>> = plain.iter().map(|l| gz(l)).collect();
    let ids: Vec<String> = plain.iter().map(|l| diff_id(l)).collect();
    let cfg = config(&ids, &["A=1"], None);
    let cfg_path = format!("blobs/sha256/{}", sha(&cfg));
    let layer_paths: Vec<String> = stored
        .iter()
        .map(|s| format!("blobs/sha256/{}", sha(s)))
        .collect();

    let mut outer = Outer::new();
    outer
        .dir("blobs/")
        .dir("blobs/sha256/")
        .file(&layer_paths[0], &stored[0])
        .file(&cfg_path, &cfg)
        .file(&layer_paths[1], &stored[1])
        .json("index.json", &json!({"schemaVersion": 2, "manifests": []}))
        .json(
            "manifest.json",
            &json!([{ "Config": cfg_path, "RepoTags": ["img:2"], "Layers": layer_paths }]),
        )
        .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .file("repositories", b"{}");
    let (base, warnings) = d.open(&outer.finish()).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(base.config_digest, sha(&cfg));
    assert_eq!(base.repo_tags, ["img:2"]);
    assert_eq!(base.layers.len(), plain.len());
    for (l, p) in base.layers.iter().zip(&plain) {
        assert_eq!(l.diff_id_string(), diff_id(p));
        assert_eq!(l.size, p.len() as u64);
        assert_eq!(&std::fs::read(&l.path).unwrap(), p);
    }
    assert_eq!(base.layers[1].member, layer_paths[1]);
    let fs = base.filesystem().unwrap();
    assert!(fs.contains(b"bin/sh") && fs.contains(b"etc/motd"));
}

#[test]
fn outer_gzip_and_zstd_are_told_by_magic_bytes() {
    let d = dirs();
    let (plain, digest) = legacy(&two_layers(), &[]);
    for bytes in [gz(&plain), zst(&plain)] {
        // The name says `.tar`; the content decides.
        let (base, _) = d.open(&bytes).unwrap();
        assert_eq!(base.config_digest, digest);
        assert_eq!(base.layers.len(), 2);
    }
}

#[test]
fn zstd_layers_and_skopeo_names() {
    // skopeo's docker-archive names layers `<hex>.tar` whatever their compression.
    let d = dirs();
    let plain = two_layers();
    let stored = [zst(&plain[0]), plain[1].clone()];
    let ids: Vec<String> = plain.iter().map(|l| diff_id(l)).collect();
    let cfg = config(&ids, &[], None);
    let names: Vec<String> = stored.iter().map(|s| format!("{}.tar", sha(s))).collect();
    let mut outer = Outer::new();
    outer
        .file(&format!("{}.json", sha(&cfg)), &cfg)
        .file(&names[0], &stored[0])
        .file(&names[1], &stored[1])
        .json(
            "manifest.json",
            &json!([{ "Config": format!("{}.json", sha(&cfg)), "RepoTags": [], "Layers": names }]),
        );
    let (base, _) = d.open(&outer.finish()).unwrap();
    assert!(base.repo_tags.is_empty());
    assert_eq!(base.layers[0].diff_id_string(), ids[0]);
    assert_eq!(base.layers[1].diff_id_string(), ids[1]);
}

#[test]
fn stream_layered_layout_with_pax_and_long_names() {
    let d = dirs();
    let store = "/nix/store/0c9n4jvqc1xw0b7qpcq4ay0k0pr8ilbh-hello-2.12";
    let long = format!("{store}/share/{}/README", "x".repeat(120));
    let odd = format!("{store}/a name\nwith \"quotes\" and \\");
    let mut b = tar::Builder::new(Vec::new());
    for (name, is_dir) in [
        ("/nix/", true),
        ("/nix/store/", true),
        (store, true),
        (long.as_str(), false),
        (odd.as_str(), false),
    ] {
        b.append_pax_extensions([("path", name.as_bytes())])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_path("placeholder").unwrap();
        h.set_mode(if is_dir { 0o555 } else { 0o444 });
        h.set_entry_type(if is_dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_size(if is_dir { 0 } else { 2 });
        h.set_cksum();
        b.append(&h, &b"ok"[..usize::from(!is_dir) * 2]).unwrap();
    }
    let l = b.into_inner().unwrap();
    let cfg = config(&[diff_id(&l)], &[], None);
    let mut outer = Outer::new();
    outer
        .file(&format!("{}.json", sha(&cfg)), &cfg)
        .dir(&format!("{}/", sha(&l)))
        .file(&format!("{}/layer.tar", sha(&l)), &l)
        .json(
            "manifest.json",
            &json!([{
                "Config": format!("{}.json", sha(&cfg)),
                "RepoTags": ["layered:1"],
                "Layers": [format!("{}/layer.tar", sha(&l))],
            }]),
        );
    let (base, _) = d.open(&outer.finish()).unwrap();
    let fs = base.filesystem().unwrap();
    assert_eq!(fs.mode(b"nix/store"), Some(0o555));
    assert!(fs.contains(long.as_bytes()));
    assert!(fs.contains(&odd.as_bytes()[1..]));
    assert_eq!(fs.kind(odd.as_bytes()), Some(Kind::File));
    // The store path, the two folders implied above README, README, the odd name.
    assert_eq!(fs.len(), 7);
    assert_eq!(fs.mode(format!("{store}/share").as_bytes()), Some(0o755));
}

#[test]
fn duplicate_layers_linked_inside_the_archive() {
    let d = dirs();
    let l = two_layers().remove(0);
    let id = diff_id(&l);
    let cfg = config(&[id.clone(), id.clone(), id.clone()], &[], None);
    let cfg_name = format!("{}.json", sha(&cfg));
    let mut outer = Outer::new();
    outer
        .dir("aaa/")
        .file("aaa/layer.tar", &l)
        .dir("bbb/")
        .link(tar::EntryType::Symlink, "bbb/layer.tar", "../aaa/layer.tar")
        .link(tar::EntryType::Link, "ccc/layer.tar", "./aaa/layer.tar")
        .file(&cfg_name, &cfg)
        .json(
            "manifest.json",
            &json!([{ "Config": cfg_name, "RepoTags": ["d:1"],
                      "Layers": ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"] }]),
        );
    let (base, _) = d.open(&outer.finish()).unwrap();
    assert_eq!(base.layers.len(), 3);
    for layer in &base.layers {
        assert_eq!(layer.diff_id_string(), id);
        assert_eq!(layer.path, base.layers[0].path);
    }
    assert_eq!(base.layers[1].member, "bbb/layer.tar");
}

// ---------------------------------------------------------------------------------------
// Selection

fn three_images() -> (Vec<u8>, String, String) {
    let layers = two_layers();
    let mut outer = Outer::new();
    let (first, d1) = add_legacy(
        &mut outer,
        "a",
        &layers[..1],
        &json!(["one:1", "one:latest"]),
        &["N=1"],
    );
    let (untagged, _) = add_legacy(&mut outer, "u", &layers[1..], &Value::Null, &[]);
    let (second, d2) = add_legacy(&mut outer, "b", &layers, &json!(["two:2"]), &["N=2"]);
    outer.json("manifest.json", &json!([first, untagged, second]));
    (outer.finish(), d1, d2)
}

#[test]
fn selection_by_name_and_tag() {
    let d = dirs();
    let (bytes, first, second) = three_images();
    let pick = |name, tag| d.open_with(&bytes, Select { name, tag });

    let (base, warnings) = pick(Some("two"), Some("2")).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(base.config_digest, second);
    assert_eq!(base.repo_tags, ["two:2"]);
    assert_eq!(base.layers.len(), 2);
    assert_eq!(base.env(), [json!("N=2")]);

    let (base, warnings) = pick(None, None).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(base.config_digest, first);

    let (base, warnings) = pick(Some("two"), None).unwrap();
    assert_eq!(base.config_digest, first);
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("fromImageName two is ignored"),
        "{warnings:?}"
    );

    let (base, warnings) = pick(None, Some("2")).unwrap();
    assert_eq!(base.config_digest, first);
    assert!(
        warnings[0].contains("fromImageTag 2 is ignored"),
        "{warnings:?}"
    );

    // Exact match only: `two:2` is no match for tag `2x` or name `tw`.
    let err = pick(Some("two"), Some("2x")).unwrap_err();
    assert!(
        matches!(&err, Error::BaseNoMatch { wanted, found } if wanted == "two:2x" && found.len() == 3)
    );
    assert_eq!(
        err.to_string(),
        "Base image has no image tagged two:2x; tags found: one:1, one:latest, two:2"
    );
    // Tags match whole, not by prefix.
    let err = pick(Some("tw"), Some("2")).unwrap_err();
    assert!(
        matches!(&err, Error::BaseNoMatch { wanted, .. } if wanted == "tw:2"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Refused archives

#[test]
fn wrong_diff_id_names_layer_and_digests() {
    let d = dirs();
    let l = two_layers().remove(0);
    let wrong = diff_id(b"something else");
    let cfg = config(std::slice::from_ref(&wrong), &[], None);
    let cfg_name = format!("{}.json", sha(&cfg));
    let mut outer = Outer::new();
    outer
        .file("x/layer.tar", &gz(&l))
        .file(&cfg_name, &cfg)
        .json(
            "manifest.json",
            &json!([{ "Config": cfg_name, "RepoTags": null, "Layers": ["x/layer.tar"] }]),
        );
    let err = d.open(&outer.finish()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Base image layer x/layer.tar: diff_id mismatch: config says {wrong}, content is {}",
            diff_id(&l)
        )
    );
    assert!(
        d.scratch_is_empty(),
        "the scratch folder is removed on error"
    );
}

#[test]
fn diff_id_count_must_match() {
    let d = dirs();
    let layers = two_layers();
    let cfg = config(&[diff_id(&layers[0])], &[], None);
    let cfg_name = format!("{}.json", sha(&cfg));
    let mut outer = Outer::new();
    outer
        .file("a.tar", &layers[0])
        .file("b.tar", &layers[1])
        .file(&cfg_name, &cfg)
        .json(
            "manifest.json",
            &json!([{ "Config": cfg_name, "Layers": ["a.tar", "b.tar"] }]),
        );
    let err = d.open(&outer.finish()).unwrap_err();
    assert!(err.to_string().contains("1 diff_ids for 2 layers"), "{err}");
}

#[test]
fn config_digest_must_match_its_name() {
    let d = dirs();
    let l = two_layers().remove(0);
    let cfg = config(&[diff_id(&l)], &[], None);
    let fake = format!("blobs/sha256/{}", sha(b"not the config"));
    let mut outer = Outer::new();
    outer.file("l.tar", &l).file(&fake, &cfg).json(
        "manifest.json",
        &json!([{ "Config": fake, "Layers": ["l.tar"] }]),
    );
    let err = d.open(&outer.finish()).unwrap_err();
    assert!(
        matches!(&err, Error::BaseConfigDigest { config, actual } if *config == fake && *actual == sha(&cfg)),
        "{err}"
    );
}

#[test]
fn missing_layer_is_named() {
    let d = dirs();
    let l = two_layers().remove(0);
    let cfg = config(&[diff_id(&l)], &[], None);
    let cfg_name = format!("{}.json", sha(&cfg));
    for wanted in ["nope/layer.tar", "dangling/layer.tar"] {
        let mut outer = Outer::new();
        outer
            .file("l/layer.tar", &l)
            .link(
                tar::EntryType::Symlink,
                "dangling/layer.tar",
                "../nowhere/layer.tar",
            )
            .file(&cfg_name, &cfg)
            .json(
                "manifest.json",
                &json!([{ "Config": cfg_name, "Layers": [wanted] }]),
            );
        let bytes = outer.finish();
        let err = d.open(&bytes).unwrap_err();
        assert!(
            matches!(&err, Error::BaseMissing { member } if member == wanted),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!("Base image has no member {wanted}")
        );
    }
}

#[test]
fn missing_manifest_and_oci_only_archives() {
    let d = dirs();
    let mut outer = Outer::new();
    outer.file("repositories", b"{}");
    let err = d.open(&outer.finish()).unwrap_err();
    assert_eq!(err.to_string(), "Base image has no member manifest.json");

    let mut outer = Outer::new();
    outer.json("index.json", &json!({"schemaVersion": 2}));
    let err = d.open(&outer.finish()).unwrap_err();
    assert!(
        err.to_string().contains("skopeo copy oci-archive:"),
        "{err}"
    );
}

#[test]
fn truncated_archives_and_layers() {
    let d = dirs();
    let big = layer(&[E::File("big", &vec![7u8; 100_000], 0o644)]);
    let (plain, _) = legacy(std::slice::from_ref(&big), &[]);
    let truncated = |err: &Error| matches!(err, Error::BaseTruncated { .. });

    // Cut inside the layer member.
    let err = d.open(&plain[..plain.len() / 2]).unwrap_err();
    assert!(truncated(&err), "{err}");
    assert!(err.to_string().ends_with("base.tar: truncated"), "{err}");

    // Cut between two members: the end-of-archive blocks are missing.
    let end = plain.len() - plain.iter().rev().take_while(|&&b| b == 0).count();
    let err = d.open(&plain[..end.next_multiple_of(512)]).unwrap_err();
    assert!(truncated(&err), "{err}");

    // A truncated compressed archive.
    for packed in [gz(&plain), zst(&plain)] {
        let err = d.open(&packed[..packed.len() * 2 / 3]).unwrap_err();
        assert!(truncated(&err), "{err}");
    }

    // A truncated compressed layer inside a complete archive.
    let packed = gz(&big);
    let cfg = config(&[diff_id(&big)], &[], None);
    let cfg_name = format!("{}.json", sha(&cfg));
    let mut outer = Outer::new();
    outer
        .file("l.tar.gz", &packed[..packed.len() / 2])
        .file(&cfg_name, &cfg)
        .json(
            "manifest.json",
            &json!([{ "Config": cfg_name, "Layers": ["l.tar.gz"] }]),
        );
    let err = d.open(&outer.finish()).unwrap_err();
    assert_eq!(err.to_string(), "Base image layer l.tar.gz: truncated");

    // A plain layer cut inside a member: found when the file system is read.
    let cut = &big[..big.len() / 3];
    let cfg = config(&[diff_id(cut)], &[], None);
    let cfg_name = format!("{}.json", sha(&cfg));
    let mut outer = Outer::new();
    outer.file("l.tar", cut).file(&cfg_name, &cfg).json(
        "manifest.json",
        &json!([{ "Config": cfg_name, "Layers": ["l.tar"] }]),
    );
    let (base, _) = d.open(&outer.finish()).unwrap();
    let err = base.filesystem().unwrap_err();
    assert_eq!(err.to_string(), "Base image layer l.tar: truncated");
}

#[test]
fn hostile_member_names_stay_in_scratch() {
    let d = dirs();
    // Relative to the scratch folder (parent/.buildimage-base-X/), `../../canary` is a
    // sibling of the scratch parent.
    let canary = d.parent.parent().unwrap().join("canary");
    std::fs::create_dir(&canary).unwrap();
    let (plain, digest) = legacy(&two_layers(), &[]);
    let mut outer = Outer::new();
    outer
        .raw_file(b"../../canary/passwd", b"root::0:0")
        .raw_file(b"../../../../../../../../etc/passwd", b"root::0:0")
        .raw_file(b"/abs", b"absolute")
        .raw_file(b"./../canary/x", b"x")
        .link(tar::EntryType::Symlink, "escape", "/etc/passwd")
        .link(tar::EntryType::Symlink, "up", "../../canary");
    let mut bytes = outer.0.get_ref().clone();
    bytes.extend_from_slice(&plain);
    let (base, warnings) = d.open(&bytes).unwrap();
    assert_eq!(base.config_digest, digest);
    assert_eq!(
        warnings
            .iter()
            .filter(|w| w.contains("points outside the archive"))
            .count(),
        3,
        "{warnings:?}"
    );
    assert!(std::fs::read_dir(&canary).unwrap().next().is_none());
    // The scratch folder is the only thing under the parent, and holds the layers only.
    assert_eq!(std::fs::read_dir(&d.parent).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(base.scratch()).unwrap().count(), 2);
    drop(base);
    assert!(d.scratch_is_empty());
    assert!(std::fs::read_dir(&canary).unwrap().next().is_none());
}

#[test]
fn links_never_reach_the_host() {
    let d = dirs();
    let cfg = config(&[], &[], None);
    let cfg_name = format!("{}.json", sha(&cfg));
    for (target, loops) in [
        ("/etc/passwd", false),
        ("../../../../etc/passwd", false),
        ("cfg", true),
    ] {
        let mut outer = Outer::new();
        outer
            .link(tar::EntryType::Symlink, "cfg", target)
            .file(&cfg_name, &cfg)
            .json("manifest.json", &json!([{ "Config": "cfg", "Layers": [] }]));
        let err = d.open(&outer.finish()).unwrap_err();
        if loops {
            assert_eq!(
                err.to_string(),
                "Base image member cfg: too many levels of links"
            );
        } else {
            assert!(matches!(err, Error::BaseMissing { .. }), "{err}");
        }
    }
}

#[test]
fn oversized_and_invalid_json() {
    let d = dirs();
    let mut huge = b"[".to_vec();
    huge.resize(usize::try_from(MAX_JSON).unwrap() + 1, b' ');
    huge.push(b']');
    let mut outer = Outer::new();
    outer.file("manifest.json", &huge);
    let err = d.open(&outer.finish()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Base image manifest.json: larger than {MAX_JSON} bytes")
    );

    let mut outer = Outer::new();
    outer.file("manifest.json", b"[{\"Config\": ");
    let err = d.open(&outer.finish()).unwrap_err();
    assert_eq!(err.to_string(), "Base image manifest.json: invalid JSON");

    let mut outer = Outer::new();
    outer.file("c.json", b"[1, 2]").json(
        "manifest.json",
        &json!([{ "Config": "c.json", "Layers": [] }]),
    );
    let err = d.open(&outer.finish()).unwrap_err();
    assert_eq!(err.to_string(), "Base image c.json: invalid JSON");

    let mut outer = Outer::new();
    outer.json("manifest.json", &json!([]));
    let err = d.open(&outer.finish()).unwrap_err();
    assert_eq!(err.to_string(), "Base image manifest.json: lists no images");
}

#[test]
fn limits_and_unsupported_compression() {
    let d = dirs();
    let l = two_layers().remove(0);
    let many: Vec<&str> = vec!["l.tar"; 1001];
    let ids = vec![diff_id(&l); 1001];
    let cfg = config(&ids, &[], None);
    let cfg_name = format!("{}.json", sha(&cfg));
    let mut outer = Outer::new();
    outer.file("l.tar", &l).file(&cfg_name, &cfg).json(
        "manifest.json",
        &json!([{ "Config": cfg_name, "Layers": many }]),
    );
    let err = d.open(&outer.finish()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Base image manifest.json: more than 1000 layers"
    );

    let xz = b"\xfd7zXZ\0\0\x04\xe6\xd6\xb4\x46".to_vec();
    let cfg = config(&[diff_id(&xz)], &[], None);
    let cfg_name = format!("{}.json", sha(&cfg));
    let mut outer = Outer::new();
    outer.file("l.tar.xz", &xz).file(&cfg_name, &cfg).json(
        "manifest.json",
        &json!([{ "Config": cfg_name, "Layers": ["l.tar.xz"] }]),
    );
    let err = d.open(&outer.finish()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Base image layer l.tar.xz: compressed with xz, which buildimage does not read"
    );

    let err = d.open(&xz).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("compressed with xz, which buildimage does not read")
    );

    let err = d.open(b"").unwrap_err();
    assert!(matches!(err, Error::BaseTruncated { .. }), "{err}");
    let err = d.open(&[b'x'; 2048]).unwrap_err();
    assert!(matches!(err, Error::BaseRead { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------
// The merged file system

#[test]
fn whiteouts_and_opaque_dirs() {
    let d = dirs();
    let l1 = layer(&[
        E::Dir("./", 0o755),
        E::Dir("a/", 0o755),
        E::File("a/x", b"x", 0o644),
        E::Dir("a/y/", 0o700),
        E::File("a/y/z", b"z", 0o600),
        E::Dir("b/", 0o755),
        E::File("b/c", b"c", 0o644),
        E::Dir("b/d/", 0o755),
        E::File("b/d/e", b"e", 0o644),
        E::Dir("gone/", 0o755),
        E::File("gone/deep", b"", 0o644),
        E::Dir("nix/", 0o555),
        E::Dir("nix/store/", 0o555),
        E::Dir("nix/store/p1/", 0o555),
        E::File("nix/store/p1/f", b"f", 0o444),
        E::File("nix/store/p2", b"p2", 0o444),
    ]);
    let l2 = layer(&[
        E::File("a/.wh.x", b"", 0o644),
        E::File(".wh.gone", b"", 0o644),
        E::File("b/.wh..wh..opq", b"", 0o644),
        E::File("b/new", b"n", 0o644),
        E::File("nix/store/.wh.p1", b"", 0o644),
        // A whiteout hides lower layers only, never its own layer's files.
        E::File("keep", b"k", 0o640),
        E::File(".wh.keep", b"", 0o644),
        E::File("deep/implied/file", b"", 0o644),
        E::File("a/.wh..wh.plnk", b"", 0o644),
    ]);
    let l3 = layer(&[
        E::Dir("nix/store/p1/", 0o555),
        E::File("nix/store/p1/f2", b"f2", 0o444),
        E::File("a", b"now a file", 0o644),
        E::Symlink("nix/store/p2", "p1"),
    ]);
    let (bytes, _) = legacy(&[l1, l2, l3], &[]);
    let (base, _) = d.open(&bytes).unwrap();
    let fs = base.filesystem().unwrap();

    assert!(fs.contains(b"") && fs.is_dir(b"/") && fs.mode(b"./") == Some(0o755));
    assert!(!fs.contains(b"a/x") && !fs.contains(b"a/y") && !fs.contains(b"a/y/z"));
    assert_eq!(fs.kind(b"a"), Some(Kind::File));
    assert!(!fs.contains(b"gone") && !fs.contains(b"gone/deep"));
    assert!(fs.is_dir(b"b") && fs.contains(b"b/new"));
    assert!(!fs.contains(b"b/c") && !fs.contains(b"b/d") && !fs.contains(b"b/d/e"));
    assert!(fs.contains(b"/nix/store/") && fs.is_dir(b"./nix/store"));
    assert_eq!(fs.mode(b"nix/store"), Some(0o555));
    assert!(fs.is_dir(b"nix/store/p1") && fs.contains(b"nix/store/p1/f2"));
    assert!(!fs.contains(b"nix/store/p1/f"));
    assert_eq!(fs.kind(b"nix/store/p2"), Some(Kind::Symlink));
    assert_eq!(fs.mode(b"keep"), Some(0o640));
    assert_eq!(fs.mode(b"deep/implied"), Some(0o755));
    assert!(fs.iter().all(|(p, _)| !p.windows(4).any(|w| w == b".wh.")));
    let paths: Vec<&[u8]> = fs.iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        [
            &b"a"[..],
            b"b",
            b"b/new",
            b"deep",
            b"deep/implied",
            b"deep/implied/file",
            b"keep",
            b"nix",
            b"nix/store",
            b"nix/store/p1",
            b"nix/store/p1/f2",
            b"nix/store/p2",
        ]
    );
    assert_eq!(fs.len(), 12);
    assert!(!fs.contains(b"../nix"));
}

#[test]
fn layer_members_leaving_the_root_are_refused() {
    let d = dirs();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..9].copy_from_slice(b"../escape");
    h.set_size(0);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &b""[..]).unwrap();
    let l = b.into_inner().unwrap();
    let (bytes, _) = legacy(&[l], &[]);
    let (base, _) = d.open(&bytes).unwrap();
    let err = base.filesystem().unwrap_err();
    assert_eq!(
        err.to_string(),
        "Base image layer l00/layer.tar: member ../escape leaves the root"
    );
}

// ---------------------------------------------------------------------------------------
// History

fn with_history(history: Option<Value>) -> (Dirs, BaseImage) {
    let d = dirs();
    let layers = two_layers();
    let ids: Vec<String> = layers.iter().map(|l| diff_id(l)).collect();
    let cfg = config(&ids, &[], history);
    let cfg_name = format!("{}.json", sha(&cfg));
    let mut outer = Outer::new();
    outer
        .file("a.tar", &layers[0])
        .file("b.tar", &layers[1])
        .file(&cfg_name, &cfg)
        .json(
            "manifest.json",
            &json!([{ "Config": cfg_name, "Layers": ["a.tar", "b.tar"] }]),
        );
    let base = d.open(&outer.finish()).unwrap().0;
    (d, base)
}

#[test]
fn history_is_kept_when_it_matches_the_layers() {
    let history = json!([
        { "created": "2020-01-01T00:00:00Z", "created_by": "ADD a" },
        { "created": "2020-01-01T00:00:01Z", "created_by": "ENV X=1", "empty_layer": true },
        { "created": "2020-01-01T00:00:02Z", "created_by": "ADD b", "comment": "c" },
    ]);
    let (_d, base) = with_history(Some(history.clone()));
    assert_eq!(Value::Array(base.history("NEW")), history);
}

#[test]
fn history_falls_back_to_one_entry_per_layer() {
    // The fallback takes the new image's `created`, as nixpkgs does.
    let new = json!({ "created": "NEW" });
    for history in [
        None,
        Some(json!([])),
        Some(json!([{ "created": "2020" }])),
        Some(json!([{ "created": "1" }, { "created": "2", "empty_layer": true }])),
        Some(json!("not a list")),
    ] {
        let (_d, base) = with_history(history);
        assert_eq!(base.history("NEW"), [new.clone(), new.clone()]);
    }
}
