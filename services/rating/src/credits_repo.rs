//! SQL of credits as rating sees them: the account's grants, what earlier
//! periods drew, the usage hours of a period, and the draws of a period.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, Row};
use std::collections::{BTreeMap, HashMap};
use tally_domain::credits::{Eligibility, Grant, GrantKind, StoredGrant, UsageHours};
use tally_domain::{ProviderId, Sku};

use crate::draws::Draws;
use crate::repo::AccountPeriod;

fn decode_err(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

/// Every grant of these accounts, by account, share-locked until the
/// transaction ends (a void waits for the draws being written).
pub async fn grants_of(
    conn: &mut PgConnection,
    accounts: &[&str],
) -> Result<HashMap<String, Vec<StoredGrant>>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, account_id, name, kind, cost_basis, amount, priority, effective_at, expires_at,
                eligibility, eligible_ids, cap_per_period, voided_amount, voided_at
         FROM credit_grants WHERE account_id = ANY($1) ORDER BY account_id, id
         FOR SHARE",
    )
    .bind(accounts)
    .fetch_all(conn)
    .await?;
    let mut out: HashMap<String, Vec<StoredGrant>> = HashMap::new();
    for r in rows {
        let kind = match r.try_get::<&str, _>("kind")? {
            "prepaid" => GrantKind::Prepaid {
                cost_basis: r
                    .try_get::<Option<Decimal>, _>("cost_basis")?
                    .unwrap_or_default(),
            },
            "programme" => GrantKind::Programme,
            _ => GrantKind::Promotional,
        };
        let ids: Vec<String> = r.try_get("eligible_ids")?;
        let eligibility = match r.try_get::<&str, _>("eligibility")? {
            "first_party_only" => Eligibility::FirstPartyOnly,
            "providers" => Eligibility::Providers(
                ids.iter()
                    .map(|i| ProviderId::parse(i))
                    .collect::<Result<_, _>>()
                    .map_err(decode_err)?,
            ),
            "skus" => Eligibility::Skus(
                ids.iter()
                    .map(|i| Sku::parse(i))
                    .collect::<Result<_, _>>()
                    .map_err(decode_err)?,
            ),
            _ => Eligibility::AllUsage,
        };
        let amount: Decimal = r.try_get("amount")?;
        out.entry(r.try_get("account_id")?)
            .or_default()
            .push(StoredGrant {
                terms: Grant {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    kind,
                    priority: r.try_get("priority")?,
                    effective_at: r.try_get("effective_at")?,
                    expires_at: r.try_get("expires_at")?,
                    eligibility,
                    remaining: amount,
                    cap_per_period: r.try_get("cap_per_period")?,
                },
                amount,
                voided_amount: r.try_get("voided_amount")?,
                voided_at: r.try_get("voided_at")?,
            });
    }
    Ok(out)
}

/// The ledger's draws of these accounts (each with the last period start
/// wanted), per account, period start and grant: what earlier periods drew
/// and what each period draws as the ledger holds it now (before this
/// restatement).
pub async fn draws_through(
    conn: &mut PgConnection,
    through: &BTreeMap<String, DateTime<Utc>>,
) -> Result<HashMap<String, Draws>, sqlx::Error> {
    let accounts: Vec<&str> = through.keys().map(String::as_str).collect();
    let lasts: Vec<DateTime<Utc>> = through.values().copied().collect();
    let rows = sqlx::query(
        "SELECT l.account_id, l.period_start, l.grant_id, l.amount FROM credit_ledger l
         JOIN UNNEST($1::text[], $2::timestamptz[]) AS k(a, t)
             ON l.account_id = k.a AND l.period_start <= k.t
         WHERE l.kind = 'draw'",
    )
    .bind(&accounts)
    .bind(&lasts)
    .fetch_all(conn)
    .await?;
    let mut out: HashMap<String, Draws> = HashMap::new();
    for r in rows {
        out.entry(r.try_get("account_id")?)
            .or_default()
            .entry(r.try_get("period_start")?)
            .or_default()
            .insert(r.try_get("grant_id")?, r.try_get("amount")?);
    }
    Ok(out)
}

