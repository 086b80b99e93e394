//! Running child processes with signal forwarding, and the signal bookkeeping behind it.
//!
//! xtask catches `SIGINT`, `SIGTERM` and `SIGHUP` so that it can always stop the private
//! `dockerd`. A watcher thread records each signal; whoever waits (a child, the daemon's
//! start-up) polls the record and reacts. Nothing here needs `unsafe`: signal-hook's
//! iterator does the handler work, and signals are sent with the shell's `kill` builtin.

use std::fmt;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitCode, ExitStatus, Output, Stdio};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use signal_hook::consts::{SIGHUP, SIGINT, SIGKILL, SIGTERM};
use signal_hook::iterator::Signals;

/// How often waiting loops look at the child and at received signals.
const POLL: Duration = Duration::from_millis(50);

/// Every signal received so far, in order.
static RECEIVED: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Starts the thread that records `SIGINT`, `SIGTERM` and `SIGHUP` instead of letting
/// them kill xtask.
pub fn install_signal_watcher() -> Result<()> {
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("Cannot install signal handlers")?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                eprintln!(
                    "xtask: received {}, stopping (the private dockerd is always cleaned up)",
                    signal_name(signal)
                );
                RECEIVED
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(signal);
            }
        })
        .context("Cannot start the signal watcher thread")?;
    Ok(())
}

/// The signals received after the first `seen` ones.
fn received_since(seen: usize) -> Vec<i32> {
    let received = RECEIVED.lock().unwrap_or_else(PoisonError::into_inner);
    received.get(seen..).unwrap_or_default().to_vec()
}

/// Fails with [`Interrupted`] if any signal has been received.
pub fn check_interrupted() -> Result<()> {
    match received_since(0).first() {
        Some(&signal) => Err(Interrupted(signal).into()),
        None => Ok(()),
    }
}

/// The error for "xtask received a signal and stopped early".
#[derive(Debug)]
pub struct Interrupted(i32);

impl Interrupted {
    /// The conventional exit code, 128 + signal number.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(u8::try_from(128 + self.0).unwrap_or(u8::MAX))
    }
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Interrupted by {}", signal_name(self.0))
    }
}

impl std::error::Error for Interrupted {}

/// Where a child runs, which decides how signals reach it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// In a new process group of its own. The terminal's Ctrl-C reaches only xtask, which
    /// forwards every signal to the whole group (cargo and the test binaries and rustc
    /// processes it started), and sends `SIGKILL` on a second signal. Standard input is
    /// closed: a background process group must not read the terminal.
    Own,
    /// In xtask's process group, with the terminal, so that the child can be interactive.
    /// The terminal delivers Ctrl-C to the child itself, so `SIGINT` is not forwarded;
    /// `SIGTERM` and `SIGHUP` are forwarded to the child's pid.
    Shared,
}

/// Runs `cmd` to completion, forwarding signals as `group` says.
///
/// For [`Group::Own`] a signal makes this fail with [`Interrupted`] once the child has
/// exited; for [`Group::Shared`] the child's status is returned, whatever it is.
pub fn run(cmd: &mut Command, group: Group) -> Result<ExitStatus> {
    // From here on, every signal is news: any earlier one has already failed the check.
    check_interrupted()?;
    if group == Group::Own {
        cmd.process_group(0).stdin(Stdio::null());
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("Cannot start {}", display(cmd)))?;
    let mut seen = 0;
    let mut forwarded = 0_usize;
    let status = loop {
        if let Some(status) = child.try_wait().context("Cannot wait for a child")? {
            break status;
        }
        let new = received_since(seen);
        seen += new.len();
        for signal in new {
            match group {
                Group::Own => {
                    let signal = if forwarded == 0 { signal } else { SIGKILL };
                    send_signal(Target::Group(child.id()), signal);
                    forwarded += 1;
                }
                Group::Shared if signal != SIGINT => {
                    send_signal(Target::Process(child.id()), signal);
                }
                Group::Shared => {}
            }
        }
        thread::sleep(POLL);
    };
    if group == Group::Own {
        check_interrupted()?;
    }
    Ok(status)
}

/// Runs `cmd` like [`run`] and fails unless it exits successfully.
pub fn run_checked(cmd: &mut Command, group: Group) -> Result<()> {
    let status = run(cmd, group)?;
    if !status.success() {
        bail!("{} failed: {}", display(cmd), describe(status));
    }
    Ok(())
}

/// Runs `cmd` with captured output, killing it after `timeout`. For clean-up commands,
/// which must not hang and do not react to signals.
pub fn output_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("Cannot start {}", display(cmd)))?;
    // Read both pipes on threads so that a chatty child cannot block on a full pipe
    // while we poll for its exit.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().context("Cannot wait for a child")? {
            break status;
        }
        if Instant::now() >= deadline {
            kill_and_reap(&mut child);
            bail!("{} did not finish within {timeout:?}", display(cmd));
        }
        thread::sleep(POLL);
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error only shortens the captured output; the exit status still counts.
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// `SIGKILL`s a child and reaps it, ignoring errors (it may have just exited).
pub fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Where [`send_signal`] sends a signal.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// One process.
    Process(u32),
    /// A whole process group, by its id.
    Group(u32),
}

/// Sends `signal` to `target`. A target that has exited in the meantime is not an error:
/// there is nothing more to do.
pub fn send_signal(target: Target, signal: i32) {
    use nix::sys::signal::{Signal, kill, killpg};
    use nix::unistd::Pid;
    let Ok(sig) = Signal::try_from(signal) else {
        eprintln!("xtask: {signal} is not a signal");
        return;
    };
    let pid = |id: u32| Pid::from_raw(i32::try_from(id).unwrap_or(i32::MAX));
    let result = match target {
        Target::Process(id) => kill(pid(id), sig),
        Target::Group(id) => killpg(pid(id), sig),
    };
    match result {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(err) => eprintln!(
            "xtask: cannot send {} to {target:?}: {err}",
            signal_name(signal)
        ),
    }
}

/// Whether process `pid` still exists (also as a zombie).
pub fn exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The exit code to pass on for a child's status: its own code, or 128 + signal.
pub fn exit_code(status: ExitStatus) -> ExitCode {
    let code = status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// "exit status 3" or "killed by SIGTERM".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by {}", signal_name(signal)),
        (None, None) => status.to_string(),
    }
}

/// A command line for messages, with arguments quoted when they need it.
pub fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg| {
            let arg = arg.to_string_lossy();
            if !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c))
            {
                arg.into_owned()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn signal_name(signal: i32) -> String {
    match signal {
        SIGHUP => "SIGHUP".into(),
        SIGINT => "SIGINT".into(),
        SIGKILL => "SIGKILL".into(),
        SIGTERM => "SIGTERM".into(),
        other => format!("signal {other}"),
    }
}
