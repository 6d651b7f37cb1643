-- Helpers of the ingest checks (billing-rules §1, §3), defined on the ingest connection.

-- an offset within -14:00..+14:00 with minutes < 60, for text that already matches the
-- timestamp pattern (so it ends in Z/z, +HH, +HHMM or +HH:MM); the common forms are read by
-- position, the rest by one regular expression
create or replace temp macro offset_in_range(t) as
    case
        when right(t, 1) in ('Z', 'z') then true
        when substr(t, -6, 1) in ('+', '-') and substr(t, -3, 1) = ':' then
            coalesce(
                try_cast(substr(t, -5, 2) as integer) * 60
                    + try_cast(substr(t, -2, 2) as integer) <= 14 * 60
                and try_cast(substr(t, -2, 2) as integer) < 60,
                false
            )
        else coalesce(
            try_cast(regexp_extract(t, '[+-]([0-9]{2}):?([0-9]{2})?$', 1) as integer) * 60
                + coalesce(try_cast(nullif(
                    regexp_extract(t, '[+-][0-9]{2}:?([0-9]{2})?$', 1), '') as integer), 0)
                <= 14 * 60
            and coalesce(try_cast(nullif(
                regexp_extract(t, '[+-][0-9]{2}:?([0-9]{2})?$', 1), '') as integer), 0) < 60,
            false
        )
    end;

-- an instant written with an offset (`pattern`: tasks/validate.py TIMESTAMP_WITH_OFFSET), a
-- year from 2000 to 2099 and an offset within -14:00..+14:00; else NULL (`bad_timestamp`)
create or replace temp macro strict_timestamptz(t, pattern) as
    case
        when regexp_matches(t, pattern) and left(t, 2) = '20' and offset_in_range(t)
            -- (RFC 3339 allows a lowercase z for UTC)
            then try_cast(if(right(t, 1) = 'z', left(t, -1) || 'Z', t) as timestamptz)
    end
