//! Tests of the buildImage spec parser.

use super::*;
use serde_json::json;

fn base() -> &'static Path {
    Path::new("/specs")
}

fn ok(text: &str) -> Parsed {
    parse(text, base()).unwrap_or_else(|err| panic!("{text}: {err}"))
}

fn err(text: &str) -> String {
    match parse(text, base()) {
        Ok(parsed) => panic!("{text} parsed: {parsed:?}"),
        Err(err) => err.to_string(),
    }
}

fn err_value(value: Value) -> String {
    parse_value(value, base()).unwrap_err().to_string()
}

fn with(key: &str, value: Value) -> Value {
    let mut spec = json!({ "name": "img" });
    spec[key] = value;
    spec
}

fn key_err(key: &str, value: Value) -> String {
    err_value(with(key, value))
}

// -- defaults, nulls, examples ------------------------------------------

#[test]
fn defaults() {
    let parsed = ok(r#"{"name": "hello"}"#);
    assert!(parsed.warnings.is_empty());
    let spec = parsed.spec;
    assert_eq!(
        spec,
        Spec {
            name: "hello".to_owned(),
            tag: None,
            from_image: None,
            from_image_name: None,
            from_image_tag: None,
            copy_to_root: vec![],
            keep_contents_dirlinks: false,
            config: None,
            architecture: None,
            extra_commands: String::new(),
            uid: 0,
            gid: 0,
            run_as_root: None,
            run_as_root_shell: None,
            inherit_config: false,
            closure_info: None,
            disk_size: None,
            build_vm_memory_size: None,
            created: Created::Fixed("1970-01-01T00:00:01Z".to_owned()),
            compressor: Compressor::Gz,
            include_nix_db: false,
            meta: None,
            build_args: json!({ "name": "hello" }),
        }
    );
}

#[test]
fn null_means_default_for_every_optional_key() {
    let mut value = json!({ "name": "hello" });
    for key in KNOWN_KEYS.iter().filter(|key| **key != "name") {
        value[*key] = Value::Null;
    }
    let parsed = parse_value(value.clone(), base()).unwrap();
    assert!(parsed.warnings.is_empty());
    let defaults = parse_value(json!({ "name": "hello" }), base())
        .unwrap()
        .spec;
    assert_eq!(
        Spec {
            build_args: value.clone(),
            ..defaults
        },
        parsed.spec
    );
    // buildArgs keeps the nulls as given.
    assert_eq!(parsed.spec.build_args, value);
}

#[test]
fn nix_eval_json_with_every_key() {
    // What `nix eval --json` prints for an argument set that spells out
    // every argument with its default (keys sorted, as Nix does).
    let text = r#"{"architecture":null,"buildVMMemorySize":512,"closureInfo":null,
        "compressor":"gz","config":null,"contents":null,"copyToRoot":null,
        "created":"1970-01-01T00:00:01Z","diskSize":1024,"extraCommands":"",
        "fromImage":null,"fromImageName":null,"fromImageTag":null,"gid":0,
        "includeNixDB":false,"inheritConfig":false,"keepContentsDirlinks":false,
        "meta":{},"name":"hello","runAsRoot":null,"runAsRootShell":null,
        "tag":null,"uid":0}"#;
    let parsed = ok(text);
    assert!(parsed.warnings.is_empty());
    let spec = parsed.spec;
    assert_eq!(spec.name, "hello");
    assert_eq!(spec.disk_size, Some(1024));
    assert_eq!(spec.build_vm_memory_size, Some(512));
    assert_eq!(spec.meta, Some(json!({})));
    assert_eq!(spec.compressor, Compressor::Gz);
    assert_eq!(spec.created, Created::default());
    assert_eq!(spec.build_args.as_object().unwrap().len(), KNOWN_KEYS.len());
}

