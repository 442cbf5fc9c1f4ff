//! `server:`: the listener's TLS and the request limits.

use super::secs_in;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `server:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// Serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with this certificate and key.
    pub tls: Option<RawTls>,
    /// Requests handled at once; beyond it new requests get 503 at once. Default 4096.
    pub max_concurrent_requests: Option<usize>,
    /// Longest time from request to response headers, seconds. Default 60.
    pub request_timeout_secs: Option<u64>,
    /// Threads serving the public listener's connections, each with its own single-threaded
    /// runtime (a connection and its upstream exchanges stay on one thread). Default: one per
    /// available core; 0 serves them on the shared runtime instead.
    pub workers: Option<usize>,
    /// Largest declared request body, bytes. Default 1 GiB.
    pub max_body_bytes: Option<u64>,
    /// Largest request body read for a decision (deploy trigger, role edits), bytes. Default 1 MiB.
    pub max_decision_body_bytes: Option<usize>,
    /// Largest upstream answer read by a response rule, bytes. Default 16 MiB.
    pub max_filtered_response_bytes: Option<usize>,
    /// Seconds in-flight requests get to finish on shutdown. Default 30.
    pub shutdown_grace_secs: Option<u64>,
    /// Address ranges (`10.0.0.0/8`, `fd00::/8`, or one address) of the ingresses in front of
    /// the gateway. From a peer in these ranges the client is the rightmost address of
    /// `X-Forwarded-For` (or `Forwarded: for=`) that is not itself trusted; from any other peer
    /// forwarding headers are ignored. Default: none.
    pub trusted_proxies: Vec<String>,
    /// Serve Envoy's ext_authz gRPC service (`envoy.service.auth.v3.Authorization`) on this
    /// address (`host:port`); it answers peers in `trusted_proxies` only. Default: off.
    pub ext_authz_grpc_listen: Option<String>,
    /// Serve `/-/healthz`, `/-/ready` and `/-/metrics` on this address (`host:port`) only, and
    /// not on the public listener. Default: off (they are on the public listener).
    pub admin_listen: Option<String>,
    /// Tell clients why a request naming an unknown project or environment, or another
    /// company's project, was refused (`unknown_resource`, `resource_mismatch`). Off by
    /// default: those reasons tell an outsider which projects exist and who owns them, so the
    /// client gets a plain 403 and the reason goes to the decision log only.
    pub expose_deny_reasons: bool,
}

/// `server.tls:` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// Seconds between checks of the two files; a renewed pair is served to new connections.
    /// Default 10.
    pub reload_secs: Option<u64>,
}

/// The listener's certificate.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// Interval of the reload check.
    pub reload: Duration,
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// TLS certificate and key files.
    pub tls: Option<TlsSettings>,
    /// Concurrency limit.
    pub max_concurrent_requests: usize,
    /// Request timeout.
    pub request_timeout: Duration,
    /// Connection workers: `None` serves connections on the shared runtime.
    pub workers: Option<usize>,
    /// Declared body ceiling.
    pub max_body_bytes: u64,
    /// Decision body cap.
    pub max_decision_body_bytes: usize,
    /// Filtered response cap.
    pub max_filtered_response_bytes: usize,
    /// Shutdown grace.
    pub shutdown_grace: Duration,
    /// The trusted ingresses' address ranges.
    pub trusted_proxies: Vec<Cidr>,
    /// Envoy ext_authz gRPC listener.
    pub ext_authz_grpc_listen: Option<std::net::SocketAddr>,
    /// Operational listener.
    pub admin_listen: Option<std::net::SocketAddr>,
    /// Deny reasons that reveal resources reach clients.
    pub expose_deny_reasons: bool,
}

/// An address range: an address and how many leading bits of it count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n`, or a single address.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an address or address/prefix"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("`{s}`: the prefix must be 0..={max}"))?,
        };
        Ok(Self { addr, bits })
    }

    /// Whether `ip` lies in the range (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let mask = |bits: u8, width: u32| -> u128 {
            if bits == 0 {
                0
            } else {
                (u128::MAX << (width - u32::from(bits))) & (u128::MAX >> (128 - width))
            }
        };
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let m = mask(self.bits, 32);
                u128::from(u32::from(net)) & m == u128::from(u32::from(ip)) & m
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let m = mask(self.bits, 128);
                u128::from(net) & m == u128::from(ip) & m
            }
            _ => false,
        }
    }
}

