//! The scripts of a build: `extraCommands` as the invoking user in a staged copy of the
//! layer, and `runAsRoot` as root in a sandbox over the base image's layers.

use std::path::Path;

use buildimage_archive::BaseImage;
use buildimage_layer::{ScratchDir, Tree, UpperOptions, Warnings, stage};
use buildimage_sandbox::{FAKE_CHROOT_MOUNTS, FakeRoot, RootRun};

use crate::Env;
use crate::error::{Error, Input, Result, ResultExt};
use crate::store::StoreSource;

/// A script to run as root, and the shell to run it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootScript {
    /// The shell code.
    pub script: String,
    /// The shell when the image has none at `/bin/sh`: a path in the image or the store.
    pub shell: Option<String>,
}

/// Runs `script` (`extraCommands`) in a staged copy of `tree` and reads the result back
/// into `tree`. Returns the staging folder, which must outlive the layer's writing.
pub fn extra_commands(tree: &mut Tree, script: &str, env: &Env<'_>) -> Result<ScratchDir> {
    let staging = ScratchDir::new_in(&env.tmp, "buildimage-stage.")?;
    stage::materialize(tree, staging.path())
        .context(|| "Staging the layer failed".to_owned())
        .about(Input::ExtraCommands)?;
    env.cancel.check()?;
    run_extra_commands(script, staging.path(), env)?;
    let mut warnings = Warnings::default();
    *tree = Tree::from_dir(staging.path(), &mut warnings)
        .context(|| "Reading the layer back after the script failed".to_owned())
        .about(Input::ExtraCommands)?;
    warn_all(env, &warnings);
    Ok(staging)
}

/// The customisation layer's scripts: `extra` (`extraCommands`) as the user, then
/// `fake_root` (`fakeRootCommands`, chrooted into the layer with `chroot`) as a fake root,
/// in a staged copy of `tree`, which is read back with the owners and devices the fake root
/// recorded. Returns the staging folder, which must outlive the layer's writing.
pub fn fake_root(
    tree: &mut Tree,
    extra: &str,
    fake_root: &str,
    chroot: bool,
    store: &StoreSource,
    env: &Env<'_>,
) -> Result<ScratchDir> {
    let staging = ScratchDir::new_in(&env.tmp, "buildimage-custom.")?;
    let dir = staging.join("layer");
    std::fs::create_dir(&dir).map_err(|e| buildimage_layer::Error::io("create", &dir, e))?;
    let input = if extra.is_empty() {
        Input::FakeRootCommands
    } else {
        Input::ExtraCommands
    };
    stage::materialize(tree, &dir)
        .context(|| "Staging the customisation layer failed".to_owned())
        .about(input)?;
    env.cancel.check()?;
    if !extra.is_empty() {
        run_extra_commands(extra, &dir, env)?;
    }
    let mut recordings = buildimage_layer::Recordings::new();
    let mut skip: &[&[u8]] = &[];
    if !fake_root.is_empty() {
        let store_dir = store.store_dir();
        let job = FakeRoot {
            dir: dir.clone(),
            work: staging.join("work"),
            script: fake_root.to_owned(),
            chroot,
            store: store_dir.is_dir().then_some(store_dir),
            limits: env.script_limits,
        };
        recordings = buildimage_sandbox::run_fake_root(&job, &env.self_exe, env.cancel)
            .map_err(|e| match e {
                buildimage_sandbox::Error::NoShell => Error::message(format!(
                    "{e}: enableFakechroot runs the script with the image's own /bin/sh, \
                     which none of `contents` provides"
                )),
                other => Error::from(other),
            })
            .about(Input::FakeRootCommands)?;
        if chroot {
            // As nixpkgs packs a chrooted layer: without the mount points.
            skip = &FAKE_CHROOT_MOUNTS;
        }
    }
    let mut warnings = Warnings::default();
    *tree = Tree::from_staged(&dir, &recordings, skip, &mut warnings)
        .context(|| "Reading the customisation layer back failed".to_owned())
        .about(input)?;
    warn_all(env, &warnings);
    Ok(staging)
}

