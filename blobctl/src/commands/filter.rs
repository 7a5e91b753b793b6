//! `--exclude` and `--include` for tree copies (`cp -r`, `sync`), with
//! `aws s3`'s semantics: every file is in until a rule says otherwise, the
//! rules apply in the order given and the last one that matches decides.
//! Patterns match the path relative to the source root (`a/b/c.mp4` for
//! `SRC/a/b/c.mp4`); `*` matches across `/` here, as in `aws s3`, `?` one
//! character, `[...]` one of a set.

use anyhow::anyhow;

/// One `--exclude` or `--include`, in command-line order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FilterRule {
    /// `--include` (true) or `--exclude` (false).
    pub(crate) include: bool,
    /// The pattern as typed.
    pub(crate) pattern: String,
}

/// The compiled rules of one command.
#[derive(Clone, Debug, Default)]
pub(crate) struct Filters {
    rules: Vec<(bool, globset::GlobMatcher)>,
}

impl Filters {
    /// Compiles `rules`; a malformed pattern is a usage error.
    pub(crate) fn new(rules: &[FilterRule]) -> anyhow::Result<Filters> {
        let rules = rules
            .iter()
            .map(|r| {
                let glob = globset::GlobBuilder::new(&r.pattern)
                    .literal_separator(false)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| anyhow!("invalid pattern {:?}: {}", r.pattern, e.kind()))?;
                Ok((r.include, glob.compile_matcher()))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Filters { rules })
    }

    /// Whether the file at `rel` (relative to the source root) takes part.
    pub(crate) fn admits(&self, rel: &str) -> bool {
        self.rules
            .iter()
            .rev()
            .find(|(_, m)| m.is_match(rel))
            .is_none_or(|(include, _)| *include)
    }

    /// Whether there are no rules (everything takes part).
    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// The `--exclude`/`--include` values of a parsed subcommand, in the order
/// they were typed (clap keeps each flag's values apart; their indices
/// give the order between them).
pub(crate) fn rules_from(m: &clap::ArgMatches) -> Vec<FilterRule> {
    let mut found: Vec<(usize, FilterRule)> = Vec::new();
    for (id, include) in [("exclude", false), ("include", true)] {
        let values = m.try_get_many::<String>(id).ok().flatten();
        let indices = m.indices_of(id);
        if let (Some(values), Some(indices)) = (values, indices) {
            found.extend(indices.zip(values).map(|(i, v)| {
                (
                    i,
                    FilterRule {
                        include,
                        pattern: v.clone(),
                    },
                )
            }));
        }
    }
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(include: bool, pattern: &str) -> FilterRule {
        FilterRule {
            include,
            pattern: pattern.into(),
        }
    }

    #[test]
    fn later_rules_win() {
        let none = Filters::new(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(none.is_empty() && none.admits("anything/at/all"));

        let f = Filters::new(&[rule(false, "*"), rule(true, "*.txt")])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(f.admits("a.txt") && f.admits("deep/down/b.txt"));
        assert!(!f.admits("a.bin") && !f.admits("deep/c.mp4"));

        let f = Filters::new(&[rule(true, "*.txt"), rule(false, "*")])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!f.admits("a.txt"), "the later exclude wins");

        let f = Filters::new(&[rule(false, "logs/*"), rule(true, "logs/keep?.log")])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!f.admits("logs/x.log") && !f.admits("logs/sub/y.log"));
        assert!(f.admits("logs/keep1.log") && f.admits("other/x.log"));
        assert!(Filters::new(&[rule(false, "a/[b")]).is_err());
    }
}
