//! TMI's text-field checks, applied to every free-text field of an add-on: length, control characters,
//! invisible or direction-changing characters, stacked combining marks, HTML and template injection.

use super::bad;
use crate::error::ApiResult;

/// Zero-width characters that can hide text (TMI's list).
fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// Characters that reorder how text displays (bidirectional embeddings, overrides and isolates).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Hangul fillers: invisible, and used to fake blank names.
fn is_hangul_filler(c: char) -> bool {
    matches!(c, '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}')
}

/// Combining marks (the common blocks), for the stacked-diacritics ("Zalgo") check.
fn is_combining(c: char) -> bool {
    matches!(
        c,
        '\u{0300}'..='\u{036F}'
            | '\u{1AB0}'..='\u{1AFF}'
            | '\u{1DC0}'..='\u{1DFF}'
            | '\u{20D0}'..='\u{20FF}'
            | '\u{FE20}'..='\u{FE2F}'
    )
}

/// Three or more combining marks in a row (TMI's threshold: one or two are legitimate diacritics).
fn has_stacked_marks(s: &str) -> bool {
    let mut run = 0;
    for c in s.chars() {
        run = if is_combining(c) { run + 1 } else { 0 };
        if run >= 3 {
            return true;
        }
    }
    false
}

/// HTML that would run script where the text is rendered.
const UNSAFE_MARKUP: &[&str] = &[
    "<script",
    "</script>",
    "<iframe",
    "</iframe>",
    "<object",
    "<embed",
    "<applet",
    "javascript:",
];

/// Server-side template syntax, with TMI's descriptions (`${{` before `${`: the longer match is named).
const TEMPLATE_PATTERNS: &[(&str, &str)] = &[
    ("${{", "GitHub Actions context"),
    ("{{", "template expression"),
    ("}}", "template expression"),
    ("${", "template interpolation"),
    ("<%", "server template tag"),
    ("%>", "server template tag"),
    ("#{", "expression language"),
];

/// Whether `s` holds an inline event handler (`onclick=`, `onerror =` …): a word starting with `on`, then
/// word characters, optional blanks and `=`. Unlike TMI's pattern this needs `on` to start a word, so text
/// such as "condition = x" is not refused.
fn has_event_handler(s: &str) -> bool {
    let b = s.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    (0..b.len().saturating_sub(2)).any(|i| {
        if !b[i].eq_ignore_ascii_case(&b'o')
            || !b[i + 1].eq_ignore_ascii_case(&b'n')
            || (i > 0 && word(b[i - 1]))
        {
            return false;
        }
        let mut j = i + 2;
        let start = j;
        while j < b.len() && word(b[j]) {
            j += 1;
        }
        if j == start {
            return false;
        }
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        j < b.len() && b[j] == b'='
    })
}

/// TMI's text-field checks: presence, length (characters), control characters (line breaks and tabs only
/// where `multiline`), problematic Unicode, HTML and template injection.
pub(super) fn check_text(
    v: &str,
    label: &str,
    max: usize,
    required: bool,
    multiline: bool,
) -> ApiResult<()> {
    if v.is_empty() {
        if required {
            return Err(bad(format!("{label} is required")));
        }
        return Ok(());
    }
    let n = v.chars().count();
    if n > max {
        return Err(bad(format!(
            "{label} exceeds maximum length of {max} characters (got {n})"
        )));
    }
    if v.chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
    {
        return Err(bad(format!("Field '{label}' contains control characters")));
    }
    if v.chars().any(is_zero_width) {
        return Err(bad(format!(
            "Field '{label}' contains zero-width characters"
        )));
    }
    if v.chars().any(is_bidi_control) {
        return Err(bad(format!(
            "Field '{label}' contains bidirectional text control characters"
        )));
    }
    if v.chars().any(is_hangul_filler) {
        return Err(bad(format!(
            "Field '{label}' contains Hangul filler characters"
        )));
    }
    if has_stacked_marks(v) {
        return Err(bad(format!(
            "Field '{label}' contains excessive combining diacritical marks"
        )));
    }
    let lower = v.to_lowercase();
    if UNSAFE_MARKUP.iter().any(|p| lower.contains(p)) || has_event_handler(v) {
        return Err(bad(format!(
            "Field '{label}' contains potentially unsafe content"
        )));
    }
    if let Some((p, what)) = TEMPLATE_PATTERNS.iter().find(|(p, _)| v.contains(p)) {
        return Err(bad(format!(
            "Field '{label}' contains potentially unsafe {what} pattern ({p})"
        )));
    }
    Ok(())
}