#[test]
fn redis_example_config_is_passed_through_sorted() {
    let parsed = ok(r#"{
        "name": "redis",
        "tag": "latest",
        "fromImage": "bash.tar.gz",
        "extraCommands": "mkdir -p data",
        "config": {
            "WorkingDir": "/data",
            "Volumes": { "/data": {} },
            "Healthcheck": {
                "Test": ["CMD-SHELL", "/usr/bin/healthcheck"],
                "Interval": 30000000000,
                "Timeout": 10000000000,
                "Retries": 3
            },
            "Cmd": ["/bin/redis-server"]
        }
    }"#);
    let spec = parsed.spec;
    assert_eq!(spec.tag.as_deref(), Some("latest"));
    assert_eq!(spec.from_image, Some(PathBuf::from("/specs/bash.tar.gz")));
    assert_eq!(spec.extra_commands, "mkdir -p data");
    let config = Value::Object(spec.config.unwrap());
    assert_eq!(
        config.to_string(),
        r#"{"Cmd":["/bin/redis-server"],"Healthcheck":{"Interval":30000000000,"Retries":3,"Test":["CMD-SHELL","/usr/bin/healthcheck"],"Timeout":10000000000},"Volumes":{"/data":{}},"WorkingDir":"/data"}"#
    );
    assert!(config["Healthcheck"]["Interval"].is_u64());
    let args = spec.build_args.as_object().unwrap();
    assert_eq!(
        args.keys().collect::<Vec<_>>(),
        ["config", "extraCommands", "fromImage", "name", "tag"]
    );
}

