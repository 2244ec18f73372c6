//! SQL of the invoice lifecycle as rating sees it: each account's billing
//! anchor and how far its periods are sealed, late usage, and what has been
//! billed for sealed periods. Every function takes the caller's transaction.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tally_domain::placement::{self, Placement};
use tally_domain::{AnchorDay, Currency, Period, StatementLine};

use crate::repo::AccountPeriod;

/// What rating needs to know of an account to place its events in periods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountState {
    pub currency: Currency,
    pub anchor: AnchorDay,
    /// Periods starting before this are sealed: usage for them is late…
    pub sealed_through: Option<DateTime<Utc>>,
    /// …but for a period still open below it (one a batch racing a seal
    /// opened, until a marker closes it), which takes its own usage.
    pub open_below: BTreeSet<DateTime<Utc>>,
}

impl AccountState {
    /// Where an event at `at` goes ([`placement::place`]).
    pub fn place(&self, at: DateTime<Utc>) -> Placement {
        placement::place(at, self.anchor, self.sealed_through, &self.open_below)
    }

    /// Whether its period starting at `start` is open ([`placement::is_open`]).
    pub fn is_open(&self, start: DateTime<Utc>) -> bool {
        placement::is_open(start, self.sealed_through, &self.open_below)
    }
}

fn decode_err(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

/// The state of these accounts; unknown accounts are left out.
///
/// Nothing is locked: a batch that placed an event in a period a seal
/// closes concurrently cannot commit it there. Either the seal's
/// restatement waits for the batch's lock on the statement row and then
/// counts its events, or the batch's statement write meets the sealed row,
/// which the database refuses (migration `…_sealed_is_final`), and the
/// batch is retried and sees the seal. So a batch needs no row lock on its
/// accounts (which would write to each account's row in every batch).
pub async fn account_states(
    conn: &mut PgConnection,
    accounts: &[&str],
) -> Result<HashMap<String, AccountState>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT a.id, a.currency, a.billing_anchor_day, s.sealed_through
         FROM UNNEST($1::text[]) AS t(id) JOIN accounts a ON a.id = t.id
         LEFT JOIN account_seals s ON s.account_id = a.id",
    )
    .bind(accounts)
    .fetch_all(&mut *conn)
    .await?;
    let mut states = rows
        .iter()
        .map(|r| {
            let day: i16 = r.try_get("billing_anchor_day")?;
            Ok((
                r.try_get::<String, _>("id")?,
                AccountState {
                    currency: Currency::parse(r.try_get("currency")?).map_err(decode_err)?,
                    anchor: AnchorDay::new(u32::try_from(day).unwrap_or(0)).map_err(decode_err)?,
                    sealed_through: r.try_get("sealed_through")?,
                    open_below: BTreeSet::new(),
                },
            ))
        })
        .collect::<Result<HashMap<String, AccountState>, sqlx::Error>>()?;
    let open: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT s.account_id, s.period_start FROM statements s
         JOIN account_seals a ON a.account_id = s.account_id
         WHERE s.account_id = ANY($1) AND NOT s.sealed AND s.period_start < a.sealed_through",
    )
    .bind(accounts)
    .fetch_all(conn)
    .await?;
    for (account, start) in open {
        if let Some(state) = states.get_mut(&account) {
            state.open_below.insert(start);
        }
    }
    Ok(states)
}

/// Records that late usage of `origin` is billed on the period starting at `target`.
pub async fn record_late(
    conn: &mut PgConnection,
    rows: &[(String, DateTime<Utc>, Period)],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let accounts: Vec<&str> = rows.iter().map(|(a, _, _)| a.as_str()).collect();
    let targets: Vec<DateTime<Utc>> = rows.iter().map(|(_, t, _)| *t).collect();
    let starts: Vec<DateTime<Utc>> = rows.iter().map(|(_, _, o)| o.start()).collect();
    let ends: Vec<DateTime<Utc>> = rows.iter().map(|(_, _, o)| o.end()).collect();
    sqlx::query(
        "INSERT INTO late_usage (account_id, target_start, origin_start, origin_end)
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[])
         ON CONFLICT DO NOTHING",
    )
    .bind(&accounts)
    .bind(&targets)
    .bind(&starts)
    .bind(&ends)
    .execute(conn)
    .await?;
    Ok(())
}

