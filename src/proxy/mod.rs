//! The proxy stage: route matching on a validated path, then (in the coming request path) header
//! hygiene and the upstream client. [`path`] refuses ambiguous paths instead of normalising them,
//! so the path the policy sees is byte for byte the path forwarded; [`route`] matches it against
//! the route table.

pub mod gateway;
pub mod path;
pub mod pool;
pub mod resolve;
pub mod route;
pub mod table;
pub mod upstream;
