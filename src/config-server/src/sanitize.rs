//! Makes untrusted text (request paths and methods, keys, binding names) fit
//! for one log line: control and bidi-override characters and backslashes are
//! escaped, so a client cannot forge lines or reorder what a reader sees, and
//! the text is cut to a length, so a 60 KB path cannot flood the log.

use std::fmt::Write;

/// `text` escaped, and cut after `max_chars` characters with a note of how much
/// was left out.
pub(crate) fn cut(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars + 16));
    for (taken, (i, c)) in text.char_indices().enumerate() {
        if taken == max_chars {
            let _ = write!(out, "…(+{} bytes)", text.len() - i);
            break;
        }
        if c == '\\' {
            out.push_str("\\\\");
        } else if c.is_control() || is_invisible_format(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters that change how the text around them displays (bidi overrides,
/// zero-width marks) without showing themselves.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_cuts() {
        assert_eq!(cut("/config/a b", 64), "/config/a b");
        assert_eq!(cut("a\nb\r\x1b[31m\\", 64), "a\\u{a}b\\u{d}\\u{1b}[31m\\\\");
        assert_eq!(cut("x\u{202e}y", 64), "x\\u{202e}y");
        assert_eq!(cut("é€😀", 64), "é€😀");
        assert_eq!(cut(&"p".repeat(60_000), 5), "ppppp…(+59995 bytes)");
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcé", 3), "abc…(+2 bytes)");
    }
}
