//! What must never reach Sentry, taken out of every event and transaction
//! before it is sent: credentials wherever they appear, and request bodies.
//!
//! The event is walked as JSON, so no field is missed (message, exception
//! values, breadcrumbs, extra, contexts, tags, request):
//! - a field named like a credential or a body (`authorization`,
//!   `x-api-key`, `cookie`, `password`, `token`, `*_api_key`, `body`,
//!   `prompt`, `messages`, …) keeps its name and loses its value;
//! - `request.data`, `request.cookies` and `request.env` are removed;
//! - in every string: Switchyard keys (`sy_` + hex), provider keys (`sk-…`),
//!   JWTs, bearer tokens, `name=value` / `name: value` credentials and URL
//!   passwords are replaced by `[redacted]`.
//!
//! An event that cannot be scrubbed (it does not survive the round trip
//! through JSON) is dropped rather than sent as it is.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// `before_send`: the event scrubbed, or `None` (dropped) when it cannot be.
pub fn event(
    event: ::sentry::protocol::Event<'static>,
) -> Option<::sentry::protocol::Event<'static>> {
    scrubbed(&event)
}

/// `value` scrubbed through its JSON form; `None` when the round trip fails.
pub fn scrubbed<T: Serialize + DeserializeOwned>(value: &T) -> Option<T> {
    let mut json = match serde_json::to_value(value) {
        Ok(json) => json,
        Err(e) => {
            tracing::warn!(error = %e, "a Sentry event could not be scrubbed; dropped");
            return None;
        }
    };
    if let Some(request) = json.get_mut("request").and_then(Value::as_object_mut) {
        for body in ["data", "cookies", "env"] {
            request.remove(body);
        }
    }
    scrub_json(&mut json);
    match serde_json::from_value(json) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(error = %e, "a scrubbed Sentry event did not parse back; dropped");
            None
        }
    }
}

/// Scrubs `value` in place.
pub fn scrub_json(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Cow::Owned(clean) = text(s) {
                *s = clean;
            }
        }
        Value::Array(items) => {
            // `[name, value]` pairs (headers in list form).
            if let [Value::String(name), secret @ Value::String(_)] = items.as_mut_slice() {
                if is_sensitive_name(name) {
                    *secret = Value::String(REDACTED.to_owned());
                    return;
                }
            }
            items.iter_mut().for_each(scrub_json);
        }
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                if is_sensitive_name(name) && !field.is_null() {
                    *field = Value::String(REDACTED.to_owned());
                } else {
                    scrub_json(field);
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Names whose values are credentials or bodies (compared lowercased, `-`
/// read as `_`).
const SENSITIVE_NAMES: &[&str] = &[
    "authorization",
    "proxy_authorization",
    "x_api_key",
    "api_key",
    "apikey",
    "cookie",
    "set_cookie",
    "password",
    "passwd",
    "secret",
    "token",
    "jwt",
    "dsn",
    "sentry_dsn",
    "body",
    "request_body",
    "prompt",
    "messages",
];

/// Suffixes that make a name sensitive (`openai_api_key`, `access_token`).
const SENSITIVE_SUFFIXES: &[&str] = &["_api_key", "_token", "_secret", "_password"];

fn is_sensitive_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase().replace('-', "_");
    SENSITIVE_NAMES.contains(&name.as_str()) || SENSITIVE_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Credential names looked for in free text, followed by `:` or `=`.
const TEXT_NAMES: &[&str] = &[
    "proxy-authorization",
    "authorization",
    "x-api-key",
    "api_key",
    "api-key",
    "apikey",
    "access_token",
    "refresh_token",
    "id_token",
    "token",
    "client_secret",
    "secret",
    "password",
    "passwd",
    "set-cookie",
    "cookie",
];

/// Names whose value runs to the end of the header (`Basic xyz`, cookies).
const WHOLE_VALUE_NAMES: &[&str] = &[
    "proxy-authorization",
    "authorization",
    "set-cookie",
    "cookie",
];

/// `s` with every secret replaced; borrowed when there was none.
pub fn text(s: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(s);
    for pass in [
        switchyard_key as Matcher,
        provider_key,
        jwt,
        bearer,
        named_value,
        url_password,
    ] {
        if let Some(clean) = redact(&out, pass) {
            out = Cow::Owned(clean);
        }
    }
    out
}

/// At a byte offset: the range of a secret starting there, if one does.
type Matcher = fn(&[u8], usize) -> Option<(usize, usize)>;

/// `s` with every range `matcher` finds replaced by [`REDACTED`]; `None`
/// when it finds none. Matchers look for ASCII only, so every range they
/// return starts and ends on a character boundary.
fn redact(s: &str, matcher: Matcher) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out: Option<String> = None;
    let (mut copied, mut i) = (0, 0);
    while i < bytes.len() {
        match matcher(bytes, i) {
            Some((start, end))
                if end > start && s.is_char_boundary(start) && s.is_char_boundary(end) =>
            {
                let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
                o.push_str(&s[copied..start]);
                o.push_str(REDACTED);
                copied = end;
                i = end;
            }
            _ => i += 1,
        }
    }
    let mut out = out?;
    out.push_str(&s[copied..]);
    Some(out)
}

/// How many bytes from `from` satisfy `ok`.
fn run(bytes: &[u8], from: usize, ok: impl Fn(u8) -> bool) -> usize {
    bytes
        .get(from..)
        .map_or(0, |rest| rest.iter().take_while(|&&b| ok(b)).count())
}

fn starts_with_ignore_case(bytes: &[u8], at: usize, word: &str) -> bool {
    bytes
        .get(at..at + word.len())
        .is_some_and(|b| b.eq_ignore_ascii_case(word.as_bytes()))
}

/// Whether the byte before `at` ends a word (so `at` starts one).
fn word_start(bytes: &[u8], at: usize) -> bool {
    at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || matches!(bytes[at - 1], b'_' | b'-'))
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'=')
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')
}

