//! Bad configs: each file in tests/bad-configs/ must fail `keel check` and `keel build` with
//! exit status 2 and one line `FILE:LINE:COLUMN: key `KEY`: message`, naming the key its
//! first line announces (`# expect-key: KEY`), and leave no output behind. `keel check` runs
//! every check `keel build` runs, so both must print the same line.

use std::path::PathBuf;

use keel_tests::{keel, root, text};

fn cases() -> Vec<(PathBuf, String)> {
    let dir = root().join("tests/bad-configs");
    let mut out: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            let first = std::fs::read_to_string(&p).unwrap().lines().next().unwrap_or("").to_string();
            let key =
                first.strip_prefix("# expect-key: ").unwrap_or_else(|| panic!("{}: no expect-key line", p.display()));
            (p, key.trim().to_string())
        })
        .collect();
    out.sort();
    out
}

/// The one error line of a failed `keel check` or `keel build`.
fn check_error(what: &str, path: &std::path::Path, key: &str, o: &std::process::Output) -> Result<String, String> {
    if o.status.code() != Some(2) {
        return Err(format!("{what} {}: exit {:?}, want 2:\n{}", path.display(), o.status.code(), text(o)));
    }
    let stderr = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() != 1 {
        return Err(format!("{what} {}: want one error line, got:\n{stderr}", path.display()));
    }
    let line = lines[0];
    let prefix = format!("{}:", path.display());
    let rest =
        line.strip_prefix(&prefix).ok_or_else(|| format!("{what}: error does not start with the file name: {line}"))?;
    let mut it = rest.splitn(3, ':');
    let (l, c) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
    if l.parse::<u32>().is_err() || c.parse::<u32>().is_err() {
        return Err(format!("{what}: no line:column in `{line}`"));
    }
    if !line.contains(&format!("key `{key}`")) {
        return Err(format!("{what} {}: error does not name key `{key}`: {line}", path.display()));
    }
    Ok(line.to_string())
}

#[test]
fn bad_configs_fail_cleanly() {
    let cases = cases();
    assert!(cases.len() >= 15, "only {} bad configs", cases.len());
    let out_root = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (path, key) in &cases {
        let p = path.to_string_lossy().into_owned();
        let checked = check_error("keel check", path, key, &keel(&["check", &p]));
        let out = out_root.path().join(path.file_stem().unwrap());
        let o = keel(&["build", &p, "-o", &out.to_string_lossy()]);
        let built = check_error("keel build", path, key, &o);
        match (checked, built) {
            (Ok(c), Ok(b)) if c != b => {
                failures.push(format!("{p}: keel check and keel build disagree:\n  check: {c}\n  build: {b}"))
            }
            (c, b) => failures.extend(c.err().into_iter().chain(b.err())),
        }
        if out.exists() {
            failures.push(format!("keel build {p} left {} behind", out.display()));
        }
        eprintln!("ok: {} ({key})", path.file_name().unwrap().to_string_lossy());
    }
    assert!(std::fs::read_dir(out_root.path()).unwrap().next().is_none(), "output left behind");
    assert!(
        failures.is_empty(),
        "{} of {} bad configs misbehaved:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// A build that fails late (after reading the kernel) leaves an existing output directory as
/// it was.
#[test]
fn failed_build_keeps_existing_output_untouched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
    let cfg = dir.path().join("late.toml");
    let good = std::fs::read_to_string(root().join("configs/hello.toml")).unwrap();
    let abs = root().join(".cache").to_string_lossy().into_owned();
    let bad = good
        .replace("../.cache", &abs)
        .replace("cmdline = \"quiet\"", "cmdline = \"quiet\"\nmodules = [\"no_such_module\"]");
    std::fs::write(&cfg, bad).unwrap();
    let o = keel(&["build", &cfg.to_string_lossy(), "-o", &dir.path().to_string_lossy()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("key `kernel.modules`"), "{}", text(&o));
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 2, "output dir changed: {left:?}");
}
