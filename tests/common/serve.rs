//! `iamgate serve` as a separate process, its stderr collected line by line: for what only a
//! process shows (memory, signals, everything it logs).

use super::WAIT;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct Proc {
    pub child: Child,
    pub addr: String,
    /// Every line the process wrote to stderr so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub dir: tempfile::TempDir,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `iamgate serve` in `dir` with `log` (the inside of the `log:` map) and `extra`
/// configuration, and waits for its listening line.
pub fn spawn_in(dir: tempfile::TempDir, upstream: &str, log: &str, extra: &str) -> Proc {
    let cfg = dir.path().join("iamgate.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:0\ndata_dir: {}\nlog: {{{log}}}\nupstream: {{url: {upstream}, response_timeout_ms: 5000}}\nserver: {{shutdown_grace_secs: 10}}\n{extra}",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_iamgate"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = std::sync::Arc::<std::sync::Mutex<Vec<String>>>::default();
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if line.contains("iamgate listening")
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && let Some(a) = v["addr"].as_str()
            {
                let _ = tx.send(a.to_owned());
            }
            lines.lock().unwrap().push(line);
        }
    });
    let addr = rx.recv_timeout(WAIT).expect("gateway did not start");
    Proc {
        child,
        addr,
        log,
        dir,
    }
}

impl Proc {
    /// The lines logged so far, once `enough` holds for them: the process writes its log lines
    /// around its answers, not before them, and the reader thread takes them from the pipe
    /// later still. Fails the test after [`WAIT`], naming `what`.
    pub fn log_until(&self, what: &str, enough: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let lines = self.log.lock().unwrap().clone();
            if enough(&lines) {
                return lines;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for the log: {what}\n{lines:#?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// An access token of the bootstrap account, from the process's token endpoint.
    pub async fn bootstrap_token(&self) -> String {
        let creds: serde_json::Value = serde_json::from_slice(
            &std::fs::read(self.dir.path().join("data/bootstrap-credentials.json")).unwrap(),
        )
        .unwrap();
        self.token(
            creds["clientId"].as_str().unwrap(),
            creds["clientSecret"].as_str().unwrap(),
        )
        .await
    }

    /// An access token of the client `id` with `secret`, from the process's token endpoint.
    pub async fn token(&self, id: &str, secret: &str) -> String {
        let basic = super::base64_std(&format!("{id}:{secret}"));
        let (status, body) = self
            .send(
                http::Method::POST,
                "/api/m2m/oauth/token",
                &[
                    ("authorization", &format!("Basic {basic}")),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                "grant_type=client_credentials",
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }

    /// Sends one request (bounded wait); its status and body.
    pub async fn send(
        &self,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<bytes::Bytes>,
    ) -> (u16, String) {
        use http_body_util::BodyExt;
        let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(http_body_util::Full::new(body.into())).unwrap();
        let resp = tokio::time::timeout(WAIT, client.request(req))
            .await
            .expect("request timed out")
            .unwrap();
        let status = resp.status().as_u16();
        let body = tokio::time::timeout(WAIT, resp.into_body().collect())
            .await
            .expect("body timed out")
            .unwrap()
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}
