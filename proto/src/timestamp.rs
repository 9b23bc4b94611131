//! `google.protobuf.Timestamp` with the proto3 JSON mapping as the spec
//! writes it: RFC 3339 in UTC with a `Z` (pbjson-types writes `+00:00`), and
//! 0, 3, 6 or 9 fractional digits. Same wire format as the well-known type.

use chrono::{DateTime, SecondsFormat, Utc};

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Message)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Non-negative fractions of a second, 0..=999,999,999.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl ::prost::Name for Timestamp {
    const NAME: &'static str = "Timestamp";
    const PACKAGE: &'static str = "google.protobuf";
}

impl TryFrom<Timestamp> for DateTime<Utc> {
    type Error = &'static str;
    fn try_from(t: Timestamp) -> Result<Self, Self::Error> {
        let nanos = u32::try_from(t.nanos).map_err(|_| "negative nanos")?;
        DateTime::from_timestamp(t.seconds, nanos).ok_or("timestamp out of range")
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Self {
            seconds: t.timestamp(),
            nanos: t.timestamp_subsec_nanos() as i32,
        }
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t: DateTime<Utc> = (*self).try_into().map_err(serde::ser::Error::custom)?;
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let t = DateTime::parse_from_rfc3339(&s).map_err(serde::de::Error::custom)?;
        Ok(t.with_timezone(&Utc).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_rfc3339_in_utc_with_a_z() {
        let t = Timestamp {
            seconds: 1_764_619_200,
            nanos: 0,
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2025-12-01T20:00:00Z\""
        );
        let ms = Timestamp {
            nanos: 5_000_000,
            ..t
        };
        assert_eq!(
            serde_json::to_string(&ms).unwrap(),
            "\"2025-12-01T20:00:00.005Z\""
        );
        let back: Timestamp = serde_json::from_str("\"2025-12-01T21:00:00.005+01:00\"").unwrap();
        assert_eq!(back, ms);
    }
}
