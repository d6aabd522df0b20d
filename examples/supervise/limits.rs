//! The resource-limit options: `--memory-max 64M`, `--tasks-max 100`,
//! `--cpu-max 50%`, `--rlimit nofile=1024:4096`, ... (and the same keys in
//! a `--config` section).

use std::time::Duration;

use procsup::{ProcessSpec, Rlimit, RLIM_INFINITY};

/// The options, by their long names (keys in a config section).
pub const OPTIONS: &[&str] =
    &["memory-max", "memory-high", "restart-above-memory", "tasks-max", "cpu-max", "cpu-weight", "io-weight", "rlimit"];

/// The limits a program gets; `None` / empty: not set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_max: Option<u64>,
    pub memory_high: Option<u64>,
    pub restart_above_memory: Option<u64>,
    pub tasks_max: Option<u64>,
    pub cpu_max: Option<(Duration, Duration)>,
    pub cpu_weight: Option<u16>,
    pub io_weight: Option<u16>,
    pub rlimits: Vec<(Rlimit, u64, u64)>,
}

impl Limits {
    /// Sets the option `key` (one of [`OPTIONS`]) from `value`; the error
    /// names the option.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let flag = format!("--{key}");
        let bad = |expected: &str| format!("{flag} {value:?}: expected {expected}");
        match key {
            "memory-max" => self.memory_max = Some(size(value).ok_or_else(|| bad(SIZE))?),
            "memory-high" => self.memory_high = Some(size(value).ok_or_else(|| bad(SIZE))?),
            "restart-above-memory" => self.restart_above_memory = Some(size(value).ok_or_else(|| bad(SIZE))?),
            "tasks-max" => {
                self.tasks_max = Some(value.parse().ok().filter(|&n| n > 0).ok_or_else(|| bad("a number above 0"))?)
            }
            "cpu-max" => {
                self.cpu_max =
                    Some(cpu_max(value).ok_or_else(|| {
                        bad("PERCENT% (of one CPU) or QUOTA:PERIOD in seconds, the period 0.001 to 1")
                    })?)
            }
            "cpu-weight" => self.cpu_weight = Some(weight(value).ok_or_else(|| bad("a weight from 1 to 10000"))?),
            "io-weight" => self.io_weight = Some(weight(value).ok_or_else(|| bad("a weight from 1 to 10000"))?),
            "rlimit" => {
                for one in value.split(',') {
                    let (r, soft, hard) = rlimit(one).ok_or_else(|| bad(RLIMIT))?;
                    self.rlimits.retain(|(x, _, _)| *x != r);
                    self.rlimits.push((r, soft, hard));
                }
            }
            _ => return Err(format!("unknown option {flag:?}")),
        }
        Ok(())
    }

    /// The spec with these limits.
    pub fn apply(&self, mut s: ProcessSpec) -> ProcessSpec {
        if let Some(v) = self.memory_max {
            s = s.memory_max(v);
        }
        if let Some(v) = self.memory_high {
            s = s.memory_high(v);
        }
        if let Some(v) = self.restart_above_memory {
            s = s.restart_above_memory(v);
        }
        if let Some(v) = self.tasks_max {
            s = s.tasks_max(v);
        }
        if let Some((quota, period)) = self.cpu_max {
            s = s.cpu_max(quota, period);
        }
        if let Some(w) = self.cpu_weight {
            s = s.cpu_weight(w);
        }
        if let Some(w) = self.io_weight {
            s = s.io_weight(w);
        }
        for &(r, soft, hard) in &self.rlimits {
            s = s.rlimit(r, soft, hard);
        }
        s
    }
}

/// Bytes as the status table shows them: `812K`, `40.1M`, `1.2G`.
pub fn show_size(bytes: u64) -> String {
    let units = [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)];
    match units.iter().find(|(_, n)| bytes >= *n) {
        Some((u, n)) if bytes < 10 * n && *u != "K" => format!("{:.1}{u}", bytes as f64 / *n as f64),
        Some((u, n)) => format!("{}{u}", bytes / n),
        None => format!("{bytes}B"),
    }
}

/// The option of a library limit name (`memory_max` -> `--memory-max`).
pub fn flag_of(limit: &str) -> String {
    format!("--{}", limit.replace('_', "-"))
}

const SIZE: &str = "a size in bytes above 0, with an optional K, M, G or T (powers of 1024): 64M, 1G";
const RLIMIT: &str =
    "RESOURCE=SOFT[:HARD] (nofile, core, nproc, as or stack; sizes as 64M; unlimited), comma-separated";

