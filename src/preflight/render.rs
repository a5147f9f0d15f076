//! The findings as an operator reads them (aligned text), as a program
//! reads them (JSON), as a shell reads them (exit code), and as log lines.

use tracing::{error, warn};

use super::{Finding, Level};

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// One line a finding, `LEVEL check found`, columns aligned; the fix of a
/// WARN or FAIL on the next line, under the found value.
pub fn render_text(findings: &[Finding]) -> String {
    let width = findings.iter().map(|f| f.check.len()).max().unwrap_or(0);
    let mut out = String::new();
    for f in findings {
        out.push_str(&format!(
            "{:<4} {:<width$}  {}\n",
            f.level.label(),
            f.check,
            f.found
        ));
        if let (Some(fix), false) = (&f.fix, f.level == Level::Ok) {
            out.push_str(&format!("{:<4} {:<width$}  fix: {fix}\n", "", ""));
        }
    }
    out
}

/// The findings as a JSON array of `{check, level, found, fix}`
/// (`level`: "ok", "warn" or "fail"; `fix`: null when OK).
pub fn render_json(findings: &[Finding]) -> String {
    serde_json::to_string_pretty(findings).unwrap_or_else(|_| "[]".to_string())
}

/// 1 when any check FAILs, else 0: warnings do not stop a start.
pub fn exit_code(findings: &[Finding]) -> u8 {
    u8::from(findings.iter().any(|f| f.level == Level::Fail))
}

/// Logs each WARN (warn) and FAIL (error) once; OK findings stay quiet.
pub fn log_findings(findings: &[Finding]) {
    for f in findings {
        let fix = f.fix.as_deref().unwrap_or("");
        match f.level {
            Level::Ok => {}
            Level::Warn => warn!(check = %f.check, fix, "host check {}: {}", f.check, f.found),
            Level::Fail => error!(check = %f.check, fix, "host check {}: {}", f.check, f.found),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    fn sample() -> Vec<Finding> {
        vec![
            Finding::ok("kernel", "6.18.44"),
            Finding::warn("lsm", "neither AppArmor nor SELinux", "boot with AppArmor"),
            Finding::fail(
                "runtime:crun",
                "cannot run a container",
                "use another runtime",
            ),
        ]
    }

    #[test]
    fn text_is_aligned_with_fixes_under_the_found_value() {
        let text = render_text(&sample());
        assert_eq!(
            text,
            "OK   kernel        6.18.44\n\
             WARN lsm           neither AppArmor nor SELinux\n\
             \x20                  fix: boot with AppArmor\n\
             FAIL runtime:crun  cannot run a container\n\
             \x20                  fix: use another runtime\n"
        );
        assert_eq!(render_text(&[]), "");
    }

    #[test]
    fn json_has_every_field() {
        let v: serde_json::Value = serde_json::from_str(&render_json(&sample())).unwrap();
        assert_eq!(
            v[0],
            serde_json::json!({"check": "kernel", "level": "ok", "found": "6.18.44", "fix": null})
        );
        assert_eq!(v[1]["level"], "warn");
        assert_eq!(v[2]["check"], "runtime:crun");
        assert_eq!(v[2]["level"], "fail");
        assert_eq!(v[2]["fix"], "use another runtime");
    }

    #[test]
    fn exit_code_is_one_only_for_a_failure() {
        let all = sample();
        assert_eq!(exit_code(&all), 1);
        assert_eq!(exit_code(&all[..2]), 0, "a warning is not a failure");
        assert_eq!(exit_code(&all[..1]), 0);
        assert_eq!(exit_code(&[]), 0);
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_lines_for_warnings_and_failures_only() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || log_findings(&sample()));
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].contains(" WARN ") && lines[0].contains("host check lsm"),
            "{text}"
        );
        assert!(lines[0].contains("fix=\"boot with AppArmor\""), "{text}");
        assert!(
            lines[1].contains("ERROR") && lines[1].contains("runtime:crun"),
            "{text}"
        );
        assert!(!text.contains("kernel"), "{text}");
    }
}
