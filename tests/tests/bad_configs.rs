//! Bad configs: each file in tests/bad-configs/ must fail `keel check` and `keel build` with
//! exit status 2 and one line `FILE:LINE:COLUMN: key `KEY`: MESSAGE`, and leave no output
//! behind. `keel check` runs every check `keel build` runs, so both must print the same line.
//!
//! Each case starts with three header comments, in this order, that say what must fail:
//!
//! ```toml
//! # expect-key: container[0].image
//! # expect-line: 13
//! # expect-message: no image tagged `nope`
//! ```
//!
//! KEY is the error's key exactly, N its LINE exactly (counted in the file, the header
//! included), and FRAGMENT a substring of its MESSAGE: the words that say the case fails for
//! the reason it is named after, not some other error on the same key. Keep fragments free of
//! paths (the test passes absolute ones). Every regular file in the directory but a README must
//! be such a case: a misnamed or headerless file fails the test instead of being skipped.

use std::path::{Path, PathBuf};

use keel_tests::{keel, root, text};

/// One bad config and what its header expects.
struct Case {
    path: PathBuf,
    key: String,
    line: u32,
    message: String,
}

fn corpus() -> PathBuf {
    root().join("tests/bad-configs")
}

/// The value of header line `n` (0-based), which must be `# expect-NAME: VALUE`.
fn header<'a>(path: &Path, lines: &[&'a str], n: usize, name: &str) -> &'a str {
    let prefix = format!("# expect-{name}: ");
    let line = lines.get(n).copied().unwrap_or("");
    let value = line
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{}: line {}: want `{prefix}…`, got `{line}`", path.display(), n + 1))
        .trim();
    assert!(!value.is_empty(), "{}: empty expect-{name}", path.display());
    value
}

fn cases() -> Vec<Case> {
    let mut out: Vec<Case> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|path| {
            let body = std::fs::read_to_string(&path).unwrap();
            let lines: Vec<&str> = body.lines().collect();
            let key = header(&path, &lines, 0, "key").to_string();
            let line = header(&path, &lines, 1, "line");
            let line = line.parse().unwrap_or_else(|_| panic!("{}: expect-line `{line}`", path.display()));
            let message = header(&path, &lines, 2, "message").to_string();
            Case { path, key, line, message }
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The regular files in the corpus other than a README, counted without looking at their
/// names' extensions: each must be a case.
fn corpus_files() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("README"))
        .collect();
    out.sort();
    out
}

/// The one error line of a failed `keel check` or `keel build`, checked against the case.
fn check_error(what: &str, case: &Case, o: &std::process::Output) -> Result<String, String> {
    let path = case.path.display();
    if o.status.code() != Some(2) {
        return Err(format!("{what} {path}: exit {:?}, want 2:\n{}", o.status.code(), text(o)));
    }
    let stderr = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() != 1 {
        return Err(format!("{what} {path}: want one error line, got:\n{stderr}"));
    }
    let line = lines[0];
    let prefix = format!("{path}:");
    let rest =
        line.strip_prefix(&prefix).ok_or_else(|| format!("{what}: error does not start with the file name: {line}"))?;
    let mut it = rest.splitn(3, ':');
    let (l, c, rest) = (it.next().unwrap_or(""), it.next().unwrap_or(""), it.next().unwrap_or(""));
    let (Ok(l), Ok(_)) = (l.parse::<u32>(), c.parse::<u32>()) else {
        return Err(format!("{what}: no line:column in `{line}`"));
    };
    let key = format!(" key `{}`: ", case.key);
    let Some(message) = rest.strip_prefix(&key) else {
        return Err(format!("{what} {path}: error does not name key `{}`: {line}", case.key));
    };
    if l != case.line {
        return Err(format!("{what} {path}: error on line {l}, want line {}: {line}", case.line));
    }
    if !message.contains(&case.message) {
        return Err(format!("{what} {path}: message does not contain `{}`: {line}", case.message));
    }
    Ok(line.to_string())
}

#[test]
fn bad_configs_fail_cleanly() {
    let cases = cases();
    let names: Vec<String> = cases.iter().map(|c| c.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
    let files = corpus_files();
    let strays: Vec<&String> = files.iter().filter(|f| !names.contains(f)).collect();
    assert!(strays.is_empty(), "files in tests/bad-configs that are not cases (name them NAME.toml): {strays:?}");
    assert_eq!(cases.len(), files.len(), "cases and files in tests/bad-configs");
    assert!(!cases.is_empty(), "no bad configs");
    let out_root = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for case in &cases {
        let p = case.path.to_string_lossy().into_owned();
        let before = failures.len();
        let checked = check_error("keel check", case, &keel(&["check", &p]));
        let out = out_root.path().join(case.path.file_stem().unwrap());
        let o = keel(&["build", &p, "-o", &out.to_string_lossy()]);
        let built = check_error("keel build", case, &o);
        match (checked, built) {
            (Ok(c), Ok(b)) if c != b => {
                failures.push(format!("{p}: keel check and keel build disagree:\n  check: {c}\n  build: {b}"))
            }
            (c, b) => failures.extend(c.err().into_iter().chain(b.err())),
        }
        if out.exists() {
            failures.push(format!("keel build {p} left {} behind", out.display()));
        }
        if failures.len() == before {
            eprintln!("ok: {} ({}:{})", case.path.file_name().unwrap().to_string_lossy(), case.key, case.line);
        }
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
