//! Palisade: the security controls of a multi-tenant B2B SaaS, in one server.
//!
//! See ARCHITECTURE.md for the codemap and the invariants each module keeps.

pub mod access;
pub mod app;
pub mod audit;
pub mod backup;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod decisions;
#[cfg(test)]
mod generated_docs;
pub mod health;
pub mod http;
pub mod identity;
pub mod ids;
pub mod keys;
pub mod mail;
pub mod platform;
pub mod posture;
pub mod privacy;
pub mod ratelimit;
pub mod relations;
pub mod services;
pub mod store;
pub mod telemetry;
pub mod tenancy;
pub mod vault;
pub mod webhooks;
