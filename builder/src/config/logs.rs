//! Container log files and restart delays: `[host] log-size` and `log-files` bound each
//! container's log files on keel-data; a container's `restart-delay` and `restart-max-delay` set
//! the backoff of its restarts.

use std::ops::Range;
use std::time::Duration;

use keel_plan::{Logs, RestartDelay};
use toml::Spanned;

use super::{units, Validator};

/// The smallest `log-size`: a few lines (a line is cut at 4 KiB).
pub const MIN_LOG_SIZE: u64 = 4 << 10;
/// The most `log-files` per container.
pub const MAX_LOG_FILES: i64 = 100;
/// The shortest `restart-delay`: a restart is a container start.
pub const MIN_RESTART_DELAY: Duration = Duration::from_millis(10);

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `n` bytes, in the largest binary unit that divides it: `1MiB`, `4KiB`, `1000B`.
pub fn show_size(n: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n}B")
}

impl Validator<'_> {
    /// `[host] log-size` (a size, at least [`MIN_LOG_SIZE`]) and `log-files` (1 to
    /// [`MAX_LOG_FILES`]).
    pub(super) fn logs(&mut self, size: Option<&Spanned<String>>, files: Option<&Spanned<i64>>) -> Logs {
        let defaults = Logs::default();
        let max_bytes = match size {
            None => defaults.max_bytes,
            Some(s) => match units::parse_size(s.get_ref()) {
                Ok(n) if n >= MIN_LOG_SIZE => n,
                Ok(_) => {
                    self.err(&s.span(), "host.log-size", format!("must be at least {}", show_size(MIN_LOG_SIZE)));
                    defaults.max_bytes
                }
                Err(e) => {
                    self.err(&s.span(), "host.log-size", e);
                    defaults.max_bytes
                }
            },
        };
        let files = match files {
            None => defaults.files,
            Some(f) => match u32::try_from(*f.get_ref()) {
                Ok(n) if (1..=MAX_LOG_FILES).contains(&i64::from(n)) => n,
                _ => {
                    self.err(
                        &f.span(),
                        "host.log-files",
                        format!("`{}` is not a file count from 1 to {MAX_LOG_FILES}", f.get_ref()),
                    );
                    defaults.files
                }
            },
        };
        Logs { max_bytes, files }
    }

    /// The log files of `containers` containers must fit in keel-data (`data_size` bytes): logs
    /// alone must never fill it. The error points at `span` (the log keys, or data-size).
    pub(super) fn log_budget(&mut self, logs: Logs, containers: usize, data_size: u64, span: (&Range<usize>, &str)) {
        let budget = logs.max_bytes.saturating_mul(u64::from(logs.files)).saturating_mul(containers as u64);
        if budget > data_size {
            self.err(
                span.0,
                span.1,
                format!(
                    "the log files of {containers} container(s) can take {} ({} × log-files {} × log-size {}), more \
                     than keel-data holds (data-size {}): lower log-size or log-files, or raise data-size",
                    show_size(budget),
                    containers,
                    logs.files,
                    show_size(logs.max_bytes),
                    show_size(data_size)
                ),
            );
        }
    }

    /// A container's `restart-delay` (first delay, at least [`MIN_RESTART_DELAY`]) and
    /// `restart-max-delay` (at least the first). A default adapts to the other key when only one
    /// is given: the first delay is at most the max, the max at least the first.
    pub(super) fn restart_delay(
        &mut self,
        index: usize,
        first: Option<&Spanned<String>>,
        max: Option<&Spanned<String>>,
    ) -> RestartDelay {
        let defaults = RestartDelay::default();
        let mut duration = |v: Option<&Spanned<String>>, field: &str| {
            let v = v?;
            let key = format!("container[{index}].{field}");
            match units::parse_duration(v.get_ref()) {
                Ok(d) if d >= MIN_RESTART_DELAY => Some((millis(d), v.span())),
                Ok(_) => {
                    self.err(&v.span(), key, format!("must be at least {} ms", MIN_RESTART_DELAY.as_millis()));
                    None
                }
                Err(e) => {
                    self.err(&v.span(), key, e);
                    None
                }
            }
        };
        let first = duration(first, "restart-delay");
        let max = duration(max, "restart-max-delay");
        match (first, max) {
            (Some((first_ms, _)), Some((max_ms, span))) => {
                if max_ms < first_ms {
                    self.err(
                        &span,
                        format!("container[{index}].restart-max-delay"),
                        format!("must be at least restart-delay ({max_ms} ms < {first_ms} ms)"),
                    );
                }
                RestartDelay { first_ms, max_ms: max_ms.max(first_ms) }
            }
            (Some((first_ms, _)), None) => RestartDelay { first_ms, max_ms: defaults.max_ms.max(first_ms) },
            (None, Some((max_ms, _))) => RestartDelay { first_ms: defaults.first_ms.min(max_ms), max_ms },
            (None, None) => defaults,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Config, ConfigErrors, Diagnostic};
    use super::*;

    const BASE: &str = r#"
version = 1
name = "logs"

[kernel]
package.x86_64 = { path = "k.deb", sha256 = "0000000000000000000000000000000000000000000000000000000000000000" }

[host]
on-exit = "poweroff"

[[container]]
name = "web"
image = "dir:x"
command = ["/bin/true"]
"#;

    fn parse(src: &str) -> Result<Config, ConfigErrors> {
        Config::parse(Path::new("t.toml"), src.to_string())
    }

    fn errors(src: &str) -> Vec<Diagnostic> {
        parse(src).map(|_| panic!("accepted:\n{src}")).unwrap_err().0
    }

    fn host(keys: &str) -> String {
        BASE.replace("on-exit = \"poweroff\"", &format!("on-exit = \"poweroff\"\n{keys}"))
    }

    fn container(keys: &str) -> String {
        format!("{BASE}{keys}\n")
    }

    #[test]
    fn log_keys_default_and_parse() {
        assert_eq!(parse(BASE).unwrap().host.logs, Logs { max_bytes: 1 << 20, files: 4 });
        let c = parse(&host("log-size = \"64KiB\"\nlog-files = 2")).unwrap();
        assert_eq!(c.host.logs, Logs { max_bytes: 64 << 10, files: 2 });
        let c = parse(&host("log-size = \"4KiB\"\nlog-files = 100")).unwrap();
        assert_eq!(c.host.logs, Logs { max_bytes: 4096, files: 100 });
    }

    #[test]
    fn bad_log_keys_are_located() {
        for (keys, key, needle) in [
            ("log-size = \"4095\"", "host.log-size", "at least 4KiB"),
            ("log-size = \"lots\"", "host.log-size", "not a size"),
            ("log-files = 0", "host.log-files", "from 1 to 100"),
            ("log-files = 101", "host.log-files", "from 1 to 100"),
            ("log-files = -1", "host.log-files", "from 1 to 100"),
        ] {
            let e = errors(&host(keys));
            assert_eq!(e.len(), 1, "{keys}: {e:?}");
            assert_eq!((e[0].key.as_str(), e[0].line), (key, 10), "{keys}: {}", e[0]);
            assert!(e[0].message.contains(needle), "{keys}: {}", e[0]);
        }
        let e = errors(&host("log-files = \"4\""));
        assert_eq!(e[0].key, "host.log-files", "a wrong type is the parser's error: {}", e[0]);
    }

    #[test]
    fn logs_must_fit_in_keel_data() {
        // 100 files × 1 MiB > 64 MiB.
        let e = errors(&host("log-files = 100"));
        assert_eq!(e[0].key, "host.log-files");
        assert!(
            e[0].message.contains(
                "can take 100MiB (1 × log-files 100 × log-size 1MiB), more than keel-data holds (data-size 64MiB)"
            ),
            "{}",
            e[0]
        );
        let e = errors(&format!("{}\n[disk]\ndata-size = \"16MiB\"\n", host("log-size = \"8MiB\"")));
        assert_eq!(e[0].key, "host.log-size");
        // Defaults, many containers: the data size is what to change.
        let mut many = format!("{BASE}\n[disk]\ndata-size = \"16MiB\"\n");
        for i in 0..5 {
            many.push_str(&format!("\n[[container]]\nname = \"c{i}\"\nimage = \"dir:x\"\ncommand = [\"/bin/true\"]\n"));
        }
        let e = errors(&many);
        assert_eq!(e[0].key, "disk.data-size", "{}", e[0]);
        assert!(e[0].message.contains("of 6 container(s) can take 24MiB"), "{}", e[0]);
    }

    #[test]
    fn restart_delays_default_and_parse() {
        let d = |src: &str| parse(src).unwrap().containers[0].restart_delay;
        assert_eq!(d(BASE), RestartDelay { first_ms: 1_000, max_ms: 30_000 });
        assert_eq!(
            d(&container("restart-delay = \"10ms\"\nrestart-max-delay = \"10ms\"")),
            RestartDelay { first_ms: 10, max_ms: 10 }
        );
        assert_eq!(
            d(&container("restart-delay = \"2s\"\nrestart-max-delay = \"5m\"")),
            RestartDelay { first_ms: 2_000, max_ms: 300_000 }
        );
        // One key alone: the other default gives way.
        assert_eq!(d(&container("restart-delay = \"1m\"")), RestartDelay { first_ms: 60_000, max_ms: 60_000 });
        assert_eq!(d(&container("restart-delay = \"100ms\"")), RestartDelay { first_ms: 100, max_ms: 30_000 });
        assert_eq!(d(&container("restart-max-delay = \"500ms\"")), RestartDelay { first_ms: 500, max_ms: 500 });
    }

    #[test]
    fn bad_restart_delays_are_located() {
        for (keys, key, needle) in [
            ("restart-delay = \"5ms\"", "container[0].restart-delay", "at least 10 ms"),
            ("restart-delay = \"soon\"", "container[0].restart-delay", "not a duration"),
            ("restart-max-delay = \"1\"", "container[0].restart-max-delay", "no unit"),
            (
                "restart-delay = \"2s\"\nrestart-max-delay = \"1s\"",
                "container[0].restart-max-delay",
                "must be at least restart-delay (1000 ms < 2000 ms)",
            ),
        ] {
            let e = errors(&container(keys));
            assert_eq!(e.len(), 1, "{keys}: {e:?}");
            assert_eq!(e[0].key, key, "{keys}: {}", e[0]);
            assert!(e[0].message.contains(needle), "{keys}: {}", e[0]);
            assert_eq!(e[0].line, 15 + keys.lines().count() - 1, "{keys}: {}", e[0]);
        }
    }

    #[test]
    fn sizes_are_shown_in_whole_units() {
        assert_eq!(show_size(4096), "4KiB");
        assert_eq!(show_size(1 << 20), "1MiB");
        assert_eq!(show_size(3 << 30), "3GiB");
        assert_eq!(show_size(1000), "1000B");
        assert_eq!(show_size(1536), "1536B");
    }
}
