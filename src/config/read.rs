//! Typed reads from a parsed JSON [`Value`], with errors worded as serde's were (`invalid type:
//! string "256", expected u32`, `unknown field `x`, expected one of ...`) and naming the field's
//! path (`hosts[0].weight`). The root path is empty and reported as `config`.

use crate::json::{Number, Value};

use super::{ConfigError, err};

/// The path of a member: `hosts`, `hosts[0].weight`.
pub(super) fn child(path: &str, key: &str) -> String {
    match (path.is_empty(), key.is_empty()) {
        (true, _) => key.to_owned(),
        // An empty key cannot be shown: the error names the object it is in.
        (false, true) => path.to_owned(),
        (false, false) => format!("{path}.{key}"),
    }
}

pub(super) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// An error at `path` (`config` for the root).
pub(super) fn fail<T>(path: &str, reason: impl Into<String>) -> Result<T, ConfigError> {
    Err(err(if path.is_empty() { "config" } else { path }, reason))
}

/// What a value is, as serde_json names it in errors.
pub(super) fn unexpected(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(Number::PosInt(n)) => format!("integer `{n}`"),
        Value::Number(Number::NegInt(n)) => format!("integer `{n}`"),
        Value::Number(Number::Float(_, text)) => format!("floating point `{}`", float(text)),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "sequence".to_owned(),
        Value::Object(_) => "map".to_owned(),
    }
}

/// A number as written, laid out as serde_json writes a double in errors: its significant
/// digits, `.0` on integers, and an exponent (`1.8446744073709552e+19`) outside 1e-5..1e16.
/// From the text rather than the double, so no float formatting is linked into the module.
pub(super) fn float(text: &str) -> String {
    let (sign, text) = text.strip_prefix('-').map_or(("", text), |t| ("-", t));
    let (mantissa, exp) = text.split_once(['e', 'E']).unwrap_or((text, "0"));
    let exp: i64 = exp.strip_prefix('+').unwrap_or(exp).parse().unwrap_or(0);
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = format!("{int}{frac}");
    let lead = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_matches('0');
    if digits.is_empty() {
        return format!("{sign}0.0");
    }
    // The decimal exponent of the first significant digit.
    let exp = exp + int.len() as i64 - 1 - lead as i64;
    let n = digits.len() as i64;
    if !(-5..=15).contains(&exp) {
        let (head, tail) = digits.split_at(1);
        let dot = if tail.is_empty() { String::new() } else { format!(".{tail}") };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{head}{dot}e{esign}{:02}", exp.unsigned_abs());
    }
    if exp < 0 {
        return format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize));
    }
    if n - 1 <= exp {
        return format!("{sign}{digits}{}.0", "0".repeat((exp - n + 1) as usize));
    }
    let (int, frac) = digits.split_at(exp as usize + 1);
    format!("{sign}{int}.{frac}")
}

pub(super) fn invalid_type<T>(path: &str, v: &Value, expected: &str) -> Result<T, ConfigError> {
    fail(path, format!("invalid type: {}, expected {expected}", unexpected(v)))
}

/// serde's list of what was expected: `expected `a``, `expected `a` or `b``, `expected one of ...`.
fn one_of(names: &[&str], none: &str) -> String {
    match names {
        [] => none.to_owned(),
        [a] => format!("expected `{a}`"),
        [a, b] => format!("expected `{a}` or `{b}`"),
        _ => {
            let mut out = "expected one of ".to_owned();
            for (i, n) in names.iter().enumerate() {
                out.push_str(if i == 0 { "`" } else { ", `" });
                out.push_str(n);
                out.push('`');
            }
            out
        }
    }
}

pub(super) fn missing<T>(path: &str, field: &str) -> Result<T, ConfigError> {
    fail(path, format!("missing field `{field}`"))
}

/// A required member, or the `missing field` error.
pub(super) fn required<T>(slot: Option<T>, path: &str, field: &str) -> Result<T, ConfigError> {
    match slot {
        Some(v) => Ok(v),
        None => missing(path, field),
    }
}

/// The members of the object at `path`, in document order, each handed to `member` with its
/// index in `fields` and its path. An unknown key and a repeated key are errors (in document
/// order, as serde reported them); `tagged`: the body of an internally tagged enum, whose `type`
/// key is skipped and whose errors all name the object itself (as serde reported them).
pub(super) fn object(
    v: &Value,
    path: &str,
    expecting: &str,
    fields: &[&str],
    tagged: bool,
    member: &mut dyn FnMut(usize, &Value, &str) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let members = match v {
        Value::Object(m) => m,
        Value::Array(items) if items.is_empty() => {
            return fail(path, format!("invalid length 0, expected {expecting}"));
        }
        _ => return invalid_type(path, v, expecting),
    };
    let mut seen = vec![false; fields.len()];
    for (key, value) in members {
        if tagged && key == "type" {
            continue;
        }
        let at = if tagged { path.to_owned() } else { child(path, key) };
        let Some(i) = fields.iter().position(|f| f == key) else {
            return fail(&at, format!("unknown field `{key}`, {}", one_of(fields, "there are no fields")));
        };
        if std::mem::replace(&mut seen[i], true) {
            return fail(path, format!("duplicate field `{key}`"));
        }
        member(i, value, &at)?;
    }
    Ok(())
}

