//! Scalar forms of Envoy's protobuf JSON mapping that serde has no derive
//! for: repeated fields written as one value, case-insensitive enum names,
//! `Duration` strings, ports, base64; and the field paths errors carry.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A repeated field. Envoy's JSON parser accepts a single value where a list
/// is expected (the Rust SDK's examples write `listeners:` as one map), so
/// this does too, and remembers which form was written so error paths can
/// point at the field as it appears in the file.
pub(super) struct List<T> {
    pub items: Vec<T>,
    /// The field held one value, not a list.
    pub single: bool,
}

impl<T> Default for List<T> {
    fn default() -> Self {
        List {
            items: Vec::new(),
            single: false,
        }
    }
}

impl<T> List<T> {
    /// The path of item `index` of the field at `at`.
    pub fn item_path(&self, at: &At, index: usize) -> At {
        if self.single {
            at.clone()
        } else {
            at.index(index)
        }
    }

    /// Items with their paths.
    pub fn into_iter_at(self, at: &At) -> Vec<(At, T)> {
        let single = self.single;
        self.items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let path = if single { at.clone() } else { at.index(i) };
                (path, item)
            })
            .collect()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
            type Value = List<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
                // Capacity is not taken from the input's size hint: it is
                // attacker-controlled and elements are pushed as they parse.
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(List {
                    items,
                    single: false,
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<List<T>, A::Error> {
                let item = T::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(List {
                    items: vec![item],
                    single: true,
                })
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<List<T>, E> {
                let item = T::deserialize(de::value::StrDeserializer::<E>::new(v))?;
                Ok(List {
                    items: vec![item],
                    single: true,
                })
            }

            fn visit_unit<E: de::Error>(self) -> Result<List<T>, E> {
                // `listeners:` with nothing after it is YAML null: no items.
                Ok(List::default())
            }
        }

        deserializer.deserialize_any(ListVisitor(PhantomData))
    }
}

/// An enum value by name. Envoy parses enum names case-insensitively
/// (`codec_type: auto`, `type: strict_dns` in the Go SDK's examples), so the
/// name is kept upper-cased.
pub(super) struct EnumName(pub String);

impl<'de> Deserialize<'de> for EnumName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(EnumName(name.to_ascii_uppercase()))
    }
}

/// A `port_value`: protobuf JSON accepts a number or a numeric string.
pub(super) struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;

        impl Visitor<'_> for PortVisitor {
            type Value = Port;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number from 0 to 65535")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
                u16::try_from(v)
                    .map(Port)
                    .map_err(|_| E::custom(format_args!("port {v} is out of range 0-65535")))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format_args!("port {v} is out of range 0-65535")))
                    .and_then(|v| self.visit_u64(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Port, E> {
                v.parse::<u64>()
                    .map_err(|_| E::custom(format_args!("invalid port {v:?}")))
                    .and_then(|v| self.visit_u64(v))
            }
        }

        deserializer.deserialize_any(PortVisitor)
    }
}

/// Longest `google.protobuf.Duration`: 10,000 years, as protobuf defines it.
const MAX_DURATION_SECONDS: u64 = 315_576_000_000;

/// A `google.protobuf.Duration` in either JSON form: `"1.5s"` or
/// `{seconds: 1, nanos: 500000000}`. Negative durations are refused: no
/// field Polyhost reads accepts one.
pub(super) struct ProtoDuration(pub Duration);

