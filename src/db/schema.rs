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
        leaf_index -> Nullable<BigInt>,
    }
}

diesel::table! {
    audit_tree_hashes (idx) {
        idx -> BigInt,
        hash -> Binary,
    }
}

diesel::table! {
    audit_checkpoints (tree_size) {
        tree_size -> BigInt,
        root_hash -> Binary,
        note -> Text,
        signed_at_us -> BigInt,
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
        erasure_requested_at_us -> Nullable<BigInt>,
    }
}

diesel::table! {
    decision_changes (seq) {
        seq -> BigInt,
        tenant_id -> Text,
        at_us -> BigInt,
        ord -> Nullable<BigInt>,
    }
}

diesel::table! {
    breaches (seq) {
        seq -> BigInt,
        id -> Text,
        nature -> Text,
        categories -> Text,
        approx_subjects -> BigInt,
        approx_records -> BigInt,
        likely_consequences -> Text,
        measures -> Text,
        contact_point -> Text,
        systems -> Text,
        became_aware_at_us -> BigInt,
        authority_deadline_us -> BigInt,
        status -> Text,
        notified_at_us -> Nullable<BigInt>,
        reference -> Text,
        not_required_justification -> Text,
        delay_reasons -> Text,
        created_at_us -> BigInt,
        updated_at_us -> BigInt,
        nature_sealed -> Nullable<Text>,
        nature_key_id -> Nullable<Text>,
        contact_point_sealed -> Nullable<Text>,
        contact_point_key_id -> Nullable<Text>,
    }
}

