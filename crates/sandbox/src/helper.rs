//! The helper process (`__sandbox`): makes the namespaces and the merged tree, starts the
//! init process inside them, waits, cleans up and reports.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use buildimage_layer::Cancel;

use nix::mount::MsFlags;
use nix::sched::{CloneFlags, unshare};
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::Signal;
use nix::unistd::{getegid, geteuid, getppid, sethostname};

use crate::mounts::{mount_at, unmount};
use crate::protocol::{HelperRequest, InitRequest, Report, read_request, write_report};
use crate::{INIT_ROLE, SANDBOX_COMMAND};

/// How often the helper looks whether the script ended or a signal arrived.
const POLL: Duration = Duration::from_millis(10);

/// The host name inside the sandbox: fixed, so a script that records it gives the same
/// image on every machine.
const HOSTNAME: &str = "localhost";

/// Runs the helper and writes its report on standard output.
pub(crate) fn main() -> std::process::ExitCode {
    let report = run().unwrap_or_else(|r| r);
    write_report(&mut io::stdout().lock(), &report);
    std::process::ExitCode::SUCCESS
}

fn run() -> Result<Report, Report> {
    let req: HelperRequest = read_request()?;
    // The helper dies with its parent; its child, PID 1 of the new PID namespace, dies with
    // the helper, and every other process of that namespace with it.
    set_pdeathsig(Signal::SIGKILL).map_err(|e| Report::failed("set the parent-death signal", e))?;
    if getppid().as_raw() != req.parent {
        return Err(Report::Interrupted);
    }
    let stop = Cancel::new();
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, Arc::clone(stop.flag()))
            .map_err(|e| Report::failed("install signal handlers", e))?;
    }

    let userxattr = crate::needs_userxattr();
    if !geteuid().is_root() {
        enter_user_namespace()?;
    }
    unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWPID,
    )
    .map_err(|e| Report::failed("create the namespaces", e))?;
    // Nothing mounted from here on may reach the host, and all of it goes away with the
    // namespace's last process.
    mount_at(
        "make the mounts private",
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    sethostname(HOSTNAME).map_err(|e| Report::failed("set the host name", e))?;

    let root = req.scratch.join("root");
    mount_tree(&req, &root, userxattr)?;
    let result = prepare_and_run(&req, &root, &stop);
    let cleanup = unmount(&root).map_err(|e| Report::failed("unmount the merged tree", e));
    let report = result?;
    cleanup?;
    Ok(report)
}

/// Maps the caller to root in a new user namespace.
fn enter_user_namespace() -> Result<(), Report> {
    let uid = geteuid().as_raw();
    let gid = getegid().as_raw();
    let refused =
        |what: &str, e: &dyn std::fmt::Display| Report::UserNamespace(format!("{what}: {e}"));
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| refused("unshare(CLONE_NEWUSER)", &e))?;
    match fs::write("/proc/self/setgroups", "deny") {
        // Kernels before 3.19 have no such file and need no such step.
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(refused("/proc/self/setgroups", &e));
        }
        _ => {}
    }
    fs::write("/proc/self/uid_map", format!("0 {uid} 1\n"))
        .map_err(|e| refused("/proc/self/uid_map", &e))?;
    fs::write("/proc/self/gid_map", format!("0 {gid} 1\n"))
        .map_err(|e| refused("/proc/self/gid_map", &e))?;
    Ok(())
}

/// Mounts the overlay (or, without base layers, a bind of the upper folder) at `root`.
fn mount_tree(req: &HelperRequest, root: &Path, userxattr: bool) -> Result<(), Report> {
    if req.run.lower.is_empty() {
        return mount_at(
            "bind the upper folder",
            Some(&req.run.upper),
            root,
            None,
            MsFlags::MS_BIND,
            None,
        );
    }
    std::env::set_current_dir(&req.scratch)
        .map_err(|e| Report::failed("enter the scratch folder", e))?;
    // overlayfs lists the top-most lower folder first; the request lists the lowest first.
    let lower: Vec<String> = (0..req.run.lower.len())
        .rev()
        .map(|i| format!("lower/{i}"))
        .collect();
    let basic = format!(
        "lowerdir={},upperdir=upper,workdir=ovl{}",
        lower.join(":"),
        if userxattr { ",userxattr" } else { "" }
    );
    // Redirects and metacopy would leave renames and metadata changes as overlay-private
    // attributes in the upper folder, which a tar cannot carry: with them off, renaming a
    // lower folder copies it and every change is a whole file.
    let strict = format!("{basic},redirect_dir=off,index=off,metacopy=off");
    let mounted = mount_at(
        "mount the overlay",
        Some(Path::new("overlay")),
        root,
        Some("overlay"),
        MsFlags::empty(),
        Some(&strict),
    );
    match mounted {
        // An older kernel that does not know one of the options has none of those features.
        Err(_) => mount_at(
            "mount the overlay",
            Some(Path::new("overlay")),
            root,
            Some("overlay"),
            MsFlags::empty(),
            Some(&basic),
        ),
        ok => ok,
    }
}

