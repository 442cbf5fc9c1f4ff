//! iamgate: an authorization gateway for Console-style platforms.
//!
//! One process that authenticates service accounts at an OAuth 2.0 token endpoint and mints
//! RS256 access tokens, manages service accounts and roles, decides with Rego and proxies allowed
//! requests upstream. The crate is a library with a thin CLI (`src/main.rs`) on top.
//!
//! The modules are layers, each importing only those below it (lowest first; see
//! `ARCHITECTURE.md` and `tests/architecture.rs`): [`error`] and [`util`]; [`model`], the plain
//! types every layer shares; [`config`]; [`net`] (outbound HTTP) and [`telemetry`]; [`token`]
//! (keys, minting, verification); [`store`] (SQLite, PostgreSQL); [`iam`] (accounts, directory,
//! the audited write path); [`policy`] (Rego decisions); [`authn`] (token endpoint, bearer
//! authentication); [`proxy`] (the request path and the management handlers); [`server`], the
//! composition root.

pub mod authn;
pub mod config;
pub mod error;
pub mod iam;
pub mod model;
pub mod net;
pub mod policy;
pub mod proxy;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod util;
