//! The account's resource packs: what they hold, which can pay, and what
//! `/account/costs` reports of them.

use serde::{Deserialize, Serialize};

use crate::units::{serialize_as_number, Units};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A pack's state as `/account/costs` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PackStatus {
    #[serde(rename = "toBeOnline")]
    ToBeOnline,
    #[serde(rename = "online")]
    Online,
    #[serde(rename = "expired")]
    Expired,
    #[serde(rename = "runOut")]
    RunOut,
}

/// One resource pack of the account.
#[derive(Debug, Clone)]
pub struct Pack {
    pub id: String,
    pub name: String,
    /// `resource_pack_type`: `decreasing_total`, `constant_period`, ... The
    /// simulator treats every type as a quantity that is used up (no
    /// periodic renewal).
    pub pack_type: String,
    pub total: Units,
    /// The true balance: what charging and the 1102 check use.
    pub remaining: Units,
    pub purchase_time: u64,
    pub effective_time: u64,
    pub invalid_time: u64,
    /// Every deduction from this pack (time in ms, amount), kept so that the
    /// lagging figure can be rebuilt for any lag, which can change at run
    /// time.
    deductions: Vec<(u64, Units)>,
}

impl Pack {
    /// Whether the pack can pay now: effective and not yet invalid.
    pub fn can_pay(&self, now: u64) -> bool {
        self.effective_time <= now && now < self.invalid_time
    }

    /// The remaining quantity as it was `lag_ms` ago: deductions younger
    /// than the lag are added back.
    pub fn reported_remaining(&self, now: u64, lag_ms: u64) -> Units {
        let horizon = now.saturating_sub(lag_ms);
        self.deductions
            .iter()
            .filter(|(at, _)| *at > horizon)
            .fold(self.remaining, |acc, (_, units)| acc.saturating_add(*units))
    }

    /// The status judged on the clock and the reported (lagged) figure.
    pub fn status(&self, now: u64, lag_ms: u64) -> PackStatus {
        if now < self.effective_time {
            PackStatus::ToBeOnline
        } else if now >= self.invalid_time {
            PackStatus::Expired
        } else if self.reported_remaining(now, lag_ms).is_zero() {
            PackStatus::RunOut
        } else {
            PackStatus::Online
        }
    }

    /// The entry of `/account/costs` for this pack.
    pub fn info(&self, now: u64, lag_ms: u64) -> PackInfo {
        PackInfo {
            resource_pack_id: self.id.clone(),
            resource_pack_name: self.name.clone(),
            resource_pack_type: self.pack_type.clone(),
            total_quantity: self.total,
            remaining_quantity: self.reported_remaining(now, lag_ms),
            purchase_time: self.purchase_time,
            effective_time: self.effective_time,
            invalid_time: self.invalid_time,
            status: self.status(now, lag_ms),
        }
    }

    fn take(&mut self, wanted: Units, now: u64) -> Units {
        let taken = wanted.min(self.remaining);
        if !taken.is_zero() {
            self.remaining = self.remaining.saturating_sub(taken);
            self.deductions.push((now, taken));
        }
        taken
    }
}

/// One entry of `resource_pack_subscribe_infos`.
#[derive(Debug, Clone, Serialize)]
pub struct PackInfo {
    pub resource_pack_id: String,
    pub resource_pack_name: String,
    pub resource_pack_type: String,
    #[serde(serialize_with = "serialize_as_number")]
    pub total_quantity: Units,
    #[serde(serialize_with = "serialize_as_number")]
    pub remaining_quantity: Units,
    pub purchase_time: u64,
    pub effective_time: u64,
    pub invalid_time: u64,
    pub status: PackStatus,
}

/// What the packs can pay now: the true remaining of every pack that is
/// effective and unexpired.
pub fn spendable(packs: &[Pack], now: u64) -> Units {
    packs
        .iter()
        .filter(|p| p.can_pay(now))
        .fold(Units::ZERO, |acc, p| acc.saturating_add(p.remaining))
}

