//! Lexical rules of the `iptables-save` / `iptables-restore` format: how a
//! file splits into lines, how a rule line splits into words (double quotes,
//! backslashes), `[packets:bytes]` counters, and how `iptables-save` quotes a
//! string (`xtables_save_string`).
//!
//! Only bytes in, bytes out: no knowledge of tables, chains or commands
//! (that is `model.rs`), no I/O.

use crate::error::ParseErrorKind;

/// How a line ends in the file. Kept so that printing reproduces the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineEnding {
    /// `\n`.
    Lf,
    /// `\r\n` (`iptables-restore` does not accept these; see
    /// [`crate::RulesetFile::crlf_line`]).
    CrLf,
    /// Last line of a file without a trailing newline.
    None,
}

impl LineEnding {
    /// The bytes of the ending.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            LineEnding::Lf => b"\n",
            LineEnding::CrLf => b"\r\n",
            LineEnding::None => b"",
        }
    }
}

/// Splits a file into `(text, ending)` pairs. An empty input has no lines; a
/// file ending in a newline has no empty last line.
pub(crate) fn split_lines(input: &[u8]) -> Vec<(&[u8], LineEnding)> {
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let line = &rest[..i];
                match line.strip_suffix(b"\r") {
                    Some(text) => out.push((text, LineEnding::CrLf)),
                    None => out.push((line, LineEnding::Lf)),
                }
                rest = &rest[i + 1..];
            }
            None => {
                out.push((rest, LineEnding::None));
                rest = &[];
            }
        }
    }
    out
}

/// Spaces, tabs (and newlines, which never occur inside a line) separate
/// words; this is the `strtok(" \t\n")` set of `iptables-restore`.
pub(crate) fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n')
}

/// Splits on blanks without any quoting (table and chain lines are split
/// with `strtok` in `iptables-restore`, so quotes are ordinary there).
pub(crate) fn plain_words(text: &[u8]) -> Vec<&[u8]> {
    text.split(|&b| is_blank(b))
        .filter(|w| !w.is_empty())
        .collect()
}

