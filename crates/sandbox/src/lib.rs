//! Runs build scripts: `runAsRoot` without a virtual machine (Linux namespaces, an overlay
//! of the image's layers, and a chroot), `fakeRootCommands` as a fake root that records
//! the owners and device nodes it cannot give ([`run_fake_root`]), and `extraCommands` as
//! the invoking user ([`run_script`]).
//!
//! nixpkgs runs `runAsRoot` as root in a QEMU machine. This crate gives the script the same
//! world with kernel features only: a root file system made of the base layers
//! ([`extract_layer`] unpacks each into an overlay lower folder) under an upper folder that
//! holds the staged `copyToRoot` and receives every change, store paths at `/nix/store`
//! (read-only), uid 0 with the power to `chown`, `chmod` and `mknod`, and working directory
//! `/`. After the run the upper folder is the layer diff; `buildimage_layer`'s
//! `Tree::from_upper` reads it with real owners and turns overlay deletions into OCI
//! whiteouts.
//!
//! The work happens in two helper processes that re-execute the calling binary, so the
//! crate needs no `fork`; its only `unsafe` code is the seccomp filter of the fake root
//! (`seccomp.rs`). The binary's `main` must hand `argv` to
//! [`sandbox_main`] when `argv[1]` is [`SANDBOX_COMMAND`], before parsing anything else.
//!
//! ```no_run
//! use std::path::{Path, PathBuf};
//! use std::process::ExitCode;
//!
//! use buildimage_layer::Cancel;
//! use buildimage_sandbox::{
//!     Limits, RootRun, SANDBOX_COMMAND, extract_layer, run_as_root, sandbox_main,
//! };
//!
//! fn main() -> ExitCode {
//!     let args: Vec<_> = std::env::args_os().collect();
//!     if args.get(1).is_some_and(|a| a == SANDBOX_COMMAND) {
//!         return sandbox_main(&args);
//!     }
//!     let work = tempfile::tempdir().unwrap();
//!     extract_layer(Path::new("base/layer.tar"), &work.path().join("lower0")).unwrap();
//!     std::fs::create_dir(work.path().join("upper")).unwrap();
//!     let run = RootRun {
//!         lower: vec![work.path().join("lower0")],
//!         upper: work.path().join("upper"),
//!         work: work.path().join("work"),
//!         script: "mkdir -p /data && echo hello > /data/hello".to_owned(),
//!         shell: None,
//!         store: Some(PathBuf::from("/nix/store")),
//!         limits: Limits::default(),
//!     };
//!     match run_as_root(&run, Path::new("/proc/self/exe"), &Cancel::new()) {
//!         Ok(_recordings) => ExitCode::SUCCESS, // upper/data/hello now exists
//!         Err(e) => {
//!             eprintln!("error: {e}");
//!             ExitCode::FAILURE
//!         }
//!     }
//! }
//! ```
//!
//! # How a run goes
//!
//! 1. The caller ([`run_as_root`]) makes a scratch folder inside [`RootRun::work`] and
//!    starts `BINARY __sandbox` with the request as JSON on its standard input.
//! 2. The helper (without root: after mapping the caller to root in a new user namespace,
//!    where the script's `chown` and `mknod` calls are recorded as for a fake root)
//!    unshares the mount, PID, IPC, UTS and network namespaces, makes every mount private,
//!    mounts the overlay (a bind of the upper folder when there are no base layers), and
//!    creates the missing mount points `dev`, `proc`, `sys`, `tmp`, `nix/store`.
//! 3. It starts `BINARY __sandbox init`, PID 1 of the new PID namespace, which in a mount
//!    namespace of its own mounts a fresh `/proc`, a read-only `/sys`, a small `/dev` and
//!    the store, pivots into the tree and becomes `sh -e -c SCRIPT`.
//! 4. The helper waits, removes the mount points it created (`tmp` stays, as in nixpkgs),
//!    unmounts the overlay and reports how the script ended; the caller removes the
//!    scratch folder and turns the report into a [`Result`].
//!
//! # Determinism
//!
//! The script sees a fixed environment: `PATH=/bin:/usr/bin:/sbin:/usr/sbin` (plus the
//! folder of a shell given by path), `HOME=/root`, `TZ=UTC`, `LC_ALL=C`, umask 022, host
//! name `localhost`, working directory `/`, standard input `/dev/null`, no network but a
//! loopback device that is down. What it does with the clock or random numbers is its own
//! business. Directories the sandbox creates get mode 0755 whatever the caller's umask.
//!
//! # Safety of the host
//!
//! nixpkgs runs the script in a throw-away virtual machine; here the kernel's own
//! boundaries give the same guarantee, as rootless container engines do:
//!
//! - The script is root of a user namespace only, never of the host: as root, the init
//!   process starts it in a namespace that maps a private range of host ids
//!   ([`IdRange`], from `/etc/subuid` or a high default; the folders are shifted into the
//!   range first), and as an ordinary user the namespace maps only the caller. Owners and
//!   devices it gives are recorded by the fake root's supervisor where the kernel refuses
//!   them, so the layer is what real root would make.
//! - Before it starts, capabilities that act on the host's kernel leave the bounding set,
//!   `no_new_privs` is set, a seccomp filter makes the clock, modules, reboot, swap,
//!   accounting, BPF, perf, keyrings, handles, mounts and new namespaces fail with EPERM,
//!   and no descriptor but standard input, output and error stays open (`confine.rs`).
//! - The caller stops a script that runs longer than [`Limits::timeout`] or leaves less
//!   than [`Limits::disk_reserve`] free, with everything it started.
//!
//! - All mounts live in private mount namespaces and disappear with the sandbox's last
//!   process; the helper dies with its caller and the init process with the helper
//!   (parent-death signals), and the kernel kills every process of the PID namespace when
//!   its PID 1 ends. A SIGINT or SIGTERM to the caller therefore leaves nothing mounted and
//!   nothing running; callers that catch them pass a [`Cancel`] to [`run_as_root`].
//! - The tree is entered with `pivot_root` and the host's root is detached, so no host path
//!   is reachable. `/dev` is a fresh tmpfs with `null`, `zero`, `full`, `random`, `urandom`
//!   and `tty` bound from the host, not the host's `/dev`; `/sys` is a fresh read-only
//!   sysfs; `/proc/sys`, `/proc/sysrq-trigger`, `/proc/irq` and `/proc/bus` are
//!   read-only; the store is bound read-only; the network namespace has no interfaces.
//! - [`extract_layer`] writes nothing outside its destination whatever the tar holds.

