//! The Nix functions of `nix/default.nix`, built by real `nix-build` (Debian's Nix 2.8)
//! into a chroot store with the sandbox on, no substituters, and the static `buildimage`
//! (`cargo xtask dist`, which `cargo xtask ci` runs first) added to the store as the
//! builder. What comes out is loaded and run by Docker, unpacked by umoci, checked by
//! `nix-store --verify`, rebuilt by `nix-build --check`, and compared byte for byte with
//! what the command line makes of the same arguments.
//!
//! The expression ([`EXPRESSION`]) is built once per test binary; the tests read the
//! store. Needs root (Nix 2.8 builds into a chroot store only in its sandbox) and
//! `apt-get install nix-bin busybox-static skopeo umoci docker.io`. Run with
//! `cargo xtask dist && cargo xtask dockerd -- cargo test -p buildimage-cli --test cli nix_functions`.

mod arguments;
mod images;
mod scripts;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use buildimage_test_support::nix::{chroot, host_path, nix, remove_stale, stdout};
use buildimage_test_support::run_ok;

/// The static binary's folder (`bin/buildimage` inside): `$BUILDIMAGE_TEST_DIST`, else
/// `target/dist` of this workspace.
pub fn dist() -> PathBuf {
    let dir = std::env::var_os("BUILDIMAGE_TEST_DIST").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/dist"),
        PathBuf::from,
    );
    let binary = dir.join("bin/buildimage");
    assert!(
        binary.is_file(),
        "{} is missing: the Nix functions need the static binary; run `cargo xtask dist` \
         (cargo xtask ci does) or set BUILDIMAGE_TEST_DIST",
        binary.display()
    );
    fs::canonicalize(dir).expect("canonical dist folder")
}

/// The expression: `tools` (the functions, with the static binary as `buildimage`), a
/// small app with a dependency, and one image per case; an attribute set of derivations.
/// `@DIST@` and `@NIX@` stand for the binary's folder and `nix/default.nix`'s folder.
const EXPRESSION: &str = r#"
let
  tools = import @NIX@ { buildimage = builtins.path { path = @DIST@; name = "buildimage"; }; };
  run = name: script: derivation {
    inherit name; system = builtins.currentSystem;
    builder = "/bin/sh"; args = [ "-c" script ];
  };
  applets = "sh ls id cat mkdir chown chmod touch echo test stat rm adduser addgroup grep env";
  busybox = run "busybox" ''
    mkdir -p $out/bin; cp /bin/busybox $out/bin/busybox
    for a in ${applets}; do ln -s busybox $out/bin/$a; done
  '';
  # A dependency and a program that needs it (its interpreter line names the busybox).
  greeting = run "greeting-1.0" "mkdir -p $out/share; echo hello from a nix-built image > $out/share/greeting";
  app = run "app-1.0" ''
    mkdir -p $out/bin
    printf '#!${busybox}/bin/sh\ncat ${greeting}/share/greeting\n' > $out/bin/app
    chmod +x $out/bin/app
  '';
  # What buildEnv makes: a root of symlinks into the packages.
  env = run "redis-like-env" "mkdir -p $out; ln -s ${busybox}/bin $out/bin; ln -s ${app}/bin/app $out/app";
  config = {
    Cmd = [ "${app}/bin/app" ];
    Env = [ "GREETING=1" "PATH=/bin" ];
    ExposedPorts."8080/tcp" = { };
    Labels."org.example.test" = "nix-functions";
  };
in {
  inherit busybox app;
  image = tools.buildImage {
    name = "fn/build"; tag = "t1"; copyToRoot = [ busybox ]; inherit config;
    compressor = "none";
  };
  untagged = tools.buildImage { name = "fn-untagged"; copyToRoot = busybox; };
  layered = tools.buildLayeredImage {
    name = "fn/layered"; tag = "t1"; contents = [ busybox app ]; inherit config;
    compressor = "none";
  };
  layeredGz = tools.buildLayeredImage { name = "fn-layered-gz"; contents = [ busybox ]; };
  stream = tools.streamLayeredImage {
    name = "fn-stream"; contents = [ busybox app ]; inherit config;
  };
  redis = tools.buildImage {
    name = "redis-like"; tag = "latest"; copyToRoot = env;
    runAsRoot = ''
      mkdir -p /data
      chown 999:999 /data
    '';
    config = { Cmd = [ "/app" ]; WorkingDir = "/data"; Volumes."/data" = { }; };
  };
  extra = tools.buildImage {
    name = "fn-extra"; tag = "t1"; copyToRoot = [ busybox ];
    extraCommands = "mkdir -p tmp; chmod 1777 tmp; echo made > made-by-extra";
  };
  withDb = tools.buildImageWithNixDb { name = "fn-db"; tag = "t1"; copyToRoot = [ app ]; };
  layeredWithDb = tools.buildLayeredImageWithNixDb {
    name = "fn-layered-db"; tag = "t1"; contents = [ app ];
  };
}
"#;

