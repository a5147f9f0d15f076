//! Where a configuration file goes wrong: each problem with the key it is
//! about and the line and column of that key (or value) in the file, for
//! `peapod config check` and for the daemon's own error at start.
//!
//! Deserialization and validation both stop at their first problem. To
//! report every problem of a file at once, [`check`] blanks the text of each
//! problem's key out (keeping every other byte where it was, so positions
//! stay true) and tries again: a blanked key takes its default.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{Config, ConfigError};

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key (`cni.plugin_timeout_secs`), when the problem has one.
    pub key: Option<String>,
    /// Where in the file, when the key (or the error) is in it.
    pub position: Option<Position>,
    pub message: String,
}

/// A place in a file, both counted from 1; the column in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = self.position {
            write!(f, "{}:{}: ", p.line, p.column)?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl Problem {
    /// `path:line:column: key: message`, as compilers write it.
    pub fn in_file(&self, path: &Path) -> String {
        match self.position {
            Some(_) => format!("{}:{self}", path.display()),
            None => format!("{}: {self}", path.display()),
        }
    }

    /// A TOML syntax or deserialization error: its span names the key.
    pub(super) fn from_toml(text: &str, error: &toml::de::Error) -> Problem {
        located_toml(text, error).0
    }

    /// A validation error: the key is found in the file by its name.
    pub(super) fn from_invalid(text: &str, error: ConfigError) -> Problem {
        located_invalid(text, error).0
    }
}

/// Every problem of a configuration file, in the order of the file; empty
/// when it is valid.
pub fn check(text: &str) -> Vec<Problem> {
    let mut problems = problems(text);
    problems.sort_by_key(|p| p.position.map_or((usize::MAX, 0), |p| (p.line, p.column)));
    problems
}

fn problems(text: &str) -> Vec<Problem> {
    let mut text = text.to_string();
    let mut problems = Vec::new();
    let mut config = loop {
        match Config::deserialize_text(&text) {
            Ok(config) => break config,
            Err(e) => {
                let (problem, region) = located_toml(&text, &e);
                problems.push(problem);
                if !blank(&mut text, region) {
                    return problems;
                }
            }
        }
    };
    while let Err(e) = config.validate() {
        let (problem, region) = located_invalid(&text, e);
        problems.push(problem);
        if !blank(&mut text, region) {
            break;
        }
        // A blanked key that was required is the blanking's problem, not
        // the file's: stop there.
        match Config::deserialize_text(&text) {
            Ok(c) => config = c,
            Err(_) => break,
        }
    }
    problems
}

/// The problem, and the text of the key it is about (key and value).
fn located_toml(text: &str, error: &toml::de::Error) -> (Problem, Option<Range<usize>>) {
    let span = error.span();
    let found = span.clone().and_then(|s| key_at(text, s));
    let problem = Problem {
        key: found.as_ref().map(|(path, _)| path.join(".")),
        position: span.map(|s| position(text, s.start)),
        message: error.message().trim_end().replace('\n', " "),
    };
    (problem, found.map(|(_, region)| region))
}

fn located_invalid(text: &str, error: ConfigError) -> (Problem, Option<Range<usize>>) {
    let ConfigError::Invalid { key, message } = error else {
        let problem = Problem {
            key: None,
            position: None,
            message: error.to_string(),
        };
        return (problem, None);
    };
    let found = locate(text, &key);
    let problem = Problem {
        position: found.as_ref().map(|(k, _)| position(text, k.start)),
        key: Some(key),
        message,
    };
    (problem, found.map(|(_, region)| region))
}

