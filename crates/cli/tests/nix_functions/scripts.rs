//! `runAsRoot`, `extraCommands`, `fakeRootCommands` and `enableFakechroot` inside a
//! sandboxed `nix-build`: owners other than root, users, setuid files, as outside Nix.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use buildimage_test_support::{TestDir, run_ok, unpack_oci};

use super::{fails, fixture, nix_build, write_expression};

#[test]
fn the_redis_like_example_makes_data_for_its_user() {
    let fx = fixture();
    let unpacked = unpack_oci(&fx.host(fx.out("redis")));
    let data = fs::metadata(unpacked.rootfs().join("data")).expect("/data");
    assert_eq!((data.uid(), data.gid()), (999, 999), "chown in runAsRoot");
    let config = unpacked.config_json();
    assert_eq!(config["process"]["cwd"], "/data", "{config}");
    assert_eq!(
        config["process"]["args"],
        serde_json::json!(["/app"]),
        "{config}"
    );
    let manifest = buildimage_test_support::Image::open(&fx.host(fx.out("redis"))).config();
    assert_eq!(
        manifest["config"]["Volumes"],
        serde_json::json!({ "/data": {} }),
        "{manifest}"
    );
}

#[test]
fn extra_commands_find_the_image_packages_on_path() {
    let fx = fixture();
    let unpacked = unpack_oci(&fx.host(fx.out("extra")));
    let tmp = fs::metadata(unpacked.rootfs().join("tmp")).expect("/tmp");
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    assert_eq!(
        fs::read_to_string(unpacked.rootfs().join("made-by-extra")).expect("the file"),
        "made\n"
    );
}

/// Images whose scripts make a user (as `adduser` would: Debian's static busybox has none),
/// give it files by name and make a setuid file, built by
/// `nix-build` with `filter-syscalls = false`: Nix's own seccomp filter refuses setuid
/// bits to every builder otherwise.
const ROOT_SCRIPTS: &str = r#"
let
  tools = import @NIX@ { buildimage = builtins.path { path = @DIST@; name = "buildimage"; }; };
  busybox = derivation {
    name = "busybox"; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" ''
      mkdir -p $out/bin; cp /bin/busybox $out/bin/busybox
      for a in sh mkdir chown chmod touch echo cat; do ln -s busybox $out/bin/$a; done
    '' ];
  };
  users = ''
    mkdir -p etc home
    echo root:x:0:0::/root:/bin/sh > etc/passwd
    echo root:x:0: > etc/group
  '';
  # As `adduser` would, then a file given by name and a setuid file, from the root.
  makeUser = ''
    cd /
    ${users}
    echo app:x:1000:1000::/home/app:/bin/sh >> /etc/passwd
    echo app:x:1000: >> /etc/group
    mkdir -p /home/app
    chown app:app /home/app
    echo hi > /home/app/f
    chown app:app /home/app/f
    touch /setuid
    chmod 4755 /setuid
  '';
in {
  runAsRoot = tools.buildImage {
    name = "fn-run-as-root"; tag = "t1"; copyToRoot = [ busybox ]; compressor = "none";
    runAsRoot = makeUser;
  };
  fakeRoot = tools.buildLayeredImage {
    name = "fn-fake-root"; tag = "t1"; contents = [ busybox ]; compressor = "none";
    fakeRootCommands = ''
      ${users}
      mkdir -p home/app
      echo hi > home/app/f
      chown -R 1000:1000 home/app
      touch setuid
      chmod 4755 setuid
    '';
  };
  fakeChroot = tools.buildLayeredImage {
    name = "fn-fake-chroot"; tag = "t1"; contents = [ busybox ]; compressor = "none";
    enableFakechroot = true;
    fakeRootCommands = makeUser;
  };
}
"#;

#[test]
fn scripts_make_users_owners_and_setuid_files_inside_the_nix_sandbox() {
    let dir = TestDir::new("bi-nixfn-root.");
    let file = write_expression(dir.path(), ROOT_SCRIPTS);
    let root = dir.join("store");
    let attrs = ["-A", "runAsRoot", "-A", "fakeRoot", "-A", "fakeChroot"];
    let options = [("filter-syscalls", "false")];
    let printed =
        buildimage_test_support::nix::stdout(run_ok(nix_build(&root, &file, &options).args(attrs)));
    // Recorded owners and all, the scripts' layers are reproducible.
    run_ok(nix_build(&root, &file, &options).args(attrs).arg("--check"));
    for (image, made_user) in printed.lines().zip([true, false, true]) {
        let unpacked = unpack_oci(&buildimage_test_support::nix::host_path(&root, image));
        let rootfs = unpacked.rootfs();
        let owner = |rel: &str| {
            let md =
                fs::symlink_metadata(rootfs.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
            (md.uid(), md.gid(), md.mode() & 0o7777)
        };
        assert_eq!(owner("home/app").0, 1000, "{image}: home/app");
        assert_eq!(
            owner("home/app/f"),
            (1000, 1000, 0o644),
            "{image}: home/app/f"
        );
        assert_eq!(owner("setuid").2, 0o4755, "{image}: the setuid bit");
        assert_eq!(owner("setuid").0, 0, "{image}: root's");
        if made_user {
            let passwd = fs::read_to_string(rootfs.join("etc/passwd")).expect("passwd");
            assert!(passwd.contains("app:x:1000:1000:"), "{image}: {passwd}");
        }
    }
}

/// A runAsRoot script that sets a setuid bit, for Nix's default settings.
const SETUID: &str = r#"
let
  tools = import @NIX@ { buildimage = builtins.path { path = @DIST@; name = "buildimage"; }; };
  busybox = derivation {
    name = "busybox"; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" "mkdir -p $out/bin; cp /bin/busybox $out/bin/busybox; ln -s busybox $out/bin/sh" ];
  };
in tools.buildImage {
  name = "fn-setuid"; copyToRoot = [ busybox ];
  runAsRoot = "/bin/busybox touch /s && /bin/busybox chmod 4755 /s";
}
"#;

#[test]
fn a_setuid_bit_under_nix_default_filter_fails_and_names_the_setting() {
    let dir = TestDir::new("bi-nixfn-filter.");
    let file = write_expression(dir.path(), SETUID);
    let stderr = fails(&mut nix_build(&dir.join("store"), &file, &[]));
    assert!(
        stderr.contains("Key `runAsRoot`: The script failed")
            && stderr.contains("setuid and setgid bits cannot be set here")
            && stderr.contains("filter-syscalls = false"),
        "{stderr}"
    );
}
