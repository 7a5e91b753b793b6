use std::fmt;

use serde::Deserialize;
use serde::Serialize;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: SecretKey,
}

#[derive(Clone)]
pub struct SecretKey(Box<str>, Option<Box<SigningKeys>>);

/// SigV4 signing keys (`kSigning`) derived for one credential scope, in place
/// of the secret they were derived from (blobstore patch: a gateway verifies
/// signatures without ever holding a user's secret).
#[derive(Clone)]
struct SigningKeys {
    date: Box<str>,
    region: Box<str>,
    service: Box<str>,
    /// One per secret the access key has (two between a rotation and the
    /// old secret's retirement), newest first.
    keys: Vec<[u8; 32]>,
}

impl SecretKey {
    fn new(s: impl Into<Box<str>>) -> Self {
        Self(s.into(), None)
    }

    /// Keys that verify SigV4 signatures made in the scope
    /// `date/region/service/aws4_request` only: each is the `kSigning` of
    /// one of the access key's secrets. [`SecretKey::expose`] of such a key
    /// is empty, so SigV2 signatures never match it.
    #[must_use]
    pub fn signing_keys(date: &str, region: &str, service: &str, keys: Vec<[u8; 32]>) -> Self {
        Self(
            "".into(),
            Some(Box::new(SigningKeys {
                date: date.into(),
                region: region.into(),
                service: service.into(),
                keys,
            })),
        )
    }

    /// The `kSigning` key for a scope, when this holds derived keys: `None`
    /// for a secret, `Some(None)` for a scope the keys were not made for.
    pub(crate) fn signing_key_for(&self, date: &str, region: &str, service: &str) -> Option<Option<[u8; 32]>> {
        let s = self.1.as_deref()?;
        let in_scope = &*s.date == date && &*s.region == region && &*s.service == service;
        Some(s.keys.first().copied().filter(|_| in_scope))
    }

    /// Each key a signature may have been made with, one at a time: the
    /// secret itself, or each derived signing key.
    #[must_use]
    pub fn candidates(&self) -> Vec<SecretKey> {
        match &self.1 {
            Some(s) if s.keys.len() > 1 => s
                .keys
                .iter()
                .map(|k| {
                    Self(
                        "".into(),
                        Some(Box::new(SigningKeys {
                            keys: vec![*k],
                            ..(**s).clone()
                        })),
                    )
                })
                .collect(),
            _ => vec![self.clone()],
        }
    }

    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Zeroize for SecretKey {
    fn zeroize(&mut self) {
        self.0.zeroize();
        if let Some(s) = &mut self.1 {
            s.keys.iter_mut().for_each(Zeroize::zeroize);
        }
    }
}

impl ConstantTimeEq for SecretKey {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        let derived = |k: &Self| k.1.as_ref().map(|s| s.keys.concat()).unwrap_or_default();
        self.0.as_bytes().ct_eq(other.0.as_bytes()) & derived(self).ct_eq(&derived(other))
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl From<String> for SecretKey {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<Box<str>> for SecretKey {
    fn from(value: Box<str>) -> Self {
        Self::new(value)
    }
}

impl From<&str> for SecretKey {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

const PLACEHOLDER: &str = "[SENSITIVE-SECRET-KEY]";

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SecretKey").field(&PLACEHOLDER).finish()
    }
}

impl<'de> Deserialize<'de> for SecretKey {
    fn deserialize<D>(deserializer: D) -> Result<SecretKey, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        <String as Deserialize>::deserialize(deserializer).map(SecretKey::from)
    }
}

impl Serialize for SecretKey {
    fn serialize<S>(&self, serializer: S) -> Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        <str as Serialize>::serialize(PLACEHOLDER, serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_from_str() {
        let key = SecretKey::from("my-secret");
        assert_eq!(key.expose(), "my-secret");
    }

    #[test]
    fn new_from_string() {
        let key = SecretKey::from("my-secret".to_owned());
        assert_eq!(key.expose(), "my-secret");
    }

    #[test]
    fn new_from_box_str() {
        let boxed: Box<str> = "my-secret".into();
        let key = SecretKey::from(boxed);
        assert_eq!(key.expose(), "my-secret");
    }

    #[test]
    fn debug_hides_value() {
        let key = SecretKey::from("super-secret-value");
        let debug = format!("{key:?}");
        assert!(!debug.contains("super-secret-value"));
        assert!(debug.contains(PLACEHOLDER));
    }

    #[test]
    fn constant_time_eq() {
        let a = SecretKey::from("same-key");
        let b = SecretKey::from("same-key");
        assert!(bool::from(a.ct_eq(&b)));

        let c = SecretKey::from("different-key");
        assert!(!bool::from(a.ct_eq(&c)));
    }

    #[test]
    fn serialize_hides_value() {
        let key = SecretKey::from("my-secret");
        let json = serde_json::to_string(&key).unwrap();
        assert!(!json.contains("my-secret"));
        assert!(json.contains(PLACEHOLDER));
    }

    #[test]
    fn deserialize() {
        let json = r#""deserialized-secret""#;
        let key: SecretKey = serde_json::from_str(json).unwrap();
        assert_eq!(key.expose(), "deserialized-secret");
    }

    #[test]
    fn clone() {
        let key = SecretKey::from("clone-me");
        let cloned = key.clone();
        assert_eq!(cloned.expose(), "clone-me");
    }

    #[test]
    fn credentials_debug() {
        let creds = Credentials {
            access_key: "AKID".to_owned(),
            secret_key: SecretKey::from("hunter2"),
        };
        let debug = format!("{creds:?}");
        assert!(debug.contains("AKID"));
        assert!(!debug.contains("hunter2"));
    }
}
