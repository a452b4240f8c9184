//! Claims of the tokens the signal server checks: JSON Web Tokens signed
//! with HMAC-SHA256 (HS256). Signing and verifying happen in the servers
//! (with the `jsonwebtoken` crate); this module is the shared shape, so the
//! signal server, the seed (which can mint its own seed token from the
//! operator's key) and tests agree on it.
//!
//! - A **viewer token** is issued by the website's backend (or the signal
//!   server's built-in login) with the operator's viewer key: who the viewer
//!   is (`sub`), which channels it may watch, until when (`exp`, required).
//! - A **seed token** is signed with the operator's seed key: it names the
//!   `seed_id` it may register (`sub`) and says `"role": "seed"`.

use serde::{Deserialize, Serialize};

use crate::signal::{MAX_NAME_LEN, MAX_TOKEN_LEN};

/// The `channels` entry that allows every channel.
pub const ALL_CHANNELS: &str = "*";
/// Most channels one viewer token may list (the token is at most
/// [`MAX_TOKEN_LEN`] bytes anyway).
pub const MAX_TOKEN_CHANNELS: usize = MAX_TOKEN_LEN / 8;

/// Claims of a viewer token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewerClaims {
    /// The viewer's id on the website (kicks and bans name it).
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Channels (content ids) the viewer may join; `"*"` allows all.
    #[serde(default)]
    pub channels: Vec<String>,
    /// The website's user group (plan, tier), shown in the admin console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl ViewerClaims {
    /// Whether the token allows joining `channel`.
    pub fn allows(&self, channel: &str) -> bool {
        self.channels
            .iter()
            .any(|c| c == ALL_CHANNELS || c == channel)
    }

    /// Bounds on what the server keeps of a token it accepted.
    pub fn check(&self) -> Result<(), String> {
        if self.sub.is_empty() || self.sub.len() > MAX_NAME_LEN {
            return Err(format!("`sub` must be 1 to {MAX_NAME_LEN} characters"));
        }
        if self.channels.len() > MAX_TOKEN_CHANNELS {
            return Err(format!("more than {MAX_TOKEN_CHANNELS} channels"));
        }
        if self.group.as_ref().is_some_and(|g| g.len() > MAX_NAME_LEN) {
            return Err(format!("`group` is longer than {MAX_NAME_LEN} characters"));
        }
        Ok(())
    }
}

/// The `role` claim of a seed token.
pub const SEED_ROLE: &str = "seed";

/// Claims of a seed token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedClaims {
    /// The `seed_id` this credential may register.
    pub sub: String,
    /// Always [`SEED_ROLE`].
    pub role: String,
    /// Optional expiry, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
}

impl SeedClaims {
    pub fn new(seed_id: &str, exp: Option<u64>) -> SeedClaims {
        SeedClaims {
            sub: seed_id.to_owned(),
            role: SEED_ROLE.to_owned(),
            exp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test;

    #[wasm_bindgen_test(unsupported = test)]
    fn channels_allow_exactly_what_they_list() {
        let mut c = ViewerClaims {
            sub: "alice".into(),
            exp: 1,
            channels: vec!["news".into()],
            group: None,
        };
        assert!(c.allows("news"));
        assert!(!c.allows("sport"));
        assert!(!c.allows("new"));
        c.channels.push(ALL_CHANNELS.into());
        assert!(c.allows("sport"));
        c.channels.clear();
        assert!(!c.allows("news"));
    }

    #[wasm_bindgen_test(unsupported = test)]
    fn claims_bounds() {
        let ok = ViewerClaims {
            sub: "a".into(),
            exp: 1,
            channels: vec![],
            group: Some("gold".into()),
        };
        assert!(ok.check().is_ok());
        let long = ViewerClaims {
            sub: "a".repeat(MAX_NAME_LEN + 1),
            ..ok.clone()
        };
        assert!(long.check().is_err());
        let empty = ViewerClaims {
            sub: String::new(),
            ..ok.clone()
        };
        assert!(empty.check().is_err());
        let many = ViewerClaims {
            channels: vec!["c".into(); MAX_TOKEN_CHANNELS + 1],
            ..ok
        };
        assert!(many.check().is_err());
    }
}
