//! Fernet and MultiFernet exactly as Airflow builds them (`airflow.models.crypto.get_fernet`), and
//! where Airflow finds the `[core] fernet_key` string. Spec §2 and §10 items 1 and 5.
//!
//! This module owns: the token format (§2.1), Python's lenient base64 decoding of keys and tokens,
//! the key-string rules of `get_fernet()` (§2.2), `MultiFernet.rotate` (§2.4) and the key lookup
//! order (§2.3). It must not read the metastore, log, or put a key, token or plaintext in an error.
//!
//! Why hand-rolled on the RustCrypto primitives rather than `fernet::MultiFernet`: fernet-rs
//! rejects keys and tokens that Python accepts (whitespace, `+/`), checks clock skew even without a
//! TTL, cannot tell a malformed token from a wrong key, cannot take a fixed IV/timestamp and has no
//! `rotate` (spec/dependencies.md, "Fernet: interop and throughput"). The tests cross-check our
//! tokens against fernet-rs in both directions.

use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use aes::Aes128;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::TryRngCore as _;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::model::SecretValue;

/// `AIRFLOW__CORE__FERNET_KEY`: the key string itself (spec §2.3 step 1).
pub const ENV_FERNET_KEY: &str = "AIRFLOW__CORE__FERNET_KEY";
/// `AIRFLOW__CORE__FERNET_KEY_CMD`: a command whose stdout is the key string (step 2).
pub const ENV_FERNET_KEY_CMD: &str = "AIRFLOW__CORE__FERNET_KEY_CMD";
/// `AIRFLOW__CORE__FERNET_KEY_SECRET`: a secrets-backend config key (step 3; not supported here).
pub const ENV_FERNET_KEY_SECRET: &str = "AIRFLOW__CORE__FERNET_KEY_SECRET";

const VERSION: u8 = 0x80;
/// version (1) + timestamp (8) + IV (16) + HMAC (32); the ciphertext comes on top (spec §2.1).
const OVERHEAD: usize = 1 + 8 + 16 + 32;
const BLOCK: usize = 16;

type HmacSha256 = Hmac<Sha256>;
type Key = Zeroizing<[u8; 32]>;

/// Airflow's `get_fernet()`: a MultiFernet over the comma-separated keys, or NullFernet when the
/// key string is empty. The first key encrypts; decryption tries the keys in order. No TTL and no
/// clock-skew check, ever (Airflow calls `decrypt(token)` without a ttl, spec §2.1).
#[derive(Clone)]
pub struct AirflowFernet {
    keys: Vec<Key>,
}

impl std::fmt::Debug for AirflowFernet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only the count: the keys themselves never leave this struct.
        if self.keys.is_empty() {
            f.write_str("AirflowFernet(null)")
        } else {
            write!(f, "AirflowFernet({} keys)", self.keys.len())
        }
    }
}

/// Why a key string cannot build a Fernet, or why no key string could be found (never includes
/// the key, a command's output, or a command's arguments).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FernetKeyError(pub String);

/// Why a token did not decrypt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// The Fernet is a NullFernet. Airflow would hand back the token itself as the value (spec
    /// §10 item 1); we refuse, so a token is never copied as a secret.
    #[error("the row is encrypted but no fernet key is configured")]
    NoKey,
    /// A well-formed token that no configured key verifies (HMAC mismatch, or bad padding after a
    /// matching HMAC). A tampered token also lands here: the two are indistinguishable.
    #[error("no configured fernet key decrypts it")]
    WrongKey,
    /// Not a Fernet token at all: not base64 (as Python decodes it), wrong version byte, or a
    /// length no Fernet token can have. Also a token that decrypts to bytes that are not UTF-8,
    /// where Airflow's `.decode()` would raise.
    #[error("not a valid fernet token")]
    Corrupt,
}

impl AirflowFernet {
    /// NullFernet: values are stored in plaintext with `is_encrypted = false`.
    pub fn null() -> Self {
        Self { keys: Vec::new() }
    }

