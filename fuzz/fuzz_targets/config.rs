//! The config parser and validator (`Config::parse`), on any UTF-8 text: what `keel check`
//! and `keel build` do with a config before they read the files it pins.
#![no_main]

use std::path::Path;

use keel_builder::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `Config::load` reads the file as UTF-8 and refuses anything else.
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The relative paths a config names resolve under a directory that does not exist.
    let _ = Config::parse(Path::new("/nonexistent/keel-fuzz/config.toml"), text.to_string());
});
