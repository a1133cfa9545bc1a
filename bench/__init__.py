"""Benchmarks: ``make bench`` runs them all and writes JSON under bench/results/.

Figures are medians over interleaved rounds, each contender measured in the same process and
run as its peers, because the machines are shared and noisy: compare ratios, not absolutes.
"""
