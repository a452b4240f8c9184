//! Admission: viewer tokens, seed credentials, open channels.
//!
//! Both kinds of token are JSON Web Tokens signed with HMAC-SHA256 (HS256)
//! under a key of the operator's (one for viewers, one for seeds); their
//! claims are [`swarm_proto::auth`]. Every refusal names its
//! [`RefuseReason`], which the player shows to the person watching.
//!
//! - Without a viewer key every channel is open: tokens are not asked for
//!   (and any presented one is ignored). With a viewer key, only the
//!   channels listed as open can be joined without a token.
//! - Without a seed key no seed can register.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use swarm_proto::auth::{SeedClaims, ViewerClaims, SEED_ROLE};
use swarm_proto::signal::RefuseReason;

/// Shortest key accepted without a warning, in bytes (HS256 keys should be
/// at least as long as the hash).
pub const MIN_KEY_LEN: usize = 32;

/// An HMAC key. Its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl Key {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Key {
        Key(bytes.into())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `presented` is this key, in time independent of where they
    /// differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        if presented.len() != self.0.len() {
            return false;
        }
        self.0
            .iter()
            .zip(presented)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    fn decoding(&self) -> DecodingKey {
        DecodingKey::from_secret(&self.0)
    }

    fn encoding(&self) -> EncodingKey {
        EncodingKey::from_secret(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({} bytes)", self.0.len())
    }
}

/// Channels joinable without a viewer token when a viewer key is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OpenChannels {
    /// Only the listed ones (none by default).
    #[default]
    None,
    Listed(BTreeSet<String>),
    All,
}

impl OpenChannels {
    /// From `--open-channel` values: `*` opens all.
    pub fn from_list(list: &[String]) -> OpenChannels {
        if list.iter().any(|c| c == "*") {
            OpenChannels::All
        } else if list.is_empty() {
            OpenChannels::None
        } else {
            OpenChannels::Listed(list.iter().cloned().collect())
        }
    }

    fn contains(&self, channel: &str) -> bool {
        match self {
            OpenChannels::None => false,
            OpenChannels::Listed(set) => set.contains(channel),
            OpenChannels::All => true,
        }
    }
}

/// The admission settings of a server.
#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    /// Verifies viewer tokens; `None`: every channel is open.
    pub viewer_key: Option<Key>,
    /// Verifies seed tokens; `None`: no seed can register.
    pub seed_key: Option<Key>,
    /// Channels open to viewers without a token (when `viewer_key` is set).
    pub open_channels: OpenChannels,
}

/// A refusal: the reason sent to the client and a detail for it and the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: RefuseReason,
    pub detail: String,
}

