//! Fernet and MultiFernet exactly as Airflow builds them (`airflow.models.crypto.get_fernet`).
//! Spec §2. (Skeleton: filled in by the fernet work.)

use crate::model::SecretValue;

/// Airflow's `get_fernet()`: a MultiFernet over the comma-separated keys, or NullFernet when the
/// key string is empty.
#[derive(Clone)]
pub struct AirflowFernet {
    _keys: Vec<[u8; 32]>,
}

impl std::fmt::Debug for AirflowFernet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AirflowFernet({} keys)", self._keys.len())
    }
}

/// Why a key string cannot build a Fernet (never includes the key).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FernetKeyError(pub String);

/// Why a token did not decrypt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("the row is encrypted but no fernet key is configured")]
    NoKey,
    #[error("no configured fernet key decrypts it")]
    WrongKey,
    #[error("not a valid fernet token")]
    Corrupt,
}

impl AirflowFernet {
    pub fn null() -> Self {
        Self { _keys: Vec::new() }
    }

    pub fn from_key_string(_keys: &SecretValue) -> Result<Self, FernetKeyError> {
        Err(FernetKeyError("not implemented yet".into()))
    }

    pub fn is_null(&self) -> bool {
        self._keys.is_empty()
    }

    pub fn decrypt(&self, _token: &str) -> Result<SecretValue, DecryptError> {
        Err(DecryptError::NoKey)
    }

    /// `None` for NullFernet: store the plaintext with `is_encrypted = false`.
    pub fn encrypt(&self, _plaintext: &SecretValue) -> Option<String> {
        None
    }
}
