//! The wall clock. Debian's kernels set it from the RTC themselves (CONFIG_RTC_HCTOSYS=y with
//! rtc0, and the RTC drivers keel's machines have built in: rtc_cmos on x86_64, rtc-efi and
//! pl031 on arm64), so init usually only reports it: `keel: clock 2026-11-23T12:00:00Z from rtc0`.
//! If no RTC set it (a kernel without HCTOSYS, or an RTC driver that came as a module), init
//! reads /dev/rtc0 (RTC_RD_TIME) and sets CLOCK_REALTIME itself.

use std::fs::{self, File};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use keel_plan::time::days_from_civil;
pub use keel_plan::time::iso8601;

use crate::console;
use crate::sys::{self, RtcTime};

/// Where the kernel lists RTCs.
pub const SYS_RTC: &str = "/sys/class/rtc";
/// The RTC init reads when the kernel set the clock from none.
pub const RTC: &str = "/dev/rtc0";

/// Report the clock, setting it from [`RTC`] first when the kernel did not set it from an RTC.
pub fn set() {
    let line = match kernel_set(Path::new(SYS_RTC)) {
        Some(rtc) => format!("clock {} from {rtc}", iso8601(now())),
        None => match set_from(Path::new(RTC)) {
            Ok(secs) => format!("clock {} from rtc0 (set by keel-init)", iso8601(secs)),
            Err(e) => format!("clock {}: not set from an RTC ({e})", iso8601(now())),
        },
    };
    console::say(line);
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The RTC (`rtc0`) whose `hctosys` is 1 under `sys_rtc`: the kernel set the clock from it at boot.
pub fn kernel_set(sys_rtc: &Path) -> Option<String> {
    let mut names: Vec<String> = fs::read_dir(sys_rtc)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.into_iter().find(|n| fs::read_to_string(sys_rtc.join(n).join("hctosys")).is_ok_and(|s| s.trim() == "1"))
}

fn set_from(rtc: &Path) -> std::io::Result<i64> {
    let t = sys::rtc_read(File::open(rtc)?.as_fd())?;
    let secs = rtc_seconds(&t).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{} reads {t:?}", rtc.display()))
    })?;
    sys::set_realtime(secs)?;
    Ok(secs)
}

/// Seconds since the epoch of an RTC reading, if its fields are in range.
pub fn rtc_seconds(t: &RtcTime) -> Option<i64> {
    let ok = (0..60).contains(&t.sec)
        && (0..60).contains(&t.min)
        && (0..24).contains(&t.hour)
        && (1..32).contains(&t.mday)
        && (0..12).contains(&t.mon)
        && (70..1100).contains(&t.year);
    ok.then(|| {
        let days = days_from_civil(i64::from(t.year) + 1900, t.mon as u32 + 1, t.mday as u32);
        days * 86_400 + i64::from(t.hour) * 3600 + i64::from(t.min) * 60 + i64::from(t.sec)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_rtc_readings() {
        let t = RtcTime { sec: 0, min: 0, hour: 12, mday: 23, mon: 10, year: 126, ..RtcTime::default() };
        assert_eq!(rtc_seconds(&t), Some(1_795_435_200));
        let leap = RtcTime { sec: 59, min: 59, hour: 23, mday: 29, mon: 1, year: 124, ..RtcTime::default() };
        assert_eq!(rtc_seconds(&leap).map(iso8601).as_deref(), Some("2024-02-29T23:59:59Z"));
        assert_eq!(rtc_seconds(&RtcTime { mon: 12, mday: 1, year: 126, ..RtcTime::default() }), None);
        assert_eq!(rtc_seconds(&RtcTime::default()), None, "day 0 is not a date");
    }

    #[test]
    fn finds_the_rtc_the_kernel_used() {
        let t = tempfile::tempdir().unwrap();
        for (name, hctosys) in [("rtc0", "0\n"), ("rtc1", "1\n")] {
            fs::create_dir_all(t.path().join(name)).unwrap();
            fs::write(t.path().join(name).join("hctosys"), hctosys).unwrap();
        }
        assert_eq!(kernel_set(t.path()).as_deref(), Some("rtc1"));
        fs::write(t.path().join("rtc1/hctosys"), "0\n").unwrap();
        assert_eq!(kernel_set(t.path()), None);
        assert_eq!(kernel_set(&t.path().join("missing")), None);
    }
}