fn position(text: &str, offset: usize) -> Position {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Position {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

/// The deepest key whose name or value holds `span`: its path and region.
fn key_at(text: &str, span: Range<usize>) -> Option<(Vec<String>, Range<usize>)> {
    fn walk(
        table: &DeTable,
        path: &[String],
        span: &Range<usize>,
        best: &mut Option<(Vec<String>, Range<usize>)>,
    ) {
        for (k, v) in table.iter() {
            let mut here = path.to_vec();
            here.push(k.get_ref().to_string());
            let holds = |s: Range<usize>| s.start <= span.start && span.end <= s.end;
            if (holds(k.span()) || holds(v.span()))
                && best.as_ref().is_none_or(|(p, _)| p.len() < here.len())
            {
                *best = Some((here.clone(), region(k, v)));
            }
            // A `[header]` table's span is its header only: look inside anyway.
            if let Some(t) = v.get_ref().as_table() {
                walk(t, &here, span, best);
            }
        }
    }
    let doc = DeTable::parse(text).ok()?;
    let mut best = None;
    walk(doc.get_ref(), &[], &span, &mut best);
    best
}

/// A dotted key's name span and region in the file. Names may hold dots
/// themselves (`images.mirrors.docker.io`): the longest name that matches
/// wins; when only a prefix is in the file, that prefix is found.
fn locate(text: &str, key: &str) -> Option<(Range<usize>, Range<usize>)> {
    fn find(table: &DeTable, segments: &[&str]) -> Option<(Range<usize>, Range<usize>)> {
        for n in (1..=segments.len()).rev() {
            let name = segments[..n].join(".");
            let Some((k, v)) = table.iter().find(|(k, _)| **k.get_ref() == name) else {
                continue;
            };
            let deeper = v
                .get_ref()
                .as_table()
                .filter(|_| n < segments.len())
                .and_then(|t| find(t, &segments[n..]));
            return deeper.or_else(|| Some((k.span(), region(k, v))));
        }
        None
    }
    let doc = DeTable::parse(text).ok()?;
    let segments: Vec<&str> = key.split('.').collect();
    find(doc.get_ref(), &segments)
}

/// The text a key and its value span, sub-tables included.
fn region(key: &Spanned<impl Sized>, value: &Spanned<DeValue>) -> Range<usize> {
    let start = key.span().start.min(value.span().start);
    start..end_of(value)
}

fn end_of(value: &Spanned<DeValue>) -> usize {
    let inner = match value.get_ref() {
        DeValue::Table(t) => t.iter().map(|(_, v)| end_of(v)).max(),
        DeValue::Array(a) => a.iter().map(end_of).max(),
        _ => None,
    };
    inner.unwrap_or(0).max(value.span().end)
}

/// Replaces `region` with spaces (newlines kept, one space per byte).
/// False when there is nothing to blank or the text would stop being TOML
/// (a key inside an inline table).
fn blank(text: &mut String, region: Option<Range<usize>>) -> bool {
    let Some(region) = region else {
        return false;
    };
    let old = &text[region.clone()];
    if old.trim().is_empty() {
        return false;
    }
    let spaces: String = old
        .chars()
        .map(|c| {
            if c == '\n' {
                "\n".to_string()
            } else {
                " ".repeat(c.len_utf8())
            }
        })
        .collect();
    let mut blanked = text.clone();
    blanked.replace_range(region, &spaces);
    if DeTable::parse(&blanked).is_err() {
        return false;
    }
    *text = blanked;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Option<Position> {
        Some(Position { line, column })
    }

    #[test]
    fn a_valid_file_has_no_problems() {
        assert_eq!(check(""), vec![]);
        assert_eq!(
            check("state_dir = \"/tmp/s\"\n[cni]\nplugin_timeout_secs = 5\n"),
            vec![]
        );
    }

    #[test]
    fn an_unknown_key_is_named_at_its_line() {
        let problems = check("socket = \"/run/p.sock\"\n\n[cni]\n  bogus = 1\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key.as_deref(), Some("cni.bogus"));
        assert_eq!(problems[0].position, at(4, 3));
        assert!(problems[0].message.contains("unknown field `bogus`"));
    }

    #[test]
    fn a_bad_value_is_named_at_its_value() {
        let problems = check("[cni]\nplugin_timeout_secs = -1\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key.as_deref(), Some("cni.plugin_timeout_secs"));
        assert_eq!(problems[0].position, at(2, 23));
    }

    #[test]
    fn an_invalid_value_is_found_by_its_key() {
        let problems = check("[streaming]\nport = 10010\naddress = \"nowhere\"\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key.as_deref(), Some("streaming.address"));
        assert_eq!(problems[0].position, at(3, 1));
        assert!(problems[0].message.contains("not an IP address"));
    }

    #[test]
    fn every_problem_is_reported() {
        let text = "sockett = \"/x\"\n\
                    root_dir = \"relative\"\n\
                    [cni]\n\
                    plugin_timeout_secs = \"long\"\n\
                    [runtimes.kata]\n\
                    path = \"\"\n\
                    [images.mirrors]\n\
                    \"docker.io\" = [\"\"]\n";
        let problems = check(text);
        let found: Vec<(Option<&str>, Option<Position>)> = problems
            .iter()
            .map(|p| (p.key.as_deref(), p.position))
            .collect();
        assert_eq!(
            found,
            vec![
                (Some("sockett"), at(1, 1)),
                (Some("root_dir"), at(2, 1)),
                (Some("cni.plugin_timeout_secs"), at(4, 23)),
                (Some("runtimes.kata.path"), at(6, 1)),
                (Some("images.mirrors.docker.io"), at(8, 1)),
            ],
            "{problems:#?}"
        );
    }

    #[test]
    fn a_table_of_the_wrong_kind_is_named() {
        let problems = check("[streaming.port]\nx = 1\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key.as_deref(), Some("streaming.port"));
        assert_eq!(problems[0].position.map(|p| p.line), Some(1));
    }

    #[test]
    fn a_syntax_error_has_its_position() {
        let problems = check("socket = \"/x\"\nroot_dir = \n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].position.map(|p| p.line), Some(2));
    }

    #[test]
    fn a_key_in_an_inline_table_is_reported_once() {
        let problems = check("streaming = { port = 1, bogus = 2 }\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key.as_deref(), Some("streaming.bogus"));
        assert_eq!(problems[0].position, at(1, 25));
    }

    #[test]
    fn columns_count_characters() {
        let problems = check("# é\n[cni]\nconf_dir = \"/é\" ; x\n");
        assert_eq!(problems[0].position.map(|p| p.line), Some(3));
        assert_eq!(position("é\néa", 5), Position { line: 2, column: 2 });
    }

    #[test]
    fn in_file_reads_like_a_compiler_message() {
        let p = Problem {
            key: Some("cni.bogus".into()),
            position: at(4, 3),
            message: "unknown field `bogus`".into(),
        };
        assert_eq!(
            p.in_file(Path::new("/etc/peapod/config.toml")),
            "/etc/peapod/config.toml:4:3: cni.bogus: unknown field `bogus`"
        );
    }
}
