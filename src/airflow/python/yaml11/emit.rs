//! Writing YAML that PyYAML's `safe_load` (YAML 1.1) reads back as meant: block style, every
//! string double-quoted (so no value is ever retyped), floats in a form YAML 1.1 types as floats.

use super::YNode;

/// Block-style emitter: every string double-quoted, so PyYAML never retypes one.
pub(crate) fn emit_map(out: &mut String, entries: &[(YNode, YNode)], indent: usize) -> Result<(), String> {
    for (k, v) in entries {
        out.push_str(&" ".repeat(indent));
        emit_scalar(out, k).ok_or("a collection used as a mapping key")?;
        out.push(':');
        emit_value(out, v, indent)?;
    }
    Ok(())
}

pub(crate) fn emit_value(out: &mut String, v: &YNode, indent: usize) -> Result<(), String> {
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

pub(crate) fn emit_scalar(out: &mut String, v: &YNode) -> Option<()> {
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
pub(crate) fn yaml11_float_text(f: f64) -> String {
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
pub(crate) fn yaml_double_quoted(out: &mut String, s: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::airflow::python::yaml11::yaml11_type;

    #[test]
    fn floats_are_written_the_way_yaml11_reads_floats() {
        assert_eq!(yaml11_float_text(1e300), "1.0e+300");
        assert_eq!(yaml11_float_text(1.5e-7), "1.5e-7");
        assert_eq!(yaml11_float_text(100.0), "100.0");
        for f in [1e300, 1.5e-7, 100.0, 0.1] {
            assert_eq!(yaml11_type(&yaml11_float_text(f)), Some("a float"));
        }
    }
}
