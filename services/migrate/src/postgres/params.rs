//! A connection string split into its parameters exactly as tokio-postgres 0.7 splits it, with where each
//! one is in the string, so that [`parse`](super::parse) can rewrite the ones it takes out in place.

use std::iter::Peekable;
use std::ops::Range;
use std::str::CharIndices;

/// The two syntaxes of a connection string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Form {
    /// `postgres://` or `postgresql://`.
    Url,
    /// `key=value key='quoted value' …`.
    KeyValue,
}

/// One parameter of a connection string, found as tokio-postgres' parsers find it.
#[derive(Debug)]
pub(super) struct Param {
    /// The key: percent-decoded in a URL (empty when that is not UTF-8).
    pub(super) key: String,
    /// The value: percent-decoded in a URL, unquoted and unescaped in `key=value` form. `None` when it is
    /// not UTF-8 once decoded.
    pub(super) value: Option<String>,
    /// Where the whole parameter is in the string (in a URL, with the `&` that follows it).
    pub(super) whole: Range<usize>,
    /// Where its value is, as written (quotes included).
    pub(super) value_at: Range<usize>,
}

/// The form of `url` and its parameters, split exactly as tokio-postgres 0.7 splits them (`config.rs`:
/// `UrlParser` when the string starts with `postgres://` or `postgresql://`, else `Parser`). Splitting stops
/// at the first syntax error, which tokio-postgres then reports.
pub(super) fn split(url: &str) -> (Form, Vec<Param>) {
    match ["postgres://", "postgresql://"]
        .iter()
        .find(|prefix| url.starts_with(*prefix))
    {
        Some(prefix) => (Form::Url, url_params(url, prefix.len())),
        None => (Form::KeyValue, key_value_params(url)),
    }
}

/// The query parameters of a URL whose scheme ends at `start`. tokio-postgres takes the credentials up to the
/// first `@` anywhere, then the host up to `/` or `?`, the path up to `?`; then `key=value` pairs, the key up
/// to the next `=` and the value up to the next `&`.
fn url_params(url: &str, start: usize) -> Vec<Param> {
    let after_credentials = url[start..].find('@').map_or(start, |at| start + at + 1);
    let Some(question) = url[after_credentials..].find('?') else {
        return Vec::new();
    };
    let mut params = Vec::new();
    let mut at = after_credentials + question + 1;
    while at < url.len() {
        let Some(equals) = url[at..].find('=') else {
            break;
        };
        let key_end = at + equals;
        let value_start = key_end + 1;
        let (value_end, next) = match url[value_start..].find('&') {
            Some(amp) => (value_start + amp, value_start + amp + 1),
            None => (url.len(), url.len()),
        };
        params.push(Param {
            key: percent_decode(&url[at..key_end]).unwrap_or_default(),
            value: percent_decode(&url[value_start..value_end]),
            whole: at..next,
            value_at: value_start..value_end,
        });
        at = next;
    }
    params
}

/// The parameters of a `key=value` string: whitespace-separated `key = value` with optional spaces around
/// `=`; a value is either `'quoted'` or runs to the next whitespace; `\` escapes the next character in both.
fn key_value_params(s: &str) -> Vec<Param> {
    let mut params = Vec::new();
    let mut it = s.char_indices().peekable();
    loop {
        skip(&mut it, char::is_whitespace);
        let key_start = it.peek().map_or(s.len(), |&(i, _)| i);
        skip(&mut it, |c| !c.is_whitespace() && c != '=');
        let key_end = it.peek().map_or(s.len(), |&(i, _)| i);
        if key_start == key_end {
            break;
        }
        skip(&mut it, char::is_whitespace);
        if it.next_if(|&(_, c)| c == '=').is_none() {
            break;
        }
        skip(&mut it, char::is_whitespace);
        let value_start = it.peek().map_or(s.len(), |&(i, _)| i);
        let mut value = String::new();
        if it.next_if(|&(_, c)| c == '\'').is_some() {
            let mut closed = false;
            while let Some((_, c)) = it.next() {
                match c {
                    '\'' => {
                        closed = true;
                        break;
                    }
                    '\\' => value.extend(it.next().map(|(_, escaped)| escaped)),
                    c => value.push(c),
                }
            }
            if !closed {
                break;
            }
        } else {
            while let Some((_, c)) = it.next_if(|&(_, c)| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(it.next().map(|(_, escaped)| escaped));
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                break;
            }
        }
        let value_end = it.peek().map_or(s.len(), |&(i, _)| i);
        params.push(Param {
            key: s[key_start..key_end].to_owned(),
            value: Some(value),
            whole: key_start..value_end,
            value_at: value_start..value_end,
        });
    }
    params
}

/// Advances `it` past the characters for which `take` holds.
fn skip(it: &mut Peekable<CharIndices<'_>>, take: impl Fn(char) -> bool) {
    while it.next_if(|&(_, c)| take(c)).is_some() {}
}

/// `%XX` decoded (a `%` not followed by two hex digits stays as it is, as tokio-postgres decodes URLs);
/// `None` when the result is not UTF-8.
pub(super) fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}
