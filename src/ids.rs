//! Object ids and timestamps.

/// A new random id: 64 lowercase hex characters, like other CRI runtimes.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    // getrandom only fails when the kernel has no entropy source at all.
    getrandom::fill(&mut bytes).expect("kernel random source unavailable");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Nanoseconds since the Unix epoch, as CRI timestamps are.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// What an id or id prefix names in an index keyed by full ids.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<T> {
    Found(T),
    /// The prefix starts more than one id.
    Ambiguous,
    Missing,
}

/// Looks `id` up as a full id, else as a prefix of exactly one id (crictl
/// and operators pass short ids).
pub fn lookup<'a, V>(index: &'a std::collections::HashMap<String, V>, id: &str) -> Lookup<&'a V> {
    if let Some(v) = index.get(id) {
        return Lookup::Found(v);
    }
    let mut found = index.iter().filter(|(k, _)| k.starts_with(id));
    match (found.next(), found.next()) {
        (Some((_, v)), None) => Lookup::Found(v),
        (Some(_), Some(_)) => Lookup::Ambiguous,
        _ => Lookup::Missing,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lookup_by_id_or_unique_prefix() {
        use super::Lookup;
        let index: std::collections::HashMap<String, u8> = [
            ("abc1".to_string(), 1),
            ("abc2".to_string(), 2),
            ("abc".to_string(), 3),
        ]
        .into();
        assert_eq!(super::lookup(&index, "abc"), Lookup::Found(&3));
        assert_eq!(super::lookup(&index, "abc2"), Lookup::Found(&2));
        assert_eq!(super::lookup(&index, "ab"), Lookup::Ambiguous);
        assert_eq!(super::lookup(&index, "x"), Lookup::Missing);
    }

    #[test]
    fn ids_are_hex_and_distinct() {
        let a = super::new_id();
        let b = super::new_id();
        assert_eq!(a.len(), 64);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }
}
