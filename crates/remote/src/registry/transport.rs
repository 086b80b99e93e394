//! TCP connections that a [`Cancel`] interrupts: the bottom of every agent's connector
//! chain, under TLS.
//!
//! The CLI's SIGINT handler only sets the flag, and a request to a registry that holds
//! it would otherwise sit in a socket read until the idle timeout, five minutes later.
//! So every blocking step waits in slices of [`SLICE`] and looks at the flag between
//! them: connecting (on a helper thread, as `std` cannot interrupt a connect), each
//! read and each write. A set flag fails the step with [`interrupted`].
//!
//! The socket is ours, not a wrapped one of ureq's `TcpConnector`, because a write cut
//! into slices must know how much of it went out: ureq's transport writes all or fails,
//! and a write that times out half done cannot be resumed from the outside.

use std::fmt;
use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use buildimage_layer::{Cancel, Interrupted};
use ureq::Timeout;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, ShutdownHandle,
    Transport, time,
};

/// How long a blocked connect, read or write waits before it looks at the flag again.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

/// The least time a connect to one address is given, as ureq does.
const MIN_CONNECT: Duration = Duration::from_millis(10);

/// The error of a step stopped by the flag: [`Interrupted`] in an I/O error.
///
/// Its kind is `Other`, not `Interrupted`: `std`'s `read_to_end` and `write_all`, and
/// rustls's `complete_io`, take `Interrupted` for a signal that cut a system call short
/// and try again at once, which would spin on a flag that stays set.
pub(crate) fn interrupted() -> ureq::Error {
    ureq::Error::Io(io::Error::other(Interrupted))
}

/// Whether `error` is, or wraps, the error of [`interrupted`].
pub(crate) fn is_interrupted(error: &ureq::Error) -> bool {
    match error {
        ureq::Error::Io(error) => {
            matches!(error.get_ref(), Some(inner) if inner.is::<Interrupted>())
        }
        _ => false,
    }
}

/// A connector that opens TCP connections interrupted by `cancel` (unless an earlier
/// connector of the chain, a CONNECT proxy, made one).
#[derive(Debug)]
pub(crate) struct CancellableTcp {
    cancel: Cancel,
}

impl CancellableTcp {
    /// A connector watching `cancel`.
    pub(crate) fn new(cancel: Cancel) -> CancellableTcp {
        CancellableTcp { cancel }
    }
}

impl<In: Transport> Connector<In> for CancellableTcp {
    type Out = Either<In, CancellableTcpTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        if let Some(transport) = chained {
            return Ok(Some(Either::A(transport)));
        }
        let stream = connect(&details.addrs, details.timeout, &self.cancel)?;
        if details.config.no_delay() {
            stream.set_nodelay(true)?;
        }
        let stream = Arc::new(stream);
        // So that `Agent::shutdown` reaches this connection too, as it does ureq's own.
        (details.register_shutdown)(Arc::downgrade(&stream) as Weak<dyn ShutdownHandle>)?;
        Ok(Some(Either::B(CancellableTcpTransport {
            stream,
            buffers: LazyBuffers::new(
                details.config.input_buffer_size(),
                details.config.output_buffer_size(),
            ),
            cancel: self.cancel.clone(),
            read_timeout: None,
            write_timeout: None,
        })))
    }
}

/// Connects to the first of `addrs` that answers within `timeout`, which the addresses
/// share: each gets an equal part of what is left. Stops when `cancel` is set.
fn connect(
    addrs: &[SocketAddr],
    timeout: NextTimeout,
    cancel: &Cancel,
) -> Result<TcpStream, ureq::Error> {
    let deadline = Deadline::new(timeout, None, timeout.reason)?;
    let mut last = None;
    for (index, &addr) in addrs.iter().enumerate() {
        let left = addrs.len() - index;
        let budget = deadline
            .left()?
            .map(|time| (time / u32::try_from(left).unwrap_or(u32::MAX)).max(MIN_CONNECT));
        match connect_one(addr, budget, cancel) {
            Ok(stream) => return Ok(stream),
            Err(error) if is_interrupted(&error) => return Err(error),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::AddrNotAvailable, "no address to connect to").into()
    }))
}

