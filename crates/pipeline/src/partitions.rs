//! [`PartitionsView`]: the aggregator's partitions as people read them —
//! each partition's owner (and whether it is still heard from), epoch,
//! open batches, queue depth and last hand-over, and the replicas with
//! their share. `batchline partitions` (text and `--json`) and the
//! partitions section of `batchline status` show this one struct.

use std::time::Duration;

use broker::{Broker, Queue};
use serde::Serialize;
use store::{PartitionInfo, ReplicaInfo, Store};

use crate::Result;
use crate::aggregator::SILENCE;
use crate::status::now_s;

/// One partition.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct PartitionRow {
    pub partition: u16,
    /// Its directory's name under `worker-data/aggregator/` (`p07`).
    pub name: String,
    pub epoch: i64,
    pub owner: Option<String>,
    /// The owner was heard from within the silence a replica is given;
    /// false for a partition whose owner died or froze (its standby takes
    /// it at its next result, or at the live replicas' nudge).
    pub owner_alive: bool,
    pub owned_for_s: Option<f64>,
    pub open_batches: i64,
    /// Results ready in its queue; `None` when the broker was not asked.
    pub queue_depth: Option<u64>,
    pub handovers: i64,
    pub last_handover_ago_s: Option<f64>,
    /// `start`, `failover`, `rebalance`, `shutdown`, `fenced`, `locked`.
    pub last_handover_cause: Option<String>,
}

/// A replica heard from lately, with the partitions it owns.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct ReplicaRow {
    pub replica: String,
    pub silent_s: f64,
    pub partitions: Vec<u16>,
}

/// Every partition and the live replicas.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct PartitionsView {
    pub partitions: Vec<PartitionRow>,
    pub replicas: Vec<ReplicaRow>,
    /// `ceil(partitions / replicas)`: what each replica holds at most once
    /// the spread is even.
    pub fair_share: Option<usize>,
}

impl PartitionsView {
    /// Reads the partitions from the store, and with `broker` their queues'
    /// depths.
    pub async fn read<B: Broker, S: Store>(store: &S, broker: Option<&B>) -> Result<Self> {
        let infos = store.partition_status().await?;
        let live = store.live_replicas(SILENCE).await?;
        let mut depths = Vec::with_capacity(infos.len());
        for info in &infos {
            depths.push(match broker {
                Some(b) => Some(b.queue_depth(Queue::Results(info.partition)).await?),
                None => None,
            });
        }
        Ok(Self::new(&infos, &live, &depths, now_s()))
    }

    fn new(
        infos: &[PartitionInfo],
        live: &[ReplicaInfo],
        depths: &[Option<u64>],
        now: f64,
    ) -> Self {
        let partitions = infos
            .iter()
            .zip(depths)
            .map(|(p, depth)| PartitionRow {
                partition: p.partition,
                name: store::partition::name(p.partition),
                epoch: p.epoch,
                owner: p.owner.clone(),
                owner_alive: p
                    .owner
                    .as_ref()
                    .is_some_and(|o| live.iter().any(|r| &r.replica == o)),
                owned_for_s: p.owned_since.map(|t| (now - t).max(0.0)),
                open_batches: p.open_batches,
                queue_depth: *depth,
                handovers: p.handovers,
                last_handover_ago_s: p.last_handover_at.map(|t| (now - t).max(0.0)),
                last_handover_cause: p.last_handover_cause.clone(),
            })
            .collect::<Vec<_>>();
        let replicas = live
            .iter()
            .map(|r| ReplicaRow {
                replica: r.replica.clone(),
                silent_s: r.silent_s,
                partitions: r.partitions.clone(),
            })
            .collect::<Vec<_>>();
        let fair_share = (!replicas.is_empty()).then(|| partitions.len().div_ceil(replicas.len()));
        Self {
            partitions,
            replicas,
            fair_share,
        }
    }

    /// Partitions without a live owner.
    pub fn orphans(&self) -> impl Iterator<Item = &PartitionRow> {
        self.partitions.iter().filter(|p| !p.owner_alive)
    }
}

/// How long ago, for people: `4.2s`, `3m`, `2h`.
pub fn ago(s: f64) -> String {
    let d = Duration::from_secs_f64(s.max(0.0));
    match d.as_secs() {
        0..60 => format!("{s:.1}s"),
        60..3600 => format!("{}m", d.as_secs() / 60),
        _ => format!("{}h", d.as_secs() / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(partition: u16, owner: Option<&str>) -> PartitionInfo {
        PartitionInfo {
            partition,
            epoch: 3,
            owner: owner.map(str::to_string),
            owned_since: Some(90.0),
            open_batches: 2,
            handovers: 3,
            last_handover_at: Some(95.0),
            last_handover_cause: Some("failover".into()),
        }
    }

    #[test]
    fn owners_not_heard_from_are_not_alive() {
        let infos = [info(0, Some("a")), info(1, Some("gone")), info(2, None)];
        let live = [ReplicaInfo {
            replica: "a".into(),
            silent_s: 1.0,
            partitions: vec![0],
        }];
        let view = PartitionsView::new(&infos, &live, &[Some(5), None, Some(0)], 100.0);
        let alive: Vec<bool> = view.partitions.iter().map(|p| p.owner_alive).collect();
        assert_eq!(alive, [true, false, false]);
        assert_eq!(
            view.orphans().map(|p| p.partition).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(view.partitions[0].name, "p00");
        assert_eq!(view.partitions[0].owned_for_s, Some(10.0));
        assert_eq!(view.partitions[0].last_handover_ago_s, Some(5.0));
        assert_eq!(view.partitions[0].queue_depth, Some(5));
        assert_eq!(view.fair_share, Some(3));
    }

    #[test]
    fn queues_and_directories_name_partitions_alike() {
        for p in [0, 7, 15, 99] {
            assert_eq!(broker::partition_label(p), store::partition::name(p));
            assert!(
                Queue::Results(p)
                    .name()
                    .ends_with(&store::partition::name(p))
            );
        }
    }

    #[test]
    fn no_replicas_no_fair_share() {
        let view = PartitionsView::new(&[info(0, None)], &[], &[None], 100.0);
        assert_eq!(view.fair_share, None);
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(ago(4.24), "4.2s");
        assert_eq!(ago(185.0), "3m");
        assert_eq!(ago(7300.0), "2h");
    }
}
