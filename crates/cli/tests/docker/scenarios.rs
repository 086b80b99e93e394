//! The scenarios of nixpkgs' `docker-tools` tests and examples that pure mode can build
//! (docs/formats.md §14), adapted to a busybox root instead of Nix packages.

use std::fs;
use std::process::Command;

use serde_json::{Value, json};

use buildimage_test_support::{
    APPLETS, DEFAULT_CREATED, busybox_root, docker, inspect_json, member, mkdir, names,
    require_tool, run_ok, write,
};

use super::{build, build_with_default_name, test_dir, write_spec};

/// `redis` without `fromImage` and `runAsRoot`: `extraCommands = "mkdir -p data"` and the
/// same kind of `config`.
#[test]
fn redis_pure_variant_keeps_cmd_working_dir_volumes_and_healthcheck_exactly() {
    let dir = test_dir();
    busybox_root(&dir.join("root"), &APPLETS);
    let config = json!({
        "Cmd": ["/bin/sh", "-c", "pwd; test -d /data && echo data is a directory"],
        "WorkingDir": "/data",
        "Volumes": { "/data": {} },
        "Healthcheck": {
            "Test": ["CMD-SHELL", "test -d /data"],
            "Interval": 30_000_000_000_u64,
            "Timeout": 10_000_000_000_u64,
            "Retries": 3
        }
    });
    let spec = write_spec(
        dir.path(),
        &json!({
            "name": "buildimage-test/redis",
            "tag": "latest",
            "copyToRoot": "root",
            "extraCommands": "mkdir -p data",
            "config": config,
        }),
    );
    let built = build(&spec, &dir.join("redis.tar.gz"));
    let archive = built.read();
    // buildImage always writes `Env`, empty without a base, as the last key.
    let mut with_env = config.clone();
    with_env["Env"] = json!([]);
    assert_eq!(archive.config()["config"], with_env);
    // The folder comes from extraCommands, not from the volume Docker would create.
    let data = member(&archive.layer(), "./data/").clone();
    assert_eq!((data.kind.as_byte(), data.mode), (b'5', 0o755));

    let docker = docker();
    let image = docker.load_guarded(&built.archive);
    assert_eq!(image.name(), "buildimage-test/redis:latest");
    let inspected = inspect_json(&docker, image.name(), ".Config");
    for key in ["Cmd", "WorkingDir", "Volumes", "Healthcheck"] {
        assert_eq!(inspected[key], config[key], "{key} in {inspected:#}");
    }
    assert_eq!(inspected["Entrypoint"], Value::Null);
    assert_eq!(
        docker.run(image.name(), &[]).assert_success(),
        "/data\ndata is a directory\n"
    );
}

/// The `extraCommands` example of the nixpkgs manual; the seed's `runAsRoot` twin
/// (`mkdir -p /data`, `echo "some content" > my-file`) with relative paths, as
/// extraCommands runs in the layer's root.
#[test]
fn seed_extra_commands_example_creates_data_and_my_file() {
    let dir = test_dir();
    busybox_root(&dir.join("root"), &APPLETS);
    let extra_commands = "mkdir -p data\necho \"some content\" > my-file\n";
    let spec = write_spec(
        dir.path(),
        &json!({
            "name": "hello",
            "tag": "latest",
            "copyToRoot": "root",
            "extraCommands": extra_commands,
            "config": { "Cmd": ["/bin/cat", "/my-file"], "WorkingDir": "/data" },
        }),
    );
    let built = build(&spec, &dir.join("hello.tar.gz"));
    assert_eq!(built.info["buildArgs"]["extraCommands"], extra_commands);
    let layer = built.read().layer();
    let my_file = member(&layer, "./my-file");
    assert_eq!(
        (
            my_file.kind.as_byte(),
            my_file.mode,
            my_file.data.as_slice()
        ),
        (b'0', 0o644, b"some content\n".as_slice())
    );
    assert_eq!(member(&layer, "./data/").mode, 0o755);

    let docker = docker();
    let image = docker.load_guarded(&built.archive);
    assert_eq!(image.name(), "hello:latest");
    assert_eq!(
        docker.run(image.name(), &[]).assert_success(),
        "some content\n"
    );
    assert_eq!(
        docker.run(image.name(), &["/bin/pwd"]).assert_success(),
        "/data\n"
    );
}

/// `runAsRootExtraCommands`, its extraCommands half: a quoting regression test.
#[test]
fn run_as_root_extra_commands_half_keeps_double_quotes_and_parentheses() {
    let dir = test_dir();
    busybox_root(&dir.join("root"), &APPLETS);
    let spec = write_spec(
        dir.path(),
        &json!({
            "name": "buildimage-test/run-as-root-extra-commands",
            "tag": "latest",
            "copyToRoot": "root",
            "extraCommands": "echo \"(extraCommand)\" > extraCommands",
        }),
    );
    let built = build(&spec, &dir.join("quoting.tar.gz"));

    let docker = docker();
    let image = docker.load_guarded(&built.archive);
    assert_eq!(
        docker
            .run(image.name(), &["/bin/cat", "extraCommands"])
            .assert_success(),
        "(extraCommand)\n"
    );
}

