//! keel-data fills a larger disk: an image copied to a disk grown with `qemu-img resize` boots,
//! keel-init moves the GPT to the disk's end, extends keel-data and grows its ext4 online; the
//! host then checks the disk with sgdisk, e2fsck and dumpe2fs. A second boot of the same disk
//! grows nothing. The same boots check the clock (set from the RTC, close to the host's) and the
//! entropy line (virtio-rng in use).
//!
//! The kernel's own messages stay on (no `quiet`): on the first boot it warns that the backup
//! GPT is not at the end of the disk, on the second it must not.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keel_plan::{Arch, DATA_LABEL};
use keel_tests::scenario::{fsck_clean, Run, Scenario};
use keel_tests::{both_arches, partitions, text, tool};

/// The disk the image is copied to.
const DISK_BYTES: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
/// What the kernel prints while the backup GPT is not at the disk's end.
const KERNEL_GPT_WARNING: &str = "GPT:Alternate GPT header not at the end of the disk";

/// Boot `disk` in place to its clean power-off; the container must have run.
fn boot(s: &Scenario, disk: &Path, which: &str) -> Run {
    let run = s.boot_in_place(Some(disk), Duration::from_secs(400), &format!("{which} boot"));
    assert!(run.has("hello| hello"), "{}: {which} boot: no container output:\n{}", s.arch, run.console);
    run
}

