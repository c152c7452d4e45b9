//! The in-crate JSON reader (src/json.rs): what it accepts, what it refuses and where it says
//! the problem is, checked against serde_json on the same inputs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use session_router::json::{self, MAX_DEPTH, Number, Value};

fn parse(s: &str) -> Result<Value, String> {
    json::parse(s.as_bytes()).map_err(|e| e.to_string())
}

/// Our value, converted to serde_json's, for comparison.
fn to_serde(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::Number(Number::PosInt(n)) => (*n).into(),
        Value::Number(Number::NegInt(n)) => (*n).into(),
        Value::Number(Number::Float(f, _)) => (*f).into(),
        Value::String(s) => s.clone().into(),
        Value::Array(items) => items.iter().map(to_serde).collect(),
        // serde_json keeps the last of repeated keys.
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), to_serde(v))).collect(),
    }
}

#[test]
fn accepts_what_serde_json_accepts_with_the_same_values() {
    for doc in [
        "null",
        " true ",
        "false",
        "0",
        "-0",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "1.5",
        "-1.0",
        "3.6e3",
        "2560e-1",
        "1E+2",
        "1e-400",
        r#""a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00""#,
        "\"é😀\"",
        "[]",
        "[1, [2, [3]], {}]",
        r#"{"a": 1, "b": {"c": [true, null]}, "a": 2}"#,
        "\n\t\r [ 1 ,\n2 ] \n",
    ] {
        let ours = parse(doc).unwrap_or_else(|e| panic!("{doc}: {e}"));
        let theirs: serde_json::Value = serde_json::from_str(doc).unwrap();
        assert_eq!(to_serde(&ours), theirs, "{doc}");
    }
}

