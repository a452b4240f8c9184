//! Ed25519 for live channels, natively (the seed signs; the simulator, tests
//! and native viewers verify). The browser verifies with WebCrypto instead,
//! so this stays out of the Wasm bundle (feature `ed25519`).

use super::{init_signed_bytes, LiveMeta};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// A channel's signing key.
pub struct LiveSigner {
    key: SigningKey,
}

impl LiveSigner {
    /// From 32 secret bytes (the caller draws them from the OS's random
    /// source, or reads a kept key).
    pub fn from_secret(secret: [u8; 32]) -> LiveSigner {
        LiveSigner {
            key: SigningKey::from_bytes(&secret),
        }
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Fills in `meta.sig` for `channel`.
    pub fn sign_meta(&self, channel: &str, meta: &mut LiveMeta) {
        meta.sig = self.key.sign(&meta.signed_bytes(channel)).to_bytes();
    }

    /// The signature of an init segment's SHA-256 (hex).
    pub fn sign_init(&self, channel: &str, sha256_hex: &str) -> [u8; 64] {
        self.key
            .sign(&init_signed_bytes(channel, sha256_hex))
            .to_bytes()
    }
}

/// Whether `sig` is `public_key`'s signature of `message`. A malformed key
/// or signature is simply not valid.
pub fn verify(public_key: &[u8; 32], message: &[u8], sig: &[u8]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    let Ok(sig) = Signature::from_slice(sig) else {
        return false;
    };
    key.verify_strict(message, &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_meta_verifies_and_a_changed_one_does_not() {
        let s = LiveSigner::from_secret([9; 32]);
        let mut m = crate::live::tests::meta(3);
        s.sign_meta("news", &mut m);
        let pk = s.public_key();
        assert!(verify(&pk, &m.signed_bytes("news"), &m.sig));
        assert!(!verify(&pk, &m.signed_bytes("sport"), &m.sig));
        let forged = LiveMeta { size: 1, ..m };
        assert!(!verify(&pk, &forged.signed_bytes("news"), &forged.sig));
        let other = LiveSigner::from_secret([8; 32]).public_key();
        assert!(!verify(&other, &m.signed_bytes("news"), &m.sig));
        assert!(!verify(&pk, &m.signed_bytes("news"), &m.sig[..63]));
        let isig = s.sign_init("news", "ab");
        assert!(verify(&pk, &init_signed_bytes("news", "ab"), &isig));
    }
}