    /// `get_fernet()` for a `fernet_key` string (spec §2.2).
    ///
    /// - `""` is NullFernet (Python's `if not fernet_key`); anything else, even `"   "`, is a key list.
    /// - Split on `,` without trimming. Each part is decoded the way `base64.urlsafe_b64decode` does:
    ///   whitespace and other non-alphabet characters are skipped, `+/` equal `-_`, decoding stops at
    ///   the first complete `=` padding (so `"A B"` builds with A only, §10 item 5), and missing
    ///   padding fails.
    /// - Any part that does not decode to exactly 32 bytes, including an empty part from a leading,
    ///   trailing or doubled comma, fails the whole string, as Airflow's "Could not create Fernet
    ///   object" does.
    pub fn from_key_string(keys: &SecretValue) -> Result<Self, FernetKeyError> {
        let text = keys.expose_plaintext();
        if text.is_empty() {
            return Ok(Self::null());
        }
        let count = text.split(',').count();
        let keys = text
            .split(',')
            .enumerate()
            .map(|(i, part)| {
                decode_key(part).map_err(|why| {
                    FernetKeyError(format!(
                        "Could not create Fernet object: fernet_key part {} of {count} {why}; \
                         a Fernet key must be 32 url-safe base64-encoded bytes",
                        i + 1
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { keys })
    }

    /// True for NullFernet (Airflow's `is_encrypted` is the negation).
    pub fn is_null(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many keys the MultiFernet holds (0 for NullFernet).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// `MultiFernet.decrypt(token)` followed by Airflow's `.decode()` (UTF-8).
    pub fn decrypt(&self, token: &str) -> Result<SecretValue, DecryptError> {
        let mut plaintext = self.decrypt_bytes(token)?;
        // Move the buffer out (no copy of the plaintext); the wrapper is left with an empty Vec.
        String::from_utf8(std::mem::take(&mut *plaintext))
            .map(SecretValue::from)
            .map_err(|e| {
                e.into_bytes().zeroize();
                DecryptError::Corrupt
            })
    }

    /// Encrypt with the first key, the current time and a random IV, as `Fernet.encrypt` does.
    /// `None` for NullFernet: store the plaintext with `is_encrypted = false`.
    pub fn encrypt(&self, plaintext: &SecretValue) -> Option<String> {
        let key = self.keys.first()?;
        Some(encrypt_from_parts(
            key,
            plaintext.expose_plaintext().as_bytes(),
            unix_now(),
            random_iv(),
        ))
    }

    /// `MultiFernet.rotate(token)` (spec §2.4): decrypt with any key, re-encrypt with the first key,
    /// keeping the token's original timestamp, with a fresh IV. Like Python, the plaintext need
    /// not be UTF-8.
    pub fn rotate(&self, token: &str) -> Result<String, DecryptError> {
        let first = self.keys.first().ok_or(DecryptError::NoKey)?;
        let data = parse_token(token)?;
        let plaintext = self.decrypt_data(&data)?;
        let timestamp = u64::from_be_bytes(data[1..9].try_into().expect("8 bytes"));
        Ok(encrypt_from_parts(
            first,
            &plaintext,
            timestamp,
            random_iv(),
        ))
    }

    fn decrypt_bytes(&self, token: &str) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        if self.keys.is_empty() {
            return Err(DecryptError::NoKey);
        }
        let data = parse_token(token)?;
        self.decrypt_owned(data)
    }

    /// [`decrypt_data`](Self::decrypt_data) over a token buffer it may consume: the plaintext is
    /// decrypted in place in the decoded token (one buffer of the token's size, not two), unless
    /// another key shares the matching key's signing half, where Python would try that key on a
    /// padding failure and the ciphertext must survive the first attempt.
    fn decrypt_owned(&self, data: Vec<u8>) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        let mut data = Zeroizing::new(data);
        let Some(i) = self.keys.iter().position(|key| hmac_verifies(key, &data)) else {
            return Err(DecryptError::WrongKey);
        };
        let key = &self.keys[i];
        if self.keys[i + 1..].iter().any(|other| other[..16] == key[..16]) {
            return self.decrypt_data(&data);
        }
        let end = data.len() - 32;
        let iv: [u8; 16] = data[9..25].try_into().expect("16 bytes");
        let plain_len = cbc::Decryptor::<Aes128>::new_from_slices(&key[16..], &iv)
            .expect("AES-128 key and IV are 16 bytes")
            .decrypt_padded_mut::<Pkcs7>(&mut data[25..end])
            .map_err(|_| DecryptError::WrongKey)?
            .len();
        data.copy_within(25..25 + plain_len, 0);
        // Wipe the tail (token header, the padding and the tag) before it is cut off.
        data[plain_len..].zeroize();
        data.truncate(plain_len);
        Ok(data)
    }

    /// MultiFernet: the first key whose HMAC verifies *and* whose padding checks out wins; Python
    /// moves on to the next key on either failure (`except InvalidToken: pass`).
    fn decrypt_data(&self, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        self.keys
            .iter()
            .find_map(|key| decrypt_with_key(key, data))
            .ok_or(DecryptError::WrongKey)
    }
}

/// `Fernet._encrypt_from_parts(plaintext, timestamp, iv)`: the token for a raw 32-byte key
/// (bytes 0–15 sign, 16–31 encrypt). Deterministic, so vector tests can reproduce tokens byte for
/// byte. Output is urlsafe base64 with padding, like Python's.
pub fn encrypt_from_parts(
    key: &[u8; 32],
    plaintext: &[u8],
    timestamp: u64,
    iv: [u8; 16],
) -> String {
    let ciphertext = cbc::Encryptor::<Aes128>::new_from_slices(&key[16..], &iv)
        .expect("AES-128 key and IV are 16 bytes")
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    let mut data = Vec::with_capacity(OVERHEAD + ciphertext.len());
    data.push(VERSION);
    data.extend_from_slice(&timestamp.to_be_bytes());
    data.extend_from_slice(&iv);
    data.extend_from_slice(&ciphertext);
    let tag = HmacSha256::new_from_slice(&key[..16])
        .expect("HMAC takes any key length")
        .chain_update(&data)
        .finalize()
        .into_bytes();
    data.extend_from_slice(&tag);
    base64::engine::general_purpose::URL_SAFE.encode(&data)
}

/// One part of a `fernet_key` string → the raw key, decoded as `Fernet(part.encode())` does.
/// The error is a phrase for a sentence ("is empty", …), never the part itself.
fn decode_key(part: &str) -> Result<Zeroizing<[u8; 32]>, &'static str> {
    if part.is_empty() {
        return Err("is empty (a leading, trailing or doubled comma?)");
    }
    let raw = Zeroizing::new(python_b64decode(part.as_bytes()).ok_or("is not valid base64")?);
    let key: [u8; 32] = raw
        .as_slice()
        .try_into()
        .map_err(|_| "does not decode to 32 bytes")?;
    Ok(Zeroizing::new(key))
}

/// Decode and check the token's structure (spec §2.1). Anything that fails here could never
/// decrypt under any key, in Python either: it is `Corrupt`, not `WrongKey`.
fn parse_token(token: &str) -> Result<Vec<u8>, DecryptError> {
    // Airflow passes `bytes(value, "utf-8")`, so non-ASCII characters reach the decoder as bytes
    // outside the alphabet and are skipped like whitespace.
    let data = python_b64decode(token.as_bytes()).ok_or(DecryptError::Corrupt)?;
    let structurally_valid = data.first() == Some(&VERSION)
        && data.len() >= OVERHEAD + BLOCK
        && (data.len() - OVERHEAD).is_multiple_of(BLOCK);
    if structurally_valid {
        Ok(data)
    } else {
        Err(DecryptError::Corrupt)
    }
}

/// `Fernet._decrypt_data` for one key over a structurally valid token: verify the HMAC (constant
/// time), then AES-128-CBC and PKCS7. `None` when this key does not open it.
/// Whether `key`'s signing half verifies the token's HMAC (constant time).
fn hmac_verifies(key: &[u8; 32], data: &[u8]) -> bool {
    let (signed, tag) = data.split_at(data.len() - 32);
    HmacSha256::new_from_slice(&key[..16]).expect("HMAC takes any key length").chain_update(signed).verify_slice(tag).is_ok()
}

fn decrypt_with_key(key: &[u8; 32], data: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let (signed, tag) = data.split_at(data.len() - 32);
    HmacSha256::new_from_slice(&key[..16])
        .expect("HMAC takes any key length")
        .chain_update(signed)
        .verify_slice(tag)
        .ok()?;
    let (iv, ciphertext) = (&signed[9..25], &signed[25..]);
    cbc::Decryptor::<Aes128>::new_from_slices(&key[16..], iv)
        .expect("AES-128 key and IV are 16 bytes")
        .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
        .ok()
        .map(Zeroizing::new)
}

/// `base64.urlsafe_b64decode` = `-_`→`+/` then CPython's non-strict `binascii.a2b_base64`:
/// - bytes outside the alphabet (whitespace, newlines, non-ASCII) are skipped;
/// - `-_` and `+/` are both accepted;
/// - `=` before the third character of a quad is skipped; once a quad has enough `=` to complete
///   it, decoding stops and the rest of the input is ignored (`"A= B="` decodes A only);
/// - an unfinished quad at the end ("Incorrect padding", or one extra character) is an error;
/// - unused trailing bits are not checked.
fn python_b64decode(input: &[u8]) -> Option<Vec<u8>> {
    // Fast path: canonical URL-safe base64 (what every Fernet token and key is). The `base64`
    // crate accepting it in this mode means Python decodes it to the same bytes (same alphabet,
    // canonical padding, unused trailing bits ignored as CPython does); anything else — `+/`,
    // whitespace, stray `=`, missing padding — takes CPython's loop below.
    const CANONICAL: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical),
    );
    let mut out = vec![0u8; input.len() / 4 * 3 + 3];
    match CANONICAL.decode_slice(input, &mut out) {
        Ok(n) => {
            out[n..].zeroize();
            out.truncate(n);
            return Some(out);
        }
        Err(_) => out.zeroize(),
    }
    python_b64decode_loop(input)
}

/// CPython's `a2b_base64` loop (non-strict mode), for what the fast path refuses.
fn python_b64decode_loop(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
    let mut quad_pos: u8 = 0;
    let mut left: u8 = 0;
    let mut pads: u8 = 0;
    for &c in input {
        if c == b'=' {
            // C: `if (quad_pos >= 2 && quad_pos + ++pads >= 4) goto done;`
            if quad_pos >= 2 {
                pads += 1;
                if quad_pos + pads >= 4 {
                    return Some(out);
                }
            }
            continue;
        }
        let Some(v) = sextet(c) else { continue };
        pads = 0;
        match quad_pos {
            0 => {
                left = v;
                quad_pos = 1;
            }
            1 => {
                out.push((left << 2) | (v >> 4));
                left = v & 0x0f;
                quad_pos = 2;
            }
            2 => {
                out.push((left << 4) | (v >> 2));
                left = v & 0x03;
                quad_pos = 3;
            }
            _ => {
                out.push((left << 6) | v);
                left = 0;
                quad_pos = 0;
            }
        }
    }
    if quad_pos == 0 {
        Some(out)
    } else {
        out.zeroize();
        None
    }
}

fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

fn unix_now() -> u64 {
    // Python: int(time.time()). A clock before 1970 would give a negative int there; 0 here.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random_iv() -> [u8; 16] {
    // Python: os.urandom(16).
    let mut iv = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut iv)
        .expect("the OS random number generator failed");
    iv
}

