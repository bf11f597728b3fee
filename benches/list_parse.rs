//! How long an import spends parsing list files, per source, against a
//! baseline measured in the same run: reading the same bytes with the
//! `csv` crate or the XML reader alone, which no parser of those formats
//! can beat. The ratio is what the parser adds (fields, remarks, aliases).
//!
//! `cargo bench --bench list_parse`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use proctor::screening::lists::{ListFile, parse};

fn file(rel: &str) -> ListFile {
    let path = format!("{}/tests/fixtures/sanctions/{rel}", env!("CARGO_MANIFEST_DIR"));
    ListFile {
        name: rel.rsplit('/').next().unwrap().to_owned(),
        data: std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
    }
}

/// The floor: every CSV record read, nothing kept.
fn csv_records(files: &[ListFile], delimiter: u8) -> usize {
    files
        .iter()
        .map(|f| {
            csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .delimiter(delimiter)
                .from_reader(f.data.as_slice())
                .byte_records()
                .filter_map(Result::ok)
                .count()
        })
        .sum()
}

/// The floor: every XML event read, nothing kept.
fn xml_events(files: &[ListFile]) -> usize {
    files
        .iter()
        .map(|f| {
            let mut r = quick_xml::Reader::from_reader(f.data.as_slice());
            let mut buf = Vec::new();
            let mut n = 0;
            loop {
                match r.read_event_into(&mut buf) {
                    Ok(quick_xml::events::Event::Eof) | Err(_) => break n,
                    Ok(_) => n += 1,
                }
                buf.clear();
            }
        })
        .sum()
}

fn bench(c: &mut Criterion) {
    let ofac: Vec<ListFile> = ["sdn.csv", "alt.csv", "add.csv", "sdn_comments.csv"]
        .iter()
        .map(|f| file(&format!("ofac/sdn_2021-07/{f}")))
        .collect();
    let un = vec![file("un/UN_consolidated.xml")];
    let csl = vec![file("us_csl/csl.csv")];

    let mut g = c.benchmark_group("list_parse");
    g.sample_size(10);
    g.bench_function("ofac_sdn 2021-07: csv records only (baseline)", |b| {
        b.iter(|| black_box(csv_records(&ofac, b',')))
    });
    g.bench_function("ofac_sdn 2021-07: parse", |b| {
        b.iter(|| black_box(parse("ofac_sdn", &ofac).unwrap().len()))
    });
    g.bench_function("un_sc: xml events only (baseline)", |b| {
        b.iter(|| black_box(xml_events(&un)))
    });
    g.bench_function("un_sc: parse", |b| {
        b.iter(|| black_box(parse("un_sc", &un).unwrap().len()))
    });
    g.bench_function("us_csl: csv records only (baseline)", |b| {
        b.iter(|| black_box(csv_records(&csl, b',')))
    });
    g.bench_function("us_csl: parse", |b| {
        b.iter(|| black_box(parse("us_csl", &csl).unwrap().len()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
