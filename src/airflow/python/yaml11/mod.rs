//! YAML read the way PyYAML's `safe_load` reads it (YAML 1.1), with the byte span of every
//! top-level entry, so a rewrite can keep the entries it does not touch byte for byte.
//!
//! serde_yaml_ng resolves plain scalars with YAML 1.2 rules before a visitor sees them (`1.5e3`
//! arrives as the float 1500, while PyYAML reads the string `"1.5e3"`), and loses their text. So
//! this module reads libyaml's events itself (the parser serde_yaml_ng is built on, and the one
//! PyYAML's pure-Python parser mirrors) and composes nodes as PyYAML's composer and SafeLoader do:
//! a plain scalar keeps its text and is typed by [`yaml11_type`]; a quoted or block scalar is a
//! string; `!!str` forces a string; anchors and aliases resolve; a repeated key: the last wins.
//! Non-specific tags and YAML 1.1 types resolve as in PyYAML; a tag SafeLoader cannot construct
//! fails the file, as `safe_load` raises.

use std::collections::HashMap;
use std::mem::MaybeUninit;

use unsafe_libyaml as sys;

mod emit;
mod resolve;
pub(crate) use emit::emit_map;
pub use resolve::yaml11_type;
pub(crate) use resolve::{json_to_yaml, wipe_ynode, yaml_to_json};

/// A YAML node with PyYAML's typing of plain scalars.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum YNode {
    /// A string to PyYAML (quoted, block, `!!str`, or a plain scalar no YAML 1.1 resolver claims).
    Str(String),
    /// A plain scalar PyYAML types (bool, int, float, null, timestamp, ...): its exact text.
    Plain(String),
    /// What SafeLoader builds but JSON cannot hold (`!!binary`, `!!set`, `!!omap`...): what it is.
    Unsupported(&'static str),
    /// Values the tool renders itself (never produced by reading).
    Bool(bool),
    Int(i128),
    Float(f64),
    Null,
    Seq(Vec<YNode>),
    Map(Vec<(YNode, YNode)>),
}

/// One top-level entry of a block mapping, with where its text is.
pub(crate) struct TopEntry {
    pub key: YNode,
    pub value: YNode,
    /// Byte offset where the key's node starts.
    pub key_start: usize,
    /// Byte offset where the value's node ends.
    pub value_end: usize,
    /// Whether the entry defines an anchor (another entry may refer to it).
    pub defines_anchor: bool,
}

/// What the file's single document is.
pub(crate) enum Root {
    /// No document at all (empty, only comments).
    Nothing,
    /// A null document (`~`, `null`, `---` alone).
    Null,
    /// A mapping: block style (entries on their own lines) or flow style (`{...}`).
    Map { block: bool },
}

pub(crate) struct Doc {
    pub root: Root,
    /// Every top-level entry in file order, repeated keys included.
    pub entries: Vec<TopEntry>,
}

enum Ev {
    Alias(String),
    Scalar { anchor: Option<String>, tag: Option<String>, value: String, plain: bool },
    SeqStart { anchor: Option<String>, tag: Option<String> },
    SeqEnd,
    MapStart { anchor: Option<String>, tag: Option<String>, block: bool },
    MapEnd,
    DocStart,
    DocEnd,
    StreamStart,
    StreamEnd,
}

