//! Identity: accounts and sessions. Sign-up, sign-in with brute-force limits, EdDSA access
//! tokens with rotating keys, rotating refresh tokens, email verification and password
//! reset, TOTP, and the check behind every authenticated request.

pub mod domain;
pub mod erasure;
pub mod import;
pub mod introspection;
pub mod mfa;
pub mod password;
pub mod principals;
pub mod recovery;
pub mod routes;
pub mod service;
pub mod sessions;
pub mod store;
pub mod throttle;
pub mod tokens;
