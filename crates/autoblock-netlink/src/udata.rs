//! Userdata TLVs (`struct nftnl_udata`): `u8 type, u8 len, value[len]`, concatenated.
//!
//! autoblock stores a rule's comment in type 0 (`NFTNL_UDATA_RULE_COMMENT`), NUL-terminated
//! with the NUL counted in `len`, which is what iptables-nft displays as `-m comment` and nft
//! as `comment "…"`. Set elements use the same TLV type 0 for their comment
//! (`NFTNL_UDATA_SET_ELEM_COMMENT`).

use crate::consts::NFT_USERDATA_MAXLEN;

/// TLV type of a comment (rules and set elements).
pub const UDATA_COMMENT: u8 = 0;

/// Longest comment (bytes, without the NUL) that fits `NFT_USERDATA_MAXLEN` (256) as one TLV.
pub const MAX_COMMENT_LEN: usize = 253;

/// Encodes `comment` as a userdata blob, or `None` if it is too long or contains a NUL.
pub fn comment(comment: &str) -> Option<Vec<u8>> {
    let b = comment.as_bytes();
    if b.len() > MAX_COMMENT_LEN || b.contains(&0) {
        return None;
    }
    let mut v = Vec::with_capacity(b.len() + 3);
    v.push(UDATA_COMMENT);
    v.push((b.len() + 1) as u8);
    v.extend_from_slice(b);
    v.push(0);
    debug_assert!(v.len() <= NFT_USERDATA_MAXLEN);
    Some(v)
}

/// Encodes `comment` into `out` (cleared first); returns false if it does not fit.
pub fn comment_into(comment: &str, out: &mut Vec<u8>) -> bool {
    out.clear();
    let b = comment.as_bytes();
    if b.len() > MAX_COMMENT_LEN || b.contains(&0) {
        return false;
    }
    out.push(UDATA_COMMENT);
    out.push((b.len() + 1) as u8);
    out.extend_from_slice(b);
    out.push(0);
    true
}

/// Finds the comment TLV in a userdata blob. Unknown TLV types are skipped, as iptables and
/// nft do.
pub fn parse_comment(udata: &[u8]) -> Option<&str> {
    let mut rest = udata;
    while rest.len() >= 2 {
        let ty = rest[0];
        let len = rest[1] as usize;
        let value = rest.get(2..2 + len)?;
        if ty == UDATA_COMMENT {
            let text = value.strip_suffix(&[0]).unwrap_or(value);
            return std::str::from_utf8(text).ok();
        }
        rest = &rest[2 + len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_matches_the_documented_bytes() {
        // netlink-facts.md §9.2: comment "auto" → 00 05 61 75 74 6f 00
        assert_eq!(
            comment("auto").unwrap(),
            vec![0x00, 0x05, 0x61, 0x75, 0x74, 0x6f, 0x00]
        );
        assert_eq!(parse_comment(&comment("auto").unwrap()), Some("auto"));
    }

    #[test]
    fn unknown_tlvs_are_skipped_and_bad_input_is_refused() {
        let mut blob = vec![7, 2, 1, 2];
        blob.extend(comment("x y").unwrap());
        assert_eq!(parse_comment(&blob), Some("x y"));
        assert_eq!(parse_comment(&[0, 9, 1]), None);
        assert!(comment(&"a".repeat(254)).is_none());
        assert!(comment("a\0b").is_none());
        assert!(comment(&"a".repeat(253)).is_some());
    }
}
