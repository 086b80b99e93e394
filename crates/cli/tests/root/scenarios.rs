//! The root-mode scenarios of nixpkgs' manual and `docker-tools` tests (docs/formats.md
//! §14): the `runAsRoot` example, `redis`, `layersUnpackOrder` and
//! `runAsRootExtraCommands`, loaded and run by Docker.

use std::path::Path;

use serde_json::{Value, json};

use super::{Case, base_image, member_names, store_path};
use buildimage_test_support::{
    Built, ROOT_APPLETS, busybox_root, docker, inspect_json, member, mkdir, write,
};

/// The script of the manual's `runAsRoot` example.
const SEED_SCRIPT: &str = "mkdir -p /data\necho \"some content\" > my-file\n";

/// Makes `dir` an image root holding `bin/hello`, the stand-in for the `hello` package.
fn hello_root(dir: &Path) {
    mkdir(dir, 0o755);
    mkdir(&dir.join("bin"), 0o755);
    write(
        &dir.join("bin/hello"),
        b"#!/bin/sh\necho 'Hello, world!'\n",
        0o755,
    );
}

/// Loads the seed example's image, runs its `Cmd` and a look at `/data` and `/my-file`.
fn assert_seed_example_runs(built: &Built) {
    let archive = built.read();
    let layer = archive.top_layer();
    let data = member(&layer, "./data/");
    assert_eq!((data.kind.as_byte(), data.mode, data.uid), (b'5', 0o755, 0));
    // The script ran in `/`, so the relative `my-file` is at the root.
    let file = member(&layer, "./my-file");
    assert_eq!((file.kind.as_byte(), file.mode), (b'0', 0o644));
    assert_eq!(file.data, b"some content\n");

    let docker = docker();
    let image = docker.load_guarded(&built.archive);
    assert_eq!(image.name(), "buildimage-test/hello:latest");
    assert_eq!(
        docker.inspect(image.name(), "{{.Config.WorkingDir}}"),
        "/data"
    );
    assert_eq!(
        docker.run(image.name(), &[]).assert_success(),
        "Hello, world!\n"
    );
    assert_eq!(
        docker
            .run(
                image.name(),
                &[
                    "sh",
                    "-c",
                    "pwd; test -d /data && echo /data is a directory; cat /my-file"
                ],
            )
            .assert_success(),
        "/data\n/data is a directory\nsome content\n"
    );
}

/// The manual's `runAsRoot` example, on a busybox base image that buildimage made.
#[test]
fn seed_run_as_root_example_over_a_buildimage_base_shows_data_and_my_file() {
    let case = Case::new();
    base_image(&case, "busybox", &Value::Null, |_| {});
    hello_root(&case.join("hello"));
    let built = case.build(
        "hello",
        &json!({
            "name": "buildimage-test/hello",
            "tag": "latest",
            "fromImage": "busybox.tar",
            "copyToRoot": "hello",
            "runAsRoot": SEED_SCRIPT,
            "config": { "Cmd": ["/bin/hello"], "WorkingDir": "/data" },
        }),
        None,
    );
    // Only the changes are in the new layer: the base's busybox is not repeated.
    let layer = built.read().top_layer();
    assert_eq!(
        member_names(&layer),
        [
            "./",
            "./bin/",
            "./bin/hello",
            "./data/",
            "./my-file",
            "./tmp/"
        ]
    );
    assert_seed_example_runs(&built);
}

/// The same example without `fromImage`: `copyToRoot` brings busybox with `/bin/sh`, and
/// the script runs in it.
#[test]
fn seed_run_as_root_example_without_from_image_shows_data_and_my_file() {
    let case = Case::new();
    busybox_root(&case.join("busybox"), &ROOT_APPLETS);
    hello_root(&case.join("hello"));
    let built = case.build(
        "hello",
        &json!({
            "name": "buildimage-test/hello",
            "tag": "latest",
            "copyToRoot": ["busybox", "hello"],
            "runAsRoot": SEED_SCRIPT,
            "config": { "Cmd": ["/bin/hello"], "WorkingDir": "/data" },
        }),
        None,
    );
    assert_seed_example_runs(&built);
}

