//! Python 3.11's `json`: `loads` and the default `dumps`, as Airflow's codecs call them (unbounded
//! integers, NaN, duplicate keys, `\uXXXX` escapes, float `repr`). Pure; knows nothing of Airflow.
use std::fmt;

/// A value as Python's `json.loads` produces it. Integers keep every digit (Python ints are
/// unbounded), floats may be NaN or infinite, objects keep order (duplicate keys collapsed:
/// last value, first position, like a dict).
#[derive(Clone, Debug, PartialEq)]
pub enum PyJson {
    Null,
    Bool(bool),
    /// Canonical decimal digits with an optional leading '-' (never "-0").
    Int(String),
    Float(f64),
    Str(String),
    Array(Vec<PyJson>),
    Object(Vec<(String, PyJson)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError(&'static str);

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl PyJson {
    /// Python truthiness.
    pub fn truthy(&self) -> bool {
        match self {
            PyJson::Null => false,
            PyJson::Bool(b) => *b,
            PyJson::Int(s) => s != "0",
            PyJson::Float(f) => *f != 0.0,
            PyJson::Str(s) => !s.is_empty(),
            PyJson::Array(a) => !a.is_empty(),
            PyJson::Object(o) => !o.is_empty(),
        }
    }

    /// Structural equality with objects compared as maps. Types must match (1 ≠ 1.0 ≠ true:
    /// a hook may treat them differently); NaN equals NaN so the relation is reflexive.
    pub fn semantic_eq(&self, other: &PyJson) -> bool {
        match (self, other) {
            (PyJson::Float(a), PyJson::Float(b)) => a == b || (a.is_nan() && b.is_nan()),
            (PyJson::Array(a), PyJson::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.semantic_eq(y))
            }
            (PyJson::Object(a), PyJson::Object(b)) => {
                a.len() == b.len()
                    && a.iter().all(|(k, v)| {
                        b.iter()
                            .find(|(k2, _)| k2 == k)
                            .is_some_and(|(_, v2)| v.semantic_eq(v2))
                    })
            }
            (a, b) => a == b,
        }
    }
}

/// Python's default recursion limit makes deeper documents fail there too.
const MAX_DEPTH: usize = 900;
/// `sys.get_int_max_str_digits()` default (Python 3.11).
const MAX_INT_DIGITS: usize = 4300;

/// `json.loads(s)` for a `str`.
pub fn loads(s: &str) -> Result<PyJson, JsonError> {
    if s.starts_with('\u{feff}') {
        return Err(JsonError("unexpected UTF-8 BOM"));
    }
    let mut p = Parser {
        s: s.as_bytes(),
        src: s,
        i: 0,
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(JsonError("extra data after the JSON value"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<PyJson, JsonError> {
        if depth > MAX_DEPTH {
            return Err(JsonError("nested too deeply"));
        }
        let Some(&c) = self.s.get(self.i) else {
            return Err(JsonError("expecting a value"));
        };
        match c {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => Ok(PyJson::Str(self.string()?)),
            b'n' if self.eat("null") => Ok(PyJson::Null),
            b't' if self.eat("true") => Ok(PyJson::Bool(true)),
            b'f' if self.eat("false") => Ok(PyJson::Bool(false)),
            b'N' if self.eat("NaN") => Ok(PyJson::Float(f64::NAN)),
            b'I' if self.eat("Infinity") => Ok(PyJson::Float(f64::INFINITY)),
            b'-' if self.eat("-Infinity") => Ok(PyJson::Float(f64::NEG_INFINITY)),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(JsonError("expecting a value")),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<PyJson, JsonError> {
        let start = self.i;
        if self.s[self.i] == b'-' {
            self.i += 1;
        }
        // -?(0|[1-9]\d*)
        match self.s.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(JsonError("expecting a value")),
        }
        let int_end = self.i;
        let mut is_float = false;
        if self.s.get(self.i) == Some(&b'.')
            && self.s.get(self.i + 1).is_some_and(u8::is_ascii_digit)
        {
            self.i += 1;
            self.digits();
            is_float = true;
        }
        if matches!(self.s.get(self.i), Some(b'e' | b'E')) {
            let save = self.i;
            self.i += 1;
            if matches!(self.s.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                self.i = save;
            } else {
                is_float = true;
            }
        }
        let text = &self.src[start..self.i];
        if is_float {
            let f: f64 = text.parse().map_err(|_| JsonError("invalid number"))?;
            Ok(PyJson::Float(f))
        } else {
            let t = &self.src[start..int_end];
            if t.trim_start_matches('-').len() > MAX_INT_DIGITS {
                return Err(JsonError("integer exceeds the digit limit"));
            }
            Ok(PyJson::Int(if t == "-0" {
                "0".to_string()
            } else {
                t.to_string()
            }))
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let h = self
            .src
            .get(self.i..self.i + 4)
            .ok_or(JsonError("invalid \\u escape"))?;
        if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(JsonError("invalid \\u escape"));
        }
        self.i += 4;
        u32::from_str_radix(h, 16).map_err(|_| JsonError("invalid \\u escape"))
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.i += 1; // opening quote
        let mut out = String::new();
        loop {
            let start = self.i;
            while self.i < self.s.len()
                && !matches!(self.s[self.i], b'"' | b'\\')
                && self.s[self.i] >= 0x20
            {
                self.i += 1;
            }
            out.push_str(&self.src[start..self.i]);
            match self.s.get(self.i) {
                None => return Err(JsonError("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let Some(&e) = self.s.get(self.i) else {
                        return Err(JsonError("unterminated string"));
                    };
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..=0xDBFF).contains(&cp)
                                && self.s[self.i..].starts_with(b"\\u")
                            {
                                let save = self.i;
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..=0xDFFF).contains(&lo) {
                                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                } else {
                                    self.i = save;
                                }
                            }
                            // Python keeps a lone surrogate in the str; Rust strings cannot.
                            let ch = char::from_u32(cp)
                                .ok_or(JsonError("lone surrogate in string"))?;
                            out.push(ch);
                        }
                        _ => return Err(JsonError("invalid escape")),
                    }
                }
                Some(_) => return Err(JsonError("invalid control character in string")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<PyJson, JsonError> {
        self.i += 1;
        let mut out = Vec::new();
        self.ws();
        if self.s.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(PyJson::Array(out));
        }
        loop {
            self.ws();
            out.push(self.value(depth + 1)?);
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(PyJson::Array(out));
                }
                _ => return Err(JsonError("expecting ',' delimiter")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<PyJson, JsonError> {
        self.i += 1;
        let mut out: Vec<(String, PyJson)> = Vec::new();
        self.ws();
        if self.s.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(PyJson::Object(out));
        }
        loop {
            self.ws();
            if self.s.get(self.i) != Some(&b'"') {
                return Err(JsonError("expecting a property name in double quotes"));
            }
            let key = self.string()?;
            self.ws();
            if self.s.get(self.i) != Some(&b':') {
                return Err(JsonError("expecting ':' delimiter"));
            }
            self.i += 1;
            self.ws();
            let v = self.value(depth + 1)?;
            match out.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = v,
                None => out.push((key, v)),
            }
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(PyJson::Object(out));
                }
                _ => return Err(JsonError("expecting ',' delimiter")),
            }
        }
    }
}

/// `json.dumps(v)` with the defaults: `", "` / `": "`, `ensure_ascii=True`, `allow_nan=True`.
pub fn dumps(v: &PyJson) -> String {
    let mut out = String::new();
    dump(v, &mut out);
    out
}

fn dump(v: &PyJson, out: &mut String) {
    match v {
        PyJson::Null => out.push_str("null"),
        PyJson::Bool(true) => out.push_str("true"),
        PyJson::Bool(false) => out.push_str("false"),
        PyJson::Int(s) => out.push_str(s),
        PyJson::Float(f) => out.push_str(&float_repr(*f)),
        PyJson::Str(s) => dump_str(s, out),
        PyJson::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dump(x, out);
            }
            out.push(']');
        }
        PyJson::Object(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dump_str(k, out);
                out.push_str(": ");
                dump(x, out);
            }
            out.push('}');
        }
    }
}