diesel::table! {
    breach_tenants (breach_id, tenant_id) {
        breach_id -> Text,
        tenant_id -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(breaches, breach_tenants);

diesel::table! {
    subject_requests (seq) {
        seq -> BigInt,
        id -> Text,
        tenant_id -> Text,
        origin -> Text,
        request_type -> Text,
        status -> Text,
        regime -> Text,
        channel -> Text,
        idempotency_key -> Text,
        body_digest -> Text,
        subject_ref -> Nullable<Text>,
        subject_sealed -> Nullable<Text>,
        subject_key_id -> Nullable<Text>,
        categories -> Text,
        received_at_us -> BigInt,
        due_at_us -> BigInt,
        sla_due_at_us -> BigInt,
        extended -> Bool,
        extension_reason -> Nullable<Text>,
        receipt_issued_at_us -> BigInt,
        receipt_signature -> Text,
        receipt_key_id -> Text,
        created_at_us -> BigInt,
        updated_at_us -> BigInt,
        closed_at_us -> Nullable<BigInt>,
        version -> BigInt,
        export_downloaded_at_us -> Nullable<BigInt>,
        export_deleted_at_us -> Nullable<BigInt>,
        close_reason -> Nullable<Text>,
        rejection_ground -> Nullable<Text>,
        reasons_sealed -> Nullable<Text>,
        reasons_key_id -> Nullable<Text>,
    }
}

diesel::table! {
    subject_deletion_confirmations (tenant_id, sub_processor_id) {
        tenant_id -> Text,
        sub_processor_id -> Text,
        confirmed_at_us -> BigInt,
        reference -> Text,
        recorded_by -> Text,
        recorded_at_us -> BigInt,
    }
}

diesel::table! {
    subject_artifacts (id) {
        id -> Text,
        task_id -> Text,
        request_id -> Text,
        system -> Text,
        file_name -> Text,
        content_type -> Text,
        size -> BigInt,
        sha256 -> Text,
        complete -> Bool,
        created_at_us -> BigInt,
    }
}

diesel::table! {
    subject_artifact_chunks (artifact_id, idx) {
        artifact_id -> Text,
        idx -> BigInt,
        key_id -> Text,
        data -> Text,
    }
}

diesel::table! {
    subject_request_waits (request_id) {
        request_id -> Text,
        forwarded_by -> Nullable<Text>,
        resume_status -> Nullable<Text>,
        sla_paused_at_us -> Nullable<BigInt>,
        questions -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(subject_requests, subject_request_waits);

diesel::table! {
    subject_questions (id) {
        id -> Text,
        request_id -> Text,
        tenant_id -> Text,
        asked_by -> Text,
        question_key_id -> Text,
        question_sealed -> Text,
        asked_at_us -> BigInt,
        answer_key_id -> Nullable<Text>,
        answer_sealed -> Nullable<Text>,
        answered_by -> Nullable<Text>,
        answered_at_us -> Nullable<BigInt>,
    }
}

diesel::table! {
    subject_request_refs (request_id, subject_ref) {
        request_id -> Text,
        tenant_id -> Text,
        subject_ref -> Text,
    }
}

diesel::table! {
    subject_systems (name) {
        name -> Text,
        categories -> Text,
        registered_at_us -> BigInt,
        updated_at_us -> BigInt,
    }
}

diesel::table! {
    subject_tasks (seq) {
        seq -> BigInt,
        id -> Text,
        request_id -> Text,
        tenant_id -> Text,
        system -> Text,
        request_type -> Text,
        categories -> Text,
        status -> Text,
        lease_until_us -> Nullable<BigInt>,
        attempts -> Integer,
        records_affected -> BigInt,
        error -> Nullable<Text>,
        created_at_us -> BigInt,
        updated_at_us -> BigInt,
        error_sealed -> Nullable<Text>,
        error_key_id -> Nullable<Text>,
        next_attempt_at_us -> Nullable<BigInt>,
        no_data_held -> Bool,
    }
}

diesel::table! {
    subject_export_chunks (seq) {
        seq -> BigInt,
        request_id -> Text,
        task_id -> Text,
        system -> Text,
        data -> Binary,
        created_at_us -> BigInt,
        key_id -> Nullable<Text>,
    }
}

diesel::table! {
    subject_flags (tenant_id, subject_ref) {
        tenant_id -> Text,
        subject_ref -> Text,
        restricted -> Bool,
        objected -> Bool,
        erased -> Bool,
        consent_withdrawn -> Bool,
        change_seq -> BigInt,
        updated_at_us -> BigInt,
    }
}

diesel::table! {
    subject_tenant_settings (tenant_id) {
        tenant_id -> Text,
        time_zone -> Text,
        sla_days -> Integer,
        updated_at_us -> BigInt,
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
        sealed -> Nullable<Text>,
        key_id -> Nullable<Text>,
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
        note_key_id -> Nullable<Text>,
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

diesel::table! {
    screening_list_fetches (source) {
        source -> Text,
        validators -> Text,
        lease_holder -> Nullable<Text>,
        lease_until_us -> Nullable<BigInt>,
        checked_at_us -> Nullable<BigInt>,
        outcome -> Text,
    }
}

diesel::table! {
    screening_results (id) {
        id -> Text,
        party_ref -> Text,
        tenant_id -> Nullable<Text>,
        screened_at_us -> BigInt,
        why -> Text,
        outcome -> Text,
        case_id -> Nullable<Text>,
        evidence -> Text,
        hits -> Text,
        receipt_key_id -> Nullable<Text>,
    }
}

diesel::table! {
    screening_case_answers (case_id, seq) {
        case_id -> Text,
        seq -> BigInt,
        answered_at_us -> BigInt,
        answered_by -> Text,
        text -> Text,
        key_id -> Text,
    }
}

diesel::joinable!(screening_entries -> screening_list_versions (version_seq));

diesel::allow_tables_to_appear_in_same_query!(screening_entries, screening_list_versions);

diesel::table! {
    sub_processors (seq) {
        seq -> BigInt,
        id -> Text,
        name_key -> Text,
        legal_name -> Text,
        country -> Text,
        services -> Text,
        categories -> Text,
        purposes -> Text,
        transfer_mechanism -> Text,
        parent_id -> Nullable<Text>,
        dpa_signed_at_us -> Nullable<BigInt>,
        nda_signed_at_us -> Nullable<BigInt>,
        created_at_us -> BigInt,
        screening -> Text,
        screened_at_us -> Nullable<BigInt>,
        processing_locations -> Text,
    }
}

diesel::table! {
    sub_processor_notices (seq) {
        seq -> BigInt,
        id -> Text,
        sub_processor_id -> Text,
        kind -> Text,
        categories -> Text,
        purposes -> Text,
        effective_at_us -> BigInt,
        objection_deadline_us -> BigInt,
        created_at_us -> BigInt,
        author -> Text,
    }
}

diesel::table! {
    sub_processor_notice_tenants (notice_id, tenant_id) {
        notice_id -> Text,
        tenant_id -> Text,
        notified -> Bool,
        approved_at_us -> Nullable<BigInt>,
        objected_at_us -> Nullable<BigInt>,
        objection_reason -> Nullable<Text>,
    }
}

diesel::table! {
    sub_processor_modes (seq) {
        seq -> BigInt,
        tenant_id -> Text,
        mode -> Text,
        since_us -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(sub_processor_notices, sub_processor_notice_tenants);

diesel::table! {
    server_keys (purpose, key_id) {
        purpose -> Text,
        key_id -> Text,
        state -> Text,
        recorded_at_us -> BigInt,
    }
}

diesel::table! {
    authority_requests (seq) {
        seq -> BigInt,
        id -> Text,
        authority -> Text,
        country -> Text,
        received_at_us -> BigInt,
        categories -> Text,
        status -> Text,
        notice_prohibited_until_us -> Nullable<BigInt>,
        notified_at_us -> Nullable<BigInt>,
        outcome -> Nullable<Text>,
        disclosed_categories -> Text,
        challenged -> Bool,
        responded_at_us -> Nullable<BigInt>,
        texts -> Text,
        texts_sealed -> Nullable<Text>,
        texts_key_id -> Nullable<Text>,
        created_at_us -> BigInt,
        updated_at_us -> BigInt,
    }
}

diesel::table! {
    authority_request_tenants (request_id, tenant_id) {
        request_id -> Text,
        tenant_id -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(authority_requests, authority_request_tenants);

diesel::table! {
    webhooks (id) {
        id -> Text,
        tenant_id -> Text,
        url -> Text,
        description -> Text,
        secret_key_id -> Text,
        secret_sealed -> Text,
        previous_secret_key_id -> Nullable<Text>,
        previous_secret_sealed -> Nullable<Text>,
        previous_secret_until_us -> Nullable<BigInt>,
        next_cursor -> BigInt,
        lease_owner -> Nullable<Text>,
        lease_until_us -> Nullable<BigInt>,
        created_at_us -> BigInt,
        updated_at_us -> BigInt,
    }
}

diesel::table! {
    legal_holds (id) {
        id -> Text,
        tenant_id -> Text,
        subject_hash -> Text,
        categories -> Text,
        reference -> Text,
        placed_by -> Text,
        placed_at_us -> BigInt,
        until_us -> Nullable<BigInt>,
        released_at_us -> Nullable<BigInt>,
        released_by -> Nullable<Text>,
        ended_at_us -> Nullable<BigInt>,
        texts_sealed -> Nullable<Text>,
        texts_key_id -> Nullable<Text>,
    }
}

diesel::table! {
    webhook_deliveries (seq) {
        seq -> BigInt,
        id -> Text,
        webhook_id -> Text,
        tenant_id -> Text,
        envelope_id -> Text,
        envelope_cursor -> BigInt,
        kind -> Text,
        status -> Text,
        attempts -> Integer,
        last_status_code -> Nullable<Integer>,
        last_error -> Text,
        next_attempt_at_us -> Nullable<BigInt>,
        expires_at_us -> BigInt,
        delivered_at_us -> Nullable<BigInt>,
        created_at_us -> BigInt,
        updated_at_us -> BigInt,
    }
}

diesel::table! {
    legal_hold_withheld (id) {
        id -> Text,
        request_id -> Text,
        tenant_id -> Text,
        system -> Text,
        categories -> Text,
        created_at_us -> BigInt,
        issued_at_us -> Nullable<BigInt>,
    }
}

diesel::table! {
    decision_log (seq) {
        seq -> BigInt,
        decision_id -> Text,
        at_us -> BigInt,
        tenant_id -> Text,
        category -> Text,
        purpose -> Text,
        region -> Text,
        sub_processor_id -> Text,
        subject_sealed -> Nullable<Text>,
        subject_key_id -> Nullable<Text>,
        allowed -> Bool,
        reasons -> Text,
        instruction_version -> BigInt,
        caller -> Text,
        trace_id -> Text,
    }
}