/// A mount point the run needs in the merged tree.
struct MountPoint {
    path: PathBuf,
    /// Made for the run: removed afterwards.
    created: bool,
}

/// Makes sure `rel` is a real folder of the merged tree (never a symlink, which would send
/// a mount elsewhere), creating it with mode 0755 when missing.
fn ensure_dir(root: &Path, rel: &str, made: &mut Vec<MountPoint>) -> Result<(), Report> {
    let path = root.join(rel);
    match fs::symlink_metadata(&path) {
        Ok(md) if md.is_dir() => {
            made.push(MountPoint {
                path,
                created: false,
            });
            Ok(())
        }
        Ok(md) => Err(Report::failed(
            &format!("prepare /{rel}"),
            format!(
                "/{rel} in the image is {}, not a folder",
                if md.file_type().is_symlink() {
                    "a symlink"
                } else {
                    "a file"
                }
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let step = format!("create /{rel}");
            fs::create_dir(&path).map_err(|e| Report::failed(&step, e))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .map_err(|e| Report::failed(&step, e))?;
            made.push(MountPoint {
                path,
                created: true,
            });
            Ok(())
        }
        Err(e) => Err(Report::failed(&format!("prepare /{rel}"), e)),
    }
}

fn prepare_and_run(req: &HelperRequest, root: &Path, stop: &Cancel) -> Result<Report, Report> {
    let mut points = Vec::new();
    let prepared = (|| {
        for rel in ["dev", "proc", "sys"] {
            ensure_dir(root, rel, &mut points)?;
        }
        // Nothing is mounted on /tmp: it only has to exist, as nixpkgs' `mkdir -p tmp`
        // makes sure, and whatever it is in the image (a symlink to var/tmp, say) is kept.
        // Made here, it stays in the layer (0755, as nixpkgs leaves it).
        let tmp = root.join("tmp");
        if fs::symlink_metadata(&tmp).is_err() {
            fs::create_dir(&tmp).map_err(|e| Report::failed("create /tmp", e))?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
                .map_err(|e| Report::failed("create /tmp", e))?;
        }
        if req.run.store.is_some() {
            ensure_dir(root, "nix", &mut points)?;
            ensure_dir(root, "nix/store", &mut points)?;
        }
        Ok(())
    })();
    let report = match prepared {
        Ok(()) => run_init(req, root, stop),
        Err(report) => Err(report),
    };
    // The init process's mounts lived in its own mount namespace, gone with it: what is
    // left are the empty folders made for them. `tmp` stays, as in nixpkgs.
    let mut cleanup = Ok(());
    for point in points.iter().rev() {
        if !point.created || point.path.ends_with("tmp") {
            continue;
        }
        match fs::remove_dir(&point.path) {
            Ok(()) => {}
            // The script put something there (`/nix/var`, say): it belongs to the layer.
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOTEMPTY) => {}
            Err(e) => {
                cleanup = Err(Report::failed(
                    "remove the mount points",
                    format!("{}: {e}", point.path.display()),
                ));
            }
        }
    }
    let report = report?;
    cleanup?;
    Ok(report)
}

/// Starts the init process (PID 1 of the new PID namespace), waits for it and says how the
/// script ended.
fn run_init(req: &HelperRequest, root: &Path, stop: &Cancel) -> Result<Report, Report> {
    let mut child = Command::new("/proc/self/exe")
        .arg0(SANDBOX_COMMAND)
        .args([SANDBOX_COMMAND, INIT_ROLE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Report::failed("start the sandbox's init process", e))?;
    let request = InitRequest {
        root: root.to_owned(),
        script: req.run.script.clone(),
        shell: req.run.shell.clone(),
        store: req.run.store.clone(),
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A child that died at once is found out below.
        serde_json::to_writer(&mut stdin, &request).ok();
        stdin.flush().ok();
    }
    // The init process's report channel closes when it runs the shell, or carries why it
    // could not.
    let mut text = Vec::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_end(&mut text).ok();
    }
    let status = wait(&mut child, stop)?;
    if !text.is_empty() {
        return serde_json::from_slice(&text)
            .map_err(|e| Report::failed("read the init process's report", e));
    }
    let Some(status) = status else {
        return Ok(Report::Interrupted);
    };
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => Report::Exited(code),
        (None, Some(sig)) => Report::Signaled(sig),
        (None, None) => Report::failed("wait for the script", "unknown exit status"),
    })
}

/// Waits for `child`; on a signal kills it (SIGKILL to PID 1 ends every process of the
/// namespace) and returns `None`.
fn wait(child: &mut Child, stop: &Cancel) -> Result<Option<std::process::ExitStatus>, Report> {
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Report::failed("wait for the script", e))?
        {
            return Ok(Some(status));
        }
        if stop.is_cancelled() {
            child.kill().ok();
            child
                .wait()
                .map_err(|e| Report::failed("wait for the script", e))?;
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}