// ---------------------------------------------------------------------------------------------
// Where the key string comes from (spec §2.3)
// ---------------------------------------------------------------------------------------------

/// Where [`resolve_key`] found the `fernet_key` string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `AIRFLOW__CORE__FERNET_KEY` (set, possibly empty).
    EnvVar,
    /// The stdout of `AIRFLOW__CORE__FERNET_KEY_CMD`.
    EnvCmd,
    /// `[core] fernet_key` from the config file.
    ConfigKey,
    /// The stdout of `[core] fernet_key_cmd`.
    ConfigCmd,
    /// Nowhere: NullFernet.
    None,
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::EnvVar => ENV_FERNET_KEY,
            Self::EnvCmd => ENV_FERNET_KEY_CMD,
            Self::ConfigKey => "[core] fernet_key",
            Self::ConfigCmd => "[core] fernet_key_cmd",
            Self::None => "no fernet_key configured",
        })
    }
}

/// The `fernet_key` string and where it came from. `Debug` shows the key as `***`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedKey {
    pub key: SecretValue,
    pub source: KeySource,
}

impl ResolvedKey {
    /// `get_fernet()` over the resolved string; the error names the source.
    pub fn fernet(&self) -> Result<AirflowFernet, FernetKeyError> {
        AirflowFernet::from_key_string(&self.key)
            .map_err(|FernetKeyError(why)| FernetKeyError(format!("{}: {why}", self.source)))
    }
}

