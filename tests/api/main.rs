//! Integration tests: each test spawns lgsp on port 0 with its own database
//! (SQLite by default; PostgreSQL when LGSP_TEST_POSTGRES_URL is set).

mod adapters;
mod helpers;
mod ops;
mod platform;
mod process;
mod registries;
mod storage;