/// The variant named by the `type` of an internally tagged enum at `path`, as an index into
/// `variants`.
pub(super) fn tag(v: &Value, path: &str, name: &str, variants: &[&str]) -> Result<usize, ConfigError> {
    let Value::Object(members) = v else {
        return invalid_type(path, v, &format!("internally tagged enum {name}"));
    };
    let mut tags = members.iter().filter(|(k, _)| k == "type").map(|(_, v)| v);
    let Some(t) = tags.next() else { return missing(path, "type") };
    if tags.next().is_some() {
        return fail(path, "duplicate field `type`");
    }
    variant(t, &child(path, "type"), variants)
}

/// A unit enum variant, written as its name (or, as serde_json also reads it, `{"name": null}`).
pub(super) fn variant(v: &Value, path: &str, variants: &[&str]) -> Result<usize, ConfigError> {
    let name = match v {
        Value::String(s) => s,
        Value::Object(m) => match m.as_slice() {
            [(k, Value::Null)] => k,
            _ => return invalid_type(path, v, "variant identifier"),
        },
        _ => return invalid_type(path, v, "variant identifier"),
    };
    match variants.iter().position(|n| n == name) {
        Some(i) => Ok(i),
        None => {
            fail(path, format!("unknown variant `{name}`, {}", one_of(variants, "there are no variants")))
        }
    }
}

pub(super) fn string(v: &Value, path: &str) -> Result<String, ConfigError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        _ => invalid_type(path, v, "a string"),
    }
}

pub(super) fn boolean(v: &Value, path: &str) -> Result<bool, ConfigError> {
    match v {
        Value::Bool(b) => Ok(*b),
        _ => invalid_type(path, v, "a boolean"),
    }
}

/// A number, with its text for messages (`1.5`, or an integer's digits).
pub(super) fn double(v: &Value, path: &str) -> Result<(f64, String), ConfigError> {
    match v {
        Value::Number(Number::Float(f, text)) => Ok((*f, float(text))),
        Value::Number(Number::PosInt(n)) => Ok((*n as f64, n.to_string())),
        Value::Number(Number::NegInt(n)) => Ok((*n as f64, n.to_string())),
        _ => invalid_type(path, v, "f64"),
    }
}

/// `null` as `None` (serde's `Option`), anything else through `read`.
pub(super) fn opt<T>(
    v: &Value,
    path: &str,
    read: impl FnOnce(&Value, &str) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    match v {
        Value::Null => Ok(None),
        _ => read(v, path).map(Some),
    }
}

/// A list, each item read by `read` at `path[i]` (at `path` itself when `flat`).
pub(super) fn list<T>(
    v: &Value,
    path: &str,
    flat: bool,
    read: &dyn Fn(&Value, &str) -> Result<T, ConfigError>,
) -> Result<Vec<T>, ConfigError> {
    let Value::Array(items) = v else { return invalid_type(path, v, "a sequence") };
    // A loop, not `map(..).collect::<Result<_, _>>()`: that links several iterator adapters per
    // item type into the module.
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        out.push(read(item, &if flat { path.to_owned() } else { index(path, i) })?);
    }
    Ok(out)
}

/// The unsigned integer types the config uses.
pub(super) trait Unsigned: TryFrom<u64> + Sized {
    const NAME: &'static str;
}

impl Unsigned for u16 {
    const NAME: &'static str = "u16";
}

impl Unsigned for u32 {
    const NAME: &'static str = "u32";
}

impl Unsigned for u64 {
    const NAME: &'static str = "u64";
}

/// 2^64 as a double: the first double above `u64::MAX`.
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

/// An integer field, written as a JSON integer or as an integral double (`256.0`, `3.6e3`).
///
/// Istio hands the filter a WasmPlugin's `pluginConfig`, a protobuf `Struct`, serialized to JSON:
/// every number in a `Struct` is a double, and some serializers write `256.0` for 256. An integral,
/// finite double is accepted as the integer it names; a fraction, a negative number or a value out
/// of the field's range is rejected with serde's wording (`invalid type: floating point `1.5`,
/// expected u32`), so errors still name field and value.
pub(super) fn int<T: Unsigned>(v: &Value, path: &str) -> Result<T, ConfigError> {
    let bad_value = || fail(path, format!("invalid value: {}, expected {}", unexpected(v), T::NAME));
    let u = match v {
        Value::Number(Number::PosInt(u)) => *u,
        Value::Number(Number::NegInt(_)) => return bad_value(),
        Value::Number(Number::Float(f, _)) => {
            if !f.is_finite() || f.fract() != 0.0 {
                return invalid_type(path, v, T::NAME);
            }
            if !(0.0..TWO_POW_64).contains(f) {
                return bad_value();
            }
            // Integral and in 0..2^64, so the conversion is exact.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let u = *f as u64;
            u
        }
        _ => return invalid_type(path, v, T::NAME),
    };
    T::try_from(u).or_else(|_| bad_value())
}
