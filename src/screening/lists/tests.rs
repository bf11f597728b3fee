//! Every parser on the real list files in `tests/fixtures/sanctions`.

use super::*;
use crate::screening::model::EntityKind;

fn fixture(rel: &str) -> ListFile {
    let path = format!("{}/tests/fixtures/sanctions/{rel}", env!("CARGO_MANIFEST_DIR"));
    ListFile {
        name: rel.rsplit('/').next().unwrap_or(rel).to_owned(),
        data: std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}")),
    }
}

fn find<'a>(v: &'a [ListEntry], id: &str) -> &'a ListEntry {
    v.iter()
        .find(|e| e.id == id)
        .unwrap_or_else(|| panic!("no entry {id}"))
}

#[test]
fn ofac_sdn_full_set() {
    let dir = "ofac/sdn_2021-07";
    let files: Vec<ListFile> = ["sdn.csv", "alt.csv", "add.csv", "sdn_comments.csv"]
        .iter()
        .map(|f| fixture(&format!("{dir}/{f}")))
        .collect();
    let v = parse("ofac_sdn", &files).unwrap();
    assert_eq!(v.len(), 8976);
    let bnc = find(&v, "306");
    assert_eq!(bnc.primary_name, "BANCO NACIONAL DE CUBA");
    assert_eq!(bnc.kind, EntityKind::Organization);
    assert!(
        bnc.aliases.iter().any(|a| a.name == "BNC" && a.weak),
        "{:?}",
        bnc.aliases
    );
    assert!(bnc.programs.contains(&"CUBA".to_owned()));
    assert!(v.iter().any(|e| e.kind == EntityKind::Vessel));
    assert!(
        v.iter()
            .any(|e| e.kind == EntityKind::Individual && !e.dates_of_birth.is_empty())
    );
    assert!(v.iter().map(|e| e.aliases.len()).sum::<usize>() > 11_000);
}

#[test]
fn ofac_small_fixture_lifts_remarks() {
    let files: Vec<ListFile> = ["sdn.csv", "alt.csv", "add.csv", "sdn_comments.csv"]
        .iter()
        .map(|f| fixture(&format!("ofac/fixture_small/{f}")))
        .collect();
    let v = parse("ofac_sdn", &files).unwrap();
    assert_eq!(v.len(), 17);
    assert_eq!(find(&v, "47371").kind, EntityKind::Vessel);
    assert_eq!(find(&v, "48727").kind, EntityKind::Aircraft);
    assert!(
        v.iter()
            .any(|e| e.identifiers.iter().any(|i| i.kind == "Passport"))
    );
}

#[test]
fn ofac_consolidated() {
    let files: Vec<ListFile> = [
        "cons_prim.csv",
        "cons_alt.csv",
        "cons_add.csv",
        "cons_comments.csv",
    ]
    .iter()
    .map(|f| fixture(&format!("ofac_non_sdn_consolidated/{f}")))
    .collect();
    let v = parse("ofac_cons", &files).unwrap();
    assert_eq!(v.len(), 442);
    assert_eq!(find(&v, "9639").primary_name, "HANIYA, Ismail Abdul Salah");
}

#[test]
fn un_consolidated() {
    let v = parse("un_sc", &[fixture("un/UN_consolidated.xml")]).unwrap();
    assert_eq!(v.len(), 730 + 273);
    let e = find(&v, "CDi.002");
    assert_eq!(e.primary_name, "FRANK KAKOLELE BWAMBALE");
    assert!(e.aliases.iter().any(|a| a.name == "AIGLE BLANC"));
    assert!(v.iter().any(|e| e.aliases.iter().any(|a| a.weak)));
    assert!(
        v.iter().any(|e| e.aliases.iter().any(|a| !a.name.is_ascii())),
        "original script"
    );
    assert_eq!(find(&v, "CDi.001").dates_of_birth, ["1971"]);
    assert_eq!(find(&v, "CDe.001").kind, EntityKind::Organization);
}