/// Runs `extraCommands` in the folder `dir`.
fn run_extra_commands(script: &str, dir: &Path, env: &Env<'_>) -> Result<()> {
    buildimage_sandbox::run_script("buildimage-extraCommands", script, dir, env.cancel)
        .about(Input::ExtraCommands)
}

/// Root mode: the base's layers extracted as the overlay's lower folders (each once, see
/// [`BaseImage::unique_layers`]), `tree` staged as its upper folder, `script` run as root
/// in the sandbox over it, then `extra` (`extraCommands`) in the upper folder, which is
/// read back into `tree` (deletions as whiteouts, real owners). Returns the scratch folder
/// holding it, which must outlive the layer's writing.
pub fn run_as_root(
    tree: &mut Tree,
    script: &RootScript,
    extra: &str,
    base: Option<&BaseImage>,
    store: &StoreSource,
    env: &Env<'_>,
) -> Result<ScratchDir> {
    let scratch = ScratchDir::new_in(&env.tmp, "buildimage-root.")?;
    let mut lower = Vec::new();
    for (i, layer) in base
        .map(BaseImage::unique_layers)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let dir = scratch.join(format!("lower-{i}"));
        let extracted = buildimage_sandbox::extract_layer(&layer.path, &dir)
            .context(|| format!("Cannot extract layer {}", layer.member))
            .about(Input::FromImage)?;
        for name in extracted.skipped_devices_outside_dev() {
            env.events.warning(
                Some(Input::FromImage),
                &format!(
                    "device node {} of base layer {} is not visible to the root script: only \
                 root can create device nodes (the image keeps it)",
                    String::from_utf8_lossy(name),
                    layer.member
                ),
            );
        }
        lower.push(dir);
        env.cancel.check()?;
    }
    let upper = scratch.join("upper");
    std::fs::create_dir(&upper).map_err(|e| buildimage_layer::Error::io("create", &upper, e))?;
    stage::materialize(tree, &upper)
        .context(|| "Staging the copied folders failed".to_owned())
        .about(Input::RunAsRoot)?;
    let store_dir = store.store_dir();
    let request = RootRun {
        lower,
        upper: upper.clone(),
        work: scratch.join("work"),
        script: script.script.clone(),
        shell: script.shell.clone(),
        store: store_dir.is_dir().then_some(store_dir),
        limits: env.script_limits,
    };
    env.cancel.check()?;
    let outcome =
        buildimage_sandbox::run_as_root(&request, &env.self_exe, env.cancel).map_err(|e| {
            match e {
                // Both are mended with the shell's key.
                buildimage_sandbox::Error::ShellNotFound { .. } => {
                    crate::Error::from(e).about(Input::RunAsRootShell)
                }
                buildimage_sandbox::Error::NoShell => crate::Error::message(format!(
                    "{e}; name one with runAsRootShell (a path in the image or the store)"
                ))
                .about(Input::RunAsRootShell),
                _ => crate::Error::from(e).about(Input::RunAsRoot),
            }
        })?;
    if !extra.is_empty() {
        run_extra_commands(extra, &upper, env)?;
    }
    let (root_uid, root_gid) = buildimage_sandbox::host_root_ids();
    let options = UpperOptions {
        root_uid,
        root_gid,
        id_shift: outcome.id_shift(),
        recordings: Some(&outcome.recordings),
    };
    let mut warnings = Warnings::default();
    *tree = Tree::from_upper(&upper, &options, &mut warnings)
        .context(|| "Reading the layer back after the script failed".to_owned())
        .about(Input::RunAsRoot)?;
    warn_all(env, &warnings);
    Ok(scratch)
}

/// Passes warnings on.
pub(crate) fn warn_all(env: &Env<'_>, warnings: &Warnings) {
    for warning in &warnings.0 {
        env.events.warning(None, warning);
    }
}
