//! The request path after authentication: [`path`] validates the path (refusing ambiguous ones
//! instead of normalising them, so the path the policy sees is byte for byte the path
//! forwarded), [`table`] and [`route`] match it against the route table, [`resolve`] finds the
//! resource ids, [`gateway`] asks the policy and then either forwards through [`upstream`] (with
//! its connection [`pool`]) or hands a `local` route to the [`management`] handlers. [`authz`]
//! answers an existing ingress with the same decisions, forwarding nothing, over HTTP and over
//! Envoy's gRPC [`ext_authz`]. Every request runs under one [`deadline`] timer.

pub mod authz;
pub mod console;
pub mod deadline;
pub mod ext_authz;
pub mod gateway;
mod item_filter;
pub mod management;
pub mod path;
pub mod policy_api;
pub mod pool;
pub mod resolve;
pub mod route;
pub mod table;
pub mod upstream;
