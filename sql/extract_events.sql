-- One row per usage line: the JSON fields as text and their JSON types (billing-rules §3).
-- Nothing is cast strictly here: bad values become NULL and validation names the reason.
with lines as (
    select line_no, raw from chunk
),

parsed as (
    select
        line_no,
        raw,
        -- valid JSON whose first character is `{` is an object: no second parse to know it
        coalesce(json_valid(raw) and ltrim(raw)[1] = '{', false) as json_ok,
        length(trim(raw)) > 0 as nonblank
    from lines
),

objects as (
    -- one parse per line: every field as a JSON value (its type is checked below)
    select
        *,
        case
            when json_ok then from_json(
                raw,
                '{"event_id": "JSON", "customer_id": "JSON", "account_id": "JSON",
                  "function": "JSON", "quantity": "JSON", "status": "JSON",
                  "occurred_at": "JSON"}'
            )
        end as j
    from parsed
),

fields as (
    select
        line_no,
        json_ok,
        nonblank,
        j.event_id ->> '$' as event_id,
        json_type(j.event_id) as event_id_type,
        j.customer_id ->> '$' as customer_id,
        json_type(j.customer_id) as customer_id_type,
        j.account_id ->> '$' as account_id,
        json_type(j.account_id) as account_id_type,
        j.function ->> '$' as function,
        json_type(j.function) as function_type,
        j.quantity ->> '$' as quantity_text,
        json_type(j.quantity) as quantity_type,
        j.status ->> '$' as status,
        json_type(j.status) as status_type,
        j.occurred_at ->> '$' as occurred_at,
        json_type(j.occurred_at) as occurred_at_type
    from objects
),

typed as (
    select
        *,
        -- exact, and in micro-units; NULL when not a number or beyond 18 digits
        try_cast(quantity_text as decimal(18, 6)) as quantity,
        cast(try_cast(quantity_text as decimal(18, 6)) * 1000000 as bigint) as quantity_micro,
        -- a quantity finer than a micro-unit would be rounded, so it is refused
        regexp_matches(quantity_text, '\.\d{7,}|[eE]-') as quantity_too_fine,
        case
            when regexp_matches(occurred_at, $timestamp_pattern)
                then try_cast(occurred_at as timestamptz)
        end as occurred_at_ts
    from fields
)

select * from typed
