//! What the build commands share: reading the spec, the request's context, the output
//! they write into, and how it is committed.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use buildimage_archive::{
    BlobImage, BlobStats, BlobStore, Compressed, Compressor, Counting, Destination, DockerArchive,
    ImageSummary, LayerCache, LayerRecord, Layout, ManifestFormat, OciArchive, OciLayout, Output,
    cache,
};
use buildimage_cli::args::{BaseArgs, DestArgs, Format, ScriptArgs, StoreArgs};
use buildimage_cli::destination::Dest;
use buildimage_pipeline::Input;
use buildimage_remote::daemon::{Endpoint, Load};
use buildimage_remote::registry::{Registry, RegistryOptions, Target as RegistryTarget};

use buildimage_cli::request::Context as RequestContext;
use buildimage_pipeline::Env;

use crate::keys::InputNames;
use crate::progress::Progress;
use crate::report;
use crate::signals::Signals;

/// Reads the spec and returns its text and the folder its relative paths start from. A
/// first line starting with `#!` is left out (kept as an empty line, so that positions in
/// errors stay right): a spec under `#!/path/to/buildimage stream-layered` is an
/// executable that streams its image, as the Nix function `streamLayeredImage` makes them.
pub fn read_spec(path: &Path) -> Result<(String, PathBuf)> {
    let (text, dir) = read_spec_text(path)?;
    Ok((without_interpreter_line(text), dir))
}

fn without_interpreter_line(text: String) -> String {
    if text.starts_with("#!") {
        text.find('\n')
            .map_or_else(String::new, |end| text[end..].to_owned())
    } else {
        text
    }
}

