//! Request fields read as the JSON Schema in the OpenAPI document states
//! them, where serde's defaults differ:
//!
//! - a whole number is JSON Schema's `integer` (draft 2020-12): a number with
//!   a zero fractional part, so `30` and `30.0` alike. serde takes only the
//!   first for an integer field; a client that writes `30.0` (as JavaScript
//!   may) sent a valid integer all the same;
//! - an optional field that is not nullable may be left out, but not sent as
//!   `null`: serde would take `null` for "left out".

use serde::de::{Deserializer, Error};
use serde::Deserialize;
use serde_json::Value;

/// A whole number that fits `T`.
pub fn whole<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    let value = Value::deserialize(d)?;
    let whole: i128 = match &value {
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => i128::from(u),
            (_, Some(i), _) => i128::from(i),
            (_, _, Some(f)) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e18 => f as i128,
            _ => return Err(D::Error::custom(format!("expected a whole number, not {n}"))),
        },
        other => return Err(D::Error::custom(format!("expected a whole number, not {other}"))),
    };
    T::try_from(whole).map_err(|_| D::Error::custom(format!("{whole} is out of range")))
}

/// An optional whole number (absent or null: `None`).
pub fn optional_whole<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    let value = Option::<Value>::deserialize(d)?;
    value.map(|v| whole(v).map_err(D::Error::custom)).transpose()
}

/// A field that may be left out (with `#[serde(default)]`), but is never `null`.
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// A whole number that may be left out, but is never `null`.
pub fn present_whole<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    whole(d).map(Some)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[derive(serde::Deserialize, Debug)]
    struct T {
        #[serde(deserialize_with = "super::whole")]
        n: u32,
        #[serde(default, deserialize_with = "super::optional_whole")]
        m: Option<i32>,
        #[serde(default, deserialize_with = "super::present")]
        b: Option<bool>,
    }

    #[test]
    fn a_whole_number_may_be_written_with_a_zero_fraction() {
        let t: T = serde_json::from_value(json!({"n": 911614.0, "m": -3})).unwrap();
        assert_eq!((t.n, t.m), (911_614, Some(-3)));
        let t: T = serde_json::from_value(json!({"n": 5})).unwrap();
        assert_eq!((t.n, t.m), (5, None));
        assert_eq!(serde_json::from_value::<T>(json!({"n": 1, "b": true})).unwrap().b, Some(true));
        for bad in
            [json!({"n": 1.5}), json!({"n": -1}), json!({"n": "5"}), json!({"n": 1e12}), json!({"n": 1, "b": null})]
        {
            assert!(serde_json::from_value::<T>(bad.clone()).is_err(), "{bad}");
        }
    }
}
