//! Bad arguments fail with the message the command line gives for the same JSON spec,
//! naming the argument: at evaluation for `name` (the derivation's own name needs it),
//! in the build for everything else.

use serde_json::{Value, json};

use buildimage_test_support::{Buildimage, TestDir};

use super::{fails, nix_build, write_expression};

/// The command line's message for `spec` given to `command`: its `error:` line.
fn cli_error(dir: &TestDir, command: &str, spec: &Value) -> String {
    let file = dir.spec_named(command, spec);
    let mut cmd = Buildimage::new();
    match command {
        "build" => cmd.build(&file),
        _ => cmd.build_layered(&file),
    };
    let output = cmd.out(dir.join("never.tar")).run_err();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"))
        .to_owned()
}

#[test]
fn bad_arguments_fail_with_the_command_line_message() {
    let dir = TestDir::new("bi-nixfn-args.");
    let cases = [
        (
            "buildImage",
            "build",
            "{ name = \"x\"; foo = 1; }",
            json!({"name": "x", "foo": 1}),
        ),
        (
            "buildLayeredImage",
            "build-layered",
            "{ name = \"x\"; maxLayers = \"many\"; }",
            json!({"name": "x", "maxLayers": "many"}),
        ),
        (
            "buildLayeredImage",
            "build-layered",
            "{ name = \"x\"; maxLayers = 1; }",
            json!({"name": "x", "maxLayers": 1}),
        ),
        (
            "buildImage",
            "build",
            "{ name = \"x\"; compressor = \"xz\"; }",
            json!({"name": "x", "compressor": "xz"}),
        ),
        (
            "buildImage",
            "build",
            "{ tag = \"t\"; }",
            json!({"tag": "t"}),
        ),
        (
            "streamLayeredImage",
            "build-layered",
            "{ name = 1; }",
            json!({"name": 1}),
        ),
    ];
    for (function, command, args, spec) in cases {
        let want = cli_error(&dir, command, &spec);
        let expression = format!(
            "(import @NIX@ {{ buildimage = builtins.path {{ path = @DIST@; name = \"buildimage\"; }}; }}).{function} {args}"
        );
        let case = TestDir::new("bi-nixfn-arg.");
        let file = write_expression(case.path(), &expression);
        let stderr = fails(&mut nix_build(&case.join("store"), &file, &[]));
        assert!(
            stderr.contains(&want),
            "{function} {args}: want {want:?} in:\n{stderr}"
        );
    }
}
