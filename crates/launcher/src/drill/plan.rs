//! The drill's services as users name them (`worker-1` … `runner`), what
//! each runs, how many processes each has, and their metrics ports. One
//! table: a service with replicas (`EXECUTORS=N` gives `worker-1-1` …
//! `worker-1-N`, the names Docker Compose gives the replicas;
//! `AGGREGATORS=N` gives `worker-2-1` … `worker-2-N`) is a row with a
//! count.

use std::net::SocketAddr;

/// What a service's processes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Executor,
    Aggregator,
    Verifier,
    Runner,
}

impl Role {
    /// As `make ps` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Executor => "executor",
            Role::Aggregator => "aggregator",
            Role::Verifier => "verifier",
            Role::Runner => "runner",
        }
    }
}

/// A service: its name, role, and metrics port offset from `METRICS_ADDR`'s
/// (replica K ≥ 2 gets `offset + 8 * (index + 1) + K`, i.e. worker-1-K
/// gets 8 + K and worker-2-K 17 + K, clear of the other services' ports
/// up to 9 executors).
#[derive(Clone, Copy, Debug)]
struct Service {
    name: &'static str,
    role: Role,
    metrics_offset: Option<u16>,
}

const SERVICES: [Service; 4] = [
    Service {
        name: "worker-1",
        role: Role::Executor,
        metrics_offset: Some(0),
    },
    Service {
        name: "worker-2",
        role: Role::Aggregator,
        metrics_offset: Some(1),
    },
    Service {
        name: "worker-3",
        role: Role::Verifier,
        metrics_offset: Some(2),
    },
    Service {
        name: "runner",
        role: Role::Runner,
        metrics_offset: None,
    },
];

/// How many processes each service runs.
#[derive(Clone, Copy, Debug)]
pub struct Counts {
    pub executors: usize,
    pub aggregators: usize,
    pub runner: bool,
}

impl Counts {
    fn of(&self, role: Role) -> usize {
        match role {
            Role::Executor => self.executors,
            Role::Aggregator => self.aggregators,
            Role::Verifier => 1,
            Role::Runner => usize::from(self.runner),
        }
    }
}

/// The process names to start, in start order.
pub fn plan(counts: Counts) -> Vec<String> {
    let mut names = Vec::new();
    for s in SERVICES {
        match counts.of(s.role) {
            0 => {}
            1 => names.push(s.name.to_owned()),
            n => names.extend((1..=n).map(|k| format!("{}-{k}", s.name))),
        }
    }
    names
}

/// The service a process name belongs to, and its replica number.
fn service_of(name: &str) -> Option<(usize, Service, Option<u16>)> {
    SERVICES.iter().enumerate().find_map(|(i, s)| {
        if name == s.name {
            return Some((i, *s, None));
        }
        let k = name.strip_prefix(s.name)?.strip_prefix('-')?.parse().ok()?;
        Some((i, *s, Some(k)))
    })
}

/// The role of a process name (`worker-1-2` → executor).
pub fn role_of(name: &str) -> Option<Role> {
    service_of(name).map(|(_, s, _)| s.role)
}

/// Sorts names as the plan orders them (by service, then replica).
pub fn sort(names: &mut [String]) {
    names.sort_by_key(|n| match service_of(n) {
        Some((i, _, k)) => (i, k.unwrap_or(0), String::new()),
        None => (SERVICES.len(), 0, n.clone()),
    });
}

/// `name`'s metrics address: `base`'s host, its port plus the offset.
pub fn metrics_addr(name: &str, base: Option<SocketAddr>) -> Option<SocketAddr> {
    let mut addr = base?;
    let (index, service, replica) = service_of(name)?;
    let offset = service.metrics_offset?;
    let offset = match replica {
        None | Some(1) => offset,
        Some(k) => offset + 8 * (index as u16 + 1) + k,
    };
    addr.set_port(addr.port().checked_add(offset)?);
    Some(addr)
}

