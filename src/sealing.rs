//! Secrets at rest: upstream credentials are stored sealed with
//! ChaCha20-Poly1305 (ring's AEAD) under a 256-bit key the node reads from
//! its configuration (`credentials_key`, hex) or a file
//! (`credentials_key_file`), never from the database. Each sealed value is
//! bound to its credential's name (the AEAD's associated data), so a value
//! copied under another name does not open.

use crate::config::Settings;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// The key credentials are sealed with.
pub struct SealingKey(LessSafeKey);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(***)")
    }
}

/// How a key is written: 64 hexadecimal digits.
const KEY_HEX_LEN: usize = 64;

impl SealingKey {
    /// A key from its hex form.
    pub fn from_hex(text: &str) -> Result<SealingKey, String> {
        let text = text.trim();
        let bytes = hex::decode(text)
            .ok()
            .filter(|b| b.len() * 2 == KEY_HEX_LEN)
            .ok_or_else(|| format!("a credentials key is {KEY_HEX_LEN} hexadecimal digits (32 bytes); make one with `lgsp credentials key`"))?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| "not a ChaCha20-Poly1305 key".to_string())?;
        Ok(SealingKey(LessSafeKey::new(key)))
    }

    /// The node's key: `credentials_key`, or else the file
    /// `credentials_key_file` holds; `None` when neither is set.
    pub fn from_settings(settings: &Settings) -> Result<Option<SealingKey>, String> {
        if !settings.credentials_key.is_empty() {
            return SealingKey::from_hex(settings.credentials_key.expose())
                .map(Some)
                .map_err(|e| format!("credentials_key: {e}"));
        }
        let Some(path) = &settings.credentials_key_file else { return Ok(None) };
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("credentials_key_file {}: {e}", path.display()))?;
        SealingKey::from_hex(&text).map(Some).map_err(|e| format!("credentials_key_file {}: {e}", path.display()))
    }

    /// A new random key, in hex.
    pub fn generate() -> Result<String, String> {
        let mut bytes = [0u8; KEY_HEX_LEN / 2];
        SystemRandom::new().fill(&mut bytes).map_err(|_| "the system's random source failed".to_string())?;
        Ok(hex::encode(bytes))
    }

    /// Seals `plaintext` for the credential `name`: hex of nonce, ciphertext and tag.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| "the system's random source failed".to_string())?;
        let mut sealed = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(name.as_bytes()), &mut sealed)
            .map_err(|_| "sealing failed".to_string())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(hex::encode(out))
    }

    /// Opens what [`SealingKey::seal`] sealed for `name`; an error when the
    /// key, the name or the text differ.
    pub fn open(&self, name: &str, sealed: &str) -> Result<Vec<u8>, String> {
        let bytes = hex::decode(sealed).map_err(|_| "the sealed value is not hex".to_string())?;
        if bytes.len() < NONCE_LEN {
            return Err("the sealed value is too short".into());
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let mut nonce_bytes = [0u8; NONCE_LEN];
        nonce_bytes.copy_from_slice(nonce);
        let mut in_out = rest.to_vec();
        let plain = self
            .0
            .open_in_place(Nonce::assume_unique_for_key(nonce_bytes), Aad::from(name.as_bytes()), &mut in_out)
            .map_err(|_| "it does not open with this node's credentials key".to_string())?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_name() {
        let key = SealingKey::from_hex(&SealingKey::generate().unwrap()).unwrap();
        let sealed = key.seal("population", b"s3cret").unwrap();
        assert!(!sealed.contains(&hex::encode(b"s3cret")), "the secret is not in the sealed text");
        assert_eq!(key.open("population", &sealed).unwrap(), b"s3cret");
        assert!(key.open("insurance", &sealed).is_err(), "bound to its name");
        let other = SealingKey::from_hex(&SealingKey::generate().unwrap()).unwrap();
        assert!(other.open("population", &sealed).is_err(), "another key does not open it");
        assert_ne!(key.seal("population", b"s3cret").unwrap(), sealed, "a fresh nonce each time");
        assert!(SealingKey::from_hex("abcd").is_err() && SealingKey::from_hex(&"zz".repeat(32)).is_err());
    }
}
