//! The container's process: signals and session, working directory, identity, stdio, and the exec
//! (argv, environment, `PATH` search). Capabilities, `no_new_privs` and seccomp are placed around
//! these steps by [`crate::caps`] and [`crate::seccomp`].

use std::ffi::CString;
use std::os::fd::RawFd;

use libc::c_char;

use crate::child::{Op, Step};
use crate::error::RuntimeError;

/// `PATH` used when the container's environment has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A NUL-terminated array of C strings (argv or envp) that owns its strings.
#[derive(Debug)]
pub(crate) struct CStringArray {
    /// Owns the strings `ptrs` points into.
    #[cfg_attr(not(test), allow(dead_code))]
    items: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

impl CStringArray {
    pub(crate) fn new(items: Vec<CString>) -> CStringArray {
        // The pointers stay valid when `items` moves: each CString owns its own heap buffer.
        let mut ptrs: Vec<*const c_char> = items.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        CStringArray { items, ptrs }
    }

    #[cfg(test)]
    pub(crate) fn items(&self) -> &[CString] {
        &self.items
    }

    /// The NUL-terminated pointer array, valid as long as `self`.
    pub(crate) fn as_ptr(&self) -> *const *const c_char {
        self.ptrs.as_ptr()
    }
}

/// The exec: paths to try in order, argv, envp.
#[derive(Debug)]
pub(crate) struct Exec {
    pub candidates: Vec<CString>,
    pub argv: CStringArray,
    pub envp: CStringArray,
    /// How to name the exec in an error message.
    pub what: String,
}

impl Exec {
    /// Prepare the exec of `args` with `env`, resolving `args[0]` against the environment's `PATH`.
    pub(crate) fn new(args: &[String], env: &[String]) -> Result<Exec, RuntimeError> {
        let program = args.first().ok_or(RuntimeError::NoCommand)?;
        if program.is_empty() {
            return Err(RuntimeError::NoCommand);
        }
        let candidates =
            candidates(program, env).into_iter().map(|c| cstring(c, "the command")).collect::<Result<_, _>>()?;
        let argv = args.iter().map(|a| cstring(a.as_str(), "an argument")).collect::<Result<_, _>>()?;
        let envp = env.iter().map(|e| cstring(e.as_str(), "an environment variable")).collect::<Result<_, _>>()?;
        let what = if program.contains('/') {
            format!("exec {program}")
        } else {
            format!("exec {program} (PATH={})", search_path(env))
        };
        Ok(Exec { candidates, argv: CStringArray::new(argv), envp: CStringArray::new(envp), what })
    }

    #[cfg(test)]
    pub(crate) fn for_tests(candidates: &[&str], what: &str) -> Exec {
        let c = |s: &str| CString::new(s).unwrap_or_default();
        Exec {
            candidates: candidates.iter().map(|s| c(s)).collect(),
            argv: CStringArray::new(vec![c("prog")]),
            envp: CStringArray::new(vec![]),
            what: what.to_string(),
        }
    }
}

/// The `PATH` the search uses: the environment's, or [`DEFAULT_PATH`].
pub fn search_path(env: &[String]) -> &str {
    env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH)
}

/// The paths execvp(3) would try for `program`: itself if it names a path (has a `/`), else each
/// `PATH` directory joined with it (an empty entry is the working directory).
pub fn candidates(program: &str, env: &[String]) -> Vec<String> {
    if program.contains('/') {
        return vec![program.to_string()];
    }
    search_path(env)
        .split(':')
        .map(|dir| match dir {
            "" => program.to_string(),
            d if d.ends_with('/') => format!("{d}{program}"),
            d => format!("{d}/{program}"),
        })
        .collect()
}

/// Descriptors the container's stdio comes from (the parent's copies; all above 2).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stdio {
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
}

/// First steps of the child: signals back to defaults (init blocks some and ignores SIGPIPE, and
/// both survive exec), then a session of its own.
pub(crate) fn prelude() -> Vec<Step> {
    vec![Step::new("reset signals", Op::ResetSignals), Step::new("setsid", Op::NewSession)]
}

