-- The suspension list of billing day $day (billing-rules §9): customers whose net balance
-- at the cutoff is <= 0, since when, and the day's changes against day $day - 1.
delete from suspensions where day = $day;
delete from suspension_changes where day = $day;

insert into suspensions by name
with yesterday as (
    select customer_key, suspended_since
    from suspensions
    where day = $day - 1
),

suspended as (
    select
        $day as day,
        n.customer_id,
        n.customer_key,
        case when n.arrears_outstanding > 0 then 'arrears' else 'no_credits' end as reason,
        n.net_balance,
        n.arrears_outstanding,
        coalesce(y.suspended_since, $day) as suspended_since,
        n.valid_credits
    from net_balances as n
    left join yesterday as y using (customer_key)
    where n.net_balance <= 0
)

select * from suspended;

insert into suspension_changes by name
with today as (
    select customer_key, customer_id from suspensions where day = $day
),

yesterday as (
    select customer_key, customer_id, suspended_since from suspensions where day = $day - 1
),

newly_suspended as (
    select t.customer_key, t.customer_id, 'suspended' as change, $day as suspended_since
    from today as t
    anti join yesterday as y using (customer_key)
),

reinstated as (
    select y.customer_key, y.customer_id, 'reinstated' as change, y.suspended_since
    from yesterday as y
    anti join today as t using (customer_key)
),

changes as (
    select
        $day as day,
        c.customer_id,
        c.customer_key,
        c.change,
        n.net_balance,
        n.arrears_outstanding,
        c.suspended_since
    from (select * from newly_suspended union all select * from reinstated) as c
    left join net_balances as n using (customer_key)
)

select * from changes
