//! The two JSON layouts of a docker-archive: jq's pretty print and jshon's.

use serde::Serialize;
use serde_json::ser::{PrettyFormatter, Serializer};

fn pretty<T: Serialize + ?Sized>(value: &T, indent: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = Serializer::with_formatter(&mut out, PrettyFormatter::with_indent(indent));
    value
        .serialize(&mut ser)
        .expect("serializing JSON values into memory cannot fail");
    out.push(b'\n');
    out
}

/// jq's pretty print: two-space indent, `"key": value`, one final newline. Used for the
/// image config and `manifest.json`.
pub fn jq<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    pretty(value, b"  ")
}

/// jshon's print: one-space indent, one final newline. Used for a layer's `json` and for
/// `repositories`.
pub fn jshon<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    pretty(value, b" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layouts_match_jq_and_jshon() {
        let v = json!({"a": {"Cmd": ["/bin/hello"], "Env": []}, "b": {}});
        assert_eq!(
            String::from_utf8(jq(&v)).unwrap(),
            "{\n  \"a\": {\n    \"Cmd\": [\n      \"/bin/hello\"\n    ],\n    \"Env\": []\n  },\n  \"b\": {}\n}\n"
        );
        assert_eq!(
            String::from_utf8(jshon(&json!({"n": {"t": "id"}}))).unwrap(),
            "{\n \"n\": {\n  \"t\": \"id\"\n }\n}\n"
        );
    }
}