#[test]
fn eu_fsf() {
    let v = parse("eu_fsf", &[fixture("eu/fsf_1_1_excerpt_2026-08-05.xml")]).unwrap();
    let ids: Vec<&str> = v.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        ["13", "191", "330", "980"],
        "the synthetic nameless record is dropped"
    );
    let ksm = find(&v, "191");
    assert_eq!(ksm.kind, EntityKind::Individual);
    assert!(ksm.dates_of_birth.len() >= 2);
    assert!(ksm.identifiers.iter().any(|i| !i.value.is_empty()));
    assert!(
        find(&v, "330").aliases.iter().any(|a| !a.name.is_ascii()),
        "Bulgarian Cyrillic alias"
    );
}

#[test]
fn uk_fcdo() {
    let v = parse(
        "uk_fcdo",
        &[fixture("uk/uk_sanctions_list_fcdo_excerpt_2026-08-14.xml")],
    )
    .unwrap();
    let ids: Vec<&str> = v.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["AFG0011", "AQD0128", "AQD0377", "DPR0075"]);
    let a = find(&v, "AFG0011");
    assert_eq!(a.primary_name, "ABDUL LATIF MANSUR");
    assert!(a.aliases.iter().any(|x| x.name == "عبد اللطيف منصور"));
    assert_eq!(
        a.dates_of_birth
            .iter()
            .filter(|d| d.as_str() == "12/11/1967")
            .count(),
        1
    );
    assert!(a.identifiers.iter().any(|i| i.value == "D0009720"));
    assert!(
        !find(&v, "AQD0128").primary_name.is_empty(),
        "lower-case NameType"
    );
    assert_eq!(find(&v, "DPR0075").kind, EntityKind::Vessel);
    assert!(find(&v, "DPR0075").identifiers.iter().any(|i| i.kind == "IMO"));
}

#[test]
fn ch_seco_drops_delisted() {
    let v = parse(
        "ch_seco",
        &[fixture("ch/seco_swiss_sanctions_list_excerpt_2026-08-15.xml")],
    )
    .unwrap();
    let ids: Vec<&str> = v.iter().map(|e| e.id.as_str()).collect();
    assert!(
        !ids.contains(&"5142") && !ids.contains(&"5374") && !ids.contains(&"5816"),
        "{ids:?}"
    );
    for id in ["44348", "85396", "34461", "52941"] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    assert!(
        find(&v, "44348").aliases.iter().any(|a| !a.name.is_ascii()),
        "Cyrillic spelling variants become aliases"
    );
}

#[test]
fn us_csl_both_layouts() {
    let v = parse("us_csl", &[fixture("us_csl/csl.csv")]).unwrap();
    assert_eq!(v.len(), 115);
    let v2 = parse("us_csl", &[fixture("us_csl/consolidated.csv")]).unwrap();
    assert_eq!(v2.len(), 13);
    assert!(v2.iter().any(|e| e.primary_name.starts_with("Sinobright")));
}

#[test]
fn bis_dpl() {
    let v = parse("us_dpl", &[fixture("us_bis_dpl/dpl.txt")]).unwrap();
    // 581 rows; four pairs share name, street and order date: two identical
    // rows and two denial orders with an address added in another country.
    // Each pair is one denied party, one entry with both countries.
    assert_eq!(v.len(), 577);
    let merged = v
        .iter()
        .filter(|e| e.primary_name.ends_with("ALI M HIJAZI") || e.primary_name.ends_with("ALI HIJAZI"))
        .filter(|e| e.countries.len() == 2)
        .count();
    assert_eq!(merged, 2, "both added-address orders carry CH and FR");
    // Ids are stable digests: parsing again gives the same ids.
    let again = parse("us_dpl", &[fixture("us_bis_dpl/dpl.txt")]).unwrap();
    assert_eq!(v, again);
}

