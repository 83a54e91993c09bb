//! [`Seed`]: a batch's seed in the API's JSON. Seeds use all 63 bits, and
//! JSON clients that read numbers as doubles (JavaScript's, for one) lose
//! the low bits above 2^53, so a seed is sent twice: `seed` as a number
//! (as before) and `seed_text` as a decimal string; and a request may
//! give it either way.

use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// A seed; flatten it into a response to get `seed` and `seed_text`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seed(pub i64);

impl Serialize for Seed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("seed", &self.0)?;
        map.serialize_entry("seed_text", &self.0.to_string())?;
        map.end()
    }
}

/// A seed in a request: a number, or a string of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedIn(pub i64);

impl<'de> Deserialize<'de> for SeedIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl Visitor<'_> for Either {
            type Value = SeedIn;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a whole number from 0 to 9223372036854775807, or a string of one")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SeedIn, E> {
                Ok(SeedIn(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SeedIn, E> {
                i64::try_from(v)
                    .map(SeedIn)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<SeedIn, E> {
                v.trim()
                    .parse()
                    .map(SeedIn)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(Either)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_go_out_as_number_and_text_and_come_in_as_either() {
        #[derive(Serialize)]
        struct Out {
            #[serde(flatten)]
            seed: Seed,
        }
        let big = (1i64 << 53) + 1;
        let json = serde_json::to_string(&Out { seed: Seed(big) }).unwrap();
        assert_eq!(json, format!(r#"{{"seed":{big},"seed_text":"{big}"}}"#));
        let n: SeedIn = serde_json::from_str(&big.to_string()).unwrap();
        let s: SeedIn = serde_json::from_str(&format!("\"{big}\"")).unwrap();
        assert_eq!((n, s), (SeedIn(big), SeedIn(big)));
        assert!(serde_json::from_str::<SeedIn>("\"x\"").is_err());
        assert!(serde_json::from_str::<SeedIn>("1.5").is_err());
        assert!(serde_json::from_str::<SeedIn>("18446744073709551615").is_err());
    }
}