/// The names among `candidates` that the user's `N` means: `1` (or
/// `worker-1`) is every process of worker-1, `1-2` (or `worker-1-2`) one,
/// `runner` the runner.
pub fn resolve(user: &str, candidates: &[String]) -> Vec<String> {
    let short = user.strip_prefix("worker-").unwrap_or(user);
    let service = SERVICES
        .iter()
        .find(|s| s.name == user || s.name.strip_prefix("worker-") == Some(short));
    candidates
        .iter()
        .filter(|name| match service {
            Some(s) => service_of(name).is_some_and(|(_, of, _)| of.name == s.name),
            None => **name == user || **name == format!("worker-{short}"),
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(executors: usize, runner: bool) -> Counts {
        Counts {
            executors,
            aggregators: 1,
            runner,
        }
    }

    #[test]
    fn one_executor_is_worker_1_and_more_are_replicas() {
        assert_eq!(
            plan(counts(1, true)),
            ["worker-1", "worker-2", "worker-3", "runner"]
        );
        assert_eq!(
            plan(counts(3, false)),
            [
                "worker-1-1",
                "worker-1-2",
                "worker-1-3",
                "worker-2",
                "worker-3"
            ]
        );
        assert_eq!(role_of("worker-1-3"), Some(Role::Executor));
        assert_eq!(role_of("runner"), Some(Role::Runner));
        assert_eq!(role_of("worker-9"), None);
        assert_eq!(role_of("worker-1-x"), None);
    }

    #[test]
    fn aggregator_replicas_are_worker_2_k() {
        let names = plan(Counts {
            executors: 1,
            aggregators: 3,
            runner: false,
        });
        assert_eq!(
            names,
            [
                "worker-1",
                "worker-2-1",
                "worker-2-2",
                "worker-2-3",
                "worker-3"
            ]
        );
        assert_eq!(role_of("worker-2-3"), Some(Role::Aggregator));
        assert_eq!(resolve("2", &names).len(), 3);
        assert_eq!(resolve("2-2", &names), ["worker-2-2"]);
        let base: SocketAddr = "127.0.0.1:9100".parse().unwrap();
        let port = |n: &str| metrics_addr(n, Some(base)).map(|a| a.port());
        assert_eq!(port("worker-2-1"), Some(9101));
        assert_eq!(port("worker-2-2"), Some(9119));
        assert_eq!(port("worker-2-3"), Some(9120));
    }

    #[test]
    fn metrics_ports_follow_the_documented_offsets() {
        let base: SocketAddr = "127.0.0.1:9100".parse().unwrap();
        let port = |n: &str| metrics_addr(n, Some(base)).map(|a| a.port());
        assert_eq!(port("worker-1"), Some(9100));
        assert_eq!(port("worker-1-1"), Some(9100));
        assert_eq!(port("worker-2"), Some(9101));
        assert_eq!(port("worker-3"), Some(9102));
        assert_eq!(port("worker-1-2"), Some(9110));
        assert_eq!(port("worker-1-3"), Some(9111));
        assert_eq!(port("runner"), None);
        assert_eq!(metrics_addr("worker-2", None), None);
    }

    #[test]
    fn a_user_name_means_a_service_or_one_process() {
        let names = plan(counts(3, true));
        assert_eq!(
            resolve("1", &names),
            ["worker-1-1", "worker-1-2", "worker-1-3"]
        );
        assert_eq!(resolve("worker-1", &names).len(), 3);
        assert_eq!(resolve("1-2", &names), ["worker-1-2"]);
        assert_eq!(resolve("worker-1-2", &names), ["worker-1-2"]);
        assert_eq!(resolve("2", &names), ["worker-2"]);
        assert_eq!(resolve("runner", &names), ["runner"]);
        assert!(resolve("7", &names).is_empty());
        assert!(resolve("1-7", &names).is_empty());
        assert_eq!(resolve("1", &plan(counts(1, true))), ["worker-1"]);
    }

    #[test]
    fn names_sort_as_planned() {
        let mut names: Vec<String> = [
            "runner",
            "worker-3",
            "worker-1-10",
            "worker-1-2",
            "zzz",
            "worker-2",
        ]
        .map(String::from)
        .to_vec();
        sort(&mut names);
        assert_eq!(
            names,
            [
                "worker-1-2",
                "worker-1-10",
                "worker-2",
                "worker-3",
                "runner",
                "zzz"
            ]
        );
    }
}
