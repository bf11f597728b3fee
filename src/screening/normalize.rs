//! Name folding: what makes "José HERNÁNDEZ", "Hernandez, Jose" and
//! "Хернандес Хосе" comparable. Unicode compatibility decomposition and mark
//! stripping (`unicode-normalization`), transliteration of every other script
//! to Latin (`any_ascii`: Arabic, Cyrillic, Greek, CJK, ...), case folding,
//! punctuation rules (acronym dots join, hyphens split), Arabic particle
//! gluing (`al-`, `abd al`), and legal forms and honorifics set aside in
//! several languages. The result is a token list the index and the scorer
//! share, so a query and a list name are always folded the same way.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Most tokens kept from one name; longer "names" are free text and their
/// tail adds nothing but cost.
pub const MAX_TOKENS: usize = 12;

/// A name folded for matching.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Folded {
    /// The distinctive tokens, in the name's own order.
    pub tokens: Vec<String>,
    /// Legal forms found (`llc`, `jsc`, ...), canonicalised; they never
    /// decide a match, but explanations mention them.
    pub legal: Vec<String>,
    /// The tokens joined without spaces, for joined/split spellings.
    pub compact: String,
}

/// Multi-word legal forms, rewritten to one canonical token before the
/// single-word table applies. Longest first.
const LEGAL_PHRASES: &[(&[&str], &str)] = &[
    (&["obshchestvo", "s", "ogranichennoy", "otvetstvennostyu"], "ooo"),
    (&["gesellschaft", "mit", "beschrankter", "haftung"], "gmbh"),
    (&["gesellschaft", "mit", "beschraenkter", "haftung"], "gmbh"),
    (&["societe", "a", "responsabilite", "limitee"], "sarl"),
    (&["sociedad", "de", "responsabilidad", "limitada"], "srl"),
    (&["sa", "dec", "v"], "sa"),
    (&["dec", "v"], "cv"),
    (&["public", "joint", "stock", "company"], "pjsc"),
    (&["open", "joint", "stock", "company"], "ojsc"),
    (&["closed", "joint", "stock", "company"], "cjsc"),
    (&["limited", "liability", "company"], "llc"),
    (&["limited", "liability", "partnership"], "llp"),
    (&["public", "limited", "company"], "plc"),
    (&["joint", "stock", "company"], "jsc"),
    (&["sociedad", "anonima"], "sa"),
    (&["societe", "anonyme"], "sa"),
    (&["sociedade", "anonima"], "sa"),
    (&["sociedad", "limitada"], "ltda"),
    (&["sa", "de", "cv"], "sa"),
    (&["s", "de", "rl"], "srl"),
    (&["de", "cv"], "cv"),
    (&["sdn", "bhd"], "bhd"),
    (&["pvt", "ltd"], "ltd"),
    (&["pte", "ltd"], "ltd"),
    (&["pty", "ltd"], "ltd"),
    (&["co", "ltd"], "ltd"),
    (&["company", "limited"], "ltd"),
    (&["joint", "venture"], "jv"),
];

/// Single-word legal forms in English, Russian (transliterated), German,
/// French, Spanish, Portuguese, Italian, Dutch, Nordic and Asian usage.
const LEGAL_WORDS: &[&str] = &[
    "llc",
    "ltd",
    "limited",
    "co",
    "company",
    "corp",
    "corporation",
    "inc",
    "incorporated",
    "plc",
    "llp",
    "lp",
    "sa",
    "sas",
    "sarl",
    "srl",
    "spa",
    "gmbh",
    "ag",
    "kg",
    "bv",
    "nv",
    "ooo",
    "oao",
    "zao",
    "pao",
    "ao",
    "jsc",
    "ojsc",
    "cjsc",
    "pjsc",
    "tov",
    "ltda",
    "limitada",
    "pte",
    "pty",
    "bhd",
    "kk",
    "oy",
    "ab",
    "aps",
    "fze",
    "fzco",
    "fzc",
    "fzllc",
    "cv",
    "jv",
    "cia",
    "compania",
    "companhia",
    "societe",
    "sociedad",
    "anonima",
    "sl",
    "slu",
    "ohg",
    "eood",
    "ood",
    "ead",
    "tic",
    "as",
    "asa",
    "sae",
    "coltd",
    "aktiengesellschaft",
];

