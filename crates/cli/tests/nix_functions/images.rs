//! Each function's image: loaded and run by Docker with the config given in Nix, tagged as
//! the Nix side says, rebuilt identically by `nix-build --check`, the same bytes as the
//! command line's, and with a Nix database that `nix-store --verify` accepts.

use std::fs;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use buildimage_test_support::nix::{nix, stdout};
use buildimage_test_support::{Buildimage, Image, TestDir, docker, run_ok, unpack_oci};

use super::{ATTRIBUTES, fixture, nix_build};

/// `nix-instantiate --eval --strict --json` of `expr` with `fx` bound to the fixture's
/// attribute set.
fn eval(expr: &str) -> Value {
    let fx = fixture();
    let text = format!("let fx = import {}; in {expr}", fx.nix_file.display());
    let output = run_ok(
        nix("nix-instantiate")
            .arg("--store")
            .arg(buildimage_test_support::nix::chroot(&fx.root))
            .args(["--eval", "--strict", "--json", "--read-write-mode", "-E"])
            .arg(text),
    );
    serde_json::from_slice(&output.stdout).expect("JSON from nix-instantiate")
}

/// What the app in every image prints.
const GREETING: &str = "hello from a nix-built image\n";

fn assert_config(docker: &buildimage_test_support::Docker, image: &str) {
    let config: Value = serde_json::from_str(&docker.inspect(image, "{{json .Config}}"))
        .expect("docker inspect JSON");
    let app = format!("{}/bin/app", fixture().out("app"));
    assert_eq!(config["Cmd"], json!([app]), "{config}");
    assert_eq!(
        config["Env"],
        json!(["GREETING=1", "PATH=/bin"]),
        "{config}"
    );
    assert_eq!(
        config["ExposedPorts"],
        json!({ "8080/tcp": {} }),
        "{config}"
    );
    assert_eq!(
        config["Labels"],
        json!({ "org.example.test": "nix-functions" }),
        "{config}"
    );
}

#[test]
fn build_image_and_build_layered_image_run_in_docker_with_the_config_given_in_nix() {
    let fx = fixture();
    let docker = docker();
    for (attr, name) in [("image", "fn/build:t1"), ("layered", "fn/layered:t1")] {
        let image = docker.load_guarded(&fx.host(fx.out(attr)));
        assert_eq!(image.name(), name);
        assert_eq!(docker.run(name, &[]).assert_success(), GREETING, "{attr}");
        assert_config(&docker, name);
    }
}

#[test]
fn the_stream_is_an_executable_whose_output_docker_loads() {
    let fx = fixture();
    let stream = fx.out("stream");
    let tag = eval("fx.stream.imageTag");
    // Run it the way a user does, `$(nix-build …) | docker load`: the kernel reads its
    // interpreter line, which names the static binary in the store. The store is the
    // chroot store's, so it runs chrooted into a root that has it at /nix.
    let newroot = TestDir::new("bi-nixfn-run.");
    for dir in ["nix", "tmp", "proc"] {
        fs::create_dir(newroot.join(dir)).expect("mkdir");
    }
    let script = format!(
        "mount --bind {nix} {root}/nix && mount -t proc proc {root}/proc && \
         exec chroot {root} {stream}",
        nix = fx.root.join("nix").display(),
        root = newroot.path().display(),
    );
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the stream");
    let docker = docker();
    let image = docker.load_stream(child.stdout.take().expect("piped"));
    assert!(child.wait().expect("wait").success(), "the stream failed");
    let want = format!("fn-stream:{}", tag.as_str().expect("a string tag"));
    assert_eq!(image.name(), want);
    assert_eq!(docker.run(&want, &[]).assert_success(), GREETING);
    assert_config(&docker, &want);
}

