//! The month's reconciliation per chain of composition (issue 17 item 6):
//! each chain's lines and the credits on its members' own invoices, read
//! here, grouped and checked by [`tally_domain::composition::chain`] (what
//! a chain is, and which lines are its, is documented there). The month's
//! identity is checked on its own; chains are a view beside it.

use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgConnection;
use tally_domain::composition::chain::{chains, Chain, CreditFact, LineFact};
use tally_domain::{Currency, Period};
use tally_invoicing::amounts::{fits, parse_stored};

use super::reconciliation::{ISSUED, VOIDED};

/// A chain's identity in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChainCurrencyView {
    /// ISO 4217
    #[schema(value_type = String)]
    pub currency: Currency,
    /// Billed by its members to consumers (accounts no provider owns).
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub to_consumers: Decimal,
    /// Billed by its members to its members' own accounts.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub to_providers: Decimal,
    /// `to_consumers + to_providers`.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub invoiced: Decimal,
    /// The platform's part of its lines, less the credits applied.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub platform_revenue: Decimal,
    /// What its partners are settled for its lines.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub settlements: Decimal,
    /// Credits applied on its members' own invoices.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub credits_applied: Decimal,
    /// `invoiced - (platform_revenue + settlements + credits_applied)`.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub difference: Decimal,
}

/// One chain: its root (a composing provider no other provider draws
/// from), its members (the root, then the providers it draws from
/// transitively, by id) and its identity per currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChainView {
    pub root: String,
    pub members: Vec<String>,
    pub currencies: Vec<ChainCurrencyView>,
}

impl ChainView {
    pub fn holds(&self) -> bool {
        self.currencies.iter().all(|c| c.difference.is_zero())
    }
}

impl From<Chain> for ChainView {
    fn from(c: Chain) -> Self {
        ChainView {
            root: c.root,
            members: c.members,
            currencies: c
                .currencies
                .into_iter()
                .map(|c| ChainCurrencyView {
                    currency: c.currency,
                    to_consumers: c.to_consumers,
                    to_providers: c.to_providers,
                    invoiced: c.invoiced,
                    platform_revenue: c.platform_revenue,
                    settlements: c.settlements,
                    credits_applied: c.credits_applied,
                    difference: c.difference,
                })
                .collect(),
        }
    }
}

/// The chains of `month`: the month's lines (less those of invoices voided
/// in it and credit notes issued in it) by provider and owner of the
/// account, and the credits applied on provider-owned accounts' invoices.
pub async fn chains_of(
    conn: &mut PgConnection,
    month: Period,
) -> Result<Vec<ChainView>, sqlx::Error> {
    let partner = "CASE WHEN l.provider_kind = 'partner' THEN l.partner_net ELSE 0 END";
    let lines: Vec<(String, Option<String>, String, Decimal, Decimal, Decimal)> =
        sqlx::query_as(&format!(
            "SELECT provider_id, owner, currency, sum(amount), sum(platform), sum(partner) FROM (
                 SELECT l.provider_id, a.owner_provider_id, i.currency,
                        l.amount, l.markup + l.platform_fee, {partner}
                 FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
                 JOIN accounts a ON a.id = i.account_id WHERE {ISSUED}
                 UNION ALL
                 SELECT l.provider_id, a.owner_provider_id, i.currency,
                        -l.amount, -(l.markup + l.platform_fee), -({partner})
                 FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
                 JOIN accounts a ON a.id = i.account_id WHERE {VOIDED}
                 UNION ALL
                 SELECT c.provider_id, a.owner_provider_id, n.currency, -c.amount, -c.platform_part,
                        -(CASE WHEN l.provider_kind = 'partner' THEN c.partner_part ELSE 0 END)
                 FROM credit_note_lines c JOIN credit_notes n ON n.id = c.credit_note_id
                 JOIN invoice_lines l ON l.invoice_id = c.invoice_id AND l.position = c.line_position
                 JOIN accounts a ON a.id = n.account_id
                 WHERE n.created_at >= $1 AND n.created_at < $2
             ) t (provider_id, owner, currency, amount, platform, partner)
             GROUP BY provider_id, owner, currency"
        ))
        .bind(month.start())
        .bind(month.end())
        .fetch_all(&mut *conn)
        .await?;
    let credits: Vec<(String, String, Decimal)> = sqlx::query_as(&format!(
        "SELECT owner, currency, sum(amount) FROM (
             SELECT a.owner_provider_id AS owner, i.currency, c.amount
             FROM invoice_credits c JOIN invoices i ON i.id = c.invoice_id
             JOIN accounts a ON a.id = i.account_id
             WHERE a.owner_provider_id IS NOT NULL AND {ISSUED}
             UNION ALL
             SELECT a.owner_provider_id, i.currency, -c.amount
             FROM invoice_credits c JOIN invoices i ON i.id = c.invoice_id
             JOIN accounts a ON a.id = i.account_id
             WHERE a.owner_provider_id IS NOT NULL AND {VOIDED}
         ) t GROUP BY owner, currency"
    ))
    .bind(month.start())
    .bind(month.end())
    .fetch_all(&mut *conn)
    .await?;
    let lines = lines
        .into_iter()
        .map(|(provider, owner, code, amount, platform, partner)| {
            Ok(LineFact {
                provider,
                owner,
                currency: parse_stored("currency", &code)?,
                amount,
                platform,
                partner,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let credits = credits
        .into_iter()
        .map(|(owner, code, amount)| {
            Ok(CreditFact {
                owner,
                currency: parse_stored("currency", &code)?,
                amount,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(fits(chains(&lines, &credits))?
        .into_iter()
        .map(ChainView::from)
        .collect())
}