mod confine;
mod error;
mod extract;
mod fakeroot;
mod helper;
mod idmap;
mod init;
mod mounts;
mod protocol;
mod script;
mod seccomp;

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, getegid, geteuid};
use serde::{Deserialize, Serialize};

use buildimage_layer::{Cancel, EntryKind, Recorded, Recordings, ScratchDir};

pub use error::{Error, Result};
pub use extract::{Extracted, extract_layer};
pub use idmap::{IdRange, shift_tree};
pub use script::run_script;

use crate::protocol::{HelperRequest, Job, Report};

/// `argv[1]` of the helper processes. The binary given to [`run_as_root`] must pass its
/// `argv` to [`sandbox_main`] when it sees this.
pub const SANDBOX_COMMAND: &str = "__sandbox";

/// `argv[2]` of the init process (`BINARY __sandbox init`).
const INIT_ROLE: &str = "init";

/// Linux's limit on one argument (`MAX_ARG_STRLEN`, 32 pages), less the final NUL.
const MAX_SCRIPT: usize = 32 * 4096 - 1;

/// How long a helper that was asked to stop may take to clean up before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How often the caller looks whether the helper ended or a stop was asked for.
const POLL: Duration = Duration::from_millis(10);

/// One `runAsRoot` run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RootRun {
    /// The extracted base layers, lowest first (see [`extract_layer`]). Empty: the upper
    /// folder alone is the root, bind-mounted (as nixpkgs does without `fromImage`).
    pub lower: Vec<PathBuf>,
    /// The overlay's upper folder: the staged `copyToRoot`, which receives every change the
    /// script makes (deletions of lower objects as character devices 0/0, folders that
    /// replace lower ones marked opaque).
    pub upper: PathBuf,
    /// A folder on the same file system as `upper`, created when missing, for overlay's
    /// work folder and the mount point. Everything the run puts there is removed before
    /// [`run_as_root`] returns; the folder itself is left to the caller.
    pub work: PathBuf,
    /// The shell code, run with `sh -e -c`.
    pub script: String,
    /// `runAsRootShell`: the shell, an absolute path inside the image or under
    /// `/nix/store`, used when the image has no `/bin/sh` of its own (which nixpkgs runs).
    pub shell: Option<String>,
    /// The host's store folder itself (`DIR/nix/store` for `--store DIR`), bound read-only
    /// at `/nix/store`.
    pub store: Option<PathBuf>,
    /// What the script may use (enforced by the caller, not sent to the helper).
    #[serde(skip)]
    pub limits: Limits,
}

