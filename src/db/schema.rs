// Diesel table definitions, written to match `migrations/` (a test applies the migrations and
// exercises every table, so a drift shows up as a failing query).

diesel::table! {
    accounts (id) {
        id -> Int8,
        kind -> Text,
        owner -> Text,
        balance -> Numeric,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    cardholders (user_id) {
        user_id -> Text,
        name -> Text,
        identity -> Text,
        created_at -> Timestamptz,
        token_version -> Int4,
    }
}

diesel::table! {
    cards (id) {
        id -> Int8,
        user_id -> Text,
        account_id -> Int8,
        status -> Text,
        per_txn_limit -> Nullable<Numeric>,
        daily_limit -> Nullable<Numeric>,
        created_at -> Timestamptz,
        password_free_limit -> Nullable<Numeric>,
        pin_hash -> Nullable<Bytea>,
        pin_failures -> Int4,
        pin_locks -> Int4,
        pin_locked_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    identity_limits (identity) {
        identity -> Text,
        per_txn_limit -> Numeric,
        daily_limit -> Numeric,
        password_free_limit -> Numeric,
    }
}

diesel::table! {
    refunds (id) {
        id -> Uuid,
        transaction_id -> Uuid,
        amount -> Numeric,
        fee -> Numeric,
        reason -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    merchants (id) {
        id -> Text,
        name -> Text,
        account_id -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    terminals (merchant_id, id) {
        merchant_id -> Text,
        id -> Text,
        created_at -> Timestamptz,
        token_version -> Int4,
        broker_user -> Nullable<Text>,
        removed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    payment_codes (code_hash) {
        code_hash -> Bytea,
        card_id -> Int8,
        batch_id -> Uuid,
        issued_at -> Timestamptz,
        expires_at -> Timestamptz,
        state -> Text,
        used_at -> Nullable<Timestamptz>,
        transaction_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    fee_rules (id) {
        id -> Int8,
        identity -> Text,
        merchant_id -> Nullable<Text>,
        rate -> Numeric,
        effective_from -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    transactions (id) {
        id -> Uuid,
        mode -> Text,
        request_scope -> Text,
        request_id -> Uuid,
        merchant_id -> Text,
        terminal_id -> Text,
        card_id -> Nullable<Int8>,
        user_id -> Nullable<Text>,
        amount -> Nullable<Numeric>,
        fee -> Nullable<Numeric>,
        fee_rule_id -> Nullable<Int8>,
        state -> Text,
        reason -> Nullable<Text>,
        balance_after -> Nullable<Numeric>,
        created_at -> Timestamptz,
        processed_at -> Nullable<Timestamptz>,
        reversed_at -> Nullable<Timestamptz>,
        confirm_deadline -> Nullable<Timestamptz>,
        confirmed_at -> Nullable<Timestamptz>,
        confirm_declined_at -> Nullable<Timestamptz>,
        confirm_sent_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    terminal_failures (merchant_id, terminal_id, minute) {
        merchant_id -> Text,
        terminal_id -> Text,
        minute -> Timestamptz,
        failures -> Int4,
    }
}

diesel::table! {
    journal_entries (id) {
        id -> Uuid,
        kind -> Text,
        transaction_id -> Nullable<Uuid>,
        memo -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    postings (id) {
        id -> Int8,
        entry_id -> Uuid,
        leg -> Text,
        account_id -> Int8,
        amount -> Numeric,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(cards -> cardholders (user_id));
diesel::joinable!(cards -> accounts (account_id));
diesel::joinable!(merchants -> accounts (account_id));
diesel::joinable!(terminals -> merchants (merchant_id));
diesel::joinable!(payment_codes -> cards (card_id));
diesel::joinable!(postings -> journal_entries (entry_id));
diesel::joinable!(postings -> accounts (account_id));

diesel::table! {
    dynamic_qr_codes (reference) {
        reference -> Text,
        request_scope -> Text,
        request_id -> Uuid,
        merchant_id -> Text,
        terminal_id -> Text,
        amount -> Numeric,
        payload -> Text,
        expires_at -> Timestamptz,
        order_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    orders (id) {
        id -> Uuid,
        user_id -> Text,
        request_id -> Uuid,
        qr_kind -> Text,
        merchant_id -> Text,
        terminal_id -> Text,
        amount -> Nullable<Numeric>,
        dynamic_reference -> Nullable<Text>,
        state -> Text,
        created_at -> Timestamptz,
        submitted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    static_qr_codes (merchant_id, terminal_id) {
        merchant_id -> Text,
        terminal_id -> Text,
        payload -> Text,
        printed_at -> Timestamptz,
    }
}

diesel::table! {
    subsidy_credits (batch, row_key) {
        batch -> Text,
        row_key -> Text,
        user_id -> Text,
        amount -> Numeric,
        entry_id -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    accounts,
    cardholders,
    cards,
    merchants,
    terminals,
    payment_codes,
    fee_rules,
    transactions,
    journal_entries,
    postings,
    dynamic_qr_codes,
    orders,
    terminal_failures,
    identity_limits,
    refunds,
    static_qr_codes,
    operator_actions,
    subsidy_credits,
    sign_in_links,
    sessions,
);

diesel::table! {
    operator_actions (id) {
        id -> Int8,
        at -> Timestamptz,
        operator -> Text,
        action -> Text,
        subject -> Text,
        detail -> Text,
    }
}

diesel::table! {
    sign_in_links (secret_hash) {
        secret_hash -> Bytea,
        role -> Text,
        subject -> Text,
        token_version -> Int4,
        created_by -> Text,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    sessions (id_hash) {
        id_hash -> Bytea,
        role -> Text,
        subject -> Text,
        token_version -> Int4,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
    }
}
