//! The autoblock binary.
fn main() {}
