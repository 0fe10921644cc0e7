//! PyYAML's implicit resolver (YAML 1.1 typing of plain scalars) and `safe_load`'s construction
//! of the JSON-representable values, as PyYAML 6 does them.

use serde_json::{Map, Value as Json};

use super::YNode;

/// The type PyYAML's implicit resolvers give a plain scalar, or `None` for a string.
/// (PyYAML 6 `Resolver`: bool, float, int, merge, null, timestamp, value.)
pub fn yaml11_type(s: &str) -> Option<&'static str> {
    if matches!(
        s,
        "yes"
            | "Yes"
            | "YES"
            | "no"
            | "No"
            | "NO"
            | "true"
            | "True"
            | "TRUE"
            | "false"
            | "False"
            | "FALSE"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    ) {
        return Some("a bool");
    }
    if matches!(s, "" | "~" | "null" | "Null" | "NULL") {
        return Some("null");
    }
    if is_yaml11_int(s) {
        return Some("an int");
    }
    if is_yaml11_float(s) {
        return Some("a float");
    }
    if is_yaml11_timestamp(s) {
        return Some("a timestamp");
    }
    match s {
        "<<" => Some("a merge key"),
        "=" => Some("a value key"),
        _ => None,
    }
}

/// A tiny cursor for the resolver patterns (no regex crate in the tree).
struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cur<'_> {
    fn new(s: &str) -> Cur<'_> {
        Cur { b: s.as_bytes(), i: 0 }
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn eat(&mut self, pred: impl Fn(u8) -> bool) -> bool {
        match self.peek() {
            Some(c) if pred(c) => {
                self.i += 1;
                true
            }
            _ => false,
        }
    }
    fn eat_all(&mut self, pred: impl Fn(u8) -> bool) -> usize {
        let start = self.i;
        while self.eat(&pred) {}
        self.i - start
    }
    fn eat_str(&mut self, s: &str) -> bool {
        if self.b[self.i..].starts_with(s.as_bytes()) {
            self.i += s.len();
            true
        } else {
            false
        }
    }
    fn done(&self) -> bool {
        self.i == self.b.len()
    }
    fn sign(&mut self) {
        self.eat(|c| c == b'-' || c == b'+');
    }
    /// `(:[0-5]?[0-9])+`
    fn sexagesimal(&mut self) -> bool {
        let mut n = 0;
        while self.eat(|c| c == b':') {
            let two = matches!((self.b.get(self.i), self.b.get(self.i + 1)), (Some(b'0'..=b'5'), Some(b'0'..=b'9')));
            if two {
                self.i += 2;
            } else if !self.eat(|c| c.is_ascii_digit()) {
                return false;
            }
            n += 1;
        }
        n > 0
    }
}

fn digit_or_underscore(c: u8) -> bool {
    c.is_ascii_digit() || c == b'_'
}

fn is_yaml11_int(s: &str) -> bool {
    let try_form = |f: &dyn Fn(&mut Cur<'_>) -> bool| {
        let mut c = Cur::new(s);
        c.sign();
        f(&mut c) && c.done()
    };
    try_form(&|c| c.eat_str("0b") && c.eat_all(|x| matches!(x, b'0' | b'1' | b'_')) > 0)
        || try_form(&|c| c.eat_str("0x") && c.eat_all(|x| x.is_ascii_hexdigit() || x == b'_') > 0)
        || try_form(&|c| c.eat(|x| x == b'0') && c.eat_all(|x| matches!(x, b'0'..=b'7' | b'_')) > 0)
        || try_form(&|c| c.eat(|x| x == b'0'))
        || try_form(&|c| c.eat(|x| matches!(x, b'1'..=b'9')) && c.eat_all(digit_or_underscore) < usize::MAX)
        || try_form(&|c| {
            c.eat(|x| matches!(x, b'1'..=b'9')) && c.eat_all(digit_or_underscore) < usize::MAX && c.sexagesimal()
        })
}

