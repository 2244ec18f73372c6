//! Each draft's line layout (its lines' positions and digests) as this
//! process last wrote it, so that a new statement version of a busy draft
//! is planned ([`crate::line_positions::plan`]) without reading every line
//! of the draft back: at 400 lines a statement that read took 3–37 s of a
//! `tally bench` run, up to 43 % of PostgreSQL's time, for rows the process
//! had just written (BENCHMARKS.md, "Draft line layouts remembered").
//!
//! A layout is only used for the version it was written at: the upsert of
//! the drafts returns the version each held (`previous_statement_version`,
//! set from the row it locked), and a draft another instance has written
//! since, or one laid out by a transaction that did not commit, is read
//! from the database as before. Only invoicing writes a draft's lines
//! (finalizing renumbers them as the invoice leaves draft, after which no
//! statement changes it), and a version is written once, so the version
//! names the lines.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use uuid::Uuid;

use crate::line_positions::Digest;

/// Bytes of layouts remembered at most, counted as [`Layout::bytes`].
pub const LAYOUT_BYTES: usize = 16 << 20;

/// One account-period: (account, period start).
pub(crate) type Key = (String, DateTime<Utc>);

/// The layouts of the drafts this process wrote last, at most `capacity`
/// bytes of them; the least recently used go first.
pub struct LineLayouts {
    entries: HashMap<Key, Layout>,
    lines: usize,
    bytes: usize,
    capacity: usize,
    clock: u64,
}

/// A draft's lines as one committed version left them.
struct Layout {
    invoice_id: Uuid,
    version: i64,
    /// (position, digest) by rising position.
    lines: Vec<(i32, Digest)>,
    used: u64,
}

impl Layout {
    /// What a layout holds, counted against the capacity: its lines and
    /// its draft's key and entry (a draft without lines costs too).
    fn bytes(key: &Key, lines: usize) -> usize {
        const ENTRY: usize = size_of::<Key>() + size_of::<Layout>() + 16;
        ENTRY + key.0.len() + lines * size_of::<(i32, Digest)>()
    }
}

/// What a transaction applied: the layouts it wrote, remembered once it
/// commits ([`LineLayouts::remember`]), and how many changed drafts it
/// planned from memory and read back.
#[derive(Default)]
pub(crate) struct Applied {
    pub written: Vec<Written>,
    pub remembered: u64,
    pub read_back: u64,
}

/// A layout written by a transaction, remembered once it commits
/// ([`LineLayouts::remember`]).
pub(crate) struct Written {
    pub key: Key,
    pub invoice_id: Uuid,
    pub version: i64,
    pub lines: Vec<(i32, Digest)>,
}

impl LineLayouts {
    /// Remembers at most `capacity` bytes of layouts (0: none, every
    /// layout is read from the database).
    pub fn new(capacity: usize) -> Self {
        LineLayouts {
            entries: HashMap::new(),
            lines: 0,
            bytes: 0,
            capacity,
            clock: 0,
        }
    }

    /// Whether layouts are remembered at all (a capacity above 0).
    pub(crate) fn remembers(&self) -> bool {
        self.capacity > 0
    }

    /// The remembered lines of this draft at this version, as
    /// [`crate::line_positions::plan`] takes them; `None` when the draft or
    /// the version differs from the one remembered.
    pub(crate) fn lines_of(
        &mut self,
        key: &Key,
        invoice_id: Uuid,
        version: i64,
    ) -> Option<Vec<(i32, Option<Digest>)>> {
        self.clock += 1;
        let layout = self.entries.get_mut(key)?;
        if layout.invoice_id != invoice_id || layout.version != version {
            return None;
        }
        layout.used = self.clock;
        Some(layout.lines.iter().map(|(p, d)| (*p, Some(*d))).collect())
    }

    /// Remembers layouts a committed transaction wrote, replacing older
    /// ones of the same account-periods; then forgets the least recently
    /// used until at most three quarters of the capacity is held.
    pub(crate) fn remember(&mut self, written: Vec<Written>) {
        for w in written {
            self.clock += 1;
            self.lines += w.lines.len();
            self.bytes += Layout::bytes(&w.key, w.lines.len());
            let layout = Layout {
                invoice_id: w.invoice_id,
                version: w.version,
                lines: w.lines,
                used: self.clock,
            };
            if let Some(old) = self.entries.insert(w.key.clone(), layout) {
                self.lines -= old.lines.len();
                self.bytes -= Layout::bytes(&w.key, old.lines.len());
            }
        }
        if self.bytes > self.capacity {
            self.shrink_to(self.capacity / 4 * 3);
        }
    }