/// libyaml's events for `text`, each with its start and end byte offsets.
fn events(text: &str) -> Result<Vec<(Ev, usize, usize)>, String> {
    unsafe fn owned(p: *const u8) -> Option<String> {
        if p.is_null() {
            return None;
        }
        // SAFETY: libyaml hands out NUL-terminated strings that live until the event is deleted.
        let s = unsafe { std::ffi::CStr::from_ptr(p.cast()) };
        Some(String::from_utf8_lossy(s.to_bytes()).into_owned())
    }
    let mut out = Vec::new();
    let mut parser: Box<MaybeUninit<sys::yaml_parser_t>> = Box::new(MaybeUninit::uninit());
    let p = parser.as_mut_ptr();
    // SAFETY: `p` points at a boxed (never moved) parser, initialised before any other call and
    // deleted before it is freed; the input outlives the parser; each event is read, copied into
    // owned Rust values, then deleted exactly once, and only after a successful parse.
    unsafe {
        if sys::yaml_parser_initialize(p).fail {
            return Err("cannot allocate a YAML parser".into());
        }
        sys::yaml_parser_set_encoding(p, sys::YAML_UTF8_ENCODING);
        sys::yaml_parser_set_input_string(p, text.as_ptr(), text.len() as u64);
        let result = loop {
            let mut event = MaybeUninit::<sys::yaml_event_t>::uninit();
            let e = event.as_mut_ptr();
            if sys::yaml_parser_parse(p, e).fail {
                break Err(());
            }
            let (start, end) = ((*e).start_mark.index as usize, (*e).end_mark.index as usize);
            let ev = match (*e).type_ {
                sys::YAML_STREAM_START_EVENT => Ev::StreamStart,
                sys::YAML_STREAM_END_EVENT => Ev::StreamEnd,
                sys::YAML_DOCUMENT_START_EVENT => Ev::DocStart,
                sys::YAML_DOCUMENT_END_EVENT => Ev::DocEnd,
                sys::YAML_ALIAS_EVENT => Ev::Alias(owned((*e).data.alias.anchor).unwrap_or_default()),
                sys::YAML_SCALAR_EVENT => {
                    let s = (*e).data.scalar;
                    let bytes = std::slice::from_raw_parts(s.value, s.length as usize);
                    Ev::Scalar {
                        anchor: owned(s.anchor),
                        tag: owned(s.tag),
                        value: String::from_utf8_lossy(bytes).into_owned(),
                        plain: s.style == sys::YAML_PLAIN_SCALAR_STYLE,
                    }
                }
                sys::YAML_SEQUENCE_START_EVENT => {
                    let s = (*e).data.sequence_start;
                    Ev::SeqStart { anchor: owned(s.anchor), tag: owned(s.tag) }
                }
                sys::YAML_SEQUENCE_END_EVENT => Ev::SeqEnd,
                sys::YAML_MAPPING_START_EVENT => {
                    let m = (*e).data.mapping_start;
                    Ev::MapStart {
                        anchor: owned(m.anchor),
                        tag: owned(m.tag),
                        block: m.style != sys::YAML_FLOW_MAPPING_STYLE,
                    }
                }
                sys::YAML_MAPPING_END_EVENT => Ev::MapEnd,
                _ => Ev::StreamEnd,
            };
            sys::yaml_event_delete(e);
            let last = matches!(ev, Ev::StreamEnd);
            out.push((ev, start, end));
            if last {
                break Ok(());
            }
        };
        sys::yaml_parser_delete(p);
        if result.is_err() {
            wipe_events(&mut out);
            return Err(syntax_error(text));
        }
    }
    Ok(out)
}

/// Where libyaml stopped, from the same parser through serde_yaml_ng (never the text itself).
fn syntax_error(text: &str) -> String {
    match serde_yaml_ng::from_str::<serde::de::IgnoredAny>(text) {
        Err(e) => match e.location() {
            Some(l) => format!("not valid YAML (line {}, column {})", l.line(), l.column()),
            None => "not valid YAML".into(),
        },
        Ok(_) => "not valid YAML".into(),
    }
}

fn wipe_events(evs: &mut [(Ev, usize, usize)]) {
    for (ev, _, _) in evs {
        if let Ev::Scalar { value, .. } = ev {
            zeroize::Zeroize::zeroize(value);
        }
    }
}

const TAG: &str = "tag:yaml.org,2002:";

/// PyYAML's type for a scalar: the tag if given, else the implicit resolvers for plain scalars.
fn scalar(tag: Option<&str>, value: String, plain: bool) -> Result<YNode, String> {
    if plain && tag.is_none() && value == "=" {
        return Err("a plain `=` (YAML 1.1's value key), which PyYAML's safe loader cannot construct".into());
    }
    let Some(tag) = tag else {
        return Ok(if plain && yaml11_type(&value).is_some() { YNode::Plain(value) } else { YNode::Str(value) });
    };
    if tag == "!" {
        // The non-specific tag: PyYAML resolves it to a string.
        return Ok(YNode::Str(value));
    }
    let want = match tag.strip_prefix(TAG) {
        Some("str") => return Ok(YNode::Str(value)),
        Some("null") => "null",
        Some("bool") => "a bool",
        Some("int") => "an int",
        Some("float") => "a float",
        Some("timestamp") => "a timestamp",
        Some("binary") => return Ok(YNode::Unsupported("binary data (!!binary)")),
        _ => return Err("a tag PyYAML's safe loader cannot construct".into()),
    };
    if yaml11_type(&value) == Some(want) {
        Ok(YNode::Plain(value))
    } else {
        Err(format!("a scalar tagged as {want} that does not read as one"))
    }
}

