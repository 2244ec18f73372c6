//! SQL of invoices and their lines. Functions take the caller's connection.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use std::collections::{HashMap, HashSet};
use tally_domain::credits::AppliedCredit;
use tally_domain::money::checked;
use tally_domain::{Currency, InvoiceStatus, Period, Statement, StatementLine};
use uuid::Uuid;

use crate::amounts::{currency_of, fits};
use crate::layouts::{Applied, LineLayouts, Written};
use crate::line_positions::{self, Digest};

/// Upserts the draft invoices of these statements (at most one per
/// account-period) in a few set-based statements. Only a newer statement
/// version changes a draft; finalized invoices are never touched. Returns
/// how many invoices changed. A changed draft's lines are planned from the
/// layout `layouts` remembers for it when it is of the version the draft
/// held (the upsert returns it, from the row it locked), else read back;
/// the layout each changed draft is left with is added to `applied`, for
/// the caller to remember once the transaction commits
/// ([`LineLayouts::remember`]).
pub(crate) async fn apply_statements(
    conn: &mut PgConnection,
    statements: &[&Statement],
    layouts: &mut LineLayouts,
    applied: &mut Applied,
) -> Result<usize, sqlx::Error> {
    if statements.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = statements.iter().map(|_| Uuid::now_v7()).collect();
    let changed: Vec<(Uuid, String, DateTime<Utc>, Option<i64>)> = sqlx::query_as(
        "INSERT INTO invoices (id, account_id, period_start, period_end, currency, statement_version,
             subtotal, credits_total, total, sealed_at)
         SELECT id, a, s, e, c, v, st, ct, t, CASE WHEN sealed THEN now() END
         FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[],
             $6::bigint[], $7::numeric[], $8::numeric[], $9::numeric[], $10::bool[])
             AS u(id, a, s, e, c, v, st, ct, t, sealed)
         ON CONFLICT (account_id, period_start) DO UPDATE
         SET previous_statement_version = invoices.statement_version,
             statement_version = EXCLUDED.statement_version, subtotal = EXCLUDED.subtotal,
             credits_total = EXCLUDED.credits_total, total = EXCLUDED.total,
             period_end = EXCLUDED.period_end, currency = EXCLUDED.currency,
             sealed_at = EXCLUDED.sealed_at, updated_at = now()
         WHERE invoices.statement_version < EXCLUDED.statement_version AND invoices.status = 'draft'
         RETURNING id, account_id, period_start, previous_statement_version",
    )
    .bind(&ids)
    .bind(statements.iter().map(|s| s.account_id.as_str()).collect::<Vec<_>>())
    .bind(statements.iter().map(|s| s.period.start()).collect::<Vec<_>>())
    .bind(statements.iter().map(|s| s.period.end()).collect::<Vec<_>>())
    .bind(statements.iter().map(|s| s.currency.code()).collect::<Vec<_>>())
    .bind(statements.iter().map(|s| s.version).collect::<Vec<_>>())
    .bind(statements.iter().map(|s| s.subtotal).collect::<Vec<_>>())
    .bind(statements.iter().map(|s| s.credits_total).collect::<Vec<_>>())
    .bind(statements.iter().map(|s| s.total).collect::<Vec<_>>())
    .bind(statements.iter().map(|s| s.sealed).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    if changed.is_empty() {
        return Ok(0);
    }
    let by_key: HashMap<(&str, DateTime<Utc>), &Statement> = statements
        .iter()
        .map(|s| ((s.account_id.as_str(), s.period.start()), *s))
        .collect();
    let changed_ids: Vec<Uuid> = changed.iter().map(|(id, ..)| *id).collect();
    sqlx::query("DELETE FROM invoice_credits WHERE invoice_id = ANY($1)")
        .bind(&changed_ids)
        .execute(&mut *conn)
        .await?;

    // Each line is written only where it changed (most lines of a draft do
    // not change between two versions: `tally bench` found rewriting them
    // all the busiest statement in PostgreSQL), told by the digest of what
    // was written, and a new line takes a position between its neighbours'
    // ([`line_positions`]); lines the statement no longer has go. The
    // invoice rows are locked by the upsert above, so no other writer
    // changes their lines until this transaction ends. A draft inserted
    // just now has no lines; one whose layout is remembered at the version
    // it held until the upsert has those; the others' are read.
    let inserted: HashSet<Uuid> = ids.iter().copied().collect();
    let mut stored: HashMap<Uuid, Vec<(i32, Option<Digest>)>> = HashMap::new();
    let mut unread = Vec::new();
    for (id, account, start, previous) in &changed {
        if inserted.contains(id) {
            continue;
        }
        let key = (account.clone(), *start);
        match previous.and_then(|version| layouts.lines_of(&key, *id, version)) {
            Some(lines) => {
                stored.insert(*id, lines);
            }
            None => unread.push(*id),
        }
    }
    applied.remembered += stored.len() as u64;
    applied.read_back += unread.len() as u64;
    if !unread.is_empty() {
        let rows: Vec<(Uuid, i32, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT l.invoice_id, l.position, l.digest
             FROM UNNEST($1::uuid[]) AS t(id) JOIN invoice_lines l ON l.invoice_id = t.id",
        )
        .bind(&unread)
        .fetch_all(&mut *conn)
        .await?;
        for (id, position, digest) in rows {
            let digest = digest.and_then(|d| Digest::try_from(d.as_slice()).ok());
            stored.entry(id).or_default().push((position, digest));
        }
    }
    let mut lines = LineColumns::default();
    let mut credits = CreditColumns::default();
    let (mut gone_ids, mut gone_positions) = (Vec::new(), Vec::new());
    for (id, account, start, _) in &changed {
        let Some(s) = by_key.get(&(account.as_str(), *start)) else {
            continue;
        };
        let currency = s.currency.code();
        let digests: Vec<Digest> = s.lines.iter().map(|l| line_digest(l, currency)).collect();
        let mut before = stored.remove(id).unwrap_or_default();
        before.sort_unstable_by_key(|(position, _)| *position);
        let plan = line_positions::plan(&before, &digests);
        if layouts.remembers() {
            applied.written.push(Written {
                key: (account.clone(), *start),
                invoice_id: *id,
                version: s.version,
                lines: plan
                    .positions
                    .iter()
                    .copied()
                    .zip(digests.iter().copied())
                    .collect(),
            });
        }
        for (((line, digest), position), write) in s
            .lines
            .iter()
            .zip(digests)
            .zip(plan.positions)
            .zip(plan.written)
        {
            if write {
                lines.push(*id, position, line, currency, digest);
            }
        }
        gone_ids.extend(std::iter::repeat_n(*id, plan.deleted.len()));
        gone_positions.extend(plan.deleted);
        for (position, credit) in s.credits.iter().enumerate() {
            credits.push(*id, position, credit)?;
        }
    }
    if !gone_ids.is_empty() {
        sqlx::query(
            "DELETE FROM invoice_lines l USING UNNEST($1::uuid[], $2::int[]) AS t(id, p)
             WHERE l.invoice_id = t.id AND l.position = t.p",
        )
        .bind(&gone_ids)
        .bind(&gone_positions)
        .execute(&mut *conn)
        .await?;
    }
    if !lines.invoice_ids.is_empty() {
        sqlx::query(
            "INSERT INTO invoice_lines (invoice_id, position, kind, provider_id, provider_name, provider_kind,
                 sku_id, description, unit, quantity, unit_price, amount, list_amount, markup, platform_fee,
                 partner_net, price_id, price_effective_from, event_count, currency,
                 adjusts_period_start, adjusts_period_end, digest, binding_id, resource_name,
                 resource_plan, discount, discount_funded_by)
             SELECT * FROM UNNEST($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[],
                 $7::text[], $8::text[], $9::text[], $10::numeric[], $11::numeric[], $12::numeric[],
                 $13::numeric[], $14::numeric[], $15::numeric[], $16::numeric[], $17::bigint[],
                 $18::timestamptz[], $19::bigint[], $20::text[], $21::timestamptz[], $22::timestamptz[],
                 $23::bytea[], $24::text[], $25::text[], $26::text[], $27::numeric[], $28::text[])
             ON CONFLICT (invoice_id, position) DO UPDATE SET
                 kind = EXCLUDED.kind, provider_id = EXCLUDED.provider_id,
                 provider_name = EXCLUDED.provider_name, provider_kind = EXCLUDED.provider_kind,
                 sku_id = EXCLUDED.sku_id, description = EXCLUDED.description, unit = EXCLUDED.unit,
                 quantity = EXCLUDED.quantity, unit_price = EXCLUDED.unit_price,
                 amount = EXCLUDED.amount, list_amount = EXCLUDED.list_amount,
                 markup = EXCLUDED.markup, platform_fee = EXCLUDED.platform_fee,
                 partner_net = EXCLUDED.partner_net, price_id = EXCLUDED.price_id,
                 price_effective_from = EXCLUDED.price_effective_from,
                 event_count = EXCLUDED.event_count, currency = EXCLUDED.currency,
                 adjusts_period_start = EXCLUDED.adjusts_period_start,
                 adjusts_period_end = EXCLUDED.adjusts_period_end, digest = EXCLUDED.digest,
                 binding_id = EXCLUDED.binding_id, resource_name = EXCLUDED.resource_name,
                 resource_plan = EXCLUDED.resource_plan, discount = EXCLUDED.discount,
                 discount_funded_by = EXCLUDED.discount_funded_by",
        )
        .bind(&lines.invoice_ids)
        .bind(&lines.positions)
        .bind(&lines.kinds)
        .bind(&lines.provider_ids)
        .bind(&lines.provider_names)
        .bind(&lines.provider_kinds)
        .bind(&lines.skus)
        .bind(&lines.descriptions)
        .bind(&lines.units)
        .bind(&lines.quantities)
        .bind(&lines.unit_prices)
        .bind(&lines.amounts)
        .bind(&lines.list_amounts)
        .bind(&lines.markups)
        .bind(&lines.platform_fees)
        .bind(&lines.partner_nets)
        .bind(&lines.price_ids)
        .bind(&lines.price_effective_froms)
        .bind(&lines.event_counts)
        .bind(&lines.currencies)
        .bind(&lines.adjusts_starts)
        .bind(&lines.adjusts_ends)
        .bind(&lines.digests)
        .bind(&lines.binding_ids)
        .bind(&lines.resource_names)
        .bind(&lines.resource_plans)
        .bind(&lines.discounts)
        .bind(&lines.discount_funders)
        .execute(&mut *conn)
        .await?;
    }
    if !credits.invoice_ids.is_empty() {
        sqlx::query(
            "INSERT INTO invoice_credits (invoice_id, position, grant_id, name, kind, amount, lines)
             SELECT * FROM UNNEST($1::uuid[], $2::int[], $3::bigint[], $4::text[], $5::text[],
                 $6::numeric[], $7::jsonb[])",
        )
        .bind(&credits.invoice_ids)
        .bind(&credits.positions)
        .bind(&credits.grant_ids)
        .bind(&credits.names)
        .bind(&credits.kinds)
        .bind(&credits.amounts)
        .bind(&credits.lines)
        .execute(&mut *conn)
        .await?;
    }
    Ok(changed.len())
}

