//! Broken and hostile base archives through the binary: each build fails with a message
//! that names the key and the member, layer or archive concerned, leaves no image and no
//! temporary file beside it, and nothing in `TMPDIR` ([`Case::build_fails`]); a member
//! whose name climbs out of the archive is ignored with a warning and reaches no host path.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};

use buildimage_test_support::{Image, Member, diff_id, listing, write_tar};

use super::Case;

/// A small, uncompressed base whose layer is most of the archive (a 96 KiB file), saved
/// as `base.tar`; returns it read back.
fn small_base(case: &Case) -> Image {
    // Text that does not repeat, so the layer's bytes are found only once in the archive.
    let text = (0..12_000).fold(String::new(), |mut text, i| {
        let _ = writeln!(text, "{i:07}");
        text
    });
    case.small_root("root", "data.txt", text.as_bytes());
    let built = case.build(
        "base",
        &json!({
            "name": "buildimage-test/hostile-base",
            "tag": "1",
            "copyToRoot": "root",
            "compressor": "none",
        }),
    );
    Image::open(&built.archive)
}

/// The spec of a child of `from`.
fn child(from: &str) -> Value {
    json!({
        "name": "buildimage-test/hostile-child",
        "tag": "1",
        "fromImage": from,
        "compressor": "none",
    })
}

/// Panics unless `stderr` holds every one of `needles`.
fn assert_mentions(stderr: &str, needles: &[&str]) {
    for needle in needles {
        assert!(stderr.contains(needle), "no {needle:?} in:\n{stderr}");
    }
}

#[test]
fn base_with_a_wrong_diff_id_in_its_config_fails_naming_the_layer() {
    let case = Case::new();
    let mut archive = small_base(&case);
    let layer = archive.layers().remove(0);
    let mut config = archive.config();
    let right = config["rootfs"]["diff_ids"][0]
        .as_str()
        .expect("a diff id")
        .to_owned();
    let wrong = format!("sha256:{}", "0".repeat(64));
    config["rootfs"]["diff_ids"] = json!([wrong]);
    archive.set_config(&config);
    archive.save(&case.join("bad.tar"));
    let stderr = case.build_fails("child", &child("bad.tar"));
    assert_mentions(&stderr, &["`fromImage`", &layer, "diff_id", &wrong, &right]);
}

#[test]
fn base_missing_a_layer_member_fails_naming_it() {
    let case = Case::new();
    let mut archive = small_base(&case);
    let layer = archive.layers().remove(0);
    archive.remove(&layer);
    archive.save(&case.join("bad.tar"));
    let stderr = case.build_fails("child", &child("bad.tar"));
    assert_mentions(&stderr, &["`fromImage`", &format!("no member {layer}")]);
}

#[test]
fn base_without_manifest_json_fails_naming_it() {
    let case = Case::new();
    let mut archive = small_base(&case);
    archive.remove("manifest.json");
    archive.save(&case.join("bad.tar"));
    let stderr = case.build_fails("child", &child("bad.tar"));
    assert_mentions(&stderr, &["`fromImage`", "manifest.json"]);
}

#[test]
fn base_config_that_does_not_match_its_name_fails_naming_it() {
    let case = Case::new();
    let mut archive = small_base(&case);
    let name = archive.manifest()[0]["Config"]
        .as_str()
        .expect("Config")
        .to_owned();
    let mut config = archive.config();
    config["config"]["Env"] = json!(["SMUGGLED=1"]);
    archive.put(&name, serde_json::to_vec_pretty(&config).expect("JSON"));
    archive.save(&case.join("bad.tar"));
    let stderr = case.build_fails("child", &child("bad.tar"));
    assert_mentions(&stderr, &["`fromImage`", &name]);
}

