//! The web console's files over real sockets: one page for every console path (deep links),
//! the module and stylesheet with validators, a strict Content-Security-Policy on every answer,
//! nothing fetched from outside the gateway, no token kept in storage. The browser tests of the
//! pages themselves come with the pages.

use crate::common::gateway;
use http::Method;

const PAGES: [&str; 3] = [
    "/console/",
    "/console/companies/acme/service-accounts",
    "/console/root/service-accounts",
];

#[tokio::test]
async fn every_console_path_answers_the_page_with_a_strict_policy() {
    let gw = gateway().start().await;
    let index = gw.get("/console/").await;
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    for path in PAGES {
        let r = gw.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, index.body, "{path} is the same page");
        let csp = r.header("content-security-policy").unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "connect-src 'self'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    }
    let r = gw.get("/console").await;
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("/console/"));
    let r = gw.request(Method::POST, "/console/", &[], "").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert_eq!(gw.get("/console/assets/nope.js").await.status, 404);
}

#[tokio::test]
async fn files_revalidate_by_their_tag() {
    let gw = gateway().start().await;
    for (path, ctype) in [
        ("/console/assets/app.js", "text/javascript; charset=utf-8"),
        ("/console/assets/style.css", "text/css; charset=utf-8"),
    ] {
        let r = gw.get(path).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some(ctype));
        assert_eq!(r.header("cache-control"), Some("no-cache"));
        let tag = r.header("etag").unwrap().to_owned();
        let again = gw
            .request(Method::GET, path, &[("if-none-match", &tag)], "")
            .await;
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty());
    }
}

#[tokio::test]
async fn the_console_fetches_nothing_from_outside_and_keeps_no_token() {
    let gw = gateway().start().await;
    let page = String::from_utf8(gw.get("/console/").await.body.to_vec()).unwrap();
    // No inline script: every script element names a file of the gateway.
    for tag in page.split("<script").skip(1) {
        let tag = &tag[..tag.find('>').unwrap()];
        assert!(
            tag.contains("src=\"/console/assets/"),
            "inline or foreign script: {tag}"
        );
    }
    for path in [
        "/console/",
        "/console/assets/app.js",
        "/console/assets/style.css",
    ] {
        let text = String::from_utf8(gw.get(path).await.body.to_vec()).unwrap();
        for foreign in [
            "http://",
            "https://",
            "url(//",
            "src=\"//",
            "href=\"//",
            "import(\"//",
        ] {
            assert!(
                !text.contains(foreign),
                "{path} names an outside address ({foreign})"
            );
        }
    }
    let js = String::from_utf8(gw.get("/console/assets/app.js").await.body.to_vec()).unwrap();
    for store in [
        "localStorage",
        "sessionStorage",
        "document.cookie",
        "indexedDB",
    ] {
        assert!(
            !js.contains(store),
            "the console must keep its token in memory only ({store})"
        );
    }
}

#[tokio::test]
async fn with_the_console_off_its_paths_are_the_gateways_like_any_other() {
    let gw = gateway().with("console: {enabled: false}").start().await;
    let r = gw.get("/console/").await;
    assert_eq!(r.status, 404);
    assert!(r.header("content-security-policy").is_none());
}
