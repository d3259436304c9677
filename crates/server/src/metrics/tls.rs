//! `switchyard_tls_certificate_expiry_days`: how many days the HTTPS
//! listener's certificate has left, worked out at each scrape from its end
//! of validity (so the figure falls by itself between reloads). Absent when
//! the service serves plain HTTP.

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use std::sync::{Arc, Mutex, PoisonError};

/// The metric's name, as the alert rule reads it.
pub const EXPIRY_DAYS: &str = "switchyard_tls_certificate_expiry_days";

/// The end of validity of the certificate being served; set on load and
/// on every reload. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct CertificateExpiry(Arc<Mutex<Option<DateTime<Utc>>>>);

impl CertificateExpiry {
    pub fn set(&self, not_after: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(not_after);
    }

    /// Days left at `now`, fractional; negative once expired.
    pub fn days_left(&self, now: DateTime<Utc>) -> Option<f64> {
        let not_after = (*self.0.lock().unwrap_or_else(PoisonError::into_inner))?;
        Some((not_after - now).num_seconds() as f64 / 86_400.0)
    }
}

impl Collector for CertificateExpiry {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(days) = self.days_left(Utc::now()) {
            let metric = ConstGauge::new(days);
            metric.encode(encoder.encode_descriptor(
                EXPIRY_DAYS,
                "Days until the HTTPS listener's certificate expires (negative once expired); absent without TLS_CERT_FILE",
                None,
                metric.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_until_set_then_counted_down_from_the_end_of_validity() {
        let expiry = CertificateExpiry::default();
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(expiry.days_left(now), None);
        expiry.clone().set("2026-01-31T12:00:00Z".parse().unwrap());
        assert_eq!(expiry.days_left(now), Some(30.5));
        let later: DateTime<Utc> = "2026-02-01T00:00:00Z".parse().unwrap();
        assert_eq!(expiry.days_left(later), Some(-0.5));
    }
}
