//! What a screening outcome does beyond its case: the sub-processor gate
//! (a sub-processor becomes ACTIVE only once its legal name screened clear
//! or its case was cleared; a confirmed match makes it BLOCKED) and the
//! tenant block (a tenant with a confirmed match is denied in
//! `CheckProcessing`). Every function runs in the caller's transaction, so
//! a case, its effect and their audit events commit together.

use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::pipeline::Tx;
use crate::db::schema::sub_processors::dsl as sp;
use crate::error::Result;
use crate::screening::cases::{CaseStatus, Outcome, PartyOf, party_of, sub_processor_ref};
use crate::screening::index::Hit;
use crate::screening::model::EntityKind;
use crate::screening::repo as st;
use crate::screening::repo::PartyRow;
use crate::secrets::KeyRing;
use crate::subprocessors::model::Screening;
use crate::subprocessors::repo as subprocessors;

/// A sub-processor as the screening gate sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubProcessorParty {
    /// Registry id.
    pub id: String,
    /// The legal name screened.
    pub legal_name: String,
    /// ISO 3166-1 country of establishment (agreement moves the score).
    pub country: String,
}

impl SubProcessorParty {
    /// The registered screening party for this sub-processor.
    fn row(&self) -> PartyRow {
        PartyRow {
            party_ref: sub_processor_ref(&self.id),
            tenant_id: None,
            name: self.legal_name.clone(),
            party_type: EntityKind::Organization.as_str().to_owned(),
            date_of_birth: String::new(),
            country: self.country.clone(),
            aliases: "[]".to_owned(),
            identifiers: Vec::new(),
            updated_at_us: 0,
        }
    }

    /// The query a screening of this sub-processor runs.
    pub fn query(&self) -> crate::screening::index::Query {
        self.row().query()
    }
}

/// What settling a sub-processor's screening concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// The gate's state now.
    pub screening: Screening,
    /// True when this screening opened a review case.
    pub opened_case: bool,
}

/// Screens a sub-processor's legal name with `hits` (None: no list is
/// loaded yet, so nothing can be called clear) and records the party, any
/// case and the gate state. The sub-processor row may not exist yet (a
/// registration settles its gate before inserting it); when it does, its
/// state is updated and every tenant's decisions recompiled.
pub fn settle_sub_processor(
    tx: &mut Tx<'_>,
    ring: &KeyRing,
    party: &SubProcessorParty,
    hits: Option<&[Hit]>,
    threshold: f64,
) -> Result<Settled> {
    let party_ref = sub_processor_ref(&party.id);
    let had_case = st::pending_case(tx.conn(), &party_ref)?;
    let rec = crate::screening::service::record_in(tx, ring, party.row(), hits.unwrap_or(&[]), threshold)?;
    let screening = match rec.outcome {
        Outcome::ConfirmedMatch => Screening::Confirmed,
        // A case still under review keeps the gate closed whatever this
        // screening found.
        _ if had_case.is_some() => Screening::Pending,
        Outcome::Clear if hits.is_some() => Screening::Clear,
        Outcome::Clear | Outcome::PossibleMatch => Screening::Pending,
    };
    let opened_case = rec.case_id.is_some() && had_case.is_none() && rec.outcome == Outcome::PossibleMatch;
    set_gate(tx, &party.id, screening)?;
    Ok(Settled {
        screening,
        opened_case,
    })
}

/// Moves a registered sub-processor's gate to `to` when it differs,
/// auditing the move; an id not in the registry (yet) is left alone.
fn set_gate(tx: &mut Tx<'_>, id: &str, to: Screening) -> Result<()> {
    let current: Option<String> = sp::sub_processors
        .filter(sp::id.eq(id))
        .select(sp::screening)
        .first(tx.conn())
        .optional()?;
    let Some(current) = current else {
        return Ok(());
    };
    if Screening::parse(&current) == to {
        return Ok(());
    }
    let now = tx.now();
    subprocessors::record_screening(tx.conn(), now, id, to)?;
    tx.note_all_decisions_changed();
    let detail = serde_json::json!({ "from": current, "to": to.as_str() }).to_string();
    tx.audit(
        "sub_processor.screening",
        &format!("sub_processor/{id}"),
        None,
        &detail,
    )
}

/// Sub-processors whose gate still waits for a first screening (and no
/// case): what a new list version screens in full.
pub fn pending_sub_processors(conn: &mut DbConnection) -> Result<Vec<SubProcessorParty>> {
    let rows: Vec<(String, String, String)> = sp::sub_processors
        .filter(sp::screening.eq(Screening::Pending.as_str()))
        .order(sp::seq.asc())
        .select((sp::id, sp::legal_name, sp::country))
        .load(conn)?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, legal_name, country) in rows {
        if st::pending_case(conn, &sub_processor_ref(&id))?.is_none() {
            out.push(SubProcessorParty {
                id,
                legal_name,
                country,
            });
        }
    }
    Ok(out)
}

/// The party a re-screening uses for `party`: a sub-processor is always
/// screened under its registry legal name and country, whatever the stored
/// party row says, so a row written by anyone but the registry can never
/// stand in for the real name. Other parties are returned as they are.
pub fn registry_party(conn: &mut DbConnection, party: PartyRow) -> Result<PartyRow> {
    let PartyOf::SubProcessor(id) = party_of(&party.party_ref) else {
        return Ok(party);
    };
    let found: Option<(String, String)> = sp::sub_processors
        .filter(sp::id.eq(id))
        .select((sp::legal_name, sp::country))
        .first(conn)
        .optional()?;
    Ok(match found {
        Some((legal_name, country)) => SubProcessorParty {
            id: id.to_owned(),
            legal_name,
            country,
        }
        .row(),
        None => party,
    })
}

/// Applies a case resolution to what its party is: a sub-processor's gate
/// opens (cleared) or it is BLOCKED (confirmed); a tenant's decisions are
/// recompiled so a confirmed match denies its processing on every replica.
pub fn apply_resolution(tx: &mut Tx<'_>, party_ref: &str, resolution: CaseStatus) -> Result<()> {
    match party_of(party_ref) {
        PartyOf::SubProcessor(id) => {
            let to = match resolution {
                CaseStatus::Confirmed => Screening::Confirmed,
                CaseStatus::Cleared => Screening::Clear,
                CaseStatus::Open | CaseStatus::Answered => return Ok(()),
            };
            set_gate(tx, id, to)
        }
        PartyOf::Tenant(t) if resolution == CaseStatus::Confirmed => tx.decisions_changed(t),
        _ => Ok(()),
    }
}
