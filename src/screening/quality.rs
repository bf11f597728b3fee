//! The quality measurement on the labelled development set
//! (`tests/fixtures/eval/screening_dev.jsonl`) against the index of OFAC SDN
//! 2021-07 + UN, exactly as its README defines the metrics: precision,
//! recall and F1 at the review threshold, alert rate on negatives, entity
//! recall, recall@1/@5, per kind. Run with
//! `cargo test --release --lib screening::quality -- --nocapture`.

use std::collections::BTreeMap;
use std::time::Instant;

use super::index::{IndexSet, Query};
use super::lists::{ListFile, parse};
use super::matcher::Params;
use super::model::EntityKind;
use crate::screening::cases::DEFAULT_REVIEW_THRESHOLD;

fn fixture(rel: &str) -> ListFile {
    let path = format!("{}/tests/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"));
    ListFile {
        name: rel.rsplit('/').next().unwrap_or(rel).to_owned(),
        data: std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}")),
    }
}

/// The indexed list of the evaluation set.
pub fn eval_index() -> IndexSet {
    let sdn: Vec<ListFile> = ["sdn.csv", "alt.csv", "add.csv", "sdn_comments.csv"]
        .iter()
        .map(|f| fixture(&format!("sanctions/ofac/sdn_2021-07/{f}")))
        .collect();
    let un = [fixture("sanctions/un/UN_consolidated.xml")];
    let mut set = IndexSet::default();
    for (src, files) in [("ofac_sdn", &sdn[..]), ("un_sc", &un[..])] {
        let entries = parse(src, files).expect("fixture parses");
        set.by_source.insert(
            src.into(),
            std::sync::Arc::new(super::index::Index::build(src, 1, entries)),
        );
    }
    set
}

#[derive(Default, Debug)]
struct Tally {
    n: usize,
    alerts: usize,
    entity: usize,
    at1: usize,
    at5: usize,
}

