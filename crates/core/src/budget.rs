//! Budgets: USD limits per key or per project over a period, in integer
//! nano-USD.

use crate::decimal;
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

pub const NANO_PER_USD: i64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BudgetScope {
    Key,
    Project,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    /// The UTC calendar day.
    Daily,
    /// The UTC calendar month.
    Monthly,
    /// Forever.
    Total,
}

impl BudgetScope {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetScope::Key => "key",
            BudgetScope::Project => "project",
        }
    }
}

impl FromStr for BudgetScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "key" => Ok(Self::Key),
            "project" => Ok(Self::Project),
            other => Err(format!("unknown budget scope `{other}` (key, project)")),
        }
    }
}

impl BudgetPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Daily => "daily",
            BudgetPeriod::Monthly => "monthly",
            BudgetPeriod::Total => "total",
        }
    }

    /// The key of the period containing `at`: `2026-11-27`, `2026-11` or `total`.
    /// Every call admitted against a budget needs it, so it is written
    /// digit by digit (chrono's `format` took about 1,500 instructions).
    /// A year outside 0–9999 is left to chrono, which writes its sign.
    pub fn key_at(self, at: DateTime<Utc>) -> String {
        let year = at.year();
        if !(0..=9999).contains(&year) {
            return match self {
                BudgetPeriod::Daily => at.format("%Y-%m-%d").to_string(),
                BudgetPeriod::Monthly => at.format("%Y-%m").to_string(),
                BudgetPeriod::Total => "total".to_owned(),
            };
        }
        let mut key = String::with_capacity(10);
        match self {
            BudgetPeriod::Total => key.push_str("total"),
            BudgetPeriod::Daily | BudgetPeriod::Monthly => {
                decimal::push(&mut key, u64::from(year.unsigned_abs()), 4);
                key.push('-');
                decimal::push(&mut key, u64::from(at.month()), 2);
                if self == BudgetPeriod::Daily {
                    key.push('-');
                    decimal::push(&mut key, u64::from(at.day()), 2);
                }
            }
        }
        key
    }
}

impl FromStr for BudgetPeriod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "daily" => Ok(Self::Daily),
            "monthly" => Ok(Self::Monthly),
            "total" => Ok(Self::Total),
            other => Err(format!(
                "unknown budget period `{other}` (daily, monthly, total)"
            )),
        }
    }
}

/// A configured budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Budget {
    pub id: String,
    pub scope: BudgetScope,
    /// The key id or project name the budget applies to.
    pub subject: String,
    pub period: BudgetPeriod,
    pub limit_nano_usd: i64,
    pub created_at: DateTime<Utc>,
}

/// Nano-USD as a decimal USD string (`1.5` → `"1.500000000"`).
pub fn usd(nano: i64) -> String {
    let mut out = String::with_capacity(21);
    if nano < 0 {
        out.push('-');
    }
    let n = nano.unsigned_abs();
    decimal::push(&mut out, n / 1_000_000_000, 0);
    out.push('.');
    decimal::push(&mut out, n % 1_000_000_000, 9);
    out
}

/// USD (as given in an API request) to nano-USD; `None` when negative, not
/// finite or too large.
pub fn nano_from_usd(usd: f64) -> Option<i64> {
    if !usd.is_finite() || !(0.0..=1e9).contains(&usd) {
        return None;
    }
    Some((usd * NANO_PER_USD as f64).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn periods_have_utc_calendar_keys() {
        let at = Utc.with_ymd_and_hms(2026, 11, 27, 23, 59, 59).unwrap();
        assert_eq!(BudgetPeriod::Daily.key_at(at), "2026-11-27");
        assert_eq!(BudgetPeriod::Monthly.key_at(at), "2026-11");
        assert_eq!(BudgetPeriod::Total.key_at(at), "total");
        assert_eq!("monthly".parse(), Ok(BudgetPeriod::Monthly));
        assert!("weekly".parse::<BudgetPeriod>().is_err());
    }

    #[test]
    fn period_keys_match_chrono_formatting() {
        let mut days = vec![
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 6, 30, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(7, 2, 3, 0, 0, 0).unwrap(),
        ];
        let start = Utc.with_ymd_and_hms(1999, 12, 25, 12, 0, 0).unwrap();
        days.extend((0..3000).map(|d| start + chrono::Duration::days(d)));
        for at in days {
            assert_eq!(
                BudgetPeriod::Daily.key_at(at),
                at.format("%Y-%m-%d").to_string()
            );
            assert_eq!(
                BudgetPeriod::Monthly.key_at(at),
                at.format("%Y-%m").to_string()
            );
        }
    }

    #[test]
    fn usd_amounts_convert_exactly() {
        assert_eq!(usd(1_500_000_000), "1.500000000");
        assert_eq!(usd(178_200), "0.000178200");
        assert_eq!(usd(-5), "-0.000000005");
        for nano in [0, 1, -1, 999_999_999, 1_000_000_000, i64::MAX, i64::MIN] {
            let n = nano.unsigned_abs();
            let sign = if nano < 0 { "-" } else { "" };
            let expected = format!("{sign}{}.{:09}", n / 1_000_000_000, n % 1_000_000_000);
            assert_eq!(usd(nano), expected);
        }
        assert_eq!(nano_from_usd(2.5), Some(2_500_000_000));
        assert_eq!(nano_from_usd(-1.0), None);
        assert_eq!(nano_from_usd(f64::NAN), None);
    }
}