fn collection_tag(tag: Option<&str>, plain: &str) -> Result<Option<YNode>, String> {
    match tag.filter(|t| *t != "!").map(|t| t.strip_prefix(TAG)) {
        None => Ok(None),
        Some(Some(t)) if t == plain => Ok(None),
        Some(Some("set")) => Ok(Some(YNode::Unsupported("a set (!!set)"))),
        Some(Some("omap" | "pairs")) => Ok(Some(YNode::Unsupported("an ordered mapping (!!omap or !!pairs)"))),
        _ => Err("a tag PyYAML's safe loader cannot construct".into()),
    }
}

/// A hostile file must not exhaust the stack (nesting) or memory (aliases of aliases, which a
/// tree of copies expands exponentially): limits far above any secrets file.
const MAX_DEPTH: usize = 128;
const MAX_ALIASED_NODES: usize = 1_000_000;

struct Composer {
    evs: std::vec::IntoIter<(Ev, usize, usize)>,
    /// Each anchor's node and its size in nodes.
    anchors: HashMap<String, (YNode, usize)>,
    /// Nodes built so far, alias copies included (for the size of an anchored node).
    nodes: usize,
    /// Nodes copied by aliases so far (everything else is bounded by the file's size).
    aliased: usize,
    depth: usize,
    /// Anchors defined so far (to tell which top-level entry defines one).
    defined: usize,
    /// End offset of the last event consumed.
    end: usize,
}

impl Composer {
    fn next(&mut self) -> Result<(Ev, usize), String> {
        let (ev, start, end) = self.evs.next().ok_or("an unexpected end of the YAML stream")?;
        self.end = end;
        Ok((ev, start))
    }

    fn anchor(&mut self, anchor: Option<String>, node: &YNode, size: usize) {
        if let Some(a) = anchor {
            self.defined += 1;
            self.anchors.insert(a, (node.clone(), size));
        }
    }

    /// The node starting with `ev`, within the depth and size limits.
    fn node(&mut self, ev: Ev) -> Result<YNode, String> {
        if self.depth >= MAX_DEPTH {
            return Err(format!("nested more than {MAX_DEPTH} levels deep"));
        }
        self.depth += 1;
        let r = self.node_inner(ev);
        self.depth -= 1;
        r
    }

    fn node_inner(&mut self, ev: Ev) -> Result<YNode, String> {
        let before = self.nodes;
        self.nodes += 1;
        match ev {
            Ev::Alias(a) => {
                let (n, size) = self.anchors.get(&a).ok_or("an alias to an undefined anchor")?;
                self.nodes += size;
                self.aliased += size;
                if self.aliased > MAX_ALIASED_NODES {
                    return Err(format!("aliases that expand to more than {MAX_ALIASED_NODES} nodes"));
                }
                Ok(n.clone())
            }
            Ev::Scalar { anchor, tag, value, plain } => {
                let n = scalar(tag.as_deref(), value, plain)?;
                self.anchor(anchor, &n, 1);
                Ok(n)
            }
            Ev::SeqStart { anchor, tag } => {
                let special = collection_tag(tag.as_deref(), "seq")?;
                let mut items = Vec::new();
                loop {
                    match self.next()?.0 {
                        Ev::SeqEnd => break,
                        ev => items.push(self.node(ev)?),
                    }
                }
                let n = special.unwrap_or(YNode::Seq(items));
                self.anchor(anchor, &n, self.nodes - before);
                Ok(n)
            }
            Ev::MapStart { anchor, tag, .. } => {
                let special = collection_tag(tag.as_deref(), "map")?;
                let mut entries: Vec<(YNode, YNode)> = Vec::new();
                let mut index: HashMap<String, usize> = HashMap::new();
                loop {
                    let k = match self.next()?.0 {
                        Ev::MapEnd => break,
                        ev => self.node(ev)?,
                    };
                    let ev = self.next()?.0;
                    let v = self.node(ev)?;
                    // A repeated key: the last value wins, in the first one's place.
                    match index.entry(format!("{k:?}")) {
                        std::collections::hash_map::Entry::Occupied(o) => entries[*o.get()].1 = v,
                        std::collections::hash_map::Entry::Vacant(slot) => {
                            slot.insert(entries.len());
                            entries.push((k, v));
                        }
                    }
                }
                index.into_keys().for_each(|mut k| zeroize::Zeroize::zeroize(&mut k));
                let n = special.unwrap_or(YNode::Map(entries));
                self.anchor(anchor, &n, self.nodes - before);
                Ok(n)
            }
            _ => Err("an unexpected YAML event".into()),
        }
    }
}