#[test]
fn quality_on_dev_set() {
    let set = eval_index();
    let p = Params::default();
    let thr = DEFAULT_REVIEW_THRESHOLD;
    let raw = std::fs::read_to_string(format!(
        "{}/tests/fixtures/eval/screening_dev.jsonl",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut by_kind: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_type: BTreeMap<String, Tally> = BTreeMap::new();
    let (mut tp, mut fp, mut pos, mut neg, mut ent, mut r1, mut r5) =
        (0usize, 0usize, 0usize, 0usize, 0usize, 0usize, 0usize);
    let mut lat = Vec::new();
    let mut sweep: Vec<(bool, f64)> = Vec::new();
    // Two folds by group (a listed party's variants stay on one side), to
    // show the parameters hold on either half rather than fit one.
    let mut folds = [[0usize; 4]; 2]; // tp, fp, pos, neg
    let mut misses = Vec::new();
    for line in raw.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let kind = match v["party_type"].as_str().unwrap_or("") {
            "individual" => EntityKind::Individual,
            "organization" => EntityKind::Organization,
            "vessel" => EntityKind::Vessel,
            "aircraft" => EntityKind::Aircraft,
            _ => EntityKind::Unknown,
        };
        let q = Query::new(v["query"].as_str().unwrap(), &[], kind, "", "");
        let t = Instant::now();
        let hits = set.search(&q, &p, 0.0, 10);
        lat.push(t.elapsed());
        let alert = hits.first().is_some_and(|h| h.score >= thr);
        sweep.push((v["label"] == "positive", hits.first().map_or(0.0, |h| h.score)));
        let positive = v["label"] == "positive";
        let want: Vec<(String, String)> = v["expected"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(v["also_acceptable"].as_array().into_iter().flatten())
            .map(|e| {
                (
                    e["source"].as_str().unwrap_or("").to_owned(),
                    e["entry_id"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let is_wanted =
            |h: &super::index::Hit| want.iter().any(|(s, id)| *s == h.source && *id == h.entry_id);
        let k = v["kind"].as_str().unwrap_or("").to_owned();
        let fold = usize::from(
            v["group"]
                .as_str()
                .unwrap_or("0")
                .as_bytes()
                .first()
                .is_some_and(|c| *c >= b'8'),
        );
        let f = &mut folds[fold];
        if positive {
            f[0] += usize::from(alert);
            f[2] += 1;
        } else {
            f[1] += usize::from(alert);
            f[3] += 1;
        }
        let ty = v["party_type"].as_str().unwrap_or("").to_owned();
        for tally in [
            by_kind.entry(k.clone()).or_default(),
            by_type
                .entry(format!("{ty}/{}", v["label"].as_str().unwrap_or("")))
                .or_default(),
        ] {
            tally.n += 1;
            tally.alerts += usize::from(alert);
        }
        if positive {
            pos += 1;
            tp += usize::from(alert);
            let ent_hit = hits.iter().any(|h| h.score >= thr && is_wanted(h));
            // Ties with other entries count against the query.
            let rank_ok = |k: usize| {
                hits.iter().take(k).any(&is_wanted)
                    && hits.get(k).is_none_or(|next| {
                        !hits
                            .iter()
                            .take(k)
                            .any(|h| is_wanted(h) && h.score == next.score && !is_wanted(next))
                    })
            };
            let (a1, a5) = (rank_ok(1), rank_ok(5));
            ent += usize::from(ent_hit);
            r1 += usize::from(a1);
            r5 += usize::from(a5);
            let t = by_kind.get_mut(&k).unwrap();
            t.entity += usize::from(ent_hit);
            t.at1 += usize::from(a1);
            t.at5 += usize::from(a5);
            if !alert {
                misses.push(format!(
                    "MISS {k}: {:?} best {:?}",
                    v["query"],
                    hits.first().map(|h| (&h.matched_name, h.score, &h.explanation))
                ));
            }
        } else {
            neg += 1;
            fp += usize::from(alert);
            if alert {
                misses.push(format!(
                    "FP {k}: {:?} -> {:?} {} {}",
                    v["query"], hits[0].matched_name, hits[0].score, hits[0].explanation
                ));
            }
        }
    }
    let precision = tp as f64 / (tp + fp).max(1) as f64;
    let recall = tp as f64 / pos.max(1) as f64;
    let f1 = 2.0 * precision * recall / (precision + recall).max(f64::EPSILON);
    let alert_rate = fp as f64 / neg.max(1) as f64;
    lat.sort();
    let pct = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize];
    if std::env::var("SCREENING_EVAL_VERBOSE").is_ok() {
        for m in &misses {
            println!("{m}");
        }
    }
    println!(
        "threshold {thr}: precision {precision:.4} recall {recall:.4} F1 {f1:.4} negatives alerting {:.2}% ({fp}/{neg})",
        alert_rate * 100.0
    );
    println!(
        "entity recall {:.4} recall@1 {:.4} recall@5 {:.4}",
        ent as f64 / pos as f64,
        r1 as f64 / pos as f64,
        r5 as f64 / pos as f64
    );
    println!(
        "latency per Screen (in-process, both lists): p50 {:?} p99 {:?}",
        pct(0.5),
        pct(0.99)
    );
    for (i, f) in folds.iter().enumerate() {
        let p = f[0] as f64 / (f[0] + f[1]).max(1) as f64;
        let r = f[0] as f64 / f[2].max(1) as f64;
        println!(
            "fold {i} (groups {}): precision {p:.4} recall {r:.4} F1 {:.4} negatives alerting {:.2}%",
            if i == 0 { "0-7" } else { "8-f" },
            2.0 * p * r / (p + r).max(f64::EPSILON),
            100.0 * f[1] as f64 / f[3].max(1) as f64
        );
    }
    println!("| threshold | precision | recall | F1 | negatives alerting |");
    for t in [0.70, 0.75, 0.78, 0.80, 0.82, 0.85, 0.90] {
        let tp = sweep.iter().filter(|(p, s)| *p && *s >= t).count() as f64;
        let fp = sweep.iter().filter(|(p, s)| !*p && *s >= t).count() as f64;
        let (pos, neg) = (pos as f64, neg as f64);
        let (pr, rc) = (tp / (tp + fp).max(1.0), tp / pos);
        println!(
            "| {t:.2} | {pr:.4} | {rc:.4} | {:.4} | {:.2}% |",
            2.0 * pr * rc / (pr + rc),
            100.0 * fp / neg
        );
    }
    println!("| kind | n | alerting | entity recall | recall@1 | recall@5 |");
    for (k, t) in &by_kind {
        println!(
            "| {k} | {} | {} ({:.1}%) | {} | {} | {} |",
            t.n,
            t.alerts,
            100.0 * t.alerts as f64 / t.n as f64,
            t.entity,
            t.at1,
            t.at5
        );
    }
    println!("| party type / label | n | alerting |");
    for (k, t) in &by_type {
        println!(
            "| {k} | {} | {} ({:.1}%) |",
            t.n,
            t.alerts,
            100.0 * t.alerts as f64 / t.n as f64
        );
    }
    // Floors well under the measured figures, so a regression fails loudly.
    assert!(f1 >= 0.90, "F1 {f1}");
    assert!(alert_rate <= 0.05, "alert rate {alert_rate}");
}
