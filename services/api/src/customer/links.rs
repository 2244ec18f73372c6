//! Signed, expiring bill links and bill-page sessions: `account|expiry`
//! signed with HMAC-SHA256, so a link opens exactly one account until it
//! expires and cannot be altered to open another.

use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

#[derive(Clone)]
pub struct Signer {
    keyed: Hmac<Sha256>,
}

impl Signer {
    /// From the configured secret, or a random one (links then die with the process).
    pub fn new(secret: Option<&str>) -> Result<Self, hmac::digest::InvalidLength> {
        let key = match secret {
            Some(s) => s.as_bytes().to_vec(),
            None => {
                tracing::warn!(
                    "TALLY_LINK_SECRET is not set: bill links last only as long as this process"
                );
                let mut key = vec![0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                key
            }
        };
        Ok(Self {
            keyed: Hmac::<Sha256>::new_from_slice(&key)?,
        })
    }

    fn mac(&self, account: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(account.as_bytes());
        mac.update(b"|");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// Hex signature of (account, expiry).
    pub fn sign(&self, account: &str, expires: DateTime<Utc>) -> String {
        hex::encode(
            self.mac(account, expires.timestamp())
                .finalize()
                .into_bytes(),
        )
    }

    /// True when `sig` was made by [`Signer::sign`] for this account and has not expired at `now`.
    pub fn verify(&self, account: &str, expires: i64, sig: &str, now: DateTime<Utc>) -> bool {
        let Ok(bytes) = hex::decode(sig) else {
            return false;
        };
        let fresh = Utc
            .timestamp_opt(expires, 0)
            .single()
            .is_some_and(|e| e > now);
        fresh && self.mac(account, expires).verify_slice(&bytes).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn a_link_opens_its_account_until_it_expires() {
        let s = Signer::new(Some("secret")).unwrap();
        let now = Utc::now();
        let exp = now + Duration::hours(1);
        let sig = s.sign("acme", exp);
        assert!(s.verify("acme", exp.timestamp(), &sig, now));
        assert!(
            !s.verify("umbrella", exp.timestamp(), &sig, now),
            "another account"
        );
        assert!(
            !s.verify("acme", exp.timestamp() + 1, &sig, now),
            "altered expiry"
        );
        assert!(
            !s.verify("acme", exp.timestamp(), &sig, exp + Duration::seconds(1)),
            "expired"
        );
        assert!(
            !Signer::new(Some("other"))
                .unwrap()
                .verify("acme", exp.timestamp(), &sig, now),
            "other secret"
        );
        assert!(!s.verify("acme", exp.timestamp(), "zz", now));
    }
}
