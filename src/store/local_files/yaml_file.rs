//! LocalFilesystemBackend `.yaml` files as PyYAML's `safe_load` (YAML 1.1) reads them, and rewrites
//! that keep untouched entries byte-identical.

use super::*;

// ---- YAML, as PyYAML's safe_load (YAML 1.1) reads it --------------------------------------------

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
pub(super) struct Cur<'a> {
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

pub(super) fn digit_or_underscore(c: u8) -> bool {
    c.is_ascii_digit() || c == b'_'
}

pub(super) fn is_yaml11_int(s: &str) -> bool {
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

pub(super) fn is_yaml11_float(s: &str) -> bool {
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

pub(super) fn is_yaml11_timestamp(s: &str) -> bool {
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
pub(super) fn yaml_to_json(node: &YNode) -> Result<Json, String> {
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

pub(super) fn int_json(i: i128) -> Result<Json, String> {
    if let Ok(v) = i64::try_from(i) {
        Ok(v.into())
    } else if let Ok(v) = u64::try_from(i) {
        Ok(v.into())
    } else {
        Err("an int out of range".into())
    }
}

pub(super) fn float_json(f: f64) -> Result<Json, String> {
    serde_json::Number::from_f64(f).map(Json::Number).ok_or_else(|| "a float JSON cannot hold (inf or nan)".into())
}

pub(super) fn yaml11_int_value(s: &str) -> Option<i128> {
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

pub(super) fn yaml11_float_value(s: &str) -> Option<f64> {
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

pub(super) fn json_to_yaml(v: &Json) -> YNode {
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

/// Apply `changes` to a YAML file. A block-style file is edited in place: each changed entry's
/// lines are replaced, a deleted one's removed, new ones appended, and every other byte (entries
/// this run does not touch, comments, blank lines) is kept, checked by reading the result back. A
/// file that cannot be edited that way (flow style, an anchor another entry may use) is written
/// anew, sorted, with its plain scalars' text kept (so PyYAML still types them the same).
pub(super) fn rewrite_yaml(text: &str, changes: &BTreeMap<String, Option<Rendered>>) -> Result<String, String> {
    let doc = yaml11::parse_doc(text)?;
    if let Some(out) = splice_yaml(text, &doc, changes) {
        if same_meaning(text, &out, changes)? {
            return Ok(out);
        }
        let mut out = out;
        zeroize::Zeroize::zeroize(&mut out);
        tracing::debug!("an in-place YAML edit did not read back as planned; rewriting the file whole");
    }
    reemit_yaml(text, changes)
}

/// Emit one `key: value` entry at `indent`, wiping the temporary tree.
pub(super) fn emit_entry(out: &mut String, key: &str, v: &Json, indent: usize) -> Option<()> {
    let mut entry = [(YNode::Str(key.to_string()), json_to_yaml(v))];
    let r = emit_map(out, &entry, indent).ok();
    entry.iter_mut().for_each(|(k, v)| {
        wipe_ynode(k);
        wipe_ynode(v)
    });
    r
}

pub(super) fn wipe_ynode(n: &mut YNode) {
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

/// The in-place edit of a block-style file, or `None` when the file is not one it can do.
pub(super) fn splice_yaml(text: &str, doc: &yaml11::Doc, changes: &BTreeMap<String, Option<Rendered>>) -> Option<String> {
    let new_entries = |out: &mut String, done: &HashSet<&str>, indent: usize| -> Option<()> {
        for (k, r) in changes {
            if let (false, Some(Rendered::Tree(v))) = (done.contains(k.as_str()), r) {
                emit_entry(out, k, v, indent)?;
            }
        }
        Some(())
    };
    match doc.root {
        yaml11::Root::Map { block: true } if !doc.entries.is_empty() => {}
        yaml11::Root::Nothing => {
            // Only comments or blank lines: keep them, add the entries after.
            let mut out = text.to_string();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            new_entries(&mut out, &HashSet::new(), 0)?;
            return Some(out);
        }
        _ => return None,
    }
    let first = if text.starts_with('\u{feff}') { '\u{feff}'.len_utf8() } else { 0 };
    let line_start = |i: usize| text[..i].rfind('\n').map_or(first, |p| p + 1);
    let line_end = |i: usize| {
        if i == 0 || text.as_bytes()[i - 1] == b'\n' {
            i
        } else {
            text[i..].find('\n').map_or(text.len(), |p| i + p + 1)
        }
    };
    let indent = doc.entries[0].key_start - line_start(doc.entries[0].key_start);
    let mut spans = Vec::with_capacity(doc.entries.len());
    let mut prev_end = 0;
    for e in &doc.entries {
        let (s, t) = (line_start(e.key_start), line_end(e.value_end));
        let changed = matches!(&e.key, YNode::Str(k) if changes.contains_key(k));
        if s < prev_end
            || e.key_start - s != indent
            || !text[s..e.key_start].bytes().all(|b| b == b' ')
            || (changed && e.defines_anchor)
        {
            return None;
        }
        spans.push((s, t));
        prev_end = t;
    }
    let mut out = String::with_capacity(text.len() + 256);
    let mut pos = 0;
    let mut done: HashSet<&str> = HashSet::new();
    for (e, &(s, t)) in doc.entries.iter().zip(&spans) {
        out.push_str(&text[pos..s]);
        pos = t;
        match &e.key {
            YNode::Str(k) if changes.contains_key(k) => {
                if done.insert(k.as_str())
                    && let Some(Some(Rendered::Tree(v))) = changes.get(k)
                {
                    emit_entry(&mut out, k, v, indent)?;
                }
            }
            _ => out.push_str(&text[s..t]),
        }
    }
    if changes.iter().any(|(k, r)| r.is_some() && !done.contains(k.as_str())) {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        new_entries(&mut out, &done, indent)?;
    }
    out.push_str(&text[pos..]);
    Some(out)
}

/// Whether `new` reads (as PyYAML would) as `old` with `changes` applied.
pub(super) fn same_meaning(old: &str, new: &str, changes: &BTreeMap<String, Option<Rendered>>) -> Result<bool, String> {
    let norm = |entries: Vec<(YNode, YNode)>| -> HashMap<String, Result<Json, String>> {
        let mut entries = entries;
        let m = entries.iter().map(|(k, v)| (format!("{:?}", yaml_to_json(k)), yaml_to_json(v))).collect();
        entries.iter_mut().for_each(|(k, v)| {
            wipe_ynode(k);
            wipe_ynode(v)
        });
        m
    };
    let mut want = norm(parse_yaml(old)?);
    for (k, r) in changes {
        let key = format!("{:?}", Ok::<Json, String>(Json::String(k.clone())));
        match r {
            Some(Rendered::Tree(v)) => want.insert(key, Ok(v.clone())),
            _ => want.remove(&key),
        };
    }
    let Ok(got) = parse_yaml(new) else { return Ok(false) };
    Ok(norm(got) == want)
}

/// The whole file written anew (see [`rewrite_yaml`]).
pub(super) fn reemit_yaml(text: &str, changes: &BTreeMap<String, Option<Rendered>>) -> Result<String, String> {
    let mut entries = parse_yaml(text)?;
    for (key, r) in changes {
        let k = YNode::Str(key.clone());
        match r {
            Some(Rendered::Tree(v)) => {
                let node = json_to_yaml(v);
                match entries.iter_mut().find(|(old, _)| *old == k) {
                    Some((_, slot)) => *slot = node,
                    None => entries.push((k, node)),
                }
            }
            _ => entries.retain(|(old, _)| *old != k),
        }
    }
    // Sorted string keys first (deterministic diffs), then any other keys as found.
    entries.sort_by(|(a, _), (b, _)| match (a, b) {
        (YNode::Str(a), YNode::Str(b)) => a.cmp(b),
        (YNode::Str(_), _) => std::cmp::Ordering::Less,
        (_, YNode::Str(_)) => std::cmp::Ordering::Greater,
        _ => std::cmp::Ordering::Equal,
    });
    let mut out = String::new();
    emit_map(&mut out, &entries, 0)?;
    if entries.is_empty() {
        out.push_str("{}\n");
    }
    // Wipe the tree's strings: they hold plaintext.
    fn wipe(n: &mut YNode) {
        match n {
            YNode::Str(s) | YNode::Plain(s) => zeroize::Zeroize::zeroize(s),
            YNode::Seq(a) => a.iter_mut().for_each(wipe),
            YNode::Map(m) => m.iter_mut().for_each(|(k, v)| {
                wipe(k);
                wipe(v)
            }),
            _ => {}
        }
    }
    entries.iter_mut().for_each(|(k, v)| {
        wipe(k);
        wipe(v)
    });
    Ok(out)
}

/// Block-style emitter: every string double-quoted, so PyYAML never retypes one.
pub(super) fn emit_map(out: &mut String, entries: &[(YNode, YNode)], indent: usize) -> Result<(), String> {
    for (k, v) in entries {
        out.push_str(&" ".repeat(indent));
        emit_scalar(out, k).ok_or("a collection used as a mapping key")?;
        out.push(':');
        emit_value(out, v, indent)?;
    }
    Ok(())
}

pub(super) fn emit_value(out: &mut String, v: &YNode, indent: usize) -> Result<(), String> {
    match v {
        YNode::Map(m) if !m.is_empty() => {
            out.push('\n');
            emit_map(out, m, indent + 2)
        }
        YNode::Seq(items) if !items.is_empty() => {
            out.push('\n');
            for item in items {
                out.push_str(&" ".repeat(indent + 2));
                out.push('-');
                emit_value(out, item, indent + 2)?;
            }
            Ok(())
        }
        _ => {
            out.push(' ');
            emit_scalar(out, v).ok_or("a value the file tags (!!binary, !!set, !!omap) cannot be rewritten as is")?;
            out.push('\n');
            Ok(())
        }
    }
}

pub(super) fn emit_scalar(out: &mut String, v: &YNode) -> Option<()> {
    match v {
        YNode::Str(s) => yaml_double_quoted(out, s),
        YNode::Plain(s) => out.push_str(s),
        YNode::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        YNode::Null => out.push_str("null"),
        YNode::Int(i) => out.push_str(&i.to_string()),
        YNode::Float(f) => out.push_str(&yaml11_float_text(*f)),
        YNode::Map(m) if m.is_empty() => out.push_str("{}"),
        YNode::Seq(s) if s.is_empty() => out.push_str("[]"),
        YNode::Map(_) | YNode::Seq(_) | YNode::Unsupported(_) => return None,
    }
    Some(())
}

/// A float PyYAML reads back as a float: it needs a `.` and a signed exponent (`1e3` is a string
/// in YAML 1.1).
pub(super) fn yaml11_float_text(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf".into() } else { "-.inf".into() };
    }
    let s = format!("{f:?}");
    match s.split_once('e') {
        Some((mant, exp)) => {
            let mant = if mant.contains('.') { mant.to_string() } else { format!("{mant}.0") };
            let exp = if exp.starts_with('-') { exp.to_string() } else { format!("+{exp}") };
            format!("{mant}e{exp}")
        }
        None if s.contains('.') => s,
        None => format!("{s}.0"),
    }
}

/// A YAML 1.1 double-quoted scalar. Escapes `"`, `\`, every control and line-break character
/// (`\x85`, `\u2028`, `\u2029` would otherwise fold), and what PyYAML's reader refuses raw
/// (`\x7f-\x9f`, `\ufeff`, `\ufffe`, `\uffff`). `\/` is never used (not in every YAML 1.1 reader).
pub(super) fn yaml_double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || ('\u{7f}'..='\u{9f}').contains(&c) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
