//! The ICE servers handed to every admitted peer in `welcome`: the
//! operator's STUN servers, and TURN servers with short-lived credentials
//! derived from a secret shared with the TURN server. This is the scheme
//! coturn calls `use-auth-secret` (the "TURN REST API"): username =
//! `<expiry unix seconds>:<peer id>`, credential = base64(HMAC-SHA1(secret,
//! username)). The TURN server checks the HMAC and the expiry itself, so no
//! long-lived TURN password ever reaches a page.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use swarm_proto::signal::IceServer;

/// TURN credentials are valid for this long unless configured otherwise.
pub const DEFAULT_TURN_TTL_S: u64 = 3600;

#[derive(Clone, Debug, Default)]
pub struct IceConfig {
    /// `stun:` / `stuns:` URLs.
    pub stun: Vec<String>,
    /// `turn:` / `turns:` URLs, all sharing `turn_secret`.
    pub turn: Vec<String>,
    /// coturn's `static-auth-secret`; required when `turn` is not empty.
    pub turn_secret: Option<String>,
    /// Lifetime of the credentials handed out, seconds.
    pub turn_ttl_s: u64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IceConfigError {
    #[error("--stun {0:?}: a STUN server URL starts with stun: or stuns: (e.g. stun:stun.example.com:3478)")]
    BadStun(String),
    #[error("--turn {0:?}: a TURN server URL starts with turn: or turns: (e.g. turn:turn.example.com:3478?transport=udp)")]
    BadTurn(String),
    #[error("--turn is set but --turn-secret is not: give the TURN server's static-auth-secret (coturn: use-auth-secret)")]
    NoSecret,
    #[error("--turn-secret is empty")]
    EmptySecret,
    #[error("--turn-ttl-s must be from 60 to 86400 seconds, not {0}")]
    BadTtl(u64),
}

fn url_ok(url: &str, schemes: [&str; 2]) -> bool {
    schemes.iter().any(|s| url.starts_with(s))
        && url.len() > 6
        && url.len() <= 512
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl IceConfig {
    /// Checks the configuration once, at start-up.
    pub fn validate(&self) -> Result<(), IceConfigError> {
        for u in &self.stun {
            if !url_ok(u, ["stun:", "stuns:"]) {
                return Err(IceConfigError::BadStun(u.clone()));
            }
        }
        for u in &self.turn {
            if !url_ok(u, ["turn:", "turns:"]) {
                return Err(IceConfigError::BadTurn(u.clone()));
            }
        }
        match &self.turn_secret {
            None if !self.turn.is_empty() => return Err(IceConfigError::NoSecret),
            Some(s) if s.is_empty() => return Err(IceConfigError::EmptySecret),
            _ => {}
        }
        if !self.turn.is_empty() && !(60..=86_400).contains(&self.turn_ttl_s) {
            return Err(IceConfigError::BadTtl(self.turn_ttl_s));
        }
        Ok(())
    }

    /// What `peer_id` is told at `now_s` (Unix seconds). Empty when nothing
    /// is configured (host candidates only).
    pub fn servers_for(&self, peer_id: &str, now_s: u64) -> Vec<IceServer> {
        let mut out = Vec::new();
        if !self.stun.is_empty() {
            out.push(IceServer {
                urls: self.stun.clone(),
                username: None,
                credential: None,
            });
        }
        if let (false, Some(secret)) = (self.turn.is_empty(), &self.turn_secret) {
            let username = format!("{}:{peer_id}", now_s + self.turn_ttl_s);
            let credential = turn_credential(secret, &username);
            out.push(IceServer {
                urls: self.turn.clone(),
                username: Some(username),
                credential: Some(credential),
            });
        }
        out
    }
}

/// base64(HMAC-SHA1(secret, username)), the password coturn expects for
/// `username` under `use-auth-secret`.
pub fn turn_credential(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_matches_coturn_rest_api_vector() {
        // From `printf %s 1700000000:alice | openssl sha1 -hmac s3cret -binary | base64`.
        assert_eq!(
            turn_credential("s3cret", "1700000000:alice"),
            "TtElzSjT0GdnTQ9xdcRNxx96yQs="
        );
    }

    #[test]
    fn servers_carry_expiring_turn_credentials_and_plain_stun() {
        let c = IceConfig {
            stun: vec!["stun:198.51.100.1:3478".into()],
            turn: vec!["turn:198.51.100.1:3478?transport=udp".into()],
            turn_secret: Some("k".into()),
            turn_ttl_s: 600,
        };
        c.validate().unwrap();
        let s = c.servers_for("p7", 1_000);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].username, None);
        assert_eq!(s[1].username.as_deref(), Some("1600:p7"));
        assert_eq!(
            s[1].credential.as_deref(),
            Some(turn_credential("k", "1600:p7").as_str())
        );
        assert!(IceConfig::default().servers_for("p", 1).is_empty());
    }

    #[test]
    fn bad_configurations_are_named() {
        let bad = |c: IceConfig| c.validate().unwrap_err();
        assert!(matches!(
            bad(IceConfig {
                stun: vec!["http://x".into()],
                ..Default::default()
            }),
            IceConfigError::BadStun(_)
        ));
        assert_eq!(
            bad(IceConfig {
                turn: vec!["turn:x:3478".into()],
                turn_ttl_s: 600,
                ..Default::default()
            }),
            IceConfigError::NoSecret
        );
        assert_eq!(
            bad(IceConfig {
                turn: vec!["turn:x:3478".into()],
                turn_secret: Some("k".into()),
                turn_ttl_s: 5,
                ..Default::default()
            }),
            IceConfigError::BadTtl(5)
        );
    }
}
