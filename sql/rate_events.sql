-- Events rated again by the catalog version in force at occurred_at (billing-rules §2):
-- every event dated $from or later (a price change, a rebill), and every event whose
-- version was not recorded yet (rated at ingest). `catalog_functions` holds the versions.
update events as e
set
    credits = case
        when e.status = 'failed' then 0
        -- quantity in micro-units, exact (DECIMAL(18, 6) widened before it is scaled)
        else ((cast(cast(e.quantity as decimal(38, 6)) * 1000000 as bigint)
            + f.unit_size_micro - 1) // f.unit_size_micro) * f.credits_per_unit
    end,
    catalog_version = f.version_id
from catalog_functions as f
where (e.day >= $from or e.catalog_version is null)
    and f.code = e.function
    and e.occurred_at >= coalesce(f.effective_from, '-infinity'::timestamptz)
    and e.occurred_at < coalesce(f.effective_until, 'infinity'::timestamptz)