/// Connects to `addr` within `budget` on a helper thread, looking at `cancel` every
/// [`SLICE`]. When it is set, the thread is left to finish its connect (within the
/// budget) and close the socket.
fn connect_one(
    addr: SocketAddr,
    budget: Option<Duration>,
    cancel: &Cancel,
) -> Result<TcpStream, ureq::Error> {
    if cancel.is_cancelled() {
        return Err(interrupted());
    }
    let (sender, receiver) = mpsc::channel();
    thread::Builder::new()
        .name("registry-connect".to_owned())
        .spawn(move || {
            let stream = match budget {
                Some(budget) => TcpStream::connect_timeout(&addr, budget),
                None => TcpStream::connect(addr),
            };
            // The receiver is gone when the connect was given up.
            let _ = sender.send(stream);
        })?;
    loop {
        match receiver.recv_timeout(SLICE) {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(error)) if is_timeout(&error) => {
                return Err(ureq::Error::Timeout(Timeout::Connect));
            }
            Ok(Err(error)) => return Err(error.into()),
            Err(RecvTimeoutError::Timeout) if cancel.is_cancelled() => return Err(interrupted()),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err(
                    io::Error::other("the connecting thread ended without a result").into(),
                );
            }
        }
    }
}

/// Whether an I/O error is a socket timeout: `WouldBlock` is what a read or write past
/// its `SO_RCVTIMEO` or `SO_SNDTIMEO` gives on Unix, `TimedOut` elsewhere.
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// When a blocked step gives up: the request's remaining time, and an idle limit that
/// each transferred byte restarts (ureq's per-read and per-write timeouts, which it
/// applies to each system call).
struct Deadline {
    /// When the request's time is up, and the timeout to report then.
    overall: Option<(Instant, Timeout)>,
    /// The idle limit and the timeout to report.
    idle: Option<(Duration, Timeout)>,
    /// The last transfer, or the start.
    active: Instant,
}

impl Deadline {
    /// The deadline of `timeout` (its remaining time, without the per-read or
    /// per-write cap) with `idle` as the idle limit; a timeout if no time is left.
    fn new(
        timeout: NextTimeout,
        idle: Option<time::Duration>,
        idle_reason: Timeout,
    ) -> Result<Deadline, ureq::Error> {
        let now = Instant::now();
        if !timeout.after.is_not_happening() && timeout.after.is_zero() {
            return Err(ureq::Error::Timeout(timeout.reason));
        }
        let overall = if timeout.after.is_not_happening() {
            None
        } else {
            now.checked_add(*timeout.after)
                .map(|at| (at, timeout.reason))
        };
        Ok(Deadline {
            overall,
            idle: idle
                .filter(|idle| !idle.is_not_happening())
                .map(|idle| (*idle, idle_reason)),
            active: now,
        })
    }

    /// Some bytes went through: the idle limit starts again.
    fn progressed(&mut self) {
        self.active = Instant::now();
    }

    /// The time left, `None` if unlimited; the timeout error if none is.
    fn left(&self) -> Result<Option<Duration>, ureq::Error> {
        let now = Instant::now();
        let mut least: Option<Duration> = None;
        let limits = [
            self.overall,
            self.idle
                .and_then(|(idle, reason)| self.active.checked_add(idle).map(|at| (at, reason))),
        ];
        for (at, reason) in limits.into_iter().flatten() {
            let left = at.saturating_duration_since(now);
            if left.is_zero() {
                return Err(ureq::Error::Timeout(reason));
            }
            least = Some(least.map_or(left, |least| least.min(left)));
        }
        Ok(least)
    }

    /// How long the next wait may block: [`SLICE`] or the time left if shorter.
    fn slice(&self) -> Result<Duration, ureq::Error> {
        Ok(self.left()?.map_or(SLICE, |left| left.min(SLICE)))
    }
}

