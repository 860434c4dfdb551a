//! Diesel table definitions; they mirror `migrations/sqlite` and
//! `migrations/postgres`, which hold the same changes. Only portable column
//! types are used (Text, Integer, BigInt), flags as 0/1 integers, JSON as Text.

diesel::table! {
    catalog_version (id) {
        id -> Integer,
        version -> BigInt,
    }
}

diesel::table! {
    adapters (id) {
        id -> Text,
        current_version -> Integer,
        enabled -> Integer,
        updated_at -> BigInt,
    }
}

diesel::table! {
    adapter_versions (adapter_id, version) {
        adapter_id -> Text,
        version -> Integer,
        manifest -> Text,
        created_at -> BigInt,
        created_by -> Text,
    }
}

diesel::table! {
    forms (id) {
        id -> Text,
        current_version -> Integer,
        enabled -> Integer,
        updated_at -> BigInt,
    }
}

diesel::table! {
    form_versions (form_id, version) {
        form_id -> Text,
        version -> Integer,
        definition -> Text,
        created_at -> BigInt,
        created_by -> Text,
    }
}

diesel::table! {
    elements (id) {
        id -> Text,
        current_version -> Integer,
        enabled -> Integer,
        updated_at -> BigInt,
    }
}

diesel::table! {
    element_versions (element_id, version) {
        element_id -> Text,
        version -> Integer,
        definition -> Text,
        created_at -> BigInt,
        created_by -> Text,
    }
}

diesel::table! {
    credentials (name) {
        name -> Text,
        kind -> Text,
        sealed -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        updated_by -> Text,
    }
}

diesel::table! {
    partners (id) {
        id -> Text,
        name -> Text,
        kind -> Text,
        policy -> Text,
        rate_per_minute -> Integer,
        burst -> Integer,
        enabled -> Integer,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        partner_id -> Text,
        key_hash -> Text,
        label -> Text,
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        expires_at -> Nullable<BigInt>,
        last_used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    admin_tokens (id) {
        id -> Text,
        token_hash -> Text,
        role -> Text,
        label -> Text,
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        expires_at -> Nullable<BigInt>,
        last_used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    audit_log (seq) {
        seq -> BigInt,
        record_id -> Text,
        ts -> BigInt,
        request_id -> Text,
        partner_id -> Text,
        key_id -> Text,
        action -> Text,
        subject -> Nullable<Text>,
        purpose -> Nullable<Text>,
        resource -> Text,
        adapters -> Text,
        elements -> Text,
        outcome -> Text,
        status -> Integer,
        latency_us -> BigInt,
        detail -> Text,
        prev_hash -> Text,
        hash -> Text,
    }
}

diesel::table! {
    audit_head (id) {
        id -> Integer,
        seq -> BigInt,
        hash -> Text,
    }
}

diesel::table! {
    flows (id) {
        id -> Text,
        current_version -> Integer,
        enabled -> Integer,
        updated_at -> BigInt,
    }
}

diesel::table! {
    flow_versions (flow_id, version) {
        flow_id -> Text,
        version -> Integer,
        definition -> Text,
        created_at -> BigInt,
        created_by -> Text,
    }
}

diesel::table! {
    dossiers (code) {
        code -> Text,
        flow_id -> Text,
        flow_version -> Integer,
        partner_id -> Text,
        idempotency_key -> Text,
        request_hash -> Text,
        requester_id -> Text,
        subject_id -> Nullable<Text>,
        declaration -> Text,
        procedures -> Text,
        callback_url -> Nullable<Text>,
        callback_secret -> Nullable<Text>,
        state -> Text,
        received_on -> Text,
        due_on -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    dossier_days (agency, day) {
        agency -> Text,
        day -> Text,
        last -> Integer,
    }
}

diesel::table! {
    dossier_steps (dossier_code, step_id) {
        dossier_code -> Text,
        step_id -> Text,
        position -> Integer,
        state -> Text,
        reference -> Nullable<Text>,
        request -> Nullable<Text>,
        result -> Nullable<Text>,
        reason -> Nullable<Text>,
        supplement -> Nullable<Text>,
        supplement_deadline -> Nullable<Text>,
        attempts -> Integer,
        next_at -> BigInt,
        lease_owner -> Nullable<Text>,
        lease_until -> BigInt,
        started_on -> Nullable<Text>,
        due_on -> Nullable<Text>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    dossier_events (seq) {
        seq -> BigInt,
        dossier_code -> Text,
        step_id -> Nullable<Text>,
        state -> Text,
        detail -> Text,
        at -> BigInt,
    }
}

diesel::table! {
    dossier_callbacks (seq) {
        seq -> BigInt,
        dossier_code -> Text,
        body -> Text,
        attempts -> Integer,
        next_at -> BigInt,
        lease_until -> BigInt,
        delivered_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    results (id) {
        id -> Text,
        owner_id -> Text,
        kind -> Text,
        number -> Nullable<Text>,
        issued_on -> Nullable<Text>,
        agency -> Text,
        dossier_code -> Text,
        step_id -> Text,
        data -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    console_sessions (id_hash) {
        id_hash -> Text,
        token_id -> Text,
        csrf -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        ended_at -> Nullable<BigInt>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    adapters,
    adapter_versions,
    forms,
    form_versions,
    elements,
    element_versions,
    flows,
    flow_versions,
    dossiers,
    dossier_steps,
    partners,
    api_keys,
    sync_dossiers,
    sync_events
);

diesel::table! {
    sync_dossiers (code) {
        code -> Text,
        partner_id -> Text,
        request_hash -> Text,
        record -> Text,
        status -> Text,
        events -> Integer,
        created_at -> BigInt,
        updated_at -> BigInt,
        received_on -> Text,
    }
}

diesel::table! {
    sync_events (dossier_code, seq) {
        dossier_code -> Text,
        seq -> Integer,
        event_id -> Text,
        request_hash -> Text,
        event -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    portal_outbox (id) {
        id -> BigInt,
        dossier_code -> Text,
        kind -> Text,
        payload -> Text,
        state -> Text,
        attempts -> Integer,
        next_at -> BigInt,
        lease_until -> BigInt,
        last_error -> Nullable<Text>,
        created_at -> BigInt,
        delivered_at -> Nullable<BigInt>,
    }
}
