//! Exact fractional amounts of units.
//!
//! The service bills fractions of a unit (0.25 per image, 1.5 per video), and
//! balances are compared and summed many times over a run. Summing `f64`s
//! drifts (ten times 0.1 is not 1), so amounts live here as integer
//! thousandths and only become floats at the very edge, when written as a JSON
//! number.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Thousandths in one unit.
const SCALE: u64 = 1000;

/// The largest amount accepted: 10^12 units. Far above any real pack, and
/// small enough that `thousandths / 1000` is exact as an `f64` on the wire.
const MAX_THOUSANDTHS: u64 = 1_000_000_000_000_000;

/// An amount of units, exact to a thousandth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Units(u64);

/// Why a decimal text is not an amount of units.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitsError {
    #[error("an amount must be a non-negative decimal such as \"1.5\", got {0:?}")]
    Syntax(String),
    #[error("an amount has at most 3 decimals, got {0:?}")]
    TooPrecise(String),
    #[error("amount {0:?} is too large")]
    TooLarge(String),
}

impl Units {
    /// Nothing.
    pub const ZERO: Units = Units(0);

    /// An amount from integer thousandths.
    pub const fn from_thousandths(thousandths: u64) -> Units {
        Units(thousandths)
    }

    /// The amount in integer thousandths.
    pub const fn thousandths(self) -> u64 {
        self.0
    }

    /// The amount as a float, for JSON numbers only. Exact in the sense that
    /// matters: the shortest decimal that reads back as this float is the
    /// amount itself (`66.5`, `12.25`), because the amount is bounded well
    /// below 2^53 thousandths.
    pub fn to_f64(self) -> f64 {
        // Both sides are exact in f64 (bounded by MAX_THOUSANDTHS), so one
        // correctly rounded division gives the nearest float to the decimal.
        self.0 as f64 / SCALE as f64
    }

    pub fn checked_add(self, other: Units) -> Option<Units> {
        self.0.checked_add(other.0).map(Units)
    }

    pub fn saturating_add(self, other: Units) -> Units {
        Units(self.0.saturating_add(other.0))
    }

    pub fn saturating_sub(self, other: Units) -> Units {
        Units(self.0.saturating_sub(other.0))
    }

    pub fn checked_mul(self, factor: u64) -> Option<Units> {
        self.0.checked_mul(factor).map(Units)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Parses a decimal text: digits, optionally a point and one to three
    /// digits. No sign, no exponent, no spaces: configuration and control
    /// requests are written by people and tests, and a typo should fail loudly.
    pub fn parse(text: &str) -> Result<Units, UnitsError> {
        let syntax = || UnitsError::Syntax(text.to_owned());
        let (whole, frac) = match text.split_once('.') {
            Some((whole, frac)) => (whole, Some(frac)),
            None => (text, None),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let frac_thousandths = match frac {
            None => 0,
            Some(frac) => {
                if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(syntax());
                }
                if frac.len() > 3 {
                    return Err(UnitsError::TooPrecise(text.to_owned()));
                }
                // Right-pad to three digits: "5" means 500 thousandths.
                let padded = format!("{frac:0<3}");
                padded.parse::<u64>().map_err(|_| syntax())?
            }
        };
        let too_large = || UnitsError::TooLarge(text.to_owned());
        let whole: u64 = whole.parse().map_err(|_| too_large())?;
        let thousandths = whole
            .checked_mul(SCALE)
            .and_then(|w| w.checked_add(frac_thousandths))
            .filter(|t| *t <= MAX_THOUSANDTHS)
            .ok_or_else(too_large)?;
        Ok(Units(thousandths))
    }

    /// Reads a JSON number. A float is read through its shortest decimal
    /// form, so `0.1` is exactly one tenth and `0.0001` is refused as too
    /// precise rather than rounded.
    pub fn from_f64(value: f64) -> Result<Units, UnitsError> {
        if !value.is_finite() || value < 0.0 {
            return Err(UnitsError::Syntax(value.to_string()));
        }
        // `Display` for f64 is the shortest round-trip decimal, never with an
        // exponent: 0.1 -> "0.1", 2.0 -> "2".
        Units::parse(&value.to_string())
    }
}

impl fmt::Display for Units {
    /// Writes the amount as a decimal from the integers: `0.25`, `1.5`, `3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / SCALE;
        let frac = self.0 % SCALE;
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{frac:03}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

impl FromStr for Units {
    type Err = UnitsError;

