//! keel: build a minimal container host image from one TOML file.

mod sink;

fn main() {}
