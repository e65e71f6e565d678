//! Claim OPS-5: what the GDPR asks of a processor — a tenant's whole record exported for its
//! Owner and a person's own account for that person (`routes`), with every hash and secret
//! left out.

pub mod routes;
