//! dm-verity at boot (x86_64; tests/scenarios/verity.toml). The image is built with verity on, as
//! by default, then booted twice side by side:
//! - as built: `reader` reads its file and says READ-OK, and keel-init says keel-images is under
//!   dm-verity with the root hash from the command line;
//! - with one byte of that file changed on the disk (found with debugfs's `bmap` on the
//!   keel-images partition): `reader`'s read fails, keel-init reports
//!   `keel: images partition corrupted …` naming `reader` on the console and in its log file, and
//!   `beat` goes on beating after it.

use std::path::Path;
use std::thread;
use std::time::Duration;

use keel_plan::Arch;
use keel_tests::scenario::{cat, power_off, Run, Scenario};
use keel_tests::{debugfs, extract, partitions, tcg_disk, wait_until};

/// The file `reader` reads, in its tree on keel-images (each container's tree is named after it).
const FILE: &str = "/reader/usr/share/common-licenses/GPL-3";
/// What keel-init says when dm-verity found a bad block.
const REPORT: &str = "keel: images partition corrupted";

/// The byte offset on the disk `img` of the first byte of [`FILE`], and the keel-images root hash
/// the built command line names.
fn locate(s: &Scenario, img: &Path) -> (u64, String) {
    let parts = partitions(img);
    let p = parts.iter().find(|p| p.name == keel_plan::IMAGES_LABEL).expect("a keel-images partition");
    let fs = s.dir.path().join("keel-images.ext4");
    extract(img, p, &fs);
    let (out, err) = debugfs(&fs, &format!("bmap {FILE} 0"));
    let block: u64 = out.trim().parse().unwrap_or_else(|_| panic!("bmap {FILE} 0: {out}{err}"));
    let cmdline = std::fs::read_to_string(s.built.img.with_extension("cmdline")).expect("the built .cmdline");
    let root = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("keel.verity="))
        .and_then(|v| v.split(':').next())
        .unwrap_or_else(|| panic!("no keel.verity= in {cmdline}"))
        .to_string();
    (p.first * 512 + block * 4096, root)
}

/// Boot `img` (`in_place`, or on an overlay) until `reader` is done and `beat` has beaten 3 times
/// after it, then power off.
fn boot(s: &Scenario, img: &Path, in_place: bool) -> Run {
    let arch = s.arch;
    let mut cfg = tcg_disk(arch, img);
    cfg.disk_snapshot = !in_place;
    let mut vm = keel_qemu::Vm::start(&cfg).expect("start QEMU");
    wait_until(&mut vm, "reader to exit and beat to go on", Duration::from_secs(600), arch, |lines| {
        lines
            .iter()
            .position(|l| l.text.contains("keel: container reader exited"))
            .is_some_and(|i| lines[i..].iter().filter(|l| l.text.starts_with("beat| beat")).count() >= 3)
    });
    power_off(vm, arch)
}

#[test]
fn a_changed_byte_on_keel_images_is_caught_and_named() {
    let arch = Arch::X86_64;
    let s = Scenario::new("verity", arch, &[("debarch", arch.debian())]);
    let (at, root) = locate(&s, s.img());
    let bad = s.dir.path().join("changed.img");
    std::fs::copy(s.img(), &bad).expect("copy the image");
    let mut bytes = std::fs::read(&bad).expect("read the copy");
    bytes[at as usize + 100] ^= 0x20;
    std::fs::write(&bad, &bytes).expect("write the copy");
    drop(bytes);

    let (good, changed) = thread::scope(|t| {
        let good = t.spawn(|| boot(&s, s.img(), false));
        let changed = boot(&s, &bad, true);
        (good.join().expect("the first boot"), changed)
    });

    let said = "keel: images: dm-verity on /dev/";
    for run in [&good, &changed] {
        assert!(run.console.contains(said), "{arch}: keel-init did not map keel-images:\n{}", run.console);
        assert!(
            run.console.contains(&format!("root hash {}", &root[..16])),
            "{arch}: not root {root}:\n{}",
            run.console
        );
    }
    assert!(good.console.contains("reader| READ-OK"), "{arch}: reader failed on the image as built:\n{}", good.console);
    assert!(!good.console.contains(REPORT), "{arch}: corruption reported on the image as built:\n{}", good.console);

    assert!(!changed.console.contains("reader| READ-OK"), "{arch}: the changed byte was read:\n{}", changed.console);
    let report = changed
        .console
        .lines()
        .find(|l| l.starts_with(REPORT))
        .unwrap_or_else(|| panic!("{arch}: no `{REPORT}`:\n{}", changed.console));
    assert!(report.contains("container reader exited with status"), "{arch}: the report names no reader: {report}");
    let after = changed.console.split(report).nth(1).unwrap_or_default();
    assert!(after.matches("beat| beat").count() >= 3, "{arch}: beat stopped after the report:\n{}", changed.console);

    // The report is in reader's log file too.
    let log = cat(&s.keel_data(Some(&bad)), "/logs/reader.log").0;
    assert!(log.contains("images partition corrupted"), "{arch}: reader's log lacks the report:\n{log}");
    println!("{arch}: one changed byte at disk offset {} in {FILE}: {report}", at + 100);
}
