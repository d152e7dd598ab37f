//! The boot disk: its format, and the copy-on-write overlay that keeps a boot from changing it.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Error, Result};

/// On-disk format of an image, as QEMU's `format=` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DiskFormat {
    /// A plain byte-for-byte disk (what keel builds).
    Raw,
    /// QEMU's copy-on-write format.
    Qcow2,
}

impl DiskFormat {
    /// The name QEMU uses.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }

    /// qcow2 if the file starts with qcow2's magic `QFI\xfb`, raw otherwise. Stating the format
    /// explicitly keeps QEMU from probing (and warning about) raw images.
    pub(crate) fn detect(path: &Path) -> Result<DiskFormat> {
        let mut magic = [0u8; 4];
        let mut file = File::open(path).map_err(|e| Error::io(format!("opening disk {}", path.display()), e))?;
        match file.read_exact(&mut magic) {
            Ok(()) if &magic == b"QFI\xfb" => Ok(DiskFormat::Qcow2),
            Ok(()) => Ok(DiskFormat::Raw),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(DiskFormat::Raw),
            Err(e) => Err(Error::io(format!("reading disk {}", path.display()), e)),
        }
    }
}

/// Creates a qcow2 overlay at `overlay` whose backing file is `base`: the VM writes into the
/// overlay and `base` is only ever read. The backing path is made absolute because qcow2 resolves
/// relative backing paths against the overlay's directory.
pub(crate) fn create_overlay(qemu_img: &Path, base: &Path, format: DiskFormat, overlay: &Path) -> Result<()> {
    let fail = |detail: String| Error::Overlay { image: base.to_owned(), detail };
    let base_abs: PathBuf = base.canonicalize().map_err(|e| fail(e.to_string()))?;
    let output = Command::new(qemu_img)
        .args(["create", "-q", "-f", "qcow2", "-F", format.as_str(), "-b"])
        .arg(&base_abs)
        .arg(overlay)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(format!("running {}: {e}", qemu_img.display())))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(fail(format!("qemu-img {}: {}", output.status, stderr.trim())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn detects_qcow2_by_magic_and_defaults_to_raw() {
        let tmp = tempfile::tempdir().unwrap();
        let raw = tmp.path().join("raw");
        fs::write(&raw, [0u8; 512]).unwrap();
        assert_eq!(DiskFormat::detect(&raw).unwrap(), DiskFormat::Raw);
        let tiny = tmp.path().join("tiny");
        fs::write(&tiny, b"QF").unwrap();
        assert_eq!(DiskFormat::detect(&tiny).unwrap(), DiskFormat::Raw);
        let qcow = tmp.path().join("q");
        fs::write(&qcow, b"QFI\xfb\0\0\0\x03").unwrap();
        assert_eq!(DiskFormat::detect(&qcow).unwrap(), DiskFormat::Qcow2);
        assert!(matches!(DiskFormat::detect(&tmp.path().join("none")), Err(Error::Io { .. })));
    }

    /// Real `qemu-img`, no VM: the overlay names the absolute base path as its raw backing file,
    /// and writing through the overlay (with `qemu-io`) leaves the base untouched.
    #[test]
    fn overlay_is_backed_by_the_absolute_base_and_absorbs_writes() {
        let qemu_img = crate::find_qemu_img().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base.img");
        let content: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
        fs::write(&base, &content).unwrap();
        let overlay = tmp.path().join("overlay.qcow2");
        // A relative base path, to check it is made absolute.
        let relative = base.strip_prefix(std::env::current_dir().unwrap()).map(Path::to_path_buf);
        let base_arg = relative.unwrap_or_else(|_| base.clone());
        create_overlay(&qemu_img, &base_arg, DiskFormat::Raw, &overlay).unwrap();

        let info = Command::new(&qemu_img).args(["info", "--output=json"]).arg(&overlay).output().unwrap();
        assert!(info.status.success());
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(info["format"], "qcow2");
        assert_eq!(info["backing-filename"], base.canonicalize().unwrap().to_str().unwrap());
        assert_eq!(info["backing-filename-format"], "raw");
        assert_eq!(info["virtual-size"], 1 << 20);

        let qemu_io = qemu_img.with_file_name("qemu-io");
        if qemu_io.exists() {
            let status = Command::new(&qemu_io)
                .args(["-f", "qcow2", "-c", "write -P 0x5a 0 64k"])
                .arg(&overlay)
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
        }
        assert_eq!(fs::read(&base).unwrap(), content, "the base image changed");
    }

    #[test]
    fn overlay_errors_name_the_image() {
        let qemu_img = crate::find_qemu_img().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing.img");
        let err = create_overlay(&qemu_img, &missing, DiskFormat::Raw, &tmp.path().join("o")).unwrap_err();
        assert!(matches!(&err, Error::Overlay { image, .. } if image == &missing), "{err:?}");
    }
}
