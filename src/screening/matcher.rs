//! The pairwise scorer: how alike a screened name and one list name are,
//! from 0 to 1, and why. Order-insensitive token alignment (each query token
//! to at most one list token, best pairs first), where two tokens agree when
//! equal, when one is the other's initial, when their phonetic skeletons are
//! equal (transliteration variants), or within a small edit distance
//! (typos); a token may also match two adjacent tokens joined (AlQaida =
//! Al Qaida). Tokens are weighted by rarity, so an unmatched "Mohammed"
//! costs less than an unmatched "Zawahiri"; an unmatched query token costs
//! fully, an unmatched list token (a dropped middle name) only partly.

use std::fmt::Write as _;

use super::normalize::{Folded, fold, phonetic_key};

/// A folded token with its phonetic key, computed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tok {
    /// The folded token.
    pub text: String,
    /// Its phonetic skeleton.
    pub key: String,
}

impl Tok {
    /// Prepares a folded token.
    pub fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            key: phonetic_key(text),
        }
    }
}

/// A name ready for comparison.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PreparedName {
    /// Distinctive tokens in the name's order.
    pub tokens: Vec<Tok>,
    /// Tokens joined without spaces.
    pub compact: String,
    /// Legal forms set aside.
    pub legal: Vec<String>,
}

impl PreparedName {
    /// Folds and prepares `name`.
    pub fn new(name: &str) -> Self {
        Self::from_folded(fold(name))
    }

    /// Prepares an already folded name.
    pub fn from_folded(f: Folded) -> Self {
        Self {
            tokens: f.tokens.iter().map(|t| Tok::new(t)).collect(),
            compact: f.compact,
            legal: f.legal,
        }
    }

    /// True when folding left nothing to match on.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// How rare (identifying) a token is; the index supplies inverse document
/// frequencies, [`Uniform`] treats every token alike.
pub trait TokenWeights {
    /// Weight of `token` (> 0).
    fn weight(&self, token: &str) -> f64;
}

/// Every token weighs 1: used by `ScoreNames` when no index is at hand.
#[derive(Debug, Clone, Copy, Default)]
pub struct Uniform;

impl TokenWeights for Uniform {
    fn weight(&self, _token: &str) -> f64 {
        1.0
    }
}

/// The scorer's tunable knobs (tuned on folds of the development set; see
/// `docs/BENCHMARKS.md`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Share of an unmatched list token's weight charged against the score
    /// (a query that omits a middle name still matches).
    pub unmatched_list_penalty: f64,
    /// Token pairs less alike than this do not align at all.
    pub min_token_similarity: f64,
    /// Similarity granted to tokens with equal phonetic skeletons.
    pub phonetic_similarity: f64,
    /// Similarity granted to an initial matching a full token.
    pub initial_similarity: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            unmatched_list_penalty: 0.35,
            min_token_similarity: 0.78,
            phonetic_similarity: 0.9,
            initial_similarity: 0.8,
        }
    }
}

/// Why two tokens were aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agreement {
    /// Equal after folding.
    Exact,
    /// Same phonetic skeleton (a transliteration variant).
    Phonetic,
    /// Within a small edit distance (a typo).
    Edit,
    /// An initial against a full token.
    Initial,
    /// One token against two adjacent tokens joined.
    Joined,
}

impl Agreement {
    fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Phonetic => "phonetic",
            Self::Edit => "spelling",
            Self::Initial => "initial",
            Self::Joined => "joined",
        }
    }
}

/// One aligned pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// Query side (tokens joined by `+` when several).
    pub query: String,
    /// List side (tokens joined by `+` when several).
    pub list: String,
    /// Similarity in 0..=1.
    pub similarity: f64,
    /// Why they were aligned.
    pub how: Agreement,
}

/// The result of comparing two names.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Comparison {
    /// 0..=1.
    pub score: f64,
    /// Aligned tokens.
    pub pairs: Vec<Pair>,
    /// Query tokens with no partner.
    pub unmatched_query: Vec<String>,
    /// List tokens with no partner.
    pub unmatched_list: Vec<String>,
    /// Set when the joined-up spelling compared better than the tokens did.
    pub compact_ratio: Option<f64>,
}