#[test]
fn malformed_files_name_the_place() {
    let bad_csv = ListFile {
        name: "sdn.csv".into(),
        data: b"36,\"AEROCARIBBEAN\",-0- ,\"CUBA\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \n37,\"SHORT\"\n"
            .to_vec(),
    };
    let e = parse("ofac_sdn", &[bad_csv]).unwrap_err();
    assert_eq!(e.file, "sdn.csv");
    assert_eq!(e.location, "line 2");
    let bad_id = ListFile {
        name: "sdn.csv".into(),
        data: b"x1,\"A\",-0- ,\"CUBA\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \n".to_vec(),
    };
    assert!(
        parse("ofac_sdn", &[bad_id])
            .unwrap_err()
            .message
            .contains("ent_num")
    );
    let mut xml = fixture("un/UN_consolidated.xml");
    let cut = xml.data.len() / 2;
    xml.data.truncate(cut);
    xml.data.extend_from_slice(b"</WRONG>");
    let e = parse("un_sc", &[xml]).unwrap_err();
    assert!(e.location.starts_with("line "), "{e}");
    assert!(
        e.message.contains("malformed XML") || e.message.contains("end of file"),
        "{e}"
    );
    let orphan_alt = vec![
        ListFile {
            name: "sdn.csv".into(),
            data: b"36,\"A B\",-0- ,\"CUBA\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \n".to_vec(),
        },
        ListFile {
            name: "alt.csv".into(),
            data: b"99,1,\"aka\",\"X\",-0- \n".to_vec(),
        },
    ];
    assert_eq!(parse("ofac_sdn", &orphan_alt).unwrap()[0].aliases.len(), 0);
    let short_alt = vec![
        orphan_alt[0].clone(),
        ListFile {
            name: "alt.csv".into(),
            data: b"36,1,\"aka\"\n".to_vec(),
        },
    ];
    let e = parse("ofac_sdn", &short_alt).unwrap_err();
    assert_eq!((e.file.as_str(), e.location.as_str()), ("alt.csv", "line 1"));
    assert!(parse("nope", &[]).is_err());
}

#[test]
fn crlf_files_report_the_right_line() {
    let row = "36,\"A B\",-0- ,\"CUBA\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \r\n";
    let data = format!("{row}{}37,\"SHORT\"\r\n", row.replacen("36", "35", 1));
    let e = parse(
        "ofac_sdn",
        &[ListFile {
            name: "sdn.csv".into(),
            data: data.into_bytes(),
        }],
    )
    .unwrap_err();
    assert_eq!(e.location, "line 3", "{e}");
}

fn fixture_small_csv() -> Vec<ListEntry> {
    let files: Vec<ListFile> = ["sdn.csv", "alt.csv", "add.csv", "sdn_comments.csv"]
        .iter()
        .map(|f| fixture(&format!("ofac/fixture_small/{f}")))
        .collect();
    parse("ofac_sdn", &files).unwrap()
}

#[test]
fn ofac_sdn_xml_reads_like_the_csv_set() {
    let xml = parse("ofac_sdn", &[fixture("ofac/fixture_small_xml/sdn.xml")]).unwrap();
    let csv = fixture_small_csv();
    assert_eq!(xml.len(), 17);
    let ids = |v: &[ListEntry]| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&xml), ids(&csv));
    for (x, c) in xml.iter().zip(&csv) {
        assert_eq!(x.kind, c.kind, "{}", x.id);
        assert_eq!(x.primary_name, c.primary_name, "{}", x.id);
        assert_eq!(x.programs, c.programs, "{}", x.id);
        assert_eq!(x.birth_years(), c.birth_years(), "{}", x.id);
        let names = |e: &ListEntry| {
            let mut v: Vec<(String, bool)> = e
                .aliases
                .iter()
                .map(|a| (a.name.to_uppercase(), a.weak))
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(x), names(c), "{}", x.id);
    }
    let morey = find(&xml, "10278");
    assert_eq!(morey.primary_name, "LOGAN MOREY, Elvis Angus");
    assert_eq!(morey.kind, EntityKind::Individual);
    assert!(morey.aliases.iter().any(|a| a.name == "BURTON BURGESS" && a.weak));
    assert!(
        morey
            .identifiers
            .iter()
            .any(|i| i.kind == "Passport" && i.value == "P0017003")
    );
    let tanker = find(&xml, "47371");
    assert_eq!(tanker.kind, EntityKind::Vessel);
    assert!(tanker.countries.contains(&"Gabon".to_owned()));
    // The same entries from either format have the same content digest
    // where both carry the same fields, so the names and ids diff alike.
    assert_eq!(
        find(&xml, "11195").programs,
        ["NPWMD", "IFSR", "IRAN-CON-ARMS-EO"]
    );
}

