//! Integration tests: each test spawns lgsp on port 0 with its own database
//! (SQLite by default; PostgreSQL when LGSP_TEST_POSTGRES_URL is set).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test or a benchmark stops at its first surprise")]

mod adapters;
mod breaker;
mod browser;
mod catalog;
mod cluster;
mod connect;
mod console;
mod credentials;
mod dossiers;
mod faults;
mod helpers;
mod hostile;
mod ops;
mod policy;
mod prefill;
mod process;
mod registries;
mod storage;
mod sync;
mod tls;
mod trail;
