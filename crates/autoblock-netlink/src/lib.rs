//! autoblock-netlink (placeholder, filled in by the crate's work).
