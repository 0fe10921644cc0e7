//! Python 3.11's `urllib.parse`, the parts Airflow's connection URI handling uses (`quote`,
//! `unquote`, `parse_qsl`, `urlsplit` and its `hostname` / `username` / `password` / `port`), byte for
//! byte including the quirks (spec §4.2, §9 items 8–10). Pure; knows nothing of Airflow.

/// Python's `ValueError` from `urlsplit` or `.port`: the message, never the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

impl ValueError {
    fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}
/// `quote(s, safe="")` (`plus == false`) or `quote_plus(s, safe="")`: UTF-8, upper-case hex,
/// only `A-Za-z0-9_.-~` left as is.
pub fn quote(s: &str, plus: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if is_unreserved(b as char) {
            out.push(b as char);
        } else if plus && b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn is_unreserved(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-' | '~')
}

/// `urlsplit`'s scheme rule: a first ASCII letter, then `[A-Za-z0-9+.-]`.
pub fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// `unquote(s)`: runs of ASCII are percent-decoded to bytes and decoded as UTF-8 with
/// `errors="replace"`; an invalid escape such as `%ZZ` stays literal; `+` stays `+`.
pub fn unquote(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        let ascii_len = rest.find(|c: char| !c.is_ascii()).unwrap_or(rest.len());
        if ascii_len == 0 {
            let non_ascii = rest.find(|c: char| c.is_ascii()).unwrap_or(rest.len());
            out.push_str(&rest[..non_ascii]);
            rest = &rest[non_ascii..];
            continue;
        }
        out.push_str(&String::from_utf8_lossy(&unquote_to_bytes(
            &rest[..ascii_len],
        )));
        rest = &rest[ascii_len..];
    }
    out
}

/// `unquote_to_bytes`: `%XX` with two hex digits (either case) becomes the byte; anything
/// else, including a lone or short `%`, is kept.
fn unquote_to_bytes(ascii: &str) -> Vec<u8> {
    let b = ascii.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// `parse_qsl(qs, keep_blank_values=True)`: only `&` separates; `+` is a space; a bare name
/// gets `''`; empty pairs are skipped.
pub fn parse_qsl(qs: &str) -> Vec<(String, String)> {
    // `dict(...)` of the result: the last duplicate wins, at the first one's position.
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in qs.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = unquote(&name.replace('+', " "));
        let value = unquote(&value.replace('+', " "));
        match out.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => out.push((name, value)),
        }
    }
    out
}

/// The result of `urlsplit`.
#[derive(Debug, Default)]
pub struct Split {
    pub scheme: String,
    pub netloc: String,
    pub path: String,
    pub query: String,
}

/// Python 3.11 `urlsplit(url)` (fragment allowed, no default scheme).
pub fn urlsplit(url: &str) -> Result<Split, ValueError> {
    // lstrip C0 controls and space; remove every tab, CR and LF.
    let url: String = url
        .trim_start_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
        .collect();
    let mut rest = url.as_str();
    let mut split = Split::default();
    if let Some(i) = rest.find(':')
        && i > 0
        && is_scheme(&rest[..i])
    {
        split.scheme = rest[..i].to_ascii_lowercase();
        rest = &rest[i + 1..];
    }
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        split.netloc = after[..end].to_string();
        rest = &after[end..];
        let (open, close) = (split.netloc.contains('['), split.netloc.contains(']'));
        if open != close {
            return Err(ValueError::new("invalid connection URI: invalid IPv6 URL"));
        }
        if open {
            let inner = split.netloc.split_once('[').map(|x| x.1).unwrap_or("");
            let bracketed = inner.split_once(']').map(|x| x.0).unwrap_or(inner);
            check_bracketed_host(bracketed)?;
        }
    }
    if let Some((before, _fragment)) = rest.split_once('#') {
        rest = before;
    }
    match rest.split_once('?') {
        Some((path, query)) => {
            split.path = path.to_string();
            split.query = query.to_string();
        }
        None => split.path = rest.to_string(),
    }
    check_netloc(&split.netloc)?;
    Ok(split)
}

/// Characters whose NFKC form contains one of `/?#@:` (Unicode 14, as Python 3.11's
/// `unicodedata`); `_checknetloc` refuses a netloc containing one.
const NFKC_NETLOC_BREAKERS: [char; 19] = [
    '\u{2047}', '\u{2048}', '\u{2049}', '\u{2100}', '\u{2101}', '\u{2105}', '\u{2106}',
    '\u{2A74}', '\u{FE13}', '\u{FE16}', '\u{FE55}', '\u{FE56}', '\u{FE5F}', '\u{FE6B}',
    '\u{FF03}', '\u{FF0F}', '\u{FF1A}', '\u{FF1F}', '\u{FF20}',
];

fn check_netloc(netloc: &str) -> Result<(), ValueError> {
    if netloc.chars().any(|c| NFKC_NETLOC_BREAKERS.contains(&c)) {
        return Err(ValueError::new(
            "invalid connection URI: the host contains characters invalid under NFKC normalization",
        ));
    }
    Ok(())
}

