-- Helpers of the ingest checks (billing-rules §1, §3), defined on the ingest connection.

-- an instant written with an offset (`pattern`: tasks/validate.py TIMESTAMP_WITH_OFFSET), a
-- year from 2000 to 2099 and an offset within -14:00..+14:00; else NULL (`bad_timestamp`)
create or replace temp macro strict_timestamptz(t, pattern) as
    case
        when regexp_matches(t, pattern)
            and left(t, 2) = '20'
            and coalesce(
                try_cast(regexp_extract(t, '[+-](\d{2}):?(\d{2})?$', 1) as integer) * 60
                    + coalesce(try_cast(regexp_extract(t, '[+-]\d{2}:?(\d{2})?$', 1) as integer), 0)
                    <= 14 * 60
                and coalesce(try_cast(regexp_extract(t, '[+-]\d{2}:?(\d{2})?$', 1) as integer), 0)
                    < 60,
                true
            )
            -- (RFC 3339 allows a lowercase z for UTC)
            then try_cast(regexp_replace(t, 'z$', 'Z') as timestamptz)
    end
