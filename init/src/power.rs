//! The power button: evdev devices that report KEY_POWER, read without blocking.
//!
//! Without acpid or logind, the kernel turns the ACPI power button (x86_64) and the power key of
//! the aarch64 `virt` machine (a GPIO key) into input events only. keel-init finds the
//! `/sys/class/input/event*` devices whose key capabilities include KEY_POWER, opens their
//! `/dev/input/event*` nodes (devtmpfs makes them once `evdev` is loaded) and the supervisor
//! polls them: a press is a request for a graceful power-off.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// `EV_KEY` from linux/input-event-codes.h.
const EV_KEY: u16 = 1;
/// `KEY_POWER` from linux/input-event-codes.h.
const KEY_POWER: u16 = 116;
/// A key press (0 is a release, 2 an autorepeat).
const PRESSED: i32 = 1;
/// `struct input_event` on a 64-bit kernel: a `struct timeval` (two 64-bit fields), then
/// `__u16 type`, `__u16 code`, `__s32 value`.
const EVENT_SIZE: usize = 24;
/// Offset of `type` in the record.
const TYPE_AT: usize = 16;
/// Bits in one word of a sysfs capability bitmap (an `unsigned long`).
const WORD_BITS: usize = usize::BITS as usize;

/// Where the kernel lists input event devices.
pub const SYS_INPUT: &str = "/sys/class/input";
/// Where devtmpfs puts their nodes.
pub const DEV_INPUT: &str = "/dev/input";

/// An open input device that has a power key.
#[derive(Debug)]
pub struct Button {
    /// `eventN`.
    pub node: String,
    /// The device's name (`Power Button`, `gpio-keys`).
    pub name: String,
    /// `/dev/input/eventN`, non-blocking.
    pub file: File,
}

impl Button {
    /// Read every pending event: whether the power key was pressed. An error (end of file
    /// included) means the device is gone.
    pub fn pressed(&mut self) -> io::Result<bool> {
        let mut pressed = false;
        let mut buf = [0u8; EVENT_SIZE * 16];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => pressed |= power_pressed(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(pressed)
    }
}

/// Open every input device under `sys` (`/sys/class/input`) whose key capabilities include
/// KEY_POWER, from `dev` (`/dev/input`). Devices that cannot be read are reported in the second
/// list (`eventN: reason`) and skipped.
pub fn open_buttons(sys: &Path, dev: &Path) -> (Vec<Button>, Vec<String>) {
    let mut buttons = Vec::new();
    let mut problems = Vec::new();
    let entries = match fs::read_dir(sys) {
        Ok(e) => e,
        Err(e) => return (buttons, vec![format!("{}: {e}", sys.display())]),
    };
    let mut nodes: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("event"))
        .collect();
    nodes.sort();
    for node in nodes {
        let device = sys.join(&node).join("device");
        let Ok(caps) = fs::read_to_string(device.join("capabilities/key")) else { continue };
        if !has_key(&caps, KEY_POWER) {
            continue;
        }
        let name = fs::read_to_string(device.join("name")).map(|n| n.trim().to_string()).unwrap_or_default();
        match OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(dev.join(&node)) {
            Ok(file) => buttons.push(Button { node, name, file }),
            Err(e) => problems.push(format!("{node} ({name}): open {}: {e}", dev.join(&node).display())),
        }
    }
    (buttons, problems)
}

/// Whether a sysfs capability bitmap (hex words, most significant first, e.g.
/// `10000000000000 0`) has bit `code` set.
fn has_key(bitmap: &str, code: u16) -> bool {
    let code = usize::from(code);
    let words: Vec<&str> = bitmap.split_whitespace().collect();
    let Some(index) = words.len().checked_sub(1 + code / WORD_BITS) else { return false };
    let Some(word) = words.get(index).and_then(|w| u64::from_str_radix(w, 16).ok()) else { return false };
    (word >> (code % WORD_BITS)) & 1 == 1
}

