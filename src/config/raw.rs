//! The JSON document exactly as written: `deny_unknown_fields` everywhere, so a typo is an
//! error that names the field, never an option silently ignored.

use serde::Deserialize;

use super::{Encoding, RegistryFormat, SameSite};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a JSON object with `hosts` and `target`")]
pub(super) struct RawConfig {
    pub(super) hosts: Vec<HostSpec>,
    #[serde(default)]
    pub(super) sources: Vec<RawSource>,
    #[serde(default)]
    pub(super) sticky_cookie: Option<RawSticky>,
    pub(super) target: RawTarget,
    #[serde(default, deserialize_with = "int::opt")]
    pub(super) vnodes_per_weight: Option<u32>,
    #[serde(default)]
    pub(super) health: Option<RawHealth>,
    #[serde(default)]
    pub(super) discovery: Option<RawDiscovery>,
    #[serde(default)]
    pub(super) bounded_load: Option<RawBoundedLoad>,
    #[serde(default)]
    pub(super) placement: Option<RawPlacement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBoundedLoad {
    pub(super) factor: f64,
    #[serde(default)]
    pub(super) spill_unpinned_keys: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlacement {
    pub(super) algorithm: RawAlgorithm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawAlgorithm {
    Ring,
    Rendezvous,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    #[serde(default)]
    pub(super) passive: Option<RawPassive>,
    #[serde(default)]
    pub(super) active: Option<RawActive>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPassive {
    #[serde(deserialize_with = "int::req")]
    pub(super) consecutive_failures: u32,
    #[serde(deserialize_with = "int::req")]
    pub(super) ejection_seconds: u64,
    #[serde(default, deserialize_with = "int::opt")]
    pub(super) max_ejection_seconds: Option<u64>,
    #[serde(default)]
    pub(super) eject_on: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawActive {
    pub(super) cluster: String,
    #[serde(default)]
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) authority: Option<String>,
    #[serde(default, deserialize_with = "int::opt")]
    pub(super) interval_ms: Option<u64>,
    #[serde(default, deserialize_with = "int::opt")]
    pub(super) timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "int::opt")]
    pub(super) unhealthy_threshold: Option<u32>,
    #[serde(default, deserialize_with = "int::opt")]
    pub(super) healthy_threshold: Option<u32>,
    #[serde(default)]
    pub(super) header: Option<String>,
}

/// One host as configured (`hosts[i]`) or as discovered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub address: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "int::opt")]
    pub weight: Option<u32>,
    #[serde(default)]
    pub drain: bool,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum RawDiscovery {
    EnvoyAdmin {
        cluster: String,
        target_cluster: String,
        #[serde(default, deserialize_with = "int::opt")]
        interval_ms: Option<u64>,
        #[serde(default)]
        allowed_cidrs: Option<Vec<String>>,
        #[serde(default, deserialize_with = "int::opt_vec")]
        denied_ports: Option<Vec<u16>>,
    },
    Json {
        cluster: String,
        path: String,
        format: RegistryFormat,
        #[serde(default)]
        authority: Option<String>,
        #[serde(default, deserialize_with = "int::opt")]
        interval_ms: Option<u64>,
        #[serde(default)]
        allowed_cidrs: Option<Vec<String>>,
        #[serde(default, deserialize_with = "int::opt_vec")]
        denied_ports: Option<Vec<u16>>,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum RawSource {
    Cookie {
        name: String,
    },
    Jwt {
        #[serde(default)]
        claim: Option<String>,
        #[serde(default)]
        header: Option<String>,
        #[serde(default)]
        prefix: Option<String>,
        #[serde(default, deserialize_with = "int::opt")]
        leeway_seconds: Option<u64>,
    },
    Header {
        name: String,
    },
    Query {
        name: String,
    },
    SourceIp {},
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSticky {
    pub(super) name: String,
    #[serde(deserialize_with = "int::req")]
    pub(super) ttl_seconds: u64,
    #[serde(default, deserialize_with = "int::opt")]
    pub(super) idle_timeout_seconds: Option<u64>,
    #[serde(default)]
    pub(super) secret: Option<String>,
    #[serde(default)]
    pub(super) secret_env: Option<String>,
    #[serde(default)]
    pub(super) verify_secrets: Option<Vec<RawSecret>>,
    #[serde(default)]
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) domain: Option<String>,
    #[serde(default)]
    pub(super) secure: Option<bool>,
    #[serde(default)]
    pub(super) http_only: Option<bool>,
    #[serde(default)]
    pub(super) same_site: Option<SameSite>,
}

/// A verify-only key (`sticky_cookie.verify_secrets[i]`), inline or from the environment.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecret {
    #[serde(default)]
    pub(super) secret: Option<String>,
    #[serde(default)]
    pub(super) secret_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub(super) header: String,
    #[serde(default)]
    pub(super) encoding: Option<Encoding>,
    #[serde(default, deserialize_with = "int::opt")]
    pub(super) fallbacks: Option<u32>,
}

/// Integer fields, written as JSON integers or as integral doubles (`256.0`, `3.6e3`).
///
/// Istio hands the filter a WasmPlugin's `pluginConfig`, a protobuf `Struct`, serialized to JSON:
/// every number in a `Struct` is a double, and some serializers write `256.0` for 256. An integral,
/// finite double is accepted as the integer it names; a fraction, a negative number or a value out
/// of the field's range is rejected with serde's usual wording (`invalid type: floating point
/// \`1.5\`, expected u32`), so errors still name field and value.
pub(super) mod int {
    use core::fmt;
    use core::marker::PhantomData;

    use serde::de::{Deserialize, Deserializer, Error, Unexpected, Visitor};

    /// The unsigned integer types the config uses.
    pub(in crate::config) trait Unsigned: TryFrom<u64> + Sized {
        const NAME: &'static str;
    }

    impl Unsigned for u16 {
        const NAME: &'static str = "u16";
    }

    impl Unsigned for u32 {
        const NAME: &'static str = "u32";
    }

    impl Unsigned for u64 {
        const NAME: &'static str = "u64";
    }

    /// 2^64 as a double: the first double above `u64::MAX`.
    const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

    struct Integral<T>(PhantomData<T>);

    impl<T: Unsigned> Visitor<'_> for Integral<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(T::NAME)
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<T, E> {
            match u64::try_from(v) {
                Ok(u) => self.visit_u64(u),
                Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
            }
        }

        fn visit_f64<E: Error>(self, v: f64) -> Result<T, E> {
            if !v.is_finite() || v.fract() != 0.0 {
                return Err(E::invalid_type(Unexpected::Float(v), &self));
            }
            if !(0.0..TWO_POW_64).contains(&v) {
                return Err(E::invalid_value(Unexpected::Float(v), &self));
            }
            // Integral and in 0..2^64, so the conversion is exact.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let u = v as u64;
            T::try_from(u).map_err(|_| E::invalid_value(Unexpected::Float(v), &self))
        }
    }

    /// One integer, for `Option<T>` through `Option`'s own `null` handling.
    struct Int<T>(T);

    impl<'de, T: Unsigned> Deserialize<'de> for Int<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Integral(PhantomData)).map(Int)
        }
    }

    pub(in crate::config) fn req<'de, D: Deserializer<'de>, T: Unsigned>(d: D) -> Result<T, D::Error> {
        Int::deserialize(d).map(|Int(v)| v)
    }

    pub(in crate::config) fn opt<'de, D: Deserializer<'de>, T: Unsigned>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        Option::<Int<T>>::deserialize(d).map(|v| v.map(|Int(v)| v))
    }

    /// An optional list of integers (e.g. `denied_ports`), each one as [`req`] takes it.
    pub(in crate::config) fn opt_vec<'de, D: Deserializer<'de>, T: Unsigned>(
        d: D,
    ) -> Result<Option<Vec<T>>, D::Error> {
        Option::<Vec<Int<T>>>::deserialize(d).map(|v| v.map(|v| v.into_iter().map(|Int(x)| x).collect()))
    }
}
