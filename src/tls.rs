//! The one TLS crypto provider of the process: aws-lc-rs (the same library that signs
//! pimgate's tokens). rustls picks a provider from its crate features only when exactly one
//! is compiled in; installing it explicitly keeps every TLS client (PostgreSQL, Redis, the
//! IdPs) working whatever else the build pulls in.

/// Installs aws-lc-rs as the process's rustls provider, once; later calls do nothing.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another thread installing the same provider is fine.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}