impl<'de> Deserialize<'de> for ProtoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl<'de> Visitor<'de> for DurationVisitor {
            type Value = ProtoDuration;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"5s\" or \"0.25s\", or {seconds, nanos}")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ProtoDuration, E> {
                parse_duration(v).map(ProtoDuration).map_err(E::custom)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ProtoDuration, A::Error> {
                let mut seconds: Option<i64> = None;
                let mut nanos: Option<i64> = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "seconds" => seconds = Some(map.next_value::<Int>()?.0),
                        "nanos" => nanos = Some(map.next_value::<Int>()?.0),
                        other => {
                            return Err(de::Error::custom(format_args!(
                                "unknown field `{other}` of a duration, expected `seconds` or `nanos`"
                            )));
                        }
                    }
                }
                let (seconds, nanos) = (seconds.unwrap_or(0), nanos.unwrap_or(0));
                if seconds < 0 || nanos < 0 {
                    return Err(de::Error::custom("a negative duration is not allowed here"));
                }
                let (seconds, nanos) = (seconds.unsigned_abs(), nanos.unsigned_abs());
                if nanos >= 1_000_000_000 || seconds > MAX_DURATION_SECONDS {
                    return Err(de::Error::custom("duration out of range"));
                }
                // In range: nanos < 1e9 fits u32.
                Ok(ProtoDuration(Duration::new(seconds, nanos as u32)))
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}

/// An int64 in protobuf JSON: a number or a numeric string.
struct Int(i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntVisitor;

        impl Visitor<'_> for IntVisitor {
            type Value = Int;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                i64::try_from(v)
                    .map(Int)
                    .map_err(|_| E::custom("integer out of range"))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Int, E> {
                v.parse()
                    .map(Int)
                    .map_err(|_| E::custom(format_args!("invalid integer {v:?}")))
            }
        }

        deserializer.deserialize_any(IntVisitor)
    }
}

/// Parses the protobuf JSON form of a duration: decimal seconds with up to
/// nine fractional digits, then `s`.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration {text:?}: expected seconds with an `s` suffix, such as \"5s\" or \"0.25s\""
        )
    };
    let number = text.strip_suffix('s').ok_or_else(bad)?;
    if number.starts_with('-') {
        return Err(format!(
            "invalid duration {text:?}: a negative duration is not allowed here"
        ));
    }
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty()
        || !digits(whole)
        || !digits(fraction)
        || fraction.len() > 9
        || number.ends_with('.')
    {
        return Err(bad());
    }
    let seconds: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    if seconds > MAX_DURATION_SECONDS {
        return Err(format!("invalid duration {text:?}: out of range"));
    }
    let mut nanos: u32 = 0;
    for (i, b) in fraction.bytes().enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    Ok(Duration::new(seconds, nanos))
}

/// Decodes protobuf JSON's `bytes`: standard or URL-safe base64, padding
/// optional, whitespace ignored (YAML block scalars wrap long values).
pub(super) fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let alphabet = if compact.contains(['-', '_']) {
        &base64::alphabet::URL_SAFE
    } else {
        &base64::alphabet::STANDARD
    };
    GeneralPurpose::new(alphabet, config)
        .decode(compact.as_bytes())
        .map_err(|e| format!("invalid base64: {e}"))
}

/// A field path in the form `serde_path_to_error` prints:
/// `static_resources.listeners[0].name`.
#[derive(Clone, Debug, Default)]
pub(super) struct At(String);

impl At {
    /// The document root.
    pub fn root() -> At {
        At(String::new())
    }

    /// The field `name` under this path.
    pub fn field(&self, name: &str) -> At {
        if self.0.is_empty() {
            At(name.to_string())
        } else {
            At(format!("{}.{name}", self.0))
        }
    }

    /// Item `index` of the list at this path.
    pub fn index(&self, index: usize) -> At {
        At(format!("{}[{index}]", self.0))
    }

    /// Appends a path `serde_path_to_error` reported inside the value at
    /// this path.
    pub fn join(&self, inner: &serde_path_to_error::Path) -> At {
        let inner = inner.to_string();
        if inner == "." || inner.is_empty() {
            self.clone()
        } else if self.0.is_empty() {
            At(inner)
        } else if inner.starts_with('[') {
            At(format!("{}{inner}", self.0))
        } else {
            At(format!("{}.{inner}", self.0))
        }
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}