/// Deducts `amount` from the packs that can pay, the one expiring first
/// first (ties in the order the packs were added), and returns what was
/// deducted: less than `amount` only if the packs hold less.
pub fn deduct(packs: &mut [Pack], amount: Units, now: u64) -> Units {
    let mut order: Vec<usize> = (0..packs.len()).filter(|&i| packs[i].can_pay(now)).collect();
    order.sort_by_key(|&i| (packs[i].invalid_time, i));
    let mut left = amount;
    for i in order {
        if left.is_zero() {
            break;
        }
        let taken = packs[i].take(left, now);
        left = left.saturating_sub(taken);
    }
    amount.saturating_sub(left)
}

/// A point in time in a pack description: absolute, or relative to the
/// moment the pack is added (the simulator's start, for the `--packs` file).
#[derive(Debug, Clone, Copy)]
enum When {
    At(u64),
    Offset(i64),
}

impl When {
    fn resolve(self, now: u64) -> u64 {
        match self {
            When::At(at) => at,
            When::Offset(offset) => now.saturating_add_signed(offset),
        }
    }
}

/// Why a pack description is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error("pack {0:?}: give {1} or {1}_offset_ms, not both")]
    BothTimes(String, &'static str),
    #[error("pack {0:?}: remaining is above total")]
    RemainingAboveTotal(String),
    #[error("pack {0:?}: invalid time is not after effective time")]
    EmptyLifetime(String),
    #[error("a pack needs a non-empty name")]
    NoName,
}

/// A pack as the `--packs` file and `POST /sim/packs` describe it.
///
/// Times are epoch ms (`purchase_time`, `effective_time`, `invalid_time`) or
/// ms offsets from the moment the pack is added (`purchase_offset_ms`, ...;
/// negative for the past). Defaults: purchased now, effective at purchase,
/// invalid a year after it takes effect; remaining = total; type
/// `decreasing_total`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackSpec {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(rename = "type", default = "default_type")]
    pub pack_type: String,
    pub total: Units,
    #[serde(default)]
    pub remaining: Option<Units>,
    #[serde(default)]
    pub purchase_time: Option<u64>,
    #[serde(default)]
    pub purchase_offset_ms: Option<i64>,
    #[serde(default)]
    pub effective_time: Option<u64>,
    #[serde(default)]
    pub effective_offset_ms: Option<i64>,
    #[serde(default)]
    pub invalid_time: Option<u64>,
    #[serde(default)]
    pub invalid_offset_ms: Option<i64>,
}

fn default_type() -> String {
    "decreasing_total".to_owned()
}

fn pick(
    name: &str,
    field: &'static str,
    at: Option<u64>,
    offset: Option<i64>,
) -> Result<Option<When>, PackError> {
    match (at, offset) {
        (Some(_), Some(_)) => Err(PackError::BothTimes(name.to_owned(), field)),
        (Some(at), None) => Ok(Some(When::At(at))),
        (None, Some(offset)) => Ok(Some(When::Offset(offset))),
        (None, None) => Ok(None),
    }
}

impl PackSpec {
    /// A pack of `total` units with times as offsets from now.
    fn sample(name: &str, total: u64, remaining: u64, purchase: i64, effective: i64, invalid: i64) -> PackSpec {
        PackSpec {
            id: None,
            name: name.to_owned(),
            pack_type: default_type(),
            total: Units::from_thousandths(total),
            remaining: Some(Units::from_thousandths(remaining)),
            purchase_time: None,
            purchase_offset_ms: Some(purchase),
            effective_time: None,
            effective_offset_ms: Some(effective),
            invalid_time: None,
            invalid_offset_ms: Some(invalid),
        }
    }

    /// Makes the pack, resolving relative times against `now`; `fallback_id`
    /// is used when the description has no id.
    pub fn build(self, fallback_id: String, now: u64) -> Result<Pack, PackError> {
        let name = self.name;
        if name.trim().is_empty() {
            return Err(PackError::NoName);
        }
        let purchase = pick(&name, "purchase_time", self.purchase_time, self.purchase_offset_ms)?
            .map_or(now, |w| w.resolve(now));
        let effective = pick(&name, "effective_time", self.effective_time, self.effective_offset_ms)?
            .map_or(purchase, |w| w.resolve(now));
        let invalid = pick(&name, "invalid_time", self.invalid_time, self.invalid_offset_ms)?
            .map_or_else(|| effective.saturating_add_signed(365 * DAY_MS), |w| w.resolve(now));
        if invalid <= effective {
            return Err(PackError::EmptyLifetime(name));
        }
        let remaining = self.remaining.unwrap_or(self.total);
        if remaining > self.total {
            return Err(PackError::RemainingAboveTotal(name));
        }
        Ok(Pack {
            id: self.id.unwrap_or(fallback_id),
            name,
            pack_type: self.pack_type,
            total: self.total,
            remaining,
            purchase_time: purchase,
            effective_time: effective,
            invalid_time: invalid,
            deductions: Vec::new(),
        })
    }
}

