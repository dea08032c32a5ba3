//! Custody codes: 6 digits a person types at handover. Each issue draws a random salt (CSPRNG);
//! the code is derived from it under the server's key (so the sender can be shown it again) and
//! only an HMAC of the code is stored, compared in constant time. Five wrong attempts lock it.

use hmac::{KeyInit, Mac};
use rand::Rng as _;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// Wrong attempts that lock a code.
pub const MAX_ATTEMPTS: i32 = 5;

/// Which code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    /// Given by the sender to the traveler at pickup.
    Pickup,
    /// Given by the recipient to the traveler at delivery.
    Delivery,
}

impl CodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pickup => "pickup",
            Self::Delivery => "delivery",
        }
    }
}

/// The server's key for codes (derived from a server secret with its own purpose label).
#[derive(Clone)]
pub struct CodeKey(Vec<u8>);

impl std::fmt::Debug for CodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeKey(***)")
    }
}

impl CodeKey {
    pub fn new(secret: &[u8]) -> Self {
        Self(Self::mac_with(secret, &[b"airbar-custody-codes-v1"]))
    }

    fn mac_with(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        match <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key) {
            Ok(mut mac) => {
                for part in parts {
                    mac.update(&(part.len() as u64).to_be_bytes());
                    mac.update(part);
                }
                mac.finalize().into_bytes().to_vec()
            }
            // HMAC takes keys of any length; this cannot happen.
            Err(_) => Vec::new(),
        }
    }

    /// A fresh random salt for a new issue of a code.
    pub fn new_salt() -> [u8; 16] {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        salt
    }

    /// The code of the issue with this salt.
    pub fn code(&self, match_id: Uuid, kind: CodeKind, salt: &[u8]) -> String {
        let mac = Self::mac_with(
            &self.0,
            &[b"code", match_id.as_bytes(), kind.as_str().as_bytes(), salt],
        );
        let mut first = [0u8; 8];
        first.copy_from_slice(mac.get(..8).unwrap_or(&[0; 8]));
        // 2^64 mod 10^6 is tiny next to 2^64: the bias is below 10^-13.
        format!("{:06}", u64::from_be_bytes(first) % 1_000_000)
    }

    /// What is stored for a code.
    pub fn hash(&self, match_id: Uuid, kind: CodeKind, salt: &[u8], code: &str) -> Vec<u8> {
        Self::mac_with(
            &self.0,
            &[
                b"hash",
                match_id.as_bytes(),
                kind.as_str().as_bytes(),
                salt,
                code.as_bytes(),
            ],
        )
    }

    /// Whether `given` is the code stored as `stored`, in constant time.
    pub fn verify(
        &self,
        match_id: Uuid,
        kind: CodeKind,
        salt: &[u8],
        stored: &[u8],
        given: &str,
    ) -> bool {
        let candidate = self.hash(match_id, kind, salt, given.trim());
        candidate.ct_eq(stored).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_six_digits_verifies_and_depends_on_the_salt() {
        let key = CodeKey::new(b"a server secret of some length");
        let m = Uuid::now_v7();
        let salt = CodeKey::new_salt();
        let code = key.code(m, CodeKind::Pickup, &salt);
        assert_eq!(code.len(), 6);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
        let stored = key.hash(m, CodeKind::Pickup, &salt, &code);
        assert!(key.verify(m, CodeKind::Pickup, &salt, &stored, &code));
        assert!(!key.verify(m, CodeKind::Delivery, &salt, &stored, &code));
        let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
        assert!(!key.verify(m, CodeKind::Pickup, &salt, &stored, &wrong));
        let other = CodeKey::new(b"another server secret entirely");
        assert!(!other.verify(m, CodeKind::Pickup, &salt, &stored, &code));
        // Different salts give (almost always) different codes.
        let codes: std::collections::HashSet<String> = (0..50)
            .map(|_| key.code(m, CodeKind::Pickup, &CodeKey::new_salt()))
            .collect();
        assert!(codes.len() > 45);
    }
}
