//! SIGINT and SIGTERM stop a build cleanly: they set the build's [`Cancel`] flag, every
//! stage checks it between chunks of work, and every temporary file and folder is removed
//! by its guard on the way out.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use buildimage_layer::Cancel;
use nix::sys::signal::Signal;

/// The installed handlers.
pub struct Signals {
    cancel: Cancel,
    which: Arc<AtomicUsize>,
}

impl Signals {
    /// Catches SIGINT and SIGTERM from now on.
    pub fn install() -> std::io::Result<Self> {
        let cancel = Cancel::new();
        let which = Arc::new(AtomicUsize::new(0));
        for signal in [Signal::SIGINT, Signal::SIGTERM] {
            let number = signal as i32;
            signal_hook::flag::register_usize(
                number,
                which.clone(),
                number.unsigned_abs() as usize,
            )?;
            signal_hook::flag::register(number, Arc::clone(cancel.flag()))?;
        }
        Ok(Signals { cancel, which })
    }

    /// The flag the signals set.
    pub fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    /// The signal that arrived, if any.
    pub fn received(&self) -> Option<Signal> {
        if !self.cancel.is_cancelled() {
            return None;
        }
        let number = i32::try_from(self.which.load(Ordering::SeqCst)).unwrap_or(0);
        Some(Signal::try_from(number).unwrap_or(Signal::SIGTERM))
    }
}
