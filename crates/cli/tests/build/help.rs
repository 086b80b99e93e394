//! `--help` of `buildimage` and of each of its image commands, as snapshots: the text users read
//! first. It will change as the command grows; review the diff, then accept it with
//! `INSTA_UPDATE=always` (or `cargo insta review`).

use buildimage_test_support::Buildimage;

use buildimage_test_support::snapshot_settings;

/// Standard output of `buildimage ARGS`, which must succeed.
fn help(args: &[&str]) -> String {
    let output = Buildimage::new().args(args).run_ok();
    String::from_utf8(output.stdout).expect("UTF-8 help")
}

#[test]
fn help_of_buildimage_matches_the_snapshot() {
    snapshot_settings().bind(|| {
        insta::assert_snapshot!("help_buildimage", help(&["--help"]));
    });
}

#[test]
fn help_of_buildimage_build_matches_the_snapshot() {
    snapshot_settings().bind(|| {
        insta::assert_snapshot!("help_buildimage_build", help(&["build", "--help"]));
    });
}

#[test]
fn help_of_the_layered_commands_matches_the_snapshots() {
    for subcommand in ["build-layered", "stream-layered"] {
        let name = format!("help_buildimage_{}", subcommand.replace('-', "_"));
        snapshot_settings().bind(|| insta::assert_snapshot!(name, help(&[subcommand, "--help"])));
    }
}