/// When the usage of these account-periods happened (statements' own
/// periods and the sealed ones they adjust), per account, then per period,
/// price version and hour.
pub async fn usage_hours(
    conn: &mut PgConnection,
    periods: &[AccountPeriod],
) -> Result<HashMap<String, UsageHours>, sqlx::Error> {
    let (accounts, starts): (Vec<&str>, Vec<DateTime<Utc>>) =
        periods.iter().map(|(a, s)| (a.as_str(), *s)).unzip();
    let rows = sqlx::query(
        "SELECT h.account_id, h.period_start, h.price_id, h.hour,
                CASE WHEN s.aggregation = 'sum' THEN h.quantity ELSE h.event_count::numeric END AS weight
         FROM UNNEST($1::text[], $2::timestamptz[]) AS k(a, s)
         JOIN usage_hourly h ON h.account_id = k.a AND h.period_start = k.s
         JOIN prices p ON p.id = h.price_id
         JOIN skus s ON s.id = p.sku_id
         ORDER BY h.account_id, h.period_start, h.price_id, h.hour",
    )
    .bind(&accounts)
    .bind(&starts)
    .fetch_all(conn)
    .await?;
    let mut out: HashMap<String, UsageHours> = HashMap::new();
    for r in rows {
        out.entry(r.try_get("account_id")?)
            .or_default()
            .entry((r.try_get("period_start")?, r.try_get("price_id")?))
            .or_default()
            .push((r.try_get("hour")?, r.try_get("weight")?));
    }
    Ok(out)
}

/// The draws of one statement: its account-period, its version, and what
/// each grant pays in it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodDraws {
    pub account: String,
    pub period_start: DateTime<Utc>,
    pub version: i64,
    pub draws: Vec<(i64, Decimal)>,
}

/// Makes the ledger's draws of each of these account-periods exactly its
/// `draws`, in one statement.
pub async fn write_draws(
    conn: &mut PgConnection,
    periods: &[PeriodDraws],
) -> Result<(), sqlx::Error> {
    if periods.is_empty() {
        return Ok(());
    }
    let (accounts, starts): (Vec<&str>, Vec<DateTime<Utc>>) = periods
        .iter()
        .map(|p| (p.account.as_str(), p.period_start))
        .unzip();
    let rows = periods
        .iter()
        .flat_map(|p| p.draws.iter().map(move |(g, a)| (p, *g, *a)));
    let mut grant_ids = Vec::new();
    let mut draw_accounts = Vec::new();
    let mut draw_starts = Vec::new();
    let mut amounts = Vec::new();
    let mut versions = Vec::new();
    for (p, grant, amount) in rows {
        grant_ids.push(grant);
        draw_accounts.push(p.account.as_str());
        draw_starts.push(p.period_start);
        amounts.push(amount);
        versions.push(p.version);
    }
    // The delete and the upsert touch different rows (draws no longer made,
    // draws made), so they share one statement. `NOT IN` (never NULL here)
    // is a hashed lookup; a correlated `NOT EXISTS` over the unnested draws
    // was planned as a nested loop, quadratic in the statements.
    sqlx::query(
        "WITH made AS (
             SELECT * FROM UNNEST($3::bigint[], $4::text[], $5::timestamptz[], $6::numeric[], $7::bigint[])
                 AS d(g, a, s, amount, v)),
         gone AS (
             DELETE FROM credit_ledger l
             USING UNNEST($1::text[], $2::timestamptz[]) AS k(a, s)
             WHERE l.account_id = k.a AND l.kind = 'draw' AND l.period_start = k.s
                 AND (l.account_id, l.period_start, l.grant_id) NOT IN (SELECT a, s, g FROM made))
         INSERT INTO credit_ledger (grant_id, account_id, kind, period_start, amount, statement_version)
         SELECT g, a, 'draw', s, amount, v FROM made
         ON CONFLICT (grant_id, period_start) WHERE kind = 'draw' DO UPDATE
         SET amount = EXCLUDED.amount, statement_version = EXCLUDED.statement_version, updated_at = now()
         WHERE credit_ledger.amount <> EXCLUDED.amount",
    )
    .bind(&accounts)
    .bind(&starts)
    .bind(&grant_ids)
    .bind(&draw_accounts)
    .bind(&draw_starts)
    .bind(&amounts)
    .bind(&versions)
    .execute(conn)
    .await?;
    Ok(())
}

