//! Persistent volumes: data on keel-data survives a reboot and a power cut.
//!
//! Persistence (both arches): one disk image booted twice in place. `writer` (container uid
//! 1000:1000, so ownership is exercised) writes a note to the volume on the first boot and reads it
//! back on the second; `reader` mounts the same volume read-only, sees the note and gets EROFS when
//! it writes. The volume's target `/srv/notes` is not in the busybox image: the builder adds it.
//! Afterwards keel-data passes `e2fsck -fn`, and debugfs shows the owners stored on disk: the
//! container-level 1000:1000, not the writer's host range (the volume is an idmapped mount).
//!
//! Power cut: keel-probe `records` appends numbered records to a volume, fsyncing each and
//! printing `fsynced N` only after the fsync returned. QEMU is SIGKILLed at a different point in
//! each of several runs on the same disk; each next boot mounts keel-data (journal replay), counts
//! the intact records, and must find every record announced before the cut. A last boot is
//! stopped through the power button, and keel-data then passes `e2fsck -fn`.

use std::time::Duration;

use keel_plan::Arch;
use keel_qemu::Line;
use keel_tests::scenario::{cat, fsck_clean, power_off, Scenario};
use keel_tests::{both_arches, debugfs, wait_until};

/// What the writer puts in the note on the first boot.
const NOTE: &str = "hello-from-boot-1";

/// Boots to power-off take at most this long.
const BOOT: Duration = Duration::from_secs(400);

/// The `User:` and `Group:` of a debugfs `stat` output.
fn owner(stat: &str) -> Option<(u32, u32)> {
    let line = stat.lines().find(|l| l.trim_start().starts_with("User:"))?;
    let mut words = line.split_whitespace();
    let uid = words.nth(1)?.parse().ok()?;
    let gid = words.nth(1)?.parse().ok()?;
    Some((uid, gid))
}

fn volume_survives_a_reboot(arch: Arch) {
    let s = Scenario::new("volumes", arch, &[("note", NOTE)]);

    let first = s.boot_in_place(None, BOOT, "boot 1");
    for needle in [
        "keel: volume notes: created, owner 1000:1000",
        "writer| id=1000:1000 dir=1000:1000",
        "writer| wrote",
        "writer| note=1000:1000",
        &format!("reader| sees: {NOTE} owner=1000:1000"),
        "reader| write failed: touch: /data/x: Read-only file system",
    ] {
        first.expect(needle);
    }

    let second = s.boot_in_place(None, BOOT, "boot 2");
    for needle in [
        "keel: volume notes: found, owner 1000:1000",
        &format!("writer| read: {NOTE}"),
        "writer| note=1000:1000",
        &format!("reader| sees: {NOTE} owner=1000:1000"),
        "reader| write failed: touch: /data/x: Read-only file system",
    ] {
        second.expect(needle);
    }
    second.refute("writer| wrote", "boot 2: the note was written again");

    let data = s.keel_data(None);
    let fsck = fsck_clean(&data, arch);
    let (volume, _) = debugfs(&data, "stat /volumes/notes");
    let (note, _) = debugfs(&data, "stat /volumes/notes/note");
    let (content, _) = cat(&data, "/volumes/notes/note");
    assert_eq!(owner(&volume), Some((1000, 1000)), "{arch}: the volume's owner on disk:\n{volume}");
    assert_eq!(owner(&note), Some((1000, 1000)), "{arch}: the note's owner on disk:\n{note}");
    assert_eq!(content.trim(), NOTE, "{arch}: the note on disk");
    let shown = |console: &str| -> String {
        console
            .lines()
            .filter(|l| l.contains("keel: volume") || l.contains("writer|") || l.contains("reader|"))
            .map(|l| format!("    {}\n", l.trim()))
            .collect()
    };
    eprintln!(
        "{arch}: boot 1:\n{}{arch}: boot 2:\n{}{arch}: on disk /volumes/notes and its note belong to {:?} \
         (container ids, unshifted); e2fsck -fn: {fsck}",
        shown(&first.console),
        shown(&second.console),
        owner(&note),
    );
}

/// How many records past the last boot's count to wait for, then how long after that to cut,
/// per run: varied, so the cut falls at different points of the write-fsync-print cycle.
const CUTS: [(u64, u64); 5] = [(3, 0), (12, 150), (1, 40), (30, 310), (7, 85)];
/// Pause between records in the writer: none, so a cut often falls inside a write or an fsync.
const INTERVAL_MS: u64 = 0;
/// What the kernel prints when it replays keel-data's journal at mount (vda3: the third
/// partition of the virtio disk). The power-cut config leaves out `quiet` so it shows.
const REPLAY: &str = "EXT4-fs (vda3): recovery complete";

