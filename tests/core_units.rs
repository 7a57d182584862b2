//! Units are exact: amounts such as 0.1, 0.2 and 0.3 add up without drift,
//! read from JSON numbers and written back as the same decimals.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::prop_cases_or;
use proptest::prelude::*;
use quota_widget::core::wire::Units;
use quota_widget::core::{Fmt, PlainFmt};

/// The decimal text of `milli` thousandths, made with integers only.
fn decimal(milli: u64) -> String {
    let (whole, frac) = (milli / 1000, milli % 1000);
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{frac:03}").trim_end_matches('0').to_owned()
    }
}

#[test]
fn rejects_what_is_not_an_amount() {
    // 1002768129364.6355 came from the schema fuzzer: four decimals on a
    // large amount, which a tolerance relative to the amount let through.
    for x in [-1.0, 0.0005, 1.2345, 1_002_768_129_364.635_5, 2_000_000_000.000_1, f64::NAN, f64::INFINITY, 1e300] {
        assert_eq!(Units::from_number(x), None, "{x}");
    }
    assert!(serde_json::from_str::<Units>("-3").is_err());
    assert!(serde_json::from_str::<Units>("0.0001").is_err());
    assert!(serde_json::from_str::<Units>("\"1\"").is_err());
    assert_eq!(serde_json::from_str::<Units>("0.1").unwrap(), Units::from_milli(100));
    assert_eq!(serde_json::from_str::<Units>("7").unwrap(), Units::whole(7));
}

#[test]
fn a_tenth_and_two_tenths_make_three_tenths() {
    let sum = Units::from_number(0.1).unwrap() + Units::from_number(0.2).unwrap();
    assert_eq!(sum, Units::from_number(0.3).unwrap());
    assert_eq!(serde_json::to_string(&sum).unwrap(), "0.3");
    assert_eq!(PlainFmt.units(sum), "0.3");
}

#[test]
fn decimal_text_is_read_exactly() {
    // The upstream service writes a deduction as decimal text.
    for (text, milli) in [("0.25", 250), ("1.5", 1_500), ("3", 3_000), ("0.100", 100), ("1.5000", 1_500), (" 2.007 ", 2_007)] {
        assert_eq!(text.parse::<Units>(), Ok(Units::from_milli(milli)), "{text}");
    }
    for bad in ["", ".5", "1.", "-1", "1.2345", "1e3", "0x10", "1,5", "NaN", "2199023255553"] {
        assert!(bad.parse::<Units>().is_err(), "{bad:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: prop_cases_or(2048), ..ProptestConfig::default() })]

    /// Decimal text and units are the same thing: what `Display` writes,
    /// `FromStr` reads back, for every amount.
    #[test]
    fn decimal_text_round_trips(milli in 0..=Units::MAX.milli()) {
        let u = Units::from_milli(milli);
        prop_assert_eq!(u.to_string().parse::<Units>(), Ok(u));
    }

    /// Any amount up to the largest one carried exactly survives the trip
    /// through a JSON number (decimal text, read as a double) unchanged.
    #[test]
    fn json_numbers_round_trip(milli in 0..=Units::MAX.milli()) {
        let u = Units::from_milli(milli);
        let text = serde_json::to_string(&u).unwrap();
        prop_assert_eq!(&text, &decimal(milli));
        prop_assert_eq!(serde_json::from_str::<Units>(&text).unwrap(), u);
        // What a browser's JSON.parse gives the widget: the double nearest the text.
        let x: f64 = text.parse().unwrap();
        prop_assert_eq!(Units::from_number(x), Some(u));
    }

    /// Sums of amounts read from decimal text equal the sums of their
    /// thousandths: no drift, however many are added, and the text shown is
    /// the exact decimal.
    #[test]
    fn sums_do_not_drift(amounts in prop::collection::vec(prop::sample::select(vec![100u64, 200, 300, 250, 1_500, 7]), 0..500)) {
        let mut sum = Units::ZERO;
        let mut exact = 0u64;
        for m in &amounts {
            let x: f64 = decimal(*m).parse().unwrap();
            sum += Units::from_number(x).unwrap();
            exact += m;
        }
        prop_assert_eq!(sum, Units::from_milli(exact));
        prop_assert_eq!(sum.to_string(), decimal(exact));
        let shown = PlainFmt.units(sum);
        prop_assert_eq!(shown.replace(',', ""), decimal(exact));
    }
}
