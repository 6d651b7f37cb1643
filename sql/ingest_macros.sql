-- Helpers of the ingest checks (billing-rules §1, §3), defined on the ingest connection.

-- an instant written with an offset within the limits of §3 (`pattern`: tasks/validate.py
-- TIMESTAMP_WITH_OFFSET: the form, a year from 2000 to 2099, an offset within ±14:00); else
-- NULL (`bad_timestamp`). RFC 3339 allows a lowercase t and z (the date-time separator, UTC),
-- which the cast does not read: only those lines (the cast failed) are read again in capitals
-- (the only letters the pattern lets through are t, T, z and Z).
create or replace temp macro strict_timestamptz(t, pattern) as
    case
        when regexp_matches(t, pattern) then coalesce(
            try_cast(t as timestamptz), try_cast(upper(t) as timestamptz)
        )
    end
