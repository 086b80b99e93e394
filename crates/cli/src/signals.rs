//! SIGINT and SIGTERM stop a build cleanly: the flag is checked while the image is written,
//! and every temporary file and folder is removed by its guard on the way out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};

/// A signal that stopped the build.
#[derive(Debug, Clone, Copy)]
pub struct Signal(i32);

impl Signal {
    /// The signal number.
    pub fn number(self) -> i32 {
        self.0
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            SIGINT => f.write_str("SIGINT"),
            SIGTERM => f.write_str("SIGTERM"),
            n => write!(f, "signal {n}"),
        }
    }
}

/// The installed handlers.
pub struct Signals {
    stop: Arc<AtomicBool>,
    which: Arc<AtomicUsize>,
}

impl Signals {
    /// Catches SIGINT and SIGTERM from now on.
    pub fn install() -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let which = Arc::new(AtomicUsize::new(0));
        for sig in [SIGINT, SIGTERM] {
            signal_hook::flag::register_usize(sig, which.clone(), sig.unsigned_abs() as usize)?;
            signal_hook::flag::register(sig, stop.clone())?;
        }
        Ok(Signals { stop, which })
    }

    /// The flag that turns true when a signal arrives.
    pub fn flag(&self) -> &Arc<AtomicBool> {
        &self.stop
    }

    /// The signal that arrived, if any.
    pub fn received(&self) -> Option<Signal> {
        if self.stop.load(Ordering::SeqCst) {
            Some(Signal(
                i32::try_from(self.which.load(Ordering::SeqCst)).unwrap_or(SIGTERM),
            ))
        } else {
            None
        }
    }

    /// Fails when a signal arrived: called between the steps of a build.
    pub fn check(&self) -> anyhow::Result<()> {
        match self.received() {
            Some(sig) => anyhow::bail!("Interrupted by {sig}"),
            None => Ok(()),
        }
    }
}
