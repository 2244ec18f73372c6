//! The invoice state machine. An invoice is a draft while its period is
//! open (each new statement version replaces it), finalized once its sealed
//! statement arrived (numbered and frozen), and void when finance writes a
//! finalized invoice off. [`InvoiceStatus::transition`] is the one place that
//! decides which moves are legal; the database triggers (migrations
//! `…_finalized_is_frozen`, `…_corrections`, `…_sealed_is_final`) refuse the
//! same moves as a second guard.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An invoice's status, as stored in `invoices.status` (and as the API
/// shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvoiceStatus {
    Draft,
    Finalized,
    Void,
}

/// What happens to an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceEvent {
    /// A newer statement version of its period replaces its amounts.
    Restate,
    /// Its sealed statement arrived: it gets its number and freezes.
    Finalize,
    /// Finance writes it off, whole.
    Void,
    /// Finance gives part or all of it back with a credit note.
    Credit,
}

/// A move the state machine refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {} invoice cannot take a {event:?}", from.as_str())]
pub struct IllegalTransition {
    pub from: InvoiceStatus,
    pub event: InvoiceEvent,
}

/// `status` is not one of `draft`, `finalized`, `void`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown invoice status {0:?}: expected draft, finalized or void")]
pub struct UnknownStatus(pub String);

impl InvoiceStatus {
    pub const ALL: [InvoiceStatus; 3] = [
        InvoiceStatus::Draft,
        InvoiceStatus::Finalized,
        InvoiceStatus::Void,
    ];

    /// The stored name: `draft`, `finalized`, `void`.
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "draft",
            InvoiceStatus::Finalized => "finalized",
            InvoiceStatus::Void => "void",
        }
    }

    pub fn parse(text: &str) -> Result<Self, UnknownStatus> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| UnknownStatus(text.to_owned()))
    }

    /// The status after `event`, or the refusal of an illegal move:
    ///
    /// | from | restate | finalize | void | credit |
    /// |---|---|---|---|---|
    /// | draft | draft | finalized | – | – |
    /// | finalized | – | – | void | finalized |
    /// | void | – | – | – | – |
    pub fn transition(self, event: InvoiceEvent) -> Result<InvoiceStatus, IllegalTransition> {
        use InvoiceEvent as E;
        use InvoiceStatus as S;
        match (self, event) {
            (S::Draft, E::Restate) => Ok(S::Draft),
            (S::Draft, E::Finalize) => Ok(S::Finalized),
            (S::Finalized, E::Void) => Ok(S::Void),
            (S::Finalized, E::Credit) => Ok(S::Finalized),
            (from, event) => Err(IllegalTransition { from, event }),
        }
    }
}

impl fmt::Display for InvoiceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for InvoiceStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// An invoice's number: issuer, year of issue, six-digit gap-free sequence
/// (`TLY-2026-000123`; credit notes use the issuer `TLY-CN`).
pub fn number(issuer: &str, year: i32, sequence: i64) -> String {
    format!("{issuer}-{year}-{sequence:06}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use InvoiceEvent as E;
    use InvoiceStatus as S;

    #[test]
    fn a_draft_is_restated_until_it_is_finalized() {
        assert_eq!(S::Draft.transition(E::Restate), Ok(S::Draft));
        assert_eq!(S::Draft.transition(E::Finalize), Ok(S::Finalized));
    }

    #[test]
    fn a_finalized_invoice_is_only_credited_or_voided() {
        assert_eq!(S::Finalized.transition(E::Credit), Ok(S::Finalized));
        assert_eq!(S::Finalized.transition(E::Void), Ok(S::Void));
        for event in [E::Restate, E::Finalize] {
            assert_eq!(
                S::Finalized.transition(event),
                Err(IllegalTransition {
                    from: S::Finalized,
                    event
                })
            );
        }
    }

    #[test]
    fn a_draft_is_neither_voided_nor_credited() {
        for event in [E::Void, E::Credit] {
            assert_eq!(
                S::Draft.transition(event),
                Err(IllegalTransition {
                    from: S::Draft,
                    event
                })
            );
        }
    }

    #[test]
    fn a_void_invoice_never_changes_again() {
        for event in [E::Restate, E::Finalize, E::Void, E::Credit] {
            assert_eq!(
                S::Void.transition(event),
                Err(IllegalTransition {
                    from: S::Void,
                    event
                })
            );
        }
    }

    #[test]
    fn the_legal_moves_are_exactly_the_triggers_moves() {
        // The status changes the database allows (migration
        // `…_corrections`): draft → finalized and finalized → void.
        let mut moves: Vec<(S, S)> = Vec::new();
        for from in S::ALL {
            for event in [E::Restate, E::Finalize, E::Void, E::Credit] {
                if let Ok(to) = from.transition(event) {
                    if to != from {
                        moves.push((from, to));
                    }
                }
            }
        }
        assert_eq!(moves, [(S::Draft, S::Finalized), (S::Finalized, S::Void)]);
    }

    #[test]
    fn statuses_read_and_write_their_stored_names() {
        for s in S::ALL {
            assert_eq!(S::parse(s.as_str()), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        assert_eq!(S::parse("paid"), Err(UnknownStatus("paid".into())));
        assert!(S::parse("Draft").is_err());
    }

    #[test]
    fn numbers_are_issuer_year_and_six_digits() {
        assert_eq!(number("TLY", 2026, 123), "TLY-2026-000123");
        assert_eq!(number("TLY-CN", 2027, 1), "TLY-CN-2027-000001");
        assert_eq!(number("TLY", 2026, 1_234_567), "TLY-2026-1234567");
    }
}