#[test]
fn nixpkgs_examples() {
    let bash = ok(r#"{"name": "bash", "tag": "latest", "copyToRoot": "/nix/store/x-bash-env"}"#);
    assert_eq!(
        bash.spec.copy_to_root,
        [PathBuf::from("/nix/store/x-bash-env")]
    );

    let prefixed =
        ok(r#"{"name": "registry-1.docker.io/image", "config": {"Cmd": ["/bin/hello"]}}"#);
    assert_eq!(
        default_output_name(&prefixed.spec.name, prefixed.spec.compressor),
        "docker-image-image.tar.gz"
    );

    let arch = ok(r#"{"name": "arm", "architecture": "arm64", "compressor": "zstd"}"#);
    assert_eq!(arch.spec.architecture.as_deref(), Some("arm64"));
    assert_eq!(arch.spec.compressor, Compressor::Zstd);

    let now = ok(r#"{"name": "unstable", "created": "now", "compressor": "none"}"#);
    assert_eq!(now.spec.created, Created::Now);
    assert_eq!(now.spec.compressor, Compressor::None);

    let nix = ok(
        r#"{"name": "nix", "includeNixDB": true, "uid": 1000, "gid": 100,
        "config": {"Env": ["NIX_PAGER=cat", "USER=nobody"]}}"#,
    );
    assert!(nix.spec.include_nix_db);
    assert_eq!((nix.spec.uid, nix.spec.gid), (1000, 100));

    let root = ok(r#"{"name": "root", "runAsRoot": "touch /example-file",
        "runAsRootShell": "/bin/sh", "inheritConfig": true, "keepContentsDirlinks": true,
        "closureInfo": "closure", "diskSize": 2048, "buildVMMemorySize": 1024}"#);
    assert_eq!(
        root.spec.run_as_root.as_deref(),
        Some("touch /example-file")
    );
    assert_eq!(root.spec.run_as_root_shell.as_deref(), Some("/bin/sh"));
    assert!(root.spec.inherit_config && root.spec.keep_contents_dirlinks);
    assert_eq!(
        root.spec.closure_info,
        Some(PathBuf::from("/specs/closure"))
    );
    assert_eq!(
        (root.spec.disk_size, root.spec.build_vm_memory_size),
        (Some(2048), Some(1024))
    );
}

#[test]
fn created_accepts_rfc3339_forms() {
    for created in [
        "1970-01-01T00:00:01Z",
        "2024-02-29T23:59:59Z",
        "2000-02-29T12:00:00.123456789+05:30",
        "1999-12-31T23:59:59.5-08:00",
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59+23:59",
    ] {
        let spec = parse_value(with("created", json!(created)), base())
            .unwrap()
            .spec;
        assert_eq!(spec.created, Created::Fixed(created.to_owned()));
    }
}

// -- paths ----------------------------------------------------------------

#[test]
fn relative_paths_are_joined_onto_base_dir() {
    let spec = ok(
        r#"{"name": "p", "copyToRoot": ["root", "./dummy", "/abs/dir", "/nix/store/h-bash"],
        "fromImage": "../base.tar", "closureInfo": "/nix/store/c-closure-info"}"#,
    )
    .spec;
    assert_eq!(
        spec.copy_to_root,
        [
            PathBuf::from("/specs/root"),
            PathBuf::from("/specs/./dummy"),
            PathBuf::from("/abs/dir"),
            PathBuf::from("/nix/store/h-bash"),
        ]
    );
    assert_eq!(spec.from_image, Some(PathBuf::from("/specs/../base.tar")));
    assert_eq!(
        spec.closure_info,
        Some(PathBuf::from("/nix/store/c-closure-info"))
    );

    let relative_base = parse(r#"{"name": "p", "copyToRoot": "root"}"#, Path::new("")).unwrap();
    assert_eq!(relative_base.spec.copy_to_root, [PathBuf::from("root")]);
}

#[test]
fn copy_to_root_single_path_and_empty_list() {
    assert_eq!(
        ok(r#"{"name": "p", "copyToRoot": "r"}"#).spec.copy_to_root,
        [PathBuf::from("/specs/r")]
    );
    assert!(
        ok(r#"{"name": "p", "copyToRoot": []}"#)
            .spec
            .copy_to_root
            .is_empty()
    );
}

#[test]
fn empty_path_errors() {
    assert_eq!(
        key_err("fromImage", json!("")),
        "Key `fromImage`: expected a non-empty path, got \"\""
    );
    assert_eq!(
        key_err("copyToRoot", json!(["a", ""])),
        "Key `copyToRoot`[1]: expected a non-empty path, got \"\""
    );
    assert_eq!(
        key_err("copyToRoot", json!("")),
        "Key `copyToRoot`: expected a non-empty path, got \"\""
    );
    assert_eq!(
        key_err("closureInfo", json!("a\u{0}b")),
        "Key `closureInfo`: expected a path without NUL characters, got \"a\\u0000b\""
    );
}

// -- contents -------------------------------------------------------------

#[test]
fn contents_is_an_alias_with_a_warning() {
    let parsed = ok(r#"{"name": "Old", "contents": ["a", "/b"]}"#);
    assert_eq!(
        parsed.spec.copy_to_root,
        [PathBuf::from("/specs/a"), PathBuf::from("/b")]
    );
    assert_eq!(
        parsed.warnings,
        [
            "in docker image Old: The contents parameter is deprecated. Change to copyToRoot if the contents are designed to be copied to the root filesystem, such as when you use `buildEnv` or similar between contents and your packages. Use copyToRoot = buildEnv { ... }; or similar if you intend to add packages to /bin."
        ]
    );
    // A null on either side does not count as set.
    let parsed = ok(r#"{"name": "Old", "contents": "a", "copyToRoot": null}"#);
    assert_eq!(parsed.spec.copy_to_root, [PathBuf::from("/specs/a")]);
    assert_eq!(parsed.warnings.len(), 1);
    let parsed = ok(r#"{"name": "New", "contents": null, "copyToRoot": "a"}"#);
    assert!(parsed.warnings.is_empty());
}

#[test]
fn contents_and_copy_to_root_together() {
    assert_eq!(
        err(r#"{"name": "Both", "contents": "a", "copyToRoot": []}"#),
        "in docker image Both: You can not specify both contents and copyToRoot."
    );
}

#[test]
fn contents_item_errors_name_contents() {
    assert_eq!(
        key_err("contents", json!(["a", true])),
        "Key `contents`[1]: expected a path string, got true"
    );
}

// -- fromImageName / fromImageTag -----------------------------------------

#[test]
fn from_image_name_or_tag_without_from_image_warns() {
    // A lone name or tag with `fromImage` is for the base reader to warn about.
    let parsed = ok(r#"{"name": "x", "fromImage": "b.tar", "fromImageName": "base"}"#);
    assert_eq!(parsed.warnings, Vec::<String>::new());
    let parsed = ok(r#"{"name": "x", "fromImageName": "base", "fromImageTag": "v1"}"#);
    assert_eq!(
        parsed.warnings,
        ["Keys `fromImageName` and `fromImageTag` have no effect without `fromImage`"]
    );
    let parsed =
        ok(r#"{"name": "x", "fromImage": "b.tar", "fromImageName": "base", "fromImageTag": "v1"}"#);
    assert!(parsed.warnings.is_empty());
    assert_eq!(parsed.spec.from_image_name.as_deref(), Some("base"));
    assert_eq!(parsed.spec.from_image_tag.as_deref(), Some("v1"));
}

// -- structural errors ----------------------------------------------------

#[test]
fn not_json() {
    assert_eq!(
        err("{\"name\": \"x\",\n  }"),
        "Spec is not valid JSON at line 2, column 3: trailing comma"
    );
    assert_eq!(
        err(""),
        "Spec is not valid JSON at line 1, column 0: EOF while parsing a value"
    );
    assert_eq!(
        err(r#"{"name": "x"} {}"#),
        "Spec is not valid JSON at line 1, column 15: trailing characters"
    );
}

#[test]
fn byte_order_mark_is_skipped() {
    assert_eq!(ok("\u{feff}{\"name\": \"x\"}").spec.name, "x");
}

#[test]
fn duplicate_keys() {
    assert_eq!(
        err("{\"name\": \"x\",\n \"tag\": \"a\",\n \"tag\": \"b\"}"),
        "Key `tag` appears more than once (line 3, column 6)"
    );
    assert_eq!(
        err(r#"{"name": "x", "config": {"Labels": {"a": "1", "a": "2"}}}"#),
        "Key `config.Labels.a` appears more than once (line 1, column 49)"
    );
    assert_eq!(
        err(r#"{"name": "x", "copyToRoot": [{"k": 1, "k": 2}]}"#),
        "Key `copyToRoot[0].k` appears more than once (line 1, column 41)"
    );
}

#[test]
fn top_level_not_an_object() {
    assert_eq!(
        err("[]"),
        "Spec must be a JSON object of buildImage arguments, got a list"
    );
    assert_eq!(
        err("\"x\""),
        "Spec must be a JSON object of buildImage arguments, got \"x\""
    );
    assert_eq!(
        err("null"),
        "Spec must be a JSON object of buildImage arguments, got null"
    );
}

#[test]
fn name_errors() {
    assert_eq!(err("{}"), "Missing required key `name`");
    assert_eq!(err(r#"{"tag": "x"}"#), "Missing required key `name`");
    assert_eq!(
        err(r#"{"name": ""}"#),
        "Key `name`: expected a non-empty string, got \"\""
    );
    assert_eq!(
        err(r#"{"name": null}"#),
        "Key `name`: expected a non-empty string, got null"
    );
    assert_eq!(
        err(r#"{"name": 3}"#),
        "Key `name`: expected a non-empty string, got 3"
    );
}

#[test]
fn unknown_keys() {
    assert_eq!(
        err(r#"{"name": "x", "copytoroot": "a"}"#),
        "Unknown key `copytoroot`; did you mean `copyToRoot`?"
    );
    assert_eq!(
        err(r#"{"name": "x", "extraCommand": ""}"#),
        "Unknown key `extraCommand`; did you mean `extraCommands`?"
    );
    assert_eq!(
        err(r#"{"name": "x", "tags": "a"}"#),
        "Unknown key `tags`; did you mean `tag`?"
    );
    assert_eq!(
        err(r#"{"name": "x", "includeNixDb": true}"#),
        "Unknown key `includeNixDb`; did you mean `includeNixDB`?"
    );
    // Reported before a missing name, so the hint can point at `name`.
    assert_eq!(
        err(r#"{"nmae": "x"}"#),
        "Unknown key `nmae`; did you mean `name`?"
    );
    assert_eq!(
        err(r#"{"name": "x", "Env": []}"#),
        "Unknown key `Env`; it is a Docker image config field and belongs inside `config`"
    );
    assert_eq!(
        err(r#"{"name": "x", "maxLayers": 100}"#),
        "Unknown key `maxLayers`; it is an argument of buildLayeredImage and streamLayeredImage, not of buildImage"
    );
    assert_eq!(
        err(r#"{"name": "x", "frobnicate": 1}"#),
        "Unknown key `frobnicate`; the known keys are name, tag, fromImage, fromImageName, \
         fromImageTag, copyToRoot, keepContentsDirlinks, config, architecture, extraCommands, \
         uid, gid, runAsRoot, diskSize, buildVMMemorySize, created, compressor, includeNixDB, \
         contents, meta, runAsRootShell, inheritConfig, closureInfo"
    );
}

#[test]
fn wrong_types_name_the_key() {
    let cases = [
        (
            "tag",
            json!(1),
            "Key `tag`: expected a string or null, got 1",
        ),
        (
            "fromImage",
            json!(["a"]),
            "Key `fromImage`: expected a path string or null, got a list",
        ),
        (
            "fromImageName",
            json!(false),
            "Key `fromImageName`: expected a string or null, got false",
        ),
        (
            "fromImageTag",
            json!({}),
            "Key `fromImageTag`: expected a string or null, got an object",
        ),
        (
            "copyToRoot",
            json!({"a": 1}),
            "Key `copyToRoot`: expected a path string, a list of path strings, or null, got an object",
        ),
        (
            "copyToRoot",
            json!(["a", "b", 42]),
            "Key `copyToRoot`[2]: expected a path string, got 42",
        ),
        (
            "copyToRoot",
            json!([["a"]]),
            "Key `copyToRoot`[0]: expected a path string, got a list",
        ),
        (
            "keepContentsDirlinks",
            json!("true"),
            "Key `keepContentsDirlinks`: expected true, false or null, got \"true\"",
        ),
        (
            "config",
            json!([]),
            "Key `config`: expected an object or null, got a list",
        ),
        (
            "config",
            json!("{}"),
            "Key `config`: expected an object or null, got \"{}\"",
        ),
        (
            "architecture",
            json!(""),
            "Key `architecture`: expected a non-empty string such as \"amd64\", or null, got \"\"",
        ),
        (
            "extraCommands",
            json!(["ls"]),
            "Key `extraCommands`: expected a string or null, got a list",
        ),
        (
            "runAsRoot",
            json!(1),
            "Key `runAsRoot`: expected a string or null, got 1",
        ),
        (
            "runAsRootShell",
            json!(true),
            "Key `runAsRootShell`: expected a string or null, got true",
        ),
    ];
    for (key, value, message) in cases {
        assert_eq!(key_err(key, value), message, "{key}");
    }
}

#[test]
fn wrong_types_name_the_key_continued() {
    let cases = [
        (
            "inheritConfig",
            json!(1),
            "Key `inheritConfig`: expected true, false or null, got 1",
        ),
        (
            "closureInfo",
            json!(7),
            "Key `closureInfo`: expected a path string or null, got 7",
        ),
        (
            "diskSize",
            json!(-1),
            "Key `diskSize`: expected a non-negative integer (MiB) or null, got -1",
        ),
        (
            "buildVMMemorySize",
            json!(512.5),
            "Key `buildVMMemorySize`: expected a non-negative integer (MiB) or null, got 512.5",
        ),
        (
            "created",
            json!(0),
            "Key `created`: expected \"now\", an RFC 3339 date-time string, or null, got 0",
        ),
        (
            "compressor",
            json!(1),
            "Key `compressor`: expected one of \"gz\", \"none\", \"zstd\", or null, got 1",
        ),
        (
            "includeNixDB",
            json!("yes"),
            "Key `includeNixDB`: expected true, false or null, got \"yes\"",
        ),
        (
            "meta",
            json!([]),
            "Key `meta`: expected an object or null, got a list",
        ),
        (
            "contents",
            json!(1),
            "Key `contents`: expected a path string, a list of path strings, or null, got 1",
        ),
    ];
    for (key, value, message) in cases {
        assert_eq!(key_err(key, value), message, "{key}");
    }
}

#[test]
fn long_strings_are_shortened_in_messages() {
    let long = "x".repeat(100);
    assert_eq!(
        key_err("keepContentsDirlinks", json!(long)),
        format!(
            "Key `keepContentsDirlinks`: expected true, false or null, got \"{}\"... (100 characters)",
            "x".repeat(60)
        )
    );
}

#[test]
fn ids() {
    assert_eq!(
        key_err("uid", json!(-1)),
        "Key `uid`: expected a non-negative integer, got -1"
    );
    assert_eq!(
        key_err("gid", json!(1.5)),
        "Key `gid`: expected a non-negative integer, got 1.5"
    );
    assert_eq!(
        key_err("uid", json!(1000.0)),
        "Key `uid`: expected a non-negative integer, got 1000.0"
    );
    assert_eq!(
        err(r#"{"name": "x", "uid": 1000.0}"#),
        "Key `uid`: expected a non-negative integer, got 1000.0"
    );
    assert_eq!(
        err(r#"{"name": "x", "uid": 1e3}"#),
        "Key `uid`: expected a non-negative integer, got 1000.0"
    );
    assert_eq!(
        key_err("uid", json!("0")),
        "Key `uid`: expected a non-negative integer, got \"0\""
    );
    assert_eq!(
        key_err("gid", json!(4_294_967_296_u64)),
        "Key `gid`: expected an integer from 0 to 4294967295, got 4294967296"
    );
    let spec = parse_value(
        json!({"name": "x", "uid": 4_294_967_295_u64, "gid": 65534}),
        base(),
    )
    .unwrap()
    .spec;
    assert_eq!((spec.uid, spec.gid), (u32::MAX, 65534));
}

#[test]
fn compressor_values() {
    assert_eq!(
        key_err("compressor", json!("xz")),
        "in docker image img: compressor must be one of: [gz none zstd]"
    );
    assert_eq!(
        key_err("compressor", json!("GZ")),
        "in docker image img: compressor must be one of: [gz none zstd]"
    );
    for (name, compressor, extension) in [
        ("none", Compressor::None, ""),
        ("gz", Compressor::Gz, ".gz"),
        ("zstd", Compressor::Zstd, ".zst"),
    ] {
        let spec = parse_value(with("compressor", json!(name)), base())
            .unwrap()
            .spec;
        assert_eq!(spec.compressor, compressor);
        assert_eq!(compressor.as_str(), name);
        assert_eq!(compressor.extension(), extension);
    }
}

#[test]
fn malformed_created() {
    let form = "Key `created`: expected \"now\" or an RFC 3339 date-time YYYY-MM-DDTHH:MM:SS[.fraction] \
                followed by Z or ±HH:MM, such as 1970-01-01T00:00:01Z, got";
    let cases = [
        ("", "expected a digit at character 1, found the end"),
        ("Now", "expected a digit at character 1, found 'N'"),
        ("yesterday", "expected a digit at character 1, found 'y'"),
        (
            "2024-01-01",
            "expected an upper-case 'T' between the date and the time at character 11, found the end",
        ),
        (
            "2024-01-01 00:00:00Z",
            "expected an upper-case 'T' between the date and the time at character 11, found ' '",
        ),
        (
            "2024-01-01t00:00:00Z",
            "expected an upper-case 'T' between the date and the time at character 11, found 't'",
        ),
        (
            "2024-1-01T00:00:00Z",
            "expected a digit at character 7, found '-'",
        ),
        (
            "2024-01-01T00:00Z",
            "expected ':' at character 17, found 'Z'",
        ),
        ("2024-13-01T00:00:00Z", "month 13 is not between 01 and 12"),
        ("2024-00-01T00:00:00Z", "month 00 is not between 01 and 12"),
        ("2023-02-29T00:00:00Z", "day 29 does not exist in 2023-02"),
        ("1900-02-29T00:00:00Z", "day 29 does not exist in 1900-02"),
        ("2024-04-31T00:00:00Z", "day 31 does not exist in 2024-04"),
        ("2024-01-00T00:00:00Z", "day 00 does not exist in 2024-01"),
        ("2024-01-01T24:00:00Z", "hour 24 is not between 00 and 23"),
        ("2024-01-01T00:60:00Z", "minute 60 is not between 00 and 59"),
        (
            "2016-12-31T23:59:60Z",
            "second 60 is not between 00 and 59 (Docker's Go time parser rejects leap seconds)",
        ),
        (
            "2024-01-01T00:00:00",
            "the time zone is missing: add Z or an offset such as +00:00",
        ),
        (
            "2024-01-01T00:00:00z",
            "the UTC zone must be an upper-case 'Z'",
        ),
        (
            "2024-01-01T00:00:00.Z",
            "expected digits after the '.' of the fraction of a second",
        ),
        (
            "2024-01-01T00:00:00,5Z",
            "expected '.', not ',', before the fraction of a second",
        ),
        (
            "2024-01-01T00:00:00+0100",
            "expected Z or an offset ±HH:MM after the time, found \"+0100\"",
        ),
        (
            "2024-01-01T00:00:00ZZ",
            "expected Z or an offset ±HH:MM after the time, found \"ZZ\"",
        ),
        (
            "2024-01-01T00:00:00+24:00",
            "zone offset hour 24 is not between 00 and 23",
        ),
        (
            "2024-01-01T00:00:00-01:60",
            "zone offset minute 60 is not between 00 and 59",
        ),
        (
            "2024-01-01T00:00:00é",
            "expected Z or an offset ±HH:MM after the time, found \"é\"",
        ),
        (
            "２024-01-01T00:00:00Z",
            "expected a digit at character 1, found '２'",
        ),
    ];
    for (created, reason) in cases {
        assert_eq!(
            key_err("created", json!(created)),
            format!("{form} {}: {reason}", describe_str(created)),
            "{created}"
        );
    }
}

#[test]
fn keys_stay_sorted_without_preserve_order() {
    // Guards against serde_json's `preserve_order` being switched on by
    // feature unification: config keys must come out in byte order.
    let spec = ok(r#"{"name": "x", "config": {"b": 1, "a": {"d": 1, "c": 2}, "B": 0}}"#).spec;
    assert_eq!(
        Value::Object(spec.config.unwrap()).to_string(),
        r#"{"B":0,"a":{"c":2,"d":1},"b":1}"#
    );
    assert_eq!(
        spec.build_args.to_string(),
        r#"{"config":{"B":0,"a":{"c":2,"d":1},"b":1},"name":"x"}"#
    );
}

// -- output name ----------------------------------------------------------

#[test]
fn default_output_names() {
    assert_eq!(
        default_output_name("hello", Compressor::None),
        "docker-image-hello.tar"
    );
    assert_eq!(
        default_output_name("hello", Compressor::Gz),
        "docker-image-hello.tar.gz"
    );
    assert_eq!(
        default_output_name("hello", Compressor::Zstd),
        "docker-image-hello.tar.zst"
    );
    assert_eq!(
        default_output_name("registry-1.docker.io/image", Compressor::Gz),
        "docker-image-image.tar.gz"
    );
    assert_eq!(
        default_output_name("a/b/OnTop", Compressor::None),
        "docker-image-OnTop.tar"
    );
    assert_eq!(
        default_output_name("a/b/", Compressor::None),
        "docker-image-b.tar"
    );
}
