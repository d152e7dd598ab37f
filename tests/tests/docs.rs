//! The docs are true to the code: the README's config block is configs/hello.toml, its sample
//! output has the shape of today's `keel check` and `keel build` output (the same lines, the same
//! module count), and no doc points at a file that is not in the repository.

use std::path::{Path, PathBuf};

use keel_tests::{keel, root, text};

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).expect("read README.md")
}

/// The fenced blocks of a markdown text, as (info string, body).
fn fenced(md: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in md.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_string(), String::new())),
            (Some(_), Some(_)) => blocks.extend(open.take()),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// A line with its numbers and digests replaced by placeholders, so two runs compare equal when
/// they print the same things in the same places: `kernel 6.1, 19 modules (4.8s)` becomes
/// `kernel #, # modules (#s)`.
fn shape(line: &str) -> String {
    let mut out = String::new();
    for (i, word) in line.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if word.len() == 64 && word.bytes().all(|b| b.is_ascii_hexdigit()) {
            out.push_str("<sha256>");
            continue;
        }
        // A hash before punctuation (`ROOT,` or `PREFIX...`), e.g. the verity root hash: it
        // depends on the image's bytes, which differ between machines' caches.
        let hex = word.bytes().take_while(u8::is_ascii_hexdigit).count();
        if hex >= 16 && !word[hex..].bytes().any(|b| b.is_ascii_alphanumeric()) {
            out.push_str("<hex>");
            out.push_str(&word[hex..]);
            continue;
        }
        let mut in_number = false;
        for c in word.chars() {
            let numeric = c.is_ascii_digit() || (in_number && c == '.');
            if numeric && !in_number {
                out.push('#');
            } else if !numeric {
                out.push(c);
            }
            in_number = numeric;
        }
    }
    out
}

/// The README's sample output of `$ COMMAND`, up to the next `$ ` line.
fn sample_output(sh: &str, command: &str) -> Vec<String> {
    let mut lines = sh.lines().skip_while(|l| *l != format!("$ {command}"));
    assert!(lines.next().is_some(), "README.md has no `$ {command}` in its tour");
    lines.take_while(|l| !l.starts_with("$ ")).map(str::to_string).collect()
}

fn tour_output() -> String {
    fenced(&readme())
        .into_iter()
        .find(|(info, body)| info == "sh" && body.contains("$ keel build configs/hello.toml"))
        .map(|(_, body)| body)
        .expect("README.md has a tour block running `keel build configs/hello.toml`")
}

/// `N modules` in a line, the first one.
fn module_count(lines: &[String]) -> Option<u32> {
    lines.iter().find_map(|l| {
        let words: Vec<&str> = l.split(' ').collect();
        words.windows(2).find(|w| w[1].trim_end_matches([',', ')']) == "modules").and_then(|w| w[0].parse().ok())
    })
}

#[test]
fn readme_config_block_is_configs_hello_toml() {
    let file = std::fs::read_to_string(root().join("configs/hello.toml")).expect("read configs/hello.toml");
    let block = fenced(&readme())
        .into_iter()
        .find(|(info, body)| info == "toml" && body.starts_with("# configs/hello.toml\n"))
        .map(|(_, body)| body)
        .expect("README.md has a toml block labelled `# configs/hello.toml`");
    let body = block.strip_prefix("# configs/hello.toml\n").unwrap_or(&block);
    assert_eq!(body, file, "README.md's configs/hello.toml block differs from the file: copy the file into it");
}

#[test]
fn readme_sample_output_has_the_current_shape() {
    let sh = tour_output();
    let out = tempfile::tempdir().unwrap();
    let out_s = out.path().to_string_lossy().into_owned();
    for (command, args) in [
        ("keel check configs/hello.toml", vec!["check", "configs/hello.toml"]),
        (
            "keel build configs/hello.toml --arch x86_64 -o out",
            vec!["build", "configs/hello.toml", "--arch", "x86_64", "-o", &out_s],
        ),
    ] {
        let o = keel(&args);
        assert!(o.status.success(), "{command} failed:\n{}", text(&o));
        // As a terminal shows it: the progress (stderr) comes before the summary (stdout).
        let all = format!("{}{}", String::from_utf8_lossy(&o.stderr), String::from_utf8_lossy(&o.stdout));
        let real: Vec<String> = all.lines().map(str::to_string).collect();
        let shown = sample_output(&sh, command);
        let (real_shape, shown_shape): (Vec<String>, Vec<String>) =
            (real.iter().map(|l| shape(l)).collect(), shown.iter().map(|l| shape(l)).collect());
        assert_eq!(
            shown_shape,
            real_shape,
            "README.md's output of `{command}` is stale; today it prints:\n{}",
            real.join("\n")
        );
        assert_eq!(
            module_count(&shown),
            module_count(&real),
            "README.md's module count for `{command}` is stale; today it prints:\n{}",
            real.join("\n")
        );
    }
}