fn is_yaml11_float(s: &str) -> bool {
    let exponent = |c: &mut Cur<'_>| {
        // `(?:[eE][-+][0-9]+)?`
        let save = c.i;
        if c.eat(|x| x == b'e' || x == b'E')
            && c.eat(|x| x == b'-' || x == b'+')
            && c.eat_all(|x| x.is_ascii_digit()) > 0
        {
            return;
        }
        c.i = save;
    };
    let try_form = |signed: bool, f: &dyn Fn(&mut Cur<'_>) -> bool| {
        let mut c = Cur::new(s);
        if signed {
            c.sign();
        }
        f(&mut c) && c.done()
    };
    try_form(true, &|c| {
        c.eat(|x| x.is_ascii_digit())
            && {
                c.eat_all(digit_or_underscore);
                c.eat(|x| x == b'.')
            }
            && {
                c.eat_all(digit_or_underscore);
                exponent(c);
                true
            }
    }) || try_form(false, &|c| {
        // `\.[0-9][0-9_]*` (PyYAML >= 5.1: `._1` is a string)
        c.eat(|x| x == b'.') && c.eat(|x| x.is_ascii_digit()) && {
            c.eat_all(digit_or_underscore);
            exponent(c);
            true
        }
    }) || try_form(true, &|c| {
        c.eat(|x| x.is_ascii_digit())
            && {
                c.eat_all(digit_or_underscore);
                c.sexagesimal()
            }
            && c.eat(|x| x == b'.')
            && {
                c.eat_all(digit_or_underscore);
                true
            }
    }) || try_form(true, &|c| c.eat_str(".inf") || c.eat_str(".Inf") || c.eat_str(".INF"))
        || try_form(false, &|c| c.eat_str(".nan") || c.eat_str(".NaN") || c.eat_str(".NAN"))
}

fn is_yaml11_timestamp(s: &str) -> bool {
    let digits = |c: &mut Cur<'_>, min: usize, max: usize| {
        let start = c.i;
        while c.i - start < max && c.eat(|x| x.is_ascii_digit()) {}
        c.i - start >= min
    };
    let mut c = Cur::new(s);
    if !(digits(&mut c, 4, 4) && c.eat(|x| x == b'-')) {
        return false;
    }
    let date_start = c.i;
    if digits(&mut c, 2, 2) && c.eat(|x| x == b'-') && digits(&mut c, 2, 2) && c.done() {
        return true;
    }
    c.i = date_start;
    if !(digits(&mut c, 1, 2) && c.eat(|x| x == b'-') && digits(&mut c, 1, 2)) {
        return false;
    }
    if !(c.eat(|x| x == b'T' || x == b't') || c.eat_all(|x| x == b' ' || x == b'\t') > 0) {
        return false;
    }
    if !(digits(&mut c, 1, 2)
        && c.eat(|x| x == b':')
        && digits(&mut c, 2, 2)
        && c.eat(|x| x == b':')
        && digits(&mut c, 2, 2))
    {
        return false;
    }
    if c.eat(|x| x == b'.') {
        c.eat_all(|x| x.is_ascii_digit());
    }
    if c.done() {
        return true;
    }
    c.eat_all(|x| x == b' ' || x == b'\t');
    if c.eat(|x| x == b'Z') {
        return c.done();
    }
    c.eat(|x| x == b'-' || x == b'+')
        && digits(&mut c, 1, 2)
        && (c.done() || (c.eat(|x| x == b':') && digits(&mut c, 2, 2) && c.done()))
}

/// The JSON value PyYAML's typing gives `node`, or why there is none.
pub(crate) fn yaml_to_json(node: &YNode) -> Result<Json, String> {
    Ok(match node {
        YNode::Str(s) => Json::String(s.clone()),
        YNode::Bool(b) => Json::Bool(*b),
        YNode::Null => Json::Null,
        YNode::Int(i) => int_json(*i)?,
        YNode::Float(f) => float_json(*f)?,
        YNode::Unsupported(what) => return Err(what.to_string()),
        YNode::Plain(s) => match yaml11_type(s) {
            Some("a bool") => {
                Json::Bool(matches!(s.as_str(), "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON"))
            }
            Some("null") => Json::Null,
            Some("an int") => int_json(yaml11_int_value(s).ok_or("an int out of range")?)?,
            Some("a float") => float_json(yaml11_float_value(s).ok_or("a float")?)?,
            Some(other) => return Err(other.to_string()),
            None => Json::String(s.clone()),
        },
        YNode::Seq(items) => Json::Array(items.iter().map(yaml_to_json).collect::<Result<_, _>>()?),
        YNode::Map(entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                let YNode::Str(k) = k else { return Err("a mapping with a non-string key".into()) };
                m.insert(k.clone(), yaml_to_json(v)?);
            }
            Json::Object(m)
        }
    })
}