#[test]
fn ofac_sdn_xml_refusals_name_the_element() {
    let bad = |body: &str| {
        parse(
            "ofac_sdn",
            &[ListFile {
                name: "sdn.xml".into(),
                data: body.as_bytes().to_vec(),
            }],
        )
        .unwrap_err()
    };
    let e = bad("<sdnList><sdnEntry><uid>x1</uid><lastName>A</lastName></sdnEntry></sdnList>");
    assert!(
        e.location.contains("sdnEntry") && e.message.contains("uid"),
        "{e}"
    );
    let e = bad("<sdnList><sdnEntry><uid>1</uid><sdnType>Entity</sdnType></sdnEntry></sdnList>");
    assert!(e.message.contains("lastName"), "{e}");
    let e = bad(
        "<sdnList><sdnEntry><uid>1</uid><lastName>A</lastName><sdnType>Planet</sdnType></sdnEntry></sdnList>",
    );
    assert!(e.message.contains("planet"), "{e}");
    let e = bad(
        "<sdnList><sdnEntry><uid>1</uid><lastName>A</lastName></sdnEntry>\n<sdnEntry><uid>1</uid><lastName>B</lastName></sdnEntry></sdnList>",
    );
    assert!(e.message.contains("duplicate uid 1"), "{e}");
    let e = bad("<sdnList><sdnEntry><uid>1</uid>\n<lastName>A</lastName>");
    assert!(e.location.starts_with("line"), "{e}");
    let e = bad("<CONSOLIDATED_LIST/>");
    assert!(e.message.contains("sdnList"), "{e}");
    let e = bad("<sdnList></sdnList>");
    assert!(e.message.contains("no <sdnEntry>"), "{e}");
}

#[test]
fn lines_count_from_one_and_give_a_break_to_the_record_after_it() {
    let data = b"a,b\r\nc,d\n\ne,f";
    let lines = super::Lines::new(data);
    assert_eq!(lines.at(0), 1);
    assert_eq!(lines.at(2), 1);
    // A record reported as starting on the break before it is on the next line.
    assert_eq!(lines.at(3), 2);
    assert_eq!(lines.at(5), 2);
    assert_eq!(lines.at(9), 4);
    assert_eq!(lines.at(12), 4);
    assert_eq!(lines.at(u64::MAX), 4);
    assert_eq!(super::Lines::new(b"").at(0), 1);
}

#[test]
fn a_wrong_source_for_the_file_is_named_without_its_content() {
    let file = |name: &str, data: &str| ListFile {
        name: name.into(),
        data: data.as_bytes().to_vec(),
    };
    let csv = file("sdn.csv", "36,\"AEROCARIBBEAN AIRLINES\",-0- ,\"CUBA\"\n");
    let eu = file(
        "fsf.xml",
        "<?xml version=\"1.0\"?>\n<!-- comment -->\n<export><sanctionEntity>SECRET NAME</sanctionEntity></export>",
    );
    let cases = [
        (
            "eu_fsf",
            &csv,
            "source eu_fsf expects the EU financial sanctions (FSF) XML export (root <export>); sdn.csv is not XML",
        ),
        (
            "ofac_sdn",
            &eu,
            "source ofac_sdn expects the OFAC CSV set (sdn.csv alt.csv add.csv sdn_comments.csv) or its XML file (root <sdnList>); fsf.xml is XML (root <export>), another list",
        ),
        (
            "un_sc",
            &eu,
            "source un_sc expects the UN Security Council consolidated list XML (root <CONSOLIDATED_LIST>); fsf.xml is XML with root <export>, another list",
        ),
        (
            "us_csl",
            &eu,
            "source us_csl expects the US Consolidated Screening List CSV; fsf.xml is XML (root <export>), another list",
        ),
    ];
    for (source, f, want) in cases {
        let e = parse(source, std::slice::from_ref(f)).unwrap_err();
        assert_eq!(e.message, want, "{source}");
        let text = e.to_string();
        assert!(
            !text.contains("AEROCARIBBEAN") && !text.contains("SECRET NAME"),
            "{text}"
        );
    }
}

