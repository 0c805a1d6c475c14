//! What every mcpgate property test shares (docs/testing.md, "Fuzzing"):
//! the run configuration and the small input transformations that more
//! than one parser's properties use. A dev-dependency only.

use proptest::test_runner::Config;

/// `cases` cases, unless `PROPTEST_CASES` asks for another number (a longer
/// run); no regression files are written.
pub fn config(cases: u32) -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(cases),
        failure_persistence: None,
        ..Config::default()
    }
}

/// `s` with the ASCII letters at the positions set in `flips` (modulo 64)
/// upper-cased: another spelling for parsers that must, or must not, fold case.
pub fn case_variant(s: &str, flips: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if flips & (1 << (i % 64)) != 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn case_variant_flips_only_the_chosen_letters() {
        assert_eq!(super::case_variant("abc-d", 0b10101), "AbC-D");
        assert_eq!(super::case_variant("abc", 0), "abc");
    }
}