/// Cut in the middle of the layer, plain and gzip-compressed (the gzip stream then ends
/// early too): the error says truncated and names the archive.
#[test]
fn truncated_base_archive_fails_plain_or_gzip() {
    let case = Case::new();
    let archive = small_base(&case);
    let bytes = archive.to_bytes(false);
    let layer = archive.file(&archive.layers()[0]);
    let start = bytes
        .windows(512)
        .position(|w| w == &layer[..512])
        .expect("the layer's first block in the archive");
    let cut = &bytes[..start + layer.len() / 2];
    std::fs::write(case.join("cut.tar"), cut).expect("write cut.tar");
    let stderr = case.build_fails("child", &child("cut.tar"));
    assert_mentions(&stderr, &["`fromImage`", "cut.tar", "truncated"]);

    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    std::io::Write::write_all(&mut gzip, &bytes).expect("gzip");
    let gzipped = gzip.finish().expect("gzip");
    std::fs::write(case.join("cut.tar.gz"), &gzipped[..gzipped.len() / 2]).expect("write");
    let stderr = case.build_fails("child-gz", &child("cut.tar.gz"));
    assert_mentions(&stderr, &["`fromImage`", "cut.tar.gz", "truncated"]);
}

/// Members named `../../escape-…`, `/../escape-…` and one below a symlink that points out
/// of the archive: buildimage ignores what climbs out (with a warning) and never writes a
/// member under its own name, so nothing appears outside; the build works and the image
/// holds none of them.
#[test]
fn base_members_named_to_escape_are_ignored_with_a_warning_and_write_nothing_outside() {
    let case = Case::new();
    let mut archive = small_base(&case);
    // Unique per test run, so that the checks below cannot see another run's file.
    let unique = format!(
        "escape-{}",
        case.path().file_name().expect("a name").to_string_lossy()
    );
    let dotdot = format!("../../{unique}");
    let rooted = format!("/../{unique}");
    archive
        .members
        .insert(1, Member::file(&dotdot, "gotcha\n", 0o644));
    archive
        .members
        .insert(2, Member::file(&rooted, "gotcha\n", 0o644));
    archive
        .members
        .insert(3, Member::symlink("out", "../../../../../../../.."));
    archive.members.insert(
        4,
        Member::file(format!("out/tmp/{unique}"), "gotcha\n", 0o644),
    );
    archive.save(&case.join("escape.tar"));

    let built = case.build("child", &child("escape.tar"));
    let stderr = &built.stderr;
    assert_mentions(stderr, &[&dotdot, &rooted, "outside"]);
    let out = Image::open(&built.archive);
    let names: Vec<String> = out.members.iter().map(Member::name).collect();
    assert!(
        names
            .iter()
            .all(|n| !n.contains("escape") && !n.starts_with("out")),
        "{names:?}"
    );
    // The scratch folder was TMPDIR/<scratch>/, the working folder the case's folder.
    let mut places: Vec<&Path> = vec![Path::new("/"), Path::new("/tmp")];
    let tmp = case.tmp();
    places.extend(tmp.ancestors());
    for place in places {
        let candidate = place.join(&unique);
        assert!(
            !candidate.exists(),
            "a base member was written to {}",
            candidate.display()
        );
    }
    let everything = listing(case.path());
    assert!(
        everything.iter().all(|l| !l.contains(&unique)),
        "{everything:#?}"
    );
}