/// `redis`: on a base with its own `Cmd`, a buildEnv-like root whose `bin` links into a
/// store path, `runAsRoot` making `/data` and a health-check script, and a `config` with
/// `Cmd`, `WorkingDir`, `Volumes` and `Healthcheck`, which Docker shows exactly as given.
#[test]
fn redis_with_run_as_root_keeps_config_exactly_and_runs_through_the_merged_bin() {
    let case = Case::new();
    base_image(
        &case,
        "bash",
        &json!({ "Cmd": ["/bin/sh", "-c", "echo base"], "Env": ["FROM_BASE=1"] }),
        |_| {},
    );
    let store = case.join("store");
    let redis = format!(
        "/nix/store/{}-redis-7.2.4",
        "1b9p07z77phvv2hf6gm9f28syp39f1ag"
    );
    let cli = format!("#!/bin/sh\n# {redis}\necho 'redis-cli 7.2.4'\n");
    let made = store_path(
        &store,
        "1b9p07z77phvv2hf6gm9f28syp39f1ag",
        "redis-7.2.4",
        &[],
        &[("bin/redis-cli", cli.as_bytes(), 0o555)],
    );
    assert_eq!(made, redis);
    // A buildEnv of redis with pathsToLink = [ "/bin" ]: `bin` is a symlink to the store.
    mkdir(&case.join("image-root"), 0o755);
    std::os::unix::fs::symlink(format!("{redis}/bin"), case.join("image-root/bin"))
        .expect("link image-root/bin");
    let config = json!({
        "Cmd": ["/bin/sh", "-c", "pwd; redis-cli --version; /healthcheck && echo healthy"],
        "WorkingDir": "/data",
        "Volumes": { "/data": {} },
        "Healthcheck": {
            "Test": ["CMD", "/healthcheck"],
            "Interval": 30_000_000_000_u64,
            "Timeout": 10_000_000_000_u64,
            "StartPeriod": 5_000_000_000_u64,
            "Retries": 3
        }
    });
    let built = case.build(
        "redis",
        &json!({
            "name": "buildimage-test/redis",
            "tag": "latest",
            "fromImage": "bash.tar",
            "copyToRoot": "image-root",
            "runAsRoot": "mkdir -p /data\n\
                          printf '#!/bin/sh\\nredis-cli --version > /dev/null && test -d /data\\n' > /healthcheck\n\
                          chmod 755 /healthcheck\n\
                          redis-cli --version > /data/version\n",
            "config": config,
        }),
        Some(&store),
    );
    let archive = built.read();
    let mut expected = config.clone();
    expected["Env"] = json!(["FROM_BASE=1"]);
    assert_eq!(archive.config()["config"], expected);
    let layer = archive.top_layer();
    assert_eq!(
        member(&layer, "./data/version").data,
        b"redis-cli 7.2.4\n",
        "the script ran the copied redis-cli"
    );
    let check = member(&layer, "./healthcheck");
    assert_eq!((check.mode, check.uid, check.gid), (0o755, 0, 0));
    // redis-cli names its store path, so the closure follows the layer's own files.
    member(&layer, &format!("{}/bin/redis-cli", &redis[1..]));

    let docker = docker();
    let image = docker.load_guarded(&built.archive);
    let inspected = inspect_json(&docker, image.name(), ".Config");
    for key in ["Cmd", "WorkingDir", "Volumes", "Healthcheck"] {
        assert_eq!(inspected[key], config[key], "{key} in {inspected:#}");
    }
    assert_eq!(inspected["Env"], json!(["FROM_BASE=1"]));
    assert_eq!(
        docker.run(image.name(), &[]).assert_success(),
        "/data\nredis-cli 7.2.4\nhealthy\n"
    );
    // The base's /bin (busybox) and the new layer's /bin (redis-cli) are merged.
    assert_eq!(
        docker
            .run(
                image.name(),
                &[
                    "sh",
                    "-c",
                    &format!("ls /bin/busybox /bin/redis-cli; {redis}/bin/redis-cli")
                ],
            )
            .assert_success(),
        "/bin/busybox\n/bin/redis-cli\nredis-cli 7.2.4\n"
    );
}

/// `layersUnpackOrder`: three images chained with `fromImage`, each appending one letter
/// to `/layer-order` in `runAsRoot`; each script sees the layers below in order.
#[test]
fn layers_unpack_order_chained_run_as_root_appends_abc() {
    let case = Case::new();
    let base = base_image(&case, "busybox", &Value::Null, |_| {});
    let mut parent = "busybox".to_owned();
    let mut diff_ids = base.read().config()["rootfs"]["diff_ids"].clone();
    let mut last = None;
    for letter in ["a", "b", "c"] {
        let name = format!("layers-unpack-order-{letter}");
        let built = case.build(
            &name,
            &json!({
                "name": name,
                "tag": "latest",
                "fromImage": format!("{parent}.tar"),
                // The default gz: each next build reads a compressed base.
                "runAsRoot": format!("echo -n \"{letter}\" >> /layer-order"),
            }),
            None,
        );
        // The base layers come first, in order; the new one last.
        let config = built.read().config();
        let ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
        let parent_ids = diff_ids.as_array().expect("diff_ids");
        assert_eq!(ids.len(), parent_ids.len() + 1, "{config:#}");
        assert_eq!(&ids[..parent_ids.len()], parent_ids.as_slice());
        diff_ids = config["rootfs"]["diff_ids"].clone();
        parent = name;
        last = Some(built);
    }
    let last = last.expect("three builds");

    let docker = docker();
    let image = docker.load_guarded(&last.archive);
    assert_eq!(image.name(), "layers-unpack-order-c:latest");
    assert_eq!(
        inspect_json(&docker, image.name(), ".RootFS.Layers"),
        diff_ids
    );
    assert_eq!(
        docker
            .run(image.name(), &["cat", "/layer-order"])
            .assert_success(),
        "abc"
    );
}

/// `runAsRootExtraCommands`: both scripts use double quotes and parentheses, which must
/// reach the shell as they are (a quoting regression test in nixpkgs).
#[test]
fn run_as_root_extra_commands_keep_double_quotes_and_parentheses() {
    let case = Case::new();
    busybox_root(&case.join("busybox"), &ROOT_APPLETS);
    let built = case.build(
        "run-as-root-extra-commands",
        &json!({
            "name": "runAsRootExtraCommands",
            "tag": "latest",
            "copyToRoot": "busybox",
            "runAsRoot": "(echo \"(runAsRoot)\" > /runAsRoot)",
            "extraCommands": "(echo \"(extraCommand)\" > extraCommands)",
        }),
        None,
    );
    let layer = built.read().top_layer();
    assert_eq!(member(&layer, "./runAsRoot").data, b"(runAsRoot)\n");
    assert_eq!(member(&layer, "./extraCommands").data, b"(extraCommand)\n");

    let docker = docker();
    let image = docker.load_guarded(&built.archive);
    assert_eq!(image.name(), "runasrootextracommands:latest");
    assert_eq!(
        docker
            .run(image.name(), &["cat", "extraCommands", "runAsRoot"])
            .assert_success(),
        "(extraCommand)\n(runAsRoot)\n"
    );
}
