//! Reading one setting's raw value (an env string or a YAML value) as a bool, text, list or map, with the wording
//! errors use for what was found.

use serde_yaml_ng::Value;

/// A setting's value before parsing: env vars are always text, YAML values keep their type.
#[derive(Clone, Debug)]
pub(crate) enum Raw {
    Text(String),
    Yaml(Value),
}

/// Go's `strconv.ParseBool` set, as Pomerium read its booleans.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// What a YAML value is, for "found ..." in messages.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => super::error::shown(s),
        Value::Sequence(items) => format!("a list of {} items", items.len()),
        Value::Mapping(m) => format!("a map with {} keys", m.len()),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// A scalar as text (numbers too: `idp_client_id: 12345` is a string to the user).
pub(crate) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(crate) fn yaml_bool(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
        Value::String(s) => parse_bool(s).ok_or_else(|| describe(v)),
        _ => Err(describe(v)),
    }
}

impl Raw {
    pub(crate) fn text(&self) -> Result<String, String> {
        match self {
            Raw::Text(s) => Ok(s.clone()),
            Raw::Yaml(v) => scalar_text(v).ok_or_else(|| describe(v)),
        }
    }

    pub(crate) fn bool(&self) -> Result<bool, String> {
        match self {
            Raw::Text(s) => parse_bool(s).ok_or_else(|| super::error::shown(s)),
            Raw::Yaml(v) => yaml_bool(v),
        }
    }
}

/// A YAML list of scalars as strings. `Err` carries what was found.
pub(crate) fn yaml_list(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Sequence(items) => items
            .iter()
            .map(|i| scalar_text(i).ok_or_else(|| format!("a list holding {}", describe(i))))
            .collect(),
        other => Err(describe(other)),
    }
}

/// A YAML map of scalars to scalars, in file order.
pub(crate) fn yaml_map(v: &Value) -> Result<Vec<(String, String)>, String> {
    match v {
        Value::Mapping(m) => m
            .iter()
            .map(|(k, val)| match (scalar_text(k), scalar_text(val)) {
                (Some(k), Some(val)) => Ok((k, val)),
                (Some(k), None) => Err(format!("{} for key {k:?}", describe(val))),
                _ => Err(format!("a key {}", describe(k))),
            })
            .collect(),
        other => Err(describe(other)),
    }
}

/// A header field name: an RFC 9110 token.
pub(crate) fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value postern can send as is: visible ASCII, spaces and tabs, nothing that could end the line.
pub(crate) fn is_header_value(s: &str) -> bool {
    s.bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        for (s, want) in [
            ("TRUE", Some(true)),
            ("true", Some(true)),
            ("1", Some(true)),
            ("FALSE", Some(false)),
            ("false", Some(false)),
            ("0", Some(false)),
            ("yes", None),
            ("", None),
            ("2", None),
        ] {
            assert_eq!(parse_bool(s), want, "{s}");
        }
        let y = |s: &str| yaml_bool(&serde_yaml_ng::from_str::<Value>(s).unwrap());
        assert_eq!(y("true"), Ok(true));
        assert_eq!(y("TRUE"), Ok(true));
        assert_eq!(y("'TRUE'"), Ok(true));
        assert_eq!(y("1"), Ok(true));
        assert_eq!(y("0"), Ok(false));
        assert_eq!(y("'0'"), Ok(false));
        assert_eq!(y("yes"), Err("\"yes\"".into()));
        assert_eq!(y("[1]"), Err("a list of 1 items".into()));
    }

    #[test]
    fn header_checks() {
        assert!(is_header_name("X-Frame-Options"));
        assert!(!is_header_name("X Frame"));
        assert!(!is_header_name(""));
        assert!(is_header_value("1; mode=block"));
        assert!(!is_header_value("a\r\nb: c"));
    }
}
