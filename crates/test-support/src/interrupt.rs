//! One interrupt harness: start a build, wait until it is where the test wants it, send
//! SIGINT or SIGTERM, and check that it stopped cleanly (README, "Bad input and faults").

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::fs::{TestDir, assert_nothing_mounted, mkdir, names};
use crate::run::Buildimage;

/// How long buildimage may take to stop after the signal: it acts on a signal between
/// chunks and kills a running script at once. Scripts that the tests interrupt sleep 30 s
/// or more, so a build that waits for its script fails this.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the build's child processes may take to disappear once it has exited: they
/// are killed, not asked, so this is only the kernel's and the reaper's time.
const GONE_TIMEOUT: Duration = Duration::from_secs(2);

/// The interval of every poll.
const POLL: Duration = Duration::from_millis(5);

/// A build under way, to be interrupted.
///
/// It runs in a [`TestDir`] with `TMPDIR` = [`TestDir::tmp`] and OUT in `out/`; standard
/// error goes to `stderr.txt` there: a file, not a pipe, since a process that outlived the
/// build and held a pipe open would keep the test waiting for the end of the output.
pub struct Interrupt {
    child: Child,
    dir: PathBuf,
    tmpdir: PathBuf,
    out_dir: PathBuf,
    stderr_path: PathBuf,
}

impl Interrupt {
    /// Starts `cmd` (a `build SPEC` command) in `dir` with `-o out/OUT_NAME`.
    pub fn start(dir: &TestDir, cmd: &mut Buildimage, out_name: &str) -> Interrupt {
        let tmpdir = dir.tmp();
        let out_dir = dir.join("out");
        mkdir(&out_dir, 0o755);
        let stderr_path = dir.join("stderr.txt");
        let stderr = File::create(&stderr_path).expect("create stderr.txt");
        let child = cmd
            .tmpdir(&tmpdir)
            .out(out_dir.join(out_name))
            .spawn(Stdio::null(), Stdio::from(stderr));
        Interrupt {
            child,
            dir: dir.path().to_owned(),
            tmpdir,
            out_dir,
            stderr_path,
        }
    }

    /// The build's `TMPDIR`.
    pub fn tmpdir(&self) -> &Path {
        &self.tmpdir
    }

    /// The folder OUT is in.
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// The build's process id.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("a pid")
    }

    /// The ids of the build's descendants whose command line contains `needle`.
    pub fn descendants_with(&self, needle: &[u8]) -> Vec<i32> {
        let matching = processes_matching(needle);
        descendants(&processes(), self.pid())
            .into_iter()
            .filter(|pid| matching.contains(pid))
            .collect()
    }

    /// Waits up to `timeout` until `ready` holds (it is given the build, e.g. for
    /// [`Interrupt::descendants_with`]). Panics, with the build's standard
    /// error, if the build ends first (it must still run to be interrupted), and kills it
    /// if `ready` never holds.
    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut(&Interrupt) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !ready(self) {
            if let Some(status) = self.child.try_wait().expect("poll buildimage") {
                panic!(
                    "the build ended ({status}) before {what}, so it could not be interrupted:\n{}",
                    fs::read_to_string(&self.stderr_path).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{what}: not seen after {timeout:?}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sends `signal`, waits for the build to end, then for the processes it had started
    /// to end too, and reports what is left. Processes still alive then are killed (by
    /// their ids) after being recorded.
    pub fn stop(mut self, signal: Signal) -> Stopped {
        let children = descendants(&processes(), self.pid());
        if let Some(status) = self.child.try_wait().expect("poll buildimage") {
            panic!(
                "the build had ended ({status}) before it was sent {signal}:\n{}",
                fs::read_to_string(&self.stderr_path).unwrap_or_default()
            );
        }
        kill(Pid::from_raw(self.pid()), signal).expect("signal buildimage");
        let sent = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("poll buildimage") {
                break status;
            }
            if sent.elapsed() > STOP_TIMEOUT {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "buildimage did not stop within {STOP_TIMEOUT:?} of {signal}:\n{}",
                    fs::read_to_string(&self.stderr_path).unwrap_or_default()
                );
            }
            std::thread::sleep(POLL);
        };
        let deadline = Instant::now() + GONE_TIMEOUT;
        let mut left: Vec<i32> = children.iter().copied().filter(|&p| alive(p)).collect();
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(POLL);
            left.retain(|&p| alive(p));
        }
        for &pid in &left {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        Stopped {
            signal,
            code: status.code(),
            stderr: fs::read_to_string(&self.stderr_path).expect("read stderr.txt"),
            tmpdir: names(&self.tmpdir),
            out_dir: names(&self.out_dir),
            children,
            left,
            dir: self.dir,
        }
    }
}

