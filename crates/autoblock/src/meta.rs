//! Entry metadata carried in a rule's comment: an optional expiry time and free text.
//!
//! Format: `expires=YYYY-MM-DDTHH:MM:SSZ` when the entry expires, then `; ` and the user's
//! text when there is one; text alone otherwise. Text that itself starts with `expires=` is
//! written after a leading `; ` so it can never be mistaken for an expiry. The comment must
//! fit the 253 bytes a rule comment can hold.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use autoblock_netlink::udata::MAX_COMMENT_LEN;

use crate::error::InputError;

const EXPIRES: &str = "expires=";

/// Builds the comment text for an entry, or `None` when there is nothing to say.
pub fn encode(
    expires: Option<SystemTime>,
    text: Option<&str>,
) -> Result<Option<String>, InputError> {
    let text = text.filter(|t| !t.is_empty());
    let s = match (expires, text) {
        (None, None) => return Ok(None),
        (None, Some(t)) if t.starts_with(EXPIRES) || t.starts_with("; ") => format!("; {t}"),
        (None, Some(t)) => t.to_owned(),
        (Some(e), None) => format!("{EXPIRES}{}", rfc3339(e)),
        (Some(e), Some(t)) => format!("{EXPIRES}{}; {t}", rfc3339(e)),
    };
    if s.len() > MAX_COMMENT_LEN {
        return Err(InputError::BadComment {
            comment: text.unwrap_or_default().to_owned(),
            reason: "too long: a rule comment holds at most 253 bytes including the expiry",
        });
    }
    Ok(Some(s))
}

/// Splits a comment into expiry and text. Comments autoblock did not write come back as
/// text.
pub fn decode(comment: &str) -> (Option<SystemTime>, Option<String>) {
    if let Some(rest) = comment.strip_prefix(EXPIRES) {
        let (ts, text) = match rest.split_once("; ") {
            Some((ts, t)) => (ts, Some(t.to_owned())),
            None => (rest, None),
        };
        if let Ok(t) = humantime::parse_rfc3339(ts) {
            return (Some(t), text);
        }
    }
    if let Some(t) = comment.strip_prefix("; ") {
        return (None, Some(t.to_owned()));
    }
    (None, Some(comment.to_owned()))
}

/// `YYYY-MM-DDTHH:MM:SSZ`, whole seconds.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let c = encode(Some(t), Some("ssh brute force")).unwrap().unwrap();
        assert_eq!(c, "expires=2026-11-18T11:06:40Z; ssh brute force");
        assert_eq!(decode(&c), (Some(t), Some("ssh brute force".into())));
        let c = encode(Some(t), None).unwrap().unwrap();
        assert_eq!(decode(&c), (Some(t), None));
        assert_eq!(encode(None, None).unwrap(), None);
        let c = encode(None, Some("expires=never")).unwrap().unwrap();
        assert_eq!(decode(&c), (None, Some("expires=never".into())));
        assert_eq!(decode("foreign"), (None, Some("foreign".into())));
        assert!(encode(Some(t), Some(&"x".repeat(240))).is_err());
    }
}