/// Long legal words also recognised with one typo ("Compnay", "Limtied"):
/// long enough that one edit cannot make them another word.
const LEGAL_LONG: &[&str] = &[
    "company",
    "limited",
    "corporation",
    "incorporated",
    "limitada",
    "compania",
    "sociedad",
];

/// Honorifics and titles that are not part of anyone's name.
const HONORIFICS: &[&str] = &[
    "mr",
    "mrs",
    "ms",
    "miss",
    "dr",
    "prof",
    "sir",
    "madam",
    "haji",
    "hajji",
    "alhaji",
    "mullah",
    "mulla",
    "maulana",
    "maulavi",
    "maulvi",
    "mawlawi",
    "mawlavi",
    "qari",
    "general",
    "gen",
    "col",
    "colonel",
    "capt",
    "captain",
    "lt",
    "major",
    "brigadier",
    "admiral",
    "herr",
    "frau",
    "senor",
    "senora",
    "sr",
    "sra",
    "monsieur",
    "mme",
    "mlle",
    "sheikh",
    "shaikh",
    "shaykh",
    "sayyid",
    "hon",
    "rev",
];

/// Words that carry no identity in any name.
const FILLERS: &[&str] = &["and", "the", "of", "und", "et", "y"];

/// Folds a whole string to lower-case ASCII: compatibility decomposition,
/// marks dropped, other scripts transliterated.
pub fn fold_text(s: &str) -> String {
    let stripped: String = split_camel(s).nfkd().filter(|c| !is_combining_mark(*c)).collect();
    let ascii = if stripped.is_ascii() {
        stripped
    } else {
        // Transliterate word by word so CJK syllables of one word stay one
        // token while words stay apart.
        stripped
            .split(char::is_whitespace)
            .map(any_ascii::any_ascii)
            .collect::<Vec<_>>()
            .join(" ")
    };
    ascii.to_ascii_lowercase()
}

/// Splits words written in camel case ("BoPeng", "CholKim") where a
/// lower-case letter meets an upper-case one, as separate words.
fn split_camel(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        // Only where a capitalised word of two letters or more begins, so
        // "GmbH" stays whole.
        let starts_word = i > 0
            && chars[i - 1].is_lowercase()
            && c.is_uppercase()
            && chars.get(i + 1).is_some_and(|n| n.is_lowercase());
        if starts_word {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Splits folded text into raw tokens: apostrophes vanish (O'Brien =
/// OBrien), acronym dots join (S.A. = SA), every other punctuation separates.
fn raw_tokens(folded: &str) -> Vec<String> {
    let mut out = Vec::new();
    for piece in folded.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '\'' || c == '`')) {
        let piece: String = piece.chars().filter(|c| *c != '\'' && *c != '`').collect();
        if piece.is_empty() {
            continue;
        }
        if piece.contains('.') {
            let parts: Vec<&str> = piece.split('.').filter(|p| !p.is_empty()).collect();
            if parts.len() > 1 && parts.iter().all(|p| p.len() == 1) {
                out.push(parts.concat());
            } else {
                out.extend(parts.into_iter().map(str::to_owned));
            }
        } else {
            out.push(piece);
        }
    }
    out
}

/// Rewrites spelling variants of Arabic name particles to one form: "Abd al
/// Rahman", "Abdel Rahman", "Abdul-Rahman" and "AbdulRahman" all become
/// `abdul rahman` (two tokens, so a dropped or changed second word costs
/// one token, not the pair); the article is glued to its word: "Al Qaida",
/// "al-Qaida", "AlQaida" and "El Qaida" become `alqaida`.
fn glue_particles(tokens: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        let next = tokens.get(i + 1).map(String::as_str);
        let next2 = tokens.get(i + 2).map(String::as_str);
        match (t, next) {
            ("abd", Some("al" | "el" | "ul" | "ol")) if next2.is_some() => {
                out.push("abdul".into());
                out.push(next2.unwrap_or_default().to_owned());
                i += 3;
            }
            ("abdul" | "abdel" | "abdal" | "abdoul" | "abdol" | "abdu", Some(_)) => {
                out.push("abdul".into());
                i += 1;
            }
            ("al" | "el", Some(n)) if n.len() > 1 => {
                out.push(format!("al{n}"));
                i += 2;
            }
            _ => {
                // A joined "Abdulrahman" is the same two words.
                let split = ["abdul", "abdel", "abdal", "abdoul", "abdol"]
                    .into_iter()
                    .find(|p| t.len() >= p.len() + 4 && t.starts_with(p));
                match split {
                    Some(p) => {
                        out.push("abdul".into());
                        out.push(t[p.len()..].to_owned());
                    }
                    None => out.push(t.to_owned()),
                }
                i += 1;
            }
        }
    }
    out
}

