//! keel-runtime: placeholder, being written.
fn main() {}
