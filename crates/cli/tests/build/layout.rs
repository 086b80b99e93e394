//! The docker-archive around the layer (docs/formats.md §3 and §4): outer members,
//! `manifest.json`, `repositories`, the image config and the layer `json`.

use serde_json::json;

use super::{build_in, test_dir};
use buildimage_test_support::{
    DEFAULT_CREATED, EPOCH_1980, Image, Member, TestDir, mkdir, read_tar, sha256_hex, tarsum, write,
};

/// A small image with a mixed-case name, a tag and a config whose keys are not sorted.
fn sample() -> (TestDir, Image) {
    let scratch = test_dir();
    let root = scratch.join("root");
    mkdir(&root, 0o755);
    mkdir(&root.join("bin"), 0o755);
    write(&root.join("bin/hello"), b"#!/bin/sh\necho hello\n", 0o755);
    let spec = json!({
        "name": "Registry.Example:5000/Team/Hello",
        "tag": "V1.0",
        "copyToRoot": "root",
        "compressor": "none",
        "config": {
            "WorkingDir": "/data",
            "Env": ["B=2", "A=1"],
            "Cmd": ["/bin/hello"],
            "Volumes": { "/z": {}, "/a": {} },
        },
    });
    let (image, _) = build_in(&scratch, &spec);
    (scratch, image)
}

#[test]
fn outer_archive_holds_the_docker_archive_members() {
    let (_scratch, image) = sample();
    let id = image.layer_id();
    let config = image.config_name();
    let mut names: Vec<String> = image.members.iter().map(Member::name).collect();
    names.sort();
    let mut expected = vec![
        "./".to_owned(),
        format!("{id}/"),
        format!("{id}/VERSION"),
        format!("{id}/json"),
        format!("{id}/layer.tar"),
        config.clone(),
        "manifest.json".to_owned(),
        "repositories".to_owned(),
    ];
    expected.sort();
    assert_eq!(names, expected);
    assert_eq!(image.members[0].name, b"./", "the root entry comes first");

    assert_eq!(image.member(&format!("{id}/VERSION")).data, b"1.0");
    assert_eq!(id.len(), 64, "{id}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    // The config's name is the SHA-256 of its bytes: the image ID.
    assert_eq!(
        config,
        format!("{}.json", sha256_hex(&image.member(&config).data))
    );
}

#[test]
fn outer_members_are_read_only_root_owned_and_dated_1980() {
    let (_scratch, image) = sample();
    for member in &image.members {
        let name = member.name();
        let (kind, mode) = if name.ends_with('/') {
            (tar::EntryType::Directory, 0o555)
        } else {
            (tar::EntryType::Regular, 0o444)
        };
        assert_eq!(member.kind, kind, "{name}");
        assert_eq!(member.mode, mode, "{name}: {:o}", member.mode);
        assert_eq!((member.uid, member.gid), (0, 0), "{name}");
        assert_eq!(member.uname, b"root", "{name}");
        assert_eq!(member.gname, b"root", "{name}");
        assert_eq!(member.mtime, EPOCH_1980, "{name}");
        assert!(member.gnu, "{name}: GNU tar format");
    }
}

#[test]
fn manifest_and_repositories_name_the_lowercased_image_and_its_layer() {
    let (_scratch, image) = sample();
    let id = image.layer_id();
    let config = image.config_name();
    assert_eq!(
        image.manifest(),
        json!([{
            "RepoTags": ["registry.example:5000/team/hello:V1.0"],
            "Layers": [format!("{id}/layer.tar")],
            "Config": config,
        }])
    );
    // jq's key order: RepoTags, Layers, Config.
    let text = image.text("manifest.json");
    let at = |key: &str| text.find(key).unwrap_or_else(|| panic!("{key} in {text}"));
    assert!(
        at("RepoTags") < at("Layers") && at("Layers") < at("Config"),
        "{text}"
    );
    assert_eq!(
        image.text("repositories"),
        format!("{{\n \"registry.example:5000/team/hello\": {{\n  \"V1.0\": \"{id}\"\n }}\n}}\n")
    );
}

#[test]
fn image_config_is_sorted_with_env_created_rootfs_and_history() {
    let (_scratch, image) = sample();
    let diff_id = format!("sha256:{}", sha256_hex(image.layer_tar()));
    let arch = image.config()["architecture"]
        .as_str()
        .expect("architecture")
        .to_owned();
    assert!(!arch.is_empty());
    // jq's pretty print: keys of `config` sorted at every level, Env kept in its order,
    // no preferLocalBuild (docs/formats.md §4.2).
    let expected = format!(
        r#"{{
  "architecture": "{arch}",
  "config": {{
    "Cmd": [
      "/bin/hello"
    ],
    "Env": [
      "B=2",
      "A=1"
    ],
    "Volumes": {{
      "/a": {{}},
      "/z": {{}}
    }},
    "WorkingDir": "/data"
  }},
  "created": "{DEFAULT_CREATED}",
  "os": "linux",
  "rootfs": {{
    "diff_ids": [
      "{diff_id}"
    ],
    "type": "layers"
  }},
  "history": [
    {{
      "created": "{DEFAULT_CREATED}"
    }}
  ]
}}
"#
    );
    assert_eq!(image.config_text(), expected);
}

