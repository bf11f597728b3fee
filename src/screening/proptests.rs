//! Property tests over the code that reads untrusted list files and names:
//! whatever bytes arrive as a list import, every parser either yields
//! entries or refuses with a file, a place and a reason, never a panic; and
//! the name folder is total, ASCII and idempotent on any text.

use std::sync::OnceLock;

use proptest::prelude::*;

use super::lists::{ListFile, SOURCES, parse};
use super::matcher::PreparedName;
use super::normalize::{fold, fold_text};

/// Small real files of each format (source, file name, bytes), read once.
fn real_files() -> &'static [(&'static str, &'static str, Vec<u8>)] {
    static FILES: OnceLock<Vec<(&'static str, &'static str, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        [
            ("ofac_sdn", "sdn.csv", "ofac/fixture_small/sdn.csv"),
            ("ofac_sdn", "sdn.xml", "ofac/fixture_small_xml/sdn.xml"),
            ("eu_fsf", "eu.xml", "eu/fsf_1_1_excerpt_2026-08-05.xml"),
            (
                "uk_fcdo",
                "uk.xml",
                "uk/uk_sanctions_list_fcdo_excerpt_2026-08-14.xml",
            ),
            (
                "ch_seco",
                "ch.xml",
                "ch/seco_swiss_sanctions_list_excerpt_2026-08-15.xml",
            ),
            ("us_csl", "csl.csv", "us_csl/consolidated.csv"),
        ]
        .into_iter()
        .map(|(source, name, rel)| {
            let path = format!("{}/tests/fixtures/sanctions/{rel}", env!("CARGO_MANIFEST_DIR"));
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"));
            (source, name, data)
        })
        .collect()
    })
}

fn refused_clearly(
    r: Result<Vec<super::model::ListEntry>, super::lists::ParseError>,
) -> Result<(), TestCaseError> {
    if let Err(e) = r {
        prop_assert!(!e.location.is_empty() && !e.message.is_empty(), "{e:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_as_any_source(
        source in 0..SOURCES.len(),
        name in "[a-z_]{1,8}(\\.csv|\\.xml|\\.txt)?",
        data in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        refused_clearly(parse(SOURCES[source], &[ListFile { name, data }]))?;
    }

    #[test]
    fn damaged_real_files(
        which in 0usize..6,
        cut in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let (source, name, data) = &real_files()[which];
        let mut data = data[..cut.index(data.len() + 1)].to_vec();
        if !data.is_empty() {
            let i = at.index(data.len());
            data[i] = byte;
        }
        refused_clearly(parse(source, &[ListFile { name: (*name).to_owned(), data }]))?;
    }

    #[test]
    fn names_fold_totally(s in "\\PC{0,80}") {
        let once = fold_text(&s);
        prop_assert!(once.is_ascii(), "{once:?}");
        prop_assert_eq!(fold_text(&once), once.clone());
        let f = fold(&s);
        prop_assert!(f.tokens.iter().all(|t| t.is_ascii() && !t.is_empty()), "{f:?}");
        let _ = PreparedName::new(&s);
    }
}
