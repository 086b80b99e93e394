//! Chains of images: layer order, what the config inherits, a base that lists a layer twice
//! (nixpkgs' `layersOrder`, `environmentVariables` and `repeatedLayerTestImage`).

use serde_json::{Value, json};

use buildimage_test_support::{Built, Image, diff_id, docker, inspect_json, run_ok, strings};

use super::{Case, lines_starting};

/// `layersOrder`: three images chained with `fromImage`, each writing `tmp/layerN` and
/// the shared `tmp/shared`. The top layer wins, the base layers keep their order, and the
/// base history is kept as it is (docs/formats.md §4.4: nixpkgs would rewrite every `created`).
#[test]
fn layers_order_three_chained_images_keep_base_layers_first_and_top_layer_wins() {
    let case = Case::new();
    case.busybox_root("root");
    let writes = |n: u32| {
        format!("mkdir -p tmp\necho layer{n} > tmp/layer{n}\necho layer{n} > tmp/shared\n")
    };
    let one = case.build(
        "one",
        &json!({
            "name": "buildimage-test/layers-one",
            "tag": "1",
            "copyToRoot": "root",
            "extraCommands": writes(1),
            "created": "2001-01-01T00:00:00Z",
        }),
    );
    let two = case.build(
        "two",
        &json!({
            "name": "buildimage-test/layers-two",
            "tag": "2",
            "fromImage": "one.tar.gz",
            "extraCommands": writes(2),
        }),
    );
    let three = case.build(
        "three",
        &json!({
            "name": "buildimage-test/layers-three",
            "tag": "3",
            "fromImage": "two.tar.gz",
            "extraCommands": writes(3),
            "created": "2003-03-03T00:00:00Z",
        }),
    );
    let layer = |built: &Built| built.info["layer"]["diffId"].clone();
    let expected = json!([layer(&one), layer(&two), layer(&three)]);

    let archive = Image::open(&three.archive);
    let config = archive.config();
    assert_eq!(config["rootfs"]["diff_ids"], expected);
    assert_eq!(
        config["history"],
        json!([
            { "created": "2001-01-01T00:00:00Z" },
            { "created": "1970-01-01T00:00:01Z" },
            { "created": "2003-03-03T00:00:00Z" },
        ])
    );
    // Every layer's file hashes to the diff id the config gives it.
    let layers = archive.layers();
    assert_eq!(layers.len(), 3, "{layers:?}");
    for (path, id) in layers.iter().zip(strings(&expected)) {
        assert_eq!(diff_id(archive.file(path)), id, "layer {path}");
    }
    // The middle image's layers are the first two of the top one.
    let two_config = Image::open(&two.archive).config();
    assert_eq!(
        two_config["rootfs"]["diff_ids"],
        json!([layer(&one), layer(&two)])
    );

    let docker = docker();
    let image = docker.load_guarded(&three.archive);
    assert_eq!(image.name(), "buildimage-test/layers-three:3");
    assert_eq!(
        inspect_json(&docker, image.name(), ".RootFS.Layers"),
        expected
    );
    let out = docker.run(
        image.name(),
        &[
            "cat",
            "/tmp/layer1",
            "/tmp/layer2",
            "/tmp/layer3",
            "/tmp/shared",
        ],
    );
    assert_eq!(out.assert_success(), "layer1\nlayer2\nlayer3\nlayer3\n");
    let history = run_ok(
        docker
            .command()
            .args(["history", "-q", "--no-trunc"])
            .arg(image.name()),
    );
    assert_eq!(
        String::from_utf8_lossy(&history.stdout).lines().count(),
        3,
        "docker history of {}",
        image.name()
    );
}

