//! The command line: every command, option and help text, for the binary and for the
//! generated completions and man pages.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    /// Print a completion script for SHELL on standard output.
    Completions(CompletionsArgs),
}

/// Arguments of `buildimage build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The spec file, or `-` for standard input.
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// Where the image goes (`-` for standard output). Default:
    /// `docker-image-<name>.tar[.gz|.zst]` in the current folder.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub out: Option<PathBuf>,
    /// Where store paths come from.
    #[command(flatten)]
    pub source: StoreArgs,
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
    /// Where the image goes (`-` for standard output). Default: `<name>.tar[.gz|.zst]`
    /// in the current folder for build-layered, standard output for stream-layered.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub out: Option<PathBuf>,
    /// Where store paths come from.
    #[command(flatten)]
    pub source: StoreArgs,
    /// Print what was built (imageName, imageTag, layers, …) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
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

/// Arguments of `buildimage completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}
