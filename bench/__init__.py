"""Taskport's benchmarks: `make bench` (full) and `make bench-quick` (small counts).

Every scenario starts its own processes on 127.0.0.1, drives them from a load generator in
a process of its own with a bounded count, and stops them; baselines run in the same run,
on the same PostgreSQL and RabbitMQ. Results go to bench/results/.
"""
