//! The helper process (`__sandbox`): makes the namespaces and the tree the script sees,
//! starts the init process inside them (or, for a fake root without a chroot, the script
//! itself under supervision), waits, cleans up and reports.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use buildimage_layer::Cancel;

use nix::mount::MsFlags;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, unshare};
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, getegid, geteuid, getppid, sethostname};

use crate::fakeroot::{self, Ended};
use crate::mounts::{mount_at, unmount};
use crate::protocol::{HelperRequest, InitRequest, Job, Report, read_request, write_report};
use crate::{FakeRoot, INIT_ROLE, RootRun, SANDBOX_COMMAND};

/// What the sandbox's root is made of.
enum TreeSource<'a> {
    /// An overlay of extracted layers under an upper folder (`runAsRoot`).
    Overlay(&'a RootRun),
    /// A folder itself, bound as the root (a fake root with a chroot).
    Folder(&'a Path),
}

/// Everything one sandboxed run needs.
struct Run<'a> {
    scratch: &'a Path,
    tree: TreeSource<'a>,
    script: &'a str,
    shell: Option<&'a str>,
    store: Option<&'a Path>,
    /// The script's `$0`.
    name: &'static str,
    fake_root: bool,
    /// See [`InitRequest::id_range`].
    id_range: Option<crate::idmap::IdRange>,
}

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

    match &req.job {
        Job::RunAsRoot(run, id_range) => {
            // Without real root the user namespace maps only the caller: owners and device
            // nodes the script gives are recorded, as for a fake root, and read back with
            // the upper folder, so the layer is what real root would have made.
            // As root, the script itself starts in a user namespace that maps a private
            // range of host ids (the init process, still root, maps it); otherwise this
            // process enters one that maps the caller. Either way its `mknod` of devices
            // (and, with one id, its `chown`) is recorded by the supervisor.
            let id_range = *id_range;
            if id_range.is_none() {
                enter_user_namespace()?;
            }
            sandboxed(
                &Run {
                    scratch: &req.scratch,
                    tree: TreeSource::Overlay(run),
                    script: &run.script,
                    shell: run.shell.as_deref(),
                    store: run.store.as_deref(),
                    name: "runAsRoot",
                    fake_root: true,
                    id_range,
                },
                &stop,
            )
        }
        Job::FakeRoot(job) => {
            // A fake root always runs in a user namespace, also for real root: what it
            // cannot do there is recorded, never done on the host.
            enter_user_namespace()?;
            if job.chroot {
                sandboxed(
                    &Run {
                        scratch: &req.scratch,
                        tree: TreeSource::Folder(&job.dir),
                        script: &job.script,
                        shell: None,
                        store: job.store.as_deref(),
                        name: "fakeRootCommands",
                        fake_root: true,
                        id_range: None,
                    },
                    &stop,
                )
            } else {
                in_place(job, &stop)
            }
        }
    }
}

/// A fake root without a chroot: the script runs in its folder, on the host's tree, as
/// root of the user namespace, supervised.
fn in_place(job: &FakeRoot, stop: &Cancel) -> Result<Report, Report> {
    let to_stderr = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Report::failed("pass standard error on", e))?;
    let shell = crate::script::host_shell();
    crate::confine::confine()?;
    let mut cmd = Command::new(&shell);
    cmd.args(["-e", "-c", &job.script, "fakeRootCommands"])
        .current_dir(&job.dir)
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        // Our caller's standard output may carry the image: the script's goes to stderr.
        .stdout(Stdio::from(to_stderr))
        // Its own process group, so that what it starts in the background ends with it.
        .process_group(0);
    let (mut child, listener) = fakeroot::spawn(cmd, None)
        .map_err(|e| Report::failed("start the shell", format!("{}: {e}", shell.display())))?;
    let group = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let kill = |_: &mut Child| {
        killpg(group, Signal::SIGKILL).ok();
    };
    let supervised = fakeroot::supervise(&mut child, &listener, stop, &kill);
    killpg(group, Signal::SIGKILL).ok();
    let (ended, records) = supervised.map_err(|e| Report::failed("supervise the script", e))?;
    Ok(recorded(ended, records))
}

/// The report of a supervised script.
pub(crate) fn recorded(ended: Ended, records: Vec<fakeroot::Record>) -> Report {
    match ended {
        Ended::Stopped => Report::Interrupted,
        Ended::Status(status) => Report::Recorded {
            exited: status.code(),
            signal: status.signal(),
            records,
        },
    }
}

/// A run in namespaces of its own: mount, PID, IPC, UTS and network, over the tree.
fn sandboxed(run: &Run<'_>, stop: &Cancel) -> Result<Report, Report> {
    let userxattr = crate::needs_userxattr();
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

    let root = run.scratch.join("root");
    mount_tree(run, &root, userxattr)?;
    let result = prepare_and_run(run, &root, stop).map(|report| match (report, &run.tree) {
        (
            Report::Recorded {
                exited,
                signal,
                records,
            },
            TreeSource::Overlay(request),
        ) => Report::Recorded {
            exited,
            signal,
            records: to_upper(records, &root, &request.upper),
        },
        (report, _) => report,
    });
    let cleanup = unmount(&root).map_err(|e| Report::failed("unmount the merged tree", e));
    let report = result?;
    cleanup?;
    Ok(report)
}

