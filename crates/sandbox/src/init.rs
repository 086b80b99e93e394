//! The init process (`__sandbox init`): PID 1 of the new PID namespace. It mounts `/proc`,
//! `/sys`, `/dev` and the store in a mount namespace of its own, makes the merged tree its
//! root and becomes the shell that runs the script; for a fake root, it starts the shell
//! under supervision instead and reports what the script's calls recorded.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use nix::mount::{MntFlags, MsFlags, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::Signal;
use nix::sys::stat::{Mode, umask};
use nix::unistd::{chdir, chroot, pivot_root, setgroups};

use crate::mounts::{bind_read_only, bind_tree_read_only, mount_at};
use crate::protocol::{InitRequest, Report, read_request, write_report};

/// `PATH` of the script, before the folder of a store shell is added.
const PATH: &str = "/bin:/usr/bin:/sbin:/usr/sbin";

/// Device nodes the sandbox's `/dev` gets, bound from the host's.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Parts of `/proc` that reach the host's kernel settings: made read-only.
const PROC_READ_ONLY: [&str; 4] = ["sys", "sysrq-trigger", "irq", "bus"];

/// Runs the init process. Returns only when it could not become the shell.
pub(crate) fn main() -> ExitCode {
    // First of all, so that no window is left in which the helper could die unnoticed.
    set_pdeathsig(Signal::SIGKILL).ok();
    // The report goes through a duplicate of standard output that closes when the shell
    // starts; standard output itself becomes the script's (our standard error).
    let mut report_out = match io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => File::from(fd),
        Err(_) => return ExitCode::from(127),
    };
    let report = match read_request::<InitRequest>() {
        Ok(req) => run(&req),
        Err(report) => report,
    };
    write_report(&mut report_out, &report);
    ExitCode::from(127)
}

/// Sets everything up and runs the shell; returns why it could not, or, for a fake root,
/// how the supervised script ended.
fn run(req: &InitRequest) -> Report {
    match setup(req) {
        Ok((cmd, _)) if req.fake_root => {
            let userns = match req
                .id_range
                .map(|range| crate::confine::filters().map(|filters| (range, filters.to_vec())))
            {
                None => None,
                Some(Ok(userns)) => Some(userns),
                Some(Err(e)) => return Report::failed("build the seccomp filter", e),
            };
            let (mut child, listener) = match crate::fakeroot::spawn(cmd, userns) {
                Ok(started) => started,
                Err(e) => return Report::failed("start the script", e),
            };
            // The helper kills this process, PID 1, to stop the run: the kernel then
            // kills every process of the namespace.
            let never = buildimage_layer::Cancel::new();
            let kill = |child: &mut std::process::Child| {
                child.kill().ok();
            };
            match crate::fakeroot::supervise(&mut child, &listener, &never, &kill) {
                Ok((ended, records)) => crate::helper::recorded(ended, records),
                Err(e) => Report::failed("supervise the script", e),
            }
        }
        Ok((mut cmd, shell)) => {
            let err = cmd.exec();
            Report::failed("run the shell", format!("{shell}: {err}"))
        }
        Err(report) => report,
    }
}

