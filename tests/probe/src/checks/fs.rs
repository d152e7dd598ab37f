//! Filesystems: no block devices, /proc/kcore masked, read-only root and /sys, writable /tmp.

use std::ffi::CStr;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::checks::scratch::Scratch;
use crate::errno::Errno;
use crate::report::{verdict, Outcome, Report};
use crate::sys;

/// Disk paths a container must not be able to open.
const DISKS: [&str; 4] = ["/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/mmcblk0"];
/// How deep the /dev walk goes (it has no cycles without symlinks, which it does not follow).
const MAX_DEPTH: usize = 8;

/// Records no-block-devices, proc-kcore-masked, rootfs-read-only, sys-read-only and
/// tmp-writable (the other masks are `masks`' checks).
pub fn run(report: &mut Report, scratch: &Scratch) {
    report.record("no-block-devices", no_block_devices());
    report.record("proc-kcore-masked", kcore_masked());
    report.record("rootfs-read-only", rootfs_read_only());
    report.record("sys-read-only", read_only_mount(c"/sys").and_then(|d| verdict(d == "ro", format!("/sys {d}"))));
    report.record("tmp-writable", tmp_writable(scratch));
}

fn no_block_devices() -> Outcome {
    let mut found = Vec::new();
    let mut walked = 0;
    walk(Path::new("/dev"), 0, &mut walked, &mut found);
    let mut opened = Vec::new();
    let mut refused = Vec::new();
    for disk in DISKS {
        match OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(disk) {
            Ok(_) => opened.push(disk.to_string()),
            Err(e) => refused.push(format!("{disk}:{}", Errno::from_io(&e))),
        }
    }
    let shown: Vec<String> = found.iter().take(8).map(|p| p.display().to_string()).collect();
    let detail = format!(
        "{} block device(s) among {walked} entries under /dev{}{}; opened: [{}]; refused: {}",
        found.len(),
        if shown.is_empty() { "" } else { ": " },
        shown.join(" "),
        opened.join(" "),
        refused.join(" "),
    );
    verdict(found.is_empty() && opened.is_empty(), detail)
}

/// Collects every block device under `dir` (not following symlinks).
fn walk(dir: &Path, depth: usize, walked: &mut usize, found: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        *walked += 1;
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else { continue };
        let ty = meta.file_type();
        if ty.is_block_device() {
            found.push(path);
        } else if ty.is_dir() && depth < MAX_DEPTH {
            walk(&path, depth + 1, walked, found);
        }
    }
}

/// /proc/kcore is the null device bound over it, or reads as empty (or does not exist).
fn kcore_masked() -> Outcome {
    let path = "/proc/kcore";
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok("absent".to_string()),
        Err(e) => return Err(format!("stat: {}", Errno::from_io(&e))),
    };
    if meta.file_type().is_char_device() {
        let (major, minor) = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
        return verdict((major, minor) == (1, 3), format!("char device {major}:{minor}"));
    }
    let mut byte = [0u8; 1];
    match fs::File::open(path).and_then(|mut f| f.read(&mut byte)) {
        Ok(0) => Ok("reads 0 bytes".to_string()),
        Ok(_) => Err(format!("readable, size {}", meta.len())),
        Err(e) => Err(format!("not masked (a regular file, open/read: {})", Errno::from_io(&e))),
    }
}

/// `ro` or `rw` from statvfs.
fn read_only_mount(path: &CStr) -> Result<&'static str, String> {
    let flags = sys::statvfs_flags(path).map_err(|e| format!("statvfs {path:?}: {e}"))?;
    Ok(if flags & libc::ST_RDONLY != 0 { "ro" } else { "rw" })
}

/// `/` is mounted read-only and creating a file there fails with EROFS (if it is created, it
/// is removed again at once).
fn rootfs_read_only() -> Outcome {
    let mount = read_only_mount(c"/")?;
    let path = "/probe-write";
    let create = match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => {
            let _ = fs::remove_file(path);
            Err("created".to_string())
        }
        Err(e) => Err(Errno::from_io(&e).name()),
    };
    let erofs = create == Err("EROFS".to_string());
    let shown = create.unwrap_or_else(|e| e);
    verdict(mount == "ro" && erofs, format!("/ {mount}, create {path}: {shown}"))
}

/// A file can be written and read back in /tmp (the scratch directory lives there).
fn tmp_writable(scratch: &Scratch) -> Outcome {
    let dir = scratch.dir().map_err(|e| format!("mkdir in /tmp: {e}"))?;
    let mount = read_only_mount(c"/tmp")?;
    let path = dir.join("write-test");
    let data = b"keel-probe";
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(data))
        .and_then(|()| fs::read(&path));
    let _ = fs::remove_file(&path);
    match written {
        Ok(back) if back == data => Ok(format!("/tmp {mount}, wrote and read back {}", path.display())),
        Ok(_) => Err("read back different bytes".to_string()),
        Err(e) => Err(format!("/tmp {mount}, write {}: {}", path.display(), Errno::from_io(&e))),
    }
}