/// The file's single document as PyYAML's `safe_load` reads it, with top-level entry spans.
pub(crate) fn parse_doc(text: &str) -> Result<Doc, String> {
    // libyaml skips a byte-order mark without counting it in its offsets.
    let (bom, text) = match text.strip_prefix('\u{feff}') {
        Some(rest) => ('\u{feff}'.len_utf8(), rest),
        None => (0, text),
    };
    let mut doc = parse_body(text)?;
    for e in &mut doc.entries {
        e.key_start += bom;
        e.value_end += bom;
    }
    Ok(doc)
}

fn parse_body(text: &str) -> Result<Doc, String> {
    let evs = events(text)?;
    let mut c =
        Composer { evs: evs.into_iter(), anchors: HashMap::new(), nodes: 0, aliased: 0, depth: 0, defined: 0, end: 0 };
    let mut doc = Doc { root: Root::Nothing, entries: Vec::new() };
    let mut documents = 0;
    loop {
        match c.next()?.0 {
            Ev::StreamStart | Ev::DocEnd => {}
            Ev::StreamEnd => break,
            Ev::DocStart => {
                documents += 1;
                if documents > 1 {
                    return Err("the file holds more than one YAML document".into());
                }
                match c.next()? {
                    (Ev::MapStart { anchor: None, tag, block }, _)
                        if collection_tag(tag.as_deref(), "map")?.is_none() =>
                    {
                        doc.root = Root::Map { block };
                        loop {
                            let (ev, key_start) = c.next()?;
                            if matches!(ev, Ev::MapEnd) {
                                break;
                            }
                            let before = c.defined;
                            let key = c.node(ev)?;
                            let ev = c.next()?.0;
                            let value = c.node(ev)?;
                            let defines_anchor = c.defined > before;
                            doc.entries.push(TopEntry { key, value, key_start, value_end: c.end, defines_anchor });
                        }
                    }
                    (ev, _) => match c.node(ev)? {
                        YNode::Plain(s) if yaml11_type(&s) == Some("null") => doc.root = Root::Null,
                        YNode::Map(m) => {
                            // An anchored or tagged root mapping: readable, but not spliced.
                            doc.root = Root::Map { block: false };
                            doc.entries = m
                                .into_iter()
                                .map(|(key, value)| TopEntry {
                                    key,
                                    value,
                                    key_start: 0,
                                    value_end: 0,
                                    defines_anchor: true,
                                })
                                .collect();
                        }
                        _ => return Err("the file does not hold a mapping".into()),
                    },
                }
            }
            _ => return Err("an unexpected YAML event".into()),
        }
    }
    Ok(doc)
}