/// Airflow's lookup of `[core] fernet_key`, first hit wins (spec §2.3):
///
/// 1. env `AIRFLOW__CORE__FERNET_KEY`, after `expandvars` + `expanduser`. **Set but empty is a
///    hit** (NullFernet), even when the config file has a key;
/// 2. env `AIRFLOW__CORE__FERNET_KEY_CMD`, run via `shlex.split` with no shell, stdout unstripped;
/// 3. env `AIRFLOW__CORE__FERNET_KEY_SECRET`: a secrets-backend lookup, which we do not support,
///    so it is an error rather than a silent fall-through to a different key;
/// 4. `[core] fernet_key` (`cfg_key`), after `expandvars` + `expanduser`;
/// 5. `[core] fernet_key_cmd` (`cfg_cmd`);
/// 6. nothing: NullFernet with source [`KeySource::None`].
///
/// `env` is the environment lookup (`std::env::var(name).ok()` in production), so the order can
/// be tested without touching the process environment. `[core] fernet_key_secret` is not taken.
pub fn resolve_key(
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    cfg_key: Option<&SecretValue>,
    cfg_cmd: Option<&str>,
) -> Result<ResolvedKey, FernetKeyError> {
    let found = |key: SecretValue, source| Ok(ResolvedKey { key, source });
    if let Some(value) = env(ENV_FERNET_KEY).map(Zeroizing::new) {
        return found(expand_env_var(&value, env), KeySource::EnvVar);
    }
    if let Some(command) = env(ENV_FERNET_KEY_CMD).map(Zeroizing::new) {
        return found(run_command(&command, KeySource::EnvCmd)?, KeySource::EnvCmd);
    }
    if env(ENV_FERNET_KEY_SECRET).is_some() {
        return Err(FernetKeyError(format!(
            "{ENV_FERNET_KEY_SECRET} is set, but reading fernet_key from a secrets backend is not \
             supported; provide the key through {ENV_FERNET_KEY} or {ENV_FERNET_KEY_CMD} instead"
        )));
    }
    if let Some(value) = cfg_key {
        return found(
            expand_env_var(value.expose_plaintext(), env),
            KeySource::ConfigKey,
        );
    }
    if let Some(command) = cfg_cmd {
        return found(
            run_command(command, KeySource::ConfigCmd)?,
            KeySource::ConfigCmd,
        );
    }
    found(SecretValue::default(), KeySource::None)
}