/// `_check_bracketed_host`: `v<hex>.<something>` (IPvFuture) or an IPv6 address.
fn check_bracketed_host(h: &str) -> Result<(), ValueError> {
    if let Some(rest) = h.strip_prefix('v') {
        let ok = rest.split_once('.').is_some_and(|(hex, tail)| {
            !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()) && !tail.is_empty()
        });
        return if ok {
            Ok(())
        } else {
            Err(ValueError::new(
                "invalid connection URI: invalid IPvFuture address",
            ))
        };
    }
    if is_ipv4(h) {
        return Err(ValueError::new(
            "invalid connection URI: an IPv4 address cannot be in brackets",
        ));
    }
    if is_ipv6(h) {
        Ok(())
    } else {
        Err(ValueError::new(
            "invalid connection URI: the bracketed host is not an IP address",
        ))
    }
}

/// `ipaddress.IPv4Address`: four decimal octets, no leading zeros, each ≤ 255.
fn is_ipv4(s: &str) -> bool {
    let octets: Vec<&str> = s.split('.').collect();
    octets.len() == 4
        && octets.iter().all(|o| {
            !o.is_empty()
                && o.len() <= 3
                && o.bytes().all(|b| b.is_ascii_digit())
                && !(o.len() > 1 && o.starts_with('0'))
                && o.parse::<u16>().is_ok_and(|v| v <= 255)
        })
}

/// `ipaddress.IPv6Address` (with an optional `%scope`), following `_ip_int_from_string`.
fn is_ipv6(s: &str) -> bool {
    let addr = match s.split_once('%') {
        Some((addr, scope)) => {
            if scope.is_empty() || scope.contains('%') {
                return false;
            }
            addr
        }
        None => s,
    };
    if addr.is_empty() {
        return false;
    }
    let mut parts: Vec<String> = addr.split(':').map(str::to_string).collect();
    if parts.len() < 3 {
        return false;
    }
    if parts.last().is_some_and(|p| p.contains('.')) {
        let v4 = parts.pop().unwrap_or_default();
        if !is_ipv4(&v4) {
            return false;
        }
        parts.push("0".into());
        parts.push("0".into());
    }
    if parts.len() > 9 {
        return false;
    }
    let mut skip = None;
    for (i, p) in parts.iter().enumerate().take(parts.len() - 1).skip(1) {
        if p.is_empty() {
            if skip.is_some() {
                return false;
            }
            skip = Some(i);
        }
    }
    let (hi, lo) = match skip {
        Some(i) => {
            let mut hi = i;
            let mut lo = parts.len() - i - 1;
            if parts[0].is_empty() {
                if hi != 1 {
                    return false;
                }
                hi = 0;
            }
            if parts[parts.len() - 1].is_empty() {
                if lo != 1 {
                    return false;
                }
                lo = 0;
            }
            if 8 < hi + lo + 1 {
                return false;
            }
            (hi, lo)
        }
        None => {
            if parts.len() != 8 || parts[0].is_empty() || parts[7].is_empty() {
                return false;
            }
            (8, 0)
        }
    };
    let hextet =
        |p: &String| !p.is_empty() && p.len() <= 4 && p.chars().all(|c| c.is_ascii_hexdigit());
    parts[..hi].iter().all(hextet) && parts[parts.len() - lo..].iter().all(hextet)
}

impl Split {
    /// `(hostname, port)` before lower-casing: after the last '@', bracket-aware.
    fn hostinfo(&self) -> (&str, Option<&str>) {
        let hostinfo = self
            .netloc
            .rsplit_once('@')
            .map(|x| x.1)
            .unwrap_or(&self.netloc);
        let (hostname, port) = match hostinfo.split_once('[') {
            Some((_, bracketed)) => {
                let (h, after) = bracketed.split_once(']').unwrap_or((bracketed, ""));
                (h, after.split_once(':').map(|x| x.1).unwrap_or(""))
            }
            None => hostinfo.split_once(':').unwrap_or((hostinfo, "")),
        };
        (hostname, Some(port).filter(|p| !p.is_empty()))
    }

    /// `.hostname`: None when empty; lower-cased up to the first '%' (zone ids keep case).
    pub fn hostname(&self) -> Option<String> {
        let (h, _) = self.hostinfo();
        if h.is_empty() {
            return None;
        }
        Some(match h.split_once('%') {
            Some((a, b)) => format!("{}%{}", a.to_lowercase(), b),
            None => h.to_lowercase(),
        })
    }

    fn userinfo(&self) -> Option<(&str, Option<&str>)> {
        let (userinfo, _) = self.netloc.rsplit_once('@')?;
        Some(match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        })
    }

    pub fn username(&self) -> Option<&str> {
        self.userinfo().map(|(u, _)| u)
    }

    pub fn password(&self) -> Option<&str> {
        self.userinfo().and_then(|(_, p)| p)
    }

    /// `.port`: ASCII digits only, 0–65535; anything else raises.
    pub fn port(&self) -> Result<Option<u16>, ValueError> {
        let Some(p) = self.hostinfo().1 else {
            return Ok(None);
        };
        if !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ValueError::new(
                "invalid connection URI: the port is not an integer",
            ));
        }
        let digits = p.trim_start_matches('0');
        if digits.is_empty() {
            return Ok(Some(0));
        }
        match digits.parse::<u32>() {
            Ok(v) if digits.len() <= 5 && v <= 65535 => Ok(Some(v as u16)),
            _ => Err(ValueError::new(
                "invalid connection URI: port out of range 0-65535",
            )),
        }
    }
}
