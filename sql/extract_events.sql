-- One row per usage line of a batch (`chunk`: line_no, raw): its fields and the facts the
-- row schema (tasks/validate.py, Pandera) checks (billing-rules §3). Nothing is cast
-- strictly here: a bad value becomes NULL or false and validation names the reason.
with parsed as (
    select
        line_no,
        -- valid JSON whose first character is `{` is an object: no second parse to know it
        coalesce(json_valid(raw) and (prefix(raw, '{') or ltrim(raw)[1] = '{'), false)
            as json_ok,
        raw
    from chunk
),

objects as (
    -- one parse per line: every field as a JSON value, its type read from its first
    -- character (`"` a string; digit or `-` a number), cheaper than json_type per field
    select
        line_no,
        json_ok,
        -- (a CASE: trimming copies the line, so only the few lines that are not JSON objects)
        case when json_ok then true else length(trim(raw)) > 0 end as nonblank,
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
    -- `<field>_is_text` / `quantity_is_number`: NULL when the field is missing or JSON null,
    -- false when it has the wrong JSON type
    select
        line_no,
        json_ok,
        nonblank,
        j.event_id ->> '$' as event_id,
        left(nullif(j.event_id::varchar, 'null'), 1) = '"' as event_id_is_text,
        j.customer_id ->> '$' as customer_id,
        left(nullif(j.customer_id::varchar, 'null'), 1) = '"' as customer_id_is_text,
        j.account_id ->> '$' as account_id,
        left(nullif(j.account_id::varchar, 'null'), 1) = '"' as account_id_is_text,
        j.function ->> '$' as function,
        left(nullif(j.function::varchar, 'null'), 1) = '"' as function_is_text,
        j.status ->> '$' as status,
        left(nullif(j.status::varchar, 'null'), 1) = '"' as status_is_text,
        j.occurred_at ->> '$' as occurred_at,
        left(nullif(j.occurred_at::varchar, 'null'), 1) = '"' as occurred_at_is_text,
        j.quantity ->> '$' as quantity_text,
        regexp_matches(left(nullif(j.quantity::varchar, 'null'), 1), '^[-0-9]$')
            as quantity_is_number
    from objects
),

typed as (
    select
        *,
        -- exact, and in micro-units; NULL when not a number or beyond 18 digits
        try_cast(quantity_text as decimal(18, 6)) as quantity,
        -- a quantity finer than a micro-unit would be rounded, so it is refused
        regexp_matches(quantity_text, '\.\d{7,}|[eE]-') as quantity_too_fine,
        case
            when regexp_matches(occurred_at, $timestamp_pattern)
                then try_cast(occurred_at as timestamptz)
        end as occurred_at_ts
    from fields
)

select
    line_no,
    json_ok,
    nonblank,
    event_id,
    event_id_is_text,
    customer_id,
    customer_id_is_text,
    account_id,
    account_id_is_text,
    function,
    function_is_text,
    status,
    status_is_text,
    occurred_at_is_text,
    quantity_is_number,
    quantity,
    cast(quantity * 1000000 as bigint) as quantity_micro,
    quantity_too_fine,
    occurred_at_ts,
    -- the text of a timestamp that did not parse (to name why); NULL when it parsed
    case when occurred_at_ts is null then occurred_at end as occurred_at_unparsed
from typed
