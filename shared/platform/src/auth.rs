//! API keys: random secrets shown once, stored as SHA-256, resolved to a principal.

use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use tally_domain::{AccountId, ProviderId};
use uuid::Uuid;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Manages the catalog, accounts and keys.
    Admin,
    /// Reads everything billing-related.
    Finance,
    /// Sends usage for, and reads the catalog of, one provider.
    Provider(ProviderId),
    /// Reads one account's bill.
    Customer(AccountId),
}

impl Principal {
    pub fn role(&self) -> &'static str {
        match self {
            Principal::Admin => "admin",
            Principal::Finance => "finance",
            Principal::Provider(_) => "provider",
            Principal::Customer(_) => "customer",
        }
    }

    /// Finance and admin keys read every account's billing data.
    pub fn is_staff(&self) -> bool {
        matches!(self, Principal::Admin | Principal::Finance)
    }
}

/// A freshly created key. `secret` exists only here: the database keeps its hash.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: Uuid,
    pub secret: String,
}

pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Creates a key for `principal` and returns its secret (the only time it is seen).
pub async fn create_key(
    conn: &mut PgConnection,
    principal: &Principal,
) -> Result<NewKey, sqlx::Error> {
    let secret = format!(
        "tly_{}_{}",
        principal.role(),
        Alphanumeric.sample_string(&mut rand::rngs::OsRng, 40)
    );
    let id = Uuid::new_v4();
    let (provider, account) = match principal {
        Principal::Provider(p) => (Some(p.as_str()), None),
        Principal::Customer(a) => (None, Some(a.as_str())),
        Principal::Admin | Principal::Finance => (None, None),
    };
    sqlx::query(
        "INSERT INTO api_keys (id, key_hash, prefix, role, provider_id, account_id)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(hash(&secret))
    .bind(&secret[..secret.len().min(12)])
    .bind(principal.role())
    .bind(provider)
    .bind(account)
    .execute(conn)
    .await?;
    Ok(NewKey { id, secret })
}

/// Resolves a presented secret; `None` for unknown or revoked keys.
pub async fn authenticate(pool: &PgPool, secret: &str) -> Result<Option<Principal>, sqlx::Error> {
    Ok(authenticate_key(pool, secret)
        .await?
        .map(|(_, principal)| principal))
}

/// [`authenticate`], with the key's id (what a session opened with the key
/// remembers, so that revoking the key ends the session).
pub async fn authenticate_key(
    pool: &PgPool,
    secret: &str,
) -> Result<Option<(Uuid, Principal)>, sqlx::Error> {
    let row: Option<(Uuid, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT id, role, provider_id, account_id FROM api_keys
         WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash(secret))
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|(id, role, provider, account)| {
        let principal = match role.as_str() {
            "admin" => Some(Principal::Admin),
            "finance" => Some(Principal::Finance),
            "provider" => ProviderId::parse(&provider?).ok().map(Principal::Provider),
            "customer" => AccountId::parse(&account?).ok().map(Principal::Customer),
            _ => None,
        }?;
        Some((id, principal))
    }))
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{header, HeaderMap, HeaderValue};

    #[test]
    fn bearer_token_is_read_from_the_authorization_header() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer tly_x"),
        );
        assert_eq!(bearer(&h), Some("tly_x"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn only_the_hash_of_a_secret_is_kept() {
        let h = hash("tly_admin_secret");
        assert_eq!(h.len(), 32);
        assert_ne!(h, b"tly_admin_secret".to_vec());
    }
}