/// Numbers the lines of these drafts 0, 1, 2, … in their order, as a
/// finalized invoice's are (a draft's have room between them,
/// [`line_positions`]); credit notes name a line by that number. Runs
/// before the invoices leave draft (their lines are frozen after). Each
/// line not at its number is written once; one whose position is another
/// line's number (the key is checked row by row) goes below zero first.
pub async fn number_lines(conn: &mut PgConnection, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    let rows: Vec<(Uuid, i32)> = sqlx::query_as(
        "SELECT invoice_id, position FROM invoice_lines WHERE invoice_id = ANY($1)
         ORDER BY invoice_id, position",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let (mut aside, mut moved) = (Moves::default(), Moves::default());
    for invoice in rows.chunk_by(|a, b| a.0 == b.0) {
        let count = position(invoice.len());
        for (number, (id, at)) in (0..).zip(invoice) {
            if *at == number {
                continue;
            }
            let from = if *at < count {
                aside.push(*id, *at, -1 - number);
                -1 - number
            } else {
                *at
            };
            moved.push(*id, from, number);
        }
    }
    for moves in [aside, moved] {
        if moves.ids.is_empty() {
            continue;
        }
        sqlx::query(
            "UPDATE invoice_lines l SET position = m.n
             FROM UNNEST($1::uuid[], $2::int[], $3::int[]) AS m(id, p, n)
             WHERE l.invoice_id = m.id AND l.position = m.p",
        )
        .bind(&moves.ids)
        .bind(&moves.from)
        .bind(&moves.to)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Lines to move, as columns.
#[derive(Default)]
struct Moves {
    ids: Vec<Uuid>,
    from: Vec<i32>,
    to: Vec<i32>,
}

impl Moves {
    fn push(&mut self, id: Uuid, from: i32, to: i32) {
        self.ids.push(id);
        self.from.push(from);
        self.to.push(to);
    }
}

fn position(i: usize) -> i32 {
    i32::try_from(i).unwrap_or(i32::MAX)
}

/// Invoice lines as columns, for one `INSERT … SELECT * FROM UNNEST(…)`.
#[derive(Default)]
struct LineColumns {
    invoice_ids: Vec<Uuid>,
    positions: Vec<i32>,
    kinds: Vec<&'static str>,
    provider_ids: Vec<String>,
    provider_names: Vec<String>,
    provider_kinds: Vec<&'static str>,
    skus: Vec<String>,
    descriptions: Vec<String>,
    units: Vec<String>,
    quantities: Vec<Decimal>,
    unit_prices: Vec<Option<Decimal>>,
    amounts: Vec<Decimal>,
    list_amounts: Vec<Decimal>,
    markups: Vec<Decimal>,
    platform_fees: Vec<Decimal>,
    partner_nets: Vec<Decimal>,
    price_ids: Vec<i64>,
    price_effective_froms: Vec<DateTime<Utc>>,
    event_counts: Vec<i64>,
    currencies: Vec<&'static str>,
    adjusts_starts: Vec<Option<DateTime<Utc>>>,
    adjusts_ends: Vec<Option<DateTime<Utc>>>,
    digests: Vec<Digest>,
    binding_ids: Vec<Option<String>>,
    resource_names: Vec<Option<String>>,
    resource_plans: Vec<Option<String>>,
    discounts: Vec<Decimal>,
    discount_funders: Vec<Option<&'static str>>,
}

/// SHA-256 of everything an invoice line row holds but its invoice and
/// position: equal digests, equal rows. Each field is length-prefixed or of
/// fixed width, so no two different lines feed the same bytes.
fn line_digest(l: &StatementLine, currency: &str) -> Digest {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let text = |h: &mut Sha256, s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    let time = |h: &mut Sha256, t: Option<DateTime<Utc>>| match t {
        Some(t) => {
            h.update([1]);
            h.update(t.timestamp_micros().to_le_bytes());
        }
        None => h.update([0]),
    };
    text(&mut h, l.kind.as_str());
    text(&mut h, l.provider.id.as_str());
    text(&mut h, &l.provider.name);
    text(&mut h, l.provider.kind.as_str());
    text(&mut h, l.sku.as_str());
    text(&mut h, &l.description);
    text(&mut h, &l.unit);
    text(&mut h, currency);
    match l.unit_price {
        Some(p) => {
            h.update([1]);
            h.update(p.serialize());
        }
        None => h.update([0]),
    }
    for d in [
        l.quantity,
        l.amount,
        l.list_amount,
        l.markup,
        l.platform_fee,
        l.partner_net,
    ] {
        h.update(d.serialize());
    }
    h.update(l.price_id.to_le_bytes());
    h.update(l.event_count.to_le_bytes());
    time(&mut h, Some(l.price_effective_from));
    time(&mut h, l.adjusts.map(|p| p.start()));
    time(&mut h, l.adjusts.map(|p| p.end()));
    // Only a line of a bound resource feeds these: the digest of a line
    // without one is what it was before bindings.
    if let Some(r) = &l.resource {
        text(&mut h, r.binding.as_str());
        text(&mut h, &r.name);
        text(&mut h, &r.plan);
    }
    // Likewise only a discounted line feeds its discount.
    if let Some(funder) = l.discount_funded_by {
        text(&mut h, funder.as_str());
        h.update(l.discount.serialize());
    }
    h.finalize().into()
}

impl LineColumns {
    fn push(
        &mut self,
        id: Uuid,
        position: i32,
        l: &StatementLine,
        currency: &'static str,
        digest: Digest,
    ) {
        self.digests.push(digest);
        self.invoice_ids.push(id);
        self.positions.push(position);
        self.kinds.push(l.kind.as_str());
        self.provider_ids.push(l.provider.id.to_string());
        self.provider_names.push(l.provider.name.clone());
        self.provider_kinds.push(l.provider.kind.as_str());
        self.skus.push(l.sku.to_string());
        self.descriptions.push(l.description.clone());
        self.units.push(l.unit.clone());
        self.quantities.push(l.quantity);
        self.unit_prices.push(l.unit_price);
        self.amounts.push(l.amount);
        self.list_amounts.push(l.list_amount);
        self.markups.push(l.markup);
        self.platform_fees.push(l.platform_fee);
        self.partner_nets.push(l.partner_net);
        self.price_ids.push(l.price_id);
        self.price_effective_froms.push(l.price_effective_from);
        self.event_counts.push(l.event_count);
        self.currencies.push(currency);
        self.adjusts_starts.push(l.adjusts.map(|p| p.start()));
        self.adjusts_ends.push(l.adjusts.map(|p| p.end()));
        self.binding_ids
            .push(l.resource.as_ref().map(|r| r.binding.to_string()));
        self.resource_names
            .push(l.resource.as_ref().map(|r| r.name.clone()));
        self.resource_plans
            .push(l.resource.as_ref().map(|r| r.plan.clone()));
        self.discounts.push(l.discount);
        self.discount_funders
            .push(l.discount_funded_by.map(|f| f.as_str()));
    }
}

#[derive(Default)]
struct CreditColumns {
    invoice_ids: Vec<Uuid>,
    positions: Vec<i32>,
    grant_ids: Vec<i64>,
    names: Vec<String>,
    kinds: Vec<String>,
    amounts: Vec<Decimal>,
    lines: Vec<serde_json::Value>,
}

impl CreditColumns {
    fn push(&mut self, id: Uuid, i: usize, c: &AppliedCredit) -> Result<(), sqlx::Error> {
        self.invoice_ids.push(id);
        self.positions.push(position(i));
        self.grant_ids.push(c.grant_id);
        self.names.push(c.name.clone());
        self.kinds.push(c.kind.clone());
        self.amounts.push(c.amount);
        self.lines
            .push(serde_json::to_value(&c.lines).map_err(|e| sqlx::Error::Encode(Box::new(e)))?);
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Period)]
pub struct PeriodView {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[schema(example = "2026-11")]
    pub label: String,
}

impl PeriodView {
    fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        let label = Period::new(start, end)
            .map(|p| p.label())
            .unwrap_or_default();
        Self { start, end, label }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InvoiceSummary {
    pub id: Uuid,
    pub number: Option<String>,
    pub account_id: String,
    pub period: PeriodView,
    #[schema(schema_with = tally_platform::openapi::invoice_status)]
    pub status: InvoiceStatus,
    /// ISO 4217
    #[schema(value_type = String)]
    pub currency: Currency,
    pub statement_version: i64,
    /// The sum of the lines, before credits.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = tally_platform::openapi::Decimal)]
    pub subtotal: Decimal,
    /// Credits applied
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = tally_platform::openapi::Decimal)]
    pub credits_total: Decimal,
    /// Amount due: `subtotal - credits_total` (never below zero).
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = tally_platform::openapi::Decimal)]
    pub total: Decimal,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the invoice got its number and froze.
    pub finalized_at: Option<DateTime<Utc>>,
    /// Present on a void invoice
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voided_at: Option<DateTime<Utc>>,
    /// Present on a void invoice
    #[serde(skip_serializing_if = "Option::is_none")]
    pub void_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = SectionProvider)]
