-- Customers at risk at the cutoff of billing day $day (billing-rules §9): net balance > 0
-- but 7 × net < 3 × credits rated over days $day - 6 .. $day. Integer arithmetic only.
delete from at_risk where day = $day;

insert into at_risk by name
with warned as (
    select *
    from net_balances
    where net_balance > 0 and total_rated_7d > 0 and 7 * net_balance < 3 * total_rated_7d
),

projected as (
    select
        $day as day,
        customer_id,
        customer_key,
        net_balance,
        -- total / 7 rounded half up to the fen: floor((200 × total + 7) / 14) hundredths
        cast(cast((200 * total_rated_7d + 7) // 14 as decimal(38, 0)) * 0.01 as decimal(18, 2))
            as avg_daily_used,
        $day + cast((7 * net_balance) // total_rated_7d as integer) as projected_exhaustion_date,
        total_rated_7d,
        arrears_outstanding
    from warned
)

select * from projected
