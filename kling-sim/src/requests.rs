//! Reading create requests.
//!
//! Bodies are read field by field from a JSON object rather than through a
//! derived struct, so that each refusal names its field (as the service's
//! 1200 messages do) and unknown fields are ignored, as the service ignores
//! the many options this simulator does not model.

use serde_json::{Map, Value};

use crate::envelope::{ApiError, Code};
use crate::task::{Family, Output};
use crate::units::Units;

/// Images a task may ask for at most.
const MAX_IMAGES: u64 = 9;

/// A create request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    pub family: Family,
    pub work: Work,
    pub callback_url: Option<String>,
    pub external_task_id: Option<String>,
}

/// What is asked for, which decides the slots and the price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    Images { n: u32 },
    Video { long: bool, pro: bool },
}

/// The account's prices.
#[derive(Debug, Clone, Copy)]
pub struct Prices {
    pub image: Units,
    /// A 5 s "std" video.
    pub video: Units,
}

impl Work {
    /// Parallel slots held: one per image, one per video.
    pub fn slots(self) -> u32 {
        match self {
            Work::Images { n } => n,
            Work::Video { .. } => 1,
        }
    }

    /// The price: per image, or per video doubled for 10 s and again for
    /// "pro". `None` only if it overflows, which no sane price reaches.
    pub fn price(self, prices: Prices) -> Option<Units> {
        match self {
            Work::Images { n } => prices.image.checked_mul(u64::from(n)),
            Work::Video { long, pro } => {
                let factor = if long { 2 } else { 1 } * if pro { 2 } else { 1 };
                prices.video.checked_mul(factor)
            }
        }
    }

    pub fn output(self) -> Output {
        match self {
            Work::Images { n } => Output::Images { n },
            Work::Video { long, .. } => Output::Video {
                duration: if long { "10" } else { "5" },
            },
        }
    }
}

/// Parses and validates the body of a create for `family`.
pub fn parse_create(family: Family, body: &[u8]) -> Result<CreateRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::invalid("request body must be a JSON object"));
    };
    optional_str(&fields, "model_name")?;
    let work = match family {
        Family::Images => {
            required_str(&fields, "prompt")?;
            Work::Images { n: image_count(&fields)? }
        }
        Family::Text2Video => {
            required_str(&fields, "prompt")?;
            video(&fields)?
        }
        Family::Image2Video => {
            required_str(&fields, "image")?;
            optional_str(&fields, "prompt")?;
            video(&fields)?
        }
    };
    let callback_url = optional_str(&fields, "callback_url")?
        .map(|url| check_url(url).map(|()| url.to_owned()))
        .transpose()?;
    let external_task_id = match optional_str(&fields, "external_task_id")? {
        Some("") => return Err(ApiError::invalid("external_task_id must not be empty")),
        other => other.map(str::to_owned),
    };
    Ok(CreateRequest {
        family,
        work,
        callback_url,
        external_task_id,
    })
}

/// A string field that may be absent or null.
fn optional_str<'a>(fields: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, ApiError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid(format!("{name} must be a string"))),
    }
}

/// A string field that must be present and not blank.
fn required_str<'a>(fields: &'a Map<String, Value>, name: &str) -> Result<&'a str, ApiError> {
    match optional_str(fields, name)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        Some(_) => Err(ApiError::invalid(format!("{name} must not be empty"))),
        None => Err(ApiError::invalid(format!("{name} is required"))),
    }
}

fn image_count(fields: &Map<String, Value>) -> Result<u32, ApiError> {
    let refuse = || ApiError::invalid(format!("n must be an integer from 1 to {MAX_IMAGES}"));
    match fields.get("n") {
        None | Some(Value::Null) => Ok(1),
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|n| (1..=MAX_IMAGES).contains(n))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(refuse),
        Some(_) => Err(refuse()),
    }
}

