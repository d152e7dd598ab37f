//! keel-probe: placeholder, being written.
fn main() {}