pub struct ProviderView {
    pub id: String,
    pub name: String,
    #[schema(schema_with = tally_platform::openapi::provider_kind)]
    pub kind: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Line)]
pub struct LineView {
    #[schema(schema_with = tally_platform::openapi::line_kind)]
    pub kind: String,
    pub sku: String,
    pub price_id: i64,
    pub description: String,
    pub unit: String,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = tally_platform::openapi::Decimal)]
    pub quantity: Decimal,
    #[serde(with = "rust_decimal::serde::str_option")]
    #[schema(value_type = Option<tally_platform::openapi::Decimal>)]
    pub unit_price: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = tally_platform::openapi::Decimal)]
    pub amount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = tally_platform::openapi::Decimal)]
    pub list_amount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = tally_platform::openapi::Decimal)]
    pub markup: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = tally_platform::openapi::Decimal)]
    pub platform_fee: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = tally_platform::openapi::Decimal)]
    pub partner_net: Decimal,
    /// What the account's contract took off the line (`amount` is net of
    /// it; `list_amount` is the provider's list price).
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = tally_platform::openapi::Decimal)]
    pub discount: Decimal,
    /// Who funds `discount`: `platform` (the partner is settled at list)
    /// or `partner` (its `partner_net` is lower by it).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = tally_platform::openapi::discount_funder)]
    pub discount_funded_by: Option<String>,
    pub price_effective_from: DateTime<Utc>,
    pub event_count: i64,
    /// On an adjustment line: the sealed service period whose late usage it bills.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjusts: Option<PeriodView>,
    /// On a line of a bound resource (plan fee, allowance, its usage): the
    /// resource. A provider's lines come grouped by it, unbound ones first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceView>,
}

