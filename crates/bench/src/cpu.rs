//! Where the CPU went during a scenario: the stages (by pid), Postgres (all
//! its processes, exited backends included through the postmaster's
//! children times), RabbitMQ (`beam.smp`), and the whole machine from
//! `/proc/stat`. The machine is shared, so Postgres and RabbitMQ figures
//! include other clients' work; the machine's busy time shows how much.

use std::collections::BTreeMap;

use serde::Serialize;

/// Kernel clock ticks per second for `/proc/*/stat` times. It is 100 on
/// every Linux architecture batchline targets; reading it would take
/// `sysconf`, i.e. `unsafe`, which the workspace forbids.
const TICKS_PER_S: f64 = 100.0;

/// CPU counters at one instant.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Ticks per group name (`postgres`, `rabbitmq`, or a stage name).
    groups: BTreeMap<String, u64>,
    /// Busy and total ticks of the whole machine (all cores).
    machine_busy: u64,
    machine_total: u64,
}

/// CPU seconds spent between two snapshots.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CpuUse {
    /// Per group (`postgres`, `rabbitmq`, `executor-1`, …), CPU seconds.
    pub by_process: BTreeMap<String, f64>,
    /// Sum of `by_process`: the pipeline's own cost, services included.
    pub own_s: f64,
    /// All cores, all processes (bench itself and other users included).
    pub machine_busy_s: f64,
    /// Busy time that is not the pipeline's: other users of the machine.
    pub foreign_s: f64,
    /// Cores × wall time.
    pub machine_capacity_s: f64,
}

/// Reads the counters of the given stage pids and of the services.
pub fn snapshot(stages: &[(String, u32)]) -> Snapshot {
    let mut s = Snapshot::default();
    for (name, pid) in stages {
        if let Some(t) = proc_times(*pid) {
            s.groups.insert(name.clone(), t.own);
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Some(t) = proc_times(pid) else { continue };
            let group = match t.comm.as_str() {
                "postgres" => "postgres",
                "beam.smp" | "erl_child_setup" | "epmd" => "rabbitmq",
                _ => continue,
            };
            // The postmaster's children times hold every exited backend.
            let ticks = if group == "postgres" && t.parent_comm.as_deref() != Some("postgres") {
                t.own + t.children
            } else {
                t.own
            };
            *s.groups.entry(group.to_owned()).or_default() += ticks;
        }
    }
    if let Some((busy, total)) = machine_ticks() {
        s.machine_busy = busy;
        s.machine_total = total;
    }
    s
}

impl Snapshot {
    /// CPU used from `self` to `later`.
    pub fn until(&self, later: &Snapshot) -> CpuUse {
        let secs = |ticks: u64| (ticks as f64 / TICKS_PER_S * 100.0).round() / 100.0;
        let by_process: BTreeMap<String, f64> = later
            .groups
            .iter()
            .map(|(name, after)| {
                let before = self.groups.get(name).copied().unwrap_or(0);
                (name.clone(), secs(after.saturating_sub(before)))
            })
            .collect();
        let own_s = (by_process.values().sum::<f64>() * 100.0).round() / 100.0;
        let machine_busy_s = secs(later.machine_busy.saturating_sub(self.machine_busy));
        CpuUse {
            by_process,
            own_s,
            machine_busy_s,
            foreign_s: ((machine_busy_s - own_s).max(0.0) * 100.0).round() / 100.0,
            machine_capacity_s: secs(later.machine_total.saturating_sub(self.machine_total)),
        }
    }
}

struct ProcTimes {
    comm: String,
    parent_comm: Option<String>,
    /// utime + stime.
    own: u64,
    /// cutime + cstime (waited-for children).
    children: u64,
}

fn proc_times(pid: u32) -> Option<ProcTimes> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (comm, fields) = parse_stat(&stat)?;
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    // Fields after the comm, 0-based: state=0 ppid=1 … utime=11 stime=12 cutime=13 cstime=14.
    let ppid = field(1)?;
    let parent_comm = std::fs::read_to_string(format!("/proc/{ppid}/stat"))
        .ok()
        .and_then(|s| parse_stat(&s).map(|(c, _)| c));
    Some(ProcTimes {
        comm,
        parent_comm,
        own: field(11)? + field(12)?,
        children: field(13)? + field(14)?,
    })
}

/// `pid (comm) state ppid …` → comm and the fields after it (comm may hold spaces).
fn parse_stat(stat: &str) -> Option<(String, Vec<&str>)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    Some((comm, stat.get(close + 1..)?.split_whitespace().collect()))
}

/// Share of the machine's CPU that was busy over `window`.
pub async fn busy_share(window: std::time::Duration) -> Option<f64> {
    let (b0, t0) = machine_ticks()?;
    tokio::time::sleep(window).await;
    let (b1, t1) = machine_ticks()?;
    Some((b1 - b0) as f64 / (t1 - t0).max(1) as f64)
}

/// Waits (up to `max_wait`) until the machine is busy less than
/// `threshold` of its capacity, so a scenario does not start in the middle
/// of someone else's build. Returns the last busy share seen.
pub async fn wait_quiet(threshold: f64, max_wait: std::time::Duration) -> Option<f64> {
    let start = std::time::Instant::now();
    loop {
        let share = busy_share(std::time::Duration::from_secs(1)).await?;
        if share <= threshold || start.elapsed() >= max_wait {
            if share > threshold {
                tracing::warn!(
                    busy = format!("{:.0}%", share * 100.0),
                    "machine still busy; measuring anyway"
                );
            }
            return Some(share);
        }
        tracing::info!(
            busy = format!("{:.0}%", share * 100.0),
            "waiting for the machine to quieten"
        );
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// Busy and total ticks over all cores, from the first line of `/proc/stat`.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine(stat.lines().next()?)
}

fn parse_machine(cpu_line: &str) -> Option<(u64, u64)> {
    let v: Vec<u64> = cpu_line
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest times are inside user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_comm() {
        let (comm, f) =
            parse_stat("42 (tokio worker 1) S 7 42 42 0 -1 4194560 1 0 0 0 250 30 4 6 20 0")
                .unwrap();
        assert_eq!(comm, "tokio worker 1");
        assert_eq!(
            (f[1], f[11], f[12], f[13], f[14]),
            ("7", "250", "30", "4", "6")
        );
    }

    #[test]
    fn machine_busy_excludes_idle_and_iowait() {
        assert_eq!(
            parse_machine("cpu  100 0 50 800 50 0 0 0 0 0"),
            Some((150, 1000))
        );
        assert_eq!(parse_machine("intr 1 2"), None);
    }

    #[test]
    fn this_process_burns_measurable_cpu() {
        let me = vec![("me".to_string(), std::process::id())];
        let before = snapshot(&me);
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(100) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let used = before.until(&snapshot(&me));
        assert!(used.by_process["me"] > 0.0, "{used:?}");
        assert!(used.machine_capacity_s > 0.0);
    }
}
