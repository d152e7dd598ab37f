//! keel-qemu
