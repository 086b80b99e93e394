//! `cargo xtask man`: the man pages of `buildimage` and of each of its commands, rendered
//! from the command line's own definition, so they never disagree with `--help`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;

use buildimage_cli::args::Cli;

/// Writes `buildimage.1`, `buildimage-<command>.1` and, for commands of commands,
/// `buildimage-<command>-<subcommand>.1` into `dir` and returns their paths.
pub fn man(dir: &Path) -> Result<Vec<PathBuf>> {
    fs_err::create_dir_all(dir)?;
    let command = Cli::command();
    let mut written = Vec::new();
    let mut render = |name: String, command: clap::Command| -> Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(command.name(name.clone()))
            .render(&mut page)
            .with_context(|| format!("Cannot render {name}.1"))?;
        fs_err::write(&path, page)?;
        written.push(path);
        Ok(())
    };
    for sub in command.get_subcommands() {
        let name = format!("buildimage-{}", sub.get_name());
        for nested in sub.get_subcommands() {
            render(format!("{name}-{}", nested.get_name()), nested.clone())?;
        }
        render(name, sub.clone())?;
    }
    render("buildimage".to_owned(), command)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_command_gets_a_page() {
        let dir = tempfile::tempdir().unwrap();
        let pages = super::man(dir.path()).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "buildimage-build.1",
                "buildimage-build-layered.1",
                "buildimage-stream-layered.1",
                "buildimage-nix-build.1",
                "buildimage-cache-gc.1",
                "buildimage-cache.1",
                "buildimage-completions.1",
                "buildimage.1"
            ]
        );
        let page = std::fs::read_to_string(dir.path().join("buildimage-build.1")).unwrap();
        assert!(page.starts_with(".ie \\n(.g .ds Aq \\(aq"), "{page}");
        assert!(page.contains(".TH buildimage-build 1"), "{page}");
        assert!(page.contains("closure\\-info"), "{page}");
    }
}
