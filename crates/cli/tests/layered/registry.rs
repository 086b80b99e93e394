//! Pushing to a real registry: Debian's `docker-registry` (distribution 2.8) on
//! 127.0.0.1, plain, with TLS, behind htpasswd and behind token auth. What is pushed is
//! read back by skopeo and umoci and pulled and run by Docker; what was uploaded is counted
//! from the registry's own access log; faults come from a proxy in front of it.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use buildimage_test_support::{
    Buildimage, Built, FaultProxy, Registry, RegistryConfig, TestDir, docker, listing, run_ok,
    stderr, unpack_oci,
};

use super::{
    APP_A, APP_B, BUSYBOX, EPOCH, SHARED_TEXT, build_layered, build_with, fixture, scratch,
};

/// The spec of an image that runs `app` (`APP_A` or `APP_B`), with `stamp` written into
/// its customisation layer.
fn app_spec(name: &str, app: &str, stamp: &str) -> Value {
    let fx = fixture();
    json!({
        "name": name, "tag": "t",
        "contents": [fx.path(app), fx.path(BUSYBOX)],
        "config": { "Cmd": [format!("/bin/{name}")] },
        "extraCommands": format!("echo {stamp} > stamp"),
    })
}

/// A push: `buildimage SUBCOMMAND SPEC -o DEST` with the fixture store, a cache in
/// `dir/cache` and the registry's options.
fn push_cmd(
    dir: &TestDir,
    subcommand: &str,
    spec: &Value,
    dest: &str,
    registry: &Registry,
) -> Buildimage {
    push_cmd_with(dir, subcommand, spec, dest, &registry.skopeo_args(""))
}

/// [`push_cmd`] with the registry options `flags`.
fn push_cmd_with(
    dir: &TestDir,
    subcommand: &str,
    spec: &Value,
    dest: &str,
    flags: &[String],
) -> Buildimage {
    let spec_file = dir.join(format!("spec-{}.json", spec_name(spec)));
    buildimage_test_support::write_json(&spec_file, spec);
    let mut cmd = Buildimage::new();
    cmd.cwd(dir.path())
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .env("HOME", dir.path())
        // No auth file from the environment: the tests give credentials explicitly.
        .env("REGISTRY_AUTH_FILE", "/nonexistent/auth.json")
        .env("XDG_RUNTIME_DIR", "/nonexistent")
        .arg(subcommand)
        .arg(&spec_file)
        .out(dest)
        .store(fixture().store())
        .arg("--cache")
        .arg(dir.join("cache"))
        .args(flags);
    cmd
}

/// A file name for a spec: a digest of its text.
fn spec_name(spec: &Value) -> String {
    buildimage_test_support::sha256_hex(spec.to_string().as_bytes())[..12].to_owned()
}

fn push(dir: &TestDir, subcommand: &str, spec: &Value, dest: &str, registry: &Registry) -> Built {
    push_cmd(dir, subcommand, spec, dest, registry).json()
}

/// skopeo's copy of `reference` into an OCI layout, unpacked by umoci: its listing.
fn pulled_listing(registry: &Registry, reference: &str, dir: &Path) -> Vec<String> {
    let layout = dir.join("pulled");
    let mut copy = Command::new("skopeo");
    copy.args(["copy", "-q"])
        .args(registry.skopeo_args("src-"))
        .arg(reference)
        .arg(format!("oci:{}:p", layout.display()));
    run_ok(&mut copy);
    let bundle = dir.join("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:p", layout.display()))
            .arg(&bundle),
    );
    let listed = listing(&bundle.join("rootfs"));
    let _ = fs::remove_dir_all(&layout);
    let _ = fs::remove_dir_all(&bundle);
    listed
}

