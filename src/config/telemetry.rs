//! `telemetry:`: distributed tracing. With `otlp_endpoint` set, each request's spans are exported
//! over OTLP/HTTP (protobuf) to a collector; without it no span is made at all.

use serde::Deserialize;
use std::time::Duration;

/// `telemetry:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTelemetry {
    /// The collector's OTLP/HTTP URL: its base (`http://collector:4318`, spans go to
    /// `/v1/traces` under it) or the full traces URL. Unset (default): tracing off.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans. Default `iamgate`.
    pub service_name: Option<String>,
    /// Share of new traces recorded, 0.0 to 1.0 (default 1.0). A request that arrives with a
    /// `traceparent` follows its caller's sampling decision instead.
    pub sample_ratio: Option<f64>,
    /// Milliseconds between exports of the spans gathered (default 5000).
    pub export_interval_ms: Option<u64>,
    /// Seconds an export may take before it is abandoned (default 10).
    pub export_timeout_secs: Option<u64>,
}

/// Where and how spans are exported.
#[derive(Debug, Clone)]
pub struct OtlpSettings {
    /// The traces URL spans are POSTed to.
    pub endpoint: http::Uri,
    /// `service.name`.
    pub service_name: String,
    /// Share of new traces recorded.
    pub sample_ratio: f64,
    /// Time between exports.
    pub export_interval: Duration,
    /// Longest export.
    pub export_timeout: Duration,
}

/// Tracing settings: `None` = no spans.
#[derive(Debug, Clone, Default)]
pub struct TelemetrySettings {
    /// The exporter, when tracing is on.
    pub otlp: Option<OtlpSettings>,
}

impl RawTelemetry {
    /// Checks the section; problems go to `errs`.
    pub(super) fn validate(self, errs: &mut Vec<String>) -> TelemetrySettings {
        let service_name = self.service_name.unwrap_or_else(|| "iamgate".to_owned());
        if service_name.trim().is_empty() || service_name.len() > 200 {
            errs.push("telemetry.service_name: must be 1 to 200 characters".to_owned());
        }
        let sample_ratio = self.sample_ratio.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample_ratio) {
            errs.push(format!(
                "telemetry.sample_ratio: {sample_ratio} is outside 0.0..=1.0"
            ));
        }
        let interval_ms = self.export_interval_ms.unwrap_or(5000);
        if !(10..=600_000).contains(&interval_ms) {
            errs.push(format!(
                "telemetry.export_interval_ms: {interval_ms} is outside 10..=600000"
            ));
        }
        let export_timeout = super::secs_in(
            "telemetry.export_timeout_secs",
            self.export_timeout_secs,
            10,
            1..=300,
            errs,
        );
        let Some(url) = self.otlp_endpoint else {
            return TelemetrySettings::default();
        };
        // Credentials in the URL would be printed wherever the endpoint is; a collector that
        // wants them takes a header (OTEL_EXPORTER_OTLP_HEADERS).
        if url.split_once("://").is_some_and(|(_, rest)| {
            rest.split(['/', '?', '#'])
                .next()
                .unwrap_or("")
                .contains('@')
        }) {
            errs.push(
                "telemetry.otlp_endpoint: must not carry credentials (set OTEL_EXPORTER_OTLP_HEADERS instead; value not shown)"
                    .to_owned(),
            );
            return TelemetrySettings::default();
        }
        let url = super::check_url("telemetry.otlp_endpoint", &url, errs);
        // A base URL gets the traces path; a URL naming a path is used as it is.
        let endpoint = match url.parse::<http::Uri>() {
            Ok(u) if u.path().trim_end_matches('/').is_empty() => {
                format!("{}/v1/traces", url.trim_end_matches('/'))
                    .parse::<http::Uri>()
                    .unwrap_or(u)
            }
            Ok(u) => u,
            Err(e) => {
                errs.push(format!("telemetry.otlp_endpoint: {e}"));
                http::Uri::default()
            }
        };
        TelemetrySettings {
            otlp: Some(OtlpSettings {
                endpoint,
                service_name,
                sample_ratio,
                export_interval: Duration::from_millis(interval_ms),
                export_timeout,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> Result<String, Vec<String>> {
        let mut errs = Vec::new();
        let s = RawTelemetry {
            otlp_endpoint: Some(url.to_owned()),
            ..RawTelemetry::default()
        }
        .validate(&mut errs);
        if errs.is_empty() {
            Ok(s.otlp.map(|o| o.endpoint.to_string()).unwrap_or_default())
        } else {
            Err(errs)
        }
    }

    #[test]
    fn a_base_url_gets_the_traces_path_and_a_full_url_is_kept() {
        assert_eq!(
            endpoint("http://collector:4318").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            endpoint("http://collector:4318/").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            endpoint("https://otel.example.com/custom/traces").unwrap(),
            "https://otel.example.com/custom/traces"
        );
        assert!(endpoint("collector:4318").is_err());
        assert!(endpoint("http://collector:4318/v1/traces?x=1").is_err());
        let refused = endpoint("https://user:hunter2@collector:4318").unwrap_err();
        assert!(!refused.concat().contains("hunter2"), "{refused:?}");
    }

    #[test]
    fn tracing_is_off_by_default_and_bad_numbers_are_all_reported() {
        let mut errs = Vec::new();
        assert!(RawTelemetry::default().validate(&mut errs).otlp.is_none());
        assert!(errs.is_empty());
        let mut errs = Vec::new();
        RawTelemetry {
            otlp_endpoint: Some("http://127.0.0.1:4318".to_owned()),
            sample_ratio: Some(1.5),
            export_interval_ms: Some(0),
            export_timeout_secs: Some(0),
            service_name: Some(String::new()),
        }
        .validate(&mut errs);
        assert_eq!(errs.len(), 4, "{errs:?}");
    }
}
