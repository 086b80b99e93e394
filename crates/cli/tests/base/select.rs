//! `fromImageName` and `fromImageTag` on an archive holding two images (docs/formats.md §5.4):
//! the pair selects by exact `name:tag`, a pair that matches nothing is an error listing
//! the tags found, a lone name is ignored with a warning.

use serde_json::{Value, json};

use buildimage_test_support::{Built, Image, docker, strings, write};

use super::Case;

const A: &str = "buildimage-test/pick-a";
const B: &str = "buildimage-test/pick-b";

/// Builds images A (`A:1`, with `/a-only.txt`, `Env` `FROM=a`) and B (`B:20`, with
/// `/b-only.txt`, `Env` `FROM=b`) and merges them into `two.tar`, as `docker save A:1 B:20`
/// would, plus a third, untagged entry (`RepoTags: null`), which must never match nor
/// break the selection.
fn two_images(case: &Case) -> (Built, Built) {
    let mut built = Vec::new();
    for (image, tag, file) in [(A, "1", "a-only.txt"), (B, "20", "b-only.txt")] {
        let letter = &file[..1];
        let rel = format!("root-{letter}");
        let root = case.busybox_root(&rel);
        write(&root.join(file), format!("{letter}\n").as_bytes(), 0o644);
        built.push(case.build(
            &format!("image-{letter}"),
            &json!({
                "name": image,
                "tag": tag,
                "copyToRoot": rel,
                "compressor": "none",
                "config": { "Env": [format!("FROM={letter}")] },
            }),
        ));
    }
    let b = built.pop().expect("B");
    let a = built.pop().expect("A");

    let mut merged = Image::open(&a.archive).merge(&Image::open(&b.archive));
    let mut manifest = merged.manifest();
    let mut untagged = manifest[0].clone();
    untagged["RepoTags"] = Value::Null;
    manifest.as_array_mut().expect("a list").push(untagged);
    merged.set_manifest(&manifest);
    merged.save(&case.join("two.tar"));
    (a, b)
}

/// The first diff id of a built archive's config: the base layer it was built on.
fn first_layer(built: &Built) -> String {
    strings(&Image::open(&built.archive).config()["rootfs"]["diff_ids"])[0].clone()
}

#[test]
fn from_image_name_and_tag_select_the_second_image_of_a_two_image_archive() {
    let case = Case::new();
    let (a, b) = two_images(&case);
    let child = case.build(
        "child",
        &json!({
            "name": "buildimage-test/picked-b",
            "tag": "1",
            "fromImage": "two.tar",
            "fromImageName": B,
            "fromImageTag": "20",
            "extraCommands": "echo child > child.txt",
        }),
    );
    assert_eq!(first_layer(&child), b.layer_diff_id());
    assert_ne!(first_layer(&child), a.layer_diff_id());
    let config = Image::open(&child.archive).config();
    assert_eq!(config["config"]["Env"], json!(["FROM=b"]), "the Env of B");
    // `parent` is the selected image's ID, on one line (nixpkgs writes a JSON text).
    let out = Image::open(&child.archive);
    let id = child.info["layer"]["id"].as_str().expect("layer.id");
    let json = out.json(&format!("{id}/json"));
    let b_id = b.str("configDigest").trim_start_matches("sha256:");
    assert_eq!(json["parent"], b_id, "{json:#}");

    let docker = docker();
    let image = docker.load_guarded(&child.archive);
    assert_eq!(
        docker
            .run(image.name(), &["cat", "/b-only.txt", "/child.txt"])
            .assert_success(),
        "b\nchild\n"
    );
    let a_there = docker.run(image.name(), &["test", "-e", "/a-only.txt"]);
    assert!(
        !a_there.status.success(),
        "the image built on B has A's file: {a_there:?}"
    );
}

#[test]
fn from_image_name_and_tag_matching_no_image_fail_listing_the_tags_found() {
    let case = Case::new();
    two_images(&case);
    // `B:2` is a prefix of `B:20`, and `buildimage-test/pick` of both names: nixpkgs'
    // substring test would match, an exact one does not.
    for (name, tag) in [(B, "2"), ("buildimage-test/pick", "20"), (A, "20")] {
        let stderr = case.build_fails(
            "child",
            &json!({
                "name": "buildimage-test/unmatched",
                "fromImage": "two.tar",
                "fromImageName": name,
                "fromImageTag": tag,
            }),
        );
        for needle in [
            "`fromImage`",
            &format!("{name}:{tag}"),
            &format!("{A}:1, {B}:20"),
        ] {
            assert!(
                stderr.contains(needle),
                "{name}:{tag}: no {needle:?} in:\n{stderr}"
            );
        }
    }
}

#[test]
fn lone_from_image_name_warns_once_and_uses_the_first_image() {
    let case = Case::new();
    let (a, _) = two_images(&case);
    let child = case.build(
        "child",
        &json!({
            "name": "buildimage-test/lone-name",
            "tag": "1",
            "fromImage": "two.tar",
            "fromImageName": B,
            "extraCommands": "echo child > child.txt",
        }),
    );
    let stderr = &child.stderr;
    assert_eq!(first_layer(&child), a.layer_diff_id());
    let config = Image::open(&child.archive).config();
    assert_eq!(config["config"]["Env"], json!(["FROM=a"]), "the Env of A");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:") && l.contains("fromImageName"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning that fromImageName is ignored, got:\n{stderr}"
    );
    assert!(
        warnings[0].contains(&format!(
            "fromImageName {B} is ignored without fromImageTag; the first image of the base \
             archive is used"
        )),
        "{stderr}"
    );

    let docker = docker();
    let image = docker.load_guarded(&child.archive);
    assert_eq!(
        docker
            .run(image.name(), &["cat", "/a-only.txt", "/child.txt"])
            .assert_success(),
        "a\nchild\n"
    );
}