/// What a script may use, enforced from outside the sandbox while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long the script may run (wall clock); then it is stopped with everything it
    /// started, and the run fails with [`Error::TimedOut`]. `None`: no limit.
    pub timeout: Option<Duration>,
    /// The most free space the script must leave on the file system it writes to (its
    /// upper folder's, its folder's): when less is free, it is stopped and the run fails
    /// with [`Error::DiskReserve`] rather than filling the disk. The reserve of a run is
    /// the smaller of this and an eighth of what was free when it started, so that a small
    /// file system can still be written.
    pub disk_reserve: u64,
}

impl Default for Limits {
    /// One hour, and 256 MiB kept free.
    fn default() -> Self {
        Limits {
            timeout: Some(Duration::from_hours(1)),
            disk_reserve: 256 << 20,
        }
    }
}

/// The entry point of the helper processes: call it with the whole `argv` when `argv[1]` is
/// [`SANDBOX_COMMAND`], and return its exit code from `main`.
pub fn sandbox_main(args: &[OsString]) -> ExitCode {
    match args.get(2) {
        None => helper::main(),
        Some(role) if role == INIT_ROLE => init::main(),
        Some(role) => {
            eprintln!("error: unknown sandbox role {}", role.to_string_lossy());
            ExitCode::FAILURE
        }
    }
}

/// Runs `req.script` as root in the sandbox (see the crate documentation) and waits for
/// it. `self_exe` is a binary whose `main` dispatches [`SANDBOX_COMMAND`] to
/// [`sandbox_main`]; `/proc/self/exe` names the running one.
///
/// Returns how to read `req.upper` back ([`RootOutcome`]): the script ran in a user
/// namespace (see the crate documentation), so the owners and device nodes the kernel
/// refused there are recorded, and as root the folders were shifted into a private range
/// of host ids.
///
/// The script's standard output and standard error both go to our standard error. When
/// `cancel` is set (a caller that catches SIGINT and SIGTERM sets it), the sandbox is torn
/// down, every process killed and everything unmounted, and [`Error::Interrupted`]
/// returned.
pub fn run_as_root(req: &RootRun, self_exe: &Path, cancel: &Cancel) -> Result<RootOutcome> {
    check_script(&req.script)?;
    let mut run = req.clone();
    run.upper = existing_dir(&req.upper, "the upper folder is not a folder")?;
    run.lower = req
        .lower
        .iter()
        .map(|l| existing_dir(l, "a lower folder is not a folder"))
        .collect::<Result<_>>()?;
    if let Some(store) = &req.store {
        run.store = Some(existing_dir(store, "the store is not a folder")?);
    }
    let id_range = host_id_range();
    if let Some(range) = id_range {
        // The script's ids are the range's: it must see the folders with its own ids.
        for dir in run.lower.iter().chain([&run.upper]) {
            shift_tree(dir, &range).map_err(|e| Error::io("shift the owners of", dir, e))?;
        }
    }
    let watched = run.upper.clone();
    let report = run_helper(
        &req.work,
        Job::RunAsRoot(run, id_range),
        &req.limits,
        &watched,
        self_exe,
        cancel,
    )?;
    Ok(RootOutcome {
        recordings: recorded(report, self_exe)?,
        id_range,
    })
}

/// What reading a `runAsRoot` upper folder back needs, for `buildimage_layer::UpperOptions`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootOutcome {
    /// Owners and device nodes the script gave that the disk cannot show, by device and
    /// inode of the objects in the upper folder (`UpperOptions::recordings`).
    pub recordings: Recordings,
    /// The range of host ids the script ran with, when the caller is root: the folder's
    /// owners are in it (`UpperOptions::id_shift`).
    pub id_range: Option<IdRange>,
}