#[test]
fn image_config_env_is_an_empty_list_without_config() {
    let scratch = test_dir();
    let (image, _) = build_in(
        &scratch,
        &json!({ "name": "bare", "tag": "t", "compressor": "none", "architecture": "arm64" }),
    );
    let config = image.config();
    assert_eq!(config["config"], json!({ "Env": [] }));
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["created"], DEFAULT_CREATED);
    assert_eq!(config["os"], "linux");
    assert_eq!(config["history"], json!([{ "created": DEFAULT_CREATED }]));
    assert!(config.get("preferLocalBuild").is_none());
    // An Env of null is treated like an absent one.
    let scratch = test_dir();
    let (image, _) = build_in(
        &scratch,
        &json!({ "name": "bare", "tag": "t", "compressor": "none", "config": { "Env": null, "User": "1000" } }),
    );
    assert_eq!(
        image.config()["config"],
        json!({ "Env": [], "User": "1000" })
    );
}

#[test]
fn layer_json_has_checksum_id_and_size() {
    let (_scratch, image) = sample();
    let id = image.layer_id();
    let layer_tar = image.layer_tar();
    assert_eq!(
        layer_tar.len() % 10_240,
        0,
        "GNU tar pads to 10 240-byte records"
    );
    let layer_json = image.layer_json();
    let config = image.config();
    assert_eq!(layer_json["id"], id.as_str());
    assert_eq!(layer_json["Size"], json!(layer_tar.len()));
    let checksum = layer_json["checksum"].as_str().expect("a checksum");
    let digest = checksum
        .strip_prefix("tarsum.v1+sha256:")
        .unwrap_or_else(|| panic!("{checksum} is not tarsum.v1+sha256:<hex>"));
    assert_eq!(digest.len(), 64, "{checksum}");
    assert!(
        digest
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(layer_json["architecture"], config["architecture"]);
    assert_eq!(layer_json["config"], config["config"]);
    assert_eq!(layer_json["created"], DEFAULT_CREATED);
    assert_eq!(layer_json["os"], "linux");
    assert!(layer_json.get("parent").is_none(), "no base image");
    assert!(layer_json.get("preferLocalBuild").is_none());
    // jshon's layout: one-space indent, keys in buildImage's order.
    let text = image.text(&format!("{id}/json"));
    assert!(text.starts_with("{\n \"architecture\": "), "{text}");
    assert!(
        text.ends_with(&format!(
            "\n \"id\": \"{id}\",\n \"Size\": {}\n}}\n",
            layer_tar.len()
        )),
        "{text}"
    );
    let at = |key: &str| text.find(key).unwrap_or_else(|| panic!("{key} in {text}"));
    assert!(at("\"os\"") < at("\"checksum\"") && at("\"checksum\"") < at("\"id\""));
}

#[test]
fn layer_json_checksum_is_the_moby_tarsum_that_nixpkgs_computes() {
    let (_scratch, image) = sample();
    let actual = image.layer_json()["checksum"]
        .as_str()
        .expect("a checksum")
        .to_owned();
    let members = read_tar(image.layer_tar());
    let moby = tarsum(&members, false);
    let with_names = tarsum(&members, true);
    assert!(
        actual == moby,
        "checksum {actual}, but moby's tarsum v1 (run by nixpkgs) gives {moby}{}",
        if actual == with_names {
            "; buildimage hashes the uname/gname values, which moby's encodeHeader blanks"
        } else {
            ""
        }
    );
}