#[test]
fn image_tags_are_known_at_evaluation_and_are_the_tags_inside() {
    let fx = fixture();
    let info = eval(
        "{ untagged = fx.untagged.imageTag; untaggedName = fx.untagged.imageName; \
           layeredGz = fx.layeredGz.imageTag; stream = fx.stream.imageTag; \
           conf = fx.stream.conf.outPath; tagged = fx.image.imageTag; }",
    );
    // The 32 characters after `/nix/store/`.
    let hash = |path: &str| path[11..43].to_owned();
    assert_eq!(info["tagged"], "t1");
    assert_eq!(info["untaggedName"], "fn-untagged");
    assert_eq!(
        info["untagged"],
        hash(fx.out("untagged")),
        "the image's hash"
    );
    assert_eq!(info["layeredGz"], hash(fx.out("layeredGz")));
    assert_eq!(
        info["stream"],
        hash(info["conf"].as_str().unwrap()),
        "the stream's conf's hash, as dockerTools"
    );
    for (attr, name) in [("untagged", "fn-untagged"), ("layeredGz", "fn-layered-gz")] {
        let manifest = Image::open(&fx.host(fx.out(attr))).manifest();
        assert_eq!(
            manifest[0]["RepoTags"],
            json!([format!("{name}:{}", info[attr].as_str().unwrap())]),
            "{attr}"
        );
    }
    let conf =
        fs::read_to_string(fx.host(&format!("{}/spec.json", info["conf"].as_str().unwrap())))
            .expect("the conf's spec.json");
    let conf: Value = serde_json::from_str(&conf).expect("JSON");
    assert_eq!(conf["tag"], info["stream"]);
    // File names as dockerTools gives them.
    assert!(fx.out("image").ends_with("-docker-image-build.tar"));
    assert!(
        fx.out("untagged")
            .ends_with("-docker-image-fn-untagged.tar.gz")
    );
    assert!(fx.out("layered").ends_with("-layered.tar"));
    assert!(fx.out("layeredGz").ends_with("-fn-layered-gz.tar.gz"));
    assert!(fx.out("stream").ends_with("-stream-fn-stream"));
}

#[test]
fn passthru_is_what_docker_tools_gives() {
    let info = eval(
        "{ name = fx.image.imageName; args = fx.image.buildArgs.name; \
           layer = builtins.pathExists fx.image.layer; isExe = fx.stream.isExe; \
           streamName = fx.stream.imageName; }",
    );
    assert_eq!(
        info,
        json!({ "name": "fn/build", "args": "fn/build", "layer": true, "isExe": true,
                "streamName": "fn-stream" })
    );
    let fx = fixture();
    let layer_path = eval("fx.image.layer.outPath");
    let layer: Value = serde_json::from_slice(
        &fs::read(fx.host(layer_path.as_str().unwrap())).expect("the layer output"),
    )
    .expect("JSON");
    let manifest = Image::open(&fx.host(fx.out("image"))).manifest();
    assert_eq!(manifest[0]["Layers"].as_array().map(Vec::len), Some(1));
    assert!(
        layer["diffId"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{layer}"
    );
}

#[test]
fn nix_build_check_rebuilds_every_image_identically() {
    let fx = fixture();
    let mut cmd = nix_build(&fx.root, &fx.nix_file, &[]);
    cmd.arg("--check");
    for attr in ATTRIBUTES {
        cmd.args(["-A", attr]);
    }
    run_ok(&mut cmd);
}

#[test]
fn the_command_line_makes_the_same_bytes_from_the_same_arguments() {
    let fx = fixture();
    let dir = TestDir::new("bi-nixfn-cli.");
    let app = fx.out("app");
    let config = json!({
        "Cmd": [format!("{app}/bin/app")],
        "Env": ["GREETING=1", "PATH=/bin"],
        "ExposedPorts": { "8080/tcp": {} },
        "Labels": { "org.example.test": "nix-functions" },
    });
    let cases = [
        (
            "build",
            "image",
            json!({ "name": "fn/build", "tag": "t1", "copyToRoot": [fx.out("busybox")],
                    "config": config, "compressor": "none" }),
        ),
        (
            "build-layered",
            "layered",
            json!({ "name": "fn/layered", "tag": "t1",
                    "contents": [fx.out("busybox"), app], "config": config,
                    "compressor": "none" }),
        ),
    ];
    for (command, attr, spec) in cases {
        let spec_file = dir.spec_named(attr, &spec);
        let out = dir.join(format!("{attr}.tar"));
        let mut cmd = Buildimage::new();
        if command == "build" {
            cmd.build(&spec_file);
        } else {
            cmd.build_layered(&spec_file);
        }
        cmd.out(&out).store(&fx.root).arg("--no-cache").run_ok();
        let cli = fs::read(&out).expect("the command line's image");
        let nix = fs::read(fx.host(fx.out(attr))).expect("the Nix function's image");
        assert!(cli == nix, "{attr}: the images differ");
    }
}

#[test]
fn images_with_a_nix_database_pass_nix_store_verify() {
    let fx = fixture();
    for attr in ["withDb", "layeredWithDb"] {
        let unpacked = unpack_oci(&fx.host(fx.out(attr)));
        let rootfs = unpacked.rootfs();
        let verify = run_ok(
            nix("nix-store")
                .arg("--store")
                .arg(buildimage_test_support::nix::chroot(&rootfs))
                .args(["--verify", "--check-contents"]),
        );
        assert!(verify.status.success(), "{attr}");
        let valid = stdout(run_ok(
            nix("nix-store")
                .arg("--store")
                .arg(buildimage_test_support::nix::chroot(&rootfs))
                .args(["--query", "--requisites"])
                .arg(fx.out("app")),
        ));
        assert!(valid.contains(fx.out("app")), "{attr}: {valid}");
    }
}
