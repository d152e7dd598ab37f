//! Tar entries (`entries::next`) and layer apply (`layer::apply`): the input is an uncompressed
//! layer, applied twice to one tree so its whiteouts and replacements meet a lower layer.
#![no_main]

use keel_builder::image::layer;
use keel_builder::image::limits::Budget;
use keel_builder::image::tree::Tree;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut tree = Tree::default();
    let mut budget = Budget::default();
    if layer::apply(&mut tree, data, &mut budget).is_ok() {
        let _ = layer::apply(&mut tree, data, &mut budget);
    }
    let _ = tree.stats();
});
