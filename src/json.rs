//! A small JSON reader (RFC 8259) for the configuration, discovery answers and JWT payloads.
//!
//! Pure and strict: one value, whitespace around it, nothing else; strings must be valid UTF-8
//! with no raw control characters; numbers must be finite. Members of an object keep their
//! document order and duplicates, so the caller decides what a repeated key means. Nesting is
//! bounded by [`MAX_DEPTH`], so no input can exhaust the stack. Errors read like serde_json's
//! (`expected value at line 1 column 11`): they name what was expected and where.

use std::fmt;

/// Deepest nesting of arrays and objects accepted (serde_json's default recursion limit).
pub const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    /// Members in document order, duplicates kept.
    Object(Vec<(String, Value)>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Number {
    /// A non-negative integer written without fraction or exponent that fits a `u64`.
    PosInt(u64),
    /// A negative integer written without fraction or exponent that fits an `i64`.
    NegInt(i64),
    /// Anything else: a fraction, an exponent, or an integer too large for the above; with the
    /// number as written, for messages (so no float formatting is needed).
    Float(f64, Box<str>),
}

impl Value {
    /// The member `key` of an object; the last one when the key is repeated (as serde_json's
    /// `Value` keeps it).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// A non-negative integer written as an integer (`3.0` is not one here).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(Number::PosInt(n)) => Some(*n),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(Number::PosInt(n)) => Some(*n as f64),
            Value::Number(Number::NegInt(n)) => Some(*n as f64),
            Value::Number(Number::Float(f, _)) => Some(*f),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// Why a document is not JSON, and where (1-based line and byte column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub what: &'static str,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at line {} column {}", self.what, self.line, self.column)
    }
}

impl std::error::Error for Error {}

/// Parses one JSON document.
pub fn parse(bytes: &[u8]) -> Result<Value, Error> {
    let mut p = Parser { bytes, pos: 0 };
    p.skip_ws();
    let value = p.value(0)?;
    p.skip_ws();
    if p.pos < bytes.len() {
        return Err(p.error_here("trailing characters"));
    }
    Ok(value)
}