/// Whether `records` (whole `struct input_event`s) hold a KEY_POWER press.
fn power_pressed(records: &[u8]) -> bool {
    records.chunks_exact(EVENT_SIZE).any(|r| {
        let field = |at: usize| r.get(at..at + 2).and_then(|b| b.try_into().ok()).map(u16::from_ne_bytes);
        let value = r.get(TYPE_AT + 4..TYPE_AT + 8).and_then(|b| b.try_into().ok()).map(i32::from_ne_bytes);
        field(TYPE_AT) == Some(EV_KEY) && field(TYPE_AT + 2) == Some(KEY_POWER) && value == Some(PRESSED)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn event(kind: u16, code: u16, value: i32) -> Vec<u8> {
        let mut r = vec![0xAAu8; TYPE_AT];
        r.extend_from_slice(&kind.to_ne_bytes());
        r.extend_from_slice(&code.to_ne_bytes());
        r.extend_from_slice(&value.to_ne_bytes());
        assert_eq!(r.len(), EVENT_SIZE);
        r
    }

    #[test]
    fn capability_bitmaps() {
        // The ACPI power button: only KEY_POWER (bit 116 = word 1, bit 52).
        assert!(has_key("10000000000000 0", KEY_POWER));
        // gpio-keys on the virt machine.
        assert!(has_key("10000000000000 0", 116));
        assert!(!has_key("10000000000000 0", 115));
        assert!(!has_key("0", KEY_POWER));
        assert!(!has_key("", KEY_POWER));
        assert!(!has_key("zz 0", KEY_POWER));
        // A keyboard: many words, KEY_POWER among them.
        let kbd = "402000000 3803078f800d001 feffffdfffefffff fffffffffffffffe";
        assert!(has_key(kbd, KEY_POWER));
        assert!(has_key(kbd, 1), "KEY_ESC");
        assert!(!has_key(kbd, 0), "KEY_RESERVED");
    }

    #[test]
    fn only_a_power_key_press_counts() {
        let syn = event(0, 0, 0);
        let press = event(EV_KEY, KEY_POWER, 1);
        let release = event(EV_KEY, KEY_POWER, 0);
        let other = event(EV_KEY, 115, 1);
        assert!(power_pressed(&[syn.clone(), press.clone(), syn.clone()].concat()));
        assert!(!power_pressed(&[release, other, syn].concat()));
        assert!(!power_pressed(&event(2, KEY_POWER, 1)), "EV_REL is not a key");
        // A partial record is not read.
        assert!(!power_pressed(press.get(..EVENT_SIZE - 1).unwrap()));
    }

    #[test]
    fn buttons_are_found_by_capability_and_read() {
        let t = tempfile::tempdir().unwrap();
        let (sys, dev) = (t.path().join("sys"), t.path().join("dev"));
        let add = |node: &str, name: &str, caps: &str| {
            let d = sys.join(node).join("device");
            fs::create_dir_all(d.join("capabilities")).unwrap();
            fs::write(d.join("capabilities/key"), format!("{caps}\n")).unwrap();
            fs::write(d.join("name"), format!("{name}\n")).unwrap();
        };
        add("event0", "Power Button", "10000000000000 0");
        add("event1", "Mouse", "1f0000 0 0 0 0");
        add("event2", "Gone", "10000000000000 0");
        fs::create_dir_all(sys.join("mouse0")).unwrap();
        fs::create_dir_all(&dev).unwrap();
        fs::write(dev.join("event0"), []).unwrap();
        fs::write(dev.join("event1"), []).unwrap();

        let (mut buttons, problems) = open_buttons(&sys, &dev);
        assert_eq!(buttons.len(), 1, "{buttons:?}");
        assert_eq!((buttons[0].node.as_str(), buttons[0].name.as_str()), ("event0", "Power Button"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("event2 (Gone): open "), "{problems:?}");

        // A regular file reads to its end: the device counts as gone.
        assert_eq!(buttons[0].pressed().unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_pipe_reads_like_a_device() {
        let (r, mut w) = std::os::unix::net::UnixStream::pair().unwrap();
        r.set_nonblocking(true).unwrap();
        let mut b =
            Button { node: "event0".into(), name: "test".into(), file: File::from(std::os::fd::OwnedFd::from(r)) };
        assert!(!b.pressed().unwrap());
        w.write_all(&event(EV_KEY, KEY_POWER, 0)).unwrap();
        assert!(!b.pressed().unwrap());
        w.write_all(&[event(0, 0, 0), event(EV_KEY, KEY_POWER, 1)].concat()).unwrap();
        assert!(b.pressed().unwrap());
        assert!(!b.pressed().unwrap());
        drop(w);
        assert!(b.pressed().is_err(), "the writer is gone");
    }
}