/// A bound resource as an invoice shows it: `prod-db · PS-10`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = LineResource)]
pub struct ResourceView {
    /// The binding's id.
    pub binding: String,
    /// The customer's name for the resource.
    pub name: String,
    /// The resource's plan as the period ends (its newest plan in the
    /// period): the group's label, the same on each of its lines. A plan fee
    /// line names its own plan version in `price_id`.
    pub plan: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Section {
    pub provider: ProviderView,
    pub lines: Vec<LineView>,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = tally_platform::openapi::Decimal)]
    pub subtotal: Decimal,
}

/// A credit line: what one grant paid on the invoice.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = InvoiceCredit)]
pub struct CreditView {
    pub grant_id: i64,
    pub name: String,
    #[schema(schema_with = tally_platform::openapi::grant_kind)]
    pub kind: String,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = tally_platform::openapi::Decimal)]
    pub amount: Decimal,
}

/// An invoice with its lines grouped per provider (the platform first),
/// then the credits applied.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Invoice {
    #[serde(flatten)]
    pub summary: InvoiceSummary,
    pub sections: Vec<Section>,
    /// Credits in the order they were applied
    pub credits: Vec<CreditView>,
}

const SUMMARY_COLUMNS: &str =
    "id, number, account_id, period_start, period_end, status, currency, \
     statement_version, subtotal, credits_total, total, created_at, updated_at, \
     finalized_at, voided_at, void_reason";

