//! Two builds of one config give byte-identical disk images and UKIs.

use keel_plan::Arch;
use keel_tests::{build, sha256};

#[test]
fn two_builds_are_identical() {
    let arch = Arch::X86_64;
    let a = build("configs/hello.toml", arch, "repro-a");
    let b = build("configs/hello.toml", arch, "repro-b");
    assert_eq!(sha256(&a.img), sha256(&b.img), "disk images differ");
    assert_eq!(sha256(&a.efi), sha256(&b.efi), "UKIs differ");
    assert_eq!(sha256(&a.initrd), sha256(&b.initrd), "initramfs differ");
}
