"""Seeded synthetic inboxes (orders CSV, usage JSON Lines) drawn from the catalog in data/:
the demo's and the tests' (`horizon`, through tasks.generate) and the benchmark's (`stream`).

model      the catalog as drawn from: products, prices in force, function rules, usage mix
customers  the customer base as arrays: ids, seats, weights, activity and entitlement windows
events     a day's events drawn column-wise (numpy) and rendered as JSON Lines (Polars)
bad_lines  bad usage lines of every reject reason, made from good events
orders     the orders CSV, with bad rows of every reject reason
files      writing usage files in chunks (gzip on a second thread)
horizon    customers planned over a fixed span of days (adbill generate and demo)
stream     customers planned day by day, any day written on its own (bench/)
"""
