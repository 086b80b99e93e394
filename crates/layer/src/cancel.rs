//! Stopping long work from outside: one flag, shared by every step of a build.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A flag that asks long-running work to stop. Clones share the flag.
///
/// The binary sets it from its SIGINT and SIGTERM handlers ([`Cancel::flag`] is what
/// `signal_hook::flag::register` takes); the libraries look at it between chunks of work
/// and stop with [`Interrupted`], leaving their guards to clean up.
///
/// ```
/// use buildimage_layer::Cancel;
///
/// let cancel = Cancel::new();
/// let seen_by_a_worker = cancel.clone();
/// assert!(seen_by_a_worker.check().is_ok());
/// cancel.cancel();
/// assert!(seen_by_a_worker.check().is_err());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

/// The error of work stopped by a [`Cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Interrupted")]
pub struct Interrupted;

impl Cancel {
    /// A flag that is not set.
    pub fn new() -> Self {
        Cancel::default()
    }

    /// The shared flag itself, for signal handlers.
    pub fn flag(&self) -> &Arc<AtomicBool> {
        &self.0
    }

    /// Asks the work to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether stopping was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Fails with [`Interrupted`] when stopping was asked for.
    pub fn check(&self) -> Result<(), Interrupted> {
        if self.is_cancelled() {
            Err(Interrupted)
        } else {
            Ok(())
        }
    }
}
