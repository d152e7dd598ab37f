//! The command line: every independent config mistake reported in one run, hints for unknown
//! keys, flags blamed for their own errors (and checked before anything starts), and the
//! summary of `keel build` as text, as JSON, or not at all.

use std::path::{Path, PathBuf};
use std::process::Output;

use keel_tests::{busybox_image, keel, kernel_toml, sha256, text};

/// Write a config with the test kernels and `rest` (host and container tables) into `dir`.
fn config(dir: &Path, name: &str, rest: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, format!("version = 1\nname = \"{name}\"\narch = \"x86_64\"\n\n{}\n{rest}", kernel_toml()))
        .unwrap();
    p
}

/// The stderr lines of a run that must have failed with exit status 2.
fn error_lines(what: &str, o: &Output) -> Vec<String> {
    assert_eq!(o.status.code(), Some(2), "{what}: want exit 2:\n{}", text(o));
    String::from_utf8_lossy(&o.stderr).lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect()
}

/// `FILE:LINE:COL: key `KEY`: …` → KEY, failing on any other shape.
fn located_key(file: &Path, line: &str) -> String {
    let rest = line.strip_prefix(&format!("{}:", file.display())).unwrap_or_else(|| panic!("not located: {line}"));
    let mut it = rest.splitn(3, ':');
    for _ in 0..2 {
        assert!(it.next().unwrap_or("").parse::<u32>().is_ok(), "no line:column in {line}");
    }
    let msg = it.next().unwrap_or("");
    let key = msg.strip_prefix(" key `").and_then(|k| k.split('`').next());
    key.unwrap_or_else(|| panic!("no key in {line}")).to_string()
}

#[test]
fn independent_mistakes_are_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "four",
        &format!(
            "[host]\ncolour = \"red\"\ndisk-timeout = \"soon\"\n\n[[container]]\nname = \"c\"\nimage = \"{}\"\n\
             flavour = \"vanilla\"\nrestart = \"sometimes\"\n",
            busybox_image()
        ),
    );
    let c = cfg.to_string_lossy().into_owned();
    let out = dir.path().join("out");
    for (what, o) in
        [("keel check", keel(&["check", &c])), ("keel build", keel(&["build", &c, "-o", &out.to_string_lossy()]))]
    {
        let lines = error_lines(what, &o);
        let mut keys: Vec<String> = lines.iter().map(|l| located_key(&cfg, l)).collect();
        keys.sort();
        assert_eq!(
            keys,
            ["container[0].flavour", "container[0].restart", "host.colour", "host.disk-timeout"],
            "{what}:\n{}",
            lines.join("\n")
        );
    }
    assert!(!out.exists());
}

#[test]
fn unknown_keys_get_a_hint_naming_the_right_key() {
    let dir = tempfile::tempdir().unwrap();
    let image = busybox_image();
    for (line, key, right) in [
        ("environment = { A = \"1\" }", "container[0].environment", "env"),
        ("depends_on = []", "container[0].depends_on", "depends-on"),
        ("healthcheck = { tcp = 80 }", "container[0].healthcheck", "health"),
        ("imagee = \"x\"", "container[0].imagee", "image"),
    ] {
        let cfg = config(dir.path(), "hint", &format!("[[container]]\nname = \"c\"\nimage = \"{image}\"\n{line}\n"));
        let lines = error_lines(line, &keel(&["check", &cfg.to_string_lossy()]));
        assert_eq!(lines.len(), 1, "{line}: {lines:#?}");
        assert_eq!(located_key(&cfg, &lines[0]), key, "{}", lines[0]);
        assert!(lines[0].contains(&format!("did you mean `{right}`?")), "{line}: {}", lines[0]);
    }
    // A misspelt required key: the hint, and no second error about the key it stands for.
    let cfg = config(dir.path(), "hint", &format!("[[container]]\nname = \"c\"\nimagee = \"{image}\"\n"));
    let lines = error_lines("imagee", &keel(&["check", &cfg.to_string_lossy()]));
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("key `container[0].imagee`") && lines[0].contains("did you mean `image`?"), "{lines:?}");
}

#[test]
fn a_plural_table_is_named_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "plural", &format!("[[containers]]\nname = \"c\"\nimage = \"{}\"\n", busybox_image()));
    let lines = error_lines("[[containers]]", &keel(&["check", &cfg.to_string_lossy()]));
    assert_eq!(located_key(&cfg, &lines[0]), "containers", "{lines:#?}");
    assert!(lines[0].contains("did you mean `[[container]]`?"), "{lines:#?}");
}