/// `bashNoTag`: without `tag`, the loaded name is `imageName:imageTag` from `--json`; the
/// tag stays the same for the same inputs and changes with the content.
#[test]
fn bash_no_tag_loads_under_the_json_image_tag_which_follows_the_content() {
    let dir = test_dir();
    let root = busybox_root(&dir.join("root"), &APPLETS);
    let mut spec = json!({
        "name": "buildimage-test/bash-no-tag",
        "copyToRoot": "root",
        "config": { "Cmd": ["/bin/echo", "no tag"] },
    });
    let spec_path = write_spec(dir.path(), &spec);
    let first = build(&spec_path, &dir.join("first.tar.gz"));
    let second = build(&spec_path, &dir.join("second.tar.gz"));
    let tag = first.tag().to_owned();
    // Like the hash part of the store path nixpkgs would use: 32 nix32 characters.
    assert_eq!(tag.len(), 32, "{tag}");
    assert!(
        tag.bytes()
            .all(|c| b"0123456789abcdfghijklmnpqrsvwxyz".contains(&c)),
        "{tag} is not nix32"
    );
    assert_eq!(second.tag(), tag, "same inputs, same tag");
    assert!(first.bytes() == second.bytes(), "same inputs, same bytes");

    write(&root.join("changed"), b"other content\n", 0o644);
    let content_changed = build(&spec_path, &dir.join("content.tar.gz"));
    assert_ne!(content_changed.tag(), tag, "another file, another tag");
    fs::remove_file(root.join("changed")).expect("rm changed");
    spec["config"]["Cmd"] = json!(["/bin/echo", "other"]);
    let spec_path = write_spec(dir.path(), &spec);
    let config_changed = build(&spec_path, &dir.join("config.tar.gz"));
    assert_ne!(config_changed.tag(), tag, "another config, another tag");
    assert_ne!(config_changed.tag(), content_changed.tag());

    let docker = docker();
    let loaded = docker.load(&first.archive);
    assert_eq!(loaded, first.image());
    assert_eq!(loaded, format!("buildimage-test/bash-no-tag:{tag}"));
    assert!(
        docker.images().contains(&loaded),
        "docker images lists {loaded}"
    );
    assert_eq!(
        docker.run(&loaded, &[]).assert_success(),
        "no tag\n",
        "{loaded}"
    );
    // `docker rmi name:tag` works, and removes the image.
    docker.rmi(&loaded);
    assert!(!docker.has_image(&loaded));

    let image = docker.load_guarded(&content_changed.archive);
    assert_eq!(image.name(), content_changed.image());
}

