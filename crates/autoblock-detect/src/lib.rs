//! autoblock-detect (placeholder, filled in by the crate's work).
