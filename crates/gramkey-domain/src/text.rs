//! What text a request may carry: no control characters but tab and line breaks.
//!
//! NUL cannot be stored in a PostgreSQL text column at all (it answered 500 where SQLite stored
//! it), and the other C0/C1 controls and DEL have no place in captions, comments, names or
//! URLs: they hide text in logs and pages. Every text input is held to this, whatever the
//! store, so both stores see the same text.

/// The first character `s` may not hold, if any.
pub fn forbidden_char(s: &str) -> Option<char> {
    s.chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

/// Why a parameter named `name` is refused for holding `c`.
pub fn refusal(name: &str, c: char) -> String {
    format!(
        "Parameter {name} contains a control character (U+{:04X}); text may hold only tabs and line breaks",
        u32::from(c)
    )
}

/// The first of `pairs` (name, value) that holds a forbidden character, as a refusal.
pub fn check_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<(), String> {
    for (name, value) in pairs {
        if let Some(c) = forbidden_char(name).or_else(|| forbidden_char(value)) {
            return Err(refusal(name, c));
        }
    }
    Ok(())
}

/// Whether a client's request id may be kept and logged as it is: 1 to 64 characters of
/// letters, digits and `-_.:`, which covers UUIDs, ULIDs and trace ids, and nothing that can
/// break a log line.
pub fn safe_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_refused_but_tabs_and_line_breaks_pass() {
        assert_eq!(forbidden_char("hi\0there"), Some('\0'));
        assert_eq!(forbidden_char("bell\u{7}"), Some('\u{7}'));
        assert_eq!(forbidden_char("del\u{7f}"), Some('\u{7f}'));
        assert_eq!(forbidden_char("c1\u{85}"), Some('\u{85}'));
        assert_eq!(forbidden_char("escape\u{1b}[31m"), Some('\u{1b}'));
        assert_eq!(forbidden_char("a\tb\r\nc\n"), None);
        assert_eq!(forbidden_char("émoji 📷 #tag"), None);
    }

    #[test]
    fn request_ids_are_short_safe_tokens() {
        for ok in [
            "abc",
            "3fa9c1d2-42",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            "a.b:c_d",
        ] {
            assert!(safe_request_id(ok), "{ok}");
        }
        for bad in ["", "a b", "x\ninjected=1", "a\"b", "ü", &"x".repeat(65)] {
            assert!(!safe_request_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_refusal_names_the_parameter_and_the_character() {
        assert_eq!(
            check_pairs([("caption", "ok"), ("message", "hi\0there")]),
            Err("Parameter message contains a control character (U+0000); text may hold only tabs and line breaks".into())
        );
        assert_eq!(check_pairs([("caption", "line\nbreak")]), Ok(()));
    }
}