    /// Forgets the least recently used layouts until at most `bytes` are
    /// held.
    fn shrink_to(&mut self, bytes: usize) {
        let mut by_use: Vec<(u64, Key)> = self
            .entries
            .iter()
            .map(|(key, layout)| (layout.used, key.clone()))
            .collect();
        by_use.sort_unstable_by_key(|(used, _)| *used);
        for (_, key) in by_use {
            if self.bytes <= bytes {
                break;
            }
            if let Some(old) = self.entries.remove(&key) {
                self.lines -= old.lines.len();
                self.bytes -= Layout::bytes(&key, old.lines.len());
            }
        }
    }

    /// Lines remembered, over all drafts.
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// Bytes remembered, as counted against the capacity.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What a layout of `lines` lines of an account whose id is
    /// `account_len` bytes long counts against the capacity.
    pub fn layout_bytes(account_len: usize, lines: usize) -> usize {
        Layout::bytes(
            &("a".repeat(account_len), DateTime::<Utc>::UNIX_EPOCH),
            lines,
        )
    }

    /// Drafts remembered.
    pub fn drafts(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(account: &str) -> Key {
        (account.into(), DateTime::<Utc>::UNIX_EPOCH)
    }

    fn written(account: &str, id: Uuid, version: i64, lines: usize) -> Written {
        Written {
            key: key(account),
            invoice_id: id,
            version,
            lines: (0..lines).map(|i| (i as i32 * 10, [i as u8; 32])).collect(),
        }
    }

    #[test]
    fn a_layout_is_used_only_for_its_draft_and_version() {
        let id = Uuid::now_v7();
        let mut layouts = LineLayouts::new(10_000);
        layouts.remember(vec![written("acme", id, 3, 2)]);
        assert_eq!(
            layouts.lines_of(&key("acme"), id, 3),
            Some(vec![(0, Some([0; 32])), (10, Some([1; 32]))])
        );
        assert_eq!(layouts.lines_of(&key("acme"), id, 4), None);
        assert_eq!(layouts.lines_of(&key("acme"), Uuid::now_v7(), 3), None);
        assert_eq!(layouts.lines_of(&key("umbrella"), id, 3), None);
        // A newer version replaces the older one.
        layouts.remember(vec![written("acme", id, 4, 3)]);
        assert_eq!(layouts.lines_of(&key("acme"), id, 3), None);
        assert_eq!(layouts.lines_of(&key("acme"), id, 4).unwrap().len(), 3);
        assert_eq!((layouts.drafts(), layouts.lines()), (1, 3));
        assert_eq!(layouts.bytes(), Layout::bytes(&key("acme"), 3));
    }

    #[test]
    fn the_least_recently_used_go_first_when_full() {
        let each = Layout::bytes(&key("a"), 30);
        let mut layouts = LineLayouts::new(4 * each - 1);
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
        layouts.remember(vec![
            written("a", ids[0], 1, 30),
            written("b", ids[1], 1, 30),
            written("c", ids[2], 1, 30),
        ]);
        assert_eq!((layouts.lines(), layouts.bytes()), (90, 3 * each));
        // a is used, so b is now the least recently used.
        assert!(layouts.lines_of(&key("a"), ids[0], 1).is_some());
        layouts.remember(vec![written("d", ids[3], 1, 30)]);
        // Four layouts are over the capacity: down to three quarters of it,
        // under three layouts, so b and c are forgotten.
        assert_eq!((layouts.drafts(), layouts.lines()), (2, 60));
        assert_eq!(layouts.bytes(), 2 * each);
        let held = |account: &str| layouts.entries.contains_key(&key(account));
        assert!(held("a") && !held("b") && !held("c") && held("d"));
    }

    #[test]
    fn a_layout_costs_112_bytes_its_account_id_and_36_a_line() {
        // As services/invoicing/README.md says.
        assert_eq!(LineLayouts::layout_bytes(0, 0), 112);
        assert_eq!(LineLayouts::layout_bytes(4, 400), 112 + 4 + 400 * 36);
    }

    #[test]
    fn a_draft_without_lines_costs_too() {
        let each = Layout::bytes(&key("a00"), 0);
        let mut layouts = LineLayouts::new(8 * each);
        layouts.remember(
            (0..20)
                .map(|i| written(&format!("a{i:02}"), Uuid::now_v7(), 1, 0))
                .collect(),
        );
        // Over the capacity: down to three quarters of it, six drafts.
        assert_eq!((layouts.drafts(), layouts.lines()), (6, 0));
        assert_eq!(layouts.bytes(), 6 * each);
    }

    #[test]
    fn no_capacity_remembers_nothing() {
        let mut layouts = LineLayouts::new(0);
        layouts.remember(vec![written("acme", Uuid::now_v7(), 1, 1)]);
        assert_eq!(
            (layouts.drafts(), layouts.lines(), layouts.bytes()),
            (0, 0, 0)
        );
    }
}
