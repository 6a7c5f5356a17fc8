-- pay_e2e bench, database level: the rows bench/sql/pay_one.sql needs, made once in the
-- bench schema by bench/pay_e2e.py before pgbench runs. Ids are far below the pay core's
-- snowflake ids, so nothing collides with what the HTTP run wrote.
--   merchant MPGBENCH (token hash: md5('pgbench') || md5('pay_one'), fee 100 bps)
--   channel clearing (the pay core's HotPolicy: 8 sub-accounts)  1000, subs 1001..1008
--   platform transit (16 sub-accounts)                           2000, subs 2001..2016
--   fee income (buffered)                                        3000
--   merchant payable of MPGBENCH (plain)                         4000
CREATE SEQUENCE pay_bench_seq;
INSERT INTO merchants (merchant_id, name, token_hash, token_prefix, status, fee_bps,
                       notify_url, created_at)
VALUES ('MPGBENCH', 'pgbench', md5('pgbench') || md5('pay_one'), 'pwk_pgbenc', 'active',
        100, NULL, now());
INSERT INTO accounts (id, owner_type, owner_id, subject_code, currency, sub_index,
                      parent_id, hot_mode, sub_count, allow_negative, balance, created_at)
SELECT base + i, 'platform', owner, code, 'CNY', i, CASE WHEN i > 0 THEN base END,
       'sub_accounts', CASE WHEN i = 0 THEN subs ELSE 0 END, true, 0, now()
FROM (VALUES (1000, 'PGBENCH', '1002', 8), (2000, 'pgbench-transit', '2101', 16))
     AS hot (base, owner, code, subs),
     generate_series(0, subs) AS i;
INSERT INTO accounts (id, owner_type, owner_id, subject_code, currency, sub_index,
                      parent_id, hot_mode, sub_count, allow_negative, balance, created_at)
VALUES (3000, 'platform', 'pgbench-fee', '6001', 'CNY', 0, NULL, 'buffered', 0, true, 0, now()),
       (4000, 'merchant', 'MPGBENCH', '2002', 'CNY', 0, NULL, 'none', 0, true, 0, now());
