//! Where a draft's lines are stored, so that a new statement version writes
//! the lines it changed and not the ones after them.
//!
//! A statement's lines are in bill order (provider, resource, SKU), so a
//! line for a SKU used for the first time lands among the others. Stored at
//! its index in the statement, every line after it would move and be
//! written again: `tally bench` at 400 lines a statement found four times
//! as many line rows written as aggregates changed, the busiest statement
//! in PostgreSQL (BENCHMARKS.md, "Rating restated in chunks; invoice lines
//! that stay where they are").
//! So a draft's line positions are sparse: in the statement's order, with
//! room between them, and a new line takes a position between its
//! neighbours'. Finalizing an invoice numbers its lines 0, 1, 2, … again
//! ([`crate::lifecycle::finalize_sealed`]): credit notes name those.

use std::collections::{HashMap, HashSet, VecDeque};

/// A line's digest: equal digests, equal rows.
pub type Digest = [u8; 32];

/// The room left between two lines laid out afresh: 16 lines can go
/// between the same two before the draft is laid out again.
const GAP: i64 = 1 << 16;

/// What one statement version writes of a draft's lines.
#[derive(Debug, PartialEq, Eq)]
pub struct LinePlan {
    /// Each line's position, in the statement's order (strictly rising).
    pub positions: Vec<i32>,
    /// Whether each line is written (it is not stored at its position yet).
    pub written: Vec<bool>,
    /// The stored positions no line keeps.
    pub deleted: Vec<i32>,
}

/// Where the lines of a new version go, given the draft's stored lines
/// (position and digest, by rising position; a line stored without a
/// digest is never kept). A stored line with the same digest as a new one,
/// in the same order, stays where it is, unwritten. The new lines between
/// two kept ones take the positions of the stored lines between them (a
/// changed line is written over its old row), and room beyond those when
/// more came; when there is no room left, every line is laid out afresh.
pub fn plan(stored: &[(i32, Option<Digest>)], lines: &[Digest]) -> LinePlan {
    // Kept lines, as (line index, stored index), rising in both.
    let mut kept: Vec<(usize, usize)> = Vec::new();
    let mut at: HashMap<&Digest, VecDeque<usize>> = HashMap::new();
    for (k, (_, digest)) in stored.iter().enumerate() {
        if let Some(d) = digest {
            at.entry(d).or_default().push_back(k);
        }
    }
    for (j, digest) in lines.iter().enumerate() {
        let Some(queue) = at.get_mut(digest) else {
            continue;
        };
        let after = kept.last().map(|&(_, k)| k);
        while queue
            .front()
            .is_some_and(|&k| after.is_some_and(|a| k <= a))
        {
            queue.pop_front();
        }
        if let Some(k) = queue.pop_front() {
            kept.push((j, k));
        }
    }
    let mut out = LinePlan {
        positions: vec![0; lines.len()],
        written: vec![true; lines.len()],
        deleted: Vec::new(),
    };
    // The gaps between kept lines, with a line before the first and one
    // after the last that are never there.
    let mut line_from = 0;
    let mut stored_from = 0;
    let mut lo: i64 = -1;
    for anchor in kept.iter().map(Some).chain([None]) {
        let (line_to, stored_to, hi) = match anchor {
            Some(&(j, k)) => (j, k, i64::from(stored[k].0)),
            None => (lines.len(), stored.len(), i64::from(i32::MAX)),
        };
        let free: Vec<i64> = stored[stored_from..stored_to]
            .iter()
            .map(|(p, _)| i64::from(*p))
            .collect();
        let Some(placed) = place(lo, hi, &free, line_to - line_from) else {
            return afresh(stored, lines.len());
        };
        let taken: HashSet<i64> = placed.iter().copied().collect();
        out.deleted.extend(
            free.iter()
                .filter(|p| !taken.contains(p))
                .map(|&p| narrow(p)),
        );
        for (j, p) in (line_from..line_to).zip(placed) {
            out.positions[j] = narrow(p);
        }
        if let Some(&(j, _)) = anchor {
            out.positions[j] = narrow(hi);
            out.written[j] = false;
            line_from = j + 1;
        }
        stored_from = stored_to + 1;
        lo = hi;
    }
    out
}