impl RootOutcome {
    /// `UpperOptions::id_shift`: (host uid of 0, host gid of 0, how many).
    pub fn id_shift(&self) -> Option<(u64, u64, u64)> {
        self.id_range.map(|r| {
            (
                u64::from(r.uid_base),
                u64::from(r.gid_base),
                u64::from(r.count),
            )
        })
    }
}

/// One `fakeRootCommands` run: a script run as root of a user namespace in a folder, its
/// `chown` and `mknod` calls recorded rather than made (see [`run_fake_root`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeRoot {
    /// The folder: the script's working folder, or its root with `chroot`.
    pub dir: PathBuf,
    /// A folder for the run's scratch files (a mount point, with `chroot`), created when
    /// missing; what the run puts there is removed before [`run_fake_root`] returns.
    pub work: PathBuf,
    /// The shell code, run with `sh -e -c`.
    pub script: String,
    /// `enableFakechroot`: run chrooted into `dir` (the image's own `/bin/sh` runs the
    /// script), with a fresh `/dev`, `/proc`, read-only `/sys` and the store read-only at
    /// `/nix/store`. Without it the script runs with the host's `sh` in `dir`.
    pub chroot: bool,
    /// The host's store folder, bound read-only at `/nix/store` with `chroot`.
    pub store: Option<PathBuf>,
    /// What the script may use (enforced by the caller, not sent to the helper).
    #[serde(skip)]
    pub limits: Limits,
}

/// The mount points a chrooted fake root's folder gets, which are not part of it: leave
/// them out when reading it back.
pub const FAKE_CHROOT_MOUNTS: [&[u8]; 4] = [b"dev", b"proc", b"sys", b"nix/store"];

/// Runs `req.script` as a fake root (see `FakeRoot`) and returns what its `chown` and
/// `mknod` calls recorded, for `buildimage_layer::Tree::from_staged`.
///
/// The script runs as root of a user namespace that maps only the caller (real root
/// included): owners it gives and device nodes it makes are recorded instead of made (see
/// the `fakeroot` module), so the result is the same as root and as an ordinary user.
/// `self_exe`, the script's output and `cancel` are as for [`run_as_root`].
pub fn run_fake_root(req: &FakeRoot, self_exe: &Path, cancel: &Cancel) -> Result<Recordings> {
    check_script(&req.script)?;
    let mut job = req.clone();
    job.dir = existing_dir(&req.dir, "the folder is not a folder")?;
    if let Some(store) = &req.store {
        job.store = Some(existing_dir(store, "the store is not a folder")?);
    }
    let watched = job.dir.clone();
    let report = run_helper(
        &req.work,
        Job::FakeRoot(job),
        &req.limits,
        &watched,
        self_exe,
        cancel,
    )?;
    recorded(report, self_exe)
}

/// The records of a supervised script that succeeded, or the error its report stands for.
fn recorded(report: Report, self_exe: &Path) -> Result<Recordings> {
    match report {
        Report::Recorded {
            exited: Some(0),
            records,
            ..
        } => Ok(records
            .into_iter()
            .map(|r| {
                let device = r.device.map(|(char, major, minor)| {
                    if char {
                        EntryKind::CharDevice { major, minor }
                    } else {
                        EntryKind::BlockDevice { major, minor }
                    }
                });
                let recorded = Recorded {
                    uid: r.uid.map(u64::from),
                    gid: r.gid.map(u64::from),
                    device,
                };
                ((r.dev, r.ino), recorded)
            })
            .collect()),
        Report::Recorded {
            exited: Some(status),
            ..
        } => Err(Error::script_failed(status)),
        Report::Recorded { signal, .. } => Err(Error::ScriptKilled {
            signal: signal.unwrap_or(0),
        }),
        other => Err(report_error(other, self_exe)),
    }
}

/// A script that fits in one argument.
fn check_script(script: &str) -> Result<()> {
    if script.len() > MAX_SCRIPT {
        return Err(Error::ScriptTooLong {
            len: script.len(),
            max: MAX_SCRIPT,
        });
    }
    Ok(())
}

/// The canonical path of a folder the request names.
fn existing_dir(path: &Path, what: &'static str) -> Result<PathBuf> {
    match fs::metadata(path) {
        Ok(md) if md.is_dir() => fs::canonicalize(path).map_err(|e| Error::io("resolve", path, e)),
        Ok(_) => Err(Error::BadRequest {
            path: path.to_owned(),
            reason: what,
        }),
        Err(e) => Err(Error::io("inspect", path, e)),
    }
}