fn read_spec_text(path: &Path) -> Result<(String, PathBuf)> {
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
pub fn refuse_json_on_stdout(json: bool, dest: &Dest) -> Result<()> {
    if json && dest.is_stdout() {
        bail!(
            "--json prints to standard output, which the image already takes (-o -, or \
             stream-layered without -o); give -o FILE"
        );
    }
    Ok(())
}

/// What resolving a spec takes from the environment and the options.
pub fn context(source: &StoreArgs, base: &BaseArgs) -> RequestContext {
    RequestContext {
        source_date_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        store: source.store.clone(),
        closure_info: source.closure_info.clone(),
        max_base_size: base.max_base_size,
    }
}

/// Where the image is being written: a docker-archive file or stream through the
/// whole-archive compressor, the Docker engine, or blobs in a layout or a registry.
enum Sink {
    /// A docker-archive file, or standard output.
    Archive(DockerArchive<Compressed<Counting<Output>>>),
    /// The Docker engine, loading a plain docker-archive as it is written.
    Daemon(DockerArchive<Counting<Load>>),
    /// An OCI layout folder.
    Oci(BlobImage<OciLayout>),
    /// An OCI layout as one tar file.
    OciArchive(BlobImage<OciArchive<Counting<Output>>>),
    /// A registry.
    Registry(BlobImage<Registry>),
}

/// What a destination reports once the image is there.
pub struct Sent {
    /// Bytes written, for destinations that are one stream (archives).
    pub written: Option<u64>,
    /// Blobs sent and skipped, for destinations of blobs.
    pub blobs: Option<BlobStats>,
    /// What the Docker engine said it loaded.
    pub loaded: Vec<String>,
}

impl Sink {
    fn open(writing: &Writing<'_>) -> Result<Self> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let mode = 0o666 & !writing.user_umask;
        let format = match writing.options.format {
            Format::Oci => ManifestFormat::Oci,
            Format::Docker => ManifestFormat::Docker,
        };
        Ok(match writing.dest {
            Dest::Archive(path) => {
                let output = Output::open(path, mode)?;
                let stream = Compressed::new(Counting::new(output), writing.compressor, threads)
                    .context("Cannot start the compressor")?;
                Sink::Archive(DockerArchive::new(stream, writing.layout))
            }
            Dest::Daemon => {
                let load = Load::start(&Endpoint::from_env()?, writing.signals.cancel())?;
                Sink::Daemon(DockerArchive::new(Counting::new(load), writing.layout))
            }
            Dest::Oci { dir, reference } => Sink::Oci(blob_image(
                OciLayout::open(dir, reference.clone())?,
                writing,
                format,
                threads,
            )?),
            Dest::OciArchive { path, reference } => {
                let output = Output::open(path, mode)?;
                // Blobs are staged beside the archive, on its disk; a stream (standard
                // output, a fifo) is staged in TMPDIR.
                let folder = match &output {
                    Output::File { dest, .. } => dest
                        .parent()
                        .filter(|p| !p.as_os_str().is_empty())
                        .map_or_else(|| PathBuf::from("."), Path::to_owned),
                    Output::Stream { .. } => std::env::temp_dir(),
                };
                let archive = OciArchive::new(Counting::new(output), &folder, reference.clone())?;
                Sink::OciArchive(blob_image(archive, writing, format, threads)?)
            }
            Dest::Registry(target) => {
                let target = RegistryTarget::parse(target).map_err(anyhow::Error::msg)?;
                let options = RegistryOptions {
                    creds: writing.options.creds.clone(),
                    authfile: writing.options.authfile.clone(),
                    tls_verify: writing.options.tls_verify,
                    cert_dir: writing.options.cert_dir.clone(),
                    cancel: writing.signals.cancel().clone(),
                };
                Sink::Registry(blob_image(
                    Registry::connect(&target, &options)?,
                    writing,
                    format,
                    threads,
                )?)
            }
        })
    }

    fn destination(&mut self) -> &mut dyn Destination {
        match self {
            Sink::Archive(d) => d,
            Sink::Daemon(d) => d,
            Sink::Oci(d) => d,
            Sink::OciArchive(d) => d,
            Sink::Registry(d) => d,
        }
    }

    /// Completes what the image's manifest did not: ends and renames an archive file,
    /// waits for the engine's answer. Returns what was sent.
    fn commit(self, signals: &Signals, sending: &str) -> Result<Sent> {
        let written = || format!("{sending} failed");
        let interrupted = || -> Result<()> {
            if signals.received().is_some() {
                bail!("Interrupted");
            }
            Ok(())
        };
        let mut sent = Sent {
            written: None,
            blobs: None,
            loaded: Vec::new(),
        };
        match self {
            Sink::Archive(archive) => {
                let counted = archive
                    .into_inner()
                    .with_context(written)?
                    .finish()
                    .with_context(written)?;
                sent.written = Some(counted.count());
                interrupted()?;
                counted.into_inner().commit()?;
            }
            Sink::Daemon(archive) => {
                let counted = archive.into_inner().with_context(written)?;
                sent.written = Some(counted.count());
                interrupted()?;
                sent.loaded = counted.into_inner().finish()?.messages;
            }
            Sink::Oci(image) => sent.blobs = Some(image.into_store().1),
            Sink::Registry(image) => sent.blobs = Some(image.into_store().1),
            Sink::OciArchive(image) => {
                let (archive, stats) = image.into_store();
                let counted = archive.into_inner().with_context(written)?;
                sent.written = Some(counted.count());
                sent.blobs = Some(stats);
                interrupted()?;
                counted.into_inner().commit()?;
            }
        }
        Ok(sent)
    }
}

/// An image of blobs into `store`, compressed and cached as `writing` says.
fn blob_image<S: BlobStore>(
    store: S,
    writing: &Writing<'_>,
    format: ManifestFormat,
    threads: u32,
) -> Result<BlobImage<S>> {
    let cache = open_cache(writing.options, writing.progress)?;
    Ok(BlobImage::new(
        store,
        writing.compressor,
        format,
        threads,
        cache,
    )?)
}

/// The layer cache `options` ask for: none with `--no-cache`; `--cache DIR` must open; the
/// default folder is used when it can be, with a warning when not.
fn open_cache(options: &DestArgs, progress: &Progress<'_>) -> Result<Option<LayerCache>> {
    if options.no_cache {
        return Ok(None);
    }
    if let Some(dir) = &options.cache {
        return Ok(Some(
            LayerCache::open(dir, cache::DEFAULT_LIMIT)
                .with_context(|| format!("Cannot use the layer cache {}", dir.display()))?,
        ));
    }
    let Some(dir) = LayerCache::default_dir() else {
        return Ok(None);
    };
    match LayerCache::open(&dir, cache::DEFAULT_LIMIT) {
        Ok(cache) => Ok(Some(cache)),
        Err(e) => {
            progress.println(&format!(
                "warning: no layer cache ({e}); every layer is read (--cache DIR chooses another)"
            ));
            Ok(None)
        }
    }
}

/// How a checked request becomes an image at its destination: where, in which layout and
/// compression, and what the run reports to.
pub struct Writing<'a> {
    /// Where the image goes.
    pub dest: &'a Dest,
    /// How it is sent.
    pub options: &'a DestArgs,
    /// The caller's umask, for OUT's mode.
    pub user_umask: u32,
    /// Whole-archive compression, or per-layer for destinations of blobs.
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
    /// `--script-timeout`.
    pub scripts: &'a ScriptArgs,
}