/// `sy_` and at least 32 hex digits (a key has 64; a truncated one is still
/// too much), anywhere: all of it.
fn switchyard_key(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if !b[i..].starts_with(b"sy_") {
        return None;
    }
    let n = run(b, i + 3, |c| c.is_ascii_hexdigit());
    (n >= 32).then_some((i, i + 3 + n))
}

/// Provider keys (`sk-…`, `sk-ant-…`): what follows `sk-`.
fn provider_key(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if !b[i..].starts_with(b"sk-") || !word_start(b, i) {
        return None;
    }
    let n = run(b, i + 3, is_base64url);
    (n >= 20).then_some((i + 3, i + 3 + n))
}

/// A JWT: `eyJ…` header, payload and signature, all of it.
fn jwt(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if !b[i..].starts_with(b"eyJ") {
        return None;
    }
    let header = i + 3 + run(b, i + 3, is_base64url);
    if b.get(header) != Some(&b'.') {
        return None;
    }
    let payload = run(b, header + 1, is_base64url);
    if payload == 0 || b.get(header + 1 + payload) != Some(&b'.') {
        return None;
    }
    let signature = header + 2 + payload;
    Some((i, signature + run(b, signature, is_base64url)))
}

/// `Bearer <token>`: the token.
fn bearer(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if !starts_with_ignore_case(b, i, "bearer") || !word_start(b, i) {
        return None;
    }
    let spaces = run(b, i + 6, |c| c == b' ' || c == b'\t');
    if spaces == 0 {
        return None;
    }
    let start = i + 6 + spaces;
    Some((start, start + run(b, start, is_token_byte)))
}

/// `name: value`, `name=value`, `"name": "value"` for a credential name:
/// the value (for `authorization` and cookies, up to the end of the header).
fn named_value(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if !word_start(b, i) {
        return None;
    }
    let name = TEXT_NAMES
        .iter()
        .find(|n| starts_with_ignore_case(b, i, n))?;
    let mut at = i + name.len();
    at += run(b, at, |c| c == b'"' || c == b'\'');
    at += run(b, at, |c| c == b' ');
    if !matches!(b.get(at), Some(b':' | b'=')) {
        return None;
    }
    at += 1;
    at += run(b, at, |c| c == b' ' || c == b'"' || c == b'\'');
    let n = if WHOLE_VALUE_NAMES.contains(name) {
        run(b, at, |c| {
            !matches!(c, b'"' | b'\'' | b',' | b'}' | b'\r' | b'\n')
        })
    } else {
        run(b, at, |c| {
            !matches!(
                c,
                b'"' | b'\''
                    | b','
                    | b';'
                    | b'&'
                    | b'}'
                    | b'['
                    | b']'
                    | b' '
                    | b'\t'
                    | b'\r'
                    | b'\n'
            )
        })
    };
    // Trailing spaces stay; an already redacted value is left alone.
    let n = n - b[at..at + n]
        .iter()
        .rev()
        .take_while(|&&c| c == b' ')
        .count();
    (n > 0 && &b[at..at + n] != REDACTED.as_bytes()).then_some((at, at + n))
}

/// `scheme://user:password@host`: the password.
fn url_password(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if !b[i..].starts_with(b"://") {
        return None;
    }
    let start = i + 3;
    let n = run(b, start, |c| {
        !matches!(
            c,
            b'/' | b'?' | b'#' | b'@' | b' ' | b'\t' | b'\r' | b'\n' | b'"' | b'\'' | b'<' | b'>'
        )
    });
    if b.get(start + n) != Some(&b'@') {
        return None;
    }
    let colon = b[start..start + n].iter().position(|&c| c == b':')?;
    let password = start + colon + 1;
    (password < start + n).then_some((password, start + n))
}

#[cfg(test)]
mod tests;