#[test]
fn every_command_pushes_what_its_archive_holds() {
    let registry = Registry::start(RegistryConfig::plain());
    let dir = scratch();
    let fx = fixture();
    let layered = app_spec("app-a", APP_A, "one");
    let single = json!({ "name": "single", "tag": "s", "copyToRoot": [fx.path(BUSYBOX)], "config": { "Cmd": ["/bin/sh", "-c", "echo single"] } });
    for (subcommand, spec, repo) in [
        ("build-layered", &layered, "layered"),
        ("stream-layered", &layered, "stream"),
        ("build", &single, "single"),
    ] {
        let dest = registry.docker_ref(repo, "v1");
        let pushed = push(&dir, subcommand, spec, &dest, &registry);
        let archive = if subcommand == "build" {
            let mut plain = spec.clone();
            plain["compressor"] = json!("none");
            build_with(
                Buildimage::new(),
                "build",
                dir.path(),
                repo,
                &plain,
                fx.store(),
            )
        } else {
            build_layered(dir.path(), repo, spec, fx.store())
        };
        assert_eq!(
            pushed.info["configDigest"], archive.info["configDigest"],
            "{subcommand}: the same image ID"
        );
        let inspect = registry.inspect(repo, "v1");
        assert_eq!(
            inspect["Digest"], pushed.info["push"]["manifestDigest"],
            "{subcommand}"
        );
        assert_eq!(
            pulled_listing(&registry, &dest, dir.path()),
            unpack_oci(&archive.archive).listing(),
            "{subcommand}: what skopeo and umoci read back against the archive"
        );
    }
    // Docker pulls and runs them (127.0.0.0/8 is an insecure registry by default).
    let docker = docker();
    for (repo, want) in [
        ("layered", format!("{SHARED_TEXT}\napp-a\n")),
        ("single", "single\n".to_owned()),
    ] {
        let image = format!("{}/{repo}:v1", registry.url());
        run_ok(docker.command().args(["pull", "-q", &image]));
        let guard = docker.guard(image.clone());
        assert_eq!(docker.run(guard.name(), &[]).assert_success(), want);
    }
}

#[test]
fn a_second_push_sends_nothing_and_a_changed_layer_sends_only_itself() {
    let registry = Registry::start(RegistryConfig::plain());
    let dir = scratch();
    let dest = registry.docker_ref("app", "v1");
    let first = push(
        &dir,
        "build-layered",
        &app_spec("app-a", APP_A, "one"),
        &dest,
        &registry,
    );
    let layers = first.info["layers"].as_array().unwrap().len();
    assert_eq!(
        registry.blob_uploads("app"),
        layers + 1,
        "every layer and the config"
    );
    assert_eq!(first.info["push"]["blobsUploaded"], layers + 1);

    registry.clear_log();
    let again = push(
        &dir,
        "build-layered",
        &app_spec("app-a", APP_A, "one"),
        &dest,
        &registry,
    );
    assert_eq!(registry.blob_uploads("app"), 0, "nothing uploaded again");
    assert_eq!(again.info["push"]["blobsUploaded"], 0);
    assert_eq!(again.info["push"]["blobsSkipped"], layers + 1);
    assert_eq!(
        again.info["push"]["manifestDigest"],
        first.info["push"]["manifestDigest"]
    );

    registry.clear_log();
    let changed = push(
        &dir,
        "build-layered",
        &app_spec("app-a", APP_A, "two"),
        &dest,
        &registry,
    );
    assert_eq!(
        registry.blob_uploads("app"),
        2,
        "the customisation layer and the config"
    );
    assert_eq!(changed.info["push"]["blobsUploaded"], 2);

    // Another repository of the same registry gets the shared layers by mount.
    registry.clear_log();
    let other = push(
        &dir,
        "build-layered",
        &app_spec("app-b", APP_B, "one"),
        &registry.docker_ref("other", "v1"),
        &registry,
    );
    let mounts = registry.mounts("other");
    assert_eq!(
        mounts, 2,
        "busybox's and libshared's layers mounted, not uploaded"
    );
    let uploads = registry.blob_uploads("other");
    let other_layers = other.info["layers"].as_array().unwrap().len();
    assert_eq!(
        uploads + mounts,
        other_layers + 1,
        "every blob mounted or uploaded once"
    );
    registry.inspect("other", "v1");
}

