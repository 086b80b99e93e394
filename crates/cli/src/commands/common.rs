//! What the build commands share: reading the spec, the request's context, the output
//! they write into, and how it is committed.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use buildimage_archive::{
    Compressed, Compressor, Counting, Destination, DockerArchive, ImageSummary, Layout, Output,
};
use buildimage_cli::args::StoreArgs;
use buildimage_cli::request::Context as RequestContext;
use buildimage_pipeline::Env;

use crate::keys::InputNames;
use crate::progress::Progress;
use crate::report;
use crate::signals::Signals;

/// Reads the spec and returns its text and the folder its relative paths start from.
pub fn read_spec(path: &Path) -> Result<(String, PathBuf)> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("Cannot read the spec from standard input")?;
        return Ok((text, std::env::current_dir()?));
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("Cannot read the spec {}", path.display()))?;
    let dir = std::path::absolute(path)?
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_owned);
    Ok((text, dir))
}

/// `--json` needs standard output for itself.
pub fn refuse_json_on_stdout(json: bool, dest: &Path) -> Result<()> {
    if json && dest == Path::new("-") {
        bail!(
            "--json prints to standard output, which the image already takes (-o -, or \
             stream-layered without -o); give -o FILE"
        );
    }
    Ok(())
}

/// What resolving a spec takes from the environment and the options.
pub fn context(source: &StoreArgs) -> RequestContext {
    RequestContext {
        source_date_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        store: source.store.clone(),
        closure_info: source.closure_info.clone(),
    }
}

/// A docker-archive being written to its output: a temporary file beside OUT, or a
/// stream, through the whole-archive compressor.
pub struct Target {
    /// The archive, the destination the pipeline writes into.
    pub archive: DockerArchive<Compressed<Counting<Output>>>,
    /// Where it goes, for messages (`-` for standard output).
    pub shown: PathBuf,
}

impl Target {
    /// Opens `dest` (mode 0666 less the caller's umask) for an archive in `layout`.
    pub fn open(
        dest: &Path,
        user_umask: u32,
        compressor: Compressor,
        layout: Layout,
    ) -> Result<Self> {
        let output = Output::open(dest, 0o666 & !user_umask)?;
        let shown = output.dest();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let stream = Compressed::new(Counting::new(output), compressor, threads)
            .context("Cannot start the compressor")?;
        Ok(Target {
            archive: DockerArchive::new(stream, layout),
            shown,
        })
    }

    /// Ends the archive and makes it visible at its path; returns the bytes written.
    pub fn commit(self, signals: &Signals) -> Result<u64> {
        let shown = self.shown;
        let written = || format!("Writing {} failed", shown.display());
        let counted = self
            .archive
            .into_inner()
            .with_context(written)?
            .finish()
            .with_context(written)?;
        let size = counted.count();
        if signals.received().is_some() {
            bail!("Interrupted");
        }
        counted.into_inner().commit()?;
        Ok(size)
    }

    /// The output's absolute path for `--json` (`-` for standard output).
    pub fn out_path(&self) -> PathBuf {
        if self.shown == Path::new("-") {
            self.shown.clone()
        } else {
            std::path::absolute(&self.shown).unwrap_or_else(|_| self.shown.clone())
        }
    }
}

/// How a checked request becomes an image file: where, in which layout and compression,
/// and what the run reports to.
pub struct Writing<'a> {
    /// OUT, or `-`.
    pub dest: &'a Path,
    /// The caller's umask, for OUT's mode.
    pub user_umask: u32,
    /// Whole-archive compression.
    pub compressor: Compressor,
    /// The docker-archive's layout.
    pub layout: Layout,
    /// `--quiet`: no summary.
    pub quiet: bool,
    /// SIGINT and SIGTERM.
    pub signals: &'a Signals,
    /// Progress on standard error.
    pub progress: &'a Progress<'a>,
    /// How inputs are named in errors.
    pub names: &'a InputNames,
}

impl Writing<'_> {
    /// Opens the output, runs `build` (a pipeline) into it, commits it and prints the
    /// summary of what `summary` says was built. Returns what `build` returned and the
    /// output's path for `--json`.
    pub fn run<T>(
        &self,
        build: impl FnOnce(&Env<'_>, &mut dyn Destination) -> Result<T, buildimage_pipeline::Error>,
        summary: impl FnOnce(&T) -> (&str, &ImageSummary),
    ) -> Result<(T, PathBuf)> {
        let mut target = Target::open(self.dest, self.user_umask, self.compressor, self.layout)?;
        let env = Env::new(self.signals.cancel(), self.progress);
        let built = build(&env, &mut target.archive).map_err(|e| self.names.error(e))?;
        let out_path = target.out_path();
        let shown = target.shown.clone();
        let written = target.commit(self.signals)?;
        self.progress.finish();
        if !self.quiet {
            let (name, image) = summary(&built);
            report::summary(self.progress, &shown, name, image, written);
        }
        Ok((built, out_path))
    }
}

/// Prints the `--json` report: what every build reports (`imageName`, `imageTag`,
/// `outPath`, `configDigest`, `compressor`, `buildArgs`) and the command's own `fields`.
pub fn print_report(
    name: &str,
    image: &ImageSummary,
    out_path: &Path,
    compressor: Compressor,
    build_args: &serde_json::Value,
    fields: serde_json::Value,
) -> Result<()> {
    let mut info = serde_json::json!({
        "imageName": name,
        "imageTag": image.tag,
        "outPath": out_path,
        "configDigest": format!("sha256:{}", image.config_digest),
        "compressor": compressor.as_str(),
        "buildArgs": build_args,
    });
    if let (Some(info), serde_json::Value::Object(fields)) = (info.as_object_mut(), fields) {
        info.extend(fields);
    }
    println!("{}", serde_json::to_string_pretty(&info)?);
    Ok(())
}

/// Prints the spec's warnings (deprecated keys, ignored ones) on standard error.
pub fn print_warnings(progress: &Progress<'_>, warnings: &[String]) {
    for warning in warnings {
        progress.println(&format!("warning: {warning}"));
    }
}
