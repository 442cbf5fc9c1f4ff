//! The integration suite: one module per feature, over real sockets, all in one test binary so
//! the crate and its dependencies are linked once instead of once per feature (each linked test
//! binary is about 60 MB). `decision_log` and `request_log` stay binaries of their own: they
//! install tracing subscribers, and tracing caches each call site's interest process-wide.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;

mod abuse;
mod authlib;
mod authz_model;
mod cli;
mod cluster;
mod config_example;
mod console;
mod database_tls;
mod deploy;
mod external_issuer;
mod import;
mod ingress;
mod keys_and_restart;
mod large_lists;
mod management;
mod policy_matrix;
mod policy_rego;
mod policy_reload;
mod policy_workflow;
mod process;
mod proxy;
mod routes;
mod schema;
mod server;
mod stack;
mod telemetry;
mod tls;
mod token_endpoint;
mod upstream;
mod upstream_pool;
