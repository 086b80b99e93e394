//! `cargo xtask golden`: rewrites the golden artefacts of `crates/cli/tests/golden/` (small
//! images and a layer whose bytes the `golden` tests compare exactly), by running those
//! tests with `BUILDIMAGE_UPDATE_GOLDEN=1`, under which they write the files instead of
//! comparing. Run it as root (one golden layer holds device nodes), after a change that
//! is meant to change the output, and commit the files with that change: their diff is
//! the review of it.

use std::path::Path;

use anyhow::Result;

use crate::process::{self, Group};
use crate::{cargo, header};

/// The variable under which the golden tests write their files.
const UPDATE_VAR: &str = "BUILDIMAGE_UPDATE_GOLDEN";

/// Runs the golden tests in write mode.
pub fn golden(root: &Path) -> Result<()> {
    header(&format!(
        "{UPDATE_VAR}=1 cargo test -p buildimage-cli --test cli golden::"
    ));
    let mut cmd = cargo(
        root,
        &["test", "-p", "buildimage-cli", "--test", "cli", "golden::"],
    );
    cmd.env(UPDATE_VAR, "1");
    process::run_checked(&mut cmd, Group::Own)?;
    header("the golden files are in crates/cli/tests/golden/: review and commit them");
    Ok(())
}
