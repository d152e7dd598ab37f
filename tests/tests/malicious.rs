//! The malicious-image corpus (tests/malicious/make-corpus): OCI layouts that are valid except
//! for one bad layer entry, header, digest, blob or document.
//!
//! - The cases meant to be rejected fail one `keel check` with exit status 2, each naming its
//!   container's `image` key, with the expected words in the message.
//! - The cases meant to be neutralised build, together, into one image, and what each case
//!   did is checked in its container's tree on the keel-images partition, with debugfs.
//! - Nothing is read or written outside the input and output: a canary directory next to the
//!   corpus (which many cases aim at) is unchanged, the input is unchanged, the canary's secret
//!   appears in no output, and under `strace -f -y` every path keel touches, named or as an
//!   opened fd resolved to (so a symlink followed out of the input is seen), is in the input,
//!   the output (the only place it writes), the pinned packages, its own binaries or the
//!   system's libraries; none is in the canary directory.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use keel_builder::config::MAX_SHOWN_ERRORS;
use keel_tests::{debugfs, images_partition, keel_bin, kernel_toml, root, text, tool};
use sha2::{Digest, Sha256};

/// The most memory over its baseline `keel check` may take to refuse one of the costly layers.
const MAX_HOSTILE_EXTRA_KIB: u64 = 64 * 1024;

/// One case of the corpus, as cases.tsv lists it.
#[derive(Debug, Default)]
struct Case {
    name: String,
    /// For rejections: words the message must hold.
    message: Option<String>,
    /// For neutralised cases: (kind, path, value).
    checks: Vec<(String, String, String)>,
}

fn read_cases(corpus: &Path) -> Vec<Case> {
    let tsv = std::fs::read_to_string(corpus.join("cases.tsv")).expect("the generator writes cases.tsv");
    let mut cases: Vec<Case> = Vec::new();
    for line in tsv.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["reject", name, message] => {
                cases.push(Case { name: name.to_string(), message: Some(message.to_string()), checks: vec![] })
            }
            ["neutralise", name] => cases.push(Case { name: name.to_string(), ..Case::default() }),
            ["check", name, kind, path, rest @ ..] => {
                let c = cases.iter_mut().find(|c| c.name == *name).expect("a check follows its case");
                c.checks.push((kind.to_string(), path.to_string(), rest.first().unwrap_or(&"").to_string()));
            }
            _ => panic!("cases.tsv: bad line `{line}`"),
        }
    }
    cases
}

/// Every file and directory under `dir`: path → (size, mode, mtime, sha256 of the content).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, u32, i64, String)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let hash =
                if md.is_file() { hex::encode(Sha256::digest(std::fs::read(&p).unwrap())) } else { String::new() };
            if md.is_dir() {
                stack.push(p.clone());
            }
            out.insert(p, (md.len(), md.mode(), md.mtime(), hash));
        }
    }
    out
}

/// Run keel under `strace -f`, recording every file syscall to `log`.
fn traced_keel(cwd: &Path, log: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-y", "-qq", "-e", "trace=%file", "-o"]).arg(log).arg(keel_bin()).args(args).current_dir(cwd);
    // cargo points the loader at the toolchain's libraries; keel needs only the system's.
    cmd.env_remove("LD_LIBRARY_PATH");
    cmd.output().expect("run strace (make setup installs it)")
}