#[test]
fn tls_basic_auth_and_tokens() {
    let dir = scratch();
    for (label, config) in [
        ("tls", RegistryConfig::plain().with_tls()),
        (
            "htpasswd",
            RegistryConfig::plain().with_htpasswd("alice", "s3cret"),
        ),
        ("token", RegistryConfig::plain().with_token("bob", "t0ken")),
        (
            "tls+token",
            RegistryConfig::plain()
                .with_tls()
                .with_token("bob", "t0ken"),
        ),
    ] {
        let registry = Registry::start(config);
        let dest = registry.docker_ref("app", label.replace('+', "-").as_str());
        let pushed = push(
            &dir,
            "build-layered",
            &app_spec("app-a", APP_A, label),
            &dest,
            &registry,
        );
        let inspect = registry.inspect("app", &label.replace('+', "-"));
        assert_eq!(
            inspect["Digest"], pushed.info["push"]["manifestDigest"],
            "{label}"
        );
        if label.contains("token") {
            assert!(
                registry.token_requests() > 0,
                "{label}: the token flow was used"
            );
        }
        if let Some((user, _)) = registry.credentials() {
            let mut flags: Vec<String> = registry
                .skopeo_args("")
                .into_iter()
                .filter(|f| !f.starts_with("--creds="))
                .collect();
            flags.push(format!("--creds={user}:wrong"));
            let mut cmd = push_cmd_with(
                &dir,
                "build-layered",
                &app_spec("app-a", APP_A, label),
                &dest,
                &flags,
            );
            let err = stderr(&cmd.run_err());
            assert!(err.contains("authentication failed"), "{label}: {err}");
            assert!(
                err.contains(&registry.url()),
                "{label}: the registry is named: {err}"
            );
        }
        if label == "tls" {
            // Without the certificate, TLS verification fails and says so.
            let spec_file = dir.join("tls-spec.json");
            buildimage_test_support::write_json(&spec_file, &app_spec("app-a", APP_A, label));
            let out = Buildimage::new()
                .cwd(dir.path())
                .arg("build-layered")
                .arg(&spec_file)
                .out(&dest)
                .store(fixture().store())
                .arg("--no-cache")
                .run_err();
            let err = stderr(&out);
            assert!(err.contains(&registry.url()), "{err}");
        }
    }
}

#[test]
fn an_auth_file_gives_the_credentials() {
    let registry = Registry::start(RegistryConfig::plain().with_htpasswd("carol", "pw"));
    let dir = scratch();
    let auth = dir.join("auth.json");
    let token = data_encoding::BASE64.encode(b"carol:pw");
    buildimage_test_support::write_json(
        &auth,
        &json!({ "auths": { registry.url(): { "auth": token } } }),
    );
    let spec_file = dir.join("spec.json");
    buildimage_test_support::write_json(&spec_file, &app_spec("app-a", APP_A, "auth"));
    Buildimage::new()
        .cwd(dir.path())
        .env("REGISTRY_AUTH_FILE", &auth)
        .arg("build-layered")
        .arg(&spec_file)
        .out(registry.docker_ref("app", "v1"))
        .store(fixture().store())
        .args(["--tls-verify=false", "--no-cache"])
        .run_ok();
    registry.inspect("app", "v1");
}

