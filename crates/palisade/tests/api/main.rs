//! The integration suite: the real server over HTTP, on SQLite or PostgreSQL
//! (`PALISADE_TEST_BACKEND`), every test unchanged on both.

mod helpers;

mod access;
mod app_events;
mod audit;
mod backup;
mod csrf;
mod faults;
mod grants;
mod health;
mod import;
mod inbound;
mod injection;
mod isolation;
mod jwks;
mod keys;
mod manifest;
mod mfa;
mod oauth;
mod openapi;
mod platform;
mod posture;
mod privacy;
mod process;
mod ratelimit;
mod receiver;
mod recovery;
mod relations;
mod schema;
mod sessions;
mod signup;
mod tenancy;
mod tls;
mod vault;
mod web;
mod webhooks;