impl Comparison {
    /// A one-line human explanation (no scores hidden, no personal data
    /// beyond the two names being compared).
    pub fn explain(&self) -> String {
        let mut s = String::new();
        let pairs: Vec<String> = self
            .pairs
            .iter()
            .map(|p| {
                if p.how == Agreement::Exact {
                    p.query.clone()
                } else {
                    format!("{}~{} ({} {:.2})", p.query, p.list, p.how.as_str(), p.similarity)
                }
            })
            .collect();
        let _ = write!(s, "tokens [{}]", pairs.join(", "));
        if !self.unmatched_query.is_empty() {
            let _ = write!(s, "; unmatched query [{}]", self.unmatched_query.join(", "));
        }
        if !self.unmatched_list.is_empty() {
            let _ = write!(s, "; unmatched list [{}]", self.unmatched_list.join(", "));
        }
        if let Some(r) = self.compact_ratio {
            let _ = write!(s, "; joined spelling {r:.2}");
        }
        s
    }
}

/// Normalised edit similarity (optimal string alignment, so an adjacent
/// transposition is one edit).
pub fn edit_ratio(a: &str, b: &str) -> f64 {
    let max = a.len().max(b.len());
    if max == 0 {
        return 1.0;
    }
    1.0 - strsim::osa_distance(a, b) as f64 / max as f64
}

/// How alike two tokens are and why, or `None` below `p.min_token_similarity`.
pub fn token_similarity(a: &Tok, b: &Tok, p: &Params) -> Option<(f64, Agreement)> {
    if a.text == b.text {
        return Some((1.0, Agreement::Exact));
    }
    let (la, lb) = (a.text.len(), b.text.len());
    if (la == 1) != (lb == 1) {
        let ok = a.text.as_bytes()[0] == b.text.as_bytes()[0];
        return ok.then_some((p.initial_similarity, Agreement::Initial));
    }
    // Short tokens differ by one letter too easily (Ali / Ari): edits only
    // count from four letters up.
    let r = if la.min(lb) >= 4 { edit_ratio(&a.text, &b.text) } else { 0.0 };
    if a.key == b.key && a.key.len() >= 2 && la.min(lb) >= 3 && r < p.phonetic_similarity {
        return Some((p.phonetic_similarity, Agreement::Phonetic));
    }
    (r >= p.min_token_similarity).then_some((r, Agreement::Edit))
}

