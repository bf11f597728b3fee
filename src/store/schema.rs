//! diesel table definitions, one description for both backends (see
//! `migrations/README.md` for why the column types are what they are).

diesel::table! {
    audit_events (seq) {
        seq -> BigInt,
        id -> Text,
        at_us -> BigInt,
        actor -> Text,
        role -> Text,
        tenant_id -> Nullable<Text>,
        action -> Text,
        target -> Text,
        outcome -> Text,
        trace_id -> Text,
        detail -> Text,
        prev_digest -> Text,
        digest -> Text,
    }
}

diesel::table! {
    envelopes (seq) {
        seq -> BigInt,
        id -> Text,
        recipient -> Text,
        kind -> Text,
        payload -> Text,
        created_at_us -> BigInt,
        lease_until_us -> Nullable<BigInt>,
        delivery_count -> Integer,
        acked_at_us -> Nullable<BigInt>,
    }
}

diesel::table! {
    screening_list_versions (seq) {
        seq -> BigInt,
        source -> Text,
        version -> BigInt,
        sha256 -> Text,
        entries -> BigInt,
        added -> BigInt,
        removed -> BigInt,
        changed -> BigInt,
        imported_at_us -> BigInt,
        imported_by -> Text,
    }
}

diesel::table! {
    screening_entries (version_seq, entry_id) {
        version_seq -> BigInt,
        entry_id -> Text,
        digest -> Text,
        change -> Text,
        data -> Text,
    }
}

diesel::table! {
    screening_parties (party_ref) {
        party_ref -> Text,
        tenant_id -> Nullable<Text>,
        name -> Text,
        party_type -> Text,
        date_of_birth -> Text,
        country -> Text,
        aliases -> Text,
        updated_at_us -> BigInt,
    }
}

diesel::table! {
    screening_cases (seq) {
        seq -> BigInt,
        id -> Text,
        party_ref -> Text,
        tenant_id -> Nullable<Text>,
        status -> Text,
        hits -> Text,
        opened_at_us -> BigInt,
        opened_by -> Text,
        resolved_at_us -> Nullable<BigInt>,
        resolved_by -> Nullable<Text>,
        note -> Text,
    }
}

diesel::table! {
    screening_clearances (party_ref, source, entry_id) {
        party_ref -> Text,
        source -> Text,
        entry_id -> Text,
        digest -> Text,
        case_id -> Text,
        cleared_at_us -> BigInt,
    }
}

diesel::joinable!(screening_entries -> screening_list_versions (version_seq));
diesel::allow_tables_to_appear_in_same_query!(screening_entries, screening_list_versions);
