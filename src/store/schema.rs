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
    taxonomy (kind, key) {
        kind -> Text,
        key -> Text,
        description -> Text,
        created_at_us -> BigInt,
    }
}

diesel::table! {
    instruction_versions (tenant_id, version) {
        tenant_id -> Text,
        version -> BigInt,
        created_at_us -> BigInt,
        author -> Text,
        reason -> Text,
        body -> Text,
    }
}

diesel::table! {
    tenants (tenant_id) {
        tenant_id -> Text,
        terminated_at_us -> Nullable<BigInt>,
        termination_reason -> Nullable<Text>,
        erasure_due_at_us -> Nullable<BigInt>,
        updated_at_us -> BigInt,
    }
}

diesel::table! {
    decision_changes (seq) {
        seq -> BigInt,
        tenant_id -> Text,
        at_us -> BigInt,
    }
}
