//! Python built-ins Airflow's codecs rely on: `int(str)` and `str.strip()`.

/// Python `int(str)`: surrounding whitespace, an optional sign, ASCII digits with single `_`
/// between digits. (Python also accepts non-ASCII decimal digits; we refuse them.)
pub fn int_str(s: &str) -> Option<String> {
    let t = strip(s);
    let (sign, body) = match t.as_bytes().first()? {
        b'-' => ("-", &t[1..]),
        b'+' => ("", &t[1..]),
        _ => ("", t),
    };
    let b = body.as_bytes();
    if b.is_empty() || !b[0].is_ascii_digit() || !b[b.len() - 1].is_ascii_digit() {
        return None;
    }
    let mut out = String::from(sign);
    let mut prev_underscore = false;
    for &ch in b {
        match ch {
            b'0'..=b'9' => {
                out.push(ch as char);
                prev_underscore = false;
            }
            b'_' if !prev_underscore => prev_underscore = true,
            _ => return None,
        }
    }
    Some(out)
}

/// Python `str.strip()` with no argument: Unicode whitespace, which (unlike Rust's `trim`)
/// includes U+001C..U+001F.
pub fn strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}