/// The sample account used without `--packs`: two online packs, one that
/// will come online in 10 days, and one expired 5 days ago with units left.
pub fn default_specs() -> Vec<PackSpec> {
    vec![
        PackSpec::sample("Trial pack", 66_500, 66_500, -DAY_MS, -DAY_MS, 30 * DAY_MS),
        PackSpec::sample("Video pack", 300_000, 300_000, -2 * DAY_MS, -2 * DAY_MS, 90 * DAY_MS),
        PackSpec::sample("Next month", 100_000, 100_000, -DAY_MS, 10 * DAY_MS, 40 * DAY_MS),
        PackSpec::sample("Old pack", 50_000, 12_500, -40 * DAY_MS, -40 * DAY_MS, -5 * DAY_MS),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn packs() -> Vec<Pack> {
        default_specs()
            .into_iter()
            .enumerate()
            .map(|(i, s)| s.build(format!("p{i}"), NOW).expect("sample pack builds"))
            .collect()
    }

    #[test]
    fn samples_have_the_documented_statuses() {
        let statuses: Vec<_> = packs().iter().map(|p| p.status(NOW, 0)).collect();
        assert_eq!(
            statuses,
            [PackStatus::Online, PackStatus::Online, PackStatus::ToBeOnline, PackStatus::Expired]
        );
        assert_eq!(spendable(&packs(), NOW), Units::from_thousandths(366_500));
    }

    #[test]
    fn deducts_earliest_expiry_first_and_spills_over() {
        let mut packs = packs();
        let taken = deduct(&mut packs, Units::from_thousandths(70_000), NOW);
        assert_eq!(taken, Units::from_thousandths(70_000));
        assert_eq!(packs[0].remaining, Units::ZERO);
        assert_eq!(packs[1].remaining, Units::from_thousandths(296_500));
        // The expired pack's units cannot pay.
        assert_eq!(packs[3].remaining, Units::from_thousandths(12_500));
        assert_eq!(packs[0].status(NOW, 0), PackStatus::RunOut);
    }

    #[test]
    fn short_balance_takes_what_exists() {
        let mut packs = packs();
        let taken = deduct(&mut packs, Units::from_thousandths(1_000_000), NOW);
        assert_eq!(taken, Units::from_thousandths(366_500));
        assert_eq!(spendable(&packs, NOW), Units::ZERO);
    }

    #[test]
    fn the_reported_figure_lags() {
        let mut packs = packs();
        deduct(&mut packs, Units::from_thousandths(66_500), NOW);
        assert_eq!(packs[0].reported_remaining(NOW + 500, 1000), Units::from_thousandths(66_500));
        assert_eq!(packs[0].status(NOW + 500, 1000), PackStatus::Online);
        assert_eq!(packs[0].reported_remaining(NOW + 1000, 1000), Units::ZERO);
        assert_eq!(packs[0].status(NOW + 1000, 1000), PackStatus::RunOut);
    }

    #[test]
    fn refuses_bad_descriptions() {
        let read = |json: &str| {
            serde_json::from_str::<PackSpec>(json)
                .map_err(|e| e.to_string())
                .and_then(|s| s.build("x".into(), NOW).map_err(|e| e.to_string()))
        };
        assert!(read(r#"{"name":"a","total":"1","remaining":"2"}"#).is_err());
        assert!(read(r#"{"name":"a","total":"1","invalid_time":1,"invalid_offset_ms":1}"#).is_err());
        assert!(read(r#"{"name":"a","total":"1","colour":"red"}"#).is_err());
        assert!(read(r#"{"name":"a","total":"1","invalid_offset_ms":-1}"#).is_err());
        let pack = read(r#"{"name":"a","total":2.5,"purchase_time":5}"#).expect("valid pack");
        assert_eq!(pack.purchase_time, 5);
        assert_eq!(pack.remaining, Units::from_thousandths(2500));
    }
}