fn summary(r: &PgRow) -> Result<InvoiceSummary, sqlx::Error> {
    let currency = currency_of(r, "currency")?;
    let amount =
        |name: &str| -> Result<Decimal, sqlx::Error> { Ok(currency.scaled(r.try_get(name)?)) };
    Ok(InvoiceSummary {
        id: r.try_get("id")?,
        number: r.try_get("number")?,
        account_id: r.try_get("account_id")?,
        period: PeriodView::new(r.try_get("period_start")?, r.try_get("period_end")?),
        status: InvoiceStatus::parse(r.try_get("status")?)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        statement_version: r.try_get("statement_version")?,
        subtotal: amount("subtotal")?,
        credits_total: amount("credits_total")?,
        total: amount("total")?,
        currency,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        finalized_at: r.try_get("finalized_at")?,
        voided_at: r.try_get("voided_at")?,
        void_reason: r.try_get("void_reason")?,
    })
}

async fn with_sections(
    conn: &mut PgConnection,
    summary: InvoiceSummary,
) -> Result<Invoice, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT provider_id, provider_name, provider_kind, kind, sku_id, price_id, description, unit,
                quantity, unit_price, amount, list_amount, markup, platform_fee, partner_net,
                price_effective_from, event_count, adjusts_period_start, adjusts_period_end,
                binding_id, resource_name, resource_plan, discount, discount_funded_by
         FROM invoice_lines WHERE invoice_id = $1 ORDER BY position",
    )
    .bind(summary.id)
    .fetch_all(&mut *conn)
    .await?;
    let currency = summary.currency;
    let amount = |r: &PgRow, name: &str| -> Result<Decimal, sqlx::Error> {
        Ok(currency.scaled(r.try_get(name)?))
    };
    let mut sections: Vec<Section> = Vec::new();
    for r in rows {
        let provider_id: String = r.try_get("provider_id")?;
        let line = LineView {
            kind: r.try_get("kind")?,
            sku: r.try_get("sku_id")?,
            price_id: r.try_get("price_id")?,
            description: r.try_get("description")?,
            unit: r.try_get("unit")?,
            quantity: r.try_get("quantity")?,
            unit_price: r
                .try_get::<Option<Decimal>, _>("unit_price")?
                .map(|p| currency.scaled(p)),
            amount: amount(&r, "amount")?,
            list_amount: amount(&r, "list_amount")?,
            markup: amount(&r, "markup")?,
            platform_fee: amount(&r, "platform_fee")?,
            partner_net: amount(&r, "partner_net")?,
            discount: amount(&r, "discount")?,
            discount_funded_by: r.try_get("discount_funded_by")?,
            price_effective_from: r.try_get("price_effective_from")?,
            event_count: r.try_get("event_count")?,
            adjusts: match (
                r.try_get::<Option<DateTime<Utc>>, _>("adjusts_period_start")?,
                r.try_get::<Option<DateTime<Utc>>, _>("adjusts_period_end")?,
            ) {
                (Some(start), Some(end)) => Some(PeriodView::new(start, end)),
                _ => None,
            },
            resource: match r.try_get::<Option<String>, _>("binding_id")? {
                Some(binding) => Some(ResourceView {
                    binding,
                    name: r
                        .try_get::<Option<String>, _>("resource_name")?
                        .unwrap_or_default(),
                    plan: r
                        .try_get::<Option<String>, _>("resource_plan")?
                        .unwrap_or_default(),
                }),
                None => None,
            },
        };
        // Adjustment lines come after the period's own: they join their
        // provider's section.
        match sections.iter_mut().find(|s| s.provider.id == provider_id) {
            Some(s) => {
                s.subtotal = fits(checked::add(s.subtotal, line.amount))?;
                s.lines.push(line);
            }
            _ => sections.push(Section {
                provider: ProviderView {
                    id: provider_id,
                    name: r.try_get("provider_name")?,
                    kind: r.try_get("provider_kind")?,
                },
                subtotal: line.amount,
                lines: vec![line],
            }),
        }
    }
    let credits = sqlx::query(
        "SELECT grant_id, name, kind, amount FROM invoice_credits WHERE invoice_id = $1 ORDER BY position",
    )
    .bind(summary.id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(CreditView {
            grant_id: r.try_get("grant_id")?,
            name: r.try_get("name")?,
            kind: r.try_get("kind")?,
            amount: amount(r, "amount")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Invoice {
        summary,
        sections,
        credits,
    })
}

pub async fn get_invoice(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Invoice>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM invoices WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(r) => Ok(Some(with_sections(conn, summary(&r)?).await?)),
        None => Ok(None),
    }
}