impl RawServer {
    /// Checks the section; problems go to `errs`.
    pub(super) fn validate(self, errs: &mut Vec<String>) -> ServerSettings {
        let sv = self;
        let max_concurrent_requests = sv.max_concurrent_requests.unwrap_or(4096);
        if !(1..=1_000_000).contains(&max_concurrent_requests) {
            errs.push("server.max_concurrent_requests: must be 1..=1000000".to_owned());
        }
        let workers = match sv.workers {
            None => Some(crate::util::workers::per_core()),
            Some(0) => None,
            Some(n) if n <= 1024 => Some(n),
            Some(_) => {
                errs.push("server.workers: must be 0..=1024".to_owned());
                None
            }
        };
        let request_timeout = secs_in(
            "server.request_timeout_secs",
            sv.request_timeout_secs,
            60,
            1..=3600,
            errs,
        );
        let shutdown_grace = secs_in(
            "server.shutdown_grace_secs",
            sv.shutdown_grace_secs,
            30,
            0..=3600,
            errs,
        );
        let max_body_bytes = sv.max_body_bytes.unwrap_or(1 << 30);
        if max_body_bytes < 1024 {
            errs.push("server.max_body_bytes: must be at least 1024".to_owned());
        }
        let max_decision_body_bytes = sv.max_decision_body_bytes.unwrap_or(1 << 20);
        if !(1024..=64 << 20).contains(&max_decision_body_bytes) {
            errs.push("server.max_decision_body_bytes: must be 1024..=67108864".to_owned());
        }
        let max_filtered_response_bytes = sv.max_filtered_response_bytes.unwrap_or(16 << 20);
        if !(1024..=256 << 20).contains(&max_filtered_response_bytes) {
            errs.push("server.max_filtered_response_bytes: must be 1024..=268435456".to_owned());
        }
        let mut trusted_proxies = Vec::new();
        for (i, t) in sv.trusted_proxies.iter().enumerate() {
            match Cidr::parse(t.trim()) {
                Ok(c) => trusted_proxies.push(c),
                Err(e) => errs.push(format!("server.trusted_proxies[{i}]: {e}")),
            }
        }
        let tls = sv.tls.map(|t| TlsSettings {
            reload: secs_in(
                "server.tls.reload_secs",
                t.reload_secs,
                10,
                1..=86_400,
                errs,
            ),
            cert_file: t.cert_file,
            key_file: t.key_file,
        });
        let mut address = |field: &str, value: Option<&str>| {
            value.and_then(|a| {
                a.parse()
                    .map_err(|_| {
                        errs.push(format!(
                            "server.{field}: `{a}` is not an address like 0.0.0.0:9090"
                        ))
                    })
                    .ok()
            })
        };
        let ext_authz_grpc_listen =
            address("ext_authz_grpc_listen", sv.ext_authz_grpc_listen.as_deref());
        let admin_listen = address("admin_listen", sv.admin_listen.as_deref());
        ServerSettings {
            expose_deny_reasons: sv.expose_deny_reasons,
            admin_listen,
            ext_authz_grpc_listen,
            trusted_proxies,
            tls,
            max_concurrent_requests,
            request_timeout,
            workers,
            max_body_bytes,
            max_decision_body_bytes,
            max_filtered_response_bytes,
            shutdown_grace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cidr;

    #[test]
    fn ranges_contain_what_they_say() {
        let c = |s: &str| Cidr::parse(s).unwrap();
        assert!(c("10.0.0.0/8").contains("10.200.1.2".parse().unwrap()));
        assert!(!c("10.0.0.0/8").contains("11.0.0.1".parse().unwrap()));
        assert!(c("127.0.0.2").contains("127.0.0.2".parse().unwrap()));
        assert!(!c("127.0.0.2").contains("127.0.0.1".parse().unwrap()));
        assert!(c("127.0.0.2").contains("::ffff:127.0.0.2".parse().unwrap()));
        assert!(c("fd00::/8").contains("fd12::1".parse().unwrap()));
        assert!(!c("fd00::/8").contains("10.0.0.1".parse().unwrap()));
        assert!(c("0.0.0.0/0").contains("1.2.3.4".parse().unwrap()));
        assert!(c("::/0").contains("2001:db8::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "fd00::/129", "nope", "10.0.0.0/x", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