/// The sealed periods whose late usage each of these account-periods bills,
/// oldest first.
pub async fn late_origins(
    conn: &mut PgConnection,
    keys: &[AccountPeriod],
) -> Result<HashMap<AccountPeriod, Vec<Period>>, sqlx::Error> {
    let accounts: Vec<&str> = keys.iter().map(|(a, _)| a.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = keys.iter().map(|(_, s)| *s).collect();
    let rows = sqlx::query(
        "SELECT l.account_id, l.target_start, l.origin_start, l.origin_end FROM late_usage l
         JOIN UNNEST($1::text[], $2::timestamptz[]) AS k(a, s) ON l.account_id = k.a AND l.target_start = k.s
         ORDER BY l.account_id, l.target_start, l.origin_start",
    )
    .bind(&accounts)
    .bind(&starts)
    .fetch_all(conn)
    .await?;
    let mut out: HashMap<AccountPeriod, Vec<Period>> = HashMap::new();
    for r in rows {
        let origin = Period::new(r.try_get("origin_start")?, r.try_get("origin_end")?)
            .map_err(decode_err)?;
        out.entry((r.try_get("account_id")?, r.try_get("target_start")?))
            .or_default()
            .push(origin);
    }
    Ok(out)
}

/// What has been billed for these sealed account-periods (none yet: absent).
pub async fn billed_lines(
    conn: &mut PgConnection,
    keys: &[AccountPeriod],
) -> Result<HashMap<AccountPeriod, Vec<StatementLine>>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let accounts: Vec<&str> = keys.iter().map(|(a, _)| a.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = keys.iter().map(|(_, s)| *s).collect();
    let rows = sqlx::query(
        "SELECT b.account_id, b.period_start, b.lines FROM billed_periods b
         JOIN UNNEST($1::text[], $2::timestamptz[]) AS k(a, s) ON b.account_id = k.a AND b.period_start = k.s",
    )
    .bind(&accounts)
    .bind(&starts)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let lines: Vec<StatementLine> =
                serde_json::from_str(r.try_get("lines")?).map_err(decode_err)?;
            Ok((
                (r.try_get("account_id")?, r.try_get("period_start")?),
                lines,
            ))
        })
        .collect()
}

/// Replaces what has been billed for these account-periods.
pub async fn write_billed(
    conn: &mut PgConnection,
    billed: &[(AccountPeriod, Vec<StatementLine>)],
) -> Result<(), sqlx::Error> {
    if billed.is_empty() {
        return Ok(());
    }
    let accounts: Vec<&str> = billed.iter().map(|((a, _), _)| a.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = billed.iter().map(|((_, s), _)| *s).collect();
    let bodies = billed
        .iter()
        .map(|(_, lines)| serde_json::to_string(lines))
        .collect::<Result<Vec<_>, _>>()
        .map_err(decode_err)?;
    sqlx::query(
        "INSERT INTO billed_periods (account_id, period_start, lines)
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[])
         ON CONFLICT (account_id, period_start) DO UPDATE SET lines = EXCLUDED.lines",
    )
    .bind(&accounts)
    .bind(&starts)
    .bind(&bodies)
    .execute(conn)
    .await?;
    Ok(())
}

/// Open statement periods of these accounts that start before their
/// `through`, in (account, period) order.
pub async fn periods_to_seal(
    conn: &mut PgConnection,
    through: &BTreeMap<String, DateTime<Utc>>,
) -> Result<Vec<crate::credits_repo::PeriodRow>, sqlx::Error> {
    let accounts: Vec<&str> = through.keys().map(String::as_str).collect();
    let throughs: Vec<DateTime<Utc>> = through.values().copied().collect();
    let rows = sqlx::query(
        "SELECT s.account_id, s.period_start, s.period_end FROM statements s
         JOIN UNNEST($1::text[], $2::timestamptz[]) AS k(a, t)
           ON s.account_id = k.a AND s.period_start < k.t
         WHERE NOT s.sealed
         ORDER BY s.account_id, s.period_start",
    )
    .bind(&accounts)
    .bind(&throughs)
    .fetch_all(conn)
    .await?;
    crate::credits_repo::period_rows(&rows)
}

/// Moves each account's seal to its `through`; never back (two seals racing
/// each other leave the furthest).
pub async fn set_sealed_through(
    conn: &mut PgConnection,
    through: &BTreeMap<String, DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    let accounts: Vec<&str> = through.keys().map(String::as_str).collect();
    let throughs: Vec<DateTime<Utc>> = through.values().copied().collect();
    sqlx::query(
        "INSERT INTO account_seals (account_id, sealed_through)
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[])
         ON CONFLICT (account_id) DO UPDATE
         SET sealed_through = GREATEST(account_seals.sealed_through, EXCLUDED.sealed_through),
             sealed_at = now()",
    )
    .bind(&accounts)
    .bind(&throughs)
    .execute(conn)
    .await?;
    Ok(())
}
