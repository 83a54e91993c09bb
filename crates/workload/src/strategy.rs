//! The team strategies (docs/bingo-model.md): which tile, by which rule, a player works
//! next, and which tile a drop goes to. Pure functions of the compiled model
//! and one team's board, allocation-free; the orders of preference they scan
//! were sorted once in `compile`.

use crate::compile::Model;
use crate::event::Strategy;
use crate::validate::TILES_PER_ROW;

/// One team's board as a strategy sees it. Unlocked rows are always the
/// prefix `0..=furthest`: a row unlocks from points in the row before it,
/// and only unlocked tiles make progress.
#[derive(Debug, Clone, Copy)]
pub struct Board<'a> {
    pub furthest: u32,
    /// Completed flags of the team's tiles.
    pub done: &'a [bool],
    /// How many tiles at the start of [`order`] are complete, so scans skip them.
    pub done_prefix: usize,
}

impl Board<'_> {
    fn open(&self, m: &Model, tile: u32) -> bool {
        m.tiles[tile as usize].row <= self.furthest && !self.done[tile as usize]
    }
}

/// The strategy's order of preference over all tiles, used for "anywhere"
/// task choices.
pub fn order(m: &Model, strategy: Strategy) -> &[u32] {
    match strategy {
        Strategy::Greedy => &m.tiles_greedy,
        Strategy::RowUnlocking | Strategy::ComboUnlocking => &m.tiles_by_points,
    }
}

/// What a strategy believes a tile costs in seconds.
fn cost(m: &Model, strategy: Strategy, tile: u32, furthest: u32) -> f64 {
    let estimate = m.tiles[tile as usize].estimate;
    match strategy {
        Strategy::ComboUnlocking => estimate * (1.0 + f64::from(m.shared_locked(tile, furthest))),
        Strategy::RowUnlocking | Strategy::Greedy => estimate,
    }
}

/// The set of the furthest row's tiles (a bit per position) that reaches the
/// unlock threshold at the least remaining cost; completed tiles cost
/// nothing, so the choice adapts as lucky drops complete tiles. Ties go to
/// the lowest mask. 0 when no set is workable.
pub fn best_set(m: &Model, strategy: Strategy, board: Board<'_>) -> u8 {
    let base = board.furthest * TILES_PER_ROW as u32;
    let mut points = [0u32; TILES_PER_ROW];
    let mut costs = [0.0f64; TILES_PER_ROW];
    for p in 0..TILES_PER_ROW {
        let tile = base + p as u32;
        points[p] = m.tiles[tile as usize].points;
        if !board.done[tile as usize] {
            costs[p] = cost(m, strategy, tile, board.furthest);
        }
    }
    // Each set's totals extend those of the set without its lowest tile.
    const SETS: usize = 1 << TILES_PER_ROW;
    let mut set_points = [0u32; SETS];
    let mut set_cost = [0.0f64; SETS];
    let (mut best, mut best_cost) = (0u8, f64::INFINITY);
    for mask in 1..SETS {
        let (low, rest) = (mask.trailing_zeros() as usize, mask & (mask - 1));
        set_points[mask] = set_points[rest] + points[low];
        set_cost[mask] = set_cost[rest] + costs[low];
        if set_points[mask] >= m.threshold && set_cost[mask] < best_cost {
            (best, best_cost) = (mask as u8, set_cost[mask]);
        }
    }
    best
}

/// The tile's fastest rule the player qualifies for.
fn rule_for(m: &Model, tile: u32, capabilities: u64) -> Option<u32> {
    m.tiles[tile as usize]
        .rules
        .clone()
        .find(|&r| m.rules[r as usize].requires & !capabilities == 0)
}

/// The rule a player with `capabilities` works next, or `None` when nothing
/// open is workable for them. `best` is [`best_set`] for the same board.
pub fn pick_rule(
    m: &Model,
    strategy: Strategy,
    board: Board<'_>,
    best: u8,
    capabilities: u64,
) -> Option<u32> {
    let open_rule = |tile: u32| {
        if board.open(m, tile) {
            rule_for(m, tile, capabilities)
        } else {
            None
        }
    };
    let anywhere = &order(m, strategy)[board.done_prefix..];
    if strategy == Strategy::Greedy {
        return anywhere.iter().find_map(|&t| open_rule(t));
    }
    let base = board.furthest * TILES_PER_ROW as u32;
    let by_points = m.row_by_points[board.furthest as usize];
    by_points
        .iter()
        .filter(|&&p| best & (1 << p) != 0)
        .find_map(|&p| open_rule(base + u32::from(p)))
        .or_else(|| {
            by_points
                .iter()
                .find_map(|&p| open_rule(base + u32::from(p)))
        })
        .or_else(|| anywhere.iter().find_map(|&t| open_rule(t)))
}

