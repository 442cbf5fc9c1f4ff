//! Abuse at the edges, over real sockets from two loopback source addresses (127.0.0.1 and
//! 127.0.0.2): failures never lock a client out from elsewhere, and behind a trusted ingress each
//! forwarded client has its own bucket while forwarding headers of untrusted peers count for
//! nothing.

use crate::common;

use common::gateway;

const A: &str = "127.0.0.1";
const B: &str = "127.0.0.2";

fn limits(per_client: u32, per_address: u32, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nlog: {{level: warn}}\noauth:\n  rate_limit: {{window_secs: 60, max_failures_per_client: {per_client}, max_failures_per_address: {per_address}}}\n{extra}"
    )
}

#[tokio::test]
async fn failures_from_one_address_never_lock_a_client_out_elsewhere() {
    let gw = gateway().yaml(&limits(3, 1000, "")).start().await;
    let (id, secret) = gw.secret_client().await;
    // Someone who knows the (public) client id fails from B until B is refused for it.
    for _ in 0..3 {
        assert_eq!(gw.token_basic_from(B, &id, "wrong", &[]).await.status, 401);
    }
    gw.token_basic_from(B, &id, "wrong", &[])
        .await
        .oauth_error(429, "temporarily_unavailable");
    // The client itself, from A, is not refused.
    let r = gw.token_basic_from(A, &id, &secret, &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // From B, the pair stays refused for the window.
    gw.token_basic_from(B, &id, &secret, &[])
        .await
        .oauth_error(429, "temporarily_unavailable");
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let gw = gateway()
        .yaml(&limits(
            1000,
            3,
            "server: {trusted_proxies: [\"127.0.0.2/32\"]}\n",
        ))
        .start()
        .await;
    let (id, secret) = gw.secret_client().await;
    let xff = |v: &'static str| [("x-forwarded-for", v)];
    // Through the trusted ingress (B), failures count for the forwarded client.
    for _ in 0..3 {
        let r = gw.token_basic_from(B, &id, "wrong", &xff("10.1.1.1")).await;
        assert_eq!(r.status, 401);
    }
    gw.token_basic_from(B, &id, &secret, &xff("10.1.1.1"))
        .await
        .oauth_error(429, "temporarily_unavailable");
    // Another client behind the same ingress is served.
    let r = gw.token_basic_from(B, &id, &secret, &xff("10.1.1.2")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // A client cannot pose as another by sending its own X-Forwarded-For: the ingress appends
    // the real address, and the rightmost untrusted one counts.
    gw.token_basic_from(B, &id, &secret, &xff("10.1.1.2, 10.1.1.1"))
        .await
        .oauth_error(429, "temporarily_unavailable");
    // Trusted hops on the right are skipped; `Forwarded: for=` is read the same way.
    gw.token_basic_from(B, &id, &secret, &xff("10.1.1.1, 127.0.0.2"))
        .await
        .oauth_error(429, "temporarily_unavailable");
    gw.token_basic_from(
        B,
        &id,
        &secret,
        &[("forwarded", "for=10.1.1.1;proto=https")],
    )
    .await
    .oauth_error(429, "temporarily_unavailable");
    // IPv6 clients count per /64.
    for _ in 0..3 {
        let r = gw
            .token_basic_from(B, &id, "wrong", &xff("2001:db8::1"))
            .await;
        assert_eq!(r.status, 401);
    }
    gw.token_basic_from(B, &id, &secret, &xff("2001:db8::ffff"))
        .await
        .oauth_error(429, "temporarily_unavailable");
    let r = gw
        .token_basic_from(
            B,
            &id,
            &secret,
            &[("forwarded", "for=\"[2001:db8:0:1::1]:443\"")],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // From an untrusted peer (A) forwarding headers count for nothing: its failures are its own,
    // whatever it claims.
    for _ in 0..3 {
        let r = gw.token_basic_from(A, &id, "wrong", &xff("10.9.9.1")).await;
        assert_eq!(r.status, 401);
    }
    gw.token_basic_from(A, &id, &secret, &xff("10.9.9.2"))
        .await
        .oauth_error(429, "temporarily_unavailable");
}