/// A TCP connection whose reads and writes block for at most [`SLICE`] at a time and
/// stop when the flag is set.
pub(crate) struct CancellableTcpTransport {
    /// Shared (weakly) with the agent's shutdown.
    stream: Arc<TcpStream>,
    buffers: LazyBuffers,
    cancel: Cancel,
    /// The socket's read timeout as last set, to spare system calls.
    read_timeout: Option<Duration>,
    /// The socket's write timeout as last set.
    write_timeout: Option<Duration>,
}

impl fmt::Debug for CancellableTcpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancellableTcpTransport")
            .field("peer", &self.stream.peer_addr().ok())
            .finish_non_exhaustive()
    }
}

impl CancellableTcpTransport {
    /// The slice the next wait may block for, or why it must not wait: the flag is
    /// set, or the time is up.
    fn next_slice(&self, deadline: &Deadline) -> Result<Duration, ureq::Error> {
        if self.cancel.is_cancelled() {
            return Err(interrupted());
        }
        deadline.slice()
    }
}

impl Transport for CancellableTcpTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let mut deadline = Deadline::new(timeout, timeout.per_write, Timeout::PerWrite)?;
        let mut sent = 0;
        while sent < amount {
            let slice = self.next_slice(&deadline)?;
            if self.write_timeout != Some(slice) {
                self.stream.set_write_timeout(Some(slice))?;
                self.write_timeout = Some(slice);
            }
            match (&*self.stream).write(&self.buffers.output()[sent..amount]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(written) => {
                    sent += written;
                    deadline.progressed();
                }
                Err(error) if is_timeout(&error) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let deadline = Deadline::new(timeout, timeout.per_read, Timeout::PerRead)?;
        loop {
            let slice = self.next_slice(&deadline)?;
            if self.read_timeout != Some(slice) {
                self.stream.set_read_timeout(Some(slice))?;
                self.read_timeout = Some(slice);
            }
            match (&*self.stream).read(self.buffers.input_append_buf()) {
                Ok(read) => {
                    self.buffers.input_appended(read);
                    return Ok(read > 0);
                }
                Err(error) if is_timeout(&error) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error.into()),
            }
        }
    }

    fn is_open(&mut self) -> bool {
        // Open when a read would block: nothing is waiting, not even the end of the
        // stream. Bytes nobody asked for mean the connection is not reusable either.
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let open = matches!(
            self.stream.peek(&mut [0]),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock
        );
        self.stream.set_nonblocking(false).is_ok() && open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_is_recognised_and_not_an_io_interrupt() {
        let error = interrupted();
        assert!(is_interrupted(&error));
        let ureq::Error::Io(io) = &error else {
            panic!("{error:?}")
        };
        assert_ne!(io.kind(), io::ErrorKind::Interrupted);
        assert!(!is_interrupted(&ureq::Error::Io(
            io::ErrorKind::Interrupted.into()
        )));
        assert!(!is_interrupted(&ureq::Error::ConnectionFailed));
    }

    #[test]
    fn deadline_takes_the_nearer_limit() {
        let timeout = NextTimeout {
            after: time::Duration::from_secs(30),
            reason: Timeout::Connect,
            per_read: Some(time::Duration::from_millis(50)),
            per_write: None,
        };
        let deadline = Deadline::new(timeout, timeout.per_read, Timeout::PerRead).unwrap();
        assert!(deadline.slice().unwrap() <= Duration::from_millis(50));
        thread::sleep(Duration::from_millis(60));
        assert!(matches!(
            deadline.slice(),
            Err(ureq::Error::Timeout(Timeout::PerRead))
        ));
        let unlimited = NextTimeout::default();
        let deadline = Deadline::new(unlimited, None, Timeout::PerRead).unwrap();
        assert_eq!(deadline.slice().unwrap(), SLICE);
    }

    #[test]
    fn connect_stops_when_cancelled() {
        let cancel = Cancel::new();
        cancel.cancel();
        // 192.0.2.1 (TEST-NET-1) would not answer; the flag is looked at first.
        let addr: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let error = connect(&[addr], NextTimeout::default(), &cancel).unwrap_err();
        assert!(is_interrupted(&error), "{error:?}");
    }
}