/// `Key: value` from dumpe2fs -h.
fn dumpe2fs_field(fs: &Path, key: &str) -> u64 {
    let o = tool("dumpe2fs", &["-h", &fs.to_string_lossy()]);
    let t = text(&o);
    t.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().strip_prefix(':')).map(str::trim))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("dumpe2fs: no {key}:\n{t}"))
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SSZ`, with `date`.
fn parse_time(iso: &str) -> i64 {
    let o = tool("date", &["-u", "-d", iso, "+%s"]);
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or_else(|_| panic!("date -d {iso}: {}", text(&o)))
}

fn keel_data_fills_a_larger_disk(arch: Arch) {
    let s = Scenario::new("grow", arch, &[]);
    let disk = s.dir.path().join("disk.img");
    std::fs::copy(s.img(), &disk).unwrap();
    let before = partitions(&disk);
    let data_before = before.iter().find(|p| p.name == DATA_LABEL).cloned().expect("keel-data in the image");
    let image_bytes = std::fs::metadata(&disk).unwrap().len();
    let o = tool("qemu-img", &["resize", "-q", "-f", "raw", &disk.to_string_lossy(), &DISK_BYTES.to_string()]);
    assert!(o.status.success(), "qemu-img resize: {}", text(&o));
    let o = tool("sgdisk", &["-v", &disk.to_string_lossy()]);
    assert!(
        text(&o).contains("doesn't reside\nat the end of the disk"),
        "sgdisk -v sees no problem before:\n{}",
        text(&o)
    );

    // Boot 1: growth.
    let host_before = now();
    let first = boot(&s, &disk, "first");
    let console = &first.console;
    assert!(console.contains(KERNEL_GPT_WARNING), "{arch}: the kernel did not see the small GPT:\n{console}");
    let old_mib = (data_before.last + 1 - data_before.first) * 512 / MIB;
    let grown = console
        .lines()
        .find(|l| l.contains(&format!("keel: {DATA_LABEL} grown from {old_mib} MiB to ")))
        .unwrap_or_else(|| panic!("{arch}: no growth line:\n{console}"));
    assert!(!console.contains("not grown") && !console.contains("but not its filesystem"), "{arch}:\n{console}");

    // The clock: the kernel set it from the RTC, which QEMU starts at the host's UTC time.
    let clock = console
        .lines()
        .find_map(|l| l.split("keel: clock ").nth(1))
        .unwrap_or_else(|| panic!("{arch}: no clock line:\n{console}"));
    let (iso, source) = clock.trim().split_once(' ').unwrap_or_else(|| panic!("{arch}: clock line {clock}"));
    assert!(source.starts_with("from rtc"), "{arch}: the clock was not set from an RTC: {clock}");
    let guest = parse_time(iso);
    assert!(
        (host_before - 5..=now() + 5).contains(&guest),
        "{arch}: guest clock {iso} is not the host's ({host_before}..{})",
        now()
    );
    // Entropy: virtio-rng is the hwrng, and the pool is ready when init asks.
    let entropy = console
        .lines()
        .find(|l| l.contains("keel: entropy"))
        .unwrap_or_else(|| panic!("{arch}: no entropy line:\n{console}"));
    assert!(entropy.contains("from hwrng virtio_rng.") && entropy.ends_with("random pool ready"), "{arch}: {entropy}");
    let crng = console.lines().find(|l| l.contains("random: crng init done")).unwrap_or("(no crng init line)");

    // The disk, seen from the host.
    let o = tool("sgdisk", &["-v", &disk.to_string_lossy()]);
    assert!(o.status.success() && text(&o).contains("No problems found"), "{arch}: sgdisk -v:\n{}", text(&o));
    let after = partitions(&disk);
    assert_eq!(after.len(), before.len(), "{arch}: {after:?}");
    for (a, b) in after.iter().zip(&before) {
        assert_eq!((a.number, &a.name, a.first), (b.number, &b.name, b.first), "{arch}: {after:?}");
        if a.name != DATA_LABEL {
            assert_eq!(a.last, b.last, "{arch}: {} changed: {after:?}", a.name);
        }
    }
    let data = after.iter().find(|p| p.name == DATA_LABEL).cloned().unwrap();
    let disk_sectors = DISK_BYTES / 512;
    let gap = (disk_sectors - (data.last + 1)) * 512;
    assert!(gap <= MIB, "{arch}: keel-data ends {gap} bytes before the disk's end: {data:?}");
    assert_eq!((data.last + 1) % 2048, 0, "{arch}: keel-data does not end on a MiB boundary: {data:?}");
    let part_bytes = (data.last + 1 - data.first) * 512;
    assert!(grown.contains(&format!(" to {} MiB in ", part_bytes / MIB)), "{arch}: {grown}");

    let fs = s.keel_data(Some(&disk));
    fsck_clean(&fs, arch);
    let (blocks, block_size) = (dumpe2fs_field(&fs, "Block count"), dumpe2fs_field(&fs, "Block size"));
    assert_eq!(
        blocks,
        part_bytes / block_size,
        "{arch}: ext4 has {blocks} blocks of {block_size} in {part_bytes} bytes"
    );
    let _ = std::fs::remove_file(&fs);

    // Boot 2: nothing to do.
    let second = boot(&s, &disk, "second");
    assert!(!second.console.contains(KERNEL_GPT_WARNING), "{arch}: the kernel still warns:\n{}", second.console);
    for says in [" grown from ", " not grown", " not extended", "GPT moved"] {
        assert!(!second.console.contains(says), "{arch}: the second boot says `{says}`:\n{}", second.console);
    }
    let again = partitions(&disk);
    assert_eq!(again.iter().map(|p| p.last).collect::<Vec<_>>(), after.iter().map(|p| p.last).collect::<Vec<_>>());

    eprintln!(
        "{arch}: image {} MiB, disk {} MiB; keel-data {old_mib} MiB -> {} MiB (sectors {}-{}, {gap} bytes before the \
         end), ext4 {blocks} x {block_size} B; `{}`; `{}`; `{}`; `{}`; boots {:.1} s and {:.1} s",
        image_bytes / MIB,
        DISK_BYTES / MIB,
        part_bytes / MIB,
        data.first,
        data.last,
        grown.trim(),
        clock.trim(),
        entropy.trim(),
        crng.trim(),
        first.wall.as_secs_f64(),
        second.wall.as_secs_f64()
    );
}

both_arches!(keel_data_fills_a_larger_disk);
