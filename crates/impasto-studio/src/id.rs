//! Upload and job ids: 128 random bits as 32 lowercase hex digits. A request names files only by
//! such an id, which is checked character by character before it is joined to any path, so no
//! `../`, slash, dot or absolute path from a request can ever reach the file system.

use std::fmt;

/// A 128-bit random id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id([u8; 16]);

impl Id {
    /// A fresh id from the operating system's random source.
    pub fn random() -> Id {
        let mut bytes = [0u8; 16];
        // The OS source failing is not something a server can work around.
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        Id(bytes)
    }

    /// Exactly 32 hex digits (lowercase or uppercase; shown lowercase); anything else is `None`.
    pub fn parse(text: &str) -> Option<Id> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Id(bytes))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        let text = String::deserialize(d)?;
        Id::parse(&text).ok_or_else(|| serde::de::Error::custom("not an id (32 hex digits)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_differ() {
        let a = Id::random();
        let b = Id::random();
        assert_ne!(a, b);
        assert_eq!(Id::parse(&a.to_string()), Some(a));
        assert_eq!(a.to_string().len(), 32);
    }

    #[test]
    fn anything_but_32_hex_digits_is_refused() {
        for bad in [
            "",
            "../../etc/passwd",
            "/etc/passwd",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef0",
            "0123456789abcdef0123456789abcdeg",
            "..3456789abcdef0123456789abcdef0",
            "0123456789abcdef/123456789abcdef",
            "+123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(Id::parse(bad), None, "{bad}");
        }
    }
}