/// Relative file references in a markdown text: link targets, and backticked words that name a
/// file in one of the repository's top-level directories.
fn references(md: &str) -> Vec<String> {
    let mut refs = Vec::new();
    for (i, _) in md.match_indices("](") {
        let rest = &md[i + 2..];
        if let Some(end) = rest.find(')') {
            refs.push(rest[..end].to_string());
        }
    }
    let tops = ["builder/", "init/", "runtime/", "qemu/", "configs/", "tests/", "docs/", ".ci/", "fuzz/", "benches/"];
    for (n, part) in md.split('`').enumerate() {
        let word = part.split_whitespace().next().unwrap_or("");
        if n % 2 == 1 && part == word && (tops.iter().any(|t| word.starts_with(t)) || word.ends_with(".md")) {
            refs.push(word.to_string());
        }
    }
    refs.retain(|r| !r.contains("://") && !r.starts_with('#') && !r.starts_with("mailto:"));
    refs
}

fn docs() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    for dir in ["docs", "tests/cases"] {
        let Ok(entries) = std::fs::read_dir(root().join(dir)) else { continue };
        files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "md")));
    }
    files.sort();
    files
}

/// `path` with `.` and `..` taken out, if it stays inside the repository.
fn inside_root(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out.starts_with(root()).then_some(out)
}

/// What stands for any name in a doc's path.
const PLACEHOLDERS: [&str; 8] = ["NAME", "ARCH", "DIR", "FILE", "TARGET", "*", "…", "<"];

/// A reference resolves when the named file exists, beside the doc or from the root. Names with
/// placeholders (`NAME`, `*`, `…`) stand for a family of files; their directory must exist.
fn resolves(doc: &Path, reference: &str) -> bool {
    let path = reference.split('#').next().unwrap_or(reference).trim_end_matches([',', '.', ':']);
    let wild = |p: &str| PLACEHOLDERS.iter().any(|w| p.contains(w));
    let candidates: Vec<PathBuf> = [doc.parent().unwrap_or(Path::new(".")).join(path), root().join(path)]
        .iter()
        .filter_map(|c| inside_root(c))
        .collect();
    if wild(path) {
        let dir = |p: &Path| p.ancestors().skip(1).find(|a| !wild(&a.to_string_lossy())).map(Path::to_path_buf);
        return candidates.iter().filter_map(|c| dir(c)).any(|d| d.is_dir());
    }
    candidates.iter().any(|c| c.exists())
}

#[test]
fn docs_cite_only_files_in_the_repository() {
    let mut missing = Vec::new();
    for doc in docs() {
        let md = std::fs::read_to_string(&doc).unwrap();
        for r in references(&md) {
            if !resolves(&doc, &r) {
                missing.push(format!("{}: `{r}`", doc.strip_prefix(root()).unwrap_or(&doc).display()));
            }
        }
        for outside in ["../shared", "ARCHITECTURE.md", "CONFIG.md"] {
            if md.contains(outside) {
                let name = doc.strip_prefix(root()).unwrap_or(&doc).display().to_string();
                missing.push(format!("{name}: cites `{outside}`, which is outside the repository"));
            }
        }
    }
    assert!(missing.is_empty(), "docs cite files that do not exist:\n{}", missing.join("\n"));
}

#[test]
fn the_shape_and_reference_readers_work() {
    assert_eq!(shape("kernel 6.1.0-56-amd64, 19 modules (4.8s)"), "kernel #-#-amd#, # modules (#s)");
    assert_eq!(shape(&"a".repeat(64)), "<sha256>");
    let md = "see [the docs](docs/config.md#keys) and `configs/hello.toml`, not `a b`, not [web](https://x.org)";
    assert_eq!(references(md), vec!["docs/config.md#keys", "configs/hello.toml"]);
    assert!(!resolves(&root().join("README.md"), "docs/nothing-here.md"));
    assert!(!resolves(&root().join("docs/config.md"), "../../shared/design/CONFIG.md"));
    assert!(resolves(&root().join("docs/config.md"), "../README.md"));
    assert!(resolves(&root().join("README.md"), "tests/tests/NAME.rs"));
    assert_eq!(module_count(&["kernel x, 19 modules (3 MiB)".to_string()]), Some(19));
}
