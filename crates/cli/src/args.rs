//! The command line: every command, option and help text, for the binary and for the
//! generated completions and man pages.

use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand, ValueEnum};

/// The version line: the crate's version and the git revision it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("BUILDIMAGE_GIT_REVISION"),
    ")"
);

/// Build container images from nixpkgs dockerTools arguments, without Nix, without a
/// virtual machine.
#[derive(Debug, Parser)]
#[command(name = "buildimage", version = VERSION, about, long_about = None)]
pub struct Cli {
    /// Print no progress and no summary on standard error (warnings and errors still).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a SPEC: a JSON object of buildImage arguments.
    Build(BuildArgs),
    /// Build a layered image from a SPEC of buildLayeredImage arguments: one layer per
    /// popular store path, the archive compressed per `compressor`.
    BuildLayered(LayeredArgs),
    /// Write a layered image from a SPEC of streamLayeredImage arguments as a plain
    /// archive, to standard output unless -o says otherwise: `… | docker load`.
    StreamLayered(LayeredArgs),
    /// The builder of the Nix functions (nix/default.nix): build what a derivation's
    /// structured attributes (`.attrs.json`) describe into its outputs.
    NixBuild(NixBuildArgs),
    /// Manage the layer cache.
    Cache(CacheArgs),
    /// Print a completion script for SHELL on standard output.
    Completions(CompletionsArgs),
}

/// Arguments of `buildimage build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The spec file, or `-` for standard input.
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// Where the image goes: a file (`-`: standard output), `oci:DIR[:REF]`,
    /// `oci-archive:PATH[:REF]`, `docker://HOST[:PORT]/REPO[:TAG]` or `docker-daemon:`. Default:
    /// `docker-image-<name>.tar[.gz|.zst]` in the current folder.
    #[arg(short = 'o', long = "output", value_name = "DEST")]
    pub out: Option<PathBuf>,
    /// How the image is sent.
    #[command(flatten)]
    pub dest: DestArgs,
    /// Where store paths come from.
    #[command(flatten)]
    pub source: StoreArgs,
    /// What scripts may use.
    #[command(flatten)]
    pub scripts: ScriptArgs,
    /// Limits on the base image.
    #[command(flatten)]
    pub base: BaseArgs,
    /// Print the passthru information (imageName, imageTag, layer, …) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `buildimage build-layered` and `buildimage stream-layered`.
#[derive(Debug, clap::Args)]
pub struct LayeredArgs {
    /// The spec file, or `-` for standard input.
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// Where the image goes: a file (`-`: standard output), `oci:DIR[:REF]`,
    /// `oci-archive:PATH[:REF]`, `docker://HOST[:PORT]/REPO[:TAG]` or `docker-daemon:`. Default:
    /// `<name>.tar[.gz|.zst]` in the current folder for build-layered, standard output for
    /// stream-layered.
    #[arg(short = 'o', long = "output", value_name = "DEST")]
    pub out: Option<PathBuf>,
    /// How the image is sent.
    #[command(flatten)]
    pub dest: DestArgs,
    /// Where store paths come from.
    #[command(flatten)]
    pub source: StoreArgs,
    /// What scripts may use.
    #[command(flatten)]
    pub scripts: ScriptArgs,
    /// Limits on the base image.
    #[command(flatten)]
    pub base: BaseArgs,
    /// Print what was built (imageName, imageTag, layers, …) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Limits of `runAsRoot` and `fakeRootCommands`.
#[derive(Debug, clap::Args)]
pub struct ScriptArgs {
    /// How long runAsRoot or fakeRootCommands may run before it is stopped with everything
    /// it started: a number of seconds, or with a unit (`90s`, `30m`, `2h`); `0` for no
    /// limit.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub script_timeout: Timeout,
}

/// A time limit; `None`: no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Option<std::time::Duration>);

/// `90`, `90s`, `30m`, `2h`; `0`: none.
fn parse_duration(text: &str) -> Result<Timeout, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let seconds_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => {
            return Err(format!(
                "{text:?}: expected a number of seconds, or one with s, m or h"
            ));
        }
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number of seconds, or one with s, m or h"))?;
    Ok(Timeout((number > 0).then(|| {
        std::time::Duration::from_secs(number.saturating_mul(seconds_per))
    })))
}

/// Where a build finds store paths and their references: `--store`, `--closure-info`.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// The folder that holds the Nix store to read store paths from, as `nix --store`.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub store: PathBuf,
    /// A closure listing for the store paths: a `closureInfo` output folder (with
    /// `registration` and `store-paths`), or a `registration` or exportReferencesGraph
    /// file. Same as the spec key `closureInfo`, which it replaces.
    #[arg(long, value_name = "PATH")]
    pub closure_info: Option<PathBuf>,
}

/// Limits on reading the base image (`fromImage`), which is untrusted input.
#[derive(Debug, clap::Args)]
pub struct BaseArgs {
    /// The most bytes the base archive and its layers may expand to when decompressed
    /// (suffixes K, M, G, T: powers of 1024), checked while they are read. Default: 32
    /// times the archive's size, at least 1G, at most 64G.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub max_base_size: Option<u64>,
}