impl Writing<'_> {
    /// Opens the destination, runs `build` (a pipeline) into it, completes it and prints
    /// the summary of what `summary` says was built. Returns what `build` returned and
    /// what was sent.
    pub fn run<T>(
        &self,
        build: impl FnOnce(&Env<'_>, &mut dyn Destination) -> Result<T, buildimage_pipeline::Error>,
        summary: impl FnOnce(&T) -> (&str, &ImageSummary),
    ) -> Result<(T, Sent)> {
        let mut sink = Sink::open(self).with_context(|| self.names.name(Input::Destination))?;
        let mut env = Env::new(self.signals.cancel(), self.progress);
        env.script_limits.timeout = self.scripts.script_timeout.0;
        let built = build(&env, sink.destination()).map_err(|e| self.names.error(e))?;
        let sent = sink.commit(self.signals, &sending(self.dest))?;
        self.progress.finish();
        if !self.quiet {
            let (name, image) = summary(&built);
            report::summary(self.progress, self.dest, name, image, &sent);
        }
        Ok((built, sent))
    }
}

/// The `outPath` of `--json`: the absolute path of a file or folder, `-` for standard
/// output, the destination as given otherwise.
pub fn out_path(dest: &Dest) -> String {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    match dest {
        _ if dest.is_stdout() => "-".to_owned(),
        Dest::Archive(path) | Dest::Oci { dir: path, .. } | Dest::OciArchive { path, .. } => {
            absolute(path).display().to_string()
        }
        Dest::Registry(_) | Dest::Daemon => dest.shown(),
    }
}

/// The destination of `-o DEST`, or `default` (a file) without `-o`.
pub fn parse_dest(out: Option<&Path>, default: impl FnOnce() -> PathBuf) -> Result<Dest> {
    match out {
        Some(out) => Dest::parse(out).map_err(anyhow::Error::msg),
        None => Ok(Dest::Archive(default())),
    }
}

/// What sending the image to `dest` is called in its errors.
pub fn sending(dest: &Dest) -> String {
    match dest {
        Dest::Registry(_) => format!("Pushing to {}", dest.shown()),
        Dest::Daemon => "Loading into the Docker engine".to_owned(),
        _ => format!("Writing {}", dest.shown()),
    }
}

/// The `--json` fields of a layer stored as a blob: `digest`, `mediaType`,
/// `compressedSize`; nothing for a layer of a docker-archive.
pub fn blob_fields(record: &LayerRecord, layer: &mut serde_json::Value) {
    if let Some(blob) = &record.blob {
        layer["digest"] = serde_json::json!(blob.digest);
        layer["mediaType"] = serde_json::json!(blob.media_type);
        layer["compressedSize"] = serde_json::json!(blob.size);
    }
}

/// Prints the `--json` report: what every build reports (`imageName`, `imageTag`,
/// `outPath`, `configDigest`, `compressor`, `buildArgs`) and the command's own `fields`.
pub fn print_report(
    name: &str,
    image: &ImageSummary,
    dest: &Dest,
    sent: &Sent,
    compressor: Compressor,
    build_args: &serde_json::Value,
    fields: serde_json::Value,
) -> Result<()> {
    let mut info = serde_json::json!({
        "imageName": name,
        "imageTag": image.tag,
        "outPath": out_path(dest),
        "configDigest": format!("sha256:{}", image.config_digest),
        "compressor": compressor.as_str(),
        "buildArgs": build_args,
    });
    if let Some(manifest) = sent.blobs.as_ref().and_then(|b| b.manifest.as_ref()) {
        info["manifestDigest"] = serde_json::json!(manifest.digest);
    }
    if let (Dest::Registry(_), Some(blobs)) = (dest, &sent.blobs) {
        info["push"] = serde_json::json!({
            "manifestDigest": blobs.manifest.as_ref().map(|m| &m.digest),
            "blobsUploaded": blobs.uploaded,
            "blobsSkipped": blobs.skipped,
            "bytesUploaded": blobs.bytes,
        });
    }
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

#[cfg(test)]
mod tests {
    use super::without_interpreter_line;

    #[test]
    fn an_interpreter_line_becomes_an_empty_line() {
        let script = "#!/nix/store/x-buildimage/bin/buildimage stream-layered\n{\"name\": \"a\"}\n";
        assert_eq!(
            without_interpreter_line(script.to_owned()),
            "\n{\"name\": \"a\"}\n"
        );
        assert_eq!(without_interpreter_line("#!only".to_owned()), "");
        assert_eq!(without_interpreter_line("{}".to_owned()), "{}");
    }
}
