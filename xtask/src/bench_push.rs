//! `cargo xtask bench destinations [small|large|many]`: sending an image where it is
//! wanted in one step, against the two steps users take today, alternating runs:
//!
//! - a cold push of the layered image (empty registry, empty cache) by `build-layered -o
//!   docker://…`, against `stream-layered -o FILE` then `skopeo copy docker-archive:FILE
//!   docker://…`;
//! - a warm push after one file of the customisation layer changed, the same two ways
//!   (skopeo with its own blob cache, as warm as ours);
//! - loading into Docker with `stream-layered -o docker-daemon:`, against `-o FILE` then
//!   `docker load -i FILE`.
//!
//! The registry is Debian's `docker-registry` on 127.0.0.1 (the test harness's), the
//! daemon a private dockerd.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use buildimage_test_support::{Registry, RegistryConfig};

use crate::bench::{median, peak_rss, prepare, shell_quote, table_title, timed};
use crate::dockerd::PrivateDockerd;
use crate::header;

/// What the reference pipelines need.
const PACKAGES: &[&str] = &["skopeo", "docker-registry", "docker.io", "time"];

/// The layer budget, nixpkgs' default.
const MAX_LAYERS: u32 = 100;

/// One row: ours against the reference, with the peak RSS of ours.
struct Row {
    label: &'static str,
    ours: Vec<f64>,
    reference: Vec<f64>,
    ratios: Vec<f64>,
    rss_kib: u64,
    note: String,
}

impl Row {
    fn new(label: &'static str) -> Self {
        Row {
            label,
            ours: Vec::new(),
            reference: Vec::new(),
            ratios: Vec::new(),
            rss_kib: 0,
            note: String::new(),
        }
    }

    fn add(&mut self, ours: f64, reference: f64, rss_kib: u64) {
        eprintln!(
            "  {}: buildimage {ours:.3} s ({rss_kib} KiB), reference {reference:.3} s",
            self.label
        );
        self.ours.push(ours);
        self.reference.push(reference);
        self.ratios.push(ours / reference);
        self.rss_kib = self.rss_kib.max(rss_kib);
    }
}

/// What every run needs.
struct Env {
    binary: PathBuf,
    work: PathBuf,
    corpus: PathBuf,
    top_name: String,
    time_file: PathBuf,
}

impl Env {
    /// A layered spec of the corpus's top path whose customisation layer holds `stamp`.
    fn spec(&self, name: &str, stamp: &str, stream: bool) -> Result<PathBuf> {
        let path = self.work.join(name);
        let compressor = if stream { "" } else { r#","compressor":"gz""# };
        std::fs::write(
            &path,
            format!(
                r#"{{"name":"bench","tag":"push","contents":["/nix/store/{}"],"maxLayers":{MAX_LAYERS},"extraCommands":"echo {stamp} > stamp"{compressor}}}"#,
                self.top_name
            ),
        )?;
        Ok(path)
    }

    /// `buildimage ARGS…` under GNU time (peak RSS into the time file).
    fn ours(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("/usr/bin/time");
        cmd.arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&self.time_file)
            .arg(&self.binary);
        cmd.args(args).arg("--store").arg(&self.corpus);
        cmd
    }

    fn rss(&self) -> u64 {
        peak_rss(&self.time_file)
    }

    /// `buildimage build-layered SPEC -o DEST` into a plain-HTTP registry with the layer
    /// cache `cache`, quiet, under GNU time.
    fn push(&self, spec: &Path, dest: &str, cache: &Path) -> Result<Command> {
        let mut cmd = self.ours(&["build-layered", path_str(spec)?, "-o", dest]);
        cmd.args(["--tls-verify=false", "--quiet", "--cache"])
            .arg(cache);
        Ok(cmd)
    }

    /// `bash -c LINE`.
    fn shell(line: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.args(["-o", "pipefail", "-c", line]);
        cmd
    }

    /// `buildimage stream-layered SPEC -o FILE && THEN` as the reference's two steps.
    fn two_steps(&self, spec: &Path, file: &Path, then: &str) -> Command {
        Self::shell(&format!(
            "{} stream-layered {} --store {} -o {} && {then}",
            shell_quote(&self.binary),
            shell_quote(spec),
            shell_quote(&self.corpus),
            shell_quote(file)
        ))
    }
}

/// Runs the destination benchmarks on the corpus `size` and prints a Markdown table.
pub fn bench(root: &Path, size: &str) -> Result<()> {
    let prepared = prepare(root, size, PACKAGES)?;
    let work = root.join("target/bench-push");
    std::fs::create_dir_all(&work)?;
    let env = Env {
        binary: prepared.binary,
        time_file: work.join("time.txt"),
        work,
        corpus: prepared.corpus,
        top_name: prepared.top_name,
    };
    let runs = if size == "small" { 5 } else { 3 };
    let rows = vec![
        cold_push(&env, runs)?,
        warm_push(&env, runs)?,
        daemon_load(&env, runs)?,
    ];
    print!("{}", table(size, runs, &rows));
    Ok(())
}

