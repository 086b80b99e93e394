//! The binary under test: one way to run it, and what a successful build returns.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

use crate::fs::{chmod, require_tool};
use crate::image::Image;

/// The user `nobody` of Debian: no home, no groups, no privileges.
const NOBODY: &str = "65534";

/// `buildimage` as a builder: where it runs, its environment, umask and user, and its
/// arguments; then run to an [`Output`] ([`Buildimage::output`], [`Buildimage::run_ok`],
/// [`Buildimage::run_err`]), to a [`Built`] ([`Buildimage::json`]), or started
/// ([`Buildimage::spawn`]).
///
/// `SOURCE_DATE_EPOCH` is removed from the environment, so that a caller's environment
/// cannot move the expected times; [`Buildimage::env`] sets it again.
#[derive(Debug, Clone, Default)]
pub struct Buildimage {
    cwd: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    umask: Option<String>,
    nobody: Option<PathBuf>,
    through: Vec<OsString>,
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
}

impl Buildimage {
    /// `buildimage` with no arguments yet.
    pub fn new() -> Buildimage {
        Buildimage::default()
    }

    /// The path of the binary under test, as cargo built it for this test binary.
    pub fn bin() -> PathBuf {
        assert_cmd::cargo::cargo_bin("buildimage")
    }

    /// Runs it in the folder `dir`.
    pub fn cwd(&mut self, dir: &Path) -> &mut Buildimage {
        self.cwd = Some(dir.to_owned());
        self
    }

    /// Sets the variable `key` to `value`.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Buildimage {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// `TMPDIR=dir`.
    pub fn tmpdir(&mut self, dir: &Path) -> &mut Buildimage {
        self.env("TMPDIR", dir)
    }

    /// Runs it under `umask` (e.g. `"077"`), set by `sh -c 'umask X; exec "$0" "$@"'`.
    pub fn umask(&mut self, umask: &str) -> &mut Buildimage {
        self.umask = Some(umask.to_owned());
        self
    }

    /// Runs it as the user `nobody` (uid and gid 65534, no groups; through `setpriv` from
    /// util-linux), from a copy of the binary in `dir` that `nobody` can read. The caller
    /// makes the folders the build writes writable for `nobody`.
    pub fn as_nobody(&mut self, dir: &Path) -> &mut Buildimage {
        self.nobody = Some(dir.to_owned());
        self
    }