/// Folds a name into matching tokens.
pub fn fold(name: &str) -> Folded {
    let mut raw = glue_particles(raw_tokens(&fold_text(name)));
    let mut legal = Vec::new();
    // Longest phrases first over the whole name, so "Company Limited
    // Liability Company" is "company" + "llc", not "ltd" + "liability".
    for (phrase, canon) in LEGAL_PHRASES {
        let mut i = 0;
        while i + phrase.len() <= raw.len() {
            if phrase.iter().zip(&raw[i..]).all(|(a, b)| a == b) {
                raw.splice(i..i + phrase.len(), std::iter::once(format!("\u{0}{canon}")));
            }
            i += 1;
        }
    }
    let mut kept: Vec<String> = Vec::new();
    for t in &raw {
        if let Some(canon) = t.strip_prefix('\u{0}') {
            legal.push(canon.to_owned());
        } else if LEGAL_WORDS.contains(&t.as_str())
            || (t.len() >= 6 && LEGAL_LONG.iter().any(|w| strsim::osa_distance(w, t) == 1))
        {
            legal.push(t.clone());
        } else if !HONORIFICS.contains(&t.as_str()) && !FILLERS.contains(&t.as_str()) {
            kept.push(t.clone());
        }
    }
    let raw: Vec<String> = raw
        .into_iter()
        .map(|t| t.trim_start_matches('\u{0}').to_owned())
        .collect();
    if kept.is_empty() {
        // A name made only of set-aside words keeps them: better a weak
        // signal than none.
        kept = raw
            .into_iter()
            .filter(|t| !FILLERS.contains(&t.as_str()))
            .collect();
        legal.clear();
    }
    kept.truncate(MAX_TOKENS);
    let compact = kept.concat();
    Folded {
        tokens: kept,
        legal,
        compact,
    }
}

