-- What analysts read in duckdb_tables() / duckdb_columns(): the tables of interfaces.md
-- and their columns (billing-rules sections in brackets). The views' comments live beside
-- the views (002_views.sql), so that re-creating a view keeps them. Re-runnable.

comment on table pools is 'One row per credit pool: a subscription period or a package (§4)';
comment on column pools.pool_id is 'order_id#period_index';
comment on column pools.customer_id is 'The customer who bought it';
comment on column pools.order_id is 'The order the pool comes from';
comment on column pools.source is 'subscription or package';
comment on column pools.product is 'Edition or package code (data/catalog.toml)';
comment on column pools.period_index is '0-based 30-day period of a subscription; 0 for a package';
comment on column pools.credits is 'Credits granted';
comment on column pools.amount_cny is 'CNY paid for these credits (the period''s monthly fee, the package price)';
comment on column pools.available_from is 'Instant the credits can be drawn from';
comment on column pools.expires_at is 'Instant the remaining credits expire (a local midnight)';
comment on column pools.remaining is 'Credits left at the last billed day''s cutoff';

comment on table rejected_events is 'One row per rejected usage line: its raw text and the reason (§3; docs/operating.md §11)';
comment on column rejected_events.source_file is 'Inbox file the line came from';
comment on column rejected_events.line_no is 'Line number in that file (1-based)';
comment on column rejected_events.raw is 'The line as delivered (invalid UTF-8 bytes shown as \xNN)';
comment on column rejected_events.reason is 'Why it was refused, e.g. bad_id, too_late, duplicate_conflict';
comment on column rejected_events.ingested_at is 'When the run that read it ingested it';

comment on table rejected_orders is 'One row per rejected order row: its raw text and the reason (§3)';
comment on column rejected_orders.source_file is 'Inbox orders file';
comment on column rejected_orders.line_no is 'First line of the row in that file (1-based)';
comment on column rejected_orders.raw is 'The row as delivered';
comment on column rejected_orders.reason is 'Why it was refused, e.g. wrong_amount, bad_term';
comment on column rejected_orders.ingested_at is 'When it was ingested';

comment on table rejected_files is 'One row per inbox file turned away whole (§3 Files): none of its lines billed';
comment on column rejected_files.source_file is 'Path of the file in the inbox';
comment on column rejected_files.reason is 'not_a_regular_file (a link or special file, never opened) or unreadable_file';
comment on column rejected_files.detail is 'Which kind of file, or the read error';
comment on column rejected_files.ingested_at is 'When it was first turned away';

comment on table customer_days is 'One row per customer and billed day: credits and money of the day';
comment on column customer_days.day is 'Billing day (local date, Asia/Shanghai by default)';
comment on column customer_days.granted is 'Credits of pools that became available that day';
comment on column customer_days.used is 'Credits drawn from pools by that day''s events';
comment on column customer_days.settled is 'Credits drawn from pools to pay arrears';
comment on column customer_days.expired is 'Credits that expired at the day''s cutoff';
comment on column customer_days.arrears_opened is 'Credits of that day''s events no pool covered';
comment on column customer_days.arrears_outstanding is 'Arrears not settled at the cutoff';
comment on column customer_days.balance is 'Credits left in pools available during the day and not expired at its cutoff';
comment on column customer_days.revenue_cny is 'Revenue recognised that day, CNY (§7)';
comment on column customer_days.breakage_cny is 'Breakage recognised that day (expired credits'' value), CNY (§7)';

comment on table statements is 'One row per customer, month and revision: the monthly statement (§8)';
comment on column statements.month is 'First day of the month';
comment on column statements.revision is '1, 2, ...: a final statement changed by late data gets a new revision';
comment on column statements.status is 'month_to_date or final';
comment on column statements.opening_balance is 'Credits at the start of the month';
comment on column statements.closing_balance is 'opening + granted - used - arrears_settled - expired';
comment on column statements.payments_cny is 'CNY paid for pools granted in the month';
comment on column statements.revenue_cny is 'Revenue recognised in the month, CNY';
comment on column statements.breakage_cny is 'Breakage recognised in the month, CNY';
comment on column statements.deferred_cny is 'Revenue deferred at the close, CNY';
comment on column statements.seats_entitled is 'Accounts the customer''s live products entitle';
comment on column statements.seats_used is 'Distinct account_ids with events in the month';

comment on table statement_lines is 'One row per statement and function: usage in the month';
comment on column statement_lines.events is 'Events of the function';
comment on column statement_lines.quantity is 'Sum of their quantities (the function''s unit)';
comment on column statement_lines.credits is 'Credits rated';

comment on table suspensions is 'One row per customer and day suspended (§9)';
comment on column suspensions.reason is 'arrears or no_credits';
comment on column suspensions.net_balance is 'Credits valid at the cutoff minus outstanding arrears';
comment on column suspensions.suspended_since is 'First day of the current unbroken run of suspended days';

comment on table suspension_changes is 'One row per customer and day whose standing changed (§9)';
comment on column suspension_changes.change is 'suspended or reinstated';

comment on table at_risk is 'One row per customer and day at risk: net balance below 3 days of usage (§9)';
comment on column at_risk.avg_daily_used is 'Average daily credits rated over the last 7 days';
comment on column at_risk.projected_exhaustion_date is 'D + floor(7 x net / credits rated in 7 days)';

comment on table billing_runs is 'One row per run of a billing day: when, why, how many events';
comment on column billing_runs.reason is 'new, late_data, rebill (or a catalog change)';
comment on column billing_runs.events_accepted is 'Events billed on the day';
comment on column billing_runs.events_rejected is 'Lines the run rejected (on its first day row)';

comment on column customer_days.customer_id is 'The customer';
comment on column statements.customer_id is 'The customer';
comment on column statements.granted is 'Credits granted in the month (sum of customer_days.granted)';
comment on column statements.used is 'Credits drawn by the month''s events';
comment on column statements.expired is 'Credits expired in the month';
comment on column statements.arrears_opened is 'Credits of the month''s events no pool covered';
comment on column statements.arrears_settled is 'Arrears paid from pools in the month';
comment on column statements.arrears_outstanding is 'Arrears not settled at the close';
comment on column statement_lines.customer_id is 'The customer';
comment on column statement_lines.month is 'First day of the month';
comment on column statement_lines.revision is 'The statement revision the line belongs to';
comment on column statement_lines.function is 'Function code (data/catalog.toml)';
comment on column suspensions.day is 'Billing day whose cutoff the list is evaluated at';
comment on column suspensions.customer_id is 'The customer';
comment on column suspensions.arrears_outstanding is 'Arrears not settled at the cutoff';
comment on column suspension_changes.day is 'Billing day of the change';
comment on column suspension_changes.customer_id is 'The customer';
comment on column at_risk.day is 'Billing day of the warning';
comment on column at_risk.customer_id is 'The customer';
comment on column at_risk.net_balance is 'Credits valid at the cutoff minus outstanding arrears (> 0)';
comment on column billing_runs.run_id is 'The adbill run (runs.run_id)';
comment on column billing_runs.day is 'The billing day billed';
comment on column billing_runs.started_at is 'When billing the day started';
comment on column billing_runs.finished_at is 'When it finished';
comment on column billing_runs.status is 'succeeded or failed';
