//! Resource IDs and the provider ID.
//!
//! IDs are a fixed prefix followed by 16 lowercase hex digits (`i-0f3c2a9b7d1e4c55`). The provider ID
//! that the ccm writes into `Node.spec.providerID` is `simcloud://<zone>/<instance-id>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Number of hex digits after the prefix of every resource ID.
pub const ID_HEX_DIGITS: usize = 16;

/// Why a string is not a valid resource ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id {value:?}: expected {prefix} followed by 16 lowercase hex digits")]
pub struct IdError {
    kind: &'static str,
    prefix: &'static str,
    value: String,
}

fn check_id(kind: &'static str, prefix: &'static str, value: &str) -> Result<(), IdError> {
    let ok = value.strip_prefix(prefix).is_some_and(|hex| {
        hex.len() == ID_HEX_DIGITS
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(IdError {
            kind,
            prefix,
            value: value.to_owned(),
        })
    }
}

macro_rules! resource_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The prefix every ID of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// Builds an ID from 64 random bits (the caller supplies the randomness).
            pub fn from_bits(bits: u64) -> Self {
                Self(format!("{}{:016x}", $prefix, bits))
            }

            /// The ID as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                check_id($kind, $prefix, s)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                check_id($kind, $prefix, &s)?;
                Ok(Self(s))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

resource_id!(
    /// An instance ID such as `i-0f3c2a9b7d1e4c55`.
    InstanceId, "instance", "i-"
);
resource_id!(
    /// A load-balancer ID such as `lb-0f3c2a9b7d1e4c55`.
    LoadBalancerId, "load balancer", "lb-"
);
resource_id!(
    /// A backend-group ID such as `bg-0f3c2a9b7d1e4c55`.
    BackendGroupId, "backend group", "bg-"
);
resource_id!(
    /// A route ID such as `rt-0f3c2a9b7d1e4c55`.
    RouteId, "route", "rt-"
);

/// The scheme of provider IDs, as Kubernetes' `--cloud-provider` name.
pub const PROVIDER_NAME: &str = "simcloud";
const PROVIDER_PREFIX: &str = "simcloud://";

/// `simcloud://<zone>/<instance-id>`: how a Kubernetes Node names its instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProviderId {
    pub zone: String,
    pub instance_id: InstanceId,
}

/// Why a provider ID could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderIdError {
    /// Another provider's ID (or no scheme at all): not ours to touch.
    #[error("provider id {0:?} does not use the simcloud:// scheme")]
    ForeignScheme(String),
    #[error("provider id {0:?} is not of the form simcloud://<zone>/<instance-id>")]
    Malformed(String),
    #[error("provider id has an invalid instance id")]
    InstanceId(#[source] IdError),
}

impl ProviderId {
    pub fn new(zone: impl Into<String>, instance_id: InstanceId) -> Self {
        Self {
            zone: zone.into(),
            instance_id,
        }
    }

    /// True when `s` uses our scheme, whether or not the rest is well formed.
    pub fn is_ours(s: &str) -> bool {
        s.starts_with(PROVIDER_PREFIX)
    }
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PROVIDER_PREFIX}{}/{}", self.zone, self.instance_id)
    }
}

impl FromStr for ProviderId {
    type Err = ProviderIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .strip_prefix(PROVIDER_PREFIX)
            .ok_or_else(|| ProviderIdError::ForeignScheme(s.to_owned()))?;
        let (zone, id) = rest
            .split_once('/')
            .filter(|(zone, id)| !zone.is_empty() && !id.contains('/'))
            .ok_or_else(|| ProviderIdError::Malformed(s.to_owned()))?;
        let instance_id = id.parse().map_err(ProviderIdError::InstanceId)?;
        Ok(Self {
            zone: zone.to_owned(),
            instance_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_bad_input() {
        let id = InstanceId::from_bits(0x0f3c_2a9b_7d1e_4c55);
        assert_eq!(id.as_str(), "i-0f3c2a9b7d1e4c55");
        assert_eq!(id.as_str().parse::<InstanceId>().unwrap(), id);
        let cases = [
            "i-0F3C2A9B7D1E4C55", // upper case
            "i-0f3c2a9b7d1e4c5",  // too short
            "i-0f3c2a9b7d1e4c555",
            "lb-0f3c2a9b7d1e4c55", // wrong prefix
            "i-0f3c2a9b7d1e4cz5",
            "",
        ];
        for bad in cases {
            assert!(
                bad.parse::<InstanceId>().is_err(),
                "{bad} should be rejected"
            );
        }
        assert!("lb-0000000000000001".parse::<LoadBalancerId>().is_ok());
        assert!("rt-ffffffffffffffff".parse::<RouteId>().is_ok());
    }

    #[test]
    fn ids_deserialize_with_validation() {
        let ok: InstanceId = serde_json::from_str("\"i-00000000000000aa\"").unwrap();
        assert_eq!(ok.to_string(), "i-00000000000000aa");
        assert!(serde_json::from_str::<InstanceId>("\"i-xyz\"").is_err());
    }

    #[test]
    fn provider_id_round_trip() {
        let pid = ProviderId::new("zone-a", "i-0f3c2a9b7d1e4c55".parse().unwrap());
        let s = pid.to_string();
        assert_eq!(s, "simcloud://zone-a/i-0f3c2a9b7d1e4c55");
        assert_eq!(s.parse::<ProviderId>().unwrap(), pid);
        assert!(ProviderId::is_ours(&s));
    }

    #[test]
    fn provider_id_errors() {
        type Check = fn(&ProviderIdError) -> bool;
        let table: &[(&str, Check)] = &[
            ("aws:///us-east-1a/i-0abc", |e| {
                matches!(e, ProviderIdError::ForeignScheme(_))
            }),
            ("kind://docker/kind/node", |e| {
                matches!(e, ProviderIdError::ForeignScheme(_))
            }),
            ("", |e| matches!(e, ProviderIdError::ForeignScheme(_))),
            ("simcloud://", |e| {
                matches!(e, ProviderIdError::Malformed(_))
            }),
            ("simcloud:///i-0f3c2a9b7d1e4c55", |e| {
                matches!(e, ProviderIdError::Malformed(_))
            }),
            ("simcloud://zone-a/x/i-0f3c2a9b7d1e4c55", |e| {
                matches!(e, ProviderIdError::Malformed(_))
            }),
            ("simcloud://zone-a/i-nothex", |e| {
                matches!(e, ProviderIdError::InstanceId(_))
            }),
        ];
        for (input, want) in table {
            let err = input.parse::<ProviderId>().unwrap_err();
            assert!(want(&err), "{input:?} gave {err:?}");
        }
    }
}