#[test]
fn a_bad_arch_flag_is_blamed_on_the_flag() {
    for cmd in ["check", "build"] {
        let lines = error_lines(cmd, &keel(&[cmd, "configs/hello.toml", "--arch", "sparc"]));
        assert_eq!(lines, [format!("keel {cmd}: --arch: unknown arch `sparc` (expected x86_64 or aarch64)")]);
    }
}

#[test]
fn run_flags_are_checked_before_anything_starts() {
    // The image does not exist: a flag error must come first, so nothing was started.
    for (flags, want) in [
        (&["--memory", "512"][..], "keel run: --memory: `512` has no unit"),
        (&["--memory", "16MiB"], "keel run: --memory: `16MiB` is too little"),
        (&["--timeout", "10"], "keel run: --timeout: "),
        (&["--arch", "sparc"], "keel run: --arch: "),
        (&["--accel", "hvf"], "keel run: --accel: "),
        (&["--publish", "8080"], "keel run: --publish: "),
        (
            &["--secure-boot", "--varstore", "/nonexistent/vars.fd"],
            "keel run: --varstore: /nonexistent/vars.fd: no such file",
        ),
    ] {
        let mut args = vec!["run", "/nonexistent/none-x86_64.img"];
        args.extend(flags);
        let lines = error_lines(&flags.join(" "), &keel(&args));
        assert!(lines.len() == 1 && lines[0].starts_with(want), "{flags:?}: {lines:#?}");
    }
}

#[test]
fn build_reports_as_text_json_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = |n: &str| dir.path().join(n).to_string_lossy().into_owned();

    let o = keel(&["build", "configs/hello.toml", "--arch", "x86_64", "-o", &out("text")]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    for step in ["kernel", "images", "initramfs", "disk", "verity", "uki", "sbom"] {
        assert!(stderr.lines().any(|l| l.trim_start().starts_with(&format!("{step} "))), "no {step} line:\n{stderr}");
    }
    assert!(!stderr.contains(".ko"), "module files on the terminal:\n{stderr}");
    assert!(!text(&o).contains("bytes"), "sizes must be in KiB or MiB:\n{}", text(&o));
    for label in ["keel-esp", "keel-images", "keel-data"] {
        assert!(stdout.lines().any(|l| l.contains(label) && l.contains("MiB")), "no {label} row:\n{stdout}");
    }

    let o = keel(&["build", "configs/hello.toml", "--arch", "x86_64", "-o", &out("json"), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(o.stderr.is_empty(), "--json printed to stderr:\n{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    let artifacts = j["artifacts"].as_array().expect("artifacts");
    let names: Vec<&str> = artifacts.iter().filter_map(|a| a["name"].as_str()).collect();
    for want in ["hello-x86_64.img", "hello-x86_64.efi", "hello-x86_64.provenance.json", "hello-x86_64.spdx.json"] {
        assert_eq!(names.iter().filter(|n| **n == want).count(), 1, "{want} is not reported once: {names:?}");
    }
    let on_disk = std::fs::read_dir(dir.path().join("json")).unwrap().count();
    assert_eq!(artifacts.len(), on_disk, "every file written is reported once: {names:?}");
    for a in artifacts {
        let path = Path::new(a["path"].as_str().unwrap());
        assert_eq!(a["sha256"].as_str(), Some(sha256(path).as_str()), "{a}");
        assert_eq!(a["size"].as_u64(), Some(std::fs::metadata(path).unwrap().len()), "{a}");
    }
    let labels: Vec<&str> =
        j["disk"]["partitions"].as_array().unwrap().iter().filter_map(|p| p["label"].as_str()).collect();
    assert_eq!(labels, ["keel-esp", "keel-images", "keel-data"]);
    let steps: Vec<&str> =
        j["timings"]["steps"].as_array().unwrap().iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(steps, ["kernel", "images", "initramfs", "disk", "verity", "uki", "sbom"]);
    let v = &j["verity"];
    assert_eq!(v["root_hash"].as_str().map(str::len), Some(64), "{v}");
    assert_eq!(v["hash_offset"].as_u64(), v["data_blocks"].as_u64().map(|n| n * 4096), "{v}");
    assert!(j["parts"].as_array().unwrap().iter().any(|p| p["name"] == "initramfs" && p["size"].as_u64() > Some(0)));
    // The same build gives the same files, whatever it prints.
    let text_img = sha256(&dir.path().join("text/hello-x86_64.img"));
    assert_eq!(artifacts[0]["sha256"].as_str(), Some(text_img.as_str()));

    let o = keel(&["build", "configs/hello.toml", "--arch", "x86_64", "-o", &out("quiet"), "--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "--quiet printed:\n{}", text(&o));
    assert!(dir.path().join("quiet/hello-x86_64.img").is_file());
}
