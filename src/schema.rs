// @generated automatically by Diesel CLI.

diesel::table! {
    activities (id) {
        id -> Uuid,
        user_id -> Uuid,
        kind -> Text,
        subject_type -> Text,
        subject_id -> Uuid,
        data -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    chat_messages (id) {
        id -> Uuid,
        room_id -> Uuid,
        seq -> Int8,
        sender_id -> Uuid,
        body -> Text,
        client_msg_id -> Text,
        sent_at -> Timestamptz,
    }
}

diesel::table! {
    chat_reads (room_id, user_id) {
        room_id -> Uuid,
        user_id -> Uuid,
        last_read_seq -> Int8,
    }
}

diesel::table! {
    chat_rooms (room_id) {
        room_id -> Uuid,
        match_id -> Uuid,
        last_seq -> Int8,
    }
}

diesel::table! {
    custody_events (match_id, seq) {
        match_id -> Uuid,
        seq -> Int4,
        kind -> Text,
        data -> Jsonb,
        at -> Timestamptz,
        prev_hash -> Bytea,
        hash -> Bytea,
    }
}

diesel::table! {
    idempotency_keys (user_id, key) {
        user_id -> Uuid,
        key -> Text,
        request_hash -> Bytea,
        claim -> Uuid,
        status_code -> Nullable<Int2>,
        response -> Nullable<Jsonb>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    ledger_accounts (id) {
        id -> Uuid,
        kind -> Text,
        owner_id -> Nullable<Uuid>,
        currency -> Text,
        balance -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    ledger_transfers (id) {
        id -> Uuid,
        idempotency_key -> Text,
        debit_account -> Uuid,
        credit_account -> Uuid,
        amount -> Int8,
        currency -> Text,
        reference_kind -> Text,
        reference_id -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    match_codes (match_id, kind) {
        match_id -> Uuid,
        kind -> Text,
        salt -> Bytea,
        code_hash -> Bytea,
        attempts -> Int4,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    match_events (id) {
        id -> Uuid,
        match_id -> Uuid,
        actor_id -> Nullable<Uuid>,
        action -> Text,
        from_status -> Nullable<Text>,
        to_status -> Text,
        reason -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    matches (id) {
        id -> Uuid,
        parcel_id -> Uuid,
        trip_id -> Uuid,
        sender_id -> Uuid,
        traveler_id -> Uuid,
        requested_by -> Uuid,
        status -> Text,
        weight_grams -> Int4,
        price -> Int8,
        fee -> Int8,
        currency -> Text,
        room_id -> Uuid,
        expires_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        paid_at -> Nullable<Timestamptz>,
        picked_up_at -> Nullable<Timestamptz>,
        delivered_at -> Nullable<Timestamptz>,
        release_at -> Nullable<Timestamptz>,
        tracking_token -> Nullable<Text>,
        custody_seq -> Int4,
        custody_head -> Nullable<Bytea>,
        arriving_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    notification_deliveries (id) {
        id -> Int8,
        notification_id -> Nullable<Uuid>,
        user_id -> Nullable<Uuid>,
        kind -> Text,
        channel -> Text,
        address -> Text,
        locale -> Text,
        data -> Jsonb,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        lease -> Nullable<Uuid>,
        provider_id -> Nullable<Text>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    notification_preferences (user_id, kind, channel) {
        user_id -> Uuid,
        kind -> Text,
        channel -> Text,
        enabled -> Bool,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    notifications (id) {
        id -> Uuid,
        user_id -> Uuid,
        kind -> Text,
        title -> Text,
        body -> Text,
        data -> Jsonb,
        read_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    parcels (id) {
        id -> Uuid,
        sender_id -> Uuid,
        origin_code -> Nullable<Text>,
        origin_label -> Text,
        origin_country -> Text,
        origin_lat -> Float8,
        origin_lng -> Float8,
        destination_code -> Nullable<Text>,
        destination_label -> Text,
        destination_country -> Text,
        destination_lat -> Float8,
        destination_lng -> Float8,
        pickup_address -> Nullable<Text>,
        dropoff_address -> Nullable<Text>,
        ready_from -> Timestamptz,
        deliver_by -> Timestamptz,
        weight_grams -> Int4,
        dimensions_cm -> Nullable<Array<Nullable<Int4>>>,
        category -> Text,
        description -> Text,
        declared_value -> Int8,
        currency -> Text,
        max_reward -> Nullable<Int8>,
        recipient_name -> Text,
        recipient_email -> Nullable<Text>,
        recipient_phone -> Nullable<Text>,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    payment_ops (id) {
        id -> Uuid,
        kind -> Text,
        match_id -> Nullable<Uuid>,
        withdrawal_id -> Nullable<Uuid>,
        amount -> Int8,
        currency -> Text,
        idempotency_key -> Text,
        status -> Text,
        provider_ref -> Nullable<Text>,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    payments (id) {
        id -> Uuid,
        match_id -> Uuid,
        provider -> Text,
        intent_id -> Nullable<Text>,
        charge_id -> Nullable<Text>,
        status -> Text,
        amount -> Int8,
        currency -> Text,
        refunded -> Int8,
        failure -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    positions (match_id, recorded_at) {
        match_id -> Uuid,
        recorded_at -> Timestamptz,
        lat -> Float8,
        lng -> Float8,
        accuracy_m -> Float4,
        received_at -> Timestamptz,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Uuid,
        session_id -> Uuid,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        rotated_at -> Nullable<Timestamptz>,
        successor_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        user_agent -> Text,
        ip -> Text,
        device_fingerprint -> Text,
        created_at -> Timestamptz,
        last_seen_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
    }
}

diesel::table! {
    trips (id) {
        id -> Uuid,
        traveler_id -> Uuid,
        origin_code -> Nullable<Text>,
        origin_label -> Text,
        origin_country -> Text,
        origin_lat -> Float8,
        origin_lng -> Float8,
        destination_code -> Nullable<Text>,
        destination_label -> Text,
        destination_country -> Text,
        destination_lat -> Float8,
        destination_lng -> Float8,
        departure_at -> Timestamptz,
        arrival_at -> Timestamptz,
        capacity_grams -> Int4,
        reserved_grams -> Int4,
        available_grams -> Nullable<Int4>,
        price_per_kg -> Int8,
        currency -> Text,
        accepted_categories -> Array<Nullable<Text>>,
        flight_number -> Nullable<Text>,
        notes -> Nullable<Text>,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        password_hash -> Text,
        display_name -> Text,
        phone -> Nullable<Text>,
        avatar_url -> Nullable<Text>,
        role -> Text,
        kyc_status -> Text,
        email_verified -> Bool,
        rating_sum -> Int4,
        rating_count -> Int4,
        completed_deliveries -> Int4,
        suspended_at -> Nullable<Timestamptz>,
        failed_logins -> Int4,
        locked_until -> Nullable<Timestamptz>,
        password_changed_at -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        payout_account_id -> Nullable<Text>,
        strikes -> Int4,
    }
}

diesel::table! {
    webhook_events (id) {
        id -> Text,
        ref_id -> Uuid,
        provider -> Text,
        kind -> Text,
        outcome -> Text,
        received_at -> Timestamptz,
    }
}

diesel::table! {
    withdrawals (id) {
        id -> Uuid,
        user_id -> Uuid,
        amount -> Int8,
        currency -> Text,
        destination -> Text,
        status -> Text,
        provider -> Text,
        transfer_id -> Nullable<Text>,
        failure -> Nullable<Text>,
        match_id -> Nullable<Uuid>,
        source_charge -> Nullable<Text>,
        request_key -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(activities -> users (user_id));
diesel::joinable!(chat_messages -> chat_rooms (room_id));
diesel::joinable!(chat_messages -> users (sender_id));
diesel::joinable!(chat_reads -> chat_rooms (room_id));
diesel::joinable!(chat_reads -> users (user_id));
diesel::joinable!(chat_rooms -> matches (match_id));
diesel::joinable!(custody_events -> matches (match_id));
diesel::joinable!(idempotency_keys -> users (user_id));
diesel::joinable!(match_codes -> matches (match_id));
diesel::joinable!(match_events -> matches (match_id));
diesel::joinable!(match_events -> users (actor_id));
diesel::joinable!(matches -> parcels (parcel_id));
diesel::joinable!(matches -> trips (trip_id));
diesel::joinable!(notification_deliveries -> notifications (notification_id));
diesel::joinable!(notification_deliveries -> users (user_id));
diesel::joinable!(notification_preferences -> users (user_id));
diesel::joinable!(notifications -> users (user_id));
diesel::joinable!(parcels -> users (sender_id));
diesel::joinable!(payment_ops -> matches (match_id));
diesel::joinable!(payment_ops -> withdrawals (withdrawal_id));
diesel::joinable!(payments -> matches (match_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(trips -> users (traveler_id));
diesel::joinable!(withdrawals -> matches (match_id));
diesel::joinable!(withdrawals -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    activities,
    chat_messages,
    chat_reads,
    chat_rooms,
    custody_events,
    idempotency_keys,
    ledger_accounts,
    ledger_transfers,
    match_codes,
    match_events,
    matches,
    notification_deliveries,
    notification_preferences,
    notifications,
    parcels,
    payment_ops,
    payments,
    positions,
    refresh_tokens,
    sessions,
    trips,
    users,
    webhook_events,
    withdrawals,
);