fn setup(req: &InitRequest) -> Result<(Command, String), Report> {
    // A mount namespace of our own: its mounts, and the new root, vanish with the last
    // process of the sandbox, and the helper keeps seeing the host.
    unshare(CloneFlags::CLONE_NEWNS)
        .map_err(|e| Report::failed("create the mount namespace", e))?;
    let root = &req.root;
    let hard = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;

    // A fresh proc, mounted from inside the new PID namespace, so it shows only the sandbox.
    let proc = root.join("proc");
    mount_at(
        "mount /proc",
        Some(Path::new("proc")),
        &proc,
        Some("proc"),
        hard,
        None,
    )?;
    for part in PROC_READ_ONLY {
        let path = proc.join(part);
        if path.exists() {
            bind_read_only("protect /proc", &path, &path, MsFlags::empty())?;
        }
    }

    // A fresh sysfs, read-only: it shows the sandbox's network namespace, and nothing of
    // the host's cgroups can be written through it. The kernel allows a new sysfs only
    // where one is already fully visible; inside Nix's build sandbox, which has no `/sys`,
    // the script gets an empty read-only `/sys`, as every Nix build has none.
    let sys = root.join("sys");
    let fresh = mount_at(
        "mount /sys",
        Some(Path::new("sysfs")),
        &sys,
        Some("sysfs"),
        hard | MsFlags::MS_RDONLY,
        None,
    );
    if fresh.is_err() {
        if Path::new("/sys/kernel").is_dir() {
            bind_read_only("bind /sys", Path::new("/sys"), &sys, MsFlags::empty())?;
        } else {
            mount_at(
                "mount an empty /sys",
                Some(Path::new("tmpfs")),
                &sys,
                Some("tmpfs"),
                hard | MsFlags::MS_RDONLY,
                Some("mode=555,size=4k"),
            )?;
        }
    }

    setup_dev(&root.join("dev"))?;

    if let Some(store) = &req.store {
        bind_tree_read_only(
            "bind the store at /nix/store",
            store,
            &root.join("nix/store"),
        )?;
    }

    enter_root(root)?;
    umask(Mode::from_bits_truncate(0o022));
    // Real root keeps no supplementary groups of the caller; in a user namespace the
    // groups cannot be changed (`setgroups` is denied) and are unmapped anyway.
    setgroups(&[]).ok();

    let shell = choose_shell(req.shell.as_deref())?;
    // Everything is mounted: from here on, neither this process nor the script may
    // mount, make namespaces or reach the host's kernel (see `confine`).
    if req.id_range.is_some() {
        // The script installs the filters itself, once in its user namespace.
        crate::confine::confine_process()?;
    } else {
        crate::confine::confine()?;
    }
    let mut path = PATH.to_owned();
    if let Some(dir) = Path::new(&shell).parent().and_then(Path::to_str)
        && !path.split(':').any(|p| p == dir)
    {
        path.push(':');
        path.push_str(dir);
    }
    let to_stderr = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Report::failed("pass standard error on", e))?;
    let mut cmd = Command::new(&shell);
    cmd.args(["-e", "-c", &req.script, &req.name])
        .env_clear()
        .env("PATH", path)
        .env("HOME", "/root")
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .current_dir("/")
        .stdin(Stdio::null())
        // Our caller's standard output may carry the image: the script's goes to stderr.
        .stdout(Stdio::from(to_stderr))
        .stderr(Stdio::inherit());
    Ok((cmd, shell))
}

/// A small `/dev` of its own rather than the host's: a script that removes or creates
/// device nodes changes nothing on the host.
fn setup_dev(dev: &Path) -> Result<(), Report> {
    let step = "set up /dev";
    mount_at(
        step,
        Some(Path::new("tmpfs")),
        dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=755,size=65536k"),
    )?;
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        if !host.exists() {
            continue;
        }
        let node = dev.join(name);
        File::create(&node)
            .map_err(|e| Report::failed(step, format!("{}: {e}", node.display())))?;
        mount_at(step, Some(&host), &node, None, MsFlags::MS_BIND, None)?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        symlink(target, dev.join(name)).map_err(|e| Report::failed(step, e))?;
    }
    let mkdir = |name: &str, mode: u32| {
        let path = dev.join(name);
        fs::create_dir(&path)
            .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(mode)))
            .map_err(|e| Report::failed(step, format!("{}: {e}", path.display())))
            .map(|()| path)
    };
    let pts = mkdir("pts", 0o755)?;
    // Terminals are a nicety: a kernel or user namespace that refuses a private devpts
    // leaves /dev/pts empty.
    mount_at(
        step,
        Some(Path::new("devpts")),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .ok();
    let shm = mkdir("shm", 0o1777)?;
    mount_at(
        step,
        Some(Path::new("tmpfs")),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )
}

/// Makes `root` the root: `pivot_root` so that the host's tree is not reachable at all,
/// or `chroot` where the current root cannot be pivoted (an initramfs).
fn enter_root(root: &Path) -> Result<(), Report> {
    chdir(root).map_err(|e| Report::failed("enter the merged tree", e))?;
    if pivot_root(".", ".").is_ok() {
        // The old root now sits on top of the new one: detach it.
        umount2(".", MntFlags::MNT_DETACH)
            .map_err(|e| Report::failed("detach the host's root", e))?;
    } else {
        chroot(".").map_err(|e| Report::failed("chroot into the merged tree", e))?;
    }
    chdir("/").map_err(|e| Report::failed("enter the merged tree", e))
}

/// The shell that runs the script: the image's own `/bin/sh` when it has one, as nixpkgs
/// runs it; otherwise the named one (`runAsRootShell`, in the image or the store). A named
/// shell that does not exist is an error even when `/bin/sh` would do, so that a typo is
/// not silently ignored.
fn choose_shell(named: Option<&str>) -> Result<String, Report> {
    if let Some(shell) = named
        && !(shell.starts_with('/') && Path::new(shell).exists())
    {
        return Err(Report::ShellNotFound(shell.to_owned()));
    }
    if Path::new("/bin/sh").exists() {
        return Ok("/bin/sh".to_owned());
    }
    named.map(str::to_owned).ok_or(Report::NoShell)
}