/// A manifest whose layer path leads to a host file, by an absolute path, by `..`, by a
/// symlink member or by a hard link member, with the config's diff id that of the host
/// file: had buildimage read it, the build would succeed and the image hold the host's
/// file. Links are followed inside the archive only, so the member is missing.
#[test]
fn base_layer_paths_leading_out_of_the_archive_never_read_host_files() {
    let case = Case::new();
    let base = small_base(&case);
    let secret = write_tar(&[Member::file("secret.txt", "host secret\n", 0o644)], false);
    std::fs::write(case.join("secret.tar"), &secret).expect("write secret.tar");
    let absolute = case.join("secret.tar").to_string_lossy().into_owned();
    let case_dir = case.path().to_string_lossy().into_owned();
    // The scratch folder is TMPDIR/<scratch>/ and TMPDIR the case's `tmp/`: `../../` from
    // there, or from the case's folder one level down, is where secret.tar lies.
    let variants = [
        (absolute.clone(), None),
        ("../../secret.tar".to_owned(), None),
        ("tmp/../../secret.tar".to_owned(), None),
        (
            "lnk/secret.tar".to_owned(),
            Some(Member::symlink("lnk", &case_dir)),
        ),
        (
            "up".to_owned(),
            Some(Member::symlink("up", "../../secret.tar")),
        ),
        (
            "hard.tar".to_owned(),
            Some(Member::hard_link("hard.tar", &absolute)),
        ),
    ];
    for (index, (layer, member)) in variants.into_iter().enumerate() {
        let mut archive = base.clone();
        if let Some(member) = member {
            archive.members.insert(1, member);
        }
        let mut manifest = archive.manifest();
        manifest[0]["Layers"] = json!([layer]);
        archive.set_manifest(&manifest);
        let mut config = archive.config();
        config["rootfs"]["diff_ids"] = json!([diff_id(&secret)]);
        archive.set_config(&config);
        let name = format!("outside{index}");
        archive.save(&case.join(format!("{name}.tar")));
        let stderr = case.build_fails(&format!("child{index}"), &child(&format!("{name}.tar")));
        assert_mentions(&stderr, &["`fromImage`", &format!("no member {layer}")]);
    }
}

/// The archive is whole, but the layer member itself ends in the middle of a file (its
/// diff id made to match): the error says truncated and names the layer.
#[test]
fn base_layer_truncated_inside_a_whole_archive_fails_naming_the_layer() {
    let case = Case::new();
    let mut archive = small_base(&case);
    let layer = archive.layers().remove(0);
    let full = archive.file(&layer).to_vec();
    let cut = full[..full.len() / 2].to_vec();
    archive.put(&layer, cut.clone());
    let mut config = archive.config();
    config["rootfs"]["diff_ids"] = json!([diff_id(&cut)]);
    archive.set_config(&config);
    archive.save(&case.join("bad.tar"));
    let stderr = case.build_fails("child", &child("bad.tar"));
    assert_mentions(&stderr, &["`fromImage`", &layer, "truncated"]);
}

#[test]
fn base_with_invalid_manifest_json_fails_naming_it() {
    let case = Case::new();
    let mut archive = small_base(&case);
    archive.put("manifest.json", "[{\"Config\": ");
    archive.save(&case.join("bad.tar"));
    let stderr = case.build_fails("child", &child("bad.tar"));
    assert_mentions(&stderr, &["`fromImage`", "manifest.json", "JSON"]);
}

/// A `fromImage` that does not exist: the message names the key and the file, and gives
/// the cause once (the house style keeps the cause in `#[source]`, out of the message).
#[test]
fn missing_base_archive_fails_naming_it_and_giving_the_cause_once() {
    let case = Case::new();
    let stderr = case.build_fails("child", &child("missing.tar"));
    assert_mentions(&stderr, &["`fromImage`", "missing.tar"]);
    let cause = "No such file or directory";
    assert_eq!(
        stderr.matches(cause).count(),
        1,
        "the cause {cause:?} once in:\n{stderr}"
    );
}

/// The base is read into a scratch folder under `TMPDIR` before `extraCommands` runs: a
/// failing script must leave neither that folder nor the staging folder behind.
#[test]
fn failing_extra_commands_on_a_base_leave_nothing_in_tmpdir() {
    let case = Case::new();
    small_base(&case);
    let mut spec = child("base.tar");
    spec["extraCommands"] = json!("touch made-it\nexit 3");
    let stderr = case.build_fails("child", &spec);
    assert_mentions(&stderr, &["`extraCommands`", "3"]);
}