/// The tile a grant of `drop` goes to, or `None` when no open tile accepts it
/// (the grant is lost).
pub fn target_tile(m: &Model, strategy: Strategy, board: Board<'_>, drop: u32) -> Option<u32> {
    if strategy == Strategy::Greedy {
        return m.drop_tiles_greedy[drop as usize]
            .iter()
            .copied()
            .find(|&t| board.open(m, t));
    }
    let tiles = &m.drop_tiles[drop as usize];
    tiles
        .iter()
        .copied()
        .find(|&t| m.tiles[t as usize].row == board.furthest && !board.done[t as usize])
        .or_else(|| tiles.iter().copied().find(|&t| board.open(m, t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::spring_league::spring_league;

    #[test]
    fn row_unlocking_prefers_the_cheapest_set_reaching_the_threshold() {
        let m = compile(&spring_league());
        let done = vec![false; m.tiles.len()];
        // Row 0: Zd (1 pt, 120 s), Vd (2 pts, 180 s), RC (3 pts, 60 s), M (4 pts, 45 s).
        // {RC, M} = 7 points for 105 s is the cheapest way to 5 points.
        let best = best_set(
            &m,
            Strategy::RowUnlocking,
            Board {
                furthest: 0,
                done: &done,
                done_prefix: 0,
            },
        );
        assert_eq!(best, 0b1100);
        // The 4-point Mining tile comes first; anyone qualifies.
        let rule = pick_rule(
            &m,
            Strategy::RowUnlocking,
            Board {
                furthest: 0,
                done: &done,
                done_prefix: 0,
            },
            best,
            0,
        )
        .unwrap();
        assert_eq!(m.rules[rule as usize].activity, 3, "mining");
    }

    #[test]
    fn completed_tiles_cost_nothing_in_the_set_choice() {
        let m = compile(&spring_league());
        let mut done = vec![false; m.tiles.len()];
        done[1] = true; // Vd, 2 points, already complete
        let best = best_set(
            &m,
            Strategy::RowUnlocking,
            Board {
                furthest: 0,
                done: &done,
                done_prefix: 0,
            },
        );
        // {Vd (done), M} = 6 points for 45 s beats {RC, M} at 105 s.
        assert_eq!(best, 0b1010);
    }

    #[test]
    fn grants_go_to_the_furthest_row_first_then_highest_points() {
        let m = compile(&spring_league());
        let done = vec![false; m.tiles.len()];
        let ore = (0..m.drop_tiles.len() as u32)
            .find(|&d| m.drop_tiles[d as usize].contains(&3))
            .unwrap();
        // Rows 0..=2 unlocked: mining tiles are s4-r0 (3), s3-r1 (6), s2-r2 (9).
        let b = Board {
            furthest: 2,
            done: &done,
            done_prefix: 0,
        };
        assert_eq!(target_tile(&m, Strategy::RowUnlocking, b, ore), Some(9));
        let mut done2 = done.clone();
        done2[9] = true;
        let b = Board {
            furthest: 2,
            done: &done2,
            done_prefix: 0,
        };
        assert_eq!(
            target_tile(&m, Strategy::RowUnlocking, b, ore),
            Some(3),
            "then the 4-pointer in row 0"
        );
        assert_eq!(
            target_tile(
                &m,
                Strategy::Greedy,
                Board {
                    furthest: 2,
                    done: &done,
                    done_prefix: 0
                },
                ore
            ),
            Some(3)
        );
    }

    #[test]
    fn capabilities_gate_rules() {
        let m = compile(&spring_league());
        let done = vec![false; m.tiles.len()];
        // Only row 0's Zd (needs ds2) left open: a player without ds2 finds nothing there.
        let mut d = done.clone();
        for t in [1, 2, 3] {
            d[t] = true;
        }
        let b = Board {
            furthest: 0,
            done: &d,
            done_prefix: 0,
        };
        let best = best_set(&m, Strategy::RowUnlocking, b);
        assert_eq!(pick_rule(&m, Strategy::RowUnlocking, b, best, 0), None);
        assert!(pick_rule(&m, Strategy::RowUnlocking, b, best, u64::MAX).is_some());
    }
}
