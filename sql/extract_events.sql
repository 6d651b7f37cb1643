-- One row per usage line of a batch (`chunk`: line_no — the batch's row key —, file_id,
-- file_line, raw, utf8_ok): its fields and the facts the
-- row schema (tasks/validate.py, Pandera) checks (billing-rules §3). Nothing is cast
-- strictly here: a bad value becomes NULL or false and validation names the reason.
-- `utf8_ok` is false for a line that is not valid UTF-8 (its raw text then shows the bytes
-- as \xNN escapes, never repaired): `bad_encoding`.
with valid as (
    -- JSON as its grammar has it: DuckDB's parser also passes a trailing comma (`{"a": 1,}`,
    -- `[1,]`: malformed_json). Outside a string a comma before a closing bracket is one, so
    -- only the few lines holding that text anywhere are read again, strictly (Python)
    select
        *,
        case
            when not coalesce(json_valid(raw), false) then false
            when not regexp_matches(raw, ',[ \t\r]*[\]}]') then true
            else coalesce(strictly_json(raw), false)
        end as raw_valid
    from chunk
),

readable as (
    -- a line DuckDB refuses only for a lone UTF-16 surrogate's escape (`\ud83d`: JSON's
    -- grammar allows it) is read with it made `\u0001` (lone_surrogates_escaped, Python;
    -- few lines reach it): an ignored field passes, an id holding one is bad_id
    select
        *,
        case
            when raw_valid or not utf8_ok or not regexp_matches(raw, '\\u[dD][89a-fA-F]')
                then null
            else lone_surrogates_escaped(raw)
        end as escaped
    from valid
),

parsed as (
    select
        line_no,
        file_id,
        file_line,
        utf8_ok,
        -- valid JSON whose first character is `{` is an object: no second parse to know it
        -- (JSON allows spaces, tabs and line ends before the object). A CASE, not AND/OR: its
        -- branches run only on the rows that reach them (a projection's AND computes both
        -- sides for every row), so most lines are not trimmed.
        case
            when not utf8_ok then false
            when raw_valid and prefix(raw, '{') then true
            when raw_valid then coalesce(ltrim(raw, ' ' || chr(9) || chr(13))[1] = '{', false)
            when escaped is null or not coalesce(json_valid(escaped), false) then false
            when regexp_matches(escaped, ',[ \t\r]*[\]}]')
                and not coalesce(strictly_json(escaped), false) then false
            else coalesce(ltrim(escaped, ' ' || chr(9) || chr(13))[1] = '{', false)
        end as json_ok,
        coalesce(escaped, raw) as json_text,
        raw
    from readable
),

