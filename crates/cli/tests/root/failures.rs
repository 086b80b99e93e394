//! A failing or interrupted `runAsRoot` stops the build cleanly: a message that names the
//! script, no output, no temporary folder, nothing mounted and no sandbox process left.

use std::time::Duration;

use buildimage_test_support::{
    Buildimage, Interrupt, ROOT_APPLETS, busybox_root, processes_matching, wait_for,
};
use nix::sys::signal::Signal;
use serde_json::json;

use super::Case;

/// How long the sandbox may take to start the script.
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn a_failing_run_as_root_names_the_script_and_its_status_and_leaves_nothing() {
    let case = Case::new();
    busybox_root(&case.join("busybox"), &ROOT_APPLETS);
    let stderr = case.build_fails(
        "fails",
        &json!({
            "name": "buildimage-test/fails",
            "tag": "latest",
            "copyToRoot": "busybox",
            "runAsRoot": "echo boom >&2; exit 7",
        }),
        None,
    );
    assert!(
        stderr.contains("boom\n"),
        "the script's stderr passes: {stderr}"
    );
    let message = stderr
        .lines()
        .find(|line| line.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        message.contains("runAsRoot") && message.contains("exit status 7"),
        "{message}"
    );
}

/// Starts a root-mode build whose script sleeps 30 s, waits until the sandbox runs it,
/// sends `signal` to buildimage, and checks that it stops at once (well before the script
/// would end), leaving no output, no temporary folder, no mount and no sandbox process.
fn interrupt_run_as_root(signal: Signal) {
    let case = Case::new();
    busybox_root(&case.join("busybox"), &ROOT_APPLETS);
    let marker = format!("bi-root-hang-{}-{signal}", std::process::id());
    let spec = case.spec_named(
        "hang",
        &json!({
            "name": "buildimage-test/hang",
            "tag": "latest",
            "copyToRoot": "busybox",
            "runAsRoot": format!("sleep 30\necho {marker}\n"),
        }),
    );
    let mut build = Interrupt::start(
        &case,
        Buildimage::new().cwd(case.path()).build(&spec),
        "hang.tar.gz",
    );
    // The sandbox has started when buildimage has a `__sandbox` helper and the script
    // (whose text, and so the shell's command line, holds the marker) runs.
    build.wait_until("the sandbox running the script", START_TIMEOUT, |build| {
        !build.descendants_with(b"__sandbox").is_empty()
            && !build.descendants_with(marker.as_bytes()).is_empty()
    });
    let stopped = build.stop(signal);
    assert!(
        !stopped.stderr.contains(&marker),
        "the script went on after the signal: {}",
        stopped.stderr
    );
    stopped.assert_clean();
    let spec_arg = spec.to_string_lossy().into_owned();
    // Processes that left the build's tree (reparented) get the same short time to go.
    let marked = || -> Vec<i32> {
        [marker.as_bytes(), spec_arg.as_bytes()]
            .iter()
            .flat_map(|needle| processes_matching(needle))
            .collect()
    };
    wait_for(
        "the build's processes to be gone",
        Duration::from_secs(2),
        || marked().is_empty(),
    );
    case.assert_clean();
}

#[test]
fn sigterm_during_run_as_root_exits_143_and_leaves_nothing() {
    interrupt_run_as_root(Signal::SIGTERM);
}

#[test]
fn sigint_during_run_as_root_exits_130_and_leaves_nothing() {
    interrupt_run_as_root(Signal::SIGINT);
}
