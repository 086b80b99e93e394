//! Installing the Debian packages the end-to-end tests drive, only when missing.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::process::{self, Group};

/// What the tests need: Docker (daemon and matching client), skopeo, umoci and podman as
/// independent image readers, a registry to push to (distribution, with `htpasswd` and
/// `openssl` for its users and certificates), `nix-store` as the oracle for store
/// databases, and the small tools the tests use to build and inspect fixtures.
pub const PACKAGES: &[&str] = &[
    "docker.io",
    "skopeo",
    "umoci",
    "podman",
    "docker-registry",
    "apache2-utils",
    "openssl",
    "nix-bin",
    "zstd",
    "busybox-static",
    "sqlite3",
    "rsync",
    "pigz",
    "ca-certificates",
];

/// Installs whichever of `packages` is not installed; a no-op (one `dpkg-query`) when
/// all are. Fails with the command to run when something is missing and we are not root.
pub fn ensure_installed(packages: &[&str]) -> Result<()> {
    let missing = missing(packages)?;
    if missing.is_empty() {
        eprintln!("all {} packages already installed", packages.len());
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root()? {
        bail!(
            "Missing packages: {list}; install them as root with:\n    \
             apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
             --no-install-recommends {list}"
        );
    }
    eprintln!("installing: {list}");
    process::run_checked(apt_get().args(["update", "-qq"]), Group::Own)?;
    process::run_checked(
        apt_get()
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing),
        Group::Own,
    )?;
    let still = self::missing(packages)?;
    if !still.is_empty() {
        bail!(
            "apt-get finished, but these are still not installed: {}",
            still.join(" ")
        );
    }
    Ok(())
}

fn apt_get() -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

/// The packages of `packages` that dpkg does not report as installed, in the given order.
fn missing<'a>(packages: &[&'a str]) -> Result<Vec<&'a str>> {
    // One call for all: unknown packages go to stderr (exit status 1), installed ones to
    // stdout as "NAME install ok installed". A package removed but with its configuration
    // left reads "deinstall ok config-files" and counts as missing.
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${Status}\\n"])
        .args(packages)
        .output()
        .context("Cannot run dpkg-query: cargo xtask ci supports Debian-based systems only")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let installed: BTreeSet<&str> = stdout
        .lines()
        .filter_map(|line| line.strip_suffix(" install ok installed"))
        .collect();
    Ok(packages
        .iter()
        .copied()
        .filter(|package| !installed.contains(package))
        .collect())
}

/// Whether xtask runs as root. `/proc/self` is owned by the process's effective uid.
fn is_root() -> Result<bool> {
    let meta = fs_err::metadata("/proc/self")?;
    Ok(meta.uid() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_reports_unknown_packages_in_order() {
        // dpkg-query exits with status 1 for unknown names; they must count as missing,
        // and an installed essential package must not.
        assert_eq!(
            missing(&["no-such-package-b", "dpkg", "no-such-package-a"]).unwrap(),
            ["no-such-package-b", "no-such-package-a"]
        );
    }
}