    fn from_str(text: &str) -> Result<Units, UnitsError> {
        Units::parse(text)
    }
}

/// Serializes as a decimal string (ledger, `final_unit_deduction`).
impl Serialize for Units {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Deserializes from a decimal string (`"1.5"`) or a JSON number (`1.5`).
impl<'de> Deserialize<'de> for Units {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Units, D::Error> {
        deserializer.deserialize_any(UnitsVisitor)
    }
}

struct UnitsVisitor;

impl Visitor<'_> for UnitsVisitor {
    type Value = Units;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an amount of units as a decimal string or a non-negative number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Units, E> {
        Units::parse(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Units, E> {
        Units::parse(&v.to_string()).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Units, E> {
        let v = u64::try_from(v).map_err(|_| E::custom(UnitsError::Syntax(v.to_string())))?;
        self.visit_u64(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Units, E> {
        Units::from_f64(v).map_err(E::custom)
    }
}

/// Writes an amount as a JSON number: an integer when whole (`300`), the
/// shortest float otherwise (`66.5`, `12.25`).
pub fn serialize_as_number<S: Serializer>(units: &Units, serializer: S) -> Result<S::Ok, S::Error> {
    if units.0.is_multiple_of(SCALE) {
        serializer.serialize_u64(units.0 / SCALE)
    } else {
        serializer.serialize_f64(units.to_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimals_exactly() {
        assert_eq!(Units::parse("0.25"), Ok(Units(250)));
        assert_eq!(Units::parse("66.5"), Ok(Units(66_500)));
        assert_eq!(Units::parse("3"), Ok(Units(3000)));
        assert_eq!(Units::parse("0.001"), Ok(Units(1)));
        assert_eq!(Units::parse("007.100"), Ok(Units(7100)));
    }

    #[test]
    fn refuses_bad_text() {
        for bad in ["", ".5", "5.", "-1", "+1", "1e3", " 1", "1,5", "a"] {
            assert!(matches!(Units::parse(bad), Err(UnitsError::Syntax(_))), "{bad:?}");
        }
        assert!(matches!(Units::parse("0.0001"), Err(UnitsError::TooPrecise(_))));
        assert!(matches!(
            Units::parse("99999999999999999999999"),
            Err(UnitsError::TooLarge(_))
        ));
        assert!(matches!(Units::parse("1000000000001"), Err(UnitsError::TooLarge(_))));
    }

    #[test]
    fn writes_decimals_from_integers() {
        assert_eq!(Units(250).to_string(), "0.25");
        assert_eq!(Units(1500).to_string(), "1.5");
        assert_eq!(Units(3000).to_string(), "3");
        assert_eq!(Units(0).to_string(), "0");
        assert_eq!(Units(1).to_string(), "0.001");
        assert_eq!(Units(12_250).to_string(), "12.25");
    }

    #[test]
    fn reads_json_strings_and_numbers() {
        let read = |json: &str| serde_json::from_str::<Units>(json);
        assert_eq!(read("\"1.5\"").ok(), Some(Units(1500)));
        assert_eq!(read("1.5").ok(), Some(Units(1500)));
        assert_eq!(read("0.1").ok(), Some(Units(100)));
        assert_eq!(read("2").ok(), Some(Units(2000)));
        assert!(read("-1").is_err());
        assert!(read("0.0001").is_err());
        assert!(read("true").is_err());
    }

    #[test]
    fn numbers_on_the_wire_read_as_the_decimal() {
        #[derive(Serialize)]
        struct Wire {
            #[serde(serialize_with = "serialize_as_number")]
            q: Units,
        }
        let write = |t| serde_json::to_string(&Wire { q: Units(t) }).unwrap_or_default();
        assert_eq!(write(66_500), r#"{"q":66.5}"#);
        assert_eq!(write(12_250), r#"{"q":12.25}"#);
        assert_eq!(write(300_000), r#"{"q":300}"#);
        assert_eq!(write(100), r#"{"q":0.1}"#);
        assert_eq!(write(0), r#"{"q":0}"#);
    }

    #[test]
    fn tenths_sum_exactly() {
        let tenth = Units::parse("0.1").unwrap_or_default();
        let sum = (0..10).fold(Units::ZERO, |acc, _| acc.saturating_add(tenth));
        assert_eq!(sum.to_string(), "1");
    }
}