/// The current time as buildimage writes `created = "now"`.
fn utc_now() -> String {
    require_tool("date", "coreutils");
    let output = run_ok(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%S+00:00"]));
    String::from_utf8(output.stdout)
        .expect("date prints ASCII")
        .trim_end()
        .to_owned()
}

/// `unstableDate`: `created = "now"` writes the build time with a `+00:00` suffix into the
/// config and every history entry.
#[test]
fn unstable_date_created_now_stamps_config_and_history_alike() {
    let dir = test_dir();
    busybox_root(&dir.join("root"), &APPLETS);
    let spec = write_spec(
        dir.path(),
        &json!({
            "name": "buildimage-test/unstable-date",
            "tag": "latest",
            "copyToRoot": "root",
            "created": "now",
        }),
    );
    let before = utc_now();
    let built = build(&spec, &dir.join("now.tar.gz"));
    let after = utc_now();
    let archive = built.read();
    let config = archive.config();
    let created = config["created"]
        .as_str()
        .unwrap_or_else(|| panic!("config has no created: {config:#}"))
        .to_owned();
    // The fixed-width form makes byte order the order of time.
    assert_eq!(created.len(), before.len(), "{created}");
    assert!(created.ends_with("+00:00"), "{created}");
    assert!(
        before <= created && created <= after,
        "{created} not between {before} and {after}"
    );
    let history = config["history"].as_array().expect("a history");
    assert_eq!(history.len(), 1);
    for entry in history {
        assert_eq!(*entry, json!({ "created": created }));
    }
    let manifest = archive.manifest();
    let layer = manifest[0]["Layers"][0].as_str().expect("a layer path");
    let layer_json = archive.json(&layer.replace("layer.tar", "json"));
    assert_eq!(layer_json["created"], json!(created));

    let docker = docker();
    let image = docker.load_guarded(&built.archive);
    let docker_created = docker.inspect(image.name(), "{{.Created}}");
    assert_ne!(docker_created, DEFAULT_CREATED);
    // Docker prints the same instant, with `Z` for the zone.
    assert_eq!(docker_created, created.replace("+00:00", "Z"));
}

/// `prefixedImage`: a name with a registry part.
#[test]
fn prefixed_image_keeps_the_registry_in_the_repository_and_names_the_file_after_the_last_part() {
    let (_dir, cwd, built) = build_with_default_name(&json!({
        "name": "registry-1.docker.io/image",
        "tag": "latest",
        "copyToRoot": "root",
        "config": { "Cmd": ["/bin/echo", "hello from a prefixed image"] },
    }));
    assert_eq!(names(&cwd), ["docker-image-image.tar.gz"]);

    let docker = docker();
    let image = docker.load_guarded(&built.archive);
    assert_eq!(image.name(), "registry-1.docker.io/image:latest");
    let repositories = run_ok(
        docker
            .command()
            .args(["images", "--format", "{{.Repository}}"]),
    );
    let repositories = String::from_utf8_lossy(&repositories.stdout);
    assert!(
        repositories
            .lines()
            .any(|r| r == "registry-1.docker.io/image"),
        "docker images shows {repositories:?}"
    );
    assert_eq!(
        docker.run(image.name(), &[]).assert_success(),
        "hello from a prefixed image\n"
    );
}

/// `build-image-with-architecture`: loaded and inspected only, since it may not run here.
#[test]
fn build_image_with_architecture_arm64_is_inspected_as_arm64() {
    let dir = test_dir();
    busybox_root(&dir.join("root"), &APPLETS);
    let spec = write_spec(
        dir.path(),
        &json!({
            "name": "buildimage-test/arm64",
            "tag": "latest",
            "copyToRoot": "root",
            "architecture": "arm64",
        }),
    );
    let built = build(&spec, &dir.join("arm64.tar.gz"));
    assert_eq!(built.read().config()["architecture"], "arm64");

    let docker = docker();
    let image = docker.load_guarded(&built.archive);
    assert_eq!(docker.inspect(image.name(), "{{.Architecture}}"), "arm64");
    assert_eq!(docker.inspect(image.name(), "{{.Os}}"), "linux");
}

/// `build-image-with-path`: `copyToRoot` is a list of two folders; both land in `/`, and
/// where they collide the later one wins.
#[test]
fn build_image_with_path_copies_every_copy_to_root_folder() {
    let dir = test_dir();
    let root = busybox_root(&dir.join("root"), &APPLETS);
    mkdir(&root.join("etc"), 0o755);
    write(&root.join("etc/motd"), b"from the first folder\n", 0o644);
    let dummy = dir.join("test-dummy");
    mkdir(&dummy, 0o755);
    write(&dummy.join("hello.txt"), b"Hello there!\n", 0o644);
    mkdir(&dummy.join("etc"), 0o755);
    write(&dummy.join("etc/motd"), b"from the second folder\n", 0o644);
    let spec = write_spec(
        dir.path(),
        &json!({
            "name": "buildimage-test/with-path",
            "tag": "latest",
            "copyToRoot": ["root", "test-dummy"],
        }),
    );
    let built = build(&spec, &dir.join("with-path.tar.gz"));

    let docker = docker();
    let image = docker.load_guarded(&built.archive);
    let run = docker.run(
        image.name(),
        &[
            "/bin/sh",
            "-c",
            "test -e /hello.txt && cat /hello.txt /etc/motd",
        ],
    );
    assert_eq!(
        run.assert_success(),
        "Hello there!\nfrom the second folder\n"
    );
}

/// A mixed-case `name` (`onTopOfPulledImage` uses one) is lower-cased in `RepoTags`; the
/// tag and the default file name keep their case.
#[test]
fn mixed_case_name_is_lower_cased_in_repo_tags() {
    let (_dir, cwd, built) = build_with_default_name(&json!({
        "name": "buildimage-test/OnTopOfBusyBox",
        "tag": "MixedTag",
        "copyToRoot": "root",
        "config": { "Cmd": ["/bin/echo", "lower-cased"] },
    }));
    assert_eq!(names(&cwd), ["docker-image-OnTopOfBusyBox.tar.gz"]);
    assert_eq!(built.str("imageName"), "buildimage-test/ontopofbusybox");
    let archive = built.read();
    assert_eq!(
        archive.manifest()[0]["RepoTags"],
        json!(["buildimage-test/ontopofbusybox:MixedTag"])
    );
    let repositories = archive.json("repositories");
    assert_eq!(
        repositories
            .as_object()
            .expect("repositories is an object")
            .keys()
            .collect::<Vec<_>>(),
        ["buildimage-test/ontopofbusybox"]
    );

    let docker = docker();
    let image = docker.load_guarded(&built.archive);
    assert_eq!(image.name(), "buildimage-test/ontopofbusybox:MixedTag");
    assert_eq!(
        inspect_json(&docker, image.name(), ".RepoTags"),
        json!(["buildimage-test/ontopofbusybox:MixedTag"])
    );
    assert_eq!(
        docker.run(image.name(), &[]).assert_success(),
        "lower-cased\n"
    );
}