/// What an interrupted build left.
#[derive(Debug)]
pub struct Stopped {
    /// The signal sent.
    pub signal: Signal,
    /// The exit code.
    pub code: Option<i32>,
    /// Standard error.
    pub stderr: String,
    /// The entries of `TMPDIR` afterwards.
    pub tmpdir: Vec<String>,
    /// The entries of the folder of OUT afterwards.
    pub out_dir: Vec<String>,
    /// The processes the build had started when it was signalled (its descendants).
    pub children: BTreeSet<i32>,
    /// Those of them still alive some seconds after the build ended.
    pub left: Vec<i32>,
    dir: PathBuf,
}

impl Stopped {
    /// Checks every promise of an interrupted build: exit code 128 + the signal's number
    /// (130, 143), the line `error: interrupted by SIGTERM, nothing was written` (with the
    /// signal's name), no image and no temporary file beside it, an empty `TMPDIR`, no
    /// process of the build left, nothing mounted below the test's folder.
    pub fn assert_clean(&self) {
        let expected = match self.signal {
            Signal::SIGINT => 130,
            Signal::SIGTERM => 143,
            other => 128 + other as i32,
        };
        assert_eq!(
            self.code,
            Some(expected),
            "exit code after {}:\n{}",
            self.signal,
            self.stderr
        );
        let message = format!("error: interrupted by {}, nothing was written", self.signal);
        assert!(
            self.stderr.lines().any(|line| line == message),
            "no line {message:?} in:\n{}",
            self.stderr
        );
        assert_eq!(
            self.out_dir,
            Vec::<String>::new(),
            "no image and no temporary file"
        );
        assert_eq!(self.tmpdir, Vec::<String>::new(), "TMPDIR is empty");
        assert!(
            self.left.is_empty(),
            "processes {:?} (of {:?}) still ran {GONE_TIMEOUT:?} after the build ended",
            self.left,
            self.children
        );
        assert_nothing_mounted(&self.dir);
    }
}

/// A process as `/proc` shows it.
struct Proc {
    pid: i32,
    ppid: i32,
}

/// Every process that can be read now.
fn processes() -> Vec<Proc> {
    let mut procs = Vec::new();
    for entry in fs::read_dir("/proc").expect("list /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // A process that ends meanwhile is skipped.
        let Ok(status) = fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let Some(ppid) = status
            .lines()
            .find_map(|line| line.strip_prefix("PPid:"))
            .and_then(|v| v.trim().parse().ok())
        else {
            continue;
        };
        procs.push(Proc { pid, ppid });
    }
    procs
}

/// The process ids of `root`'s descendants.
fn descendants(procs: &[Proc], root: i32) -> BTreeSet<i32> {
    let mut found = BTreeSet::from([root]);
    loop {
        let more: Vec<i32> = procs
            .iter()
            .filter(|p| found.contains(&p.ppid) && !found.contains(&p.pid))
            .map(|p| p.pid)
            .collect();
        if more.is_empty() {
            found.remove(&root);
            return found;
        }
        found.extend(more);
    }
}

/// The ids of the processes whose command line contains `needle`.
pub fn processes_matching(needle: &[u8]) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|p| {
            fs::read(format!("/proc/{}/cmdline", p.pid))
                .is_ok_and(|c| !needle.is_empty() && c.windows(needle.len()).any(|w| w == needle))
        })
        .map(|p| p.pid)
        .collect()
}

/// Whether the process `pid` still runs: it exists and is no zombie.
pub fn alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `PID (comm) STATE ...`; the name may hold spaces, so split after the last ')'.
    stat.rsplit_once(')')
        .is_some_and(|(_, rest)| !matches!(rest.trim_start().chars().next(), Some('Z' | 'X')))
}
