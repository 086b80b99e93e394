//! The cap on what a base archive expands to: every byte a decompressor yields, for the
//! archive as a whole and for each compressed layer, is counted against one budget, and
//! reading stops with an error as soon as the next chunk would go over it, before that
//! chunk reaches the disk.
//!
//! Bytes copied from an uncompressed archive are not counted: they are bounded by the
//! archive's own size. So the scratch folder holds at most the archive's size plus the
//! budget, whatever the archive.

use std::cell::Cell;
use std::io::{self, Read};

/// The largest default budget: 64 GiB, larger than any base image seen in practice, small
/// enough that an ordinary disk survives it.
pub const MAX_DEFAULT_EXPANSION: u64 = 64 << 30;

/// The smallest default budget: 1 GiB, so that a small archive of very compressible
/// files (a few megabytes of zeros in a test image) is not refused for its ratio.
pub const MIN_DEFAULT_EXPANSION: u64 = 1 << 30;

/// How many times its own size a base archive may expand to by default: gzip and zstd
/// reach 3 to 10 times on real file systems; a bomb reaches thousands.
pub const DEFAULT_RATIO: u64 = 32;

/// The budget for an archive of `archive_size` bytes when none is given:
/// [`DEFAULT_RATIO`] times its size, but at least [`MIN_DEFAULT_EXPANSION`] and at most
/// [`MAX_DEFAULT_EXPANSION`].
pub fn default_max_expansion(archive_size: u64) -> u64 {
    archive_size
        .saturating_mul(DEFAULT_RATIO)
        .clamp(MIN_DEFAULT_EXPANSION, MAX_DEFAULT_EXPANSION)
}

/// The bytes decompression may still yield while one archive is read.
#[derive(Debug)]
pub(crate) struct Budget {
    used: Cell<u64>,
    limit: u64,
}

impl Budget {
    pub(crate) fn new(limit: u64) -> Self {
        Budget {
            used: Cell::new(0),
            limit,
        }
    }

    /// `inner` with every byte it yields counted against this budget.
    pub(crate) fn wrap<R: Read>(&self, inner: R) -> Expanding<'_, R> {
        Expanding {
            inner,
            budget: Some(self),
        }
    }

    /// `inner`, counted only if it is a decompressor's output.
    pub(crate) fn wrap_if<R: Read>(&self, decompressed: bool, inner: R) -> Expanding<'_, R> {
        Expanding {
            inner,
            budget: decompressed.then_some(self),
        }
    }
}

/// The error an [`Expanding`] reader returns when the budget is spent; the reader's caller
/// turns it into [`crate::Error::BaseTooLarge`] naming the member it was reading.
#[derive(Debug)]
pub(crate) struct Exceeded {
    pub(crate) limit: u64,
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "expands to more than {} bytes", self.limit)
    }
}

impl std::error::Error for Exceeded {}

/// The limit of the budget `error` says was spent, if that is what it says.
pub(crate) fn exceeded(error: &io::Error) -> Option<u64> {
    error
        .get_ref()
        .and_then(|e| e.downcast_ref::<Exceeded>())
        .map(|e| e.limit)
}

/// A decompressor's output, counted.
pub(crate) struct Expanding<'a, R> {
    inner: R,
    budget: Option<&'a Budget>,
}

impl<R: Read> Read for Expanding<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(budget) = self.budget {
            let used = budget.used.get().saturating_add(n as u64);
            if used > budget.limit {
                return Err(io::Error::other(Exceeded {
                    limit: budget.limit,
                }));
            }
            budget.used.set(used);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_32_times_the_archive_between_1_and_64_gib() {
        assert_eq!(default_max_expansion(0), 1 << 30);
        assert_eq!(default_max_expansion(10 << 20), 1 << 30);
        assert_eq!(default_max_expansion(100 << 20), 3200 << 20);
        assert_eq!(default_max_expansion(2 << 30), 64 << 30);
        assert_eq!(default_max_expansion(u64::MAX), 64 << 30);
    }

    #[test]
    fn the_budget_is_shared_and_stops_at_the_byte() {
        let budget = Budget::new(10);
        let mut first = budget.wrap(&[1u8; 6][..]);
        assert_eq!(io::copy(&mut first, &mut io::sink()).unwrap(), 6);
        let mut second = budget.wrap(&[2u8; 4][..]);
        assert_eq!(io::copy(&mut second, &mut io::sink()).unwrap(), 4);
        let mut third = budget.wrap(&[3u8; 1][..]);
        let err = io::copy(&mut third, &mut io::sink()).unwrap_err();
        assert_eq!(exceeded(&err), Some(10));
        assert_eq!(exceeded(&io::Error::other("x")), None);
    }
}