#[test]
fn refuses_what_serde_json_refuses_naming_line_and_column() {
    for (doc, error) in [
        ("", "EOF while parsing a value at line 1 column 0"),
        ("not json", "expected ident at line 1 column 2"),
        (r#"{"hosts":[}"#, "expected value at line 1 column 11"),
        ("\u{feff}{}", "expected value at line 1 column 1"),
        ("[1,]", "trailing comma at line 1 column 4"),
        (r#"{"a":1,}"#, "trailing comma at line 1 column 8"),
        ("{1:2}", "key must be a string at line 1 column 2"),
        (r#"{"a" 1}"#, "expected `:` at line 1 column 6"),
        ("[1 2]", "expected `,` or `]` at line 1 column 4"),
        (r#"{"a":1 "b":2}"#, "expected `,` or `}` at line 1 column 8"),
        ("{}\n{}", "trailing characters at line 2 column 1"),
        ("[1", "EOF while parsing a list at line 1 column 2"),
        ("01", "invalid number at line 1 column 2"),
        ("1.", "EOF while parsing a value at line 1 column 2"),
        ("1e400", "number out of range at line 1 column 5"),
        ("\"a\u{1}\"", "control character (\\u0000-\\u001F) found while parsing a string at line 1 column 3"),
        (r#""\x""#, "invalid escape at line 1 column 3"),
        (r#""\ud83d""#, "lone leading surrogate in hex escape at line 1 column 8"),
    ] {
        assert_eq!(parse(doc).unwrap_err(), error, "{doc:?}");
        assert!(serde_json::from_str::<serde_json::Value>(doc).is_err(), "{doc:?} is JSON to serde_json");
    }
    let invalid_utf8 = b"\"\xff\"";
    assert!(json::parse(invalid_utf8).is_err());
    assert!(serde_json::from_slice::<serde_json::Value>(invalid_utf8).is_err());
}

#[test]
fn nesting_is_bounded_so_deep_input_cannot_exhaust_the_stack() {
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert!(parse(&nested(MAX_DEPTH)).is_ok());
    assert!(parse(&nested(MAX_DEPTH + 1)).unwrap_err().starts_with("recursion limit exceeded"));
    let objects = format!("{}1{}", r#"{"a":"#.repeat(100_000), "}".repeat(100_000));
    assert!(parse(&objects).unwrap_err().starts_with("recursion limit exceeded"));
}

#[test]
fn object_members_keeps_selected_members_and_only_checks_the_rest_at_any_depth() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let doc = format!(
        r#"{{"skip":{deep},"big":{},"sub":"x","sub":{{"a":[1]}},"n":{{"k":"v"}}}}"#,
        "9".repeat(3000)
    );
    let kept = json::object_members(doc.as_bytes(), &|k| k == "sub").unwrap();
    assert_eq!(kept.len(), 2, "both `sub` members, in order");
    assert_eq!(kept[0], ("sub".to_owned(), Value::String("x".to_owned())));
    assert_eq!(kept[1].1.get("a"), Some(&Value::Array(vec![Value::Number(Number::PosInt(1))])));
    for bad in [
        r#"{"skip":[1,]}"#,
        r#"{"skip":{"a" 1}}"#,
        r#"{"skip":[}"#,
        r#"{"skip":01}"#,
        r#"{"skip":"\x"}"#,
        r#"{"skip":1}x"#,
        r#"{"skip":[[1]"#,
        "[]",
    ] {
        assert!(json::object_members(bad.as_bytes(), &|_| false).is_err(), "{bad}");
    }
}

#[test]
fn get_reads_the_last_of_repeated_keys_like_serde_json() {
    let v = parse(r#"{"a":1,"a":2}"#).unwrap();
    assert_eq!(v.get("a").and_then(Value::as_u64), Some(2));
    assert_eq!(v.get("b"), None);
    assert_eq!(parse("3.0").unwrap().as_u64(), None, "an integral double is not an integer here");
    assert_eq!(parse("3").unwrap().as_f64(), Some(3.0));
}

/// The in-crate decimal reader (src/decimal.rs) gives exactly what `str::parse::<f64>` gives:
/// on the edges of the double range, halfway cases, long and short numbers, and random ones.
#[test]
fn numbers_read_as_the_standard_library_reads_them() {
    use session_router::decimal::parse_f64;
    let check = |text: &str| {
        let ours = parse_f64(text).unwrap_or_else(|| panic!("{text}: refused"));
        let std = text.parse::<f64>().unwrap();
        assert_eq!(ours.to_bits(), std.to_bits(), "{text}: {ours:e} != {std:e}");
    };
    for text in [
        "0",
        "-0",
        "0.0",
        "1",
        "1.5",
        "-2.25",
        "0.1",
        "0.3",
        "3.6e3",
        "2560e-1",
        "1E+2",
        "1e22",
        "1e23",
        "9007199254740992",
        "9007199254740993",
        "9007199254740995",
        "18446744073709551615",
        "18446744073709551616",
        "18446744073709549568",
        "18446744073709550591",
        "18446744073709550592",
        "1.8446744073709552e19",
        "0.30000001192092896",
        "123456789012345678901234567890",
        "2.2250738585072011e-308",
        "2.2250738585072014e-308",
        "4.9406564584124654e-324",
        "2.4703282292062327e-324",
        "2.4703282292062328e-324",
        "1e-320",
        "1e-400",
        "1.7976931348623157e308",
        "1.7976931348623158e308",
        "1.7976931348623159e308",
        "1e308",
        "1e309",
        "1e400",
        "7e-10",
        "1.00000000000000011102230246251565404236316680908203125",
        "0.000001",
        "1e-7",
        "1700000000.5",
        "000.000123",
        "100e-2",
        "1.0e+0",
    ] {
        check(text);
    }
    // A long number: more digits than are kept, with a non-zero one far out.
    check(&format!("1.{}1e-5", "0".repeat(900)));
    check(&format!("9007199254740993{}", "0".repeat(300)));
    // Random numbers of every shape: a deterministic generator, no dependency.
    let mut next = common::xorshift(0x2545_f491_4f6c_dd1d);
    for _ in 0..100_000 {
        let digits = 1 + next() % 25;
        let mut text: String = (0..digits).map(|_| char::from(b'0' + (next() % 10) as u8)).collect();
        if next().is_multiple_of(2) {
            let at = (next() % digits) as usize + 1;
            text.insert(at.min(text.len()), '.');
            if text.ends_with('.') {
                text.push('0');
            }
        }
        if next().is_multiple_of(2) {
            text = format!("{text}e{}", next() % 700)
                .replace('e', if next().is_multiple_of(2) { "e-" } else { "e" });
        }
        check(&text);
    }
}