/// The numbers N of `writer| probe: <word> N …` lines.
fn numbers(lines: &[Line], word: &str) -> Vec<u64> {
    let prefix = format!("writer| probe: {word} ");
    lines
        .iter()
        .filter_map(|l| l.text.split_once(&prefix).and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok()))
        .collect()
}

/// `records found N torn T` of this boot.
fn found(lines: &[Line]) -> Option<(u64, u64)> {
    lines.iter().find_map(|l| {
        let rest = l.text.split_once("writer| probe: records found ")?.1;
        let mut w = rest.split_whitespace();
        let n = w.next()?.parse().ok()?;
        let torn = w.nth(1)?.parse().ok()?;
        Some((n, torn))
    })
}

fn every_fsynced_record_survives_a_power_cut(arch: Arch) {
    let s = Scenario::new("powercut", arch, &[("interval_ms", &INTERVAL_MS.to_string())]);
    // (found at boot, torn bytes at boot, last announced before the cut)
    let mut runs: Vec<(u64, u64, u64)> = Vec::new();
    let mut replays = 0;
    let mut acked = 0u64;
    for (run, (more, delay_ms)) in CUTS.iter().enumerate() {
        let mut vm = s.start(true);
        wait_until(&mut vm, "records found", Duration::from_secs(300), arch, |l| found(l).is_some());
        let (at_boot, torn) = found(&vm.lines()).unwrap_or_default();
        // The journal is replayed after every cut, and only then.
        let replayed = vm.console().contains(REPLAY);
        assert_eq!(replayed, run > 0, "{arch} run {run}: journal replay {replayed}:\n{}", vm.console());
        replays += usize::from(replayed);
        assert!(
            at_boot >= acked,
            "{arch} run {run}: {at_boot} records found, but {acked} were fsynced before the cut:\n{}",
            vm.console()
        );
        let target = at_boot + more;
        wait_until(&mut vm, &format!("fsynced {target}"), Duration::from_secs(120), arch, |l| {
            numbers(l, "fsynced").iter().any(|n| *n >= target)
        });
        std::thread::sleep(Duration::from_millis(*delay_ms));
        vm.kill();
        let lines = vm.lines();
        let console = vm.console();
        assert!(!console.contains("records failed"), "{arch} run {run}: the writer failed:\n{console}");
        let announced = numbers(&lines, "fsynced");
        // Announced in order, from the first record after the ones found.
        let expected: Vec<u64> = (at_boot + 1..at_boot + 1 + announced.len() as u64).collect();
        assert_eq!(announced, expected, "{arch} run {run}: records out of order:\n{console}");
        acked = announced.last().copied().unwrap_or(at_boot);
        runs.push((at_boot, torn, acked));
    }
    // The last boot: count, then stop cleanly through the power button.
    let mut vm = s.start(true);
    wait_until(&mut vm, "records found", Duration::from_secs(300), arch, |l| found(l).is_some());
    let (last, torn) = found(&vm.lines()).unwrap_or_default();
    assert!(vm.console().contains(REPLAY), "{arch}: no journal replay after the last cut:\n{}", vm.console());
    replays += 1;
    let console = power_off(vm, arch).console;
    assert!(last >= acked, "{arch}: {last} records found after the last cut, {acked} were fsynced:\n{console}");
    runs.push((last, torn, last));

    let data = s.keel_data(None);
    let fsck = fsck_clean(&data, arch);
    let (stat, _) = debugfs(&data, "stat /volumes/log/records");
    assert_eq!(owner(&stat), Some((1000, 1000)), "{arch}: the records' owner on disk:\n{stat}");

    eprintln!(
        "{arch}: {} power cuts on one disk, {INTERVAL_MS} ms between records, keel-data's journal replayed at \
         {replays} boots:",
        CUTS.len()
    );
    for (i, w) in runs.windows(2).enumerate() {
        let (_, _, announced) = w[0];
        let (next_found, next_torn, _) = w[1];
        eprintln!(
            "  cut {}: {announced} records fsynced and announced before the cut; next boot found {next_found} intact \
             (+{} unannounced), {next_torn} torn bytes",
            i + 1,
            next_found - announced
        );
    }
    eprintln!("{arch}: e2fsck -fn after the last boot: {fsck}");
}

both_arches!(volume_survives_a_reboot, every_fsynced_record_survives_a_power_cut);
