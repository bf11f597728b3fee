//! Knowledge about names that spelling alone does not give: given names
//! and their nicknames (Bob is Robert), patronymics (the Russian middle
//! name a Latin-script record usually leaves out), and numbers written as
//! words (Twenty-One, vingt et un and veintiuno are 21).
//!
//! The nicknames and the number words come from maintained open data sets
//! (a nickname list; Unicode CLDR's spellout rules), copied into the
//! repository with their licences and provenance (`src/screening/data/`);
//! the patronymic endings are rules of the languages, not lists of names.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

/// The nickname data set: `name1,has_nickname,name2` rows (see
/// `src/screening/data/PROVENANCE.md`).
const NICKNAMES_CSV: &str = include_str!("data/nicknames.csv");

/// Given names grouped by formal name: each group is one formal name and
/// its nicknames; a name can be in several groups (Bill is short for both
/// William and Robert).
struct Groups {
    /// The formal name of each group, by group id.
    formal: Vec<&'static str>,
    /// Every name (formal or nickname) with the groups it belongs to.
    of: HashMap<&'static str, Vec<u16>>,
}

static GROUPS: LazyLock<Groups> = LazyLock::new(|| {
    let mut formal: Vec<&'static str> = Vec::new();
    let mut ids: HashMap<&'static str, u16> = HashMap::new();
    let mut of: HashMap<&'static str, Vec<u16>> = HashMap::new();
    for line in NICKNAMES_CSV.lines().skip(1) {
        let mut f = line.split(',');
        let (Some(name), Some("has_nickname"), Some(nick)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let (name, nick) = (name.trim(), nick.trim());
        if name.is_empty() || nick.is_empty() || !name.is_ascii() || !nick.is_ascii() {
            continue;
        }
        let id = *ids.entry(name).or_insert_with(|| {
            formal.push(name);
            (formal.len() - 1) as u16
        });
        for n in [name, nick] {
            let g = of.entry(n).or_default();
            if !g.contains(&id) {
                g.push(id);
            }
        }
    }
    for g in of.values_mut() {
        g.sort_unstable();
    }
    Groups { formal, of }
});

/// The given-name groups a folded token belongs to (sorted; empty for a
/// token that is no given name in the data set).
pub fn name_groups(token: &str) -> Vec<u16> {
    GROUPS.of.get(token).cloned().unwrap_or_default()
}

/// True when two tokens' groups ([`name_groups`]) share one: one is a
/// nickname of the other, or both of one formal name.
pub fn same_given_name(a: &[u16], b: &[u16]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Equal => return true,
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
        }
    }
    false
}

/// The formal names of the groups of a nickname `token` other than the
/// token itself: what a query token also retrieves by (Bob reaches
/// Robert).
pub fn formal_names(token: &str) -> Vec<&'static str> {
    GROUPS
        .of
        .get(token)
        .into_iter()
        .flatten()
        .map(|g| GROUPS.formal[usize::from(*g)])
        .filter(|f| *f != token)
        .collect()
}

/// Endings of East Slavic patronymics as the lists transliterate them
/// (Sergeevich, Sergeyevich, Ivanovna, Illich, Mykolayovych, ...).
const PATRONYMIC_ENDINGS: &[&str] = &[
    "ovich", "evich", "ovych", "evych", "yevich", "ovna", "evna", "ovnya", "ichna", "ilich", "yich",
    "ovitch", "evitch", "ovic", "evic",
];

/// True when a folded token is a patronymic: a father's name a record in
/// Latin script usually leaves out, so leaving it out costs little.
pub fn is_patronymic(token: &str) -> bool {
    token.len() >= 7 && PATRONYMIC_ENDINGS.iter().any(|e| token.ends_with(e))
}

/// Numbers spelt out in English, French, Spanish, German, Russian and
/// Arabic, generated from Unicode CLDR's spellout rules
/// (`scripts/number_words_from_cldr.py`; see
/// `src/screening/data/PROVENANCE.md`): `language, value, spelling` for
/// 0-999 and the whole thousands to 9000.
const NUMBER_WORDS_TSV: &str = include_str!("data/number_words.tsv");

/// The spelt-out numbers as folded token sequences.
struct NumberWords {
    /// A spelling's tokens joined by one space, and its value. A spelling
    /// two languages give different values is left out: it is no number.
    value: HashMap<String, u64>,
    /// Spellings that alone stay words: one in French, Spanish and
    /// German (`une`, `uno`, `una`, `ein`, `eine`), which is also the
    /// indefinite article, and Uno and Una are names.
    article: HashSet<String>,
    /// Tokens that begin some spelling, to pass over other tokens cheaply.
    first: HashSet<String>,
    /// The most tokens in one spelling.
    longest: usize,
}