fn dump_str(s: &str, out: &mut String) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(ch),
            _ => {
                let mut buf = [0u16; 2];
                for unit in ch.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// `float.__repr__` (shortest round-trip digits; exponent form when the decimal exponent is
/// below -4 or at least 16), with json's `NaN` / `Infinity` spellings.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let sign = if f.is_sign_negative() { "-" } else { "" };
    let (digits, exp) = shortest_digits(f.abs());
    let n = digits.len() as i32;
    if !(-4..16).contains(&exp) {
        let mut m = digits[..1].to_string();
        if n > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{esign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    let body = if point <= 0 {
        format!("0.{}{}", "0".repeat((-point) as usize), digits)
    } else if point >= n {
        format!("{}{}.0", digits, "0".repeat((point - n) as usize))
    } else {
        format!(
            "{}.{}",
            &digits[..point as usize],
            &digits[point as usize..]
        )
    };
    format!("{sign}{body}")
}

/// The shortest decimal digits that read back as `f` (≥ 0) and the decimal exponent of the
/// first digit, chosen as Python's `repr` chooses them: among the shortest candidates, the
/// one nearest the exact binary value, ties to even. Rust's `{:e}` gives the right length but
/// rounds an exact tie up (`190068353379924.125` → `…4.13`, Python `…4.12`), so the digits
/// are re-derived from the exact expansion.
fn shortest_digits(f: f64) -> (String, i32) {
    let sci = format!("{f:e}");
    let (mantissa, _) = sci.split_once('e').expect("{:e} always has an exponent");
    let n = mantissa.chars().filter(char::is_ascii_digit).count();
    // 800 places hold the exact expansion of every f64 (the longest has 767 digits).
    let exact = format!("{f:.800e}");
    let (mantissa, exp) = exact.split_once('e').expect("{:e} always has an exponent");
    let mut exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let all: Vec<u8> = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    let mut kept = all[..n].to_vec();
    let rest = &all[n..];
    let round_up = match rest.first() {
        Some(d) if *d > 5 => true,
        Some(5) => rest[1..].iter().any(|d| *d != 0) || kept[n - 1] % 2 == 1,
        _ => false,
    };
    if round_up {
        let mut i = n;
        loop {
            if i == 0 {
                kept.insert(0, 1);
                kept.pop();
                exp += 1;
                break;
            }
            i -= 1;
            if kept[i] == 9 {
                kept[i] = 0;
            } else {
                kept[i] += 1;
                break;
            }
        }
    }
    while kept.len() > 1 && kept.last() == Some(&0) {
        kept.pop();
    }
    (kept.iter().map(|d| char::from(b'0' + d)).collect(), exp)
}

/// The serde_json value with the same meaning, when serde_json can hold it exactly.
pub fn to_serde(v: &PyJson) -> Option<serde_json::Value> {
    use serde_json::Value;
    Some(match v {
        PyJson::Null => Value::Null,
        PyJson::Bool(b) => Value::Bool(*b),
        PyJson::Int(s) => {
            if let Ok(i) = s.parse::<i64>() {
                Value::from(i)
            } else {
                Value::from(s.parse::<u64>().ok()?)
            }
        }
        PyJson::Float(f) => Value::Number(serde_json::Number::from_f64(*f)?),
        PyJson::Str(s) => Value::String(s.clone()),
        PyJson::Array(a) => Value::Array(a.iter().map(to_serde).collect::<Option<_>>()?),
        PyJson::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| Some((k.clone(), to_serde(x)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

/// A serde_json value as Python would have parsed the same JSON text.
pub fn from_serde(v: &serde_json::Value) -> PyJson {
    use serde_json::Value;
    match v {
        Value::Null => PyJson::Null,
        Value::Bool(b) => PyJson::Bool(*b),
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                PyJson::Int(n.to_string())
            } else {
                PyJson::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => PyJson::Str(s.clone()),
        Value::Array(a) => PyJson::Array(a.iter().map(from_serde).collect()),
        Value::Object(o) => {
            PyJson::Object(o.iter().map(|(k, x)| (k.clone(), from_serde(x))).collect())
        }
    }
}
