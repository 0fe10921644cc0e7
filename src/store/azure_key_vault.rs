//! Azure Key Vault (in progress).