/// `environmentVariables`: the child's `Env` follows the parent's, duplicates kept; Docker
/// runs with the last value. Nothing else of the parent's config is inherited by default;
/// with `inheritConfig` everything is, and the spec's keys win.
#[test]
fn environment_variables_follow_the_base_env_and_only_inherit_config_keeps_cmd() {
    let case = Case::new();
    case.busybox_root("root");
    case.build(
        "parent",
        &json!({
            "name": "buildimage-test/env-parent",
            "tag": "1",
            "copyToRoot": "root",
            "extraCommands": "mkdir -p parentdir childdir",
            "config": {
                "Env": ["FROM_PARENT=true", "LAST_LAYER=parent"],
                "Cmd": ["/bin/sh", "-c", "pwd; echo parent cmd"],
                "WorkingDir": "/parentdir",
                "User": "0:0",
            },
        }),
    );
    let child = case.build(
        "child",
        &json!({
            "name": "buildimage-test/env-child",
            "tag": "1",
            "fromImage": "parent.tar.gz",
            "config": { "Env": ["FROM_CHILD=true", "LAST_LAYER=child"] },
        }),
    );
    let inheriting = case.build(
        "inheriting",
        &json!({
            "name": "buildimage-test/env-inheriting",
            "tag": "1",
            "fromImage": "parent.tar.gz",
            "inheritConfig": true,
            "config": {
                "Env": ["FROM_CHILD=true", "LAST_LAYER=child"],
                "WorkingDir": "/childdir",
            },
        }),
    );
    let env = json!([
        "FROM_PARENT=true",
        "LAST_LAYER=parent",
        "FROM_CHILD=true",
        "LAST_LAYER=child"
    ]);
    assert_eq!(
        Image::open(&child.archive).config()["config"],
        json!({ "Env": env })
    );
    let inherited = Image::open(&inheriting.archive).config()["config"].clone();
    assert_eq!(inherited["Env"], env);
    assert_eq!(
        inherited["Cmd"],
        json!(["/bin/sh", "-c", "pwd; echo parent cmd"])
    );
    assert_eq!(inherited["WorkingDir"], "/childdir");
    assert_eq!(inherited["User"], "0:0");

    let docker = docker();
    let image = docker.load_guarded(&child.archive);
    let config = inspect_json(&docker, image.name(), ".Config");
    assert_eq!(config["Env"], env);
    assert_eq!(config["Cmd"], Value::Null, "base Cmd inherited: {config:#}");
    assert_eq!(
        config["WorkingDir"], "",
        "base WorkingDir inherited: {config:#}"
    );
    let out = docker.run(image.name(), &["env"]);
    let out = out.assert_success();
    assert_eq!(
        lines_starting(out, "LAST_LAYER="),
        ["LAST_LAYER=child"],
        "{out}"
    );
    assert_eq!(
        lines_starting(out, "FROM_PARENT="),
        ["FROM_PARENT=true"],
        "{out}"
    );
    assert_eq!(
        lines_starting(out, "FROM_CHILD="),
        ["FROM_CHILD=true"],
        "{out}"
    );
    assert_eq!(docker.run(image.name(), &["pwd"]).assert_success(), "/\n");

    let image = docker.load_guarded(&inheriting.archive);
    let config = inspect_json(&docker, image.name(), ".Config");
    assert_eq!(config["Env"], env);
    assert_eq!(config["WorkingDir"], "/childdir");
    assert_eq!(
        docker.run(image.name(), &[]).assert_success(),
        "/childdir\nparent cmd\n"
    );
}