impl Refusal {
    pub fn new(reason: RefuseReason, detail: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            detail: detail.into(),
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn validation(require_exp: bool) -> Validation {
    let mut v = Validation::new(Algorithm::HS256);
    // Expiry is checked by us against `now` (so tests can move time and the
    // join check uses the same rule), with no leeway.
    v.validate_exp = false;
    v.leeway = 0;
    v.required_spec_claims.clear();
    if require_exp {
        v.required_spec_claims.insert("exp".to_owned());
    }
    v
}

fn token_error(e: jsonwebtoken::errors::Error) -> Refusal {
    match e.kind() {
        ErrorKind::InvalidSignature => {
            Refusal::new(RefuseReason::BadSignature, "signature mismatch")
        }
        ErrorKind::InvalidAlgorithm => {
            Refusal::new(RefuseReason::BadToken, "only HS256 tokens are accepted")
        }
        ErrorKind::MissingRequiredClaim(c) => Refusal::new(
            RefuseReason::BadToken,
            format!("the token has no `{c}` claim"),
        ),
        _ => Refusal::new(RefuseReason::BadToken, format!("not a valid token: {e}")),
    }
}

impl AuthConfig {
    /// Whether viewers need tokens for channels that are not open.
    pub fn viewer_tokens_checked(&self) -> bool {
        self.viewer_key.is_some()
    }

    /// Checks a viewer's token at `hello`. `Ok(None)`: an anonymous viewer
    /// (no token, or no viewer key to check one with).
    pub fn admit_viewer(
        &self,
        token: Option<&str>,
        now: u64,
    ) -> Result<Option<ViewerClaims>, Refusal> {
        let (Some(key), Some(token)) = (&self.viewer_key, token) else {
            return Ok(None);
        };
        let data = decode::<ViewerClaims>(token, &key.decoding(), &validation(true))
            .map_err(token_error)?;
        let claims = data.claims;
        claims
            .check()
            .map_err(|e| Refusal::new(RefuseReason::BadToken, e))?;
        if claims.exp <= now {
            return Err(Refusal::new(
                RefuseReason::Expired,
                format!(
                    "the token of {} expired {} s ago",
                    claims.sub,
                    now - claims.exp
                ),
            ));
        }
        Ok(Some(claims))
    }

    /// Whether a viewer with `claims` (none: anonymous) may join `channel`.
    pub fn may_join(
        &self,
        claims: Option<&ViewerClaims>,
        channel: &str,
        now: u64,
    ) -> Result<(), Refusal> {
        if !self.viewer_tokens_checked() || self.open_channels.contains(channel) {
            return Ok(());
        }
        let Some(c) = claims else {
            return Err(Refusal::new(
                RefuseReason::TokenRequired,
                format!("channel {channel} is not open"),
            ));
        };
        if c.exp <= now {
            return Err(Refusal::new(
                RefuseReason::Expired,
                format!("the token of {} has expired", c.sub),
            ));
        }
        if !c.allows(channel) {
            return Err(Refusal::new(
                RefuseReason::NotEntitled,
                format!("the token of {} does not list channel {channel}", c.sub),
            ));
        }
        Ok(())
    }

    /// Checks a seed's credential: signed by the seed key, `role: seed`,
    /// not expired, and naming `seed_id`.
    pub fn admit_seed(&self, token: Option<&str>, seed_id: &str, now: u64) -> Result<(), Refusal> {
        let Some(key) = &self.seed_key else {
            return Err(Refusal::new(
                RefuseReason::SeedCredential,
                "this signal server accepts no seeds (it was started without --seed-key)",
            ));
        };
        let Some(token) = token else {
            return Err(Refusal::new(
                RefuseReason::SeedCredential,
                "a seed must present a seed token (shoal-seed --seed-key or --signal-token)",
            ));
        };
        let claims = decode::<SeedClaims>(token, &key.decoding(), &validation(false))
            .map_err(|e| {
                let r = token_error(e);
                Refusal::new(RefuseReason::SeedCredential, r.detail)
            })?
            .claims;
        if claims.role != SEED_ROLE {
            return Err(Refusal::new(
                RefuseReason::SeedCredential,
                format!("the token's role is {:?}, not \"seed\"", claims.role),
            ));
        }
        if claims.exp.is_some_and(|exp| exp <= now) {
            return Err(Refusal::new(
                RefuseReason::SeedCredential,
                "the seed token has expired",
            ));
        }
        if claims.sub != seed_id {
            return Err(Refusal::new(
                RefuseReason::SeedCredential,
                format!(
                    "the seed token is for seed_id {:?}, not {seed_id:?}",
                    claims.sub
                ),
            ));
        }
        Ok(())
    }
}

/// Signs viewer claims with `key` (the website backend's job; here for the
/// built-in login, the CLI and tests).
pub fn mint_viewer_token(key: &Key, claims: &ViewerClaims) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &key.encoding())
        .expect("HS256 signing of serializable claims cannot fail")
}