/// A chroot store with every attribute of [`EXPRESSION`] built, in
/// `/tmp/bi-nixfn.<pid>.XXXXXX` (a `static` is never dropped: the next run removes the
/// folders of finished runs).
pub struct Fixture {
    /// The chroot store's root.
    pub root: PathBuf,
    /// The expression file.
    pub nix_file: PathBuf,
    /// `nix eval`-free access to the results: attribute name to output path.
    pub outputs: std::collections::BTreeMap<String, String>,
}

/// The attributes of [`EXPRESSION`], in the order `nix-build -A` builds them.
pub const ATTRIBUTES: [&str; 11] = [
    "busybox",
    "app",
    "image",
    "untagged",
    "layered",
    "layeredGz",
    "stream",
    "redis",
    "extra",
    "withDb",
    "layeredWithDb",
];

impl Fixture {
    /// The output path of attribute `attr`, as `nix-build` printed it.
    pub fn out(&self, attr: &str) -> &str {
        self.outputs
            .get(attr)
            .unwrap_or_else(|| panic!("no attribute {attr}"))
    }

    /// Where the store keeps `path` on the host.
    pub fn host(&self, path: &str) -> PathBuf {
        host_path(&self.root, path)
    }
}

/// The fixture, built on first use.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        remove_stale(FIXTURE_PREFIX);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{FIXTURE_PREFIX}{}.", std::process::id()))
            .tempdir_in("/tmp")
            .expect("a temporary folder")
            .keep();
        let root = dir.join("store");
        let nix_file = write_expression(&dir, EXPRESSION);
        let mut outputs = std::collections::BTreeMap::new();
        let mut cmd = nix_build(&root, &nix_file, &[]);
        for attr in ATTRIBUTES {
            cmd.args(["-A", attr]);
        }
        let printed = stdout(run_ok(&mut cmd));
        let lines: Vec<&str> = printed.lines().collect();
        assert_eq!(
            lines.len(),
            ATTRIBUTES.len(),
            "one path per attribute: {printed}"
        );
        for (attr, path) in ATTRIBUTES.iter().zip(lines) {
            outputs.insert((*attr).to_owned(), path.to_owned());
        }
        Fixture {
            root,
            nix_file,
            outputs,
        }
    })
}

/// The name of the fixture's folder, before the process id.
const FIXTURE_PREFIX: &str = "bi-nixfn.";

/// Writes `expression` as `DIR/default.nix` with its placeholders filled in.
pub fn write_expression(dir: &Path, expression: &str) -> PathBuf {
    let nix_dir = fs::canonicalize(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../nix"))
        .expect("the nix folder of the workspace");
    let text = expression
        .replace("@DIST@", &dist().display().to_string())
        .replace("@NIX@", &nix_dir.display().to_string());
    let file = dir.join("default.nix");
    fs::write(&file, text).expect("write the expression");
    file
}

/// `nix-build --store local?root=ROOT FILE --no-out-link` with `options` (`--option NAME
/// VALUE` pairs) on top of the test configuration.
pub fn nix_build(root: &Path, file: &Path, options: &[(&str, &str)]) -> Command {
    let mut cmd = nix("nix-build");
    cmd.arg("--store")
        .arg(chroot(root))
        .arg(file)
        .arg("--no-out-link");
    for (name, value) in options {
        cmd.args(["--option", name, value]);
    }
    cmd
}

/// Runs `cmd`, expecting it to fail; returns its standard error.
pub fn fails(cmd: &mut Command) -> String {
    let output: Output = cmd.output().expect("start the command");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "must fail:\n{stderr}");
    stderr
}
