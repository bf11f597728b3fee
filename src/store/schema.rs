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
