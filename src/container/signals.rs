//! Signal names: an image's `StopSignal` and CRI's `Signal` enum.

/// Linux's first and last real-time signals as glibc numbers them.
const SIGRTMIN: i32 = 34;
const SIGRTMAX: i32 = 64;

/// Signals by name, without the `SIG` prefix.
const NAMES: [(&str, i32); 34] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("POLL", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// Parses `SIGTERM`, `TERM`, `15`, `SIGRTMIN+3`, `RTMAX-1` (any case).
pub fn parse(name: &str) -> Option<i32> {
    let n = name.trim();
    if let Ok(v) = n.parse::<i32>() {
        return (1..=SIGRTMAX).contains(&v).then_some(v);
    }
    let upper = n.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rest) = bare.strip_prefix("RTMIN") {
        let off = offset(rest, '+')?;
        return (SIGRTMIN + off <= SIGRTMAX).then_some(SIGRTMIN + off);
    }
    if let Some(rest) = bare.strip_prefix("RTMAX") {
        let off = offset(rest, '-')?;
        return (SIGRTMAX - off >= SIGRTMIN).then_some(SIGRTMAX - off);
    }
    NAMES.iter().find(|(k, _)| *k == bare).map(|(_, v)| *v)
}

fn offset(rest: &str, sign: char) -> Option<i32> {
    if rest.is_empty() {
        return Some(0);
    }
    rest.strip_prefix(sign)?.parse().ok().filter(|v| *v >= 0)
}

/// The number of a CRI `Signal` enum value; `None` for RUNTIME_DEFAULT (0)
/// or an unknown value.
pub fn from_cri(value: i32) -> Option<i32> {
    // The enum lists the names in this order, from 1.
    const ORDER: [&str; 34] = [
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
    ];
    match value {
        1..=34 => parse(ORDER[(value - 1) as usize]),
        35 => Some(SIGRTMIN),
        36..=50 => Some(SIGRTMIN + value - 35),
        51..=64 => Some(SIGRTMAX - (65 - value)),
        65 => Some(SIGRTMAX),
        _ => None,
    }
}

/// The CRI `Signal` enum value of a signal number (for ContainerStatus).
pub fn to_cri(sig: i32) -> i32 {
    (1..=65).find(|v| from_cri(*v) == Some(sig)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("SIGTERM"), Some(15));
        assert_eq!(parse("term"), Some(15));
        assert_eq!(parse("9"), Some(9));
        assert_eq!(parse("SIGQUIT"), Some(3));
        assert_eq!(parse("SIGRTMIN+3"), Some(37));
        assert_eq!(parse("RTMAX-1"), Some(63));
        assert_eq!(parse("SIGRTMIN"), Some(34));
        assert_eq!(parse("SIGNOPE"), None);
        assert_eq!(parse("0"), None);
        assert_eq!(parse("65"), None);
    }

    #[test]
    fn cri_enum() {
        assert_eq!(from_cri(0), None);
        assert_eq!(from_cri(23), Some(15)); // SIGTERM
        assert_eq!(from_cri(13), Some(9)); // SIGKILL
        assert_eq!(from_cri(18), Some(3)); // SIGQUIT
        assert_eq!(from_cri(35), Some(34)); // SIGRTMIN
        assert_eq!(from_cri(36), Some(35)); // SIGRTMINPLUS1
        assert_eq!(from_cri(64), Some(63)); // SIGRTMAXMINUS1
        assert_eq!(from_cri(65), Some(64));
        assert_eq!(to_cri(15), 23);
        assert_eq!(to_cri(9), 13);
    }
}
