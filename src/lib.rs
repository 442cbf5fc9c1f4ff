//! iamgate: an authorization gateway for Console-style platforms.
//!
//! One process that authenticates service accounts at an OAuth 2.0 token endpoint and mints
//! RS256 access tokens, manages service accounts and roles, decides with Rego and proxies allowed
//! requests upstream. The crate is a library with a thin CLI (`src/main.rs`) on top; modules follow
//! the request pipeline: `server` accepts connections, `authn` authenticates, `token` signs and
//! publishes keys, `iam` owns the service-account model, `store` persists it, `error` maps every
//! failure to its HTTP answer in one place.

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