/// `count` rising positions strictly between `lo` and `hi` for the new
/// lines of a gap whose stored lines are at `free` (rising): those first,
/// then room after the last of them; or spread over the whole gap; `None`
/// when it has too few.
fn place(lo: i64, hi: i64, free: &[i64], count: usize) -> Option<Vec<i64>> {
    let count_i = i64::try_from(count).ok()?;
    if count <= free.len() {
        return Some(free[..count].to_vec());
    }
    let last = free.last().copied().unwrap_or(lo);
    let more = count - free.len();
    if hi - last > i64::try_from(more).ok()? {
        let mut out = free.to_vec();
        out.extend(spread(last, hi, more));
        return Some(out);
    }
    (hi - lo > count_i).then(|| spread(lo, hi, count))
}

/// `count` positions after `lo` and before `hi` (which has room for them),
/// [`GAP`] apart or closer.
fn spread(lo: i64, hi: i64, count: usize) -> Vec<i64> {
    let n = count as i64;
    let step = GAP.min((hi - lo) / (n + 1)).max(1);
    (1..=n).map(|i| lo + step * i).collect()
}

/// Every line written, laid out afresh from the start.
fn afresh(stored: &[(i32, Option<Digest>)], count: usize) -> LinePlan {
    let positions: Vec<i32> = spread(-1, i64::from(i32::MAX), count)
        .into_iter()
        .map(narrow)
        .collect();
    let taken: HashSet<i32> = positions.iter().copied().collect();
    LinePlan {
        written: vec![true; count],
        deleted: stored
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| !taken.contains(p))
            .collect(),
        positions,
    }
}