/// A cold push: a new registry and an empty cache for every run of either way.
fn cold_push(env: &Env, runs: usize) -> Result<Row> {
    header(&format!(
        "cold push: {runs} runs each, alternating, after one warm-up"
    ));
    let mut row =
        Row::new("push, cold: build-layered -o docker:// vs stream-layered + skopeo copy");
    let spec = env.spec("spec-cold.json", "cold", false)?;
    let stream_spec = env.spec("spec-cold-stream.json", "cold", true)?;
    let file = env.work.join("reference.tar");
    for run in 0..=runs {
        let cache = env.work.join("cache-cold");
        let _ = std::fs::remove_dir_all(&cache);
        let registry = Registry::start(RegistryConfig::plain());
        let dest = registry.docker_ref("app", "t");
        let ours = timed(&mut env.push(&spec, &dest, &cache)?)?;
        let rss = env.rss();
        drop(registry);
        let registry = Registry::start(RegistryConfig::plain());
        let skopeo = format!(
            "skopeo copy -q --dest-tls-verify=false docker-archive:{} {}",
            shell_quote(&file),
            registry.docker_ref("app", "t")
        );
        let reference = timed(&mut env.two_steps(&stream_spec, &file, &skopeo))?;
        drop(registry);
        if run > 0 {
            row.add(ours, reference, rss);
        }
    }
    Ok(row)
}

/// A warm push: the image was pushed before, then one file of its customisation layer
/// changes; both ways push the changed image to a registry that has the old one.
fn warm_push(env: &Env, runs: usize) -> Result<Row> {
    header(&format!(
        "warm push after one changed file: {runs} runs each, alternating"
    ));
    let mut row = Row::new(
        "push, warm, one file changed: build-layered -o docker:// vs stream-layered + skopeo copy",
    );
    let registry = Registry::start(RegistryConfig::plain());
    let ours_dest = registry.docker_ref("ours", "t");
    let ref_dest = registry.docker_ref("reference", "t");
    let cache = env.work.join("cache-warm");
    let _ = std::fs::remove_dir_all(&cache);
    let file = env.work.join("reference.tar");
    let mut last_json = String::new();
    for run in 0..=runs {
        let stamp = format!("run-{run}-{}", std::process::id());
        let spec = env.spec("spec-warm.json", &stamp, false)?;
        let stream_spec = env.spec("spec-warm-stream.json", &stamp, true)?;
        let ours = timed(&mut env.push(&spec, &ours_dest, &cache)?)?;
        let rss = env.rss();
        let skopeo = format!(
            "skopeo copy -q --dest-tls-verify=false docker-archive:{} {ref_dest}",
            shell_quote(&file)
        );
        let reference = timed(&mut env.two_steps(&stream_spec, &file, &skopeo))?;
        if run > 0 {
            row.add(ours, reference, rss);
        }
        if run == runs {
            // One more, untimed, to report what the warm push sent.
            let spec = env.spec("spec-warm.json", &format!("{stamp}-report"), false)?;
            let out = env
                .push(&spec, &ours_dest, &cache)?
                .arg("--json")
                .output()?;
            last_json = String::from_utf8_lossy(&out.stdout).into_owned();
        }
    }
    let info: serde_json::Value = serde_json::from_str(&last_json).context("the --json report")?;
    row.note = format!(
        "warm push sent {} blobs ({} bytes), skipped {}",
        info["push"]["blobsUploaded"], info["push"]["bytesUploaded"], info["push"]["blobsSkipped"]
    );
    Ok(row)
}

/// Loading into Docker: `-o docker-daemon:` against a file and `docker load`, the image
/// removed before every run.
fn daemon_load(env: &Env, runs: usize) -> Result<Row> {
    header(&format!("docker-daemon: {runs} runs each, alternating"));
    let mut row = Row::new("load: stream-layered -o docker-daemon: vs -o FILE + docker load");
    let mut dockerd = PrivateDockerd::start()?;
    let host = dockerd.host();
    let spec = env.spec("spec-daemon.json", "daemon", true)?;
    let file = env.work.join("reference.tar");
    let rmi = || {
        let _ = Command::new("/usr/bin/docker")
            .args(["-H", &host, "rmi", "-f", "bench:push"])
            .output();
        let _ = Command::new("/usr/bin/docker")
            .args(["-H", &host, "image", "prune", "-af"])
            .output();
    };
    for run in 0..=runs {
        rmi();
        let ours = timed(
            env.ours(&[
                "stream-layered",
                path_str(&spec)?,
                "-o",
                "docker-daemon:",
                "--quiet",
            ])
            .env("DOCKER_HOST", &host),
        )?;
        let rss = env.rss();
        rmi();
        let load = format!(
            "/usr/bin/docker -H {host} load -q -i {}",
            shell_quote(&file)
        );
        let reference = timed(&mut env.two_steps(&spec, &file, &load))?;
        if run > 0 {
            row.add(ours, reference, rss);
        }
    }
    rmi();
    dockerd.stop()?;
    Ok(row)
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().context("a path that is not UTF-8")
}

// Memory figures are far below 2^52: the float conversion is exact enough.
#[allow(clippy::cast_precision_loss)]
fn table(size: &str, runs: usize, rows: &[Row]) -> String {
    let mut out = table_title(size, runs);
    let _ = writeln!(
        out,
        "| row | buildimage median s | reference median s | ratio (median of pairs) | buildimage peak RSS |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {:.3} | {:.3} | {:.3} | {:.1} MiB |",
            r.label,
            median(&r.ours),
            median(&r.reference),
            median(&r.ratios),
            r.rss_kib as f64 / 1024.0
        );
    }
    for r in rows.iter().filter(|r| !r.note.is_empty()) {
        let _ = writeln!(out, "\n{}: {}", r.label, r.note);
    }
    out
}
