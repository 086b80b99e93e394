//! `buildimage`: build docker-archive images from nixpkgs `dockerTools.buildImage` specs,
//! without Nix, without a virtual machine.

mod build;
mod closure;
mod output;
mod script;
mod signals;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The spec parser is in the library half of the crate, where it is fuzzed; the modules of
// the binary reach it as `crate::spec`.
use buildimage_cli::spec;

/// Build container images from `dockerTools.buildImage` arguments.
#[derive(Debug, Parser)]
#[command(name = "buildimage", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an image from a SPEC: a JSON object of buildImage arguments.
    Build(BuildArgs),
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
    /// The folder that holds the Nix store to read store paths from, as `nix --store`.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub store: PathBuf,
    /// A closure listing for the store paths: a `closureInfo` output folder (with
    /// `registration` and `store-paths`), or a `registration` or exportReferencesGraph
    /// file. Same as the spec key `closureInfo`, which it replaces.
    #[arg(long, value_name = "PATH")]
    pub closure_info: Option<PathBuf>,
    /// Print the passthru information (imageName, imageTag, layer, …) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

fn main() -> ExitCode {
    // runAsRoot's helper processes re-execute this binary: they must not meet clap.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == buildimage_sandbox::SANDBOX_COMMAND)
    {
        return buildimage_sandbox::sandbox_main(&std::env::args_os().collect::<Vec<_>>());
    }
    let cli = Cli::parse();
    let signals = match signals::Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Files that scripts and staging create get the modes a Nix build gives them, whatever
    // the caller's umask; the image file itself is created with the caller's.
    let user_umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let result = match cli.command {
        Command::Build(args) => build::run(&args, &signals, user_umask.bits()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if let Some(signal) = signals.received() {
                eprintln!("error: interrupted by {signal}, nothing was written");
                return ExitCode::from(128 + u8::try_from(signal.number()).unwrap_or(0));
            }
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