    /// Starts the binary through `program` (e.g. `["taskset", "-c", "0"]`), which gets the
    /// binary's path and arguments after its own.
    pub fn through<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(
        &mut self,
        program: I,
    ) -> &mut Buildimage {
        self.through
            .extend(program.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Adds one argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Buildimage {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&mut self, args: I) -> &mut Buildimage {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// `build SPEC`.
    pub fn build(&mut self, spec: impl AsRef<OsStr>) -> &mut Buildimage {
        self.arg("build").arg(spec)
    }

    /// `build-layered SPEC`.
    pub fn build_layered(&mut self, spec: impl AsRef<OsStr>) -> &mut Buildimage {
        self.arg("build-layered").arg(spec)
    }

    /// `stream-layered SPEC`.
    pub fn stream_layered(&mut self, spec: impl AsRef<OsStr>) -> &mut Buildimage {
        self.arg("stream-layered").arg(spec)
    }

    /// `-o OUT`.
    pub fn out(&mut self, out: impl AsRef<OsStr>) -> &mut Buildimage {
        self.arg("-o").arg(out)
    }

    /// `--store DIR`.
    pub fn store(&mut self, dir: impl AsRef<OsStr>) -> &mut Buildimage {
        self.arg("--store").arg(dir)
    }

    /// Feeds `bytes` on standard input (else it is empty).
    pub fn stdin(&mut self, bytes: impl Into<Vec<u8>>) -> &mut Buildimage {
        self.stdin = Some(bytes.into());
        self
    }

    /// The command line as a [`Command`], standard input empty.
    pub fn command(&self) -> Command {
        let bin = match &self.nobody {
            Some(dir) => {
                let copy = dir.join("buildimage");
                std::fs::copy(Buildimage::bin(), &copy).unwrap_or_else(|err| {
                    panic!("cannot copy the binary to {}: {err}", copy.display())
                });
                chmod(&copy, 0o755);
                copy
            }
            None => Buildimage::bin(),
        };
        // The program and its leading arguments: [setpriv …] [sh -c 'umask …'] [THROUGH…] BIN.
        let mut argv: Vec<OsString> = Vec::new();
        if self.nobody.is_some() {
            require_tool("setpriv", "util-linux");
            argv.extend(
                [
                    "setpriv".to_owned(),
                    format!("--reuid={NOBODY}"),
                    format!("--regid={NOBODY}"),
                    "--clear-groups".to_owned(),
                ]
                .map(OsString::from),
            );
        }
        if let Some(umask) = &self.umask {
            argv.extend(
                [
                    "sh".to_owned(),
                    "-c".to_owned(),
                    format!("umask {umask}; exec \"$0\" \"$@\""),
                ]
                .map(OsString::from),
            );
        }
        argv.extend(self.through.iter().cloned());
        argv.push(bin.into_os_string());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd.args(&self.args)
            .env_remove("SOURCE_DATE_EPOCH")
            .stdin(Stdio::null());
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        cmd.envs(self.env.iter().map(|(key, value)| (key, value)));
        cmd
    }

    /// Starts it with standard output and error as given.
    pub fn spawn(&self, stdout: Stdio, stderr: Stdio) -> Child {
        self.command()
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start buildimage")
    }

    /// Runs it to the end and returns what it printed.
    pub fn output(&mut self) -> Output {
        let mut cmd = self.command();
        let Some(input) = &self.stdin else {
            return cmd.output().expect("start buildimage");
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start buildimage");
        let mut pipe = child.stdin.take().expect("piped stdin");
        let input = input.clone();
        let writer = std::thread::spawn(move || {
            // The binary may stop reading early (a bad spec); a broken pipe is no failure.
            let _ = pipe.write_all(&input);
        });
        let output = child.wait_with_output().expect("wait for buildimage");
        writer.join().expect("stdin writer");
        output
    }

    /// Runs it and panics, showing its standard error, unless it succeeds.
    pub fn run_ok(&mut self) -> Output {
        let output = self.output();
        assert!(
            output.status.success(),
            "buildimage failed ({}):\nstderr:\n{}",
            output.status,
            stderr(&output)
        );
        output
    }

    /// Runs it and panics unless it fails and prints nothing on standard output (every
    /// failure does: README, "Bad input and faults").
    pub fn run_err(&mut self) -> Output {
        let output = self.output();
        assert!(
            !output.status.success(),
            "buildimage succeeded but should have failed:\nstderr:\n{}",
            stderr(&output)
        );
        assert!(
            output.stdout.is_empty(),
            "a failed build printed on standard output:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        output
    }

    /// Adds `--json`, runs it, and checks that it succeeded, printed one JSON object and
    /// nothing else on standard output, and that `outPath`, when a path, exists.
    pub fn json(&mut self) -> Built {
        let output = self.arg("--json").run_ok();
        let info: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
            panic!(
                "--json must print one JSON object on stdout ({err}):\n{}",
                String::from_utf8_lossy(&output.stdout)
            )
        });
        let archive = PathBuf::from(
            info["outPath"]
                .as_str()
                .unwrap_or_else(|| panic!("--json has no outPath: {info:#}")),
        );
        // A file or an OCI layout folder; a registry or the Docker engine is no path.
        assert!(
            !archive.is_absolute() || archive.exists(),
            "outPath {} does not exist",
            archive.display()
        );
        Built {
            archive,
            info,
            stderr: stderr(&output),
        }
    }
}

/// Standard error, lossily decoded.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A successful build: the archive, what `--json` printed, and the warnings.
#[derive(Debug, Clone)]
pub struct Built {
    /// The image file (`outPath`).
    pub archive: PathBuf,
    /// The `--json` object: `imageName`, `imageTag`, `outPath`, `layer`, `configDigest`,
    /// `compressor`, `storePaths`, `buildArgs` (docs/formats.md §13.2).
    pub info: Value,
    /// Standard error: progress and warnings.
    pub stderr: String,
}

impl Built {
    /// `imageName:imageTag`, the name `docker load` should report.
    pub fn image(&self) -> String {
        format!("{}:{}", self.str("imageName"), self.str("imageTag"))
    }

    /// `imageTag`.
    pub fn tag(&self) -> &str {
        self.str("imageTag")
    }

    /// A string field of the `--json` object.
    pub fn str(&self, key: &str) -> &str {
        self.info[key]
            .as_str()
            .unwrap_or_else(|| panic!("--json has no string {key:?}: {:#}", self.info))
    }

    /// The new layer's diff id, `layer.diffId`.
    pub fn layer_diff_id(&self) -> String {
        self.info["layer"]["diffId"]
            .as_str()
            .unwrap_or_else(|| panic!("--json has no layer.diffId: {:#}", self.info))
            .to_owned()
    }

    /// `storePaths`, checked to be sorted and unique.
    pub fn store_paths(&self) -> BTreeSet<String> {
        let list: Vec<String> = self.info["storePaths"]
            .as_array()
            .unwrap_or_else(|| panic!("--json has no storePaths array: {:#}", self.info))
            .iter()
            .map(|p| p.as_str().expect("storePaths holds strings").to_owned())
            .collect();
        let set: BTreeSet<String> = list.iter().cloned().collect();
        assert!(
            list.iter().eq(set.iter()),
            "storePaths is not sorted and unique: {list:?}"
        );
        set
    }

    /// The archive's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.archive)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", self.archive.display()))
    }

    /// The archive, decompressed and read.
    pub fn read(&self) -> Image {
        Image::open(&self.archive)
    }
}
