//! lgsp: the provincial data-integration and sharing platform.
//!
//! A library with a thin binary: `startup` assembles the gateway, `http` holds
//! the routes, `db` the storage on SQLite or PostgreSQL, `error` the one
//! registry of problem codes.

pub mod adapter;
pub mod audit;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod domain;
pub mod dossier;
pub mod elements;
pub mod error;
pub mod flow;
pub mod form;
pub mod http;
pub mod prefill;
pub mod ratelimit;
pub mod registries;
pub mod schema;
pub mod sealing;
pub mod startup;
pub mod state;
pub mod sync;
pub mod telemetry;
pub mod tls;