/// Keeps voided grants of `accounts` paying nothing beyond their draws: a
/// void takes back everything not drawn, so when a restatement lowers a
/// voided grant's draws (a higher-priority grant given later), the freed
/// part is voided too, never left as a balance (`amount = drawn + voided`).
pub async fn settle_voided(conn: &mut PgConnection, accounts: &[&str]) -> Result<(), sqlx::Error> {
    if accounts.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "WITH drawn AS (
             SELECT g.id, g.amount - COALESCE(sum(l.amount), 0) AS unused
             FROM credit_grants g
             LEFT JOIN credit_ledger l ON l.grant_id = g.id AND l.kind = 'draw'
             WHERE g.account_id = ANY($1) AND g.voided_at IS NOT NULL
             GROUP BY g.id, g.amount),
         grants AS (
             UPDATE credit_grants g SET voided_amount = d.unused
             FROM drawn d WHERE g.id = d.id AND g.voided_amount <> d.unused
             RETURNING g.id, g.voided_amount)
         UPDATE credit_ledger l SET amount = grants.voided_amount, updated_at = now()
         FROM grants WHERE l.grant_id = grants.id AND l.kind = 'void'",
    )
    .bind(accounts)
    .execute(conn)
    .await?;
    Ok(())
}

/// A statement's account-period key with its end.
pub type PeriodRow = ((String, DateTime<Utc>), DateTime<Utc>);

pub(crate) fn period_rows(rows: &[sqlx::postgres::PgRow]) -> Result<Vec<PeriodRow>, sqlx::Error> {
    rows.iter()
        .map(|r| {
            Ok((
                (r.try_get("account_id")?, r.try_get("period_start")?),
                r.try_get("period_end")?,
            ))
        })
        .collect()
}

/// Open statement periods of these accounts that start after the given one
/// (a change in an earlier period's draws moves the balances they start from).
pub async fn later_periods(
    conn: &mut PgConnection,
    after: &BTreeMap<String, DateTime<Utc>>,
) -> Result<Vec<PeriodRow>, sqlx::Error> {
    let accounts: Vec<&str> = after.keys().map(String::as_str).collect();
    let starts: Vec<DateTime<Utc>> = after.values().copied().collect();
    let rows = sqlx::query(
        "SELECT s.account_id, s.period_start, s.period_end FROM statements s
         JOIN UNNEST($1::text[], $2::timestamptz[]) AS k(a, f) ON s.account_id = k.a AND s.period_start > k.f
         WHERE NOT s.sealed",
    )
    .bind(&accounts)
    .bind(&starts)
    .fetch_all(conn)
    .await?;
    period_rows(&rows)
}

/// Every open (not sealed) statement period of these accounts.
pub async fn all_periods(
    conn: &mut PgConnection,
    accounts: &[&str],
) -> Result<Vec<PeriodRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT account_id, period_start, period_end FROM statements
         WHERE account_id = ANY($1) AND NOT sealed",
    )
    .bind(accounts)
    .fetch_all(conn)
    .await?;
    period_rows(&rows)
}

/// Takes up to `limit` pending re-rate requests, locked until the
/// transaction ends (other rating instances skip them).
pub async fn take_recompute_requests(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "DELETE FROM credit_recompute WHERE account_id IN (
             SELECT account_id FROM credit_recompute ORDER BY requested_at, account_id
             LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING account_id",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}