/// Lexically normalised absolute path.
fn normal(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// The lines of an strace log with each call that another thread interrupted joined again:
/// `PID name(args <unfinished ...>` and a later `PID <... name resumed>rest` become
/// `PID name(argsrest`, so the result (and the path `-y` resolves it to) stays with its call.
fn joined(log: &str) -> Vec<String> {
    let mut pending: BTreeMap<&str, &str> = BTreeMap::new();
    let mut out = Vec::new();
    for line in log.lines() {
        let Some((pid, rest)) = line.split_once(' ') else { continue };
        if let Some(head) = line.strip_suffix(" <unfinished ...>") {
            pending.insert(pid, head);
        } else if let Some(tail) = rest.strip_prefix("<... ") {
            let tail = tail.split_once("resumed>").map_or(tail, |(_, t)| t);
            match pending.remove(pid) {
                Some(head) => out.push(format!("{head}{tail}")),
                None => panic!("strace: a call resumed that did not start: {line}"),
            }
        } else {
            out.push(line.to_string());
        }
    }
    // A call still unfinished when the log ends (the process exited in it) is audited as it is.
    out.extend(pending.into_values().map(str::to_string));
    out
}

/// The syscall and the paths of one strace line: its quoted path arguments, relative ones
/// resolved against the dirfd before them (`-y` prints it as `N</dir>`) or the cwd, and empty
/// ones (`AT_EMPTY_PATH`) standing for that dirfd; and the path of the fd it returned
/// (`= N</path>`), which is what the kernel resolved the arguments to: the file actually
/// opened, after any symlinks.
fn paths_of(line: &str, cwd: &str) -> Option<(String, Vec<String>)> {
    let rest = line.split_once(' ')?.1;
    let (name, args) = rest.split_once('(')?;
    let (args, result) = args.rsplit_once(") = ").map_or((args, None), |(a, r)| (a, Some(r)));
    let resolved = result.and_then(|r| {
        let (fd, p) = r.trim_end().split_once('<')?;
        let p = p.strip_suffix('>')?;
        (fd.parse::<u32>().is_ok() && p.starts_with('/')).then_some(p)
    });
    let mut paths = Vec::new();
    let mut last_dir = cwd.to_string();
    let mut depth = 0;
    let mut chars = args.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            '<' if depth == 0 => {
                let ann: String = chars.by_ref().take_while(|c| *c != '>').collect();
                // A dirfd: the base of the path argument after it (not itself touched).
                if ann.starts_with('/') {
                    last_dir = ann;
                }
            }
            '"' => {
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => s.extend(chars.next()),
                        '"' => break,
                        c => s.push(c),
                    }
                }
                if depth > 0 {
                    continue;
                }
                let p = if s.starts_with('/') {
                    s
                } else if s.is_empty() {
                    last_dir.clone()
                } else {
                    format!("{last_dir}/{s}")
                };
                paths.push(normal(&p));
            }
            _ => {}
        }
    }
    // Audited too where it is not the path named (each offence once).
    paths.extend(resolved.map(normal).filter(|r| !paths.contains(r)));
    Some((name.to_string(), paths))
}