/// Compares a query name with a list name.
pub fn compare(q: &PreparedName, n: &PreparedName, w: &dyn TokenWeights, p: &Params) -> Comparison {
    let (nq, nn) = (q.tokens.len(), n.tokens.len());
    if nq == 0 || nn == 0 {
        return Comparison::default();
    }
    let mut cands: Vec<(f64, usize, usize, Agreement)> = Vec::with_capacity(nq * nn);
    for (i, a) in q.tokens.iter().enumerate() {
        for (j, b) in n.tokens.iter().enumerate() {
            if let Some((s, how)) = token_similarity(a, b, p) {
                cands.push((s, i, j, how));
            }
        }
    }
    // Best pairs first; ties keep the name order, so results are stable.
    cands.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let mut q_used = vec![false; nq];
    let mut n_used = vec![false; nn];
    let mut pairs = Vec::new();
    let mut matched_w = 0.0;
    let mut got = 0.0;
    for (s, i, j, how) in cands {
        if q_used[i] || n_used[j] {
            continue;
        }
        q_used[i] = true;
        n_used[j] = true;
        let wt = w.weight(&n.tokens[j].text);
        matched_w += wt;
        got += s * wt;
        pairs.push(Pair {
            query: q.tokens[i].text.clone(),
            list: n.tokens[j].text.clone(),
            similarity: s,
            how,
        });
    }
    // Joined or split tokens: one token against two adjacent ones.
    for i in 0..nq {
        if q_used[i] {
            continue;
        }
        for j in 0..nn.saturating_sub(1) {
            if n_used[j] || n_used[j + 1] {
                continue;
            }
            let joined = format!("{}{}", n.tokens[j].text, n.tokens[j + 1].text);
            let r = edit_ratio(&q.tokens[i].text, &joined);
            if r >= 0.88 {
                q_used[i] = true;
                n_used[j] = true;
                n_used[j + 1] = true;
                let wt = w.weight(&n.tokens[j].text) + w.weight(&n.tokens[j + 1].text);
                matched_w += wt;
                got += r * wt;
                pairs.push(Pair {
                    query: q.tokens[i].text.clone(),
                    list: format!("{}+{}", n.tokens[j].text, n.tokens[j + 1].text),
                    similarity: r,
                    how: Agreement::Joined,
                });
                break;
            }
        }
    }
    for j in 0..nn {
        if n_used[j] {
            continue;
        }
        for i in 0..nq.saturating_sub(1) {
            if q_used[i] || q_used[i + 1] {
                continue;
            }
            let joined = format!("{}{}", q.tokens[i].text, q.tokens[i + 1].text);
            let r = edit_ratio(&joined, &n.tokens[j].text);
            if r >= 0.88 {
                q_used[i] = true;
                q_used[i + 1] = true;
                n_used[j] = true;
                let wt = w.weight(&n.tokens[j].text);
                matched_w += wt;
                got += r * wt;
                pairs.push(Pair {
                    query: format!("{}+{}", q.tokens[i].text, q.tokens[i + 1].text),
                    list: n.tokens[j].text.clone(),
                    similarity: r,
                    how: Agreement::Joined,
                });
                break;
            }
        }
    }
    let unmatched_query: Vec<String> = (0..nq).filter(|i| !q_used[*i]).map(|i| q.tokens[i].text.clone()).collect();
    let unmatched_list: Vec<String> = (0..nn).filter(|j| !n_used[*j]).map(|j| n.tokens[j].text.clone()).collect();
    let uq: f64 = unmatched_query.iter().map(|t| w.weight(t)).sum();
    let un: f64 = unmatched_list.iter().map(|t| w.weight(t)).sum();
    let denom = matched_w + uq + p.unmatched_list_penalty * un;
    let mut score = if denom > 0.0 { got / denom } else { 0.0 };
    // A lone matching token against a longer list name is a surname-only
    // hit: worth review only when the token is rare enough on its own.
    if pairs.len() == 1 && nq == 1 && !unmatched_list.is_empty() {
        score *= 0.9;
    }
    let mut compact_ratio = None;
    if nq != nn && (!unmatched_query.is_empty() || !unmatched_list.is_empty()) {
        let r = edit_ratio(&q.compact, &n.compact);
        if r >= 0.9 && r > score {
            score = r;
            compact_ratio = Some(r);
        }
    }
    Comparison {
        score: score.clamp(0.0, 1.0),
        pairs,
        unmatched_query,
        unmatched_list,
        compact_ratio,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(a: &str, b: &str) -> f64 {
        compare(&PreparedName::new(a), &PreparedName::new(b), &Uniform, &Params::default()).score
    }

    #[test]
    fn identical_and_reordered_names_score_one() {
        assert_eq!(s("Ayman al-Zawahiri", "AL-ZAWAHIRI, Ayman"), 1.0);
        assert_eq!(s("Bank Melli Iran", "Iran Bank Melli"), 1.0);
    }

    #[test]
    fn variants_score_high() {
        assert!(s("Muhammad Yusuf Hussein", "Mohammed Youssef Husayn") >= 0.88);
        assert!(s("Aleksandr Ivanov", "Alexander Ivanow") >= 0.88);
        assert!(s("Kalashnikvo Concern", "Kalashnikov Concern") >= 0.9);
        assert!(s("AlQaida", "Al Qaida") >= 0.99);
        assert!(s("Bankmelli", "Bank Melli") >= 0.95);
        assert!(s("J. Smith", "John Smith") >= 0.85);
    }

    #[test]
    fn dropped_middle_names_cost_little() {
        let d = s("Ismail Haniya", "Ismail Abdul Salah Haniya");
        assert!(d >= 0.7, "{d}");
        assert!(d < 1.0);
    }

    #[test]
    fn different_people_score_low() {
        assert!(s("John Smith", "Jane Doe") < 0.2);
        assert!(s("Ahmed Ali Hasan", "Mohammed Ali Hasan") < 0.75);
        assert!(s("Ali", "Ari") == 0.0);
    }

    #[test]
    fn explanation_names_the_agreements() {
        let c = compare(
            &PreparedName::new("Mohamed Attar"),
            &PreparedName::new("Muhammad Atar Khan"),
            &Uniform,
            &Params::default(),
        );
        let e = c.explain();
        assert!(e.contains("mohamed~muhammad (phonetic"), "{e}");
        assert!(e.contains("unmatched list [khan]"), "{e}");
    }
}
