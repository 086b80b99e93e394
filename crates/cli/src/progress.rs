//! What a build shows on standard error while it runs: progress bars when standard error
//! is a terminal (not with `--quiet`), warnings always, and with `BUILDIMAGE_TIMINGS` set
//! the wall time and peak memory of each stage.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use buildimage_archive::{LayerInfo, LayerRecord, Observer};
use buildimage_pipeline::{Events, Input, Stage};

use crate::keys::InputNames;

/// The display of one build.
pub struct Progress<'a> {
    names: &'a InputNames,
    bars: Option<Bars>,
    timings: Option<RefCell<Timings>>,
}

/// The terminal's bars: one line for the stage, one per layer being written.
struct Bars {
    multi: MultiProgress,
    stage: ProgressBar,
    layer: RefCell<Option<ProgressBar>>,
}

/// When the current stage began, for `BUILDIMAGE_TIMINGS`.
struct Timings {
    stage: Option<Stage>,
    since: Instant,
}

impl<'a> Progress<'a> {
    /// A display that draws bars only when standard error is a terminal and `quiet` is
    /// not set; `names` says how inputs are called in warnings.
    pub fn new(quiet: bool, names: &'a InputNames) -> Self {
        let bars = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let stage = multi.add(ProgressBar::new_spinner());
            stage.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .expect("a valid template"),
            );
            stage.enable_steady_tick(Duration::from_millis(120));
            Bars {
                multi,
                stage,
                layer: RefCell::new(None),
            }
        });
        let timings = std::env::var_os("BUILDIMAGE_TIMINGS").map(|_| {
            RefCell::new(Timings {
                stage: None,
                since: Instant::now(),
            })
        });
        Progress {
            names,
            bars,
            timings,
        }
    }

    /// Prints a line on standard error without tearing the bars.
    pub fn println(&self, line: &str) {
        match &self.bars {
            Some(bars) => bars.multi.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// Ends the display: the last stage's timing, the bars cleared.
    pub fn finish(&self) {
        self.end_stage();
        if let Some(bars) = &self.bars {
            bars.stage.finish_and_clear();
            if let Some(layer) = bars.layer.borrow_mut().take() {
                layer.finish_and_clear();
            }
        }
    }

    fn end_stage(&self) {
        let Some(timings) = &self.timings else {
            return;
        };
        let mut timings = timings.borrow_mut();
        if let Some(stage) = timings.stage.take() {
            self.println(&format!(
                "timing: {}: {:.3} s (peak RSS so far {})",
                stage.describe(),
                timings.since.elapsed().as_secs_f64(),
                peak_rss()
            ));
        }
        timings.since = Instant::now();
    }
}

impl Observer for Progress<'_> {
    fn layer_started(&self, info: &LayerInfo<'_>) {
        if let Some(bars) = &self.bars {
            let bar = bars.multi.add(ProgressBar::new(info.size));
            bar.set_style(
                ProgressStyle::with_template(
                    "  {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_message(format!("layer {} ({})", info.index + 1, info.kind.as_str()));
            if let Some(old) = bars.layer.borrow_mut().replace(bar) {
                old.finish_and_clear();
            }
        }
    }

    fn layer_bytes(&self, _index: usize, bytes: u64) {
        if let Some(bars) = &self.bars
            && let Some(bar) = &*bars.layer.borrow()
        {
            bar.inc(bytes);
        }
    }

    fn layer_done(&self, _index: usize, _record: &LayerRecord) {
        if let Some(bars) = &self.bars
            && let Some(bar) = bars.layer.borrow_mut().take()
        {
            bar.finish_and_clear();
        }
    }
}

impl Events for Progress<'_> {
    fn stage(&self, stage: Stage) {
        self.end_stage();
        if let Some(timings) = &self.timings {
            timings.borrow_mut().stage = Some(stage);
        }
        if let Some(bars) = &self.bars {
            bars.stage.set_message(stage.describe());
        }
    }

    fn warning(&self, input: Option<Input>, message: &str) {
        match input {
            Some(input) => self.println(&format!("warning: {}: {message}", self.names.name(input))),
            None => self.println(&format!("warning: {message}")),
        }
    }
}

/// The peak resident set so far, as the kernel counts it (`VmHWM`).
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default()
}
