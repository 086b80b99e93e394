//! `buildimage completions SHELL`: a completion script on standard output.

use clap::CommandFactory;

use buildimage_cli::args::{Cli, CompletionsArgs};

/// Prints the completion script for the shell `args` names.
pub fn run(args: &CompletionsArgs) {
    let mut command = Cli::command();
    clap_complete::generate(
        args.shell,
        &mut command,
        "buildimage",
        &mut std::io::stdout(),
    );
}