fn int_json(i: i128) -> Result<Json, String> {
    if let Ok(v) = i64::try_from(i) {
        Ok(v.into())
    } else if let Ok(v) = u64::try_from(i) {
        Ok(v.into())
    } else {
        Err("an int out of range".into())
    }
}

fn float_json(f: f64) -> Result<Json, String> {
    serde_json::Number::from_f64(f).map(Json::Number).ok_or_else(|| "a float JSON cannot hold (inf or nan)".into())
}

pub(crate) fn yaml11_int_value(s: &str) -> Option<i128> {
    let clean: String = s.chars().filter(|&c| c != '_').collect();
    let (neg, body) = match clean.as_bytes().first() {
        Some(b'-') => (true, &clean[1..]),
        Some(b'+') => (false, &clean[1..]),
        _ => (false, clean.as_str()),
    };
    let v = if let Some(b) = body.strip_prefix("0b") {
        i128::from_str_radix(b, 2).ok()?
    } else if let Some(h) = body.strip_prefix("0x") {
        i128::from_str_radix(h, 16).ok()?
    } else if body.contains(':') {
        body.split(':').try_fold(0i128, |acc, part| Some(acc * 60 + part.parse::<i128>().ok()?))?
    } else if body.len() > 1 && body.starts_with('0') {
        i128::from_str_radix(&body[1..], 8).ok()?
    } else {
        body.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

pub(crate) fn yaml11_float_value(s: &str) -> Option<f64> {
    let clean: String = s.chars().filter(|&c| c != '_').collect::<String>().to_lowercase();
    let (neg, body) = match clean.as_bytes().first() {
        Some(b'-') => (true, &clean[1..]),
        Some(b'+') => (false, &clean[1..]),
        _ => (false, clean.as_str()),
    };
    let v = if body == ".inf" {
        f64::INFINITY
    } else if body == ".nan" {
        f64::NAN
    } else if body.contains(':') {
        body.split(':').try_fold(0f64, |acc, part| Some(acc * 60.0 + part.parse::<f64>().ok()?))?
    } else {
        body.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

pub(crate) fn json_to_yaml(v: &Json) -> YNode {
    match v {
        Json::String(s) => YNode::Str(s.clone()),
        Json::Bool(b) => YNode::Bool(*b),
        Json::Null => YNode::Null,
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                YNode::Int(i.into())
            } else if let Some(u) = n.as_u64() {
                YNode::Int(u.into())
            } else {
                YNode::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::Array(a) => YNode::Seq(a.iter().map(json_to_yaml).collect()),
        Json::Object(m) => YNode::Map(m.iter().map(|(k, v)| (YNode::Str(k.clone()), json_to_yaml(v))).collect()),
    }
}

pub(crate) fn wipe_ynode(n: &mut YNode) {
    match n {
        YNode::Str(s) | YNode::Plain(s) => zeroize::Zeroize::zeroize(s),
        YNode::Seq(a) => a.iter_mut().for_each(wipe_ynode),
        YNode::Map(m) => m.iter_mut().for_each(|(k, v)| {
            wipe_ynode(k);
            wipe_ynode(v)
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml11_resolver_matches_pyyaml_rules() {
        for s in ["yes", "No", "ON", "off", "~", "null", "", "0123", "0b101", "0x1F", "1_000", "190:20:30", "-12"] {
            assert!(yaml11_type(s).is_some(), "{s:?} should not be a string");
        }
        for s in [
            "1.5",
            "1.",
            "-1.5e+3",
            ".5",
            "190:20:30.15",
            ".inf",
            "-.Inf",
            ".NaN",
            "2001-12-14",
            "2001-12-14t21:59:43.10-05:00",
            "2001-12-14 21:59:43.10 -5",
            "<<",
            "=",
        ] {
            assert!(yaml11_type(s).is_some(), "{s:?} should not be a string");
        }
        for s in [
            "1e3", "1E3", "0o17", "y", "n", "089", "1.5e3", "abc", ".", "._1", "+.5", "+.nan", "2001-1-1", "12:70",
            "0x", "True1",
        ] {
            assert_eq!(yaml11_type(s), None, "{s:?} should be a string");
        }
        assert_eq!(yaml11_int_value("0123"), Some(83));
        assert_eq!(yaml11_int_value("190:20:30"), Some(685230));
        assert_eq!(yaml11_int_value("-0x1_F"), Some(-31));
    }
}
