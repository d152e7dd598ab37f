//! The supervision keys of a `[[container]]`: `depends-on` and `health`. The order between
//! containers (unknown names, cycles) is checked once all containers are read.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use keel_plan::{Health, HealthCheck};
use toml::Spanned;

use super::schema::{Number, RawHealth};
use super::{units, ContainerConfig, Validator};

/// Between the end of one health check and the start of the next, when the config is silent.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// A check running longer is killed, when the config is silent.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Consecutive failures that make a container unhealthy, when the config is silent.
pub const DEFAULT_RETRIES: u32 = 3;
/// The shortest interval and timeout keel accepts: a check is a process start.
pub const MIN_PERIOD: Duration = Duration::from_millis(100);

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Validator<'_> {
    /// `depends-on = ["db", …]`: names with their spans (checked against the other containers
    /// later, by [`Validator::order`]).
    pub(super) fn depends_on(
        &mut self,
        index: usize,
        raw: Option<Spanned<Vec<Spanned<String>>>>,
    ) -> Vec<(String, Range<usize>)> {
        let mut out: Vec<(String, Range<usize>)> = Vec::new();
        for (i, d) in raw.map(Spanned::into_inner).unwrap_or_default().into_iter().enumerate() {
            let span = d.span();
            let name = d.into_inner();
            if out.iter().any(|(n, _)| *n == name) {
                self.err(&span, format!("container[{index}].depends-on[{i}]"), format!("`{name}` is listed twice"));
                continue;
            }
            out.push((name, span));
        }
        out
    }

    /// `health = { cmd = [...] | tcp = PORT, interval, timeout, retries, start-period }`.
    pub(super) fn health(&mut self, index: usize, raw: Option<Spanned<RawHealth>>) -> Option<Health> {
        let raw = raw?;
        let span = raw.span();
        let h = raw.into_inner();
        let key = |f: &str| format!("container[{index}].health{f}");
        let check = match (h.cmd, h.tcp) {
            (Some(cmd), None) => {
                if cmd.get_ref().first().is_none_or(String::is_empty) {
                    self.err(&cmd.span(), key(".cmd"), "cmd is empty");
                }
                HealthCheck::Cmd(cmd.into_inner())
            }
            (None, Some(port)) => match u16::try_from(*port.get_ref()) {
                Ok(p) if p > 0 => HealthCheck::Tcp(p),
                _ => {
                    self.err(&port.span(), key(".tcp"), format!("`{}` is not a TCP port (1-65535)", port.get_ref()));
                    HealthCheck::Tcp(1)
                }
            },
            (Some(_), Some(port)) => {
                self.err(&port.span(), key(".tcp"), "give either cmd or tcp, not both");
                HealthCheck::Tcp(1)
            }
            (None, None) => {
                self.err(&span, key(""), "a health check needs `cmd = [...]` or `tcp = PORT`");
                HealthCheck::Tcp(1)
            }
        };
        let mut period = |v: Option<Spanned<String>>, field: &str, default: Duration, min: Duration| match v {
            None => default,
            Some(s) => match units::parse_duration(s.get_ref()) {
                Ok(d) if d >= min => d,
                Ok(_) => {
                    self.err(&s.span(), key(field), format!("must be at least {} ms", min.as_millis()));
                    default
                }
                Err(e) => {
                    self.err(&s.span(), key(field), e);
                    default
                }
            },
        };
        let interval = period(h.interval, ".interval", DEFAULT_INTERVAL, MIN_PERIOD);
        let timeout = period(h.timeout, ".timeout", DEFAULT_TIMEOUT, MIN_PERIOD);
        let start_period = period(h.start_period, ".start-period", Duration::ZERO, Duration::ZERO);
        let retries = match h.retries {
            None => DEFAULT_RETRIES,
            Some(r) => match r.get_ref() {
                Number::Int(n) if (1..=1000).contains(n) => *n as u32,
                _ => {
                    self.err(&r.span(), key(".retries"), "retries must be a whole number from 1 to 1000");
                    DEFAULT_RETRIES
                }
            },
        };
        Some(Health {
            check,
            interval_ms: millis(interval),
            timeout_ms: millis(timeout),
            retries,
            start_period_ms: millis(start_period),
        })
    }

    /// Every `depends-on` names another container, and they form no cycle.
    pub(super) fn order(&mut self, containers: &[ContainerConfig]) {
        let index: BTreeMap<&str, usize> = containers.iter().map(|c| (c.name.as_str(), c.index)).collect();
        let mut known = true;
        for c in containers {
            for (i, (dep, span)) in c.depends_on.iter().enumerate() {
                let key = c.key(&format!("depends-on[{i}]"));
                if *dep == c.name {
                    self.err(span, key, format!("container `{dep}` cannot depend on itself"));
                    known = false;
                } else if !index.contains_key(dep.as_str()) {
                    self.err(span, key, format!("no container is named `{dep}`"));
                    known = false;
                }
            }
        }
        if !known {
            return;
        }
        if let Some(cycle) = find_cycle(containers, &index) {
            let first = cycle.first().and_then(|&i| containers.get(i));
            if let Some(c) = first {
                let path: Vec<&str> =
                    cycle.iter().filter_map(|&i| containers.get(i)).map(|c| c.name.as_str()).collect();
                self.err(
                    &c.depends_on.first().map(|(_, s)| s.clone()).unwrap_or_else(|| c.span.clone()),
                    c.key("depends-on"),
                    format!("depends-on makes a cycle: {} -> {}", path.join(" -> "), c.name),
                );
            }
        }
    }
}

/// A cycle in the depends-on graph, as container indices (the first is where it was entered).
fn find_cycle(containers: &[ContainerConfig], index: &BTreeMap<&str, usize>) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        at: usize,
        containers: &[ContainerConfig],
        index: &BTreeMap<&str, usize>,
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[at] = Mark::Open;
        stack.push(at);
        for (dep, _) in &containers[at].depends_on {
            let Some(&next) = index.get(dep.as_str()) else { continue };
            match marks[next] {
                Mark::Open => {
                    let from = stack.iter().position(|&i| i == next).unwrap_or(0);
                    return Some(stack[from..].to_vec());
                }
                Mark::New => {
                    if let Some(c) = visit(next, containers, index, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[at] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; containers.len()];
    for start in 0..containers.len() {
        if marks[start] == Mark::New {
            if let Some(c) = visit(start, containers, index, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}