fn is_write(name: &str, line: &str) -> bool {
    const WRITES: &[&str] = &[
        "creat",
        "mkdir",
        "mkdirat",
        "rename",
        "renameat",
        "renameat2",
        "unlink",
        "unlinkat",
        "rmdir",
        "link",
        "linkat",
        "symlink",
        "symlinkat",
        "chmod",
        "fchmodat",
        "chown",
        "lchown",
        "fchownat",
        "truncate",
        "utimensat",
        "utimes",
        "mknod",
        "mknodat",
        "setxattr",
        "lsetxattr",
        "removexattr",
    ];
    WRITES.contains(&name)
        || (name.starts_with("open") && ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"].iter().any(|f| line.contains(f)))
}

/// Check one strace log: returns the offending lines.
fn audit(log: &Path, cwd: &Path, input: &Path, out: &Path, canary: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap();
    let under = |p: &str, dir: &Path| {
        let d = dir.to_string_lossy();
        p == d || p.starts_with(&format!("{d}/"))
    };
    let system = [
        "/etc/ld.so.cache",
        "/etc/ld.so.preload",
        "/lib",
        "/lib64",
        "/usr/lib",
        "/proc/self",
        "/sys/fs/cgroup",
        "/sys/devices/system/cpu",
        "/dev/null",
    ];
    // The pinned packages and keel's binaries as named, and where they really are (`.cache` may
    // be a symlink): a returned fd's path is the real one.
    let named = [root().join(".cache/debs"), root().join("target")];
    let allowed: Vec<PathBuf> = named.iter().flat_map(|d| [d.clone(), d.canonicalize().unwrap_or(d.clone())]).collect();
    let mut bad = Vec::new();
    let mut lines = 0;
    for line in joined(&text) {
        let line = line.as_str();
        let Some((name, paths)) = paths_of(line, &cwd.to_string_lossy()) else { continue };
        lines += 1;
        let write = is_write(&name, line);
        for p in paths {
            let proc_own =
                p.starts_with("/proc/") && p[6..].split('/').next().is_some_and(|s| s.parse::<u32>().is_ok());
            let ok = if under(&p, canary) {
                false
            } else if write {
                under(&p, out)
            } else {
                under(&p, input)
                    || under(&p, out)
                    || allowed.iter().any(|d| under(&p, d))
                    || proc_own
                    || system.iter().any(|s| under(&p, Path::new(s)))
            };
            if !ok {
                bad.push(format!("{}: `{p}` ({}) in: {line}", log.display(), if write { "write" } else { "read" }));
            }
        }
    }
    assert!(lines > 10, "{}: strace recorded almost nothing:\n{text}", log.display());
    bad
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_corpus_is_rejected_or_neutralised_and_nothing_outside_is_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let (input, out, canary, logs) = (base.join("input"), base.join("out"), base.join("canary"), base.join("strace"));
    for d in [&input, &out, &canary, &logs] {
        std::fs::create_dir_all(d).unwrap();
    }
    // The canary: a secret the corpus aims at, unguessable, and a directory beside it.
    let secret =
        format!("KEEL-CANARY-{}", hex::encode(Sha256::digest(format!("{base:?}{:?}", std::time::SystemTime::now()))));
    std::fs::write(canary.join("secret"), &secret).unwrap();
    std::fs::create_dir(canary.join("sub")).unwrap();
    std::fs::write(canary.join("sub/file"), "canary\n").unwrap();
    let canary_before = snapshot(&canary);

    let corpus = input.join("corpus");
    let o = tool(
        "python3",
        &[
            &root().join("tests/malicious/make-corpus").to_string_lossy(),
            &corpus.to_string_lossy(),
            &canary.to_string_lossy(),
        ],
    );
    assert!(o.status.success(), "make-corpus failed:\n{}", text(&o));
    let cases = read_cases(&corpus);
    assert!(cases.len() >= 10, "only {} cases", cases.len());
    let input_before = snapshot(&input);

    let kernel = kernel_toml();
    let config = |name: &str, containers: &[&Case]| {
        // Small logs, so that forty containers' logs fit keel-data.
        let mut c = format!(
            "version = 1\nname = \"{name}\"\narch = \"x86_64\"\n\n[host]\nlog-size = \"16KiB\"\nlog-files = 1\n\n{kernel}"
        );
        for case in containers {
            let layout = corpus.join(&case.name);
            c.push_str(&format!("\n[[container]]\nname = \"{}\"\nimage = \"oci:{}\"\n", case.name, layout.display()));
        }
        let p = input.join(format!("{name}.toml"));
        std::fs::write(&p, c).unwrap();
        p
    };

    let mut failures = Vec::new();
    let mut traces = Vec::new();
    let rejected: Vec<&Case> = cases.iter().filter(|c| c.message.is_some()).collect();
    let neutralised: Vec<&Case> = cases.iter().filter(|c| c.message.is_none()).collect();
    // Rejections: one `keel check` of them all, each case a container of its own, and each must be
    // reported under its own key with its own message.
    let mut run = |what: &str, cases: &[&Case], failures: &mut Vec<String>| {
        let mut pending = cases.to_vec();
        // keel shows at most MAX_SHOWN_ERRORS problems, and it resolves every container's image
        // reference before it flattens any image, stopping between the two on errors: each run
        // takes what fits, and the cases a run did not report go again in the next.
        for round in 1..=4 {
            let batch: Vec<&Case> = pending.iter().take(MAX_SHOWN_ERRORS).copied().collect();
            let cfg = config(&format!("{what}-{round}"), &batch);
            let dest = out.join(format!("{what}-{round}"));
            let log = logs.join(format!("{what}-{round}"));
            let args: Vec<String> = match what {
                "build" => vec!["build".into(), cfg.display().to_string(), "-o".into(), dest.display().to_string()],
                _ => vec!["check".into(), cfg.display().to_string()],
            };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = traced_keel(&input, &log, &args);
            traces.push(log);
            let t = String::from_utf8_lossy(&o.stderr).into_owned();
            if o.status.code() != Some(2) || dest.exists() {
                failures.push(format!(
                    "keel {what} (round {round}): want exit 2 and no output, got {:?}:\n{t}",
                    o.status.code()
                ));
                return;
            }
            let mut reported = Vec::new();
            for (i, case) in batch.iter().enumerate() {
                let key = format!("key `container[{i}].image`: ");
                let want = case.message.as_deref().unwrap_or_default();
                let lines: Vec<&str> = t.lines().filter(|l| l.contains(&key)).collect();
                if !lines.is_empty() {
                    reported.push(case.name.clone());
                    if !lines.iter().any(|l| l.contains(want)) {
                        failures.push(format!(
                            "keel {what}: {}: want `{want}` under {key}got:\n{}",
                            case.name,
                            lines.join("\n")
                        ));
                    }
                }
            }
            eprintln!("keel {what} round {round}: {} case(s), {} reported", batch.len(), reported.len());
            if reported.is_empty() {
                break;
            }
            pending.retain(|c| !reported.contains(&c.name));
            if pending.is_empty() {
                return;
            }
        }
        failures.extend(pending.iter().map(|c| format!("keel {what}: {} was never reported", c.name)));
    };
    run("check", &rejected, &mut failures);
    // A few through keel build too: exit 2 and no output left.
    let named = |names: &[&str]| -> Vec<&Case> {
        names.iter().map(|n| *rejected.iter().find(|c| c.name == *n).unwrap_or_else(|| panic!("no case {n}"))).collect()
    };
    run("build", &named(&["hardlink-canary", "blob-symlink", "dotdot-canary", "gzip-bomb"]), &mut failures);

    // Layers built to cost memory and time out of proportion to their size are refused within a
    // fixed memory bound over what `keel check` takes for the same kernel and one small benign
    // image (most of it is the kernel package's modules). All three are checked in one run, so
    // the bound holds for their sum. Time is reported, not asserted: benchmarks measure speed.
    let base_cfg = config("baseline", &neutralised[..1]);
    let (code, base_kib, base_secs, t) = peak_usage(&input, &base_cfg);
    assert_eq!(code, Some(0), "keel check of the baseline failed:\n{t}");
    eprintln!("baseline (kernel, one benign image): peak {base_kib} KiB, {base_secs} s");
    let hostile = named(&["deep-paths", "deep-symlink", "repeated-opaque"]);
    let (code, kib, secs, t) = peak_usage(&input, &config("hostile", &hostile));
    eprintln!(
        "deep-paths, deep-symlink, repeated-opaque: exit {code:?}, peak {kib} KiB (+{} KiB), {secs} s",
        kib.saturating_sub(base_kib)
    );
    if code != Some(2) || kib > base_kib + MAX_HOSTILE_EXTRA_KIB {
        failures.push(format!(
            "hostile layers: want exit 2 within {MAX_HOSTILE_EXTRA_KIB} KiB over {base_kib} KiB, got {code:?} and {kib} KiB:\n{t}"
        ));
    }
    for (i, case) in hostile.iter().enumerate() {
        let want = format!("key `container[{i}].image`: ");
        if !t.lines().any(|l| l.contains(&want) && l.contains(case.message.as_deref().unwrap_or_default())) {
            failures.push(format!("hostile layers: {} is not reported under {want}:\n{t}", case.name));
        }
    }

    // Neutralised cases: one host, one container each.
    let cfg = config("neutralised", &neutralised);
    let dest = out.join("neutralised");
    let log = logs.join("build-neutralised");
    let o = traced_keel(&input, &log, &["build", &cfg.to_string_lossy(), "-o", &dest.to_string_lossy()]);
    traces.push(log);
    assert!(o.status.success(), "keel build of the neutralised cases failed:\n{}", text(&o));
    let scratch = tempfile::tempdir().unwrap();
    let fs = images_partition(&dest.join("neutralised-x86_64.img"), scratch.path());
    for case in &neutralised {
        for (kind, path, value) in &case.checks {
            let at = format!("/{}{path}", case.name);
            let (stat, err) = debugfs(&fs, &format!("stat {at}"));
            let ok = match kind.as_str() {
                "file" => stat.contains("Type: regular") && debugfs(&fs, &format!("cat {at}")).0.trim_end() == value,
                "dir" => stat.contains("Type: directory"),
                "absent" => err.contains("File not found"),
                "mode" => stat.contains("Type: regular") && stat.contains(&format!("Mode:  0{value:0>3} ")),
                other => panic!("unknown check {other}"),
            };
            if !ok {
                failures.push(format!("{}: {kind} {path} {value} does not hold:\n{stat}{err}", case.name));
            }
        }
    }

    // Nothing outside was read or written.
    for log in &traces {
        failures.extend(audit(log, &input, &input, &out, &canary));
    }
    assert_eq!(snapshot(&canary), canary_before, "the canary directory changed");
    assert_eq!(snapshot(&input), input_before.into_iter().chain(configs(&input)).collect(), "the input changed");
    let top: Vec<_> = std::fs::read_dir(&base).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(top.len(), 4, "something appeared beside input, output and canary: {top:?}");
    for (p, _) in snapshot(&out) {
        if p.is_file() && contains(&std::fs::read(&p).unwrap(), secret.as_bytes()) {
            failures.push(format!("the canary's secret is in {}", p.display()));
        }
    }
    assert!(failures.is_empty(), "{} problem(s):\n{}", failures.len(), failures.join("\n"));
    eprintln!("{} rejected, {} neutralised, {} traces clean", rejected.len(), neutralised.len(), traces.len());
}

/// `keel check CONFIG` under /usr/bin/time: exit code, peak RSS in KiB, seconds, and its output.
fn peak_usage(cwd: &Path, cfg: &Path) -> (Option<i32>, u64, String, String) {
    let o = Command::new("/usr/bin/time")
        .args(["-f", "KEEL-RUSAGE %M %e"])
        .arg(keel_bin())
        .args(["check", &cfg.to_string_lossy()])
        .current_dir(cwd)
        .output()
        .expect("run /usr/bin/time (make setup installs it)");
    let t = text(&o);
    let usage = t.lines().find_map(|l| l.strip_prefix("KEEL-RUSAGE ")).unwrap_or_default();
    let (kib, secs) = usage.split_once(' ').unwrap_or_default();
    (o.status.code(), kib.parse().unwrap_or(u64::MAX), secs.to_string(), t)
}

/// The config files the test itself wrote into the input (present after, not before).
fn configs(input: &Path) -> BTreeMap<PathBuf, (u64, u32, i64, String)> {
    snapshot(input)
        .into_iter()
        .filter(|(p, _)| p.parent() == Some(input) && p.extension().is_some_and(|e| e == "toml"))
        .collect()
}

/// The audit itself: paths in the canary and writes outside the output are caught, relative
/// paths are resolved against their dirfd, and allowed accesses pass.
#[test]
fn the_audit_catches_outside_access() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let (input, out, canary) = (base.join("input"), base.join("out"), base.join("canary"));
    let (i, o, c) = (input.display(), out.display(), canary.display());
    let log = base.join("log");
    let mut lines = vec![format!(
        r#"1 execve("{}", ["keel", "check"], 0x7ffe /* 3 vars */) = 0"#,
        root().join("target/release/keel").display()
    )];
    for _ in 0..10 {
        lines.push(format!(
            r#"1 openat(AT_FDCWD<{i}>, "corpus/x/index.json", O_RDONLY|O_CLOEXEC) = 3<{i}/corpus/x/index.json>"#
        ));
    }
    lines.extend([
        format!(
            r#"1 statx(3<{i}/corpus>, "", AT_STATX_SYNC_AS_STAT|AT_EMPTY_PATH, STATX_ALL, {{stx_mode=S_IFDIR}}) = 0"#
        ),
        format!(r#"1 openat(AT_FDCWD<{i}>, "{o}/x.img", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0666) = 3<{o}/x.img>"#),
        format!(r#"2 unlinkat(5<{o}/.staging>, "x", 0) = 0"#),
        // The offenders.
        format!(r#"1 newfstatat(AT_FDCWD<{i}>, "../canary/secret", 0x7ff, 0) = 0"#),
        format!(r#"1 openat(AT_FDCWD<{i}>, "{i}/corpus/new", O_WRONLY|O_CREAT, 0644) = 3<{i}/corpus/new>"#),
        format!(r#"1 mkdirat(AT_FDCWD<{i}>, "/etc/keel-was-here", 0777) = 0"#),
        format!(r#"1 openat(4<{c}>, "secret", O_RDONLY) = 3<{c}/secret>"#),
        // A path in the input that is a symlink to the canary: only the fd's path shows it.
        format!(r#"1 openat(AT_FDCWD<{i}>, "corpus/link", O_RDONLY|O_CLOEXEC) = 3<{c}/sub/file>"#),
        // The same, interrupted by another thread's call and resumed.
        format!(r#"2 openat(AT_FDCWD<{i}>, "corpus/link2", O_RDONLY|O_CLOEXEC <unfinished ...>"#),
        format!(r#"1 close(3<{i}/corpus/x/index.json>) = 0"#),
        format!(r#"2 <... openat resumed>) = 4<{c}/secret>"#),
    ]);
    std::fs::write(&log, lines.join("\n")).unwrap();
    let bad = audit(&log, &input, &input, &out, &canary);
    assert_eq!(bad.len(), 6, "{bad:#?}");
    let want =
        ["canary/secret", "corpus/new", "/etc/keel-was-here", "canary/secret", "canary/sub/file", "canary/secret"];
    for (b, what) in bad.iter().zip(want) {
        assert!(b.contains(what), "{b}");
    }
    assert!(bad[5].contains("corpus/link2"), "the resumed call is not joined to its start: {}", bad[5]);
}