fn csl_rows(rows: impl Iterator<Item = String>) -> ListFile {
    let mut data = String::from("_id,source,type,programs,name,alt_names,citizenships\n");
    for r in rows {
        data.push_str(&r);
        data.push('\n');
    }
    ListFile {
        name: "csl.csv".into(),
        data: data.into_bytes(),
    }
}

#[test]
fn duplicate_ids_merge_into_one_entry() {
    // Each duplicate used to probe every earlier `id#n` (8,000 identical
    // rows took 9 s). The parse time is a benchmark's business
    // (`cargo bench --bench list_parse`), not a timed test's on shared
    // cores; this checks the merge itself, at a size where a quadratic
    // merge would stand out in the suite's duration.
    let n = 20_000;
    let same = csl_rows((0..n).map(|_| "x1,SDN,Individual,SDGT,IVAN PETROV,VANYA PETROV,RU".to_owned()));
    let v = parse("us_csl", &[same]).unwrap();
    assert_eq!(v.len(), 1, "one listed party, one entry");
    assert_eq!(v[0].id, "x1");
    assert_eq!(v[0].aliases.len(), 1);
    assert_eq!(v[0].countries, ["RU"]);

    // Distinct values under one id grow the one entry.
    let varied =
        csl_rows((0..n).map(|i| format!("x1,SDN,Individual,P{},NAME {i},ALIAS {i},C{}", i % 3, i % 5)));
    let v = parse("us_csl", &[varied]).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].primary_name, "NAME 0");
    // Every other row's primary name and every alias, each once.
    assert_eq!(v[0].aliases.len(), 2 * n - 1);
    assert_eq!(v[0].programs, ["P0", "P1", "P2"]);
    assert_eq!(v[0].countries.len(), 5);
}

