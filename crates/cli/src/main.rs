//! `buildimage`: build container images from nixpkgs dockerTools specs, without Nix,
//! without a virtual machine.

mod commands;
mod keys;
mod progress;
mod report;
mod signals;

use std::process::ExitCode;

use clap::Parser;

use buildimage_cli::args::{Cli, Command};
use buildimage_cli::spec::layered::Function;

fn main() -> ExitCode {
    // The sandbox's helper processes re-execute this binary: they must not meet clap.
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
    let result = match &cli.command {
        Command::Build(args) => commands::build::run(args, cli.quiet, &signals, user_umask.bits()),
        Command::BuildLayered(args) => commands::layered::run(
            args,
            Function::Build,
            cli.quiet,
            &signals,
            user_umask.bits(),
        ),
        Command::StreamLayered(args) => commands::layered::run(
            args,
            Function::Stream,
            cli.quiet,
            &signals,
            user_umask.bits(),
        ),
        Command::NixBuild(args) => commands::nix_build::run(args),
        Command::Cache(args) => commands::cache::run(args, cli.quiet),
        Command::Completions(args) => {
            commands::completions::run(args);
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if let Some(signal) = signals.received() {
                eprintln!(
                    "error: interrupted by {}, nothing was written",
                    signal.as_str()
                );
                return ExitCode::from(128 + u8::try_from(signal as i32).unwrap_or(0));
            }
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