/// A position computed between two `i32` ones (or below `i32::MAX`).
fn narrow(p: i64) -> i32 {
    i32::try_from(p).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn d(n: u32) -> Digest {
        let mut out = [0; 32];
        out[..4].copy_from_slice(&n.to_le_bytes());
        out
    }

    /// A draft's stored lines, by position.
    #[derive(Default)]
    struct Draft(BTreeMap<i32, Digest>);

    impl Draft {
        fn stored(&self) -> Vec<(i32, Option<Digest>)> {
            self.0.iter().map(|(p, d)| (*p, Some(*d))).collect()
        }

        /// Applies the plan of `lines` as invoicing does (deletes, then
        /// writes); returns the rows written and deleted.
        fn apply(&mut self, lines: &[Digest]) -> (usize, usize) {
            let plan = plan(&self.stored(), lines);
            assert!(plan.positions.windows(2).all(|w| w[0] < w[1]), "{plan:?}");
            assert!(plan.positions.iter().all(|p| *p >= 0));
            for p in &plan.deleted {
                assert!(self.0.remove(p).is_some(), "{p} was not stored");
            }
            for ((p, line), written) in plan.positions.iter().zip(lines).zip(&plan.written) {
                if *written {
                    self.0.insert(*p, *line);
                } else {
                    assert_eq!(self.0.get(p), Some(line), "a kept line moved");
                }
            }
            assert_eq!(self.0.values().copied().collect::<Vec<_>>(), lines);
            let written = plan.written.iter().filter(|w| **w).count();
            (written, plan.deleted.len())
        }
    }

    #[test]
    fn a_new_draft_writes_every_line_with_room_between() {
        let plan = plan(&[], &[d(1), d(2), d(3)]);
        assert_eq!(plan.positions, [65_535, 131_071, 196_607]);
        assert_eq!(plan.written, [true, true, true]);
        assert!(plan.deleted.is_empty());
    }

    #[test]
    fn a_line_among_others_is_the_only_one_written() {
        let mut draft = Draft::default();
        let lines: Vec<Digest> = (1..=400).map(d).collect();
        assert_eq!(draft.apply(&lines), (400, 0));
        let mut more = lines.clone();
        more.insert(0, d(1_000));
        more.insert(201, d(1_001));
        assert_eq!(draft.apply(&more), (2, 0));
        // Unchanged: nothing written.
        assert_eq!(draft.apply(&more), (0, 0));
    }

    #[test]
    fn a_changed_line_is_written_over_its_row_and_a_dropped_one_deleted() {
        let mut draft = Draft::default();
        draft.apply(&[d(1), d(2), d(3), d(4)]);
        let before = draft.stored();
        let plan = plan(&before, &[d(1), d(20), d(3)]);
        assert_eq!(plan.written, [false, true, false]);
        assert_eq!(
            plan.positions,
            [before[0].0, before[1].0, before[2].0],
            "the changed line keeps its row"
        );
        assert_eq!(plan.deleted, [before[3].0]);
        assert_eq!(draft.apply(&[d(1), d(20), d(3)]), (1, 1));
    }

    #[test]
    fn a_line_stored_without_a_digest_is_written_again() {
        let stored = [(0, None), (1, Some(d(2)))];
        let plan = plan(&stored, &[d(1), d(2)]);
        assert_eq!(plan.positions, [0, 1]);
        assert_eq!(plan.written, [true, false]);
        assert!(plan.deleted.is_empty());
    }

    #[test]
    fn no_room_left_lays_the_draft_out_afresh() {
        // Lines 0 and 1 with nothing between them, as finalized ones are.
        let stored = [(0, Some(d(1))), (1, Some(d(3)))];
        let plan = plan(&stored, &[d(1), d(2), d(3)]);
        assert_eq!(plan.positions, [65_535, 131_071, 196_607]);
        assert_eq!(plan.written, [true, true, true]);
        assert_eq!(plan.deleted, [0, 1]);
        // Sixteen lines fit between two laid out afresh, the seventeenth
        // lays them out again.
        let mut draft = Draft::default();
        let mut lines = vec![d(0), d(1)];
        assert_eq!(draft.apply(&lines), (2, 0));
        for n in 0..16 {
            lines.insert(1, d(100 + n));
            assert_eq!(draft.apply(&lines), (1, 0), "line {n}");
        }
        lines.insert(1, d(200));
        // All 19 written at 65,536 apart: the first two lines' positions
        // are taken again, the 16 between them deleted.
        assert_eq!(draft.apply(&lines), (19, 16));
    }

    /// Random edits (new lines anywhere, changed and dropped ones) keep the
    /// draft's rows in the statement's order, and write only what changed
    /// unless the draft was laid out afresh.
    #[test]
    fn random_versions_keep_the_order_and_write_what_changed() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut draft = Draft::default();
        let mut lines: Vec<Digest> = Vec::new();
        let mut fresh = 0;
        let (mut afresh_runs, mut written_total) = (0, 0);
        for _ in 0..2_000 {
            let mut changed = 0;
            for _ in 0..1 + next(4) {
                fresh += 1;
                let at = next(lines.len() + 1);
                match next(4) {
                    0 | 1 => lines.insert(at, d(fresh)),
                    2 if at < lines.len() => lines[at] = d(fresh),
                    _ if at < lines.len() => {
                        lines.remove(at);
                        continue;
                    }
                    _ => lines.push(d(fresh)),
                }
                changed += 1;
            }
            let (written, _) = draft.apply(&lines);
            if written > changed {
                assert_eq!(written, lines.len(), "written beyond the changes");
                afresh_runs += 1;
            }
            written_total += written;
        }
        // 2,000 versions of up to 1,295 lines wrote 3,998 rows in all: one
        // version laid the draft out afresh.
        assert_eq!((lines.len(), afresh_runs, written_total), (1_295, 1, 3_998));
    }
}
