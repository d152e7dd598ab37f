//! Kernel modules: opened from the initramfs, then loaded in plan order with finit_module(2).

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use anyhow::Context;
use keel_plan::Module;

use crate::{console, sys};

/// A module file, open and ready to load.
#[derive(Debug)]
pub struct Opened {
    /// Module name.
    pub name: String,
    /// Its `.ko`, open.
    pub file: File,
}

/// What loading one module did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// Loaded now.
    Now,
    /// It was already there (built in, or loaded as a dependency).
    Already,
}

/// Open every module of the plan (before leaving the initramfs, which holds them).
pub fn open(modules: &[Module]) -> anyhow::Result<Vec<Opened>> {
    modules
        .iter()
        .map(|m| {
            let file = File::open(&m.path).with_context(|| format!("open module {} ({})", m.name, m.path))?;
            Ok(Opened { name: m.name.clone(), file })
        })
        .collect()
}

/// Load `modules` in order. EEXIST is reported and skipped; any other error is fatal.
/// Returns how many are loaded (including those already there).
pub fn load(modules: &[Opened]) -> anyhow::Result<usize> {
    for m in modules {
        match outcome(sys::finit_module(m.file.as_fd())) {
            Ok(Loaded::Now) => {}
            Ok(Loaded::Already) => console::say(format_args!("module {} is already loaded (EEXIST)", m.name)),
            Err(e) => return Err(e).with_context(|| format!("load module {}", m.name)),
        }
    }
    Ok(modules.len())
}

/// Whether a finit_module result lets the boot go on.
pub fn outcome(result: io::Result<()>) -> io::Result<Loaded> {
    match result {
        Ok(()) => Ok(Loaded::Now),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(Loaded::Already),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_eexist_is_forgiven() {
        assert_eq!(outcome(Ok(())).unwrap(), Loaded::Now);
        assert_eq!(outcome(Err(io::Error::from_raw_os_error(libc::EEXIST))).unwrap(), Loaded::Already);
        for errno in [libc::ENOEXEC, libc::ENOENT, libc::EPERM, libc::EINVAL] {
            assert!(outcome(Err(io::Error::from_raw_os_error(errno))).is_err());
        }
    }

    #[test]
    fn a_missing_module_file_names_the_module() {
        let err = open(&[Module { name: "virtio_blk".into(), path: "/nonexistent/virtio_blk.ko".into() }]).unwrap_err();
        assert!(format!("{err:#}").starts_with("open module virtio_blk (/nonexistent/virtio_blk.ko): "), "{err:#}");
    }
}