static NUMBERS: LazyLock<NumberWords> = LazyLock::new(|| {
    let mut value: HashMap<String, Option<u64>> = HashMap::new();
    let mut article = HashSet::new();
    for line in NUMBER_WORDS_TSV.lines().skip(1) {
        let mut f = line.split('\t');
        let (Some(lang), Some(v), Some(spelling)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let Ok(v) = v.parse::<u64>() else { continue };
        let tokens = crate::screening::normalize::word_tokens(spelling);
        if tokens.is_empty() {
            continue;
        }
        if v == 1 && matches!(lang, "fr" | "es" | "de") {
            article.insert(tokens.join(" "));
        }
        value
            .entry(tokens.join(" "))
            .and_modify(|old| {
                if *old != Some(v) {
                    *old = None;
                }
            })
            .or_insert(Some(v));
    }
    let value: HashMap<String, u64> = value.into_iter().filter_map(|(k, v)| Some((k, v?))).collect();
    let first = value
        .keys()
        .map(|k| k.split(' ').next().unwrap_or_default().to_owned())
        .collect();
    let longest = value.keys().map(|k| k.split(' ').count()).max().unwrap_or(0);
    NumberWords {
        value,
        article,
        first,
        longest,
    }
});

/// The longest spelt-out number starting at `tokens[i]`: its value and
/// where it ends.
fn number_at(tokens: &[String], i: usize) -> Option<(u64, usize)> {
    let n = &*NUMBERS;
    if !tokens.get(i).is_some_and(|t| n.first.contains(t.as_str())) {
        return None;
    }
    let max = n.longest.min(tokens.len() - i);
    (1..=max)
        .rev()
        .find_map(|len| n.value.get(&tokens[i..i + len].join(" ")).map(|v| (*v, i + len)))
}

/// Rewrites spelt-out numbers among folded tokens as digits
/// (`unit twenty one` -> `unit 21`, `vingt et un` -> `21`,
/// `tres mil doce` -> `3012`), so a name written with words and one
/// written with digits fold alike. Two numbers side by side stay two
/// (`one two` -> `1 2`). A lone word shorter than three letters stays a
/// word (French and Spanish `un` is also a name syllable: Kim Jong Un),
/// and so does a lone French, Spanish or German word for one: it is also
/// the indefinite article (`une`, `una`, `ein`) and a name (Uno).
pub fn numbers_to_digits(tokens: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let Some((mut value, mut end)) = number_at(&tokens, i) else {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        };
        if end == i + 1 && (tokens[i].len() < 3 || NUMBERS.article.contains(tokens[i].as_str())) {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        // Whole thousands take the number below a thousand after them.
        if value >= 1000
            && value % 1000 == 0
            && let Some((rest, e)) = number_at(&tokens, end).filter(|(v, _)| *v < 1000)
        {
            value += rest;
            end = e;
        }
        out.push(value.to_string());
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn nicknames_share_a_group_with_their_formal_names() {
        let (bob, robert, william, bill) = (
            name_groups("bob"),
            name_groups("robert"),
            name_groups("william"),
            name_groups("bill"),
        );
        assert!(same_given_name(&bob, &robert));
        assert!(same_given_name(&bill, &william));
        assert!(!same_given_name(&bob, &william));
        assert!(name_groups("zawahiri").is_empty());
        assert!(formal_names("bob").contains(&"robert"));
        assert!(!formal_names("robert").contains(&"robert"));
    }

    #[test]
    fn patronymics_are_recognised() {
        for p in [
            "sergeevich",
            "sergeyevich",
            "vladimirovna",
            "mykolayovych",
            "petrovich",
        ] {
            assert!(is_patronymic(p), "{p}");
        }
        assert!(!is_patronymic("orlov"));
        assert!(!is_patronymic("ivanova"));
    }

    #[test]
    fn number_words_become_digits() {
        assert_eq!(numbers_to_digits(toks("unit twenty one")), toks("unit 21"));
        assert_eq!(
            numbers_to_digits(toks("two hundred and five ltd")),
            toks("205 ltd")
        );
        assert_eq!(numbers_to_digits(toks("one two")), toks("1 2"));
        assert_eq!(numbers_to_digits(toks("three thousand twelve")), toks("3012"));
        assert_eq!(numbers_to_digits(toks("hundred acres")), toks("hundred acres"));
        assert_eq!(numbers_to_digits(toks("bank and trust")), toks("bank and trust"));
    }

    #[test]
    fn number_words_of_other_languages_become_digits() {
        let n = |s: &str| numbers_to_digits(crate::screening::normalize::word_tokens(s));
        assert_eq!(n("vingt et un"), toks("21"));
        assert_eq!(n("vingt-et-un"), toks("21"));
        assert_eq!(n("quatre-vingt-dix-neuf"), toks("99"));
        assert_eq!(n("deux cent cinq"), toks("205"));
        assert_eq!(n("veintiuno"), toks("21"));
        assert_eq!(n("treinta y dos"), toks("32"));
        assert_eq!(n("tres mil doce"), toks("3012"));
        assert_eq!(n("einundzwanzig"), toks("21"));
        assert_eq!(n("zweihundertfünf"), toks("205"));
        assert_eq!(n("двадцать один"), toks("21"));
        assert_eq!(n("сто пять"), toks("105"));
        assert_eq!(n("خمسة"), toks("5"));
        // The words for one that are also articles or names stay words
        // alone, and so do two-letter words; inside a number they count.
        assert_eq!(n("una empresa"), toks("una empresa"));
        assert_eq!(n("kim jong un"), toks("kim jong un"));
        assert_eq!(n("ein haus"), toks("ein haus"));
        assert_eq!(n("trente et un"), toks("31"));
    }
}