#[test]
fn transient_failures_are_retried_and_others_leave_no_tag() {
    let mut registry = Registry::start(RegistryConfig::plain());
    let proxy = FaultProxy::start(&registry);
    let dir = scratch();
    let spec = app_spec("app-a", APP_A, "faults");

    // 500 twice, then the registry answers: the push succeeds.
    proxy.fail_next(2, 500);
    let pushed = push(
        &dir,
        "build-layered",
        &spec,
        &proxy.docker_ref("retry", "v1"),
        &registry,
    );
    registry.inspect("retry", "v1");
    assert!(pushed.info["push"]["blobsUploaded"].as_u64().unwrap() > 0);

    // The registry goes away mid-push: a clear error, no manifest, and a re-run completes.
    registry.clear_log();
    proxy.cut_after(4);
    let out = push_cmd(
        &dir,
        "build-layered",
        &app_spec("app-a", APP_A, "cut"),
        &proxy.docker_ref("cut", "v1"),
        &registry,
    )
    .run_err();
    let err = stderr(&out);
    assert!(
        err.contains(&proxy.url()) && err.contains("cut"),
        "names registry and repository: {err}"
    );
    assert_eq!(
        registry.manifest_puts("cut"),
        0,
        "no tag to a partial image"
    );
    proxy.resume();
    push(
        &dir,
        "build-layered",
        &app_spec("app-a", APP_A, "cut"),
        &proxy.docker_ref("cut", "v1"),
        &registry,
    );
    registry.inspect("cut", "v1");

    // A registry that is down: the error names it, before any work.
    registry.stop();
    let out = push_cmd(
        &dir,
        "build-layered",
        &spec,
        &registry.docker_ref("down", "v1"),
        &registry,
    )
    .run_err();
    let err = stderr(&out);
    assert!(err.contains(&registry.url()), "{err}");
    registry.start_again();
}
#[test]
fn sigint_during_a_push_leaves_no_tag() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let registry = Registry::start(RegistryConfig::plain());
    let proxy = FaultProxy::start(&registry);
    let dir = scratch();
    // Every blob upload is held by the proxy: the push is in the middle when signalled.
    proxy.hold_uploads();
    let cmd = push_cmd(
        &dir,
        "build-layered",
        &app_spec("app-a", APP_A, "sigint"),
        &proxy.docker_ref("int", "v1"),
        &registry,
    );
    let log = dir.join("stderr.txt");
    let mut child = cmd.spawn(Stdio::null(), Stdio::from(fs::File::create(&log).unwrap()));
    let start = std::time::Instant::now();
    while proxy.held() == 0 {
        let ended = child.try_wait().unwrap();
        if ended.is_some() || start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            proxy.resume();
            panic!(
                "no upload was held ({ended:?}); the proxy saw {:#?}\nstderr:\n{}",
                proxy.requests(),
                fs::read_to_string(&log).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(
        Pid::from_raw(i32::try_from(child.id()).unwrap()),
        Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    proxy.resume();
    assert_eq!(registry.manifest_puts("int"), 0);
    let inspect = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(registry.docker_ref("int", "v1"))
        .output()
        .unwrap();
    assert!(
        !inspect.status.success(),
        "no tag after an interrupted push"
    );
}

#[test]
fn format_docker_pushes_schema_2_that_docker_pulls() {
    let registry = Registry::start(RegistryConfig::plain());
    let dir = scratch();
    let dest = registry.docker_ref("schema2", "v1");
    let mut flags = registry.skopeo_args("");
    flags.push("--format=docker".to_owned());
    let pushed = push_cmd_with(
        &dir,
        "build-layered",
        &app_spec("app-a", APP_A, "s2"),
        &dest,
        &flags,
    )
    .json();
    let mut args = registry.skopeo_args("");
    args.push("--raw".to_owned());
    let manifest = buildimage_test_support::skopeo_inspect(&dest, &args);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    for layer in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
    }
    assert_eq!(manifest["config"]["digest"], pushed.info["configDigest"]);
    let docker = docker();
    let image = format!("{}/schema2:v1", registry.url());
    run_ok(docker.command().args(["pull", "-q", &image]));
    let guard = docker.guard(image.clone());
    assert_eq!(
        docker.run(guard.name(), &[]).assert_success(),
        format!("{SHARED_TEXT}\napp-a\n")
    );
}
