//! The `config` object reaches Docker exactly as given, and Docker runs the image the way
//! it asks.

use serde_json::json;

use buildimage_test_support::{APPLETS, busybox_root, docker, inspect_json, mkdir};

use super::{build, test_dir, write_spec};

#[test]
fn config_fields_reach_docker_inspect_exactly_and_drive_docker_run() {
    let dir = test_dir();
    let root = busybox_root(&dir.join("root"), &APPLETS);
    mkdir(&root.join("srv"), 0o755);
    mkdir(&root.join("srv/app"), 0o755);
    let config = json!({
        "Entrypoint": ["/bin/busybox"],
        "Cmd": ["echo", "hi"],
        "Env": ["PATH=/bin", "GREETING=hello world", "EMPTY="],
        "WorkingDir": "/srv/app",
        "User": "1000:100",
        "ExposedPorts": { "8080/tcp": {}, "53/udp": {} },
        "Volumes": { "/data": {}, "/var/cache": {} },
        "Labels": {
            "org.opencontainers.image.title": "config fields",
            "com.example.quoted": "a \"quoted\" value, with spaces"
        },
        "StopSignal": "SIGINT",
        "Healthcheck": {
            "Test": ["CMD", "/bin/busybox", "true"],
            "Interval": 30_000_000_000_u64,
            "Timeout": 5_000_000_000_u64,
            "StartPeriod": 1_000_000_000_u64,
            "Retries": 3
        }
    });
    let spec = write_spec(
        dir.path(),
        &json!({
            "name": "buildimage-test/config",
            "tag": "fields",
            "copyToRoot": "root",
            "config": config,
            "compressor": "none",
        }),
    );
    let built = build(&spec, &dir.join("config.tar"));
    // The archive's config holds the object as given: it has an `Env`, so nothing is added.
    let archive_config = built.read().config();
    assert_eq!(archive_config["config"], config);

    let docker = docker();
    let image = docker.load_guarded(&built.archive);
    assert_eq!(image.name(), "buildimage-test/config:fields");
    let inspected = inspect_json(&docker, image.name(), ".Config");
    for (key, value) in config.as_object().expect("config is an object") {
        assert_eq!(
            inspected[key], *value,
            "docker inspect .Config.{key}, in {inspected:#}"
        );
    }
    assert_eq!(
        inspect_json(&docker, image.name(), ".Id"),
        json!(built.str("configDigest"))
    );

    // No arguments: Entrypoint followed by Cmd.
    assert_eq!(docker.run(image.name(), &[]).assert_success(), "hi\n");
    // Arguments replace Cmd; the Entrypoint stays.
    let env = docker.run(image.name(), &["env"]);
    let env: Vec<&str> = env.assert_success().lines().collect();
    for variable in ["PATH=/bin", "GREETING=hello world", "EMPTY="] {
        assert!(env.contains(&variable), "{variable} missing from {env:?}");
    }
    assert_eq!(
        docker.run(image.name(), &["pwd"]).assert_success(),
        "/srv/app\n"
    );
    assert_eq!(
        docker
            .run(image.name(), &["sh", "-c", "id -u; id -g"])
            .assert_success(),
        "1000\n100\n"
    );
}