/// Splits a rule line into words the way `add_param_to_argv` of
/// iptables 1.8.9 does:
///
/// - outside quotes, blanks separate words and a backslash is an ordinary
///   character;
/// - `"` opens a quote (also in the middle of a word: `ab"c d"` is `abc d`);
/// - inside quotes a backslash makes the next byte literal, and the closing
///   `"` ends the word at once, even an empty one (`""` is an empty word,
///   `"a"b` is two words).
///
/// An unterminated quote is an error here (iptables silently keeps the
/// rest of the line).
pub(crate) fn words(text: &[u8]) -> Result<Vec<Vec<u8>>, ParseErrorKind> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut quote_open = false;
    let mut escaped = false;
    for &b in text {
        if quote_open {
            if escaped {
                cur.push(b);
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quote_open = false;
                out.push(std::mem::take(&mut cur));
            } else {
                cur.push(b);
            }
        } else if b == b'"' {
            quote_open = true;
        } else if is_blank(b) {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(b);
        }
    }
    if quote_open {
        return Err(ParseErrorKind::UnterminatedQuote);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Packet and byte counters, `[packets:bytes]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Counters {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Parses exactly `[digits:digits]` (no sign, no spaces, no overflow).
pub(crate) fn parse_counters(word: &[u8]) -> Result<Counters, ParseErrorKind> {
    let bad = || ParseErrorKind::BadCounters(String::from_utf8_lossy(word).into_owned());
    let inner = word
        .strip_prefix(b"[")
        .and_then(|w| w.strip_suffix(b"]"))
        .ok_or_else(bad)?;
    let colon = inner.iter().position(|&b| b == b':').ok_or_else(bad)?;
    let number = |digits: &[u8]| -> Option<u64> {
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let packets = number(&inner[..colon]).ok_or_else(bad)?;
    let bytes = number(&inner[colon + 1..]).ok_or_else(bad)?;
    Ok(Counters { packets, bytes })
}

/// Splits a rule line into its optional `[p:b]` prefix and the rest. Like
/// `iptables-restore`, the prefix ends at the first `]` and need not be
/// followed by a blank.
pub(crate) fn split_counter_prefix(
    text: &[u8],
) -> Result<(Option<Counters>, &[u8]), ParseErrorKind> {
    if text.first() != Some(&b'[') {
        return Ok((None, text));
    }
    let Some(end) = text.iter().position(|&b| b == b']') else {
        // No `]` at all: report the first word as the bad counters.
        let word = text.split(|&b| is_blank(b)).next().unwrap_or(text);
        return Err(ParseErrorKind::BadCounters(
            String::from_utf8_lossy(word).into_owned(),
        ));
    };
    let counters = parse_counters(&text[..=end])?;
    Ok((Some(counters), &text[end + 1..]))
}

/// Quotes a string the way `xtables_save_string` does: bare if it is
/// non-empty and only `[A-Za-z0-9_-]`, else in double quotes with a
/// backslash before each `"`, `\` and `'`.
pub fn save_string(value: &str) -> String {
    let bare = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        words(s.as_bytes())
            .unwrap()
            .into_iter()
            .map(|w| String::from_utf8(w).unwrap())
            .collect()
    }

    #[test]
    fn words_follow_add_param_to_argv() {
        assert_eq!(w("-A  INPUT\t-j ACCEPT"), ["-A", "INPUT", "-j", "ACCEPT"]);
        assert_eq!(w(r#"--comment "a b""#), ["--comment", "a b"]);
        assert_eq!(w(r#"--comment """#), ["--comment", ""]);
        assert_eq!(w(r#"--comment "a"b"#), ["--comment", "a", "b"]);
        assert_eq!(w(r#"--comment ab"c d""#), ["--comment", "abc d"]);
        assert_eq!(w(r"--comment a\b"), ["--comment", r"a\b"]);
        assert_eq!(w(r#""x\"y\\z\q""#), [r#"x"y\zq"#]);
        assert_eq!(w(r#""\'q\'""#), ["'q'"]);
        assert_eq!(w("'q'"), ["'q'"]);
        assert_eq!(w(""), Vec::<String>::new());
        assert_eq!(
            words(br#"--comment "open"#),
            Err(ParseErrorKind::UnterminatedQuote)
        );
    }

    #[test]
    fn save_string_matches_xtables() {
        assert_eq!(save_string("plain_word-1"), "plain_word-1");
        assert_eq!(save_string(""), "\"\"");
        assert_eq!(save_string("ssh brute force"), "\"ssh brute force\"");
        assert_eq!(save_string("autoblock: "), "\"autoblock: \"");
        assert_eq!(save_string(r#"a"b\c'd"#), r#""a\"b\\c\'d""#);
        assert_eq!(save_string("é"), "\"é\"");
    }

    #[test]
    fn save_string_round_trips_through_words() {
        for s in ["", "a b", r#"a"b\c'd"#, "tab\there", "x", "-", "\\"] {
            let quoted = save_string(s);
            let back = words(quoted.as_bytes()).unwrap();
            assert_eq!(back, vec![s.as_bytes().to_vec()], "{quoted}");
        }
    }

    #[test]
    fn counters() {
        assert_eq!(
            parse_counters(b"[12:3456]"),
            Ok(Counters {
                packets: 12,
                bytes: 3456
            })
        );
        assert_eq!(
            parse_counters(b"[18446744073709551615:0]").map(|c| c.packets),
            Ok(u64::MAX)
        );
        for bad in [
            &b"[1:x]"[..],
            b"[-1:0]",
            b"[1:2",
            b"1:2]",
            b"[:2]",
            b"[1:]",
            b"[12]",
            b"[18446744073709551616:0]",
            b"[+1:2]",
        ] {
            assert!(parse_counters(bad).is_err(), "{:?}", bad);
        }
        let (c, rest) = split_counter_prefix(b"[0:0]-A INPUT").unwrap();
        assert_eq!((c, rest), (Some(Counters::default()), &b"-A INPUT"[..]));
        assert!(split_counter_prefix(b"[1:2 -A INPUT").is_err());
        assert_eq!(split_counter_prefix(b"-A X").unwrap(), (None, &b"-A X"[..]));
    }

    #[test]
    fn lines_keep_their_endings() {
        let l = split_lines(b"a\r\nb\n\nc");
        assert_eq!(
            l,
            vec![
                (&b"a"[..], LineEnding::CrLf),
                (&b"b"[..], LineEnding::Lf),
                (&b""[..], LineEnding::Lf),
                (&b"c"[..], LineEnding::None),
            ]
        );
        assert!(split_lines(b"").is_empty());
        assert_eq!(split_lines(b"\n"), vec![(&b""[..], LineEnding::Lf)]);
        assert_eq!(split_lines(b"x\r"), vec![(&b"x\r"[..], LineEnding::None)]);
    }
}
