//! Who may control a live stream: the client that started it. A stream keeps a hash of the
//! `Authorization` header its `/start` carried (the one the auth webhook saw) and of a random
//! secret handed back by `/start`; `/update`, `/stop`, `/status` and a `/start` that replaces
//! the running stream must present either, so
//! a client that knows only a stream's name can neither read its params nor steer it, while a
//! go-livepeer-style client that repeats its own header keeps working unchanged.
//!
//! Only hashes are kept, and they are compared in constant time: neither the table of streams
//! nor a timing difference gives a credential away. This module imports nothing from the other
//! live modules.

use livepeer_pm::{B256, keccak256};
use subtle::ConstantTimeEq;

/// The request header that carries a stream's secret (also accepted as `Authorization:
/// Bearer <secret>`), and the response header of `/start` that hands it out.
pub const SECRET_HEADER: &str = "livepeer-stream-secret";

/// What a request to a stream's control routes presented.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Credentials<'a> {
    /// Its `Authorization` header.
    pub(crate) authorization: Option<&'a str>,
    /// Its [`SECRET_HEADER`].
    pub(crate) secret: Option<&'a str>,
}

/// Why a request may not control a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// It presented no credential at all.
    Missing,
    /// It presented credentials, none of them the stream's.
    Wrong,
}

/// The credentials a stream was started with, hashed.
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    /// The start's `Authorization` header, if it had one.
    authorization: Option<B256>,
    /// The secret `/start` answered.
    secret: B256,
}

impl Owner {
    /// The owner of a stream started with `authorization`, and the secret to hand its client.
    pub(crate) fn new(authorization: Option<&str>) -> (Self, String) {
        let secret = hex::encode(rand::random::<[u8; 32]>());
        let owner = Self {
            authorization: authorization.filter(|a| !a.is_empty()).map(hash),
            secret: hash(&secret),
        };
        (owner, secret)
    }

    /// Whether `presented` proves ownership: the same `Authorization` as the start, or the
    /// stream's secret (in its header, or as a bearer token).
    pub(crate) fn check(&self, presented: Credentials<'_>) -> Result<(), Denied> {
        let authorization = presented.authorization.filter(|a| !a.is_empty());
        let secret = presented.secret.filter(|s| !s.is_empty());
        if authorization.is_none() && secret.is_none() {
            return Err(Denied::Missing);
        }
        let same = |expected: &B256, given: &str| {
            bool::from(hash(given).as_slice().ct_eq(expected.as_slice()))
        };
        let by_header =
            authorization.zip(self.authorization.as_ref()).is_some_and(|(a, e)| same(e, a));
        let by_secret = secret.is_some_and(|s| same(&self.secret, s));
        let by_bearer = authorization.and_then(bearer).is_some_and(|s| same(&self.secret, s));
        if by_header | by_secret | by_bearer {
            return Ok(());
        }
        Err(Denied::Wrong)
    }
}

fn hash(value: &str) -> B256 {
    keccak256(value.as_bytes())
}

/// The token of a `Bearer` authorization (the scheme in any case).
fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds<'a>(authorization: Option<&'a str>, secret: Option<&'a str>) -> Credentials<'a> {
        Credentials { authorization, secret }
    }

    #[test]
    fn the_start_header_or_the_secret_proves_ownership() {
        let (owner, secret) = Owner::new(Some("Bearer alice"));
        assert_eq!(secret.len(), 64);
        assert_eq!(owner.check(creds(Some("Bearer alice"), None)), Ok(()));
        assert_eq!(owner.check(creds(None, Some(&secret))), Ok(()));
        assert_eq!(owner.check(creds(Some(&format!("bearer {secret}")), None)), Ok(()));
        // A wrong header with the right secret still proves it.
        assert_eq!(owner.check(creds(Some("Bearer eve"), Some(&secret))), Ok(()));
    }

    #[test]
    fn anything_else_is_refused_as_missing_or_wrong() {
        let (owner, secret) = Owner::new(Some("Bearer alice"));
        assert_eq!(owner.check(creds(None, None)), Err(Denied::Missing));
        assert_eq!(owner.check(creds(Some(""), Some(""))), Err(Denied::Missing));
        assert_eq!(owner.check(creds(Some("Bearer alicf"), None)), Err(Denied::Wrong));
        assert_eq!(owner.check(creds(Some("bearer alice"), None)), Err(Denied::Wrong));
        assert_eq!(owner.check(creds(None, Some(&secret[1..]))), Err(Denied::Wrong));
        assert_eq!(owner.check(creds(Some(&secret), None)), Err(Denied::Wrong));
    }

    #[test]
    fn an_anonymous_start_is_owned_through_its_secret_only() {
        let (owner, secret) = Owner::new(None);
        assert_eq!(owner.check(creds(Some("Bearer x"), None)), Err(Denied::Wrong));
        assert_eq!(owner.check(creds(None, Some(&secret))), Ok(()));
        let (other, _) = Owner::new(Some(""));
        assert_eq!(other.check(creds(Some(""), None)), Err(Denied::Missing));
    }
}