/// `repeatedLayerTestImage`: a base whose manifest (and config) lists the same layer twice.
/// The output writes the layer once, lists it twice, and Docker loads and runs it; what
/// `docker save` then makes of it is a base to build on too.
#[test]
fn repeated_layer_test_image_base_listing_a_layer_twice_loads_and_runs() {
    let case = Case::new();
    case.busybox_root("root");
    let base = case.build(
        "base",
        &json!({
            "name": "buildimage-test/repeated-base",
            "tag": "1",
            "copyToRoot": "root",
            "compressor": "none",
        }),
    );
    let mut archive = Image::open(&base.archive);
    let layer = archive.layers().remove(0);
    let mut manifest = archive.manifest();
    manifest[0]["Layers"] = json!([layer, layer]);
    archive.set_manifest(&manifest);
    let mut config = archive.config();
    let id = config["rootfs"]["diff_ids"][0].clone();
    config["rootfs"]["diff_ids"] = json!([id, id]);
    // One history entry for two layers: buildimage falls back to one per layer (docs/formats.md §4.4).
    archive.set_config(&config);
    archive.save(&case.join("repeated.tar"));

    let child = case.build(
        "child",
        &json!({
            "name": "buildimage-test/repeated",
            "tag": "1",
            "fromImage": "repeated.tar",
            "extraCommands": "echo child > child.txt",
        }),
    );
    let out = Image::open(&child.archive);
    let new = child.info["layer"]["diffId"].clone();
    assert_eq!(out.config()["rootfs"]["diff_ids"], json!([id, id, new]));
    assert_eq!(out.config()["history"].as_array().map(Vec::len), Some(3));
    let layers = out.layers();
    assert_eq!(layers[0], layers[1], "{layers:?}");
    let copies = out
        .members
        .iter()
        .filter(|m| m.name == layers[0].as_bytes())
        .count();
    assert_eq!(copies, 1, "the repeated layer is stored once");

    let docker = docker();
    let saved = case.join("saved.tar");
    {
        let image = docker.load_guarded(&child.archive);
        assert_eq!(
            inspect_json(&docker, image.name(), ".RootFS.Layers"),
            json!([id, id, new])
        );
        docker
            .run(image.name(), &["/bin/sh", "-c", "exit 0"])
            .assert_success();
        assert_eq!(
            docker
                .run(image.name(), &["cat", "/child.txt"])
                .assert_success(),
            "child\n"
        );
        run_ok(
            docker
                .command()
                .args(["save", "-o"])
                .arg(&saved)
                .arg(image.name()),
        );
    }

    // `docker save` writes a layer it has already written as a symlink to the first copy
    // (`<v1 id>/layer.tar -> ../<v1 id>/layer.tar`): building on that must follow it.
    let resaved = Image::open(&saved);
    let links: Vec<String> = resaved
        .members
        .iter()
        .filter(|m| m.kind == tar::EntryType::Symlink)
        .map(super::Member::name)
        .collect();
    assert!(
        links.iter().any(|l| l.ends_with("layer.tar")),
        "docker save wrote no layer.tar symlink: {links:?}"
    );
    let grandchild = case.build(
        "grandchild",
        &json!({
            "name": "buildimage-test/repeated-grandchild",
            "tag": "1",
            "fromImage": "saved.tar",
            "extraCommands": "echo grandchild > grandchild.txt",
        }),
    );
    let newest = grandchild.info["layer"]["diffId"].clone();
    let image = docker.load_guarded(&grandchild.archive);
    assert_eq!(
        inspect_json(&docker, image.name(), ".RootFS.Layers"),
        json!([id, id, new, newest])
    );
    assert_eq!(
        docker
            .run(image.name(), &["cat", "/child.txt", "/grandchild.txt"])
            .assert_success(),
        "child\ngrandchild\n"
    );
}

/// docs/formats.md §4.4: the base history is copied as it is (`empty_layer` entries, `created_by`,
/// `comment`, its own dates) and one entry is appended for the new layer; nixpkgs would
/// write one `{"created": …}` per layer instead.
#[test]
fn base_history_with_empty_layer_entries_is_kept_and_the_new_layer_appended() {
    let case = Case::new();
    case.busybox_root("root");
    let base = case.build(
        "base",
        &json!({
            "name": "buildimage-test/history-base",
            "tag": "1",
            "copyToRoot": "root",
            "compressor": "none",
        }),
    );
    let history = json!([
        {
            "created": "2020-01-01T00:00:00Z",
            "created_by": "/bin/sh -c #(nop)  ENV A=1",
            "empty_layer": true,
        },
        {
            "created": "2020-01-01T00:00:01Z",
            "created_by": "/bin/sh -c #(nop) COPY dir:root in / ",
            "comment": "the only layer",
        },
        {
            "created": "2020-01-01T00:00:02Z",
            "created_by": "/bin/sh -c #(nop)  CMD [\"sh\"]",
            "empty_layer": true,
        },
    ]);
    let mut archive = Image::open(&base.archive);
    let mut config = archive.config();
    config["history"] = history.clone();
    archive.set_config(&config);
    archive.save(&case.join("history.tar"));

    let child = case.build(
        "child",
        &json!({
            "name": "buildimage-test/history-child",
            "tag": "1",
            "fromImage": "history.tar",
            "extraCommands": "echo child > child.txt",
        }),
    );
    let mut expected = history.as_array().expect("a list").clone();
    expected.push(json!({ "created": "1970-01-01T00:00:01Z" }));
    assert_eq!(
        Image::open(&child.archive).config()["history"],
        Value::Array(expected)
    );

    let docker = docker();
    let image = docker.load_guarded(&child.archive);
    let listed = run_ok(docker.command().args([
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        image.name(),
    ]));
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        [
            "",
            "/bin/sh -c #(nop)  CMD [\"sh\"]",
            "/bin/sh -c #(nop) COPY dir:root in / ",
            "/bin/sh -c #(nop)  ENV A=1",
        ],
        "docker history, newest first"
    );
    assert_eq!(
        docker
            .run(image.name(), &["cat", "/child.txt"])
            .assert_success(),
        "child\n"
    );
}
