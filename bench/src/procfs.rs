//! CPU time and memory of processes, read from /proc (Linux only).

use std::fs;

use anyhow::{Context, bail};

/// Clock ticks per second of the times in /proc/<pid>/stat. Linux reports
/// them in USER_HZ, which is 100 on every architecture it exposes to user
/// space.
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds used so far by process `pid`, all its threads
/// included (also threads that have exited).
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_stat_cpu(&stat).with_context(|| format!("unexpected format of {path}"))
}

/// utime + stime from the text of /proc/<pid>/stat, in seconds.
fn parse_stat_cpu(stat: &str) -> anyhow::Result<f64> {
    // The command name (field 2) is in parentheses and may contain spaces:
    // count fields from the last `)`.
    let after_name = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("no `)` after the command name")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let (Some(utime), Some(stime)) = (fields.get(11), fields.get(12)) else {
        bail!("too few fields");
    };
    let ticks: u64 = utime.parse::<u64>()? + stime.parse::<u64>()?;
    Ok(ticks as f64 / USER_HZ)
}

/// CPU seconds of several processes together (nginx: master and worker).
pub fn cpu_seconds_sum(pids: &[u32]) -> anyhow::Result<f64> {
    pids.iter().map(|&pid| cpu_seconds(pid)).sum()
}

/// Resident and proportional set size of a process, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub rss: u64,
    pub pss: u64,
}

impl std::ops::Add for Memory {
    type Output = Memory;
    fn add(self, other: Memory) -> Memory {
        Memory {
            rss: self.rss + other.rss,
            pss: self.pss + other.pss,
        }
    }
}

/// RSS and PSS of `pid` from /proc/<pid>/smaps_rollup.
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_smaps_rollup(&text).with_context(|| format!("unexpected format of {path}"))
}

/// RSS and PSS of several processes together.
pub fn memory_sum(pids: &[u32]) -> anyhow::Result<Memory> {
    pids.iter()
        .map(|&pid| memory(pid))
        .try_fold(Memory::default(), |sum, m| Ok(sum + m?))
}

fn parse_smaps_rollup(text: &str) -> anyhow::Result<Memory> {
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = text
            .lines()
            .find(|line| line.starts_with(name) && line[name.len()..].starts_with(':'))
            .with_context(|| format!("no `{name}:` line"))?;
        let kib: u64 = line[name.len() + 1..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("bad `{name}:` value"))?;
        Ok(kib * 1024)
    };
    Ok(Memory {
        rss: field("Rss")?,
        pss: field("Pss")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_counts_fields_after_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 1 1";
        assert_eq!(parse_stat_cpu(stat).unwrap(), 3.0);
    }

    #[test]
    fn stat_cpu_refuses_a_truncated_line() {
        assert!(parse_stat_cpu("1 (x) S 1 2 3").is_err());
    }

    #[test]
    fn smaps_rollup_gives_rss_and_pss_in_bytes_not_pss_anon() {
        let text = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\n\
                    Rss:                4096 kB\n\
                    Pss:                1024 kB\n\
                    Pss_Anon:            512 kB\n";
        assert_eq!(
            parse_smaps_rollup(text).unwrap(),
            Memory {
                rss: 4096 * 1024,
                pss: 1024 * 1024
            }
        );
    }

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id();
        assert!(cpu_seconds(me).unwrap() >= 0.0);
        assert!(memory(me).unwrap().rss > 0);
    }
}