/// The top-level entries, a repeated key's last value winning (PyYAML's dict construction).
pub(crate) fn parse_yaml(text: &str) -> Result<Vec<(YNode, YNode)>, String> {
    let mut out: Vec<(YNode, YNode)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for e in parse_doc(text)?.entries {
        let k = format!("{:?}", e.key);
        match index.get(&k) {
            Some(&i) => out[i].1 = e.value,
            None => {
                index.insert(k, out.len());
                out.push((e.key, e.value));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_keep_their_text_and_yaml11_type() {
        let text = "a: 1.5e3\nb: 1e3\nc: 0o17\nd: 0x1F\ne: 1.5e+3\nf: yes\ng: ~\nh:\ni: '1.5e3'\nj: !!str 12\n\
                    k: &x {p: 0123}\nl: *x\nm: |\n  block\n";
        let m = parse_yaml(text).unwrap();
        let get = |k: &str| m.iter().find(|(key, _)| *key == YNode::Str(k.into())).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(get("a"), YNode::Str("1.5e3".into()), "PyYAML reads 1.5e3 as a string");
        assert_eq!(get("b"), YNode::Str("1e3".into()));
        assert_eq!(get("c"), YNode::Str("0o17".into()));
        assert_eq!(get("d"), YNode::Plain("0x1F".into()));
        assert_eq!(get("e"), YNode::Plain("1.5e+3".into()));
        assert_eq!(get("f"), YNode::Plain("yes".into()));
        assert_eq!(get("g"), YNode::Plain("~".into()));
        assert_eq!(get("h"), YNode::Plain("".into()));
        assert_eq!(get("i"), YNode::Str("1.5e3".into()));
        assert_eq!(get("j"), YNode::Str("12".into()));
        assert_eq!(get("l"), get("k"));
        assert_eq!(get("m"), YNode::Str("block\n".into()));
    }

    #[test]
    fn spans_cover_each_top_level_entry() {
        let text = "# head\na: 1\nb: [1,\n  2]  # c\n\nc: |\n  x\nd: \"q\"";
        let doc = parse_doc(text).unwrap();
        let spans: Vec<&str> = doc.entries.iter().map(|e| &text[e.key_start..e.value_end]).collect();
        assert_eq!(spans, vec!["a: 1", "b: [1,\n  2]", "c: |\n  x\n", "d: \"q\""]);
        assert!(matches!(doc.root, Root::Map { block: true }));
        let deep = format!("a: {}1{}\n", "[".repeat(200), "]".repeat(200));
        let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            laughs.push_str(&format!(
                "a{i}: &a{i} [{}]\n",
                vec![format!("*a{}", if i == 1 { String::new() } else { (i - 1).to_string() }); 10].join(", ")
            ));
        }
        for bad in ["a: 1\n---\nb: 2\n", "- 1\n", "a: !!python/name:os.system x\n", "a: *nope\n", &deep, &laughs] {
            assert!(parse_doc(bad).is_err(), "{:?}", &bad[..20]);
        }
        let bom = "\u{feff}a: 1\nb: 2\n";
        let spans: Vec<&str> = parse_doc(bom).unwrap().entries.iter().map(|e| &bom[e.key_start..e.value_end]).collect();
        assert_eq!(spans, vec!["a: 1", "b: 2"]);
        let crlf = "a: \u{e9}\u{1f600}x\r\nb: 2\r\n";
        let spans: Vec<&str> =
            parse_doc(crlf).unwrap().entries.iter().map(|e| &crlf[e.key_start..e.value_end]).collect();
        assert_eq!(spans, vec!["a: \u{e9}\u{1f600}x", "b: 2"]);
        assert!(matches!(parse_doc("# only\n").unwrap().root, Root::Nothing));
        assert!(matches!(parse_doc("~\n").unwrap().root, Root::Null));
        assert!(parse_doc("k: \"canary\n  - [\n").err().unwrap().starts_with("not valid YAML (line"));
    }

    #[test]
    fn yaml_reading_tells_quoted_from_plain() {
        let text = "a: yes\nb: \"yes\"\nc: 'on'\nd: 0123\ne: 1e3\nf: ~\ng: |\n  yes\nh: {port: 0123, x: \"5\"}\n";
        let m = parse_yaml(text).unwrap();
        let get = |k: &str| m.iter().find(|(key, _)| *key == YNode::Str(k.into())).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(get("a"), YNode::Plain("yes".into()));
        assert_eq!(get("b"), YNode::Str("yes".into()));
        assert_eq!(get("c"), YNode::Str("on".into()));
        assert_eq!(get("d"), YNode::Plain("0123".into()));
        assert_eq!(get("e"), YNode::Str("1e3".into()), "YAML 1.1 (PyYAML) reads 1e3 as a string");
        assert_eq!(get("f"), YNode::Plain("~".into()));
        assert_eq!(get("g"), YNode::Str("yes\n".into()));
        assert_eq!(yaml_to_json(&get("h")).unwrap(), serde_json::json!({"port": 83, "x": "5"}));
    }
}
