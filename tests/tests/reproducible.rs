//! Two builds of one config give byte-identical disk images, UKIs and initramfs, on each arch.

use keel_plan::Arch;
use keel_tests::{both_arches, build, sha256};

fn two_builds_are_identical(arch: Arch) {
    let a = build("configs/hello.toml", arch, &format!("repro-{arch}-a"));
    let b = build("configs/hello.toml", arch, &format!("repro-{arch}-b"));
    assert_eq!(sha256(&a.img), sha256(&b.img), "{arch}: disk images differ");
    assert_eq!(sha256(&a.efi), sha256(&b.efi), "{arch}: UKIs differ");
    assert_eq!(sha256(&a.initrd), sha256(&b.initrd), "{arch}: initramfs differ");
}

both_arches!(two_builds_are_identical);