/// Starts the helper for `job` with a scratch folder inside `work`, waits for it (asking
/// it to stop when `cancel` is set or a limit is reached; `watched` is the folder whose
/// file system the disk reserve is kept on) and returns its report.
fn run_helper(
    work: &Path,
    job: Job,
    limits: &Limits,
    watched: &Path,
    self_exe: &Path,
    cancel: &Cancel,
) -> Result<Report> {
    fs::create_dir_all(work).map_err(|e| Error::io("create", work, e))?;
    let scratch = ScratchDir::new_in(work, ".sandbox-")?;
    if let Job::RunAsRoot(run, _) = &job {
        fill(&scratch, run)?;
    } else {
        let root = scratch.join("root");
        fs::create_dir(&root).map_err(|e| Error::io("create", &root, e))?;
    }
    let request = HelperRequest {
        job,
        scratch: scratch.path().to_owned(),
        parent: i32::try_from(std::process::id()).unwrap_or(0),
    };
    let mut child = Command::new(self_exe)
        .arg(SANDBOX_COMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::Spawn {
            path: self_exe.to_owned(),
            source: e,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that died at once is reported below, from its exit status.
        serde_json::to_writer(&mut stdin, &request).ok();
    }
    // Read while waiting: a report larger than the pipe's buffer (a fake root's records)
    // would otherwise keep the helper from ending.
    let report = drain(child.stdout.take());
    let (status, stopped) = wait_helper(&mut child, cancel, &mut Watch::new(limits, watched))
        .map_err(|e| Error::io("wait for", self_exe, e))?;
    let text = report
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the reader panicked")))
        .map_err(|e| Error::io("read the report of", self_exe, e))?;
    let removed = scratch.remove().map_err(Error::from);
    if let Some(why) = stopped {
        return Err(why.error(watched));
    }
    let Ok(report) = serde_json::from_slice::<Report>(&text) else {
        return Err(Error::Helper {
            path: self_exe.to_owned(),
            status: describe(status),
        });
    };
    removed?;
    Ok(report)
}

/// Reads `pipe` to its end on a thread of its own, so that a child can write more than the
/// pipe holds while it is waited for.
fn drain<R: Read + Send + 'static>(
    pipe: Option<R>,
) -> std::thread::JoinHandle<std::io::Result<Vec<u8>>> {
    std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut pipe) = pipe {
            pipe.read_to_end(&mut text)?;
        }
        Ok(text)
    })
}

/// The error a report other than success stands for.
fn report_error(report: Report, self_exe: &Path) -> Error {
    match report {
        Report::Exited(status) => Error::script_failed(status),
        Report::Signaled(signal) => Error::ScriptKilled { signal },
        Report::Interrupted => buildimage_layer::Interrupted.into(),
        Report::NoShell => Error::NoShell,
        Report::ShellNotFound(shell) => Error::ShellNotFound { shell },
        Report::UserNamespace(message) => Error::UserNamespace { message },
        Report::Failed { step, message } => Error::Setup { step, message },
        Report::Recorded { .. } => Error::Helper {
            path: self_exe.to_owned(),
            status: "a report of another kind of run".to_owned(),
        },
    }
}

/// Waits for the helper; when `stop` turns true asks it to stop (SIGTERM), and kills it
/// when it takes longer than [`STOP_GRACE`]. Returns its status and whether it was stopped.
fn wait_helper(
    child: &mut std::process::Child,
    stop: &Cancel,
    watch: &mut Watch,
) -> std::io::Result<(ExitStatus, Option<Stopped>)> {
    let mut asked: Option<(Instant, Stopped)> = None;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status, asked.map(|(_, why)| why)));
        }
        match asked {
            None => {
                let why = if stop.is_cancelled() {
                    Some(Stopped::Interrupted)
                } else {
                    watch.exceeded()
                };
                if let Some(why) = why {
                    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
                    kill(pid, Signal::SIGTERM).ok();
                    asked = Some((Instant::now(), why));
                }
            }
            Some((when, _)) if when.elapsed() > STOP_GRACE => {
                child.kill().ok();
            }
            Some(_) => {}
        }
        std::thread::sleep(POLL);
    }
}

