//! Identifier newtypes of the stored records, so a node name cannot be passed where a
//! service or check ID is wanted.
//!
//! Each is `#[serde(transparent)]`: it encodes as the plain string it wraps, so logs and
//! snapshots read the same as before the newtypes (pinned by the golden fixtures).
//! `Borrow<str>` lets a table keyed by one be searched with a `&str` without allocating.

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Defines a string newtype with the conversions and comparisons the tables need.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash,
        )]
        #[serde(transparent)]
        pub(crate) struct $name(String);

        impl $name {
            /// The identifier as a string slice.
            pub(crate) fn as_str(&self) -> &str {
                &self.0
            }

            /// Whether the identifier is empty (not given).
            pub(crate) fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

string_id! {
    /// A catalog node's name (its key).
    NodeName
}

string_id! {
    /// A service instance's ID, unique on its node.
    ServiceId
}

string_id! {
    /// A health check's ID, unique on its node.
    CheckId
}

string_id! {
    /// A session's UUID.
    SessionId
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The on-disk form is the bare string, both ways.
    #[test]
    fn serializes_as_plain_string() {
        let id = NodeName::from("n1");
        assert_eq!(serde_json::to_string(&id).ok().as_deref(), Some("\"n1\""));
        let back: Result<NodeName, _> = serde_json::from_str("\"n1\"");
        assert_eq!(back.ok(), Some(id));
    }

    /// Tables keyed by an ID are searched with a `&str`.
    #[test]
    fn looks_up_by_str() {
        let table = BTreeMap::from([(SessionId::from("s1"), 1)]);
        assert_eq!(table.get("s1"), Some(&1));
        assert_eq!(SessionId::from("s1").to_string(), "s1");
        assert!(CheckId::default().is_empty());
    }
}
