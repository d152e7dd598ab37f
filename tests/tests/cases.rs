//! The declarative VM tests: every `tests/cases/NAME/case.toml`, on each arch it names, as its
//! own test `NAME::ARCH` (`cargo test --release -p keel-tests --test cases -- hello::x86_64`).
//! tests/cases/README.md describes the format.

use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_plan::Arch;
use keel_tests::root;
use keel_tests::scenario::{power_off, wait_all, Run, Scenario};
use libtest_mimic::{Arguments, Failed, Trial};
use serde::Deserialize;

/// One `case.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// Arches to run on (default: both).
    #[serde(default)]
    arches: Option<Vec<Arch>>,
    /// Seconds from starting QEMU to the guest's power-off.
    timeout: u64,
    /// A config in the repo (relative to its root) instead of the case's `config.toml`.
    #[serde(default)]
    config: Option<String>,
    /// Lines that must all be on the console before the power button is pressed; without
    /// them, the guest must power off by itself.
    #[serde(default)]
    button_after: Vec<String>,
    /// Patterns that must match console lines in this order.
    #[serde(default)]
    expect: Vec<String>,
    /// `[A, B]`: the first line matching A comes before the first line matching B.
    #[serde(default)]
    before: Vec<[String; 2]>,
    /// Patterns no console line may match.
    #[serde(default)]
    absent: Vec<String>,
}

/// A line matches a pattern when the pattern's `*`-separated pieces are in it, in order, each
/// as whole tokens: a piece that starts (ends) with a word character does not start (end) inside
/// a word of the line, so `pid 1` is not found in `pid 17` nor `in hello` in `in hello-host`.
/// A pattern ending in `$` must reach the end of the line.
fn matches(line: &str, pattern: &str) -> bool {
    let (pattern, anchored) = match pattern.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let mut rest = line;
    let mut before: Option<char> = None;
    for piece in pattern.split('*') {
        let Some(at) = find_token(rest, before, piece) else { return false };
        before = rest[..at + piece.len()].chars().next_back().or(before);
        rest = &rest[at + piece.len()..];
    }
    !anchored || rest.is_empty() || pattern.ends_with('*')
}

/// A word character of a token: host names and identifiers are made of these.
fn word(c: char) -> bool {
    c.is_alphanumeric() || c == '-' || c == '_'
}

/// Where `piece` first occurs in `hay` as whole tokens; `before` is the character before `hay`.
fn find_token(hay: &str, before: Option<char>, piece: &str) -> Option<usize> {
    let starts_word = piece.chars().next().is_some_and(word);
    let ends_word = piece.chars().next_back().is_some_and(word);
    hay.match_indices(piece).map(|(at, _)| at).find(|&at| {
        let prev = hay[..at].chars().next_back().or(before);
        let next = hay[at + piece.len()..].chars().next();
        let cuts_a_word = (starts_word && prev.is_some_and(word)) || (ends_word && next.is_some_and(word));
        !cuts_a_word
    })
}

/// Index of the first line at or after `from` matching `pattern`.
fn find(run: &Run, pattern: &str, from: usize) -> Option<usize> {
    run.lines.iter().skip(from).position(|l| matches(&l.text, pattern)).map(|i| i + from)
}

fn load(dir: &Path) -> Case {
    let path = dir.join("case.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run_case(name: &str, dir: &Path, case: &Case, arch: Arch) {
    let fill = |p: &str| p.replace("{{arch}}", arch.name());
    let scenario = match &case.config {
        Some(config) => Scenario::from_repo(config, arch),
        None => Scenario::from_template(&dir.join("config.toml"), arch, &[]),
    };
    let timeout = Duration::from_secs(case.timeout);
    let run = if case.button_after.is_empty() {
        scenario.boot(timeout)
    } else {
        let mut vm = scenario.start(false);
        let wanted: Vec<String> = case.button_after.iter().map(|p| fill(p)).collect();
        wait_all(&mut vm, &wanted.iter().map(String::as_str).collect::<Vec<_>>(), timeout, arch);
        power_off(vm, arch)
    };
    let console = &run.console;
    let mut from = 0;
    for p in case.expect.iter().map(|p| fill(p)) {
        let at = find(&run, &p, from).unwrap_or_else(|| {
            let earlier = find(&run, &p, 0).map(|i| format!(" (only at line {i}, before)")).unwrap_or_default();
            panic!("{name} {arch}: no `{p}` after line {from}{earlier}:\n{console}")
        });
        from = at + 1;
    }
    for [a, b] in &case.before {
        let (a, b) = (fill(a), fill(b));
        let first = |p: &str| find(&run, p, 0).unwrap_or_else(|| panic!("{name} {arch}: no `{p}`:\n{console}"));
        assert!(first(&a) < first(&b), "{name} {arch}: `{b}` came before `{a}`:\n{console}");
    }
    for p in case.absent.iter().map(|p| fill(p)) {
        assert!(find(&run, &p, 0).is_none(), "{name} {arch}: `{p}` on the console:\n{console}");
    }
    eprintln!("{name} {arch}: passed in {:.1}s", run.wall.as_secs_f64());
}

fn cases() -> Vec<(String, PathBuf, Case)> {
    let dir = root().join("tests/cases");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.toml").is_file())
        .map(|p| (p.file_name().unwrap_or_default().to_string_lossy().into_owned(), load(&p), p))
        .map(|(name, case, p)| (name, p, case))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for (name, dir, case) in cases() {
        for arch in case.arches.clone().unwrap_or(Arch::ALL.to_vec()) {
            let (name, dir, case) = (name.clone(), dir.clone(), case.clone());
            trials.push(Trial::test(format!("{}::{}", name, arch.name()), move || {
                std::panic::catch_unwind(|| run_case(&name, &dir, &case, arch))
                    .map_err(|e| Failed::from(panic_message(&e)))
            }));
        }
    }
    trials.push(Trial::test("matcher", || matcher().map_err(Failed::from)));
    libtest_mimic::run(&args, trials).exit();
}

fn panic_message(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

/// The pattern rules, on lines that a loose substring match would have taken.
fn matcher() -> Result<(), String> {
    let greeting = "hello| Hello from keel! I am 0 in hello on x86_64, pid 1$";
    let cases = [
        ("hello| Hello from keel! I am 0 in hello on x86_64, pid 1", greeting, true),
        ("hello| Hello from keel! I am 0 in hello on x86_64, pid 17", greeting, false),
        ("hello| Hello from keel! I am 0 in hello on x86_64, pid 1 or 2", greeting, false),
        ("hello| Hello from keel! I am 10 in hello on x86_64, pid 1", greeting, false),
        ("x| in hello-host on", "in hello on", false),
        ("x| in hello-host on", "in hello", false),
        ("[ 1.2] keel-timeline: 0.5 container-start hello", "keel-timeline:*container-start hello", true),
        ("keel-timeline: container-start hello2", "keel-timeline:*container-start hello", false),
        ("container hello exited with status 0", "exited with status 0$", true),
        ("container hello exited with status 0", "*status*", true),
    ];
    for (line, pattern, want) in cases {
        if matches(line, pattern) != want {
            return Err(format!("{pattern:?} on {line:?}: want {want}"));
        }
    }
    Ok(())
}
