//! Identity: accounts and sessions. So far: sign-up with argon2id hashing.

pub mod domain;
pub mod password;
pub mod routes;
pub mod service;
pub mod store;