#[test]
fn merged_names_ignore_ascii_case_and_keep_their_first_spelling() {
    let f = csl_rows(
        [
            "a,SDN,Individual,SDGT,Ivan Petrov,,",
            "a,SDN,Individual,SDGT,IVAN PETROV,Vanya;vanya,",
            "b,SDN,Individual,SDGT,Other Person,,",
        ]
        .into_iter()
        .map(str::to_owned),
    );
    let v = parse("us_csl", &[f]).unwrap();
    assert_eq!(v.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(v[0].primary_name, "Ivan Petrov");
    assert_eq!(
        v[0].aliases.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["Vanya"]
    );
}

#[test]
fn the_row_cap_stops_the_parse() {
    let f = csl_rows((0..11).map(|i| format!("id{i},SDN,Individual,SDGT,NAME {i},,")));
    let budget = Budget {
        max_rows: 10,
        ..Budget::unlimited()
    };
    let e = parse_within("us_csl", std::slice::from_ref(&f), &budget).unwrap_err();
    assert_eq!(e.location, "line 12", "{e}");
    assert!(e.message.contains("more than 10 rows"), "{e}");
    let enough = Budget {
        max_rows: 11,
        ..Budget::unlimited()
    };
    assert_eq!(parse_within("us_csl", &[f], &enough).unwrap().len(), 11);
    // XML formats count entries.
    let xml = fixture("un/UN_consolidated.xml");
    let e = parse_within("un_sc", &[xml], &budget).unwrap_err();
    assert!(e.message.contains("more than 10 entries"), "{e}");
}

#[test]
fn a_cancelled_parse_stops() {
    let budget = Budget::unlimited();
    budget.cancelled.store(true, std::sync::atomic::Ordering::Relaxed);
    let csv = csl_rows((0..5).map(|i| format!("id{i},SDN,Individual,SDGT,NAME {i},,")));
    let e = parse_within("us_csl", &[csv], &budget).unwrap_err();
    assert_eq!(e.message, CANCELLED);
    let xml = fixture("un/UN_consolidated.xml");
    assert_eq!(
        parse_within("un_sc", &[xml], &budget).unwrap_err().message,
        CANCELLED
    );
    let ofac = ["sdn.csv", "alt.csv", "add.csv"].map(|n| fixture(&format!("ofac/fixture_small/{n}")));
    assert_eq!(
        parse_within("ofac_sdn", &ofac, &budget).unwrap_err().message,
        CANCELLED
    );
    // The budget belongs to one parse: the next, unbudgeted one is whole.
    assert!(parse("ofac_sdn", &ofac).is_ok());
}

#[test]
fn identifiers_are_typed_from_every_list_that_carries_them() {
    use crate::screening::identifiers::{IdentifierType as T, TypedIdentifier};
    fn has(e: &ListEntry, t: T, value: &str) -> Option<TypedIdentifier> {
        e.typed_identifiers()
            .into_iter()
            .find(|i| i.id_type == t && i.value == value)
    }
    // OFAC CSV remarks: vessels, banks, passports with their country.
    let dir = "ofac/sdn_2021-07";
    let files: Vec<ListFile> = ["sdn.csv", "alt.csv", "add.csv", "sdn_comments.csv"]
        .iter()
        .map(|f| fixture(&format!("{dir}/{f}")))
        .collect();
    let v = parse("ofac_sdn", &files).unwrap();
    let ark = find(&v, "15037");
    assert!(has(ark, T::Imo, "9187655").is_some(), "{:?}", ark.identifiers);
    assert!(has(ark, T::Mmsi, "256842000").is_some());
    assert!(has(find(&v, "906"), T::Bic, "HAVIGB2L").is_some());
    assert!(has(find(&v, "18150"), T::AircraftRegistration, "EPMMH").is_some());
    let with_country = v
        .iter()
        .flat_map(|e| e.typed_identifiers())
        .filter(|i| i.id_type == T::Passport && !i.country.is_empty())
        .count();
    assert!(with_country > 100, "{with_country}");
    // OFAC XML id lists.
    let x = parse("ofac_sdn", &[fixture("ofac/fixture_small_xml/sdn.xml")]).unwrap();
    let p = x
        .iter()
        .flat_map(|e| e.typed_identifiers())
        .find(|i| i.value == "P0017003")
        .expect("passport from <idList>");
    assert_eq!((p.id_type, p.country.as_str()), (T::Passport, "Belize"));
    // UN documents, with the issuing country.
    let un = parse("un_sc", &[fixture("un/UN_consolidated.xml")]).unwrap();
    let p = un
        .iter()
        .flat_map(|e| e.typed_identifiers())
        .find(|i| i.value == "OB0243318")
        .expect("UN passport");
    assert_eq!(
        (p.id_type, p.country.as_str()),
        (T::Passport, "Democratic Republic of the Congo")
    );
    assert!(
        un.iter()
            .flat_map(|e| e.typed_identifiers())
            .any(|i| i.id_type == T::NationalId)
    );
    // EU identifications.
    let eu = parse("eu_fsf", &[fixture("eu/fsf_1_1_excerpt_2026-08-05.xml")]).unwrap();
    assert!(
        eu.iter()
            .flat_map(|e| e.typed_identifiers())
            .any(|i| i.id_type == T::Passport && i.value == "488555")
    );
    // UK IMO numbers.
    let uk = parse(
        "uk_fcdo",
        &[fixture("uk/uk_sanctions_list_fcdo_excerpt_2026-08-14.xml")],
    )
    .unwrap();
    assert!(has(find(&uk, "DPR0075"), T::Imo, "9562233").is_some());
    // SECO documents by type and issuer, and vessels' IMO numbers.
    let ch = parse(
        "ch_seco",
        &[fixture("ch/seco_swiss_sanctions_list_excerpt_2026-08-15.xml")],
    )
    .unwrap();
    let z = find(&ch, "85396");
    let p = has(z, T::Passport, "BM2229283").expect("SECO passport");
    assert_eq!(p.country, "Belarus");
    assert!(has(z, T::NationalId, "3070574E057PB8").is_some());
    assert!(has(find(&ch, "34461"), T::Imo, "8405270").is_some());
}