/// Signs a seed credential for `seed_id` with `key`.
pub fn mint_seed_token(key: &Key, seed_id: &str, exp: Option<u64>) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &SeedClaims::new(seed_id, exp),
        &key.encoding(),
    )
    .expect("HS256 signing of serializable claims cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn key(s: &str) -> Key {
        Key::new(s.repeat(32).into_bytes())
    }

    fn viewer(channels: &[&str], exp: u64) -> ViewerClaims {
        ViewerClaims {
            sub: "alice".into(),
            exp,
            channels: channels.iter().map(|c| c.to_string()).collect(),
            group: None,
        }
    }

    fn auth() -> AuthConfig {
        AuthConfig {
            viewer_key: Some(key("v")),
            seed_key: Some(key("s")),
            open_channels: OpenChannels::from_list(&["free".into()]),
        }
    }

    #[test]
    fn viewer_tokens_are_checked_for_signature_expiry_and_shape() {
        let a = auth();
        let good = mint_viewer_token(&key("v"), &viewer(&["news"], NOW + 60));
        let claims = a.admit_viewer(Some(&good), NOW).unwrap().unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(a.admit_viewer(None, NOW), Ok(None));

        let forged = mint_viewer_token(&key("x"), &viewer(&["news"], NOW + 60));
        assert_eq!(
            a.admit_viewer(Some(&forged), NOW).unwrap_err().reason,
            RefuseReason::BadSignature
        );
        let expired = mint_viewer_token(&key("v"), &viewer(&["news"], NOW));
        assert_eq!(
            a.admit_viewer(Some(&expired), NOW).unwrap_err().reason,
            RefuseReason::Expired
        );
        assert_eq!(
            a.admit_viewer(Some("not.a.token"), NOW).unwrap_err().reason,
            RefuseReason::BadToken
        );
        // A seed token has no `exp` (and no channels): not a viewer token.
        let seed = mint_seed_token(&key("v"), "s1", None);
        assert_eq!(
            a.admit_viewer(Some(&seed), NOW).unwrap_err().reason,
            RefuseReason::BadToken
        );
        // alg=none (an unsigned token) is refused.
        let unsigned = format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
            good.split('.').nth(1).unwrap()
        );
        assert!(a.admit_viewer(Some(&unsigned), NOW).is_err());
        // Without a viewer key tokens are not looked at.
        let open = AuthConfig::default();
        assert_eq!(open.admit_viewer(Some("garbage"), NOW), Ok(None));
    }

    #[test]
    fn joins_follow_channels_open_list_and_expiry() {
        let a = auth();
        let c = viewer(&["news"], NOW + 60);
        assert!(a.may_join(Some(&c), "news", NOW).is_ok());
        assert!(a.may_join(None, "free", NOW).is_ok());
        assert_eq!(
            a.may_join(Some(&c), "sport", NOW).unwrap_err().reason,
            RefuseReason::NotEntitled
        );
        assert_eq!(
            a.may_join(None, "news", NOW).unwrap_err().reason,
            RefuseReason::TokenRequired
        );
        // The token expired while connected.
        assert_eq!(
            a.may_join(Some(&c), "news", NOW + 60).unwrap_err().reason,
            RefuseReason::Expired
        );
        assert!(AuthConfig::default()
            .may_join(None, "anything", NOW)
            .is_ok());
    }

    #[test]
    fn seed_credentials_name_their_seed_id() {
        let a = auth();
        let t = mint_seed_token(&key("s"), "s1", None);
        assert!(a.admit_seed(Some(&t), "s1", NOW).is_ok());
        for (token, id) in [(Some(t.as_str()), "s2"), (None, "s1"), (Some("junk"), "s1")] {
            assert_eq!(
                a.admit_seed(token, id, NOW).unwrap_err().reason,
                RefuseReason::SeedCredential
            );
        }
        let forged = mint_seed_token(&key("x"), "s1", None);
        assert!(a.admit_seed(Some(&forged), "s1", NOW).is_err());
        let expired = mint_seed_token(&key("s"), "s1", Some(NOW));
        assert!(a.admit_seed(Some(&expired), "s1", NOW).is_err());
        let later = mint_seed_token(&key("s"), "s1", Some(NOW + 1));
        assert!(a.admit_seed(Some(&later), "s1", NOW).is_ok());
        // A viewer token signed with the seed key is not a seed credential.
        let v = mint_viewer_token(&key("s"), &viewer(&["*"], NOW + 60));
        assert!(a.admit_seed(Some(&v), "alice", NOW).is_err());
        // No seed key: no seeds.
        let none = AuthConfig::default();
        assert!(none.admit_seed(Some(&t), "s1", NOW).is_err());
    }

    #[test]
    fn keys_do_not_print() {
        assert_eq!(format!("{:?}", key("v")), "Key(32 bytes)");
    }
}