/// The account's invoice for the period that starts in `month` (an account
/// with an anchor day has one period starting in each calendar month).
pub async fn find_by_account_period(
    conn: &mut PgConnection,
    account: &str,
    month: Period,
) -> Result<Option<Invoice>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM invoices
         WHERE account_id = $1 AND period_start >= $2 AND period_start < $3"
    ))
    .bind(account)
    .bind(month.start())
    .bind(month.end())
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(r) => Ok(Some(with_sections(conn, summary(&r)?).await?)),
        None => Ok(None),
    }
}

#[derive(Debug, Default, Clone)]
pub struct InvoiceFilter {
    pub account: Option<String>,
    /// Invoices of periods starting in this month.
    pub month: Option<Period>,
    pub status: Option<InvoiceStatus>,
    /// Return invoices with an id greater than this (keyset pagination).
    pub after: Option<Uuid>,
    pub limit: i64,
}

/// Invoices in id order (ids are time-ordered UUID v7).
pub async fn list_invoices(
    conn: &mut PgConnection,
    f: &InvoiceFilter,
) -> Result<Vec<InvoiceSummary>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM invoices
         WHERE ($1::text IS NULL OR account_id = $1)
           AND ($2::timestamptz IS NULL OR (period_start >= $2 AND period_start < $6))
           AND ($3::text IS NULL OR status = $3)
           AND ($4::uuid IS NULL OR id > $4)
         ORDER BY id LIMIT $5"
    ))
    .bind(f.account.as_deref())
    .bind(f.month.map(|m| m.start()))
    .bind(f.status.map(InvoiceStatus::as_str))
    .bind(f.after)
    .bind(f.limit)
    .bind(f.month.map(|m| m.end()))
    .fetch_all(conn)
    .await?;
    rows.iter().map(summary).collect()
}

/// The periods an account has invoices for, newest first.
pub async fn account_periods(
    conn: &mut PgConnection,
    account: &str,
) -> Result<Vec<PeriodView>, sqlx::Error> {
    let rows: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT period_start, period_end FROM invoices WHERE account_id = $1 ORDER BY period_start DESC",
    )
    .bind(account)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(s, e)| PeriodView::new(s, e))
        .collect())
}

/// Quantity per day and price version of an account-period (from rating's hourly roll-up).
pub async fn daily_usage(
    conn: &mut PgConnection,
    account: &str,
    period_start: DateTime<Utc>,
) -> Result<Vec<(chrono::NaiveDate, i64, Decimal)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT (hour AT TIME ZONE 'UTC')::date AS day, price_id, sum(quantity) AS quantity
         FROM usage_hourly WHERE account_id = $1 AND period_start = $2
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(account)
    .bind(period_start)
    .fetch_all(conn)
    .await
}