/// The members of a top-level object whose key `keep` selects, in document order (duplicates
/// kept). The other members' values are only checked, iteratively, so they may nest to any depth
/// (as serde_json's `IgnoredAny` skips them) without being built.
pub fn object_members(bytes: &[u8], keep: &dyn Fn(&str) -> bool) -> Result<Vec<(String, Value)>, Error> {
    let mut p = Parser { bytes, pos: 0 };
    p.skip_ws();
    if p.peek() != Some(b'{') {
        return Err(p.eof_or("expected an object", "EOF while parsing a value"));
    }
    p.pos += 1;
    let mut kept = Vec::new();
    p.skip_ws();
    if p.peek() == Some(b'}') {
        p.pos += 1;
    } else {
        loop {
            let key = p.key()?;
            if keep(&key) {
                kept.push((key, p.value(1)?));
            } else {
                p.skip_value()?;
            }
            if p.next_member(b'}')? {
                break;
            }
        }
    }
    p.skip_ws();
    if p.pos < bytes.len() {
        return Err(p.error_here("trailing characters"));
    }
    Ok(kept)
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// An error after `consumed` bytes (the offending byte included).
    fn error_at(&self, what: &'static str, consumed: usize) -> Error {
        let consumed = consumed.min(self.bytes.len());
        let before = self.bytes.get(..consumed).unwrap_or_default();
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let column = before.iter().rev().take_while(|&&b| b != b'\n').count();
        Error { what, line, column }
    }

    /// An error at the byte under the cursor (or at the end).
    fn error_here(&self, what: &'static str) -> Error {
        self.error_at(what, self.pos + 1)
    }

    fn eof_or(&self, what: &'static str, eof: &'static str) -> Error {
        if self.pos >= self.bytes.len() {
            self.error_at(eof, self.bytes.len())
        } else {
            self.error_here(what)
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, Error> {
        match self.peek() {
            None => Err(self.eof_or("", "EOF while parsing a value")),
            Some(b'n') => self.ident(b"null", Value::Null),
            Some(b't') => self.ident(b"true", Value::Bool(true)),
            Some(b'f') => self.ident(b"false", Value::Bool(false)),
            Some(b'"') => self.string().map(Value::String),
            Some(b'-' | b'0'..=b'9') => self.number().map(Value::Number),
            Some(b'[') => self.array(depth + 1),
            Some(b'{') => self.object(depth + 1),
            Some(_) => Err(self.error_here("expected value")),
        }
    }

    fn ident(&mut self, word: &[u8], value: Value) -> Result<Value, Error> {
        for &want in word {
            match self.peek() {
                Some(b) if b == want => self.pos += 1,
                Some(_) => return Err(self.error_here("expected ident")),
                None => return Err(self.error_at("EOF while parsing a value", self.bytes.len())),
            }
        }
        Ok(value)
    }

    fn enter(&self, depth: usize) -> Result<(), Error> {
        if depth > MAX_DEPTH { Err(self.error_here("recursion limit exceeded")) } else { Ok(()) }
    }

    fn array(&mut self, depth: usize) -> Result<Value, Error> {
        self.enter(depth)?;
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            if self.next_member(b']')? {
                return Ok(Value::Array(items));
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, Error> {
        self.enter(depth)?;
        self.pos += 1;
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(members));
        }
        loop {
            let key = self.key()?;
            let value = self.value(depth)?;
            members.push((key, value));
            if self.next_member(b'}')? {
                return Ok(Value::Object(members));
            }
        }
    }

    /// A member's key and its `:`, leaving the cursor at the value.
    fn key(&mut self) -> Result<String, Error> {
        if self.peek() != Some(b'"') {
            return Err(self.eof_or("key must be a string", "EOF while parsing an object"));
        }
        let key = self.string()?;
        self.skip_ws();
        if self.peek() != Some(b':') {
            return Err(self.eof_or("expected `:`", "EOF while parsing an object"));
        }
        self.pos += 1;
        self.skip_ws();
        Ok(key)
    }

    /// After an item of a list (`close` `]`) or object (`}`): true at its end, false at a `,`
    /// (the cursor then at the next item).
    fn next_member(&mut self, close: u8) -> Result<bool, Error> {
        self.skip_ws();
        match self.peek() {
            Some(b) if b == close => {
                self.pos += 1;
                Ok(true)
            }
            Some(b',') => {
                self.pos += 1;
                self.skip_ws();
                if self.peek() == Some(close) {
                    return Err(self.error_here("trailing comma"));
                }
                Ok(false)
            }
            _ if close == b']' => Err(self.eof_or("expected `,` or `]`", "EOF while parsing a list")),
            _ => Err(self.eof_or("expected `,` or `}`", "EOF while parsing an object")),
        }
    }

    /// Checks one value without building it, with a heap stack instead of recursion.
    fn skip_value(&mut self) -> Result<(), Error> {
        let mut open: Vec<u8> = Vec::new();
        loop {
            match self.peek() {
                Some(b'[') | Some(b'{') => {
                    let close = if self.peek() == Some(b'[') { b']' } else { b'}' };
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(close) {
                        self.pos += 1;
                    } else {
                        open.push(close);
                        if close == b'}' {
                            self.key()?;
                        }
                        continue;
                    }
                }
                Some(b'"') => _ = self.string()?,
                Some(b'-' | b'0'..=b'9') => _ = self.number_syntax()?,
                _ => _ = self.value(0)?,
            }
            // After a value: close what ends here, up to the next item.
            loop {
                let Some(&close) = open.last() else { return Ok(()) };
                if !self.next_member(close)? {
                    if close == b'}' {
                        self.key()?;
                    }
                    break;
                }
                open.pop();
            }
        }
    }

    fn string(&mut self) -> Result<String, Error> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let start = self.pos;
            while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                self.pos += 1;
            }
            out.extend_from_slice(self.bytes.get(start..self.pos).unwrap_or_default());
            match self.peek() {
                None => return Err(self.error_at("EOF while parsing a string", self.bytes.len())),
                Some(b'"') => {
                    self.pos += 1;
                    return String::from_utf8(out)
                        .map_err(|_| self.error_at("invalid unicode code point", self.pos));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => {
                    return Err(
                        self.error_here("control character (\\u0000-\\u001F) found while parsing a string")
                    );
                }
            }
        }
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        let Some(b) = self.peek() else {
            return Err(self.error_at("EOF while parsing a string", self.bytes.len()));
        };
        self.pos += 1;
        let c = match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                let code = match first {
                    0xD800..=0xDBFF => {
                        if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return Err(self.error_here("lone leading surrogate in hex escape"));
                        }
                        self.pos += 2;
                        let second = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&second) {
                            return Err(self.error_at("lone leading surrogate in hex escape", self.pos));
                        }
                        0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                    }
                    0xDC00..=0xDFFF => {
                        return Err(self.error_at("lone trailing surrogate in hex escape", self.pos));
                    }
                    n => n,
                };
                char::from_u32(code).ok_or_else(|| self.error_at("invalid unicode code point", self.pos))?
            }
            _ => return Err(self.error_at("invalid escape", self.pos)),
        };
        let mut buf = [0; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let mut n = 0;
        for _ in 0..4 {
            let Some(b) = self.peek() else {
                return Err(self.error_at("EOF while parsing a string", self.bytes.len()));
            };
            let d = (b as char).to_digit(16).ok_or_else(|| self.error_here("invalid escape"))?;
            n = n * 16 + d;
            self.pos += 1;
        }
        Ok(n)
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Number, Error> {
        let start = self.pos;
        let integral = self.number_syntax()?;
        // Only ASCII digits, signs, '.' and 'e' were consumed.
        let text =
            std::str::from_utf8(self.bytes.get(start..self.pos).unwrap_or_default()).unwrap_or_default();
        if integral {
            if text.starts_with('-') {
                // `-0` is the double -0.0, as serde_json reads it.
                if let Ok(n @ ..0) = text.parse::<i64>() {
                    return Ok(Number::NegInt(n));
                }
            } else if let Ok(n) = text.parse::<u64>() {
                return Ok(Number::PosInt(n));
            }
        }
        match crate::decimal::parse_f64(text) {
            Some(f) if f.is_finite() => Ok(Number::Float(f, text.into())),
            _ => Err(self.error_at("number out of range", self.pos)),
        }
    }

    /// Scans a number's syntax; true when it has no fraction and no exponent.
    fn number_syntax(&mut self) -> Result<bool, Error> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.digits() {
            0 => return Err(self.eof_or("invalid number", "EOF while parsing a value")),
            n if n > 1 && self.bytes.get(int_start) == Some(&b'0') => {
                return Err(self.error_at("invalid number", int_start + 2));
            }
            _ => {}
        }
        let mut integral = true;
        if self.peek() == Some(b'.') {
            integral = false;
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.eof_or("invalid number", "EOF while parsing a value"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integral = false;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.eof_or("invalid number", "EOF while parsing a value"));
            }
        }
        Ok(integral)
    }
}