fn video(fields: &Map<String, Value>) -> Result<Work, ApiError> {
    let long = match optional_str(fields, "duration")? {
        None | Some("5") => false,
        Some("10") => true,
        Some(_) => return Err(ApiError::invalid("duration must be \"5\" or \"10\"")),
    };
    let pro = match optional_str(fields, "mode")? {
        None | Some("std") => false,
        Some("pro") => true,
        Some(_) => return Err(ApiError::invalid("mode must be \"std\" or \"pro\"")),
    };
    Ok(Work::Video { long, pro })
}

fn check_url(url: &str) -> Result<(), ApiError> {
    let refuse = || {
        ApiError::new(
            Code::InvalidParameters,
            "callback_url must be an absolute http or https URL",
        )
    };
    let parsed = reqwest::Url::parse(url).map_err(|_| refuse())?;
    if matches!(parsed.scheme(), "http" | "https") && parsed.host_str().is_some() {
        Ok(())
    } else {
        Err(refuse())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(family: Family, json: &str) -> Result<CreateRequest, String> {
        parse_create(family, json.as_bytes()).map_err(|e| e.message)
    }

    #[test]
    fn reads_images() {
        let req = parse(
            Family::Images,
            r#"{"prompt":"a cat","n":3,"model_name":"kling-v1","aspect_ratio":"1:1",
                "callback_url":"http://127.0.0.1:9/cb","external_task_id":"r-1"}"#,
        )
        .expect("valid request");
        assert_eq!(req.work, Work::Images { n: 3 });
        assert_eq!(req.callback_url.as_deref(), Some("http://127.0.0.1:9/cb"));
        assert_eq!(req.external_task_id.as_deref(), Some("r-1"));
        let prices = Prices {
            image: Units::from_thousandths(250),
            video: Units::from_thousandths(1500),
        };
        assert_eq!(req.work.price(prices), Some(Units::from_thousandths(750)));
    }

    #[test]
    fn reads_videos_and_prices_them() {
        let prices = Prices {
            image: Units::from_thousandths(250),
            video: Units::from_thousandths(1500),
        };
        let price = |family, json| parse(family, json).ok().and_then(|r| r.work.price(prices));
        assert_eq!(price(Family::Text2Video, r#"{"prompt":"p"}"#), Some(Units::from_thousandths(1500)));
        assert_eq!(
            price(Family::Text2Video, r#"{"prompt":"p","duration":"10","mode":"pro"}"#),
            Some(Units::from_thousandths(6000))
        );
        assert_eq!(
            price(Family::Image2Video, r#"{"image":"https://x/y.png","mode":"pro"}"#),
            Some(Units::from_thousandths(3000))
        );
    }

    #[test]
    fn names_the_bad_field() {
        let cases = [
            (Family::Images, "not json", "JSON"),
            (Family::Images, "[1]", "object"),
            (Family::Images, "{}", "prompt"),
            (Family::Images, r#"{"prompt":" "}"#, "prompt"),
            (Family::Images, r#"{"prompt":"p","n":0}"#, "n must"),
            (Family::Images, r#"{"prompt":"p","n":10}"#, "n must"),
            (Family::Images, r#"{"prompt":"p","n":1.5}"#, "n must"),
            (Family::Images, r#"{"prompt":"p","model_name":3}"#, "model_name"),
            (Family::Images, r#"{"prompt":"p","callback_url":"ftp://x/"}"#, "callback_url"),
            (Family::Images, r#"{"prompt":"p","callback_url":"/relative"}"#, "callback_url"),
            (Family::Images, r#"{"prompt":"p","external_task_id":""}"#, "external_task_id"),
            (Family::Images, r#"{"prompt":"p","external_task_id":7}"#, "external_task_id"),
            (Family::Text2Video, r#"{"prompt":"p","duration":5}"#, "duration"),
            (Family::Text2Video, r#"{"prompt":"p","duration":"7"}"#, "duration"),
            (Family::Text2Video, r#"{"prompt":"p","mode":"max"}"#, "mode"),
            (Family::Image2Video, r#"{"prompt":"p"}"#, "image"),
        ];
        for (family, json, field) in cases {
            let err = parse(family, json).expect_err(json);
            assert!(err.contains(field), "{json}: {err}");
        }
    }
}