/// Why the caller stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    /// `cancel` was set.
    Interrupted,
    /// The script ran longer than this.
    TimedOut(Duration),
    /// Less than this was free on the watched file system.
    DiskReserve(u64),
}

impl Stopped {
    fn error(self, watched: &Path) -> Error {
        match self {
            Stopped::Interrupted => buildimage_layer::Interrupted.into(),
            Stopped::TimedOut(after) => Error::TimedOut { after },
            Stopped::DiskReserve(reserve) => Error::DiskReserve {
                path: watched.to_owned(),
                reserve,
            },
        }
    }
}

/// The limits of one run, checked while it runs.
struct Watch {
    deadline: Option<(Instant, Duration)>,
    watched: PathBuf,
    /// The reserve of this run (see [`Limits::disk_reserve`]); 0 when the file system's
    /// free space cannot be read.
    reserve: u64,
    /// When the free space was looked at last: `statvfs` every [`DISK_CHECK`].
    checked: Instant,
}

/// How often the free space of a running script's file system is looked at.
const DISK_CHECK: Duration = Duration::from_millis(50);

impl Watch {
    fn new(limits: &Limits, watched: &Path) -> Watch {
        let free = available(watched).unwrap_or(0);
        Watch {
            deadline: limits.timeout.map(|t| (Instant::now(), t)),
            watched: watched.to_owned(),
            reserve: limits.disk_reserve.min(free / 8),
            checked: Instant::now(),
        }
    }

    /// Whether a limit is reached.
    fn exceeded(&mut self) -> Option<Stopped> {
        if let Some((start, timeout)) = self.deadline
            && start.elapsed() >= timeout
        {
            return Some(Stopped::TimedOut(timeout));
        }
        if self.reserve > 0 && self.checked.elapsed() >= DISK_CHECK {
            self.checked = Instant::now();
            if available(&self.watched).is_some_and(|free| free < self.reserve) {
                return Some(Stopped::DiskReserve(self.reserve));
            }
        }
        None
    }
}

/// The bytes an unprivileged process may still write on the file system of `path`.
fn available(path: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    Some(st.blocks_available().saturating_mul(st.fragment_size()))
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown status".to_owned(),
    }
}

/// The ids on disk that stand for root after a run: `(0, 0)` for a caller that is root;
/// otherwise the caller's effective ids, which the sandbox's user namespace maps to root.
/// `buildimage_layer::UpperOptions` wants them to read the upper folder.
pub fn host_root_ids() -> (u64, u64) {
    if geteuid().is_root() {
        (0, 0)
    } else {
        (u64::from(geteuid().as_raw()), u64::from(getegid().as_raw()))
    }
}

/// The private range of host ids a `runAsRoot` script runs with: `Some` when the caller
/// is root (see [`IdRange::for_root`]); `None` for an ordinary user, whose script's root is
/// the caller itself ([`host_root_ids`]). Read once per run, in [`run_as_root`], which
/// shifts the folders into it, sends it to the helper and returns it.
fn host_id_range() -> Option<IdRange> {
    geteuid().is_root().then(IdRange::for_root)
}

/// Whether this process runs in a user namespace other than the initial one.
fn in_user_namespace() -> bool {
    fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|map| !map.split_whitespace().eq(["0", "0", "4294967295"]))
}

/// Whether overlayfs must use `user.overlay.*` attributes (`userxattr`): `trusted.*` ones
/// need root in the initial user namespace.
fn needs_userxattr() -> bool {
    !geteuid().is_root() || in_user_namespace()
}

/// Fills the scratch folder of one run: `root` (the mount point), `ovl` (overlay's work
/// folder), and symlinks `upper` and `lower/N` to the request's folders.
fn fill(scratch: &ScratchDir, run: &RootRun) -> Result<()> {
    let mkdir = |name: &str| {
        let path = scratch.join(name);
        fs::create_dir(&path).map_err(|e| Error::io("create", &path, e))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("set the mode of", &path, e))
    };
    mkdir("root")?;
    mkdir("ovl")?;
    mkdir("lower")?;
    let link = |target: &Path, name: &str| {
        let path = scratch.join(name);
        symlink(target, &path).map_err(|e| Error::io("create", &path, e))
    };
    link(&run.upper, "upper")?;
    for (i, lower) in run.lower.iter().enumerate() {
        link(lower, &format!("lower/{i}"))?;
    }
    Ok(())
}