/// A byte count: digits, then optionally `K`, `M`, `G` or `T` (powers of 1024, either
/// case, `KiB` and `KB` too).
///
/// ```
/// use buildimage_cli::args::parse_size;
/// assert_eq!(parse_size("4096"), Ok(4096));
/// assert_eq!(parse_size("64G"), Ok(64 << 30));
/// assert_eq!(parse_size("3MiB"), Ok(3 << 20));
/// assert!(parse_size("1.5G").is_err());
/// assert!(parse_size("99999999999T").is_err());
/// ```
pub fn parse_size(text: &str) -> Result<u64, String> {
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits);
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => {
            return Err(format!(
                "expected a number of bytes with an optional K, M, G or T, got {text:?}"
            ));
        }
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("expected a number of bytes, got {text:?}"))?;
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text} is more than 2^64 bytes"))
}

/// How an image is sent to its destination: manifest format, registry access, the layer
/// cache.
#[derive(Debug, clap::Args)]
pub struct DestArgs {
    /// Media types of the manifest, config and layers for `oci:`, `oci-archive:` and
    /// `docker://`: `oci` (default) or `docker` (Docker's schema 2).
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        default_value_t = Format::Oci,
        hide_possible_values = true,
        hide_default_value = true
    )]
    pub format: Format,
    /// Registry credentials (`docker://`), instead of those of an auth file.
    #[arg(long, value_name = "USER[:PASSWORD]")]
    pub creds: Option<String>,
    /// Registry auth file. Default: `$REGISTRY_AUTH_FILE`,
    /// `$XDG_RUNTIME_DIR/containers/auth.json`, then `~/.docker/config.json`.
    #[arg(long, value_name = "PATH")]
    pub authfile: Option<PathBuf>,
    /// Require HTTPS and verified certificates from the registry (default);
    /// `--tls-verify=false` allows plain HTTP and unverified TLS.
    #[arg(
        long,
        value_name = "BOOL",
        default_value_t = true,
        hide_possible_values = true,
        hide_default_value = true,
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub tls_verify: bool,
    /// Folder of certificates to trust (`*.crt`: a CA, or the registry's own self-signed
    /// certificate) and a client certificate (`*.cert`, `*.key`) for the registry.
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// The layer cache, which lets `oci:` and `docker://` skip store layers they hold without
    /// reading them. Default: `$XDG_CACHE_HOME/buildimage` (`~/.cache/buildimage`).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Use no layer cache: every layer is read.
    #[arg(long, conflicts_with = "cache")]
    pub no_cache: bool,
}

/// The media types of an image stored as blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The OCI image specification's.
    Oci,
    /// Docker's image manifest schema 2.
    Docker,
}

/// Arguments of `buildimage cache`.
#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    /// What to do with the cache.
    #[command(subcommand)]
    pub command: CacheCommand,
}

/// What `buildimage cache` does.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Remove the oldest entries until the cache holds at most --max-size bytes.
    Gc {
        /// The cache folder. Default: `$XDG_CACHE_HOME/buildimage` (`~/.cache/buildimage`).
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
        /// Bytes to keep, counting 4 KiB per entry (`0` empties the cache; suffixes K, M,
        /// G, T: powers of 1024).
        #[arg(long, value_name = "BYTES", default_value_t = 64 << 20, value_parser = parse_size)]
        max_size: u64,
    },
}

/// Arguments of `buildimage completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// Arguments of `buildimage nix-build`.
#[derive(Debug, clap::Args)]
pub struct NixBuildArgs {
    /// The dockerTools function the derivation stands for.
    #[arg(value_enum, value_name = "FUNCTION")]
    pub function: NixFunction,
    /// The structured attributes. Default: `$NIX_ATTRS_JSON_FILE`, else
    /// `$NIX_BUILD_TOP/.attrs.json` (where Nix writes them).
    #[arg(long, value_name = "PATH")]
    pub attrs: Option<PathBuf>,
}

/// What `buildimage nix-build` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NixFunction {
    /// `buildImage`: `$out` is the image, `$layer` its layer's report.
    Build,
    /// `buildLayeredImage`: `$out` is the image.
    BuildLayered,
    /// `streamLayeredImage`: `$out` is an executable that streams the image, `$conf` holds
    /// the spec it runs and the closure listing of its store paths.
    StreamLayered,
}

#[cfg(test)]
mod tests {
    use super::{Timeout, parse_duration};
    use std::time::Duration;

    #[test]
    fn durations_read_with_or_without_a_unit() {
        let secs = |n| Ok(Timeout(Some(Duration::from_secs(n))));
        assert_eq!(parse_duration("90"), secs(90));
        assert_eq!(parse_duration("30m"), secs(1800));
        assert_eq!(parse_duration("2h"), secs(7200));
        assert_eq!(parse_duration("0"), Ok(Timeout(None)));
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("m").is_err());
    }
}