/// A phonetic skeleton of a folded token: common transliteration digraphs
/// unified (kh=h, sh=sch=shch, ph=f, x=ks, w=v, q=k, ...), vowels after the
/// first letter dropped, doubled letters collapsed. Mohammed, Muhammad and
/// Mohamed share `mhmd`; Sergei and Sergey share `srg`; Aleksandr and
/// Alexander share `alksndr`.
pub fn phonetic_key(token: &str) -> String {
    let mut s = token.to_owned();
    for (from, to) in [
        ("shch", "sh"),
        ("sch", "sh"),
        ("tch", "ch"),
        ("kh", "h"),
        ("ph", "f"),
        ("rh", "r"),
        ("gh", "g"),
        ("dh", "d"),
        ("th", "t"),
        ("ck", "k"),
        ("x", "ks"),
        ("q", "k"),
        ("w", "v"),
        ("dj", "j"),
        ("zh", "j"),
        ("ts", "z"),
        ("tz", "z"),
    ] {
        if s.contains(from) {
            s = s.replace(from, to);
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut last = '\0';
    for (i, c) in s.chars().enumerate() {
        let vowel = matches!(c, 'a' | 'e' | 'i' | 'o' | 'u' | 'y');
        if i > 0 && vowel {
            last = c;
            continue;
        }
        let c = if i == 0 && vowel { 'a' } else { c };
        if c != last {
            out.push(c);
        }
        last = c;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        fold(s).tokens
    }

    #[test]
    fn case_diacritics_and_punctuation_fold() {
        assert_eq!(toks("José HERNÁNDEZ"), ["jose", "hernandez"]);
        assert_eq!(toks("Hernandez, Jose"), ["hernandez", "jose"]);
        assert_eq!(toks("Öztürk-Karadžić"), ["ozturk", "karadzic"]);
        assert_eq!(toks("O'Brien"), ["obrien"]);
        assert_eq!(toks("Straße"), ["strasse"]);
    }

    #[test]
    fn other_scripts_transliterate() {
        assert_eq!(toks("Сергей Лавров"), ["sergei", "lavrov"]);
        assert_eq!(toks("Αλέξανδρος"), ["alexandros"]);
        assert!(!toks("محمد").is_empty());
        assert!(toks("محمد")[0].is_ascii());
        assert!(toks("金正恩")[0].is_ascii());
    }

    #[test]
    fn legal_forms_are_set_aside_in_several_languages() {
        let f = fold("Rosoboronexport Limited Liability Company");
        assert_eq!(f.tokens, ["rosoboronexport"]);
        assert_eq!(f.legal, ["llc"]);
        assert_eq!(toks("ACME S.A. de C.V."), ["acme"]);
        assert_eq!(toks("Acme Co., Ltd."), ["acme"]);
        assert_eq!(toks("OOO Acme"), ["acme"]);
        assert_eq!(toks("Acme GmbH"), ["acme"]);
        // A name that is only legal words keeps them.
        assert_eq!(toks("Limited Company"), ["limited", "company"]);
    }

    #[test]
    fn honorifics_and_fillers_go() {
        assert_eq!(toks("Dr. Ayman al-Zawahiri"), ["ayman", "alzawahiri"]);
        assert_eq!(toks("Bank of the East"), ["bank", "east"]);
    }

    #[test]
    fn arabic_particles_glue_the_same_way() {
        let want = ["abdul", "rahman"];
        assert_eq!(toks("Abd al Rahman"), want);
        assert_eq!(toks("Abdel Rahman"), want);
        assert_eq!(toks("Abdul-Rahman"), want);
        assert_eq!(toks("AbdulRahman"), want);
        assert_eq!(toks("Abdelrahman"), want);
        assert_eq!(toks("al-Qaida"), ["alqaida"]);
        assert_eq!(toks("Al Qaida"), ["alqaida"]);
        assert_eq!(toks("AlQaida"), ["alqaida"]);
    }

    #[test]
    fn acronyms_join_and_compact_spans_tokens() {
        assert_eq!(toks("U.S.A. Trading"), ["usa", "trading"]);
        assert_eq!(toks("BoPeng"), ["bo", "peng"]);
        assert_eq!(toks("Acme Compnay"), ["acme"]);
        let f = fold("Sovfracht Managing Company Limited Liability Company");
        assert_eq!(f.tokens, ["sovfracht", "managing"]);
        assert_eq!(f.legal, ["company", "llc"]);
        assert_eq!(fold("Bank Melli").compact, "bankmelli");
    }

    #[test]
    fn phonetic_keys_unify_transliterations() {
        let k = phonetic_key;
        assert_eq!(k("mohammed"), k("muhammad"));
        assert_eq!(k("mohamed"), k("muhammad"));
        assert_eq!(k("ahmad"), k("ahmed"));
        assert_eq!(k("yusuf"), k("youssef"));
        assert_eq!(k("hussein"), k("husayn"));
        assert_eq!(k("sergei"), k("sergey"));
        assert_eq!(k("aleksandr"), k("alexander"));
        assert_eq!(k("ivanov"), k("ivanow"));
        assert_eq!(k("khalid"), k("halid"));
        assert_eq!(k("shchukin"), k("schukin"));
        assert_ne!(k("ahmed"), k("mohammed"));
    }
}