/// `64M`, `1G`, `4096`, `512k`: bytes, powers of 1024.
pub fn size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_digit() => (&s[..=i], 0),
        (i, c) => (&s[..i], 10 * (1 + "KMGT".find(c.to_ascii_uppercase())? as u32)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1u64 << shift).filter(|&b| b > 0)
}

fn weight(s: &str) -> Option<u16> {
    s.parse().ok().filter(|w| (1..=10_000).contains(w))
}

/// `50%` (of one CPU, per 100 ms) or `QUOTA:PERIOD` in seconds.
fn cpu_max(s: &str) -> Option<(Duration, Duration)> {
    let secs = |v: &str| {
        v.parse::<f64>().ok().filter(|f| f.is_finite() && *f > 0.0).and_then(|f| Duration::try_from_secs_f64(f).ok())
    };
    let (quota, period) = match s.strip_suffix('%') {
        Some(pct) => {
            let period = Duration::from_millis(100);
            (
                period
                    .mul_f64(pct.parse::<f64>().ok().filter(|p| p.is_finite() && *p > 0.0 && *p <= 100_000.0)? / 100.0),
                period,
            )
        }
        None => {
            let (q, p) = s.split_once(':')?;
            (secs(q)?, secs(p)?)
        }
    };
    let ok = (Duration::from_millis(1)..=Duration::from_secs(1)).contains(&period) && quota >= Duration::from_millis(1);
    ok.then_some((quota, period))
}

fn rlimit(s: &str) -> Option<(Rlimit, u64, u64)> {
    let (name, value) = s.split_once('=')?;
    let r = match name {
        "nofile" => Rlimit::Nofile,
        "core" => Rlimit::Core,
        "nproc" => Rlimit::Nproc,
        "as" => Rlimit::As,
        "stack" => Rlimit::Stack,
        _ => return None,
    };
    let one = |v: &str| match v {
        "unlimited" | "infinity" => Some(RLIM_INFINITY),
        "0" => Some(0),
        v => size(v),
    };
    let (soft, hard) = match value.split_once(':') {
        Some((soft, hard)) => (one(soft)?, one(hard)?),
        None => (one(value)?, one(value)?),
    };
    (soft <= hard).then_some((r, soft, hard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_weights_quotas_and_rlimits_parse() {
        assert_eq!(size("64M"), Some(64 << 20));
        assert_eq!(size("1G"), Some(1 << 30));
        assert_eq!(size("512k"), Some(512 << 10));
        assert_eq!(size("4096"), Some(4096));
        for bad in ["", "M", "0", "-1M", "1.5G", "12X", "99999999999T"] {
            assert_eq!(size(bad), None, "{bad:?}");
        }
        assert_eq!(cpu_max("50%"), Some((Duration::from_millis(50), Duration::from_millis(100))));
        assert_eq!(cpu_max("0.2:0.5"), Some((Duration::from_millis(200), Duration::from_millis(500))));
        for bad in ["0%", "x%", "1:2", "0.0001:0.1", "1"] {
            assert_eq!(cpu_max(bad), None, "{bad:?}");
        }
        assert_eq!(rlimit("nofile=1024:4096"), Some((Rlimit::Nofile, 1024, 4096)));
        assert_eq!(rlimit("core=0"), Some((Rlimit::Core, 0, 0)));
        assert_eq!(rlimit("as=1G:unlimited"), Some((Rlimit::As, 1 << 30, RLIM_INFINITY)));
        for bad in ["nofile", "files=3", "nofile=9:3", "stack=big"] {
            assert_eq!(rlimit(bad), None, "{bad:?}");
        }
        let mut l = Limits::default();
        l.set("rlimit", "nofile=10,core=0").unwrap();
        l.set("rlimit", "nofile=20").unwrap();
        assert_eq!(l.rlimits, [(Rlimit::Core, 0, 0), (Rlimit::Nofile, 20, 20)]);
        let e = l.set("memory-max", "lots").unwrap_err();
        assert!(e.starts_with("--memory-max \"lots\": expected a size"), "{e}");
        assert!(l.set("cpu-weight", "0").unwrap_err().starts_with("--cpu-weight \"0\""));
        assert_eq!(flag_of("memory_max"), "--memory-max");
        assert_eq!(
            (show_size(512), show_size(812 << 10), show_size(42 << 20)),
            ("512B".into(), "812K".into(), "42M".into())
        );
        assert_eq!(show_size(644_245_094), "614M");
        assert_eq!(show_size(3 << 29), "1.5G");
    }
}