/// Airflow's `expand_env_var`: `os.path.expanduser(os.path.expandvars(v))` repeated until it no
/// longer changes. Only `~` and `~/…` are expanded (from `HOME`); `~user` is left as is.
fn expand_env_var(value: &str, env: &(dyn Fn(&str) -> Option<String> + Send + Sync)) -> SecretValue {
    let mut current = Zeroizing::new(value.to_owned());
    // Python loops forever on a self-growing definition (X="a$X"); we give up after a while.
    for _ in 0..64 {
        let next = Zeroizing::new(expand_user(&expand_vars(&current, env), env));
        if next == current {
            break;
        }
        current = next;
    }
    SecretValue::new(std::mem::take(&mut *current))
}

/// `posixpath.expandvars`: `$name` or `${name}` (name = `[A-Za-z0-9_]+` for the bare form);
/// unknown names are left untouched.
fn expand_vars(s: &str, env: &(dyn Fn(&str) -> Option<String> + Send + Sync)) -> String {
    if !s.contains('$') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match (len > 0).then(|| env(name)).flatten() {
            Some(value) => out.push_str(&value),
            None => out.push_str(&rest[dollar..dollar + 1 + len]),
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// `posixpath.expanduser`, for `~` and `~/…` only.
fn expand_user(s: &str, env: &(dyn Fn(&str) -> Option<String> + Send + Sync)) -> String {
    let Some(after) = s.strip_prefix('~') else {
        return s.to_owned();
    };
    if !(after.is_empty() || after.starts_with('/')) {
        return s.to_owned();
    }
    match env("HOME") {
        Some(home) => {
            let joined = format!("{}{after}", home.trim_end_matches('/'));
            if joined.is_empty() {
                "/".to_owned()
            } else {
                joined
            }
        }
        None => s.to_owned(),
    }
}

/// Airflow's `run_command`: `shlex.split`, no shell, stdout decoded as UTF-8 ignoring errors and
/// returned unstripped (the lenient key decoder copes with the trailing newline). The error names
/// the source and the program, never the arguments or the output (either may hold the key).
fn run_command(command: &str, source: KeySource) -> Result<SecretValue, FernetKeyError> {
    let fail = |why: String| FernetKeyError(format!("{source}: {why}"));
    let argv = Zeroizing::new(shlex::split(command).ok_or_else(|| {
        fail("the command cannot be split into words (unbalanced quotes?)".into())
    })?);
    let Some((program, args)) = argv.split_first() else {
        return Err(fail("the command is empty".into()));
    };
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| fail(format!("could not run `{program}`: {}", e.kind())))?;
    let mut stdout = Zeroizing::new(output.stdout);
    if !output.status.success() {
        stdout.zeroize();
        return Err(fail(format!(
            "`{program}` failed ({}); its output is not shown",
            output.status
        )));
    }
    // Python decodes with errors="ignore"; dropping invalid UTF-8 keeps the same key bytes because
    // the key decoder skips non-ASCII anyway.
    let text: String = String::from_utf8_lossy(&stdout)
        .chars()
        .filter(|&c| c != char::REPLACEMENT_CHARACTER)
        .collect();
    Ok(SecretValue::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> Option<Vec<u8>> {
        python_b64decode(s.as_bytes())
    }

    /// The canonical fast path never decodes differently from CPython's loop: random inputs of
    /// every length over an alphabet that mixes both alphabets, padding and bytes Python skips.
    #[test]
    fn fast_path_agrees_with_the_cpython_loop() {
        use rand::{Rng, SeedableRng};
        let seed: u64 = rand::random();
        println!("seed {seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/= \n\xc3";
        for _ in 0..20_000 {
            let len = rng.random_range(0..40);
            let mut input: Vec<u8> = if rng.random_bool(0.5) {
                let raw: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                base64::engine::general_purpose::URL_SAFE.encode(raw).into_bytes()
            } else {
                (0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect()
            };
            if rng.random_bool(0.2) && !input.is_empty() {
                let i = rng.random_range(0..input.len());
                input[i] = alphabet[rng.random_range(0..alphabet.len())];
            }
            assert_eq!(python_b64decode(&input), python_b64decode_loop(&input), "{:?}", String::from_utf8_lossy(&input));
        }
    }

    /// Expected values are what CPython 3.11 `base64.urlsafe_b64decode` returns.
    #[test]
    fn decoder_matches_python_urlsafe_b64decode() {
        assert_eq!(b64("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(b64("aGVs\n bG8=\n"), Some(b"hello".to_vec()));
        assert_eq!(
            b64("aGVsbG8=aGVsbG8="),
            Some(b"hello".to_vec()),
            "stops at the padding"
        );
        assert_eq!(b64("aGVsbG8==="), Some(b"hello".to_vec()));
        assert_eq!(b64("aGVsbG8"), None, "missing padding");
        assert_eq!(b64("aGVsbG"), None, "one pad missing");
        assert_eq!(b64("a"), None, "one extra character");
        assert_eq!(b64(""), Some(vec![]));
        assert_eq!(b64("   "), Some(vec![]));
        assert_eq!(b64("!!!!"), Some(vec![]));
        assert_eq!(b64("+/+/"), b64("-_-_"));
        assert_eq!(
            b64("=aGVs"),
            Some(b"hel".to_vec()),
            "a pad at quad start is skipped"
        );
        assert_eq!(
            b64("aG=Vs"),
            Some(b"hel".to_vec()),
            "a single pad at pos 2 does not stop"
        );
        assert_eq!(
            b64("aG= =xx"),
            Some(b"h".to_vec()),
            "spaces between pads are skipped"
        );
        assert_eq!(b64("aGV=zzzz"), Some(b"he".to_vec()));
        assert_eq!(
            b64("aGVs\u{e9}bG8="),
            Some(b"hello".to_vec()),
            "non-ASCII skipped"
        );
        assert_eq!(
            b64("aR=="),
            Some(b"i".to_vec()),
            "unused bits are not checked"
        );
    }

    #[test]
    fn parse_token_rejects_impossible_lengths() {
        let key = [7u8; 32];
        let token = encrypt_from_parts(&key, b"", 1, [0; 16]);
        let data = parse_token(&token).expect("valid");
        assert_eq!(data.len(), OVERHEAD + BLOCK);
        let enc = |d: &[u8]| base64::engine::general_purpose::URL_SAFE.encode(d);
        assert_eq!(
            parse_token(&enc(&data[..data.len() - 1])),
            Err(DecryptError::Corrupt)
        );
        assert_eq!(
            parse_token(&enc(&data[..OVERHEAD])),
            Err(DecryptError::Corrupt)
        );
        let mut longer = data.clone();
        longer.push(0);
        assert_eq!(parse_token(&enc(&longer)), Err(DecryptError::Corrupt));
        let mut v81 = data.clone();
        v81[0] = 0x81;
        assert_eq!(parse_token(&enc(&v81)), Err(DecryptError::Corrupt));
    }

    #[test]
    fn hmac_ok_but_bad_padding_is_wrong_key() {
        // Build a token whose HMAC is valid for key X but whose plaintext padding is broken:
        // encrypt a full block with no PKCS7 block, sign it ourselves.
        let x = [1u8; 32];
        let iv = [0u8; 16];
        let mut block = [0x11u8; 16]; // last byte 17: never valid PKCS7
        cbc::Encryptor::<Aes128>::new_from_slices(&x[16..], &iv)
            .unwrap()
            .encrypt_padded_mut::<aes::cipher::block_padding::NoPadding>(&mut block, 16)
            .unwrap();
        let mut data = vec![VERSION];
        data.extend_from_slice(&0u64.to_be_bytes());
        data.extend_from_slice(&iv);
        data.extend_from_slice(&block);
        let tag = HmacSha256::new_from_slice(&x[..16])
            .unwrap()
            .chain_update(&data)
            .finalize();
        data.extend_from_slice(&tag.into_bytes());
        let token = base64::engine::general_purpose::URL_SAFE.encode(&data);
        let f = AirflowFernet {
            keys: vec![Zeroizing::new(x), Zeroizing::new([2u8; 32])],
        };
        assert_eq!(f.decrypt(&token), Err(DecryptError::WrongKey));
    }

    #[test]
    fn expand_vars_like_posixpath() {
        let env = |n: &str| match n {
            "K" => Some("kv".to_owned()),
            "HOME" => Some("/home/u/".to_owned()),
            "NEST" => Some("$K".to_owned()),
            _ => None,
        };
        assert_eq!(expand_vars("a$K-b", &env), "akv-b");
        assert_eq!(expand_vars("${K}x", &env), "kvx");
        assert_eq!(expand_vars("$NOPE ${NOPE} ${K", &env), "$NOPE ${NOPE} ${K");
        assert_eq!(expand_vars("$ $", &env), "$ $");
        assert_eq!(expand_user("~/k", &env), "/home/u/k");
        assert_eq!(expand_user("~bob/k", &env), "~bob/k");
        assert_eq!(
            expand_env_var("$NEST", &env).expose_plaintext(),
            "kv",
            "repeated to a fixpoint"
        );
        assert_eq!(expand_env_var("", &env).expose_plaintext(), "");
    }

    /// Issue 16 item 13: a value is decrypted in place in its decoded token (the plaintext's
    /// buffer is the token's, not a second one), with MultiFernet's semantics kept: a key sharing
    /// the signing half of the one whose HMAC verifies still gets its turn.
    #[test]
    fn decryption_happens_in_the_token_buffer() {
        let k1 = [7u8; 32];
        let plain = "p".repeat(10_000);
        let token = encrypt_from_parts(&k1, plain.as_bytes(), 1_700_000_000, [3u8; 16]);
        let f = AirflowFernet { keys: vec![Zeroizing::new([9u8; 32]), Zeroizing::new(k1)] };
        let decoded_capacity = parse_token(&token).unwrap().capacity();
        let out = f.decrypt_bytes(&token).unwrap();
        assert_eq!(out.as_slice(), plain.as_bytes());
        assert_eq!(out.capacity(), decoded_capacity, "the plaintext lives in the token's buffer");
        assert_eq!(f.decrypt(&token).unwrap().expose_plaintext(), plain);

        // Same signing half, other encryption half, listed first: Python tries it, fails on the
        // padding, and moves on to the key that encrypted the token.
        let mut twin = k1;
        twin[16..].copy_from_slice(&[1u8; 16]);
        let f = AirflowFernet { keys: vec![Zeroizing::new(twin), Zeroizing::new(k1)] };
        let token = encrypt_from_parts(&k1, b"short", 1_700_000_000, [3u8; 16]);
        assert_eq!(f.decrypt_bytes(&token).unwrap().as_slice(), b"short");
        // A token of another signing key does not decrypt.
        let other = encrypt_from_parts(&[5u8; 32], b"short", 1_700_000_000, [3u8; 16]);
        assert!(matches!(f.decrypt_bytes(&other), Err(DecryptError::WrongKey)));
    }
}
