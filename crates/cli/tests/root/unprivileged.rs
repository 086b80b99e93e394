//! runAsRoot run by an ordinary user: a user namespace maps the caller to root, and the
//! owners and device nodes the script gives, which that namespace cannot hold, are
//! recorded, so the layer is the one real root makes.

use std::fs;
use std::process::Output;

use buildimage_test_support::{
    Buildimage, Image, Member, ROOT_APPLETS, busybox_root, chmod, read_tar,
};
use serde_json::json;

use super::{Case, base_image, member_names};

/// `buildimage` run as `nobody`, from a copy of the binary that `nobody` can read, in a
/// case folder (and `TMPDIR`) it may write.
fn as_nobody(case: &Case) -> Buildimage {
    chmod(case.path(), 0o777);
    chmod(&case.tmp(), 0o777);
    let mut cmd = case.buildimage();
    cmd.as_nobody(case.path());
    cmd
}

/// `buildimage build NAME.json -o NAME.tar` as `nobody`, with `spec` as NAME.json; returns
/// its output and its standard error as text.
fn build_as_nobody(case: &Case, name: &str, spec: &serde_json::Value) -> (Output, String) {
    let spec = case.spec_named(name, spec);
    let output = as_nobody(case)
        .build(&spec)
        .out(case.join(format!("{name}.tar")))
        .output();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stderr)
}

#[test]
fn an_ordinary_user_runs_run_as_root_in_a_user_namespace() {
    let case = Case::new();
    busybox_root(&case.join("root"), &ROOT_APPLETS);
    let built = case.build_with(
        as_nobody(&case),
        "nobody",
        &json!({
            "name": "nobody", "tag": "t", "copyToRoot": "root", "compressor": "none",
            "runAsRoot": "mkdir -p /data && echo hi > /data/f && chmod 4755 /data/f",
        }),
        None,
    );
    let layer = Image::open(&built.archive).top_layer();
    let f = layer
        .iter()
        .find(|m| m.name == b"./data/f")
        .unwrap_or_else(|| panic!("no ./data/f in {:?}", member_names(&layer)));
    // Files the mapped root made are root's in the image, setuid bit included.
    assert_eq!((f.uid, f.gid, f.mode), (0, 0, 0o4755));
}

#[test]
fn an_ordinary_user_gets_the_layer_real_root_makes() {
    let case = Case::new();
    base_image(&case, "ownbase", &json!({}), |root| {
        fs::create_dir(root.join("etc")).expect("mkdir etc");
        fs::write(root.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").expect("passwd");
        fs::write(root.join("etc/motd"), b"hello\n").expect("motd");
    });
    // Owners other than root (of a file only in the base, which must be copied up, of a
    // new folder and file), a setuid bit, a deletion and device nodes: the kernel refuses
    // the owners and devices to a user namespace that maps one id; the sandbox records
    // them, and the layer must come out as real root's.
    let spec = json!({
        "name": "owners", "tag": "t", "fromImage": "ownbase.tar", "compressor": "none",
        "runAsRoot": "chown 33:33 /etc/passwd && rm /etc/motd && mkdir -p /data \
                      && chown 1000:1000 /data && echo hi > /data/f && chown 1000:100 /data/f \
                      && chmod 4755 /data/f && mkdir /devs && mknod /devs/null c 1 3 \
                      && mknod -m 0600 /devs/sda b 8 0 && chown 0:6 /devs/sda",
    });
    let as_root = case.build("owners-root", &spec, None);
    let as_nobody = case.build_with(as_nobody(&case), "owners-nobody", &spec, None);
    let root_layer = Image::open(&as_root.archive).top_layer();
    let nobody_layer = Image::open(&as_nobody.archive).top_layer();
    let lines = |members: &[Member]| -> Vec<String> { members.iter().map(Member::line).collect() };
    assert_eq!(lines(&nobody_layer), lines(&root_layer));
    let line_of = |name: &str| -> String {
        lines(&root_layer)
            .into_iter()
            .find(|l| l.split(' ').nth(4) == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {:#?}", lines(&root_layer)))
    };
    assert!(line_of("./etc/passwd").contains(" 33:33 "));
    assert!(line_of("./data/").contains(" 1000:1000 "));
    assert!(line_of("./data/f").starts_with("- 4755 1000:100 "));
    assert!(line_of("./devs/null").starts_with("c ") && line_of("./devs/null").ends_with(" 1,3"));
    assert!(line_of("./devs/sda").starts_with("b 0600 0:6 "));
    line_of("./etc/.wh.motd");
    assert_eq!(
        as_nobody.info["layer"]["diffId"], as_root.info["layer"]["diffId"],
        "the same layer, byte for byte"
    );
    case.assert_clean();
}

#[test]
fn an_ordinary_user_builds_on_a_base_with_device_nodes_which_the_script_does_not_see() {
    let case = Case::new();
    // Two base layers: a file /etc/null, then a character device in its place (outside
    // /dev, where the sandbox's fresh /dev would hide it anyway) and one in /dev.
    base_image(&case, "filebase", &json!({}), |root| {
        fs::create_dir(root.join("etc")).expect("mkdir etc");
        fs::write(root.join("etc/null"), b"a file below").expect("write etc/null");
    });
    let devroot = case.join("devroot");
    for dir in ["etc", "dev"] {
        fs::create_dir_all(devroot.join(dir)).expect("mkdir");
        nix::sys::stat::mknod(
            &devroot.join(dir).join("null"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .expect("mknod null");
    }
    case.build(
        "devbase",
        &json!({
            "name": "devbase", "tag": "t", "fromImage": "filebase.tar",
            "copyToRoot": "devroot", "compressor": "none",
        }),
        None,
    );
    let (output, stderr) = build_as_nobody(
        &case,
        "ondev",
        &json!({
            "name": "ondev", "tag": "t", "fromImage": "devbase.tar", "compressor": "none",
            "runAsRoot": "test ! -e /etc/null && echo ran > /ran",
        }),
    );
    assert!(output.status.success(), "the build succeeds:\n{stderr}");
    // Without root, the device cannot be made, so it is left out of the script's view (as
    // Docker does in a user namespace), hiding the file below it as the device did, with
    // a warning that names it and the key; /dev/null is hidden by the sandbox's /dev.
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert!(
        warnings.len() == 1
            && warnings[0].contains("fromImage")
            && warnings[0].contains("etc/null")
            && warnings[0].contains("only root can create device nodes"),
        "one warning, naming the device outside /dev:\n{stderr}"
    );
    case.assert_clean();
    let archive = Image::open(&case.join("ondev.tar"));
    let top = archive.top_layer();
    assert!(
        member_names(&top).iter().any(|n| n == "./ran"),
        "the script ran: {:?}",
        member_names(&top)
    );
    assert!(
        !member_names(&top).iter().any(|n| n.contains("null")),
        "the new layer neither has nor deletes the device: {:?}",
        member_names(&top)
    );
    // The base layers are in the image unchanged, device included.
    let manifest = archive.manifest();
    let base = manifest[0]["Layers"][1]
        .as_str()
        .expect("a second base layer");
    let null = read_tar(archive.file(base))
        .into_iter()
        .find(|m| m.name == b"./etc/null")
        .expect("the base layer keeps ./etc/null");
    assert_eq!(null.kind.as_byte(), b'3', "still a character device");
}