/// Turns records of objects as the script saw them, through the overlay mounted at `root`,
/// into records of the same objects in the `upper` folder, where the layer is read from:
/// overlayfs gives a copied-up object the inode number of its lower original. Objects that
/// are not in the upper folder (deleted, or never changed) lose their record.
fn to_upper(records: Vec<fakeroot::Record>, root: &Path, upper: &Path) -> Vec<fakeroot::Record> {
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;

    let mut seen: BTreeMap<(u64, u64), fakeroot::Record> =
        records.into_iter().map(|r| ((r.dev, r.ino), r)).collect();
    let mut out = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let (Ok(merged), Ok(own)) = (
            fs::symlink_metadata(root.join(&rel)),
            fs::symlink_metadata(upper.join(&rel)),
        ) else {
            continue;
        };
        if let Some(mut record) = seen.remove(&(merged.dev(), merged.ino())) {
            record.dev = own.dev();
            record.ino = own.ino();
            out.push(record);
        }
        if own.is_dir()
            && let Ok(entries) = fs::read_dir(upper.join(&rel))
        {
            pending.extend(entries.flatten().map(|e| rel.join(e.file_name())));
        }
    }
    out
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

/// Mounts the overlay (or, without base layers, a bind of the upper folder; or the folder
/// of a fake root) at `root`.
fn mount_tree(run: &Run<'_>, root: &Path, userxattr: bool) -> Result<(), Report> {
    let request = match run.tree {
        TreeSource::Folder(dir) => {
            return mount_at(
                "bind the folder",
                Some(dir),
                root,
                None,
                MsFlags::MS_BIND,
                None,
            );
        }
        TreeSource::Overlay(request) => request,
    };
    if request.lower.is_empty() {
        return mount_at(
            "bind the upper folder",
            Some(&request.upper),
            root,
            None,
            MsFlags::MS_BIND,
            None,
        );
    }
    std::env::set_current_dir(run.scratch)
        .map_err(|e| Report::failed("enter the scratch folder", e))?;
    // overlayfs lists the top-most lower folder first; the request lists the lowest first.
    let lower: Vec<String> = (0..request.lower.len())
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

fn prepare_and_run(run: &Run<'_>, root: &Path, stop: &Cancel) -> Result<Report, Report> {
    let mut points = Vec::new();
    let prepared = (|| {
        for rel in ["dev", "proc", "sys"] {
            ensure_dir(root, rel, &mut points)?;
        }
        // Nothing is mounted on /tmp: it only has to exist, as nixpkgs' `mkdir -p tmp`
        // for runAsRoot makes sure, and whatever it is in the image (a symlink to
        // var/tmp, say) is kept. Made here, it stays in the layer (0755, as nixpkgs leaves
        // it). A fake root's chroot has no such step in nixpkgs.
        let tmp = root.join("tmp");
        if matches!(run.tree, TreeSource::Overlay(_)) && fs::symlink_metadata(&tmp).is_err() {
            fs::create_dir(&tmp).map_err(|e| Report::failed("create /tmp", e))?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
                .map_err(|e| Report::failed("create /tmp", e))?;
            // The script's root owns it, as everything else of the tree.
            if let Some(range) = run.id_range {
                std::os::unix::fs::lchown(&tmp, Some(range.uid_base), Some(range.gid_base))
                    .map_err(|e| Report::failed("create /tmp", e))?;
            }
        }
        if run.store.is_some() {
            ensure_dir(root, "nix", &mut points)?;
            ensure_dir(root, "nix/store", &mut points)?;
        }
        Ok(())
    })();
    let report = match prepared {
        Ok(()) => run_init(run, root, stop),
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
fn run_init(run: &Run<'_>, root: &Path, stop: &Cancel) -> Result<Report, Report> {
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
        script: run.script.to_owned(),
        shell: run.shell.map(str::to_owned),
        store: run.store.map(Path::to_owned),
        name: run.name.to_owned(),
        fake_root: run.fake_root,
        id_range: run.id_range,
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A child that died at once is found out below.
        serde_json::to_writer(&mut stdin, &request).ok();
        stdin.flush().ok();
    }
    // The init process's report channel closes when it runs the shell, or carries why it
    // could not; a fake root's init reports how its supervised script ended. It is read
    // while waiting, so that a stop request is seen while the script runs.
    let mut report = child.stdout.take();
    let mut text = Vec::new();
    let status = wait(&mut child, stop, &mut report, &mut text)?;
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

/// Waits for `child`, appending what it writes on `pipe` to `text` as it comes (the
/// helper cannot start a thread for it: it unshared its PID namespace); on a signal kills
/// it (SIGKILL to PID 1 ends every process of the namespace) and returns `None`.
fn wait(
    child: &mut Child,
    stop: &Cancel,
    pipe: &mut Option<ChildStdout>,
    text: &mut Vec<u8>,
) -> Result<Option<std::process::ExitStatus>, Report> {
    let failed = |e: io::Error| Report::failed("wait for the script", e);
    loop {
        if let Some(status) = child.try_wait().map_err(failed)? {
            // Every writer is gone with the namespace: the rest is there to read.
            if let Some(mut rest) = pipe.take() {
                rest.read_to_end(text).map_err(failed)?;
            }
            return Ok(Some(status));
        }
        if stop.is_cancelled() {
            child.kill().ok();
            child.wait().map_err(failed)?;
            return Ok(None);
        }
        match pipe {
            Some(out) => {
                let mut fds = [PollFd::new(out.as_fd(), PollFlags::POLLIN)];
                let timeout = PollTimeout::try_from(POLL).unwrap_or(PollTimeout::MAX);
                let ready = match poll(&mut fds, timeout) {
                    Ok(n) if n > 0 => fds[0].revents().unwrap_or(PollFlags::empty()),
                    _ => PollFlags::empty(),
                };
                if ready.contains(PollFlags::POLLIN) {
                    let mut chunk = [0u8; 8192];
                    match out.read(&mut chunk) {
                        Ok(0) => *pipe = None,
                        Ok(n) => text.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(failed(e)),
                    }
                } else if ready.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                    *pipe = None;
                }
            }
            None => std::thread::sleep(POLL),
        }
    }
}