objects as (
    -- one parse per line: every field as a JSON value, its type read from its first
    -- character (`"` a string; digit or `-` a number), cheaper than json_type per field
    select
        line_no,
        file_id,
        file_line,
        utf8_ok,
        json_ok,
        raw,
        -- (a CASE: trimming copies the line, so only the few lines that are not JSON objects)
        -- (blank: nothing, or only JSON's white space — spaces, tabs, a carriage return)
        case when json_ok then true else length(trim(raw, ' ' || chr(9) || chr(13))) > 0 end
            as nonblank,
        case
            when json_ok then from_json(
                json_text,
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
        file_id,
        file_line,
        raw,
        utf8_ok,
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
        -- a JSON number (NaN and Infinity too: `bad_quantity`, not `wrong_type`)
        contains('-0123456789NIni', left(nullif(j.quantity::varchar, 'null'), 1))
            as quantity_is_number,
        -- the number as written: DuckDB keeps an integer's text, but reads any other number
        -- as a double (a long fraction comes back rounded), so those are read off the line
        case
            when not coalesce(contains('-0123456789', left(j.quantity::varchar, 1)), false)
                then null
            when not (contains(j.quantity::varchar, '.') or contains(j.quantity::varchar, 'e')
                or contains(j.quantity::varchar, 'E'))
                then null
            else coalesce(regexp_extract(raw, '"quantity"\s*:\s*([-+.0-9A-Za-z]+)', 1), '')
        end as quantity_seen
    from objects
),

written as (
    select
        *,
        -- The number as written, else as parsed. Without a backslash in the line no string
        -- can hold `"quantity":`, so a single such text is the key itself; a line with an
        -- escape, naming "quantity" twice (a nested object), or whose text disagrees with the
        -- parsed value is read exactly by quantity_literal() (few lines).
        coalesce(
            case
                when quantity_seen is null then null
                when quantity_seen <> ''
                    and not contains(raw, '\')
                    and raw not like '%"quantity"%"quantity"%'
                    and try_cast(quantity_seen as double) = try_cast(quantity_text as double)
                    then quantity_seen
                else quantity_literal(raw)
            end,
            quantity_text
        ) as q
    from fields
),

parts as (
    select
        *,
        try_cast(q as double) as q_double,
        -- an integer (most quantities) has no decimal places to count, a plain decimal
        -- (12.5) those of its fraction; only a number with an exponent is taken apart
        case
            when contains(q, 'e') or contains(q, 'E') then
                regexp_extract(q, '^-?0*(\d*?)(0*)(?:\.(\d*?)0*)?(?:[eE]([+-]?\d+))?$',
                    ['int_sig', 'int_zeros', 'frac_sig', 'exp'])
        end as m,
        case
            when contains(q, '.') then length(rtrim(split_part(q, '.', 2), '0'))
            else 0
        end as plain_decimals
    from written
),

exps as (
    -- the exponent, clamped: an exponent of twenty digits must not overflow the arithmetic
    -- below (it stopped a run); past 10^13 either way its size changes no answer, as no
    -- mantissa on a line (at most 8 MiB, tasks/inbox_files.py) has that many digits
    select
        *,
        case
            when m is null or m.exp = '' then 0
            when length(ltrim(ltrim(m.exp, '+-'), '0')) > 12
                then case when prefix(m.exp, '-') then -10000000000000 else 10000000000000 end
            else cast(m.exp as bigint)
        end as q_exp
    from parts
),

typed as (
    select
        *,
        -- §3: a finite JSON number > 0 and < 10^9 with at most 6 decimal places
        quantity_is_number and coalesce(isfinite(q_double), false) as quantity_finite,
        -- > 0 and < 10^9 judged on the number as written too: a double rounds a positive
        -- number too small for it to 0 (1e-400) and one just below 10^9 up to 10^9
        -- (999999999.99999999); only those few are read again from their digits
        case
            when q_double is null then null
            when q_double <> 0 then q_double > 0
            else not prefix(q, '-') and regexp_matches(split_part(lower(q), 'e', 1), '[1-9]')
        end as quantity_positive,
        case
            when q_double is null then null
            when q_double <> 1e9 then q_double > 1e9
            -- digits of the integer part (leading zeros dropped), moved by the exponent
            when m is null then length(ltrim(split_part(ltrim(q, '-'), '.', 1), '0')) >= 10
            when length(m.int_sig) > 0 then length(m.int_sig) + length(m.int_zeros) + q_exp >= 10
            else q_exp - (length(m.frac_sig) - length(ltrim(m.frac_sig, '0'))) >= 10
        end as quantity_too_large,
        -- decimal places of the exact value: fraction digits (trailing zeros dropped) less
        -- the exponent; an integer mantissa's trailing zeros count against a negative one
        greatest(
            case
                when m is null then plain_decimals
                when length(m.frac_sig) > 0 then length(m.frac_sig) - q_exp
                else -q_exp - case when length(m.int_sig) > 0 then length(m.int_zeros) else 0 end
            end,
            0
        ) > 6 as quantity_too_fine,
        strict_timestamptz(occurred_at, $timestamp_pattern) as occurred_at_ts
    from exps
),

shifted as (
    select
        *,
        m.int_sig || m.int_zeros || m.frac_sig as digits,
        length(m.frac_sig) - q_exp as after
    from typed
),

checked as (
    select
        *,
        -- exact, in micro-units, only for a quantity that passes every rule above, from its
        -- digits (a cast to a decimal rounds a mantissa of 40 digits or returns NULL): a
        -- plain integer (most quantities; below 10^9) as an integer; a plain decimal's
        -- fraction padded to 6 places; a number with an exponent as its significant digits
        -- (`digits`: JSON has no leading zeros but a fraction may) shifted to 6 places after
        -- the point (`after`: how many follow it; the ones dropped are zeros, as a value with
        -- at most 6 decimal places has no others there)
        case
            when not (quantity_finite and quantity_positive and not quantity_too_large
                and not quantity_too_fine) then null
            when m is null and not contains(q, '.') then try_cast(q as bigint) * 1000000
            when m is null then cast(
                split_part(q, '.', 1) || rpad(left(split_part(q, '.', 2), 6), 6, '0') as bigint
            )
            else cast(
                ltrim(
                    left(digits, length(digits) - greatest(after - 6, 0))
                        || repeat('0', cast(greatest(6 - after, 0) as bigint)),
                    '0'
                ) as bigint
            )
        end as quantity_micro
    from shifted
),

facts as (
    select
        line_no,
        file_id,
        file_line,
        utf8_ok,
        json_ok,
        nonblank,
        event_id,
        event_id_is_text,
        customer_id,
        customer_id_is_text,
        account_id,
        account_id_is_text,
        -- §3: 1-200 characters, no control characters (`bad_id`); NULL when not text. JSON
        -- text holds a control character only escaped (a backslash) or as a raw DEL, so most
        -- lines skip the search; bytes bound characters, so most skip the count (a CASE:
        -- each test runs only on the lines the ones before it left undecided)
        case
            when not (event_id_is_text and customer_id_is_text and account_id_is_text)
                then null
            when event_id = '' or customer_id = '' or account_id = '' then false
            when (strlen(event_id) > 200 or strlen(customer_id) > 200 or strlen(account_id) > 200)
                and (length(event_id) > 200 or length(customer_id) > 200
                    or length(account_id) > 200)
                then false
            when contains(raw, '\') or contains(raw, chr(127))
                then not regexp_matches(event_id || customer_id || account_id, $control)
            else true
        end as ids_ok,
        function,
        function_is_text,
        status,
        status_is_text,
        occurred_at_is_text,
        quantity_is_number,
        case when quantity_is_number then quantity_finite end as quantity_finite,
        case when quantity_finite then quantity_positive end as quantity_positive,
        case when quantity_finite then quantity_too_large end as quantity_too_large,
        case when quantity_finite then quantity_too_fine end as quantity_too_fine,
        -- (exact: a micro-unit count below 10^15 times 10^-6, no division)
        cast(cast(quantity_micro as decimal(18, 0)) * 0.000001 as decimal(18, 6)) as quantity,
        quantity_micro,
        occurred_at_ts,
        -- the text of a timestamp that did not parse (to name why); NULL when it parsed
        case when occurred_at_ts is null then occurred_at end as occurred_at_unparsed
    from checked
)

-- `clean`: every fact above passes (the row schema's checks, tasks/validate.py, in one
-- expression), so only the other lines go through Pandera to be told their reason
select
    *,
    coalesce(
        utf8_ok and json_ok and nonblank
        and event_id_is_text and customer_id_is_text and account_id_is_text
        and function_is_text and status_is_text and occurred_at_is_text
        and quantity_is_number and ids_ok
        and quantity_finite and quantity_positive
        and not quantity_too_large and not quantity_too_fine
        and status in ('succeeded', 'failed')
        and occurred_at_ts is not null,
        false
    ) as clean
from facts