/// The working directory, once inside the new root ([`keel_plan::workdir_problem`] refused
/// first), then checked to be inside it: `getcwd` must give an absolute path, not one the
/// kernel marks unreachable (CVE-2024-21626: a directory reached through a descriptor from
/// outside the root).
pub(crate) fn cwd_steps(cwd: &str) -> Result<Vec<Step>, RuntimeError> {
    if let Some(why) = keel_plan::workdir_problem(cwd) {
        return Err(RuntimeError::Workdir { cwd: cwd.to_string(), why });
    }
    Ok(vec![
        Step::new(format!("chdir to the working directory {cwd}"), Op::Chdir(cstring(cwd, "the working directory")?)),
        Step::new("check the working directory is inside the root", Op::CheckCwd),
    ])
}

/// The identity the container runs as (ids inside its user namespace), with no extra groups.
pub(crate) fn identity_steps(uid: u32, gid: u32) -> Vec<Step> {
    vec![
        Step::new("setgroups []", Op::ClearGroups),
        Step::new(format!("setgid {gid}"), Op::SetGid(gid)),
        Step::new(format!("setuid {uid}"), Op::SetUid(uid)),
    ]
}

/// stdio from the parent's descriptors, and every other descriptor closed on exec.
pub(crate) fn stdio_steps(stdio: Stdio) -> Vec<Step> {
    vec![
        Step::new("stdin from /dev/null", Op::Dup2 { from: stdio.stdin, to: 0 }),
        Step::new("stdout to the pipe", Op::Dup2 { from: stdio.stdout, to: 1 }),
        Step::new("stderr to the pipe", Op::Dup2 { from: stdio.stderr, to: 2 }),
        Step::new("close other descriptors on exec", Op::CloseOnExecFrom(3)),
    ]
}

/// A C string from `s`, or an error naming `what` holds a NUL byte.
pub(crate) fn cstring(s: impl Into<Vec<u8>>, what: &str) -> Result<CString, RuntimeError> {
    CString::new(s).map_err(|_| RuntimeError::Nul { what: what.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_path_is_used_as_is() {
        assert_eq!(candidates("/bin/sh", &env(&["PATH=/x"])), ["/bin/sh"]);
        assert_eq!(candidates("./run", &env(&[])), ["./run"]);
    }

    #[test]
    fn a_name_is_searched_in_the_containers_path() {
        assert_eq!(candidates("sh", &env(&["HOME=/", "PATH=/usr/bin:/bin/:"])), ["/usr/bin/sh", "/bin/sh", "sh"]);
    }

    #[test]
    fn no_path_means_the_default() {
        let c = candidates("sh", &env(&["HOME=/"]));
        assert_eq!(c.first().map(String::as_str), Some("/usr/local/sbin/sh"));
        assert_eq!(c.last().map(String::as_str), Some("/bin/sh"));
        assert_eq!(c.len(), 6);
    }

    #[test]
    fn exec_keeps_argv0_and_names_the_search() {
        let e = Exec::new(&env(&["sh", "-c", "true"]), &env(&["PATH=/bin"])).unwrap();
        assert_eq!(e.argv.items(), [c"sh", c"-c", c"true"]);
        assert_eq!(e.candidates, [c"/bin/sh"]);
        assert_eq!(e.what, "exec sh (PATH=/bin)");
        assert_eq!(e.envp.items(), [c"PATH=/bin"]);
    }

    #[test]
    fn bad_commands_are_refused_before_any_fork() {
        assert!(matches!(Exec::new(&[], &[]), Err(RuntimeError::NoCommand)));
        assert!(matches!(Exec::new(&env(&[""]), &[]), Err(RuntimeError::NoCommand)));
        assert!(matches!(Exec::new(&env(&["/bin/sh", "a\0b"]), &[]), Err(RuntimeError::Nul { .. })));
        assert!(matches!(Exec::new(&env(&["/bin/sh"]), &env(&["A=\0"])), Err(RuntimeError::Nul { .. })));
    }

    #[test]
    fn the_pointer_array_is_null_terminated() {
        let a = CStringArray::new(vec![CString::from(c"a"), CString::from(c"b")]);
        assert_eq!(a.ptrs.len(), 3);
        assert!(a.ptrs.last().is_some_and(|p| p.is_null()));
        assert_eq!(a.ptrs.first().copied(), a.items.first().map(|s| s.as_ptr()));
    }
}
